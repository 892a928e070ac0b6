//! mmu32: a bare-metal AArch32 guest (SVC mode, ARM state) that exercises the ARMv7
//! short-descriptor MMU: MMU on/off, sections, supersections, large and small pages, TLB
//! maintenance, ASIDs, domains, the access flag, TEX remap, page-table storms and bad
//! tables (README.md lists the cases).
//!
//! It runs as an AArch32 guest of the hypervisor (stage-2 and shadow paging must give the
//! same output) and natively on `qemu-system-arm -M virt -cpu cortex-a15 -m 128M`. Entered
//! at 0x4008_0000 in SVC mode, MMU and caches off, interrupts masked (r0-r2 ignored). It
//! prints `ok - NAME` or `FAILED - NAME: details` per case, then `N passed, N failed`, and
//! powers off with PSCI SYSTEM_OFF over HVC. Every expected value follows from the ARM ARM
//! (v7-A/R, chapter B3), never from observed output.
#![no_std]
#![no_main]
// A failure carries its message inline (no allocator); only failures build one.
#![allow(clippy::result_large_err)]

#[macro_use]
extern crate guests32;

mod cases;
mod mmu;

use core::panic::PanicInfo;

// The shared runtime, under the names the cases use (`crate::arch`, `crate::harness`).
use guests32::{arch, harness};

/// Entry point, called by `_start` in SVC mode with the MMU off and a stack (the entry
/// registers and CPSR are not used).
#[no_mangle]
extern "C" fn guest32_main(_r0: u32, _r1: u32, _r2: u32, _cpsr: u32) -> ! {
    mmu::init();
    mmu::reset_env();
    println!("mmu32: ARMv7 short-descriptor MMU tests (AArch32 SVC mode)");
    harness::run_all(cases::CASES, mmu::reset_env);
    if option_env!("MMU32_SELFTEST").is_some() {
        println!("# self-test build: the following cases must all fail");
        harness::run_all(cases::SELFTEST, mmu::reset_env);
    }
    let (passed, failed) = harness::counts();
    println!("# {} exceptions taken", harness::exceptions());
    println!("{passed} passed, {failed} failed");
    arch::power_off()
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    mmu::reset_env();
    let (passed, failed) = harness::counts();
    println!("FAILED - {}: panic: {info}", harness::current());
    println!("{passed} passed, {} failed", failed + 1);
    arch::power_off()
}
