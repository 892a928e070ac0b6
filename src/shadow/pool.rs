//! Bounded pool of shadow translation-table memory: 16 KiB blocks for L1 tables, carved into 1 KiB L2 slots.

use alloc::vec;
use alloc::vec::Vec;

use super::walk::{GuestMemory, MemError};
use crate::addr::{GuestPhysAddr, HostPhysAddr};

/// Words in one 16 KiB block (one first-level table).
pub const BLOCK_WORDS: usize = 4096;
/// Words in one 1 KiB second-level table.
pub const L2_WORDS: usize = 256;
/// Bytes in one block.
pub const BLOCK_BYTES: u64 = 0x4000;

/// Shadow table storage: `blocks` 16 KiB blocks, block `i` at host physical address
/// `base + i * 16 KiB`. Block-sized allocations hold first-level tables; other blocks are
/// split into sixteen 1 KiB second-level slots (slot `s` lives in block `s / 16`) and go back
/// to the block list when all sixteen are free.
///
/// On target the storage must be the memory the MMU reads at `base` (see
/// [`Pool::from_storage`]); on the host it is ordinary heap memory and `base` is nominal.
pub struct Pool {
    base: HostPhysAddr,
    mem: Vec<u32>,
    free_blocks: Vec<u32>,
    /// Per block: bit k set = L2 slot k free. Only meaningful for L2 blocks.
    l2_free_mask: Vec<u16>,
    /// Blocks currently split into L2 slots.
    l2_blocks: Vec<u32>,
    l2_in_use: usize,
    l1_in_use: usize,
}

impl Pool {
    /// A pool of `blocks` zeroed 16 KiB blocks on the heap whose first block is at host
    /// physical address `base`. `base` should be 16 KiB aligned (it is masked down).
    pub fn new(base: HostPhysAddr, blocks: usize) -> Self {
        Self::from_storage(base, vec![0; blocks * BLOCK_WORDS])
    }

