//! Virtual machines and vCPUs: the architecture-neutral model and trap handling.
//!
//! A [`Vm`] is shared by the physical CPUs its vCPUs are pinned to. Trap handling
//! ([`Vm::handle_sync`]) is pure: it sees the guest's registers, the decoded syndrome
//! and two small traits — [`GuestMemoryMap`] for the VM's stage-2 (or shadow) map and
//! [`VcpuHw`] for the EL1 system registers that exception injection touches — so the
//! whole dispatch runs in host tests with fakes.

use crate::aarch32::{self, Cp15Op, Cp15Reg, Exception32, FaultRegs, Mode, SpsrBank};
use crate::addr::{GuestPhysAddr, GuestRange, HostPhysAddr, VirtAddr};
use crate::counters::{ExitReason, VmCounters};
use crate::esr::{self, ExceptionClass, FaultStatus};
use crate::inject::{self, AbortKind, GuestState, Injection};
use crate::mmio::{MmioAccess, MmioRouter};
use crate::pgtable::{Mapping, PageTableError, Prot};
use crate::psci::{self, Call};
use crate::shadow::{GuestMemory, HostTlbOp, MemError};
use crate::shadowvm::{self, Effects, HwRegs, ShadowVm};
use crate::vgic::SharedVgic;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use log::debug;
use spin::Mutex;

/// A vCPU's general registers, PC and PSTATE, in the layout the world switch uses.
#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestRegs {
    /// x0..x30 (r0..r14 for an AArch32 guest).
    pub x: [u64; 31],
    /// The guest's PC (ELR_EL2 at the trap).
    pub pc: u64,
    /// The guest's PSTATE (SPSR_EL2 at the trap).
    pub pstate: u64,
}

impl GuestRegs {
    /// All registers zero.
    pub const fn zeroed() -> Self {
        Self {
            x: [0; 31],
            pc: 0,
            pstate: 0,
        }
    }

    /// Reads register `n` as an instruction operand: 31 is the zero register.
    pub fn get(&self, n: u8) -> u64 {
        self.x.get(n as usize).copied().unwrap_or(0)
    }

    /// Writes register `n`; writes to 31 (the zero register) are discarded.
    pub fn set(&mut self, n: u8, v: u64) {
        if let Some(r) = self.x.get_mut(n as usize) {
            *r = v;
        }
    }
}

/// PSTATE for an AArch64 vCPU coming out of reset or CPU_ON: EL1h, DAIF masked.
pub const PSTATE_EL1H_MASKED: u64 = 0x3c5;
/// PSTATE (CPSR) for an AArch32 vCPU coming out of reset or CPU_ON: SVC mode, ARM
/// state, A, I and F masked.
pub const PSTATE_SVC_MASKED: u64 = 0x1d3;
/// PSTATE.SS: software step (SPSR_EL2 bit 21).
const PSTATE_SS: u64 = 1 << 21;

/// Byte access to guest RAM for the hypervisor (emulating stores, walking guest tables).
pub trait GuestRamIo: Send + Sync {
    /// Reads `buf.len()` bytes at `gpa`; false (and nothing read) if any byte is outside
    /// guest RAM.
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> bool;
    /// Writes `buf` at `gpa`; false (and nothing written) if any byte is outside guest RAM.
    fn write(&self, gpa: GuestPhysAddr, buf: &[u8]) -> bool;
}

/// Guest RAM as the shadow engine's and the walker's [`GuestMemory`].
struct RamView<'a>(&'a dyn GuestRamIo);

impl GuestMemory for RamView<'_> {
    fn read_u32(&self, gpa: GuestPhysAddr) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        if self.0.read(gpa, &mut b) {
            Ok(u32::from_le_bytes(b))
        } else {
            Err(MemError)
        }
    }
}

/// The VM's guest-physical → host-physical map (stage-2 tables, or the shadow
/// engine's map). Addresses and sizes are 4 KiB multiples.
pub trait GuestMemoryMap: Send {
    /// Maps `[ipa, ipa + size)` to `[hpa, hpa + size)`; errors if anything is mapped.
    fn map(
        &mut self,
        ipa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: u64,
        prot: Prot,
    ) -> Result<(), PageTableError>;
    /// Unmaps whatever is mapped in the range (holes are fine).
    fn unmap(&mut self, ipa: GuestPhysAddr, size: u64) -> Result<(), PageTableError>;
    /// Changes the permissions of every mapped page in the range.
    fn protect(&mut self, ipa: GuestPhysAddr, size: u64, prot: Prot) -> Result<(), PageTableError>;
    /// The mapping of one address, if any.
    fn query(&self, ipa: GuestPhysAddr) -> Option<Mapping>;
}

impl<M, T> GuestMemoryMap for crate::pgtable::Stage2PageTable<M, T>
where
    M: crate::pgtable::PageTableMm + Send,
    T: crate::pgtable::TlbMaintenance + Send,
{
    fn map(
        &mut self,
        ipa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: u64,
        prot: Prot,
    ) -> Result<(), PageTableError> {
        crate::pgtable::Stage2PageTable::map(self, ipa, hpa, size, prot)
    }
    fn unmap(&mut self, ipa: GuestPhysAddr, size: u64) -> Result<(), PageTableError> {
        crate::pgtable::Stage2PageTable::unmap(self, ipa, size)
    }
    fn protect(&mut self, ipa: GuestPhysAddr, size: u64, prot: Prot) -> Result<(), PageTableError> {
        crate::pgtable::Stage2PageTable::protect(self, ipa, size, prot)
    }
    fn query(&self, ipa: GuestPhysAddr) -> Option<Mapping> {
        crate::pgtable::Stage2PageTable::query(self, ipa)
    }
}

/// The EL1 system registers that trap handling reads and writes. On the target they
/// are the live registers of the CPU the vCPU is pinned to.
pub trait VcpuHw {
    /// VBAR_EL1.
    fn vbar_el1(&self) -> u64;
    /// SCTLR_EL1.
    fn sctlr_el1(&self) -> u64;
    /// Writes ESR_EL1, FAR_EL1 (if given), ELR_EL1 and SPSR_EL1 for an injected exception.
    fn set_exception_regs(&mut self, esr: u64, far: Option<u64>, elr: u64, spsr: u64);
    /// AArch32: the live value of a CP15 register (the fault registers, and the
    /// translation registers of a stage-2-mode guest).
    fn read_cp15(&self, reg: Cp15Reg) -> u64 {
        let _ = reg;
        0
    }
    /// AArch32: writes a CP15 register the guest owns (fault status and address registers).
    fn write_cp15(&mut self, reg: Cp15Reg, value: u64) {
        let _ = (reg, value);
    }
    /// AArch32: writes the SPSR of an exception mode (abt, und) for an injected exception.
    fn set_spsr32(&mut self, bank: SpsrBank, value: u32) {
        let _ = (bank, value);
    }
    /// Shadow mode: programs the real EL1 translation registers.
    fn program_shadow(&mut self, regs: &HwRegs) {
        let _ = regs;
    }
    /// Shadow mode: TLB maintenance of this VM's EL1&0 regime, completed before return.
    fn tlb(&mut self, op: HostTlbOp) {
        let _ = op;
    }
    /// Shadow mode: arms (or disarms) single-stepping of the guest's next instruction.
    fn set_single_step(&mut self, on: bool) {
        let _ = on;
    }
    /// Arms an EL1 instruction breakpoint at `va` routed to EL2 (or disarms it: `None`).
    fn set_breakpoint(&mut self, va: Option<u32>) {
        let _ = va;
    }
    /// AArch32: reads the SPSR of an exception mode.
    fn read_spsr32(&self, bank: SpsrBank) -> u32 {
        let _ = bank;
        0
    }
    /// The index of the vCPU whose registers these are (for per-vCPU state).
    fn vcpu_index(&self) -> usize {
        0
    }
    /// AArch32: true if an injected exception can be entered directly (the banked
    /// registers and the new CPSR take effect on the return to the guest, as on the
    /// ARMv7 host); false to go through a [`Landing`] (the AArch64 host under QEMU).
    fn inject_directly(&self) -> bool {
        false
    }
    /// True if [`set_single_step`](Self::set_single_step) works (ARMv7 has no software
    /// step; a write it would need stops the VM instead).
    fn can_single_step(&self) -> bool {
        true
    }
}

/// Power state of one vCPU (PSCI's view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Power {
    /// Off: its physical CPU waits.
    Off = 0,
    /// CPU_ON (or VM boot) asked for it; its physical CPU has not started it yet.
    OnPending = 1,
    /// Running.
    On = 2,
}

/// Per-vCPU state shared between physical CPUs.
#[derive(Default)]
pub struct VcpuSlot {
    power: AtomicU8,
    entry: AtomicU64,
    context: AtomicU64,
    /// Its physical CPU is inside the run loop (possibly in the guest).
    running: core::sync::atomic::AtomicBool,
    /// The pending start is the VM's boot (not a PSCI CPU_ON).
    boot: core::sync::atomic::AtomicBool,
    /// An AArch32 exception injection waiting for its landing (see [`Landing`]).
    landing: Mutex<Option<Landing>>,
}

/// An AArch32 exception being injected through a real exception entry.
///
/// Entering an AArch32 exception mode directly with ERET from EL2 (writing SPSR_abt or
/// SPSR_und first) is what the architecture allows, but QEMU's TCG keeps the live
/// AArch32 SPSR across AArch64 EL2 and does not reload it on such an ERET, so the guest's
/// handler would see the wrong SPSR and its exception return would be illegal. So the
/// hypervisor lets the hardware perform the entry: it runs the guest's instruction
/// again with every stage-1 translation disabled (SCTLR.M = 1, TTBCR.PD0 = PD1 = 1) and
/// virtual interrupts held back; the fetch takes a Prefetch Abort into Abort mode, which
/// saves the CPSR in SPSR_abt like any exception. A breakpoint on the Prefetch Abort
/// vector brings the vCPU back to EL2 before the vector runs. There the real registers,
/// LR_abt, IFSR and IFAR are restored and the vCPU is pointed at the intended vector with
/// the intended fault registers.
///
/// QEMU checks breakpoints before it fetches, so the breakpoint fires although the
/// vector's own fetch would fault. The ARM ARM checks instruction breakpoints only after
/// a successful translation; there software step would be needed instead (taken before
/// the handler's first fetch), but QEMU then no longer reports the breakpoint, so only
/// the breakpoint is armed. Real hardware, where the plain SPSR_abt write would work,
/// is untested.
#[derive(Clone, Copy, Debug)]
struct Landing {
    inj: aarch32::Injection32,
    exc: Exception32,
    /// Where the Prefetch Abort of the landing enters.
    vector: u64,
    sctlr: u64,
    ttbcr: u64,
    spsr_abt: u32,
    /// The PC the landing's fetch faults at, and LR_abt, IFSR, IFAR before it.
    pc: u64,
    lr_abt: u64,
    ifsr: u64,
    ifar: u64,
}

