//! GICv3 distributor and redistributor register emulation (IHI 0069 §12.8–§12.11).
//!
//! Single security state (GICD_CTLR.DS = 1) with affinity routing always on
//! (GICD_CTLR.ARE RAO/WI): GICD registers of INTIDs 0..31, GICD_ITARGETSR and the
//! GICD SGI registers are RAZ/WI (affinity routing, IHI 0069 §12); SGIs and PPIs are programmed through each
//! vCPU's redistributor SGI_base frame. Word accesses everywhere; byte accesses for the
//! IPRIORITYR registers; 64-bit (or 32-bit halves) for `GICD_IROUTER<n>`, GICR_TYPER,
//! GICR_PROPBASER and GICR_PENDBASER. Anything else is RAZ/WI with a log line.

use log::debug;

use super::{dist, BitReg, Vgic, GICR_STRIDE};

// GICD register map (§12.8).
const GICD_CTLR: u64 = 0x0000;
const GICD_TYPER: u64 = 0x0004;
const GICD_IIDR: u64 = 0x0008;
const GICD_IGROUPR: u64 = 0x0080;
const GICD_IPRIORITYR: u64 = 0x0400;
const GICD_ITARGETSR: u64 = 0x0800;
const GICD_ICFGR: u64 = 0x0c00;
const GICD_IROUTER: u64 = 0x6000;
const ID_BASE: u64 = 0xffd0;

/// GICD_CTLR (DS = 1 view): EnableGrp0 `[0]`, EnableGrp1 `[1]`, ARE `[4]`, DS `[6]`.
const CTLR_GRP0: u32 = 1 << 0;
const CTLR_GRP1: u32 = 1 << 1;
const CTLR_ARE: u32 = 1 << 4;
const CTLR_DS: u32 = 1 << 6;

// GICR RD_base and SGI_base frames (register map §12.10).
const GICR_CTLR: u64 = 0x0000;
const GICR_IIDR: u64 = 0x0004;
const GICR_TYPER: u64 = 0x0008;
const GICR_STATUSR: u64 = 0x0010;
const GICR_WAKER: u64 = 0x0014;
const GICR_PROPBASER: u64 = 0x0070;
const GICR_PENDBASER: u64 = 0x0078;
const SGI_BASE: u64 = 0x1_0000;
const GICR_IGROUPR0: u64 = 0x0080;
const GICR_IPRIORITYR: u64 = 0x0400;
const GICR_ICFGR0: u64 = 0x0c00;
const GICR_ICFGR1: u64 = 0x0c04;

/// GICR_WAKER.ProcessorSleep and ChildrenAsleep (§12.11, GICR_WAKER).
const WAKER_PS: u32 = 1 << 1;
const WAKER_CA: u32 = 1 << 2;

/// GICD_IIDR / GICR_IIDR: implementer ARM (0x43B), product 0, revision 0.
const IIDR_V3: u32 = 0x0000_043b;
/// PIDR4..7, PIDR0..3, CIDR0..3 (0xFFD0..0xFFFC); PIDR2 = 0x3B: ArchRev 3 (GICD_PIDR2 / GICR_PIDR2).
const ID_REGS: [u32; 12] = [0x04, 0, 0, 0, 0x92, 0xb4, 0x3b, 0, 0x0d, 0xf0, 0x05, 0xb1];

/// The bit-register kind at a word offset in 0x080..0x3FF, and its first INTID.
fn bit_reg(off: u64) -> Option<(BitReg, u32)> {
    let kind = match off & !0x7f {
        0x080 => BitReg::Group,
        0x100 => BitReg::SetEnable,
        0x180 => BitReg::ClearEnable,
        0x200 => BitReg::SetPending,
        0x280 => BitReg::ClearPending,
        0x300 => BitReg::SetActive,
        0x380 => BitReg::ClearActive,
        _ => return None,
    };
    Some((kind, ((off & 0x7f) * 8) as u32))
}

fn id_reg(off: u64) -> u32 {
    ID_REGS[((off - ID_BASE) / 4) as usize]
}

impl Vgic {
    fn v3_typer(&self) -> u32 {
        // ITLinesNumber [4:0], CPUNumber [7:5] (ignored with ARE), IDbits [23:19] = 9
        // (10 INTID bits), no LPIs, no MBIs, RSS = 0 (§12.9, GICD_TYPER).
        (self.nr_irqs().div_ceil(32) - 1) | ((self.nr_vcpus.min(8) as u32 - 1) << 5) | (9 << 19)
    }

