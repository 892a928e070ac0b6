//! Unit and property tests of the walker, the builder and the sync paths against each other.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::desc::PageTableDesc;
use super::engine::{HostTlbOp, Resolution, TlbOp};
use super::sim::{RegionMap, SparseMemory};
use super::walk::{
    ap_permissions, ats1, lookup, par, resolve_attrs, sctlr, translate, ttbcr, Access, AccessKind,
    AtsOp, Cacheability, Fault, FaultKind, GuestMemory, MemType, PageSize, Pl, Regime, Translation,
};
use super::{
    Backing, GuestMap, L1Desc, MemoryStats, Pool, RegionAttrs, ShadowEngine, ShadowError,
    ShadowOptions, ShadowRegs, ShadowView, SyncOutcome,
};
use crate::addr::{GuestPhysAddr, HostPhysAddr, VirtAddr};

// ---------------------------------------------------------------------------------------
// Fixture: guest RAM, host map and table placement.

const RAM_A: u64 = 0x4000_0000; // 32 MiB, linearly backed at HPA_A
const RAM_A_LEN: u64 = 0x200_0000;
const HPA_A: u64 = 0x6000_0000;
const FRAG64: u64 = 0x4200_0000; // 2 MiB backed in swapped 64 KiB chunks
const FRAG4: u64 = 0x4220_0000; // 1 MiB backed in swapped 4 KiB pages
const HIGH: u64 = 0x1_0000_0000; // 16 MiB above 4 GiB
const MMIO: u64 = 0x0900_0000;
const TTB0: u64 = 0x4100_0000;
const TTB0_ALT: u64 = 0x4104_0000;
const TTB1: u64 = 0x4100_4000;
const TTB0_OTHER: u64 = 0x4108_0000;
const L2_AREA: u64 = 0x4101_0000; // 1 KiB guest L2 tables
const N_L2: usize = 8;
/// Walk-trap IPA of the walk-trap engines: outside the pool, so unreadable through
/// [`ShadowView`] (1 KiB aligned, deliberately not 4 KiB aligned).
const WALK_TRAP: u32 = 0x0800_0400;
/// A first-level table base outside RAM.
const TTB_BAD: u64 = 0x0910_0000;
/// In the walk-trap memory only ([`guest_mem_wt`]): RAM for 512 bytes from here, so a
/// 1 KiB L2 table here is partly readable and a 16 KiB L1 table here readable for 128
/// indices. The host map has no RAM here.
const PARTIAL: u64 = 0x4230_0000;
const PARTIAL_LEN: u64 = 0x200;

fn host_map() -> RegionMap {
    let mut m = RegionMap::new();
    m.add_ram(RAM_A, RAM_A_LEN, HPA_A);
    for c in 0..32u64 {
        m.add_ram(
            FRAG64 + c * 0x1_0000,
            0x1_0000,
            0x7000_0000 + (c ^ 1) * 0x1_0000,
        );
    }
    for k in 0..256u64 {
        m.add_ram(FRAG4 + k * 0x1000, 0x1000, 0x7100_0000 + (k ^ 1) * 0x1000);
    }
    m.add_ram(HIGH, 0x100_0000, 0x2_0000_0000);
    m
}

fn guest_mem(map: &RegionMap) -> SparseMemory {
    SparseMemory::new(&map.ram_ranges())
}

fn wr(mem: &mut SparseMemory, gpa: u64, v: u32) {
    mem.write_u32(gpa, v).expect("fixture writes inside RAM");
}

fn base_regime() -> Regime {
    Regime {
        ttbr0: TTB0 as u32,
        ttbr1: TTB1 as u32,
        ttbcr: 0,
        dacr: 0x5555_5555,
        sctlr: sctlr::M,
        contextidr: 7,
        prrr: 0,
        nmrr: 0,
    }
}

fn acc(pl: Pl, kind: AccessKind) -> Access {
    Access { pl, kind }
}

const P1R: Access = Access {
    pl: Pl::Pl1,
    kind: AccessKind::Read,
};
const P1W: Access = Access {
    pl: Pl::Pl1,
    kind: AccessKind::Write,
};
const P0R: Access = Access {
    pl: Pl::Pl0,
    kind: AccessKind::Read,
};
const P0W: Access = Access {
    pl: Pl::Pl0,
    kind: AccessKind::Write,
};

fn section(pa: u64, domain: u32, ap: u32) -> u32 {
    (pa as u32 & 0xfff0_0000) | 2 | (domain << 5) | ((ap & 3) << 10) | ((ap >> 2) << 15)
}

fn page_table(l2: u64, domain: u32) -> u32 {
    (l2 as u32 & 0xffff_fc00) | 1 | (domain << 5)
}

fn small(pa: u64, ap: u32) -> u32 {
    (pa as u32 & 0xffff_f000) | 2 | ((ap & 3) << 4) | ((ap >> 2) << 9)
}

fn va(v: u32) -> VirtAddr {
    VirtAddr::new(v as u64)
}

// ---------------------------------------------------------------------------------------
// Walker rules.

#[test]
fn ap_table_is_the_architectural_one() {
    // (PL1 r, PL1 w, PL0 r, PL0 w) per AP[2:0] with AFE=0, from ARM ARM table B3-8.
    let expect = [
        (false, false, false, false),
        (true, true, false, false),
        (true, true, true, false),
        (true, true, true, true),
        (false, false, false, false), // reserved
        (true, false, false, false),
        (true, false, true, false), // deprecated
        (true, false, true, false),
    ];
    let map = host_map();
    for ap in 0..8u32 {
        let mut mem = guest_mem(&map);
        wr(&mut mem, TTB0 + (0x400 << 2), section(RAM_A, 0, ap));
        let r = base_regime();
        let got: Vec<bool> = [P1R, P1W, P0R, P0W]
            .iter()
            .map(|&a| translate(&r, &mem, va(0x4000_0000), a).is_ok())
            .collect();
        let e = expect[ap as usize];
        assert_eq!(got, [e.0, e.1, e.2, e.3], "AP={ap:03b}");
        assert_eq!(ap_permissions(ap as u8, false), ((e.0, e.1), (e.2, e.3)));
        // The failures are level-1 permission faults in domain 0.
        if !e.3 {
            let f = translate(&r, &mem, va(0x4000_0000), P0W).unwrap_err();
            assert_eq!(
                f,
                Fault {
                    kind: FaultKind::Permission,
                    level: 1,
                    domain: Some(0)
                }
            );
        }
    }
}

#[test]
fn afe_simplified_model_and_access_flag_priority() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    r.sctlr |= sctlr::AFE;
    r.dacr = 0; // domain 0 no access: the access flag fault must still win
    wr(&mut mem, TTB0 + (0x400 << 2), section(RAM_A, 0, 0b010)); // AF=0
    let f = translate(&r, &mem, va(0x4000_0000), P1R).unwrap_err();
    assert_eq!(f.kind, FaultKind::AccessFlag);
    assert_eq!(f.fs(), 0b00011);
    // AF=1, client: AP[2:1]=01 means full access.
    r.dacr = 1;
    wr(&mut mem, TTB0 + (0x400 << 2), section(RAM_A, 0, 0b011));
    assert!(translate(&r, &mem, va(0x4000_0000), P0W).is_ok());
    // AP[2:1]=00 with AF=1: PL1 RW only.
    wr(&mut mem, TTB0 + (0x400 << 2), section(RAM_A, 0, 0b001));
    assert!(translate(&r, &mem, va(0x4000_0000), P1W).is_ok());
    assert!(translate(&r, &mem, va(0x4000_0000), P0R).is_err());
    // Level-2 access flag fault.
    wr(&mut mem, TTB0 + (0x401 << 2), page_table(L2_AREA, 3));
    wr(&mut mem, L2_AREA + 4 * 5, small(RAM_A, 0b010));
    r.dacr = 0x55;
    let f = translate(&r, &mem, va(0x4010_5000), P1R).unwrap_err();
    assert_eq!(
        f,
        Fault {
            kind: FaultKind::AccessFlag,
            level: 2,
            domain: Some(3)
        }
    );
    assert_eq!(f.fs(), 0b00110);
}

#[test]
fn domains_and_fault_priority() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    wr(&mut mem, TTB0 + (0x400 << 2), section(RAM_A, 5, 0b000)); // no access in AP
    wr(&mut mem, TTB0 + (0x401 << 2), page_table(L2_AREA, 9));
    wr(&mut mem, L2_AREA + 4 * 2, small(RAM_A + 0x2000, 0b000) | 1); // XN, AP none
    for (dom_bits, kind) in [
        (0u32, Some(FaultKind::Domain)),
        (2, Some(FaultKind::Domain)),
        (1, Some(FaultKind::Permission)),
        (3, None),
    ] {
        r.dacr = (dom_bits << 10) | (dom_bits << 18);
        for (v, level, dom) in [(0x4000_0000u32, 1u8, 5u8), (0x4010_2000, 2, 9)] {
            for a in [P1R, acc(Pl::Pl0, AccessKind::Exec)] {
                let got = translate(&r, &mem, va(v), a);
                match kind {
                    Some(k) => assert_eq!(
                        got.unwrap_err(),
                        Fault {
                            kind: k,
                            level,
                            domain: Some(dom)
                        }
                    ),
                    // Manager: no permission check, XN ignored.
                    None => assert_eq!(
                        got.unwrap().pa,
                        map.lookup(0).map_or(0, |_| 0)
                            + if level == 1 { RAM_A } else { RAM_A + 0x2000 }
                    ),
                }
            }
        }
    }
    // Translation faults come first, and have no valid domain at level 1.
    r.dacr = 0;
    let f = translate(&r, &mem, va(0x5000_0000), P1R).unwrap_err();
    assert_eq!(
        f,
        Fault {
            kind: FaultKind::Translation,
            level: 1,
            domain: None
        }
    );
    let f = translate(&r, &mem, va(0x4010_3000), P1R).unwrap_err();
    assert_eq!(
        f,
        Fault {
            kind: FaultKind::Translation,
            level: 2,
            domain: Some(9)
        }
    );
    assert_eq!(f.dfsr(true), 0b0111 | (9 << 4) | (1 << 11));
    assert_eq!(f.ifsr(), 0b0111);
}

#[test]
fn walk_external_aborts() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    // L2 table pointer outside RAM.
    wr(&mut mem, TTB0 + (0x400 << 2), page_table(MMIO, 4));
    let f = translate(&r, &mem, va(0x4000_0000), P1R).unwrap_err();
    assert_eq!(
        f,
        Fault {
            kind: FaultKind::ExternalAbortOnWalk,
            level: 2,
            domain: Some(4)
        }
    );
    assert_eq!(f.fs(), 0b01110);
    // TTBR0 outside RAM.
    r.ttbr0 = MMIO as u32;
    let f = translate(&r, &mem, va(0x4000_0000), P1R).unwrap_err();
    assert_eq!(
        f,
        Fault {
            kind: FaultKind::ExternalAbortOnWalk,
            level: 1,
            domain: None
        }
    );
    assert_eq!(f.dfsr(false), 0b1100);
}

#[test]
fn ttbcr_split_and_pd_bits() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    r.ttbcr = 2; // TTBR0 covers VA < 1 GiB with a 4 KiB table
    wr(&mut mem, TTB0 + (0x100 << 2), section(RAM_A, 0, 3));
    wr(
        &mut mem,
        TTB1 + (0x800 << 2),
        section(RAM_A + 0x10_0000, 0, 3),
    );
    assert_eq!(
        translate(&r, &mem, va(0x1000_1234), P1R).unwrap().pa,
        RAM_A + 0x1234
    );
    assert_eq!(
        translate(&r, &mem, va(0x8000_0010), P1R).unwrap().pa,
        RAM_A + 0x10_0010
    );
    // With N=0 the TTBR1 entry is never used.
    r.ttbcr = 0;
    assert!(translate(&r, &mem, va(0x8000_0010), P1R).is_err());
    // PD0/PD1 give level-1 translation faults.
    r.ttbcr = 2 | ttbcr::PD1;
    assert!(translate(&r, &mem, va(0x1000_0000), P1R).is_ok());
    assert_eq!(
        translate(&r, &mem, va(0x8000_0000), P1R).unwrap_err().fs(),
        0b00101
    );
    r.ttbcr = 2 | ttbcr::PD0;
    assert_eq!(
        translate(&r, &mem, va(0x1000_0000), P1R).unwrap_err().fs(),
        0b00101
    );
    // The TTBR0 table base is aligned to 16 KiB >> N.
    r.ttbcr = 2;
    r.ttbr0 = TTB0 as u32 | 0xfff & !0x7f | 0x5b;
    assert_eq!(r.ttbr0_table(), (TTB0 as u32, 0x1000));
}

#[test]
fn xn_pxn_wxn_uwxn() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    let x1 = acc(Pl::Pl1, AccessKind::Exec);
    let x0 = acc(Pl::Pl0, AccessKind::Exec);
    wr(&mut mem, TTB0 + (0x400 << 2), section(RAM_A, 0, 3) | 1); // PXN
    assert!(translate(&r, &mem, va(0x4000_0000), x1).is_err());
    assert!(translate(&r, &mem, va(0x4000_0000), x0).is_ok());
    wr(&mut mem, TTB0 + (0x400 << 2), section(RAM_A, 0, 3) | 1 << 4); // XN
    assert!(translate(&r, &mem, va(0x4000_0000), x1).is_err());
    assert!(translate(&r, &mem, va(0x4000_0000), x0).is_err());
    // Fetch needs read permission.
    wr(&mut mem, TTB0 + (0x400 << 2), section(RAM_A, 0, 1));
    assert!(translate(&r, &mem, va(0x4000_0000), x0).is_err());
    assert!(translate(&r, &mem, va(0x4000_0000), x1).is_ok());
    // WXN: writable means XN at that level.
    r.sctlr |= sctlr::WXN;
    assert!(translate(&r, &mem, va(0x4000_0000), x1).is_err());
    // UWXN: PL0-writable means PXN.
    r.sctlr = sctlr::M | sctlr::UWXN;
    wr(&mut mem, TTB0 + (0x400 << 2), section(RAM_A, 0, 3));
    assert!(translate(&r, &mem, va(0x4000_0000), x1).is_err());
    assert!(translate(&r, &mem, va(0x4000_0000), x0).is_ok());
    // PXN from the page-table descriptor applies to its pages.
    r.sctlr = sctlr::M;
    wr(
        &mut mem,
        TTB0 + (0x401 << 2),
        page_table(L2_AREA, 0) | 1 << 2,
    );
    wr(&mut mem, L2_AREA, small(RAM_A, 3));
    assert!(translate(&r, &mem, va(0x4010_0000), x1).is_err());
    assert!(translate(&r, &mem, va(0x4010_0000), x0).is_ok());
}

#[test]
fn large_pages_and_supersections() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let r = base_regime();
    wr(&mut mem, TTB0 + (0x401 << 2), page_table(L2_AREA, 0));
    let large = (RAM_A as u32 + 0x5_0000) | 1 | (3 << 4);
    for j in 16..32 {
        wr(&mut mem, L2_AREA + 4 * j, large);
    }
    let t = translate(&r, &mem, va(0x4011_abcd), P0W).unwrap();
    assert_eq!((t.pa, t.size), (RAM_A + 0x5_abcd, PageSize::Large));
    // Supersection with PA[39:32] = 0x01: entries 0x100..0x10f.
    let ss = (1 << 18) | 2 | (1 << 20) | (3 << 10);
    for i in 0x100..0x110u64 {
        wr(&mut mem, TTB0 + i * 4, ss);
    }
    let t = translate(&r, &mem, va(0x10ab_cdef), P1R).unwrap();
    assert_eq!(
        (t.pa, t.size, t.domain),
        (HIGH + 0xab_cdef, PageSize::Supersection, 0)
    );
    let p = par(&Ok(t));
    assert_eq!(p & 0xff00_0000, 0);
    assert_eq!((p >> 16) & 0xff, 0x01);
    assert_eq!(p & 0b11, 0b10, "SS set, F clear");
}

#[test]
fn memory_attributes_with_and_without_tex_remap() {
    let r = base_regime();
    let at = |tex, c, b, s| resolve_attrs(&r, RegionAttrs { tex, c, b, s });
    assert_eq!(
        at(0, false, false, false).mem_type,
        MemType::StronglyOrdered
    );
    assert!(at(0, false, false, false).shareable);
    assert_eq!(at(0, false, true, false).mem_type, MemType::Device);
    assert!(at(0, false, true, false).shareable);
    assert_eq!(at(2, false, false, true).mem_type, MemType::Device);
    assert!(!at(2, false, false, true).shareable);
    assert_eq!(
        at(1, true, true, true).mem_type,
        MemType::Normal {
            inner: Cacheability::WriteBackWriteAllocate,
            outer: Cacheability::WriteBackWriteAllocate
        }
    );
    assert_eq!(
        at(0b110, false, true, false).mem_type,
        MemType::Normal {
            inner: Cacheability::WriteBackWriteAllocate,
            outer: Cacheability::WriteThrough
        }
    );
    assert_eq!(at(1, false, true, false).mem_type, MemType::Reserved);
    assert_eq!(at(3, true, true, false).mem_type, MemType::Reserved);
    assert_eq!(
        at(1, true, false, false).mem_type,
        MemType::ImplementationDefined
    );
    // TEX remap: region n = TEX[0]:C:B. Make region 5 Normal inner WT outer WBWA, S=1 →
    // shareable via NS1, not outer shareable via NOS5; region 1 Device with DS0=1.
    let mut r = base_regime();
    r.sctlr |= sctlr::TRE;
    r.prrr = (2 << 10) | (1 << 2) | (1 << 16) | (1 << 19) | (1 << (24 + 5));
    r.nmrr = (2 << 10) | (1 << (16 + 10));
    let a = resolve_attrs(
        &r,
        RegionAttrs {
            tex: 0b111,
            c: false,
            b: true,
            s: true,
        },
    );
    assert_eq!(
        a.mem_type,
        MemType::Normal {
            inner: Cacheability::WriteThrough,
            outer: Cacheability::WriteBackWriteAllocate
        }
    );
    assert!(a.shareable && !a.outer_shareable);
    let a = resolve_attrs(
        &r,
        RegionAttrs {
            tex: 0b001,
            c: false,
            b: true,
            s: false,
        },
    );
    assert_eq!(
        a.mem_type,
        MemType::Normal {
            inner: Cacheability::WriteThrough,
            outer: Cacheability::WriteBackWriteAllocate
        }
    );
    assert!(!a.shareable, "NS0 clear");
    let a = resolve_attrs(
        &r,
        RegionAttrs {
            tex: 0,
            c: false,
            b: true,
            s: false,
        },
    );
    assert_eq!((a.mem_type, a.shareable), (MemType::Device, true));
    let a = resolve_attrs(
        &r,
        RegionAttrs {
            tex: 0,
            c: false,
            b: false,
            s: false,
        },
    );
    assert_eq!(a.mem_type, MemType::StronglyOrdered);
}

