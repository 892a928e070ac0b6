//! forkstress: a guest userspace workload of page faults, copy-on-write and munmap, for
//! the Linux test initramfs (a checked case) and the Linux benchmark (its time).
//!
//! ```text
//! forkstress [--rounds R] [--children K] [--mib N] [--inject-fault]
//! ```
//!
//! Each of the R rounds:
//! - the parent mmaps N MiB of anonymous memory and writes a pattern over every word
//!   (one demand-zero fault per page), then forks K children at once;
//! - while the children run, the parent writes a second pattern over the last quarter
//!   of the pages (copy-on-write breaks on the parent's side: the children must go on
//!   seeing the old contents);
//! - each child verifies the parent's first pattern on every page, writes its own
//!   pattern over half the pages (every other page; copy-on-write breaks on the child's
//!   side), verifies all pages again (its own on those, the parent's on the others),
//!   munmaps the second half of the region, mmaps N/2 MiB anew, checks that the new
//!   pages read as zero, writes and verifies a pattern there, munmaps everything and
//!   exits with status 0 (1 on a mismatch, with a `#` line giving the first one);
//! - the parent waits for every child, checks their statuses, verifies its own memory
//!   (first pattern on the first three quarters, second on the last quarter) and
//!   munmaps it.
//!
//! Prints `#` lines with figures (the time of each round, the page faults of the parent
//! and its children from /proc/self/stat) and then one result line,
//! `ok - forkstress (R rounds, K children, N MiB, T ms)` or `FAILED - forkstress: details`.
//! T is the wall time of the whole workload on the monotonic clock, in milliseconds.
//! Exits 0 on success, 1 on a failure, 2 on bad usage. `--inject-fault` flips a bit in
//! the parent's memory after the first fork (the children keep the good copy), which
//! the parent's check must report as FAILED.
//!
//! Only plain libc calls (fork, waitpid, mmap, munmap, _exit, sysconf), declared here:
//! the package has no dependencies, and it builds offline.

use std::ffi::{c_int, c_long, c_void};
use std::io::Write;
use std::process::exit;
use std::time::Instant;

// --- libc -------------------------------------------------------------------------

#[cfg(target_env = "musl")]
type OffT = i64; // musl's off_t is 64-bit everywhere
#[cfg(not(target_env = "musl"))]
type OffT = c_long; // glibc without _FILE_OFFSET_BITS=64: long

extern "C" {
    fn fork() -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn _exit(status: c_int) -> !;
    fn mmap(
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: c_int,
        off: OffT,
    ) -> *mut c_void;
    fn munmap(addr: *mut c_void, len: usize) -> c_int;
    fn sysconf(name: c_int) -> c_long;
}

// Linux's values, the same on arm and arm64 (asm-generic), for glibc and musl.
const PROT_READ: c_int = 1;
const PROT_WRITE: c_int = 2;
const MAP_PRIVATE: c_int = 0x02;
const MAP_ANONYMOUS: c_int = 0x20;
const SC_PAGESIZE: c_int = 30;
const MAP_FAILED: usize = !0;

fn errno_str() -> String {
    std::io::Error::last_os_error().to_string()
}

