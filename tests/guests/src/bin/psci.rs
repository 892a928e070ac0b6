//! On-target test: hypercalls and PSCI.
//!
//! The vendor hypercall round trip (HV_NOP, unknown ids, HV_COUNTER), PSCI_VERSION
//! through HVC and SMC, PSCI_FEATURES, CPU_ON of vCPU 1 with a context id (the
//! secondary reports its MPIDR and context, then CPU_OFF), AFFINITY_INFO going
//! OFF → ON → OFF, CPU_ON errors (ALREADY_ON, INVALID_PARAMETERS), and SYSTEM_RESET:
//! the pass/fail counts are parked in the test device's PERSIST registers, the VM is
//! reset, and the second boot (RESET_COUNT = 1) restores them and carries on. The run
//! ends with SYSTEM_OFF.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use hv_guests::entry::{cpu_off_result, secondary_entry_addr, set_secondary_fn};
use hv_guests::harness::{check_read, check_why, counts, set_counts};
use hv_guests::smccc::*;
use hv_guests::testdev::{self, PERSIST0, PERSIST1, RESET_COUNT};
use hv_guests::timer::wait_until;
use hv_guests::{catch, check, check_eq, guest_main, println};

/// MPIDR of the secondary vCPU started by the test.
const SECONDARY: u64 = 1;
/// An MPIDR no vCPU has.
const NO_SUCH_CPU: u64 = 0xff;
/// Context id handed to the secondary through CPU_ON.
const CONTEXT_ID: u64 = 0x5eed_c0de_1234_5678;
/// Tag in the upper half of PERSIST0/1, telling our own counts from junk.
const PERSIST_TAG: u64 = 0x5053_4349 << 32; // "PSCI"

static SEC_STARTED: AtomicU64 = AtomicU64::new(0);
static SEC_MPIDR: AtomicU64 = AtomicU64::new(u64::MAX);
static SEC_CONTEXT: AtomicU64 = AtomicU64::new(0);
static SEC_MAY_STOP: AtomicU64 = AtomicU64::new(0);

/// Runs on vCPU 1: report, wait (boundedly) for the primary's go-ahead, return (the
/// runtime then calls CPU_OFF).
fn secondary(context: u64) {
    SEC_CONTEXT.store(context, Ordering::SeqCst);
    SEC_MPIDR.store(mpidr(), Ordering::SeqCst);
    SEC_STARTED.store(1, Ordering::SeqCst);
    wait_until(2000, || SEC_MAY_STOP.load(Ordering::SeqCst) != 0);
}

fn test_hypercalls() {
    check_eq("HV_NOP returns 0", hvc(HV_NOP, 0, 0, 0), SUCCESS);
    check_eq(
        "unknown vendor call 0x860000ff returns NOT_SUPPORTED",
        hvc(0x8600_00FF, 0, 0, 0),
        NOT_SUPPORTED,
    );
    check_eq(
        "unknown vendor call 0xc60000ff returns NOT_SUPPORTED",
        hvc(0xC600_00FF, 1, 2, 3),
        NOT_SUPPORTED,
    );
    let c0 = counter(COUNTER_HYPERCALLS);
    hvc(HV_NOP, 0, 0, 0);
    let c1 = counter(COUNTER_HYPERCALLS);
    check_why(
        "HV_COUNTER(1) counts hypercalls (2 between two reads around an HV_NOP)",
        c1.wrapping_sub(c0) == 2,
        format_args!("first {c0:#x}, second {c1:#x}"),
    );
}

