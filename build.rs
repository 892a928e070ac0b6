//! Build script: relink when the linker script or the board's memory layout changes.
use std::env;

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=boards");
    println!("cargo:rerun-if-env-changed=HV_BOARD");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "none" {
        let board = env::var("HV_BOARD").unwrap_or_else(|_| "qemu-virt".into());
        // The board the image is linked for, for messages before the device tree is read.
        println!("cargo:rustc-env=HV_BOARD={board}");
        let dir = env::var("CARGO_MANIFEST_DIR").unwrap();
        let path = format!("{dir}/boards/{board}");
        if !std::path::Path::new(&format!("{path}/memory.ld")).exists() {
            panic!("HV_BOARD={board}: no boards/{board}/memory.ld");
        }
        // linker.ld does `INCLUDE memory.ld`; this search path picks the board's copy.
        // The script is passed here (not in .cargo/config.toml) so that packages built
        // beneath this directory, such as tests/guests, do not inherit it.
        println!("cargo:rustc-link-arg-bins=-L{path}");
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    }
}
