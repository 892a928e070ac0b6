//! memstress: a guest userspace memory stress for the Linux test initramfs.
//!
//! ```text
//! memstress --mib N [--seed S] [--passes K]
//! memstress --percent P [--seed S] [--passes K]   (P% of MemAvailable)
//! memstress --mib N --inject-fault                  (flips a bit: must print FAILED)
//! ```
//!
//! Allocates the memory, then for each pattern writes every machine word and verifies
//! it: address-in-address (each word holds its own address), walking bits (word i holds
//! `1 << (i % BITS)`, inverted on every other round of BITS words), and pseudo-random
//! words from a seed (xorshift64; the verification regenerates the sequence).
//! Prints one line in the project's format, `ok - memstress N MiB` or
//! `FAILED - memstress N MiB: details`, preceded by `#` comment lines with figures.
//! Exits 0 on success, 1 on a mismatch or allocation failure, 2 on bad usage.

use std::hint::black_box;
use std::process::exit;
use std::time::Instant;

const BITS: usize = usize::BITS as usize;

fn usage(msg: &str) -> ! {
    eprintln!("memstress: {msg}");
    eprintln!("usage: memstress (--mib N | --percent P) [--seed S] [--passes K]");
    exit(2);
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Clone, Copy)]
enum Pattern {
    AddressInAddress,
    WalkingBits,
    Random(u64),
}

impl Pattern {
    fn name(self) -> &'static str {
        match self {
            Pattern::AddressInAddress => "address-in-address",
            Pattern::WalkingBits => "walking-bits",
            Pattern::Random(_) => "random",
        }
    }

    /// The value word `i` (at address `addr`) holds under this pattern.
    #[inline(always)]
    fn value(self, i: usize, addr: usize) -> usize {
        match self {
            Pattern::AddressInAddress => addr,
            Pattern::WalkingBits => {
                let v = 1usize << (i % BITS);
                if (i / BITS).is_multiple_of(2) {
                    v
                } else {
                    !v
                }
            }
            Pattern::Random(_) => unreachable!("random words come from Xorshift"),
        }
    }
}

/// xorshift64 (Marsaglia): cheap enough to regenerate the random pattern for the
/// verification pass, which matters on emulated CPUs.
struct Xorshift(u64);

impl Xorshift {
    fn new(seed: u64) -> Self {
        Xorshift(splitmix64(seed) | 1)
    }
    #[inline(always)]
    fn next(&mut self) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x as usize
    }
}

fn mem_available_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn parse<T: std::str::FromStr>(flag: &str, v: Option<String>) -> T {
    let v = v.unwrap_or_else(|| usage(&format!("{flag} needs a value")));
    v.parse()
        .unwrap_or_else(|_| usage(&format!("bad value '{v}' for {flag}")))
}

fn main() {
    let mut mib: Option<usize> = None;
    let mut percent: Option<u64> = None;
    let mut seed: u64 = 0x5eed_1234_abcd_0001;
    let mut passes: usize = 1;
    let mut inject_fault = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mib" => mib = Some(parse("--mib", args.next())),
            "--percent" => percent = Some(parse("--percent", args.next())),
            "--seed" => seed = parse("--seed", args.next()),
            "--passes" => passes = parse("--passes", args.next()),
            // Flips one bit after the first write, to show that verification catches it.
            "--inject-fault" => inject_fault = true,
            "-h" | "--help" => {
                println!("usage: memstress (--mib N | --percent P) [--seed S] [--passes K] [--inject-fault]");
                return;
            }
            _ => usage(&format!("unknown argument '{a}'")),
        }
    }
    let mib = match (mib, percent) {
        (Some(m), None) => m,
        (None, Some(p)) if (1..=95).contains(&p) => {
            let avail = mem_available_kib().unwrap_or_else(|| {
                println!("FAILED - memstress: cannot read MemAvailable from /proc/meminfo");
                exit(1)
            });
            println!("# memstress: MemAvailable {} MiB, using {p}%", avail / 1024);
            (avail * p / 100 / 1024) as usize
        }
        (None, Some(_)) => usage("--percent must be 1..=95"),
        _ => usage("give exactly one of --mib and --percent"),
    };
    if mib == 0 || passes == 0 {
        usage("nothing to do (0 MiB or 0 passes)");
    }
    let name = format!("memstress {mib} MiB");
    let words = mib * 1024 * 1024 / std::mem::size_of::<usize>();

    let start = Instant::now();
    let mut buf: Vec<usize> = Vec::new();
    if let Err(e) = buf.try_reserve_exact(words) {
        println!("FAILED - {name}: cannot allocate: {e}");
        exit(1);
    }
    let base = buf.as_ptr() as usize;
    let patterns = [
        Pattern::AddressInAddress,
        Pattern::WalkingBits,
        Pattern::Random(seed),
    ];
    let mut bytes_moved: u64 = 0;
    let mut timings = String::new();
    for pass in 0..passes {
        for (k, &p) in patterns.iter().enumerate() {
            // Vary the random seed on each pass.
            let p = match p {
                Pattern::Random(s) => Pattern::Random(s.wrapping_add(pass as u64)),
                other => other,
            };
            let word = std::mem::size_of::<usize>();
            let t = Instant::now();
            let mut rng = Xorshift::new(match p {
                Pattern::Random(s) => s,
                _ => 0,
            });
            let mut gen = |i: usize| match p {
                Pattern::Random(_) => rng.next(),
                _ => p.value(i, base + i * word),
            };
            if pass == 0 && k == 0 {
                // The first write also populates the pages.
                buf.extend((0..words).map(&mut gen));
            } else {
                for (i, w) in buf.iter_mut().enumerate() {
                    *w = gen(i);
                }
            }
            if inject_fault && pass == 0 && k == 0 {
                buf[words / 2] ^= 1 << 5;
            }
            // Keep the compiler from reasoning about the contents across the passes.
            black_box(&mut buf);
            let mut rng = Xorshift::new(match p {
                Pattern::Random(s) => s,
                _ => 0,
            });
            let mut gen = |i: usize| match p {
                Pattern::Random(_) => rng.next(),
                _ => p.value(i, base + i * word),
            };
            let mut bad = 0usize;
            let mut first: Option<(usize, usize, usize)> = None;
            for (i, &w) in buf.iter().enumerate() {
                let want = gen(i);
                if w != want {
                    bad += 1;
                    if first.is_none() {
                        first = Some((base + i * word, want, w));
                    }
                }
            }
            timings.push_str(&format!(" {} {:.2}s", p.name(), t.elapsed().as_secs_f64()));
            bytes_moved += 2 * (words * word) as u64;
            if let Some((addr, want, got)) = first {
                println!(
                    "FAILED - {name}: pattern {} pass {pass}: {bad} bad words, first at {addr:#x}: wrote {want:#x}, read {got:#x}",
                    p.name()
                );
                exit(1);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "# memstress: {mib} MiB, {} patterns x {passes} passes, {secs:.2} s, {:.0} MiB/s",
        patterns.len(),
        bytes_moved as f64 / 1048576.0 / secs.max(1e-9)
    );
    println!("# memstress times:{timings}");
    println!("ok - {name}");
}
