//! Board descriptions (data in `boards/`) and their check against the host device tree.
//!
//! Core code never branches on a board's name: [`find_board`] picks the description by
//! the device tree's root `compatible`, and [`BoardDesc::check`] reports every way the
//! machine differs from what the description expects.

use core::fmt;

use crate::addr::{HostPhysAddr, HostRange};
use crate::dt::{Blank, Bounded, DmaLimit, HostPlatform, PinMux, MAX_UART_PINS};

#[path = "../boards/qemu-virt/board.rs"]
mod qemu_virt;
#[path = "../boards/rpi4/board.rs"]
mod rpi4;

/// Every board this build knows, most specific first.
pub static BOARDS: &[&BoardDesc] = &[&qemu_virt::BOARD, &rpi4::BOARD];

/// How secondary CPUs are started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondaryMethod {
    /// PSCI CPU_ON (`enable-method = "psci"` and a psci node).
    Psci,
    /// Spin table (`enable-method = "spin-table"` with `cpu-release-addr`).
    SpinTable,
}

impl SecondaryMethod {
    /// The device-tree `enable-method` string.
    pub const fn dt_name(self) -> &'static str {
        match self {
            Self::Psci => "psci",
            Self::SpinTable => "spin-table",
        }
    }
}

/// The expected interrupt-controller layout for one GIC version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicDesc {
    /// 2 or 3.
    pub version: u8,
    /// Distributor base.
    pub gicd: HostPhysAddr,
    /// CPU interface base, if expected.
    pub gicc: Option<HostPhysAddr>,
    /// First redistributor base, if expected.
    pub gicr: Option<HostPhysAddr>,
    /// Virtual interface control base, if expected.
    pub gich: Option<HostPhysAddr>,
    /// Virtual CPU interface base, if expected.
    pub gicv: Option<HostPhysAddr>,
}

/// The pins the console UART must be multiplexed to, as the SoC's pin controller
/// numbers them in the device tree (`brcm,pins` / `brcm,function`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UartPins {
    /// GPIO numbers, e.g. TXD then RXD.
    pub pins: &'static [u32],
    /// The function-select value they must have.
    pub function: u32,
    /// That function's name, for messages ("ALT0").
    pub function_name: &'static str,
}

/// A board description: plain data, checked against the device tree at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoardDesc {
    /// Short name ("qemu-virt"), for messages only.
    pub name: &'static str,
    /// Root `compatible` strings that select this board (any one matches).
    pub compatible: &'static [&'static str],
    /// An address that must lie in RAM (the RAM base).
    pub ram_base: HostPhysAddr,
    /// Least total RAM the hypervisor needs on this board.
    pub min_ram: u64,
    /// Base of the console PL011.
    pub uart_base: HostPhysAddr,
    /// The console UART's reference clock, checked when the device tree gives one
    /// (`clock-frequency`, or a `fixed-clock` in `clocks`). `None`: not checked.
    pub uart_clock_hz: Option<u32>,
    /// The pins the console UART's "default" pin-control state must mux. `None`: not
    /// checked.
    pub uart_pins: Option<UartPins>,
    /// First address the board's DMA-capable buses cannot reach. Checked against the
    /// device tree's `dma-ranges` when it has some; guest RAM is allocated below it
    /// when it fits. `None`: no limit.
    pub dma_limit: Option<u64>,
    /// Accepted GIC layouts (one per version).
    pub gics: &'static [GicDesc],
    /// Accepted architected-timer frequencies in Hz (empty: any).
    pub timer_freqs_hz: &'static [u32],
    /// Fewest CPUs.
    pub min_cpus: usize,
    /// Most CPUs.
    pub max_cpus: usize,
    /// How secondary CPUs are started.
    pub secondary: SecondaryMethod,
}

