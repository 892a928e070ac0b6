//! System-register accessors for AArch64, named as in the ARM ARM.

/// Reads the system register named by the string literal.
#[macro_export]
macro_rules! read_sysreg {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading a system register has no side effects on memory; the
        // register named here is readable at EL2.
        unsafe { core::arch::asm!(concat!("mrs {0}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

/// Writes the system register named by the string literal.
#[macro_export]
macro_rules! write_sysreg {
    ($name:literal, $val:expr) => {{
        let v: u64 = $val;
        // SAFETY: the caller of this macro is responsible for the architectural effect
        // of the write; the instruction itself touches no Rust-visible memory.
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {0}"), in(reg) v, options(nostack, preserves_flags)) };
    }};
}

/// Instruction synchronization barrier.
#[inline(always)]
pub fn isb() {
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}

/// Data synchronization barrier, inner shareable.
#[inline(always)]
pub fn dsb_ish() {
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
}

/// Data synchronization barrier for stores, inner shareable.
#[inline(always)]
pub fn dsb_ishst() {
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
}

/// Full-system data synchronization barrier.
#[inline(always)]
pub fn dsb_sy() {
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Sends an event to all CPUs (wakes `wfe`).
#[inline(always)]
pub fn sev() {
    // SAFETY: SEV only signals other cores.
    unsafe { core::arch::asm!("sev", options(nomem, nostack, preserves_flags)) };
}

/// Waits for an event.
#[inline(always)]
pub fn wfe() {
    // SAFETY: WFE only pauses this core.
    unsafe { core::arch::asm!("wfe", options(nomem, nostack, preserves_flags)) };
}

/// This CPU's MPIDR affinity fields (Aff3..Aff0), without the U/MT bits.
pub fn mpidr() -> u64 {
    read_sysreg!("mpidr_el1") & 0xff_00ff_ffff
}

/// VTTBR_EL2: the stage-2 root and VMID [55:48] of the running VM.
pub fn vttbr() -> u64 {
    read_sysreg!("vttbr_el2")
}

/// Writes VTTBR_EL2.
pub fn set_vttbr(v: u64) {
    write_sysreg!("vttbr_el2", v);
}