    pub(super) fn v3_dist_read(&self, off: u64, size: u8) -> u64 {
        match (size, off) {
            (8, GICD_IROUTER..0x7fe0) if off & 7 == 0 => self.irouter((off - GICD_IROUTER) / 8),
            (4, GICD_IROUTER..0x7fe0) if off & 3 == 0 => {
                let r = self.irouter((off - GICD_IROUTER) / 8);
                if off & 4 == 0 {
                    r & 0xffff_ffff
                } else {
                    r >> 32
                }
            }
            (1, GICD_IPRIORITYR..GICD_ITARGETSR) => {
                u64::from(self.v3_gicd_prio((off - GICD_IPRIORITYR) as u32))
            }
            (4, _) if off & 3 == 0 => u64::from(self.v3_dist_read32(off)),
            _ => {
                crate::guest_warn!("vgic: GICD read of {size} bytes at {off:#x} unsupported: RAZ");
                0
            }
        }
    }

    pub(super) fn v3_dist_write(&mut self, off: u64, size: u8, value: u64) {
        match (size, off) {
            (8, GICD_IROUTER..0x7fe0) if off & 7 == 0 => {
                self.set_irouter((off - GICD_IROUTER) / 8, value)
            }
            (4, GICD_IROUTER..0x7fe0) if off & 3 == 0 => {
                let n = (off - GICD_IROUTER) / 8;
                let old = self.irouter(n);
                let v = value & 0xffff_ffff;
                let new = if off & 4 == 0 {
                    (old & !0xffff_ffff) | v
                } else {
                    (old & 0xffff_ffff) | v << 32
                };
                self.set_irouter(n, new);
            }
            (1, GICD_IPRIORITYR..GICD_ITARGETSR) => {
                let intid = (off - GICD_IPRIORITYR) as u32;
                if intid >= 32 {
                    self.write_prio(0, intid, value as u8);
                }
            }
            (4, _) if off & 3 == 0 => self.v3_dist_write32(off, value as u32),
            _ => crate::guest_warn!(
                "vgic: GICD write of {size} bytes at {off:#x} unsupported: ignored"
            ),
        }
    }

    fn v3_gicd_prio(&self, intid: u32) -> u8 {
        if intid < 32 {
            0
        } else {
            self.read_prio(0, intid)
        }
    }

    fn irouter(&self, n: u64) -> u64 {
        if n < 32 {
            return 0;
        }
        self.irq(0, n as u32).map_or(0, |i| i.route)
    }

    fn set_irouter(&mut self, n: u64, value: u64) {
        if n < 32 {
            return;
        }
        if let Some(irq) = self.spi_mut(n as u32) {
            irq.route = value & dist::IROUTER_MASK;
            self.kick_if_pending(n as u32);
        }
    }

    fn v3_dist_read32(&self, off: u64) -> u32 {
        match off {
            GICD_CTLR => {
                let (g0, g1) = self.group_enables();
                CTLR_ARE | CTLR_DS | if g0 { CTLR_GRP0 } else { 0 } | if g1 { CTLR_GRP1 } else { 0 }
            }
            GICD_TYPER => self.v3_typer(),
            GICD_IIDR => IIDR_V3,
            GICD_IGROUPR..GICD_IPRIORITYR => match bit_reg(off) {
                Some((kind, first)) if first >= 32 => self.read_bits(0, kind, first),
                _ => 0,
            },
            GICD_IPRIORITYR..GICD_ITARGETSR => (0..4).fold(0, |acc, i| {
                acc | u32::from(self.v3_gicd_prio((off + i - GICD_IPRIORITYR) as u32)) << (8 * i)
            }),
            GICD_ICFGR..0xd00 => {
                let first = ((off - GICD_ICFGR) * 4) as u32;
                if first < 32 {
                    0
                } else {
                    self.read_cfg(0, first)
                }
            }
            ID_BASE..=0xfffc => id_reg(off),
            _ => {
                debug!("vgic: GICD read of reserved/RAZ {off:#x}");
                0
            }
        }
    }

    fn v3_dist_write32(&mut self, off: u64, v: u32) {
        match off {
            GICD_CTLR => self.set_group_enables(v & CTLR_GRP0 != 0, v & CTLR_GRP1 != 0),
            GICD_IGROUPR..GICD_IPRIORITYR => {
                if let Some((kind, first)) = bit_reg(off) {
                    if first >= 32 {
                        self.write_bits(0, kind, first, v);
                    }
                }
            }
            GICD_IPRIORITYR..GICD_ITARGETSR => {
                for i in 0..4 {
                    let intid = (off + i - GICD_IPRIORITYR) as u32;
                    if intid >= 32 {
                        self.write_prio(0, intid, (v >> (8 * i)) as u8);
                    }
                }
            }
            GICD_ICFGR..0xd00 => {
                let first = ((off - GICD_ICFGR) * 4) as u32;
                if first >= 32 {
                    self.write_cfg(0, first, v);
                }
            }
            _ => debug!("vgic: GICD write of {v:#x} to read-only/reserved {off:#x}: ignored"),
        }
    }

    fn gicr_typer(&self, vcpu: usize) -> u64 {
        // Affinity [63:32], Processor_Number [23:8], Last [4]; no LPIs (§12.11, GICR_TYPER).
        let last = vcpu + 1 == self.nr_vcpus;
        Vgic::mpidr_of(vcpu) << 32 | (vcpu as u64) << 8 | u64::from(last) << 4
    }

