//! Host tests of the vGIC: registers, Linux-like init sequences, SGI routing, the
//! fill/sync state machine and garbage-input properties.

use super::*;
use crate::addr::{GuestPhysAddr, GuestRange};
use crate::mmio::{MmioAccess, MmioRouter};
use alloc::boxed::Box;
use alloc::vec;
use proptest::prelude::*;

fn v2(n: usize) -> Vgic {
    Vgic::new(GicVersion::V2, n, 64).unwrap()
}

fn v3(n: usize) -> Vgic {
    Vgic::new(GicVersion::V3, n, 64).unwrap()
}

fn rd(g: &Vgic, vcpu: usize, off: u64) -> u32 {
    g.dist_read(vcpu, off, 4) as u32
}

fn wr(g: &mut Vgic, vcpu: usize, off: u64, v: u32) {
    g.dist_write(vcpu, off, 4, u64::from(v));
}

fn rr(g: &Vgic, vcpu: usize, off: u64) -> u32 {
    g.redist_read(vcpu as u64 * GICR_STRIDE + off, 4) as u32
}

fn rw(g: &mut Vgic, vcpu: usize, off: u64, v: u32) {
    g.redist_write(vcpu as u64 * GICR_STRIDE + off, 4, u64::from(v));
}

const SGI: u64 = 0x1_0000;

fn decoded(g: &Vgic, f: &FillResult) -> Vec<Lr> {
    f.values()[..f.used()]
        .iter()
        .map(|&r| Lr::decode(g.version(), r))
        .collect()
}

/// Reads back `f`'s LRs with their states replaced.
fn back(g: &Vgic, f: &FillResult, states: &[LrState]) -> Vec<u64> {
    decoded(g, f)
        .iter()
        .zip(states)
        .map(|(lr, &s)| Lr { state: s, ..*lr }.encode(g.version()))
        .collect()
}

/// A v2 distributor enabled for group 0, with SPIs 32..95 enabled, targeted at CPU 0
/// and configured as given.
fn v2_ready(n: usize, edge: bool) -> Vgic {
    let mut g = v2(n);
    wr(&mut g, 0, 0x000, 1);
    for w in 1..3 {
        wr(&mut g, 0, 0x100 + 4 * w, !0);
    }
    for w in 8..24 {
        wr(&mut g, 0, 0x800 + 4 * w, 0x0101_0101);
        wr(&mut g, 0, 0x400 + 4 * w, 0xa0a0_a0a0);
    }
    for w in 2..6 {
        wr(&mut g, 0, 0xc00 + 4 * w, if edge { 0xaaaa_aaaa } else { 0 });
    }
    g
}

// ---------------------------------------------------------------- construction

#[test]
fn construction_limits() {
    assert_eq!(
        Vgic::new(GicVersion::V2, 0, 32).unwrap_err(),
        VgicError::BadVcpuCount(0)
    );
    assert_eq!(
        Vgic::new(GicVersion::V2, 9, 32).unwrap_err(),
        VgicError::BadVcpuCount(9)
    );
    assert!(Vgic::new(GicVersion::V2, 8, 32).is_ok());
    assert!(Vgic::new(GicVersion::V3, 16, 32).is_ok());
    assert_eq!(
        Vgic::new(GicVersion::V3, 17, 32).unwrap_err(),
        VgicError::BadVcpuCount(17)
    );
    assert_eq!(
        Vgic::new(GicVersion::V3, 1, 989).unwrap_err(),
        VgicError::TooManySpis(989)
    );
    assert_eq!(Vgic::new(GicVersion::V3, 1, 988).unwrap().nr_irqs(), 1020);
    assert_eq!(Vgic::new(GicVersion::V2, 1, 1).unwrap().nr_spis(), 32);
    assert_eq!(Vgic::new(GicVersion::V2, 1, 0).unwrap().nr_irqs(), 32);
    let g = v3(4);
    assert_eq!(g.dist_size(), 0x1_0000);
    assert_eq!(g.redist_size(), 4 * 0x2_0000);
    assert_eq!(v2(1).dist_size(), 0x1000);
    assert_eq!(v2(1).redist_size(), 0);
}

#[test]
fn device_api_errors() {
    let mut g = v2(2);
    assert_eq!(g.set_level(15, 0, true), Err(VgicError::BadIntid(15)));
    assert_eq!(g.set_level(96, 0, true), Err(VgicError::BadIntid(96)));
    assert_eq!(g.set_level(27, 2, true), Err(VgicError::NoSuchVcpu(2)));
    assert_eq!(g.set_level(33, 7, true), Ok(())); // SPIs ignore the vCPU.
    assert_eq!(g.trigger_edge(1020, 0), Err(VgicError::BadIntid(1020)));
    assert_eq!(g.hw_map(3, 27), Err(VgicError::BadIntid(3)));
    assert_eq!(g.hw_map(27, 1023), Err(VgicError::BadIntid(1023)));
    assert_eq!(g.hw_map(27, 27), Ok(()));
    assert_eq!(g.hw_unmap(27), Ok(()));
    assert_eq!(g.hw_unmap(200), Err(VgicError::BadIntid(200)));
    assert_eq!(g.fill(5, 4).used(), 0);
    g.sync(5, &[1, 2, 3]);
    assert!(!g.pending_for(5));
    assert_eq!(g.sgi_v2(9, 0x0001_0000), 0);
    assert_eq!(g.sgi_v3(0, 1), 0, "v3 SGI on a v2 vGIC");
    assert!(!format!("{}", VgicError::TooManySpis(2000)).is_empty());
}

// ---------------------------------------------------------------- GICv2 registers

#[test]
fn v2_id_registers() {
    let g = v2(2);
    // ITLinesNumber = 96/32 - 1 = 2, CPUNumber = 1.
    assert_eq!(rd(&g, 0, 0x004), 0x22);
    assert_eq!(rd(&g, 0, 0x008), 0x43b);
    assert_eq!(rd(&g, 0, 0xfe8), 0x2b, "ICPIDR2: GICv2");
    assert_eq!(rd(&g, 0, 0xfe8) >> 4 & 0xf, 2);
    assert_eq!(
        [0xff0, 0xff4, 0xff8, 0xffc].map(|o| rd(&g, 0, o)),
        [0x0d, 0xf0, 0x05, 0xb1]
    );
    assert_eq!(
        rd(&Vgic::new(GicVersion::V2, 8, 988).unwrap(), 0, 0x004),
        0x1f | 7 << 5
    );
    // Read-only: writes ignored.
    let mut g = g;
    wr(&mut g, 0, 0x004, 0);
    wr(&mut g, 0, 0xfe8, 0);
    assert_eq!(rd(&g, 0, 0x004), 0x22);
    assert_eq!(rd(&g, 0, 0xfe8), 0x2b);
}

#[test]
fn v2_ctlr() {
    let mut g = v2(1);
    assert_eq!(rd(&g, 0, 0), 0);
    wr(&mut g, 0, 0, 1);
    assert_eq!(rd(&g, 0, 0), 1);
    wr(&mut g, 0, 0, 3);
    assert_eq!(rd(&g, 0, 0), 3);
    wr(&mut g, 0, 0, 0xffff_fffc);
    assert_eq!(rd(&g, 0, 0), 0);
}

#[test]
fn v2_igroupr_banked_and_shared() {
    let mut g = v2(2);
    wr(&mut g, 0, 0x080, 0x0000_ffff);
    assert_eq!(rd(&g, 0, 0x080), 0xffff);
    assert_eq!(rd(&g, 1, 0x080), 0, "IGROUPR0 is banked");
    wr(&mut g, 1, 0x084, 0x8000_0001);
    assert_eq!(rd(&g, 0, 0x084), 0x8000_0001, "SPI groups are shared");
    wr(&mut g, 0, 0x084, 0);
    assert_eq!(rd(&g, 1, 0x084), 0);
    // Past the last implemented interrupt: RAZ/WI.
    wr(&mut g, 0, 0x08c, !0);
    assert_eq!(rd(&g, 0, 0x08c), 0);
}

