//! Benchmark guest: the guest-visible cost of a hypercall round trip, an emulated MMIO
//! read and a stage-2 fault resolved by the hypervisor, timed with CNTVCT_EL0.
//!
//! Each measurement runs a tight asm loop N times between two counter reads (with ISB)
//! after a short warm-up, and prints one line:
//!
//! ```text
//! bench <name> ns_per_op=<x.y> raw_ns_per_op=<x.y> iters=<N> ticks=<T> freq_hz=<F>
//! ```
//!
//! `ticks` is the raw counter delta over the N iterations, `raw_ns_per_op` is
//! ticks / N in ns, and `ns_per_op` subtracts a baseline:
//!
//! - `loop`: the empty loop (`subs`; `b.ne`), no baseline;
//! - `psci_version`: `mov x0, fid`; `hvc #0` (PSCI_VERSION) per iteration, minus `loop`;
//! - `hypercall`: the same with HV_NOP, minus `loop`;
//! - `mmio_read`: one `ldr w` of the test device's ID, minus `loop`;
//! - `stage2_fault`: HV_MEM_UNMAP_LAZY of one page then a load from it (one stage-2
//!   fault resolved by the hypervisor), minus `hypercall`'s raw cost (the pair minus
//!   the cost of an HVC round trip itself).
//!
//! Under QEMU `-icount shift=0` one instruction is 1 ns of virtual time, so ns are
//! instructions. Ends with `N passed, N failed` (a measurement that could not run, or
//! whose results were wrong, is a failure).
#![no_std]
#![no_main]

use core::arch::asm;
use core::fmt;
use core::ptr::write_volatile;

use hv_guests::harness::check_why;
use hv_guests::smccc::*;
use hv_guests::testdev::{self, BASE, ID, ID_VALUE};
use hv_guests::timer::{frequency, ticks};
use hv_guests::{check, check_eq, guest_main, println, RAM_BASE};

const N_LOOP: u64 = 10_000;
const N_HVC: u64 = 10_000;
const N_MMIO: u64 = 10_000;
const N_FAULT: u64 = 1_000;
const WARMUP: u64 = 100;
/// The page unmapped and touched by the stage-2 fault benchmark.
const FAULT_PAGE: u64 = RAM_BASE + (48 << 20);

/// A measurement: `ticks` for `iters` iterations.
#[derive(Clone, Copy)]
struct Sample {
    iters: u64,
    ticks: u64,
}

impl Sample {
    /// Hundredths of a ns per iteration.
    fn centi_ns(&self, freq: u64) -> i128 {
        let num = i128::from(self.ticks) * 100_000_000_000;
        let den = i128::from(freq) * i128::from(self.iters);
        (num + den / 2) / den
    }
}

/// Prints hundredths of a ns as a signed decimal with one digit after the point.
struct Tenths(i128);

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let t = if self.0 >= 0 {
            (self.0 + 5) / 10
        } else {
            (self.0 - 5) / 10
        };
        let sign = if t < 0 { "-" } else { "" };
        write!(f, "{sign}{}.{}", t.abs() / 10, t.abs() % 10)
    }
}

fn report(name: &str, s: Sample, baseline: Option<Sample>, freq: u64) {
    let raw = s.centi_ns(freq);
    let net = raw - baseline.map_or(0, |b| b.centi_ns(freq));
    println!(
        "bench {name} ns_per_op={} raw_ns_per_op={} iters={} ticks={} freq_hz={freq}",
        Tenths(net),
        Tenths(raw),
        s.iters,
        s.ticks
    );
}

fn empty_loop(n: u64) -> Sample {
    let t0 = ticks();
    // SAFETY: a register-only countdown loop.
    unsafe {
        asm!("1: subs {n}, {n}, #1", "b.ne 1b", n = inout(reg) n => _, options(nomem, nostack))
    };
    let t1 = ticks();
    Sample {
        iters: n,
        ticks: t1 - t0,
    }
}

/// The SMCCC call `fid` (no arguments) n times; returns the sample and the last x0.
fn hypercalls(fid: u32, n: u64) -> (Sample, u64) {
    let last: u64;
    let t0 = ticks();
    // SAFETY: n argument-less calls (HV_NOP, PSCI_VERSION); every register SMCCC lets the callee corrupt is declared.
    unsafe {
        asm!("1: mov x0, x21", "hvc #0", "subs x20, x20, #1", "b.ne 1b",
            inout("x20") n => _, in("x21") u64::from(fid), out("x0") last,
            out("x1") _, out("x2") _, out("x3") _, out("x4") _, out("x5") _, out("x6") _,
            out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
            out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
            options(nostack))
    };
    let t1 = ticks();
    (
        Sample {
            iters: n,
            ticks: t1 - t0,
        },
        last,
    )
}