impl VcpuSlot {
    /// Records whether the vCPU's physical CPU is inside its run loop.
    pub fn set_running(&self, on: bool) {
        self.running.store(on, Ordering::Release);
    }
    /// True while the vCPU's physical CPU is inside its run loop.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
    /// The current power state.
    pub fn power(&self) -> Power {
        match self.power.load(Ordering::Acquire) {
            1 => Power::OnPending,
            2 => Power::On,
            _ => Power::Off,
        }
    }
    /// If the vCPU is pending, marks it on and returns (entry, x0).
    pub fn take_start(&self) -> Option<(u64, u64)> {
        self.power
            .compare_exchange(
                Power::OnPending as u8,
                Power::On as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .ok()
            .map(|_| {
                (
                    self.entry.load(Ordering::Relaxed),
                    self.context.load(Ordering::Relaxed),
                )
            })
    }
    /// True if the start taken last by [`VcpuSlot::take_start`] is the VM's boot (from
    /// [`Vm::start`]) rather than a PSCI CPU_ON.
    pub fn is_boot(&self) -> bool {
        self.boot.load(Ordering::Acquire)
    }
    /// Asks for the vCPU to start at `entry` with x0 = `x0` if it is off.
    /// Returns the PSCI result.
    pub fn request_on(&self, entry: u64, x0: u64) -> i64 {
        self.request(entry, x0, false)
    }
    fn request(&self, entry: u64, x0: u64, boot: bool) -> i64 {
        match self.power() {
            Power::On => return psci::ALREADY_ON,
            Power::OnPending => return psci::ON_PENDING,
            Power::Off => {}
        }
        self.entry.store(entry, Ordering::Relaxed);
        self.context.store(x0, Ordering::Relaxed);
        self.boot.store(boot, Ordering::Relaxed);
        match self.power.compare_exchange(
            Power::Off as u8,
            Power::OnPending as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => psci::SUCCESS,
            Err(_) => psci::ALREADY_ON,
        }
    }
    /// Marks the vCPU off.
    pub fn set_off(&self) {
        self.power.store(Power::Off as u8, Ordering::Release);
    }
}

/// Run state of a whole VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RunState {
    /// vCPUs run.
    Running = 0,
    /// The guest called SYSTEM_OFF or was stopped: every vCPU parks.
    Off = 1,
}

/// What the physical CPU's run loop does after a trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Return to the guest.
    Resume,
    /// This vCPU turned itself off (PSCI CPU_OFF).
    CpuOff,
    /// The guest asked to power off the VM (PSCI SYSTEM_OFF).
    VmOff,
    /// The guest asked to reset the VM (PSCI SYSTEM_RESET).
    VmReset,
    /// The guest did something the hypervisor cannot emulate or inject; the VM stops.
    Stop,
    /// WFI with no interrupt deliverable: the physical CPU waits for one, then resumes
    /// the guest (the PC is already past the WFI).
    WaitForInterrupt,
}

/// Where the boot vCPU starts: PC and x0 (the DTB for a Linux image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// Entry PC.
    pub entry: u64,
    /// x0 at entry.
    pub x0: u64,
}

/// One virtual machine.
pub struct Vm {
    /// Index of the VM (0-based).
    pub id: usize,
    /// Name, used as console prefix.
    pub name: String,
    /// Guest RAM as the guest sees it.
    pub ram: GuestRange,
    /// Host memory backing the RAM (contiguous).
    pub ram_hpa: HostPhysAddr,
    /// Stage-2 (or shadow) map.
    pub mem: Mutex<alloc::boxed::Box<dyn GuestMemoryMap>>,
    /// Emulated devices.
    pub mmio: Mutex<MmioRouter>,
    /// vCPU power states.
    pub vcpus: Vec<VcpuSlot>,
    /// Counters.
    pub counters: VmCounters,
    /// How many times the VM was reset.
    pub reset_count: AtomicU32,
    /// Physical CPU of vCPU 0 (vCPU n is on `first_cpu + n`).
    pub first_cpu: usize,
    /// Where vCPU 0 starts after boot and reset.
    pub boot: BootInfo,
    /// The VM's interrupt controller, if it has one.
    pub vgic: Option<SharedVgic>,
    /// The guest runs in AArch32 state at EL1.
    pub aarch32: bool,
    /// Shadow-paging state (shadow mode only).
    pub shadow: Option<Mutex<ShadowVm>>,
    /// Access to guest RAM for the hypervisor.
    ram_io: Option<alloc::boxed::Box<dyn GuestRamIo>>,
    /// A table write being single-stepped: the page and its contents before the write.
    step: Mutex<Option<(GuestPhysAddr, Vec<u8>)>>,
    state: AtomicU8,
}

/// What a VM is made of, apart from its memory map and devices.
pub struct VmSpec {
    /// Index of the VM (0-based).
    pub id: usize,
    /// Name, used as console prefix.
    pub name: String,
    /// Guest RAM as the guest sees it.
    pub ram: GuestRange,
    /// Host memory backing the RAM (contiguous, same size).
    pub ram_hpa: HostPhysAddr,
    /// Number of vCPUs.
    pub ncpus: usize,
    /// Physical CPU of vCPU 0.
    pub first_cpu: usize,
    /// Where vCPU 0 starts.
    pub boot: BootInfo,
    /// The VM's interrupt controller, if it has one.
    pub vgic: Option<SharedVgic>,
    /// The guest runs in AArch32 state at EL1.
    pub aarch32: bool,
    /// Shadow-paging state: `Some` makes this a shadow-mode VM.
    pub shadow: Option<ShadowVm>,
    /// Access to guest RAM (required by shadow mode and by AArch32 walk-fault reporting).
    pub ram_io: Option<alloc::boxed::Box<dyn GuestRamIo>>,
}

/// Why a VM could not be created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmError {
    /// Mapping guest RAM failed.
    Map(PageTableError),
}

/// The trap information saved at a synchronous exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trap {
    /// ESR_EL2.
    pub esr: u64,
    /// FAR_EL2.
    pub far: u64,
    /// HPFAR_EL2.
    pub hpfar: u64,
}

impl Trap {
    /// The faulting IPA of a stage-2 abort: HPFAR_EL2.FIPA (bits [43:4] → IPA[51:12])
    /// plus the page offset from FAR_EL2.
    pub fn fault_ipa(&self) -> GuestPhysAddr {
        GuestPhysAddr::new(((self.hpfar & 0x0fff_ffff_fff0) << 8) | (self.far & 0xfff))
    }
}

impl Vm {
    /// Creates a VM from `spec`, mapping its RAM read/write/execute in `mem`.
    /// Errors if the RAM cannot be mapped (for instance, something is mapped there).
    pub fn new(
        spec: VmSpec,
        mut mem: alloc::boxed::Box<dyn GuestMemoryMap>,
        mmio: MmioRouter,
    ) -> Result<Self, VmError> {
        let VmSpec {
            id,
            name,
            ram,
            ram_hpa,
            ncpus,
            first_cpu,
            boot,
            vgic,
            aarch32,
            shadow,
            ram_io,
        } = spec;
        mem.map(ram.start, ram_hpa, ram.size, Prot::RWX)
            .map_err(VmError::Map)?;
        let mut vcpus = Vec::with_capacity(ncpus);
        vcpus.resize_with(ncpus, VcpuSlot::default);
        Ok(Self {
            id,
            name,
            ram,
            ram_hpa,
            mem: Mutex::new(mem),
            mmio: Mutex::new(mmio),
            vcpus,
            counters: VmCounters::default(),
            reset_count: AtomicU32::new(0),
            first_cpu,
            boot,
            vgic,
            aarch32,
            shadow: shadow.map(Mutex::new),
            ram_io,
            step: Mutex::new(None),
            state: AtomicU8::new(RunState::Running as u8),
        })
    }

    /// The VM's run state.
    pub fn run_state(&self) -> RunState {
        if self.state.load(Ordering::Acquire) == RunState::Off as u8 {
            RunState::Off
        } else {
            RunState::Running
        }
    }

    /// Stops the VM: every vCPU parks at its next exit.
    pub fn power_off(&self) {
        self.state.store(RunState::Off as u8, Ordering::Release);
        for v in &self.vcpus {
            v.set_off();
        }
    }

    /// Starts vCPU 0 at the boot entry.
    pub fn start(&self) {
        self.state.store(RunState::Running as u8, Ordering::Release);
        if let Some(v) = self.vcpus.first() {
            let _ = v.request(self.boot.entry, self.boot.x0, true);
        }
    }

    /// Resets the VM's memory map and devices (PSCI SYSTEM_RESET): every vCPU is
    /// turned off, guest RAM is mapped read/write/execute again as at creation (undoing
    /// HV_MEM_PROTECT / HV_MEM_UNMAP_LAZY), devices are reset and vCPU 0 is asked to
    /// start at the boot entry. Reloading the images is the caller's job.
    pub fn reset(&self) -> Result<(), PageTableError> {
        for v in &self.vcpus {
            v.set_off();
        }
        {
            let mut mem = self.mem.lock();
            mem.unmap(self.ram.start, self.ram.size)?;
            mem.map(self.ram.start, self.ram_hpa, self.ram.size, Prot::RWX)?;
        }
        self.reset_count.fetch_add(1, Ordering::Relaxed);
        self.mmio.lock().reset_devices();
        self.start();
        Ok(())
    }

    /// True while vCPU `vcpu` has an injection landing under way (its virtual interrupts
    /// must be held back until it lands).
    pub fn landing_armed(&self, vcpu: usize) -> bool {
        self.vcpus
            .get(vcpu)
            .is_some_and(|s| s.landing.lock().is_some())
    }

    /// Drops any injection landing or stepped table write of vCPU `vcpu` (it starts
    /// afresh: boot, CPU_ON, reset).
    pub fn clear_pending(&self, vcpu: usize) {
        if let Some(s) = self.vcpus.get(vcpu) {
            *s.landing.lock() = None;
        }
        if vcpu == 0 {
            *self.step.lock() = None;
        }
    }

    /// The MPIDR value vCPU `n` sees (Aff0 = n).
    pub fn vcpu_mpidr(n: usize) -> u64 {
        (n as u64 & 0xff) | ((n as u64 >> 8) & 0xff) << 8
    }

    fn vcpu_of_mpidr(&self, mpidr: u64) -> Option<usize> {
        if mpidr & !0xffff != 0 {
            return None;
        }
        let n = ((mpidr >> 8) & 0xff) * 256 + (mpidr & 0xff);
        (n < self.vcpus.len() as u64).then_some(n as usize)
    }

