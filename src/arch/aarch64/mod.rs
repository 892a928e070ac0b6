//! AArch64 EL2 host: entry, vectors, world switch, MMU, PSCI calls and TLB maintenance.

pub mod boot;
pub mod gic;
pub mod mem;
pub mod switch;
pub mod sysreg;

pub use super::common::*;
use crate::aarch32::{Cp15Reg, SpsrBank};
use crate::shadow::HostTlbOp;
use crate::shadowvm::HwRegs;
use crate::vm::{Trap, VcpuHw};
use crate::{read_sysreg, write_sysreg};
pub use boot::image_range;
pub use mem::HwTlb;
pub use switch::{current_vcpu, install_vectors, run_vcpu, ExitKind, VcpuContext};

/// False: this host runs AArch64 and AArch32 guests.
pub const AARCH32_GUESTS_ONLY: bool = false;

/// PSCI CPU_ON through the SMC64 calling convention.
pub const PSCI_CPU_ON: u32 = crate::psci::CPU_ON_64;

/// How the entry level is named in log lines.
pub fn entry_name(el: u64) -> &'static str {
    match el {
        3 => "EL3",
        2 => "EL2",
        1 => "EL1",
        _ => "EL0",
    }
}

/// The geometry of the hypervisor's own EL2 stage-1 tables: a VA as wide as the PA
/// range (at most 48 bits), identity-mapped.
pub fn el2_geometry() -> Result<crate::pgtable::Geometry, crate::pgtable::PageTableError> {
    let pa_bits = crate::pgtable::geometry::parange_to_bits(parange()).min(48);
    crate::pgtable::Geometry::stage1_el2(pa_bits, pa_bits)
}

/// The stage-2 geometry for this CPU's PA range (ID_AA64MMFR0_EL1.PARange).
pub fn stage2_geometry() -> crate::pgtable::Geometry {
    crate::pgtable::Geometry::stage2_from_parange(parange())
}

/// Rust entry of the primary CPU: `dtb` is x0 at entry, `el` the entry exception level.
#[no_mangle]
pub extern "C" fn rust_primary_entry(dtb: u64, el: u64) -> ! {
    install_vectors_if_el2(el);
    crate::hyp::primary_main(dtb, el)
}

/// Rust entry of a secondary CPU started through PSCI CPU_ON.
#[no_mangle]
pub extern "C" fn rust_secondary_entry(cpu: u64) -> ! {
    install_vectors();
    crate::hyp::secondary_main(cpu as usize)
}

fn install_vectors_if_el2(el: u64) {
    if el == 2 {
        install_vectors();
    }
}

/// An exception taken at EL2: a hypervisor bug. Reports the frame and stops.
///
/// # Safety
/// Called only by the EL2 vector code, with `frame` pointing at the 31 saved registers.
#[no_mangle]
pub(crate) unsafe extern "C" fn rust_hyp_fault(frame: *const u64, kind: u64) -> ! {
    let esr = read_sysreg!("esr_el2");
    let elr = read_sysreg!("elr_el2");
    let far = read_sysreg!("far_el2");
    // SAFETY: the vector code saved 31 registers at `frame` on this CPU's stack.
    let lr = unsafe { frame.add(30).read() };
    panic!("exception at EL2 (vector {kind}): ESR_EL2={esr:#x} ELR_EL2={elr:#x} FAR_EL2={far:#x} LR={lr:#x}");
}

/// This CPU's affinity-0 number, for log prefixes.
pub fn cpu_id() -> u64 {
    read_sysreg!("mpidr_el1") & 0xff
}

/// This CPU's MPIDR affinity fields.
pub fn mpidr() -> u64 {
    sysreg::mpidr()
}

