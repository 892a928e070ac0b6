//! Exception vectors and the world switch between the hypervisor and a vCPU.
//!
//! `run_vcpu` saves the hypervisor's callee-saved registers in the vCPU context,
//! loads the guest's registers and ERETs. Any exception from the guest lands on a
//! lower-EL vector, which stores the guest's registers back into the context
//! (found through TPIDR_EL2), reloads the hypervisor's registers and returns from
//! `run_vcpu` with the exit kind. The trap is then handled in ordinary Rust.
//! EL1 system registers stay live in the hardware while a vCPU owns its CPU.

use crate::vm::GuestRegs;
use core::arch::global_asm;

/// Why `run_vcpu` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ExitKind {
    /// A synchronous exception (ESR_EL2 says which).
    Sync = 0,
    /// A physical IRQ arrived while the guest ran.
    Irq = 1,
    /// A physical FIQ arrived while the guest ran.
    Fiq = 2,
    /// An SError arrived while the guest ran.
    SError = 3,
}

/// Guest registers plus the hypervisor's callee-saved registers across `run_vcpu`.
#[repr(C)]
pub struct VcpuContext {
    /// The guest's general registers, PC and PSTATE (offset 0).
    pub guest: GuestRegs,
    /// x19..x30 and SP of the hypervisor while the guest runs.
    host: [u64; 13],
    /// Index of the vCPU within its VM.
    pub vcpu: usize,
}

const HOST_OFF: usize = core::mem::size_of::<GuestRegs>();
const _: () = assert!(HOST_OFF == 264);

impl VcpuContext {
    /// A context for vCPU `vcpu` with all registers zero.
    pub const fn new(vcpu: usize) -> Self {
        Self {
            guest: GuestRegs::zeroed(),
            host: [0; 13],
            vcpu,
        }
    }
}

/// The vCPU this physical CPU runs (or last ran): TPIDR_EL2 points at its context.
pub fn current_vcpu() -> usize {
    let p = crate::read_sysreg!("tpidr_el2") as *const VcpuContext;
    if p.is_null() {
        return 0;
    }
    // SAFETY: TPIDR_EL2 is only ever set by `run_vcpu` to the context of the vCPU this
    // CPU runs, which lives on this CPU's stack frame of `cpu_loop` for good.
    unsafe { (*p).vcpu }
}

global_asm!(
    r#"
    .macro GUEST_EXIT kind
    stp     x0, x1, [sp, #-16]!
    mrs     x0, tpidr_el2
    b       .Lguest_exit_\kind
    .endm

    // Stores x2..x29 at [x0 + 16 ..] (the layout of GuestRegs.x).
    .macro SAVE_X2_X29
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    .endm

    .macro HYP_FAULT kind
    sub     sp, sp, #(34 * 8)
    stp     x0, x1, [sp, #0]
    mov     x0, sp
    mov     x1, #\kind
    b       .Lhyp_fault
    .endm

    .section .text
    .balign 0x800
    .global hv_vectors
hv_vectors:
    // Current EL with SP0
    .balign 0x80
    HYP_FAULT 0
    .balign 0x80
    HYP_FAULT 1
    .balign 0x80
    HYP_FAULT 2
    .balign 0x80
    HYP_FAULT 3
    // Current EL with SPx
    .balign 0x80
    HYP_FAULT 4
    .balign 0x80
    HYP_FAULT 5
    .balign 0x80
    HYP_FAULT 6
    .balign 0x80
    HYP_FAULT 7
    // Lower EL, AArch64
    .balign 0x80
    GUEST_EXIT 0
    .balign 0x80
    GUEST_EXIT 1
    .balign 0x80
    GUEST_EXIT 2
    .balign 0x80
    GUEST_EXIT 3
    // Lower EL, AArch32
    .balign 0x80
    GUEST_EXIT 0
    .balign 0x80
    GUEST_EXIT 1
    .balign 0x80
    GUEST_EXIT 2
    .balign 0x80
    GUEST_EXIT 3
    .balign 0x80

    .irp kind, 0, 1, 2, 3
.Lguest_exit_\kind:
    mov     x1, #\kind
    b       .Lguest_exit
    .endr

    // x0 = context, x1 = exit kind, guest x0/x1 on the stack.
.Lguest_exit:
    SAVE_X2_X29
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #0]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x30, x2, [x0, #240]
    str     x3, [x0, #256]
    // Back to the hypervisor: restore its callee-saved registers and SP.
    ldp     x19, x20, [x0, #264]
    ldp     x21, x22, [x0, #280]
    ldp     x23, x24, [x0, #296]
    ldp     x25, x26, [x0, #312]
    ldp     x27, x28, [x0, #328]
    ldp     x29, x30, [x0, #344]
    ldr     x2, [x0, #360]
    mov     sp, x2
    mov     x0, x1
    ret

    // x0 = &mut VcpuContext. Returns the exit kind.
    .global hv_run_vcpu
hv_run_vcpu:
    stp     x19, x20, [x0, #264]
    stp     x21, x22, [x0, #280]
    stp     x23, x24, [x0, #296]
    stp     x25, x26, [x0, #312]
    stp     x27, x28, [x0, #328]
    stp     x29, x30, [x0, #344]
    mov     x1, sp
    str     x1, [x0, #360]
    msr     tpidr_el2, x0
    ldp     x1, x2, [x0, #248]
    msr     elr_el2, x1
    msr     spsr_el2, x2
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret
    dsb     nsh
    isb

    // An exception taken at EL2 itself: a hypervisor bug. Save a frame, report, stop.
.Lhyp_fault:
    SAVE_X2_X29
    str     x30, [x0, #240]
    bl      {hyp_fault}
6:  wfe
    b       6b
    "#,
    hyp_fault = sym super::rust_hyp_fault,
);

extern "C" {
    fn hv_run_vcpu(ctx: *mut VcpuContext) -> u64;
    /// The EL2 vector table (2 KiB aligned).
    pub static hv_vectors: u8;
}

/// Enters the guest described by `ctx` and returns when it traps to EL2.
///
/// The guest runs with whatever EL1 system-register and stage-2 state is live on this
/// CPU. `ctx` must stay at the same address while the guest runs (TPIDR_EL2 holds it).
pub fn run_vcpu(ctx: &mut VcpuContext) -> ExitKind {
    // SAFETY: `ctx` is a valid, exclusively borrowed context for the whole call; the
    // assembly saves and restores every callee-saved register and SP around the guest.
    let k = unsafe { hv_run_vcpu(ctx) };
    match k {
        0 => ExitKind::Sync,
        1 => ExitKind::Irq,
        2 => ExitKind::Fiq,
        _ => ExitKind::SError,
    }
}

/// Installs the EL2 vector table on this CPU.
pub fn install_vectors() {
    // Only the symbol's address is taken.
    let base = core::ptr::addr_of!(hv_vectors) as u64;
    crate::write_sysreg!("vbar_el2", base);
    // No vCPU context yet (the reset value of TPIDR_EL2 is unknown).
    crate::write_sysreg!("tpidr_el2", 0);
    super::sysreg::isb();
}
