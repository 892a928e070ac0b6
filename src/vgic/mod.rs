//! Virtual GIC: the emulated distributor (GICv2 and GICv3), GICv3 redistributors and
//! the list-register model the arch layer drives.
//!
//! # Model
//!
//! One [`Vgic`] per VM, created for one [`GicVersion`], `nr_vcpus` vCPUs and a number of
//! SPIs (rounded up to a multiple of 32; INTIDs `32..32 + nr_spis`). Every interrupt has
//! enable, pending, active, priority (5 bits, as GICH_LR holds), group and edge/level
//! configuration; SGIs and PPIs (INTIDs 0..31) are banked per vCPU; SPIs carry
//! GICD_ITARGETSR (v2) or GICD_IROUTER (v3). Pending state is a *latch* (edges, set-pending
//! writes, HW-mapped physical arrivals) plus, for level-sensitive lines, the *line level*
//! the device side drives. GICv2 SGIs keep a pending bit per source CPU
//! (GICD_SPENDSGIR), each delivered with its source in GICH_LR.CPUID.
//!
//! The emulated GIC has a single security state: GICv2 without the Security
//! Extensions (IGROUPR read/write, GICD_CTLR.EnableGrp0/EnableGrp1); GICv3 with
//! GICD_CTLR.DS = 1 and ARE = 1 (RAO/WI), so GICD registers of INTIDs 0..31 are RAZ/WI
//! and SGIs/PPIs live in the redistributors. No LPIs, no ITS, no extended ranges.
//!
//! The CPU interface is the hardware's (GICV for v2, ICV_* system registers for v3):
//! the model hands out list-register values with [`Vgic::fill`] before a vCPU runs and
//! takes them back with [`Vgic::sync`] after it stops. Between the two the LRs own the
//! pending/active state of what they hold (`in_lr`); distributor writes that touch such
//! an interrupt are recorded and applied at the next `sync`, and the owning vCPU is
//! asked to exit (a *kick*). An SPI belongs to the vCPU that holds it in an LR until it
//! is no longer active, so it is never in two vCPUs' LRs at once.
//!
//! # What the arch side calls, and when
//!
//! The `Vgic` sits behind a [`SharedVgic`] (`Arc<spin::Mutex<Vgic>>`). Lock order: the
//! VM's MMIO router lock, then the vGIC lock (the MMIO frames lock the vGIC inside the
//! router); never take the router lock while holding the vGIC.
//!
//! * **Creation**: [`Vgic::new`]; register [`GicdMmio`] at the guest's GICD address
//!   ([`Vgic::dist_size`] bytes) and, for v3, [`GicrMmio`] at the redistributor base
//!   ([`Vgic::redist_size`] bytes: 128 KiB per vCPU, vCPU n at `n * 0x2_0000`). For v2 the
//!   arch side maps the physical GICV at the guest's GICC address. [`Vgic::hw_map`] each
//!   physical interrupt it forwards (virtual timer: `hw_map(27, 27)`).
//! * **MMIO trap** on the GICD: the distributor's banked registers need the accessing
//!   vCPU. Either build the frame with [`GicdMmio::with_resolver`] (a closure returning
//!   the current vCPU, e.g. from the physical CPU number), or call
//!   [`GicdMmio::set_current_vcpu`] (through `MmioRouter::find_mut`) under the router lock
//!   before `dispatch`. GICR frames need nothing: the offset names the vCPU. Without the
//!   router, [`Vgic::dist_read`] / [`Vgic::dist_write`] / [`Vgic::redist_read`] /
//!   [`Vgic::redist_write`] take the vCPU explicitly. Bad offsets, sizes and values are
//!   RAZ/WI with a log line; these calls never fail.
//! * **After any call that can change state** (MMIO dispatch, SGI, line change):
//!   [`Vgic::take_kicks`] gives the vCPUs that should exit and re-run `fill`; kick the
//!   physical CPUs of those that are running (other than the caller's own).
//!   [`Vgic::take_hw_deactivations`] gives physical INTIDs to deactivate (GICC_DIR /
//!   ICC_DIR_EL1) because the guest cleared a HW-mapped interrupt without an LR.
//! * **Guest exit** (any exit, including the maintenance interrupt): read back the LRs
//!   `0..FillResult::used` of the last fill and call [`Vgic::sync`] with them first.
//! * **Before entry**: [`Vgic::fill`]; write all `nr_lrs` values of
//!   [`FillResult::values`] (unused ones are 0, which also clears GICH_EISR/ELRSR
//!   bookkeeping) and [`FillResult::hcr`] to GICH_HCR / ICH_HCR_EL2 (En, plus NPIE when
//!   more is pending than fits).
//! * **Maintenance interrupt**: nothing special: it exists to make the vCPU exit (EOI of
//!   a level-sensitive or multi-source SGI LR, or NPIE); `sync` + `fill` do the work.
//! * **SGI**: v2 guests write GICD_SGIR (handled in the MMIO path; [`Vgic::sgi_v2`] is
//!   the same thing callable directly); v3 guests' MSR ICC_SGI1R_EL1 traps (EC 0x18):
//!   call [`Vgic::sgi_v3`]. Both return the target vCPU mask (also added to the kicks).
//! * **Device line change**: [`Vgic::set_level`] for level-sensitive lines (emulated
//!   UART SPI), [`Vgic::trigger_edge`] for edges. A HW-mapped physical interrupt that
//!   arrived at the host (acknowledged with EOImode = 1, left active): `set_level(intid,
//!   vcpu, true)` or `trigger_edge`; both latch it; the guest's deactivation of the
//!   HW = 1 LR deactivates the physical one.
//! * **WFI trap**: [`Vgic::pending_for`] says whether something is deliverable.
//! * **VM reset**: `MmioRouter::reset_devices` reaches [`GicdMmio`], which calls
//!   [`Vgic::reset`]; write zero LRs afterwards.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

