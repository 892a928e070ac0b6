//! Physical memory: a page-frame allocator over the host's RAM ranges.
//!
//! The allocator keeps a fixed-size, sorted list of free ranges, so it works before
//! the heap exists. RAM comes from the device tree; the hypervisor image, the DTB, the
//! guest bundle and reserved ranges are taken out with [`FrameAllocator::reserve`].
//! Each VM's memory is carved from it as one naturally aligned contiguous chunk.

use crate::addr::{HostPhysAddr, HostRange};
use core::fmt;

/// Size of a page frame.
pub const PAGE_SIZE: u64 = 4096;

/// Errors of the frame allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    /// No free range can hold `size` bytes at `align`.
    OutOfMemory {
        /// Bytes requested.
        size: u64,
        /// Alignment requested.
        align: u64,
    },
    /// The fixed range list is full (memory too fragmented to track).
    TooManyRanges,
    /// A size or alignment that is zero, not page-aligned, or not a power of two.
    BadRequest,
    /// A freed range overlaps memory that is already free.
    DoubleFree(HostPhysAddr),
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmError::OutOfMemory { size, align } => {
                write!(
                    f,
                    "out of memory: no free range of {size:#x} bytes aligned to {align:#x}"
                )
            }
            MmError::TooManyRanges => write!(f, "too many free ranges to track"),
            MmError::BadRequest => write!(f, "size or alignment is not a non-zero page multiple"),
            MmError::DoubleFree(a) => write!(f, "double free at {a}"),
        }
    }
}

/// Most free ranges tracked at once.
pub const MAX_RANGES: usize = 64;

/// A first-fit allocator of page frames over a set of free physical ranges.
#[derive(Clone)]
pub struct FrameAllocator {
    ranges: [HostRange; MAX_RANGES],
    len: usize,
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameAllocator {
    /// An allocator with no memory.
    pub const fn new() -> Self {
        Self {
            ranges: [HostRange::new(HostPhysAddr::new(0), 0); MAX_RANGES],
            len: 0,
        }
    }

    /// The free ranges, sorted by address and never adjacent.
    pub fn free_ranges(&self) -> &[HostRange] {
        &self.ranges[..self.len]
    }

    /// Total free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free_ranges().iter().map(|r| r.size).sum()
    }

    /// Adds `range` as free memory, shrunk inwards to whole pages. Parts that are
    /// already free are merged. Errors with `TooManyRanges` if the list is full.
    pub fn add(&mut self, range: HostRange) -> Result<(), MmError> {
        let start = match range.start.checked_align_up(PAGE_SIZE) {
            Some(s) => s.raw(),
            None => return Ok(()),
        };
        let end = range.end() & !(PAGE_SIZE - 1);
        if end <= start {
            return Ok(());
        }
        // Merge with every free range that overlaps or touches [start, end).
        let mut s = start;
        let mut e = end;
        let mut i = 0;
        while i < self.len {
            let r = self.ranges[i];
            if r.start.raw() <= e && s <= r.end() {
                s = s.min(r.start.raw());
                e = e.max(r.end());
                self.remove_at(i);
            } else {
                i += 1;
            }
        }
        self.insert_sorted(HostRange::new(HostPhysAddr::new(s), e - s))
    }

    /// Removes `range` (rounded outwards to pages) from the free memory, wherever it
    /// overlaps. Reserving memory that is not free is a no-op for that part.
    pub fn reserve(&mut self, range: HostRange) -> Result<(), MmError> {
        let s = range.start.raw() & !(PAGE_SIZE - 1);
        let e = match range.end().checked_add(PAGE_SIZE - 1) {
            Some(v) => v & !(PAGE_SIZE - 1),
            None => !(PAGE_SIZE - 1),
        };
        let mut i = 0;
        while i < self.len {
            let r = self.ranges[i];
            if r.end() <= s || e <= r.start.raw() {
                i += 1;
                continue;
            }
            self.remove_at(i);
            if r.start.raw() < s {
                self.insert_sorted(HostRange::new(r.start, s - r.start.raw()))?;
                i += 1;
            }
            if e < r.end() {
                self.insert_sorted(HostRange::new(HostPhysAddr::new(e), r.end() - e))?;
                i += 1;
            }
        }
        Ok(())
    }

    /// Allocates `size` bytes aligned to `align` (both non-zero page multiples, `align`
    /// a power of two), first fit from the lowest address. The memory is not zeroed.
    pub fn alloc(&mut self, size: u64, align: u64) -> Result<HostPhysAddr, MmError> {
        self.alloc_below(size, align, u64::MAX)
    }