    /// Handles a synchronous exit of vCPU `vcpu`. Guest registers are updated in
    /// place (PC advanced, results written, or an exception injected).
    pub fn handle_sync(
        &self,
        vcpu: usize,
        regs: &mut GuestRegs,
        trap: &Trap,
        hw: &mut dyn VcpuHw,
    ) -> Action {
        let syn = esr::decode(trap.esr);
        match syn.class {
            ExceptionClass::Hvc64 { .. } | ExceptionClass::Hvc32 { .. } => {
                self.counters.exit(ExitReason::Hvc);
                // ELR already points after the HVC.
                self.hypercall(vcpu, regs)
            }
            ExceptionClass::Smc64 { .. } | ExceptionClass::Smc32 { .. } => {
                self.counters.exit(ExitReason::Smc);
                // A trapped SMC leaves ELR at the SMC itself.
                if self.aarch32 && !self.cond_passes(regs, &syn) {
                    self.skip(regs, &syn);
                    return Action::Resume;
                }
                self.skip(regs, &syn);
                self.hypercall(vcpu, regs)
            }
            ExceptionClass::WfiWfe(w) => {
                self.counters.exit(ExitReason::Wfx);
                let passed = !self.aarch32 || aarch32::trap_condition_passes(w.cond, regs.pstate);
                self.skip(regs, &syn);
                if !passed {
                    return Action::Resume;
                }
                // WFE (TI bit 0 set) just yields; WFI waits unless something is
                // deliverable already.
                let is_wfe = w.ti & 1 == 1;
                match &self.vgic {
                    Some(v) if !is_wfe && !v.lock().pending_for(vcpu) => Action::WaitForInterrupt,
                    _ => Action::Resume,
                }
            }
            ExceptionClass::DataAbortLower(iss) => {
                self.counters.exit(ExitReason::DataAbort);
                self.data_abort(regs, trap, &syn, &iss, hw)
            }
            ExceptionClass::InstrAbortLower(iss) => {
                self.counters.exit(ExitReason::InstrAbort);
                let ipa = trap.fault_ipa();
                if let FaultStatus::Translation { .. } = iss.fault() {
                    if self.resolve_ram_fault(ipa) {
                        return Action::Resume;
                    }
                }
                if self.aarch32 && iss.s1ptw {
                    crate::guest_warn!(
                        "{}: stage-1 table walk at {} is outside guest RAM (fetch at {:#x}): injecting the walk's abort",
                        self.name,
                        ipa,
                        trap.far
                    );
                    return self.inject_walk_abort32(
                        regs,
                        trap.far,
                        crate::shadow::AccessKind::Exec,
                        hw,
                    );
                }
                crate::guest_warn!(
                    "{}: instruction fetch from {} (pc {:#x}) is not guest RAM: injecting abort",
                    self.name,
                    ipa,
                    regs.pc
                );
                self.inject_abort(regs, AbortKind::Instruction, trap.far, true, hw)
            }
            ExceptionClass::SysReg(iss) => {
                self.counters.exit(ExitReason::SysReg);
                self.sysreg(vcpu, regs, &syn, &iss, hw)
            }
            ExceptionClass::Cp15Mcr(iss) => self.cp15(vcpu, regs, &syn, &iss, hw),
            ExceptionClass::Cp15Mcrr(iss) => self.cp15_64(vcpu, regs, &syn, &iss, hw),
            ExceptionClass::Cp14Mcr(iss) => {
                // Debug, trace and Jazelle registers (MDCR_EL2.TDA/TDOSA/TDRA): RAZ/WI,
                // as for an AArch64 guest: the guest sees no debug features.
                self.counters.exit(ExitReason::Cp15);
                if self.cond_passes(regs, &syn) {
                    aarch32::raz_wi(regs, &iss);
                }
                self.skip(regs, &syn);
                Action::Resume
            }
            ExceptionClass::Cp14Ldc(_) | ExceptionClass::Other { ec: 0x0c, .. } => {
                // LDC/STC and MRRC/MCRR to CP14 (debug): ignored; MRRC reads zero.
                self.counters.exit(ExitReason::Cp15);
                if syn.ec == 0x0c && self.cond_passes(regs, &syn) {
                    aarch32::raz_wi64(regs, &aarch32::cp14_rrt_iss(syn.iss));
                }
                self.skip(regs, &syn);
                Action::Resume
            }
            ExceptionClass::Other { ec: 0x32, .. } => {
                // Software step: the stepped table write was finished by `finish_step`.
                self.counters.exit(ExitReason::Step);
                Action::Resume
            }
            ExceptionClass::Other { ec: 0x30, .. } => {
                // Breakpoint: an injection's landing, finished by `finish_landing`.
                self.counters.exit(ExitReason::Other);
                Action::Resume
            }
            _ => {
                self.counters.exit(ExitReason::Other);
                crate::guest_warn!(
                    "{}: unhandled trap ESR_EL2={:#x} at pc {:#x}: injecting undefined instruction",
                    self.name,
                    trap.esr,
                    regs.pc
                );
                self.inject_undef(regs, syn.il, hw)
            }
        }
    }

    fn hypercall(&self, vcpu: usize, regs: &mut GuestRegs) -> Action {
        VmCounters::bump(&self.counters.hypercalls);
        if self.aarch32 && regs.x[0] & 0x4000_0000 != 0 {
            // SMCCC: an SMC64/HVC64 function ID from AArch32 is not supported.
            return self.ret(regs, psci::NOT_SUPPORTED);
        }
        let call = psci::decode(&[regs.x[0], regs.x[1], regs.x[2], regs.x[3]]);
        let ret: i64 = match call {
            Call::HvNop => 0,
            Call::Version => psci::VERSION_1_1,
            Call::SmcccVersion => 0x1_0001,
            // An AArch32 caller cannot use the SMC64 functions, so they are not features.
            Call::Features(f) if self.aarch32 && f & 0x4000_0000 != 0 => psci::NOT_SUPPORTED,
            Call::Features(f) => psci::features(f),
            Call::MigrateInfoType => 2, // Trusted OS not present or does not need migration
            Call::CpuOn {
                mpidr,
                entry,
                context,
            } => match self.vcpu_of_mpidr(mpidr) {
                None => psci::INVALID_PARAMETERS,
                Some(_) if !self.ram.contains(GuestPhysAddr::new(entry)) => psci::INVALID_ADDRESS,
                Some(t) => {
                    let r = self.vcpus[t].request_on(entry, context);
                    if r == psci::SUCCESS {
                        wake_cpu(self.first_cpu + t);
                    }
                    r
                }
            },
            Call::CpuOff => {
                self.vcpus[vcpu].set_off();
                return Action::CpuOff;
            }
            Call::AffinityInfo { mpidr, level } => {
                if level != 0 {
                    psci::INVALID_PARAMETERS
                } else {
                    match self.vcpu_of_mpidr(mpidr) {
                        None => psci::INVALID_PARAMETERS,
                        Some(t) => match self.vcpus[t].power() {
                            Power::On => psci::AFFINITY_ON,
                            Power::Off => psci::AFFINITY_OFF,
                            Power::OnPending => psci::AFFINITY_ON_PENDING,
                        },
                    }
                }
            }
            Call::SystemOff => return Action::VmOff,
            Call::SystemReset => return Action::VmReset,
            Call::HvMemProtect { ipa, size, perms } => self.hv_protect(ipa, size, perms),
            Call::HvMemUnmapLazy { ipa, size } => match self.ram_span(ipa, size) {
                Some((ipa, size)) => match self.mem.lock().unmap(ipa, size) {
                    Ok(()) => 0,
                    Err(e) => {
                        crate::guest_warn!(
                            "{}: HV_MEM_UNMAP_LAZY {ipa} +{size:#x}: {e}",
                            self.name
                        );
                        psci::INVALID_PARAMETERS
                    }
                },
                None => psci::INVALID_PARAMETERS,
            },
            Call::HvCounter(i) => {
                let c = &self.counters;
                (match i {
                    0 => c.total_exits(),
                    1 => c.hypercalls.load(Ordering::Relaxed),
                    2 => c.mmio.load(Ordering::Relaxed),
                    3 => c.s2_resolved.load(Ordering::Relaxed),
                    4 => c.aborts_injected.load(Ordering::Relaxed),
                    _ => return self.ret(regs, psci::INVALID_PARAMETERS),
                }) as i64
            }
            Call::Unknown(f) => {
                debug!("{}: unknown hypercall {f:#x}", self.name);
                psci::NOT_SUPPORTED
            }
        };
        self.ret(regs, ret)
    }

    fn ret(&self, regs: &mut GuestRegs, v: i64) -> Action {
        regs.x[0] = v as u64;
        Action::Resume
    }

    /// Validates a guest-supplied RAM span (4 KiB aligned, non-empty, inside RAM).
    fn ram_span(&self, ipa: u64, size: u64) -> Option<(GuestPhysAddr, u64)> {
        let a = GuestPhysAddr::new(ipa);
        (size != 0
            && a.is_aligned(4096)
            && size.is_multiple_of(4096)
            && self.ram.contains_span(a, size))
        .then_some((a, size))
    }

    fn hv_protect(&self, ipa: u64, size: u64, perms: u64) -> i64 {
        let Some((a, size)) = self.ram_span(ipa, size) else {
            return psci::INVALID_PARAMETERS;
        };
        let Some(prot) = Prot::from_bits(perms as u8).filter(|p| perms <= 7 && p.has_access())
        else {
            return psci::INVALID_PARAMETERS;
        };
        let mut mem = self.mem.lock();
        // Pages dropped by HV_MEM_UNMAP_LAZY come back first, so the whole span gets `prot`.
        let mut p = a.raw();
        while p < a.raw() + size {
            let page = GuestPhysAddr::new(p);
            if mem.query(page).is_none() {
                let hpa = self.ram_hpa + (p - self.ram.start.raw());
                if let Err(e) = mem.map(page, hpa, 4096, Prot::RWX) {
                    crate::guest_warn!("{}: HV_MEM_PROTECT remap {page}: {e}", self.name);
                    return psci::INVALID_PARAMETERS;
                }
            }
            p += 4096;
        }
        match mem.protect(a, size, prot) {
            Ok(()) => 0,
            Err(e) => {
                crate::guest_warn!("{}: HV_MEM_PROTECT {a} +{size:#x}: {e}", self.name);
                psci::INVALID_PARAMETERS
            }
        }
    }

    /// Maps a RAM page that has no stage-2 entry (dropped lazily). True if resolved.
    fn resolve_ram_fault(&self, ipa: GuestPhysAddr) -> bool {
        if !self.ram.contains(ipa) {
            return false;
        }
        let page = ipa.align_down(4096);
        let hpa = self.ram_hpa + (page - self.ram.start);
        let mut mem = self.mem.lock();
        if mem.query(page).is_some() {
            // Another vCPU mapped it meanwhile.
            return true;
        }
        match mem.map(page, hpa, 4096, Prot::RWX) {
            Ok(()) => {
                VmCounters::bump(&self.counters.s2_resolved);
                true
            }
            Err(e) => {
                crate::guest_warn!("{}: cannot map RAM page {page}: {e}", self.name);
                false
            }
        }
    }

    fn data_abort(
        &self,
        regs: &mut GuestRegs,
        trap: &Trap,
        syn: &esr::Syndrome,
        iss: &esr::DataAbortIss,
        hw: &mut dyn VcpuHw,
    ) -> Action {
        let ipa = trap.fault_ipa();
        if iss.s1ptw {
            // The guest's own page-table walk touched an IPA it does not own.
            if let FaultStatus::Translation { .. } = iss.fault() {
                if self.resolve_ram_fault(ipa) {
                    return Action::Resume;
                }
            }
            if self.aarch32 {
                crate::guest_warn!(
                    "{}: the stage-1 walk for va {:#x} read {}, which is not guest RAM (in shadow mode: the walk trap standing for a guest table outside RAM): injecting the walk's abort",
                    self.name,
                    trap.far,
                    ipa
                );
                let access = if iss.wnr {
                    crate::shadow::AccessKind::Write
                } else {
                    crate::shadow::AccessKind::Read
                };
                return self.inject_walk_abort32(regs, trap.far, access, hw);
            }
            crate::guest_warn!(
                "{}: stage-1 table walk at {} is outside guest RAM: injecting abort",
                self.name,
                ipa
            );
            return self.inject_abort_rw(regs, AbortKind::Data, trap.far, syn.il, iss.wnr, hw);
        }
        if iss.wnr {
            if let FaultStatus::Permission { .. } = iss.fault() {
                if let Some(a) = self.write_protected(regs, ipa, trap.far, syn, iss, hw) {
                    return a;
                }
            }
        }
        let mut mmio = self.mmio.lock();
        if mmio.is_emulated(ipa) {
            let access = match MmioAccess::from_iss(iss) {
                Ok(a) => a,
                Err(_) => {
                    drop(mmio);
                    crate::guest_warn!(
                        "{}: MMIO access at {} without a valid syndrome (e.g. LDP/STP), pc {:#x}: injecting abort",
                        self.name, ipa, regs.pc
                    );
                    return self.inject_abort_rw(
                        regs,
                        AbortKind::Data,
                        trap.far,
                        syn.il,
                        iss.wnr,
                        hw,
                    );
                }
            };
            VmCounters::bump(&self.counters.mmio);
            let value = if self.aarch32 {
                aarch32::read_rt(regs, access.reg) as u64
            } else {
                regs.get(access.reg)
            };
            match mmio.dispatch(ipa, &access, value) {
                Ok(out) => {
                    if let Some((r, v)) = out.writeback {
                        if self.aarch32 {
                            // AArch32 values are 32 bits wide; SRT is resolved in the
                            // current mode (see `aarch32::iss_reg_index`).
                            aarch32::write_rt(regs, r, v as u32);
                        } else {
                            regs.set(r, v);
                        }
                    }
                    self.skip(regs, syn);
                    return Action::Resume;
                }
                Err(e) => {
                    drop(mmio);
                    crate::guest_warn!(
                        "{}: MMIO {} at {}: {e:?}: injecting abort",
                        self.name,
                        if access.write { "write" } else { "read" },
                        ipa
                    );
                    return self.inject_abort_rw(
                        regs,
                        AbortKind::Data,
                        trap.far,
                        syn.il,
                        iss.wnr,
                        hw,
                    );
                }
            }
        }
        drop(mmio);
        if let FaultStatus::Translation { .. } = iss.fault() {
            if self.resolve_ram_fault(ipa) {
                return Action::Resume;
            }
        }
        if self.ram.contains(ipa) {
            debug!(
                "{}: {:?} at {} (pc {:#x}): injecting abort",
                self.name,
                iss.fault(),
                ipa,
                regs.pc
            );
        } else {
            crate::guest_warn!(
                "{}: {} of unmapped IPA {} (va {:#x}, pc {:#x}): injecting abort",
                self.name,
                if iss.wnr { "write" } else { "read" },
                ipa,
                trap.far,
                regs.pc
            );
        }
        self.inject_abort_rw(regs, AbortKind::Data, trap.far, syn.il, iss.wnr, hw)
    }

