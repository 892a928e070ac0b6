//! difftest32: the on-target half of the shadow engine's differential test (issue 4 (d)).
//!
//! A bare-metal AArch32 image for `qemu-system-arm -M virt -cpu cortex-a15 -m 256M`. For
//! each seed it regenerates the case of [`shadow::difftest::generate_ext`] (the very source
//! file of the `hv` crate, included below with `#[path]`), stores its tables in RAM with the
//! MMU off, programs TTBR0/TTBR1/TTBCR/DACR/CONTEXTIDR/PRRR/NMRR, turns the MMU on with the
//! case's SCTLR.AFE/TRE, runs ATS1CPR, ATS1CPW, ATS1CUR and ATS1CUW on every probe, turns
//! the MMU off again and prints:
//!
//! ```text
//! LAYOUT <image_base> <image_len> <table_base> <ram_base> <ram_len> <abort_base> <abort_len>
//! ID <ID_PFR1> secure|non-secure
//! CASE <seed> <probes>
//! REGS <ttbr0> <ttbr1> <ttbcr> <dacr> <sctlr> <contextidr> <prrr> <nmrr>   (read back, MMU on)
//! PAR <va> <op> <par>                                        (difftest::format_line, per probe)
//! ABORT <va> <op> <dfsr> <dfar>     (an operation that took a Data Abort instead of writing PAR)
//! DONE <cases> <probes>
//! ```
//!
//! then powers the machine off through PSCI SYSTEM_OFF (`hvc`, the conduit QEMU's DTB
//! names when virtualization is off). The host checker (`checker/`) compares every PAR
//! with the engine. While the MMU is on the image only touches its own 1 MiB window, which
//! every case maps as an identity section in client domain 0; the UART is used with the
//! MMU off only.
#![no_std]
#![no_main]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::arch::{asm, global_asm};
use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// `hv::addr`, compiled into the image from the hypervisor's own source.
#[path = "../../../src/addr.rs"]
#[allow(dead_code)]
mod addr;

mod shadow;

use shadow::difftest::{
    format_abort_line, format_line, generate_ext, DiffLayout, DiffMemory, TABLE_AREA,
};

/// Number of seeded cases (seeds 1..=CASES): `DIFFTEST32_CASES` at build time, else 1500.
const CASES: u32 = match option_env!("DIFFTEST32_CASES") {
    Some(s) => parse_u32(s),
    None => 1500,
};

/// Parses a decimal number at compile time (a bad value fails the build).
const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    assert!(!b.is_empty(), "DIFFTEST32_CASES is empty");
    let mut v = 0u32;
    let mut i = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "DIFFTEST32_CASES is not a number");
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

/// Where the image, the tables and the random mappings live (QEMU virt, 256 MiB at 1 GiB).
const LAYOUT: DiffLayout = DiffLayout {
    image_base: 0x4000_0000,
    image_len: 0x10_0000,
    table_base: 0x4010_0000,
    ram_base: 0x4000_0000,
    ram_len: 0x200_0000,
};

/// Unassigned on QEMU virt with 256 MiB of RAM: everything from the end of RAM to 4 GiB.
const MEMORY: DiffMemory = DiffMemory {
    abort: (0x5000_0000, 0xb000_0000),
};

/// Most probes a generated case has.
const MAX_PROBES: usize = 64;

const UART: usize = 0x0900_0000;
const UART_FR: usize = 0x18;
const UART_FR_TXFF: u32 = 1 << 5;

const SCTLR_M: u32 = 1 << 0;
const SCTLR_TRE: u32 = 1 << 28;
const SCTLR_AFE: u32 = 1 << 29;
const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;