    pub(super) fn v3_redist_read(&self, offset: u64, size: u8) -> u64 {
        let vcpu = (offset / GICR_STRIDE) as usize;
        let off = offset % GICR_STRIDE;
        if vcpu >= self.nr_vcpus {
            crate::guest_warn!("vgic: GICR read at {offset:#x}: no such redistributor: RAZ");
            return 0;
        }
        match (size, off) {
            (8, GICR_TYPER) => self.gicr_typer(vcpu),
            (4, GICR_TYPER) => self.gicr_typer(vcpu) & 0xffff_ffff,
            (4, 0x000c) => self.gicr_typer(vcpu) >> 32,
            (8, GICR_PROPBASER | GICR_PENDBASER) => 0,
            (1, _)
                if (SGI_BASE + GICR_IPRIORITYR..SGI_BASE + GICR_IPRIORITYR + 32).contains(&off) =>
            {
                u64::from(self.read_prio(vcpu, (off - SGI_BASE - GICR_IPRIORITYR) as u32))
            }
            (4, _) if off & 3 == 0 => u64::from(self.v3_redist_read32(vcpu, off)),
            _ => {
                crate::guest_warn!(
                    "vgic: GICR read of {size} bytes at {offset:#x} unsupported: RAZ"
                );
                0
            }
        }
    }

    pub(super) fn v3_redist_write(&mut self, offset: u64, size: u8, value: u64) {
        let vcpu = (offset / GICR_STRIDE) as usize;
        let off = offset % GICR_STRIDE;
        if vcpu >= self.nr_vcpus {
            crate::guest_warn!("vgic: GICR write at {offset:#x}: no such redistributor: ignored");
            return;
        }
        match (size, off) {
            (8, GICR_PROPBASER | GICR_PENDBASER) => {}
            (1, _)
                if (SGI_BASE + GICR_IPRIORITYR..SGI_BASE + GICR_IPRIORITYR + 32).contains(&off) =>
            {
                self.write_prio(vcpu, (off - SGI_BASE - GICR_IPRIORITYR) as u32, value as u8)
            }
            (4, _) if off & 3 == 0 => self.v3_redist_write32(vcpu, off, value as u32),
            _ => crate::guest_warn!(
                "vgic: GICR write of {size} bytes at {offset:#x} unsupported: ignored"
            ),
        }
    }

    fn v3_redist_read32(&self, vcpu: usize, off: u64) -> u32 {
        if off >= SGI_BASE {
            let s = off - SGI_BASE;
            return match s {
                GICR_IGROUPR0..0x400 if s & 0x7f == 0 => match bit_reg(s) {
                    Some((kind, _)) => self.read_bits(vcpu, kind, 0),
                    None => 0,
                },
                GICR_IPRIORITYR..0x420 => (0..4).fold(0, |acc, i| {
                    acc | u32::from(self.read_prio(vcpu, (s + i - GICR_IPRIORITYR) as u32))
                        << (8 * i)
                }),
                GICR_ICFGR0 => self.read_cfg(vcpu, 0),
                GICR_ICFGR1 => self.read_cfg(vcpu, 16),
                _ if s >= ID_BASE => id_reg(s),
                _ => {
                    debug!("vgic: GICR SGI frame read of reserved/RAZ {s:#x}");
                    0
                }
            };
        }
        match off {
            GICR_CTLR | GICR_STATUSR => 0,
            GICR_IIDR => IIDR_V3,
            GICR_WAKER => {
                if self.sleep(vcpu) {
                    WAKER_PS | WAKER_CA
                } else {
                    0
                }
            }
            ID_BASE..=0xfffc => id_reg(off),
            _ => {
                debug!("vgic: GICR read of reserved/RAZ {off:#x}");
                0
            }
        }
    }

    fn v3_redist_write32(&mut self, vcpu: usize, off: u64, v: u32) {
        if off >= SGI_BASE {
            let s = off - SGI_BASE;
            match s {
                GICR_IGROUPR0..0x400 if s & 0x7f == 0 => {
                    if let Some((kind, _)) = bit_reg(s) {
                        self.write_bits(vcpu, kind, 0, v);
                    }
                }
                GICR_IPRIORITYR..0x420 => {
                    for i in 0..4 {
                        let intid = (s + i - GICR_IPRIORITYR) as u32;
                        self.write_prio(vcpu, intid, (v >> (8 * i)) as u8);
                    }
                }
                GICR_ICFGR0 => {} // SGIs: always edge.
                GICR_ICFGR1 => self.write_cfg(vcpu, 16, v),
                _ => debug!("vgic: GICR SGI frame write of {v:#x} to {s:#x}: ignored"),
            }
            return;
        }
        match off {
            GICR_WAKER => self.set_sleep(vcpu, v & WAKER_PS != 0),
            _ => debug!("vgic: GICR write of {v:#x} to read-only/reserved {off:#x}: ignored"),
        }
    }
}
