//! ARMv7 HYP-mode host (Cortex-A15/A7 with the Virtualization Extensions): entry,
//! vectors, world switch, the HYP MMU, PSCI calls and TLB maintenance.
//!
//! The same items as `arch::aarch64`, so that everything outside `arch` is shared. The
//! differences: guests are AArch32 only; system registers are CP15 encodings (ARM ARM
//! DDI 0406C, B4.1); the guest's banked registers are switched by the world switch
//! while its CP15 state stays live on its pinned CPU, as EL1 state does on AArch64;
//! injected exceptions are entered directly (no landing); there is no software step.

pub mod boot;
pub mod gic;
pub mod mem;
pub mod switch;
pub mod sysreg;

pub use super::common::*;
use crate::aarch32::{Cp15Reg, SpsrBank};
use crate::pgtable::{Geometry, PageTableError};
use crate::shadow::HostTlbOp;
use crate::shadowvm::HwRegs;
use crate::vm::{Trap, VcpuHw};
use crate::{mcr, mcrr, mrc, mrrc};
pub use boot::image_range;
pub use mem::HwTlb;
pub use switch::{current_vcpu, install_vectors, run_vcpu, ExitKind, VcpuContext};

/// GICD of the board the image is linked for, used only on the way out of the Secure
/// state (before the device tree is read): QEMU virt's.
pub(crate) const BOOT_GICD: u32 = 0x0800_0000;
/// GICC of the same board.
pub(crate) const BOOT_GICC: u32 = 0x0801_0000;

/// True: this host runs AArch32 guests only.
pub const AARCH32_GUESTS_ONLY: bool = true;

/// PSCI CPU_ON through the SMC32 calling convention (an SMC64 ID from AArch32 is
/// NOT_SUPPORTED).
pub const PSCI_CPU_ON: u32 = crate::psci::CPU_ON_32;

/// HSCTLR's should-be-one bits (B4.1.67: 3-6, 11, 16, 18, 22, 23, 28, 29).
pub(crate) const HSCTLR_SBO: u32 = 0x30c5_0878;

const MODE_HYP: u32 = 0x1a;
const MODE_MON: u32 = 0x16;

/// Rust entry of the primary CPU: `dtb` is r2 at entry, `mode` the CPSR.M the image
/// was entered in (0x16 if it came from the Secure state).
#[no_mangle]
pub extern "C" fn rust_primary_entry(dtb: u32, mode: u32) -> ! {
    let el = match mode {
        MODE_HYP => 2,
        MODE_MON => 3,
        _ => 1,
    };
    if el >= 2 {
        install_vectors();
    }
    crate::hyp::primary_main(dtb as u64, el)
}

/// Rust entry of a secondary CPU started through PSCI CPU_ON.
#[no_mangle]
pub extern "C" fn rust_secondary_entry(cpu: u32) -> ! {
    install_vectors();
    crate::hyp::secondary_main(cpu as usize)
}

/// How the entry level is named in log lines.
pub fn entry_name(el: u64) -> &'static str {
    match el {
        2 => "HYP mode",
        3 => "the Secure state",
        _ => "a PL1 mode",
    }
}

/// An exception taken in HYP mode: a hypervisor bug. Reports the frame and stops.
///
/// # Safety
/// Called only by the HYP vector code, with `frame` pointing at the 14 saved registers
/// (r0..r12, LR).
#[no_mangle]
pub(crate) unsafe extern "C" fn rust_hyp_fault(frame: *const u32, kind: u32) -> ! {
    let hsr = mrc!("p15, 4, {0}, c5, c2, 0");
    let hdfar = mrc!("p15, 4, {0}, c6, c0, 0");
    let hifar = mrc!("p15, 4, {0}, c6, c0, 2");
    let elr: u32;
    // SAFETY: reading ELR_hyp has no memory effect.
    unsafe {
        core::arch::asm!(".arch_extension virt", "mrs {0}, elr_hyp", out(reg) elr, options(nomem, nostack))
    };
    // SAFETY: the vector code pushed 14 registers at `frame` on this CPU's stack.
    let lr = unsafe { frame.add(13).read() };
    // The vector offset: kind 0..=4 are the entries 0x00..0x10, 5 a Hyp Trap (0x14)
    // taken from HYP mode itself.
    let vector = kind * 4;
    panic!(
        "exception in HYP mode (vector {vector:#x}): HSR={hsr:#x} ELR_hyp={elr:#x} HDFAR={hdfar:#x} HIFAR={hifar:#x} LR={lr:#x}"
    );
}

