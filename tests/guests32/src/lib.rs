//! guests32: the shared runtime of the bare-metal AArch32 test programs (SVC mode, ARM
//! state, MMU off at entry): boot code and exception vectors that record every fault
//! (`arch`), SMCCC calls, the UART and power-off, and the harness that prints
//! `ok - NAME` / `FAILED - NAME: details` per case (`harness`).
//!
//! Each program (`mmu32` in src/main.rs, `mmio32` and `psci32` in src/bin) defines
//! `extern "C" fn guest32_main(r0: u32, r1: u32, r2: u32, cpsr: u32) -> !`, which the boot
//! code calls with the registers and CPSR the program was entered with, and its own
//! panic handler. The programs are linked at 0x4008_0000 by link.ld.
#![no_std]
// A failure carries its message inline (no allocator); only failures build one.
#![allow(clippy::result_large_err)]

#[macro_use]
pub mod harness;
pub mod arch;
