//! hv: a bare-metal EL2 hypervisor for ARM, as a library.
//!
//! The crate is layered so that everything but the architecture layer is pure,
//! `no_std + alloc` Rust that also builds for the host, where `cargo test` runs its
//! unit tests:
//!
//! | layer    | modules                                                    | host-testable |
//! |----------|------------------------------------------------------------|---------------|
//! | boot     | `arch::*::boot` (entry asm, EL2 setup)                     | no            |
//! | arch     | `arch::aarch64` (system registers, vectors, context switch) | no            |
//! | vmm      | `vm`, `pgtable`, `shadow`, `esr`, `mmio`, `inject`, `psci`, `mm`, `dt`, `board`, `bundle`, `config` | yes |
//! | devices  | `devices` (emulated PL011, test device), `drivers` (host PL011) | yes (drivers: register layout only) |
//!
//! Only `arch` contains `asm!`, system-register access and `#[cfg(target_arch)]`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod a32store;
pub mod aarch32;
pub mod addr;
pub mod board;
pub mod bundle;
pub mod config;
pub mod counters;
pub mod devices;
pub mod drivers;
pub mod dt;
pub mod esr;
pub mod inject;
pub mod loader;
pub mod mm;
pub mod mmio;
pub mod pgtable;
pub mod psci;
pub mod ratelimit;
pub mod shadow;
pub mod shadowvm;
pub mod vgic;
pub mod vm;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod hyp;
#[cfg(target_os = "none")]
pub mod logger;
