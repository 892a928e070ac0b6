//! Reference-counted set of write-protected guest pages (pages that hold guest translation tables).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

/// Pages below 4 GiB (the only place short-descriptor tables can live), with a two-level
/// bitmap for O(1) membership and range tests and a count of references per page.
pub(crate) struct WpSet {
    /// One optional 256-bit map per MiB of guest physical space.
    top: Vec<Option<Box<[u64; 4]>>>,
    counts: BTreeMap<u32, u32>,
}

impl WpSet {
    pub(crate) fn new() -> Self {
        WpSet {
            top: vec![None; 4096],
            counts: BTreeMap::new(),
        }
    }

    /// Adds one reference to page `page` (a page number, gpa >> 12). True if the page just
    /// became protected.
    pub(crate) fn inc(&mut self, page: u32) -> bool {
        let c = self.counts.entry(page).or_insert(0);
        *c += 1;
        if *c == 1 {
            let m = self.top[(page >> 8) as usize].get_or_insert_with(|| Box::new([0; 4]));
            m[((page >> 6) & 3) as usize] |= 1 << (page & 63);
            true
        } else {
            false
        }
    }

    /// Drops one reference. True if the page just became unprotected.
    pub(crate) fn dec(&mut self, page: u32) -> bool {
        let Some(c) = self.counts.get_mut(&page) else {
            return false;
        };
        *c -= 1;
        if *c == 0 {
            self.counts.remove(&page);
            if let Some(m) = self.top[(page >> 8) as usize].as_mut() {
                m[((page >> 6) & 3) as usize] &= !(1 << (page & 63));
            }
            true
        } else {
            false
        }
    }

    /// True if the page holding `gpa` is protected.
    #[inline]
    pub(crate) fn contains(&self, gpa: u64) -> bool {
        if gpa >> 32 != 0 {
            return false;
        }
        let page = (gpa >> 12) as u32;
        match &self.top[(page >> 8) as usize] {
            Some(m) => m[((page >> 6) & 3) as usize] >> (page & 63) & 1 != 0,
            None => false,
        }
    }

    /// True if any page in `[gpa, gpa + len)` is protected; `gpa` and `len` are 4 KiB
    /// multiples, `len` at most 16 MiB.
    pub(crate) fn any_in(&self, gpa: u64, len: u64) -> bool {
        if gpa >> 32 != 0 {
            return false;
        }
        let end = (gpa + len).min(1 << 32);
        let mut a = gpa;
        while a < end {
            let mib = (a >> 20) as usize;
            match &self.top[mib] {
                None => a = ((a >> 20) + 1) << 20,
                Some(m) => {
                    if a & 0xf_ffff == 0 && end - a >= 0x10_0000 {
                        if m.iter().any(|&w| w != 0) {
                            return true;
                        }
                        a += 0x10_0000;
                    } else {
                        if self.contains(a) {
                            return true;
                        }
                        a += 0x1000;
                    }
                }
            }
        }
        false
    }

    pub(crate) fn clear(&mut self) {
        self.top.iter_mut().for_each(|t| *t = None);
        self.counts.clear();
    }

    /// The protected pages (page numbers), increasing.
    pub(crate) fn pages(&self) -> impl Iterator<Item = u32> + '_ {
        self.counts.keys().copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.counts.len()
    }
}