mod device;
mod dist;
pub mod lr;
mod v2;
mod v3;

#[cfg(test)]
mod tests;

pub use device::{GicdMmio, GicrMmio};
pub use lr::{Lr, LrState, HCR_EN, HCR_NPIE, HCR_UIE};

use dist::{Irq, REQ_CLR_ACT, REQ_CLR_PEND, REQ_SET_ACT, REQ_SET_PEND};

/// The vGIC of a VM, shared by its vCPUs and its MMIO frames.
pub type SharedVgic = Arc<spin::Mutex<Vgic>>;

/// The most list registers [`Vgic::fill`] uses (ICH_VTR_EL2.ListRegs allows 16).
pub const MAX_LRS: usize = 16;
/// The most SPIs: INTIDs 32..1019.
pub const MAX_SPIS: usize = 988;
/// Size of the GICv2 distributor frame (IHI 0048B §4.3, Table 4-1).
pub const GICD_SIZE_V2: u64 = 0x1000;
/// Size of the GICv3 distributor frame (IHI 0069 §12.8, GICD register map).
pub const GICD_SIZE_V3: u64 = 0x1_0000;
/// Size of one GICv3 redistributor: RD_base + SGI_base frames (IHI 0069 §12.10, GICR register map).
pub const GICR_STRIDE: u64 = 0x2_0000;

/// The GIC architecture version the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2 (IHI 0048B): memory-mapped CPU interface (GICV), up to 8 vCPUs.
    V2,
    /// GICv3 (IHI 0069): system-register CPU interface, redistributors, up to 16 vCPUs.
    V3,
}

/// Errors of the vGIC's hypervisor-facing API (guest accesses never fail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgicError {
    /// Zero vCPUs, or more than the version supports (8 for v2, 16 for v3).
    BadVcpuCount(usize),
    /// More than [`MAX_SPIS`] SPIs.
    TooManySpis(usize),
    /// A vCPU index out of range.
    NoSuchVcpu(usize),
    /// An INTID that does not exist or cannot be used this way.
    BadIntid(u32),
}

impl fmt::Display for VgicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadVcpuCount(n) => write!(f, "unsupported vGIC vCPU count {n}"),
            Self::TooManySpis(n) => write!(f, "{n} SPIs is more than {MAX_SPIS}"),
            Self::NoSuchVcpu(n) => write!(f, "no vCPU {n}"),
            Self::BadIntid(i) => write!(f, "bad INTID {i}"),
        }
    }
}

/// What `fill` put in one list register.
#[derive(Clone, Copy, Debug, Default)]
struct Flight {
    intid: u16,
    source: u8,
    written: u64,
}

/// The banked state of one vCPU.
struct VcpuState {
    private: [Irq; 32],
    flight: [Flight; MAX_LRS],
    nflight: usize,
    /// GICR_WAKER.ProcessorSleep (v3).
    sleep: bool,
}

impl VcpuState {
    fn new(version: GicVersion) -> Self {
        let mut s = Self {
            private: [Irq::new(true); 32],
            flight: [Flight::default(); MAX_LRS],
            nflight: 0,
            sleep: true,
        };
        s.reset(version);
        s
    }

    fn reset(&mut self, version: GicVersion) {
        for (i, irq) in self.private.iter_mut().enumerate() {
            // SGIs edge (fixed); PPIs level at reset (the timers are level-sensitive).
            irq.reset(i < 16);
            // GICv2: SGIs permanently enabled (an IMPLEMENTATION DEFINED choice the
            // spec allows, IHI 0048B §4.3.5), so guests that never enable them work.
            irq.enabled = version == GicVersion::V2 && i < 16;
        }
        self.nflight = 0;
        self.sleep = true;
    }
}

/// The list-register values for one vCPU entry, from [`Vgic::fill`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FillResult {
    lrs: [u64; MAX_LRS],
    nr: usize,
    used: usize,
    overflow: bool,
    npie: bool,
}

impl FillResult {
    /// The values of LR0..LR(nr_lrs-1); entries past [`FillResult::used`] are 0
    /// (invalid). GICv2 values fit in 32 bits.
    pub fn values(&self) -> &[u64] {
        &self.lrs[..self.nr]
    }
    /// How many LRs (from LR0) hold an interrupt; `sync` wants these read back.
    pub fn used(&self) -> usize {
        self.used
    }
    /// More interrupts are pending than fit: the NPIE maintenance interrupt is needed.
    pub fn overflow(&self) -> bool {
        self.overflow
    }
    /// The GICH_HCR / ICH_HCR_EL2 value to write: En, plus NPIE on overflow when an
    /// LR holds a pending (not active and pending) interrupt. (With only active ones,
    /// NPIE would fire at once and forever: the guest could never run. Those LRs ask for an EOI maintenance
    /// interrupt instead, so a deactivation makes room.)
    pub fn hcr(&self) -> u64 {
        HCR_EN | if self.npie { HCR_NPIE } else { 0 }
    }
}

/// A kind of one-bit-per-interrupt distributor register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BitReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

/// The virtual GIC of one VM.
pub struct Vgic {
    version: GicVersion,
    nr_vcpus: usize,
    nr_spis: usize,
    grp0_en: bool,
    grp1_en: bool,
    spis: Vec<Irq>,
    vcpus: Vec<VcpuState>,
    kicks: u64,
    hw_deact: Vec<u32>,
    /// Bumped by every change a guest or device can make (see [`Vgic::generation`]).
    generation: Arc<core::sync::atomic::AtomicU64>,
}

