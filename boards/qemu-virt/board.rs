//! QEMU `virt` (`-M virt,virtualization=on`): the board description.
//!
//! Addresses from QEMU's hw/arm/virt.c memory map (base_memmap), as found in the
//! device trees QEMU generates (tests/data/qemu-virt-gicv{2,3}.dtb).

use super::{BoardDesc, GicDesc, SecondaryMethod};
use crate::addr::HostPhysAddr;

/// QEMU virt.
pub const BOARD: BoardDesc = BoardDesc {
    name: "qemu-virt",
    compatible: &["linux,dummy-virt"],
    ram_base: HostPhysAddr::new(0x4000_0000),
    // The hypervisor plus one default guest (128 MiB) and its own heap.
    min_ram: 256 << 20,
    uart_base: HostPhysAddr::new(0x0900_0000),
    // QEMU's PL011 ignores its clock and pins, and no bus restricts DMA.
    uart_clock_hz: None,
    uart_pins: None,
    dma_limit: None,
    gics: &[
        GicDesc {
            version: 2,
            gicd: HostPhysAddr::new(0x0800_0000),
            gicc: Some(HostPhysAddr::new(0x0801_0000)),
            gicr: None,
            gich: Some(HostPhysAddr::new(0x0803_0000)),
            gicv: Some(HostPhysAddr::new(0x0804_0000)),
        },
        GicDesc {
            version: 3,
            gicd: HostPhysAddr::new(0x0800_0000),
            gicc: None,
            gicr: Some(HostPhysAddr::new(0x080a_0000)),
            gich: None,
            gicv: None,
        },
    ],
    // 62.5 MHz for the older CPU models (cortex-a57/a72), 1 GHz for "max" and newer
    // machine versions.
    timer_freqs_hz: &[62_500_000, 1_000_000_000],
    min_cpus: 1,
    // A GICv2 addresses at most 8 CPUs.
    max_cpus: 8,
    secondary: SecondaryMethod::Psci,
};