#[test]
fn par_values() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let r = base_regime();
    // Normal WBWA shareable, NS set, AP PL1 only.
    let w = section(RAM_A, 2, 1) | (1 << 12) | (1 << 3) | (1 << 2) | (1 << 16) | (1 << 19);
    wr(&mut mem, TTB0 + (0x400 << 2), w);
    let ok = ats1(&r, &mem, va(0x4000_5678), AtsOp::Cpw);
    assert_eq!(ok & 0xffff_f000, RAM_A as u32 + 0x5000);
    assert_eq!(ok & 1, 0);
    assert_eq!((ok >> 4) & 7, 0b101, "inner WBWA");
    assert_eq!((ok >> 2) & 3, 0b01, "outer WBWA");
    assert_eq!((ok >> 7) & 1, 1, "SH");
    assert_eq!((ok >> 9) & 1, 1, "NS");
    assert_eq!((ok >> 10) & 1, 0, "outer shareable");
    // PL0 write: level-1 permission fault, FS=0b01101 in PAR[6:1].
    let f = ats1(&r, &mem, va(0x4000_5678), AtsOp::Cuw);
    assert_eq!(f, 1 | (0b01101 << 1));
    let f2 = ats1(&r, &mem, va(0x4000_5678), AtsOp::Cur);
    assert_eq!(f2, f);
    // Strongly-ordered reports inner 0b001.
    wr(&mut mem, TTB0 + (0x400 << 2), section(RAM_A, 2, 3));
    assert_eq!(
        (ats1(&r, &mem, va(0x4000_0000), AtsOp::Cur) >> 4) & 7,
        0b001
    );
    // MMU off: flat.
    let mut off = r;
    off.sctlr = 0;
    assert_eq!(
        ats1(&off, &mem, va(0x1234_5678), AtsOp::Cuw) & 0xffff_f001,
        0x1234_5000
    );
}

// ---------------------------------------------------------------------------------------
// Builder and sync rules.

fn engine(blocks: usize, roots: usize) -> ShadowEngine {
    ShadowEngine::new(Pool::new(HostPhysAddr::new(0x8000_0000), blocks), roots)
}

#[test]
fn builder_picks_sections_pages_and_holes() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let r = base_regime();
    wr(
        &mut mem,
        TTB0 + (0x500 << 2),
        section(RAM_A + 0x50_0000, 0, 3),
    ); // aligned, contiguous
    wr(&mut mem, TTB0 + (0x420 << 2), section(FRAG64, 0, 3)); // 64 KiB runs
    wr(&mut mem, TTB0 + (0x422 << 2), section(FRAG4, 0, 3)); // 4 KiB runs
    wr(&mut mem, TTB0 + (0x090 << 2), section(MMIO, 0, 3)); // hole
    let mut e = engine(8, 2);
    e.set_regime(r, &mem, &map).unwrap();
    let s = |v: u32| e.shadow_translate(va(v), P0R).unwrap();
    let t = s(0x5001_2345).unwrap();
    assert_eq!((t.pa, t.size), (HPA_A + 0x51_2345, PageSize::Section));
    let t = s(0x4201_2345).unwrap();
    assert_eq!((t.pa, t.size), (0x7000_2345, PageSize::Large));
    let t = s(0x4220_1345).unwrap();
    assert_eq!((t.pa, t.size), (0x7100_0345, PageSize::Small));
    assert!(s(0x0900_0000).is_err());
    assert_eq!(
        e.classify(va(0x0900_0010), P0R, &mem, &map),
        Resolution::Mmio {
            gpa: GuestPhysAddr::new(MMIO + 0x10)
        }
    );
    assert_eq!(
        e.classify(va(0x0a00_0000), P0R, &mem, &map),
        Resolution::Guest(Fault {
            kind: FaultKind::Translation,
            level: 1,
            domain: None
        })
    );
}

#[test]
fn table_pages_are_write_protected_and_released() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let r = base_regime();
    // The guest maps its own tables' MiB (0x4100_0000) with a section, and VA 0x4010_0000
    // through an L2 table in that MiB.
    wr(&mut mem, TTB0 + (0x410 << 2), section(0x4100_0000, 0, 3));
    wr(&mut mem, TTB0 + (0x401 << 2), page_table(L2_AREA, 0));
    wr(&mut mem, L2_AREA, small(RAM_A, 3));
    let mut e = engine(8, 2);
    e.set_regime(r, &mem, &map).unwrap();
    assert!(e.is_protected(GuestPhysAddr::new(L2_AREA)));
    assert!(e.is_protected(GuestPhysAddr::new(TTB0 + 0x3000)));
    // Writes to the L2 table page trap; reads and writes elsewhere in the MiB do not.
    let l2va = 0x4101_0000;
    assert!(e.shadow_translate(va(l2va), P1W).unwrap().is_err());
    assert!(e.shadow_translate(va(l2va), P1R).unwrap().is_ok());
    assert!(e.shadow_translate(va(0x4105_0000), P1W).unwrap().is_ok());
    assert_eq!(
        e.classify(va(l2va), P1W, &mem, &map),
        Resolution::WriteProtect {
            gpa: GuestPhysAddr::new(L2_AREA)
        }
    );
    // The guest unhooks the L2 table: its page becomes writable again.
    wr(&mut mem, TTB0 + (0x401 << 2), 0);
    let out = e
        .sync_write(GuestPhysAddr::new(TTB0 + (0x401 << 2)), 0, &mem, &map)
        .unwrap();
    assert_ne!(out.flush, HostTlbOp::None);
    assert!(!e.is_protected(GuestPhysAddr::new(L2_AREA)));
    assert!(e.shadow_translate(va(l2va), P1W).unwrap().is_ok());
    assert!(e.shadow_translate(va(0x4010_0000), P1R).unwrap().is_err());
}

#[test]
fn l2_descriptor_write_sync() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let r = base_regime();
    wr(&mut mem, TTB0 + (0x401 << 2), page_table(L2_AREA, 0));
    let mut e = engine(8, 2);
    e.set_regime(r, &mem, &map).unwrap();
    assert!(e.shadow_translate(va(0x4010_7000), P0R).unwrap().is_err());
    let d = small(RAM_A + 0x9000, 3);
    let out = e
        .sync_write(GuestPhysAddr::new(L2_AREA + 7 * 4), d, &mem, &map)
        .unwrap();
    assert_eq!(
        out.flush,
        HostTlbOp::Mvaa {
            va: 0x4010_7000,
            pages: 1
        }
    );
    assert_eq!(
        e.shadow_translate(va(0x4010_7abc), P0R)
            .unwrap()
            .unwrap()
            .pa,
        HPA_A + 0x9abc
    );
    assert_eq!(e.stats().syncs, 1);
}

#[test]
fn dacr_client_noaccess_is_free_manager_refills() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    wr(&mut mem, TTB0 + (0x400 << 2), section(RAM_A, 3, 0b101)); // PL1 RO
    let mut e = engine(8, 2);
    e.set_regime(r, &mem, &map).unwrap();
    let fills = e.stats().fills;
    r.dacr = 0x5555_5555 & !(3 << 6); // domain 3 no access
    let ch = e.set_regime(r, &mem, &map).unwrap();
    assert_eq!(e.stats().fills, fills);
    assert_eq!(ch.flush, HostTlbOp::None);
    assert_eq!(
        e.shadow_translate(va(0x4000_0000), P1R)
            .unwrap()
            .unwrap_err()
            .kind,
        FaultKind::Domain
    );
    r.dacr |= 3 << 6; // manager
    e.set_regime(r, &mem, &map).unwrap();
    assert!(e.stats().fills > fills);
    assert!(e.shadow_translate(va(0x4000_0000), P0W).unwrap().is_ok());
    assert_eq!(
        e.shadow_regs().unwrap().dacr >> 6 & 3,
        1,
        "manager shadows as client"
    );
}

#[test]
fn root_cache_hits_and_evicts() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    wr(&mut mem, TTB0 + (0x400 << 2), section(RAM_A, 0, 3));
    wr(
        &mut mem,
        TTB0_ALT + (0x400 << 2),
        section(RAM_A + 0x10_0000, 0, 3),
    );
    let mut e = engine(8, 2);
    e.set_regime(r, &mem, &map).unwrap();
    r.ttbr0 = TTB0_ALT as u32;
    r.contextidr = 8;
    e.set_regime(r, &mem, &map).unwrap();
    assert_eq!(
        e.shadow_translate(va(0x4000_0000), P1R)
            .unwrap()
            .unwrap()
            .pa,
        HPA_A + 0x10_0000
    );
    r.ttbr0 = TTB0 as u32;
    r.contextidr = 7;
    e.set_regime(r, &mem, &map).unwrap();
    assert_eq!(e.stats().cache_hits, 1);
    assert_eq!(e.stats().cache_misses, 2);
    assert_eq!(
        e.shadow_translate(va(0x4000_0000), P1R)
            .unwrap()
            .unwrap()
            .pa,
        HPA_A
    );
    // A CONTEXTIDR-only change is a hit (the key is the TTBR0 base alone)...
    r.contextidr = 9;
    e.set_regime(r, &mem, &map).unwrap();
    assert_eq!(e.stats().cache_hits, 2);
    assert_eq!(e.stats().evictions, 0);
    // ...and a third table base evicts the least recently used.
    r.ttbr0 = TTB0_OTHER as u32;
    e.set_regime(r, &mem, &map).unwrap();
    assert_eq!(e.stats().evictions, 1);
    assert_eq!(e.cached_roots(), 2);
    // A write to the evicted root's table must not disturb anything.
    e.sync_write(GuestPhysAddr::new(TTB0_ALT + (0x400 << 2)), 0, &mem, &map)
        .unwrap();
    // A pool too small for one root reports exhaustion instead of panicking.
    let mut tiny = ShadowEngine::new(Pool::new(HostPhysAddr::new(0x8000_0000), 0), 2);
    assert_eq!(
        tiny.set_regime(r, &mem, &map).unwrap_err(),
        ShadowError::PoolExhausted
    );
}

#[test]
fn mmu_off_identity_and_long_descriptor_rejected() {
    let map = host_map();
    let mem = guest_mem(&map);
    let mut r = base_regime();
    r.sctlr = 0;
    let mut e = engine(16, 2);
    e.set_regime(r, &mem, &map).unwrap();
    let t = e.shadow_translate(va(0x4000_1234), P0W).unwrap().unwrap();
    assert_eq!(t.pa, HPA_A + 0x1234);
    assert_eq!(
        e.shadow_translate(va(0x4220_1000), P0R)
            .unwrap()
            .unwrap()
            .pa,
        0x7100_0000
    );
    assert!(e.shadow_translate(va(MMIO as u32), P0R).unwrap().is_err());
    r.ttbcr = ttbcr::EAE;
    assert_eq!(
        e.set_regime(r, &mem, &map).unwrap_err(),
        ShadowError::LongDescriptorUnsupported
    );
}

#[test]
fn tlb_ops_are_mirrored() {
    let mut e = engine(1, 1);
    assert_eq!(e.tlb_op(TlbOp::All), HostTlbOp::All);
    assert_eq!(e.tlb_op(TlbOp::Asid(3)), HostTlbOp::Asid(3));
    assert_eq!(
        e.tlb_op(TlbOp::Mva {
            va: 0x1000,
            asid: 3
        }),
        HostTlbOp::Mva {
            va: 0x1000,
            asid: 3
        }
    );
    assert_eq!(
        e.tlb_op(TlbOp::Mvaa(0x2000)),
        HostTlbOp::Mvaa {
            va: 0x2000,
            pages: 1
        }
    );
    assert_eq!(e.stats().tlb_ops, 4);
}

// ---------------------------------------------------------------------------------------
// Property tests: shadow == guest walk then map.

/// Output address choices for generated descriptors.
fn target() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..RAM_A_LEN / 0x1000).prop_map(|p| RAM_A + p * 0x1000),
        2 => (0u64..0x200).prop_map(|p| FRAG64 + p * 0x1000),
        1 => (0u64..0x100).prop_map(|p| FRAG4 + p * 0x1000),
        2 => (0u64..0x60).prop_map(|p| TTB0 + p * 0x1000), // the tables' own pages
        1 => Just(MMIO),
        1 => any::<u32>().prop_map(|v| v as u64),
    ]
}

/// A guest first-level item: (index, words to write at index.. (1 or 16)).
fn l1_item() -> impl Strategy<Value = (u16, Vec<u32>)> {
    let idx = prop_oneof![3 => 0x400u16..0x440, 1 => 0u16..4096, 1 => 0xc00u16..0xc40];
    (
        idx,
        0u8..10,
        target(),
        any::<u32>(),
        0usize..N_L2,
        any::<bool>(),
    )
        .prop_map(|(i, kind, t, rnd, l2, perturb)| match kind {
            0..=3 => (
                i,
                alloc::vec![(t as u32 & 0xfff0_0000) | (rnd & 0x000b_fffd) | 2],
            ),
            4..=6 => (
                i,
                alloc::vec![(L2_AREA as u32 + l2 as u32 * 0x400) | (rnd & 0x3fc) | 1],
            ),
            7 | 8 => {
                // Supersection group, at HIGH or in RAM A.
                let base = if rnd & 1 == 0 {
                    (1 << 20) as u32
                } else {
                    RAM_A as u32
                };
                let w = base | (1 << 18) | (rnd & 0x000b_fe1c) | 2;
                let mut v = alloc::vec![w; 16];
                if perturb {
                    v[(rnd >> 28) as usize] ^= 1 << 10;
                }
                (i & !15, v)
            }
            _ => (i, alloc::vec![rnd]),
        })
}

fn l2_item() -> impl Strategy<Value = (usize, u8, Vec<u32>)> {
    (0usize..N_L2, 0u8..255, 0u8..10, target(), any::<u32>()).prop_map(|(tab, j, kind, t, rnd)| {
        match kind {
            0..=5 => (
                tab,
                j,
                alloc::vec![(t as u32 & 0xffff_f000) | (rnd & 0xffd) | 2],
            ),
            6 | 7 => (
                tab,
                j & !15,
                alloc::vec![(t as u32 & 0xffff_0000) | (rnd & 0xfffc) | 1; 16],
            ),
            _ => (tab, j, alloc::vec![rnd]),
        }
    })
}

#[derive(Clone, Debug)]
struct Scenario {
    regime: Regime,
    l1: Vec<(u16, Vec<u32>)>,
    l2: Vec<(usize, u8, Vec<u32>)>,
    probes: Vec<u32>,
}

fn regime_strategy() -> impl Strategy<Value = Regime> {
    (
        0u32..8,
        any::<u32>(),
        any::<[bool; 6]>(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        0u8..20,
    )
        .prop_map(|(n, dacr, f, prrr, nmrr, asid, misc)| {
            let mut sctlr = sctlr::M;
            if f[0] {
                sctlr |= sctlr::AFE;
            }
            if f[1] {
                sctlr |= sctlr::TRE;
            }
            if misc == 0 {
                sctlr &= !sctlr::M;
            }
            if misc == 1 {
                sctlr |= sctlr::WXN;
            }
            if misc == 2 {
                sctlr |= sctlr::UWXN;
            }
            let mut ttbcr = n;
            if f[2] && misc == 3 {
                ttbcr |= ttbcr::PD0;
            }
            if f[3] && misc == 4 {
                ttbcr |= ttbcr::PD1;
            }
            Regime {
                ttbr0: TTB0 as u32 | (dacr & 0x5b),
                ttbr1: TTB1 as u32,
                ttbcr,
                dacr,
                sctlr,
                contextidr: asid as u32,
                prrr,
                nmrr,
            }
        })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        regime_strategy(),
        proptest::collection::vec(l1_item(), 1..20),
        proptest::collection::vec(l2_item(), 0..40),
        proptest::collection::vec(any::<u32>(), 8),
    )
        .prop_map(|(regime, l1, l2, probes)| Scenario {
            regime,
            l1,
            l2,
            probes,
        })
}

fn l1_table_base(r: &Regime, idx: u16) -> u64 {
    if r.ttbr_for((idx as u32) << 20) == 1 {
        (r.ttbr1 & 0xffff_c000) as u64
    } else {
        r.ttbr0_table().0 as u64
    }
}

/// The same regime on the TTB0_ALT table, whose entries [`install`] mirrors from the TTBR0
/// table so that the two roots share second-level tables.
fn alt_regime(r: &Regime) -> Regime {
    let mut a = *r;
    a.ttbr0 = TTB0_ALT as u32 | (r.ttbr0 & 0x7f);
    a
}

/// The TTB0_ALT copy of the TTBR0-half first-level word `w` at index `i`: most are the same
/// (the roots share the second-level tables), a quarter are left out and a quarter of the
/// page-table descriptors move to the next domain (the same guest table in another domain,
/// shared only while both domains have the same manager status).
fn alt_word(r: &Regime, i: u64, w: u32) -> Option<u32> {
    if r.ttbr_for((i as u32) << 20) != 0 {
        return None;
    }
    match i % 4 {
        3 => None,
        2 if w & 3 == 1 => Some((w & !0x1e0) | ((((w >> 5) + 1) & 15) << 5)),
        _ => Some(w),
    }
}