#[test]
fn v2_enable_set_clear() {
    let mut g = v2(2);
    // SGIs are permanently enabled (RAO/WI).
    assert_eq!(rd(&g, 0, 0x100), 0xffff);
    wr(&mut g, 0, 0x180, 0xffff);
    assert_eq!(rd(&g, 0, 0x100), 0xffff);
    wr(&mut g, 0, 0x100, 0x0803_0000);
    wr(&mut g, 0, 0x100, 0); // zeros have no effect
    assert_eq!(rd(&g, 0, 0x100), 0x0803_ffff);
    assert_eq!(rd(&g, 0, 0x180), 0x0803_ffff);
    assert_eq!(rd(&g, 1, 0x100), 0xffff, "banked");
    wr(&mut g, 0, 0x180, 0x0001_0000);
    assert_eq!(rd(&g, 0, 0x100), 0x0802_ffff);
    wr(&mut g, 1, 0x104, 0x0000_0002);
    assert_eq!(rd(&g, 0, 0x104), 2);
    wr(&mut g, 0, 0x184, !0);
    assert_eq!(rd(&g, 1, 0x104), 0);
    wr(&mut g, 0, 0x10c, !0);
    assert_eq!(rd(&g, 0, 0x10c), 0, "beyond ITLinesNumber");
}

#[test]
fn v2_pending_registers() {
    let mut g = v2(2);
    wr(&mut g, 0, 0x204, 0x0000_0006); // SPIs 33, 34
    assert_eq!(rd(&g, 1, 0x204), 6);
    assert_eq!(rd(&g, 1, 0x284), 6);
    wr(&mut g, 0, 0x284, 0x0000_0002);
    assert_eq!(rd(&g, 0, 0x204), 4);
    // SGI bits of ISPENDR0/ICPENDR0 are WI in GICv2; PPIs are banked.
    wr(&mut g, 0, 0x200, 0x0800_ffff);
    assert_eq!(rd(&g, 0, 0x200), 0x0800_0000);
    assert_eq!(rd(&g, 1, 0x200), 0);
    g.sgi_v2(1, 0x0001_0005);
    assert_eq!(rd(&g, 0, 0x200), 0x0800_0020);
    wr(&mut g, 0, 0x280, 0xffff_ffff);
    assert_eq!(rd(&g, 0, 0x200), 0x20, "ICPENDR0 does not clear SGIs");
    // A level line reads as pending; ICPENDR clears only the latch.
    wr(&mut g, 0, 0xc08, 0); // SPIs 32..47 level
    g.set_level(35, 0, true).unwrap();
    assert_eq!(rd(&g, 0, 0x204) & 8, 8);
    wr(&mut g, 0, 0x284, 8);
    assert_eq!(rd(&g, 0, 0x204) & 8, 8);
    g.set_level(35, 0, false).unwrap();
    assert_eq!(rd(&g, 0, 0x204) & 8, 0);
}

#[test]
fn v2_active_registers() {
    let mut g = v2(2);
    wr(&mut g, 1, 0x300, 0x8000_0001);
    assert_eq!(rd(&g, 1, 0x300), 0x8000_0001);
    assert_eq!(rd(&g, 0, 0x300), 0);
    wr(&mut g, 1, 0x380, 0x8000_0000);
    assert_eq!(rd(&g, 1, 0x380), 1);
    wr(&mut g, 0, 0x308, 0x10);
    assert_eq!(rd(&g, 1, 0x308), 0x10);
    wr(&mut g, 0, 0x388, !0);
    assert_eq!(rd(&g, 1, 0x308), 0);
}

#[test]
fn v2_priority_byte_and_word() {
    let mut g = v2(2);
    g.dist_write(0, 0x400 + 33, 1, 0xa7);
    assert_eq!(g.dist_read(1, 0x400 + 33, 1), 0xa0, "5 priority bits");
    assert_eq!(rd(&g, 0, 0x420), 0x0000_a000);
    wr(&mut g, 0, 0x424, 0x1122_33ff);
    assert_eq!(rd(&g, 0, 0x424), 0x1020_30f8);
    assert_eq!(g.dist_read(0, 0x427, 1), 0x10);
    // Banked for SGIs/PPIs.
    wr(&mut g, 1, 0x400, 0x8080_8080);
    assert_eq!(rd(&g, 1, 0x400), 0x8080_8080);
    assert_eq!(rd(&g, 0, 0x400), 0);
    // Halfword accesses are not supported: RAZ/WI.
    g.dist_write(0, 0x424, 2, 0xffff);
    assert_eq!(g.dist_read(0, 0x424, 2), 0);
    assert_eq!(rd(&g, 0, 0x424), 0x1020_30f8);
    // Beyond the implemented interrupts.
    g.dist_write(0, 0x400 + 200, 1, 0xff);
    assert_eq!(g.dist_read(0, 0x400 + 200, 1), 0);
}

#[test]
fn v2_itargetsr() {
    let mut g = v2(2);
    // SGI/PPI bytes: read-only, the accessing CPU's own bit.
    assert_eq!(rd(&g, 0, 0x800), 0x0101_0101);
    assert_eq!(rd(&g, 1, 0x81c), 0x0202_0202);
    assert_eq!(g.dist_read(1, 0x81f, 1), 0x02);
    wr(&mut g, 1, 0x800, 0);
    assert_eq!(rd(&g, 1, 0x800), 0x0202_0202);
    // SPI bytes: read/write, bits of nonexistent CPUs are RAZ/WI.
    g.dist_write(0, 0x800 + 33, 1, 0xff);
    assert_eq!(g.dist_read(1, 0x800 + 33, 1), 0x03);
    wr(&mut g, 0, 0x824, 0x0102_0301);
    assert_eq!(rd(&g, 0, 0x824), 0x0102_0301);
    assert_eq!(rd(&g, 0, 0x820), 0x0000_0300);
    assert_eq!(g.dist_read(0, 0x800 + 96, 1), 0, "beyond the SPIs");
}

#[test]
fn v2_icfgr() {
    let mut g = v2(2);
    assert_eq!(rd(&g, 0, 0xc00), 0xaaaa_aaaa, "SGIs edge");
    wr(&mut g, 0, 0xc00, 0);
    assert_eq!(rd(&g, 0, 0xc00), 0xaaaa_aaaa, "read-only");
    assert_eq!(rd(&g, 0, 0xc04), 0, "PPIs level at reset");
    wr(&mut g, 0, 0xc04, 0xffff_ffff);
    assert_eq!(rd(&g, 0, 0xc04), 0xaaaa_aaaa, "bit 2k reserved");
    assert_eq!(rd(&g, 1, 0xc04), 0, "banked");
    wr(&mut g, 1, 0xc08, 0x0000_0008);
    assert_eq!(rd(&g, 0, 0xc08), 8);
    wr(&mut g, 0, 0xc18, !0);
    assert_eq!(rd(&g, 0, 0xc18), 0, "beyond the SPIs");
}

#[test]
fn v2_sgir_filters() {
    let mut g = v2(4);
    // Filter 0: the list; CPUs 4..7 do not exist.
    wr(&mut g, 0, 0xf00, 0x00f6_0003);
    assert_eq!(g.take_kicks(), 0b0110);
    assert_eq!(
        g.dist_read(1, 0xf20 + 3, 1),
        0x01,
        "SPENDSGIR: source CPU 0"
    );
    assert_eq!(g.dist_read(2, 0xf10 + 3, 1), 0x01);
    assert_eq!(g.dist_read(0, 0xf20 + 3, 1), 0);
    // Filter 1: all but self.
    assert_eq!(g.sgi_v2(2, 0x0100_0001), 0b1011);
    // Filter 2: self only; the list is ignored.
    assert_eq!(g.sgi_v2(3, 0x02ff_0002), 0b1000);
    // Filter 3: reserved.
    assert_eq!(g.sgi_v2(0, 0x03ff_0002), 0);
    // NSATT has no effect.
    assert_eq!(g.sgi_v2(0, 0x0002_8004), 0b0010);
    assert_eq!(rd(&g, 1, 0xf24), 0x0000_0001, "SGI 4 from CPU 0");
    assert_eq!(
        rd(&g, 1, 0xf20),
        0x0100_0400,
        "SGI 1 from CPU 2, SGI 3 from CPU 0"
    );
    assert_eq!(g.sgi_v2(0, 0x0000_0001), 0, "empty list");
    // A GICD_SGIR read is RAZ.
    assert_eq!(rd(&g, 0, 0xf00), 0);
}

#[test]
fn v2_spendsgir_cpendsgir() {
    let mut g = v2(2);
    g.dist_write(1, 0xf20 + 5, 1, 0xff);
    assert_eq!(
        g.dist_read(1, 0xf20 + 5, 1),
        0x03,
        "sources of nonexistent CPUs ignored"
    );
    assert_eq!(rd(&g, 1, 0x200), 1 << 5);
    assert_eq!(g.dist_read(0, 0xf25, 1), 0, "banked");
    wr(&mut g, 1, 0xf10 + 4, 0x0000_0100);
    assert_eq!(g.dist_read(1, 0xf25, 1), 0x02);
    wr(&mut g, 1, 0xf14, 0x0000_0200);
    assert_eq!(rd(&g, 1, 0x200), 0);
    assert_eq!(rd(&g, 1, 0xf14), 0);
}