/// An anonymous private mapping of `len` bytes, as a word slice.
fn map_anon(len: usize) -> Result<&'static mut [usize], String> {
    // SAFETY: a fresh anonymous mapping, owned by the caller until `unmap`.
    let p = unsafe {
        mmap(
            std::ptr::null_mut(),
            len,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p as usize == MAP_FAILED || p.is_null() {
        return Err(format!("mmap of {} KiB: {}", len / 1024, errno_str()));
    }
    // SAFETY: the mapping is readable and writable, `len` bytes, and page-aligned.
    Ok(unsafe { std::slice::from_raw_parts_mut(p as *mut usize, len / WORD) })
}

/// Unmaps `words` (the whole slice, or part of a mapping: page-aligned).
fn unmap(words: &mut [usize]) -> Result<(), String> {
    // SAFETY: the caller gives up the slice; it was part of a mapping from `map_anon`.
    if unsafe { munmap(words.as_mut_ptr() as *mut c_void, words.len() * WORD) } != 0 {
        return Err(format!(
            "munmap of {} KiB: {}",
            words.len() * WORD / 1024,
            errno_str()
        ));
    }
    Ok(())
}

// --- patterns ---------------------------------------------------------------------

const WORD: usize = std::mem::size_of::<usize>();

/// The word at index `i` under the pattern of (round, owner): owner 0 is the parent's
/// first pattern, 1 its second, 2 + c child c's, 100 + c child c's remapped memory.
/// Mixing the index keeps a page copied to the wrong place from passing.
#[inline(always)]
fn pattern(round: usize, owner: usize, i: usize) -> usize {
    let x = (i as u64) ^ ((round as u64) << 40) ^ ((owner as u64) << 52);
    let mut z = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z ^= z >> 29;
    z as usize
}

fn fill(words: &mut [usize], first: usize, round: usize, owner: usize) {
    for (k, w) in words.iter_mut().enumerate() {
        *w = pattern(round, owner, first + k);
    }
    std::hint::black_box(words);
}

/// The first mismatch against `want(i)`, as a description, and the count of bad words.
fn check(words: &[usize], first: usize, want: impl Fn(usize) -> usize) -> Option<String> {
    let words = std::hint::black_box(words);
    let mut bad = 0usize;
    let mut at = None;
    for (k, &w) in words.iter().enumerate() {
        let v = want(first + k);
        if w != v {
            bad += 1;
            if at.is_none() {
                at = Some((first + k, v, w));
            }
        }
    }
    at.map(|(i, v, w)| {
        format!(
            "{bad} bad words, first at word {i} (page {}): want {v:#x}, read {w:#x}",
            i * WORD / page_size()
        )
    })
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { sysconf(SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Minor and major page faults of this process and of its waited-for children
/// (fields 10-13 of /proc/self/stat: minflt, cminflt, majflt, cmajflt).
fn faults() -> Option<[u64; 4]> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let g = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some([g(10)?, g(11)?, g(12)?, g(13)?])
}

// --- the workload -----------------------------------------------------------------

/// A child's part of round `round`; returns the exit status (details on stdout).
fn child(round: usize, c: usize, mem: &mut [usize], page_words: usize) -> c_int {
    let fail = |what: &str, d: String| {
        println!("# forkstress: round {round} child {c}: {what}: {d}");
        1
    };
    let n = mem.len();
    // 1. The parent's first pattern, everywhere (the parent is rewriting its last
    //    quarter meanwhile: copy-on-write must keep this copy unchanged).
    if let Some(d) = check(mem, 0, |i| pattern(round, 0, i)) {
        return fail("parent's pattern after fork", d);
    }
    // 2. Own pattern on every other page (which half depends on the child).
    let own = |page: usize| (page + c).is_multiple_of(2);
    for (p, page) in mem.chunks_mut(page_words).enumerate() {
        if own(p) {
            fill(page, p * page_words, round, 2 + c);
        }
    }
    for (p, page) in mem.chunks(page_words).enumerate() {
        let owner = if own(p) { 2 + c } else { 0 };
        if let Some(d) = check(page, p * page_words, |i| pattern(round, owner, i)) {
            return fail(
                if owner == 0 {
                    "parent's page after own COW writes"
                } else {
                    "own COW page"
                },
                d,
            );
        }
    }
    // 3. Unmap the second half, map it anew: zero pages, then a pattern.
    let half = n / 2 / page_words * page_words;
    let (lo, hi) = mem.split_at_mut(half);
    let hi_len = hi.len();
    if let Err(e) = unmap(hi) {
        return fail("munmap", e);
    }
    let fresh = match map_anon(hi_len * WORD) {
        Ok(m) => m,
        Err(e) => return fail("mmap", e),
    };
    if let Some(d) = check(fresh, 0, |_| 0) {
        return fail("new anonymous memory is not zero", d);
    }
    fill(fresh, 0, round, 100 + c);
    if let Some(d) = check(fresh, 0, |i| pattern(round, 100 + c, i)) {
        return fail("remapped memory", d);
    }
    // The first half is unchanged by the munmap next to it.
    for (p, page) in lo.chunks(page_words).enumerate() {
        let owner = if own(p) { 2 + c } else { 0 };
        if let Some(d) = check(page, p * page_words, |i| pattern(round, owner, i)) {
            return fail("first half after munmap/mmap of the second", d);
        }
    }
    if let Err(e) = unmap(fresh).and_then(|_| unmap(lo)) {
        return fail("munmap", e);
    }
    0
}

struct Opts {
    rounds: usize,
    children: usize,
    mib: usize,
    inject_fault: bool,
}

/// The whole workload; Err is the FAILED line's details.
fn run(o: &Opts) -> Result<(), String> {
    let page_words = page_size() / WORD;
    let bytes = o.mib << 20;
    let n = bytes / WORD;
    let quarter = n / 4 / page_words * page_words;
    for round in 0..o.rounds {
        let t = Instant::now();
        let mem = map_anon(bytes)?;
        fill(mem, 0, round, 0);
        // Nothing buffered may be duplicated into the children.
        let _ = std::io::stdout().flush();
        let mut pids = Vec::with_capacity(o.children);
        for c in 0..o.children {
            // SAFETY: this process is single-threaded; the child only computes, prints
            // and leaves with _exit.
            let pid = unsafe { fork() };
            if pid < 0 {
                let e = format!("round {round}: fork of child {c}: {}", errno_str());
                reap(&pids);
                return Err(e);
            }
            if pid == 0 {
                let st = child(round, c, mem, page_words);
                let _ = std::io::stdout().flush();
                // SAFETY: ends the child without running the parent's exit handlers.
                unsafe { _exit(st) };
            }
            pids.push(pid);
        }
        // The parent's last quarter gets a second pattern while the children run.
        let tail = n - quarter;
        fill(&mut mem[tail..], tail, round, 1);
        if o.inject_fault && round == 0 {
            mem[n / 2] ^= 1 << 7;
        }
        let mut bad = Vec::new();
        for (c, &pid) in pids.iter().enumerate() {
            let mut st: c_int = 0;
            // SAFETY: `st` is a valid out-pointer.
            let r = unsafe { waitpid(pid, &mut st, 0) };
            if r != pid {
                bad.push(format!("child {c}: waitpid: {}", errno_str()));
            } else if st & 0x7f != 0 {
                bad.push(format!("child {c} killed by signal {}", st & 0x7f));
            } else if (st >> 8) & 0xff != 0 {
                bad.push(format!("child {c} exited with status {}", (st >> 8) & 0xff));
            }
        }
        if !bad.is_empty() {
            return Err(format!("round {round}: {}", bad.join(", ")));
        }
        let d = check(&mem[..tail], 0, |i| pattern(round, 0, i))
            .or_else(|| check(&mem[tail..], tail, |i| pattern(round, 1, i)));
        if let Some(d) = d {
            return Err(format!(
                "round {round}: parent's memory after the children ran: {d}"
            ));
        }
        unmap(mem)?;
        println!(
            "# forkstress: round {round}: {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}

fn reap(pids: &[c_int]) {
    for &pid in pids {
        let mut st = 0;
        // SAFETY: `st` is a valid out-pointer.
        unsafe { waitpid(pid, &mut st, 0) };
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("forkstress: {msg}");
    eprintln!("usage: forkstress [--rounds R] [--children K] [--mib N] [--inject-fault]");
    exit(2);
}

fn parse(flag: &str, v: Option<String>) -> usize {
    let v = v.unwrap_or_else(|| usage(&format!("{flag} needs a value")));
    v.parse()
        .unwrap_or_else(|_| usage(&format!("bad value '{v}' for {flag}")))
}

fn main() {
    let mut o = Opts {
        rounds: 4,
        children: 4,
        mib: 4,
        inject_fault: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => o.rounds = parse("--rounds", args.next()),
            "--children" => o.children = parse("--children", args.next()),
            "--mib" => o.mib = parse("--mib", args.next()),
            "--inject-fault" => o.inject_fault = true,
            "-h" | "--help" => {
                println!(
                    "usage: forkstress [--rounds R] [--children K] [--mib N] [--inject-fault]"
                );
                return;
            }
            _ => usage(&format!("unknown argument '{a}'")),
        }
    }
    if o.rounds == 0 || o.children == 0 || o.mib == 0 || o.mib > 1024 {
        usage("--rounds and --children must be at least 1, --mib 1..=1024");
    }
    let f0 = faults();
    let t = Instant::now();
    let r = run(&o);
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if let (Some(a), Some(b)) = (f0, faults()) {
        println!(
            "# forkstress: page faults: parent {} minor {} major, children {} minor {} major",
            b[0] - a[0],
            b[2] - a[2],
            b[1] - a[1],
            b[3] - a[3]
        );
    }
    match r {
        Ok(()) => println!(
            "ok - forkstress ({} rounds, {} children, {} MiB, {ms:.0} ms)",
            o.rounds, o.children, o.mib
        ),
        Err(e) => {
            println!("FAILED - forkstress: {e}");
            exit(1);
        }
    }
}