impl fmt::Debug for Vgic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vgic")
            .field("version", &self.version)
            .field("nr_vcpus", &self.nr_vcpus)
            .field("nr_spis", &self.nr_spis)
            .finish_non_exhaustive()
    }
}

impl Vgic {
    /// A counter that changes whenever interrupt state may have changed from outside
    /// the list registers (distributor writes, device lines, SGIs, reset). The
    /// hypervisor uses it to skip `fill` on entries where nothing is in flight and
    /// nothing changed since the last `fill` found nothing to deliver.
    pub fn generation(&self) -> u64 {
        self.generation.load(core::sync::atomic::Ordering::Acquire)
    }

    /// The counter behind [`Vgic::generation`], readable without the vGIC's lock (a
    /// change is published before the lock is released).
    pub fn generation_handle(&self) -> Arc<core::sync::atomic::AtomicU64> {
        self.generation.clone()
    }

    /// A vGIC in its reset state. `nr_spis` is rounded up to a multiple of 32.
    pub fn new(version: GicVersion, nr_vcpus: usize, nr_spis: usize) -> Result<Self, VgicError> {
        let max = match version {
            GicVersion::V2 => 8,
            GicVersion::V3 => 16,
        };
        if nr_vcpus == 0 || nr_vcpus > max {
            return Err(VgicError::BadVcpuCount(nr_vcpus));
        }
        if nr_spis > MAX_SPIS {
            return Err(VgicError::TooManySpis(nr_spis));
        }
        let nr_spis = nr_spis.div_ceil(32) * 32;
        let nr_spis = nr_spis.min(MAX_SPIS);
        let mut vcpus = Vec::with_capacity(nr_vcpus);
        vcpus.resize_with(nr_vcpus, || VcpuState::new(version));
        let mut v = Self {
            version,
            nr_vcpus,
            nr_spis,
            grp0_en: false,
            grp1_en: false,
            spis: alloc::vec![Irq::new(false); nr_spis],
            vcpus,
            kicks: 0,
            hw_deact: Vec::new(),
            generation: Arc::new(core::sync::atomic::AtomicU64::new(0)),
        };
        v.reset();
        v.kicks = 0;
        Ok(v)
    }

    /// Wraps the vGIC for sharing between vCPUs and MMIO frames.
    pub fn into_shared(self) -> SharedVgic {
        Arc::new(spin::Mutex::new(self))
    }

    /// The version the guest sees.
    pub fn version(&self) -> GicVersion {
        self.version
    }
    /// Number of vCPUs.
    pub fn nr_vcpus(&self) -> usize {
        self.nr_vcpus
    }
    /// Number of SPIs (a multiple of 32, except at the 988 maximum).
    pub fn nr_spis(&self) -> usize {
        self.nr_spis
    }
    /// One past the highest INTID.
    pub fn nr_irqs(&self) -> u32 {
        32 + self.nr_spis as u32
    }
    /// Size of the distributor frame to register.
    pub fn dist_size(&self) -> u64 {
        match self.version {
            GicVersion::V2 => GICD_SIZE_V2,
            GicVersion::V3 => GICD_SIZE_V3,
        }
    }
    /// Size of the redistributor region to register (v3; 0 for v2).
    pub fn redist_size(&self) -> u64 {
        match self.version {
            GicVersion::V2 => 0,
            GicVersion::V3 => GICR_STRIDE * self.nr_vcpus as u64,
        }
    }

    /// The MPIDR affinity (Aff1.Aff0) of vCPU `n`, as `Vm::vcpu_mpidr` gives it.
    pub fn mpidr_of(n: usize) -> u64 {
        (n as u64 & 0xff) | ((n as u64 >> 8) & 0xff) << 8
    }

    /// The vCPU with affinity Aff3.Aff2.Aff1.Aff0 packed as in GICD_IROUTER
    /// (Aff3 at `[39:32]`, Aff2..Aff0 at `[23:0]`), if any.
    pub(crate) fn vcpu_of_affinity(&self, aff: u64) -> Option<usize> {
        if aff & 0xff_00ff_0000 != 0 {
            return None;
        }
        let n = ((aff >> 8) & 0xff) as usize * 256 + (aff & 0xff) as usize;
        (n < self.nr_vcpus).then_some(n)
    }

    /// Back to the power-on state (all disabled, idle, priority 0, group 0, SPIs
    /// level-sensitive, distributor disabled). HW mappings are kept; LR bookkeeping is
    /// dropped (write zero LRs); every vCPU is kicked.
    pub fn reset(&mut self) {
        self.generation
            .fetch_add(1, core::sync::atomic::Ordering::Release);
        self.grp0_en = false;
        self.grp1_en = false;
        for irq in &mut self.spis {
            irq.reset(false);
        }
        let version = self.version;
        for v in &mut self.vcpus {
            v.reset(version);
        }
        self.hw_deact.clear();
        self.kicks = self.all_vcpus();
    }

    fn all_vcpus(&self) -> u64 {
        if self.nr_vcpus >= 64 {
            u64::MAX
        } else {
            (1u64 << self.nr_vcpus) - 1
        }
    }

    // ----- state access -----

    pub(crate) fn irq(&self, vcpu: usize, intid: u32) -> Option<&Irq> {
        if intid < 32 {
            self.vcpus.get(vcpu).map(|v| &v.private[intid as usize])
        } else {
            self.spis.get(intid as usize - 32)
        }
    }

    pub(crate) fn irq_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut Irq> {
        if intid < 32 {
            self.vcpus
                .get_mut(vcpu)
                .map(|v| &mut v.private[intid as usize])
        } else {
            self.spis.get_mut(intid as usize - 32)
        }
    }

    pub(crate) fn is_sgi_v2(&self, intid: u32) -> bool {
        self.version == GicVersion::V2 && intid < 16
    }