#[test]
fn v2_bad_accesses_are_raz_wi() {
    let mut g = v2(2);
    let before = (0..0x1000u64)
        .step_by(4)
        .map(|o| rd(&g, 0, o))
        .collect::<Vec<_>>();
    for (off, size) in [
        (0x100, 2),
        (0x100, 8),
        (0x101, 4),
        (0x000, 1),
        (0x104, 1),
        (0x1000, 4),
        (u64::MAX - 3, 4),
        (0xf00, 1),
    ] {
        g.dist_write(0, off, size, u64::MAX);
        assert_eq!(g.dist_read(0, off, size), 0, "offset {off:#x} size {size}");
    }
    g.dist_write(0, 0x100, 3, u64::MAX);
    let after = (0..0x1000u64)
        .step_by(4)
        .map(|o| rd(&g, 0, o))
        .collect::<Vec<_>>();
    assert_eq!(before, after);
    assert_eq!(g.redist_read(0, 4), 0, "no redistributors on v2");
    g.redist_write(0, 4, 1);
}

// ---------------------------------------------------------------- GICv3 registers

#[test]
fn v3_gicd_id_and_ctlr() {
    let mut g = v3(2);
    assert_eq!(
        rd(&g, 0, 0x0000),
        1 << 4 | 1 << 6,
        "ARE and DS set, disabled"
    );
    wr(&mut g, 0, 0x0000, 1 << 4 | 1 << 1 | 1);
    assert_eq!(rd(&g, 0, 0x0000), 0x53);
    wr(&mut g, 0, 0x0000, 0);
    assert_eq!(rd(&g, 0, 0x0000), 0x50, "ARE and DS RAO/WI");
    let typer = rd(&g, 0, 0x0004);
    assert_eq!(typer & 0x1f, 2);
    assert_eq!(typer >> 19 & 0x1f, 9, "IDbits");
    assert_eq!(typer & (1 << 17), 0, "no LPIs");
    assert_eq!(rd(&g, 0, 0x0008), 0x43b);
    assert_eq!(rd(&g, 0, 0x000c), 0, "TYPER2");
    assert_eq!(rd(&g, 0, 0xffe8), 0x3b);
}

#[test]
fn v3_gicd_private_range_raz_wi() {
    let mut g = v3(2);
    for off in [
        0x080, 0x100, 0x200, 0x300, 0x400, 0x41c, 0xc00, 0xc04, 0x800, 0x820, 0xf00, 0xf10, 0xd00,
        0xe00,
    ] {
        wr(&mut g, 0, off, !0);
        assert_eq!(rd(&g, 0, off), 0, "{off:#x}");
    }
    g.dist_write(0, 0x400 + 27, 1, 0xff);
    assert_eq!(g.dist_read(0, 0x400 + 27, 1), 0);
    assert_eq!(
        rr(&g, 0, SGI + 0x100),
        0,
        "no GICR state leaked from the GICD"
    );
    // SPI registers work.
    wr(&mut g, 0, 0x084, 0xffff_ffff);
    assert_eq!(rd(&g, 1, 0x084), 0xffff_ffff);
    wr(&mut g, 0, 0x104, 2);
    assert_eq!(rd(&g, 0, 0x184), 2);
    g.dist_write(0, 0x400 + 33, 1, 0xa3);
    assert_eq!(rd(&g, 0, 0x420), 0xa000);
    wr(&mut g, 0, 0xc08, 0x8);
    assert_eq!(rd(&g, 0, 0xc08), 0x8);
}

#[test]
fn v3_irouter() {
    let mut g = v3(4);
    let r = |n: u64| 0x6000 + 8 * n;
    g.dist_write(0, r(33), 8, 0xffff_ffff_ffff_ffff);
    assert_eq!(
        g.dist_read(0, r(33), 8),
        0xff_80ff_ffff,
        "RES0 bits dropped"
    );
    g.dist_write(0, r(34), 8, 0x0000_0000_0000_0002);
    assert_eq!(g.dist_read(0, r(34), 8), 2);
    g.dist_write(0, r(34) + 4, 4, 0x7);
    assert_eq!(g.dist_read(0, r(34), 8), 0x7_0000_0002);
    assert_eq!(g.dist_read(0, r(34) + 4, 4), 7);
    assert_eq!(g.dist_read(0, r(34), 4), 2);
    g.dist_write(0, r(5), 8, 1);
    assert_eq!(g.dist_read(0, r(5), 8), 0, "INTIDs < 32 have no IROUTER");
    g.dist_write(0, r(96), 8, 1);
    assert_eq!(g.dist_read(0, r(96), 8), 0, "beyond the SPIs");
    g.dist_write(0, r(34) + 2, 2, 0xffff);
    assert_eq!(g.dist_read(0, r(34), 8), 0x7_0000_0002);
}

#[test]
fn v3_gicr_rd_frame() {
    let mut g = v3(3);
    for n in 0..3 {
        let typer = g.redist_read(n as u64 * GICR_STRIDE + 8, 8);
        assert_eq!(typer >> 32, n as u64, "affinity");
        assert_eq!(typer >> 8 & 0xffff, n as u64, "Processor_Number");
        assert_eq!(typer & 0x10 != 0, n == 2, "Last");
        assert_eq!(typer & 3, 0, "no LPIs");
        assert_eq!(
            u64::from(rr(&g, n, 8)) | u64::from(rr(&g, n, 0xc)) << 32,
            typer
        );
        assert_eq!(rr(&g, n, 0xffe8), 0x3b);
        assert_eq!(rr(&g, n, 0x4), 0x43b);
    }
    assert_eq!(rr(&g, 0, 0), 0, "GICR_CTLR: no LPIs, RWP clear");
    // WAKER handshake.
    assert_eq!(rr(&g, 1, 0x14), 0b110);
    rw(&mut g, 1, 0x14, 0);
    assert_eq!(rr(&g, 1, 0x14), 0);
    assert_eq!(rr(&g, 0, 0x14), 0b110, "banked per redistributor");
    rw(&mut g, 1, 0x14, 0b010);
    assert_eq!(rr(&g, 1, 0x14), 0b110);
    // Nonexistent redistributor.
    assert_eq!(rr(&g, 3, 0x8), 0);
    rw(&mut g, 3, 0x14, 0);
    assert_eq!(g.redist_read(3 * GICR_STRIDE + 8, 8), 0);
    // PROPBASER / PENDBASER RAZ/WI.
    g.redist_write(0x70, 8, u64::MAX);
    assert_eq!(g.redist_read(0x70, 8), 0);
}

#[test]
fn v3_gicr_sgi_frame() {
    let mut g = v3(2);
    rw(&mut g, 1, SGI + 0x080, !0);
    assert_eq!(rr(&g, 1, SGI + 0x080), !0);
    assert_eq!(rr(&g, 0, SGI + 0x080), 0);
    rw(&mut g, 0, SGI + 0x100, 0x0800_ffff);
    assert_eq!(rr(&g, 0, SGI + 0x180), 0x0800_ffff);
    rw(&mut g, 0, SGI + 0x180, 0x0000_0001);
    assert_eq!(rr(&g, 0, SGI + 0x100), 0x0800_fffe);
    // SGI pending bits are writable on v3.
    rw(&mut g, 0, SGI + 0x200, 0x0000_0004);
    assert_eq!(rr(&g, 0, SGI + 0x200), 4);
    rw(&mut g, 0, SGI + 0x280, 0x0000_0004);
    assert_eq!(rr(&g, 0, SGI + 0x200), 0);
    rw(&mut g, 1, SGI + 0x300, 0x8000_0000);
    assert_eq!(rr(&g, 1, SGI + 0x380), 0x8000_0000);
    rw(&mut g, 1, SGI + 0x380, 0x8000_0000);
    assert_eq!(rr(&g, 1, SGI + 0x300), 0);
    // Priorities: words and bytes.
    rw(&mut g, 0, SGI + 0x418, 0xa0a0_a0a0);
    assert_eq!(g.redist_read(SGI + 0x400 + 27, 1), 0xa0);
    g.redist_write(SGI + 0x400 + 27, 1, 0x47);
    assert_eq!(rr(&g, 0, SGI + 0x418), 0x40a0_a0a0);
    assert_eq!(g.redist_read(GICR_STRIDE + SGI + 0x400 + 27, 1), 0);
    // ICFGR0 read-only edge, ICFGR1 writable.
    assert_eq!(rr(&g, 0, SGI + 0xc00), 0xaaaa_aaaa);
    rw(&mut g, 0, SGI + 0xc00, 0);
    assert_eq!(rr(&g, 0, SGI + 0xc00), 0xaaaa_aaaa);
    rw(&mut g, 0, SGI + 0xc04, 0x0080_0000);
    assert_eq!(rr(&g, 0, SGI + 0xc04), 0x0080_0000);
    assert_eq!(rr(&g, 1, SGI + 0xc04), 0);
    // Reserved / unsupported.
    rw(&mut g, 0, SGI + 0x104, !0);
    assert_eq!(rr(&g, 0, SGI + 0x104), 0);
    g.redist_write(SGI + 0x100, 2, 0xffff);
    assert_eq!(rr(&g, 0, SGI + 0x100), 0x0800_fffe);
}

