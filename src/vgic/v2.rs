//! GICv2 distributor register emulation (IHI 0048B §4.3, Table 4-1).
//!
//! Word accesses everywhere; byte accesses also for GICD_IPRIORITYR, GICD_ITARGETSR,
//! GICD_CPENDSGIR and GICD_SPENDSGIR (§4.1.4, GIC register access). Other sizes and misaligned words are
//! RAZ/WI with a log line; reserved offsets are RAZ/WI.

use log::debug;

use super::{BitReg, Vgic};

const CTLR: u64 = 0x000;
const TYPER: u64 = 0x004;
const IIDR: u64 = 0x008;
const IGROUPR: u64 = 0x080;
const ISENABLER: u64 = 0x100;
const ICENABLER: u64 = 0x180;
const ISPENDR: u64 = 0x200;
const ICPENDR: u64 = 0x280;
const ISACTIVER: u64 = 0x300;
const ICACTIVER: u64 = 0x380;
const IPRIORITYR: u64 = 0x400;
const ITARGETSR: u64 = 0x800;
const ICFGR: u64 = 0xc00;
const SGIR: u64 = 0xf00;
const CPENDSGIR: u64 = 0xf10;
const SPENDSGIR: u64 = 0xf20;
const ID_BASE: u64 = 0xfd0;

/// GICD_IIDR: implementer ARM (JEP106 0x43B), product 0, revision 0.
pub(crate) const IIDR_V2: u32 = 0x0000_043b;
/// ICPIDR4..7, ICPIDR0..3, ICCIDR0..3 (0xFD0..0xFFC), GIC-400 style; ICPIDR2 = 0x2B:
/// ArchRev 2 (§4.3, identification registers).
const ID_REGS: [u32; 12] = [0x04, 0, 0, 0, 0x90, 0xb4, 0x2b, 0, 0x0d, 0xf0, 0x05, 0xb1];

/// The bit-register kind at a word offset in 0x080..0x3FF, and its first INTID.
fn bit_reg(off: u64) -> Option<(BitReg, u32)> {
    let kind = match off & !0x7f {
        IGROUPR => BitReg::Group,
        ISENABLER => BitReg::SetEnable,
        ICENABLER => BitReg::ClearEnable,
        ISPENDR => BitReg::SetPending,
        ICPENDR => BitReg::ClearPending,
        ISACTIVER => BitReg::SetActive,
        ICACTIVER => BitReg::ClearActive,
        _ => return None,
    };
    Some((kind, ((off & 0x7f) * 8) as u32))
}

/// Offsets where byte accesses are allowed.
fn byte_ok(off: u64) -> bool {
    (IPRIORITYR..ICFGR).contains(&off) || (CPENDSGIR..SPENDSGIR + 0x10).contains(&off)
}

impl Vgic {
    pub(super) fn v2_read(&self, vcpu: usize, off: u64, size: u8) -> u64 {
        match size {
            4 if off & 3 == 0 => u64::from(self.v2_read32(vcpu, off)),
            1 if byte_ok(off) => u64::from(self.v2_read8(vcpu, off)),
            _ => {
                crate::guest_warn!("vgic: GICD read of {size} bytes at {off:#x} unsupported: RAZ");
                0
            }
        }
    }

    pub(super) fn v2_write(&mut self, vcpu: usize, off: u64, size: u8, value: u64) {
        match size {
            4 if off & 3 == 0 => self.v2_write32(vcpu, off, value as u32),
            1 if byte_ok(off) => self.v2_write8(vcpu, off, value as u8),
            _ => crate::guest_warn!(
                "vgic: GICD write of {size} bytes at {off:#x} unsupported: ignored"
            ),
        }
    }

    fn v2_typer(&self) -> u32 {
        // ITLinesNumber [4:0], CPUNumber [7:5]; no Security Extensions (§4.3.2 GICD_TYPER).
        (self.nr_irqs().div_ceil(32) - 1) | ((self.nr_vcpus as u32 - 1) << 5)
    }

    fn v2_read8(&self, vcpu: usize, off: u64) -> u8 {
        match off {
            IPRIORITYR..ITARGETSR => self.read_prio(vcpu, (off - IPRIORITYR) as u32),
            ITARGETSR..ICFGR => {
                let intid = (off - ITARGETSR) as u32;
                if intid < 32 {
                    // Banked, read-only: the accessing CPU's own bit.
                    if vcpu < 8 {
                        1 << vcpu
                    } else {
                        0
                    }
                } else {
                    self.irq(vcpu, intid).map_or(0, |i| i.targets)
                }
            }
            CPENDSGIR..0xf30 => self.sgi_sources(vcpu, (off & 0xf) as u32),
            _ => 0,
        }
    }

    fn v2_write8(&mut self, vcpu: usize, off: u64, v: u8) {
        match off {
            IPRIORITYR..ITARGETSR => self.write_prio(vcpu, (off - IPRIORITYR) as u32, v),
            ITARGETSR..ICFGR => {
                let intid = (off - ITARGETSR) as u32;
                let valid = self.all_vcpus() as u8;
                if let Some(irq) = self.spi_mut(intid) {
                    irq.targets = v & valid;
                    self.kick_if_pending(intid);
                }
            }
            CPENDSGIR..SPENDSGIR => self.set_sgi_sources(vcpu, (off & 0xf) as u32, v, false),
            SPENDSGIR..0xf30 => self.set_sgi_sources(vcpu, (off & 0xf) as u32, v, true),
            _ => {}
        }
    }

    fn v2_read32(&self, vcpu: usize, off: u64) -> u32 {
        match off {
            CTLR => {
                let (g0, g1) = self.group_enables();
                u32::from(g0) | u32::from(g1) << 1
            }
            TYPER => self.v2_typer(),
            IIDR => IIDR_V2,
            IGROUPR..IPRIORITYR => match bit_reg(off) {
                Some((kind, first)) => self.read_bits(vcpu, kind, first),
                None => 0,
            },
            IPRIORITYR..ICFGR | CPENDSGIR..0xf30 => (0..4).fold(0, |acc, i| {
                acc | u32::from(self.v2_read8(vcpu, off + i)) << (8 * i)
            }),
            ICFGR..0xd00 => self.read_cfg(vcpu, ((off - ICFGR) * 4) as u32),
            ID_BASE..=0xffc => ID_REGS[((off - ID_BASE) / 4) as usize],
            _ => {
                debug!("vgic: GICD read of reserved/write-only {off:#x}: RAZ");
                0
            }
        }
    }

    fn v2_write32(&mut self, vcpu: usize, off: u64, v: u32) {
        match off {
            CTLR => self.set_group_enables(v & 1 != 0, v & 2 != 0),
            IGROUPR..IPRIORITYR => {
                if let Some((kind, first)) = bit_reg(off) {
                    self.write_bits(vcpu, kind, first, v);
                }
            }
            IPRIORITYR..ICFGR | CPENDSGIR..0xf30 => {
                for i in 0..4 {
                    self.v2_write8(vcpu, off + i, (v >> (8 * i)) as u8);
                }
            }
            ICFGR..0xd00 => self.write_cfg(vcpu, ((off - ICFGR) * 4) as u32, v),
            SGIR => {
                self.sgi_v2(vcpu, v);
            }
            _ => debug!("vgic: GICD write of {v:#x} to read-only/reserved {off:#x}: ignored"),
        }
    }
}