/// One difference between a board description and the device tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch<'a> {
    /// The root compatible matches none of the board's.
    Compatible,
    /// Less RAM than needed.
    RamTooSmall {
        /// Bytes found.
        found: u64,
        /// Bytes needed.
        min: u64,
    },
    /// No memory range covers the expected RAM base.
    RamBase(HostPhysAddr),
    /// No usable console UART, or one at another address.
    Uart {
        /// UART found through stdout-path, if any.
        found: Option<HostPhysAddr>,
        /// Expected base.
        want: HostPhysAddr,
    },
    /// No GIC, or a GIC version the board does not describe.
    GicVersion(Option<u8>),
    /// A GIC register frame is missing or elsewhere.
    GicFrame {
        /// "GICD", "GICC", "GICR", "GICH" or "GICV".
        which: &'static str,
        /// Found base.
        found: Option<HostPhysAddr>,
        /// Expected base.
        want: HostPhysAddr,
    },
    /// The CPU count is out of bounds.
    CpuCount {
        /// CPUs found.
        found: usize,
        /// Fewest accepted.
        min: usize,
        /// Most accepted.
        max: usize,
    },
    /// A CPU does not use the board's secondary-CPU method (index in the DT's list).
    EnableMethod(usize),
    /// PSCI is the secondary method but there is no psci node.
    NoPsci,
    /// The timer frequency is not one the board expects.
    TimerFreq(u64),
    /// The device tree gives the console UART another reference clock.
    UartClock {
        /// Hz found.
        found: u32,
        /// Hz expected.
        want: u32,
    },
    /// The console UART's pin-control state does not mux the expected pins.
    UartPins {
        /// The pin settings found (`None`: the UART has no pin-control state).
        found: Option<Bounded<PinMux, MAX_UART_PINS>>,
        /// What the board expects.
        want: UartPins,
    },
    /// The device tree's `dma-ranges` give another DMA limit.
    DmaLimit {
        /// The limit found and the bus that sets it.
        found: DmaLimit<'a>,
        /// The board's limit.
        want: u64,
    },
}

impl Blank for Mismatch<'_> {
    const BLANK: Self = Mismatch::Compatible;
}

impl fmt::Display for UartPins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.pins.iter().enumerate() {
            write!(f, "{}GPIO{p}", if i == 0 { "" } else { ", " })?;
        }
        write!(f, " as function {} ({})", self.function, self.function_name)
    }
}

impl UartPins {
    /// True if every expected pin has the expected function in `found`.
    pub fn satisfied_by(&self, found: &[PinMux]) -> bool {
        self.pins.iter().all(|&pin| {
            found.contains(&PinMux {
                pin,
                function: self.function,
            })
        })
    }
}

/// Formats a frequency in MHz ("54 MHz", "62.5 MHz").
struct Mhz(u64);

impl fmt::Display for Mhz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, mut frac) = (self.0 / 1_000_000, self.0 % 1_000_000);
        if frac == 0 {
            return write!(f, "{whole} MHz");
        }
        let mut digits = 6;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        write!(f, "{whole}.{frac:0digits$} MHz")
    }
}