/// This CPU's affinity-0 number, for log prefixes.
pub fn cpu_id() -> u64 {
    sysreg::mpidr() & 0xff
}

/// This CPU's MPIDR affinity fields.
pub fn mpidr() -> u64 {
    sysreg::mpidr()
}

/// Calls the host firmware's PSCI through the given conduit (SMC32 convention: r0..r3
/// in, r0 out; SMCCC preserves r4..r7, and r4, r5, r8 and r12 are declared clobbered
/// only as a margin for older firmware).
pub fn psci_call(conduit: PsciConduit, func: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let r: u32;
    // SAFETY: an SMC/HVC to PSCI firmware; every register it may clobber is declared.
    unsafe {
        match conduit {
            PsciConduit::Smc => core::arch::asm!(".arch_extension sec", "smc #0",
                inout("r0") func as u32 => r, inout("r1") a1 as u32 => _,
                inout("r2") a2 as u32 => _, inout("r3") a3 as u32 => _, out("r4") _,
                out("r5") _, out("r8") _, out("r12") _, options(nostack)),
            PsciConduit::Hvc => core::arch::asm!(".arch_extension virt", "hvc #0",
                inout("r0") func as u32 => r, inout("r1") a1 as u32 => _,
                inout("r2") a2 as u32 => _, inout("r3") a3 as u32 => _, out("r4") _,
                out("r5") _, out("r8") _, out("r12") _, options(nostack)),
        }
    }
    r as i32 as i64
}

/// Address secondary CPUs start at.
pub fn secondary_entry() -> u64 {
    boot::_secondary_start as *const () as usize as u64
}

/// CNTFRQ: the generic timer's frequency in Hz, as the firmware set it.
pub fn cntfrq() -> u64 {
    mrc!("p15, 0, {0}, c14, c0, 0") as u64
}

/// The geometry of the hypervisor's own HYP-mode tables: LPAE, 32-bit VA, 40-bit PA.
pub fn el2_geometry() -> Result<Geometry, PageTableError> {
    Ok(Geometry::stage1_armv7_hyp())
}

/// The stage-2 geometry: LPAE with a 40-bit IPA, 3 levels from level 1.
pub fn stage2_geometry() -> Geometry {
    Geometry::stage2_armv7()
}

/// Turns on the HYP-mode MMU with the given tables (HTTBR, HTCR, HMAIR0/1 = the low and
/// high words of `mair`). Caches are enabled too.
pub fn enable_el2_mmu(ttbr: u64, tcr: u64, mair: u64) {
    mcr!("p15, 4, {0}, c10, c2, 0", mair as u32);
    mcr!("p15, 4, {0}, c10, c2, 1", (mair >> 32) as u32);
    mcr!("p15, 4, {0}, c2, c0, 2", tcr as u32);
    mcrr!("p15, 4, {0}, {1}, c2", ttbr);
    sysreg::dsb_sy();
    sysreg::isb();
    mcr!("p15, 4, {0}, c8, c7, 0", 0); // TLBIALLH
    sysreg::dsb_sy();
    sysreg::isb();
    // HSCTLR (B4.1.67): RES1 bits, M (0), C (2), I (12); A, WXN off, little-endian.
    mcr!(
        "p15, 4, {0}, c1, c0, 0",
        0x30c5_0830 | 1 | (1 << 2) | (1 << 12)
    );
    sysreg::isb();
}

/// HCR (B4.1.65) for an AArch32 guest with stage 2 on: VM, SWIO, FMO, IMO, AMO, FB,
/// BSU = inner shareable, TWI, TWE, TSC. A shadow-paging guest also traps its
/// translation-register writes (TVM) and TLB maintenance (TTLB); its reads are trapped
/// through HSTR (see [`setup_guest_cpu`]), since ARMv7 has no TRVM. `rw_aarch64` must be
/// false (the host runs AArch32 guests only).
pub fn hcr_for_guest(rw_aarch64: bool, shadow: bool) -> u64 {
    let _ = rw_aarch64;
    let mut h = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 9) | (1 << 10);
    h |= (1 << 13) | (1 << 14) | (1 << 19);
    if shadow {
        h |= (1 << 25) | (1 << 26);
    }
    h
}