    fn sysreg(
        &self,
        vcpu: usize,
        regs: &mut GuestRegs,
        syn: &esr::Syndrome,
        iss: &esr::SysRegIss,
        hw: &mut dyn VcpuHw,
    ) -> Action {
        // ICC_SGI1R_EL1 (op0=3 op1=0 CRn=12 CRm=11 op2=5) traps with HCR_EL2.IMO set:
        // a GICv3 guest sending an SGI. Its targets are kicked by the run loop.
        if iss.key() == esr::sysreg(3, 0, 12, 11, 5) && !iss.read {
            if let Some(v) = &self.vgic {
                v.lock().sgi_v3(vcpu, regs.get(iss.rt));
                self.skip(regs, syn);
                return Action::Resume;
            }
        }
        // Debug (op0 = 2) and PMU (op0 = 3, CRn = 9) registers are trapped through
        // MDCR_EL2 and emulated as RAZ/WI: the guest sees no debug or PMU features.
        let raz_wi = iss.op0 == 2 || (iss.op0 == 3 && iss.crn == 9);
        if raz_wi {
            if iss.read {
                regs.set(iss.rt, 0);
            }
            self.skip(regs, syn);
            return Action::Resume;
        }
        crate::guest_warn!(
            "{}: trapped {} of sysreg op0={} op1={} CRn={} CRm={} op2={} at pc {:#x}: injecting undefined instruction",
            self.name,
            if iss.read { "read" } else { "write" },
            iss.op0,
            iss.op1,
            iss.crn,
            iss.crm,
            iss.op2,
            regs.pc
        );
        self.inject_undef(regs, syn.il, hw)
    }

    fn guest_state(&self, regs: &GuestRegs, hw: &dyn VcpuHw) -> GuestState {
        GuestState {
            pstate: regs.pstate,
            pc: regs.pc,
            vbar_el1: hw.vbar_el1(),
            sctlr_el1: hw.sctlr_el1(),
        }
    }

    fn apply(&self, regs: &mut GuestRegs, inj: Injection, hw: &mut dyn VcpuHw) {
        hw.set_exception_regs(
            inj.esr_el1,
            inj.far_el1.map(|v| v.raw()),
            inj.elr_el1,
            inj.spsr_el1,
        );
        regs.pc = inj.pc;
        regs.pstate = inj.pstate;
    }

    /// Injects a synchronous external abort at `far` into the vCPU.
    pub fn inject_abort(
        &self,
        regs: &mut GuestRegs,
        kind: AbortKind,
        far: u64,
        il: bool,
        hw: &mut dyn VcpuHw,
    ) -> Action {
        self.inject_abort_rw(regs, kind, far, il, false, hw)
    }

    /// [`Vm::inject_abort`] for a data access that was a write (`write`: WnR).
    fn inject_abort_rw(
        &self,
        regs: &mut GuestRegs,
        kind: AbortKind,
        far: u64,
        il: bool,
        write: bool,
        hw: &mut dyn VcpuHw,
    ) -> Action {
        if self.aarch32 {
            let long = self.guest_ttbcr(hw) & (1 << 31) != 0;
            let fsr = aarch32::external_abort_fsr(write && kind == AbortKind::Data, long);
            let exc = match kind {
                AbortKind::Data => Exception32::DataAbort {
                    dfsr: fsr,
                    dfar: far as u32,
                },
                AbortKind::Instruction => Exception32::PrefetchAbort {
                    ifsr: fsr,
                    ifar: far as u32,
                },
            };
            return self.inject32(regs, exc, hw);
        }
        let st = self.guest_state(regs, hw);
        match inject::external_abort(&st, kind, VirtAddr::new(far), il) {
            // The abort happened at the very vector it would be delivered to: the
            // guest can never make progress (e.g. VBAR_EL1 not set up yet).
            Ok(inj) if inj.pc == regs.pc => {
                crate::guest_warn!(
                    "{}: abort at pc {:#x}, which is its own exception vector (VBAR_EL1 {:#x}): the guest cannot recover; stopping the VM",
                    self.name,
                    regs.pc,
                    st.vbar_el1
                );
                Action::Stop
            }
            Ok(inj) => {
                VmCounters::bump(&self.counters.aborts_injected);
                self.apply(regs, inj, hw);
                Action::Resume
            }
            Err(e) => {
                crate::guest_warn!("{}: {e}: stopping the VM", self.name);
                Action::Stop
            }
        }
    }

    fn inject_undef(&self, regs: &mut GuestRegs, il: bool, hw: &mut dyn VcpuHw) -> Action {
        if self.aarch32 {
            return self.inject32(regs, Exception32::Undef, hw);
        }
        let st = self.guest_state(regs, hw);
        match inject::undefined_instruction(&st, il) {
            Ok(inj) => {
                VmCounters::bump(&self.counters.undef_injected);
                self.apply(regs, inj, hw);
                Action::Resume
            }
            Err(e) => {
                crate::guest_warn!("{}: {e}: stopping the VM", self.name);
                Action::Stop
            }
        }
    }
}

impl Vm {
    // ---------------------------------------------------------------------------------
    // AArch32 guests.

    /// Skips the trapped instruction (AArch32: and advances the IT state).
    fn skip(&self, regs: &mut GuestRegs, syn: &esr::Syndrome) {
        if self.aarch32 {
            aarch32::skip_instruction(regs, syn.instr_len());
        } else {
            regs.pc = regs.pc.wrapping_add(syn.instr_len());
        }
    }

    /// Whether a trapped AArch32 instruction's condition passed (ISS CV/COND, or ITSTATE).
    fn cond_passes(&self, regs: &GuestRegs, syn: &esr::Syndrome) -> bool {
        let cond = esr::Condition {
            valid: syn.iss & (1 << 24) != 0,
            cond: ((syn.iss >> 20) & 0xf) as u8,
        };
        aarch32::trap_condition_passes(cond, regs.pstate)
    }

    fn mode(&self, regs: &GuestRegs) -> Mode {
        aarch32::current_mode(regs).unwrap_or(Mode::Svc)
    }

    /// The guest's TTBCR (virtual in shadow mode, live otherwise).
    fn guest_ttbcr(&self, hw: &dyn VcpuHw) -> u32 {
        match &self.shadow {
            Some(sh) => sh.lock().regs.ttbcr,
            None => hw.read_cp15(Cp15Reg::Ttbcr) as u32,
        }
    }

    /// The guest's stage-1 regime (virtual in shadow mode, live otherwise).
    fn guest_regime(&self, hw: &dyn VcpuHw) -> crate::shadow::Regime {
        match &self.shadow {
            Some(sh) => sh.lock().regs.regime(),
            None => crate::shadow::Regime {
                ttbr0: hw.read_cp15(Cp15Reg::Ttbr0) as u32,
                ttbr1: hw.read_cp15(Cp15Reg::Ttbr1) as u32,
                ttbcr: hw.read_cp15(Cp15Reg::Ttbcr) as u32,
                dacr: hw.read_cp15(Cp15Reg::Dacr) as u32,
                sctlr: hw.read_cp15(Cp15Reg::Sctlr) as u32,
                contextidr: hw.read_cp15(Cp15Reg::Contextidr) as u32,
                prrr: hw.read_cp15(Cp15Reg::Prrr) as u32,
                nmrr: hw.read_cp15(Cp15Reg::Nmrr) as u32,
            },
        }
    }

    fn inject32(&self, regs: &mut GuestRegs, exc: Exception32, hw: &mut dyn VcpuHw) -> Action {
        let sctlr = match &self.shadow {
            Some(sh) => sh.lock().regs.sctlr,
            None => hw.sctlr_el1() as u32,
        };
        let inj = aarch32::inject(exc, regs, sctlr, hw.vbar_el1() as u32);
        if inj.pc == regs.pc && (inj.cpsr & 0x1f) == (regs.pstate & 0x1f) {
            crate::guest_warn!(
                "{}: exception at pc {:#x}, which is its own exception vector: the guest cannot recover; stopping the VM",
                self.name,
                regs.pc
            );
            return Action::Stop;
        }
        match exc {
            Exception32::Undef => VmCounters::bump(&self.counters.undef_injected),
            _ => VmCounters::bump(&self.counters.aborts_injected),
        }
        if let Some(slot) = self
            .vcpus
            .get(hw.vcpu_index())
            .filter(|_| !hw.inject_directly())
        {
            let live_sctlr = hw.read_cp15(Cp15Reg::Sctlr);
            let landing = Landing {
                inj,
                exc,
                vector: (aarch32::vector_base(live_sctlr as u32, hw.vbar_el1() as u32)
                    + aarch32::vector::PREFETCH_ABORT) as u64,
                sctlr: live_sctlr,
                ttbcr: hw.read_cp15(Cp15Reg::Ttbcr),
                spsr_abt: hw.read_spsr32(SpsrBank::Abt),
                pc: regs.pc,
                lr_abt: regs.x[20],
                ifsr: hw.read_cp15(Cp15Reg::Ifsr),
                ifar: hw.read_cp15(Cp15Reg::Ifar),
            };
            // Every stage-1 translation faults: the next fetch takes a Prefetch Abort, and
            // a breakpoint on its vector brings the vCPU back before the handler runs.
            hw.write_cp15(Cp15Reg::Ttbcr, (1 << 4) | (1 << 5));
            hw.write_cp15(Cp15Reg::Sctlr, live_sctlr | 1);
            hw.tlb(HostTlbOp::All);
            hw.set_breakpoint(Some(landing.vector as u32));
            *slot.landing.lock() = Some(landing);
            return Action::Resume;
        }
        self.finish_injection(regs, &inj, exc, hw);
        Action::Resume
    }

