//! Per-interrupt state shared by the GICv2 and GICv3 distributor models.

/// Request flags recorded while an interrupt sits in a running vCPU's list register;
/// [`super::Vgic::sync`] applies them after folding the LR back in.
pub(crate) const REQ_SET_PEND: u8 = 1 << 0;
pub(crate) const REQ_CLR_PEND: u8 = 1 << 1;
pub(crate) const REQ_SET_ACT: u8 = 1 << 2;
pub(crate) const REQ_CLR_ACT: u8 = 1 << 3;

/// The priority bits implemented (5, as GICH_LR holds): the low three read as zero.
pub(crate) const PRIO_MASK: u8 = 0xf8;

/// GICD_IROUTER bits that are stored: Aff3 `[39:32]`, IRM `[31]`, Aff2..Aff0 `[23:0]`.
pub(crate) const IROUTER_MASK: u64 = 0xff_8000_0000 | 0xff_ffff;
/// GICD_IROUTER.Interrupt_Routing_Mode: any participating PE.
pub(crate) const IROUTER_IRM: u64 = 1 << 31;

/// The state of one interrupt (one banked copy for SGIs and PPIs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Irq {
    /// GICD_ISENABLER.
    pub enabled: bool,
    /// The pending latch: edges, GICD_ISPENDR writes, HW-mapped physical arrivals.
    /// For a GICv2 SGI the per-source `src` mask is used instead.
    pub latch: bool,
    /// The input line, for level-sensitive interrupts that are not HW-mapped.
    pub level: bool,
    /// Active (acknowledged, not yet deactivated).
    pub active: bool,
    /// GICD_IPRIORITYR (bits `[7:3]`).
    pub priority: u8,
    /// GICD_IGROUPR: group 1.
    pub group1: bool,
    /// GICD_ICFGR: edge-triggered.
    pub edge: bool,
    /// HW mapping: the physical INTID linked in the list register.
    pub hw: Option<u32>,
    /// Currently in a list register of a running vCPU (between `fill` and `sync`).
    pub in_lr: bool,
    /// SPI: the vCPU whose list registers hold it, until it is neither in an LR nor
    /// active.
    pub owner: Option<u8>,
    /// `REQ_*` flags recorded while `in_lr`.
    pub req: u8,
    /// SPI, GICv2: GICD_ITARGETSR.
    pub targets: u8,
    /// SPI, GICv3: GICD_IROUTER.
    pub route: u64,
    /// SGI, GICv2: pending sources (bit n = CPU n), GICD_SPENDSGIR.
    pub src: u8,
    /// SGI, GICv2: the source of the activation in flight.
    pub act_src: u8,
}

impl Irq {
    /// Reset state: disabled, idle, priority 0, group 0, edge as given.
    pub const fn new(edge: bool) -> Self {
        Self {
            enabled: false,
            latch: false,
            level: false,
            active: false,
            priority: 0,
            group1: false,
            edge,
            hw: None,
            in_lr: false,
            owner: None,
            req: 0,
            targets: 0,
            route: 0,
            src: 0,
            act_src: 0,
        }
    }

    /// Resets the guest-visible state and keeps the hypervisor's HW mapping.
    pub fn reset(&mut self, edge: bool) {
        let hw = self.hw;
        *self = Self::new(edge);
        self.hw = hw;
    }

    /// Pending as GICD_ISPENDR reports it (`sgi_v2`: use the source mask).
    pub fn pending(&self, sgi_v2: bool) -> bool {
        if sgi_v2 {
            self.src != 0
        } else {
            self.latch || (!self.edge && self.hw.is_none() && self.level)
        }
    }
}