impl fmt::Display for Mismatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Compatible => write!(f, "root compatible does not match"),
            Self::RamTooSmall { found, min } => {
                write!(f, "RAM is {} MiB, need {} MiB", found >> 20, min >> 20)
            }
            Self::RamBase(a) => write!(f, "no RAM at {a}"),
            Self::Uart {
                found: Some(a),
                want,
            } => write!(f, "console UART at {a}, expected {want}"),
            Self::Uart { found: None, want } => {
                write!(
                    f,
                    "no PL011 console in /chosen/stdout-path, expected {want}"
                )
            }
            Self::GicVersion(Some(v)) => write!(f, "GICv{v} not described by the board"),
            Self::GicVersion(None) => write!(f, "no GIC found"),
            Self::GicFrame {
                which,
                found: Some(a),
                want,
            } => write!(f, "{which} at {a}, expected {want}"),
            Self::GicFrame {
                which,
                found: None,
                want,
            } => write!(f, "{which} missing, expected at {want}"),
            Self::CpuCount { found, min, max } => {
                write!(f, "{found} CPUs, expected {min} to {max}")
            }
            Self::EnableMethod(i) => write!(f, "CPU #{i} has the wrong enable-method"),
            Self::NoPsci => write!(f, "no PSCI node"),
            Self::TimerFreq(hz) => write!(
                f,
                "timer runs at {} (CNTFRQ_EL0 or the timer node), not a frequency the board expects",
                Mhz(*hz)
            ),
            Self::UartClock { found, want } => write!(
                f,
                "console UART clock is {} in the device tree, expected {}",
                Mhz(*found as u64),
                Mhz(*want as u64)
            ),
            Self::UartPins { found: None, want } => write!(
                f,
                "console UART has no pin-control state (pinctrl-0), expected {want}"
            ),
            Self::UartPins {
                found: Some(pins),
                want,
            } => {
                write!(f, "console UART pins are ")?;
                if pins.is_empty() {
                    write!(f, "not set by its pin-control state (no brcm,pins)")?;
                }
                for (i, p) in pins.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}GPIO{} function {}", p.pin, p.function)?;
                }
                write!(f, ", expected {want}")
            }
            Self::DmaLimit { found, want } => write!(
                f,
                "DMA limit is {:#x} (dma-ranges of /{}), expected {want:#x}",
                found.limit, found.bus
            ),
        }
    }
}

/// Maximum mismatches recorded by one check.
pub const MAX_MISMATCHES: usize = 16;

/// The device tree does not fit the board description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoardError<'a> {
    /// The board checked.
    pub board: &'static str,
    /// Every difference found (up to [`MAX_MISMATCHES`]).
    pub mismatches: Bounded<Mismatch<'a>, MAX_MISMATCHES>,
}

impl fmt::Display for BoardError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "board {} does not match the device tree:", self.board)?;
        for (i, m) in self.mismatches.iter().enumerate() {
            write!(f, "{} {m}", if i == 0 { "" } else { ";" })?;
        }
        Ok(())
    }
}

fn base(r: Option<HostRange>) -> Option<HostPhysAddr> {
    r.map(|r| r.start)
}

impl BoardDesc {
    /// True if the platform's root compatible names this board.
    pub fn matches(&self, p: &HostPlatform<'_>) -> bool {
        self.compatible.iter().any(|c| p.is_compatible(c))
    }