global_asm!(
    r#"
    .section .text.boot, "ax"
    .arm
    .global _start
_start:
    cpsid aif
    cps #0x17
    ldr sp, =__abt_stack_top
    cps #0x1b
    ldr sp, =__und_stack_top
    cps #0x13
    ldr sp, =__stack_top
    ldr r0, =__bss_start
    ldr r1, =__bss_end
    mov r2, #0
1:  cmp r0, r1
    strlo r2, [r0], #4
    blo 1b
    ldr r0, =difftest_vectors
    mcr p15, 0, r0, c12, c0, 0
    isb
    bl difftest_main
2:  wfi
    b 2b

    .section .text.vectors, "ax"
    .arm
    .balign 32
    .global difftest_vectors
difftest_vectors:
    b .
    b 10f
    b 11f
    b 12f
    b 13f
    b .
    b 14f
    b 15f
10: push {{r0, r1}}
    ldr r0, =DIFFTEST_ARMED
    ldr r1, [r0]
    cmp r1, #0
    beq 17f
    ldr r0, =DIFFTEST_UNDEFS
    ldr r1, [r0]
    add r1, r1, #1
    str r1, [r0]
    pop {{r0, r1}}
    movs pc, lr
17: pop {{r0, r1}}
    mov r0, #1
    b 20f
11: mov r0, #2
    b 20f
12: mov r0, #3
    b 20f
13: push {{r0, r1}}
    ldr r0, =DIFFTEST_ARMED
    ldr r1, [r0]
    cmp r1, #0
    beq 16f
    mrc p15, 0, r1, c5, c0, 0
    ldr r0, =DIFFTEST_ABORT_DFSR
    str r1, [r0]
    mrc p15, 0, r1, c6, c0, 0
    ldr r0, =DIFFTEST_ABORT_DFAR
    str r1, [r0]
    ldr r0, =DIFFTEST_ABORTS
    ldr r1, [r0]
    add r1, r1, #1
    str r1, [r0]
    pop {{r0, r1}}
    subs pc, lr, #4
16: pop {{r0, r1}}
    mov r0, #4
    b 20f
14: mov r0, #6
    b 20f
15: mov r0, #7
20: mrc p15, 0, r2, c1, c0, 0
    bic r2, r2, #1
    mcr p15, 0, r2, c1, c0, 0
    isb
    ldr sp, =__exc_stack_top
    mov r1, lr
    bl difftest_exception
21: b 21b
"#
);

/// Non-zero while an ATS operation runs: the Data Abort vector then records DFSR/DFAR
/// and returns to the instruction after the operation instead of stopping.
#[no_mangle]
static DIFFTEST_ARMED: AtomicU32 = AtomicU32::new(0);
/// Data Aborts taken while armed.
#[no_mangle]
static DIFFTEST_ABORTS: AtomicU32 = AtomicU32::new(0);
/// Undefined Instruction exceptions taken while armed (the instruction is skipped).
#[no_mangle]
static DIFFTEST_UNDEFS: AtomicU32 = AtomicU32::new(0);
/// Power-off attempts so far (0: none; 1: PSCI over HVC; 2: semihosting SYS_EXIT).
static POWER_OFF_STAGE: AtomicU32 = AtomicU32::new(0);
/// DFSR of the last recorded Data Abort.
#[no_mangle]
static DIFFTEST_ABORT_DFSR: AtomicU32 = AtomicU32::new(0);
/// DFAR of the last recorded Data Abort.
#[no_mangle]
static DIFFTEST_ABORT_DFAR: AtomicU32 = AtomicU32::new(0);

/// A bump allocator over a static arena, emptied before each case.
struct Bump;

const HEAP_SIZE: usize = 256 * 1024;
#[repr(align(16))]
struct Arena(core::cell::UnsafeCell<[u8; HEAP_SIZE]>);
// SAFETY: the image runs on one CPU without interrupts; the arena is only handed out by
// `Bump`, which never gives the same bytes twice between resets.
unsafe impl Sync for Arena {}
static ARENA: Arena = Arena(core::cell::UnsafeCell::new([0; HEAP_SIZE]));
static HEAP_USED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: `alloc` returns distinct, suitably aligned blocks inside the arena or null;
// `dealloc` never reuses memory, so no block is handed out twice while live.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = ARENA.0.get() as usize;
        let used = HEAP_USED.load(Ordering::Relaxed);
        let start = (base + used).next_multiple_of(layout.align());
        let end = start + layout.size();
        if end > base + HEAP_SIZE {
            return core::ptr::null_mut();
        }
        HEAP_USED.store(end - base, Ordering::Relaxed);
        start as *mut u8
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOC: Bump = Bump;

/// The PL011 at 0x0900_0000, used with the MMU off only.
struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            // SAFETY: the PL011's FR and DR registers, MMIO at a fixed physical address that
            // is reachable whenever the MMU is off (the only time this is called).
            unsafe {
                while core::ptr::read_volatile((UART + UART_FR) as *const u32) & UART_FR_TXFF != 0 {
                }
                core::ptr::write_volatile(UART as *mut u32, b as u32);
            }
        }
        Ok(())
    }
}

/// Writes a CP15 register: `mcr!(crn, opc1, crm, opc2, value)`.
macro_rules! mcr {
    ($crn:literal, $opc1:literal, $crm:literal, $opc2:literal, $v:expr) => {
        // SAFETY: a CP15 system-register write chosen by the caller; the callers below only
        // program translation registers while the MMU is off or keep the image mapped.
        unsafe {
            asm!(
                concat!("mcr p15, ", $opc1, ", {0}, ", $crn, ", ", $crm, ", ", $opc2),
                in(reg) $v,
                options(nostack, preserves_flags)
            )
        }
    };
}