// ---------------------------------------------------------------- Linux init sequences

/// irq-gic.c: gic_dist_init + gic_cpu_init per CPU + gic_cpu_if_up (GICC is hardware).
fn linux_v2_boot(g: &mut Vgic, ncpus: usize) {
    wr(g, 0, 0x000, 0);
    let typer = rd(g, 0, 0x004);
    let lines = ((typer & 0x1f) + 1) * 32;
    // gic_get_cpumask: the first nonzero ITARGETSR0..7 word.
    let mut mask = 0;
    for i in (0..32).step_by(4) {
        mask = rd(g, 0, 0x800 + i);
        mask |= mask >> 16;
        mask |= mask >> 8;
        if mask != 0 {
            break;
        }
    }
    assert_eq!(mask & 0xff, 1);
    let cpumask = (mask & 0xff) * 0x0101_0101;
    for i in (32..lines).step_by(4) {
        wr(g, 0, 0x800 + u64::from(i), cpumask);
    }
    // gic_dist_config.
    for i in (32..lines).step_by(16) {
        wr(g, 0, 0xc00 + u64::from(i / 4), 0);
    }
    for i in (32..lines).step_by(4) {
        wr(g, 0, 0x400 + u64::from(i), 0xa0a0_a0a0);
    }
    for i in (32..lines).step_by(32) {
        wr(g, 0, 0x380 + u64::from(i / 8), !0);
        wr(g, 0, 0x180 + u64::from(i / 8), !0);
    }
    wr(g, 0, 0x000, 1);
    for cpu in 0..ncpus {
        let mut m = 0;
        for i in (0..32).step_by(4) {
            m = rd(g, cpu, 0x800 + i);
            m |= m >> 16;
            m |= m >> 8;
            if m != 0 {
                break;
            }
        }
        assert_eq!(m & 0xff, 1 << cpu, "gic_cpu_map for CPU {cpu}");
        wr(g, cpu, 0x380, !0);
        wr(g, cpu, 0x180, 0xffff_0000);
        wr(g, cpu, 0x100, 0x0000_ffff);
        for i in (0..32).step_by(4) {
            wr(g, cpu, 0x400 + i, 0xa0a0_a0a0);
        }
    }
}

#[test]
fn linux_v2_init_then_uart_timer_ipi() {
    let mut g = v2(2);
    linux_v2_boot(&mut g, 2);
    // request_irq for the UART (SPI 1 = INTID 33, level), set_affinity to CPU 0 (byte).
    let v = rd(&g, 0, 0xc08);
    wr(&mut g, 0, 0xc08, v & !(3 << 2));
    g.dist_write(0, 0x800 + 33, 1, 0x01);
    wr(&mut g, 0, 0x104, 1 << 1);
    // Timer PPI 27 (level) enabled on each CPU; HW-mapped.
    g.hw_map(27, 27).unwrap();
    for cpu in 0..2 {
        wr(&mut g, cpu, 0x100, 1 << 27);
    }
    g.take_kicks();
    g.set_level(33, 0, true).unwrap();
    assert_eq!(g.take_kicks(), 1);
    g.set_level(27, 1, true).unwrap();
    assert_eq!(g.take_kicks(), 2);
    let f = g.fill(0, 4);
    let lrs = decoded(&g, &f);
    assert_eq!(lrs.len(), 1);
    assert_eq!(lrs[0].vintid, 33);
    assert_eq!(lrs[0].state, LrState::Pending);
    assert_eq!(lrs[0].priority, 0xa0);
    assert!(!lrs[0].group1, "Linux leaves GICv2 interrupts in group 0");
    assert!(lrs[0].eoi_maint, "level: EOI maintenance to resample");
    let f1 = g.fill(1, 4);
    let l1 = decoded(&g, &f1);
    assert_eq!(l1.len(), 1);
    assert_eq!((l1[0].vintid, l1[0].hw), (27, Some(27)));
    // IPI from CPU 0 to CPU 1 (gic_ipi_send_mask: filter 0).
    g.sync(1, f1.values());
    wr(&mut g, 0, 0xf00, 0x0002_0000 | 1);
    assert_eq!(g.take_kicks(), 2);
    let f1 = g.fill(1, 4);
    let l1 = decoded(&g, &f1);
    assert_eq!(l1.len(), 2);
    assert_eq!((l1[0].vintid, l1[0].source), (1, 0));
}

/// irq-gic-v3.c: gic_dist_init, then gic_populate_rdist + gic_enable_redist +
/// gic_cpu_config on each CPU.
fn linux_v3_boot(g: &mut Vgic, ncpus: usize) {
    wr(g, 0, 0x0000, 0);
    while rd(g, 0, 0x0000) & (1 << 31) != 0 {}
    assert_eq!(rd(g, 0, 0xffe8) & 0xf0, 0x30);
    let typer = rd(g, 0, 0x0004);
    let lines = (((typer & 0x1f) + 1) * 32).min(1020);
    let _typer2 = rd(g, 0, 0x000c);
    for i in (32..lines).step_by(32) {
        wr(g, 0, 0x0080 + u64::from(i / 8), !0);
    }
    for i in (32..lines).step_by(16) {
        wr(g, 0, 0x0c00 + u64::from(i / 4), 0);
    }
    for i in (32..lines).step_by(4) {
        wr(g, 0, 0x0400 + u64::from(i), 0xa0a0_a0a0);
    }
    for i in (32..lines).step_by(32) {
        wr(g, 0, 0x0380 + u64::from(i / 8), !0);
        wr(g, 0, 0x0180 + u64::from(i / 8), !0);
    }
    assert_eq!(
        rd(g, 0, 0x0000) & (1 << 6),
        1 << 6,
        "DS: single security state"
    );
    wr(g, 0, 0x0000, 1 << 4 | 1 << 1 | 1);
    for i in 32..lines {
        g.dist_write(0, 0x6000 + 8 * u64::from(i), 8, 0);
    }
    for cpu in 0..ncpus {
        // gic_populate_rdist: walk the frames until the affinity matches.
        let aff = Vgic::mpidr_of(cpu);
        let mut base = 0u64;
        let found = loop {
            assert_eq!(g.redist_read(base + 0xffe8, 4) & 0xf0, 0x30);
            let t = g.redist_read(base + 8, 8);
            if t >> 32 == aff {
                break Some(base);
            }
            if t & 0x10 != 0 {
                break None;
            }
            base += GICR_STRIDE;
        };
        let base = found.expect("redistributor found");
        assert_eq!(base, cpu as u64 * GICR_STRIDE);
        // gic_enable_redist.
        let w = g.redist_read(base + 0x14, 4);
        g.redist_write(base + 0x14, 4, w & !2);
        let mut tries = 0;
        while g.redist_read(base + 0x14, 4) & 4 != 0 {
            tries += 1;
            assert!(tries < 10, "ChildrenAsleep never cleared");
        }
        // gic_cpu_init.
        g.redist_write(base + SGI + 0x080, 4, !0);
        g.redist_write(base + SGI + 0x380, 4, !0);
        g.redist_write(base + SGI + 0x180, 4, 0xffff_0000);
        g.redist_write(base + SGI + 0x100, 4, 0x0000_ffff);
        for i in (0..32).step_by(4) {
            g.redist_write(base + SGI + 0x400 + i, 4, 0xa0a0_a0a0);
        }
        while g.redist_read(base, 4) & (1 << 3) != 0 {}
    }
}

