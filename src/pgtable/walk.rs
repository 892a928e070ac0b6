//! The one table walker: visits every entry that overlaps a range, with visitor callbacks.
//!
//! For each entry whose region overlaps `[start, end)`, level by level:
//! - a table entry gets [`Visitor::table_pre`], then (if it is still a table) its
//!   child is walked, then [`Visitor::table_post`];
//! - any other entry (invalid, block, page) gets [`Visitor::leaf`]; if the callback
//!   turned it into a table (allocation or block split), the new child is walked and
//!   `table_post` follows, so visitors can build tables on the way down.
//!
//! The recursion depth is bounded by the number of levels (at most 4).

use super::desc::{is_table, level_shift, level_size, OA_MASK};
use super::geometry::Geometry;
use super::{PageTableError, PageTableMm, ENTRIES_PER_TABLE};
use crate::addr::HostPhysAddr;

/// The entry being visited.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx {
    /// The table holding the entry.
    pub table: HostPhysAddr,
    /// Index of the entry in `table`.
    pub index: usize,
    /// Level of the entry.
    pub level: u8,
    /// First input address covered by the entry.
    pub addr: u64,
    /// The entry's value when the callback was made.
    pub old: u64,
    /// The walked range `[start, end)`.
    pub start: u64,
    /// End (exclusive) of the walked range.
    pub end: u64,
}

impl Ctx {
    /// Bytes covered by the entry.
    pub fn size(&self) -> u64 {
        level_size(self.level)
    }
    /// True if the walked range covers the whole entry.
    pub fn covered(&self) -> bool {
        self.start <= self.addr && self.addr + self.size() <= self.end
    }
    /// Address of the child table if `old` is a table descriptor.
    pub fn child(&self) -> HostPhysAddr {
        HostPhysAddr::new(self.old & OA_MASK)
    }
}

/// Callbacks of one walk; every callback may read and write entries through `mm`.
pub(crate) trait Visitor<M: PageTableMm> {
    /// A non-table entry (invalid, block or page).
    fn leaf(&mut self, _mm: &mut M, _ctx: &Ctx) -> Result<(), PageTableError> {
        Ok(())
    }
    /// A table entry, before its child is walked.
    fn table_pre(&mut self, _mm: &mut M, _ctx: &Ctx) -> Result<(), PageTableError> {
        Ok(())
    }
    /// A table entry, after its child was walked (`ctx.old` is the current value).
    fn table_post(&mut self, _mm: &mut M, _ctx: &Ctx) -> Result<(), PageTableError> {
        Ok(())
    }
}

/// Walks `[start, end)` of the tables rooted at `root`. The caller guarantees
/// `start < end <= geom.ia_limit()` and 4 KiB alignment. Stops at the first error a
/// callback returns and passes it on.
pub(crate) fn walk<M: PageTableMm, V: Visitor<M>>(
    geom: &Geometry,
    root: HostPhysAddr,
    mm: &mut M,
    start: u64,
    end: u64,
    v: &mut V,
) -> Result<(), PageTableError> {
    if start >= end || end > geom.ia_limit() {
        return Err(PageTableError::OutOfRange);
    }
    walk_table(
        mm,
        v,
        root,
        geom.start_level(),
        0,
        geom.root_entries(),
        start,
        end,
    )
}

#[allow(clippy::too_many_arguments)]
fn walk_table<M: PageTableMm, V: Visitor<M>>(
    mm: &mut M,
    v: &mut V,
    table: HostPhysAddr,
    level: u8,
    base: u64,
    entries: usize,
    start: u64,
    end: u64,
) -> Result<(), PageTableError> {
    let shift = level_shift(level);
    let span_end = base + ((entries as u64) << shift);
    let lo = start.max(base);
    let hi = end.min(span_end);
    if lo >= hi {
        return Ok(());
    }
    let first = ((lo - base) >> shift) as usize;
    let last = ((hi - 1 - base) >> shift) as usize;
    for index in first..=last {
        let addr = base + ((index as u64) << shift);
        visit(mm, v, table, index, level, addr, start, end)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn visit<M: PageTableMm, V: Visitor<M>>(
    mm: &mut M,
    v: &mut V,
    table: HostPhysAddr,
    index: usize,
    level: u8,
    addr: u64,
    start: u64,
    end: u64,
) -> Result<(), PageTableError> {
    let old = mm.read_entry(table, index);
    let mut ctx = Ctx {
        table,
        index,
        level,
        addr,
        old,
        start,
        end,
    };
    if is_table(old, level) {
        v.table_pre(mm, &ctx)?;
    } else {
        v.leaf(mm, &ctx)?;
    }
    ctx.old = mm.read_entry(table, index);
    if !is_table(ctx.old, level) {
        return Ok(());
    }
    walk_table(
        mm,
        v,
        ctx.child(),
        level + 1,
        addr,
        ENTRIES_PER_TABLE,
        start,
        end,
    )?;
    ctx.old = mm.read_entry(table, index);
    v.table_post(mm, &ctx)
}
