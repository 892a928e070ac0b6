//! The host GIC as the ARMv7 host uses it: GICv2 with the virtualization extensions,
//! through `drivers::gicv2` (MMIO), with EOImode = 1 as on the AArch64 host.
//!
//! A GICv3 on an ARMv7 host would need the AArch32 ICC/ICH CP15 encodings; it is
//! refused by [`HostGic::v3`], and the guests then run without an interrupt controller.

use crate::drivers::gicv2::GicV2;

/// The host GIC.
pub enum HostGic {
    /// GICv2 with the virtualization extensions.
    V2(GicV2),
}

impl HostGic {
    /// A GICv3 host GIC: not supported on this host; the error says why.
    pub fn v3(_gicd: usize, _gicr: usize, _gicr_size: usize) -> Result<Self, &'static str> {
        Err("the ARMv7 host drives a GICv2 only (use -M virt,gic-version=2)")
    }

    /// The architecture version: 2.
    pub fn version(&self) -> u8 {
        2
    }

    /// Distributor setup, once, on the primary CPU: SPIs disabled, group 1.
    pub fn init_distributor(&self) {
        let HostGic::V2(g) = self;
        g.init_distributor()
    }

    /// Per-CPU setup: priority mask open, EOImode 1, virtual CPU interface enabled.
    /// Always true (a GICv2 needs no redistributor).
    pub fn init_cpu(&self) -> bool {
        let HostGic::V2(g) = self;
        g.init_cpu();
        true
    }

    /// Enables interrupt `intid` (SGIs/PPIs on this CPU's banked copy).
    pub fn enable(&self, intid: u32) {
        let HostGic::V2(g) = self;
        g.enable(intid)
    }

    /// Routes SPI `intid` to the calling CPU.
    pub fn route_spi_here(&self, intid: u32) {
        let HostGic::V2(g) = self;
        g.route_spi(intid, g.cpu_interface())
    }

    /// Acknowledges the highest-priority pending interrupt: `Some(iar)`, or `None` if
    /// spurious.
    pub fn ack(&self) -> Option<u32> {
        let HostGic::V2(g) = self;
        g.ack()
    }

    /// The INTID in an acknowledge value.
    pub fn intid(&self, iar: u32) -> u32 {
        iar & 0x3ff
    }

    /// Priority drop of an acknowledged interrupt.
    pub fn eoi(&self, iar: u32) {
        let HostGic::V2(g) = self;
        g.eoi(iar)
    }

    /// Deactivation of an acknowledged interrupt.
    pub fn deactivate(&self, iar: u32) {
        let HostGic::V2(g) = self;
        g.deactivate(iar)
    }

    /// Sends SGI `sgi` to the physical CPU with CPU interface `cpu_if`.
    pub fn send_sgi(&self, sgi: u32, _mpidr: u64, cpu_if: u32) {
        let HostGic::V2(g) = self;
        g.send_sgi(sgi, 1 << (cpu_if & 7))
    }

    /// The calling CPU's interface number, for addressing SGIs.
    pub fn cpu_interface(&self) -> u32 {
        let HostGic::V2(g) = self;
        g.cpu_interface()
    }

    /// Number of list registers.
    pub fn list_regs(&self) -> usize {
        let HostGic::V2(g) = self;
        g.list_regs()
    }

    /// Reads list register `n` (GICH_LRn).
    pub fn read_lr(&self, n: usize) -> u64 {
        let HostGic::V2(g) = self;
        g.read_lr(n) as u64
    }

    /// Writes list register `n`.
    pub fn write_lr(&self, n: usize, v: u64) {
        let HostGic::V2(g) = self;
        g.write_lr(n, v as u32)
    }

    /// Writes GICH_HCR.
    pub fn write_hcr(&self, v: u64) {
        let HostGic::V2(g) = self;
        g.write_hcr(v as u32)
    }
}
