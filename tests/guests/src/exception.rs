//! EL1 exception vectors. A synchronous exception raised inside [`catch`] is recorded
//! (ESR_EL1, FAR_EL1, ELR_EL1) and the faulting instruction skipped, so a test can check
//! "this access aborted with ESR x and FAR y". An unexpected one is reported as a
//! failure; data aborts and undefined instructions (e.g. `hvc` with no hypervisor) are
//! skipped so the program carries on, anything else ends the run cleanly.
use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::harness;

global_asm!(
    r#"
    .macro HVG_VENTRY kind
    .balign 0x80
    sub     sp, sp, #160
    stp     x0, x1, [sp, #0]
    mov     x1, #\kind
    b       hvg_exc_common
    .endm

    .section .text.hvg_vectors, "ax"
    .balign 2048
    .global hvg_vectors
hvg_vectors:
    HVG_VENTRY 0
    HVG_VENTRY 1
    HVG_VENTRY 2
    HVG_VENTRY 3
    HVG_VENTRY 4
    HVG_VENTRY 5
    HVG_VENTRY 6
    HVG_VENTRY 7
    HVG_VENTRY 8
    HVG_VENTRY 9
    HVG_VENTRY 10
    HVG_VENTRY 11
    HVG_VENTRY 12
    HVG_VENTRY 13
    HVG_VENTRY 14
    HVG_VENTRY 15

hvg_exc_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x30, [sp, #144]
    mov     x0, sp
    bl      {handler}
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x30, [sp, #144]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #160
    eret
    "#,
    handler = sym exception_rust,
);

/// Exception class values used by the tests.
pub const EC_UNKNOWN: u64 = 0x00;
pub const EC_DABT_CUR: u64 = 0x25;
/// DFSC of a synchronous external abort (not on a table walk).
pub const DFSC_SEA: u64 = 0x10;

/// A recorded synchronous exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub esr: u64,
    pub far: u64,
    pub elr: u64,
    /// How many synchronous exceptions were taken inside the `catch` (normally 1).
    pub count: u64,
}

impl Fault {
    /// ESR_EL1.EC.
    pub fn ec(&self) -> u64 {
        (self.esr >> 26) & 0x3f
    }
    /// ESR_EL1.ISS[5:0] (DFSC/IFSC).
    pub fn fsc(&self) -> u64 {
        self.esr & 0x3f
    }
    /// ESR_EL1.ISS.WnR.
    pub fn wnr(&self) -> bool {
        self.esr & (1 << 6) != 0
    }
}

static ARMED: AtomicBool = AtomicBool::new(false);
static F_COUNT: AtomicU64 = AtomicU64::new(0);
static F_ESR: AtomicU64 = AtomicU64::new(0);
static F_FAR: AtomicU64 = AtomicU64::new(0);
static F_ELR: AtomicU64 = AtomicU64::new(0);
static UNEXPECTED: AtomicU64 = AtomicU64::new(0);

/// Runs `f`; returns its result and the first synchronous exception it raised, if any
/// (each faulting instruction is skipped, so it does not complete).
pub fn catch<R>(f: impl FnOnce() -> R) -> (R, Option<Fault>) {
    F_COUNT.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let r = f();
    ARMED.store(false, Ordering::SeqCst);
    let count = F_COUNT.load(Ordering::SeqCst);
    let fault = (count != 0).then(|| Fault {
        esr: F_ESR.load(Ordering::SeqCst),
        far: F_FAR.load(Ordering::SeqCst),
        elr: F_ELR.load(Ordering::SeqCst),
        count,
    });
    (r, fault)
}

fn read_sysregs() -> (u64, u64, u64) {
    let (esr, far, elr): (u64, u64, u64);
    // SAFETY: reading the EL1 exception syndrome registers has no side effects.
    unsafe {
        asm!("mrs {e}, esr_el1", "mrs {f}, far_el1", "mrs {l}, elr_el1",
            e = out(reg) esr, f = out(reg) far, l = out(reg) elr, options(nomem, nostack))
    };
    (esr, far, elr)
}

fn skip_instruction(elr: u64) {
    // SAFETY: returns to the instruction after the faulting one (all A64 instructions
    // are 4 bytes); the exception return path restores every caller-saved register.
    unsafe { asm!("msr elr_el1, {l}", l = in(reg) elr + 4, options(nomem, nostack)) };
}

const KIND: [&str; 4] = ["sync", "irq", "fiq", "serror"];

extern "C" fn exception_rust(_frame: *mut u64, kind: u64) {
    let (esr, far, elr) = read_sysregs();
    let ec = (esr >> 26) & 0x3f;
    // kind 4 = synchronous, current EL with SP_ELx: the only one tests provoke.
    if kind == 4 && ARMED.load(Ordering::SeqCst) {
        if F_COUNT.load(Ordering::SeqCst) == 0 {
            F_ESR.store(esr, Ordering::SeqCst);
            F_FAR.store(far, Ordering::SeqCst);
            F_ELR.store(elr, Ordering::SeqCst);
        }
        F_COUNT.store(F_COUNT.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
        skip_instruction(elr);
        return;
    }
    let n = UNEXPECTED.load(Ordering::SeqCst) + 1;
    UNEXPECTED.store(n, Ordering::SeqCst);
    harness::check(
        format_args!(
            "unexpected exception: {} (vector {}) ESR_EL1={:#x} (EC {:#x}) ELR_EL1={:#x} FAR_EL1={:#x}",
            KIND[(kind & 3) as usize],
            kind,
            esr,
            ec,
            elr,
            far
        ),
        false,
    );
    let recoverable = kind == 4 && (ec == EC_UNKNOWN || ec == EC_DABT_CUR);
    if recoverable && n < 32 {
        skip_instruction(elr);
        return;
    }
    crate::println!("# cannot continue after this exception");
    harness::finish()
}
