//! In-memory guest RAM and guest-physical→host-physical maps for tests, benchmarks and fuzzing.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use super::walk::{GuestMemory, MemError};
use super::{Backing, GuestMap};
use crate::addr::{GuestPhysAddr, HostPhysAddr};

/// Sparse guest RAM: a list of RAM ranges, zero-filled until written. Reads outside the
/// ranges fail with [`MemError`].
#[derive(Clone, Default)]
pub struct SparseMemory {
    ram: Vec<(u64, u64)>,
    /// Written pages: their words, and whether the whole page is RAM (if not, each read
    /// checks the ranges).
    pages: BTreeMap<u64, (Box<[u32; 1024]>, bool)>,
}

impl SparseMemory {
    /// RAM made of the `(start, len)` ranges.
    pub fn new(ram: &[(u64, u64)]) -> Self {
        // Sorted and merged, for binary searches.
        let mut sorted: Vec<(u64, u64)> = ram.iter().copied().filter(|r| r.1 != 0).collect();
        sorted.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
        for (s, l) in sorted {
            let end = s.saturating_add(l);
            match merged.last_mut() {
                Some((ms, ml)) if s <= *ms + *ml => *ml = (*ml).max(end - *ms),
                _ => merged.push((s, end - s)),
            }
        }
        SparseMemory {
            ram: merged,
            pages: BTreeMap::new(),
        }
    }

    fn is_ram(&self, gpa: u64) -> bool {
        let i = self.ram.partition_point(|r| r.0 <= gpa);
        i > 0 && gpa - self.ram[i - 1].0 < self.ram[i - 1].1
    }

    /// Stores `v` at the word containing `gpa`; `Err` outside RAM.
    pub fn write_u32(&mut self, gpa: u64, v: u32) -> Result<(), MemError> {
        if !self.is_ram(gpa) {
            return Err(MemError);
        }
        let ram = &self.ram;
        let (page, _) = self.pages.entry(gpa >> 12).or_insert_with(|| {
            let p = gpa & !0xfff;
            let whole = ram.iter().any(|&(s, l)| p >= s && p - s + 0x1000 <= l);
            (Box::new([0; 1024]), whole)
        });
        page[((gpa >> 2) & 1023) as usize] = v;
        Ok(())
    }
}

impl GuestMemory for SparseMemory {
    fn read_u32(&self, gpa: GuestPhysAddr) -> Result<u32, MemError> {
        let gpa = gpa.raw();
        match self.pages.get(&(gpa >> 12)) {
            Some((p, whole)) if *whole || self.is_ram(gpa) => Ok(p[((gpa >> 2) & 1023) as usize]),
            Some(_) => Err(MemError),
            None if self.is_ram(gpa) => Ok(0),
            None => Err(MemError),
        }
    }
}

/// One contiguous guest RAM range backed by a word vector (fast reads, for benchmarks).
#[derive(Clone)]
pub struct FlatMemory {
    base: u64,
    words: Vec<u32>,
}

impl FlatMemory {
    /// `len` bytes of zeroed RAM at guest physical address `base`.
    pub fn new(base: u64, len: u64) -> Self {
        FlatMemory {
            base,
            words: vec![0; (len / 4) as usize],
        }
    }

    /// Stores `v` at the word containing `gpa`; `Err` outside RAM.
    pub fn write_u32(&mut self, gpa: u64, v: u32) -> Result<(), MemError> {
        let i = gpa.checked_sub(self.base).ok_or(MemError)? / 4;
        *self.words.get_mut(i as usize).ok_or(MemError)? = v;
        Ok(())
    }
}

impl GuestMemory for FlatMemory {
    #[inline]
    fn read_u32(&self, gpa: GuestPhysAddr) -> Result<u32, MemError> {
        let i = gpa.raw().wrapping_sub(self.base) / 4;
        self.words.get(i as usize).copied().ok_or(MemError)
    }
}

/// A guest→host map made of linear RAM regions; everything else is a hole.
#[derive(Clone, Default)]
pub struct RegionMap {
    /// Sorted, non-overlapping `(gpa, len, hpa)`.
    regions: Vec<(u64, u64, u64)>,
}

impl RegionMap {
    /// An empty map (all holes).
    pub fn new() -> Self {
        RegionMap {
            regions: Vec::new(),
        }
    }

    /// Maps `[gpa, gpa + len)` to `[hpa, hpa + len)`. Overlapping an existing region is a
    /// caller bug; the later region is then ignored for the overlap.
    pub fn add_ram(&mut self, gpa: u64, len: u64, hpa: u64) -> &mut Self {
        let pos = self.regions.partition_point(|r| r.0 < gpa);
        self.regions.insert(pos, (gpa, len, hpa));
        self
    }

    /// The guest RAM ranges `(gpa, len)`.
    pub fn ram_ranges(&self) -> Vec<(u64, u64)> {
        self.regions.iter().map(|r| (r.0, r.1)).collect()
    }

    /// The host address of `gpa`, or `None` in a hole.
    pub fn lookup(&self, gpa: u64) -> Option<u64> {
        match self.backing(GuestPhysAddr::new(gpa & !0xfff)) {
            Backing::Ram { hpa, .. } => Some(hpa.raw() + (gpa & 0xfff)),
            Backing::Hole { .. } => None,
        }
    }
}

impl GuestMap for RegionMap {
    fn backing(&self, gpa: GuestPhysAddr) -> Backing {
        let gpa = gpa.raw();
        let pos = self.regions.partition_point(|r| r.0 <= gpa);
        if pos > 0 {
            let (g, l, h) = self.regions[pos - 1];
            if gpa - g < l {
                return Backing::Ram {
                    hpa: HostPhysAddr::new(h + (gpa - g)),
                    len: l - (gpa - g),
                };
            }
        }
        let next = self.regions.get(pos).map_or(1u64 << 40, |r| r.0);
        Backing::Hole {
            len: next.saturating_sub(gpa).max(0x1000),
        }
    }
}
