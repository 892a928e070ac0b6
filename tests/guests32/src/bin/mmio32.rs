//! mmio32: MMIO emulation for an AArch32 guest (SVC mode, ARM state, MMU off), through the
//! hypervisor's test device (0x0b00_0000) and PL011 (0x0900_0000).
//!
//! Every A32 access size and sign at every naturally aligned offset of SCRATCH (LDRB,
//! LDRSB, LDRH, LDRSH, LDR and STRB, STRH, STR with junk above the stored bytes); the
//! read-only and RAZ/WI registers and the MMIO counter; a load and a store through every
//! register, banked ones included (r0-r12, SP and LR in SVC mode, r8-r12, SP and LR in
//! FIQ mode, SP and LR in IRQ, ABT, UND and SYS mode); LDR<cond> under every condition
//! and flag value; T32 16- and 32-bit loads and stores and loads inside IT blocks (the
//! hypervisor must step PC by the instruction's size and ITSTATE); LDRD, STRD, LDM and
//! STM, which have no valid syndrome and must come back as a synchronous external abort
//! (after which the device still works); and the PL011's ID registers, a 16-bit register
//! through every size and its loopback path. Expected values come from the ARM ARM, the
//! PL011 TRM and docs/GUEST-ABI.md, never from observed output.
#![no_std]
#![no_main]
// A failure carries its message inline (no allocator); only failures build one.
#![allow(clippy::result_large_err)]

use core::arch::{asm, global_asm};
use core::fmt::{self, Display};
use core::panic::PanicInfo;

use guests32::arch::{self, KIND_DABT};
use guests32::harness::{self, catch, check, check_eq, record, Fault, Msg};
use guests32::println;

/// The hypervisor's test device (docs/GUEST-ABI.md).
const TESTDEV: u32 = 0x0b00_0000;
/// ID, read-only, 32-bit.
const ID: u32 = 0x00;
/// SCRATCH: a byte-addressed little-endian 64-bit register.
const SCRATCH: u32 = 0x08;
/// RESET_COUNT, read-only, 32-bit.
const RESET_COUNT: u32 = 0x10;
/// Reserved, RAZ/WI.
const RAZ_WI: u32 = 0x18;
/// An offset the device does not list (reads 0, writes ignored).
const UNLISTED: u32 = 0x100;
/// The value of ID: "HVTD".
const ID_VALUE: u32 = 0x4856_5444;
/// SCRATCH's address.
const SCR: u32 = TESTDEV + SCRATCH;

/// Every byte has its top bit set: loads of any size and offset are "negative".
const NEG: u64 = 0xf1e2_d3c4_b5a6_9788;
/// No byte has its top bit set: loads of any size and offset are "positive".
const POS: u64 = 0x7162_5344_3526_1708;

/// HV_COUNTER (SMC32 vendor hypercall) and its indices.
const HV_COUNTER: u32 = 0x8600_0003;
const COUNTER_MMIO: u32 = 2;
const COUNTER_ABORTS: u32 = 4;

/// DFSR FS[4:0] of a synchronous external abort, not on a table walk (short-descriptor
/// format, ARM ARM B3.13.3).
const FS_SYNC_EXTERNAL: u32 = 0b01000;

/// The PL011 and its registers (PL011 TRM, 3.2).
const UART: u32 = 0x0900_0000;
const UARTDR: u32 = 0x000;
const UARTFR: u32 = 0x018;
const UARTIBRD: u32 = 0x024;
const UARTFBRD: u32 = 0x028;
const UARTCR: u32 = 0x030;
const UARTPERIPHID0: u32 = 0xfe0;
/// UARTFR.RXFE: the receive FIFO is empty.
const FR_RXFE: u32 = 1 << 4;
/// UARTCR.LBE: loopback (transmitted data comes back as received data).
const CR_LBE: u32 = 1 << 7;

/// An A32 load under test.
#[derive(Clone, Copy)]
enum Load {
    Ldrb,
    Ldrsb,
    Ldrh,
    Ldrsh,
    Ldr,
}

/// An A32 store under test.
#[derive(Clone, Copy)]
enum Store {
    Strb,
    Strh,
    Str,
}

impl Load {
    const ALL: [Load; 5] = [Load::Ldrb, Load::Ldrsb, Load::Ldrh, Load::Ldrsh, Load::Ldr];

    fn name(self) -> &'static str {
        match self {
            Load::Ldrb => "ldrb",
            Load::Ldrsb => "ldrsb",
            Load::Ldrh => "ldrh",
            Load::Ldrsh => "ldrsh",
            Load::Ldr => "ldr",
        }
    }

    /// Access size in bytes.
    fn size(self) -> u32 {
        match self {
            Load::Ldrb | Load::Ldrsb => 1,
            Load::Ldrh | Load::Ldrsh => 2,
            Load::Ldr => 4,
        }
    }

    /// What the architecture puts in the register for `raw`, the bytes read
    /// (zero-extended): LDRSB and LDRSH sign-extend to 32 bits, the others zero-extend.
    fn result(self, raw: u32) -> u32 {
        match self {
            Load::Ldrb | Load::Ldrh | Load::Ldr => raw,
            Load::Ldrsb => raw as u8 as i8 as i32 as u32,
            Load::Ldrsh => raw as u16 as i16 as i32 as u32,
        }
    }
}

impl Store {
    const ALL: [Store; 3] = [Store::Strb, Store::Strh, Store::Str];

    fn name(self) -> &'static str {
        match self {
            Store::Strb => "strb",
            Store::Strh => "strh",
            Store::Str => "str",
        }
    }

    fn size(self) -> u32 {
        match self {
            Store::Strb => 1,
            Store::Strh => 2,
            Store::Str => 4,
        }
    }
}

