//! GICv2 (GIC-400) host driver: distributor, CPU interface and virtual interface control.
//!
//! Register layouts follow the ARM Generic Interrupt Controller Architecture
//! Specification v2 (IHI 0048B.b): distributor §4.3 (Table 4-1), CPU interface §4.4
//! (Table 4-2), virtual interface control §5.3 (Table 5-1). The hypervisor runs its CPU
//! interface with EOImode = 1 (priority drop by GICC_EOIR, deactivation by GICC_DIR), so
//! a physical interrupt forwarded to a guest stays active until the guest's virtual EOI
//! deactivates it through a hardware-linked list register.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {u32,
    /// GICD_CTLR (§4.3.1). Bit 0 is EnableGrp1 in the non-secure view and EnableGrp0
    /// without the Security Extensions.
    pub GICD_CTLR [
        /// Forward pending interrupts of the group this view controls.
        EnableGrp1 OFFSET(0) NUMBITS(1) [],
    ],
    /// GICD_TYPER (§4.3.2).
    pub GICD_TYPER [
        /// 32 × (N + 1) interrupt IDs are supported.
        ITLinesNumber OFFSET(0) NUMBITS(5) [],
        /// Number of CPU interfaces minus one.
        CPUNumber OFFSET(5) NUMBITS(3) [],
        /// The GIC implements the Security Extensions.
        SecurityExtn OFFSET(10) NUMBITS(1) [],
    ],
    /// GICD_SGIR (§4.3.15).
    pub GICD_SGIR [
        /// The SGI's interrupt ID.
        SGIINTID OFFSET(0) NUMBITS(4) [],
        /// Security of the SGI (non-secure accesses ignore it).
        NSATT OFFSET(15) NUMBITS(1) [],
        /// CPU interfaces to forward to when TargetListFilter is 0.
        CPUTargetList OFFSET(16) NUMBITS(8) [],
        /// How the targets are chosen.
        TargetListFilter OFFSET(24) NUMBITS(2) [
            List = 0,
            AllButSelf = 1,
            SelfOnly = 2
        ],
    ],
    /// GICC_CTLR (§4.4.1), in its two layouts: the non-secure view of a GIC with the
    /// Security Extensions (EnableGrp1 at bit 0, EOImodeNS at bit 9), and a GIC without
    /// them (EnableGrp0 at 0, EnableGrp1 at 1, EOImodeS at 9, EOImodeNS at 10).
    pub GICC_CTLR [
        /// Bit 0: EnableGrp1 (non-secure view) or EnableGrp0 (no Security Extensions).
        Enable0 OFFSET(0) NUMBITS(1) [],
        /// Bit 1 (no Security Extensions): EnableGrp1.
        Enable1 OFFSET(1) NUMBITS(1) [],
        /// Bit 9: EOImodeNS (non-secure view) or EOImodeS (no Security Extensions).
        EOImode9 OFFSET(9) NUMBITS(1) [],
        /// Bit 10 (no Security Extensions): EOImodeNS.
        EOImode10 OFFSET(10) NUMBITS(1) [],
    ],
    /// GICC_IAR / GICC_EOIR / GICC_DIR (§4.4.4, §4.4.5, §4.4.15).
    pub GICC_IAR [
        /// The interrupt ID; 1023 is spurious.
        InterruptID OFFSET(0) NUMBITS(10) [],
        /// For SGIs: the requesting CPU.
        CPUID OFFSET(10) NUMBITS(3) [],
    ],
    /// GICH_HCR (§5.3.1).
    pub GICH_HCR [
        /// Enable the virtual CPU interface.
        En OFFSET(0) NUMBITS(1) [],
        /// Underflow interrupt enable: maintenance interrupt when at most one LR holds
        /// a valid interrupt.
        UIE OFFSET(1) NUMBITS(1) [],
        /// List-register entry not present interrupt enable.
        LRENPIE OFFSET(2) NUMBITS(1) [],
        /// No-pending interrupt enable.
        NPIE OFFSET(3) NUMBITS(1) [],
        /// Count of EOIs for interrupts not in a list register.
        EOICount OFFSET(27) NUMBITS(5) [],
    ],
    /// GICH_VTR (§5.3.2).
    pub GICH_VTR [
        /// Number of list registers minus one.
        ListRegs OFFSET(0) NUMBITS(6) [],
        /// Preemption bits minus one.
        PREbits OFFSET(26) NUMBITS(3) [],
        /// Priority bits minus one.
        PRIbits OFFSET(29) NUMBITS(3) [],
    ],
}