    /// Checks the device tree, and the timer frequency `cntfrq` (CNTFRQ_EL0, read by
    /// the arch layer) if given, against the description. Lists every mismatch, or
    /// says what was verified.
    // The error carries the whole list inline because this runs before the heap
    // exists; it is called once at boot, so its size does not matter.
    #[allow(clippy::result_large_err)]
    pub fn check<'a>(
        &self,
        p: &HostPlatform<'a>,
        cntfrq: Option<u64>,
    ) -> Result<Checked<'a>, BoardError<'a>> {
        let mut ms = Bounded::<Mismatch<'a>, MAX_MISMATCHES>::new();
        let mut add = |m| {
            let _ = ms.push(m);
        };
        if !self.matches(p) {
            add(Mismatch::Compatible);
        }
        let ram = p.total_memory();
        if ram < self.min_ram {
            add(Mismatch::RamTooSmall {
                found: ram,
                min: self.min_ram,
            });
        }
        let has_base = p
            .memory
            .iter()
            .any(|r| self.ram_base.0 >= r.start.0 && self.ram_base.0 - r.start.0 < r.size);
        if !has_base {
            add(Mismatch::RamBase(self.ram_base));
        }
        let uart = p.uart.map(|u| u.base);
        if uart != Some(self.uart_base) {
            add(Mismatch::Uart {
                found: uart,
                want: self.uart_base,
            });
        }
        // The UART's clock and pins are checked only on the UART the board expects.
        if let Some(u) = p.uart.filter(|u| u.base == self.uart_base) {
            if let (Some(want), Some(found)) = (self.uart_clock_hz, u.clock_hz) {
                if found != want {
                    add(Mismatch::UartClock { found, want });
                }
            }
            if let Some(want) = self.uart_pins {
                if !u.pins.is_some_and(|f| want.satisfied_by(&f)) {
                    add(Mismatch::UartPins {
                        found: u.pins,
                        want,
                    });
                }
            }
        }
        match p.gic {
            None => add(Mismatch::GicVersion(None)),
            Some(g) => match self.gics.iter().find(|d| d.version == g.version) {
                None => add(Mismatch::GicVersion(Some(g.version))),
                Some(d) => {
                    let frames = [
                        ("GICD", Some(d.gicd), Some(g.gicd.start)),
                        ("GICC", d.gicc, base(g.gicc)),
                        ("GICR", d.gicr, base(g.gicr)),
                        ("GICH", d.gich, base(g.gich)),
                        ("GICV", d.gicv, base(g.gicv)),
                    ];
                    for (which, want, found) in frames {
                        if let Some(want) = want {
                            if found != Some(want) {
                                add(Mismatch::GicFrame { which, found, want });
                            }
                        }
                    }
                }
            },
        }
        let n = p.cpus.len();
        if n < self.min_cpus || n > self.max_cpus {
            add(Mismatch::CpuCount {
                found: n,
                min: self.min_cpus,
                max: self.max_cpus,
            });
        }
        for (i, cpu) in p.cpus.iter().enumerate() {
            let ok = cpu.enable_method == Some(self.secondary.dt_name())
                && (self.secondary != SecondaryMethod::SpinTable || cpu.release_addr.is_some());
            // The boot CPU needs no enable-method.
            let boot_cpu_without_method =
                cpu.enable_method.is_none() && cpu.mpidr == p.boot_cpuid as u64;
            if !(ok || boot_cpu_without_method) {
                add(Mismatch::EnableMethod(i));
            }
        }
        if self.secondary == SecondaryMethod::Psci && p.psci.is_none() {
            add(Mismatch::NoPsci);
        }
        let dt_timer_hz = p.timer.and_then(|t| t.clock_frequency).map(u64::from);
        let bad_dt = dt_timer_hz.filter(|hz| self.check_timer_freq(*hz).is_err());
        let bad_cnt =
            cntfrq.filter(|hz| self.check_timer_freq(*hz).is_err() && Some(*hz) != bad_dt);
        for hz in [bad_dt, bad_cnt].into_iter().flatten() {
            add(Mismatch::TimerFreq(hz));
        }
        if let (Some(want), Some(found)) = (self.dma_limit, p.dma_limit) {
            if found.limit != want {
                add(Mismatch::DmaLimit { found, want });
            }
        }
        if ms.is_empty() {
            Ok(Checked {
                desc: *self,
                ram,
                cpus: n,
                gic: p.gic.map(|g| g.version),
                timer_hz: cntfrq.or(dt_timer_hz),
                uart_clock_hz: p.uart.and_then(|u| u.clock_hz),
                dma: p.dma_limit,
            })
        } else {
            Err(BoardError {
                board: self.name,
                mismatches: ms,
            })
        }
    }

    /// Checks a timer frequency (CNTFRQ_EL0, read by the arch layer) against the
    /// board's expectations.
    pub fn check_timer_freq(&self, hz: u64) -> Result<(), Mismatch<'static>> {
        if self.timer_freqs_hz.is_empty() || self.timer_freqs_hz.iter().any(|f| *f as u64 == hz) {
            Ok(())
        } else {
            Err(Mismatch::TimerFreq(hz))
        }
    }
}

/// What a successful [`BoardDesc::check`] verified; its `Display` is the boot log's
/// one-line summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked<'a> {
    desc: BoardDesc,
    ram: u64,
    cpus: usize,
    gic: Option<u8>,
    timer_hz: Option<u64>,
    uart_clock_hz: Option<u32>,
    dma: Option<DmaLimit<'a>>,
}

