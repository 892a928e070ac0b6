//! The host GIC as the hypervisor uses it: v2 through `drivers::gicv2` (MMIO), v3
//! through the ICC_*/ICH_* system registers plus the GICD/GICR register frames.
//!
//! Both run with EOImode = 1: acknowledging and EOI (priority drop) are separate from
//! deactivation, so a physical interrupt forwarded to a guest through a hardware-linked
//! list register stays active until the guest deactivates it.

use crate::drivers::gicv2::GicV2;
use crate::{read_sysreg, write_sysreg};

/// GICv3 distributor and redistributor offsets (IHI 0069, §12.8, §12.10, §12.11).
mod v3 {
    pub const GICD_CTLR: usize = 0x0000;
    pub const GICD_TYPER: usize = 0x0004;
    pub const GICD_IGROUPR: usize = 0x0080;
    pub const GICD_ICENABLER: usize = 0x0180;
    pub const GICD_ISENABLER: usize = 0x0100;
    pub const GICD_IPRIORITYR: usize = 0x0400;
    pub const GICD_IROUTER: usize = 0x6000;
    /// GICD_CTLR.RWP: register write pending.
    pub const CTLR_RWP: u32 = 1 << 31;
    /// GICD_CTLR.ARE_NS | EnableGrp1A.
    pub const CTLR_ARE_GRP1: u32 = (1 << 4) | (1 << 1);
    pub const GICR_TYPER: usize = 0x0008;
    pub const GICR_WAKER: usize = 0x0014;
    pub const SGI_BASE: usize = 0x1_0000;
    pub const GICR_IGROUPR0: usize = SGI_BASE + 0x0080;
    pub const GICR_ISENABLER0: usize = SGI_BASE + 0x0100;
    pub const GICR_ICENABLER0: usize = SGI_BASE + 0x0180;
    pub const GICR_IPRIORITYR: usize = SGI_BASE + 0x0400;
    /// Frame stride of one redistributor (RD + SGI frames).
    pub const GICR_STRIDE: usize = 0x2_0000;
}

fn mmio_r32(addr: usize) -> u32 {
    // SAFETY: callers pass addresses inside the GIC frames from the device tree,
    // identity-mapped as device memory.
    unsafe { (addr as *const u32).read_volatile() }
}

fn mmio_w32(addr: usize, v: u32) {
    // SAFETY: as in `mmio_r32`.
    unsafe { (addr as *mut u32).write_volatile(v) }
}

fn mmio_r64(addr: usize) -> u64 {
    // SAFETY: as in `mmio_r32`.
    unsafe { (addr as *const u64).read_volatile() }
}

fn mmio_w64(addr: usize, v: u64) {
    // SAFETY: as in `mmio_r32`.
    unsafe { (addr as *mut u64).write_volatile(v) }
}

/// Which host GIC, with its register frames.
pub enum HostGic {
    /// GICv2 with the virtualization extensions.
    V2(GicV2),
    /// GICv3: distributor and the first redistributor region.
    V3 {
        /// GICD base.
        gicd: usize,
        /// GICR region base.
        gicr: usize,
        /// GICR region size.
        gicr_size: usize,
    },
}