/// Calls the host firmware's PSCI through the given conduit.
pub fn psci_call(conduit: PsciConduit, func: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let r: u64;
    // SAFETY: an SMC/HVC to PSCI firmware; the SMC Calling Convention preserves
    // x18-x30 and SP, and every other register it may clobber is declared.
    unsafe {
        match conduit {
            PsciConduit::Smc => {
                core::arch::asm!("smc #0", inout("x0") func => r, inout("x1") a1 => _,
                inout("x2") a2 => _, inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _,
                out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _, options(nostack))
            }
            PsciConduit::Hvc => {
                core::arch::asm!("hvc #0", inout("x0") func => r, inout("x1") a1 => _,
                inout("x2") a2 => _, inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _,
                out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _, options(nostack))
            }
        }
    }
    r as i64
}

/// Address secondary CPUs start at.
pub fn secondary_entry() -> u64 {
    boot::_secondary_start as *const () as u64
}

/// CNTFRQ_EL0: the generic timer's frequency in Hz, as the firmware set it.
pub fn cntfrq() -> u64 {
    read_sysreg!("cntfrq_el0") & 0xffff_ffff
}

/// ID_AA64MMFR0_EL1.PARange.
pub fn parange() -> u8 {
    (read_sysreg!("id_aa64mmfr0_el1") & 0xf) as u8
}

/// Turns on the EL2 stage-1 MMU with the given tables. Caches are enabled too.
pub fn enable_el2_mmu(ttbr0: u64, tcr: u64, mair: u64) {
    write_sysreg!("mair_el2", mair);
    write_sysreg!("tcr_el2", tcr);
    write_sysreg!("ttbr0_el2", ttbr0);
    sysreg::dsb_sy();
    sysreg::isb();
    // SAFETY (asm): invalidating EL2 TLB entries before first use is always safe.
    unsafe { core::arch::asm!("tlbi alle2", "dsb sy", "isb", options(nostack)) };
    // SCTLR_EL2: RES1 bits, M (0), C (2), SA (3), I (12), WXN off, EE little-endian.
    let sctlr = 0x30c5_0830 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12);
    write_sysreg!("sctlr_el2", sctlr);
    sysreg::isb();
}

/// HCR_EL2 for an AArch64 (or AArch32 with `rw = false`) guest with stage-2 on:
/// VM, SWIO, FMO, IMO, AMO, FB, BSU=inner shareable, TWI, TWE, TSC, RW. A shadow-paging
/// guest (`shadow`) also traps its translation-register writes and reads (TVM, TRVM) and
/// its TLB maintenance (TTLB).
pub fn hcr_for_guest(rw_aarch64: bool, shadow: bool) -> u64 {
    let mut h = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 9) | (1 << 10);
    h |= (1 << 13) | (1 << 14) | (1 << 19);
    if rw_aarch64 {
        h |= 1 << 31;
    }
    if shadow {
        h |= (1 << 25) | (1 << 26) | (1 << 30);
    }
    h
}

/// Prepares this CPU to run a vCPU of a VM with the given stage-2 settings.
pub fn setup_guest_cpu(vtcr: u64, vttbr: u64, hcr: u64, vmpidr: u64) {
    write_sysreg!("vtcr_el2", vtcr);
    write_sysreg!("vttbr_el2", vttbr);
    write_sysreg!("hcr_el2", hcr);
    // MDCR_EL2: trap debug (TDA, TDOSA, TDRA) and PMU (TPM, TPMCR) accesses; keep
    // HPMN as the hardware reports it so the field is architecturally valid.
    let hpmn = (read_sysreg!("pmcr_el0") >> 11) & 0x1f;
    write_sysreg!(
        "mdcr_el2",
        hpmn | (1 << 5) | (1 << 6) | (1 << 9) | (1 << 10) | (1 << 11)
    );
    // CNTHCTL_EL2: EL1 may use the physical counter and timer; the virtual
    // timer has no offset.
    write_sysreg!("cnthctl_el2", 0b11);
    write_sysreg!("cntvoff_el2", 0);
    // CPTR_EL2: no FP/SIMD or SVE traps (RES1 bits only).
    write_sysreg!("cptr_el2", 0x33ff);
    // The OS Lock (set at cold reset on hardware) would hold back the breakpoint and
    // software-step exceptions the hypervisor itself uses for AArch32 guests.
    write_sysreg!("oslar_el1", 0);
    write_sysreg!("vmpidr_el2", vmpidr | (1 << 31));
    write_sysreg!("vpidr_el2", read_sysreg!("midr_el1"));
    sysreg::isb();
    // SAFETY (asm): flushing this VM's stale stage-1+2 TLB entries is always safe.
    unsafe { core::arch::asm!("tlbi vmalls12e1", "dsb nsh", "isb", options(nostack)) };
}