fn test_version_features() {
    let v = hvc(PSCI_VERSION, 0, 0, 0);
    check_why(
        "PSCI_VERSION is 1.0 or 1.1",
        v == 0x1_0000 || v == 0x1_0001,
        format_args!("got {v:#x}"),
    );
    let (r, fault) = catch(|| smc(PSCI_VERSION, 0, 0, 0));
    match fault {
        None => check_eq("PSCI_VERSION through SMC matches HVC", r, v),
        Some(f) => check_why(
            "PSCI_VERSION through SMC matches HVC",
            false,
            format_args!("smc #0 raised an exception, ESR_EL1={:#x}", f.esr),
        ),
    };
    for (name, fid) in [
        ("PSCI_VERSION", PSCI_VERSION),
        ("CPU_OFF", PSCI_CPU_OFF),
        ("CPU_ON", PSCI_CPU_ON),
        ("AFFINITY_INFO", PSCI_AFFINITY_INFO),
        ("SYSTEM_OFF", PSCI_SYSTEM_OFF),
        ("SYSTEM_RESET", PSCI_SYSTEM_RESET),
        ("PSCI_FEATURES", PSCI_FEATURES),
    ] {
        check_eq(
            format_args!("PSCI_FEATURES({name} {fid:#x}) = 0 (supported)"),
            hvc(PSCI_FEATURES, u64::from(fid), 0, 0),
            SUCCESS,
        );
    }
    check_eq(
        "PSCI_FEATURES(unknown 0x8400001f) = NOT_SUPPORTED",
        hvc(PSCI_FEATURES, 0x8400_001f, 0, 0),
        NOT_SUPPORTED,
    );
}

fn affinity(mpidr: u64) -> u64 {
    hvc(PSCI_AFFINITY_INFO, mpidr, 0, 0)
}

fn test_cpus() {
    check_eq("AFFINITY_INFO(self) = ON", affinity(mpidr()), AFF_ON);
    check_eq(
        "AFFINITY_INFO(vCPU 1) = OFF before CPU_ON",
        affinity(SECONDARY),
        AFF_OFF,
    );
    check_eq(
        "CPU_ON of a nonexistent MPIDR 0xff = INVALID_PARAMETERS",
        hvc(PSCI_CPU_ON, NO_SUCH_CPU, secondary_entry_addr(), 0),
        INVALID_PARAMETERS,
    );
    check_eq(
        "CPU_ON of the calling vCPU = ALREADY_ON",
        hvc(PSCI_CPU_ON, mpidr(), secondary_entry_addr(), 0),
        ALREADY_ON,
    );

    set_secondary_fn(secondary);
    let r = hvc(PSCI_CPU_ON, SECONDARY, secondary_entry_addr(), CONTEXT_ID);
    if !check_eq("CPU_ON(vCPU 1) = SUCCESS", r, SUCCESS) {
        return;
    }
    let started = wait_until(1000, || SEC_STARTED.load(Ordering::SeqCst) != 0);
    if !check("vCPU 1 runs at the CPU_ON entry point", started) {
        return;
    }
    check_eq(
        "vCPU 1 receives the context id in x0",
        SEC_CONTEXT.load(Ordering::SeqCst),
        CONTEXT_ID,
    );
    check_eq(
        "vCPU 1 reads MPIDR_EL1 affinity 1",
        SEC_MPIDR.load(Ordering::SeqCst),
        SECONDARY,
    );
    check_eq(
        "AFFINITY_INFO(vCPU 1) = ON while it runs",
        affinity(SECONDARY),
        AFF_ON,
    );
    check_eq(
        "CPU_ON of the running vCPU 1 = ALREADY_ON",
        hvc(PSCI_CPU_ON, SECONDARY, secondary_entry_addr(), 0),
        ALREADY_ON,
    );
    SEC_MAY_STOP.store(1, Ordering::SeqCst);
    let mut last = AFF_ON;
    let off = wait_until(1000, || {
        last = affinity(SECONDARY);
        last == AFF_OFF
    });
    check_why(
        "AFFINITY_INFO(vCPU 1) = OFF after its CPU_OFF",
        off,
        format_args!("still {last:#x} after 1 s"),
    );
    check_eq("CPU_OFF did not return on vCPU 1", cpu_off_result(), 0);
}