    fn group_enabled(&self, group1: bool) -> bool {
        if group1 {
            self.grp1_en
        } else {
            self.grp0_en
        }
    }

    /// The vCPU an idle SPI would go to now.
    fn spi_route(&self, irq: &Irq) -> Option<usize> {
        match self.version {
            GicVersion::V2 => {
                let t = u64::from(irq.targets) & self.all_vcpus();
                (t != 0).then(|| t.trailing_zeros() as usize)
            }
            GicVersion::V3 => {
                if irq.route & dist::IROUTER_IRM != 0 {
                    Some(0)
                } else {
                    self.vcpu_of_affinity(irq.route & !dist::IROUTER_IRM)
                }
            }
        }
    }

    /// The vCPU that would deliver `intid` (banked: `vcpu`; SPI: owner or route).
    fn deliver_to(&self, vcpu: usize, intid: u32) -> Option<usize> {
        if intid < 32 {
            return (vcpu < self.nr_vcpus).then_some(vcpu);
        }
        let irq = self.irq(vcpu, intid)?;
        match irq.owner {
            Some(o) => Some(usize::from(o)),
            None => self.spi_route(irq),
        }
    }

    fn kick_for(&mut self, vcpu: usize, intid: u32) {
        if let Some(t) = self.deliver_to(vcpu, intid) {
            self.kicks |= 1 << t;
        }
    }

    fn deliverable(&self, irq: &Irq, intid: u32) -> bool {
        irq.enabled && self.group_enabled(irq.group1) && irq.pending(self.is_sgi_v2(intid))
    }

    // ----- hypervisor-facing API -----

    /// Links virtual `intid` (a PPI, on every vCPU, or an SPI) to physical `pintid`:
    /// `fill` emits HW = 1 list registers for it, so the guest's deactivation also
    /// deactivates the physical interrupt. The interrupt then behaves as edge-triggered
    /// in the model (the physical line is the level).
    pub fn hw_map(&mut self, intid: u32, pintid: u32) -> Result<(), VgicError> {
        self.generation
            .fetch_add(1, core::sync::atomic::Ordering::Release);
        if !(16..self.nr_irqs()).contains(&intid) {
            return Err(VgicError::BadIntid(intid));
        }
        if !(16..1020).contains(&pintid) {
            return Err(VgicError::BadIntid(pintid));
        }
        self.set_hw(intid, Some(pintid));
        Ok(())
    }

    /// Removes a HW mapping made with [`Vgic::hw_map`].
    pub fn hw_unmap(&mut self, intid: u32) -> Result<(), VgicError> {
        self.generation
            .fetch_add(1, core::sync::atomic::Ordering::Release);
        if !(16..self.nr_irqs()).contains(&intid) {
            return Err(VgicError::BadIntid(intid));
        }
        self.set_hw(intid, None);
        Ok(())
    }

    fn set_hw(&mut self, intid: u32, hw: Option<u32>) {
        if intid < 32 {
            for v in &mut self.vcpus {
                v.private[intid as usize].hw = hw;
            }
        } else {
            self.spis[intid as usize - 32].hw = hw;
        }
    }

    fn check_line(&self, intid: u32, vcpu: usize) -> Result<(), VgicError> {
        if !(16..self.nr_irqs()).contains(&intid) {
            return Err(VgicError::BadIntid(intid));
        }
        if intid < 32 && vcpu >= self.nr_vcpus {
            return Err(VgicError::NoSuchVcpu(vcpu));
        }
        Ok(())
    }

    /// Drives the input line of a level-sensitive PPI (banked on `vcpu`) or SPI
    /// (`vcpu` ignored). For a HW-mapped interrupt, `true` latches it (a physical
    /// arrival) and `false` does nothing. Kicks the target when it becomes deliverable
    /// (or stops being pending while in a list register).
    pub fn set_level(&mut self, intid: u32, vcpu: usize, level: bool) -> Result<(), VgicError> {
        self.generation
            .fetch_add(1, core::sync::atomic::Ordering::Release);
        self.check_line(intid, vcpu)?;
        let Some(irq) = self.irq_mut(vcpu, intid) else {
            return Err(VgicError::BadIntid(intid));
        };
        if irq.hw.is_some() {
            if level {
                irq.latch = true;
                self.kick_for(vcpu, intid);
            }
            return Ok(());
        }
        let changed = irq.level != level;
        irq.level = level;
        if changed && (level || irq.in_lr) {
            self.kick_for(vcpu, intid);
        }
        Ok(())
    }

    /// An edge on `intid` (PPI banked on `vcpu`, or SPI): latches it pending.
    pub fn trigger_edge(&mut self, intid: u32, vcpu: usize) -> Result<(), VgicError> {
        self.generation
            .fetch_add(1, core::sync::atomic::Ordering::Release);
        self.check_line(intid, vcpu)?;
        if let Some(irq) = self.irq_mut(vcpu, intid) {
            irq.latch = true;
        }
        self.kick_for(vcpu, intid);
        Ok(())
    }

    /// A GICv2 SGI: `value` as written to GICD_SGIR by vCPU `sender` (IHI 0048B
    /// §4.3.15: SGIINTID `[3:0]`, CPUTargetList `[23:16]`, TargetListFilter `[25:24]`; NSATT is
    /// ignored, there being one security state). Nonexistent targets are ignored;
    /// filter 3 (reserved) sends nothing. Returns the vCPUs made pending (also kicked).
    pub fn sgi_v2(&mut self, sender: usize, value: u32) -> u64 {
        self.generation
            .fetch_add(1, core::sync::atomic::Ordering::Release);
        if self.version != GicVersion::V2 || sender >= self.nr_vcpus {
            return 0;
        }
        let sgi = (value & 0xf) as usize;
        let all = self.all_vcpus();
        let targets = match (value >> 24) & 3 {
            0 => u64::from((value >> 16) & 0xff) & all,
            1 => all & !(1 << sender),
            2 => 1 << sender,
            _ => {
                crate::guest_warn!(
                    "vgic: GICD_SGIR {value:#x} with reserved TargetListFilter ignored"
                );
                0
            }
        };
        for t in 0..self.nr_vcpus {
            if targets & (1 << t) != 0 {
                self.vcpus[t].private[sgi].src |= 1 << sender;
            }
        }
        self.kicks |= targets;
        targets
    }

