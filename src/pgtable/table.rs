//! Regime-independent table operations (map, unmap, protect, query, destroy) as visitors.
//!
//! [`Tables`] owns the root and the memory operations; the stage-specific wrappers
//! translate [`Prot`](super::Prot) into leaf attribute bits and supply a [`Flusher`]
//! that performs their TLB maintenance.

use super::desc::{self, is_leaf, level_size, ATTR_MASK, OA_MASK};
use super::geometry::Geometry;
use super::walk::{walk, Ctx, Visitor};
use super::{PageTableError, PageTableMm, ENTRIES_PER_TABLE, PAGE_SIZE};
use crate::addr::HostPhysAddr;

/// TLB maintenance of one regime, in the steps the operations need.
pub(crate) trait Flusher {
    /// Break step of break-before-make: the entry at `(addr, level)` has just been
    /// written invalid; make that visible, invalidate every TLB entry derived from it
    /// and wait for completion, so that a new valid entry may be written next.
    fn break_entry(&mut self, addr: u64, level: u8);
    /// A leaf covering `addr` at `level` has been written invalid and is not
    /// replaced; the invalidation may complete later, in [`Flusher::finish`].
    fn unmapped_leaf(&mut self, addr: u64, level: u8);
    /// A table entry covering `addr` at `level` has been written invalid; on return
    /// no walker may use the old child any more, so it can be freed.
    fn removed_table(&mut self, addr: u64, level: u8);
    /// End of an operation: complete deferred invalidations, publish new entries.
    fn finish(&mut self);
    /// Before tearing down the whole tree: invalidate everything of this regime.
    fn flush_all(&mut self);
}

/// A tree of translation tables: root frames, geometry and memory operations.
pub(crate) struct Tables<M> {
    pub geom: Geometry,
    pub root: HostPhysAddr,
    pub mm: M,
}

/// A read-only view of a [`PageTableMm`], so lookups can take `&self`.
struct ReadOnly<'a, M>(&'a M);

impl<M: PageTableMm> PageTableMm for ReadOnly<'_, M> {
    fn alloc_zeroed(&mut self, _frames: usize) -> Option<HostPhysAddr> {
        None
    }
    fn free(&mut self, _pa: HostPhysAddr, _frames: usize) {
        debug_assert!(false, "read-only walk freed a frame");
    }
    fn read_entry(&self, table: HostPhysAddr, index: usize) -> u64 {
        self.0.read_entry(table, index)
    }
    fn write_entry(&mut self, _table: HostPhysAddr, _index: usize, _value: u64) {
        debug_assert!(false, "read-only walk wrote an entry");
    }
}

impl<M: PageTableMm> Tables<M> {
    /// Allocates the (possibly concatenated) root. Errors: `NoMemory`.
    pub fn new(geom: Geometry, mut mm: M) -> Result<Self, PageTableError> {
        let root = mm
            .alloc_zeroed(geom.concat_tables())
            .ok_or(PageTableError::NoMemory)?;
        Ok(Self { geom, root, mm })
    }