fn install(s: &Scenario, mem: &mut SparseMemory) {
    for (idx, words) in &s.l1 {
        for (k, &w) in words.iter().enumerate() {
            let i = (*idx as u64 + k as u64) & 0xfff;
            let _ = mem.write_u32(l1_table_base(&s.regime, i as u16) + i * 4, w);
            if let Some(w2) = alt_word(&s.regime, i, w) {
                let _ = mem.write_u32(TTB0_ALT + i * 4, w2);
            }
        }
    }
    for (tab, j, words) in &s.l2 {
        for (k, &w) in words.iter().enumerate() {
            let jj = (*j as u64 + k as u64) & 0xff;
            let _ = mem.write_u32(L2_AREA + *tab as u64 * 0x400 + jj * 4, w);
        }
    }
}

/// VAs worth probing: every generated L1 index (3 offsets), every page reached through the
/// generated L2 tables, and random VAs.
fn probe_vas(s: &Scenario, extra: &[u32]) -> Vec<u32> {
    let mut v = Vec::new();
    for (idx, words) in &s.l1 {
        for k in 0..words.len().min(2) {
            let base = ((*idx as u32 + k as u32) & 0xfff) << 20;
            v.extend([base, base | 0x1_2345, base | 0xf_f000]);
            for (_, j, _) in &s.l2 {
                v.push(base | (*j as u32) << 12 | 0x10);
            }
        }
    }
    v.extend_from_slice(&s.probes);
    v.extend_from_slice(extra);
    v.sort_unstable();
    v.dedup();
    v
}

/// The central check: for every probe, the shadow never grants more than the guest, grants
/// exactly the guest's translation composed with the map when it grants, and every shadow
/// fault resolves to the right cause.
fn check_equivalence(
    e: &ShadowEngine,
    r: &Regime,
    mem: &SparseMemory,
    map: &RegionMap,
    vas: &[u32],
) -> Result<(), TestCaseError> {
    check_shadow(e, r, mem, map, vas, true)
}

/// [`check_equivalence`]; with `complete` false (pool exhaustion allowed) shadow faults that
/// the guest would not take are accepted, but anything the shadow grants must still be exact.
fn check_shadow(
    e: &ShadowEngine,
    r: &Regime,
    mem: &SparseMemory,
    map: &RegionMap,
    vas: &[u32],
    complete: bool,
) -> Result<(), TestCaseError> {
    let wxn = r.sctlr & (sctlr::WXN | sctlr::UWXN) != 0;
    // With external write protection the shadow keeps the guest's permissions everywhere.
    let ext = e.options().external_wp;
    for &v in vas {
        for a in Access::ALL {
            let g = translate(r, mem, va(v), a);
            let s = e.shadow_translate(va(v), a).expect("regime set");
            match (s, g) {
                (Ok(st), Ok(gt)) => {
                    let hpa = map.lookup(gt.pa);
                    prop_assert_eq!(Some(st.pa), hpa, "va {:#x} {:?}", v, a);
                    prop_assert!(st.size <= gt.size || !r.mmu_on());
                    let mut want = gt.perms;
                    let protected = e.is_protected(GuestPhysAddr::new(gt.pa));
                    if protected && !ext {
                        want.pl1.w = false;
                        want.pl0.w = false;
                    }
                    if protected && a.kind == AccessKind::Write {
                        // The write is granted by the shadow (external mode) but would trap
                        // at stage 2: it classifies as a write-protect emulation.
                        prop_assert!(ext, "shadow grants a write to a protected page");
                        prop_assert_eq!(
                            e.classify(va(v), a, mem, map),
                            Resolution::WriteProtect {
                                gpa: GuestPhysAddr::new(gt.pa)
                            }
                        );
                    }
                    if wxn {
                        prop_assert!(!st.perms.pl1.x || want.pl1.x);
                        prop_assert!(!st.perms.pl0.x || want.pl0.x);
                        want.pl1.x = st.perms.pl1.x;
                        want.pl0.x = st.perms.pl0.x;
                    }
                    prop_assert_eq!(st.perms, want, "va {:#x} {:?}", v, a);
                    if r.mmu_on() {
                        prop_assert_eq!(st.attrs, gt.attrs);
                        prop_assert_eq!(st.global, gt.global);
                        prop_assert_eq!(st.ns, gt.ns);
                        prop_assert_eq!(st.domain, gt.domain);
                    }
                }
                (Ok(st), Err(gf)) => {
                    prop_assert!(
                        false,
                        "shadow grants {:#x} {:?} -> {:#x}, guest faults {:?}",
                        v,
                        a,
                        st.pa,
                        gf
                    );
                }
                (Err(sf), Err(gf)) => {
                    prop_assert_eq!(e.classify(va(v), a, mem, map), Resolution::Guest(gf));
                    check_walk_trap(e, r, mem, v, sf, gf, complete)?;
                    // Domain, access-flag and permission faults on mapped, unprotected RAM
                    // below 4 GiB are raised by the shadow itself, with the guest's domain.
                    if let Ok(leaf) = lookup(r, mem, va(v)) {
                        let plain = leaf.pa < (1 << 32)
                            && matches!(
                                map.backing(GuestPhysAddr::new(leaf.pa & !0xfff)),
                                Backing::Ram { .. }
                            )
                            && map.lookup(leaf.pa).is_some_and(|h| h < (1 << 32))
                            && (ext || !e.is_protected(GuestPhysAddr::new(leaf.pa)));
                        if complete && plain && !wxn && leaf.size != PageSize::Supersection {
                            prop_assert_eq!(sf.kind, gf.kind, "va {:#x} {:?}", v, a);
                            prop_assert_eq!(sf.domain, gf.domain);
                        }
                    }
                }
                (Err(sf), Ok(gt)) => {
                    prop_assert!(
                        shadow_trap_read(e, v).is_none(),
                        "walk trap at {:#x} where the guest translates",
                        v
                    );
                    let res = e.classify(va(v), a, mem, map);
                    let hole = map.lookup(gt.pa).is_none();
                    // (With external protection the shadow grants such writes when it is
                    // complete; an entry left faulting by pool exhaustion classifies the
                    // same way.)
                    let prot = (!ext || !complete)
                        && a.kind == AccessKind::Write
                        && e.is_protected(GuestPhysAddr::new(gt.pa));
                    let unrepresentable = !complete
                        || map.lookup(gt.pa).is_some_and(|h| h >= 1 << 32)
                        || (wxn && a.kind == AccessKind::Exec);
                    match res {
                        Resolution::Mmio { gpa } => prop_assert!(hole && gpa.raw() == gt.pa),
                        Resolution::WriteProtect { gpa } => {
                            prop_assert!(prot && gpa.raw() == gt.pa)
                        }
                        _ => prop_assert!(
                            unrepresentable,
                            "stale shadow: va {:#x} {:?} gpa {:#x} shadow {:?} res {:?}",
                            v,
                            a,
                            gt.pa,
                            sf,
                            res
                        ),
                    }
                }
            }
        }
    }
    Ok(())
}

/// The guest first-level descriptor for `v`, or `None` when the walk stops before it
/// (MMU off, PD0/PD1, or an unreadable table word).
fn guest_l1(r: &Regime, mem: &SparseMemory, v: u32) -> Option<u32> {
    if !r.mmu_on() {
        return None;
    }
    let (base, pd) = if r.ttbr_for(v) == 1 {
        (r.ttbr1 & 0xffff_c000, ttbcr::PD1)
    } else {
        (r.ttbr0_table().0, ttbcr::PD0)
    };
    if r.ttbcr & pd != 0 {
        return None;
    }
    mem.read_u32(GuestPhysAddr::new((base | ((v >> 20) << 2)) as u64))
        .ok()
}

/// Readable words of the 1 KiB guest table at `base`.
fn readable_words(mem: &SparseMemory, base: u32) -> usize {
    (0..256u32)
        .filter(|j| {
            mem.read_u32(GuestPhysAddr::new((base + 4 * j) as u64))
                .is_ok()
        })
        .count()
}

/// If the hardware walk of the active shadow for `v` reads the walk-trap region: the
/// shadow first-level page-table descriptor and the address the walk reads.
fn shadow_trap_read(e: &ShadowEngine, v: u32) -> Option<(PageTableDesc, u64)> {
    let trap = e.options().walk_trap?;
    let regs = e.shadow_regs()?;
    let at = (regs.ttbr0 & 0xffff_c000) | ((v >> 20) << 2);
    let w = ShadowView(e.pool())
        .read_u32(GuestPhysAddr::new(at as u64))
        .ok()?;
    match L1Desc::decode(w) {
        L1Desc::PageTable(t) if t.base == trap & !0x3ff => {
            Some((t, (t.base | ((v >> 12) & 0xff) << 2) as u64))
        }
        _ => None,
    }
}

/// The walk-trap part of the oracle, for a VA where both the shadow and the guest fault
/// (`sf`, `gf`). A walk-trap entry is modelled as what the hardware does with it: the
/// shadow walk reads the trap region, which is not in the pool, so [`ShadowView`] gives a
/// level-2 external abort on the walk (on target: a stage-2 fault on the stage-1 walk,
/// after which the hypervisor re-walks the guest and injects `gf`). So:
/// - a guest external abort on the walk (level 1 or 2) with a walk trap configured means a
///   trap entry, a level-2 walk abort on the shadow, and for level-2 guest aborts the
///   guest's domain too (level-1 guest aborts surface as level-2 walk aborts in domain 0:
///   the hypervisor re-walk reports the right level);
/// - except for an L2 table that is only partly readable: it is shadowed normally, so the
///   unreadable words give a level-2 translation fault in the guest's domain (documented
///   simplification);
/// - every other guest fault has no trap entry.
fn check_walk_trap(
    e: &ShadowEngine,
    r: &Regime,
    mem: &SparseMemory,
    v: u32,
    sf: Fault,
    gf: Fault,
    complete: bool,
) -> Result<(), TestCaseError> {
    let Some(trap) = e.options().walk_trap else {
        return Ok(());
    };
    let read = shadow_trap_read(e, v);
    if let Some((_, at)) = read {
        prop_assert!(e.is_walk_trap(at), "{:#x} {:#x}", v, at);
        prop_assert!(!e.is_walk_trap(at ^ 0x400) && e.is_walk_trap((trap & !0x3ff) as u64));
        prop_assert_eq!(
            (sf.kind, sf.level),
            (FaultKind::ExternalAbortOnWalk, 2),
            "va {:#x}",
            v
        );
    }
    if gf.kind != FaultKind::ExternalAbortOnWalk {
        prop_assert!(read.is_none(), "walk trap at {:#x} for guest {:?}", v, gf);
        return Ok(());
    }
    let partial = gf.level == 2
        && match guest_l1(r, mem, v).map(L1Desc::decode) {
            Some(L1Desc::PageTable(t)) => readable_words(mem, t.base) != 0,
            _ => false,
        };
    if partial {
        prop_assert!(
            read.is_none(),
            "walk trap at {:#x} over a readable table",
            v
        );
        if complete {
            prop_assert_eq!(
                sf,
                Fault {
                    kind: FaultKind::Translation,
                    level: 2,
                    domain: gf.domain
                },
                "va {:#x}",
                v
            );
        }
        return Ok(());
    }
    if !complete && read.is_none() {
        // An entry left faulting by pool exhaustion.
        return Ok(());
    }
    let (t, _) = read.ok_or_else(|| {
        TestCaseError::fail(alloc::format!("no walk trap at {v:#x} for guest {gf:?}"))
    })?;
    prop_assert_eq!(sf.domain, Some(t.domain));
    if gf.level == 2 {
        prop_assert_eq!(sf.domain, gf.domain, "va {:#x}", v);
    } else {
        prop_assert_eq!((t.domain, t.ns, t.pxn), (0, false, false));
    }
    Ok(())
}

/// Installs the scenario and builds its root, after the TTB0_ALT root (cached: the two
/// share second-level tables).
fn build(s: &Scenario) -> (SparseMemory, RegionMap, ShadowEngine) {
    let map = host_map();
    let mut mem = guest_mem(&map);
    install(s, &mut mem);
    let mut e = engine(64, 4);
    e.set_regime(alt_regime(&s.regime), &mem, &map)
        .expect("pool large enough");
    e.set_regime(s.regime, &mem, &map)
        .expect("pool large enough");
    (mem, map, e)
}

fn invariants(e: &ShadowEngine) -> Result<(), TestCaseError> {
    e.check_invariants().map_err(TestCaseError::fail)
}

/// Switches to the TTB0 and TTB0_ALT roots (cache hits when cached: the inactive root's
/// shared tables must have followed every synced write) and checks each one exactly, and
/// against a fresh engine's root bit for bit when `fresh` makes one; then back to `r`.
fn check_shared_roots(
    e: &mut ShadowEngine,
    r: &Regime,
    mem: &SparseMemory,
    map: &RegionMap,
    vas: &[u32],
    fresh: Option<fn() -> ShadowEngine>,
) -> Result<(), TestCaseError> {
    for base in [TTB0, TTB0_ALT] {
        let mut r2 = *r;
        r2.ttbr0 = base as u32 | (r.ttbr0 & 0x7f);
        prop_assert_eq!(e.set_regime(r2, mem, map).map(|_| ()), Ok(()));
        invariants(e)?;
        check_equivalence(e, &r2, mem, map, vas)?;
        if let Some(mk) = fresh {
            let mut f = mk();
            f.set_regime(r2, mem, map).expect("fresh");
            for &v in vas {
                for a in Access::ALL {
                    prop_assert_eq!(
                        e.shadow_translate(va(v), a),
                        f.shadow_translate(va(v), a),
                        "root {:#x} va {:#x} {:?}",
                        base,
                        v,
                        a
                    );
                }
            }
        }
    }
    prop_assert_eq!(e.set_regime(*r, mem, map).map(|_| ()), Ok(()));
    invariants(e)
}

/// The TTBR0 value of a [`Step::Switch`]: TTB0, TTB0_ALT, a table outside RAM, or (in the
/// walk-trap memory) a table whose first 512 bytes only are RAM.
fn switch_ttbr0(which: u8) -> u32 {
    match which {
        0 => TTB0 as u32,
        1 => TTB0_ALT as u32,
        2 => TTB_BAD as u32,
        _ => PARTIAL as u32,
    }
}

/// One step of a mutation sequence.
#[derive(Clone, Debug)]
enum Step {
    L1(u16, Vec<u32>),
    L2(usize, u8, Vec<u32>),
    Dacr(u32),
    /// TTBR0 switch to [`switch_ttbr0`]`(which)` with an ASID.
    Switch(u8, u8),
    Tlbi,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => l1_item().prop_map(|(i, w)| Step::L1(i, w)),
        6 => l2_item().prop_map(|(t, j, w)| Step::L2(t, j, w)),
        2 => any::<u32>().prop_map(Step::Dacr),
        1 => (0u8..2, 0u8..3).prop_map(|(b, a)| Step::Switch(b, a)),
        1 => Just(Step::Tlbi),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// (b) Random guest table sets: shadow walk == guest walk then map (or the right fault).
    #[test]
    fn shadow_equals_guest_then_map(s in scenario()) {
        let (mem, map, e) = build(&s);
        check_equivalence(&e, &s.regime, &mem, &map, &probe_vas(&s, &[]))?;
    }

    /// (c) Random descriptor writes, each synced, keep (b) and match a fresh build.
    #[test]
    fn sync_keeps_shadow_exact(s in scenario(), steps in proptest::collection::vec(step(), 1..12)) {
        let (mut mem, map, mut e) = build(&s);
        let mut r = s.regime;
        let mut extra = Vec::new();
        for st in &steps {
            match st {
                Step::L1(idx, words) => {
                    for (k, &w) in words.iter().enumerate() {
                        let i = (*idx as u64 + k as u64) & 0xfff;
                        let gpa = if r.ttbr_for((i as u32) << 20) == 1 { TTB1 } else { r.ttbr0_table().0 as u64 } + i * 4;
                        if mem.write_u32(gpa, w).is_ok() {
                            e.sync_write(GuestPhysAddr::new(gpa), w, &mem, &map).expect("sync");
                        }
                        extra.push((i as u32) << 20 | 0x3000);
                    }
                }
                Step::L2(tab, j, words) => {
                    for (k, &w) in words.iter().enumerate() {
                        let gpa = L2_AREA + *tab as u64 * 0x400 + ((*j as u64 + k as u64) & 0xff) * 4;
                        mem.write_u32(gpa, w).expect("L2 area is RAM");
                        e.sync_write(GuestPhysAddr::new(gpa), w, &mem, &map).expect("sync");
                    }
                }
                Step::Dacr(d) => {
                    r.dacr = *d;
                    e.set_regime(r, &mem, &map).expect("dacr");
                }
                Step::Switch(which, asid) => {
                    r.ttbr0 = switch_ttbr0(*which);
                    r.contextidr = *asid as u32;
                    e.set_regime(r, &mem, &map).expect("switch");
                }
                Step::Tlbi => {
                    prop_assert_eq!(e.tlb_op(TlbOp::All), HostTlbOp::All);
                }
            }
            invariants(&e)?;
        }
        let vas = probe_vas(&s, &extra);
        check_equivalence(&e, &r, &mem, &map, &vas)?;
        // No stale entry: the synced shadow translates exactly like a fresh one.
        let mut fresh = engine(64, 4);
        fresh.set_regime(r, &mem, &map).expect("fresh");
        check_equivalence(&fresh, &r, &mem, &map, &vas)?;
        // Cached inactive roots keep their tables protected, so write permission may differ
        // on pages only the synced engine protects.
        // With WXN/UWXN a guest manager-domain page is executable only while the shadow
        // maps it read-only (documented limitation), so execute permission may differ too.
        let wxn = r.sctlr & (sctlr::WXN | sctlr::UWXN) != 0;
        let mask_w = |t: Option<Result<Translation, Fault>>| {
            t.map(|t| {
                t.map(|mut t| {
                    t.perms.pl1.w = false;
                    t.perms.pl0.w = false;
                    t.size = PageSize::Small;
                    if wxn {
                        t.perms.pl1.x = false;
                        t.perms.pl0.x = false;
                    }
                    t
                })
            })
        };
        for &v in &vas {
            let extra_wp = translate(&r, &mem, va(v), P1R).is_ok_and(|t| e.is_protected(GuestPhysAddr::new(t.pa)) != fresh.is_protected(GuestPhysAddr::new(t.pa)));
            for a in Access::ALL {
                let (x, y) = (e.shadow_translate(va(v), a), fresh.shadow_translate(va(v), a));
                if extra_wp {
                    if a.kind == AccessKind::Read {
                        prop_assert_eq!(mask_w(x), mask_w(y), "va {:#x} {:?}", v, a);
                    }
                } else {
                    // Sizes may differ: protection of neighbouring pages held by cached roots
                    // can force smaller shadow mappings.
                    let unsize = |t: Option<Result<Translation, Fault>>| t.map(|t| t.map(|mut t| { t.size = PageSize::Small; t }));
                    prop_assert_eq!(unsize(x), unsize(y), "va {:#x} {:?}", v, a);
                }
            }
        }
        // Both roots sharing second-level tables stay exact.
        check_shared_roots(&mut e, &r, &mem, &map, &vas, None)?;
    }