/// Puts the EL1 system registers into their reset state for a vCPU that starts
/// (boot, CPU_ON, reset): MMU and caches off.
pub fn reset_el1() {
    write_sysreg!("sctlr_el1", 0x30d0_0800);
    write_sysreg!("vbar_el1", 0);
    write_sysreg!("tcr_el1", 0);
    write_sysreg!("mair_el1", 0);
    write_sysreg!("ttbr0_el1", 0);
    write_sysreg!("ttbr1_el1", 0);
    write_sysreg!("cpacr_el1", 0);
    write_sysreg!("contextidr_el1", 0);
    write_sysreg!("cntv_ctl_el0", 0);
    write_sysreg!("cntkctl_el1", 0);
    write_sysreg!("sp_el1", 0);
    write_sysreg!("sp_el0", 0);
    write_sysreg!("tpidr_el1", 0);
    sysreg::isb();
}

/// Puts the AArch32 EL1 state of an AArch32 vCPU into its reset state: SCTLR with
/// the MMU, caches and alignment checks off (the Cortex-A57 AArch32 reset value), DACR,
/// IFSR, the banked SPSRs and FPEXC zero.
pub fn reset_el1_aarch32() {
    reset_el1();
    write_sysreg!("sctlr_el1", 0x00c5_0838);
    write_sysreg!("dacr32_el2", 0);
    write_sysreg!("ifsr32_el2", 0);
    write_sysreg!("fpexc32_el2", 0);
    write_sysreg!("spsr_abt", 0);
    write_sysreg!("spsr_und", 0);
    write_sysreg!("spsr_irq", 0);
    write_sysreg!("spsr_fiq", 0);
    write_sysreg!("esr_el1", 0);
    write_sysreg!("far_el1", 0);
    // No injection landing or stepped table write survives a restart.
    write_sysreg!("dbgbcr0_el1", 0);
    write_sysreg!("mdscr_el1", 0);
    write_sysreg!("mdcr_el2", read_sysreg!("mdcr_el2") & !(1 << 8));
    sysreg::isb();
}

/// Disables the EL1 virtual and physical timers (CNTV_CTL_EL0/CNTP_CTL_EL0 = 0), so
/// that a stopped vCPU's timer does not keep interrupting its idle physical CPU.
pub fn quiesce_el1_timers() {
    write_sysreg!("cntv_ctl_el0", 0);
    write_sysreg!("cntp_ctl_el0", 0);
    sysreg::isb();
}

/// The trap registers of the last synchronous exit on this CPU.
pub fn trap_info() -> Trap {
    Trap {
        esr: read_sysreg!("esr_el2"),
        far: read_sysreg!("far_el2"),
        hpfar: read_sysreg!("hpfar_el2"),
    }
}

/// The live EL1 registers of this CPU, as trap handling needs them.
pub struct LiveEl1;