#[test]
fn linux_v3_init_then_uart_timer_ipi() {
    let mut g = v3(2);
    linux_v3_boot(&mut g, 2);
    // UART SPI 33 level, routed to CPU 1 (set_affinity), enabled.
    g.dist_write(0, 0x6000 + 8 * 33, 8, Vgic::mpidr_of(1));
    wr(&mut g, 0, 0x0104, 1 << 1);
    // Timer PPI 27 enabled on CPU 0, HW-mapped.
    g.hw_map(27, 27).unwrap();
    g.redist_write(SGI + 0x100, 4, 1 << 27);
    g.take_kicks();
    g.set_level(33, 0, true).unwrap();
    assert_eq!(g.take_kicks(), 0b10);
    g.trigger_edge(27, 0).unwrap();
    let f0 = g.fill(0, 4);
    let l0 = decoded(&g, &f0);
    assert_eq!(l0.len(), 1);
    assert_eq!((l0[0].vintid, l0[0].hw, l0[0].group1), (27, Some(27), true));
    let f1 = g.fill(1, 4);
    let l1 = decoded(&g, &f1);
    assert_eq!(
        (l1[0].vintid, l1[0].group1, l1[0].priority),
        (33, true, 0xa0)
    );
    // IPI: SGI 2 from CPU 0 to CPU 1 via ICC_SGI1R_EL1 (TargetList bit 1).
    g.sync(0, f0.values());
    g.sync(1, f1.values());
    assert_eq!(g.sgi_v3(0, 2 << 24 | 0b10), 0b10);
    let f1 = g.fill(1, 4);
    let l1 = decoded(&g, &f1);
    assert!(l1
        .iter()
        .any(|l| l.vintid == 2 && l.state == LrState::Pending && l.group1));
}

// ---------------------------------------------------------------- SGI routing (v3)

#[test]
fn sgi_v3_routing() {
    let mut g = v3(4);
    // TargetList bits 0 and 3, plus bit 9 (vCPU 9 does not exist).
    assert_eq!(g.sgi_v3(1, 5 << 24 | 0b10_0000_1001), 0b1001);
    assert_eq!(rr(&g, 3, SGI + 0x200), 1 << 5);
    // IRM: all but self.
    assert_eq!(g.sgi_v3(2, 1 << 40 | 1 << 24 | 0xffff), 0b1011);
    // Aff1 / Aff2 / Aff3 / RS nonzero: nobody.
    assert_eq!(g.sgi_v3(0, 1 << 16 | 1), 0);
    assert_eq!(g.sgi_v3(0, 1 << 32 | 1), 0);
    assert_eq!(g.sgi_v3(0, 1 << 48 | 1), 0);
    assert_eq!(g.sgi_v3(0, 1 << 44 | 1), 0);
    assert_eq!(g.sgi_v3(7, 1), 0, "sender out of range");
    let mut big = Vgic::new(GicVersion::V3, 16, 32).unwrap();
    assert_eq!(big.sgi_v3(0, 0x8000), 1 << 15);
    assert_eq!(g.take_kicks() & !0b1111, 0);
}

// ---------------------------------------------------------------- fill / sync

#[test]
fn edge_spi_lifecycle() {
    let mut g = v2_ready(2, true);
    g.trigger_edge(40, 0).unwrap();
    assert!(g.pending_for(0));
    assert!(!g.pending_for(1));
    let f = g.fill(0, 4);
    assert_eq!(f.used(), 1);
    assert_eq!(f.values().len(), 4);
    assert_eq!(f.values()[1..], [0, 0, 0]);
    assert_eq!(f.hcr(), HCR_EN);
    let lr = decoded(&g, &f)[0];
    assert_eq!(
        (lr.vintid, lr.state, lr.eoi_maint, lr.hw),
        (40, LrState::Pending, false, None)
    );
    assert_eq!(
        rd(&g, 1, 0x204) & (1 << 8),
        1 << 8,
        "in-flight pending visible"
    );
    assert!(g.pending_for(0));
    // The guest acknowledged it.
    g.sync(0, &back(&g, &f, &[LrState::Active]));
    assert_eq!(rd(&g, 0, 0x304) & (1 << 8), 1 << 8);
    assert_eq!(rd(&g, 0, 0x204) & (1 << 8), 0);
    assert!(!g.pending_for(0));
    // Another edge while active: pending + active.
    g.trigger_edge(40, 0).unwrap();
    let f = g.fill(0, 4);
    assert_eq!(decoded(&g, &f)[0].state, LrState::PendingActive);
    // EOI, then taken again, EOI again.
    g.sync(0, &back(&g, &f, &[LrState::Pending]));
    let f = g.fill(0, 4);
    assert_eq!(decoded(&g, &f)[0].state, LrState::Pending);
    g.sync(0, &back(&g, &f, &[LrState::Invalid]));
    assert_eq!(g.fill(0, 4).used(), 0);
    assert_eq!(rd(&g, 0, 0x304), 0);
}

#[test]
fn level_spi_lifecycle() {
    let mut g = v2_ready(1, false);
    g.set_level(33, 0, true).unwrap();
    let f = g.fill(0, 4);
    let lr = decoded(&g, &f)[0];
    assert_eq!(
        (lr.vintid, lr.state, lr.eoi_maint),
        (33, LrState::Pending, true)
    );
    // Acked; the handler clears the device (MMIO exit), then EOIs.
    g.sync(0, &back(&g, &f, &[LrState::Active]));
    g.set_level(33, 0, false).unwrap();
    let f = g.fill(0, 4);
    assert_eq!(decoded(&g, &f)[0].state, LrState::Active);
    g.sync(0, &back(&g, &f, &[LrState::Invalid]));
    assert_eq!(g.fill(0, 4).used(), 0);
    // Line still high after EOI: injected again.
    g.set_level(33, 0, true).unwrap();
    let f = g.fill(0, 4);
    g.sync(0, &back(&g, &f, &[LrState::Invalid]));
    let f = g.fill(0, 4);
    assert_eq!(decoded(&g, &f)[0].state, LrState::Pending);
    // A pending level interrupt whose line drops before the ack disappears.
    g.sync(0, f.values());
    g.set_level(33, 0, false).unwrap();
    assert_eq!(g.fill(0, 4).used(), 0);
    // A software-pended level interrupt is consumed by the ack.
    g.sync(0, &[]);
    wr(&mut g, 0, 0x204, 1 << 1);
    let f = g.fill(0, 4);
    g.sync(0, &back(&g, &f, &[LrState::Active]));
    assert_eq!(rd(&g, 0, 0x204) & 2, 0);
    let f = g.fill(0, 4);
    assert_eq!(decoded(&g, &f)[0].state, LrState::Active);
}

#[test]
fn hw_mapped_timer_ppi() {
    let mut g = v3(2);
    linux_v3_boot(&mut g, 2);
    g.hw_map(27, 27).unwrap();
    for cpu in 0..2 {
        rw(&mut g, cpu, SGI + 0x100, 1 << 27);
    }
    // Physical PPI 27 arrived on CPU 1.
    g.set_level(27, 1, true).unwrap();
    assert!(!g.pending_for(0));
    let f = g.fill(1, 4);
    let lr = decoded(&g, &f)[0];
    assert_eq!(
        (lr.vintid, lr.hw, lr.eoi_maint, lr.state),
        (27, Some(27), false, LrState::Pending)
    );
    // A level-low call does nothing for HW-mapped interrupts.
    g.set_level(27, 1, false).unwrap();
    g.sync(1, &back(&g, &f, &[LrState::Active]));
    let f = g.fill(1, 4);
    assert_eq!(decoded(&g, &f)[0].state, LrState::Active);
    // Guest deactivation (hardware also deactivates the physical one): done, not resampled.
    g.sync(1, &back(&g, &f, &[LrState::Invalid]));
    assert_eq!(g.fill(1, 4).used(), 0);
    assert!(g.take_hw_deactivations().is_empty());
    // Guest clears a latched HW interrupt it never took: the physical must be deactivated.
    g.sync(1, &[]);
    g.set_level(27, 1, true).unwrap();
    rw(&mut g, 1, SGI + 0x280, 1 << 27);
    assert_eq!(g.take_hw_deactivations(), vec![27]);
    assert_eq!(g.fill(1, 4).used(), 0);
    // ... or one that is in a list register.
    g.sync(1, &[]);
    g.set_level(27, 1, true).unwrap();
    let f = g.fill(1, 4);
    rw(&mut g, 1, SGI + 0x280, 1 << 27);
    g.sync(1, f.values());
    assert_eq!(g.take_hw_deactivations(), vec![27]);
    // Active HW interrupt cleared through ICACTIVER.
    g.set_level(27, 1, true).unwrap();
    let f = g.fill(1, 4);
    g.sync(1, &back(&g, &f, &[LrState::Active]));
    rw(&mut g, 1, SGI + 0x380, 1 << 27);
    assert_eq!(g.take_hw_deactivations(), vec![27]);
    assert_eq!(g.fill(1, 4).used(), 0);
}