impl fmt::Display for Checked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.desc;
        write!(
            f,
            "{} MiB RAM; PL011 console at {:#x}",
            self.ram >> 20,
            d.uart_base.raw()
        )?;
        if let Some(pins) = d.uart_pins {
            write!(f, " on {pins}")?;
        }
        match (d.uart_clock_hz, self.uart_clock_hz) {
            (Some(_), Some(hz)) => write!(f, ", clock {}", Mhz(hz as u64))?,
            (Some(_), None) => write!(f, ", clock set by the firmware (not in the device tree)")?,
            (None, _) => {}
        }
        if let Some(v) = self.gic {
            write!(f, "; GICv{v}")?;
        }
        if let Some(hz) = self.timer_hz {
            write!(f, "; timer {}", Mhz(hz))?;
        }
        write!(
            f,
            "; {} CPU(s), {} secondaries",
            self.cpus,
            d.secondary.dt_name()
        )?;
        match (d.dma_limit, self.dma) {
            (_, Some(dt)) => write!(f, "; DMA below {:#x} (dma-ranges of /{})", dt.limit, dt.bus),
            (Some(l), None) => write!(f, "; DMA below {l:#x} (no dma-ranges in the device tree)"),
            (None, None) => Ok(()),
        }
    }
}

/// The limit guest RAM should stay below for DMA: the lower of the board's and the
/// device tree's (either may be absent).
pub fn dma_limit(board: Option<&BoardDesc>, p: &HostPlatform<'_>) -> Option<u64> {
    let dt = p.dma_limit.map(|d| d.limit);
    match (board.and_then(|b| b.dma_limit), dt) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The board called `name`: the image's own board (it was linked for one), used for
/// messages printed before any device tree is read.
pub fn by_name(name: &str) -> Option<&'static BoardDesc> {
    BOARDS.iter().copied().find(|b| b.name == name)
}

