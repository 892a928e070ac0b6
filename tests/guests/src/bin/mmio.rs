//! On-target test: MMIO emulation of the hv test device (0x0b00_0000).
//!
//! Every access size (1, 2, 4, 8 bytes) at every naturally aligned offset of SCRATCH,
//! with the exact instruction chosen by inline asm: zero-extending loads into w and x,
//! sign-extending loads (ldrsb/ldrsh into w and x, ldrsw), stores from w (with junk in
//! the upper half of the x register), from x and from the zero register. Then the
//! read-only and RAZ/WI registers, the MMIO counter, and an LDP/STP to the device
//! (no valid syndrome) that must come back as a synchronous external abort, after
//! which the device must still work.
#![no_std]
#![no_main]

use core::arch::asm;

use hv_guests::harness::{check_read, check_why};
use hv_guests::smccc::{counter, COUNTER_ABORTS, COUNTER_MMIO};
use hv_guests::testdev::{self, BASE, ID, ID_VALUE, RAZ_WI, RESET_COUNT, SCRATCH};
use hv_guests::{catch, check, check_eq, check_fault, guest_main};

const SCR: u64 = BASE + SCRATCH;
/// Every byte has its top bit set: loads of any size/offset are "negative".
const NEG: u64 = 0xf1e2_d3c4_b5a6_9788;
/// No byte has its top bit set: loads of any size/offset are "positive".
const POS: u64 = 0x7162_5344_3526_1708;
/// Junk in the upper half of registers stored with a w-form instruction.
const JUNK_HI: u64 = 0xdead_beef_0000_0000;

/// A load instruction under test.
#[derive(Clone, Copy)]
enum Load {
    Ldrb,
    Ldrh,
    LdrW,
    LdrX,
    LdrsbW,
    LdrsbX,
    LdrshW,
    LdrshX,
    Ldrsw,
}

/// A store instruction under test.
#[derive(Clone, Copy)]
enum Store {
    Strb,
    Strh,
    StrW,
    StrX,
    StrbZr,
    StrhZr,
    StrWzr,
    StrXzr,
}