    /// A pool too small for the scenario: operations may fail, but whatever the shadow
    /// grants is still exactly the guest's translation composed with the map.
    #[test]
    fn tiny_pool_stays_safe(s in scenario(), steps in proptest::collection::vec(step(), 1..8), blocks in 1usize..4) {
        let map = host_map();
        let mut mem = guest_mem(&map);
        install(&s, &mut mem);
        let mut e = engine(blocks, 2);
        let mut r = s.regime;
        let _ = e.set_regime(alt_regime(&r), &mem, &map);
        let _ = e.set_regime(r, &mem, &map);
        invariants(&e)?;
        for st in &steps {
            match st {
                Step::L2(tab, j, words) => {
                    for (k, &w) in words.iter().enumerate() {
                        let gpa = L2_AREA + *tab as u64 * 0x400 + ((*j as u64 + k as u64) & 0xff) * 4;
                        mem.write_u32(gpa, w).expect("L2 area is RAM");
                        let _ = e.sync_write(GuestPhysAddr::new(gpa), w, &mem, &map);
                    }
                }
                Step::Switch(which, asid) => {
                    r.ttbr0 = switch_ttbr0(*which);
                    r.contextidr = *asid as u32;
                    let _ = e.set_regime(r, &mem, &map);
                }
                Step::Dacr(d) => {
                    r.dacr = *d;
                    let _ = e.set_regime(r, &mem, &map);
                }
                _ => {}
            }
            invariants(&e)?;
            if e.shadow_regs().is_some() {
                check_shadow(&e, &r, &mem, &map, &probe_vas(&s, &[]), false)?;
            }
        }
        // Nothing leaks: dropping everything returns every table to the pool.
        e.reset();
        invariants(&e)?;
        prop_assert_eq!(e.pool().usage(), (0, 0));
    }

    /// (e) Garbage everywhere: random table contents and registers never panic the walker,
    /// the builder, sync or fault resolution.
    #[test]
    fn garbage_never_panics(words in proptest::collection::vec(any::<u32>(), 64), regs in any::<[u32; 8]>(), vas in proptest::collection::vec(any::<u32>(), 16)) {
        let map = host_map();
        let mut mem = guest_mem(&map);
        // Scatter the words over both L1 tables and the L2 area.
        for (i, &w) in words.iter().enumerate() {
            let at = match i % 3 { 0 => TTB0 + (w as u64 & 0x3ffc), 1 => TTB1 + ((w as u64 >> 7) & 0x3ffc), _ => L2_AREA + (w as u64 & 0x1ffc) };
            let _ = mem.write_u32(at, words[(i * 7 + 3) % words.len()]);
        }
        let r = Regime { ttbr0: regs[0], ttbr1: regs[1], ttbcr: regs[2] & !ttbcr::EAE, dacr: regs[3], sctlr: regs[4], contextidr: regs[5], prrr: regs[6], nmrr: regs[7] };
        let mut e = engine(32, 2);
        let _ = e.set_regime(r, &mem, &map);
        for &v in &vas {
            for a in Access::ALL {
                let _ = translate(&r, &mem, va(v), a);
                let _ = e.shadow_translate(va(v), a);
                let _ = e.resolve_fault(va(v), a, &mem, &map);
            }
            for op in [AtsOp::Cpr, AtsOp::Cpw, AtsOp::Cur, AtsOp::Cuw] {
                let _ = ats1(&r, &mem, va(v), op);
            }
            let _ = e.sync_write(GuestPhysAddr::new(v as u64), v.rotate_left(7), &mem, &map);
        }
    }
}

#[test]
fn shadow_view_reads_pool() {
    let p = Pool::new(HostPhysAddr::new(0x8000_0000), 1);
    let v = ShadowView(&p);
    assert_eq!(v.read_u32(GuestPhysAddr::new(0x8000_0004)), Ok(0));
    assert!(v.read_u32(GuestPhysAddr::new(0x8000_4000)).is_err());
    assert!(v.read_u32(GuestPhysAddr::new(0x7fff_fffc)).is_err());
}

#[test]
fn region_map_holes_and_runs() {
    let m = host_map();
    assert_eq!(
        m.backing(GuestPhysAddr::new(RAM_A + 0x1000)),
        Backing::Ram {
            hpa: HostPhysAddr::new(HPA_A + 0x1000),
            len: RAM_A_LEN - 0x1000
        }
    );
    assert_eq!(
        m.backing(GuestPhysAddr::new(MMIO)),
        Backing::Hole { len: RAM_A - MMIO }
    );
}

/// The scenario generator reaches every mapping kind and every resolution, so the property
/// tests above are not vacuous.
#[test]
fn scenario_generator_covers_every_case() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut sizes = [0u32; 4];
    let (mut mmio, mut wp, mut guest_kinds, mut ok) = (0, 0, [0u32; 5], 0);
    for _ in 0..48 {
        let s = scenario().new_tree(&mut runner).expect("tree").current();
        let (mem, map, e) = build(&s);
        for v in probe_vas(&s, &[]) {
            for a in Access::ALL {
                match e.shadow_translate(va(v), a).expect("regime") {
                    Ok(t) => {
                        ok += 1;
                        sizes[t.size as usize] += 1;
                    }
                    Err(_) => match e.classify(va(v), a, &mem, &map) {
                        Resolution::Mmio { .. } => mmio += 1,
                        Resolution::WriteProtect { .. } => wp += 1,
                        Resolution::Guest(f) => guest_kinds[f.kind as usize] += 1,
                        _ => {}
                    },
                }
            }
        }
    }
    std::println!("ok={ok} sizes={sizes:?} mmio={mmio} wp={wp} guest={guest_kinds:?}");
    assert!(ok > 500, "{ok}");
    assert!(sizes.iter().all(|&n| n > 0), "{sizes:?}");
    assert!(mmio > 0 && wp > 0, "{mmio} {wp}");
    assert!(guest_kinds.iter().all(|&n| n > 0), "{guest_kinds:?}");
}

#[test]
fn resolve_refills_stale_entries_and_reports_unrepresentable() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let r = base_regime();
    let mut e = engine(8, 2);
    e.set_regime(r, &mem, &map).unwrap();
    // The guest maps a section without the write being synced (as if the trap were missed).
    wr(&mut mem, TTB0 + (0x400 << 2), section(RAM_A, 0, 3));
    assert!(e.shadow_translate(va(0x4000_0000), P0R).unwrap().is_err());
    assert_eq!(
        e.resolve_fault(va(0x4000_0000), P0R, &mem, &map),
        Resolution::Retry
    );
    assert_eq!(
        e.shadow_translate(va(0x4000_0000), P0R)
            .unwrap()
            .unwrap()
            .pa,
        HPA_A
    );
    assert_eq!(e.stats().retries, 1);
    // A non-uniform supersection group above 4 GiB cannot be expressed with sections.
    let ss = (1 << 18) | 2 | (1 << 20) | (3 << 10);
    for i in 0x200..0x210u64 {
        wr(
            &mut mem,
            TTB0 + i * 4,
            if i == 0x205 { ss ^ (1 << 10) } else { ss },
        );
    }
    e.sync_write(GuestPhysAddr::new(TTB0 + 0x200 * 4), ss, &mem, &map)
        .unwrap();
    assert!(translate(&r, &mem, va(0x2000_0000), P0R).is_ok());
    assert_eq!(
        e.resolve_fault(va(0x2000_0000), P0R, &mem, &map),
        Resolution::Unrepresentable {
            gpa: GuestPhysAddr::new(HIGH)
        }
    );
    // Made uniform, the group becomes a real supersection.
    wr(&mut mem, TTB0 + 0x205 * 4, ss);
    e.sync_write(GuestPhysAddr::new(TTB0 + 0x205 * 4), ss, &mem, &map)
        .unwrap();
    let t = e.shadow_translate(va(0x2012_3456), P0R).unwrap().unwrap();
    assert_eq!((t.pa, t.size), (0x2_0012_3456, PageSize::Supersection));
    // Guest faults are reflected with the architectural status.
    match e.resolve_fault(va(0x3000_0000), P1W, &mem, &map) {
        Resolution::Guest(f) => assert_eq!(f.dfsr(true), 0b0101 | (1 << 11)),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.stats().guest_faults, 1);
}

#[test]
fn ttbr_walk_attributes() {
    use super::walk::WalkAttrs;
    // IRGN = {bit0, bit6} = 0b01 (WBWA), RGN = 0b11, S, NOS clear.
    let w = WalkAttrs::from_ttbr(TTB0 as u32 | (1 << 6) | (3 << 3) | 2);
    assert_eq!(w.inner, Cacheability::WriteBackWriteAllocate);
    assert_eq!(w.outer, Cacheability::WriteBackNoWriteAllocate);
    assert!(w.shareable && w.outer_shareable);
    let w = WalkAttrs::from_ttbr(TTB0 as u32 | 1 | (1 << 5) | 2);
    assert_eq!(w.inner, Cacheability::WriteThrough);
    assert!(w.shareable && !w.outer_shareable);
    // The translation says which TTBR was walked.
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    r.ttbcr = 1;
    r.ttbr1 |= 1 << 6;
    wr(&mut mem, TTB1 + (0x800 << 2), section(RAM_A, 0, 3));
    let t = translate(&r, &mem, va(0x8000_0000), P1R).unwrap();
    assert_eq!(t.ttbr, 1);
    assert_eq!(
        r.walk_attrs(t.ttbr).inner,
        Cacheability::WriteBackWriteAllocate
    );
}

#[test]
fn walk_faults_outrank_domain_and_supersections_report_domain_zero() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    r.dacr = 0; // every domain no access
                // An L2 table outside RAM: the walk abort wins over the domain fault.
    wr(&mut mem, TTB0 + (0x400 << 2), page_table(MMIO, 6));
    let f = translate(&r, &mem, va(0x4000_0000), P1R).unwrap_err();
    assert_eq!(
        (f.kind, f.level, f.domain),
        (FaultKind::ExternalAbortOnWalk, 2, Some(6))
    );
    // A level-2 translation fault also wins over the domain fault.
    wr(&mut mem, TTB0 + (0x401 << 2), page_table(L2_AREA, 6));
    let f = translate(&r, &mem, va(0x4010_0000), P1R).unwrap_err();
    assert_eq!((f.kind, f.level), (FaultKind::Translation, 2));
    // A supersection ignores its bits[8:5] (they are PA[39:36]) as a domain: domain 0.
    let ss = (1 << 18) | 2 | (0xf << 5) | (3 << 10);
    for i in 0x300..0x310u64 {
        wr(&mut mem, TTB0 + i * 4, ss);
    }
    r.dacr = 0x4; // domain 1 client, domain 0 no access
    let f = translate(&r, &mem, va(0x3000_0000), P1W).unwrap_err();
    assert_eq!(
        f,
        Fault {
            kind: FaultKind::Domain,
            level: 1,
            domain: Some(0)
        }
    );
    assert_eq!(f.dfsr(true), 0b1001 | (1 << 11));
    r.dacr = 0x1;
    assert_eq!(
        translate(&r, &mem, va(0x3000_0000), P1W).unwrap().pa,
        0xf0_0000_0000
    );
}

#[test]
fn par_reports_tex_remap_shareability() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    r.sctlr |= sctlr::TRE;
    // Region 3 (TEX[0]=0, C=1, B=1): Normal, inner WT, outer WB-no-WA, S=1 → NS1 set, NOS3 set.
    r.prrr = (2 << 6) | (1 << 19) | (1 << 27);
    r.nmrr = (2 << 6) | (3 << 22);
    wr(
        &mut mem,
        TTB0 + (0x400 << 2),
        section(RAM_A, 0, 3) | (3 << 2) | (1 << 16),
    );
    let p = ats1(&r, &mem, va(0x4000_0000), AtsOp::Cur);
    assert_eq!(p & 1, 0);
    assert_eq!((p >> 4) & 7, 0b110, "inner WT");
    assert_eq!((p >> 2) & 3, 0b11, "outer WB no WA");
    assert_eq!((p >> 7) & 1, 1, "SH");
    assert_eq!((p >> 10) & 1, 1, "NOS: inner shareable only");
}

// ---------------------------------------------------------------------------------------
// External write protection (stage 2 protects the guest's table pages), the ASID-free root
// cache key, reset and memory accounting.

fn ext_engine(blocks: usize, roots: usize) -> ShadowEngine {
    ShadowEngine::with_options(
        Pool::new(HostPhysAddr::new(0x8000_0000), blocks),
        roots,
        ShadowOptions {
            external_wp: true,
            walk_trap: None,
            evict_written_inactive: false,
        },
    )
}

fn pages(v: &[u64]) -> Vec<GuestPhysAddr> {
    v.iter().map(|&p| GuestPhysAddr::new(p)).collect()
}

fn changes(v: &[(u64, bool)]) -> Vec<(GuestPhysAddr, bool)> {
    v.iter().map(|&(p, b)| (GuestPhysAddr::new(p), b)).collect()
}

/// The protected set a single freshly built root must have: the pages of its guest L1
/// tables and of every guest L2 table its L1 entries reference (with a walk trap, `wt`,
/// only tables with at least one readable word, and L1 table pages with one).
fn expected_protected(r: &Regime, mem: &SparseMemory, wt: bool) -> BTreeSet<u64> {
    let mut set = BTreeSet::new();
    if !r.mmu_on() {
        return set;
    }
    let (b0, len0) = r.ttbr0_table();
    let mut tables = alloc::vec![(b0 as u64, len0 as u64)];
    if let Some((b1, len1)) = r.ttbr1_table() {
        tables.push((b1 as u64, len1 as u64));
    }
    for (b, len) in tables {
        let mut p = b & !0xfff;
        while p < b + len {
            let readable = (p.max(b)..(p + 0x1000).min(b + len))
                .step_by(4)
                .any(|a| mem.read_u32(GuestPhysAddr::new(a)).is_ok());
            if !wt || readable {
                set.insert(p);
            }
            p += 0x1000;
        }
    }
    for idx in 0..4096u32 {
        let va = idx << 20;
        let base = if r.ttbr_for(va) == 1 {
            if r.ttbcr & ttbcr::PD1 != 0 {
                continue;
            }
            r.ttbr1 & 0xffff_c000
        } else {
            if r.ttbcr & ttbcr::PD0 != 0 {
                continue;
            }
            r.ttbr0_table().0
        };
        if let Ok(w) = mem.read_u32(GuestPhysAddr::new((base | (idx << 2)) as u64)) {
            if w & 3 == 1 && (!wt || readable_words(mem, w & 0xffff_fc00) != 0) {
                set.insert((w & 0xffff_f000) as u64);
            }
        }
    }
    set
}

/// Applies reported protection changes to a model of stage 2 and checks that each one is a
/// real change and that the model matches the engine's protected set afterwards.
fn apply_wp_changes(
    e: &mut ShadowEngine,
    stage2_ro: &mut BTreeSet<u64>,
) -> Result<(), TestCaseError> {
    let ch = e.take_wp_changes();
    let mut last = None;
    for (gpa, now) in ch {
        prop_assert_eq!(gpa.raw() & 0xfff, 0);
        prop_assert!(last < Some(gpa.raw()), "sorted and deduplicated");
        last = Some(gpa.raw());
        if now {
            prop_assert!(
                stage2_ro.insert(gpa.raw()),
                "reported protect of {:#x} twice",
                gpa.raw()
            );
        } else {
            prop_assert!(
                stage2_ro.remove(&gpa.raw()),
                "reported release of unprotected {:#x}",
                gpa.raw()
            );
        }
    }
    let engine_set: BTreeSet<u64> = e.protected().map(|p| p.raw()).collect();
    prop_assert_eq!(&engine_set, stage2_ro);
    prop_assert_eq!(engine_set.len(), e.protected_pages());
    prop_assert!(e.take_wp_changes().is_empty());
    Ok(())
}