#[test]
fn overflow_requests_npie_and_priority_order() {
    let mut g = v2_ready(1, true);
    // Six pending SPIs; two of them with a higher priority.
    g.dist_write(0, 0x400 + 45, 1, 0x40);
    g.dist_write(0, 0x400 + 50, 1, 0x20);
    for i in [36, 37, 38, 39, 45, 50] {
        g.trigger_edge(i, 0).unwrap();
    }
    let f = g.fill(0, 4);
    assert_eq!(f.used(), 4);
    assert!(f.overflow());
    assert_eq!(f.hcr(), HCR_EN | HCR_NPIE);
    let ids: Vec<u32> = decoded(&g, &f).iter().map(|l| l.vintid).collect();
    assert_eq!(ids, [50, 45, 36, 37]);
    // The guest takes all four (NPIE fires), then EOIs two of them.
    g.sync(
        0,
        &back(
            &g,
            &f,
            &[
                LrState::Invalid,
                LrState::Invalid,
                LrState::Active,
                LrState::Active,
            ],
        ),
    );
    let f = g.fill(0, 4);
    let lrs = decoded(&g, &f);
    let ids: Vec<u32> = lrs.iter().map(|l| l.vintid).collect();
    assert_eq!(ids, [36, 37, 38, 39], "active ones kept, then pending");
    assert!(!f.overflow());
    // Active interrupts are never evicted by pending ones of higher priority.
    g.sync(0, &back(&g, &f, &[LrState::Active; 4]));
    g.trigger_edge(50, 0).unwrap();
    let f = g.fill(0, 4);
    assert_eq!(
        decoded(&g, &f)
            .iter()
            .filter(|l| l.state == LrState::Active)
            .count(),
        4
    );
    assert!(f.overflow());
    // nr_lrs is clamped.
    g.sync(0, f.values());
    assert_eq!(g.fill(0, 100).values().len(), MAX_LRS);
}

/// A guest (IRQs masked, or just slow) with as many active interrupts as list
/// registers and one more pending: the LRs hold only active (or active and pending)
/// ones, so NPIE ("no LR in the pending state") would fire on every entry and the
/// vCPU would never run again. Found by tests/guests/src/bin/gicgarbage.rs.
#[test]
fn overflow_with_only_active_lrs_asks_for_eoi_not_npie() {
    for version in [GicVersion::V2, GicVersion::V3] {
        let mut g = Vgic::new(version, 1, 64).unwrap();
        wr(&mut g, 0, 0x000, 3);
        if version == GicVersion::V2 {
            wr(&mut g, 0, 0x300, 0x0f); // SGIs 0..3 active
            wr(&mut g, 0, 0xf20, 0x01); // SGI 0 also pending from CPU 0
            wr(&mut g, 0, 0xf28, 0x01); // SGI 8 pending from CPU 0
        } else {
            rw(&mut g, 0, SGI + 0x100, 0x10f);
            rw(&mut g, 0, SGI + 0x300, 0x0f);
            rw(&mut g, 0, SGI + 0x200, 0x101);
        }
        let f = g.fill(0, 4);
        let lrs = decoded(&g, &f);
        assert_eq!(f.used(), 4, "{version:?}");
        assert!(f.overflow(), "{version:?}");
        let states: Vec<LrState> = lrs.iter().map(|l| l.state).collect();
        assert_eq!(
            states,
            [
                LrState::PendingActive,
                LrState::Active,
                LrState::Active,
                LrState::Active
            ],
            "{version:?}"
        );
        assert_eq!(f.hcr(), HCR_EN, "{version:?}: NPIE without a pending LR");
        assert!(
            lrs.iter().all(|l| l.eoi_maint),
            "{version:?}: EOI maintenance"
        );
        // The guest deactivates SGI 1 (the EOI maintenance interrupt makes it exit):
        // the pending SGI 8 gets the free LR and nothing is left over.
        let back_states = [
            LrState::PendingActive,
            LrState::Invalid,
            LrState::Active,
            LrState::Active,
        ];
        g.sync(0, &back(&g, &f, &back_states));
        let f = g.fill(0, 4);
        let lrs = decoded(&g, &f);
        assert!(
            lrs.iter()
                .any(|l| l.vintid == 8 && l.state == LrState::Pending),
            "{version:?}"
        );
        assert!(!f.overflow(), "{version:?}");
        assert_eq!(f.hcr(), HCR_EN, "{version:?}");
    }
}

#[test]
fn v2_sgi_multiple_sources() {
    let mut g = v2(3);
    linux_v2_boot(&mut g, 3);
    g.sgi_v2(0, 0x0004_0003);
    g.sgi_v2(1, 0x0004_0003);
    let f = g.fill(2, 4);
    let lrs = decoded(&g, &f);
    assert_eq!(lrs.len(), 1, "one LR per SGI number");
    assert_eq!(
        (lrs[0].vintid, lrs[0].source, lrs[0].eoi_maint),
        (3, 0, true)
    );
    assert_eq!(g.dist_read(2, 0xf23, 1), 0b10, "source 1 still waiting");
    g.sync(2, &back(&g, &f, &[LrState::Invalid]));
    let f = g.fill(2, 4);
    let lrs = decoded(&g, &f);
    assert_eq!(
        (lrs[0].vintid, lrs[0].source, lrs[0].eoi_maint),
        (3, 1, false)
    );
    // Same source again while active: pending + active in the same LR.
    g.sync(2, &back(&g, &f, &[LrState::Active]));
    g.sgi_v2(1, 0x0004_0003);
    let f = g.fill(2, 4);
    let lrs = decoded(&g, &f);
    assert_eq!((lrs[0].source, lrs[0].state), (1, LrState::PendingActive));
    // A different source while active waits (EOI maintenance set).
    g.sync(2, &back(&g, &f, &[LrState::Active]));
    g.sgi_v2(0, 0x0004_0003);
    let f = g.fill(2, 4);
    let lrs = decoded(&g, &f);
    assert_eq!(
        (lrs[0].source, lrs[0].state, lrs[0].eoi_maint),
        (1, LrState::Active, true)
    );
    g.sync(2, &back(&g, &f, &[LrState::Invalid]));
    let f = g.fill(2, 4);
    assert_eq!(decoded(&g, &f)[0].source, 0);
}

#[test]
fn spi_single_owner() {
    let mut g = v2_ready(2, true);
    g.dist_write(0, 0x800 + 40, 1, 0x03);
    g.trigger_edge(40, 1).unwrap();
    assert!(g.pending_for(0));
    assert!(!g.pending_for(1), "1-of-N: the lowest target");
    let f = g.fill(0, 4);
    g.sync(0, &back(&g, &f, &[LrState::Active]));
    // Retargeted to CPU 1 while active on CPU 0, and pending again.
    g.dist_write(1, 0x800 + 40, 1, 0x02);
    g.trigger_edge(40, 1).unwrap();
    assert_eq!(g.fill(1, 4).used(), 0, "still owned by CPU 0");
    g.sync(1, &[]);
    let f = g.fill(0, 4);
    assert_eq!(decoded(&g, &f)[0].state, LrState::PendingActive);
    g.sync(0, &back(&g, &f, &[LrState::Pending]));
    // Inactive now: the pending edge follows the new target.
    let f1 = g.fill(1, 4);
    assert_eq!(decoded(&g, &f1)[0].vintid, 40);
    assert_eq!(g.fill(0, 4).used(), 0);
}