    /// A pool over `storage` (its length is rounded down to whole blocks), which must be the
    /// memory at host physical address `base` (16 KiB aligned) as seen by the hardware walker.
    pub fn from_storage(base: HostPhysAddr, mut storage: Vec<u32>) -> Self {
        let blocks = storage.len() / BLOCK_WORDS;
        storage.truncate(blocks * BLOCK_WORDS);
        storage.iter_mut().for_each(|w| *w = 0);
        Pool {
            base: base.align_down(BLOCK_BYTES),
            mem: storage,
            free_blocks: (0..blocks as u32).rev().collect(),
            l2_free_mask: vec![0; blocks],
            l2_blocks: Vec::new(),
            l2_in_use: 0,
            l1_in_use: 0,
        }
    }

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.mem.len() / BLOCK_WORDS
    }

    /// First-level tables and second-level tables in use.
    pub fn usage(&self) -> (usize, usize) {
        (self.l1_in_use, self.l2_in_use)
    }

    /// Blocks taken from the pool: first-level tables plus blocks split into second-level
    /// slots (at least one of which is in use).
    pub fn blocks_in_use(&self) -> usize {
        self.blocks() - self.free_blocks.len()
    }

    /// Host physical address of the first byte of the pool.
    pub fn base(&self) -> HostPhysAddr {
        self.base
    }

    /// Allocates a zeroed first-level table; `None` when no block is free.
    pub(crate) fn alloc_l1(&mut self) -> Option<u32> {
        let b = self.free_blocks.pop()?;
        let s = b as usize * BLOCK_WORDS;
        self.mem[s..s + BLOCK_WORDS].fill(0);
        self.l1_in_use += 1;
        Some(b)
    }

    /// Returns a first-level table's block.
    pub(crate) fn free_l1(&mut self, block: u32) {
        self.l1_in_use -= 1;
        self.free_blocks.push(block);
    }

    /// Allocates a zeroed second-level slot; `None` when the pool is exhausted.
    pub(crate) fn alloc_l2(&mut self) -> Option<u32> {
        let b = match self
            .l2_blocks
            .iter()
            .rev()
            .find(|&&b| self.l2_free_mask[b as usize] != 0)
        {
            Some(&b) => b,
            None => {
                let b = self.free_blocks.pop()?;
                self.l2_free_mask[b as usize] = 0xffff;
                self.l2_blocks.push(b);
                b
            }
        };
        let mask = &mut self.l2_free_mask[b as usize];
        let k = mask.trailing_zeros();
        *mask &= !(1 << k);
        let slot = b * 16 + k;
        let s = slot as usize * L2_WORDS;
        self.mem[s..s + L2_WORDS].fill(0);
        self.l2_in_use += 1;
        Some(slot)
    }

    /// Returns a second-level slot.
    pub(crate) fn free_l2(&mut self, slot: u32) {
        let b = slot / 16;
        let mask = &mut self.l2_free_mask[b as usize];
        *mask |= 1 << (slot % 16);
        self.l2_in_use -= 1;
        if *mask == 0xffff {
            if let Some(pos) = self.l2_blocks.iter().position(|&x| x == b) {
                self.l2_blocks.swap_remove(pos);
            }
            self.l2_free_mask[b as usize] = 0;
            self.free_blocks.push(b);
        }
    }

    /// Host physical address of a first-level table.
    pub fn l1_pa(&self, block: u32) -> u64 {
        self.base.raw() + block as u64 * BLOCK_BYTES
    }

    /// Host physical address of a second-level slot.
    pub fn l2_pa(&self, slot: u32) -> u64 {
        self.base.raw() + slot as u64 * 0x400
    }

    #[inline]
    pub(crate) fn l1_word(&self, block: u32, idx: usize) -> u32 {
        self.mem[block as usize * BLOCK_WORDS + idx]
    }

    #[inline]
    pub(crate) fn set_l1_word(&mut self, block: u32, idx: usize, w: u32) {
        self.mem[block as usize * BLOCK_WORDS + idx] = w;
    }

    #[inline]
    pub(crate) fn l2_word(&self, slot: u32, j: usize) -> u32 {
        self.mem[slot as usize * L2_WORDS + j]
    }

    /// The 256 words of a second-level slot.
    #[inline]
    pub(crate) fn l2_slice(&self, slot: u32) -> &[u32] {
        let s = slot as usize * L2_WORDS;
        &self.mem[s..s + L2_WORDS]
    }

    #[inline]
    pub(crate) fn set_l2_word(&mut self, slot: u32, j: usize, w: u32) {
        self.mem[slot as usize * L2_WORDS + j] = w;
    }

    /// Reads the word at host physical address `hpa` (`None` outside the pool).
    pub fn read_hpa(&self, hpa: u64) -> Option<u32> {
        let off = hpa.checked_sub(self.base.raw())?;
        if off % 4 != 0 {
            return None;
        }
        self.mem.get((off / 4) as usize).copied()
    }
}

/// The shadow tables seen as table memory, so the guest walker can walk them: addresses are
/// host physical addresses carried in a [`GuestPhysAddr`].
pub struct ShadowView<'a>(pub &'a Pool);

impl GuestMemory for ShadowView<'_> {
    fn read_u32(&self, gpa: GuestPhysAddr) -> Result<u32, MemError> {
        self.0.read_hpa(gpa.raw()).ok_or(MemError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_slots_return_blocks() {
        let mut p = Pool::new(HostPhysAddr::new(0x9000_0000), 3);
        let l1 = p.alloc_l1().unwrap();
        let slots: Vec<u32> = (0..32).map(|_| p.alloc_l2().unwrap()).collect();
        assert!(p.alloc_l2().is_none());
        assert!(p.alloc_l1().is_none());
        for s in &slots[..16] {
            p.free_l2(*s);
        }
        // One whole block is back.
        let l1b = p.alloc_l1().unwrap();
        assert_ne!(l1b, l1);
        assert_eq!(p.usage(), (2, 16));
        assert_eq!(p.blocks_in_use(), 3);
        assert_eq!(p.l1_pa(1), 0x9000_4000);
        assert_eq!(p.l2_pa(slots[20]), 0x9000_0000 + slots[20] as u64 * 0x400);
    }
}
