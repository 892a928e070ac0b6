//! psci32: PSCI and the hypervisor's vendor hypercalls for an AArch32 guest (SVC mode, ARM
//! state, MMU off), every call through `hvc #0` with SMC32 function IDs.
//!
//! The entry state (SVC mode, A/I/F masked, r0 = 0, r1 = ~0, r2 = a device tree), the
//! vendor calls (HV_NOP, unknown IDs, HV_COUNTER), SMC64 function IDs (CPU_ON,
//! AFFINITY_INFO, HV_MEM_PROTECT, HV_MEM_UNMAP_LAZY), which an AArch32 caller cannot use
//! and which must return NOT_SUPPORTED without effect, PSCI_VERSION through HVC and SMC,
//! PSCI_FEATURES, CPU_ON of vCPU 1 with a context ID (the secondary runs on a stack of its
//! own, reports its entry state, MPIDR, an MMIO read and a hypercall, then calls CPU_OFF),
//! AFFINITY_INFO going OFF -> ON -> OFF, bad arguments (no such MPIDR, an entry point
//! outside RAM, ALREADY_ON) and SYSTEM_RESET: the pass/fail counts are parked in RAM below
//! the image (the test device's PERSIST registers take 64-bit accesses only, which A32
//! cannot make with a valid syndrome), the VM is reset, and the second boot (RESET_COUNT
//! = 1) restores them, checks the reset VM and starts vCPU 1 again. Expected values come
//! from the PSCI specification (DEN0022), the SMC Calling Convention (DEN0028) and
//! docs/GUEST-ABI.md, never from observed output.
#![no_std]
#![no_main]
// A failure carries its message inline (no allocator); only failures build one.
#![allow(clippy::result_large_err)]

use core::arch::global_asm;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU32, Ordering};

use guests32::arch::{self, hvc};
use guests32::harness::{self, catch, check, check_eq, record, Msg};
use guests32::println;

// PSCI function IDs (SMC32 unless marked SMC64).
const PSCI_VERSION: u32 = 0x8400_0000;
const PSCI_CPU_OFF: u32 = 0x8400_0002;
const PSCI_CPU_ON: u32 = 0x8400_0003;
const PSCI_AFFINITY_INFO: u32 = 0x8400_0004;
const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
const PSCI_SYSTEM_RESET: u32 = 0x8400_0009;
const PSCI_FEATURES: u32 = 0x8400_000A;
const PSCI_CPU_ON_64: u32 = 0xC400_0003;
const PSCI_AFFINITY_INFO_64: u32 = 0xC400_0004;

// The hypervisor's vendor calls (docs/GUEST-ABI.md).
const HV_NOP: u32 = 0x8600_0000;
const HV_MEM_PROTECT: u32 = 0xC600_0001;
const HV_MEM_UNMAP_LAZY: u32 = 0xC600_0002;
const HV_COUNTER: u32 = 0x8600_0003;
const COUNTER_HYPERCALLS: u32 = 1;

// PSCI / SMCCC return codes, as the 32-bit r0 value.
const SUCCESS: u32 = 0;
const NOT_SUPPORTED: u32 = -1i32 as u32;
const INVALID_PARAMETERS: u32 = -2i32 as u32;
const ALREADY_ON: u32 = -4i32 as u32;
const INVALID_ADDRESS: u32 = -9i32 as u32;

// AFFINITY_INFO results.
const AFF_ON: u32 = 0;
const AFF_OFF: u32 = 1;

/// The test device (docs/GUEST-ABI.md): ID, SCRATCH and RESET_COUNT.
const TESTDEV: u32 = 0x0b00_0000;
const ID_VALUE: u32 = 0x4856_5444;
const SCRATCH: u32 = 0x08;
const RESET_COUNT: u32 = 0x10;

/// Guest RAM base; the image is at RAM base + 0x8_0000.
const RAM_BASE: u32 = 0x4000_0000;
/// Where the counts wait out SYSTEM_RESET: RAM below the image, which the hypervisor
/// reloads (with the device tree at the top of RAM) but does not clear.
const PARK: u32 = RAM_BASE + 0x1000;
/// A page of RAM nothing uses (the SMC64 memory calls name it).
const SPARE_PAGE: u32 = RAM_BASE + 0x20_0000;
/// An entry point outside guest RAM.
const BAD_ENTRY: u32 = 0x1000_0000;