/// HSTR.T1, T2, T3, T10 (B4.1.74): every access to CP15 c1 (SCTLR, ACTLR, CPACR), c2
/// (TTBR0/1, TTBCR), c3 (DACR) and c10 (PRRR, NMRR, AMAIR0/1) traps, reads included.
const HSTR_SHADOW: u32 = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 10);

/// Prepares this CPU to run a vCPU of a VM with the given stage-2 settings.
pub fn setup_guest_cpu(vtcr: u64, vttbr: u64, hcr: u64, vmpidr: u64) {
    mcr!("p15, 4, {0}, c2, c1, 2", vtcr as u32);
    sysreg::set_vttbr(vttbr);
    mcr!("p15, 4, {0}, c1, c1, 0", hcr as u32);
    // A shadow-paging guest (HCR.TVM) also traps the reads of those registers.
    let shadow = hcr & (1 << 26) != 0;
    mcr!(
        "p15, 4, {0}, c1, c1, 3",
        if shadow { HSTR_SHADOW } else { 0 }
    );
    // HDCR (B4.1.66): trap debug (TDA, TDOSA, TDRA) and PMU (TPM, TPMCR) accesses;
    // HPMN as the hardware reports it (PMCR.N).
    let hpmn = (mrc!("p15, 0, {0}, c9, c12, 0") >> 11) & 0x1f;
    mcr!(
        "p15, 4, {0}, c1, c1, 1",
        hpmn | (1 << 5) | (1 << 6) | (1 << 9) | (1 << 10) | (1 << 11)
    );
    // CNTHCTL (B4.1.26): PL1 may use the physical counter and timer; CNTVOFF = 0.
    mcr!("p15, 4, {0}, c14, c1, 0", 0b11);
    mcrr!("p15, 4, {0}, {1}, c14", 0);
    // HCPTR (B4.1.68): no CP10/CP11 (FP/SIMD) traps; RES1 bits 0x33ff only.
    mcr!("p15, 4, {0}, c1, c1, 2", 0x33ff);
    // VMPIDR: the U bit clear and bit 31 (the multiprocessing-extensions format) set;
    // VPIDR = MIDR.
    mcr!("p15, 4, {0}, c0, c0, 5", vmpidr as u32 | (1 << 31));
    mcr!("p15, 4, {0}, c0, c0, 0", mrc!("p15, 0, {0}, c0, c0, 0"));
    sysreg::isb();
    // Flush stale stage-1+2 TLB entries on this CPU (TLBIALLNSNH: every Non-secure
    // PL1&0 entry; ARMv7 has no per-VMID form).
    mcr!("p15, 4, {0}, c8, c7, 4", 0);
    sysreg::dsb_sy();
    sysreg::isb();
}

/// PL1 reset state common to both entry paths: MMU and caches off, translation and
/// fault registers zero, the virtual timer stopped.
pub fn reset_el1() {
    reset_el1_aarch32();
}

