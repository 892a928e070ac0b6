//! On-target test: guest memory under stage-2 translation.
//!
//! - isolation: loads and stores to IPAs outside guest RAM and outside every device
//!   (0x3000_0000, RAM end + 1 MiB) must give the guest a synchronous external abort
//!   (EC 0x25, DFSC 0x10, FAR_EL1 = the address, ELR_EL1 = the instruction);
//! - patterns (address in address, walking ones/zeros, bytes, halfwords) over 8 MiB the
//!   hypervisor maps with 2 MiB blocks, and over a 2 MiB block the guest first splits
//!   into 4 KiB pages with HV_MEM_PROTECT on one page inside it;
//! - stage-2 permissions: HV_MEM_PROTECT a page read-only, reads work, a write aborts
//!   into the guest, neighbours stay writable, restoring RWX makes it writable again;
//! - HV_MEM_PROTECT / HV_MEM_UNMAP_LAZY argument checks (INVALID_PARAMETERS);
//! - HV_MEM_UNMAP_LAZY: contents survive, each first touch is one resolved stage-2
//!   fault (HV_COUNTER(3)).
#![no_std]
#![no_main]

use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};

use hv_guests::entry::ram_size;
use hv_guests::harness::check_why;
use hv_guests::smccc::*;
use hv_guests::{catch, check_eq, check_fault, guest_main, println, RAM_BASE};

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
/// Block-mapped pattern region: RAM + 16 MiB, 8 MiB (four 2 MiB blocks).
const BLOCK_REGION: (u64, u64) = (RAM_BASE + 16 * MIB, 8 * MIB);
/// Page-mapped pattern region: the 2 MiB block at RAM + 32 MiB, split by HV_MEM_PROTECT.
const PAGE_REGION: (u64, u64) = (RAM_BASE + 32 * MIB, 2 * MIB);
/// Page made read-only (in its own 2 MiB block).
const RO_PAGE: u64 = RAM_BASE + 40 * MIB + 0x3000;
/// Pages unmapped lazily (in their own 2 MiB block).
const LAZY_PAGE: u64 = RAM_BASE + 44 * MIB + 0x5000;
/// The regions above need this much RAM.
const RAM_NEEDED: u64 = 48 * MIB;

/// What a skipped (aborted) load leaves in its destination register.
const UNTOUCHED: u64 = 0xbad0_bad1_bad2_bad3;

/// `ldr x` at `addr`; returns (value, address of the instruction). The destination
/// starts as [`UNTOUCHED`] so a skipped load shows.
fn load_at(addr: u64) -> (u64, u64) {
    let mut v = UNTOUCHED;
    let pc: u64;
    // SAFETY: one 8-byte load; `addr` is either guest RAM this program owns or an
    // address the test expects to abort (the abort is caught and skipped).
    unsafe {
        asm!("adr {pc}, 1f", "1: ldr {v}, [{a}]", pc = out(reg) pc, v = inout(reg) v,
            a = in(reg) addr, options(nostack))
    };
    (v, pc)
}

/// `str x` of `v` at `addr`; returns the address of the instruction.
fn store_at(addr: u64, v: u64) -> u64 {
    let pc: u64;
    // SAFETY: as for `load_at`, one 8-byte store.
    unsafe {
        asm!("adr {pc}, 1f", "1: str {v}, [{a}]", pc = out(reg) pc, v = in(reg) v,
            a = in(reg) addr, options(nostack))
    };
    pc
}

fn test_isolation(ram_end: u64) {
    let aborts_before = counter(COUNTER_ABORTS);
    let mut expected = 0;
    for addr in [0x3000_0000, ram_end + MIB] {
        if addr >= 0x8000_0000 {
            check_why(
                format_args!("access to {addr:#x} aborts"),
                false,
                "outside the stage-1 map",
            );
            continue;
        }
        let ((v, pc), fault) = catch(|| load_at(addr));
        check_fault(
            format_args!("load from {addr:#x} (no RAM, no device) aborts"),
            fault,
            addr,
            Some(pc),
        );
        check_eq(
            format_args!("aborted load from {addr:#x} leaves its register alone"),
            v,
            UNTOUCHED,
        );
        let (pc, fault) = catch(|| store_at(addr + 0x18, 0x0123_4567_89ab_cdef));
        check_fault(
            format_args!("store to {:#x} (no RAM, no device) aborts", addr + 0x18),
            fault,
            addr + 0x18,
            Some(pc),
        );
        expected += 2;
    }
    let aborts = counter(COUNTER_ABORTS).wrapping_sub(aborts_before);
    check_eq(
        "HV_COUNTER(4) counts every injected abort",
        aborts,
        expected,
    );
}