/// MPIDR (Aff0) of the secondary vCPU the test starts.
const SECONDARY: u32 = 1;
/// An MPIDR no vCPU has.
const NO_SUCH_CPU: u32 = 0xff;
/// Context ID handed to the secondary through CPU_ON.
const CONTEXT_ID: u32 = 0x5eed_c0de;
/// Tag of the parked counts ("PSCI").
const PARK_TAG: u32 = 0x5053_4349;

/// CPSR at entry: SVC mode (0x13), ARM state, A/I/F masked, little-endian.
const CPSR_ENTRY_MASK: u32 = 0x3ff;
const CPSR_ENTRY_WANT: u32 = 0x1d3;
/// SCTLR.M (MMU) and SCTLR.C (data cache).
const SCTLR_M_C: u32 = 0b101;
/// The FDT header magic, big-endian in memory.
const FDT_MAGIC: u32 = 0xd00d_feed;

/// What the secondary reports (written by it, read by the primary).
static SEC_STARTED: AtomicU32 = AtomicU32::new(0);
static SEC_CONTEXT: AtomicU32 = AtomicU32::new(0);
static SEC_CPSR: AtomicU32 = AtomicU32::new(0);
static SEC_SCTLR: AtomicU32 = AtomicU32::new(0);
static SEC_MPIDR: AtomicU32 = AtomicU32::new(0);
static SEC_SP: AtomicU32 = AtomicU32::new(0);
static SEC_ID: AtomicU32 = AtomicU32::new(0);
static SEC_NOP: AtomicU32 = AtomicU32::new(0);
/// Set by the primary: the secondary may call CPU_OFF.
static SEC_MAY_STOP: AtomicU32 = AtomicU32::new(0);
/// 1 once CPU_OFF returned on the secondary (it must not), with its result.
static CPU_OFF_RETURNED: AtomicU32 = AtomicU32::new(0);
static CPU_OFF_RESULT: AtomicU32 = AtomicU32::new(0);

// The secondary's entry point for CPU_ON: it records the CPSR and SCTLR it was entered
// with, masks interrupts, takes its own stacks (SVC, and ABT/UND in case of a fault), uses
// the shared vector table and calls `psci32_secondary(context ID, CPSR, SCTLR)`.
global_asm!(
    r#"
    .section .text.psci32_secondary, "ax"
    .arm
    .balign 8
    .global psci32_secondary_entry
psci32_secondary_entry:
    mrs r1, cpsr
    mrc p15, 0, r2, c1, c0, 0
    cpsid aif
    cps #0x17
    ldr sp, =psci32_sec_abt_top
    cps #0x1b
    ldr sp, =psci32_sec_und_top
    cps #0x13
    ldr sp, =PSCI32_SEC_STACK_TOP
    ldr r3, =g32_vectors
    mcr p15, 0, r3, c12, c0, 0
    isb
    bl psci32_secondary
1:  wfi
    b 1b
    .ltorg

    .section .bss.psci32_sec_stacks, "aw", %nobits
    .balign 16
    .global PSCI32_SEC_STACK_BOTTOM
PSCI32_SEC_STACK_BOTTOM:
    .space 0x4000
    .global PSCI32_SEC_STACK_TOP
PSCI32_SEC_STACK_TOP:
    .space 0x400
psci32_sec_abt_top:
    .space 0x400
psci32_sec_und_top:
"#
);

extern "C" {
    fn psci32_secondary_entry();
    static PSCI32_SEC_STACK_BOTTOM: u8;
    static PSCI32_SEC_STACK_TOP: u8;
}

/// The entry point to pass to CPU_ON (ARM state: bit 0 clear).
fn secondary_entry() -> u32 {
    psci32_secondary_entry as unsafe extern "C" fn() as usize as u32
}

/// The secondary's SVC stack: [bottom, top).
fn secondary_stack() -> (u32, u32) {
    (
        core::ptr::addr_of!(PSCI32_SEC_STACK_BOTTOM) as u32,
        core::ptr::addr_of!(PSCI32_SEC_STACK_TOP) as u32,
    )
}