    /// Validates an input range; `Ok(None)` for an empty one, else its end.
    pub fn check_range(&self, start: u64, size: u64) -> Result<Option<u64>, PageTableError> {
        if !start.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(PageTableError::Misaligned);
        }
        if size == 0 {
            return Ok(None);
        }
        match start.checked_add(size) {
            Some(end) if end <= self.geom.ia_limit() => Ok(Some(end)),
            _ => Err(PageTableError::OutOfRange),
        }
    }

    /// Validates an output range.
    fn check_output(&self, pa: u64, size: u64) -> Result<(), PageTableError> {
        if !pa.is_multiple_of(PAGE_SIZE) {
            return Err(PageTableError::Misaligned);
        }
        match pa.checked_add(size) {
            Some(end) if end <= self.geom.oa_limit() => Ok(()),
            _ => Err(PageTableError::OutOfRange),
        }
    }

    /// Maps `[start, start + size)` to `pa..` with leaf attributes `attrs`, using the
    /// largest blocks alignment allows. All-or-nothing: on error nothing is mapped.
    pub fn map(
        &mut self,
        fl: &mut impl Flusher,
        start: u64,
        pa: u64,
        size: u64,
        attrs: u64,
    ) -> Result<(), PageTableError> {
        let Some(end) = self.check_range(start, size)? else {
            return Ok(());
        };
        self.check_output(pa, size)?;
        walk(
            &self.geom,
            self.root,
            &mut self.mm,
            start,
            end,
            &mut EmptyCheck,
        )?;
        let mut v = MapV {
            start,
            pa,
            attrs: attrs & ATTR_MASK,
        };
        let r = walk(&self.geom, self.root, &mut self.mm, start, end, &mut v);
        if r.is_err() {
            // Everything in the range was installed by this call and as a whole entry
            // (no splits are needed), so this unmap cannot fail; it also frees the
            // tables allocated on the way.
            let _ = walk(
                &self.geom,
                self.root,
                &mut self.mm,
                start,
                end,
                &mut UnmapV { fl: &mut *fl },
            );
        }
        fl.finish();
        r
    }

    /// Unmaps `[start, start + size)`, splitting blocks that straddle the ends and
    /// freeing tables left empty.
    pub fn unmap(
        &mut self,
        fl: &mut impl Flusher,
        start: u64,
        size: u64,
    ) -> Result<(), PageTableError> {
        let Some(end) = self.check_range(start, size)? else {
            return Ok(());
        };
        let r = walk(
            &self.geom,
            self.root,
            &mut self.mm,
            start,
            end,
            &mut UnmapV { fl: &mut *fl },
        );
        fl.finish();
        r
    }

    /// Replaces the attributes of every valid leaf in `[start, start + size)` by
    /// `attrs`, splitting blocks that straddle the ends; holes stay holes.
    pub fn protect(
        &mut self,
        fl: &mut impl Flusher,
        start: u64,
        size: u64,
        attrs: u64,
    ) -> Result<(), PageTableError> {
        let Some(end) = self.check_range(start, size)? else {
            return Ok(());
        };
        let mut v = ProtectV {
            fl: &mut *fl,
            attrs: attrs & ATTR_MASK,
        };
        let r = walk(&self.geom, self.root, &mut self.mm, start, end, &mut v);
        fl.finish();
        r
    }

    /// The leaf translating `addr`: `(descriptor, level)`, or `None` if unmapped or
    /// out of range.
    pub fn query(&self, addr: u64) -> Option<(u64, u8)> {
        let page = addr & !(PAGE_SIZE - 1);
        if page >= self.geom.ia_limit() {
            return None;
        }
        let mut v = QueryV { found: None };
        let mut ro = ReadOnly(&self.mm);
        walk(
            &self.geom,
            self.root,
            &mut ro,
            page,
            page + PAGE_SIZE,
            &mut v,
        )
        .ok()?;
        v.found
    }

    /// Number of table frames in use, the root's included.
    pub fn table_frames(&self) -> usize {
        let mut v = CountV { tables: 0 };
        let mut ro = ReadOnly(&self.mm);
        let _ = walk(
            &self.geom,
            self.root,
            &mut ro,
            0,
            self.geom.ia_limit(),
            &mut v,
        );
        v.tables + self.geom.concat_tables()
    }

    /// Invalidates the regime's TLBs, then frees every table frame, the root too.
    /// The tree must not be used afterwards.
    pub fn destroy(&mut self, fl: &mut impl Flusher) {
        fl.flush_all();
        let _ = walk(
            &self.geom,
            self.root,
            &mut self.mm,
            0,
            self.geom.ia_limit(),
            &mut DestroyV,
        );
        self.mm.free(self.root, self.geom.concat_tables());
    }
}

/// Replaces the live block at `ctx` by a table of next-level leaves with the same
/// output addresses and attributes (break-before-make).
fn split<M: PageTableMm>(
    mm: &mut M,
    fl: &mut impl Flusher,
    ctx: &Ctx,
) -> Result<(), PageTableError> {
    let child = mm.alloc_zeroed(1).ok_or(PageTableError::NoMemory)?;
    let level = ctx.level + 1;
    let oa = ctx.old & OA_MASK;
    let attrs = ctx.old & ATTR_MASK;
    for i in 0..ENTRIES_PER_TABLE {
        mm.write_entry(
            child,
            i,
            desc::leaf(oa + i as u64 * level_size(level), level, attrs),
        );
    }
    mm.write_entry(ctx.table, ctx.index, 0);
    fl.break_entry(ctx.addr, ctx.level);
    mm.write_entry(ctx.table, ctx.index, desc::table(child.raw()));
    Ok(())
}

/// Fails with `AlreadyMapped` on the first valid leaf.
struct EmptyCheck;

impl<M: PageTableMm> Visitor<M> for EmptyCheck {
    fn leaf(&mut self, _mm: &mut M, ctx: &Ctx) -> Result<(), PageTableError> {
        if is_leaf(ctx.old, ctx.level) {
            return Err(PageTableError::AlreadyMapped);
        }
        Ok(())
    }
}