/// Writes with `write` and verifies with 64-bit reads against `want(addr)`.
fn pattern(name: &str, region: (u64, u64), write: impl Fn(u64, u64), want: impl Fn(u64) -> u64) {
    let (base, len) = region;
    write(base, len);
    let mut bad = 0u64;
    let mut first = (0, 0, 0);
    let mut a = base;
    while a < base + len {
        // SAFETY: `a` is 8-byte aligned inside a RAM region reserved for this test.
        let got = unsafe { read_volatile(a as *const u64) };
        let w = want(a);
        if got != w {
            if bad == 0 {
                first = (a, got, w);
            }
            bad += 1;
        }
        a += 8;
    }
    check_why(
        format_args!("{name} over {:#x}+{:#x}", base, len),
        bad == 0,
        format_args!(
            "{bad} words differ, first at {:#x}: got {:#x}, want {:#x}",
            first.0, first.1, first.2
        ),
    );
}

fn fill64(base: u64, len: u64, f: impl Fn(u64) -> u64) {
    let mut a = base;
    while a < base + len {
        // SAFETY: `a` is 8-byte aligned inside a RAM region reserved for this test.
        unsafe { write_volatile(a as *mut u64, f(a)) };
        a += 8;
    }
}

fn byte_of(a: u64) -> u8 {
    (a ^ (a >> 8) ^ (a >> 16) ^ 0x5a) as u8
}

fn half_of(a: u64) -> u16 {
    ((a >> 1) ^ (a >> 17) ^ 0xa5c3) as u16
}

fn patterns(region: (u64, u64), kind: &str) {
    let name = |p: &str| -> heapless_name::Name { heapless_name::Name::new(kind, p) };
    pattern(
        name("address in address").as_str(),
        region,
        |b, l| fill64(b, l, |a| a),
        |a| a,
    );
    pattern(
        name("inverted address").as_str(),
        region,
        |b, l| fill64(b, l, |a| !a),
        |a| !a,
    );
    let walk1 = |a: u64| 1u64 << ((a >> 3) & 63);
    pattern(
        name("walking ones").as_str(),
        region,
        |b, l| fill64(b, l, walk1),
        walk1,
    );
    pattern(
        name("walking zeros").as_str(),
        region,
        |b, l| fill64(b, l, |a| !walk1(a)),
        |a| !walk1(a),
    );
    let bytes_want =
        |a: u64| (0..8).fold(0u64, |acc, i| acc | (u64::from(byte_of(a + i)) << (8 * i)));
    pattern(
        name("byte writes").as_str(),
        region,
        |b, l| {
            for a in b..b + l {
                // SAFETY: a byte inside a RAM region reserved for this test.
                unsafe { write_volatile(a as *mut u8, byte_of(a)) };
            }
        },
        bytes_want,
    );
    let halves_want = |a: u64| {
        (0..4).fold(0u64, |acc, i| {
            acc | (u64::from(half_of(a + 2 * i)) << (16 * i))
        })
    };
    pattern(
        name("halfword writes").as_str(),
        region,
        |b, l| {
            let mut a = b;
            while a < b + l {
                // SAFETY: a 2-byte aligned halfword inside a RAM region reserved for this test.
                unsafe { write_volatile(a as *mut u16, half_of(a)) };
                a += 2;
            }
        },
        halves_want,
    );
    // Byte and halfword reads of known 64-bit contents.
    fill64(region.0, region.1, |a| {
        a.rotate_left(13) ^ 0x9e37_79b9_7f4a_7c15
    });
    let mut bad = 0u64;
    let mut a = region.0;
    while a < region.0 + region.1 {
        let word = (a & !7).rotate_left(13) ^ 0x9e37_79b9_7f4a_7c15;
        let sh = 8 * (a & 7);
        // SAFETY: byte and (even a) halfword reads inside a RAM region reserved for this test.
        let (b, h) = unsafe {
            (
                read_volatile(a as *const u8),
                read_volatile((a & !1) as *const u16),
            )
        };
        if u64::from(b) != (word >> sh) & 0xff || u64::from(h) != (word >> (8 * (a & 6))) & 0xffff {
            bad += 1;
        }
        a += 1;
    }
    check_why(
        name("byte and halfword reads").as_str(),
        bad == 0,
        format_args!("{bad} mismatches"),
    );
}

