//! The AArch32 machine layer of the test programs: boot code, exception vectors, the
//! fault-probing accesses, CP15 registers, barriers, TLB and cache maintenance, the
//! generic timer's virtual counter, SMCCC calls (HVC/SMC), the UART and power-off.
//!
//! Everything runs in ARM state (armv7a-none-eabi does not generate Thumb code), so the
//! handlers can resume after a faulting instruction by a fixed offset from LR. (mmio32's
//! hand-written T32 routines must not fault: a fault there resumes 4 bytes on, which only
//! a failing case can see.)

use core::arch::{asm, global_asm};
use core::fmt;

/// Exception kinds stored in [`crate::harness::FaultRecord::kind`] by the vectors.
pub const KIND_UNDEF: u32 = 1;
/// Supervisor call.
pub const KIND_SVC: u32 = 2;
/// Prefetch abort (IFSR, IFAR).
pub const KIND_PABT: u32 = 3;
/// Data abort (DFSR, DFAR).
pub const KIND_DABT: u32 = 4;
/// The reserved (Hyp trap) vector.
pub const KIND_HYP: u32 = 5;
/// IRQ (masked throughout; recorded and masked again if it ever arrives).
pub const KIND_IRQ: u32 = 6;
/// FIQ (as IRQ).
pub const KIND_FIQ: u32 = 7;