/// Reads a CP15 register: `mrc!(crn, opc1, crm, opc2)`.
macro_rules! mrc {
    ($crn:literal, $opc1:literal, $crm:literal, $opc2:literal) => {{
        let v: u32;
        // SAFETY: a CP15 system-register read, without side effects.
        unsafe {
            asm!(
                concat!("mrc p15, ", $opc1, ", {0}, ", $crn, ", ", $crm, ", ", $opc2),
                out(reg) v,
                options(nomem, nostack, preserves_flags)
            )
        };
        v
    }};
}

fn barrier() {
    // SAFETY: DSB and ISB have no operands and only order execution.
    unsafe { asm!("dsb sy", "isb", options(nostack, preserves_flags)) };
}

/// TLBIALL, BPIALL and ICIALLU, then DSB and ISB.
fn flush_translations() {
    mcr!("c8", "0", "c7", "0", 0u32);
    mcr!("c7", "0", "c5", "6", 0u32);
    mcr!("c7", "0", "c5", "0", 0u32);
    barrier();
}

/// What one ATS operation left: PAR, or the Data Abort it took instead.
#[derive(Clone, Copy)]
enum Outcome {
    Par(u32),
    Abort { dfsr: u32, dfar: u32 },
}

/// Runs ATS1CPR (0), ATS1CPW (1), ATS1CUR (2) or ATS1CUW (3) on `va`.
fn ats(op: usize, va: u32) -> Outcome {
    let before = DIFFTEST_ABORTS.load(Ordering::SeqCst);
    DIFFTEST_ARMED.store(1, Ordering::SeqCst);
    let par = ats_par(op, va);
    DIFFTEST_ARMED.store(0, Ordering::SeqCst);
    if DIFFTEST_ABORTS.load(Ordering::SeqCst) != before {
        Outcome::Abort {
            dfsr: DIFFTEST_ABORT_DFSR.load(Ordering::SeqCst),
            dfar: DIFFTEST_ABORT_DFAR.load(Ordering::SeqCst),
        }
    } else {
        Outcome::Par(par)
    }
}

/// The operation itself, then the PAR read.
fn ats_par(op: usize, va: u32) -> u32 {
    match op {
        0 => mcr!("c7", "0", "c8", "0", va),
        1 => mcr!("c7", "0", "c8", "1", va),
        2 => mcr!("c7", "0", "c8", "2", va),
        _ => mcr!("c7", "0", "c8", "3", va),
    }
    // SAFETY: ISB only orders the PAR read after the translation operation.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
    mrc!("c7", "0", "c4", "0")
}

/// Everything a case's probing leaves behind, read after the MMU is off again.
struct Results {
    regs: [u32; 8],
    outcomes: [[Outcome; 4]; MAX_PROBES],
}

/// Zeroes `len` bytes of physical memory at `base` (MMU off).
fn zero(base: u32, len: u32) {
    for a in (base..base + len).step_by(4) {
        // SAFETY: `a` is RAM outside the image (checked by the callers' layout), 4-aligned.
        unsafe { core::ptr::write_volatile(a as *mut u32, 0) };
    }
}

