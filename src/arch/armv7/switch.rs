//! HYP-mode exception vectors and the world switch between the hypervisor and a vCPU.
//!
//! `run_vcpu` pushes the hypervisor's callee-saved registers on its HYP stack, records
//! SP_hyp in the vCPU context, loads the guest's registers, including every banked
//! SP/LR and the FIQ r8..r12 (MSR banked register, ARM ARM B9.3.10), and ERETs. The
//! guest's traps enter the HVBAR table (B1.8.1): Hyp Trap (0x14), IRQ (0x18) and FIQ
//! (0x1c) come only from the guest, since the hypervisor runs with A, I and F masked
//! (a Hyp Trap whose SPSR_hyp names HYP mode is a hypervisor bug, e.g. an SVC there).
//! A guest's asynchronous abort also arrives as a Hyp Trap, with HSR.EC = 0x24 and
//! DFSC = 0x11; `run_vcpu` reports it as [`ExitKind::SError`]. Undefined, SVC/HVC,
//! Prefetch and Data Abort taken in HYP mode (0x04..0x10) are hypervisor bugs. A guest
//! exit stores the registers back into the context (found
//! through HTPIDR) in the layout of [`GuestRegs`]: each AArch32 register in the slot of
//! its AArch64 view (r13_svc in x19, lr_abt in x20, ... ARM ARM D1.20.1), the high word
//! of every slot zero. The guest's banked SPSRs and CP15 registers stay live in the
//! hardware, as HYP mode uses neither.

use crate::vm::GuestRegs;
use core::arch::global_asm;

/// Why `run_vcpu` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitKind {
    /// A Hyp Trap (HSR says which).
    Sync = 0,
    /// A physical IRQ arrived while the guest ran.
    Irq = 1,
    /// A physical FIQ arrived while the guest ran.
    Fiq = 2,
    /// An asynchronous abort of the guest (HCR.AMO): a Hyp Trap with HSR.EC = 0x24 and
    /// DFSC = 0x11.
    SError = 3,
}

/// Guest registers plus the hypervisor's SP_hyp across `run_vcpu`.
#[repr(C)]
pub struct VcpuContext {
    /// The guest's general registers, PC and CPSR (offset 0).
    pub guest: GuestRegs,
    /// SP_hyp of the hypervisor while the guest runs (offset 264).
    host_sp: u32,
    /// Index of the vCPU within its VM.
    pub vcpu: usize,
}

const _: () = assert!(core::mem::size_of::<GuestRegs>() == 264);

impl VcpuContext {
    /// A context for vCPU `vcpu` with all registers zero.
    pub const fn new(vcpu: usize) -> Self {
        Self {
            guest: GuestRegs::zeroed(),
            host_sp: 0,
            vcpu,
        }
    }
}

/// The vCPU this physical CPU runs (or last ran): HTPIDR points at its context.
pub fn current_vcpu() -> usize {
    let p = crate::mrc!("p15, 4, {0}, c13, c0, 2") as usize as *const VcpuContext;
    if p.is_null() {
        return 0;
    }
    // SAFETY: HTPIDR is only ever set by `run_vcpu` to the context of the vCPU this CPU
    // runs, which lives on this CPU's stack frame of `cpu_loop` for good.
    unsafe { (*p).vcpu }
}