/// The current stack pointer.
fn sp() -> u32 {
    let v: u32;
    // SAFETY: reads SP into a register; no memory access, no side effects.
    unsafe {
        core::arch::asm!("mov {0}, sp", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Runs on vCPU 1 (SVC mode, its own stack): reports, waits (boundedly) for the primary's
/// go-ahead, then calls CPU_OFF, which must not return.
#[no_mangle]
extern "C" fn psci32_secondary(context: u32, cpsr: u32, sctlr: u32) -> ! {
    arch::use_vbar();
    SEC_CONTEXT.store(context, Ordering::SeqCst);
    SEC_CPSR.store(cpsr, Ordering::SeqCst);
    SEC_SCTLR.store(sctlr, Ordering::SeqCst);
    SEC_MPIDR.store(arch::mpidr(), Ordering::SeqCst);
    SEC_SP.store(sp(), Ordering::SeqCst);
    // SAFETY: a 32-bit read of the test device's ID register (Device memory with the
    // MMU off); the device is there under the hypervisor, which is what this tests.
    let id = unsafe { core::ptr::read_volatile(TESTDEV as *const u32) };
    SEC_ID.store(id, Ordering::SeqCst);
    SEC_NOP.store(hvc(HV_NOP, 0, 0, 0), Ordering::SeqCst);
    SEC_STARTED.store(1, Ordering::SeqCst);
    arch::wait_until(2000, || SEC_MAY_STOP.load(Ordering::SeqCst) != 0);
    let r = hvc(PSCI_CPU_OFF, 0, 0, 0);
    CPU_OFF_RESULT.store(r, Ordering::SeqCst);
    CPU_OFF_RETURNED.store(1, Ordering::SeqCst);
    loop {
        core::hint::spin_loop();
    }
}

/// AFFINITY_INFO(`mpidr`, level 0).
fn affinity(mpidr: u32) -> u32 {
    hvc(PSCI_AFFINITY_INFO, mpidr, 0, 0)
}

/// This vCPU's affinity fields (MPIDR bits 23:0).
fn my_mpidr() -> u32 {
    arch::mpidr() & 0x00ff_ffff
}

/// A 32-bit read of a test device register, `None` if it aborted.
fn dev_read(off: u32) -> Option<u32> {
    // SAFETY: one 32-bit load from the test device page (Device memory with the MMU
    // off); an abort is recorded and skipped by the vector.
    let (v, f, _) = catch(|| unsafe { core::ptr::read_volatile((TESTDEV + off) as *const u32) });
    f.is_none().then_some(v)
}

/// A 32-bit write of a test device register; false if it aborted.
fn dev_write(off: u32, v: u32) -> bool {
    // SAFETY: one 32-bit store to the test device page; an abort is recorded and skipped.
    let ((), f, _) = catch(|| unsafe { core::ptr::write_volatile((TESTDEV + off) as *mut u32, v) });
    f.is_none()
}

/// The entry state `guest32_main` was called with (docs/GUEST-ABI.md: SVC mode, A/I/F
/// masked, MMU and caches off, r0 = 0, r1 = ~0, r2 = the device tree); `when` prefixes
/// the case names.
fn check_entry(when: &str, r0: u32, r1: u32, r2: u32, cpsr: u32, sctlr: u32) {
    check(
        format_args!("{when}entered in SVC mode, ARM state, A/I/F masked, MMU and data cache off"),
        cpsr & CPSR_ENTRY_MASK == CPSR_ENTRY_WANT && sctlr & SCTLR_M_C == 0,
        format_args!("CPSR {cpsr:#010x}, SCTLR {sctlr:#010x}"),
    );
    check(
        format_args!("{when}entered with r0 = 0, r1 = 0xffffffff"),
        r0 == 0 && r1 == u32::MAX,
        format_args!("r0 {r0:#010x}, r1 {r1:#010x}"),
    );
    let in_ram = (RAM_BASE..0xe000_0000).contains(&r2) && r2.is_multiple_of(4);
    let magic = if in_ram {
        // SAFETY: a word of guest RAM (checked above) that the hypervisor says holds the
        // device tree; reading it has no side effects.
        let (v, f, _) = catch(|| unsafe { core::ptr::read_volatile(r2 as *const u32) });
        f.is_none().then(|| u32::from_be(v))
    } else {
        None
    };
    check(
        format_args!("{when}entered with r2 pointing at a device tree in RAM (FDT magic)"),
        magic == Some(FDT_MAGIC),
        format_args!("r2 {r2:#010x}, magic {magic:x?}"),
    );
}

fn test_hypercalls() {
    check_eq("HV_NOP returns 0", hvc(HV_NOP, 0, 0, 0), SUCCESS);
    check_eq(
        "unknown vendor call 0x860000ff returns NOT_SUPPORTED",
        hvc(0x8600_00ff, 0, 0, 0),
        NOT_SUPPORTED,
    );
    let c0 = hvc(HV_COUNTER, COUNTER_HYPERCALLS, 0, 0);
    hvc(HV_NOP, 0, 0, 0);
    let c1 = hvc(HV_COUNTER, COUNTER_HYPERCALLS, 0, 0);
    check(
        "HV_COUNTER(1) counts hypercalls (2 between two reads around an HV_NOP)",
        c1.wrapping_sub(c0) == 2,
        format_args!("first {c0:#x}, second {c1:#x}"),
    );
}

/// SMC64 function IDs are not available to an AArch32 caller (SMCCC): each returns
/// NOT_SUPPORTED, with arguments the SMC32/SMC64 call would accept, and has no effect.
fn test_smc64() {
    check_eq(
        "unknown SMC64 vendor call 0xc60000ff returns NOT_SUPPORTED",
        hvc(0xc600_00ff, 1, 2, 3),
        NOT_SUPPORTED,
    );
    check_eq(
        "AFFINITY_INFO SMC64 (0xc4000004) of self returns NOT_SUPPORTED",
        hvc(PSCI_AFFINITY_INFO_64, my_mpidr(), 0, 0),
        NOT_SUPPORTED,
    );
    check_eq(
        "HV_MEM_PROTECT (SMC64 0xc6000001) of a RAM page returns NOT_SUPPORTED",
        hvc(HV_MEM_PROTECT, SPARE_PAGE, 4096, 7),
        NOT_SUPPORTED,
    );
    check_eq(
        "HV_MEM_UNMAP_LAZY (SMC64 0xc6000002) of a RAM page returns NOT_SUPPORTED",
        hvc(HV_MEM_UNMAP_LAZY, SPARE_PAGE, 4096, 0),
        NOT_SUPPORTED,
    );
    let r = hvc(PSCI_CPU_ON_64, SECONDARY, secondary_entry(), CONTEXT_ID);
    let started = arch::wait_until(100, || SEC_STARTED.load(Ordering::SeqCst) != 0);
    let aff = affinity(SECONDARY);
    check(
        "CPU_ON SMC64 (0xc4000003) of vCPU 1 returns NOT_SUPPORTED and starts nothing",
        r == NOT_SUPPORTED && !started && aff == AFF_OFF,
        format_args!("returned {r:#x}, secondary started {started}, AFFINITY_INFO {aff:#x}"),
    );
}

fn test_version_features() {
    let v = hvc(PSCI_VERSION, 0, 0, 0);
    check(
        "PSCI_VERSION is 1.0 or 1.1",
        v == 0x1_0000 || v == 0x1_0001,
        format_args!("got {v:#x}"),
    );
    let (r, fault, _) = catch(|| arch::smc(PSCI_VERSION, 0, 0, 0));
    match fault {
        None => check_eq("PSCI_VERSION through SMC matches HVC", r, v),
        Some(f) => record(
            "PSCI_VERSION through SMC matches HVC",
            Err(Msg::from_args(format_args!(
                "smc #0 raised an exception: {f}"
            ))),
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
            hvc(PSCI_FEATURES, fid, 0, 0),
            SUCCESS,
        );
    }
    check_eq(
        "PSCI_FEATURES(unknown 0x8400001f) = NOT_SUPPORTED",
        hvc(PSCI_FEATURES, 0x8400_001f, 0, 0),
        NOT_SUPPORTED,
    );
    // SMCCC: the SMC64 functions are not available to an AArch32 caller.
    check_eq(
        "PSCI_FEATURES(CPU_ON64 0xc4000003) = NOT_SUPPORTED from AArch32",
        hvc(PSCI_FEATURES, PSCI_CPU_ON_64, 0, 0),
        NOT_SUPPORTED,
    );
}

/// Starts vCPU 1 with `context` and checks what it reports; false if it did not start.
fn start_secondary(what: &str, context: u32) -> bool {
    let r = hvc(PSCI_CPU_ON, SECONDARY, secondary_entry(), context);
    if !check_eq(format_args!("CPU_ON(vCPU 1){what} = SUCCESS"), r, SUCCESS) {
        return false;
    }
    let started = arch::wait_until(1000, || SEC_STARTED.load(Ordering::SeqCst) != 0);
    if !check(
        format_args!("vCPU 1 runs at the CPU_ON entry point{what}"),
        started,
        format_args!("it did not report within 1 s"),
    ) {
        return false;
    }
    check_eq(
        format_args!("vCPU 1 receives the context ID in r0{what}"),
        SEC_CONTEXT.load(Ordering::SeqCst),
        context,
    );
    let cpsr = SEC_CPSR.load(Ordering::SeqCst);
    let sctlr = SEC_SCTLR.load(Ordering::SeqCst);
    check(
        format_args!(
            "vCPU 1 starts in SVC mode, ARM state, A/I/F masked, MMU and data cache off{what}"
        ),
        cpsr & CPSR_ENTRY_MASK == CPSR_ENTRY_WANT && sctlr & SCTLR_M_C == 0,
        format_args!("CPSR {cpsr:#010x}, SCTLR {sctlr:#010x}"),
    );
    let (bottom, top) = secondary_stack();
    let sp = SEC_SP.load(Ordering::SeqCst);
    check(
        format_args!("vCPU 1 runs on its own stack{what}"),
        (bottom..top).contains(&sp),
        format_args!("sp {sp:#010x}, its stack {bottom:#010x}..{top:#010x}"),
    );
    true
}

fn test_cpus() {
    let me = my_mpidr();
    check_eq("AFFINITY_INFO(self) = ON", affinity(me), AFF_ON);
    check_eq(
        "AFFINITY_INFO(vCPU 1) = OFF before CPU_ON",
        affinity(SECONDARY),
        AFF_OFF,
    );
    check_eq(
        "AFFINITY_INFO of a nonexistent MPIDR 0xff = INVALID_PARAMETERS",
        affinity(NO_SUCH_CPU),
        INVALID_PARAMETERS,
    );
    check_eq(
        "CPU_ON of a nonexistent MPIDR 0xff = INVALID_PARAMETERS",
        hvc(PSCI_CPU_ON, NO_SUCH_CPU, secondary_entry(), 0),
        INVALID_PARAMETERS,
    );
    check_eq(
        "CPU_ON of the calling vCPU = ALREADY_ON",
        hvc(PSCI_CPU_ON, me, secondary_entry(), 0),
        ALREADY_ON,
    );
    let r = hvc(PSCI_CPU_ON, SECONDARY, BAD_ENTRY, 0);
    let aff = affinity(SECONDARY);
    check(
        "CPU_ON(vCPU 1) with an entry point outside RAM = INVALID_ADDRESS, vCPU 1 stays OFF",
        r == INVALID_ADDRESS && aff == AFF_OFF,
        format_args!("returned {r:#x}, AFFINITY_INFO {aff:#x}"),
    );

    if !start_secondary("", CONTEXT_ID) {
        return;
    }
    check_eq(
        "vCPU 1 reads MPIDR affinity 1",
        SEC_MPIDR.load(Ordering::SeqCst) & 0x00ff_ffff,
        SECONDARY,
    );
    check_eq(
        "vCPU 1 reads the test device's ID (MMIO from the second vCPU)",
        SEC_ID.load(Ordering::SeqCst),
        ID_VALUE,
    );
    check_eq(
        "HV_NOP from vCPU 1 returns 0",
        SEC_NOP.load(Ordering::SeqCst),
        SUCCESS,
    );
    check_eq(
        "AFFINITY_INFO(vCPU 1) = ON while it runs",
        affinity(SECONDARY),
        AFF_ON,
    );
    check_eq(
        "CPU_ON of the running vCPU 1 = ALREADY_ON",
        hvc(PSCI_CPU_ON, SECONDARY, secondary_entry(), 0),
        ALREADY_ON,
    );
    SEC_MAY_STOP.store(1, Ordering::SeqCst);
    let mut last = AFF_ON;
    let off = arch::wait_until(1000, || {
        last = affinity(SECONDARY);
        last == AFF_OFF
    });
    check(
        "AFFINITY_INFO(vCPU 1) = OFF after its CPU_OFF",
        off,
        format_args!("still {last:#x} after 1 s"),
    );
    check(
        "CPU_OFF did not return on vCPU 1",
        CPU_OFF_RETURNED.load(Ordering::SeqCst) == 0,
        format_args!("it returned {:#x}", CPU_OFF_RESULT.load(Ordering::SeqCst)),
    );
}

/// The counts parked across SYSTEM_RESET: tag, passed, failed, and a check word.
fn park(passed: u32, failed: u32) {
    let words = [PARK_TAG, passed, failed, !(PARK_TAG ^ passed ^ failed)];
    for (i, w) in words.iter().enumerate() {
        // SAFETY: RAM below the image (PARK..PARK + 16), which holds no Rust object and
        // which nothing else uses; with the MMU off the write goes straight to memory.
        unsafe { core::ptr::write_volatile((PARK + 4 * i as u32) as *mut u32, *w) };
    }
    arch::dsb();
}

/// The parked counts, if the words there are a valid record; the record is cleared.
fn unpark() -> Option<(u32, u32)> {
    let mut w = [0u32; 4];
    for (i, v) in w.iter_mut().enumerate() {
        // SAFETY: as in `park`: reads and then clears the four words at PARK.
        unsafe {
            *v = core::ptr::read_volatile((PARK + 4 * i as u32) as *const u32);
            core::ptr::write_volatile((PARK + 4 * i as u32) as *mut u32, 0);
        }
    }
    (w[0] == PARK_TAG && w[3] == !(PARK_TAG ^ w[1] ^ w[2])).then_some((w[1], w[2]))
}

/// First boot: leave a mark in SCRATCH, park the counts and reset the VM.
fn system_reset() {
    let ok = dev_write(SCRATCH, 0x5a5a_0001) && dev_write(SCRATCH + 4, 0xa5a5_0002);
    check(
        "SCRATCH reads back what was written before SYSTEM_RESET",
        ok && dev_read(SCRATCH) == Some(0x5a5a_0001) && dev_read(SCRATCH + 4) == Some(0xa5a5_0002),
        format_args!("write or read-back failed"),
    );
    // Counted now, verified after the reset: the reset itself is one more pass.
    let (p, f) = harness::counts();
    park(p, f);
    println!("# calling SYSTEM_RESET ({p} passed, {f} failed so far)");
    let r = hvc(PSCI_SYSTEM_RESET, 0, 0, 0);
    check(
        "SYSTEM_RESET does not return",
        false,
        format_args!("it returned {r:#x}"),
    );
}

/// Second boot (RESET_COUNT = 1): restore the counts and check the reset VM.
fn after_reset(r0: u32, r1: u32, r2: u32, cpsr: u32, sctlr: u32) {
    let parked = unpark();
    if let Some((p, f)) = parked {
        harness::set_counts(p, f);
    }
    println!("# back from SYSTEM_RESET");
    check(
        "SYSTEM_RESET restarts the VM at its entry point, RESET_COUNT = 1, RAM kept",
        parked.is_some(),
        format_args!("no valid record of the counts at {PARK:#010x}"),
    );
    check_entry("after SYSTEM_RESET, ", r0, r1, r2, cpsr, sctlr);
    let s = (dev_read(SCRATCH), dev_read(SCRATCH + 4));
    check(
        "SCRATCH reads 0 after SYSTEM_RESET",
        s == (Some(0), Some(0)),
        format_args!("read {s:x?}"),
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
    if start_secondary(" after SYSTEM_RESET", CONTEXT_ID ^ 1) {
        let off = arch::wait_until(1000, || affinity(SECONDARY) == AFF_OFF);
        check(
            "AFFINITY_INFO(vCPU 1) = OFF again after its CPU_OFF",
            off,
            format_args!("still not OFF after 1 s"),
        );
    }
}

/// Entry point, called by `_start` in SVC mode with the MMU off and a stack.
#[no_mangle]
extern "C" fn guest32_main(r0: u32, r1: u32, r2: u32, cpsr: u32) -> ! {
    let sctlr = arch::sctlr();
    arch::use_vbar();
    println!("psci32: PSCI and hypercalls from AArch32 (SVC mode, SMC32 through HVC)");
    match dev_read(RESET_COUNT) {
        Some(1) => after_reset(r0, r1, r2, cpsr, sctlr),
        Some(0) => {
            check_entry("", r0, r1, r2, cpsr, sctlr);
            test_hypercalls();
            test_smc64();
            test_version_features();
            test_cpus();
            system_reset();
        }
        other => {
            check(
                "RESET_COUNT is 0 or 1",
                false,
                format_args!("read {other:x?}"),
            );
        }
    }
    harness::finish()
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    record("panic", Err(Msg::from_args(format_args!("{info}"))));
    harness::finish()
}