/// The low `size` bytes.
fn mask(size: u32) -> u32 {
    if size >= 4 {
        u32::MAX
    } else {
        (1 << (8 * size)) - 1
    }
}

/// One load at `addr` into a register that holds `preset` before it (so a skipped load
/// shows), returning the register afterwards.
fn load(op: Load, addr: u32, preset: u32) -> u32 {
    let mut v = preset;
    // SAFETY: each arm is one load from a device register page (Device memory with the
    // MMU off, never a Rust object); an abort is recorded and skipped by the vector.
    unsafe {
        match op {
            Load::Ldrb => {
                asm!("ldrb {v}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
            }
            Load::Ldrsb => {
                asm!("ldrsb {v}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
            }
            Load::Ldrh => {
                asm!("ldrh {v}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
            }
            Load::Ldrsh => {
                asm!("ldrsh {v}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
            }
            Load::Ldr => {
                asm!("ldr {v}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
            }
        }
    }
    v
}

/// One store of (the low bytes of) `v` at `addr`.
fn store(op: Store, addr: u32, v: u32) {
    // SAFETY: each arm is one store to a device register page (never a Rust object); an
    // abort is recorded and skipped by the vector.
    unsafe {
        match op {
            Store::Strb => {
                asm!("strb {v}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack))
            }
            Store::Strh => {
                asm!("strh {v}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack))
            }
            Store::Str => asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack)),
        }
    }
}

/// The failure message of an access that aborted.
fn aborted(f: Fault) -> Msg {
    Msg::from_args(format_args!("the access aborted: {f}"))
}

/// Records that `op` at `addr` (register preset to `!want`) returns `want`.
fn check_load(name: impl Display, op: Load, addr: u32, want: u32) -> bool {
    let (got, fault, _) = catch(|| load(op, addr, !want));
    match fault {
        Some(f) => record(name, Err(aborted(f))),
        None => check_eq(name, got, want),
    }
}

/// Records that `r` is `Some(want)` (an access that did not abort and read `want`).
fn check_read(name: impl Display, r: Result<u32, Fault>, want: u32) -> bool {
    match r {
        Ok(v) => check_eq(name, v, want),
        Err(f) => record(name, Err(aborted(f))),
    }
}

/// One 32-bit load, `Err` if it aborted.
fn read32(addr: u32) -> Result<u32, Fault> {
    match catch(|| load(Load::Ldr, addr, 0)) {
        (v, None, _) => Ok(v),
        (_, Some(f), _) => Err(f),
    }
}

/// One 32-bit store, `Err` if it aborted.
fn write32(addr: u32, v: u32) -> Result<(), Fault> {
    match catch(|| store(Store::Str, addr, v)) {
        (_, None, _) => Ok(()),
        (_, Some(f), _) => Err(f),
    }
}

/// SCRATCH, read with two 32-bit loads.
fn scratch_get() -> Result<u64, Fault> {
    let lo = read32(SCR)?;
    let hi = read32(SCR + 4)?;
    Ok((u64::from(hi) << 32) | u64::from(lo))
}

/// Sets SCRATCH with two 32-bit stores; true if it then reads back as `v`.
fn scratch_set(v: u64) -> bool {
    write32(SCR, v as u32).is_ok()
        && write32(SCR + 4, (v >> 32) as u32).is_ok()
        && scratch_get() == Ok(v)
}

/// HV_COUNTER(`index`), low 32 bits (the counters are per VM).
fn counter(index: u32) -> u32 {
    arch::hvc(HV_COUNTER, index, 0, 0)
}

fn test_id() {
    check_read("ID reads 0x48565444 (ldr)", read32(TESTDEV + ID), ID_VALUE);
    check_read(
        "RESET_COUNT reads 0 on a VM never reset",
        read32(TESTDEV + RESET_COUNT),
        0,
    );
}

fn test_loads() {
    for pattern in [NEG, POS] {
        if !scratch_set(pattern) {
            check(
                format_args!("SCRATCH = {pattern:#x} (two str, two ldr)"),
                false,
                format_args!("read back {:x?}", scratch_get()),
            );
            continue;
        }
        for op in Load::ALL {
            let size = op.size();
            for off in (0..8).step_by(size as usize) {
                let raw = (pattern >> (8 * off)) as u32 & mask(size);
                check_load(
                    format_args!("{} at SCRATCH+{} of {:#x}", op.name(), off, pattern),
                    op,
                    SCR + off,
                    op.result(raw),
                );
            }
        }
    }
}

fn test_stores() {
    const BG: u64 = 0x0123_4567_89ab_cdef;
    for op in Store::ALL {
        let size = op.size();
        for off in (0..8).step_by(size as usize) {
            // A distinct register value per case, with bits above the stored bytes set.
            let val = 0xa5c3_9687u32.rotate_left(off * 8 + size);
            let m = u64::from(mask(size)) << (8 * off);
            let want = (BG & !m) | (u64::from(val & mask(size)) << (8 * off));
            let name = format_args!("{} at SCRATCH+{}", op.name(), off);
            if !scratch_set(BG) {
                check(name, false, format_args!("could not preset SCRATCH"));
                continue;
            }
            let ((), fault, _) = catch(|| store(op, SCR + off, val));
            let r = match (fault, scratch_get()) {
                (Some(f), _) | (None, Err(f)) => Err(aborted(f)),
                (None, Ok(got)) if got == want => Ok(()),
                (None, Ok(got)) => Err(Msg::from_args(format_args!(
                    "SCRATCH is {got:#018x}, want {want:#018x}"
                ))),
            };
            record(name, r);
        }
    }
}

fn test_misc_registers() {
    let r = write32(TESTDEV + ID, 0x1234_5678).and_then(|()| read32(TESTDEV + ID));
    check_read("write to read-only ID is ignored", r, ID_VALUE);
    let r = write32(TESTDEV + RAZ_WI, 0x5555_aaaa).and_then(|()| read32(TESTDEV + RAZ_WI));
    check_read(
        "RAZ/WI register at 0x18 reads 0 after a write (str, ldr)",
        r,
        0,
    );
    let ((), f, _) = catch(|| store(Store::Strb, TESTDEV + RAZ_WI, 0xff));
    match f {
        Some(f) => record(
            "RAZ/WI register at 0x18 reads 0 after a write (strb, ldrb)",
            Err(aborted(f)),
        ),
        None => check_load(
            "RAZ/WI register at 0x18 reads 0 after a write (strb, ldrb)",
            Load::Ldrb,
            TESTDEV + RAZ_WI,
            0,
        ),
    };
    check_read(
        "unlisted offset 0x100 reads 0",
        read32(TESTDEV + UNLISTED),
        0,
    );
}

fn test_counter() {
    let before = counter(COUNTER_MMIO);
    let r = read32(TESTDEV + ID);
    let after = counter(COUNTER_MMIO);
    check(
        "HV_COUNTER(2) counts one MMIO read",
        r.is_ok() && after.wrapping_sub(before) == 1,
        format_args!("before {before:#x}, after {after:#x}, read {r:x?}"),
    );
    let before = counter(COUNTER_MMIO);
    let r = write32(TESTDEV + RAZ_WI, 1);
    let after = counter(COUNTER_MMIO);
    check(
        "HV_COUNTER(2) counts one MMIO write",
        r.is_ok() && after.wrapping_sub(before) == 1,
        format_args!("before {before:#x}, after {after:#x}, write {r:x?}"),
    );
}

// ---- Loads and stores through every register, banked ones included -------------------
//
// Each table entry (`RegProbe`) is a store and a load probe of one register in one mode,
// called from SVC mode with r0 = the address and r1 = the value to store (or the preset of
// the register before a load); both return in r0 the value the register held after the
// access (for a store: the value stored). SVC-mode r0-r12 and LR: the register is loaded
// from the stack (`pop {reg}`), the address is in r0 (r1 for r0 itself). Other registers:
// the probe switches to the mode with CPS, keeps that mode's SP and LR in r4/r5, does the
// access, restores them and returns to SVC mode (r7 keeps SP_svc). In ABT mode the SP is
// left alone (a failed probe's abort needs it): its store stores the real SP_abt and its
// load starts from it.
global_asm!(
    r#"
    .macro MMIO32_ENTRY st, ld, mode, regno, keep_sp
    .pushsection .rodata.mmio32_regs, "a"
    .word \st, \ld, \mode, \regno, \keep_sp
    .popsection
    .endm

    .macro MMIO32_SVC_PROBE name, reg, base, regno
    .balign 4
mmio32_st_\name:
    push {{r4-r11, lr}}
    push {{r1}}
    mov \base, r0
    pop {{\reg}}
    str \reg, [\base]
    push {{\reg}}
    pop {{r0}}
    pop {{r4-r11, pc}}
mmio32_ld_\name:
    push {{r4-r11, lr}}
    push {{r1}}
    mov \base, r0
    pop {{\reg}}
    ldr \reg, [\base]
    push {{\reg}}
    pop {{r0}}
    pop {{r4-r11, pc}}
    MMIO32_ENTRY mmio32_st_\name, mmio32_ld_\name, 0x13, \regno, 0
    .endm

    .macro MMIO32_MODE_PROBE name, mode, reg, regno, keep_sp
    .balign 4
mmio32_st_\name:
    push {{r4-r11, lr}}
    mov r7, sp
    cps #\mode
    mov r4, sp
    mov r5, lr
    .if \keep_sp == 0
    mov \reg, r1
    .endif
    str \reg, [r0]
    mov r6, \reg
    mov sp, r4
    mov lr, r5
    cps #0x13
    mov sp, r7
    mov r0, r6
    pop {{r4-r11, pc}}
mmio32_ld_\name:
    push {{r4-r11, lr}}
    mov r7, sp
    cps #\mode
    mov r4, sp
    mov r5, lr
    .if \keep_sp == 0
    mov \reg, r1
    .endif
    ldr \reg, [r0]
    mov r6, \reg
    mov sp, r4
    mov lr, r5
    cps #0x13
    mov sp, r7
    mov r0, r6
    pop {{r4-r11, pc}}
    MMIO32_ENTRY mmio32_st_\name, mmio32_ld_\name, \mode, \regno, \keep_sp
    .endm

    .pushsection .rodata.mmio32_regs, "a"
    .balign 4
    .global MMIO32_REGS_START
MMIO32_REGS_START:
    .popsection

    .section .text.mmio32_regs, "ax"
    .arm
    MMIO32_SVC_PROBE svc_r0, r0, r1, 0
    MMIO32_SVC_PROBE svc_r1, r1, r0, 1
    MMIO32_SVC_PROBE svc_r2, r2, r0, 2
    MMIO32_SVC_PROBE svc_r3, r3, r0, 3
    MMIO32_SVC_PROBE svc_r4, r4, r0, 4
    MMIO32_SVC_PROBE svc_r5, r5, r0, 5
    MMIO32_SVC_PROBE svc_r6, r6, r0, 6
    MMIO32_SVC_PROBE svc_r7, r7, r0, 7
    MMIO32_SVC_PROBE svc_r8, r8, r0, 8
    MMIO32_SVC_PROBE svc_r9, r9, r0, 9
    MMIO32_SVC_PROBE svc_r10, r10, r0, 10
    MMIO32_SVC_PROBE svc_r11, r11, r0, 11
    MMIO32_SVC_PROBE svc_r12, r12, r0, 12
    MMIO32_MODE_PROBE svc_sp, 0x13, sp, 13, 0
    MMIO32_SVC_PROBE svc_lr, lr, r0, 14
    MMIO32_MODE_PROBE fiq_r8, 0x11, r8, 8, 0
    MMIO32_MODE_PROBE fiq_r9, 0x11, r9, 9, 0
    MMIO32_MODE_PROBE fiq_r10, 0x11, r10, 10, 0
    MMIO32_MODE_PROBE fiq_r11, 0x11, r11, 11, 0
    MMIO32_MODE_PROBE fiq_r12, 0x11, r12, 12, 0
    MMIO32_MODE_PROBE fiq_sp, 0x11, sp, 13, 0
    MMIO32_MODE_PROBE fiq_lr, 0x11, lr, 14, 0
    MMIO32_MODE_PROBE irq_sp, 0x12, sp, 13, 0
    MMIO32_MODE_PROBE irq_lr, 0x12, lr, 14, 0
    MMIO32_MODE_PROBE abt_sp, 0x17, sp, 13, 1
    MMIO32_MODE_PROBE abt_lr, 0x17, lr, 14, 0
    MMIO32_MODE_PROBE und_sp, 0x1b, sp, 13, 0
    MMIO32_MODE_PROBE und_lr, 0x1b, lr, 14, 0
    MMIO32_MODE_PROBE sys_sp, 0x1f, sp, 13, 0
    MMIO32_MODE_PROBE sys_lr, 0x1f, lr, 14, 0

    .pushsection .rodata.mmio32_regs, "a"
    .global MMIO32_REGS_END
MMIO32_REGS_END:
    .popsection
"#
);

/// A probe: `(address, value or preset) -> the register after the access`.
type ProbeFn = unsafe extern "C" fn(u32, u32) -> u32;

/// One entry of the register probe table (layout of `MMIO32_ENTRY`).
#[repr(C)]
struct RegProbe {
    store: ProbeFn,
    load: ProbeFn,
    /// CPSR.M of the mode the access runs in.
    mode: u32,
    /// Register number, 13 = SP, 14 = LR.
    reg: u32,
    /// 1: the real SP is stored and the load starts from it (ABT mode).
    keep_sp: u32,
}

extern "C" {
    static MMIO32_REGS_START: RegProbe;
    static MMIO32_REGS_END: RegProbe;
}

/// The register probe table.
fn reg_probes() -> &'static [RegProbe] {
    let start = core::ptr::addr_of!(MMIO32_REGS_START);
    let end = core::ptr::addr_of!(MMIO32_REGS_END);
    let n = (end as usize - start as usize) / core::mem::size_of::<RegProbe>();
    // SAFETY: the assembly above emits the table as `n` consecutive 5-word entries in
    // one read-only section between the two symbols, each a `RegProbe` (two ARM-state
    // function addresses and three words).
    unsafe { core::slice::from_raw_parts(start, n) }
}

/// "r8 (fiq mode)" and the like.
struct RegName<'a>(&'a RegProbe);

impl Display for RegName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mode = match self.0.mode {
            0x11 => "fiq",
            0x12 => "irq",
            0x13 => "svc",
            0x17 => "abt",
            0x1b => "und",
            0x1f => "sys",
            _ => "?",
        };
        match self.0.reg {
            13 => write!(f, "sp ({mode} mode)"),
            14 => write!(f, "lr ({mode} mode)"),
            r => write!(f, "r{r} ({mode} mode)"),
        }
    }
}

fn test_registers() {
    let probes = reg_probes();
    check(
        "register probe table has 30 entries",
        probes.len() == 30,
        format_args!("it has {}", probes.len()),
    );
    for (i, p) in probes.iter().enumerate() {
        let i = i as u32 + 1;
        let value = 0x9e37_79b9u32.wrapping_mul(i);
        let name = format_args!("str from {} to SCRATCH", RegName(p));
        if !scratch_set(0) {
            check(name, false, format_args!("could not clear SCRATCH"));
        } else {
            // SAFETY: the probe is an ARM-state function of the table above; it restores
            // every register and mode it changes, and its one store goes to SCRATCH.
            let (held, fault, _) = catch(|| unsafe { (p.store)(SCR, value) });
            let want = if p.keep_sp != 0 { held } else { value };
            let r = match (fault, scratch_get()) {
                (Some(f), _) | (None, Err(f)) => Err(aborted(f)),
                (None, Ok(got)) if got == u64::from(want) => Ok(()),
                (None, Ok(got)) => Err(Msg::from_args(format_args!(
                    "SCRATCH is {got:#018x}, want {want:#010x}"
                ))),
            };
            record(name, r);
        }
        let value = 0x85eb_ca6bu32.wrapping_mul(i);
        let name = format_args!("ldr from SCRATCH into {}", RegName(p));
        if !scratch_set(u64::from(value) | (u64::from(!value) << 32)) {
            check(name, false, format_args!("could not preset SCRATCH"));
            continue;
        }
        // SAFETY: as for the store probe; its one load reads SCRATCH.
        let (got, fault, _) = catch(|| unsafe { (p.load)(SCR, !value) });
        match fault {
            Some(f) => record(name, Err(aborted(f))),
            None => check_eq(name, got, value),
        };
    }
}

// ---- Conditional execution ----------------------------------------------------------

/// The A32 condition codes 0-13 (AL is not a test).
const CONDS: [&str; 14] = [
    "eq", "ne", "cs", "cc", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le",
];

/// ConditionPassed() of the ARM ARM (A8.3) for `cond` and NZCV in bits 31:28 of `flags`.
fn cond_passes(cond: u32, flags: u32) -> bool {
    let n = flags & (1 << 31) != 0;
    let z = flags & (1 << 30) != 0;
    let c = flags & (1 << 29) != 0;
    let v = flags & (1 << 28) != 0;
    let r = match cond >> 1 {
        0 => z,
        1 => c,
        2 => n,
        3 => v,
        4 => c && !z,
        5 => n == v,
        6 => n == v && !z,
        _ => true,
    };
    if cond & 1 == 1 && cond != 15 {
        !r
    } else {
        r
    }
}

/// Sets NZCV to `flags` (bits 31:28) and runs `ldr<cond>` of `addr` into a register
/// preset to `preset`.
fn cond_load(cond: u32, flags: u32, addr: u32, preset: u32) -> u32 {
    let mut v = preset;
    macro_rules! ldr_cond {
        ($c:literal) => {
            // SAFETY: an APSR write (flags only) and one conditional load from SCRATCH;
            // an abort is recorded and skipped by the vector.
            unsafe {
                asm!(
                    "msr APSR_nzcvq, {f}",
                    concat!("ldr", $c, " {v}, [{a}]"),
                    f = in(reg) flags,
                    a = in(reg) addr,
                    v = inout(reg) v,
                    options(nostack)
                )
            }
        };
    }
    match cond {
        0 => ldr_cond!("eq"),
        1 => ldr_cond!("ne"),
        2 => ldr_cond!("cs"),
        3 => ldr_cond!("cc"),
        4 => ldr_cond!("mi"),
        5 => ldr_cond!("pl"),
        6 => ldr_cond!("vs"),
        7 => ldr_cond!("vc"),
        8 => ldr_cond!("hi"),
        9 => ldr_cond!("ls"),
        10 => ldr_cond!("ge"),
        11 => ldr_cond!("lt"),
        12 => ldr_cond!("gt"),
        _ => ldr_cond!("le"),
    }
    v
}

fn test_conditions() {
    let value = 0x6d2b_79f5;
    if !scratch_set(u64::from(value)) {
        check(
            "ldr<cond> cases (preset SCRATCH)",
            false,
            format_args!("failed"),
        );
        return;
    }
    for (cond, name) in CONDS.iter().enumerate() {
        let cond = cond as u32;
        let before = counter(COUNTER_MMIO);
        let mut passing = 0;
        let mut r = Ok(());
        for nzcv in 0..16u32 {
            let flags = nzcv << 28;
            let passes = cond_passes(cond, flags);
            passing += passes as u32;
            let want = if passes { value } else { !value };
            let (got, fault, _) = catch(|| cond_load(cond, flags, SCR, !value));
            if r.is_ok() {
                r = match fault {
                    Some(f) => Err(aborted(f)),
                    None if got != want => Err(Msg::from_args(format_args!(
                        "NZCV {nzcv:#06b}: got {got:#010x}, want {want:#010x} (condition {})",
                        if passes { "passes" } else { "fails" }
                    ))),
                    None => Ok(()),
                };
            }
        }
        let after = counter(COUNTER_MMIO);
        if r.is_ok() && after.wrapping_sub(before) != passing {
            r = Err(Msg::from_args(format_args!(
                "HV_COUNTER(2) went from {before:#x} to {after:#x}, want {passing} accesses"
            )));
        }
        record(
            format_args!("ldr{name} of SCRATCH under all 16 NZCV values"),
            r,
        );
    }
}

// ---- T32 ----------------------------------------------------------------------------
//
// Each routine is called with r0 = the test device's base and returns r0 and r1 (a u64).
// After the access, two 16-bit `adds` count the instructions that ran: a hypervisor that
// steps PC by 4 over a 16-bit instruction skips one of them; one that steps by 2 over a
// 32-bit load runs its second halfword (0x0008, `movs r0, r1`), which overwrites the
// loaded value. In the IT routines a wrong ITSTATE runs an instruction the block skips.
global_asm!(
    r#"
    .section .text.mmio32_t32, "ax"
    .thumb
    .syntax unified

    .balign 4
    .global mmio32_t16_ldr
    .type mmio32_t16_ldr, %function
    .thumb_func
mmio32_t16_ldr:             @ r0 = SCRATCH word 0 (16-bit LDR), r1 = 2
    movs r1, #0
    mov r2, r0
    ldr r0, [r2, #8]
    adds r1, #1
    adds r1, #1
    bx lr

    .balign 4
    .global mmio32_t16_ldrsh
    .type mmio32_t16_ldrsh, %function
    .thumb_func
mmio32_t16_ldrsh:           @ r0 = SCRATCH halfword 1 sign-extended (16-bit LDRSH), r1 = 2
    movs r1, #0
    mov r2, r0
    movs r3, #10
    ldrsh r0, [r2, r3]
    adds r1, #1
    adds r1, #1
    bx lr

    .balign 4
    .global mmio32_t32_ldr
    .type mmio32_t32_ldr, %function
    .thumb_func
mmio32_t32_ldr:             @ r0 = SCRATCH word 0 (32-bit LDR.W), r1 = 2
    movs r1, #0
    mov r2, r0
    ldr.w r0, [r2, #8]
    adds r1, #1
    adds r1, #1
    bx lr

    .balign 4
    .global mmio32_t32_ldrsb
    .type mmio32_t32_ldrsb, %function
    .thumb_func
mmio32_t32_ldrsb:           @ r0 = SCRATCH byte 0 sign-extended (32-bit LDRSB.W), r1 = 2
    movs r1, #0
    mov r2, r0
    ldrsb.w r0, [r2, #8]
    adds r1, #1
    adds r1, #1
    bx lr

    .balign 4
    .global mmio32_t16_str
    .type mmio32_t16_str, %function
    .thumb_func
mmio32_t16_str:             @ stores r1 to SCRATCH word 0 (16-bit STR); r0 = 2
    movs r3, #0
    str r1, [r0, #8]
    adds r3, #1
    adds r3, #1
    mov r0, r3
    bx lr

    .balign 4
    .global mmio32_t_it_then
    .type mmio32_t_it_then, %function
    .thumb_func
mmio32_t_it_then:           @ LDREQ in the first slot of ITE EQ, Z = 1: r0 = word 0, r1 = 1
    movs r1, #0
    mov r2, r0
    cmp r1, #0
    ite eq
    ldreq r0, [r2, #8]
    movne r1, #7
    adds r1, #1
    bx lr

    .balign 4
    .global mmio32_t_it_last
    .type mmio32_t_it_last, %function
    .thumb_func
mmio32_t_it_last:           @ LDRNE in the last slot of ITE EQ, Z = 0: r0 = word 0, r1 = 1
    movs r1, #1
    mov r2, r0
    cmp r1, #0
    ite eq
    moveq r1, #5
    ldrne r0, [r2, #8]
    movs r3, #0             @ after the block: sets Z; in a stale block (NE): flags kept
    ite eq
    moveq r1, #1
    movne r1, #9
    bx lr
"#
);

extern "C" {
    fn mmio32_t16_ldr(base: u32) -> u64;
    fn mmio32_t16_ldrsh(base: u32) -> u64;
    fn mmio32_t32_ldr(base: u32) -> u64;
    fn mmio32_t32_ldrsb(base: u32) -> u64;
    fn mmio32_t16_str(base: u32, value: u32) -> u32;
    fn mmio32_t_it_then(base: u32) -> u64;
    fn mmio32_t_it_last(base: u32) -> u64;
}

fn test_thumb() {
    let pattern = NEG;
    if !scratch_set(pattern) {
        check("T32 cases (preset SCRATCH)", false, format_args!("failed"));
        return;
    }
    let word0 = pattern as u32;
    let half1 = Load::Ldrsh.result((pattern >> 16) as u32 & 0xffff);
    let byte0 = Load::Ldrsb.result(pattern as u32 & 0xff);
    let loads: [(&str, unsafe extern "C" fn(u32) -> u64, u32, u32); 6] = [
        (
            "T32 16-bit ldr of SCRATCH (PC steps by 2)",
            mmio32_t16_ldr,
            word0,
            2,
        ),
        (
            "T32 16-bit ldrsh (register offset) of SCRATCH+2",
            mmio32_t16_ldrsh,
            half1,
            2,
        ),
        (
            "T32 32-bit ldr.w of SCRATCH (PC steps by 4)",
            mmio32_t32_ldr,
            word0,
            2,
        ),
        ("T32 32-bit ldrsb.w of SCRATCH", mmio32_t32_ldrsb, byte0, 2),
        (
            "T32 ldreq in the first slot of an ITE block (ITSTATE steps)",
            mmio32_t_it_then,
            word0,
            1,
        ),
        (
            "T32 ldrne in the last slot of an ITE block (ITSTATE ends)",
            mmio32_t_it_last,
            word0,
            1,
        ),
    ];
    for (name, f, want, steps) in loads {
        // SAFETY: a Thumb routine of the block above: it reads SCRATCH once and uses only
        // r0-r3 and the flags (caller-saved).
        let (r, fault, _) = catch(|| unsafe { f(TESTDEV) });
        let (got, marker) = (r as u32, (r >> 32) as u32);
        let r = match fault {
            Some(f) => Err(aborted(f)),
            None if got != want || marker != steps => Err(Msg::from_args(format_args!(
                "r0 {got:#010x} r1 {marker}, want r0 {want:#010x} r1 {steps}"
            ))),
            None => Ok(()),
        };
        record(name, r);
    }
    let value = 0x3c5a_7e19;
    let name = "T32 16-bit str to SCRATCH (PC steps by 2)";
    if !scratch_set(0) {
        check(name, false, format_args!("could not clear SCRATCH"));
        return;
    }
    // SAFETY: as above; the routine stores r1 to SCRATCH once.
    let (steps, fault, _) = catch(|| unsafe { mmio32_t16_str(TESTDEV, value) });
    let r = match (fault, scratch_get()) {
        (Some(f), _) | (None, Err(f)) => Err(aborted(f)),
        (None, Ok(got)) if got == u64::from(value) && steps == 2 => Ok(()),
        (None, Ok(got)) => Err(Msg::from_args(format_args!(
            "SCRATCH {got:#018x}, {steps} steps; want {value:#010x}, 2 steps"
        ))),
    };
    record(name, r);
}

// ---- Accesses without a valid syndrome ----------------------------------------------

/// A multi-register access under test.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Multi {
    Ldrd,
    Strd,
    Ldm,
    Stm,
}

impl Multi {
    fn name(self) -> &'static str {
        match self {
            Multi::Ldrd => "ldrd",
            Multi::Strd => "strd",
            Multi::Ldm => "ldm",
            Multi::Stm => "stm",
        }
    }

    fn is_store(self) -> bool {
        matches!(self, Multi::Strd | Multi::Stm)
    }
}

/// Runs `op` on r2/r3 (preset to `a`, `b`) at `addr`; returns the instruction's address
/// and r2, r3 afterwards.
fn multi(op: Multi, addr: u32, a: u32, b: u32) -> (u32, u32, u32) {
    let (mut a, mut b) = (a, b);
    let pc: u32;
    // SAFETY: one LDRD/STRD/LDM/STM of the two words of SCRATCH (8-byte aligned, inside
    // the device page); the expected abort is recorded and skipped by the vector, and
    // `adr` gives the instruction's address for the check.
    unsafe {
        match op {
            Multi::Ldrd => asm!("adr {pc}, 1f", "1: ldrd r2, r3, [{addr}]", pc = out(reg) pc,
                addr = in(reg) addr, inout("r2") a, inout("r3") b, options(nostack)),
            Multi::Strd => asm!("adr {pc}, 1f", "1: strd r2, r3, [{addr}]", pc = out(reg) pc,
                addr = in(reg) addr, inout("r2") a, inout("r3") b, options(nostack)),
            Multi::Ldm => asm!("adr {pc}, 1f", "1: ldm {addr}, {{r2, r3}}", pc = out(reg) pc,
                addr = in(reg) addr, inout("r2") a, inout("r3") b, options(nostack)),
            Multi::Stm => asm!("adr {pc}, 1f", "1: stm {addr}, {{r2, r3}}", pc = out(reg) pc,
                addr = in(reg) addr, inout("r2") a, inout("r3") b, options(nostack)),
        }
    }
    (pc, a, b)
}

/// LDRD, STRD, LDM and STM give no valid syndrome (ISV = 0), so the hypervisor must
/// inject a synchronous external abort: DFSR FS 0b01000 (short-descriptor, the format
/// with TTBCR.EAE = 0), WnR for the stores, DFAR = the address, at the instruction.
fn test_multi_abort() {
    const BG: u64 = 0x0f1e_2d3c_4b5a_6978;
    for op in [Multi::Ldrd, Multi::Strd, Multi::Ldm, Multi::Stm] {
        let what = op.name();
        if !scratch_set(BG) {
            check(
                format_args!("{what} to MMIO (preset SCRATCH)"),
                false,
                format_args!("failed"),
            );
            continue;
        }
        let aborts_before = counter(COUNTER_ABORTS);
        let ((pc, a, b), fault, taken) = catch(|| multi(op, SCR, 0x1111_1111, 0x2222_2222));
        let aborts_after = counter(COUNTER_ABORTS);
        let name = format_args!("{what} to MMIO gives a synchronous external abort");
        match fault {
            None => check(name, false, format_args!("no exception was taken")),
            Some(f) => check(
                name,
                f.kind == KIND_DABT
                    && f.fs() == FS_SYNC_EXTERNAL
                    && !f.lpae()
                    && f.wnr() == op.is_store()
                    && f.far == SCR
                    && f.pc == pc
                    && taken == 1,
                format_args!(
                    "{f}, {taken} exception(s); want a data abort FS {FS_SYNC_EXTERNAL:#04x}, \
                     WnR {}, DFAR {SCR:#010x}, PC {pc:#010x}, 1 exception",
                    op.is_store() as u8
                ),
            ),
        };
        if op.is_store() {
            let s = scratch_get();
            check(
                format_args!("SCRATCH unchanged by the aborted {what}"),
                s == Ok(BG),
                format_args!("read {s:x?}, want {BG:#x}"),
            );
        } else {
            check(
                format_args!("{what} destination registers left unchanged"),
                (a, b) == (0x1111_1111, 0x2222_2222),
                format_args!("got {a:#x}, {b:#x}"),
            );
        }
        check(
            format_args!("HV_COUNTER(4) counts the {what} abort"),
            aborts_after.wrapping_sub(aborts_before) == 1,
            format_args!("before {aborts_before:#x}, after {aborts_after:#x}"),
        );
        check_read(
            format_args!("device still works after the {what} abort"),
            read32(TESTDEV + ID),
            ID_VALUE,
        );
    }
}

// ---- PL011 --------------------------------------------------------------------------

fn test_pl011() {
    // UARTPeriphID0-3 and UARTPCellID0-3 (TRM 3.3.14-15): part number 0x011, designer
    // 0x41 (ARM), configuration 0, PrimeCell ID 0xb105f00d. PeriphID2[7:4] is the
    // revision, which differs between PL011 releases: only its designer bits are fixed.
    let ids: [(&str, u32, u32); 8] = [
        ("UARTPeriphID0 reads 0x11", 0x11, 0xff),
        ("UARTPeriphID1 reads 0x10", 0x10, 0xff),
        ("UARTPeriphID2 bits 3:0 read 0x4", 0x4, 0x0f),
        ("UARTPeriphID3 reads 0x00", 0x00, 0xff),
        ("UARTPCellID0 reads 0x0d", 0x0d, 0xff),
        ("UARTPCellID1 reads 0xf0", 0xf0, 0xff),
        ("UARTPCellID2 reads 0x05", 0x05, 0xff),
        ("UARTPCellID3 reads 0xb1", 0xb1, 0xff),
    ];
    for (i, (name, want, m)) in ids.iter().enumerate() {
        let r = read32(UART + UARTPERIPHID0 + 4 * i as u32).map(|v| v & m);
        check_read(format_args!("{name} (ldr)"), r, *want);
    }
    let pcell = |n: u32| UART + UARTPERIPHID0 + 0x10 + 4 * n;
    check_load("ldrb UARTPCellID1 reads 0xf0", Load::Ldrb, pcell(1), 0xf0);
    check_load(
        "ldrsb UARTPCellID1 reads 0xfffffff0",
        Load::Ldrsb,
        pcell(1),
        Load::Ldrsb.result(0xf0),
    );
    check_load(
        "ldrsb UARTPCellID3 reads 0xffffffb1",
        Load::Ldrsb,
        pcell(3),
        Load::Ldrsb.result(0xb1),
    );
    check_load(
        "ldrsb UARTPCellID0 reads 0x0000000d",
        Load::Ldrsb,
        pcell(0),
        Load::Ldrsb.result(0x0d),
    );
    let r = write32(UART + UARTPERIPHID0, 0x5a).and_then(|()| read32(UART + UARTPERIPHID0));
    check_read("write to read-only UARTPeriphID0 is ignored", r, 0x11);

    // UARTIBRD: a 16-bit read/write register (TRM 3.3.6), through every access size at
    // its own address (which byte lanes a narrower access reaches is not architectural).
    let ibrd = UART + UARTIBRD;
    let fbrd = UART + UARTFBRD;
    let saved = (read32(ibrd), read32(fbrd));
    let r = write32(ibrd, 0x1234).and_then(|()| read32(ibrd));
    check_read("UARTIBRD str 0x1234, ldr", r, 0x1234);
    let ((), f, _) = catch(|| store(Store::Strh, ibrd, 0xdead_8765));
    if let Some(f) = f {
        record("UARTIBRD strh 0x8765", Err(aborted(f)));
    } else {
        check_load("UARTIBRD strh 0x8765, ldrh", Load::Ldrh, ibrd, 0x8765);
        check_load(
            "UARTIBRD ldrsh after strh 0x8765",
            Load::Ldrsh,
            ibrd,
            Load::Ldrsh.result(0x8765),
        );
    }
    let ((), f, _) = catch(|| store(Store::Strb, ibrd, 0xffff_ff5a));
    if let Some(f) = f {
        record("UARTIBRD strb 0xffffff5a, ldrb", Err(aborted(f)));
    } else {
        check_load("UARTIBRD strb 0xffffff5a, ldrb", Load::Ldrb, ibrd, 0x5a);
    }
    let r = write32(fbrd, 0x25).and_then(|()| read32(fbrd));
    check_read("UARTFBRD: str 0x25, ldr", r, 0x25);
    if let (Ok(i), Ok(f)) = saved {
        let _ = write32(ibrd, i);
        let _ = write32(fbrd, f);
    }

    // Loopback (UARTCR.LBE): each byte written to UARTDR comes back through the receive
    // FIFO; only bits 7:0 are data on a write, and a read returns the byte with the error
    // flags (bits 11:8, none here) above it. Nothing is printed until UARTCR is restored.
    let cr = match read32(UART + UARTCR) {
        Ok(v) => v,
        Err(f) => {
            record("UARTCR reads", Err(aborted(f)));
            return;
        }
    };
    let dr = UART + UARTDR;
    let fr = UART + UARTFR;
    let mut results: [(&str, Result<u32, Fault>, u32); 6] = [
        ("PL011 loopback, strb 0x41 to UARTDR, ldr", Ok(0), 0x41),
        (
            "PL011 loopback, UARTFR.RXFE set after the read",
            Ok(0),
            FR_RXFE,
        ),
        ("PL011 loopback, strh 0xab42 to UARTDR, ldrh", Ok(0), 0x42),
        (
            "PL011 loopback, str 0xffffffc3 to UARTDR, ldrsb",
            Ok(0),
            Load::Ldrsb.result(0xc3),
        ),
        (
            "PL011 loopback, str 0x7fffff44 to UARTDR, ldrb",
            Ok(0),
            0x44,
        ),
        (
            "PL011 loopback, UARTFR.RXFE clear with a byte received",
            Ok(0),
            0,
        ),
    ];
    let step = |op: Store, v: u32, ld: Load| -> Result<u32, Fault> {
        match catch(|| store(op, dr, v)) {
            (_, Some(f), _) => Err(f),
            (_, None, _) => match catch(|| load(ld, dr, 0x5555_5555)) {
                (v, None, _) => Ok(v),
                (_, Some(f), _) => Err(f),
            },
        }
    };
    if write32(UART + UARTCR, cr | CR_LBE).is_ok() {
        results[0].1 = step(Store::Strb, 0x41, Load::Ldr);
        results[1].1 = read32(fr).map(|v| v & FR_RXFE);
        results[2].1 = step(Store::Strh, 0xab42, Load::Ldrh);
        results[3].1 = step(Store::Str, 0xffff_ffc3, Load::Ldrsb);
        results[4].1 = step(Store::Str, 0x7fff_ff44, Load::Ldrb);
        results[5].1 = match catch(|| store(Store::Strb, dr, 0x46)) {
            (_, Some(f), _) => Err(f),
            (_, None, _) => read32(fr).map(|v| v & FR_RXFE),
        };
        // Drain the byte left in the FIFO.
        let _ = read32(dr);
    }
    let restored = write32(UART + UARTCR, cr).and_then(|()| read32(UART + UARTCR));
    check_read("UARTCR set to LBE and back", restored, cr);
    for (name, r, want) in results {
        check_read(name, r, want);
    }
}

fn run() {
    test_id();
    test_loads();
    test_stores();
    test_misc_registers();
    test_counter();
    test_registers();
    test_conditions();
    test_thumb();
    test_multi_abort();
    test_pl011();
}

/// Entry point, called by `_start` in SVC mode with the MMU off and a stack.
#[no_mangle]
extern "C" fn guest32_main(_r0: u32, _r1: u32, _r2: u32, _cpsr: u32) -> ! {
    arch::use_vbar();
    println!("mmio32: MMIO through the test device and the PL011 (AArch32 SVC mode, MMU off)");
    run();
    harness::finish()
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    record("panic", Err(Msg::from_args(format_args!("{info}"))));
    harness::finish()
}
