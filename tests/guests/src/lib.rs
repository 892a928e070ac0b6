//! Shared runtime of the on-target guest programs: entry code, a stage-1 identity MMU,
//! a polling PL011 console, exception vectors that record synchronous aborts, SMCCC
//! calls, a minimal device-tree reader and the `ok`/`FAILED` test harness.
//!
//! Each program in `src/bin` is a `no_std`, `no_main` binary that names its test
//! function with [`guest_main!`]. The runtime boots, runs it on the primary vCPU,
//! prints `N passed, N failed` and powers the VM off with PSCI SYSTEM_OFF.
#![no_std]

pub mod console;
pub mod dtb;
pub mod entry;
pub mod exception;
pub mod harness;
pub mod mmu;
pub mod smccc;
pub mod testdev;
pub mod timer;

pub use exception::{catch, Fault};
pub use harness::{check, check_eq, check_fault, finish};

/// Base of guest RAM (QEMU virt layout).
pub const RAM_BASE: u64 = 0x4000_0000;
/// RAM size assumed when the hypervisor passes no device tree.
pub const DEFAULT_RAM_SIZE: u64 = 128 << 20;

/// Names the program's test function: `guest_main!(run);` with `fn run()`.
///
/// The runtime calls it on the primary vCPU with the MMU on; when it returns the
/// runtime prints the summary line and powers the VM off.
#[macro_export]
macro_rules! guest_main {
    ($f:path) => {
        /// Entry point called by the runtime (see `hv_guests::entry`).
        #[no_mangle]
        pub extern "Rust" fn hvg_guest_main() {
            let f: fn() = $f;
            f()
        }
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    harness::check(format_args!("panic: {info}"), false);
    harness::finish()
}