register_structs! {
    /// The distributor (IHI 0048B Table 4-1).
    #[allow(non_snake_case)]
    pub GicdRegs {
        (0x000 => pub CTLR: ReadWrite<u32, GICD_CTLR::Register>),
        (0x004 => pub TYPER: ReadOnly<u32, GICD_TYPER::Register>),
        (0x008 => pub IIDR: ReadOnly<u32>),
        (0x00c => _reserved0),
        (0x080 => pub IGROUPR: [ReadWrite<u32>; 32]),
        (0x100 => pub ISENABLER: [ReadWrite<u32>; 32]),
        (0x180 => pub ICENABLER: [ReadWrite<u32>; 32]),
        (0x200 => pub ISPENDR: [ReadWrite<u32>; 32]),
        (0x280 => pub ICPENDR: [ReadWrite<u32>; 32]),
        (0x300 => pub ISACTIVER: [ReadWrite<u32>; 32]),
        (0x380 => pub ICACTIVER: [ReadWrite<u32>; 32]),
        (0x400 => pub IPRIORITYR: [ReadWrite<u32>; 255]),
        (0x7fc => _reserved1),
        (0x800 => pub ITARGETSR: [ReadWrite<u32>; 255]),
        (0xbfc => _reserved2),
        (0xc00 => pub ICFGR: [ReadWrite<u32>; 64]),
        (0xd00 => _reserved3),
        (0xf00 => pub SGIR: WriteOnly<u32, GICD_SGIR::Register>),
        (0xf04 => _reserved4),
        (0x1000 => @END),
    }
}

register_structs! {
    /// The CPU interface (IHI 0048B Table 4-2).
    #[allow(non_snake_case)]
    pub GiccRegs {
        (0x0000 => pub CTLR: ReadWrite<u32, GICC_CTLR::Register>),
        (0x0004 => pub PMR: ReadWrite<u32>),
        (0x0008 => pub BPR: ReadWrite<u32>),
        (0x000c => pub IAR: ReadOnly<u32, GICC_IAR::Register>),
        (0x0010 => pub EOIR: WriteOnly<u32, GICC_IAR::Register>),
        (0x0014 => _reserved0),
        (0x1000 => pub DIR: WriteOnly<u32, GICC_IAR::Register>),
        (0x1004 => @END),
    }
}

register_structs! {
    /// The virtual interface control registers (IHI 0048B Table 5-1).
    #[allow(non_snake_case)]
    pub GichRegs {
        (0x000 => pub HCR: ReadWrite<u32, GICH_HCR::Register>),
        (0x004 => pub VTR: ReadOnly<u32, GICH_VTR::Register>),
        (0x008 => pub VMCR: ReadWrite<u32>),
        (0x00c => _reserved0),
        (0x010 => pub MISR: ReadOnly<u32>),
        (0x014 => _reserved1),
        (0x020 => pub EISR: [ReadOnly<u32>; 2]),
        (0x028 => _reserved2),
        (0x030 => pub ELRSR: [ReadOnly<u32>; 2]),
        (0x038 => _reserved3),
        (0x0f0 => pub APR: ReadWrite<u32>),
        (0x0f4 => _reserved4),
        (0x100 => pub LR: [ReadWrite<u32>; 64]),
        (0x200 => @END),
    }
}

/// Spurious interrupt ID.
pub const SPURIOUS: u32 = 1023;

/// The host's GICv2: one distributor, this CPU's banked CPU interface and virtual
/// interface control block (the same addresses on every CPU).
pub struct GicV2 {
    gicd: &'static GicdRegs,
    gicc: &'static GiccRegs,
    gich: &'static GichRegs,
}

// SAFETY: every method is a single MMIO access or a sequence only used during
// single-threaded initialisation (`init_distributor`, `route_spi`); GICC and GICH are
// banked per CPU, and the distributor's set/clear-enable and SGIR registers are
// designed for concurrent use by all CPUs.
unsafe impl Sync for GicV2 {}
// SAFETY: as above; the struct holds only addresses of device registers.
unsafe impl Send for GicV2 {}

impl GicV2 {
    /// Wraps the three register blocks.
    ///
    /// # Safety
    /// `gicd`, `gicc` and `gich` must be the addresses of a GICv2's distributor, CPU
    /// interface (8 KiB, GICC_DIR included) and virtual interface control block,
    /// mapped as device memory for the whole life of the returned value, and no other
    /// code may program the same registers concurrently except through this type.
    pub unsafe fn new(gicd: usize, gicc: usize, gich: usize) -> Self {
        // SAFETY: the caller guarantees the addresses map the register blocks.
        unsafe {
            Self {
                gicd: &*(gicd as *const GicdRegs),
                gicc: &*(gicc as *const GiccRegs),
                gich: &*(gich as *const GichRegs),
            }
        }
    }

    /// Number of interrupt IDs the distributor implements.
    pub fn lines(&self) -> u32 {
        32 * (self.gicd.TYPER.read(GICD_TYPER::ITLinesNumber) + 1)
    }

    /// Number of list registers.
    pub fn list_regs(&self) -> usize {
        self.gich.VTR.read(GICH_VTR::ListRegs) as usize + 1
    }

