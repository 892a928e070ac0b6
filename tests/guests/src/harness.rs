//! The test harness: `ok - name` / `FAILED - name: details` lines and the closing
//! `N passed, N failed` line, after which the VM is powered off.
use core::fmt::Display;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::exception::{Fault, DFSC_SEA, EC_DABT_CUR};
use crate::{println, smccc};

static PASSED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);

fn bump(c: &AtomicU32) {
    // Plain load/store: only the primary vCPU runs tests (no exclusives needed).
    c.store(c.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
}

fn record(name: impl Display, ok: bool, details: impl Display) -> bool {
    if ok {
        bump(&PASSED);
        println!("ok - {name}");
    } else {
        bump(&FAILED);
        println!("FAILED - {name}{details}");
    }
    ok
}

/// Records one case.
pub fn check(name: impl Display, cond: bool) -> bool {
    record(name, cond, "")
}

/// Records one case, with `details` printed after a colon on failure.
pub fn check_why(name: impl Display, cond: bool, details: impl Display) -> bool {
    if cond {
        record(name, true, "")
    } else {
        record(name, false, format_args!(": {details}"))
    }
}

/// Records `got == want`, printing both on failure.
pub fn check_eq(name: impl Display, got: u64, want: u64) -> bool {
    check_why(
        name,
        got == want,
        format_args!("got {got:#x}, want {want:#x}"),
    )
}

/// Records that a read succeeded (`Some`) and returned `want`.
pub fn check_read(name: impl Display, got: Option<u64>, want: u64) -> bool {
    match got {
        Some(v) => check_eq(name, v, want),
        None => check_why(name, false, "the access aborted"),
    }
}

/// Records that an access raised exactly one synchronous external abort from the
/// current EL (EC 0x25, DFSC 0x10) with FAR_EL1 = `far` and, if given, ELR_EL1 = `elr`.
pub fn check_fault(name: impl Display, fault: Option<Fault>, far: u64, elr: Option<u64>) -> bool {
    match fault {
        None => check_why(name, false, "no exception was taken"),
        Some(f) => {
            let ok = f.ec() == EC_DABT_CUR
                && f.fsc() == DFSC_SEA
                && f.far == far
                && elr.is_none_or(|e| e == f.elr)
                && f.count == 1;
            check_why(
                name,
                ok,
                format_args!(
                    "ESR_EL1={:#x} (EC {:#x}, DFSC {:#x}) FAR_EL1={:#x} ELR_EL1={:#x} count {}; \
                     want EC 0x25, DFSC 0x10, FAR_EL1={:#x}{}",
                    f.esr,
                    f.ec(),
                    f.fsc(),
                    f.far,
                    f.elr,
                    f.count,
                    far,
                    ElrWant(elr)
                ),
            )
        }
    }
}

struct ElrWant(Option<u64>);

impl Display for ElrWant {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self.0 {
            Some(e) => write!(f, ", ELR_EL1={e:#x}"),
            None => Ok(()),
        }
    }
}

/// (passed, failed) so far.
pub fn counts() -> (u32, u32) {
    (PASSED.load(Ordering::SeqCst), FAILED.load(Ordering::SeqCst))
}

/// Replaces the counts (used to carry them across SYSTEM_RESET).
pub fn set_counts(passed: u32, failed: u32) {
    PASSED.store(passed, Ordering::SeqCst);
    FAILED.store(failed, Ordering::SeqCst);
}

/// Prints `N passed, N failed` and powers the VM off with PSCI SYSTEM_OFF.
pub fn finish() -> ! {
    let (p, f) = counts();
    println!("{p} passed, {f} failed");
    let r = smccc::system_off();
    println!("# SYSTEM_OFF returned {r:#x}");
    loop {
        core::hint::spin_loop();
    }
}
