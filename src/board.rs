//! Board descriptions (data in `boards/`) and their check against the host device tree.
//!
//! Core code never branches on a board's name: [`find_board`] picks the description by
//! the device tree's root `compatible`, and [`BoardDesc::check`] reports every way the
//! machine differs from what the description expects.

use core::fmt;

use crate::addr::{HostPhysAddr, HostRange};
use crate::dt::{Blank, Bounded, HostPlatform};

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
pub enum Mismatch {
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
}

impl Blank for Mismatch {
    const BLANK: Self = Mismatch::Compatible;
}

impl fmt::Display for Mismatch {
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
            Self::TimerFreq(hz) => write!(f, "timer runs at {hz} Hz, not an expected frequency"),
        }
    }
}

/// Maximum mismatches recorded by one check.
pub const MAX_MISMATCHES: usize = 16;

/// The device tree does not fit the board description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoardError {
    /// The board checked.
    pub board: &'static str,
    /// Every difference found (up to [`MAX_MISMATCHES`]).
    pub mismatches: Bounded<Mismatch, MAX_MISMATCHES>,
}

impl fmt::Display for BoardError {
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

    /// Checks the device tree against the description and lists every mismatch.
    // The error carries the whole list inline because this runs before the heap
    // exists; it is called once at boot, so its size does not matter.
    #[allow(clippy::result_large_err)]
    pub fn check(&self, p: &HostPlatform<'_>) -> Result<(), BoardError> {
        let mut ms = Bounded::<Mismatch, MAX_MISMATCHES>::new();
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
        if let Some(hz) = p.timer.and_then(|t| t.clock_frequency) {
            if let Err(e) = self.check_timer_freq(hz as u64) {
                add(e);
            }
        }
        if ms.is_empty() {
            Ok(())
        } else {
            Err(BoardError {
                board: self.name,
                mismatches: ms,
            })
        }
    }

    /// Checks a timer frequency (CNTFRQ_EL0, read by the arch layer) against the
    /// board's expectations.
    pub fn check_timer_freq(&self, hz: u64) -> Result<(), Mismatch> {
        if self.timer_freqs_hz.is_empty() || self.timer_freqs_hz.iter().any(|f| *f as u64 == hz) {
            Ok(())
        } else {
            Err(Mismatch::TimerFreq(hz))
        }
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
            assert_eq!(b.check(&p), Ok(()));
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
        let e = b.check(&p).unwrap_err();
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
        assert_eq!(b.check(&p), Ok(()));
        assert_eq!(b.check_timer_freq(54_000_000), Ok(()));
        assert_eq!(
            by_name("rpi4").map(|b| b.uart_base.raw()),
            Some(0xfe20_1000)
        );
        // Secondaries started through PSCI are not what the board expects.
        let blob = rpi4_tree("psci");
        let p = dt::parse(&blob).unwrap();
        let e = b.check(&p).unwrap_err();
        assert!(e.mismatches.contains(&Mismatch::EnableMethod(1)), "{e}");
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
        let e = qemu_virt::BOARD.check(&p).unwrap_err();
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