#[test]
fn in_flight_changes_from_another_vcpu() {
    let mut g = v2_ready(2, true);
    g.trigger_edge(40, 0).unwrap();
    let f = g.fill(0, 4);
    g.take_kicks();
    // CPU 1 clears the pending state while it sits in CPU 0's LR.
    wr(&mut g, 1, 0x284, 1 << 8);
    assert_eq!(g.take_kicks(), 0b01);
    g.sync(0, f.values());
    assert_eq!(rd(&g, 0, 0x204), 0);
    assert_eq!(g.fill(0, 4).used(), 0);
    g.sync(0, &[]);
    // Set active, then clear active, while in flight.
    g.trigger_edge(40, 0).unwrap();
    let f = g.fill(0, 4);
    wr(&mut g, 1, 0x304, 1 << 8);
    g.sync(0, f.values());
    assert_eq!(rd(&g, 0, 0x304), 1 << 8);
    let f = g.fill(0, 4);
    assert_eq!(decoded(&g, &f)[0].state, LrState::PendingActive);
    wr(&mut g, 1, 0x384, 1 << 8);
    g.sync(0, &back(&g, &f, &[LrState::Active]));
    assert_eq!(rd(&g, 0, 0x304), 0);
    // Level interrupt pended by software while in flight survives the ack.
    wr(&mut g, 0, 0xc08, 0);
    g.set_level(41, 0, true).unwrap();
    let f = g.fill(0, 4);
    wr(&mut g, 1, 0x204, 1 << 9);
    g.sync(0, &back(&g, &f, &[LrState::Active]));
    assert_eq!(rd(&g, 0, 0x204) & (1 << 9), 1 << 9);
    // Disabling an in-flight interrupt kicks its owner.
    g.take_kicks();
    let f = g.fill(0, 4);
    wr(&mut g, 1, 0x184, 1 << 9);
    assert_eq!(g.take_kicks(), 1);
    g.sync(0, f.values());
}

#[test]
fn enables_gate_delivery() {
    let mut g = v2_ready(1, true);
    g.trigger_edge(40, 0).unwrap();
    wr(&mut g, 0, 0x000, 0);
    assert!(!g.pending_for(0));
    assert_eq!(g.fill(0, 4).used(), 0);
    g.sync(0, &[]);
    g.take_kicks();
    wr(&mut g, 0, 0x000, 2); // group 1 only: SPI 40 is group 0
    assert!(!g.pending_for(0));
    wr(&mut g, 0, 0x084, 1 << 8);
    assert!(g.pending_for(0));
    let f = g.fill(0, 4);
    assert!(decoded(&g, &f)[0].group1);
    g.sync(0, f.values());
    wr(&mut g, 0, 0x184, 1 << 8);
    assert!(!g.pending_for(0), "disabled");
    wr(&mut g, 0, 0x104, 1 << 8);
    assert_eq!(g.take_kicks(), 1, "enable kicks the target");
    assert!(g.pending_for(0));
    // Disabled but active: kept in the LR as active only.
    let f = g.fill(0, 4);
    g.sync(0, &back(&g, &f, &[LrState::Active]));
    g.trigger_edge(40, 0).unwrap();
    wr(&mut g, 0, 0x184, 1 << 8);
    let f = g.fill(0, 4);
    assert_eq!(decoded(&g, &f)[0].state, LrState::Active);
    assert!(!f.overflow());
    // SPI with no existing target is not delivered.
    g.sync(0, &back(&g, &f, &[LrState::Invalid]));
    g.dist_write(0, 0x800 + 41, 1, 0x02);
    g.trigger_edge(41, 0).unwrap();
    assert_eq!(g.fill(0, 4).used(), 0);
}

#[test]
fn v3_spi_routing_and_irm() {
    let mut g = v3(3);
    linux_v3_boot(&mut g, 3);
    wr(&mut g, 0, 0x0104, !0);
    g.dist_write(0, 0x6000 + 8 * 40, 8, 2);
    g.trigger_edge(40, 0).unwrap();
    assert!(g.pending_for(2) && !g.pending_for(0));
    g.dist_write(0, 0x6000 + 8 * 40, 8, 7);
    assert!(!g.pending_for(2), "no vCPU 7");
    g.dist_write(0, 0x6000 + 8 * 40, 8, 1 << 31);
    assert!(g.pending_for(0), "IRM: delivered to vCPU 0");
    g.dist_write(0, 0x6000 + 8 * 40, 8, 1 << 32 | 1);
    assert!(!g.pending_for(1), "Aff3 does not match");
}

#[test]
fn fill_twice_without_sync_is_stable() {
    let mut g = v2_ready(1, true);
    g.trigger_edge(40, 0).unwrap();
    let a = g.fill(0, 4);
    let b = g.fill(0, 4);
    assert_eq!(a, b);
    g.sync(0, &back(&g, &b, &[LrState::Invalid]));
    assert_eq!(g.fill(0, 4).used(), 0);
}

#[test]
fn reset_restores_defaults_and_keeps_hw_maps() {
    let mut g = v3(2);
    linux_v3_boot(&mut g, 2);
    g.hw_map(27, 27).unwrap();
    rw(&mut g, 0, SGI + 0x100, 1 << 27);
    g.set_level(27, 0, true).unwrap();
    let _ = g.fill(0, 4);
    g.reset();
    assert_eq!(g.take_kicks(), 0b11);
    assert_eq!(rd(&g, 0, 0), 0x50);
    assert_eq!(rr(&g, 0, SGI + 0x100), 0);
    assert_eq!(rr(&g, 0, 0x14), 0b110);
    assert_eq!(rr(&g, 0, SGI + 0x080), 0);
    linux_v3_boot(&mut g, 2);
    rw(&mut g, 0, SGI + 0x100, 1 << 27);
    g.set_level(27, 0, true).unwrap();
    let f = g.fill(0, 4);
    assert_eq!(decoded(&g, &f)[0].hw, Some(27));
}

#[test]
fn mmio_frames_through_the_router() {
    let shared = v3(2).into_shared();
    let mut r = MmioRouter::new();
    let gicd = GuestPhysAddr::new(0x0800_0000);
    let gicr = GuestPhysAddr::new(0x080a_0000);
    let id = r
        .register(
            GuestRange::new(gicd, 0x1_0000),
            Box::new(GicdMmio::new(shared.clone())),
        )
        .unwrap();
    r.register(
        GuestRange::new(gicr, shared.lock().redist_size()),
        Box::new(GicrMmio::new(shared.clone())),
    )
    .unwrap();
    // STR w1 / LDR w2 / LDR x3 accesses.
    let acc = |size: u8, write: bool| MmioAccess {
        size,
        sign_extend: false,
        reg: 2,
        reg64: size == 8,
        write,
        acquire_release: false,
    };
    r.device_mut::<GicdMmio>(id).unwrap().set_current_vcpu(1);
    r.dispatch(gicd, &acc(4, true), 0x13).unwrap();
    assert_eq!(
        r.dispatch(gicd, &acc(4, false), 0).unwrap().writeback,
        Some((2, 0x53))
    );
    let typer = r
        .dispatch(gicr + GICR_STRIDE + 8, &acc(8, false), 0)
        .unwrap()
        .writeback;
    assert_eq!(typer, Some((2, 1 << 32 | 1 << 8 | 1 << 4)));
    r.dispatch(gicr + GICR_STRIDE + SGI + 0x100, &acc(4, true), 0xffff)
        .unwrap();
    assert_eq!(rr(&shared.lock(), 1, SGI + 0x100), 0xffff);
    // Garbage never becomes an abort.
    assert!(r.dispatch(gicd + 0x1233, &acc(2, true), 7).is_ok());
    assert!(r.dispatch(gicr + 0x3_ffff, &acc(1, false), 0).is_ok());
    r.reset_devices();
    assert_eq!(rr(&shared.lock(), 1, SGI + 0x100), 0);
    assert_eq!(rd(&shared.lock(), 0, 0), 0x50);

    // v2 with a resolver.
    let v2s = v2(2).into_shared();
    let cur = Arc::new(core::sync::atomic::AtomicUsize::new(1));
    let c2 = cur.clone();
    let mut dev = GicdMmio::with_resolver(v2s.clone(), move || {
        c2.load(core::sync::atomic::Ordering::Relaxed)
    });
    use crate::mmio::MmioDevice;
    assert_eq!(dev.name(), "gicd");
    assert_eq!(dev.read(0x800, 4), Ok(0x0202_0202));
    cur.store(0, core::sync::atomic::Ordering::Relaxed);
    assert_eq!(dev.read(0x800, 4), Ok(0x0101_0101));
    dev.set_current_vcpu(1); // ignored with a resolver
    assert_eq!(dev.read(0x800, 1), Ok(0x01));
    assert!(Arc::ptr_eq(dev.vgic(), &v2s));
    let mut gr = GicrMmio::new(v2s);
    assert_eq!(gr.name(), "gicr");
    assert_eq!(gr.read(0, 4), Ok(0));
    assert_eq!(gr.write(0, 4, 1), Ok(()));
}