    /// A GICv3 SGI: `value` as written to ICC_SGI1R_EL1 by vCPU `sender` (IHI 0069
    /// ICC_SGI1R_EL1, §12.2: TargetList `[15:0]`, Aff1 `[23:16]`, INTID `[27:24]`, Aff2 `[39:32]`,
    /// IRM `[40]`, RS `[47:44]`, Aff3 `[55:48]`). IRM = 1 targets every vCPU but the sender.
    /// Nonexistent targets are ignored. Returns the vCPUs made pending (also kicked).
    pub fn sgi_v3(&mut self, sender: usize, value: u64) -> u64 {
        self.generation
            .fetch_add(1, core::sync::atomic::Ordering::Release);
        if self.version != GicVersion::V3 || sender >= self.nr_vcpus {
            return 0;
        }
        let sgi = ((value >> 24) & 0xf) as usize;
        let mut targets = 0u64;
        if value & (1 << 40) != 0 {
            targets = self.all_vcpus() & !(1 << sender);
        } else {
            let list = value & 0xffff;
            let rs = (value >> 44) & 0xf;
            let aff1 = (value >> 16) & 0xff;
            let aff2 = (value >> 32) & 0xff;
            let aff3 = (value >> 48) & 0xff;
            for bit in 0..16 {
                if list & (1 << bit) == 0 {
                    continue;
                }
                let aff0 = rs * 16 + bit;
                if aff0 > 0xff {
                    continue;
                }
                let aff = aff3 << 32 | aff2 << 16 | aff1 << 8 | aff0;
                if let Some(t) = self.vcpu_of_affinity(aff) {
                    targets |= 1 << t;
                }
            }
        }
        for t in 0..self.nr_vcpus {
            if targets & (1 << t) != 0 {
                self.vcpus[t].private[sgi].latch = true;
            }
        }
        self.kicks |= targets;
        targets
    }

    /// The vCPUs that should exit and refill their list registers since the last call
    /// (bit n = vCPU n). The caller kicks those running elsewhere.
    pub fn take_kicks(&mut self) -> u64 {
        core::mem::take(&mut self.kicks)
    }

    /// Physical INTIDs of HW-mapped interrupts the guest cleared without deactivating
    /// them through a list register: the caller deactivates them (GICC_DIR /
    /// ICC_DIR_EL1) on the physical CPU of the vCPU that owned them (PPIs) or any (SPIs).
    pub fn take_hw_deactivations(&mut self) -> Vec<u32> {
        core::mem::take(&mut self.hw_deact)
    }

    /// True if an interrupt is pending, enabled and group-enabled for `vcpu`: a WFI
    /// should not sleep. (The guest's priority mask and running priority live in the
    /// hardware CPU interface and are not considered.)
    pub fn pending_for(&self, vcpu: usize) -> bool {
        let Some(v) = self.vcpus.get(vcpu) else {
            return false;
        };
        if v.flight[..v.nflight]
            .iter()
            .any(|f| LrState::from_bits(f.written >> self.state_shift()).pending())
        {
            return true;
        }
        if (0..32u32).any(|i| self.deliverable(&v.private[i as usize], i)) {
            return true;
        }
        self.spis.iter().enumerate().any(|(i, irq)| {
            let mine = match irq.owner {
                Some(o) => usize::from(o) == vcpu,
                None => self.spi_route(irq) == Some(vcpu),
            };
            mine && !irq.in_lr && self.deliverable(irq, 32 + i as u32)
        })
    }

    fn state_shift(&self) -> u32 {
        match self.version {
            GicVersion::V2 => 28,
            GicVersion::V3 => 62,
        }
    }

