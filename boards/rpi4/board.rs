//! Raspberry Pi 4 Model B (BCM2711), and QEMU's `-M raspi4b`: the board description.
//!
//! Addresses are the ARM ("low peripheral") view of the device tree
//! `broadcom/bcm2711-rpi-4-b.dtb`, after `/soc` ranges translation: the peripherals
//! at 0xFE00_0000 (bus 0x7E00_0000), the GIC-400 at 0xFF84_0000 (bus 0x4004_0000).

use super::{BoardDesc, GicDesc, SecondaryMethod};
use crate::addr::HostPhysAddr;

/// Raspberry Pi 4 Model B.
pub const BOARD: BoardDesc = BoardDesc {
    name: "rpi4",
    compatible: &["raspberrypi,4-model-b", "brcm,bcm2711"],
    // RAM starts at 0; below the VideoCore carve-out, then high memory above 4 GiB on
    // the larger models.
    ram_base: HostPhysAddr::new(0),
    // The hypervisor plus one default guest (128 MiB) and its own heap.
    min_ram: 256 << 20,
    // PL011 UART0 (GPIO 14/15, ALT0), the console when stdout-path names serial0.
    uart_base: HostPhysAddr::new(0xfe20_1000),
    gics: &[GicDesc {
        version: 2,
        gicd: HostPhysAddr::new(0xff84_1000),
        gicc: Some(HostPhysAddr::new(0xff84_2000)),
        gicr: None,
        gich: Some(HostPhysAddr::new(0xff84_4000)),
        gicv: Some(HostPhysAddr::new(0xff84_6000)),
    }],
    // The 54 MHz crystal drives the generic timer.
    timer_freqs_hz: &[54_000_000],
    min_cpus: 1,
    max_cpus: 4,
    // The firmware's armstub (and QEMU's boot code) park secondaries on a spin table.
    secondary: SecondaryMethod::SpinTable,
};
