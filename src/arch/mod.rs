//! Architecture layer: the only place with `asm!`, system registers and raw entry code.
//!
//! Each supported host architecture has a sibling module with the same shape
//! (`aarch64` for the EL2 host, `armv7` for the HYP-mode host). Code outside `arch` reaches the
//! hardware only through the items re-exported here and the traits of the pure layers.

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
pub mod common;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;
#[cfg(target_arch = "arm")]
pub mod armv7;
#[cfg(target_arch = "arm")]
pub use armv7::*;