/// Runs one load at `addr`; the destination starts as all ones so a skipped (aborted)
/// load or a missing zero/sign extension shows.
fn load(op: Load, addr: u64) -> u64 {
    let mut v: u64 = u64::MAX;
    // SAFETY: each arm is a single load from the test device page (Device memory);
    // aborts are caught by the caller's `catch`, and the asm touches no other memory.
    unsafe {
        match op {
            Load::Ldrb => {
                asm!("ldrb {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
            }
            Load::Ldrh => {
                asm!("ldrh {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
            }
            Load::LdrW => {
                asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
            }
            Load::LdrX => {
                asm!("ldr {v:x}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
            }
            Load::LdrsbW => {
                asm!("ldrsb {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
            }
            Load::LdrsbX => {
                asm!("ldrsb {v:x}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
            }
            Load::LdrshW => {
                asm!("ldrsh {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
            }
            Load::LdrshX => {
                asm!("ldrsh {v:x}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
            }
            Load::Ldrsw => {
                asm!("ldrsw {v:x}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
            }
        }
    }
    v
}

/// Runs one store of `v` at `addr`.
fn store(op: Store, addr: u64, v: u64) {
    // SAFETY: each arm is a single store to the test device page (Device memory);
    // aborts are caught by the caller's `catch`.
    unsafe {
        match op {
            Store::Strb => {
                asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack))
            }
            Store::Strh => {
                asm!("strh {v:w}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack))
            }
            Store::StrW => {
                asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack))
            }
            Store::StrX => {
                asm!("str {v:x}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack))
            }
            Store::StrbZr => asm!("strb wzr, [{a}]", a = in(reg) addr, options(nostack)),
            Store::StrhZr => asm!("strh wzr, [{a}]", a = in(reg) addr, options(nostack)),
            Store::StrWzr => asm!("str wzr, [{a}]", a = in(reg) addr, options(nostack)),
            Store::StrXzr => asm!("str xzr, [{a}]", a = in(reg) addr, options(nostack)),
        }
    }
}

fn load_name(op: Load) -> &'static str {
    match op {
        Load::Ldrb => "ldrb w",
        Load::Ldrh => "ldrh w",
        Load::LdrW => "ldr w",
        Load::LdrX => "ldr x",
        Load::LdrsbW => "ldrsb w",
        Load::LdrsbX => "ldrsb x",
        Load::LdrshW => "ldrsh w",
        Load::LdrshX => "ldrsh x",
        Load::Ldrsw => "ldrsw x",
    }
}

fn store_name(op: Store) -> &'static str {
    match op {
        Store::Strb => "strb w",
        Store::Strh => "strh w",
        Store::StrW => "str w",
        Store::StrX => "str x",
        Store::StrbZr => "strb wzr",
        Store::StrhZr => "strh wzr",
        Store::StrWzr => "str wzr",
        Store::StrXzr => "str xzr",
    }
}

/// Access size in bytes.
fn load_size(op: Load) -> u64 {
    match op {
        Load::Ldrb | Load::LdrsbW | Load::LdrsbX => 1,
        Load::Ldrh | Load::LdrshW | Load::LdrshX => 2,
        Load::LdrW | Load::Ldrsw => 4,
        Load::LdrX => 8,
    }
}

fn store_size(op: Store) -> u64 {
    match op {
        Store::Strb | Store::StrbZr => 1,
        Store::Strh | Store::StrhZr => 2,
        Store::StrW | Store::StrWzr => 4,
        Store::StrX | Store::StrXzr => 8,
    }
}

fn mask(size: u64) -> u64 {
    if size == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * size)) - 1
    }
}

/// What the architecture says `op` leaves in the 64-bit register for `raw` (the
/// zero-extended bytes read).
fn expected_load(op: Load, raw: u64) -> u64 {
    let sext = |v: u64, bits: u32| (((v << (64 - bits)) as i64) >> (64 - bits)) as u64;
    match op {
        Load::Ldrb | Load::Ldrh | Load::LdrW | Load::LdrX => raw,
        Load::LdrsbW => sext(raw, 8) & 0xffff_ffff,
        Load::LdrsbX => sext(raw, 8),
        Load::LdrshW => sext(raw, 16) & 0xffff_ffff,
        Load::LdrshX => sext(raw, 16),
        Load::Ldrsw => sext(raw, 32),
    }
}

/// Sets SCRATCH with one 64-bit store and reads it back with one 64-bit load.
fn scratch_set(v: u64) -> Option<u64> {
    let (r, fault) = catch(|| {
        store(Store::StrX, SCR, v);
        load(Load::LdrX, SCR)
    });
    fault.is_none().then_some(r)
}

fn test_id() {
    check_read(
        "ID reads 0x48565444 (ldr w)",
        testdev::read32(ID).map(u64::from),
        u64::from(ID_VALUE),
    );
    check_read(
        "RESET_COUNT reads 0 on a VM never reset",
        testdev::read32(RESET_COUNT).map(u64::from),
        0,
    );
}

fn test_loads() {
    for pattern in [NEG, POS] {
        if scratch_set(pattern) != Some(pattern) {
            check_why(
                format_args!("SCRATCH = {pattern:#x} (str x, ldr x)"),
                false,
                "read back differs or aborted",
            );
            continue;
        }
        for op in [
            Load::Ldrb,
            Load::Ldrh,
            Load::LdrW,
            Load::LdrX,
            Load::LdrsbW,
            Load::LdrsbX,
            Load::LdrshW,
            Load::LdrshX,
            Load::Ldrsw,
        ] {
            let size = load_size(op);
            for off in (0..8).step_by(size as usize) {
                let (got, fault) = catch(|| load(op, SCR + off));
                let want = expected_load(op, (pattern >> (8 * off)) & mask(size));
                let name = format_args!("{} at SCRATCH+{} of {:#x}", load_name(op), off, pattern);
                match fault {
                    Some(f) => {
                        check_why(name, false, format_args!("aborted, ESR_EL1={:#x}", f.esr))
                    }
                    None => check_eq(name, got, want),
                };
            }
        }
    }
}

fn test_stores() {
    const BG: u64 = 0x0123_4567_89ab_cdef;
    for op in [
        Store::Strb,
        Store::Strh,
        Store::StrW,
        Store::StrX,
        Store::StrbZr,
        Store::StrhZr,
        Store::StrWzr,
        Store::StrXzr,
    ] {
        let size = store_size(op);
        for off in (0..8).step_by(size as usize) {
            // A distinct value per case; w-form stores carry junk in the upper half.
            let val = 0xa5c3_9687_5a3c_6978u64.rotate_left((off * 8 + size) as u32);
            let reg = if size == 8 {
                val
            } else {
                JUNK_HI | (val & 0xffff_ffff)
            };
            let zr = matches!(
                op,
                Store::StrbZr | Store::StrhZr | Store::StrWzr | Store::StrXzr
            );
            let written = if zr { 0 } else { val & mask(size) };
            let m = mask(size) << (8 * off);
            let want = (BG & !m) | (written << (8 * off));
            let name = format_args!("{} at SCRATCH+{}", store_name(op), off);
            if scratch_set(BG) != Some(BG) {
                check_why(name, false, "could not preset SCRATCH");
                continue;
            }
            let (got, fault) = catch(|| {
                store(op, SCR + off, reg);
                load(Load::LdrX, SCR)
            });
            match fault {
                Some(f) => check_why(name, false, format_args!("aborted, ESR_EL1={:#x}", f.esr)),
                None => check_eq(name, got, want),
            };
        }
    }
}

fn test_misc_registers() {
    let (r, fault) = catch(|| {
        store(Store::StrW, BASE + ID, 0x1234_5678);
        load(Load::LdrW, BASE + ID)
    });
    check_read(
        "write to read-only ID is ignored",
        fault.is_none().then_some(r),
        u64::from(ID_VALUE),
    );
    let (r, fault) = catch(|| {
        store(Store::StrX, BASE + RAZ_WI, 0x5555_aaaa_5555_aaaa);
        load(Load::LdrX, BASE + RAZ_WI)
    });
    check_read(
        "RAZ/WI register at 0x18 reads 0 after a write",
        fault.is_none().then_some(r),
        0,
    );
    let (r, fault) = catch(|| load(Load::LdrW, BASE + 0x100));
    check_read(
        "unlisted offset 0x100 reads 0",
        fault.is_none().then_some(r),
        0,
    );
}

fn test_counter() {
    let before = counter(COUNTER_MMIO);
    let (_, fault) = catch(|| load(Load::LdrW, BASE + ID));
    let after = counter(COUNTER_MMIO);
    check_why(
        "HV_COUNTER(2) counts one MMIO read",
        fault.is_none() && after.wrapping_sub(before) == 1,
        format_args!("before {before:#x}, after {after:#x}"),
    );
}

/// LDP/STP to the device: no valid syndrome (ISV=0), so the hypervisor must inject a
/// synchronous external abort with FAR_EL1 = the address and ELR_EL1 = the instruction.
fn test_pair_abort() {
    for store_pair in [false, true] {
        let aborts_before = counter(COUNTER_ABORTS);
        let mut pc: u64 = 0;
        let (r, fault) = catch(|| {
            let mut a: u64 = 0x1111;
            let mut b: u64 = 0x2222;
            // SAFETY: one LDP or STP on the test device's SCRATCH (16 bytes at
            // 0x0b00_0008..0x0b00_0017, all inside the device page); the expected abort
            // is caught, and `adr` records the instruction's address for the check.
            unsafe {
                if store_pair {
                    asm!("adr {pc}, 1f", "1: stp {a}, {b}, [{addr}]",
                        pc = out(reg) pc, a = in(reg) a, b = in(reg) b, addr = in(reg) SCR,
                        options(nostack));
                } else {
                    asm!("adr {pc}, 1f", "1: ldp {a}, {b}, [{addr}]",
                        pc = out(reg) pc, a = inout(reg) a, b = inout(reg) b, addr = in(reg) SCR,
                        options(nostack));
                }
            }
            (a, b)
        });
        let what = if store_pair { "stp" } else { "ldp" };
        check_fault(
            format_args!("{what} to MMIO gives a synchronous external abort"),
            fault,
            SCR,
            Some(pc),
        );
        if !store_pair {
            check_why(
                "ldp destination registers left unchanged",
                r == (0x1111, 0x2222),
                format_args!("got {r:#x?}"),
            );
        }
        let aborts_after = counter(COUNTER_ABORTS);
        check_why(
            format_args!("HV_COUNTER(4) counts the {what} abort"),
            aborts_after.wrapping_sub(aborts_before) == 1,
            format_args!("before {aborts_before:#x}, after {aborts_after:#x}"),
        );
        check(
            format_args!("device still works after the {what} abort"),
            testdev::read32(ID) == Some(ID_VALUE),
        );
    }
}

fn run() {
    test_id();
    test_loads();
    test_stores();
    test_misc_registers();
    test_counter();
    test_pair_abort();
}

guest_main!(run);