/// First boot: park the counts in PERSIST0/1 and reset the VM.
fn system_reset() {
    let probe = 0x1234_5678_9abc_def0;
    let ok = testdev::write64(PERSIST0, probe) && testdev::write64(PERSIST1, !probe);
    check_why(
        "PERSIST0/1 read back what was written",
        ok && testdev::read64(PERSIST0) == Some(probe) && testdev::read64(PERSIST1) == Some(!probe),
        "write or read-back failed",
    );
    let (p, f) = counts();
    // Counted now, verified after the reset: the reset itself is one more pass.
    let ok = testdev::write64(PERSIST0, PERSIST_TAG | u64::from(p))
        && testdev::write64(PERSIST1, PERSIST_TAG | u64::from(f));
    if !check("PERSIST0/1 store the counts before SYSTEM_RESET", ok) {
        return;
    }
    println!("# calling SYSTEM_RESET ({p} passed, {f} failed so far)");
    let r = hvc(PSCI_SYSTEM_RESET, 0, 0, 0);
    check_why(
        "SYSTEM_RESET does not return",
        false,
        format_args!("it returned {r:#x}"),
    );
}

/// Second boot (RESET_COUNT = 1): restore the counts and check the reset VM.
fn after_reset() {
    let p0 = testdev::read64(PERSIST0).unwrap_or(0);
    let p1 = testdev::read64(PERSIST1).unwrap_or(0);
    let tagged = p0 & !0xffff_ffff == PERSIST_TAG && p1 & !0xffff_ffff == PERSIST_TAG;
    if tagged {
        set_counts(p0 as u32, p1 as u32);
    }
    println!("# back from SYSTEM_RESET");
    check_why(
        "SYSTEM_RESET restarts the VM at its entry point, RESET_COUNT = 1, PERSIST0/1 kept",
        tagged,
        format_args!("PERSIST0 {p0:#x}, PERSIST1 {p1:#x}"),
    );
    check_eq(
        "AFFINITY_INFO(vCPU 1) = OFF after SYSTEM_RESET",
        affinity(SECONDARY),
        AFF_OFF,
    );
    check_eq(
        "HV_NOP still returns 0 after SYSTEM_RESET",
        hvc(HV_NOP, 0, 0, 0),
        SUCCESS,
    );
    SEC_MAY_STOP.store(1, Ordering::SeqCst);
    set_secondary_fn(secondary);
    let r = hvc(
        PSCI_CPU_ON,
        SECONDARY,
        secondary_entry_addr(),
        CONTEXT_ID ^ 1,
    );
    if check_eq("CPU_ON(vCPU 1) after SYSTEM_RESET = SUCCESS", r, SUCCESS) {
        let started = wait_until(1000, || SEC_STARTED.load(Ordering::SeqCst) != 0);
        check_why(
            "vCPU 1 starts again after SYSTEM_RESET, with the new context id",
            started && SEC_CONTEXT.load(Ordering::SeqCst) == CONTEXT_ID ^ 1,
            format_args!(
                "started {started}, context {:#x}",
                SEC_CONTEXT.load(Ordering::SeqCst)
            ),
        );
        let off = wait_until(1000, || affinity(SECONDARY) == AFF_OFF);
        check("AFFINITY_INFO(vCPU 1) = OFF again after its CPU_OFF", off);
    }
}

fn run() {
    let present = testdev::present();
    let resets = testdev::read32(RESET_COUNT);
    match (present, resets) {
        (true, Some(1)) => return after_reset(),
        (true, Some(0)) | (false, _) => {}
        (true, other) => {
            check_read("RESET_COUNT is 0 or 1", other.map(u64::from), 0);
            return;
        }
    }
    test_hypercalls();
    test_version_features();
    test_cpus();
    if check(
        "test device present (ID reads 0x48565444), RESET_COUNT = 0",
        present,
    ) {
        system_reset();
    } else {
        check_why(
            "SYSTEM_RESET",
            false,
            "skipped: needs the test device's PERSIST registers",
        );
    }
}

guest_main!(run);