impl VcpuHw for LiveEl1 {
    fn vbar_el1(&self) -> u64 {
        read_sysreg!("vbar_el1")
    }
    fn sctlr_el1(&self) -> u64 {
        read_sysreg!("sctlr_el1")
    }
    fn set_exception_regs(&mut self, esr: u64, far: Option<u64>, elr: u64, spsr: u64) {
        write_sysreg!("esr_el1", esr);
        if let Some(f) = far {
            write_sysreg!("far_el1", f);
        }
        write_sysreg!("elr_el1", elr);
        write_sysreg!("spsr_el1", spsr);
    }
    fn read_cp15(&self, reg: Cp15Reg) -> u64 {
        // The AArch32 registers' AArch64 homes (ARM ARM, each AArch32 register's
        // "Configurations" section: e.g. DFAR is FAR_EL1[31:0], IFAR FAR_EL1[63:32]).
        let lo = |v: u64| v & 0xffff_ffff;
        match reg {
            Cp15Reg::Sctlr => lo(read_sysreg!("sctlr_el1")),
            Cp15Reg::Actlr => lo(read_sysreg!("actlr_el1")),
            Cp15Reg::Cpacr => lo(read_sysreg!("cpacr_el1")),
            Cp15Reg::Ttbr0 => read_sysreg!("ttbr0_el1"),
            Cp15Reg::Ttbr1 => read_sysreg!("ttbr1_el1"),
            Cp15Reg::Ttbcr => lo(read_sysreg!("tcr_el1")),
            Cp15Reg::Ttbcr2 => read_sysreg!("tcr_el1") >> 32,
            Cp15Reg::Dacr => lo(read_sysreg!("dacr32_el2")),
            Cp15Reg::Dfsr => lo(read_sysreg!("esr_el1")),
            Cp15Reg::Ifsr => lo(read_sysreg!("ifsr32_el2")),
            Cp15Reg::Adfsr => lo(read_sysreg!("afsr0_el1")),
            Cp15Reg::Aifsr => lo(read_sysreg!("afsr1_el1")),
            Cp15Reg::Dfar => lo(read_sysreg!("far_el1")),
            Cp15Reg::Ifar => read_sysreg!("far_el1") >> 32,
            Cp15Reg::Prrr => lo(read_sysreg!("mair_el1")),
            Cp15Reg::Nmrr => read_sysreg!("mair_el1") >> 32,
            Cp15Reg::Amair0 => lo(read_sysreg!("amair_el1")),
            Cp15Reg::Amair1 => read_sysreg!("amair_el1") >> 32,
            Cp15Reg::Contextidr => lo(read_sysreg!("contextidr_el1")),
        }
    }
    fn write_cp15(&mut self, reg: Cp15Reg, v: u64) {
        let lo = |old: u64| (old & !0xffff_ffff) | (v & 0xffff_ffff);
        let hi = |old: u64| (old & 0xffff_ffff) | (v << 32);
        match reg {
            Cp15Reg::Sctlr => write_sysreg!("sctlr_el1", v & 0xffff_ffff),
            // IMPLEMENTATION DEFINED: the guest's writes are ignored.
            Cp15Reg::Actlr => {}
            Cp15Reg::Cpacr => write_sysreg!("cpacr_el1", v & 0xffff_ffff),
            Cp15Reg::Ttbr0 => write_sysreg!("ttbr0_el1", v),
            Cp15Reg::Ttbr1 => write_sysreg!("ttbr1_el1", v),
            Cp15Reg::Ttbcr => write_sysreg!("tcr_el1", lo(read_sysreg!("tcr_el1"))),
            Cp15Reg::Ttbcr2 => write_sysreg!("tcr_el1", hi(read_sysreg!("tcr_el1"))),
            Cp15Reg::Dacr => write_sysreg!("dacr32_el2", v & 0xffff_ffff),
            Cp15Reg::Dfsr => write_sysreg!("esr_el1", v & 0xffff_ffff),
            Cp15Reg::Ifsr => write_sysreg!("ifsr32_el2", v & 0xffff_ffff),
            Cp15Reg::Adfsr => write_sysreg!("afsr0_el1", v & 0xffff_ffff),
            Cp15Reg::Aifsr => write_sysreg!("afsr1_el1", v & 0xffff_ffff),
            Cp15Reg::Dfar => write_sysreg!("far_el1", lo(read_sysreg!("far_el1"))),
            Cp15Reg::Ifar => write_sysreg!("far_el1", hi(read_sysreg!("far_el1"))),
            Cp15Reg::Prrr => write_sysreg!("mair_el1", lo(read_sysreg!("mair_el1"))),
            Cp15Reg::Nmrr => write_sysreg!("mair_el1", hi(read_sysreg!("mair_el1"))),
            Cp15Reg::Amair0 => write_sysreg!("amair_el1", lo(read_sysreg!("amair_el1"))),
            Cp15Reg::Amair1 => write_sysreg!("amair_el1", hi(read_sysreg!("amair_el1"))),
            Cp15Reg::Contextidr => write_sysreg!("contextidr_el1", v & 0xffff_ffff),
        }
        sysreg::isb();
    }
    fn read_spsr32(&self, bank: SpsrBank) -> u32 {
        (match bank {
            SpsrBank::Und => read_sysreg!("spsr_und"),
            SpsrBank::Abt => read_sysreg!("spsr_abt"),
        }) as u32
    }
    fn vcpu_index(&self) -> usize {
        current_vcpu()
    }
    fn set_spsr32(&mut self, bank: SpsrBank, v: u32) {
        match bank {
            SpsrBank::Und => write_sysreg!("spsr_und", v as u64),
            SpsrBank::Abt => write_sysreg!("spsr_abt", v as u64),
        }
    }
    fn program_shadow(&mut self, r: &HwRegs) {
        write_sysreg!("ttbr0_el1", r.ttbr0 as u64);
        write_sysreg!("ttbr1_el1", 0);
        write_sysreg!("tcr_el1", r.ttbcr as u64);
        write_sysreg!("dacr32_el2", r.dacr as u64);
        write_sysreg!("contextidr_el1", r.contextidr as u64);
        write_sysreg!("mair_el1", r.prrr as u64 | (r.nmrr as u64) << 32);
        sysreg::dsb_ishst();
        write_sysreg!("sctlr_el1", r.sctlr as u64);
        sysreg::isb();
    }
    fn tlb(&mut self, op: HostTlbOp) {
        // Shadow-table stores must reach the walker before the guest runs again.
        sysreg::dsb_ishst();
        // SAFETY (asm, every arm): EL1&0 TLB invalidation for the current VMID only
        // removes cached translations of this VM; it cannot give the guest any access.
        match op {
            HostTlbOp::None => return,
            HostTlbOp::All => unsafe { core::arch::asm!("tlbi vmalle1is", options(nostack)) },
            // SAFETY: as above.
            HostTlbOp::Mva { va, asid } => unsafe {
                let x = ((asid as u64) << 48) | (va as u64 >> 12);
                core::arch::asm!("tlbi vae1is, {x}", x = in(reg) x, options(nostack))
            },
            // SAFETY: as above.
            HostTlbOp::Asid(asid) => unsafe {
                let x = (asid as u64) << 48;
                core::arch::asm!("tlbi aside1is, {x}", x = in(reg) x, options(nostack))
            },
            HostTlbOp::Mvaa { va, pages } => {
                for p in 0..pages.min(64) as u64 {
                    let x = (va as u64 >> 12) + p;
                    // SAFETY: as above.
                    unsafe {
                        core::arch::asm!("tlbi vaae1is, {x}", x = in(reg) x, options(nostack))
                    };
                }
                if pages > 64 {
                    // SAFETY: as above.
                    unsafe { core::arch::asm!("tlbi vmalle1is", options(nostack)) };
                }
            }
        }
        sysreg::dsb_ish();
        sysreg::isb();
    }
    fn set_breakpoint(&mut self, va: Option<u32>) {
        // Breakpoint 0 (DBGBVR0_EL1/DBGBCR0_EL1): unlinked address match, all four
        // bytes of an A32 instruction (BAS), EL1 and EL0 (PMC). MDSCR_EL1.MDE enables
        // breakpoints and MDCR_EL2.TDE routes the debug exception to EL2. The guest's
        // own debug registers are trapped, so it never sees these.
        let mdscr = read_sysreg!("mdscr_el1");
        let mdcr = read_sysreg!("mdcr_el2");
        match va {
            Some(v) => {
                write_sysreg!("dbgbvr0_el1", (v & !3) as u64);
                write_sysreg!("dbgbcr0_el1", (0b1111 << 5) | (0b11 << 1) | 1);
                write_sysreg!("mdscr_el1", mdscr | (1 << 15));
                write_sysreg!("mdcr_el2", mdcr | (1 << 8));
            }
            None => {
                write_sysreg!("dbgbcr0_el1", 0);
                write_sysreg!("mdscr_el1", mdscr & !(1 << 15));
                if mdscr & 1 == 0 {
                    write_sysreg!("mdcr_el2", mdcr & !(1 << 8));
                }
            }
        }
        sysreg::isb();
    }
    fn set_single_step(&mut self, on: bool) {
        // MDSCR_EL1.SS (bit 0) arms software step; MDCR_EL2.TDE (bit 8) routes the step
        // exception to EL2. The guest cannot see either: its debug registers are trapped.
        let mdscr = read_sysreg!("mdscr_el1");
        let mdcr = read_sysreg!("mdcr_el2");
        if on {
            write_sysreg!("mdscr_el1", mdscr | 1);
            write_sysreg!("mdcr_el2", mdcr | (1 << 8));
        } else {
            write_sysreg!("mdscr_el1", mdscr & !1);
            write_sysreg!("mdcr_el2", mdcr & !(1 << 8));
        }
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
            // If nothing handles the call, HLT is an EL2 fault whose panic comes back
            // here: halt then.
            set_power_off(PowerOff::Halt);
            // SYS_EXIT (0x18) with an AArch64 parameter block:
            // ADP_Stopped_ApplicationExit (0x20026), exit status 0.
            let block: [u64; 2] = [0x2_0026, 0];
            // SAFETY: set_power_off(Semihosting) is chosen only when a semihosting host
            // handles `hlt #0xf000`; the call reads the two-word block and ends the run.
            unsafe {
                core::arch::asm!("hlt #0xf000", inout("x0") 0x18u64 => _,
                    in("x1") block.as_ptr(), options(nostack, readonly));
            }
        }
        PowerOff::Halt => {}
    }
    loop {
        wait_for_interrupt();
    }
}

