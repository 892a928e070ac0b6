//! Case generator and checker for the on-target ATS1C** differential test of the walker.
//!
//! The same `no_std` code runs on both sides: the AArch32 test image calls [`generate`] with
//! a seed, stores [`DiffCase::writes`] into its (zeroed) table area, programs
//! [`DiffCase::regime`], runs ATS1CPR/ATS1CPW/ATS1CUR/ATS1CUW on every probe and prints one
//! [`format_line`] per result; the host regenerates the case, computes [`expected`] with the
//! engine's walker and compares the printed values with [`parse_line`].
//!
//! The image keeps itself mapped: its own region is identity-mapped with sections in domain
//! 0, which stays a client domain, as Normal write-back memory (TEX remap region 7 is forced
//! to Normal WBWA when TRE is set). Everything else is random.

use alloc::vec::Vec;
use core::fmt::Write;

use super::walk::{ats1, sctlr, AtsOp, GuestMemory, Regime};
use crate::addr::VirtAddr;

/// Where the test image lives and where the generated tables go (guest = physical addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiffLayout {
    /// Start of the image, 1 MiB aligned.
    pub image_base: u32,
    /// Size of the image region in bytes, a multiple of 1 MiB.
    pub image_len: u32,
    /// Table area (0xa000 bytes, 16 KiB aligned, outside the image region).
    pub table_base: u32,
    /// RAM the random mappings point into.
    pub ram_base: u32,
    /// Size of that RAM.
    pub ram_len: u32,
}

/// Bytes the table area needs: two 16 KiB L1 tables and eight 1 KiB L2 tables.
pub const TABLE_AREA: u32 = 0xa000;

/// One generated differential case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffCase {
    /// Registers to program (TTBR0, TTBR1, TTBCR, DACR, the SCTLR bits M/AFE/TRE, CONTEXTIDR,
    /// PRRR, NMRR).
    pub regime: Regime,
    /// `(physical address, value)` words to store into the zeroed table area.
    pub writes: Vec<(u32, u32)>,
    /// Virtual addresses to probe with the four operations.
    pub probes: Vec<u32>,
}

/// xorshift32: a tiny deterministic generator both sides share.
#[derive(Clone, Copy, Debug)]
pub struct XorShift32(u32);

impl XorShift32 {
    /// Seeds the generator (a zero seed is replaced by a fixed non-zero one).
    pub const fn new(seed: u32) -> Self {
        XorShift32(if seed == 0 { 0x9e37_79b9 } else { seed })
    }
    /// The next value.
    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
    /// A value below `n` (`n` > 0).
    pub fn below(&mut self, n: u32) -> u32 {
        self.next_u32() % n.max(1)
    }
}

fn put(writes: &mut Vec<(u32, u32)>, gpa: u32, v: u32) {
    match writes.iter_mut().find(|w| w.0 == gpa) {
        Some(w) => w.1 = v,
        None => writes.push((gpa, v)),
    }
}