/// n 32-bit reads of the test device ID; returns the sample and the last value read.
fn mmio_reads(n: u64) -> (Sample, u64) {
    let last: u64;
    let t0 = ticks();
    // SAFETY: n 32-bit loads from the test device's ID register (Device memory, no
    // side effects).
    unsafe {
        asm!("1: ldr {v:w}, [{a}]", "subs {n}, {n}, #1", "b.ne 1b",
            n = inout(reg) n => _, a = in(reg) BASE + ID, v = out(reg) last, options(nostack))
    };
    let t1 = ticks();
    (
        Sample {
            iters: n,
            ticks: t1 - t0,
        },
        last,
    )
}

/// n × (HV_MEM_UNMAP_LAZY of FAULT_PAGE, then a load from it); returns the sample, the
/// OR of every x0 and the last value loaded.
fn unmap_and_touch(n: u64) -> (Sample, u64, u64) {
    let (acc, last): (u64, u64);
    let t0 = ticks();
    // SAFETY: FAULT_PAGE is guest RAM no other code uses; the hypercall only changes its
    // stage-2 mapping (contents kept) and every clobbered register is declared.
    unsafe {
        asm!("mov x22, xzr",
            "1: mov x0, x21", "mov x1, x23", "mov x2, #4096", "hvc #0",
            "orr x22, x22, x0", "ldr x24, [x23]", "subs x20, x20, #1", "b.ne 1b",
            inout("x20") n => _, in("x21") u64::from(HV_MEM_UNMAP_LAZY), out("x22") acc,
            in("x23") FAULT_PAGE, out("x24") last,
            out("x0") _, out("x1") _, out("x2") _, out("x3") _, out("x4") _, out("x5") _,
            out("x6") _, out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _,
            out("x17") _, options(nostack))
    };
    let t1 = ticks();
    (
        Sample {
            iters: n,
            ticks: t1 - t0,
        },
        acc,
        last,
    )
}

fn run() {
    let freq = frequency();
    if !check_why("CNTFRQ_EL0 is set", freq != 0, "it reads 0") {
        return;
    }
    println!("# bench: CNTFRQ_EL0 = {freq} Hz");

    empty_loop(WARMUP);
    let base = empty_loop(N_LOOP);
    if check_why(
        "bench loop completed",
        base.ticks > 0,
        "the counter did not advance",
    ) {
        report("loop", base, None, freq);
    }

    // PSCI_VERSION: a hypercall through the PSCI path (also runs without a hypervisor).
    let version = hvc(PSCI_VERSION, 0, 0, 0);
    hypercalls(PSCI_VERSION, WARMUP);
    let (s, last) = hypercalls(PSCI_VERSION, N_HVC);
    if check_why(
        "bench psci_version completed",
        last == version && version >> 16 == 1 && s.ticks > 0,
        format_args!("last x0 {last:#x}, first {version:#x}, ticks {}", s.ticks),
    ) {
        report("psci_version", s, Some(base), freq);
    }

    let nop_works = check_eq(
        "HV_NOP returns 0 (needed by the hypercall benchmarks)",
        hvc(HV_NOP, 0, 0, 0),
        SUCCESS,
    );
    let mut hvc_sample = None;
    if nop_works {
        hypercalls(HV_NOP, WARMUP);
        let (s, last) = hypercalls(HV_NOP, N_HVC);
        if check_why(
            "bench hypercall completed",
            last == SUCCESS && s.ticks > 0,
            format_args!("last x0 {last:#x}, ticks {}", s.ticks),
        ) {
            report("hypercall", s, Some(base), freq);
            hvc_sample = Some(s);
        }
    } else {
        check_why("bench hypercall", false, "skipped");
    }

    if check(
        "test device present (needed by the MMIO benchmark)",
        testdev::present(),
    ) {
        mmio_reads(WARMUP);
        let (s, last) = mmio_reads(N_MMIO);
        if check_why(
            "bench mmio_read completed",
            last == u64::from(ID_VALUE) && s.ticks > 0,
            format_args!("last value {last:#x}, ticks {}", s.ticks),
        ) {
            report("mmio_read", s, Some(base), freq);
        }
    } else {
        check_why("bench mmio_read", false, "skipped");
    }

    if let Some(hvc_s) = hvc_sample {
        let magic = 0x5354_4147_4532_4654; // "STAGE2FT"
                                           // SAFETY: FAULT_PAGE is guest RAM reserved for this benchmark.
        unsafe { write_volatile(FAULT_PAGE as *mut u64, magic) };
        unmap_and_touch(WARMUP);
        let before = counter(COUNTER_S2_FAULTS);
        let (s, acc, last) = unmap_and_touch(N_FAULT);
        let faults = counter(COUNTER_S2_FAULTS).wrapping_sub(before);
        if check_why(
            "bench stage2_fault completed (every unmap returned 0, the page kept its contents, one resolved fault per iteration)",
            acc == SUCCESS && last == magic && faults == N_FAULT && s.ticks > 0,
            format_args!("OR of x0 {acc:#x}, last value {last:#x}, HV_COUNTER(3) +{faults} (want +{N_FAULT})"),
        ) {
            report("stage2_fault", s, Some(hvc_s), freq);
        }
    } else {
        check_why(
            "bench stage2_fault",
            false,
            "skipped: needs HV_NOP and HV_MEM_UNMAP_LAZY",
        );
    }
}

guest_main!(run);