    /// Chooses what `vcpu` finds in its `nr_lrs` list registers (clamped to
    /// [`MAX_LRS`]) when it next runs: every active interrupt it owns, then the
    /// highest-priority (lowest value, then lowest INTID) pending, enabled and
    /// group-enabled interrupts targeted at it. Those are marked in flight until
    /// [`Vgic::sync`]. Level-sensitive and multi-source SGI entries ask for an EOI
    /// maintenance interrupt; `overflow` asks for NPIE when pending work was left out.
    /// If called twice without `sync`, the first result is taken back unchanged.
    pub fn fill(&mut self, vcpu: usize, nr_lrs: usize) -> FillResult {
        let nr = nr_lrs.min(MAX_LRS);
        let mut out = FillResult {
            lrs: [0; MAX_LRS],
            nr,
            used: 0,
            overflow: false,
            npie: false,
        };
        if vcpu >= self.nr_vcpus {
            return out;
        }
        if self.vcpus[vcpu].nflight != 0 {
            let own: Vec<u64> = self.vcpus[vcpu].flight[..self.vcpus[vcpu].nflight]
                .iter()
                .map(|f| f.written)
                .collect();
            self.sync(vcpu, &own);
        }
        // Best `nr` candidates by key (lower is better): active first, then priority,
        // then INTID.
        let mut best: [(u32, u32); MAX_LRS] = [(u32::MAX, 0); MAX_LRS];
        let mut nbest = 0usize;
        let mut left_pending = false;
        let mut left_active = 0usize;
        let nirqs = self.nr_irqs();
        for intid in 0..nirqs {
            let Some(irq) = self.irq(vcpu, intid) else {
                continue;
            };
            if intid >= 32 {
                let mine = match irq.owner {
                    Some(o) => usize::from(o) == vcpu,
                    None => self.spi_route(irq) == Some(vcpu),
                };
                if !mine {
                    continue;
                }
            }
            let pend = self.deliverable(irq, intid);
            if !irq.active && !pend {
                continue;
            }
            let key = (u32::from(!irq.active) << 24) | (u32::from(irq.priority) << 16) | intid;
            // Insert into the sorted `best` list.
            let mut pos = nbest;
            while pos > 0 && best[pos - 1].0 > key {
                pos -= 1;
            }
            if pos >= nr {
                if irq.active {
                    left_active += 1;
                }
                left_pending |= pend;
                continue;
            }
            if nbest == nr {
                let (ek, eid) = best[nr - 1];
                if ek >> 24 == 0 {
                    left_active += 1;
                }
                if let Some(e) = self.irq(vcpu, eid) {
                    left_pending |= self.deliverable(e, eid);
                }
                nbest -= 1;
            }
            let mut i = nbest;
            while i > pos {
                best[i] = best[i - 1];
                i -= 1;
            }
            best[pos] = (key, intid);
            nbest += 1;
        }
        if left_active > 0 {
            crate::guest_warn!(
                "vgic: vCPU {vcpu}: {left_active} active interrupts do not fit in {nr} LRs"
            );
        }
        let mut chosen = [(Lr::INVALID, 0u8); MAX_LRS];
        for (slot, &(_, intid)) in best[..nbest].iter().enumerate() {
            chosen[slot] = self.take_for_lr(vcpu, intid);
        }
        // NPIE counts LRs in the pending state only, not active and pending.
        let any_pending = chosen[..nbest]
            .iter()
            .any(|(lr, _)| lr.state == LrState::Pending);
        if left_pending && !any_pending {
            // Only active interrupts fit: NPIE would fire before the guest runs. Exit
            // when the guest deactivates one instead (HW = 1 LRs cannot ask for that).
            for (lr, _) in &mut chosen[..nbest] {
                lr.eoi_maint |= lr.hw.is_none();
            }
        }
        for (slot, (&(_, intid), &(lr, source))) in
            best[..nbest].iter().zip(&chosen[..nbest]).enumerate()
        {
            let raw = lr.encode(self.version);
            out.lrs[slot] = raw;
            self.vcpus[vcpu].flight[slot] = Flight {
                intid: intid as u16,
                source,
                written: raw,
            };
        }
        self.vcpus[vcpu].nflight = nbest;
        out.used = nbest;
        out.overflow = left_pending;
        out.npie = left_pending && any_pending;
        out
    }

    /// Moves the deliverable state of `intid` into a list register for `vcpu`.
    fn take_for_lr(&mut self, vcpu: usize, intid: u32) -> (Lr, u8) {
        let sgi2 = self.is_sgi_v2(intid);
        let deliverable = self
            .irq(vcpu, intid)
            .is_some_and(|irq| self.deliverable(irq, intid));
        let Some(irq) = self.irq_mut(vcpu, intid) else {
            return (Lr::INVALID, 0);
        };
        let mut pend = false;
        let mut source = 0u8;
        let mut eoi = false;
        if sgi2 {
            if irq.active {
                source = irq.act_src;
                if deliverable && irq.src & (1 << source) != 0 {
                    pend = true;
                    irq.src &= !(1 << source);
                }
            } else if deliverable {
                source = irq.src.trailing_zeros() as u8;
                irq.src &= !(1 << source);
                irq.act_src = source;
                pend = true;
            }
            eoi = irq.src != 0;
        } else if irq.edge || irq.hw.is_some() {
            if deliverable {
                pend = true;
                irq.latch = false;
            }
        } else {
            pend = deliverable;
            eoi = true;
        }
        irq.in_lr = true;
        if intid >= 32 {
            irq.owner = Some(vcpu as u8);
        }
        let lr = Lr {
            vintid: intid,
            state: LrState::from_flags(pend, irq.active),
            priority: irq.priority,
            group1: irq.group1,
            hw: irq.hw,
            eoi_maint: eoi && irq.hw.is_none(),
            source,
        };
        (lr, source)
    }

    /// Folds the list registers of `vcpu` back into the model after it stopped
    /// running. `lrs[i]` is the value read back from LR i, for `i < used` of the last
    /// [`Vgic::fill`] (missing ones count as unchanged; extra ones are ignored). An LR
    /// that went invalid was deactivated by the guest (edge: done; level: the line is
    /// re-evaluated at the next fill); pending → active and pending + active are kept.
    pub fn sync(&mut self, vcpu: usize, lrs: &[u64]) {
        if vcpu >= self.nr_vcpus {
            return;
        }
        let n = self.vcpus[vcpu].nflight;
        self.vcpus[vcpu].nflight = 0;
        for i in 0..n {
            let f = self.vcpus[vcpu].flight[i];
            let raw = lrs.get(i).copied().unwrap_or(f.written);
            let st = Lr::decode(self.version, raw).state;
            self.fold(vcpu, f, st);
        }
    }