/// Puts the PL1 CP15 state of an AArch32 vCPU into its reset state: SCTLR with the MMU,
/// caches and alignment checks off (the Cortex-A15 reset value), translation registers,
/// DACR, PRRR/NMRR, fault registers, FPEXC, the banked SPSRs and the virtual timer zero.
pub fn reset_el1_aarch32() {
    mcr!("p15, 0, {0}, c1, c0, 0", 0x00c5_0078);
    mcr!("p15, 0, {0}, c12, c0, 0", 0); // VBAR
    mcr!("p15, 0, {0}, c2, c0, 2", 0); // TTBCR
    mcrr!("p15, 0, {0}, {1}, c2", 0); // TTBR0
    mcrr!("p15, 1, {0}, {1}, c2", 0); // TTBR1
    mcr!("p15, 0, {0}, c3, c0, 0", 0); // DACR
    mcr!("p15, 0, {0}, c10, c2, 0", 0); // PRRR
    mcr!("p15, 0, {0}, c10, c2, 1", 0); // NMRR
    mcr!("p15, 0, {0}, c5, c0, 0", 0); // DFSR
    mcr!("p15, 0, {0}, c5, c0, 1", 0); // IFSR
    mcr!("p15, 0, {0}, c6, c0, 0", 0); // DFAR
    mcr!("p15, 0, {0}, c6, c0, 2", 0); // IFAR
    mcr!("p15, 0, {0}, c13, c0, 1", 0); // CONTEXTIDR
    mcr!("p15, 0, {0}, c13, c0, 4", 0); // TPIDRPRW
    mcr!("p15, 0, {0}, c1, c0, 2", 0); // CPACR
    mcr!("p15, 0, {0}, c14, c3, 1", 0); // CNTV_CTL
    mcr!("p15, 0, {0}, c14, c1, 0", 0); // CNTKCTL
    for bank in [SpsrBank::Abt, SpsrBank::Und] {
        LiveEl1.set_spsr32(bank, 0);
    }
    // SAFETY: writing the guest's banked SPSRs and FPEXC touches no Rust-visible
    // memory (HCPTR leaves CP10/CP11 untrapped, so FPEXC is accessible in HYP mode).
    unsafe {
        core::arch::asm!(".arch_extension virt", ".fpu vfpv3-d16", "msr spsr_svc, {0}",
            "msr spsr_irq, {0}", "msr spsr_fiq, {0}", "vmsr fpexc, {0}", in(reg) 0u32,
            options(nomem, nostack))
    };
    sysreg::isb();
}

/// Disables the PL1 virtual and physical timers (CNTV_CTL/CNTP_CTL = 0), so that a
/// stopped vCPU's timer does not keep interrupting its idle physical CPU.
pub fn quiesce_el1_timers() {
    mcr!("p15, 0, {0}, c14, c3, 1", 0);
    mcr!("p15, 0, {0}, c14, c2, 1", 0);
    sysreg::isb();
}

/// The trap registers of the last Hyp Trap on this CPU: HSR, the faulting address
/// (HIFAR for a Prefetch Abort, HDFAR otherwise) and HPFAR.
pub fn trap_info() -> Trap {
    let hsr = mrc!("p15, 4, {0}, c5, c2, 0");
    let far = match hsr >> 26 {
        0x20 | 0x21 => mrc!("p15, 4, {0}, c6, c0, 2"),
        _ => mrc!("p15, 4, {0}, c6, c0, 0"),
    };
    Trap {
        esr: hsr as u64,
        far: far as u64,
        hpfar: mrc!("p15, 4, {0}, c6, c0, 4") as u64,
    }
}

/// The live PL1 registers of this CPU, as trap handling needs them.
pub struct LiveEl1;

macro_rules! banked_spsr {
    (read $name:literal) => {{
        let v: u32;
        // SAFETY: reading a banked SPSR has no memory effect.
        unsafe { core::arch::asm!(".arch_extension virt", concat!("mrs {0}, ", $name), out(reg) v, options(nomem, nostack)) };
        v
    }};
    (write $name:literal, $v:expr) => {{
        let v: u32 = $v;
        // SAFETY: writing the guest's banked SPSR touches no Rust-visible memory.
        unsafe { core::arch::asm!(".arch_extension virt", concat!("msr ", $name, ", {0}"), in(reg) v, options(nomem, nostack)) };
    }};
}

