//! CP15 system-register accessors for the ARMv7 HYP-mode host, named as in the ARM ARM
//! (ARMv7-A/R, DDI 0406C, B4.1 "System control registers"; the Hyp-mode registers are
//! the `p15, 4, ...` encodings of B3.17.6).

/// Reads a 32-bit CP15 register: `mrc!("p15, 4, {0}, c1, c1, 0")` (the operand string of
/// an MRC with `{0}` as Rt).
#[macro_export]
macro_rules! mrc {
    ($ops:literal) => {{
        let v: u32;
        // SAFETY: reading a CP15 register has no effect on memory; the register named
        // here is readable in Hyp mode.
        unsafe { core::arch::asm!(concat!("mrc ", $ops), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

/// Writes a 32-bit CP15 register: `mcr!("p15, 4, {0}, c1, c1, 0", value)`.
#[macro_export]
macro_rules! mcr {
    ($ops:literal, $val:expr) => {{
        let v: u32 = $val;
        // SAFETY: the caller of this macro is responsible for the architectural effect
        // of the write; the instruction itself touches no Rust-visible memory.
        unsafe { core::arch::asm!(concat!("mcr ", $ops), in(reg) v, options(nostack, preserves_flags)) };
    }};
}

/// Reads a 64-bit CP15 register: `mrrc!("p15, 4, {0}, {1}, c2")` (Rt = low word).
#[macro_export]
macro_rules! mrrc {
    ($ops:literal) => {{
        let lo: u32;
        let hi: u32;
        // SAFETY: as for `mrc!`.
        unsafe { core::arch::asm!(concat!("mrrc ", $ops), out(reg) lo, out(reg) hi, options(nomem, nostack, preserves_flags)) };
        (hi as u64) << 32 | lo as u64
    }};
}

/// Writes a 64-bit CP15 register: `mcrr!("p15, 4, {0}, {1}, c2", value)`.
#[macro_export]
macro_rules! mcrr {
    ($ops:literal, $val:expr) => {{
        let v: u64 = $val;
        // SAFETY: as for `mcr!`.
        unsafe { core::arch::asm!(concat!("mcrr ", $ops), in(reg) v as u32, in(reg) (v >> 32) as u32, options(nostack, preserves_flags)) };
    }};
}

/// MPIDR (B4.1.106): Aff2..Aff0, without the M/U/MT bits.
pub fn mpidr() -> u64 {
    (crate::mrc!("p15, 0, {0}, c0, c0, 5") & 0xff_ffff) as u64
}

/// VTTBR (B4.1.159): the stage-2 root and VMID [55:48] of the running VM.
pub fn vttbr() -> u64 {
    crate::mrrc!("p15, 6, {0}, {1}, c2")
}

/// Writes VTTBR.
pub fn set_vttbr(v: u64) {
    crate::mcrr!("p15, 6, {0}, {1}, c2", v);
}

pub use crate::arch::common::{dsb_ish, dsb_ishst, dsb_sy, isb, sev, wfe};