/// Generates case `seed` for `layout`. Deterministic: the same inputs give the same case.
pub fn generate(seed: u32, layout: &DiffLayout) -> DiffCase {
    let mut rng = XorShift32::new(seed);
    let n = rng.below(3);
    let mut sctlr_bits = sctlr::M;
    if rng.below(2) == 1 {
        sctlr_bits |= sctlr::AFE;
    }
    let tre = rng.below(2) == 1;
    let (mut prrr, mut nmrr) = (0, 0);
    if tre {
        sctlr_bits |= sctlr::TRE;
        prrr = rng.next_u32();
        nmrr = rng.next_u32();
        // Region 7 (TEX[0]=1, C=1, B=1) is Normal write-back for the image.
        prrr = (prrr & !(3 << 14)) | (2 << 14);
        nmrr = (nmrr & !(3 << 14 | 3 << 30)) | (1 << 14) | (1 << 30);
    }
    let dacr = (rng.next_u32() & !3) | 1;
    let l1_0 = layout.table_base;
    let l1_1 = layout.table_base + 0x4000;
    let l2_base = layout.table_base + 0x8000;
    let regime = Regime {
        ttbr0: l1_0,
        ttbr1: l1_1,
        ttbcr: n,
        dacr,
        sctlr: sctlr_bits,
        contextidr: rng.below(256),
        prrr,
        nmrr,
    };
    let l1_addr = |idx: u32| {
        if regime.ttbr_for(idx << 20) == 1 {
            l1_1 + idx * 4
        } else {
            l1_0 + idx * 4
        }
    };
    let mut writes = Vec::new();
    let image_first = layout.image_base >> 20;
    let image_end = image_first + (layout.image_len >> 20);
    let in_image = |idx: u32| idx >= image_first && idx < image_end;
    let mut probes = Vec::new();
    let rand_pa = |rng: &mut XorShift32, align: u32| {
        if rng.below(8) == 0 {
            rng.next_u32() & !(align - 1)
        } else {
            (layout.ram_base + rng.below(layout.ram_len.max(align))) & !(align - 1)
        }
    };
    for _ in 0..24 {
        let idx = rng.below(4096);
        // Never touch the image's entries, nor a supersection group that contains one.
        if ((idx & !15)..=(idx | 15)).any(in_image) {
            continue;
        }
        let attrs = rng.next_u32();
        match rng.below(10) {
            0..=3 => {
                let w = rand_pa(&mut rng, 1 << 20) | (attrs & 0x000b_fffd) | 2;
                put(&mut writes, l1_addr(idx), w);
            }
            4 | 5 => {
                let g = idx & !15;
                let w = rand_pa(&mut rng, 1 << 24) | (1 << 18) | (attrs & 0x000b_fe1d) | 2;
                for i in g..g + 16 {
                    put(&mut writes, l1_addr(i), w);
                }
            }
            6..=8 => {
                let t = rng.below(8);
                let table = l2_base + t * 0x400;
                put(&mut writes, l1_addr(idx), table | (attrs & 0x3fc) | 1);
                for _ in 0..8 {
                    let j = rng.below(256);
                    let a = rng.next_u32();
                    match rng.below(4) {
                        0 | 1 => put(
                            &mut writes,
                            table + j * 4,
                            rand_pa(&mut rng, 0x1000) | (a & 0xffd) | 2,
                        ),
                        2 => {
                            let w = rand_pa(&mut rng, 0x1_0000) | (a & 0xfffc) | 1;
                            for k in (j & !15)..(j & !15) + 16 {
                                put(&mut writes, table + k * 4, w);
                            }
                        }
                        _ => put(&mut writes, table + j * 4, a),
                    }
                    probes.push((idx << 20) | (j << 12) | (a & 0xffc));
                }
            }
            _ => put(&mut writes, l1_addr(idx), attrs),
        }
        probes.push((idx << 20) | (rng.next_u32() & 0xf_fffc));
    }
    // The image's identity sections, written last so nothing overwrites them.
    for idx in image_first..image_end {
        let w = (idx << 20) | 2 | (3 << 10) | (1 << 12) | (3 << 2);
        put(&mut writes, l1_addr(idx), w);
    }
    probes.push(layout.image_base);
    probes.truncate(64);
    DiffCase {
        regime,
        writes,
        probes,
    }
}

/// Physical memory a table walk may touch on the test machine, beyond [`DiffLayout`].
///
/// The host can only predict a walk whose every read has a known outcome. RAM in
/// `[layout.ram_base, layout.ram_base + layout.ram_len)` outside the image region reads as
/// zero apart from the generated tables (the target zeroes it); `abort` is a range the
/// machine leaves unassigned, where a walk read is a synchronous external abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiffMemory {
    /// `(start, length)` of an unassigned physical range (length > 0x400, 1 KiB aligned).
    pub abort: (u32, u32),
}

