//! The test harness: failure messages, the fault record the vectors fill, probing
//! accesses that expect a value or a fault, [`catch`] for any other instruction that may
//! fault, and the case runner ([`run_all`] for a list of cases, [`record`] for one result)
//! that prints `ok - NAME` / `FAILED - NAME: details`; the program prints the closing
//! `N passed, N failed` from [`counts`].

use core::fmt::{self, Display, Write};
use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::{self, KIND_DABT, KIND_PABT};

/// Prints a line on the UART (base translation regime or MMU off only).
#[macro_export]
macro_rules! println {
    ($($a:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::arch::Uart, $($a)*);
    }};
}

/// Returns a failure with a formatted message from the enclosing `-> R` function.
#[macro_export]
macro_rules! fail {
    ($($a:tt)*) => {
        return Err($crate::harness::Msg::from_args(format_args!($($a)*)))
    };
}

/// Fails with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($a:tt)*) => {
        if !$cond {
            $crate::fail!($($a)*);
        }
    };
}

/// A failure message (ASCII, truncated at its capacity).
pub struct Msg {
    buf: [u8; 256],
    len: usize,
}

impl Msg {
    /// The message of `args`.
    pub fn from_args(args: fmt::Arguments) -> Msg {
        let mut m = Msg {
            buf: [0; 256],
            len: 0,
        };
        let _ = m.write_fmt(args);
        m
    }