    /// Like [`alloc`](Self::alloc), but the whole allocation lies below `limit` (its
    /// end is at most `limit`), e.g. memory a DMA-limited bus can reach.
    pub fn alloc_below(
        &mut self,
        size: u64,
        align: u64,
        limit: u64,
    ) -> Result<HostPhysAddr, MmError> {
        if size == 0
            || !size.is_multiple_of(PAGE_SIZE)
            || align < PAGE_SIZE
            || !align.is_power_of_two()
        {
            return Err(MmError::BadRequest);
        }
        for i in 0..self.len {
            let r = self.ranges[i];
            let Some(a) = r.start.checked_align_up(align) else {
                continue;
            };
            let Some(end) = a.raw().checked_add(size) else {
                continue;
            };
            if end <= r.end() && end <= limit {
                self.reserve(HostRange::new(a, size))?;
                return Ok(a);
            }
        }
        Err(MmError::OutOfMemory { size, align })
    }

    /// Allocates the largest naturally aligned chunk among `aligns` (tried in order)
    /// that fits `size`, falling back to page alignment.
    pub fn alloc_best_aligned(
        &mut self,
        size: u64,
        aligns: &[u64],
    ) -> Result<HostPhysAddr, MmError> {
        self.alloc_best_aligned_below(size, aligns, u64::MAX)
    }

    /// [`alloc_best_aligned`](Self::alloc_best_aligned) within `[0, limit)`.
    pub fn alloc_best_aligned_below(
        &mut self,
        size: u64,
        aligns: &[u64],
        limit: u64,
    ) -> Result<HostPhysAddr, MmError> {
        for &a in aligns {
            if let Ok(p) = self.alloc_below(size, a, limit) {
                return Ok(p);
            }
        }
        self.alloc_below(size, PAGE_SIZE, limit)
    }

    /// [`alloc_best_aligned`](Self::alloc_best_aligned), below `limit` if there is
    /// one and the memory fits there, else anywhere. The flag is false when a limit
    /// was given but the memory lies (at least partly) above it.
    pub fn alloc_best_aligned_preferring_below(
        &mut self,
        size: u64,
        aligns: &[u64],
        limit: Option<u64>,
    ) -> Result<(HostPhysAddr, bool), MmError> {
        if let Some(l) = limit {
            if let Ok(p) = self.alloc_best_aligned_below(size, aligns, l) {
                return Ok((p, true));
            }
        }
        let p = self.alloc_best_aligned(size, aligns)?;
        Ok((p, limit.is_none_or(|l| p.raw().saturating_add(size) <= l)))
    }

    /// Returns `[addr, addr + size)` to the free memory. `addr` and `size` must be
    /// page multiples; freeing memory that is already free is an error.
    pub fn free(&mut self, addr: HostPhysAddr, size: u64) -> Result<(), MmError> {
        if size == 0 || !size.is_multiple_of(PAGE_SIZE) || !addr.is_aligned(PAGE_SIZE) {
            return Err(MmError::BadRequest);
        }
        let r = HostRange::new(addr, size);
        if self.free_ranges().iter().any(|f| f.overlaps(&r)) {
            return Err(MmError::DoubleFree(addr));
        }
        self.add(r)
    }

    fn remove_at(&mut self, i: usize) {
        self.ranges.copy_within(i + 1..self.len, i);
        self.len -= 1;
    }