/// The board whose root `compatible` matches the device tree, if any.
pub fn find_board(p: &HostPlatform<'_>) -> Option<&'static BoardDesc> {
    BOARDS.iter().copied().find(|b| b.matches(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dt::{self, tests::Builder};

    const GICV2: &[u8] = include_bytes!("../tests/data/qemu-virt-gicv2.dtb");
    const GICV3: &[u8] = include_bytes!("../tests/data/qemu-virt-gicv3.dtb");

    #[test]
    fn boards_by_name() {
        assert_eq!(
            by_name("qemu-virt").map(|b| b.uart_base.raw()),
            Some(0x0900_0000)
        );
        assert!(by_name("no-such-board").is_none());
    }

    #[test]
    fn qemu_virt_dtbs_match() {
        for blob in [GICV2, GICV3] {
            let p = dt::parse(blob).unwrap();
            let b = find_board(&p).expect("qemu-virt found");
            assert_eq!(b.name, "qemu-virt");
            let c = b.check(&p, Some(62_500_000)).expect("matches");
            let line = alloc::format!("{c}");
            assert!(
                line.contains("PL011 console at 0x9000000; GIC")
                    && line.contains("timer 62.5 MHz; 2 CPU(s), psci secondaries")
                    && !line.contains("DMA"),
                "{line}"
            );
            assert_eq!(dma_limit(Some(b), &p), None);
        }
        let b = find_board(&dt::parse(GICV2).unwrap()).unwrap();
        assert_eq!(b.check_timer_freq(62_500_000), Ok(()));
        assert_eq!(b.check_timer_freq(1_000_000_000), Ok(()));
        assert_eq!(
            b.check_timer_freq(54_000_000),
            Err(Mismatch::TimerFreq(54_000_000))
        );
    }

    #[test]
    fn mismatches_are_listed() {
        let mut p = dt::parse(GICV2).unwrap();
        let b = &qemu_virt::BOARD;
        p.uart = None;
        if let Some(g) = p.gic.as_mut() {
            g.gich = None;
        }
        p.psci = None;
        let e = b.check(&p, None).unwrap_err();
        assert_eq!(
            e.mismatches.as_slice(),
            &[
                Mismatch::Uart {
                    found: None,
                    want: HostPhysAddr::new(0x0900_0000)
                },
                Mismatch::GicFrame {
                    which: "GICH",
                    found: None,
                    want: HostPhysAddr::new(0x0803_0000)
                },
                Mismatch::NoPsci,
            ]
        );
        let msg = alloc::format!("{e}");
        assert!(
            msg.contains("qemu-virt") && msg.contains("GICH missing") && msg.contains("no PSCI"),
            "{msg}"
        );
    }

    fn rpi4_tree(secondary: &str) -> alloc::vec::Vec<u8> {
        crate::dt::tests::rpi4_like_with(secondary)
    }

    #[test]
    fn rpi4_tree_matches() {
        let blob = rpi4_tree("spin-table");
        let p = dt::parse(&blob).unwrap();
        let b = find_board(&p).expect("rpi4 found");
        assert_eq!(b.name, "rpi4");
        // This tree gives the UART clock (48 MHz) and muxes GPIO 14/15 in its
        // "default" state next to other pins.
        let line = alloc::format!("{}", b.check(&p, None).expect("matches"));
        assert!(line.contains(", clock 48 MHz;"), "{line}");
        assert_eq!(b.check_timer_freq(54_000_000), Ok(()));
        assert_eq!(
            by_name("rpi4").map(|b| b.uart_base.raw()),
            Some(0xfe20_1000)
        );
        // Secondaries started through PSCI are not what the board expects.
        let blob = rpi4_tree("psci");
        let p = dt::parse(&blob).unwrap();
        let e = b.check(&p, None).unwrap_err();
        assert!(e.mismatches.contains(&Mismatch::EnableMethod(1)), "{e}");
    }

    const RPI4: &[u8] = include_bytes!("../tests/data/rpi4-like.dtb");
    const RPI4_MISMATCH: &[u8] = include_bytes!("../tests/data/rpi4-like-mismatch.dtb");

    fn pm(pin: u32, function: u32) -> PinMux {
        PinMux { pin, function }
    }

    #[test]
    fn rpi4_dtb_matches_and_says_what_was_checked() {
        let p = dt::parse(RPI4).unwrap();
        let b = find_board(&p).expect("rpi4 found");
        assert_eq!(b.name, "rpi4");
        let u = p.uart.unwrap();
        assert_eq!(
            u.clock_hz, None,
            "the clock manager's rate is not in the tree"
        );
        assert_eq!(u.pins.as_deref(), Some(&[pm(14, 4), pm(15, 4)][..]));
        let c = b.check(&p, Some(54_000_000)).expect("matches");
        assert_eq!(
            alloc::format!("{c}"),
            "948 MiB RAM; PL011 console at 0xfe201000 on GPIO14, GPIO15 as function 4 (ALT0), \
             clock set by the firmware (not in the device tree); GICv2; timer 54 MHz; \
             4 CPU(s), spin-table secondaries; DMA below 0x40000000 (dma-ranges of /soc)"
        );
        assert_eq!(dma_limit(Some(b), &p), Some(1 << 30));
        assert_eq!(dma_limit(None, &p), Some(1 << 30));
        // The generic timer at another rate (CNTFRQ_EL0).
        let e = b.check(&p, Some(19_200_000)).unwrap_err();
        assert_eq!(e.mismatches.as_slice(), &[Mismatch::TimerFreq(19_200_000)]);
        assert!(
            alloc::format!("{e}").contains("timer runs at 19.2 MHz"),
            "{e}"
        );
        // QEMU's raspi4b.
        assert!(b.check(&p, Some(62_500_000)).is_ok());
        // A UART without any pin-control state.
        let mut q = p;
        if let Some(u) = q.uart.as_mut() {
            u.pins = None;
        }
        let e = b.check(&q, None).unwrap_err();
        let want = b.uart_pins.unwrap();
        assert_eq!(
            e.mismatches.as_slice(),
            &[Mismatch::UartPins { found: None, want }]
        );
        assert!(alloc::format!("{e}").contains(
            "console UART has no pin-control state (pinctrl-0), expected GPIO14, GPIO15 as function 4 (ALT0)"
        ));
        // Only GPIO 14 right is not enough.
        let mut q = p;
        let mut one = Bounded::new();
        one.push(pm(14, 4)).unwrap();
        one.push(pm(15, 7)).unwrap();
        if let Some(u) = q.uart.as_mut() {
            u.pins = Some(one);
        }
        assert!(b.check(&q, None).is_err());
    }

    #[test]
    fn rpi4_mismatches_are_named() {
        let p = dt::parse(RPI4_MISMATCH).unwrap();
        let b = find_board(&p).expect("rpi4 found");
        let e = b.check(&p, Some(54_000_000)).unwrap_err();
        let mut bt = Bounded::new();
        for pin in [30, 31, 32, 33] {
            bt.push(pm(pin, 7)).unwrap();
        }
        assert_eq!(
            e.mismatches.as_slice(),
            &[
                Mismatch::UartClock {
                    found: 3_000_000,
                    want: 48_000_000
                },
                Mismatch::UartPins {
                    found: Some(bt),
                    want: b.uart_pins.unwrap()
                },
                Mismatch::DmaLimit {
                    found: DmaLimit {
                        bus: "soc",
                        limit: 0xfc00_0000
                    },
                    want: 1 << 30
                },
            ]
        );
        assert_eq!(
            alloc::format!("{e}"),
            "board rpi4 does not match the device tree: \
             console UART clock is 3 MHz in the device tree, expected 48 MHz; \
             console UART pins are GPIO30 function 7, GPIO31 function 7, GPIO32 function 7, \
             GPIO33 function 7, expected GPIO14, GPIO15 as function 4 (ALT0); \
             DMA limit is 0xfc000000 (dma-ranges of /soc), expected 0x40000000"
        );
        // Guest RAM still stays below the lower of the two limits.
        assert_eq!(dma_limit(Some(b), &p), Some(1 << 30));
        assert_eq!(dma_limit(None, &p), Some(0xfc00_0000));
    }

    #[test]
    fn frequencies_in_mhz() {
        let f = |hz| alloc::format!("{}", Mhz(hz));
        assert_eq!(f(54_000_000), "54 MHz");
        assert_eq!(f(62_500_000), "62.5 MHz");
        assert_eq!(f(19_200_000), "19.2 MHz");
        assert_eq!(f(1_000_001), "1.000001 MHz");
        assert_eq!(f(0), "0 MHz");
    }

    #[test]
    fn unknown_board_and_small_machine() {
        let mut b = Builder::new();
        b.begin("")
            .prop("compatible", b"acme,widget\0")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[1]);
        b.begin("memory@40000000")
            .str("device_type", "memory")
            .cells("reg", &[0x4000_0000, 0x100_0000])
            .end();
        b.begin("cpus")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[0]);
        for i in 0..12u32 {
            b.begin(&alloc::format!("cpu@{i}"))
                .str("device_type", "cpu")
                .cells("reg", &[i])
                .str("enable-method", "spin-table")
                .end();
        }
        b.end();
        b.end();
        let blob = b.build();
        let p = dt::parse(&blob).unwrap();
        assert!(find_board(&p).is_none());
        let e = qemu_virt::BOARD.check(&p, None).unwrap_err();
        let m = e.mismatches.as_slice();
        assert_eq!(m[0], Mismatch::Compatible);
        assert!(m.contains(&Mismatch::RamTooSmall {
            found: 16 << 20,
            min: qemu_virt::BOARD.min_ram
        }));
        assert!(m.contains(&Mismatch::GicVersion(None)));
        assert!(m.contains(&Mismatch::CpuCount {
            found: 12,
            min: 1,
            max: 8
        }));
        assert!(m.contains(&Mismatch::EnableMethod(0)));
        assert_eq!(m.len(), MAX_MISMATCHES, "list is capped, not overflowing");
    }
}