    /// Completes an injection: the fault registers, the target mode's SPSR, PC, CPSR, LR.
    fn finish_injection(
        &self,
        regs: &mut GuestRegs,
        inj: &aarch32::Injection32,
        exc: Exception32,
        hw: &mut dyn VcpuHw,
    ) {
        match inj.fault {
            Some(FaultRegs::Data { dfsr, dfar }) => {
                hw.write_cp15(Cp15Reg::Dfsr, dfsr as u64);
                hw.write_cp15(Cp15Reg::Dfar, dfar as u64);
            }
            Some(FaultRegs::Prefetch { ifsr, ifar }) => {
                hw.write_cp15(Cp15Reg::Ifsr, ifsr as u64);
                hw.write_cp15(Cp15Reg::Ifar, ifar as u64);
            }
            None => {}
        }
        hw.set_spsr32(inj.spsr_bank, inj.spsr);
        let from = regs.pc;
        inj.apply(regs);
        debug!(
            "{}: injected {exc:x?} at pc {from:#x}: vector {:#x} cpsr {:#x}",
            self.name, inj.pc, inj.cpsr
        );
    }

    /// Finishes an injection's landing (see [`Landing`]) if vCPU `vcpu` has one under way
    /// and has just taken the landing's Prefetch Abort (`debug`: the exit was a debug
    /// exception, the landing's breakpoint). Called after every exit of an AArch32 vCPU.
    pub fn finish_landing(
        &self,
        vcpu: usize,
        regs: &mut GuestRegs,
        debug: bool,
        hw: &mut dyn VcpuHw,
    ) {
        let Some(slot) = self.vcpus.get(vcpu) else {
            return;
        };
        let mut g = slot.landing.lock();
        let Some(l) = *g else {
            return;
        };
        // The Prefetch Abort of the landing itself: at the vector, in Abort mode, with LR_abt
        // = the re-fetched PC + 4 (not some other exception's fetch of its own vector).
        let landed = regs.pc == l.vector
            && regs.pstate & 0x1f == 0x17
            && regs.x[20] == (l.pc.wrapping_add(4) & 0xffff_ffff);
        if !debug && !landed {
            // An interrupt came first: the landing is still armed.
            return;
        }
        *g = None;
        drop(g);
        hw.set_breakpoint(None);
        hw.write_cp15(Cp15Reg::Ttbcr, l.ttbcr);
        hw.write_cp15(Cp15Reg::Sctlr, l.sctlr);
        hw.tlb(HostTlbOp::All);
        if !landed {
            crate::guest_warn!(
                "{}: injection landing ended at pc {:#x} cpsr {:#x}, not at the abort vector {:#x}; entering {:?} directly",
                self.name,
                regs.pc,
                regs.pstate,
                l.vector,
                l.exc
            );
        }
        if landed {
            // The landing's own Prefetch Abort wrote LR_abt, IFSR and IFAR (and, on
            // hardware, SPSR_abt): give back what the injection does not set.
            regs.x[20] = l.lr_abt;
            if !matches!(l.exc, Exception32::PrefetchAbort { .. }) {
                hw.write_cp15(Cp15Reg::Ifsr, l.ifsr);
                hw.write_cp15(Cp15Reg::Ifar, l.ifar);
            }
            if matches!(l.exc, Exception32::Undef) {
                hw.set_spsr32(SpsrBank::Abt, l.spsr_abt);
            }
        }
        self.finish_injection(regs, &l.inj, l.exc, hw);
    }

    /// Injects the abort the guest's own walk of `va` gives (AArch32 short descriptors):
    /// an external abort on the table walk at the level that read outside RAM.
    fn inject_walk_abort32(
        &self,
        regs: &mut GuestRegs,
        far: u64,
        kind: crate::shadow::AccessKind,
        hw: &mut dyn VcpuHw,
    ) -> Action {
        let regime = self.guest_regime(hw);
        let pl = if self.mode(regs) == Mode::Usr {
            crate::shadow::Pl::Pl0
        } else {
            crate::shadow::Pl::Pl1
        };
        let access = crate::shadow::Access { pl, kind };
        let fault = match (&self.ram_io, regime.is_short_descriptor()) {
            (Some(io), true) => crate::shadow::translate(
                &regime,
                &RamView(io.as_ref()),
                VirtAddr::new(far & 0xffff_ffff),
                access,
            )
            .err(),
            _ => None,
        };
        let write = kind == crate::shadow::AccessKind::Write;
        let exc = match (fault, kind) {
            (Some(f), crate::shadow::AccessKind::Exec) => Exception32::PrefetchAbort {
                ifsr: f.ifsr(),
                ifar: far as u32,
            },
            (Some(f), _) => Exception32::DataAbort {
                dfsr: f.dfsr(write),
                dfar: far as u32,
            },
            (None, crate::shadow::AccessKind::Exec) => Exception32::PrefetchAbort {
                ifsr: aarch32::external_abort_fsr(false, !regime.is_short_descriptor()),
                ifar: far as u32,
            },
            (None, _) => Exception32::DataAbort {
                dfsr: aarch32::external_abort_fsr(write, !regime.is_short_descriptor()),
                dfar: far as u32,
            },
        };
        self.inject32(regs, exc, hw)
    }

    /// A trapped MCR/MRC to CP15.
    fn cp15(
        &self,
        vcpu: usize,
        regs: &mut GuestRegs,
        syn: &esr::Syndrome,
        iss: &esr::CpRtIss,
        hw: &mut dyn VcpuHw,
    ) -> Action {
        let _ = vcpu;
        if !self.cond_passes(regs, syn) {
            self.counters.exit(ExitReason::Cp15);
            self.skip(regs, syn);
            return Action::Resume;
        }
        let rt = iss.rt;
        let value = aarch32::read_rt(regs, rt) as u64;
        if aarch32::is_pmu(iss) {
            // PMU registers (MDCR_EL2.TPM): RAZ/WI, the guest sees no PMU.
            self.counters.exit(ExitReason::Cp15);
            aarch32::raz_wi(regs, iss);
            self.skip(regs, syn);
            return Action::Resume;
        }
        match aarch32::decode_mcr(iss) {
            Cp15Op::Tlbi(op) if !iss.read => {
                self.counters.exit(ExitReason::Tlbi);
                let host = match &self.shadow {
                    Some(sh) => sh.lock().tlbi(op.to_shadow_op(value as u32)),
                    None => HostTlbOp::All,
                };
                hw.tlb(host);
                self.skip(regs, syn);
                Action::Resume
            }
            Cp15Op::Reg(reg) => {
                self.counters.exit(ExitReason::Cp15);
                if iss.read {
                    let v = match &self.shadow {
                        Some(sh) => sh.lock().read_reg(reg),
                        None => None,
                    }
                    .unwrap_or_else(|| hw.read_cp15(reg));
                    aarch32::write_rt(regs, rt, v as u32);
                } else if let Some(a) = self.write_translation_reg(reg, value, hw) {
                    return a;
                }
                self.skip(regs, syn);
                Action::Resume
            }
            _ => {
                self.counters.exit(ExitReason::Cp15);
                crate::guest_warn!(
                    "{}: trapped {} p15, {}, c{}, c{}, {} at pc {:#x}: injecting undefined instruction",
                    self.name,
                    if iss.read { "mrc" } else { "mcr" },
                    iss.opc1,
                    iss.crn,
                    iss.crm,
                    iss.opc2,
                    regs.pc
                );
                self.inject_undef(regs, syn.il, hw)
            }
        }
    }

    /// Writes a translation register: through the shadow in shadow mode, else the real one.
    /// `Some(action)` if the VM must stop.
    fn write_translation_reg(
        &self,
        reg: Cp15Reg,
        value: u64,
        hw: &mut dyn VcpuHw,
    ) -> Option<Action> {
        let (Some(sh), Some(io)) = (&self.shadow, &self.ram_io) else {
            hw.write_cp15(reg, value);
            return None;
        };
        let res = sh.lock().write_reg(reg, value, &RamView(io.as_ref()));
        match res {
            None => {
                hw.write_cp15(reg, value);
                None
            }
            Some(r) => Some(self.apply_or_stop(r, hw)).filter(|a| *a == Action::Stop),
        }
    }