/// Every MiB (two offsets) plus the scenario's probes: the "every VA" check.
fn all_mib_vas(s: &Scenario, extra: &[u32]) -> Vec<u32> {
    let mut v = probe_vas(s, extra);
    for idx in 0..4096u32 {
        v.push(idx << 20 | (idx.wrapping_mul(0x9e37) & 0xf_f000));
        v.push((idx << 20) | (0x10_0000 - 0x1000));
    }
    v.sort_unstable();
    v.dedup();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// External write protection: the shadow translates every VA exactly like the guest
    /// walk composed with the map (permissions included, also on the guest's own table pages
    /// and when those lie inside guest sections), never splits more than the own-protection
    /// shadow, and the protected set is exactly the tables' pages and is reported.
    #[test]
    fn external_wp_shadow_is_exact(s in scenario(), self_map in any::<bool>(), ap in 0u32..8, dom in 0u32..16) {
        let map = host_map();
        let mut mem = guest_mem(&map);
        install(&s, &mut mem);
        if self_map {
            // The guest maps its own tables' MiB with a section.
            let _ = mem.write_u32(l1_table_base(&s.regime, 0x410) + 0x410 * 4, section(TTB0, dom, ap));
        }
        let mut e = ext_engine(64, 4);
        e.set_regime(s.regime, &mem, &map).expect("pool large enough");
        let vas = all_mib_vas(&s, &[0x4100_0000, 0x4101_0000, 0x4100_4000]);
        check_equivalence(&e, &s.regime, &mem, &map, &vas)?;
        // Nothing the shadow does depends on the protected set: the same walk with an
        // engine that protects by itself grants a subset, with mappings no larger.
        let mut own = engine(64, 4);
        own.set_regime(s.regime, &mem, &map).expect("pool large enough");
        // (With WXN/UWXN the own-protection shadow may make a read-only manager-domain
        // page executable that a writable one cannot be: skip fetches there.)
        let wxn = s.regime.sctlr & (sctlr::WXN | sctlr::UWXN) != 0;
        for &v in &vas {
            for a in Access::ALL {
                if wxn && a.kind == AccessKind::Exec {
                    continue;
                }
                if let Some(Ok(o)) = own.shadow_translate(va(v), a) {
                    let x = e.shadow_translate(va(v), a).expect("regime").expect("external grants what own grants");
                    prop_assert_eq!(x.pa, o.pa);
                    prop_assert!(x.size >= o.size, "va {:#x} {:?} {:?} {:?}", v, a, x.size, o.size);
                }
            }
        }
        // The protected set is the tables' pages, reported once.
        let want = expected_protected(&s.regime, &mem, false);
        let mut stage2 = BTreeSet::new();
        apply_wp_changes(&mut e, &mut stage2)?;
        prop_assert_eq!(&stage2, &want);
        let own_set: BTreeSet<u64> = own.protected().map(|p| p.raw()).collect();
        prop_assert_eq!(&own_set, &want);
        // No rescans: protection never touches the shadow's own entries.
        prop_assert_eq!(e.stats().rescans, 0);
    }

    /// External write protection under random synced descriptor writes, DACR changes and
    /// TTBR0/ASID switches: the shadow stays exact, equals a fresh build bit for bit (sizes
    /// included: nothing depends on cached roots' protection), and the reported changes
    /// always track the protected set.
    #[test]
    fn external_wp_sync_keeps_shadow_exact(s in scenario(), steps in proptest::collection::vec(step(), 1..12)) {
        let map = host_map();
        let mut mem = guest_mem(&map);
        install(&s, &mut mem);
        let mut e = ext_engine(64, 4);
        let mut stage2 = BTreeSet::new();
        e.set_regime(alt_regime(&s.regime), &mem, &map).expect("pool large enough");
        e.set_regime(s.regime, &mem, &map).expect("pool large enough");
        apply_wp_changes(&mut e, &mut stage2)?;
        let mut r = s.regime;
        let mut extra = Vec::new();
        for st in &steps {
            match st {
                Step::L1(idx, words) => {
                    for (k, &w) in words.iter().enumerate() {
                        let i = (*idx as u64 + k as u64) & 0xfff;
                        let gpa = if r.ttbr_for((i as u32) << 20) == 1 { TTB1 } else { r.ttbr0_table().0 as u64 } + i * 4;
                        if mem.write_u32(gpa, w).is_ok() {
                            e.sync_write(GuestPhysAddr::new(gpa), w, &mem, &map).expect("sync");
                        }
                        extra.push((i as u32) << 20 | 0x3000);
                    }
                }
                Step::L2(tab, j, words) => {
                    for (k, &w) in words.iter().enumerate() {
                        let gpa = L2_AREA + *tab as u64 * 0x400 + ((*j as u64 + k as u64) & 0xff) * 4;
                        mem.write_u32(gpa, w).expect("L2 area is RAM");
                        e.sync_write(GuestPhysAddr::new(gpa), w, &mem, &map).expect("sync");
                    }
                }
                Step::Dacr(d) => {
                    r.dacr = *d;
                    e.set_regime(r, &mem, &map).expect("dacr");
                }
                Step::Switch(which, asid) => {
                    r.ttbr0 = switch_ttbr0(*which);
                    r.contextidr = *asid as u32;
                    e.set_regime(r, &mem, &map).expect("switch");
                }
                Step::Tlbi => {
                    prop_assert_eq!(e.tlb_op(TlbOp::All), HostTlbOp::All);
                }
            }
            apply_wp_changes(&mut e, &mut stage2)?;
            invariants(&e)?;
        }
        let vas = all_mib_vas(&s, &extra);
        check_equivalence(&e, &r, &mem, &map, &vas)?;
        let mut fresh = ext_engine(64, 4);
        fresh.set_regime(r, &mem, &map).expect("fresh");
        for &v in &vas {
            for a in Access::ALL {
                prop_assert_eq!(e.shadow_translate(va(v), a), fresh.shadow_translate(va(v), a), "va {:#x} {:?}", v, a);
            }
        }
        // Cached roots only add to the protected set.
        let fresh_set: BTreeSet<u64> = fresh.protected().map(|p| p.raw()).collect();
        prop_assert_eq!(&fresh_set, &expected_protected(&r, &mem, false));
        prop_assert!(fresh_set.is_subset(&stage2));
        prop_assert_eq!(e.stats().rescans, 0);
        // Both roots sharing second-level tables equal fresh builds.
        check_shared_roots(&mut e, &r, &mem, &map, &vas, Some(|| ext_engine(64, 4)))?;
        apply_wp_changes(&mut e, &mut stage2)?;
        // Dropping everything releases everything.
        e.reset();
        apply_wp_changes(&mut e, &mut stage2)?;
        prop_assert!(stage2.is_empty());
    }
}

#[test]
fn external_wp_keeps_sections_supersections_and_large_pages() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let r = base_regime();
    // A section over the tables' MiB, a supersection over RAM_A + 16 MiB (which holds the
    // tables), and an L2 table whose large page covers the L2 table's own page.
    wr(&mut mem, TTB0 + (0x410 << 2), section(TTB0, 0, 3));
    let ss = (TTB0 as u32 & 0xff00_0000) | (1 << 18) | 2 | (3 << 10);
    for i in 0x200..0x210u64 {
        wr(&mut mem, TTB0 + i * 4, ss);
    }
    wr(&mut mem, TTB0 + (0x401 << 2), page_table(L2_AREA, 0));
    let large = (L2_AREA as u32 & 0xffff_0000) | 1 | (3 << 4);
    for j in 0..16 {
        wr(&mut mem, L2_AREA + 4 * j, large);
    }
    let cases = [
        (0x4101_0000u32, PageSize::Section),
        (0x2001_0000, PageSize::Supersection),
        (0x4010_0000, PageSize::Large),
    ];
    let mut own = engine(16, 2);
    own.set_regime(r, &mem, &map).unwrap();
    let mut ext = ext_engine(16, 2);
    ext.set_regime(r, &mem, &map).unwrap();
    assert_eq!(
        own.protected().collect::<Vec<_>>(),
        ext.protected().collect::<Vec<_>>()
    );
    assert!(ext.is_protected(GuestPhysAddr::new(L2_AREA)));
    for (v, size) in cases {
        let gpa = translate(&r, &mem, va(v), P1W).unwrap().pa;
        assert_eq!(gpa, L2_AREA, "{v:#x} maps the L2 table page");
        // Own protection: split to a read-only small page.
        assert!(own.shadow_translate(va(v), P1W).unwrap().is_err());
        let t = own.shadow_translate(va(v), P1R).unwrap().unwrap();
        assert_eq!(t.size, PageSize::Small);
        // External: full size, writable, same output.
        let t = ext.shadow_translate(va(v), P0W).unwrap().unwrap();
        assert_eq!((t.pa, t.size), (HPA_A + (L2_AREA - RAM_A), size));
        // The write still classifies as write-protect emulation.
        assert_eq!(
            ext.classify(va(v), P1W, &mem, &map),
            Resolution::WriteProtect {
                gpa: GuestPhysAddr::new(L2_AREA)
            }
        );
    }
    assert_eq!(ext.stats().rescans, 0);
    assert!(ext.memory_stats().shadow_l2_tables < own.memory_stats().shadow_l2_tables);
}

#[test]
fn external_wp_changes_follow_hooks_evictions_and_regime_drops() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    wr(&mut mem, TTB0 + (0x410 << 2), section(TTB0, 0, 3));
    wr(&mut mem, TTB0 + (0x401 << 2), page_table(L2_AREA, 0));
    wr(
        &mut mem,
        TTB0 + (0x402 << 2),
        page_table(L2_AREA + 0x400, 0),
    ); // same page
    wr(
        &mut mem,
        TTB0 + (0x403 << 2),
        page_table(L2_AREA + 0x1000, 0),
    );
    let mut e = ext_engine(16, 1);
    assert!(e.options().external_wp);
    e.set_regime(r, &mem, &map).unwrap();
    let l1_pages = [TTB0, TTB0 + 0x1000, TTB0 + 0x2000, TTB0 + 0x3000];
    let mut want: Vec<(u64, bool)> = l1_pages.iter().map(|&p| (p, true)).collect();
    want.extend([(L2_AREA, true), (L2_AREA + 0x1000, true)]);
    assert_eq!(e.take_wp_changes(), changes(&want));
    assert!(e.take_wp_changes().is_empty());

    // A guest store into a protected L2 table (trapped by stage 2, emulated, then synced)
    // updates the shadow as usual.
    let d = small(RAM_A + 0x9000, 3);
    wr(&mut mem, L2_AREA + 0x1000 + 7 * 4, d);
    let out = e
        .sync_write(GuestPhysAddr::new(L2_AREA + 0x1000 + 7 * 4), d, &mem, &map)
        .unwrap();
    assert_eq!(
        out.flush,
        HostTlbOp::Mvaa {
            va: 0x4030_7000,
            pages: 1
        }
    );
    assert_eq!(
        e.shadow_translate(va(0x4030_7abc), P0W)
            .unwrap()
            .unwrap()
            .pa,
        HPA_A + 0x9abc
    );
    assert!(e.take_wp_changes().is_empty());

    // Unhooking one of two tables sharing a page keeps it protected; the last one
    // releases it.
    let sync = |e: &mut ShadowEngine, mem: &mut SparseMemory, gpa: u64, v: u32| {
        wr(mem, gpa, v);
        e.sync_write(GuestPhysAddr::new(gpa), v, mem, &map).unwrap();
    };
    sync(&mut e, &mut mem, TTB0 + (0x402 << 2), 0);
    assert!(e.take_wp_changes().is_empty());
    sync(&mut e, &mut mem, TTB0 + (0x401 << 2), 0);
    assert_eq!(e.take_wp_changes(), changes(&[(L2_AREA, false)]));
    // Released and protected again in between: no net change, nothing reported.
    sync(&mut e, &mut mem, TTB0 + (0x403 << 2), 0);
    sync(
        &mut e,
        &mut mem,
        TTB0 + (0x404 << 2),
        page_table(L2_AREA + 0x1000, 0),
    );
    assert!(e.take_wp_changes().is_empty());
    assert!(e.is_protected(GuestPhysAddr::new(L2_AREA + 0x1c00)));

    // A new TTBR0 evicts the only cached root: its pages are released, the new ones
    // protected (TTB0_ALT references L2_AREA again).
    wr(
        &mut mem,
        TTB0_ALT + (0x401 << 2),
        page_table(L2_AREA + 0x800, 0),
    );
    r.ttbr0 = TTB0_ALT as u32;
    e.set_regime(r, &mem, &map).unwrap();
    assert_eq!(e.stats().evictions, 1);
    let mut want: Vec<(u64, bool)> = l1_pages.iter().map(|&p| (p, false)).collect();
    want.extend([(L2_AREA, true), (L2_AREA + 0x1000, false)]);
    want.extend((0..4).map(|k| (TTB0_ALT + k * 0x1000, true)));
    assert_eq!(e.take_wp_changes(), changes(&want));

    // A structural change to the MMU off drops every root: everything is released.
    r.sctlr = 0;
    e.set_regime(r, &mem, &map).unwrap();
    let mut want: Vec<(u64, bool)> = (0..4).map(|k| (TTB0_ALT + k * 0x1000, false)).collect();
    want.insert(0, (L2_AREA, false));
    assert_eq!(e.take_wp_changes(), changes(&want));
    assert_eq!(e.protected_pages(), 0);

    // A TTBCR change (N=2: 4 KiB TTBR0 table, TTBR1 used) reports only net changes.
    r.sctlr = sctlr::M;
    r.ttbr0 = TTB0 as u32;
    e.set_regime(r, &mem, &map).unwrap();
    let _ = e.take_wp_changes();
    r.ttbcr = 2;
    e.set_regime(r, &mem, &map).unwrap();
    let mut want: Vec<(u64, bool)> = (1..4).map(|k| (TTB0 + k * 0x1000, false)).collect();
    // TTB1 = TTB0 + 16 KiB; its L2 tables (none) and pages join.
    want.extend((0..4).map(|k| (TTB1 + k * 0x1000, true)));
    // VA 0x40.. now goes through TTBR1 (empty): TTB0's L2 table at 0x404 is released.
    want.push((L2_AREA + 0x1000, false));
    want.sort_unstable();
    assert_eq!(e.take_wp_changes(), changes(&want));
    let set: Vec<GuestPhysAddr> = e.protected().collect();
    assert_eq!(
        set,
        pages(&[TTB0, TTB1, TTB1 + 0x1000, TTB1 + 0x2000, TTB1 + 0x3000])
    );
}

#[test]
fn own_wp_reports_no_changes() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    wr(&mut mem, TTB0 + (0x401 << 2), page_table(L2_AREA, 0));
    let mut e = engine(8, 2);
    assert!(!e.options().external_wp);
    e.set_regime(base_regime(), &mem, &map).unwrap();
    assert_eq!(e.protected_pages(), 5);
    assert!(e.take_wp_changes().is_empty());
    e.reset();
    assert!(e.take_wp_changes().is_empty());
    assert_eq!(e.protected_pages(), 0);
}

#[test]
fn contextidr_change_is_a_cache_hit() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    wr(
        &mut mem,
        TTB0 + (0x400 << 2),
        section(RAM_A, 0, 3) | 1 << 17,
    ); // nG
    wr(&mut mem, TTB0 + (0x401 << 2), page_table(L2_AREA, 0));
    wr(&mut mem, L2_AREA, small(RAM_A, 3) | 1 << 11); // nG
    wr(
        &mut mem,
        TTB0_ALT + (0x400 << 2),
        section(RAM_A + 0x10_0000, 0, 3),
    );
    for mut e in [engine(8, 2), ext_engine(8, 2)] {
        r.ttbr0 = TTB0 as u32;
        r.contextidr = 7;
        let first = e.set_regime(r, &mem, &map).unwrap();
        let _ = e.take_wp_changes();
        let st = *e.stats();
        // Linux switch_mm: CONTEXTIDR first (new ASID with the old TTBR0)...
        r.contextidr = 0x105;
        let ch = e.set_regime(r, &mem, &map).unwrap();
        assert_eq!(e.stats().cache_hits, st.cache_hits + 1);
        assert_eq!(e.stats().cache_misses, st.cache_misses);
        assert_eq!(e.stats().fills, st.fills);
        assert_eq!(e.stats().l2_builds, st.l2_builds);
        assert_eq!(ch.flush, HostTlbOp::None);
        assert_eq!(
            ch.regs,
            ShadowRegs {
                contextidr: 0x105,
                ..first.regs
            }
        );
        assert!(e.take_wp_changes().is_empty());
        // The nG entries carry over unchanged (the hardware tags them with the new ASID).
        let t = e.shadow_translate(va(0x4010_0000), P0R).unwrap().unwrap();
        assert!(!t.global);
        // ...then TTBR0: one build; switching back costs two hits.
        r.ttbr0 = TTB0_ALT as u32;
        e.set_regime(r, &mem, &map).unwrap();
        assert_eq!(e.stats().cache_misses, st.cache_misses + 1);
        r.contextidr = 7;
        e.set_regime(r, &mem, &map).unwrap();
        r.ttbr0 = TTB0 as u32;
        let back = e.set_regime(r, &mem, &map).unwrap();
        assert_eq!(back.regs, first.regs);
        assert_eq!(e.stats().cache_misses, st.cache_misses + 1);
        assert_eq!(e.stats().cache_hits, st.cache_hits + 3);
        assert_eq!(e.cached_roots(), 2);
        assert_eq!(e.stats().evictions, 0);
    }
}

#[test]
fn reset_drops_everything_and_reports_unprotect() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    wr(&mut mem, TTB0 + (0x401 << 2), page_table(L2_AREA, 0));
    wr(
        &mut mem,
        TTB0_ALT + (0x401 << 2),
        page_table(L2_AREA + 0x2000, 0),
    );
    let mut e = ext_engine(8, 2);
    e.set_regime(r, &mem, &map).unwrap();
    r.ttbr0 = TTB0_ALT as u32;
    e.set_regime(r, &mem, &map).unwrap();
    let protected: Vec<GuestPhysAddr> = e.protected().collect();
    assert_eq!(protected.len(), 10);
    assert_eq!(e.take_wp_changes().len(), 10);
    let st = *e.stats();
    e.reset();
    let want: Vec<(GuestPhysAddr, bool)> = protected.iter().map(|&p| (p, false)).collect();
    assert_eq!(e.take_wp_changes(), want);
    assert_eq!(e.protected_pages(), 0);
    assert_eq!(e.cached_roots(), 0);
    assert!(e.regime().is_none());
    assert!(e.shadow_regs().is_none());
    assert!(e.shadow_translate(va(0x4010_0000), P1R).is_none());
    assert_eq!(e.pool().usage(), (0, 0));
    assert_eq!(e.memory_stats(), Default::default());
    // Statistics are kept; the dropped roots count as evictions and need a TLB flush.
    assert_eq!(e.stats().evictions, st.evictions + 2);
    assert_eq!(e.stats().cache_misses, st.cache_misses);
    assert_eq!(
        e.sync_write(GuestPhysAddr::new(L2_AREA), 0, &mem, &map),
        Err(ShadowError::NoRegime)
    );
    // The next regime starts from scratch.
    let ch = e.set_regime(r, &mem, &map).unwrap();
    assert_eq!(ch.flush, HostTlbOp::All);
    assert_eq!(e.stats().cache_misses, st.cache_misses + 1);
    assert_eq!(e.take_wp_changes().len(), 5);
    assert_eq!(
        e.shadow_translate(va(0x4010_0000), P1R)
            .unwrap()
            .unwrap_err()
            .level,
        2
    );
}