impl VcpuHw for LiveEl1 {
    fn vbar_el1(&self) -> u64 {
        mrc!("p15, 0, {0}, c12, c0, 0") as u64
    }
    fn sctlr_el1(&self) -> u64 {
        mrc!("p15, 0, {0}, c1, c0, 0") as u64
    }
    fn set_exception_regs(&mut self, esr: u64, far: Option<u64>, elr: u64, spsr: u64) {
        // AArch64 guests are refused when a VM is created on this host.
        log::error!(
            "AArch64 exception injection on the ARMv7 host (ESR {esr:#x} FAR {far:x?} ELR {elr:#x} SPSR {spsr:#x}): ignored"
        );
    }
    fn read_cp15(&self, reg: Cp15Reg) -> u64 {
        (match reg {
            Cp15Reg::Sctlr => mrc!("p15, 0, {0}, c1, c0, 0"),
            Cp15Reg::Actlr => mrc!("p15, 0, {0}, c1, c0, 1"),
            Cp15Reg::Cpacr => mrc!("p15, 0, {0}, c1, c0, 2"),
            Cp15Reg::Ttbr0 => return mrrc!("p15, 0, {0}, {1}, c2"),
            Cp15Reg::Ttbr1 => return mrrc!("p15, 1, {0}, {1}, c2"),
            Cp15Reg::Ttbcr => mrc!("p15, 0, {0}, c2, c0, 2"),
            // ARMv8 only (FEAT_AA32HPD): RAZ here.
            Cp15Reg::Ttbcr2 => 0,
            Cp15Reg::Dacr => mrc!("p15, 0, {0}, c3, c0, 0"),
            Cp15Reg::Dfsr => mrc!("p15, 0, {0}, c5, c0, 0"),
            Cp15Reg::Ifsr => mrc!("p15, 0, {0}, c5, c0, 1"),
            Cp15Reg::Adfsr => mrc!("p15, 0, {0}, c5, c1, 0"),
            Cp15Reg::Aifsr => mrc!("p15, 0, {0}, c5, c1, 1"),
            Cp15Reg::Dfar => mrc!("p15, 0, {0}, c6, c0, 0"),
            Cp15Reg::Ifar => mrc!("p15, 0, {0}, c6, c0, 2"),
            Cp15Reg::Prrr => mrc!("p15, 0, {0}, c10, c2, 0"),
            Cp15Reg::Nmrr => mrc!("p15, 0, {0}, c10, c2, 1"),
            Cp15Reg::Amair0 => mrc!("p15, 0, {0}, c10, c3, 0"),
            Cp15Reg::Amair1 => mrc!("p15, 0, {0}, c10, c3, 1"),
            Cp15Reg::Contextidr => mrc!("p15, 0, {0}, c13, c0, 1"),
        }) as u64
    }
    fn write_cp15(&mut self, reg: Cp15Reg, v: u64) {
        let v32 = v as u32;
        match reg {
            Cp15Reg::Sctlr => mcr!("p15, 0, {0}, c1, c0, 0", v32),
            // IMPLEMENTATION DEFINED: the guest's writes are ignored.
            Cp15Reg::Actlr => {}
            Cp15Reg::Cpacr => mcr!("p15, 0, {0}, c1, c0, 2", v32),
            Cp15Reg::Ttbr0 => mcrr!("p15, 0, {0}, {1}, c2", v),
            Cp15Reg::Ttbr1 => mcrr!("p15, 1, {0}, {1}, c2", v),
            Cp15Reg::Ttbcr => mcr!("p15, 0, {0}, c2, c0, 2", v32),
            Cp15Reg::Ttbcr2 => {}
            Cp15Reg::Dacr => mcr!("p15, 0, {0}, c3, c0, 0", v32),
            Cp15Reg::Dfsr => mcr!("p15, 0, {0}, c5, c0, 0", v32),
            Cp15Reg::Ifsr => mcr!("p15, 0, {0}, c5, c0, 1", v32),
            Cp15Reg::Adfsr => mcr!("p15, 0, {0}, c5, c1, 0", v32),
            Cp15Reg::Aifsr => mcr!("p15, 0, {0}, c5, c1, 1", v32),
            Cp15Reg::Dfar => mcr!("p15, 0, {0}, c6, c0, 0", v32),
            Cp15Reg::Ifar => mcr!("p15, 0, {0}, c6, c0, 2", v32),
            Cp15Reg::Prrr => mcr!("p15, 0, {0}, c10, c2, 0", v32),
            Cp15Reg::Nmrr => mcr!("p15, 0, {0}, c10, c2, 1", v32),
            Cp15Reg::Amair0 => mcr!("p15, 0, {0}, c10, c3, 0", v32),
            Cp15Reg::Amair1 => mcr!("p15, 0, {0}, c10, c3, 1", v32),
            Cp15Reg::Contextidr => mcr!("p15, 0, {0}, c13, c0, 1", v32),
        }
        sysreg::isb();
    }
    fn read_spsr32(&self, bank: SpsrBank) -> u32 {
        match bank {
            SpsrBank::Und => banked_spsr!(read "spsr_und"),
            SpsrBank::Abt => banked_spsr!(read "spsr_abt"),
        }
    }
    fn set_spsr32(&mut self, bank: SpsrBank, v: u32) {
        match bank {
            SpsrBank::Und => banked_spsr!(write "spsr_und", v),
            SpsrBank::Abt => banked_spsr!(write "spsr_abt", v),
        }
    }
    fn vcpu_index(&self) -> usize {
        current_vcpu()
    }
    fn inject_directly(&self) -> bool {
        true
    }
    fn can_single_step(&self) -> bool {
        false
    }
    fn program_shadow(&mut self, r: &HwRegs) {
        mcrr!("p15, 0, {0}, {1}, c2", r.ttbr0 as u64);
        mcrr!("p15, 1, {0}, {1}, c2", 0);
        mcr!("p15, 0, {0}, c2, c0, 2", r.ttbcr);
        mcr!("p15, 0, {0}, c3, c0, 0", r.dacr);
        mcr!("p15, 0, {0}, c13, c0, 1", r.contextidr);
        mcr!("p15, 0, {0}, c10, c2, 0", r.prrr);
        mcr!("p15, 0, {0}, c10, c2, 1", r.nmrr);
        sysreg::dsb_ishst();
        mcr!("p15, 0, {0}, c1, c0, 0", r.sctlr);
        sysreg::isb();
    }
    fn tlb(&mut self, op: HostTlbOp) {
        // Shadow-table stores must reach the walker before the guest runs again.
        sysreg::dsb_ishst();
        // Executed in HYP mode, these act on the Non-secure PL1&0 regime of the VMID in
        // VTTBR: only this VM's cached translations go.
        match op {
            HostTlbOp::None => return,
            HostTlbOp::All => mcr!("p15, 0, {0}, c8, c3, 0", 0), // TLBIALLIS
            HostTlbOp::Mva { va, asid } => {
                mcr!("p15, 0, {0}, c8, c3, 1", (va & !0xfff) | asid as u32) // TLBIMVAIS
            }
            HostTlbOp::Asid(asid) => mcr!("p15, 0, {0}, c8, c3, 2", asid as u32), // TLBIASIDIS
            HostTlbOp::Mvaa { va, pages } => {
                for p in 0..pages.min(64) {
                    // TLBIMVAAIS
                    mcr!(
                        "p15, 0, {0}, c8, c3, 3",
                        (va & !0xfff).wrapping_add(p << 12)
                    );
                }
                if pages > 64 {
                    mcr!("p15, 0, {0}, c8, c3, 0", 0);
                }
            }
        }
        sysreg::dsb_ish();
        sysreg::isb();
    }
}