/// A fixed-size "kind: pattern" name without an allocator.
mod heapless_name {
    pub struct Name {
        buf: [u8; 96],
        len: usize,
    }

    impl Name {
        pub fn new(a: &str, b: &str) -> Self {
            let mut n = Name {
                buf: [0; 96],
                len: 0,
            };
            for s in [a, ": ", b] {
                for &c in s.as_bytes() {
                    if n.len < n.buf.len() {
                        n.buf[n.len] = c;
                        n.len += 1;
                    }
                }
            }
            n
        }

        pub fn as_str(&self) -> &str {
            core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
        }
    }
}

fn protect(ipa: u64, size: u64, perms: u64) -> u64 {
    hvc(HV_MEM_PROTECT, ipa, size, perms)
}

fn test_patterns() {
    patterns(BLOCK_REGION, "block-mapped");
    let split_page = PAGE_REGION.0 + MIB;
    let r = protect(split_page, PAGE, PERM_RWX);
    check_eq(
        format_args!("HV_MEM_PROTECT({split_page:#x}, 4 KiB, RWX) splits its 2 MiB block"),
        r,
        SUCCESS,
    );
    patterns(PAGE_REGION, "page-mapped");
}

fn test_permissions() {
    let target = RO_PAGE + 0x10;
    let before = 0x1111_2222_3333_4444;
    // SAFETY: RO_PAGE is guest RAM reserved for this test; plain aligned accesses.
    unsafe { write_volatile(target as *mut u64, before) };
    check_eq(
        "HV_MEM_PROTECT(page, 4 KiB, R) = 0",
        protect(RO_PAGE, PAGE, PERM_R),
        SUCCESS,
    );
    let ((v, _), fault) = catch(|| load_at(target));
    check_why(
        "read of a read-only page works",
        fault.is_none() && v == before,
        format_args!("fault {fault:x?}, value {v:#x}"),
    );
    let aborts_before = counter(COUNTER_ABORTS);
    let (pc, fault) = catch(|| store_at(target, 0x5555_6666_7777_8888));
    check_fault(
        "write to a read-only page aborts into the guest",
        fault,
        target,
        Some(pc),
    );
    check_eq(
        "HV_COUNTER(4) counts the permission abort",
        counter(COUNTER_ABORTS).wrapping_sub(aborts_before),
        1,
    );
    let ((v, _), _) = catch(|| load_at(target));
    check_eq("the aborted write left the page unchanged", v, before);
    for (what, addr) in [("page below", RO_PAGE - 8), ("page above", RO_PAGE + PAGE)] {
        let ((), fault) = catch(|| {
            store_at(addr, addr ^ 0xfeed);
        });
        let ((v, _), _) = catch(|| load_at(addr));
        check_why(
            format_args!("the {what} stays writable"),
            fault.is_none() && v == addr ^ 0xfeed,
            format_args!("fault {fault:x?}, value {v:#x}"),
        );
    }
    check_eq(
        "HV_MEM_PROTECT(page, 4 KiB, RWX) = 0",
        protect(RO_PAGE, PAGE, PERM_RWX),
        SUCCESS,
    );
    let (_, fault) = catch(|| store_at(target, 0x5555_6666_7777_8888));
    let ((v, _), _) = catch(|| load_at(target));
    check_why(
        "write works again after restoring RWX",
        fault.is_none() && v == 0x5555_6666_7777_8888,
        format_args!("fault {fault:x?}, value {v:#x}"),
    );
}