impl HostGic {
    /// A GICv3 host GIC with its distributor and redistributor region. Never fails on
    /// this host (the ARMv7 host refuses GICv3 here).
    pub fn v3(gicd: usize, gicr: usize, gicr_size: usize) -> Result<Self, &'static str> {
        Ok(HostGic::V3 {
            gicd,
            gicr,
            gicr_size,
        })
    }

    /// The architecture version: 2 or 3.
    pub fn version(&self) -> u8 {
        match self {
            HostGic::V2(_) => 2,
            HostGic::V3 { .. } => 3,
        }
    }

    /// Distributor setup, once, on the primary CPU: SPIs disabled, group 1.
    pub fn init_distributor(&self) {
        match self {
            HostGic::V2(g) => g.init_distributor(),
            HostGic::V3 { gicd, .. } => {
                let gicd = *gicd;
                mmio_w32(gicd + v3::GICD_CTLR, 0);
                self.wait_rwp();
                let lines = 32 * ((mmio_r32(gicd + v3::GICD_TYPER) & 0x1f) + 1);
                for i in 1..(lines / 32) as usize {
                    mmio_w32(gicd + v3::GICD_ICENABLER + 4 * i, u32::MAX);
                    mmio_w32(gicd + v3::GICD_IGROUPR + 4 * i, u32::MAX);
                }
                for i in 8..(lines / 4) as usize {
                    mmio_w32(gicd + v3::GICD_IPRIORITYR + 4 * i, 0xa0a0_a0a0);
                }
                self.wait_rwp();
                mmio_w32(gicd + v3::GICD_CTLR, v3::CTLR_ARE_GRP1);
                self.wait_rwp();
            }
        }
    }

    fn wait_rwp(&self) {
        if let HostGic::V3 { gicd, .. } = self {
            let mut n = 0;
            while mmio_r32(gicd + v3::GICD_CTLR) & v3::CTLR_RWP != 0 && n < 1_000_000 {
                n += 1;
                core::hint::spin_loop();
            }
        }
    }

    /// This CPU's redistributor frame (GICv3), found by its affinity in GICR_TYPER.
    fn my_redist(&self) -> Option<usize> {
        let HostGic::V3 {
            gicr, gicr_size, ..
        } = self
        else {
            return None;
        };
        let m = super::mpidr();
        let aff = ((m >> 32) & 0xff) << 24 | (m & 0xff_ffff);
        let mut off = 0;
        while off + v3::GICR_STRIDE <= *gicr_size {
            let typer = mmio_r64(gicr + off + v3::GICR_TYPER);
            if typer >> 32 == aff {
                return Some(gicr + off);
            }
            if typer & (1 << 4) != 0 {
                break; // Last
            }
            off += v3::GICR_STRIDE;
        }
        None
    }

    /// Per-CPU setup: banked SGIs/PPIs group 1, priority mask open, EOImode 1,
    /// virtual CPU interface enabled. Returns false if this CPU has no redistributor.
    pub fn init_cpu(&self) -> bool {
        match self {
            HostGic::V2(g) => {
                g.init_cpu();
                true
            }
            HostGic::V3 { .. } => {
                let Some(rd) = self.my_redist() else {
                    return false;
                };
                // Wake the redistributor: clear ProcessorSleep, wait for ChildrenAsleep.
                let w = mmio_r32(rd + v3::GICR_WAKER);
                mmio_w32(rd + v3::GICR_WAKER, w & !(1 << 1));
                let mut n = 0;
                while mmio_r32(rd + v3::GICR_WAKER) & (1 << 2) != 0 && n < 1_000_000 {
                    n += 1;
                    core::hint::spin_loop();
                }
                mmio_w32(rd + v3::GICR_ICENABLER0, 0xffff_0000);
                mmio_w32(rd + v3::GICR_IGROUPR0, u32::MAX);
                for i in 0..8 {
                    mmio_w32(rd + v3::GICR_IPRIORITYR + 4 * i, 0xa0a0_a0a0);
                }
                // ICC_SRE_EL2: SRE and Enable (lower ELs may use the system registers).
                write_sysreg!("icc_sre_el2", read_sysreg!("icc_sre_el2") | 0b1001);
                super::sysreg::isb();
                write_sysreg!("icc_pmr_el1", 0xff);
                write_sysreg!("icc_bpr1_el1", 0);
                // ICC_CTLR_EL1.EOImode = 1.
                write_sysreg!("icc_ctlr_el1", read_sysreg!("icc_ctlr_el1") | (1 << 1));
                write_sysreg!("icc_igrpen1_el1", 1);
                // ICH_HCR_EL2.En.
                write_sysreg!("ich_hcr_el2", 1);
                super::sysreg::isb();
                true
            }
        }
    }

    /// Enables interrupt `intid` (SGIs/PPIs on this CPU's banked copy).
    pub fn enable(&self, intid: u32) {
        match self {
            HostGic::V2(g) => g.enable(intid),
            HostGic::V3 { gicd, .. } => {
                if intid < 32 {
                    if let Some(rd) = self.my_redist() {
                        mmio_w32(rd + v3::GICR_ISENABLER0, 1 << intid);
                    }
                } else {
                    mmio_w32(
                        gicd + v3::GICD_ISENABLER + 4 * (intid / 32) as usize,
                        1 << (intid % 32),
                    );
                }
            }
        }
    }

    /// Routes SPI `intid` to the calling CPU.
    pub fn route_spi_here(&self, intid: u32) {
        match self {
            HostGic::V2(g) => g.route_spi(intid, g.cpu_interface()),
            HostGic::V3 { gicd, .. } => {
                let m = super::mpidr();
                let aff = (m & 0xff_ffff) | (((m >> 32) & 0xff) << 32);
                mmio_w64(gicd + v3::GICD_IROUTER + 8 * intid as usize, aff);
            }
        }
    }

    /// Acknowledges the highest-priority pending interrupt: `Some(iar)` (the INTID is
    /// `iar & 0xffffff` for v3, `iar & 0x3ff` for v2), or `None` if spurious.
    pub fn ack(&self) -> Option<u32> {
        match self {
            HostGic::V2(g) => g.ack(),
            HostGic::V3 { .. } => {
                let iar = read_sysreg!("icc_iar1_el1") as u32;
                (iar & 0xff_ffff < 1020).then_some(iar)
            }
        }
    }

    /// The INTID in an acknowledge value.
    pub fn intid(&self, iar: u32) -> u32 {
        match self {
            HostGic::V2(_) => iar & 0x3ff,
            HostGic::V3 { .. } => iar & 0xff_ffff,
        }
    }

    /// Priority drop of an acknowledged interrupt.
    pub fn eoi(&self, iar: u32) {
        match self {
            HostGic::V2(g) => g.eoi(iar),
            HostGic::V3 { .. } => write_sysreg!("icc_eoir1_el1", iar as u64),
        }
    }

    /// Deactivation of an acknowledged interrupt.
    pub fn deactivate(&self, iar: u32) {
        match self {
            HostGic::V2(g) => g.deactivate(iar),
            HostGic::V3 { .. } => write_sysreg!("icc_dir_el1", iar as u64),
        }
    }

    /// Sends SGI `sgi` to the physical CPU with affinity `mpidr` (and, for v2, CPU
    /// interface `cpu_if`).
    pub fn send_sgi(&self, sgi: u32, mpidr: u64, cpu_if: u32) {
        match self {
            HostGic::V2(g) => g.send_sgi(sgi, 1 << (cpu_if & 7)),
            HostGic::V3 { .. } => {
                let aff0 = mpidr & 0xf;
                let v = ((mpidr >> 32) & 0xff) << 48
                    | ((mpidr >> 16) & 0xff) << 32
                    | ((mpidr >> 8) & 0xff) << 16
                    | ((sgi as u64) & 0xf) << 24
                    | (1 << aff0);
                super::sysreg::dsb_ish();
                write_sysreg!("icc_sgi1r_el1", v);
                super::sysreg::isb();
            }
        }
    }

    /// The calling CPU's interface number (v2), for addressing SGIs.
    pub fn cpu_interface(&self) -> u32 {
        match self {
            HostGic::V2(g) => g.cpu_interface(),
            HostGic::V3 { .. } => 0,
        }
    }

    /// Number of list registers.
    pub fn list_regs(&self) -> usize {
        match self {
            HostGic::V2(g) => g.list_regs(),
            HostGic::V3 { .. } => (read_sysreg!("ich_vtr_el2") & 0x1f) as usize + 1,
        }
    }

    /// Reads list register `n` (v2: 32-bit GICH_LR; v3: ICH_LR<n>_EL2).
    pub fn read_lr(&self, n: usize) -> u64 {
        match self {
            HostGic::V2(g) => g.read_lr(n) as u64,
            HostGic::V3 { .. } => read_ich_lr(n),
        }
    }

    /// Writes list register `n`.
    pub fn write_lr(&self, n: usize, v: u64) {
        match self {
            HostGic::V2(g) => g.write_lr(n, v as u32),
            HostGic::V3 { .. } => write_ich_lr(n, v),
        }
    }

    /// Writes the virtual interface control register (GICH_HCR / ICH_HCR_EL2; En,
    /// UIE, LRENPIE and NPIE sit at the same bits in both).
    pub fn write_hcr(&self, v: u64) {
        match self {
            HostGic::V2(g) => g.write_hcr(v as u32),
            HostGic::V3 { .. } => write_sysreg!("ich_hcr_el2", v),
        }
    }
}

macro_rules! ich_lr_access {
    ($($n:literal),*) => {
        fn read_ich_lr(n: usize) -> u64 {
            let mut v = 0u64;
            match n {
                // SAFETY: reading a list register has no memory effect.
                $($n => unsafe { core::arch::asm!(concat!("mrs {0}, ich_lr", stringify!($n), "_el2"), out(reg) v, options(nomem, nostack)) },)*
                _ => {}
            }
            v
        }
        fn write_ich_lr(n: usize, v: u64) {
            match n {
                // SAFETY: writing a list register only changes the virtual CPU interface.
                $($n => unsafe { core::arch::asm!(concat!("msr ich_lr", stringify!($n), "_el2, {0}"), in(reg) v, options(nostack)) },)*
                _ => {}
            }
        }
    };
}
ich_lr_access!(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