    /// Distributor setup (once, primary CPU): all SPIs disabled, group 0, priority
    /// 0xa0, then the distributor enabled.
    ///
    /// Group 0 makes one configuration work for both views of the GIC: without the
    /// Security Extensions (QEMU virt without EL3) bit 0 of GICD_CTLR/GICC_CTLR enables
    /// group 0 and bit 9 is EOImodeS; in the non-secure view of a GIC with them (the
    /// Raspberry Pi 4 behind its firmware) IGROUPR is RAZ/WI, the firmware has made
    /// everything group 1, and bit 0 / bit 9 are EnableGrp1 / EOImodeNS (§4.3.1, §4.4.1).
    pub fn init_distributor(&self) {
        self.gicd.CTLR.set(0);
        let words = (self.lines() / 32) as usize;
        for i in 1..words.min(32) {
            self.gicd.ICENABLER[i].set(u32::MAX);
            self.gicd.ICPENDR[i].set(u32::MAX);
            self.gicd.ICACTIVER[i].set(u32::MAX);
            self.gicd.IGROUPR[i].set(0);
        }
        for i in 8..(words * 8).min(255) {
            self.gicd.IPRIORITYR[i].set(0xa0a0_a0a0);
        }
        self.gicd.CTLR.write(GICD_CTLR::EnableGrp1::SET);
    }

    /// CPU-interface setup (every CPU): banked SGIs/PPIs group 0 (see
    /// [`init_distributor`](Self::init_distributor)) with priority 0xa0, priority mask
    /// open, EOImode 1, virtual interface enabled.
    pub fn init_cpu(&self) {
        self.gicd.ICENABLER[0].set(0xffff_0000);
        self.gicd.IGROUPR[0].set(0);
        for i in 0..8 {
            self.gicd.IPRIORITYR[i].set(0xa0a0_a0a0);
        }
        self.gicc.PMR.set(0xff);
        self.gicc.BPR.set(0);
        // Both EOImode bits without the Security Extensions: which one applies depends
        // on the security of the access, not the group (QEMU follows the access).
        if self.gicd.TYPER.is_set(GICD_TYPER::SecurityExtn) {
            self.gicc
                .CTLR
                .write(GICC_CTLR::Enable0::SET + GICC_CTLR::EOImode9::SET);
        } else {
            self.gicc.CTLR.write(
                GICC_CTLR::Enable0::SET
                    + GICC_CTLR::Enable1::SET
                    + GICC_CTLR::EOImode9::SET
                    + GICC_CTLR::EOImode10::SET,
            );
        }
        self.gich.HCR.write(GICH_HCR::En::SET);
    }

    /// Enables interrupt `intid` (banked for SGIs/PPIs).
    pub fn enable(&self, intid: u32) {
        if let Some(r) = self.gicd.ISENABLER.get((intid / 32) as usize) {
            r.set(1 << (intid % 32));
        }
    }

    /// Routes SPI `intid` to the CPU interface `cpu_if` (0..8).
    pub fn route_spi(&self, intid: u32, cpu_if: u32) {
        let word = (intid / 4) as usize;
        let shift = (intid % 4) * 8;
        if let Some(r) = self.gicd.ITARGETSR.get(word) {
            r.set((r.get() & !(0xff << shift)) | ((1 << cpu_if) << shift));
        }
    }

    /// Acknowledges the highest-priority pending interrupt; `None` if spurious.
    pub fn ack(&self) -> Option<u32> {
        let iar = self.gicc.IAR.get();
        let id = iar & 0x3ff;
        (id != SPURIOUS).then_some(iar)
    }

    /// Drops the running priority of an acknowledged interrupt (GICC_EOIR).
    pub fn eoi(&self, iar: u32) {
        self.gicc.EOIR.set(iar);
    }

    /// Deactivates an interrupt (GICC_DIR).
    pub fn deactivate(&self, iar: u32) {
        self.gicc.DIR.set(iar);
    }

    /// Sends SGI `sgi` to the CPU interfaces in `targets` (bit n = interface n).
    pub fn send_sgi(&self, sgi: u32, targets: u8) {
        self.gicd.SGIR.write(
            GICD_SGIR::SGIINTID.val(sgi & 0xf)
                + GICD_SGIR::CPUTargetList.val(targets as u32)
                + GICD_SGIR::TargetListFilter::List,
        );
    }

    /// The CPU interface number of the calling CPU (from the banked ITARGETSR0).
    pub fn cpu_interface(&self) -> u32 {
        let t = self.gicd.ITARGETSR[0].get() & 0xff;
        t.trailing_zeros().min(7)
    }

    /// Reads list register `n`.
    pub fn read_lr(&self, n: usize) -> u32 {
        self.gich.LR.get(n).map(|r| r.get()).unwrap_or(0)
    }

    /// Writes list register `n`.
    pub fn write_lr(&self, n: usize, v: u32) {
        if let Some(r) = self.gich.LR.get(n) {
            r.set(v);
        }
    }

    /// GICH_MISR: which maintenance conditions hold (§5.3.4).
    pub fn misr(&self) -> u32 {
        self.gich.MISR.get()
    }

    /// GICH_HCR.
    pub fn hcr(&self) -> u32 {
        self.gich.HCR.get()
    }

    /// Writes GICH_HCR (En, UIE, LRENPIE, NPIE, ...).
    pub fn write_hcr(&self, v: u32) {
        self.gich.HCR.set(v);
    }

    /// Bitmap of empty list registers (GICH_ELRSR0/1).
    pub fn empty_lrs(&self) -> u64 {
        self.gich.ELRSR[0].get() as u64 | (self.gich.ELRSR[1].get() as u64) << 32
    }
}
