//! Raspberry Pi 4 Model B (BCM2711), and QEMU's `-M raspi4b`: the board description.
//!
//! Addresses are the ARM ("low peripheral") view of the device tree
//! `broadcom/bcm2711-rpi-4-b.dtb`, after `/soc` ranges translation: the peripherals
//! at 0xFE00_0000 (bus 0x7E00_0000), the GIC-400 at 0xFF84_0000 (bus 0x4004_0000).
//!
//! What Debian's `bcm2711-rpi-4-b.dtb` says, and so what the boot check can verify:
//! - UART0 (`/soc/serial@7e201000`, a PL011) takes its `uartclk` from the clock
//!   manager (`clocks = <&clocks BCM2835_CLOCK_UART>`, `brcm,bcm2711-cprman`), whose
//!   rates the firmware programs (`init_uart_clock`, 48 MHz by default on the Pi 4).
//!   The rate is not in the device tree, so it is checked only when a tree gives it
//!   (a `clock-frequency` or a `fixed-clock`). The hypervisor's PL011 driver keeps the
//!   firmware's baud-rate divisor when the tree gives no rate, so it does not depend
//!   on the clock; with a rate it programs the divisor from it, and the check makes
//!   sure that rate is 48 MHz.
//! - UART0's `pinctrl-0` names the Bluetooth pins in Debian's file (GPIO 30/31 CTS/RTS
//!   and 32/33 TXD/RXD, function 7 = ALT3): the UART talks to the Bluetooth chip. The
//!   serial header needs GPIO 14/15 in ALT0 (`uart0_gpio14`), which `config.txt`'s
//!   `gpio=14,15=a0` sets up; `scripts/run` and `scripts/mk-sdcard` point the copy's
//!   `pinctrl-0` there, and the check rejects a tree that does not say so.
//! - `/soc` and `/emmc2bus` both have `dma-ranges = <0xc0000000 0x0 0x0 0x40000000>`
//!   (bus 0xC000_0000 is CPU address 0, for 1 GiB): the legacy DMA masters reach only
//!   the first 1 GiB of RAM. The firmware widens `/emmc2bus` on newer SoC steppings;
//!   `/soc` still gives 1 GiB. `/scb` (PCIe, Ethernet) has no limit of its own at the
//!   root.

use super::{BoardDesc, GicDesc, SecondaryMethod, UartPins};
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
    // The firmware's default UART0 clock (init_uart_clock); see above.
    uart_clock_hz: Some(48_000_000),
    // TXD0 on GPIO 14 (header pin 8), RXD0 on GPIO 15 (pin 10), function ALT0.
    uart_pins: Some(UartPins {
        pins: &[14, 15],
        function: 4,
        function_name: "ALT0",
    }),
    // 1 GiB: the /soc and /emmc2bus dma-ranges.
    dma_limit: Some(1 << 30),
    gics: &[GicDesc {
        version: 2,
        gicd: HostPhysAddr::new(0xff84_1000),
        gicc: Some(HostPhysAddr::new(0xff84_2000)),
        gicr: None,
        gich: Some(HostPhysAddr::new(0xff84_4000)),
        gicv: Some(HostPhysAddr::new(0xff84_6000)),
    }],
    // The 54 MHz crystal drives the generic timer, and the firmware's armstub writes
    // that to CNTFRQ_EL0. QEMU's raspi4b (9.x) leaves the Cortex-A72 model's default
    // 62.5 MHz there.
    timer_freqs_hz: &[54_000_000, 62_500_000],
    min_cpus: 1,
    max_cpus: 4,
    // The firmware's armstub (and QEMU's boot code) park secondaries on a spin table.
    secondary: SecondaryMethod::SpinTable,
};