/// Generates the extended case `seed`: [`generate`]'s tables and probes, then
///
/// - TTBCR.N drawn from 0..=7 (the first-level entries are moved to the table that
///   translates them under the new split),
/// - PD0 or PD1 set, sometimes, for the half the image does not live in, and sometimes
///   that half's first-level table in the unassigned range (level-1 external aborts),
/// - every first-level page-table descriptor whose second-level table would lie outside
///   memory the host can model ([`DiffMemory`]) pointed either into the unassigned range
///   (an external abort on the walk) or into the zeroed RAM (a table of fault entries).
///
/// Deterministic, and the image stays mapped exactly as in [`generate`].
pub fn generate_ext(seed: u32, layout: &DiffLayout, memory: &DiffMemory) -> DiffCase {
    let mut case = generate(seed, layout);
    let mut rng = XorShift32::new(seed.wrapping_mul(0x9e37_79b9) ^ 0x5bd1_e995);
    let l1_0 = layout.table_base;
    let l1_1 = layout.table_base + 0x4000;
    let old = case.regime;
    let n = rng.below(8);
    let mut regime = Regime { ttbcr: n, ..old };
    let image_ttbr = regime.ttbr_for(layout.image_base);
    match rng.below(4) {
        0 if image_ttbr == 0 => regime.ttbcr |= super::walk::ttbcr::PD1,
        0 => regime.ttbcr |= super::walk::ttbcr::PD0,
        _ => {}
    }
    // Sometimes the other half's first-level table lies in the unassigned range: every
    // walk through it is a level-1 external abort.
    if n > 0 && rng.below(8) == 0 {
        let t = memory.abort.0 + (rng.below(memory.abort.1) & !0x3fff);
        if image_ttbr == 0 {
            regime.ttbr1 = t;
        } else {
            regime.ttbr0 = t;
        }
    }
    let in_image = |a: u32| a >= layout.image_base && a - layout.image_base < layout.image_len;
    let modeled = |a: u32| {
        let ram = a >= layout.ram_base && a - layout.ram_base < layout.ram_len && !in_image(a);
        let abort = a >= memory.abort.0 && a - memory.abort.0 < memory.abort.1;
        ram || abort
    };
    let ram_end = layout.ram_base.wrapping_add(layout.ram_len);
    let mut writes = Vec::with_capacity(case.writes.len());
    for &(a, mut v) in &case.writes {
        let l1 = if (l1_0..l1_0 + 0x4000).contains(&a) {
            Some(a - l1_0)
        } else if (l1_1..l1_1 + 0x4000).contains(&a) {
            Some(a - l1_1)
        } else {
            None
        };
        let Some(off) = l1 else {
            writes.push((a, v));
            continue;
        };
        let va = (off >> 2) << 20;
        if v & 3 == 1 && !modeled(v & 0xffff_fc00) {
            let base = if rng.below(2) == 0 {
                memory.abort.0 + (rng.below(memory.abort.1) & !0x3ff)
            } else {
                // Zeroed RAM above the table area (the image lies below it).
                let lo = layout.table_base + TABLE_AREA;
                lo + (rng.below(ram_end.wrapping_sub(lo)) & !0x3ff)
            };
            v = (v & 0x3ff) | base;
        }
        let table = if regime.ttbr_for(va) == 1 { l1_1 } else { l1_0 };
        writes.push((table + off, v));
    }
    case.regime = regime;
    case.writes = writes;
    case
}

/// The four operations in the order [`expected`] reports them.
pub const OPS: [AtsOp; 4] = [AtsOp::Cpr, AtsOp::Cpw, AtsOp::Cur, AtsOp::Cuw];

/// The PAR values the architecture predicts for every probe, `[Cpr, Cpw, Cur, Cuw]` each,
/// with the case's tables readable through `mem`.
pub fn expected<M: GuestMemory + ?Sized>(case: &DiffCase, mem: &M) -> Vec<(u32, [u32; 4])> {
    case.probes
        .iter()
        .map(|&va| {
            let v = VirtAddr::new(va as u64);
            (va, OPS.map(|op| ats1(&case.regime, mem, v, op)))
        })
        .collect()
}

/// The line the target prints for one result: `PAR <va> <op 0..3> <par>` in hex.
pub fn format_line<W: Write>(out: &mut W, va: u32, op: usize, par: u32) -> core::fmt::Result {
    writeln!(out, "PAR {va:08x} {op} {par:08x}")
}

/// Parses a [`format_line`] line into `(va, op index, par)`; `None` for any other line.
pub fn parse_line(line: &str) -> Option<(u32, usize, u32)> {
    let mut it = line.trim().split_ascii_whitespace();
    if it.next()? != "PAR" {
        return None;
    }
    let va = u32::from_str_radix(it.next()?, 16).ok()?;
    let op: usize = it.next()?.parse().ok()?;
    let par = u32::from_str_radix(it.next()?, 16).ok()?;
    (op < 4 && it.next().is_none()).then_some((va, op, par))
}

/// The line the target prints when an operation took a Data Abort instead of writing PAR
/// (a synchronous external abort on the walk): `ABORT <va> <op 0..3> <dfsr> <dfar>` in hex.
pub fn format_abort_line<W: Write>(
    out: &mut W,
    va: u32,
    op: usize,
    dfsr: u32,
    dfar: u32,
) -> core::fmt::Result {
    writeln!(out, "ABORT {va:08x} {op} {dfsr:08x} {dfar:08x}")
}