    /// The message prefixed with `args` and ": ".
    pub fn context(self, args: fmt::Arguments) -> Msg {
        Msg::from_args(format_args!("{args}: {}", self.as_str()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("(not UTF-8)")
    }
}

impl Write for Msg {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = if b.is_ascii() { b } else { b'?' };
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// A case's result.
pub type R = Result<(), Msg>;

/// Puts `args` (an iteration, an offset) in front of a failure's message.
pub fn ctx(r: R, args: fmt::Arguments) -> R {
    r.map_err(|m| m.context(args))
}

/// What the vectors write on every exception (layout shared with arch.rs's assembly).
#[repr(C)]
pub struct FaultRecord {
    /// Exceptions taken so far.
    pub count: AtomicU32,
    /// `arch::KIND_*` of the last one.
    pub kind: AtomicU32,
    /// DFSR or IFSR (0 for other kinds).
    pub fsr: AtomicU32,
    /// DFAR or IFAR (0 for other kinds).
    pub far: AtomicU32,
    /// Address of the instruction that took it.
    pub pc: AtomicU32,
    /// Where a prefetch abort resumes (set by `g32_exec`), 0 for the next instruction.
    pub resume: AtomicU32,
}

/// The record itself, written by the assembly vectors.
#[no_mangle]
pub static G32_FAULT: FaultRecord = FaultRecord {
    count: AtomicU32::new(0),
    kind: AtomicU32::new(0),
    fsr: AtomicU32::new(0),
    far: AtomicU32::new(0),
    pc: AtomicU32::new(0),
    resume: AtomicU32::new(0),
};

/// Exceptions that probes have seen (and therefore judged); the rest are unexpected.
static ACCOUNTED: AtomicU32 = AtomicU32::new(0);

/// A recorded exception.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: u32,
    pub fsr: u32,
    pub far: u32,
    pub pc: u32,
}

impl Fault {
    /// FS[4:0] of a short-descriptor DFSR/IFSR: bit 10 and bits 3:0.
    pub fn fs(&self) -> u32 {
        ((self.fsr >> 6) & 0x10) | (self.fsr & 0xf)
    }

    /// DFSR.WnR (bit 11).
    pub fn wnr(&self) -> bool {
        self.fsr & (1 << 11) != 0
    }

    /// DFSR.Domain (bits 7:4).
    pub fn domain(&self) -> u32 {
        (self.fsr >> 4) & 0xf
    }

    /// DFSR/IFSR bit 9 (LPAE): 0 for the short-descriptor format.
    pub fn lpae(&self) -> bool {
        self.fsr & (1 << 9) != 0
    }

    /// The last exception the vectors recorded.
    pub fn last() -> Fault {
        Fault {
            kind: G32_FAULT.kind.load(Ordering::SeqCst),
            fsr: G32_FAULT.fsr.load(Ordering::SeqCst),
            far: G32_FAULT.far.load(Ordering::SeqCst),
            pc: G32_FAULT.pc.load(Ordering::SeqCst),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.kind {
            KIND_DABT => write!(
                f,
                "data abort DFSR {:#010x} (FS {:#04x}) DFAR {:#010x} PC {:#010x}",
                self.fsr,
                self.fs(),
                self.far,
                self.pc
            ),
            KIND_PABT => write!(
                f,
                "prefetch abort IFSR {:#010x} (FS {:#04x}) IFAR {:#010x} PC {:#010x}",
                self.fsr,
                self.fs(),
                self.far,
                self.pc
            ),
            k => {
                let name = match k {
                    arch::KIND_UNDEF => "undefined instruction",
                    arch::KIND_SVC => "SVC",
                    arch::KIND_HYP => "reserved vector",
                    arch::KIND_IRQ => "IRQ",
                    arch::KIND_FIQ => "FIQ",
                    _ => "exception",
                };
                write!(f, "{name} (kind {k}) at PC {:#010x}", self.pc)
            }
        }
    }
}

impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn fault_count() -> u32 {
    G32_FAULT.count.load(Ordering::SeqCst)
}

/// The exception taken since `before`, if any, now accounted as seen by a probe.
fn observe(before: u32) -> Option<Fault> {
    let now = fault_count();
    if now == before {
        return None;
    }
    ACCOUNTED.fetch_add(now.wrapping_sub(before), Ordering::SeqCst);
    Some(Fault::last())
}

/// Runs `f` (typically one inline-asm access that may fault; the vectors resume after
/// the faulting instruction) and returns its result, the last exception it took and how
/// many it took. Those exceptions count as seen, not as unexpected.
pub fn catch<T>(f: impl FnOnce() -> T) -> (T, Option<Fault>, u32) {
    let before = fault_count();
    let v = f();
    let taken = fault_count().wrapping_sub(before);
    (v, observe(before), taken)
}

/// Loads the word at `va` through the current translation regime.
pub fn load(va: u32) -> Result<u32, Fault> {
    let before = fault_count();
    // SAFETY: a single LDR of `va`, which may abort; the data abort vector records the
    // abort and resumes after the load, and the result is then discarded. No Rust object
    // lives at a test VA, so the access cannot alias anything the compiler knows about.
    let v = unsafe { arch::g32_load(va) };
    match observe(before) {
        None => Ok(v),
        Some(f) => Err(f),
    }
}

/// Stores `value` at `va` through the current translation regime.
pub fn store(va: u32, value: u32) -> Result<(), Fault> {
    let before = fault_count();
    // SAFETY: a single STR to `va`, which may abort (then skipped by the vector). Test VAs
    // only map test pages and page tables, never Rust objects, code or stacks in use.
    unsafe { arch::g32_store(va, value) };
    match observe(before) {
        None => Ok(()),
        Some(f) => Err(f),
    }
}

/// Calls the code at `va` (which must be `mov r0, #imm; bx lr` or similar) and returns r0.
pub fn exec(va: u32) -> Result<u32, Fault> {
    let before = fault_count();
    // SAFETY: the callers place a two-instruction leaf function (`mov r0, #imm; bx lr`) at
    // `va` before making it executable; if fetching it aborts, the prefetch abort vector
    // returns to `g32_exec`'s resume label, which restores the registers it uses.
    let v = unsafe { arch::g32_exec(va) };
    match observe(before) {
        None => Ok(v),
        Some(f) => Err(f),
    }
}

/// Reads a word of RAM directly (identity mapped, or physical with the MMU off).
pub fn read_phys(pa: u32) -> u32 {
    // SAFETY: callers pass 4-aligned RAM addresses of the test area (page tables, test
    // pages), never the image; the base regime maps all RAM identically.
    unsafe { core::ptr::read_volatile(pa as *const u32) }
}

/// Writes a word of RAM directly (identity mapped, or physical with the MMU off).
pub fn write_phys(pa: u32, v: u32) {
    // SAFETY: as `read_phys`: test area only, which no Rust object occupies.
    unsafe { core::ptr::write_volatile(pa as *mut u32, v) };
}

/// Read or write.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Acc {
    Read,
    Write,
}

/// The load at `va` succeeds and returns `want`.
pub fn expect_load(va: u32, want: u32) -> R {
    match load(va) {
        Ok(v) if v == want => Ok(()),
        Ok(v) => fail!("read at {va:#010x}: expected {want:#010x}, got {v:#010x}"),
        Err(f) => fail!("read at {va:#010x}: expected {want:#010x}, got {f}"),
    }
}

/// The store of `v` at `va` succeeds.
pub fn expect_store(va: u32, v: u32) -> R {
    match store(va, v) {
        Ok(()) => Ok(()),
        Err(f) => fail!("write at {va:#010x}: expected no fault, got {f}"),
    }
}

/// The word at physical `pa` is `want`.
pub fn expect_phys(pa: u32, want: u32) -> R {
    let v = read_phys(pa);
    ensure!(
        v == want,
        "physical {pa:#010x}: expected {want:#010x}, got {v:#010x}"
    );
    Ok(())
}

/// An access at `va` takes a data abort with FS `fs` (5 bits), DFAR = `va`, the right
/// WnR, short-descriptor format and the probe's PC; `domain`, if given, is DFSR.Domain.
pub fn expect_data_abort_in(va: u32, acc: Acc, fs: u32, domain: Option<u32>) -> R {
    let (what, pc, got) = match acc {
        Acc::Read => ("read", arch::load_insn(), load(va)),
        Acc::Write => (
            "write",
            arch::store_insn(),
            store(va, 0xdead_0bad).map(|()| 0),
        ),
    };
    let wnr = acc == Acc::Write;
    let mut want = Msg::from_args(format_args!("data abort FS {fs:#04x}"));
    if let Some(d) = domain {
        let _ = write!(want, " Domain {d}");
    }
    let _ = write!(want, " WnR {} DFAR {va:#010x} PC {pc:#010x}", wnr as u32);
    match got {
        Ok(_) if wnr => fail!(
            "{what} at {va:#010x}: expected {}, got no fault",
            want.as_str()
        ),
        Ok(v) => fail!(
            "{what} at {va:#010x}: expected {}, got no fault (read {v:#010x})",
            want.as_str()
        ),
        Err(f) => {
            let ok = f.kind == KIND_DABT
                && f.fs() == fs
                && f.far == va
                && f.wnr() == wnr
                && !f.lpae()
                && f.pc == pc
                && domain.is_none_or(|d| f.domain() == d);
            ensure!(
                ok,
                "{what} at {va:#010x}: expected {}, got {f}",
                want.as_str()
            );
            Ok(())
        }
    }
}

/// [`expect_data_abort_in`] without a domain check.
pub fn expect_data_abort(va: u32, acc: Acc, fs: u32) -> R {
    expect_data_abort_in(va, acc, fs, None)
}

/// Calling the code at `va` succeeds and returns `want` in r0.
pub fn expect_exec(va: u32, want: u32) -> R {
    match exec(va) {
        Ok(v) if v == want => Ok(()),
        Ok(v) => fail!("execute at {va:#010x}: expected r0 {want:#010x}, got {v:#010x}"),
        Err(f) => fail!("execute at {va:#010x}: expected no fault, got {f}"),
    }
}

/// Calling the code at `va` takes a prefetch abort with IFSR FS `fs`, IFAR = PC = `va`.
pub fn expect_prefetch_abort(va: u32, fs: u32) -> R {
    match exec(va) {
        Ok(v) => fail!(
            "execute at {va:#010x}: expected prefetch abort FS {fs:#04x} IFAR {va:#010x}, got no fault (r0 {v:#010x})"
        ),
        Err(f) => {
            let ok = f.kind == KIND_PABT && f.fs() == fs && f.far == va && f.pc == va && !f.lpae();
            ensure!(
                ok,
                "execute at {va:#010x}: expected prefetch abort FS {fs:#04x} IFAR {va:#010x}, got {f}"
            );
            Ok(())
        }
    }
}

/// A named case.
pub struct Case {
    pub name: &'static str,
    pub run: fn() -> R,
}

static PASSED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);
/// Name of the case running now (for the panic handler).
static mut CURRENT: &str = "";

/// The case running now, or "" between cases.
pub fn current() -> &'static str {
    // SAFETY: single CPU, no interrupts: CURRENT is only written by `run_all` between
    // cases, never concurrently with this read.
    unsafe { *core::ptr::addr_of!(CURRENT) }
}