/// Installs leaves (largest fitting block) and allocates tables on the way.
struct MapV {
    start: u64,
    pa: u64,
    attrs: u64,
}

impl<M: PageTableMm> Visitor<M> for MapV {
    fn leaf(&mut self, mm: &mut M, ctx: &Ctx) -> Result<(), PageTableError> {
        if is_leaf(ctx.old, ctx.level) {
            return Err(PageTableError::AlreadyMapped);
        }
        let oa = self.pa + (ctx.addr.max(self.start) - self.start);
        // With a 4 KiB granule, level 0 has no blocks.
        if ctx.covered() && ctx.level >= 1 && oa.is_multiple_of(ctx.size()) {
            mm.write_entry(ctx.table, ctx.index, desc::leaf(oa, ctx.level, self.attrs));
            return Ok(());
        }
        if ctx.level >= 3 {
            // Unreachable: 4 KiB-aligned ranges always cover whole pages.
            return Err(PageTableError::Misaligned);
        }
        let child = mm.alloc_zeroed(1).ok_or(PageTableError::NoMemory)?;
        mm.write_entry(ctx.table, ctx.index, desc::table(child.raw()));
        Ok(())
    }
}

/// Invalidates leaves, splits straddling blocks, frees emptied tables.
struct UnmapV<'a, F> {
    fl: &'a mut F,
}

impl<M: PageTableMm, F: Flusher> Visitor<M> for UnmapV<'_, F> {
    fn leaf(&mut self, mm: &mut M, ctx: &Ctx) -> Result<(), PageTableError> {
        if !is_leaf(ctx.old, ctx.level) {
            return Ok(());
        }
        if ctx.covered() {
            mm.write_entry(ctx.table, ctx.index, 0);
            self.fl.unmapped_leaf(ctx.addr, ctx.level);
            Ok(())
        } else {
            split(mm, self.fl, ctx)
        }
    }

    fn table_post(&mut self, mm: &mut M, ctx: &Ctx) -> Result<(), PageTableError> {
        let child = ctx.child();
        if (0..ENTRIES_PER_TABLE).any(|i| mm.read_entry(child, i) != 0) {
            return Ok(());
        }
        mm.write_entry(ctx.table, ctx.index, 0);
        self.fl.removed_table(ctx.addr, ctx.level);
        mm.free(child, 1);
        Ok(())
    }
}

/// Rewrites leaf attributes with break-before-make, splitting straddling blocks.
struct ProtectV<'a, F> {
    fl: &'a mut F,
    attrs: u64,
}

impl<M: PageTableMm, F: Flusher> Visitor<M> for ProtectV<'_, F> {
    fn leaf(&mut self, mm: &mut M, ctx: &Ctx) -> Result<(), PageTableError> {
        if !is_leaf(ctx.old, ctx.level) {
            return Ok(());
        }
        if !ctx.covered() {
            return split(mm, self.fl, ctx);
        }
        let new = desc::leaf(ctx.old & OA_MASK, ctx.level, self.attrs);
        if new != ctx.old {
            mm.write_entry(ctx.table, ctx.index, 0);
            self.fl.break_entry(ctx.addr, ctx.level);
            mm.write_entry(ctx.table, ctx.index, new);
        }
        Ok(())
    }
}

/// Records the leaf translating the (single-page) range.
struct QueryV {
    found: Option<(u64, u8)>,
}

impl<M: PageTableMm> Visitor<M> for QueryV {
    fn leaf(&mut self, _mm: &mut M, ctx: &Ctx) -> Result<(), PageTableError> {
        if is_leaf(ctx.old, ctx.level) {
            self.found = Some((ctx.old, ctx.level));
        }
        Ok(())
    }
}

/// Counts table entries (hence non-root table frames).
struct CountV {
    tables: usize,
}

impl<M: PageTableMm> Visitor<M> for CountV {
    fn table_pre(&mut self, _mm: &mut M, _ctx: &Ctx) -> Result<(), PageTableError> {
        self.tables += 1;
        Ok(())
    }
}

/// Frees every non-root table frame, bottom up.
struct DestroyV;

impl<M: PageTableMm> Visitor<M> for DestroyV {
    fn table_post(&mut self, mm: &mut M, ctx: &Ctx) -> Result<(), PageTableError> {
        mm.write_entry(ctx.table, ctx.index, 0);
        mm.free(ctx.child(), 1);
        Ok(())
    }
}