#[test]
fn memory_stats_count_shadow_and_guest_tables() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    wr(&mut mem, TTB0 + (0x401 << 2), page_table(L2_AREA, 0));
    wr(
        &mut mem,
        TTB0 + (0x402 << 2),
        page_table(L2_AREA + 0x400, 0),
    );
    wr(
        &mut mem,
        TTB0 + (0x403 << 2),
        page_table(L2_AREA + 0x400, 0),
    ); // the same guest table: one shared shadow table
    wr(&mut mem, TTB0 + (0x500 << 2), section(RAM_A, 0, 3));
    wr(&mut mem, TTB0_ALT + (0x401 << 2), page_table(L2_AREA, 0));
    wr(
        &mut mem,
        TTB0_ALT + (0x402 << 2),
        page_table(L2_AREA + 0x800, 0),
    );
    let mut e = ext_engine(8, 2);
    assert_eq!(e.memory_stats(), Default::default());
    e.set_regime(r, &mem, &map).unwrap();
    let m = e.memory_stats();
    assert_eq!(
        m,
        MemoryStats {
            shadow_l1_tables: 1,
            shadow_l2_tables: 2,
            shadow_bytes: 0x4000 + 2 * 0x400,
            pool_bytes: 2 * 0x4000,
            guest_l2_tables: 2,
            guest_table_bytes: 0x4000 + 2 * 0x400,
            protected_pages: 5,
        }
    );
    // A second root: its L1 table and one more L2 table (the shadow of L2_AREA is shared
    // with the first root).
    r.ttbr0 = TTB0_ALT as u32;
    e.set_regime(r, &mem, &map).unwrap();
    let m = e.memory_stats();
    assert_eq!((m.shadow_l1_tables, m.shadow_l2_tables), (2, 3));
    assert_eq!(m.shadow_bytes, 2 * 0x4000 + 3 * 0x400);
    assert_eq!(m.pool_bytes, 3 * 0x4000);
    assert_eq!(m.guest_l2_tables, 3);
    assert_eq!(m.guest_table_bytes, 2 * 0x4000 + 3 * 0x400);
    // N=1: 8 KiB TTBR0 tables plus the 16 KiB TTBR1 table (rebuilt: one root).
    r.ttbcr = 1;
    e.set_regime(r, &mem, &map).unwrap();
    let m = e.memory_stats();
    assert_eq!(m.shadow_l1_tables, 1);
    assert_eq!(m.guest_table_bytes, 0x2000 + 0x4000 + 2 * 0x400);
    // MMU off: the identity shadow shadows no guest table.
    r.sctlr = 0;
    e.set_regime(r, &mem, &map).unwrap();
    let m = e.memory_stats();
    assert_eq!(
        (m.guest_table_bytes, m.guest_l2_tables, m.protected_pages),
        (0, 0, 0)
    );
    assert_eq!(m.shadow_l1_tables, 1);
}

/// The external-mode generator run reaches writes to protected pages that the shadow
/// grants, including through guest sections, so the property tests above are not vacuous.
#[test]
fn external_wp_generator_reaches_protected_writes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut granted, mut via_section) = (0, 0);
    for _ in 0..48 {
        let s = scenario().new_tree(&mut runner).expect("tree").current();
        let map = host_map();
        let mut mem = guest_mem(&map);
        install(&s, &mut mem);
        let mut e = ext_engine(64, 4);
        e.set_regime(s.regime, &mem, &map).expect("pool");
        for v in probe_vas(&s, &[]) {
            if let Some(Ok(t)) = e.shadow_translate(va(v), P1W) {
                let gpa = translate(&s.regime, &mem, va(v), P1W).expect("exact").pa;
                if e.is_protected(GuestPhysAddr::new(gpa)) {
                    granted += 1;
                    if t.size >= PageSize::Section {
                        via_section += 1;
                    }
                }
            }
        }
    }
    std::println!("granted={granted} via_section={via_section}");
    assert!(granted > 0 && via_section > 0, "{granted} {via_section}");
}

// ---------------------------------------------------------------------------------------
// Walk traps: guest tables outside RAM give the guest's own external abort on the walk.

fn wt_engine(blocks: usize, roots: usize, external_wp: bool) -> ShadowEngine {
    ShadowEngine::with_options(
        Pool::new(HostPhysAddr::new(0x8000_0000), blocks),
        roots,
        ShadowOptions {
            external_wp,
            walk_trap: Some(WALK_TRAP),
            evict_written_inactive: false,
        },
    )
}

/// Guest RAM of the walk-trap tests: the fixture's plus [`PARTIAL_LEN`] bytes at
/// [`PARTIAL`], whose even words are small pages into RAM A (as L1 words: sections).
fn guest_mem_wt(map: &RegionMap) -> SparseMemory {
    let mut ranges = map.ram_ranges();
    ranges.push((PARTIAL, PARTIAL_LEN));
    let mut mem = SparseMemory::new(&ranges);
    for j in (0..PARTIAL_LEN / 4).step_by(2) {
        wr(&mut mem, PARTIAL + 4 * j, small(RAM_A + j * 0x1000, 3));
    }
    mem
}

fn abort(level: u8, domain: Option<u8>) -> Fault {
    Fault {
        kind: FaultKind::ExternalAbortOnWalk,
        level,
        domain,
    }
}

#[test]
fn walk_trap_l2_table_outside_ram() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let r = base_regime();
    // 0x400: an L2 table in MMIO space (domain 4, PXN, NS); 0x401: a readable table;
    // 0x402: a section.
    let bad = page_table(MMIO + 0x400, 4) | (1 << 2) | (1 << 3);
    wr(&mut mem, TTB0 + (0x400 << 2), bad);
    wr(&mut mem, TTB0 + (0x401 << 2), page_table(L2_AREA, 2));
    wr(&mut mem, L2_AREA + 4 * 5, small(RAM_A + 0x5000, 3));
    wr(&mut mem, TTB0 + (0x402 << 2), section(RAM_A, 0, 3));
    let guest = abort(2, Some(4));
    assert_eq!(translate(&r, &mem, va(0x4000_5000), P1R), Err(guest));
    // Without a walk trap the shadow gives a translation fault: the wrong status.
    let mut plain = ext_engine(8, 2);
    plain.set_regime(r, &mem, &map).unwrap();
    assert_eq!(
        plain
            .shadow_translate(va(0x4000_5000), P1R)
            .unwrap()
            .unwrap_err()
            .kind,
        FaultKind::Translation
    );
    for external in [true, false] {
        let mut e = wt_engine(8, 2, external);
        e.set_regime(r, &mem, &map).unwrap();
        // Every VA of the MiB walks into the trap: a level-2 walk abort in the guest's
        // domain, exactly the guest's fault; the re-walk says so too.
        for v in [0x4000_0000, 0x4000_5abc, 0x400f_fffc] {
            for a in Access::ALL {
                assert_eq!(e.shadow_translate(va(v), a).unwrap(), Err(guest));
                assert_eq!(e.classify(va(v), a, &mem, &map), Resolution::Guest(guest));
            }
        }
        let (t, at) = shadow_trap_read(&e, 0x4000_5abc).expect("trap entry");
        assert_eq!((t.domain, t.ns, t.pxn), (4, true, true));
        assert_eq!(at, WALK_TRAP as u64 + 5 * 4);
        assert!(e.is_walk_trap(at) && !e.is_walk_trap(WALK_TRAP as u64 - 4));
        assert!(!e.is_walk_trap(WALK_TRAP as u64 + 0x400));
        // The neighbours are exact.
        let t = e.shadow_translate(va(0x4010_5678), P0W).unwrap().unwrap();
        assert_eq!(t.pa, HPA_A + 0x5678);
        let t = e.shadow_translate(va(0x4020_5678), P0W).unwrap().unwrap();
        assert_eq!(t.pa, HPA_A + 0x5678);
        // No reverse map, no shadow L2 table and no protection for the MMIO table.
        assert!(!e.is_protected(GuestPhysAddr::new(MMIO)));
        let m = e.memory_stats();
        assert_eq!((m.guest_l2_tables, m.shadow_l2_tables), (1, 1));
        if external {
            let mut want: Vec<(u64, bool)> = (0..4).map(|k| (TTB0 + k * 0x1000, true)).collect();
            want.push((L2_AREA, true));
            want.sort_unstable();
            assert_eq!(e.take_wp_changes(), changes(&want));
        }
        // Fault resolution injects the guest's fault.
        assert_eq!(
            e.resolve_fault(va(0x4000_0000), P1W, &mem, &map),
            Resolution::Guest(guest)
        );
        assert_eq!(e.stats().guest_faults, 1);
    }
}

#[test]
fn walk_trap_ttbr0_table_outside_ram() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    r.ttbcr = 1; // TTBR0 below 2 GiB (an 8 KiB table), TTBR1 above
    r.ttbr0 = TTB_BAD as u32 | 0x59;
    // The kernel's code and data through TTBR1.
    wr(&mut mem, TTB1 + (0x800 << 2), section(RAM_A, 0, 1));
    wr(&mut mem, TTB1 + (0xc00 << 2), page_table(L2_AREA, 1));
    wr(&mut mem, L2_AREA, small(RAM_A + 0x3000, 3));
    let x1 = acc(Pl::Pl1, AccessKind::Exec);
    let mut e = wt_engine(8, 2, true);
    e.set_regime(r, &mem, &map).unwrap();
    let t = e.shadow_translate(va(0x8000_1234), x1).unwrap().unwrap();
    assert_eq!(t.pa, HPA_A + 0x1234);
    let t = e.shadow_translate(va(0xc000_0010), P0W).unwrap().unwrap();
    assert_eq!(t.pa, HPA_A + 0x3010);
    // Every TTBR0 index: the guest takes a level-1 walk abort; the shadow walks into the
    // trap (domain 0), which the hypervisor turns into the guest's fault by re-walking.
    let guest = abort(1, None);
    for idx in (0..0x800u32).step_by(0x7f).chain([0x7ff]) {
        let v = (idx << 20) | 0x1_2345;
        for a in Access::ALL {
            assert_eq!(translate(&r, &mem, va(v), a), Err(guest));
            assert_eq!(
                e.shadow_translate(va(v), a).unwrap(),
                Err(abort(2, Some(0)))
            );
            assert_eq!(e.classify(va(v), a, &mem, &map), Resolution::Guest(guest));
        }
        let (t, at) = shadow_trap_read(&e, v).expect("trap entry");
        assert_eq!((t.domain, t.ns, t.pxn), (0, false, false));
        assert!(e.is_walk_trap(at));
    }
    // TTBR1 faults stay translation faults, without a trap.
    let f = abort(1, None);
    assert_ne!(translate(&r, &mem, va(0x9000_0000), P1R), Err(f));
    assert_eq!(
        e.shadow_translate(va(0x9000_0000), P1R).unwrap(),
        translate(&r, &mem, va(0x9000_0000), P1R)
    );
    assert!(shadow_trap_read(&e, 0x9000_0000).is_none());
    // The unreadable TTBR0 table is not protected; TTBR1's table and L2 table are.
    let mut want: Vec<u64> = (0..4).map(|k| TTB1 + k * 0x1000).collect();
    want.push(L2_AREA);
    want.sort_unstable();
    assert_eq!(e.protected().collect::<Vec<_>>(), pages(&want));
    assert_eq!(
        e.take_wp_changes(),
        want.iter()
            .map(|&p| (GuestPhysAddr::new(p), true))
            .collect::<Vec<_>>()
    );
    // PD0 gives translation faults, not traps.
    r.ttbcr = 1 | ttbcr::PD0;
    e.set_regime(r, &mem, &map).unwrap();
    let f = e
        .shadow_translate(va(0x1000_0000), P1R)
        .unwrap()
        .unwrap_err();
    assert_eq!(f, translate(&r, &mem, va(0x1000_0000), P1R).unwrap_err());
    assert_eq!((f.kind, f.level), (FaultKind::Translation, 1));
    assert!(shadow_trap_read(&e, 0x1000_0000).is_none());
    // With the MMU off the identity shadow never traps.
    r.sctlr = 0;
    e.set_regime(r, &mem, &map).unwrap();
    assert!(shadow_trap_read(&e, TTB_BAD as u32).is_none());
    assert!(e.shadow_translate(va(0x1000_0000), P1R).unwrap().is_err());
    assert_eq!(
        e.shadow_translate(va(0x4000_0000), P1R)
            .unwrap()
            .unwrap()
            .pa,
        HPA_A
    );
    // Back on: a TTBR0 switch to a readable table is exact, and back is a cache hit.
    r.sctlr = sctlr::M;
    r.ttbcr = 1;
    e.set_regime(r, &mem, &map).unwrap();
    assert!(shadow_trap_read(&e, 0x1000_0000).is_some());
    wr(
        &mut mem,
        TTB0 + (0x100 << 2),
        section(RAM_A + 0x10_0000, 0, 3),
    );
    r.ttbr0 = TTB0 as u32;
    e.set_regime(r, &mem, &map).unwrap();
    let t = e.shadow_translate(va(0x1000_0010), P0R).unwrap().unwrap();
    assert_eq!(t.pa, HPA_A + 0x10_0010);
    assert!(shadow_trap_read(&e, 0x2000_0000).is_none());
    assert_eq!(
        e.shadow_translate(va(0x2000_0000), P0R).unwrap(),
        translate(&r, &mem, va(0x2000_0000), P0R)
    );
    let hits = e.stats().cache_hits;
    r.ttbr0 = TTB_BAD as u32;
    e.set_regime(r, &mem, &map).unwrap();
    assert_eq!(e.stats().cache_hits, hits + 1);
    assert!(shadow_trap_read(&e, 0x1000_0000).is_some());
    assert_eq!(
        e.classify(va(0x1000_0000), P1R, &mem, &map),
        Resolution::Guest(guest)
    );
}

#[test]
fn walk_trap_entries_follow_synced_writes() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    let l1 = TTB0 + (0x400 << 2);
    wr(&mut mem, l1, page_table(MMIO, 3));
    let mut e = wt_engine(8, 2, true);
    e.set_regime(r, &mem, &map).unwrap();
    let _ = e.take_wp_changes();
    assert_eq!(shadow_trap_read(&e, 0x4000_0000).unwrap().0.domain, 3);
    let sync = |e: &mut ShadowEngine, mem: &mut SparseMemory, gpa: u64, v: u32| {
        wr(mem, gpa, v);
        e.sync_write(GuestPhysAddr::new(gpa), v, mem, &map).unwrap()
    };
    // The guest points the entry at a readable table: exact, the table protected.
    wr(&mut mem, L2_AREA + 4 * 2, small(RAM_A + 0x2000, 3));
    let out = sync(&mut e, &mut mem, l1, page_table(L2_AREA, 3));
    assert_ne!(out.flush, HostTlbOp::None);
    assert!(shadow_trap_read(&e, 0x4000_0000).is_none());
    let t = e.shadow_translate(va(0x4000_2abc), P0W).unwrap().unwrap();
    assert_eq!(t.pa, HPA_A + 0x2abc);
    assert_eq!(
        e.shadow_translate(va(0x4000_3000), P0R).unwrap(),
        translate(&r, &mem, va(0x4000_3000), P0R)
    );
    assert_eq!(e.take_wp_changes(), changes(&[(L2_AREA, true)]));
    // Its words are synced through the reverse map.
    sync(&mut e, &mut mem, L2_AREA + 4 * 3, small(RAM_A + 0x7000, 3));
    let t = e.shadow_translate(va(0x4000_3000), P0R).unwrap().unwrap();
    assert_eq!(t.pa, HPA_A + 0x7000);
    // Back to an unreadable table: a trap again, the table released, the shadow L2 freed.
    sync(&mut e, &mut mem, l1, page_table(MMIO + 0x800, 5));
    let (t, _) = shadow_trap_read(&e, 0x4000_3000).expect("trap");
    assert_eq!(t.domain, 5);
    assert_eq!(
        e.shadow_translate(va(0x4000_3000), P1R).unwrap(),
        Err(abort(2, Some(5)))
    );
    assert_eq!(e.take_wp_changes(), changes(&[(L2_AREA, false)]));
    let m = e.memory_stats();
    assert_eq!((m.shadow_l2_tables, m.guest_l2_tables), (0, 0));
    // A store to the released table no longer touches the shadow.
    let out = sync(&mut e, &mut mem, L2_AREA + 4 * 4, small(RAM_A, 3));
    assert_eq!(out.rewritten, 0);
    // A DACR client <-> manager change of the entry's domain keeps the trap.
    r.dacr |= 3 << 10;
    e.set_regime(r, &mem, &map).unwrap();
    assert_eq!(shadow_trap_read(&e, 0x4000_0000).unwrap().0.domain, 5);
    // A section, then a fault, replace the trap.
    sync(&mut e, &mut mem, l1, section(RAM_A, 0, 3));
    assert_eq!(
        e.shadow_translate(va(0x4000_0010), P0R)
            .unwrap()
            .unwrap()
            .pa,
        HPA_A + 0x10
    );
    sync(&mut e, &mut mem, l1, page_table(TTB_BAD, 0));
    assert!(shadow_trap_read(&e, 0x4000_0000).is_some());
    sync(&mut e, &mut mem, l1, 0);
    assert!(shadow_trap_read(&e, 0x4000_0000).is_none());
    assert_eq!(
        e.shadow_translate(va(0x4000_0000), P1R).unwrap(),
        Err(Fault {
            kind: FaultKind::Translation,
            level: 1,
            domain: None
        })
    );
    assert_eq!(e.memory_stats().shadow_l2_tables, 0);
    assert!(e.take_wp_changes().is_empty());
}