/// Exceptions taken so far (every one expected by a probe when all cases pass).
pub fn exceptions() -> u32 {
    fault_count()
}

/// Counts so far: (passed, failed).
pub fn counts() -> (u32, u32) {
    (PASSED.load(Ordering::SeqCst), FAILED.load(Ordering::SeqCst))
}

/// Prints the closing `N passed, N failed` and powers off (PSCI SYSTEM_OFF).
pub fn finish() -> ! {
    let (passed, failed) = counts();
    println!("{passed} passed, {failed} failed");
    arch::power_off()
}

/// Replaces the counts (to carry them across a reset of the machine).
pub fn set_counts(passed: u32, failed: u32) {
    PASSED.store(passed, Ordering::SeqCst);
    FAILED.store(failed, Ordering::SeqCst);
}

/// Adds one to a count (only the primary CPU counts: no read-modify-write atomics, which
/// need not work with the MMU off).
fn bump(c: &AtomicU32) {
    c.store(c.load(Ordering::SeqCst).wrapping_add(1), Ordering::SeqCst);
}

/// Records one result and prints its line: `ok - NAME` or `FAILED - NAME: details`. An
/// exception that no probe or [`catch`] saw since the previous result fails it. Returns
/// whether it passed.
pub fn record(name: impl Display, r: R) -> bool {
    let end = fault_count();
    let unexpected = end.wrapping_sub(ACCOUNTED.load(Ordering::SeqCst));
    ACCOUNTED.store(end, Ordering::SeqCst);
    let r = match r {
        Ok(()) if unexpected != 0 => Err(Msg::from_args(format_args!(
            "{unexpected} unexpected exception(s), the last: {}",
            Fault::last()
        ))),
        r => r,
    };
    match r {
        Ok(()) => {
            bump(&PASSED);
            println!("ok - {name}");
            true
        }
        Err(m) => {
            bump(&FAILED);
            println!("FAILED - {name}: {}", m.as_str());
            false
        }
    }
}

/// Records whether `got == want`, with both in hex on failure.
pub fn check_eq(name: impl Display, got: u32, want: u32) -> bool {
    let r = if got == want {
        Ok(())
    } else {
        Err(Msg::from_args(format_args!(
            "got {got:#010x}, want {want:#010x}"
        )))
    };
    record(name, r)
}

/// Records whether `cond` holds, with `details` on failure.
pub fn check(name: impl Display, cond: bool, details: fmt::Arguments) -> bool {
    let r = if cond {
        Ok(())
    } else {
        Err(Msg::from_args(details))
    };
    record(name, r)
}

/// Runs every case between two `reset` calls (the base regime) and prints its line.
/// An exception no probe saw fails the case.
pub fn run_all(cases: &[Case], reset: fn()) {
    for c in cases {
        reset();
        // SAFETY: see `current`; the only writer, single-threaded.
        unsafe { *core::ptr::addr_of_mut!(CURRENT) = c.name };
        ACCOUNTED.store(fault_count(), Ordering::SeqCst);
        let r = (c.run)();
        reset();
        record(c.name, r);
    }
    // SAFETY: see `current`.
    unsafe { *core::ptr::addr_of_mut!(CURRENT) = "" };
}
