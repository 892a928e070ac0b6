//! The hypervisor image: the bare-metal entry point lives in `hv::arch`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
use hv as _;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("hv is a bare-metal hypervisor: build it with scripts/run, or run the host tests with cargo test");
    std::process::exit(2);
}
