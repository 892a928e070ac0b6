//! The virtual counter (CNTVCT_EL0) and its frequency, for bounded waits and benchmarks.
use core::arch::asm;

/// CNTVCT_EL0, with an ISB before the read so earlier instructions have completed.
#[inline(always)]
pub fn ticks() -> u64 {
    let t: u64;
    // SAFETY: reading the virtual counter has no side effects; EL1 may always read it.
    unsafe { asm!("isb", "mrs {t}, cntvct_el0", "isb", t = out(reg) t, options(nomem, nostack)) };
    t
}

/// CNTFRQ_EL0 in Hz (0 if the firmware/hypervisor left it unset).
pub fn frequency() -> u64 {
    let f: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {f}, cntfrq_el0", f = out(reg) f, options(nomem, nostack)) };
    f
}

/// Spins until `done()` is true or about `ms` milliseconds of counter time pass.
/// Returns whether `done()` became true.
pub fn wait_until(ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let freq = match frequency() {
        0 => 62_500_000,
        f => f,
    };
    let start = ticks();
    let limit = freq / 1000 * ms;
    loop {
        if done() {
            return true;
        }
        if ticks().wrapping_sub(start) > limit {
            return done();
        }
        core::hint::spin_loop();
    }
}