// Boot: records the entry CPSR, masks interrupts, gives every exception mode its stack,
// clears .bss, installs the vector table (VBAR; SCTLR.V is cleared by the Rust side) and
// calls the program's `guest32_main(r0, r1, r2, cpsr)` in SVC mode with the MMU off, with
// r0-r2 as the program was entered with them and the CPSR it was entered in.
//
// Vectors: undefined instruction, prefetch abort and data abort record the kind, the fault
// status and address registers and the address of the faulting instruction in
// `G32_FAULT` (crate::harness::FaultRecord: count, kind, fsr, far, pc, resume), bump its
// count and resume:
//   - undefined instruction: at the next instruction (LR_und = insn + 4);
//   - data abort: at the next instruction (LR_abt = insn + 8, so LR - 4);
//   - prefetch abort: at `resume` if `g32_exec` set it (then cleared), else at the next
//     instruction (LR_abt = insn + 4).
// SVC resumes after the SVC; IRQ and FIQ (never unmasked) return with I and F set in SPSR.
//
// Probes: `g32_load` and `g32_store` are a single access followed by a return, so a
// data abort's PC is the function's address; `g32_exec` calls code at r0 with the
// prefetch-abort resume address armed and returns the callee's r0 (r0 itself on a fault).
global_asm!(
    r#"
    .section .text.boot, "ax"
    .arm
    .global _start
_start:
    mrs r3, cpsr
    cpsid aif
    cps #0x17
    ldr sp, =__abt_stack_top
    cps #0x1b
    ldr sp, =__und_stack_top
    cps #0x12
    ldr sp, =__irq_stack_top
    cps #0x11
    ldr sp, =__fiq_stack_top
    cps #0x13
    ldr sp, =__stack_top
    ldr r4, =__bss_start
    ldr r5, =__bss_end
    mov r6, #0
1:  cmp r4, r5
    strlo r6, [r4], #4
    blo 1b
    ldr r4, =g32_vectors
    mcr p15, 0, r4, c12, c0, 0
    isb
    bl guest32_main
2:  wfi
    b 2b
    .ltorg

    .section .text.vectors, "ax"
    .arm
    .balign 32
    .global g32_vectors
g32_vectors:
    b g32_vec_hyp
    b g32_vec_und
    b g32_vec_svc
    b g32_vec_pabt
    b g32_vec_dabt
    b g32_vec_hyp
    b g32_vec_irq
    b g32_vec_fiq

@ r0 = kind, r1 = FSR, r2 = FAR, r3 = address of the faulting instruction.
g32_record:
    ldr r12, =G32_FAULT
    str r0, [r12, #4]
    str r1, [r12, #8]
    str r2, [r12, #12]
    str r3, [r12, #16]
    ldr r0, [r12]
    add r0, r0, #1
    str r0, [r12]
    bx lr

g32_vec_und:
    push {{r0-r3, r12, lr}}
    mov r0, #1
    mov r1, #0
    mov r2, #0
    sub r3, lr, #4
    bl g32_record
    pop {{r0-r3, r12, lr}}
    movs pc, lr

g32_vec_svc:
    push {{r0-r3, r12, lr}}
    mov r0, #2
    mov r1, #0
    mov r2, #0
    sub r3, lr, #4
    bl g32_record
    pop {{r0-r3, r12, lr}}
    movs pc, lr

g32_vec_pabt:
    push {{r0-r3, r12, lr}}
    mov r0, #3
    mrc p15, 0, r1, c5, c0, 1
    mrc p15, 0, r2, c6, c0, 2
    sub r3, lr, #4
    bl g32_record
    pop {{r0-r3, r12, lr}}
    push {{r0, r1}}
    ldr r0, =G32_FAULT
    ldr r1, [r0, #20]
    cmp r1, #0
    movne lr, r1
    movne r1, #0
    strne r1, [r0, #20]
    pop {{r0, r1}}
    movs pc, lr

g32_vec_dabt:
    push {{r0-r3, r12, lr}}
    mov r0, #4
    mrc p15, 0, r1, c5, c0, 0
    mrc p15, 0, r2, c6, c0, 0
    sub r3, lr, #8
    bl g32_record
    pop {{r0-r3, r12, lr}}
    subs pc, lr, #4

g32_vec_hyp:
    push {{r0-r3, r12, lr}}
    mov r0, #5
    mov r1, #0
    mov r2, #0
    mov r3, lr
    bl g32_record
    pop {{r0-r3, r12, lr}}
    movs pc, lr

g32_vec_irq:
    push {{r0-r3, r12, lr}}
    mov r0, #6
    b 3f
g32_vec_fiq:
    push {{r0-r3, r12, lr}}
    mov r0, #7
3:  mov r1, #0
    mov r2, #0
    sub r3, lr, #4
    bl g32_record
    mrs r0, spsr
    orr r0, r0, #0xc0
    msr spsr_cxsf, r0
    pop {{r0-r3, r12, lr}}
    subs pc, lr, #4
    .ltorg

    .section .text.g32_probes, "ax"
    .arm
    .balign 4
    .global g32_load
g32_load:
    ldr r0, [r0]
    bx lr

    .global g32_store
g32_store:
    str r1, [r0]
    bx lr

    .global g32_exec
g32_exec:
    push {{r4, lr}}
    ldr r4, =G32_FAULT
    adr r1, 4f
    str r1, [r4, #20]
    blx r0
4:  mov r1, #0
    str r1, [r4, #20]
    pop {{r4, pc}}
    .ltorg
"#
);

extern "C" {
    /// `ldr r0, [r0]`: the word at `va` (meaningless if it aborted).
    pub fn g32_load(va: u32) -> u32;
    /// `str r1, [r0]`.
    pub fn g32_store(va: u32, value: u32);
    /// Calls the ARM-state code at `va` and returns its r0, or `va` after a prefetch abort.
    pub fn g32_exec(va: u32) -> u32;
}

/// Address of the load instruction of [`g32_load`] (what a data abort records as PC).
pub fn load_insn() -> u32 {
    g32_load as unsafe extern "C" fn(u32) -> u32 as usize as u32
}

/// Address of the store instruction of [`g32_store`].
pub fn store_insn() -> u32 {
    g32_store as unsafe extern "C" fn(u32, u32) as usize as u32
}

/// Writes a CP15 register: `mcr!(crn, opc1, crm, opc2, value)`.
macro_rules! mcr {
    ($crn:literal, $opc1:literal, $crm:literal, $opc2:literal, $v:expr) => {
        // SAFETY: a CP15 register write or maintenance operation chosen by the caller; the
        // callers keep the code, stack and vectors mapped (identity) in every translation
        // regime they program. The asm may change how memory is translated, so it is not
        // `nomem`: the compiler keeps memory accesses on their side of it.
        unsafe {
            asm!(
                concat!("mcr p15, ", $opc1, ", {0}, ", $crn, ", ", $crm, ", ", $opc2),
                in(reg) $v,
                options(nostack, preserves_flags)
            )
        }
    };
}

/// Reads a CP15 register: `mrc!(crn, opc1, crm, opc2)`.
macro_rules! mrc {
    ($crn:literal, $opc1:literal, $crm:literal, $opc2:literal) => {{
        let v: u32;
        // SAFETY: a CP15 register read without side effects.
        unsafe {
            asm!(
                concat!("mrc p15, ", $opc1, ", {0}, ", $crn, ", ", $crm, ", ", $opc2),
                out(reg) v,
                options(nostack, preserves_flags)
            )
        };
        v
    }};
}

/// DSB SY.
pub fn dsb() {
    // SAFETY: a barrier; it only orders memory accesses and maintenance operations.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// ISB.
pub fn isb() {
    // SAFETY: a barrier; it only resynchronises the instruction stream.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}

/// SCTLR.
pub fn sctlr() -> u32 {
    mrc!("c1", "0", "c0", "0")
}

/// Writes SCTLR, then ISB.
pub fn set_sctlr(v: u32) {
    mcr!("c1", "0", "c0", "0", v);
    isb();
}

/// TTBR0 (no barrier).
pub fn set_ttbr0(v: u32) {
    mcr!("c2", "0", "c0", "0", v);
}

/// TTBR1 (no barrier).
pub fn set_ttbr1(v: u32) {
    mcr!("c2", "0", "c0", "1", v);
}

/// TTBCR (no barrier).
pub fn set_ttbcr(v: u32) {
    mcr!("c2", "0", "c0", "2", v);
}

/// DACR (no barrier).
pub fn set_dacr(v: u32) {
    mcr!("c3", "0", "c0", "0", v);
}

/// CONTEXTIDR: PROCID in bits 31:8, ASID in bits 7:0 (no barrier).
pub fn set_contextidr(v: u32) {
    mcr!("c13", "0", "c0", "1", v);
}

/// PRRR.
pub fn prrr() -> u32 {
    mrc!("c10", "0", "c2", "0")
}

/// NMRR.
pub fn nmrr() -> u32 {
    mrc!("c10", "0", "c2", "1")
}

/// Writes PRRR (no barrier).
pub fn set_prrr(v: u32) {
    mcr!("c10", "0", "c2", "0", v);
}

/// Writes NMRR (no barrier).
pub fn set_nmrr(v: u32) {
    mcr!("c10", "0", "c2", "1", v);
}

/// CTR (cache type).
pub fn ctr() -> u32 {
    mrc!("c0", "0", "c0", "1")
}

/// TLBIALL: invalidate the whole unified TLB (no barrier).
pub fn tlbiall() {
    mcr!("c8", "0", "c7", "0", 0u32);
}

/// TLBIALLIS: TLBIALL, Inner Shareable (no barrier).
pub fn tlbiallis() {
    mcr!("c8", "0", "c3", "0", 0u32);
}

/// TLBIMVA: invalidate by VA (bits 31:12) and ASID (bits 7:0) (no barrier).
pub fn tlbimva(va_asid: u32) {
    mcr!("c8", "0", "c7", "1", va_asid);
}

/// TLBIMVAIS: TLBIMVA, Inner Shareable (no barrier).
pub fn tlbimvais(va_asid: u32) {
    mcr!("c8", "0", "c3", "1", va_asid);
}

/// TLBIASID: invalidate the non-global entries of one ASID (no barrier).
pub fn tlbiasid(asid: u32) {
    mcr!("c8", "0", "c7", "2", asid);
}

/// TLBIMVAA: invalidate by VA, all ASIDs (no barrier).
pub fn tlbimvaa(va: u32) {
    mcr!("c8", "0", "c7", "3", va);
}

/// ICIALLU and BPIALL (no barrier).
pub fn icache_bp_invalidate() {
    mcr!("c7", "0", "c5", "0", 0u32);
    mcr!("c7", "0", "c5", "6", 0u32);
}

/// DCCIMVAC over `[va, va + len)`, then DSB.
pub fn dcache_clean_inval(va: u32, len: u32) {
    let line = 4u32 << ((ctr() >> 16) & 0xf);
    let mut a = va & !(line - 1);
    while a < va + len {
        mcr!("c7", "0", "c14", "1", a);
        a += line;
    }
    dsb();
}

/// SCTLR.V: high exception vectors (0xffff_0000) instead of VBAR.
pub const SCTLR_V: u32 = 1 << 13;

/// Makes the exceptions use the vector table the boot code put in VBAR (SCTLR.V = 0).
pub fn use_vbar() {
    set_sctlr(sctlr() & !SCTLR_V);
}

/// CPSR.
pub fn cpsr() -> u32 {
    let v: u32;
    // SAFETY: reading the CPSR has no side effects.
    unsafe { asm!("mrs {0}, cpsr", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// MPIDR (the virtual one under a hypervisor).
pub fn mpidr() -> u32 {
    mrc!("c0", "0", "c0", "5")
}

/// CNTFRQ: the generic timer's frequency in Hz (0 if nobody set it).
pub fn cntfrq() -> u32 {
    mrc!("c14", "0", "c0", "0")
}

/// CNTVCT: the virtual count, read after an ISB.
pub fn cntvct() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading the virtual counter has no side effects; PL1 may always read it.
    unsafe {
        asm!(
            "isb",
            "mrrc p15, 1, {lo}, {hi}, c14",
            lo = out(reg) lo,
            hi = out(reg) hi,
            options(nomem, nostack, preserves_flags)
        )
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Spins until `done()` holds or about `ms` milliseconds of counter time have passed;
/// returns whether `done()` held.
pub fn wait_until(ms: u32, mut done: impl FnMut() -> bool) -> bool {
    let freq = match cntfrq() {
        0 => 62_500_000,
        f => u64::from(f),
    };
    let start = cntvct();
    let limit = freq / 1000 * u64::from(ms);
    loop {
        if done() {
            return true;
        }
        if cntvct().wrapping_sub(start) > limit {
            return done();
        }
        core::hint::spin_loop();
    }
}

/// An SMCCC call through `hvc #0`: r0 = `fid`, r1-r3 = the arguments; returns r0. As
/// SMCCC allows, r1-r3 may come back changed.
pub fn hvc(fid: u32, a1: u32, a2: u32, a3: u32) -> u32 {
    let r: u32;
    // SAFETY: an SMCCC call to the hypervisor; it can change the machine's state (other
    // CPUs, power) but not this program's memory, and every register it may change is
    // declared. An undefined HVC is skipped by the vector.
    unsafe {
        asm!(
            ".arch_extension virt",
            "hvc #0",
            inout("r0") fid => r,
            inout("r1") a1 => _,
            inout("r2") a2 => _,
            inout("r3") a3 => _,
            options(nostack)
        )
    };
    r
}

/// As [`hvc`], through `smc #0` (trapped by a hypervisor that sets HCR.TSC; undefined
/// otherwise without a Secure monitor, and then skipped by the vector).
pub fn smc(fid: u32, a1: u32, a2: u32, a3: u32) -> u32 {
    let r: u32;
    // SAFETY: as for `hvc`.
    unsafe {
        asm!(
            ".arch_extension sec",
            "smc #0",
            inout("r0") fid => r,
            inout("r1") a1 => _,
            inout("r2") a2 => _,
            inout("r3") a3 => _,
            options(nostack)
        )
    };
    r
}

/// The PL011 UART at 0x0900_0000 (identity mapped as Device, or physical with the MMU off).
pub struct Uart;

const UART: usize = 0x0900_0000;
const UART_FR: usize = 0x18;
const UART_FR_TXFF: u32 = 1 << 5;

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: the PL011's FR and DR registers at their fixed address, which the base
            // translation regime maps as Device memory (and which is physical with the MMU
            // off); only called while one of those is in effect.
            unsafe {
                while core::ptr::read_volatile((UART + UART_FR) as *const u32) & UART_FR_TXFF != 0 {
                }
                core::ptr::write_volatile(UART as *mut u32, b as u32);
            }
        }
        Ok(())
    }
}

/// PSCI SYSTEM_OFF through HVC (QEMU implements it itself without EL2; the hypervisor
/// implements it as a hypercall). If that returns, parks the CPU.
pub fn power_off() -> ! {
    // SAFETY: an SMCCC call that stops the machine; if HVC is undefined the vector skips it
    // and execution continues below. r1-r3 may be clobbered by an SMCCC implementation.
    unsafe {
        asm!(
            ".arch_extension virt",
            "hvc #0",
            inout("r0") 0x8400_0008u32 => _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            options(nostack)
        )
    };
    loop {
        // SAFETY: WFI only waits.
        unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}