    /// A trapped MCRR/MRRC to CP15 (64-bit TTBRs in shadow mode, ICC_SGI1R for GICv3).
    fn cp15_64(
        &self,
        vcpu: usize,
        regs: &mut GuestRegs,
        syn: &esr::Syndrome,
        iss: &esr::CpRrtIss,
        hw: &mut dyn VcpuHw,
    ) -> Action {
        self.counters.exit(ExitReason::Cp15);
        if !self.cond_passes(regs, syn) {
            self.skip(regs, syn);
            return Action::Resume;
        }
        let value = aarch32::read_rt_pair(regs, iss);
        if aarch32::is_pmu64(iss) {
            aarch32::raz_wi64(regs, iss);
            self.skip(regs, syn);
            return Action::Resume;
        }
        // ICC_SGI1R: MCRR p15, 0, <Rt>, <Rt2>, c12.
        if iss.opc1 == 0 && iss.crm == 12 && !iss.read {
            if let Some(v) = &self.vgic {
                v.lock().sgi_v3(vcpu, value);
                self.skip(regs, syn);
                return Action::Resume;
            }
        }
        match aarch32::decode_mcrr(iss) {
            Some(reg) => {
                if iss.read {
                    let v = match &self.shadow {
                        Some(sh) => sh.lock().read_reg(reg),
                        None => None,
                    }
                    .unwrap_or_else(|| hw.read_cp15(reg));
                    aarch32::write_rt_pair(regs, iss, v);
                } else if let Some(a) = self.write_translation_reg(reg, value, hw) {
                    return a;
                }
                self.skip(regs, syn);
                Action::Resume
            }
            None => {
                crate::guest_warn!(
                    "{}: trapped {} p15, {}, c{} at pc {:#x}: injecting undefined instruction",
                    self.name,
                    if iss.read { "mrrc" } else { "mcrr" },
                    iss.opc1,
                    iss.crm,
                    regs.pc
                );
                self.inject_undef(regs, syn.il, hw)
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Shadow mode.

    /// Carries out what a shadow operation asks of the hardware and of stage 2.
    fn apply_effects(&self, e: Effects, hw: &mut dyn VcpuHw) {
        if !e.wp.is_empty() {
            let mut mem = self.mem.lock();
            for (page, ro) in e.wp {
                if !self.ram.contains(page) {
                    continue;
                }
                let prot = if ro { Prot::RX } else { Prot::RWX };
                if let Err(err) = mem.protect(page, 4096, prot) {
                    crate::guest_warn!(
                        "{}: stage-2 protection of guest table page {page} failed: {err}; its writes may not be synced",
                        self.name
                    );
                }
            }
        }
        if let Some(r) = e.program {
            hw.program_shadow(&r);
        }
        if e.flush != HostTlbOp::None {
            hw.tlb(e.flush);
        }
    }

    /// Starts (or restarts, after a reset) shadowing for a shadow-mode VM's boot vCPU and
    /// programs the real translation registers. `Stop` if the engine cannot start.
    pub fn shadow_start(&self, hw: &mut dyn VcpuHw) -> Action {
        let (Some(sh), Some(io)) = (&self.shadow, &self.ram_io) else {
            return Action::Resume;
        };
        let res = sh.lock().start(&RamView(io.as_ref()));
        self.apply_or_stop(res, hw)
    }

    /// Applies a shadow operation's effects (`Resume`), or stops the VM with a log line
    /// if the operation failed (`Stop`).
    fn apply_or_stop(
        &self,
        res: Result<Effects, shadowvm::ShadowVmError>,
        hw: &mut dyn VcpuHw,
    ) -> Action {
        match res {
            Ok(e) => {
                self.apply_effects(e, hw);
                Action::Resume
            }
            Err(e) => {
                crate::guest_warn!("{}: {e}; stopping the VM", self.name);
                Action::Stop
            }
        }
    }

    /// A write fault on RAM: if it hit a write-protected guest table, emulates it (an A32
    /// store is decoded; otherwise the syndrome is used when there is one) or, failing
    /// both, single-steps it. `None` if it is not a shadow matter.
    fn write_protected(
        &self,
        regs: &mut GuestRegs,
        ipa: GuestPhysAddr,
        far: u64,
        syn: &esr::Syndrome,
        iss: &esr::DataAbortIss,
        hw: &mut dyn VcpuHw,
    ) -> Option<Action> {
        let (sh, io) = (self.shadow.as_ref()?, self.ram_io.as_ref()?);
        if !self.ram.contains(ipa) || !sh.lock().is_protected(ipa) {
            return None;
        }
        self.counters.exit(ExitReason::WriteProtect);
        let view = RamView(io.as_ref());
        // A32 stores are decoded from the instruction, whatever the syndrome says: that
        // also covers the forms without one (writeback, STRD, STM) and store-exclusives,
        // whose status register the syndrome path could not set.
        if let Some(words) = self.decode_store(regs, ipa, far, io.as_ref()) {
            // A decoded store is an A32 instruction: 4 bytes, whatever IL said.
            let syn = &esr::Syndrome { il: true, ..*syn };
            let res = {
                let mut g = sh.lock();
                if iss.isv {
                    g.counters.wp_emulated += 1;
                } else {
                    g.counters.wp_decoded += 1;
                }
                g.sync_words(&words, &view)
            };
            return Some(self.finish_emulated_store(res, regs, syn, hw));
        }
        let big_endian = regs.pstate & (1 << 9) != 0;
        if iss.isv && (ipa.raw() & 0xfff) + (1u64 << iss.sas) <= 0x1000 {
            let size = 1u64 << iss.sas;
            let value = aarch32::read_rt(regs, iss.srt) as u64
                & if size == 8 {
                    u64::MAX
                } else {
                    (1 << (8 * size)) - 1
                };
            // CPSR.E: the register's bytes go to memory most significant first.
            let value = if big_endian {
                value.swap_bytes() >> (64 - 8 * size)
            } else {
                value
            };
            let words = shadowvm::store_words(ipa, size, value, &view)?;
            if !io.write(ipa, &value.to_le_bytes()[..size as usize]) {
                return None;
            }
            let res = {
                let mut g = sh.lock();
                g.counters.wp_emulated += 1;
                g.sync_words(&words, &view)
            };
            return Some(self.finish_emulated_store(res, regs, syn, hw));
        }
        // Otherwise open the page, let the guest run that one instruction, then diff the
        // page and close it again (`finish_step`).
        if !hw.can_single_step() {
            crate::guest_warn!(
                "{}: write to its translation table {ipa} at pc {:#x} cannot be decoded, and this host cannot single-step it: stopping the VM",
                self.name,
                regs.pc
            );
            return Some(Action::Stop);
        }
        let page = ipa.align_down(4096);
        let mut before = alloc::vec![0u8; 4096];
        if !io.read(page, &mut before) {
            return None;
        }
        sh.lock().counters.wp_stepped += 1;
        if let Err(e) = self.mem.lock().protect(page, 4096, Prot::RWX) {
            crate::guest_warn!("{}: cannot open {page} for a stepped write: {e}", self.name);
            return Some(Action::Stop);
        }
        hw.tlb(HostTlbOp::All);
        *self.step.lock() = Some((page, before));
        regs.pstate |= PSTATE_SS;
        hw.set_single_step(true);
        Some(Action::Resume)
    }

    /// After an emulated table write: applies the sync's effects and skips the store, or
    /// stops the VM if the engine failed.
    fn finish_emulated_store(
        &self,
        res: Result<Effects, shadowvm::ShadowVmError>,
        regs: &mut GuestRegs,
        syn: &esr::Syndrome,
        hw: &mut dyn VcpuHw,
    ) -> Action {
        let a = self.apply_or_stop(res, hw);
        if a == Action::Resume {
            self.skip(regs, syn);
        }
        a
    }

    /// Emulates the A32 store at the guest's PC that took a write-protect fault: performs
    /// its element stores into guest memory (the faulting page as reported, other pages
    /// through the guest's own translation), its base writeback and a store-exclusive's
    /// status, and returns the words written. `None` (nothing done) when the instruction
    /// is not a decodable A32 store or an element is not a permitted write to RAM.
    fn decode_store(
        &self,
        regs: &mut GuestRegs,
        ipa: GuestPhysAddr,
        far: u64,
        io: &dyn GuestRamIo,
    ) -> Option<Vec<(GuestPhysAddr, u32)>> {
        // CPSR.T, not the syndrome's IL, tells A32 from T32: IL is not reported for a
        // Data Abort without a valid ISS on every implementation (QEMU's AArch32 EL2).
        if regs.pstate & (1 << 5) != 0 {
            return None; // T32
        }
        let view = RamView(io);
        let regime = self.shadow.as_ref()?.lock().regs.regime();
        let mode = aarch32::current_mode(regs)?;
        let pl = if mode == Mode::Usr {
            crate::shadow::Pl::Pl0
        } else {
            crate::shadow::Pl::Pl1
        };
        let fetch = crate::shadow::Access {
            pl,
            kind: crate::shadow::AccessKind::Exec,
        };
        let pc_ipa = if regime.mmu_on() {
            crate::shadow::translate(&regime, &view, VirtAddr::new(regs.pc), fetch)
                .ok()?
                .pa
        } else {
            regs.pc
        };
        let insn = view.read_u32(GuestPhysAddr::new(pc_ipa)).ok()?;
        let st = crate::a32store::decode(insn, regs, mode)?;
        // Where each element goes: the faulting page as the fault reported it, any other
        // page through the guest's own translation (a write it permits, to RAM). Nothing
        // is written unless every element can be.
        let page_va = far as u32 & !0xfff;
        let write = crate::shadow::Access {
            pl,
            kind: crate::shadow::AccessKind::Write,
        };
        let mut targets = Vec::with_capacity(st.elements.len());
        for &(va, size, value) in &st.elements {
            if (va & 0xfff) + size as u32 > 0x1000 {
                return None;
            }
            let at = if va & !0xfff == page_va {
                ipa.align_down(4096) + (va & 0xfff) as u64
            } else if regime.mmu_on() {
                let t = crate::shadow::translate(&regime, &view, VirtAddr::new(va as u64), write)
                    .ok()?;
                GuestPhysAddr::new(t.pa)
            } else {
                GuestPhysAddr::new(va as u64)
            };
            if !self.ram.contains_span(at, size as u64) {
                return None;
            }
            // CPSR.E: the register's bytes go to memory most significant first.
            let value = if regs.pstate & (1 << 9) != 0 {
                value.swap_bytes() >> (32 - 8 * size as u32)
            } else {
                value
            };
            targets.push((at, size, value));
        }
        let mut words = Vec::new();
        for (at, size, value) in targets {
            words.extend(shadowvm::store_words(at, size as u64, value as u64, &view)?);
            if !io.write(at, &value.to_le_bytes()[..size as usize]) {
                return None;
            }
        }
        if let Some((rn, v)) = st.writeback {
            aarch32::set_reg(regs, mode, rn, v);
        }
        if let Some(rd) = st.status {
            aarch32::set_reg(regs, mode, rd, 0);
        }
        Some(words)
    }

    /// Ends a single-stepped table write, if one is under way: closes the page again and
    /// syncs every word the guest changed. Called after every exit of a shadow-mode vCPU.
    /// `Some(Stop)` if the engine failed.
    pub fn finish_step(&self, regs: &mut GuestRegs, hw: &mut dyn VcpuHw) -> Option<Action> {
        let (page, before) = self.step.lock().take()?;
        regs.pstate &= !PSTATE_SS;
        hw.set_single_step(false);
        let (sh, io) = (self.shadow.as_ref()?, self.ram_io.as_ref()?);
        let mut after = alloc::vec![0u8; 4096];
        if !io.read(page, &mut after) {
            return None;
        }
        let mut words = Vec::new();
        for (i, (a, b)) in after.chunks(4).zip(before.chunks(4)).enumerate() {
            if a != b {
                let v = u32::from_le_bytes([a[0], a[1], a[2], a[3]]);
                words.push((page + (4 * i) as u64, v));
            }
        }
        if let Err(e) = self.mem.lock().protect(page, 4096, Prot::RX) {
            crate::guest_warn!(
                "{}: re-protecting guest table page {page} failed: {e}; stopping the VM",
                self.name
            );
            return Some(Action::Stop);
        }
        // The page was open to the guest: drop whatever the TLB cached of it.
        let res = sh
            .lock()
            .sync_words(&words, &RamView(io.as_ref()))
            .map(|mut e| {
                e.flush = shadowvm::merge_flush(e.flush, HostTlbOp::All);
                e
            });
        Some(self.apply_or_stop(res, hw)).filter(|a| *a == Action::Stop)
    }
}

/// Starts an AArch32 vCPU context at `entry` (bit 0 set: Thumb) in SVC mode with
/// IRQ, FIQ and asynchronous aborts masked and r0..r2 as given.
pub fn boot_regs32(regs: &mut GuestRegs, entry: u64, r: [u32; 3]) {
    *regs = GuestRegs::zeroed();
    for (i, v) in r.iter().enumerate() {
        regs.x[i] = *v as u64;
    }
    regs.pc = entry & 0xffff_fffe;
    regs.pstate = PSTATE_SVC_MASKED | if entry & 1 == 1 { 1 << 5 } else { 0 };
}

/// Starts an AArch64 vCPU context at `entry` with x0 = `x0`, EL1h, interrupts masked.
pub fn boot_regs(regs: &mut GuestRegs, entry: u64, x0: u64) {
    *regs = GuestRegs::zeroed();
    regs.x[0] = x0;
    regs.pc = entry;
    regs.pstate = PSTATE_EL1H_MASKED;
}

/// Wakes physical CPU `cpu`, which may be waiting for its vCPU to be turned on.
/// (On the target: a kick interrupt; in host tests, nothing.)
pub fn wake_cpu(cpu: usize) {
    #[cfg(target_os = "none")]
    crate::hyp::wake_cpu(cpu);
    #[cfg(not(target_os = "none"))]
    let _ = cpu;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::{DeviceError, MmioDevice};
    use alloc::boxed::Box;
    use alloc::collections::BTreeMap;

    /// Page-granular model of a stage-2 map.
    #[derive(Default)]
    struct FakeMap(BTreeMap<u64, (u64, Prot)>);

    impl GuestMemoryMap for FakeMap {
        fn map(
            &mut self,
            ipa: GuestPhysAddr,
            hpa: HostPhysAddr,
            size: u64,
            prot: Prot,
        ) -> Result<(), PageTableError> {
            for o in (0..size).step_by(4096) {
                if self.0.contains_key(&(ipa.raw() + o)) {
                    return Err(PageTableError::AlreadyMapped);
                }
            }
            for o in (0..size).step_by(4096) {
                self.0.insert(ipa.raw() + o, (hpa.raw() + o, prot));
            }
            Ok(())
        }
        fn unmap(&mut self, ipa: GuestPhysAddr, size: u64) -> Result<(), PageTableError> {
            for o in (0..size).step_by(4096) {
                self.0.remove(&(ipa.raw() + o));
            }
            Ok(())
        }
        fn protect(
            &mut self,
            ipa: GuestPhysAddr,
            size: u64,
            prot: Prot,
        ) -> Result<(), PageTableError> {
            for o in (0..size).step_by(4096) {
                if let Some(e) = self.0.get_mut(&(ipa.raw() + o)) {
                    e.1 = prot;
                }
            }
            Ok(())
        }
        fn query(&self, ipa: GuestPhysAddr) -> Option<Mapping> {
            let page = ipa.raw() & !0xfff;
            self.0.get(&page).map(|&(pa, prot)| Mapping {
                pa: HostPhysAddr::new(pa + (ipa.raw() & 0xfff)),
                prot,
                level: 3,
                size: 4096,
            })
        }
    }

    #[derive(Default)]
    struct FakeHw {
        vbar: u64,
        esr: u64,
        far: Option<u64>,
        elr: u64,
        spsr: u64,
    }

    impl VcpuHw for FakeHw {
        fn vbar_el1(&self) -> u64 {
            self.vbar
        }
        fn sctlr_el1(&self) -> u64 {
            0x30d0_0800
        }
        fn set_exception_regs(&mut self, esr: u64, far: Option<u64>, elr: u64, spsr: u64) {
            self.esr = esr;
            self.far = far;
            self.elr = elr;
            self.spsr = spsr;
        }
    }

    /// A device with one 64-bit register.
    struct Reg(u64);
    impl MmioDevice for Reg {
        fn name(&self) -> &'static str {
            "reg"
        }
        fn read(&mut self, _o: u64, _s: u8) -> Result<u64, DeviceError> {
            Ok(self.0)
        }
        fn write(&mut self, _o: u64, _s: u8, v: u64) -> Result<(), DeviceError> {
            self.0 = v;
            Ok(())
        }
    }

    const RAM: u64 = 0x4000_0000;
    const DEV: u64 = 0x0b00_0000;

    fn vm(cpus: usize) -> Vm {
        vm_with(cpus, None)
    }

    /// An AArch32 host view for the injection tests: records the banked SPSRs and
    /// breakpoints, and says whether the host enters injections directly.
    #[derive(Default)]
    struct Hw32 {
        direct: bool,
        spsr_und: Option<u32>,
        breakpoint: Option<u32>,
    }

    impl VcpuHw for Hw32 {
        fn vbar_el1(&self) -> u64 {
            0x4000_0000
        }
        fn sctlr_el1(&self) -> u64 {
            0x00c5_0078
        }
        fn set_exception_regs(&mut self, _: u64, _: Option<u64>, _: u64, _: u64) {
            panic!("AArch64 exception registers written for an AArch32 guest");
        }
        fn set_spsr32(&mut self, bank: SpsrBank, value: u32) {
            if bank == SpsrBank::Und {
                self.spsr_und = Some(value);
            }
        }
        fn set_breakpoint(&mut self, va: Option<u32>) {
            self.breakpoint = va;
        }
        fn inject_directly(&self) -> bool {
            self.direct
        }
    }

    fn vm32() -> Vm {
        let spec = VmSpec {
            id: 0,
            name: "t32".into(),
            ram: GuestRange::new(GuestPhysAddr::new(RAM), 2 << 20),
            ram_hpa: HostPhysAddr::new(0x8000_0000),
            ncpus: 1,
            first_cpu: 0,
            boot: BootInfo {
                entry: RAM + 0x8_0000,
                x0: 0,
            },
            vgic: None,
            aarch32: true,
            shadow: None,
            ram_io: None,
        };
        let v = Vm::new(spec, Box::new(FakeMap::default()), MmioRouter::default()).unwrap();
        v.start();
        let _ = v.vcpus[0].take_start();
        v
    }

    /// A trapped `mcr p15, 0, r0, c15, c0, 0` (no register the hypervisor emulates):
    /// EC 0x03, CV = 1 with AL, IL = 1.
    fn unknown_mcr32() -> Trap {
        Trap {
            esr: (0x03 << 26) | (1 << 25) | (1 << 24) | (0xe << 20) | (15 << 10),
            far: 0,
            hpfar: 0,
        }
    }

    #[test]
    fn aarch32_undef_is_entered_directly_when_the_host_can() {
        let v = vm32();
        let mut regs = GuestRegs::zeroed();
        regs.pc = RAM + 0x1000;
        regs.pstate = PSTATE_SVC_MASKED & !0x1c0; // SVC, interrupts unmasked
        let mut hw = Hw32 {
            direct: true,
            ..Default::default()
        };
        assert_eq!(
            v.handle_sync(0, &mut regs, &unknown_mcr32(), &mut hw),
            Action::Resume
        );
        // Undefined Instruction: vector VBAR + 4, Undefined mode, LR_und = the MCR + 4,
        // SPSR_und = the CPSR before; no landing, no breakpoint.
        assert_eq!(regs.pc, RAM + 4);
        assert_eq!(regs.pstate & 0x1f, 0x1b);
        assert_eq!(regs.x[22], RAM + 0x1004);
        assert_eq!(hw.spsr_und, Some((PSTATE_SVC_MASKED & !0x1c0) as u32));
        assert_eq!(hw.breakpoint, None);
        assert!(!v.landing_armed(0));
    }

    #[test]
    fn aarch32_undef_lands_through_a_prefetch_abort_otherwise() {
        let v = vm32();
        let mut regs = GuestRegs::zeroed();
        regs.pc = RAM + 0x1000;
        regs.pstate = PSTATE_SVC_MASKED;
        let mut hw = Hw32::default();
        v.handle_sync(0, &mut regs, &unknown_mcr32(), &mut hw);
        // The guest resumes at the MCR itself; a breakpoint waits on the abort vector.
        assert_eq!(regs.pc, RAM + 0x1000);
        assert_eq!(hw.breakpoint, Some(RAM as u32 + 0xc));
        assert!(v.landing_armed(0));
        assert_eq!(hw.spsr_und, None);
    }

    #[test]
    fn psci_features_of_smc64_ids_depend_on_the_callers_state() {
        let mut regs = GuestRegs::zeroed();
        regs.pstate = PSTATE_SVC_MASKED;
        regs.x[..2].copy_from_slice(&[psci::PSCI_FEATURES as u64, psci::CPU_ON_64 as u64]);
        let trap = Trap {
            esr: (0x12 << 26) | (1 << 25),
            far: 0,
            hpfar: 0,
        };
        vm32().handle_sync(0, &mut regs, &trap, &mut Hw32::default());
        assert_eq!(regs.x[0] as u32 as i32 as i64, psci::NOT_SUPPORTED);
        regs.x[..2].copy_from_slice(&[psci::PSCI_FEATURES as u64, psci::CPU_ON_32 as u64]);
        vm32().handle_sync(0, &mut regs, &trap, &mut Hw32::default());
        assert_eq!(regs.x[0], psci::SUCCESS as u64);
        let mut r64 = el1_regs();
        hvc(
            &mut r64,
            &vm(1),
            [psci::PSCI_FEATURES as u64, psci::CPU_ON_64 as u64, 0, 0],
        );
        assert_eq!(r64.x[0], psci::SUCCESS as u64);
    }

    fn vm_with(cpus: usize, vgic: Option<SharedVgic>) -> Vm {
        let mut mmio = MmioRouter::default();
        mmio.register(
            GuestRange::new(GuestPhysAddr::new(DEV), 0x1000),
            Box::new(Reg(0)),
        )
        .unwrap();
        let spec = VmSpec {
            id: 0,
            name: "t".into(),
            ram: GuestRange::new(GuestPhysAddr::new(RAM), 2 << 20),
            ram_hpa: HostPhysAddr::new(0x8000_0000),
            ncpus: cpus,
            first_cpu: 0,
            boot: BootInfo {
                entry: RAM + 0x8_0000,
                x0: 0,
            },
            vgic,
            aarch32: false,
            shadow: None,
            ram_io: None,
        };
        let v = Vm::new(spec, Box::new(FakeMap::default()), mmio).unwrap();
        v.start();
        let _ = v.vcpus[0].take_start();
        v
    }

    fn hvc(regs: &mut GuestRegs, v: &Vm, args: [u64; 4]) -> Action {
        regs.x[..4].copy_from_slice(&args);
        let trap = Trap {
            esr: (0x16 << 26) | (1 << 25),
            far: 0,
            hpfar: 0,
        };
        v.handle_sync(0, regs, &trap, &mut FakeHw::default())
    }

    fn el1_regs() -> GuestRegs {
        let mut r = GuestRegs::zeroed();
        r.pc = RAM + 0x1000;
        r.pstate = PSTATE_EL1H_MASKED;
        r
    }

    /// A data abort ESR: ISV, SAS, SSE, SRT, SF, WnR, DFSC.
    fn dabt(isv: bool, sas: u64, sse: bool, srt: u64, sf: bool, wnr: bool, dfsc: u64) -> u64 {
        (0x24 << 26)
            | (1 << 25)
            | ((isv as u64) << 24)
            | (sas << 22)
            | ((sse as u64) << 21)
            | (srt << 16)
            | ((sf as u64) << 15)
            | ((wnr as u64) << 6)
            | dfsc
    }

    fn trap_at(esr: u64, ipa: u64) -> Trap {
        Trap {
            esr,
            far: ipa,
            hpfar: (ipa >> 12) << 4,
        }
    }

    #[test]
    fn psci_and_vendor_calls() {
        let v = vm(2);
        let mut r = el1_regs();
        assert_eq!(
            hvc(&mut r, &v, [psci::HV_NOP as u64, 0, 0, 0]),
            Action::Resume
        );
        assert_eq!(r.x[0], 0);
        hvc(&mut r, &v, [psci::PSCI_VERSION as u64, 0, 0, 0]);
        assert_eq!(r.x[0], 0x1_0001);
        hvc(
            &mut r,
            &v,
            [psci::PSCI_FEATURES as u64, psci::CPU_ON_64 as u64, 0, 0],
        );
        assert_eq!(r.x[0], 0);
        hvc(&mut r, &v, [0x8600_00ff, 0, 0, 0]);
        assert_eq!(r.x[0] as i64, psci::NOT_SUPPORTED);
        // CPU_ON: bad MPIDR, bad entry, success, then already on / pending.
        hvc(&mut r, &v, [psci::CPU_ON_64 as u64, 7, RAM, 0]);
        assert_eq!(r.x[0] as i64, psci::INVALID_PARAMETERS);
        hvc(&mut r, &v, [psci::CPU_ON_64 as u64, 1, 0x1000, 0]);
        assert_eq!(r.x[0] as i64, psci::INVALID_ADDRESS);
        hvc(&mut r, &v, [psci::CPU_ON_64 as u64, 1, RAM + 0x100, 42]);
        assert_eq!(r.x[0] as i64, psci::SUCCESS);
        hvc(&mut r, &v, [psci::AFFINITY_INFO_64 as u64, 1, 0, 0]);
        assert_eq!(r.x[0] as i64, psci::AFFINITY_ON_PENDING);
        hvc(&mut r, &v, [psci::CPU_ON_64 as u64, 1, RAM + 0x100, 42]);
        assert_eq!(r.x[0] as i64, psci::ON_PENDING);
        assert_eq!(v.vcpus[1].take_start(), Some((RAM + 0x100, 42)));
        hvc(&mut r, &v, [psci::CPU_ON_64 as u64, 1, RAM + 0x100, 42]);
        assert_eq!(r.x[0] as i64, psci::ALREADY_ON);
        hvc(&mut r, &v, [psci::AFFINITY_INFO_64 as u64, 1, 0, 0]);
        assert_eq!(r.x[0] as i64, psci::AFFINITY_ON);
        hvc(&mut r, &v, [psci::AFFINITY_INFO_64 as u64, 1, 1, 0]);
        assert_eq!(r.x[0] as i64, psci::INVALID_PARAMETERS);
        assert_eq!(
            hvc(&mut r, &v, [psci::CPU_OFF as u64, 0, 0, 0]),
            Action::CpuOff
        );
        assert_eq!(
            hvc(&mut r, &v, [psci::SYSTEM_OFF as u64, 0, 0, 0]),
            Action::VmOff
        );
        assert_eq!(
            hvc(&mut r, &v, [psci::SYSTEM_RESET as u64, 0, 0, 0]),
            Action::VmReset
        );
        assert_eq!(v.counters.hypercalls.load(Ordering::Relaxed), 15);
    }

    #[test]
    fn smc_advances_pc() {
        let v = vm(1);
        let mut r = el1_regs();
        r.x[0] = psci::PSCI_VERSION as u64;
        let pc = r.pc;
        let trap = Trap {
            esr: (0x17 << 26) | (1 << 25),
            far: 0,
            hpfar: 0,
        };
        assert_eq!(
            v.handle_sync(0, &mut r, &trap, &mut FakeHw::default()),
            Action::Resume
        );
        assert_eq!(r.pc, pc + 4);
        assert_eq!(r.x[0], 0x1_0001);
    }

    #[test]
    fn mmio_read_sign_extends_and_advances() {
        let v = vm(1);
        let mut r = el1_regs();
        // str x5, [dev]: write 0x80
        r.x[5] = 0xffff_ffff_ffff_ff80;
        let pc = r.pc;
        let t = trap_at(dabt(true, 3, false, 5, true, true, 0x07), DEV + 8);
        assert_eq!(
            v.handle_sync(0, &mut r, &t, &mut FakeHw::default()),
            Action::Resume
        );
        assert_eq!(r.pc, pc + 4);
        // ldrsb x3, [dev]
        let t = trap_at(dabt(true, 0, true, 3, true, false, 0x07), DEV + 8);
        v.handle_sync(0, &mut r, &t, &mut FakeHw::default());
        assert_eq!(r.x[3], 0xffff_ffff_ffff_ff80);
        // ldrsb w4 → upper half zero
        let t = trap_at(dabt(true, 0, true, 4, false, false, 0x07), DEV + 8);
        v.handle_sync(0, &mut r, &t, &mut FakeHw::default());
        assert_eq!(r.x[4], 0xffff_ff80);
        // str xzr
        let t = trap_at(dabt(true, 3, false, 31, true, true, 0x07), DEV + 8);
        v.handle_sync(0, &mut r, &t, &mut FakeHw::default());
        let t = trap_at(dabt(true, 3, false, 6, true, false, 0x07), DEV + 8);
        v.handle_sync(0, &mut r, &t, &mut FakeHw::default());
        assert_eq!(r.x[6], 0);
        assert_eq!(v.counters.mmio.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn aborts_are_injected_not_fatal() {
        let v = vm(1);
        // LDP to MMIO (ISV = 0), from EL1h: vector VBAR + 0x200, EC 0x25.
        let mut r = el1_regs();
        let mut hw = FakeHw {
            vbar: 0x4000_0800,
            ..Default::default()
        };
        let pc = r.pc;
        let t = trap_at(dabt(false, 0, false, 0, false, false, 0x07), DEV);
        assert_eq!(v.handle_sync(0, &mut r, &t, &mut hw), Action::Resume);
        assert_eq!(r.pc, 0x4000_0800 + 0x200);
        assert_eq!(hw.elr, pc);
        assert_eq!(hw.esr >> 26, 0x25);
        assert_eq!(hw.esr & 0x3f, 0x10);
        assert_eq!(hw.far, Some(DEV));
        // Unmapped IPA from EL0: vector + 0x400, EC 0x24.
        let mut r = el1_regs();
        r.pstate = 0; // EL0t
        let t = trap_at(dabt(true, 2, false, 1, false, false, 0x06), 0x3000_0000);
        v.handle_sync(0, &mut r, &t, &mut hw);
        assert_eq!(r.pc, 0x4000_0800 + 0x400);
        assert_eq!(hw.esr >> 26, 0x24);
        assert_eq!(v.counters.aborts_injected.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn abort_loop_at_the_vector_stops_the_vm() {
        let v = vm(1);
        // VBAR_EL1 = 0 and the guest faults fetching the EL1h synchronous vector itself.
        let mut r = el1_regs();
        r.pc = 0x200;
        let iabt = Trap {
            esr: (0x20 << 26) | (1 << 25) | 0x07,
            far: 0x200,
            hpfar: (0x200 >> 12) << 4,
        };
        assert_eq!(
            v.handle_sync(0, &mut r, &iabt, &mut FakeHw::default()),
            Action::Stop
        );
        // Elsewhere it is an ordinary injected abort.
        let mut r = el1_regs();
        r.pc = 0x1000;
        let iabt = Trap {
            esr: (0x20 << 26) | (1 << 25) | 0x07,
            far: 0x1000,
            hpfar: (0x1000 >> 12) << 4,
        };
        assert_eq!(
            v.handle_sync(0, &mut r, &iabt, &mut FakeHw::default()),
            Action::Resume
        );
        assert_eq!(r.pc, 0x200);
    }

    #[test]
    fn protect_and_lazy_unmap() {
        let v = vm(1);
        let mut r = el1_regs();
        let page = RAM + 0x10_0000;
        hvc(&mut r, &v, [psci::HV_MEM_PROTECT as u64, page, 0x1000, 1]);
        assert_eq!(r.x[0], 0);
        assert_eq!(
            v.mem.lock().query(GuestPhysAddr::new(page)).unwrap().prot,
            Prot::R
        );
        // A write permission fault on RAM is injected.
        let mut hw = FakeHw::default();
        let t = trap_at(dabt(true, 3, false, 1, true, true, 0x0f), page);
        v.handle_sync(0, &mut r, &t, &mut hw);
        assert_eq!(hw.esr >> 26, 0x25);
        // Bad arguments.
        for args in [
            [page + 1, 0x1000, 3],
            [page, 0, 3],
            [page, 0x1000, 0],
            [page, 0x1000, 9],
            [0x1000, 0x1000, 3],
            [RAM, 4 << 20, 3],
        ] {
            hvc(
                &mut r,
                &v,
                [psci::HV_MEM_PROTECT as u64, args[0], args[1], args[2]],
            );
            assert_eq!(r.x[0] as i64, psci::INVALID_PARAMETERS, "{args:x?}");
        }
        // Lazy unmap, then the fault is resolved invisibly.
        hvc(
            &mut r,
            &v,
            [psci::HV_MEM_UNMAP_LAZY as u64, page, 0x2000, 0],
        );
        assert_eq!(r.x[0], 0);
        assert!(v.mem.lock().query(GuestPhysAddr::new(page)).is_none());
        let mut r2 = el1_regs();
        let pc = r2.pc;
        let t = trap_at(dabt(true, 3, false, 1, true, false, 0x07), page + 0x1008);
        assert_eq!(v.handle_sync(0, &mut r2, &t, &mut hw), Action::Resume);
        assert_eq!(r2.pc, pc, "the access is retried, not skipped");
        let m = v
            .mem
            .lock()
            .query(GuestPhysAddr::new(page + 0x1000))
            .unwrap();
        assert_eq!(m.pa.raw(), 0x8000_0000 + 0x10_1000);
        assert_eq!(v.counters.s2_resolved.load(Ordering::Relaxed), 1);
        hvc(&mut r, &v, [psci::HV_COUNTER as u64, 3, 0, 0]);
        assert_eq!(r.x[0], 1);
        // Reset restores everything.
        v.reset().unwrap();
        assert_eq!(
            v.mem.lock().query(GuestPhysAddr::new(page)).unwrap().prot,
            Prot::RWX
        );
        assert_eq!(v.reset_count.load(Ordering::Relaxed), 1);
        assert_eq!(v.vcpus[0].power(), Power::OnPending);
    }

    #[test]
    fn wfi_waits_only_when_nothing_is_deliverable() {
        use crate::vgic::{GicVersion, Vgic};
        let vg = Vgic::new(GicVersion::V3, 2, 32).unwrap().into_shared();
        let v = vm_with(2, Some(vg.clone()));
        let mut r = el1_regs();
        let wfi = Trap {
            esr: (0x01 << 26) | (1 << 25),
            far: 0,
            hpfar: 0,
        };
        let wfe = Trap {
            esr: (0x01 << 26) | (1 << 25) | 1,
            far: 0,
            hpfar: 0,
        };
        let pc = r.pc;
        assert_eq!(
            v.handle_sync(0, &mut r, &wfi, &mut FakeHw::default()),
            Action::WaitForInterrupt
        );
        assert_eq!(r.pc, pc + 4);
        assert_eq!(
            v.handle_sync(0, &mut r, &wfe, &mut FakeHw::default()),
            Action::Resume
        );
        // Without a vGIC there is nothing to wait for: WFI is a no-op.
        let plain = vm(1);
        assert_eq!(
            plain.handle_sync(0, &mut r, &wfi, &mut FakeHw::default()),
            Action::Resume
        );
        // msr icc_sgi1r_el1, x3: SGI 5 to Aff0 = 1 (vCPU 1).
        r.x[3] = (5 << 24) | (1 << 1);
        let iss = (3 << 20) | (5 << 17) | (12 << 10) | (3 << 5) | (11 << 1);
        let t = Trap {
            esr: (0x18 << 26) | (1 << 25) | iss,
            far: 0,
            hpfar: 0,
        };
        let pc = r.pc;
        assert_eq!(
            v.handle_sync(0, &mut r, &t, &mut FakeHw::default()),
            Action::Resume
        );
        assert_eq!(r.pc, pc + 4);
        assert_eq!(vg.lock().take_kicks(), 1 << 1);
    }

    #[test]
    fn sysreg_traps() {
        let v = vm(1);
        let mut r = el1_regs();
        r.x[2] = 77;
        // mrs x2, pmcr_el0 (op0=3 op1=3 CRn=9 CRm=12 op2=0), read.
        let iss = (3 << 20) | (3 << 14) | (9 << 10) | (2 << 5) | (12 << 1) | 1;
        let t = Trap {
            esr: (0x18 << 26) | (1 << 25) | iss,
            far: 0,
            hpfar: 0,
        };
        let pc = r.pc;
        v.handle_sync(0, &mut r, &t, &mut FakeHw::default());
        assert_eq!(r.x[2], 0);
        assert_eq!(r.pc, pc + 4);
        // An unknown register traps into an undefined instruction.
        // op0=3 op1=0 CRn=1 CRm=0 op2=0 (SCTLR_EL1 is never trapped; stands for "unknown").
        let iss = (3 << 20) | (1 << 10) | (2 << 5) | 1;
        let t = Trap {
            esr: (0x18 << 26) | (1 << 25) | iss,
            far: 0,
            hpfar: 0,
        };
        let mut hw = FakeHw {
            vbar: 0x4000_0000,
            ..Default::default()
        };
        v.handle_sync(0, &mut r, &t, &mut hw);
        assert_eq!(hw.esr >> 26, 0);
        assert_eq!(r.pc, 0x4000_0200);
    }
}