/// Powers the machine off the way [`set_power_off`] chose (PSCI SYSTEM_OFF by
/// default), then halts if that returned.
pub fn power_off(conduit: PsciConduit) -> ! {
    match power_off_how() {
        PowerOff::Psci => {
            psci_call(conduit, crate::psci::SYSTEM_OFF as u64, 0, 0, 0);
        }
        PowerOff::Semihosting => {
            // If nothing handles the call, the SVC is a HYP-mode fault whose panic comes
            // back here: halt then.
            set_power_off(PowerOff::Halt);
            // SYS_EXIT (0x18) with reason ADP_Stopped_ApplicationExit (0x20026) in r1.
            // SAFETY: set_power_off(Semihosting) is chosen only when a semihosting host
            // handles the call, which ends the run.
            unsafe {
                core::arch::asm!("svc #0x123456", inout("r0") 0x18u32 => _,
                    in("r1") 0x2_0026u32, options(nostack, nomem))
            };
        }
        PowerOff::Halt => {}
    }
    loop {
        wait_for_interrupt();
    }
}

/// Spin-table release is not supported on this host (a CPU released that way could not
/// be told its index): logs that and leaves the CPU parked. PSCI CPU_ON is used instead.
///
/// # Safety
/// None needed (nothing is written); `unsafe` only to match the AArch64 host's contract.
pub unsafe fn spin_table_release(release_addr: u64, cpu: usize) {
    log::error!(
        "CPU {cpu}: spin-table release (cpu-release-addr {release_addr:#x}) is not supported on the ARMv7 host; it stays parked"
    );
}