/// Parses a [`format_abort_line`] line into `(va, op index, dfsr, dfar)`; `None` for any
/// other line.
pub fn parse_abort_line(line: &str) -> Option<(u32, usize, u32, u32)> {
    let mut it = line.trim().split_ascii_whitespace();
    if it.next()? != "ABORT" {
        return None;
    }
    let va = u32::from_str_radix(it.next()?, 16).ok()?;
    let op: usize = it.next()?.parse().ok()?;
    let dfsr = u32::from_str_radix(it.next()?, 16).ok()?;
    let dfar = u32::from_str_radix(it.next()?, 16).ok()?;
    (op < 4 && it.next().is_none()).then_some((va, op, dfsr, dfar))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shadow::sim::SparseMemory;
    use crate::shadow::walk::{translate, Access, AccessKind, Pl};
    use alloc::string::String;

    const LAYOUT: DiffLayout = DiffLayout {
        image_base: 0x4000_0000,
        image_len: 0x20_0000,
        table_base: 0x4020_0000,
        ram_base: 0x4000_0000,
        ram_len: 0x800_0000,
    };

    #[test]
    fn cases_are_deterministic_and_keep_the_image_mapped() {
        for seed in 1..200 {
            let c = generate(seed, &LAYOUT);
            assert_eq!(c, generate(seed, &LAYOUT));
            let mut mem = SparseMemory::new(&[(LAYOUT.ram_base as u64, LAYOUT.ram_len as u64)]);
            for &(a, v) in &c.writes {
                assert!(
                    (LAYOUT.table_base..LAYOUT.table_base + TABLE_AREA).contains(&a),
                    "{a:#x}"
                );
                mem.write_u32(a as u64, v).unwrap();
            }
            for va in [LAYOUT.image_base, LAYOUT.image_base + LAYOUT.image_len - 4] {
                for kind in [AccessKind::Read, AccessKind::Write, AccessKind::Exec] {
                    let t = translate(
                        &c.regime,
                        &mem,
                        VirtAddr::new(va as u64),
                        Access { pl: Pl::Pl1, kind },
                    )
                    .unwrap_or_else(|f| panic!("seed {seed}: image unmapped {f:?}"));
                    assert_eq!(t.pa, va as u64);
                }
            }
            let exp = expected(&c, &mem);
            assert_eq!(exp.len(), c.probes.len());
        }
    }

    #[test]
    fn extended_cases_keep_the_image_mapped_and_read_only_modeled_memory() {
        let memory = DiffMemory {
            abort: (0x8000_0000, 0x1000_0000),
        };
        let mut splits = [0u32; 8];
        for seed in 1..300 {
            let c = generate_ext(seed, &LAYOUT, &memory);
            assert_eq!(c, generate_ext(seed, &LAYOUT, &memory));
            splits[c.regime.n() as usize] += 1;
            let mut mem = SparseMemory::new(&[(LAYOUT.ram_base as u64, LAYOUT.ram_len as u64)]);
            for &(a, v) in &c.writes {
                assert!(
                    (LAYOUT.table_base..LAYOUT.table_base + TABLE_AREA).contains(&a),
                    "{a:#x}"
                );
                mem.write_u32(a as u64, v).unwrap();
                // First-level page-table descriptors (the L2 area holds large pages).
                if a < LAYOUT.table_base + 0x8000 && v & 3 == 1 {
                    let b = v & 0xffff_fc00;
                    let in_ram = (LAYOUT.table_base..LAYOUT.ram_base + LAYOUT.ram_len).contains(&b);
                    let in_abort = b >= memory.abort.0 && b - memory.abort.0 < memory.abort.1;
                    assert!(in_ram || in_abort, "seed {seed}: L2 table at {b:#x}");
                }
            }
            for kind in [AccessKind::Read, AccessKind::Write, AccessKind::Exec] {
                let t = translate(
                    &c.regime,
                    &mem,
                    VirtAddr::new(LAYOUT.image_base as u64),
                    Access { pl: Pl::Pl1, kind },
                )
                .unwrap_or_else(|f| panic!("seed {seed}: image unmapped {f:?}"));
                assert_eq!(t.pa, LAYOUT.image_base as u64);
            }
        }
        assert!(splits.iter().all(|&k| k > 0), "{splits:?}");
    }

    #[test]
    fn lines_round_trip() {
        let mut s = String::new();
        format_line(&mut s, 0xc000_1234, 3, 0x4000_0f81).unwrap();
        assert_eq!(parse_line(&s), Some((0xc000_1234, 3, 0x4000_0f81)));
        assert_eq!(parse_line("PAR zz 1 0"), None);
        assert_eq!(parse_line("hello"), None);
        assert_eq!(parse_line("PAR 1 4 0"), None);
        let mut a = String::new();
        format_abort_line(&mut a, 0x34d6_2ef8, 1, 0xde, 0x34d6_2ef8).unwrap();
        assert_eq!(
            parse_abort_line(&a),
            Some((0x34d6_2ef8, 1, 0xde, 0x34d6_2ef8))
        );
        assert_eq!(parse_abort_line(&s), None);
        assert_eq!(parse_line(&a), None);
    }
}