/// Entry point, called by `_start` with the MMU off, in SVC mode, stack set up.
#[no_mangle]
extern "C" fn difftest_main() -> ! {
    let mut out = Uart;
    let _ = writeln!(out, "difftest32: ATS1C* differential test, {CASES} cases");
    let l = LAYOUT;
    let _ = writeln!(
        out,
        "LAYOUT {:08x} {:08x} {:08x} {:08x} {:08x} {:08x} {:08x}",
        l.image_base,
        l.image_len,
        l.table_base,
        l.ram_base,
        l.ram_len,
        MEMORY.abort.0,
        MEMORY.abort.1
    );
    // ID_PFR1.Security says whether TTBCR.PD0/PD1 exist (Security Extensions); SCR is
    // readable only in Secure state, where PAR.NS is defined.
    let id_pfr1 = mrc!("c0", "0", "c1", "1");
    let undefs = DIFFTEST_UNDEFS.load(Ordering::SeqCst);
    DIFFTEST_ARMED.store(1, Ordering::SeqCst);
    let scr = mrc!("c1", "0", "c1", "0");
    DIFFTEST_ARMED.store(0, Ordering::SeqCst);
    let secure =
        id_pfr1 & 0xf0 != 0 && DIFFTEST_UNDEFS.load(Ordering::SeqCst) == undefs && scr & 1 == 0;
    let _ = writeln!(
        out,
        "ID {id_pfr1:08x} {}",
        if secure { "secure" } else { "non-secure" }
    );
    // Everything a walk may read outside the table area reads as zero.
    let free = l.image_base + l.image_len;
    zero(free, l.ram_base + l.ram_len - free);
    let sctlr_base = mrc!("c1", "0", "c0", "0") & !(SCTLR_M | SCTLR_AFE | SCTLR_TRE);
    let mut results = Results {
        regs: [0; 8],
        outcomes: [[Outcome::Par(0); 4]; MAX_PROBES],
    };
    let mut total = 0u32;
    for seed in 1..=CASES {
        HEAP_USED.store(0, Ordering::Relaxed);
        let case = generate_ext(seed, &LAYOUT, &MEMORY);
        let r = case.regime;
        zero(l.table_base, TABLE_AREA);
        for &(a, v) in &case.writes {
            // SAFETY: `generate_ext` only writes inside the table area, RAM outside the image.
            unsafe { core::ptr::write_volatile(a as *mut u32, v) };
        }
        mcr!("c2", "0", "c0", "0", r.ttbr0);
        mcr!("c2", "0", "c0", "1", r.ttbr1);
        mcr!("c2", "0", "c0", "2", r.ttbcr);
        mcr!("c3", "0", "c0", "0", r.dacr);
        mcr!("c13", "0", "c0", "1", r.contextidr);
        mcr!("c10", "0", "c2", "0", r.prrr);
        mcr!("c10", "0", "c2", "1", r.nmrr);
        flush_translations();
        // MMU on: from here to the MMU off below only the image's own window is touched.
        mcr!("c1", "0", "c0", "0", sctlr_base | r.sctlr);
        barrier();
        let n = case.probes.len().min(MAX_PROBES);
        for (i, &va) in case.probes[..n].iter().enumerate() {
            for op in 0..4 {
                results.outcomes[i][op] = ats(op, va);
            }
        }
        results.regs = [
            mrc!("c2", "0", "c0", "0"),
            mrc!("c2", "0", "c0", "1"),
            mrc!("c2", "0", "c0", "2"),
            mrc!("c3", "0", "c0", "0"),
            mrc!("c1", "0", "c0", "0"),
            mrc!("c13", "0", "c0", "1"),
            mrc!("c10", "0", "c2", "0"),
            mrc!("c10", "0", "c2", "1"),
        ];
        mcr!("c1", "0", "c0", "0", sctlr_base);
        barrier();
        flush_translations();
        let _ = writeln!(out, "CASE {seed} {n}");
        let g = results.regs;
        let _ = writeln!(
            out,
            "REGS {:08x} {:08x} {:08x} {:08x} {:08x} {:08x} {:08x} {:08x}",
            g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]
        );
        for (i, &va) in case.probes[..n].iter().enumerate() {
            for op in 0..4 {
                let _ = match results.outcomes[i][op] {
                    Outcome::Par(p) => format_line(&mut out, va, op, p),
                    Outcome::Abort { dfsr, dfar } => {
                        format_abort_line(&mut out, va, op, dfsr, dfar)
                    }
                };
            }
        }
        total += n as u32;
    }
    let _ = writeln!(out, "DONE {CASES} {total}");
    power_off()
}

/// Stops QEMU: PSCI SYSTEM_OFF through HVC (the DTB's conduit without `secure=on`); if
/// that is undefined (`secure=on` has no PSCI), semihosting SYS_EXIT (QEMU needs
/// `-semihosting`); else parks the CPU. Never returns.
fn power_off() -> ! {
    match POWER_OFF_STAGE.fetch_add(1, Ordering::SeqCst) {
        // SAFETY: a PSCI call, which QEMU implements itself and which stops the machine.
        // An Undefined Instruction exception instead comes back here through the vectors.
        0 => unsafe {
            asm!(
                ".arch_extension virt",
                "hvc #0",
                inout("r0") PSCI_SYSTEM_OFF => _,
                options(nostack)
            )
        },
        // SAFETY: the A32 semihosting call SYS_EXIT (0x18) with ADP_Stopped_ApplicationExit,
        // which QEMU run with -semihosting implements by exiting; otherwise it is an SVC
        // that comes back here through the vectors.
        1 => unsafe {
            asm!(
                "svc #0x123456",
                inout("r0") 0x18u32 => _,
                in("r1") 0x20026u32,
                options(nostack)
            )
        },
        _ => {}
    }
    loop {
        // SAFETY: WFI only waits.
        unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}

/// Called by the vectors (MMU already off) for any exception: report it and stop.
#[no_mangle]
extern "C" fn difftest_exception(kind: u32, lr: u32) -> ! {
    let dfsr = mrc!("c5", "0", "c0", "0");
    let dfar = mrc!("c6", "0", "c0", "0");
    let ifsr = mrc!("c5", "0", "c0", "1");
    if POWER_OFF_STAGE.load(Ordering::SeqCst) == 0 {
        let _ = writeln!(
            Uart,
            "EXCEPTION vector {kind} lr {lr:08x} dfsr {dfsr:08x} dfar {dfar:08x} ifsr {ifsr:08x}"
        );
    }
    power_off()
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let s = mrc!("c1", "0", "c0", "0");
    mcr!("c1", "0", "c0", "0", s & !SCTLR_M);
    barrier();
    let _ = writeln!(Uart, "PANIC {info}");
    power_off()
}