#[test]
fn walk_trap_partly_readable_l2_table_is_shadowed_normally() {
    let map = host_map();
    let mut mem = guest_mem_wt(&map);
    let r = base_regime();
    wr(&mut mem, TTB0 + (0x400 << 2), page_table(PARTIAL, 2)); // 128 readable words
    wr(
        &mut mem,
        TTB0 + (0x401 << 2),
        page_table(PARTIAL + 0x400, 2),
    ); // none
    let mut e = wt_engine(8, 2, true);
    e.set_regime(r, &mem, &map).unwrap();
    assert!(shadow_trap_read(&e, 0x4000_0000).is_none());
    for j in 0..256u32 {
        let v = 0x4000_0000 | (j << 12) | 0x44;
        let g = translate(&r, &mem, va(v), P0W);
        let s = e.shadow_translate(va(v), P0W).unwrap();
        if j < 128 {
            // The readable part is exact (pages on even words, faults on odd ones).
            assert_eq!(
                s.map(|t| t.pa),
                g.map(|t| map.lookup(t.pa).unwrap()),
                "{v:#x}"
            );
            assert_eq!(g.is_ok(), j % 2 == 0);
        } else {
            // The unreadable words: a translation fault where the guest takes a walk
            // abort (documented simplification).
            assert_eq!(g, Err(abort(2, Some(2))));
            assert_eq!(
                s,
                Err(Fault {
                    kind: FaultKind::Translation,
                    level: 2,
                    domain: Some(2)
                })
            );
        }
    }
    // The fully unreadable table is a trap; the partly readable one is protected.
    assert!(shadow_trap_read(&e, 0x4010_0000).is_some());
    assert!(e.is_protected(GuestPhysAddr::new(PARTIAL)));
    assert_eq!(e.memory_stats().guest_l2_tables, 1);
}

/// A guest page-table descriptor whose L2 table is not RAM, or only partly.
fn unreadable_table_item() -> impl Strategy<Value = (u16, Vec<u32>)> {
    let idx = prop_oneof![3 => 0x400u16..0x440, 1 => 0u16..4096, 1 => 0xc00u16..0xc40];
    (idx, 0u8..4, any::<u32>()).prop_map(|(i, kind, rnd)| {
        let base = match kind {
            0 => MMIO as u32 + ((rnd >> 20) & 0xf) * 0x400,
            1 => PARTIAL as u32,
            2 => PARTIAL as u32 + 0x400,
            // Below RAM A: never RAM.
            _ => rnd & 0x3fff_fc00,
        };
        (i, alloc::vec![base | (rnd & 0x3fc) | 1])
    })
}

fn l1_item_wt() -> impl Strategy<Value = (u16, Vec<u32>)> {
    prop_oneof![3 => l1_item(), 1 => unreadable_table_item()]
}

/// [`regime_strategy`] with TTBR0 sometimes outside RAM or partly RAM, and TTBR1 (used
/// when N≠0) sometimes outside RAM.
fn regime_wt() -> impl Strategy<Value = Regime> {
    (regime_strategy(), 0u8..8, 0u8..6).prop_map(|(mut r, t0, t1)| {
        let attrs = r.ttbr0 & 0x5b;
        match t0 {
            0 => r.ttbr0 = TTB_BAD as u32 | attrs,
            1 => r.ttbr0 = PARTIAL as u32 | attrs,
            _ => {}
        }
        if t1 == 0 {
            r.ttbr1 = TTB_BAD as u32 + 0x4000;
        }
        r
    })
}

fn scenario_wt() -> impl Strategy<Value = Scenario> {
    (
        regime_wt(),
        proptest::collection::vec(l1_item_wt(), 1..20),
        proptest::collection::vec(l2_item(), 0..40),
        proptest::collection::vec(any::<u32>(), 8),
    )
        .prop_map(|(regime, l1, l2, probes)| Scenario {
            regime,
            l1,
            l2,
            probes,
        })
}

fn step_wt() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => l1_item_wt().prop_map(|(i, w)| Step::L1(i, w)),
        6 => l2_item().prop_map(|(t, j, w)| Step::L2(t, j, w)),
        2 => any::<u32>().prop_map(Step::Dacr),
        2 => (0u8..4, 0u8..3).prop_map(|(b, a)| Step::Switch(b, a)),
        1 => Just(Step::Tlbi),
    ]
}

/// Applies one step to guest memory, the regime and the engine (guest stores outside RAM
/// are dropped, as the hardware would; `strict`: engine errors fail the test). Returns the
/// VAs the step touched.
fn apply_step(
    e: &mut ShadowEngine,
    mem: &mut SparseMemory,
    map: &RegionMap,
    r: &mut Regime,
    st: &Step,
    strict: bool,
) -> Result<Vec<u32>, TestCaseError> {
    let mut touched = Vec::new();
    let check = |res: Result<(), ShadowError>| -> Result<(), TestCaseError> {
        if strict {
            prop_assert_eq!(res, Ok(()));
        }
        Ok(())
    };
    match st {
        Step::L1(idx, words) => {
            for (k, &w) in words.iter().enumerate() {
                let i = (*idx as u64 + k as u64) & 0xfff;
                let gpa = l1_table_base(r, i as u16) + i * 4;
                if mem.write_u32(gpa, w).is_ok() {
                    check(
                        e.sync_write(GuestPhysAddr::new(gpa), w, &*mem, map)
                            .map(|_| ()),
                    )?;
                }
                touched.push((i as u32) << 20 | 0x3000);
            }
        }
        Step::L2(tab, j, words) => {
            for (k, &w) in words.iter().enumerate() {
                let gpa = L2_AREA + *tab as u64 * 0x400 + ((*j as u64 + k as u64) & 0xff) * 4;
                mem.write_u32(gpa, w).expect("L2 area is RAM");
                check(
                    e.sync_write(GuestPhysAddr::new(gpa), w, &*mem, map)
                        .map(|_| ()),
                )?;
            }
        }
        Step::Dacr(d) => {
            r.dacr = *d;
            check(e.set_regime(*r, &*mem, map).map(|_| ()))?;
        }
        Step::Switch(which, asid) => {
            r.ttbr0 = switch_ttbr0(*which);
            r.contextidr = *asid as u32;
            check(e.set_regime(*r, &*mem, map).map(|_| ()))?;
        }
        Step::Tlbi => {
            prop_assert_eq!(e.tlb_op(TlbOp::All), HostTlbOp::All);
        }
    }
    Ok(touched)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Walk traps over random tables, some of them (or the TTBRs' tables) outside RAM:
    /// every VA translates exactly or faults with the guest's fault, walk aborts read the
    /// trap, nothing else changes compared with an engine without a trap (but sizes, with
    /// own protection), and unreadable tables are never protected.
    #[test]
    fn walk_trap_shadow_is_exact(s in scenario_wt(), own in any::<bool>()) {
        let map = host_map();
        let mut mem = guest_mem_wt(&map);
        install(&s, &mut mem);
        let mut e = wt_engine(64, 4, !own);
        e.set_regime(s.regime, &mem, &map).expect("pool large enough");
        let vas = all_mib_vas(&s, &[]);
        check_equivalence(&e, &s.regime, &mem, &map, &vas)?;
        let mut plain = ShadowEngine::with_options(
            Pool::new(HostPhysAddr::new(0x8000_0000), 64),
            4,
            ShadowOptions {
                external_wp: !own,
                walk_trap: None,
                evict_written_inactive: false,
            },
        );
        plain.set_regime(s.regime, &mem, &map).expect("pool large enough");
        let unsize = |t: Option<Result<Translation, Fault>>| t.map(|t| t.map(|mut t| { t.size = PageSize::Small; t }));
        for &v in &vas {
            for a in Access::ALL {
                if matches!(translate(&s.regime, &mem, va(v), a), Err(f) if f.kind == FaultKind::ExternalAbortOnWalk) {
                    continue;
                }
                let (x, y) = (e.shadow_translate(va(v), a), plain.shadow_translate(va(v), a));
                if own {
                    prop_assert_eq!(unsize(x), unsize(y), "va {:#x} {:?}", v, a);
                } else {
                    prop_assert_eq!(x, y, "va {:#x} {:?}", v, a);
                }
            }
        }
        let want = expected_protected(&s.regime, &mem, true);
        let set: BTreeSet<u64> = e.protected().map(|p| p.raw()).collect();
        prop_assert_eq!(&set, &want);
        if !own {
            let mut stage2 = BTreeSet::new();
            apply_wp_changes(&mut e, &mut stage2)?;
            prop_assert_eq!(&stage2, &want);
            prop_assert_eq!(e.stats().rescans, 0);
        }
    }

    /// Walk traps under random synced writes (including ones that hook or unhook
    /// unreadable tables), DACR changes and TTBR0 switches to tables outside RAM or partly
    /// RAM: the shadow stays exact with traps exactly where the guest walk aborts, equals a
    /// fresh build (external protection), and the reported protection changes track the
    /// protected set.
    #[test]
    fn walk_trap_sync_keeps_shadow_exact(s in scenario_wt(), steps in proptest::collection::vec(step_wt(), 1..12), own in any::<bool>()) {
        let map = host_map();
        let mut mem = guest_mem_wt(&map);
        install(&s, &mut mem);
        let mut e = wt_engine(64, 4, !own);
        let mut stage2 = BTreeSet::new();
        e.set_regime(alt_regime(&s.regime), &mem, &map).expect("pool large enough");
        e.set_regime(s.regime, &mem, &map).expect("pool large enough");
        if !own {
            apply_wp_changes(&mut e, &mut stage2)?;
        }
        let mut r = s.regime;
        let mut extra = Vec::new();
        for st in &steps {
            extra.extend(apply_step(&mut e, &mut mem, &map, &mut r, st, true)?);
            if !own {
                apply_wp_changes(&mut e, &mut stage2)?;
            }
            invariants(&e)?;
        }
        let vas = all_mib_vas(&s, &extra);
        check_equivalence(&e, &r, &mem, &map, &vas)?;
        let mut fresh = wt_engine(64, 4, !own);
        fresh.set_regime(r, &mem, &map).expect("fresh");
        check_equivalence(&fresh, &r, &mem, &map, &vas)?;
        let fresh_set: BTreeSet<u64> = fresh.protected().map(|p| p.raw()).collect();
        prop_assert_eq!(&fresh_set, &expected_protected(&r, &mem, true));
        if !own {
            for &v in &vas {
                for a in Access::ALL {
                    prop_assert_eq!(e.shadow_translate(va(v), a), fresh.shadow_translate(va(v), a), "va {:#x} {:?}", v, a);
                }
            }
            prop_assert!(fresh_set.is_subset(&stage2));
        }
        let mk: Option<fn() -> ShadowEngine> = if own { None } else { Some(|| wt_engine(64, 4, true)) };
        check_shared_roots(&mut e, &r, &mem, &map, &vas, mk)?;
        if !own {
            apply_wp_changes(&mut e, &mut stage2)?;
        }
        e.reset();
        if !own {
            apply_wp_changes(&mut e, &mut stage2)?;
            prop_assert!(stage2.is_empty());
        }
        prop_assert_eq!(e.protected_pages(), 0);
    }

    /// A pool too small for the scenario, with walk traps: whatever the shadow grants is
    /// exact and a trap is only ever where the guest walk aborts.
    #[test]
    fn walk_trap_tiny_pool_stays_safe(s in scenario_wt(), steps in proptest::collection::vec(step_wt(), 1..8), blocks in 1usize..4) {
        let map = host_map();
        let mut mem = guest_mem_wt(&map);
        install(&s, &mut mem);
        let mut e = wt_engine(blocks, 2, true);
        let mut r = s.regime;
        let _ = e.set_regime(alt_regime(&r), &mem, &map);
        let _ = e.set_regime(r, &mem, &map);
        for st in &steps {
            apply_step(&mut e, &mut mem, &map, &mut r, st, false)?;
            invariants(&e)?;
            if e.shadow_regs().is_some() {
                check_shadow(&e, &r, &mem, &map, &probe_vas(&s, &[]), false)?;
            }
        }
    }
}

/// The walk-trap generators reach level-1 and level-2 walk aborts (through traps), partly
/// readable tables and plain translations, so the property tests above are not vacuous.
#[test]
fn walk_trap_generator_covers_every_case() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut l1_traps, mut l2_traps, mut partial, mut ok) = (0, 0, 0, 0);
    for _ in 0..48 {
        let s = scenario_wt().new_tree(&mut runner).expect("tree").current();
        let map = host_map();
        let mut mem = guest_mem_wt(&map);
        install(&s, &mut mem);
        let mut e = wt_engine(64, 4, true);
        e.set_regime(s.regime, &mem, &map).expect("pool");
        for v in all_mib_vas(&s, &[]) {
            match translate(&s.regime, &mem, va(v), P1R) {
                Ok(_) => ok += 1,
                Err(f) if f.kind == FaultKind::ExternalAbortOnWalk => {
                    match (f.level, shadow_trap_read(&e, v).is_some()) {
                        (1, true) => l1_traps += 1,
                        (2, true) => l2_traps += 1,
                        (2, false) => partial += 1,
                        _ => {}
                    }
                }
                Err(_) => {}
            }
        }
    }
    std::println!("ok={ok} l1_traps={l1_traps} l2_traps={l2_traps} partial={partial}");
    assert!(ok > 500, "{ok}");
    assert!(
        l1_traps > 0 && l2_traps > 0 && partial > 0,
        "{l1_traps} {l2_traps} {partial}"
    );
}

// ---------------------------------------------------------------------------------------
// Shared shadow second-level tables.

/// An engine configured as on target: external write protection and a walk trap.
fn target_engine(blocks: usize, roots: usize) -> ShadowEngine {
    wt_engine(blocks, roots, true)
}

/// First-level table of the Linux model's process `k`.
fn linux_pgd(k: usize) -> u64 {
    0x4140_0000 + k as u64 * 0x4000
}

/// Builds a Linux-like address space set: `procs` processes whose first-level tables all
/// map the kernel (lowmem sections plus `kernel` shared second-level tables: modules,
/// vmalloc, fixmap, vectors) and `private` second-level tables of their own each (user
/// text, heap, stack). Activates every process once and returns the engine.
fn linux_model(
    procs: usize,
    kernel: usize,
    private: usize,
) -> (SparseMemory, RegionMap, ShadowEngine, Regime) {
    let map = host_map();
    let mut mem = guest_mem(&map);
    const KL2: u64 = 0x4150_0000;
    const UL2: u64 = 0x4160_0000;
    let kidx = |k: usize| -> u64 {
        // Modules below the kernel, then vmalloc, then the fixmap/vector MiBs at the top.
        match k % 3 {
            0 => 0xbf0 + (k / 3) as u64,
            1 => 0xe00 + (k / 3) as u64,
            _ => 0xfff - (k / 3) as u64,
        }
    };
    let uidx = |u: usize| -> u64 {
        match u % 3 {
            0 => (u / 3) as u64,
            1 => 0x010 + (u / 3) as u64,
            _ => 0x7ff - (u / 3) as u64,
        }
    };
    for k in 0..kernel {
        let t = KL2 + k as u64 * 0x400;
        for j in 0..256u64 {
            if (j + k as u64) % 3 != 2 {
                wr(
                    &mut mem,
                    t + j * 4,
                    small(RAM_A + ((k as u64 * 256 + j) * 0x1000) % RAM_A_LEN, 1),
                );
            }
        }
    }
    for p in 0..procs {
        let pgd = linux_pgd(p);
        for i in 0xc00..0xc20u64 {
            wr(
                &mut mem,
                pgd + i * 4,
                section(RAM_A + ((i - 0xc00) << 20), 0, 1),
            );
        }
        for k in 0..kernel {
            wr(
                &mut mem,
                pgd + kidx(k) * 4,
                page_table(KL2 + k as u64 * 0x400, 0),
            );
        }
        for u in 0..private {
            let t = UL2 + (p * private + u) as u64 * 0x400;
            wr(&mut mem, pgd + uidx(u) * 4, page_table(t, 1));
            for j in 0..256u64 {
                if !(j * 7 + p as u64).is_multiple_of(5) {
                    let pa = RAM_A + ((p as u64 * 4096 + u as u64 * 256 + j) * 0x1000) % RAM_A_LEN;
                    wr(&mut mem, t + j * 4, small(pa, 3));
                }
            }
        }
    }
    let mut e = target_engine(256, 64);
    let mut r = base_regime();
    for p in 0..procs {
        r.ttbr0 = linux_pgd(p) as u32;
        r.contextidr = p as u32 + 1;
        e.set_regime(r, &mem, &map).expect("pool large enough");
    }
    (mem, map, e, r)
}