fn test_bad_arguments(ram_end: u64) {
    let cases = [
        (
            "HV_MEM_PROTECT unaligned IPA",
            HV_MEM_PROTECT,
            RO_PAGE + 8,
            PAGE,
        ),
        (
            "HV_MEM_PROTECT unaligned size",
            HV_MEM_PROTECT,
            RO_PAGE,
            100,
        ),
        (
            "HV_MEM_PROTECT outside RAM",
            HV_MEM_PROTECT,
            0x3000_0000,
            PAGE,
        ),
        (
            "HV_MEM_PROTECT across the end of RAM",
            HV_MEM_PROTECT,
            ram_end - PAGE,
            2 * PAGE,
        ),
        (
            "HV_MEM_UNMAP_LAZY unaligned IPA",
            HV_MEM_UNMAP_LAZY,
            LAZY_PAGE + 8,
            PAGE,
        ),
        (
            "HV_MEM_UNMAP_LAZY outside RAM",
            HV_MEM_UNMAP_LAZY,
            ram_end,
            PAGE,
        ),
    ];
    for (name, fid, ipa, size) in cases {
        check_eq(
            format_args!("{name} ({ipa:#x}, {size:#x}) = INVALID_PARAMETERS"),
            hvc(fid, ipa, size, PERM_RWX),
            INVALID_PARAMETERS,
        );
    }
}

fn test_lazy_unmap() {
    let content = |a: u64| a ^ 0xc0ff_ee00_d00d_f00d;
    // One page, first touched by a read.
    fill64(LAZY_PAGE, PAGE, content);
    let faults_before = counter(COUNTER_S2_FAULTS);
    let r = hvc(HV_MEM_UNMAP_LAZY, LAZY_PAGE, PAGE, 0);
    let (bad, fault) = catch(|| {
        let mut bad = 0;
        let mut a = LAZY_PAGE;
        while a < LAZY_PAGE + PAGE {
            // SAFETY: guest RAM reserved for this test.
            if unsafe { read_volatile(a as *const u64) } != content(a) {
                bad += 1;
            }
            a += 8;
        }
        bad
    });
    let faults = counter(COUNTER_S2_FAULTS).wrapping_sub(faults_before);
    check_eq("HV_MEM_UNMAP_LAZY(page, 4 KiB) = 0", r, SUCCESS);
    check_why(
        "a lazily unmapped page reads back intact",
        fault.is_none() && bad == 0,
        format_args!("fault {fault:x?}, {bad} words differ"),
    );
    check_eq(
        "HV_COUNTER(3): reading it back is one resolved stage-2 fault",
        faults,
        1,
    );

    // Four pages, each first touched by a write.
    let base = LAZY_PAGE + 2 * PAGE;
    fill64(base, 4 * PAGE, content);
    let faults_before = counter(COUNTER_S2_FAULTS);
    let r = hvc(HV_MEM_UNMAP_LAZY, base, 4 * PAGE, 0);
    let ((), fault) = catch(|| {
        for i in 0..4 {
            let a = base + i * PAGE + 0x88;
            // SAFETY: guest RAM reserved for this test.
            unsafe { write_volatile(a as *mut u64, !content(a)) };
        }
    });
    let faults = counter(COUNTER_S2_FAULTS).wrapping_sub(faults_before);
    check_eq("HV_MEM_UNMAP_LAZY(4 pages) = 0", r, SUCCESS);
    let mut bad = 0;
    let mut a = base;
    while a < base + 4 * PAGE {
        let want = if a & (PAGE - 1) == 0x88 {
            !content(a)
        } else {
            content(a)
        };
        // SAFETY: guest RAM reserved for this test.
        if unsafe { read_volatile(a as *const u64) } != want {
            bad += 1;
        }
        a += 8;
    }
    check_why(
        "writes to lazily unmapped pages land, the rest is intact",
        fault.is_none() && bad == 0,
        format_args!("fault {fault:x?}, {bad} words differ"),
    );
    check_eq(
        "HV_COUNTER(3): one resolved fault per page written",
        faults,
        4,
    );
}

fn run() {
    let (size, _) = ram_size();
    let ram_end = RAM_BASE + size;
    if !check_why(
        "guest RAM is large enough for the test regions",
        size >= RAM_NEEDED,
        format_args!("{size:#x} < {RAM_NEEDED:#x}"),
    ) {
        return;
    }
    test_isolation(ram_end);
    check_eq(
        "HV_NOP works after the aborts (the hypervisor kept running)",
        hvc(HV_NOP, 0, 0, 0),
        SUCCESS,
    );
    println!("# patterns");
    test_patterns();
    test_permissions();
    test_bad_arguments(ram_end);
    test_lazy_unmap();
}

guest_main!(run);