    fn insert_sorted(&mut self, r: HostRange) -> Result<(), MmError> {
        if self.len == MAX_RANGES {
            return Err(MmError::TooManyRanges);
        }
        let pos = self.ranges[..self.len]
            .iter()
            .position(|x| x.start > r.start)
            .unwrap_or(self.len);
        self.ranges.copy_within(pos..self.len, pos + 1);
        self.ranges[pos] = r;
        self.len += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hr(s: u64, z: u64) -> HostRange {
        HostRange::new(HostPhysAddr::new(s), z)
    }

    #[test]
    fn reserve_splits_and_alloc_aligns() {
        let mut a = FrameAllocator::new();
        a.add(hr(0x4000_0000, 0x4000_0000)).unwrap();
        a.reserve(hr(0x4010_0000, 0x23_4567)).unwrap();
        assert_eq!(a.free_ranges().len(), 2);
        assert_eq!(a.free_ranges()[1].start.raw(), 0x4033_5000);
        let p = a.alloc(0x20_0000, 0x20_0000).unwrap();
        assert_eq!(p.raw(), 0x4040_0000);
        let q = a.alloc(0x1000, 0x1000).unwrap();
        assert_eq!(q.raw(), 0x4000_0000);
        assert_eq!(
            a.alloc(0x8000_0000, 0x1000),
            Err(MmError::OutOfMemory {
                size: 0x8000_0000,
                align: 0x1000
            })
        );
        assert_eq!(a.alloc(0x800, 0x1000), Err(MmError::BadRequest));
        a.free(p, 0x20_0000).unwrap();
        assert_eq!(a.free(p, 0x1000), Err(MmError::DoubleFree(p)));
    }

    #[test]
    fn alloc_below_a_limit() {
        // A Raspberry Pi 4-like map: low RAM with the image near its start, high RAM.
        let mut a = FrameAllocator::new();
        a.add(hr(0, 0x3b40_0000)).unwrap();
        a.add(hr(0x4000_0000, 0xbc00_0000)).unwrap();
        a.reserve(hr(0, 0x40_0000)).unwrap();
        const GIB: u64 = 1 << 30;
        let aligns = [GIB, 2 << 20];
        // Without a limit the 1 GiB alignment wins: the first aligned address is 1 GiB.
        let mut b = a.clone();
        assert_eq!(b.alloc_best_aligned(128 << 20, &aligns).unwrap().raw(), GIB);
        // Below 1 GiB it falls back to 2 MiB alignment in low RAM.
        let mut b = a.clone();
        let p = b.alloc_best_aligned_below(128 << 20, &aligns, GIB).unwrap();
        assert_eq!(p.raw(), 0x40_0000);
        // An allocation must end at or below the limit, not just start there.
        let mut b = a.clone();
        assert_eq!(
            b.alloc_below(0x1000, 0x1000, 0x40_0000),
            Err(MmError::OutOfMemory {
                size: 0x1000,
                align: 0x1000
            })
        );
        assert_eq!(
            b.alloc_below(0x1000, 0x1000, 0x40_1000).unwrap().raw(),
            0x40_0000
        );
        assert_eq!(
            b.alloc_below(0x3b00_0000, 0x1000, GIB),
            Err(MmError::OutOfMemory {
                size: 0x3b00_0000,
                align: 0x1000
            })
        );
        assert_eq!(b.alloc_below(0x800, 0x1000, GIB), Err(MmError::BadRequest));
        // Preferring below: below when it fits, else anywhere, flagged.
        let mut b = a.clone();
        assert_eq!(
            b.alloc_best_aligned_preferring_below(128 << 20, &aligns, Some(GIB)),
            Ok((HostPhysAddr::new(0x40_0000), true))
        );
        assert_eq!(
            b.alloc_best_aligned_preferring_below(1 << 30, &aligns, Some(GIB)),
            Ok((HostPhysAddr::new(GIB), false))
        );
        assert_eq!(
            b.alloc_best_aligned_preferring_below(128 << 20, &aligns, None),
            Ok((HostPhysAddr::new(2 * GIB), true))
        );
        assert!(matches!(
            b.alloc_best_aligned_preferring_below(8 << 30, &aligns, Some(GIB)),
            Err(MmError::OutOfMemory { .. })
        ));
    }

    proptest! {
        /// Allocations below a limit end at or below it, and succeed whenever a
        /// page-aligned fit exists below it.
        #[test]
        fn alloc_below_respects_the_limit(
            holes in proptest::collection::vec((0u64..256, 1u64..16), 0..8),
            pages in 1u64..64,
            limit_pages in 0u64..300,
        ) {
            let mut a = FrameAllocator::new();
            a.add(hr(0, 256 * PAGE_SIZE)).unwrap();
            for (s, n) in holes {
                a.reserve(hr(s * PAGE_SIZE, n * PAGE_SIZE)).unwrap();
            }
            let limit = limit_pages * PAGE_SIZE;
            let size = pages * PAGE_SIZE;
            let fits = a
                .free_ranges()
                .iter()
                .any(|r| r.size >= size && r.start.raw() + size <= limit);
            let mut b = a.clone();
            match b.alloc_below(size, PAGE_SIZE, limit) {
                Ok(p) => {
                    prop_assert!(p.raw() + size <= limit);
                    prop_assert_eq!(b.free_bytes(), a.free_bytes() - size);
                }
                Err(e) => {
                    prop_assert!(!fits);
                    prop_assert_eq!(e, MmError::OutOfMemory { size, align: PAGE_SIZE });
                }
            }
        }

        /// Random alloc/free sequences never hand out overlapping memory, never hand
        /// out reserved memory, and freeing everything restores the free total.
        #[test]
        fn alloc_free_model(ops in proptest::collection::vec((1u64..64, 0u32..5, any::<bool>()), 1..200)) {
            let mut a = FrameAllocator::new();
            a.add(hr(0x4000_0000, 0x100_0000)).unwrap();
            a.reserve(hr(0x4020_0000, 0x3000)).unwrap();
            let total = a.free_bytes();
            let mut live: Vec<(HostPhysAddr, u64)> = Vec::new();
            for (pages, align_log, free_one) in ops {
                if free_one && !live.is_empty() {
                    let (p, s) = live.swap_remove(0);
                    a.free(p, s).unwrap();
                } else {
                    let align = PAGE_SIZE << (align_log * 2);
                    if let Ok(p) = a.alloc(pages * PAGE_SIZE, align) {
                        prop_assert!(p.is_aligned(align));
                        let r = hr(p.raw(), pages * PAGE_SIZE);
                        prop_assert!(!r.overlaps(&hr(0x4020_0000, 0x3000)));
                        for &(q, s) in &live {
                            prop_assert!(!r.overlaps(&hr(q.raw(), s)));
                        }
                        live.push((p, pages * PAGE_SIZE));
                    }
                }
            }
            for (p, s) in live {
                a.free(p, s).unwrap();
            }
            prop_assert_eq!(a.free_bytes(), total);
            prop_assert_eq!(a.free_ranges().len(), 2);
        }
    }
}