    fn fold(&mut self, vcpu: usize, f: Flight, st: LrState) {
        let intid = u32::from(f.intid);
        let sgi2 = self.is_sgi_v2(intid);
        let Some(irq) = self.irq_mut(vcpu, intid) else {
            return;
        };
        let mut deact = None;
        irq.in_lr = false;
        let (p, a) = (st.pending(), st.active());
        if sgi2 {
            if p {
                irq.src |= 1 << f.source;
            }
            if a {
                irq.act_src = f.source;
            }
        } else if irq.edge || irq.hw.is_some() {
            if p {
                irq.latch = true;
            }
        } else if !p {
            irq.latch = false;
        }
        irq.active = a;
        let req = core::mem::take(&mut irq.req);
        if req & REQ_SET_PEND != 0 {
            irq.latch = true;
        }
        if req & REQ_CLR_PEND != 0 {
            if irq.latch && irq.hw.is_some() {
                deact = irq.hw;
            }
            irq.latch = false;
        }
        if req & REQ_SET_ACT != 0 {
            irq.active = true;
        }
        if req & REQ_CLR_ACT != 0 {
            if irq.active && irq.hw.is_some() {
                deact = irq.hw;
            }
            irq.active = false;
        }
        if intid >= 32 && !irq.active {
            irq.owner = None;
        }
        if let Some(p) = deact {
            self.hw_deact.push(p);
        }
    }

    // ----- register helpers shared by v2 and v3 -----

    /// Reads a one-bit-per-interrupt register word covering `first..first + 32`.
    pub(crate) fn read_bits(&self, vcpu: usize, kind: BitReg, first: u32) -> u32 {
        let mut v = 0u32;
        for b in 0..32 {
            let intid = first + b;
            let Some(irq) = self.irq(vcpu, intid) else {
                break;
            };
            let bit = match kind {
                BitReg::Group => irq.group1,
                BitReg::SetEnable | BitReg::ClearEnable => irq.enabled,
                BitReg::SetPending | BitReg::ClearPending => {
                    irq.pending(self.is_sgi_v2(intid))
                        || (irq.in_lr && self.in_lr_pending(vcpu, intid))
                }
                BitReg::SetActive | BitReg::ClearActive => {
                    irq.active || (irq.in_lr && self.in_lr_active(vcpu, intid))
                }
            };
            v |= u32::from(bit) << b;
        }
        v
    }

    fn flight_state(&self, vcpu: usize, intid: u32) -> Option<LrState> {
        let owner = if intid < 32 {
            vcpu
        } else {
            usize::from(self.irq(vcpu, intid)?.owner?)
        };
        let v = self.vcpus.get(owner)?;
        v.flight[..v.nflight]
            .iter()
            .find(|f| u32::from(f.intid) == intid)
            .map(|f| LrState::from_bits(f.written >> self.state_shift()))
    }

    fn in_lr_pending(&self, vcpu: usize, intid: u32) -> bool {
        self.flight_state(vcpu, intid).is_some_and(|s| s.pending())
    }

    fn in_lr_active(&self, vcpu: usize, intid: u32) -> bool {
        self.flight_state(vcpu, intid).is_some_and(|s| s.active())
    }

    /// Writes a one-bit-per-interrupt register word covering `first..first + 32`.
    pub(crate) fn write_bits(&mut self, vcpu: usize, kind: BitReg, first: u32, value: u32) {
        for b in 0..32 {
            let intid = first + b;
            let set = value & (1 << b) != 0;
            if kind != BitReg::Group && !set {
                continue;
            }
            if self.irq(vcpu, intid).is_none() {
                break;
            }
            self.write_bit(vcpu, kind, intid, set);
        }
    }

    fn write_bit(&mut self, vcpu: usize, kind: BitReg, intid: u32, set: bool) {
        let sgi2 = self.is_sgi_v2(intid);
        let Some(irq) = self.irq_mut(vcpu, intid) else {
            return;
        };
        let mut deact = None;
        let kick;
        match kind {
            BitReg::Group => {
                kick = irq.group1 != set;
                irq.group1 = set;
            }
            BitReg::SetEnable | BitReg::ClearEnable if sgi2 => return, // RAO/WI
            BitReg::SetEnable => {
                kick = !irq.enabled;
                irq.enabled = true;
            }
            BitReg::ClearEnable => {
                kick = irq.enabled && irq.in_lr;
                irq.enabled = false;
            }
            BitReg::SetPending => {
                if sgi2 {
                    return; // GICv2: SGI pending bits are set through GICD_SPENDSGIR.
                }
                if irq.in_lr && !(irq.edge || irq.hw.is_some()) {
                    irq.req = (irq.req & !REQ_CLR_PEND) | REQ_SET_PEND;
                } else {
                    irq.latch = true;
                }
                kick = true;
            }
            BitReg::ClearPending => {
                if sgi2 {
                    return; // GICv2: cleared through GICD_CPENDSGIR.
                }
                if irq.in_lr {
                    irq.req = (irq.req & !REQ_SET_PEND) | REQ_CLR_PEND;
                    kick = true;
                } else {
                    if irq.latch && irq.hw.is_some() {
                        deact = irq.hw;
                    }
                    irq.latch = false;
                    kick = false;
                }
            }
            BitReg::SetActive => {
                if irq.in_lr {
                    irq.req = (irq.req & !REQ_CLR_ACT) | REQ_SET_ACT;
                } else {
                    irq.active = true;
                }
                kick = true;
            }
            BitReg::ClearActive => {
                if irq.in_lr {
                    irq.req = (irq.req & !REQ_SET_ACT) | REQ_CLR_ACT;
                    kick = true;
                } else {
                    if irq.active && irq.hw.is_some() {
                        deact = irq.hw;
                    }
                    irq.active = false;
                    if intid >= 32 {
                        irq.owner = None;
                    }
                    kick = false;
                }
            }
        }
        if let Some(p) = deact {
            self.hw_deact.push(p);
        }
        if kick {
            self.kick_for(vcpu, intid);
        }
    }

