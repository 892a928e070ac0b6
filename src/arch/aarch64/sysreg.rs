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

pub use crate::arch::common::{dsb_ish, dsb_ishst, dsb_sy, isb, sev, wfe};