/// Releases a secondary CPU parked on a spin table: writes its entry address (which
/// carries its CPU index, below [`MAX_CPUS`]) to its `cpu-release-addr`, cleans that
/// line and the whole hypervisor image to the point of coherency (the CPU reads them
/// with its MMU and caches off, e.g. the EL2 table registers it then loads), then
/// `dsb sy; sev`.
///
/// # Safety
/// `release_addr` must be the CPU's `cpu-release-addr` from the device tree: 8 bytes of
/// identity-mapped RAM that only its parked CPU reads.
pub unsafe fn spin_table_release(release_addr: u64, cpu: usize) {
    // First the image, so that it is clean before the CPU can see its release.
    // CTR_EL0.DminLine: log2 of the smallest data cache line in words.
    let line = 4u64 << ((read_sysreg!("ctr_el0") >> 16) & 0xf);
    let (start, end) = image_range();
    let mut a = start & !(line - 1);
    while a < end {
        // SAFETY: cleaning a line of the identity-mapped image changes no data.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    sysreg::dsb_sy();
    let entry = boot::_secondary_spin_entries as *const () as u64 + 8 * cpu as u64;
    // SAFETY: per the caller's contract the address is the CPU's release mailbox.
    unsafe {
        core::ptr::write_volatile(release_addr as *mut u64, entry);
        core::arch::asm!("dc civac, {}", in(reg) release_addr, options(nostack, preserves_flags));
    }
    sysreg::dsb_sy();
    sysreg::sev();
}