    /// GICD_IPRIORITYR byte for `intid` (0 if it does not exist).
    pub(crate) fn read_prio(&self, vcpu: usize, intid: u32) -> u8 {
        self.irq(vcpu, intid).map_or(0, |i| i.priority)
    }

    /// Writes a GICD_IPRIORITYR byte (low three bits not implemented).
    pub(crate) fn write_prio(&mut self, vcpu: usize, intid: u32, prio: u8) {
        if let Some(irq) = self.irq_mut(vcpu, intid) {
            irq.priority = prio & dist::PRIO_MASK;
        }
    }

    /// GICD_ICFGR word covering `first..first + 16` (bit 2k+1: edge).
    pub(crate) fn read_cfg(&self, vcpu: usize, first: u32) -> u32 {
        let mut v = 0;
        for k in 0..16 {
            match self.irq(vcpu, first + k) {
                Some(irq) => v |= u32::from(irq.edge) << (2 * k + 1),
                None => break,
            }
        }
        v
    }

    /// Writes a GICD_ICFGR word; SGI fields are read-only (edge).
    pub(crate) fn write_cfg(&mut self, vcpu: usize, first: u32, value: u32) {
        for k in 0..16 {
            let intid = first + k;
            if intid < 16 {
                continue;
            }
            match self.irq_mut(vcpu, intid) {
                Some(irq) => irq.edge = value & (1 << (2 * k + 1)) != 0,
                None => break,
            }
        }
    }

    /// Sets GICD_CTLR's group enables.
    pub(crate) fn set_group_enables(&mut self, grp0: bool, grp1: bool) {
        if (grp0 && !self.grp0_en) || (grp1 && !self.grp1_en) {
            self.kicks |= self.all_vcpus();
        }
        self.grp0_en = grp0;
        self.grp1_en = grp1;
    }

    /// GICD_CTLR's group enables.
    pub(crate) fn group_enables(&self) -> (bool, bool) {
        (self.grp0_en, self.grp1_en)
    }

    /// Mutable SPI state (for GICD_ITARGETSR / GICD_IROUTER writes).
    pub(crate) fn spi_mut(&mut self, intid: u32) -> Option<&mut Irq> {
        if intid < 32 {
            None
        } else {
            self.spis.get_mut(intid as usize - 32)
        }
    }

    /// Kicks whoever an SPI now routes to, if it is deliverable.
    pub(crate) fn kick_if_pending(&mut self, intid: u32) {
        if self
            .irq(0, intid)
            .is_some_and(|irq| self.deliverable(irq, intid))
        {
            self.kick_for(0, intid);
        }
    }

    /// GICD_SPENDSGIR / GICD_CPENDSGIR byte: sources of SGI `sgi` pending on `vcpu`.
    pub(crate) fn sgi_sources(&self, vcpu: usize, sgi: u32) -> u8 {
        self.vcpus
            .get(vcpu)
            .map_or(0, |v| v.private[sgi as usize & 15].src)
    }

    /// Sets (or clears) source bits of a GICv2 SGI pending on `vcpu`.
    pub(crate) fn set_sgi_sources(&mut self, vcpu: usize, sgi: u32, mask: u8, set: bool) {
        let valid = self.all_vcpus() as u8;
        if let Some(v) = self.vcpus.get_mut(vcpu) {
            let irq = &mut v.private[sgi as usize & 15];
            if set {
                irq.src |= mask & valid;
                if mask & valid != 0 {
                    self.kicks |= 1 << vcpu;
                }
            } else {
                irq.src &= !mask;
            }
        }
    }

    /// Distributor read by `vcpu` (banked registers use it): `offset` into the GICD
    /// frame, `size` 1, 2, 4 or 8. Anything invalid reads as zero, with a log line.
    pub fn dist_read(&self, vcpu: usize, offset: u64, size: u8) -> u64 {
        match self.version {
            GicVersion::V2 => self.v2_read(vcpu, offset, size),
            GicVersion::V3 => self.v3_dist_read(offset, size),
        }
    }

    /// Distributor write by `vcpu`; anything invalid is ignored, with a log line.
    pub fn dist_write(&mut self, vcpu: usize, offset: u64, size: u8, value: u64) {
        self.generation
            .fetch_add(1, core::sync::atomic::Ordering::Release);
        match self.version {
            GicVersion::V2 => self.v2_write(vcpu, offset, size, value),
            GicVersion::V3 => self.v3_dist_write(offset, size, value),
        }
    }

    /// Redistributor read (v3): `offset` into the whole GICR region (vCPU n's frames at
    /// `n * GICR_STRIDE`). RAZ for v2 or anything invalid.
    pub fn redist_read(&self, offset: u64, size: u8) -> u64 {
        match self.version {
            GicVersion::V2 => {
                crate::guest_warn!("vgic: redistributor read on a GICv2 vGIC");
                0
            }
            GicVersion::V3 => self.v3_redist_read(offset, size),
        }
    }

    /// Redistributor write (v3); ignored for v2 or anything invalid.
    pub fn redist_write(&mut self, offset: u64, size: u8, value: u64) {
        self.generation
            .fetch_add(1, core::sync::atomic::Ordering::Release);
        match self.version {
            GicVersion::V2 => crate::guest_warn!("vgic: redistributor write on a GICv2 vGIC"),
            GicVersion::V3 => self.v3_redist_write(offset, size, value),
        }
    }

    /// GICR_WAKER.ProcessorSleep of `vcpu`.
    pub(crate) fn sleep(&self, vcpu: usize) -> bool {
        self.vcpus.get(vcpu).is_some_and(|v| v.sleep)
    }

    pub(crate) fn set_sleep(&mut self, vcpu: usize, sleep: bool) {
        if let Some(v) = self.vcpus.get_mut(vcpu) {
            v.sleep = sleep;
        }
    }
}