// ---------------------------------------------------------------- properties

#[derive(Clone, Debug)]
enum Op {
    Write {
        vcpu: usize,
        off: u64,
        size: u8,
        value: u64,
    },
    Read {
        vcpu: usize,
        off: u64,
        size: u8,
    },
    RWrite {
        off: u64,
        size: u8,
        value: u64,
    },
    Level {
        intid: u32,
        vcpu: usize,
        level: bool,
    },
    Edge {
        intid: u32,
        vcpu: usize,
    },
    Sgi {
        vcpu: usize,
        value: u64,
    },
    Run {
        vcpu: usize,
        nr: usize,
        states: Vec<u8>,
        garbage: Option<u64>,
    },
    HwMap {
        intid: u32,
    },
}

fn arb_size() -> impl Strategy<Value = u8> {
    prop_oneof![Just(1u8), Just(2), Just(4), Just(8), 0u8..=16]
}

fn arb_off(max: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..0x1000,
        2 => 0u64..max,
        1 => any::<u64>(),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..10, arb_off(0x1_0000), arb_size(), any::<u64>())
            .prop_map(|(vcpu, off, size, value)| Op::Write { vcpu, off, size, value }),
        2 => (0usize..10, arb_off(0x1_0000), arb_size()).prop_map(|(vcpu, off, size)| Op::Read { vcpu, off, size }),
        3 => (arb_off(0x8_0000), arb_size(), any::<u64>())
            .prop_map(|(off, size, value)| Op::RWrite { off, size, value }),
        2 => (0u32..1100, 0usize..10, any::<bool>()).prop_map(|(intid, vcpu, level)| Op::Level { intid, vcpu, level }),
        2 => (0u32..1100, 0usize..10).prop_map(|(intid, vcpu)| Op::Edge { intid, vcpu }),
        2 => (0usize..10, any::<u64>()).prop_map(|(vcpu, value)| Op::Sgi { vcpu, value }),
        4 => (0usize..10, 0usize..20, proptest::collection::vec(0u8..4, 0..20), proptest::option::of(any::<u64>()))
            .prop_map(|(vcpu, nr, states, garbage)| Op::Run { vcpu, nr, states, garbage }),
        1 => (0u32..100).prop_map(|intid| Op::HwMap { intid }),
    ]
}

fn check_invariants(g: &mut Vgic) -> Result<(), TestCaseError> {
    let n = g.nr_vcpus();
    let mask = (1u64 << n) - 1;
    for v in 0..n {
        for i in 0..g.nr_irqs() {
            let irq = *g.irq(v, i).unwrap();
            prop_assert_eq!(irq.priority & 7, 0);
            prop_assert!(u64::from(irq.targets) & !mask == 0);
            prop_assert!(u64::from(irq.src) & !mask == 0 || g.version() == GicVersion::V3);
            if i < 16 {
                prop_assert!(irq.edge, "SGIs are edge");
            }
            prop_assert!(!irq.in_lr || i >= 32 || g.vcpus[v].nflight > 0);
        }
    }
    // Fill every vCPU without syncing: an SPI is in at most one vCPU's LRs, and every
    // LR is valid, unique on its vCPU and names an existing INTID.
    let mut seen_spi = alloc::collections::BTreeSet::new();
    let mut fills = Vec::new();
    for v in 0..n {
        let f = g.fill(v, 4);
        let lrs = decoded(g, &f);
        let mut ids = alloc::collections::BTreeSet::new();
        for lr in &lrs {
            prop_assert!(lr.state != LrState::Invalid);
            prop_assert!(lr.vintid < g.nr_irqs());
            prop_assert!(ids.insert(lr.vintid), "duplicate vINTID {}", lr.vintid);
            if lr.vintid >= 32 {
                prop_assert!(seen_spi.insert(lr.vintid), "SPI {} on two vCPUs", lr.vintid);
            }
        }
        prop_assert!(f.values()[f.used()..].iter().all(|&x| x == 0));
        // NPIE only with a pending LR, else it fires before the guest runs, forever.
        if f.hcr() & HCR_NPIE != 0 {
            prop_assert!(
                lrs.iter().any(|l| l.state == LrState::Pending),
                "NPIE without a pending LR"
            );
        }
        fills.push(f);
    }
    for (v, f) in fills.iter().enumerate() {
        g.sync(v, f.values());
    }
    for v in 0..n {
        prop_assert_eq!(g.vcpus[v].nflight, 0);
        for i in 0..g.nr_irqs() {
            let irq = g.irq(v, i).unwrap();
            prop_assert!(
                !irq.in_lr && irq.req == 0,
                "INTID {} still in flight after sync",
                i
            );
            if let Some(o) = irq.owner {
                prop_assert!(irq.active && usize::from(o) < n);
            }
        }
    }
    Ok(())
}

fn apply(g: &mut Vgic, op: &Op) {
    match *op {
        Op::Write {
            vcpu,
            off,
            size,
            value,
        } => g.dist_write(vcpu, off, size, value),
        Op::Read { vcpu, off, size } => {
            let _ = g.dist_read(vcpu, off, size);
        }
        Op::RWrite { off, size, value } => g.redist_write(off, size, value),
        Op::Level { intid, vcpu, level } => {
            let _ = g.set_level(intid, vcpu, level);
        }
        Op::Edge { intid, vcpu } => {
            let _ = g.trigger_edge(intid, vcpu);
        }
        Op::Sgi { vcpu, value } => {
            let _ = g.sgi_v2(vcpu, value as u32);
            let _ = g.sgi_v3(vcpu, value);
        }
        Op::Run {
            vcpu,
            nr,
            ref states,
            garbage,
        } => {
            let f = g.fill(vcpu, nr);
            let mut lrs: Vec<u64> = f.values()[..f.used()].to_vec();
            for (i, lr) in lrs.iter_mut().enumerate() {
                let s = LrState::from_bits(u64::from(states.get(i).copied().unwrap_or(0)));
                let mut d = Lr::decode(g.version(), *lr);
                d.state = s;
                *lr = d.encode(g.version());
            }
            if let Some(x) = garbage {
                lrs.push(x);
                if let Some(first) = lrs.first_mut() {
                    *first ^= x;
                }
            }
            g.sync(vcpu, &lrs);
            let _ = g.pending_for(vcpu);
        }
        Op::HwMap { intid } => {
            let _ = g.hw_map(intid, intid);
        }
    }
    let _ = g.take_kicks();
    let _ = g.take_hw_deactivations();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn garbage_never_panics_v2(ncpu in 1usize..=8, spis in 0usize..200, ops in proptest::collection::vec(arb_op(), 1..60)) {
        let mut g = Vgic::new(GicVersion::V2, ncpu, spis).unwrap();
        linux_v2_boot(&mut g, ncpu);
        for op in &ops {
            apply(&mut g, op);
        }
        check_invariants(&mut g)?;
    }

    #[test]
    fn garbage_never_panics_v3(ncpu in 1usize..=16, spis in 0usize..200, ops in proptest::collection::vec(arb_op(), 1..60)) {
        let mut g = Vgic::new(GicVersion::V3, ncpu, spis).unwrap();
        linux_v3_boot(&mut g, ncpu);
        for op in &ops {
            apply(&mut g, op);
        }
        check_invariants(&mut g)?;
    }
}

/// A WFI with a hardware-linked timer interrupt still pending in its list register
/// (the guest had interrupts masked) must not sleep: the interrupt is still pending.
#[test]
fn pending_hw_interrupt_survives_sync_for_wfi() {
    {
        let ver = GicVersion::V2;
        let mut g = Vgic::new(ver, 1, 32).unwrap();
        g.hw_map(27, 27).unwrap();
        g.dist_write(0, 0x000, 4, 1);
        g.dist_write(0, 0x100, 4, 1 << 27);
        g.trigger_edge(27, 0).unwrap();
        assert!(g.pending_for(0), "{ver:?}: pending before fill");
        let f = g.fill(0, 4);
        assert_eq!(f.used(), 1);
        let lrs = f.values()[..1].to_vec();
        // The guest ran with interrupts masked: the LR comes back unchanged.
        g.sync(0, &lrs);
        assert!(g.pending_for(0), "{ver:?}: still pending after sync");
        let f = g.fill(0, 4);
        assert_eq!(f.used(), 1, "{ver:?}: refilled");
    }
}