global_asm!(
    r#"
    .arch_extension virt
    .arm
    .section .text
    .balign 32
    .global hv_vectors
hv_vectors:
    b       .Lhyp_fault_0           @ 0x00: not used
    b       .Lhyp_fault_1           @ 0x04: Undefined Instruction in HYP mode
    b       .Lhyp_fault_2           @ 0x08: SVC or HVC in HYP mode
    b       .Lhyp_fault_3           @ 0x0c: Prefetch Abort in HYP mode
    b       .Lhyp_fault_4           @ 0x10: Data Abort in HYP mode
    b       .Lhyp_trap              @ 0x14: Hyp Trap
    b       .Lguest_exit_1          @ 0x18: IRQ
    b       .Lguest_exit_2          @ 0x1c: FIQ

.Lhyp_trap:
    push    {{r0, r1}}
    mrs     r0, spsr
    and     r0, r0, #0x1f
    cmp     r0, #0x1a
    pop     {{r0, r1}}
    beq     .Lhyp_fault_5
    b       .Lguest_exit_0

    .irp kind, 0, 1, 2
.Lguest_exit_\kind:
    push    {{r0, r1}}
    mov     r1, #\kind
    b       .Lguest_exit
    .endr

    // Guest r0/r1 on the stack, r1 = exit kind.
.Lguest_exit:
    mrc     p15, 4, r0, c13, c0, 2  @ HTPIDR: the vCPU context
    str     r2, [r0, #16]
    str     r3, [r0, #24]
    str     r4, [r0, #32]
    str     r5, [r0, #40]
    str     r6, [r0, #48]
    str     r7, [r0, #56]
    str     r8, [r0, #64]
    str     r9, [r0, #72]
    str     r10, [r0, #80]
    str     r11, [r0, #88]
    str     r12, [r0, #96]
    pop     {{r2, r3}}
    str     r2, [r0, #0]
    str     r3, [r0, #8]
    mrs     r2, sp_usr
    str     r2, [r0, #104]          @ x13
    str     lr, [r0, #112]          @ x14: HYP mode shares LR with User mode
    mrs     r2, lr_irq
    str     r2, [r0, #128]          @ x16
    mrs     r2, sp_irq
    str     r2, [r0, #136]          @ x17
    mrs     r2, lr_svc
    str     r2, [r0, #144]          @ x18
    mrs     r2, sp_svc
    str     r2, [r0, #152]          @ x19
    mrs     r2, lr_abt
    str     r2, [r0, #160]          @ x20
    mrs     r2, sp_abt
    str     r2, [r0, #168]          @ x21
    mrs     r2, lr_und
    str     r2, [r0, #176]          @ x22
    mrs     r2, sp_und
    str     r2, [r0, #184]          @ x23
    mrs     r2, r8_fiq
    str     r2, [r0, #192]          @ x24
    mrs     r2, r9_fiq
    str     r2, [r0, #200]
    mrs     r2, r10_fiq
    str     r2, [r0, #208]
    mrs     r2, r11_fiq
    str     r2, [r0, #216]
    mrs     r2, r12_fiq
    str     r2, [r0, #224]          @ x28
    mrs     r2, sp_fiq
    str     r2, [r0, #232]          @ x29
    mrs     r2, lr_fiq
    str     r2, [r0, #240]          @ x30
    mrs     r2, elr_hyp
    str     r2, [r0, #248]          @ pc
    mrs     r2, spsr
    str     r2, [r0, #256]          @ pstate (SPSR_hyp)
    // High words of every slot, and x15 (SP_hyp in the AArch64 view), zero.
    mov     r2, #0
    add     r3, r0, #4
    mov     r4, #33
1:  str     r2, [r3], #8
    subs    r4, r4, #1
    bne     1b
    str     r2, [r0, #120]
    // Back to the hypervisor.
    ldr     sp, [r0, #264]
    mov     r0, r1
    pop     {{r4-r11, pc}}

    // r0 = &mut VcpuContext. Returns the exit kind.
    .global hv_run_vcpu
hv_run_vcpu:
    push    {{r4-r11, lr}}
    str     sp, [r0, #264]
    mcr     p15, 4, r0, c13, c0, 2  @ HTPIDR
    ldr     r1, [r0, #248]
    msr     elr_hyp, r1
    ldr     r1, [r0, #256]
    msr     spsr_cxsf, r1
    ldr     r1, [r0, #104]
    msr     sp_usr, r1
    ldr     r1, [r0, #128]
    msr     lr_irq, r1
    ldr     r1, [r0, #136]
    msr     sp_irq, r1
    ldr     r1, [r0, #144]
    msr     lr_svc, r1
    ldr     r1, [r0, #152]
    msr     sp_svc, r1
    ldr     r1, [r0, #160]
    msr     lr_abt, r1
    ldr     r1, [r0, #168]
    msr     sp_abt, r1
    ldr     r1, [r0, #176]
    msr     lr_und, r1
    ldr     r1, [r0, #184]
    msr     sp_und, r1
    ldr     r1, [r0, #192]
    msr     r8_fiq, r1
    ldr     r1, [r0, #200]
    msr     r9_fiq, r1
    ldr     r1, [r0, #208]
    msr     r10_fiq, r1
    ldr     r1, [r0, #216]
    msr     r11_fiq, r1
    ldr     r1, [r0, #224]
    msr     r12_fiq, r1
    ldr     r1, [r0, #232]
    msr     sp_fiq, r1
    ldr     r1, [r0, #240]
    msr     lr_fiq, r1
    ldr     lr, [r0, #112]
    ldr     r12, [r0, #96]
    ldr     r11, [r0, #88]
    ldr     r10, [r0, #80]
    ldr     r9, [r0, #72]
    ldr     r8, [r0, #64]
    ldr     r7, [r0, #56]
    ldr     r6, [r0, #48]
    ldr     r5, [r0, #40]
    ldr     r4, [r0, #32]
    ldr     r3, [r0, #24]
    ldr     r2, [r0, #16]
    ldr     r1, [r0, #8]
    ldr     r0, [r0, #0]
    eret

    // An exception taken in HYP mode itself: a hypervisor bug. Save r0..r12 and LR,
    // report, stop.
    .irp kind, 0, 1, 2, 3, 4, 5
.Lhyp_fault_\kind:
    push    {{r0-r12, lr}}
    mov     r1, #\kind
    b       .Lhyp_fault
    .endr
.Lhyp_fault:
    mov     r0, sp
    bic     sp, sp, #7              @ the AAPCS wants SP 8-byte aligned at a call
    bl      {hyp_fault}
2:  wfe
    b       2b
    "#,
    hyp_fault = sym super::rust_hyp_fault,
);

extern "C" {
    fn hv_run_vcpu(ctx: *mut VcpuContext) -> u32;
    /// The HYP vector table (32-byte aligned).
    pub static hv_vectors: u8;
}

/// Enters the guest described by `ctx` and returns when it traps to HYP mode.
///
/// The guest runs with whatever PL1 CP15 and stage-2 state is live on this CPU. `ctx`
/// must stay at the same address while the guest runs (HTPIDR holds it).
pub fn run_vcpu(ctx: &mut VcpuContext) -> ExitKind {
    // SAFETY: `ctx` is a valid, exclusively borrowed context for the whole call; the
    // assembly saves and restores every callee-saved register and SP_hyp around the
    // guest, and touches only the guest's banked registers otherwise.
    let k = unsafe { hv_run_vcpu(ctx) };
    match k {
        0 => {
            let hsr = crate::mrc!("p15, 4, {0}, c5, c2, 0");
            if hsr >> 26 == 0x24 && hsr & 0x3f == 0x11 {
                ExitKind::SError
            } else {
                ExitKind::Sync
            }
        }
        1 => ExitKind::Irq,
        _ => ExitKind::Fiq,
    }
}

/// Installs the HYP vector table on this CPU (HVBAR, B4.1.71).
pub fn install_vectors() {
    // Only the symbol's address is taken.
    let base = core::ptr::addr_of!(hv_vectors) as usize as u32;
    crate::mcr!("p15, 4, {0}, c12, c0, 0", base);
    // No vCPU context yet (HTPIDR's reset value is unknown).
    crate::mcr!("p15, 4, {0}, c13, c0, 2", 0);
    super::sysreg::isb();
}