/// The Linux model: 16 processes sharing 8 kernel second-level tables, 3 private ones
/// each. Every per-process first-level table points at the same kernel tables, so one
/// shadow copy of each is enough: shadow memory stays within 1.5 × the guest's tables.
#[test]
fn linux_model_shadow_memory_within_one_and_a_half_guest() {
    for (kernel, private) in [(8, 3), (32, 3)] {
        let (mem, map, mut e, mut r) = linux_model(16, kernel, private);
        let m = e.memory_stats();
        std::println!(
            "linux model: 16 procs, {kernel} kernel + {private} private L2 each: shadow_bytes={} ({} L1, {} L2) guest_table_bytes={} pool_bytes={} ratio={:.2}",
            m.shadow_bytes,
            m.shadow_l1_tables,
            m.shadow_l2_tables,
            m.guest_table_bytes,
            m.pool_bytes,
            m.shadow_bytes as f64 / m.guest_table_bytes as f64
        );
        assert_eq!(m.shadow_l1_tables, 16);
        assert_eq!(m.guest_l2_tables, kernel + 16 * private);
        assert_eq!(
            m.guest_table_bytes,
            16 * 0x4000 + (kernel + 16 * private) as u64 * 0x400
        );
        assert!(
            m.shadow_bytes * 2 <= m.guest_table_bytes * 3,
            "shadow {} > 1.5 x guest {}",
            m.shadow_bytes,
            m.guest_table_bytes
        );
        // One shadow copy per guest second-level table.
        assert_eq!(m.shadow_l2_tables, m.guest_l2_tables);
        // Every process still translates exactly.
        for p in 0..16 {
            r.ttbr0 = linux_pgd(p) as u32;
            r.contextidr = p as u32 + 1;
            e.set_regime(r, &mem, &map).expect("cache hit");
            let vas: Vec<u32> = (0..4096u32)
                .flat_map(|i| [i << 20, i << 20 | 0x5_6000, i << 20 | 0xf_f123])
                .collect();
            let _ = check_equivalence(&e, &r, &mem, &map, &vas).map_err(|err| panic!("{err}"));
        }
    }
}

/// Two roots whose first-level tables hook the same guest second-level tables: `TTB0` maps
/// 0x401 → L2 table 0, 0x402 → table 1; `TTB0_ALT` maps 0x401 → table 0, 0x402 → table 1
/// and 0x403 → table 2 (its own). Returns the engine with both roots built, TTB0_ALT active.
fn two_sharing_roots() -> (SparseMemory, RegionMap, ShadowEngine, Regime) {
    let map = host_map();
    let mut mem = guest_mem(&map);
    for t in 0..3u64 {
        for j in 0..256u64 {
            if j % 3 != 0 {
                wr(
                    &mut mem,
                    L2_AREA + t * 0x400 + j * 4,
                    small(RAM_A + (t << 20) + (j << 12), 3),
                );
            }
        }
    }
    // A large page in table 1, so that grouping is shared too.
    for j in 0x20..0x30u64 {
        wr(
            &mut mem,
            L2_AREA + 0x400 + j * 4,
            (RAM_A as u32 + 0x80_0000) | 1 | (3 << 4),
        );
    }
    for base in [TTB0, TTB0_ALT] {
        wr(&mut mem, base + (0x401 << 2), page_table(L2_AREA, 0));
        wr(
            &mut mem,
            base + (0x402 << 2),
            page_table(L2_AREA + 0x400, 1),
        );
        wr(&mut mem, base + (0x500 << 2), section(RAM_A, 0, 3));
    }
    wr(
        &mut mem,
        TTB0_ALT + (0x403 << 2),
        page_table(L2_AREA + 0x800, 0),
    );
    let mut e = target_engine(16, 4);
    let mut r = base_regime();
    e.set_regime(r, &mem, &map).unwrap();
    r.ttbr0 = TTB0_ALT as u32;
    r.contextidr = 8;
    e.set_regime(r, &mem, &map).unwrap();
    (mem, map, e, r)
}

/// Every page of the MiBs the shared-table tests use, plus a few others.
fn shared_test_vas() -> Vec<u32> {
    let mut v: Vec<u32> = (0x400..0x404u32)
        .flat_map(|i| (0..256u32).map(move |j| (i << 20) | (j << 12) | 0x24))
        .collect();
    v.extend([0x5000_0000, 0x5001_2345, 0x0, 0xc000_0000]);
    v
}

/// The shadow first-level word of L1 index `idx` in the active root.
fn active_l1_word(e: &ShadowEngine, idx: u32) -> u32 {
    let regs = e.shadow_regs().unwrap();
    e.pool()
        .read_hpa(((regs.ttbr0 & 0xffff_c000) | (idx << 2)) as u64)
        .unwrap()
}

fn switch_to(e: &mut ShadowEngine, r: &mut Regime, base: u64, mem: &SparseMemory, map: &RegionMap) {
    r.ttbr0 = base as u32;
    e.set_regime(*r, mem, map).unwrap();
}

fn assert_exact(e: &ShadowEngine, r: &Regime, mem: &SparseMemory, map: &RegionMap) {
    e.check_invariants().unwrap();
    check_equivalence(e, r, mem, map, &shared_test_vas()).unwrap();
}

/// (a) Roots hooking the same guest second-level tables share one shadow copy of each, and
/// both translate exactly.
#[test]
fn roots_share_shadow_l2_tables() {
    let (mem, map, mut e, mut r) = two_sharing_roots();
    let m = e.memory_stats();
    assert_eq!((m.shadow_l1_tables, m.shadow_l2_tables), (2, 3));
    assert_eq!(m.guest_l2_tables, 3);
    assert_eq!(m.shadow_bytes, 2 * 0x4000 + 3 * 0x400);
    assert_eq!(e.stats().l2_shares, 2);
    assert_eq!(e.stats().l2_builds, 3);
    let alt = (active_l1_word(&e, 0x401), active_l1_word(&e, 0x402));
    assert_exact(&e, &r, &mem, &map);
    switch_to(&mut e, &mut r, TTB0, &mem, &map);
    assert_eq!(e.stats().cache_hits, 1);
    // The same shadow tables (the domain is in the first-level word, not in the table).
    assert_eq!((active_l1_word(&e, 0x401), active_l1_word(&e, 0x402)), alt);
    assert_exact(&e, &r, &mem, &map);
    assert_eq!(
        e.shadow_translate(va(0x4022_0000), P0R)
            .unwrap()
            .unwrap()
            .size,
        PageSize::Large
    );
}

/// (b) A synced write to a shared guest second-level table updates the one shadow copy,
/// which both roots see; the flush is one TLBIMVAA (all ASIDs) since both reach the table
/// at the same VA.
#[test]
fn synced_write_to_shared_l2_is_seen_by_both_roots() {
    let (mut mem, map, mut e, mut r) = two_sharing_roots();
    let gpa = L2_AREA + 7 * 4;
    let d = small(RAM_A + 0x9000, 3);
    wr(&mut mem, gpa, d);
    let out = e
        .sync_write(GuestPhysAddr::new(gpa), d, &mem, &map)
        .unwrap();
    assert_eq!(
        out,
        SyncOutcome {
            rewritten: 1,
            flush: HostTlbOp::Mvaa {
                va: 0x4010_7000,
                pages: 1
            }
        }
    );
    assert_exact(&e, &r, &mem, &map);
    assert_eq!(
        e.shadow_translate(va(0x4010_7abc), P0R)
            .unwrap()
            .unwrap()
            .pa,
        HPA_A + 0x9abc
    );
    switch_to(&mut e, &mut r, TTB0, &mem, &map);
    assert_eq!(
        e.shadow_translate(va(0x4010_7abc), P0R)
            .unwrap()
            .unwrap()
            .pa,
        HPA_A + 0x9abc
    );
    assert_exact(&e, &r, &mem, &map);
    // Breaking the large page up rewrites its group once.
    let gpa = L2_AREA + 0x400 + 0x25 * 4;
    wr(&mut mem, gpa, 0);
    let out = e
        .sync_write(GuestPhysAddr::new(gpa), 0, &mem, &map)
        .unwrap();
    assert_eq!(out.rewritten, 16);
    assert_eq!(
        out.flush,
        HostTlbOp::Mvaa {
            va: 0x4022_0000,
            pages: 16
        }
    );
    assert_exact(&e, &r, &mem, &map);
    switch_to(&mut e, &mut r, TTB0_ALT, &mem, &map);
    assert_exact(&e, &r, &mem, &map);
    // Guest table 1 reached at a second VA (another L1 index of TTB0_ALT): a word written
    // there must be invalidated at both VAs, so everything is flushed.
    let w = page_table(L2_AREA + 0x400, 1);
    wr(&mut mem, TTB0_ALT + (0x404 << 2), w);
    e.sync_write(GuestPhysAddr::new(TTB0_ALT + (0x404 << 2)), w, &mem, &map)
        .unwrap();
    assert_eq!(e.memory_stats().shadow_l2_tables, 3);
    let gpa = L2_AREA + 0x400 + 9 * 4;
    let d = small(RAM_A + 0x4000, 2);
    wr(&mut mem, gpa, d);
    let out = e
        .sync_write(GuestPhysAddr::new(gpa), d, &mem, &map)
        .unwrap();
    assert_eq!((out.rewritten, out.flush), (1, HostTlbOp::All));
    assert_exact(&e, &r, &mem, &map);
    for v in [0x4020_9000, 0x4040_9000] {
        assert_eq!(
            e.shadow_translate(va(v), P1R).unwrap().unwrap().pa,
            HPA_A + 0x4000
        );
    }
    switch_to(&mut e, &mut r, TTB0, &mem, &map);
    assert_exact(&e, &r, &mem, &map);
}

/// (c) Unhooking a shared table from one root keeps the other exact and the table in use;
/// unhooking it from the last root returns its slot to the pool.
#[test]
fn unhooking_shared_l2_frees_it_with_the_last_reference() {
    let (mut mem, map, mut e, mut r) = two_sharing_roots();
    let before = e.memory_stats();
    assert_eq!(before.pool_bytes, 3 * 0x4000);
    // TTB0_ALT (active) unhooks table 0.
    let at = TTB0_ALT + (0x401 << 2);
    wr(&mut mem, at, 0);
    let out = e.sync_write(GuestPhysAddr::new(at), 0, &mem, &map).unwrap();
    assert_ne!(out.flush, HostTlbOp::None);
    assert_exact(&e, &r, &mem, &map);
    assert!(e.shadow_translate(va(0x4010_1000), P0R).unwrap().is_err());
    let m = e.memory_stats();
    assert_eq!(m.shadow_l2_tables, 3, "still used by TTB0");
    assert!(e.is_protected(GuestPhysAddr::new(L2_AREA)));
    switch_to(&mut e, &mut r, TTB0, &mem, &map);
    assert_exact(&e, &r, &mem, &map);
    assert_eq!(
        e.shadow_translate(va(0x4010_1000), P0R)
            .unwrap()
            .unwrap()
            .pa,
        HPA_A + 0x1000
    );
    // TTB0 unhooks it too: the slot goes back to the pool (the shadow tables of table 1
    // and 2 stay).
    let at = TTB0 + (0x401 << 2);
    wr(&mut mem, at, 0);
    e.sync_write(GuestPhysAddr::new(at), 0, &mem, &map).unwrap();
    assert_exact(&e, &r, &mem, &map);
    let m = e.memory_stats();
    assert_eq!(m.shadow_l2_tables, 2);
    assert_eq!(e.pool().usage(), (2, 2));
    assert_eq!(m.shadow_bytes, before.shadow_bytes - 0x400);
    // L2_AREA's page still holds tables 1 and 2.
    assert!(e.is_protected(GuestPhysAddr::new(L2_AREA)));
    // Rehooking builds it again, once, and the other root picks it up on its next fill.
    let w = page_table(L2_AREA, 0);
    wr(&mut mem, at, w);
    e.sync_write(GuestPhysAddr::new(at), w, &mem, &map).unwrap();
    let at_alt = TTB0_ALT + (0x401 << 2);
    wr(&mut mem, at_alt, w);
    let builds = e.stats().l2_builds;
    e.sync_write(GuestPhysAddr::new(at_alt), w, &mem, &map)
        .unwrap();
    assert_eq!(e.stats().l2_builds, builds, "shared, not rebuilt");
    assert_eq!(e.memory_stats(), before);
    assert_exact(&e, &r, &mem, &map);
    // Dropping a root keeps the other's shared tables; dropping all empties the pool.
    let mut r3 = r;
    for (k, base) in [TTB0_OTHER, TTB0_OTHER + 0x4000].iter().enumerate() {
        r3.ttbr0 = *base as u32;
        r3.contextidr = 20 + k as u32;
        e.set_regime(r3, &mem, &map).unwrap();
    }
    // Four roots cached: no eviction yet; a fifth evicts the least recently used.
    assert_eq!(e.stats().evictions, 0);
    r3.ttbr0 = TTB0_OTHER as u32 + 0x8000;
    e.set_regime(r3, &mem, &map).unwrap();
    assert_eq!(e.stats().evictions, 1, "TTB0_ALT evicted");
    e.check_invariants().unwrap();
    switch_to(&mut e, &mut r, TTB0, &mem, &map);
    assert_exact(&e, &r, &mem, &map);
    assert_eq!(e.memory_stats().shadow_l2_tables, 2);
    e.reset();
    e.check_invariants().unwrap();
    assert_eq!(e.pool().usage(), (0, 0));
    assert_eq!(e.pool().blocks_in_use(), 0);
}

/// The same guest table in a client domain and in a manager domain needs two shadow
/// copies (permissions differ); they merge back when the domains agree again.
#[test]
fn shared_l2_splits_and_merges_with_manager_domains() {
    let (mem, map, mut e, mut r) = two_sharing_roots();
    // Table 1 is hooked in domain 1 by both roots; make TTB0_ALT hook table 0 in domain 1
    // too, at another index.
    let mut mem = mem;
    let at = TTB0_ALT + (0x404 << 2);
    let w = page_table(L2_AREA, 1);
    wr(&mut mem, at, w);
    e.sync_write(GuestPhysAddr::new(at), w, &mem, &map).unwrap();
    assert_eq!(e.memory_stats().shadow_l2_tables, 3);
    // Domain 1 becomes manager: tables 0 (at 0x404) and 1 get manager copies; table 0
    // stays shared as a client copy at 0x401 in both roots.
    r.dacr = 0x5555_5555 | (3 << 2);
    e.set_regime(r, &mem, &map).unwrap();
    assert_eq!(e.memory_stats().shadow_l2_tables, 4);
    assert_exact(&e, &r, &mem, &map);
    assert!(e.shadow_translate(va(0x4040_1000), P0W).unwrap().is_ok());
    assert!(e.shadow_translate(va(0x4010_1000), P0W).unwrap().is_ok());
    switch_to(&mut e, &mut r, TTB0, &mem, &map);
    assert_exact(&e, &r, &mem, &map);
    // Domain 1 no access, then client again: the manager copies go.
    r.dacr = 0x5555_5555 & !(3 << 2);
    e.set_regime(r, &mem, &map).unwrap();
    assert_exact(&e, &r, &mem, &map);
    r.dacr = 0x5555_5555;
    e.set_regime(r, &mem, &map).unwrap();
    assert_eq!(e.memory_stats().shadow_l2_tables, 3);
    assert_exact(&e, &r, &mem, &map);
    switch_to(&mut e, &mut r, TTB0_ALT, &mem, &map);
    assert_exact(&e, &r, &mem, &map);
}

/// A pool with room for one root and a few second-level tables: building a second root
/// evicts the first, whose shared tables are then the new root's alone, and nothing leaks.
#[test]
fn pool_exhaustion_with_shared_l2_tables() {
    let (mem, map, _, mut r) = two_sharing_roots();
    let mut e = target_engine(2, 4);
    r.ttbr0 = TTB0 as u32;
    e.set_regime(r, &mem, &map).unwrap();
    assert_exact(&e, &r, &mem, &map);
    switch_to(&mut e, &mut r, TTB0_ALT, &mem, &map);
    assert_eq!(e.stats().evictions, 1);
    assert_exact(&e, &r, &mem, &map);
    assert_eq!(e.pool().usage(), (1, 3));
    switch_to(&mut e, &mut r, TTB0, &mem, &map);
    assert_exact(&e, &r, &mem, &map);
    assert_eq!(e.pool().usage(), (1, 2));
}

/// The generators make roots share tables (so the property tests exercise sharing).
#[test]
fn generators_share_l2_tables() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut shares, mut cases) = (0, 0);
    for _ in 0..48 {
        let s = scenario().new_tree(&mut runner).expect("tree").current();
        let (_, _, e) = build(&s);
        e.check_invariants().unwrap();
        shares += e.stats().l2_shares;
        cases += (e.stats().l2_shares != 0) as u32;
    }
    std::println!("l2_shares={shares} in {cases} of 48 scenarios");
    assert!(cases >= 16, "{cases}");
}

#[test]
fn written_inactive_root_is_evicted_and_its_table_released() {
    let map = host_map();
    let mut mem = guest_mem(&map);
    let mut r = base_regime();
    wr(&mut mem, TTB0 + (0x400 << 2), section(RAM_A, 0, 3));
    wr(
        &mut mem,
        TTB0_ALT + (0x400 << 2),
        section(RAM_A + 0x10_0000, 0, 3),
    );
    let mut e = ShadowEngine::with_options(
        Pool::new(HostPhysAddr::new(0x8000_0000), 8),
        4,
        ShadowOptions {
            external_wp: true,
            walk_trap: None,
            evict_written_inactive: true,
        },
    );
    e.set_regime(r, &mem, &map).unwrap();
    r.ttbr0 = TTB0_ALT as u32;
    e.set_regime(r, &mem, &map).unwrap();
    let _ = e.take_wp_changes();
    assert!(e.is_protected(GuestPhysAddr::new(TTB0)));
    // The inactive root's table page is reused as data: the first write evicts the root.
    e.sync_write(GuestPhysAddr::new(TTB0 + 0x10), 0x1234_5671, &mem, &map)
        .unwrap();
    assert_eq!(e.stats().write_evictions, 1);
    assert_eq!(e.cached_roots(), 1);
    assert!(!e.is_protected(GuestPhysAddr::new(TTB0)));
    assert!(e
        .take_wp_changes()
        .contains(&(GuestPhysAddr::new(TTB0), false)));
    // The active root is synced as usual, and stays exact.
    wr(&mut mem, TTB0_ALT + (0x401 << 2), section(RAM_A, 0, 3));
    e.sync_write(
        GuestPhysAddr::new(TTB0_ALT + (0x401 << 2)),
        section(RAM_A, 0, 3),
        &mem,
        &map,
    )
    .unwrap();
    assert_eq!(e.stats().write_evictions, 1);
    assert_eq!(
        e.shadow_translate(va(0x4010_0000), P1R)
            .unwrap()
            .unwrap()
            .pa,
        HPA_A
    );
}
