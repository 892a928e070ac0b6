//! Shadow builder, incremental sync, root cache with bounded pool, fault resolution and statistics.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::desc::{
    L1Desc, L2Desc, LargePageDesc, PageTableDesc, RegionAttrs, SectionDesc, SmallPageDesc,
    SupersectionDesc,
};
use super::pool::{Pool, ShadowView, BLOCK_BYTES};
use super::walk::{
    ap_permissions, sctlr, translate, Access, AccessKind, DomainAccess, Fault, GuestMemory,
    MemError, Regime, Translation,
};
use super::wp::WpSet;
use super::{Backing, GuestMap, ShadowError};
use crate::addr::{GuestPhysAddr, VirtAddr};

const NONE: u32 = u32::MAX;

/// Up to four (root, L1 index) dependents inline, the rest spilled.
type Deps = ([(u16, u16); 4], usize, Vec<(u16, u16)>);
const MIB: u64 = 0x10_0000;
const FOUR_GIB: u64 = 1 << 32;

/// Cache key of a shadow root: the guest's TTBR0 table base only. With the MMU off the
/// single identity root has key `u32::MAX` (never a table base: those are 128-byte aligned).
///
/// The ASID is deliberately not part of the key: shadow contents do not depend on it (the
/// hardware TLB tags nG entries with the live CONTEXTIDR, which [`ShadowRegs::contextidr`]
/// carries), so a CONTEXTIDR-only change is a cache hit that only changes the registers,
/// and a guest context switch that writes CONTEXTIDR before TTBR0 (as Linux does) builds
/// nothing for the transient (old TTBR0, new ASID) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RootKey {
    /// Guest physical base of the TTBR0 first-level table.
    pub ttbr0_base: u32,
}

/// Construction options of a [`ShadowEngine`] (see [`ShadowEngine::with_options`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShadowOptions {
    /// Write protection of guest translation-table pages is done outside the engine (by
    /// stage-2 permissions), not by read-only shadow entries.
    ///
    /// The engine still keeps the reference-counted protected set (the pages holding the
    /// guest L1 tables of cached roots and the guest L2 tables referenced by shadow entries)
    /// and reports its changes through [`ShadowEngine::take_wp_changes`], but shadow entries
    /// keep the guest's permissions on protected pages, sections, supersections and large
    /// pages are never split because of protection, and protection changes cause no rescans.
    /// [`ShadowEngine::classify`] still reports [`Resolution::WriteProtect`] for a write to a
    /// protected page.
    pub external_wp: bool,
    /// A write to the first-level table of a cached root that is not the active one
    /// evicts that root instead of syncing it.
    ///
    /// Guests free and reuse the pages of dead processes' first-level tables without
    /// telling anyone, so a cached root can outlive its table, and every later write to
    /// the recycled page (now ordinary data) would trap and be interpreted as descriptor
    /// updates, hooking random "tables" and write-protecting random pages. A live guest
    /// rarely writes another address space's first-level table (Linux does it when it
    /// fills a new one before first switching to it), so evicting costs one rebuild at
    /// the next switch. Translation stays exact either way.
    pub evict_written_inactive: bool,
    /// Walk-trap address: a 1 KiB-aligned IPA below 4 GiB (low 10 bits are ignored) that the
    /// hypervisor leaves unmapped in stage 2 and that lies outside the pool and outside
    /// anything the guest can use. Meant for [`ShadowOptions::external_wp`] (not required).
    ///
    /// When the guest's own walk takes a synchronous external abort (its tables are not
    /// RAM), a faulting shadow entry would give the guest a translation fault instead. With
    /// a walk trap the engine writes, for such an L1 index, a shadow first-level page-table
    /// descriptor whose second-level table address is `walk_trap`:
    /// - a guest page-table descriptor whose 1 KiB second-level table has no readable word
    ///   (the guest takes a level-2 walk abort) keeps its domain, NS and PXN bits;
    /// - an index whose guest first-level descriptor cannot be read because the TTBR0 or
    ///   TTBR1 table is not RAM (a level-1 walk abort) gets domain 0, NS=0, PXN=0.
    ///
    /// TTBCR.PD0/PD1 still give plain shadow translation faults (as the guest expects), and
    /// the MMU-off identity shadow never uses the trap. The hardware walk of such an entry
    /// reads `walk_trap + 4 * VA[19:12]` and takes a stage-2 fault on the stage-1 walk
    /// (S1PTW) there ([`ShadowEngine::is_walk_trap`]); the hypervisor then re-walks the
    /// guest tables with [`translate`](super::walk::translate) and injects the fault the
    /// guest's own walk gives (external abort on the walk, at level 1 or 2 as appropriate,
    /// with the guest's domain for level 2). Trap entries stay in sync like any other: a
    /// guest write that makes the L1 entry a section, a fault or a readable table replaces
    /// them, and they create no reverse-map entry, no second-level shadow table and no
    /// write protection (a guest first-level table page with no readable word is not
    /// protected either).
    ///
    /// A second-level table that is only partly readable (guest RAM ending inside the
    /// 1 KiB table, which page-granular guest RAM never does) is shadowed normally: the
    /// readable words translate exactly, the unreadable ones give a level-2 translation
    /// fault where the guest would take a level-2 external abort (documented
    /// simplification; a trap for the whole MiB would instead break the readable VAs).
    pub walk_trap: Option<u32>,
}

/// Memory accounting of the engine (see [`ShadowEngine::memory_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Shadow first-level tables in use (16 KiB each).
    pub shadow_l1_tables: usize,
    /// Shadow second-level tables in use (1 KiB each; a table shared by several entries,
    /// in one root or several, counts once).
    pub shadow_l2_tables: usize,
    /// Shadow table bytes in use: `shadow_l1_tables * 16 KiB + shadow_l2_tables * 1 KiB`.
    pub shadow_bytes: u64,
    /// Pool bytes taken: 16 KiB per block holding a first-level table or at least one
    /// second-level table (so at least `shadow_bytes`).
    pub pool_bytes: u64,
    /// Distinct guest second-level tables referenced by shadow entries.
    pub guest_l2_tables: usize,
    /// Distinct guest translation-table bytes the engine shadows: the union of the guest
    /// first-level tables of the cached roots (TTBR0 table, 16 KiB >> N, each; plus the
    /// 16 KiB TTBR1 table when N≠0) and the referenced guest second-level tables (1 KiB
    /// each).
    pub guest_table_bytes: u64,
    /// Guest pages in the protected set ([`ShadowEngine::protected_pages`]).
    pub protected_pages: usize,
}

/// Counters kept by the engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Guest walks done to resolve shadow faults.
    pub walks: u64,
    /// Shadow first-level entries (re)computed (a new root skips entries that are guest
    /// faults, which start out as shadow faults).
    pub fills: u64,
    /// Shadow second-level tables (re)built in full.
    pub l2_builds: u64,
    /// Shadow first-level entries pointed at an existing shared shadow second-level table
    /// instead of building one (see [`ShadowEngine::memory_stats`]).
    pub l2_shares: u64,
    /// Calls to [`ShadowEngine::sync_write`].
    pub syncs: u64,
    /// Roots evicted to make room (or dropped by a structural regime change).
    pub evictions: u64,
    /// Shadow faults resolved as writes to write-protected guest table pages.
    pub wp_faults: u64,
    /// Root cache hits and misses on activation.
    pub cache_hits: u64,
    /// Root cache misses (a root was built).
    pub cache_misses: u64,
    /// Scans for shadow entries mapping a page whose protection changed.
    pub rescans: u64,
    /// Guest TLB maintenance operations seen.
    pub tlb_ops: u64,
    /// Faults resolved as MMIO accesses.
    pub mmio_faults: u64,
    /// Faults reflected to the guest.
    pub guest_faults: u64,
    /// Faults resolved by refilling a stale or missing shadow entry.
    pub retries: u64,
    /// Inactive roots evicted because their first-level table was written
    /// ([`ShadowOptions::evict_written_inactive`]).
    pub write_evictions: u64,
}

/// The registers the hypervisor programs while the guest runs on the shadow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ShadowRegs {
    /// TTBR0: the shadow first-level table (host PA, which must be below 4 GiB) plus the
    /// guest's TTBR0 walk-attribute bits \[6:0\].
    pub ttbr0: u32,
    /// TTBCR: always 0 (N=0, PD0=PD1=0, short descriptors).
    pub ttbcr: u32,
    /// DACR: the guest's with manager → client and reserved → no access.
    pub dacr: u32,
    /// The SCTLR bits the engine decides: M, AFE, TRE, WXN, UWXN (others are the
    /// hypervisor's choice).
    pub sctlr: u32,
    /// CONTEXTIDR: the guest's (its ASID tags the shadow's nG entries).
    pub contextidr: u32,
    /// PRRR: the guest's.
    pub prrr: u32,
    /// NMRR: the guest's.
    pub nmrr: u32,
}

impl ShadowRegs {
    /// The same registers as a [`Regime`], to walk the shadow with the guest walker.
    pub fn regime(&self) -> Regime {
        Regime {
            ttbr0: self.ttbr0,
            ttbr1: 0,
            ttbcr: self.ttbcr,
            dacr: self.dacr,
            sctlr: self.sctlr,
            contextidr: self.contextidr,
            prrr: self.prrr,
            nmrr: self.nmrr,
        }
    }
}

/// A guest TLB maintenance operation (trapped via HCR.TTLB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbOp {
    /// TLBIALL.
    All,
    /// TLBIMVA: one VA for one ASID (global entries too).
    Mva {
        /// Virtual address.
        va: u32,
        /// ASID.
        asid: u8,
    },
    /// TLBIASID.
    Asid(u8),
    /// TLBIMVAA: one VA, all ASIDs.
    Mvaa(u32),
}

/// Hardware TLB maintenance the hypervisor must perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostTlbOp {
    /// Nothing to invalidate.
    None,
    /// TLBIMVA for `va` and `asid`.
    Mva {
        /// Virtual address.
        va: u32,
        /// ASID.
        asid: u8,
    },
    /// TLBIASID.
    Asid(u8),
    /// TLBIMVAA for each of `pages` consecutive 4 KiB pages from `va`.
    Mvaa {
        /// First virtual address.
        va: u32,
        /// Number of 4 KiB pages.
        pages: u32,
    },
    /// TLBIALL.
    All,
}

/// What an incremental update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Shadow descriptors whose value changed.
    pub rewritten: u32,
    /// TLB maintenance needed before the guest resumes.
    pub flush: HostTlbOp,
}

/// How the hypervisor should handle a stage-1 abort taken on the shadow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The guest's own tables fault: inject this fault (DFSR/IFSR from [`Fault::dfsr`] /
    /// [`Fault::ifsr`]).
    Guest(Fault),
    /// The guest translation is valid but its output is not RAM: emulate the access.
    Mmio {
        /// Guest physical address of the access.
        gpa: GuestPhysAddr,
    },
    /// A guest-permitted write to a write-protected translation-table page: emulate the
    /// store into guest memory, then call [`ShadowEngine::sync_write`].
    WriteProtect {
        /// Guest physical address written.
        gpa: GuestPhysAddr,
    },
    /// The shadow entry was stale or missing; it has been refilled: retry the access.
    Retry,
    /// The guest permits the access but the shadow cannot express it (an output above
    /// 4 GiB outside an aligned supersection, manager+WXN execute, pool exhausted):
    /// emulate the access or fall back.
    Unrepresentable {
        /// Guest physical address of the access.
        gpa: GuestPhysAddr,
    },
}

/// What the hypervisor must program after a regime change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegimeChange {
    /// Registers for the active shadow.
    pub regs: ShadowRegs,
    /// TLB maintenance needed.
    pub flush: HostTlbOp,
}

#[derive(Clone, Copy)]
struct Ent {
    /// Shadow L2 slot used by this L1 entry (holding one of its references), or NONE.
    shadow_l2: u32,
    /// Guest L2 table (gpa, 1 KiB aligned) this entry was built from, or NONE.
    guest_l2: u32,
}

struct Root {
    key: RootKey,
    l1: u32,
    ents: Vec<Ent>,
    last_used: u64,
    /// Guest pages holding this root's L1 tables (write-protected on its behalf).
    l1_pages: Vec<u32>,
}

/// Sharing key of the shadow second-level table built from the guest second-level table
/// at `base` (1 KiB aligned) for an entry whose domain is (`manager`) or is not a manager
/// domain.
///
/// The 256 shadow words are a function of the guest table's words, the guest map, the
/// protected set and the regime-wide SCTLR.AFE/WXN/UWXN (all the same for every entry that
/// uses the table), and of the manager status of the entry's domain. They do not depend on
/// the VA the table is reached at: large pages are grouped by table index, walk traps live
/// in first-level entries only, and section-like regions (whose tables do depend on the
/// region) get private tables. The guest first-level descriptor's domain, NS and PXN bits
/// only enter the shadow first-level word (and the domain, through DACR, the manager
/// status), so entries in different roots or at different indices with equal keys share
/// one shadow table.
#[inline]
fn share_key(base: u32, manager: bool) -> u32 {
    ((base >> 10) << 1) | manager as u32
}

/// A few slot numbers inline, the rest spilled (the shared tables a sync already updated).
#[derive(Default)]
struct SlotSet {
    a: [u32; 4],
    n: usize,
    more: Vec<u32>,
}

impl SlotSet {
    /// Adds `slot`; false if it was there already.
    fn insert(&mut self, slot: u32) -> bool {
        if self.a[..self.n].contains(&slot) || self.more.contains(&slot) {
            return false;
        }
        if self.n < self.a.len() {
            self.a[self.n] = slot;
            self.n += 1;
        } else {
            self.more.push(slot);
        }
        true
    }
}

#[derive(Default)]
struct FlushAcc {
    n: u32,
    va: u32,
    pages: u32,
    all: bool,
}

impl FlushAcc {
    /// One rewritten descriptor whose translations at `va` must be invalidated.
    fn page(&mut self, va: u32) {
        self.add(va);
        self.n += 1;
    }
    /// One more VA to invalidate for a descriptor already counted (a shared second-level
    /// table reached at several VAs).
    fn add(&mut self, va: u32) {
        if self.all {
            return;
        }
        if self.pages == 0 {
            self.va = va;
            self.pages = 1;
        } else if self.pages < 16 && va == self.va.wrapping_add(self.pages * 0x1000) {
            self.pages += 1;
        } else if !(va >= self.va && va < self.va.wrapping_add(self.pages * 0x1000)) {
            self.all = true;
        }
    }
    fn everything(&mut self) {
        self.all = true;
        self.n += 1;
    }
    /// Invalidate everything, for a descriptor already counted.
    fn all_vas(&mut self) {
        self.all = true;
    }
    fn take(&mut self) -> SyncOutcome {
        let out = SyncOutcome {
            rewritten: self.n,
            flush: if self.all {
                HostTlbOp::All
            } else if self.pages == 0 {
                HostTlbOp::None
            } else {
                HostTlbOp::Mvaa {
                    va: self.va,
                    pages: self.pages,
                }
            },
        };
        *self = FlushAcc::default();
        out
    }
}

/// Source of a section-like mapping (a guest section, a 1 MiB piece of a supersection, or
/// the identity map).
#[derive(Clone, Copy)]
struct Region {
    gpa: u64,
    domain: u8,
    ap: u8,
    xn: bool,
    pxn: bool,
    attrs: RegionAttrs,
    ng: bool,
    ns: bool,
}

/// Memoises the last backing run so that consecutive pages cost one map lookup.
struct RunCache {
    start: u64,
    end: u64,
    hpa: u64,
    ram: bool,
}

impl RunCache {
    fn new() -> Self {
        RunCache {
            start: 1,
            end: 0,
            hpa: 0,
            ram: false,
        }
    }
    /// `(host address or None for a hole, bytes left in the run)` for a 4 KiB-aligned gpa.
    #[inline]
    fn get<H: GuestMap + ?Sized>(&mut self, map: &H, gpa: u64) -> (Option<u64>, u64) {
        if !(gpa >= self.start && gpa < self.end) {
            let (ram, hpa, len) = match map.backing(GuestPhysAddr::new(gpa)) {
                Backing::Ram { hpa, len } => (true, hpa.raw(), len),
                Backing::Hole { len } => (false, 0, len),
            };
            self.start = gpa;
            self.end = gpa.saturating_add(len.max(0x1000) & !0xfff);
            self.hpa = hpa;
            self.ram = ram;
        }
        let left = self.end - gpa;
        if self.ram {
            (self.hpa.checked_add(gpa - self.start), left)
        } else {
            (None, left)
        }
    }
}

/// Guest memory with one word replaced (the store being synced).
struct Overlay<'a, M: ?Sized> {
    mem: &'a M,
    gpa: u64,
    value: u32,
}

impl<M: GuestMemory + ?Sized> GuestMemory for Overlay<'_, M> {
    fn read_u32(&self, gpa: GuestPhysAddr) -> Result<u32, MemError> {
        if gpa.raw() == self.gpa {
            Ok(self.value)
        } else {
            self.mem.read_u32(gpa)
        }
    }
}

/// Shadow AP/XN/PXN for a guest mapping (see the module documentation).
#[inline]
fn perm_bits(
    regime: &Regime,
    ap: u8,
    xn: bool,
    pxn: bool,
    manager: bool,
    wp: bool,
    section: bool,
) -> (u8, bool, bool) {
    let afe = regime.afe();
    if manager {
        let ap = if afe {
            (if wp { 0b110 } else { 0b010 }) | (ap & 1)
        } else if wp {
            0b111
        } else {
            0b011
        };
        return (ap, false, false);
    }
    if !wp {
        return (ap, xn, pxn);
    }
    let ro = if afe {
        ap | 0b100
    } else {
        match ap & 7 {
            1 => 5,
            2 | 3 => 7,
            a => a,
        }
    };
    let wxn = regime.sctlr & sctlr::WXN != 0;
    let uwxn = regime.sctlr & sctlr::UWXN != 0;
    if !wxn && !uwxn {
        return (ro, xn, pxn);
    }
    // WXN/UWXN no longer fire on the read-only entry: fold their effect into XN/PXN.
    let ((r1, w1), (r0, w0)) = ap_permissions(ap, afe);
    let blocked1 = xn || pxn || (wxn && w1) || (uwxn && w0);
    let x1 = r1 && !blocked1;
    let x0 = r0 && !xn && !(wxn && w0);
    if section {
        (ro, !(x0 || x1), !x1)
    } else {
        (ro, !(x1 && (x0 || !r0)), pxn)
    }
}

#[inline]
fn shadow_dacr(g: u32) -> u32 {
    let mut d = 0;
    for i in 0..16 {
        let f = (g >> (2 * i)) & 3;
        if f == 1 || f == 3 {
            d |= 1 << (2 * i);
        }
    }
    d
}

#[inline]
fn manager_mask(dacr: u32) -> u16 {
    let mut m = 0u16;
    for i in 0..16 {
        if (dacr >> (2 * i)) & 3 == 3 {
            m |= 1 << i;
        }
    }
    m
}

/// Why the guest walk for an L1 index never reaches a first-level descriptor.
#[derive(Clone, Copy, PartialEq, Eq)]
enum L1Miss {
    /// TTBCR.PD0/PD1 disables the walk: a level-1 translation fault.
    Disabled,
    /// The first-level table word is not RAM: a level-1 external abort on the walk.
    Unreadable,
}

/// Reads the guest first-level descriptor that translates L1 index `idx`.
#[inline]
fn guest_l1_read<M: GuestMemory + ?Sized>(
    regime: &Regime,
    ttbr0_base: u32,
    mem: &M,
    idx: usize,
) -> Result<u32, L1Miss> {
    let va = (idx as u32) << 20;
    let base = if regime.ttbr_for(va) == 1 {
        if regime.ttbcr & super::walk::ttbcr::PD1 != 0 {
            return Err(L1Miss::Disabled);
        }
        regime.ttbr1 & 0xffff_c000
    } else {
        if regime.ttbcr & super::walk::ttbcr::PD0 != 0 {
            return Err(L1Miss::Disabled);
        }
        ttbr0_base
    };
    mem.read_u32(GuestPhysAddr::new((base | ((idx as u32) << 2)) as u64))
        .map_err(|_| L1Miss::Unreadable)
}

/// Reads the guest first-level descriptor that translates L1 index `idx`, or `None` when
/// the walk faults before reaching it (PD0/PD1 or an external abort).
#[inline]
fn guest_l1_word<M: GuestMemory + ?Sized>(
    regime: &Regime,
    ttbr0_base: u32,
    mem: &M,
    idx: usize,
) -> Option<u32> {
    guest_l1_read(regime, ttbr0_base, mem, idx).ok()
}

/// True if at least one word of `[start, end)` (4-byte aligned) can be read.
fn any_readable<M: GuestMemory + ?Sized>(mem: &M, start: u64, end: u64) -> bool {
    let mut a = start & !3;
    while a < end {
        if mem.read_u32(GuestPhysAddr::new(a)).is_ok() {
            return true;
        }
        a += 4;
    }
    false
}

/// Reads the 1 KiB guest second-level table at `base` into `buf` (unreadable words read as
/// 0, a fault) and returns the number of words that could be read.
fn read_guest_l2<M: GuestMemory + ?Sized>(mem: &M, base: u32, buf: &mut [u32; 256]) -> usize {
    let mut ok = 0;
    for (j, g) in buf.iter_mut().enumerate() {
        *g = match mem.read_u32(GuestPhysAddr::new((base | ((j as u32) << 2)) as u64)) {
            Ok(w) => {
                ok += 1;
                w
            }
            Err(_) => 0,
        };
    }
    ok
}

/// The shadow translation engine: builds shadows for a guest regime, caches roots, keeps
/// them in sync with guest descriptor writes and resolves shadow faults.
pub struct ShadowEngine {
    pool: Pool,
    regime: Option<Regime>,
    roots: Vec<Option<Root>>,
    max_roots: usize,
    active: Option<usize>,
    /// Guest L2 table (gpa >> 10) → shadow L1 entries (root slot, L1 index) built from it.
    rmap: BTreeMap<u32, Vec<(u16, u16)>>,
    /// Shared shadow L2 tables: [`share_key`] → pool slot. Every shadow L2 table built from
    /// a guest L2 table is in here; the entries with that key all point at it.
    l2_shared: BTreeMap<u32, u32>,
    /// Per pool L2 slot: the shadow L1 entries pointing at it (0 = free).
    l2_refs: Vec<u32>,
    /// Per pool L2 slot: its [`share_key`], or NONE for a private table (a section-like
    /// region's, used by one entry).
    l2_key: Vec<u32>,
    wp: WpSet,
    /// Pages whose protection changed and whose shadow mappings must be rescanned (own
    /// write protection only).
    pending: Vec<u32>,
    /// External write protection: page → protected state at the last
    /// [`ShadowEngine::take_wp_changes`], for each page whose state changed since.
    wp_changes: BTreeMap<u32, bool>,
    opts: ShadowOptions,
    stats: Stats,
    tick: u64,
    flush: FlushAcc,
}

impl ShadowEngine {
    /// An engine drawing shadow tables from `pool` and caching at most `max_roots` roots
    /// (at least 1), with default options (the shadows write-protect guest table pages
    /// themselves). Nothing is built until [`ShadowEngine::set_regime`].
    pub fn new(pool: Pool, max_roots: usize) -> Self {
        Self::with_options(pool, max_roots, ShadowOptions::default())
    }

    /// [`ShadowEngine::new`] with explicit options.
    pub fn with_options(pool: Pool, max_roots: usize, opts: ShadowOptions) -> Self {
        let slots = pool.blocks() * (BLOCK_BYTES / 0x400) as usize;
        ShadowEngine {
            pool,
            l2_shared: BTreeMap::new(),
            l2_refs: alloc::vec![0; slots],
            l2_key: alloc::vec![NONE; slots],
            regime: None,
            roots: Vec::new(),
            max_roots: max_roots.max(1),
            active: None,
            rmap: BTreeMap::new(),
            wp: WpSet::new(),
            pending: Vec::new(),
            wp_changes: BTreeMap::new(),
            opts,
            stats: Stats::default(),
            tick: 0,
            flush: FlushAcc::default(),
        }
    }

    /// The options the engine was built with.
    pub fn options(&self) -> ShadowOptions {
        self.opts
    }

    /// True if `ipa` lies in the 1 KiB walk-trap region ([`ShadowOptions::walk_trap`]): a
    /// stage-2 fault on a stage-1 walk there means the guest's own walk of the faulting VA
    /// takes an external abort, which the hypervisor injects after re-walking the guest.
    pub fn is_walk_trap(&self, ipa: u64) -> bool {
        self.opts
            .walk_trap
            .is_some_and(|t| ipa >> 10 == (t >> 10) as u64)
    }

    /// The shadow first-level word for an index whose guest walk aborts, if a walk trap is
    /// configured: a page-table descriptor whose second-level table is the trap region.
    fn trap_word(&self, domain: u8, ns: bool, pxn: bool) -> Option<u32> {
        let t = self.opts.walk_trap?;
        Some(
            L1Desc::PageTable(PageTableDesc {
                base: t & !0x3ff,
                pxn,
                ns,
                sbz: false,
                domain: domain & 15,
                imp: false,
            })
            .encode(),
        )
    }

    /// Drops everything for a VM reboot: every cached root, the guest regime, the reverse
    /// map and the protected set (with external write protection, every page that was
    /// protected is reported unprotected by the next [`ShadowEngine::take_wp_changes`]).
    /// The pool (now entirely free) and the statistics are kept (the dropped roots count as
    /// evictions); the host TLB flush the dropped roots need is reported by the next
    /// [`ShadowEngine::set_regime`] or [`ShadowEngine::take_flush`]. The next
    /// [`ShadowEngine::set_regime`] starts from scratch.
    pub fn reset(&mut self) {
        self.drop_all_roots();
        self.roots.clear();
        self.regime = None;
        self.active = None;
    }

    /// Protection changes since the last call (external write protection; always empty
    /// otherwise): `(page address, now protected)` for each guest page whose protected state
    /// differs from the one reported last, once per page, in increasing address order. A
    /// page protected and released again in between is not reported.
    ///
    /// With [`ShadowOptions::external_wp`] the caller must apply these to stage 2 (write
    /// protect / unprotect the page) after every [`ShadowEngine::set_regime`],
    /// [`ShadowEngine::sync_write`], [`ShadowEngine::resolve_fault`] and
    /// [`ShadowEngine::reset`] before the guest runs again.
    pub fn take_wp_changes(&mut self) -> Vec<(GuestPhysAddr, bool)> {
        if self.wp_changes.is_empty() {
            return Vec::new();
        }
        let changes = core::mem::take(&mut self.wp_changes);
        changes
            .into_iter()
            .filter_map(|(page, was)| {
                let gpa = (page as u64) << 12;
                let now = self.wp.contains(gpa);
                (now != was).then_some((GuestPhysAddr::new(gpa), now))
            })
            .collect()
    }

    /// The protected guest pages (page addresses, increasing): the pages holding the guest
    /// L1 tables of cached roots and the guest L2 tables referenced by shadow entries.
    pub fn protected(&self) -> impl Iterator<Item = GuestPhysAddr> + '_ {
        self.wp
            .pages()
            .map(|p| GuestPhysAddr::new((p as u64) << 12))
    }

    /// Shadow and shadowed guest table memory (for benchmarks; costs a walk over the
    /// cached roots and the reverse map). Shared shadow second-level tables (see the module
    /// documentation) count once, like the guest tables they shadow.
    pub fn memory_stats(&self) -> MemoryStats {
        let (l1, l2) = self.pool.usage();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        if let Some(regime) = self.regime.filter(|r| r.mmu_on()) {
            let len0 = regime.ttbr0_table().1 as u64;
            for root in self.roots.iter().flatten() {
                if root.key.ttbr0_base != u32::MAX {
                    let b = root.key.ttbr0_base as u64;
                    ranges.push((b, b + len0));
                }
            }
            if let (Some((b1, len1)), true) = (regime.ttbr1_table(), self.cached_roots() != 0) {
                ranges.push((b1 as u64, b1 as u64 + len1 as u64));
            }
        }
        for &k in self.rmap.keys() {
            let b = (k as u64) << 10;
            ranges.push((b, b + 0x400));
        }
        ranges.sort_unstable();
        let mut bytes = 0;
        let mut cur: Option<(u64, u64)> = None;
        for (a, b) in ranges {
            cur = match cur {
                Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
                Some((ca, cb)) => {
                    bytes += cb - ca;
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        if let Some((ca, cb)) = cur {
            bytes += cb - ca;
        }
        MemoryStats {
            shadow_l1_tables: l1,
            shadow_l2_tables: l2,
            shadow_bytes: l1 as u64 * BLOCK_BYTES + l2 as u64 * 0x400,
            pool_bytes: self.pool.blocks_in_use() as u64 * BLOCK_BYTES,
            guest_l2_tables: self.rmap.len(),
            guest_table_bytes: bytes,
            protected_pages: self.wp.len(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The shadow table pool (for walking shadows with [`ShadowView`]).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The current guest regime, if one was set.
    pub fn regime(&self) -> Option<&Regime> {
        self.regime.as_ref()
    }

    /// Number of cached roots.
    pub fn cached_roots(&self) -> usize {
        self.roots.iter().filter(|r| r.is_some()).count()
    }

    /// Number of write-protected guest pages (the protected set).
    pub fn protected_pages(&self) -> usize {
        self.wp.len()
    }

    /// True if the guest page holding `gpa` is in the protected set: write-protected in the
    /// shadows, or (with [`ShadowOptions::external_wp`]) to be write-protected by stage 2.
    pub fn is_protected(&self, gpa: GuestPhysAddr) -> bool {
        self.wp.contains(gpa.raw())
    }

    /// The registers for the active shadow, or `None` before the first `set_regime`.
    pub fn shadow_regs(&self) -> Option<ShadowRegs> {
        let regime = self.regime?;
        let root = self.roots.get(self.active?)?.as_ref()?;
        let l1 = self.pool.l1_pa(root.l1) as u32;
        Some(if regime.mmu_on() {
            ShadowRegs {
                ttbr0: l1 | (regime.ttbr0 & 0x7f),
                ttbcr: 0,
                dacr: shadow_dacr(regime.dacr),
                sctlr: regime.sctlr
                    & (sctlr::M | sctlr::AFE | sctlr::TRE | sctlr::WXN | sctlr::UWXN),
                contextidr: regime.contextidr,
                prrr: regime.prrr,
                nmrr: regime.nmrr,
            }
        } else {
            ShadowRegs {
                ttbr0: l1,
                ttbcr: 0,
                dacr: 1,
                sctlr: sctlr::M,
                contextidr: regime.contextidr,
                prrr: 0,
                nmrr: 0,
            }
        })
    }

    /// Walks the active shadow for `va` as the hardware would (with [`ShadowRegs`]).
    pub fn shadow_translate(
        &self,
        va: VirtAddr,
        access: Access,
    ) -> Option<Result<Translation, Fault>> {
        let regs = self.shadow_regs()?;
        Some(translate(
            &regs.regime(),
            &ShadowView(&self.pool),
            va,
            access,
        ))
    }

    /// Installs a new guest regime (any of TTBR0, TTBR1, TTBCR, DACR, SCTLR, CONTEXTIDR,
    /// PRRR, NMRR changed) and activates the shadow root for it, building it on a cache miss.
    ///
    /// Costs: TTBR0 table base switch = cache lookup (build on miss); CONTEXTIDR (ASID),
    /// TTBR0 walk attributes, TRE, PRRR, NMRR = only the registers change; DACR
    /// no-access↔client = none; DACR client↔manager = refill of that domain's entries;
    /// TTBCR, TTBR1 base (N≠0), SCTLR.M, AFE, WXN, UWXN = drop every root (with external
    /// write protection every protected page is then reported unprotected, see
    /// [`ShadowEngine::take_wp_changes`]).
    /// Errors: long descriptors; pool exhausted (the root is left partly faulting, which
    /// [`ShadowEngine::resolve_fault`] reports as `Unrepresentable`).
    pub fn set_regime<M: GuestMemory + ?Sized, H: GuestMap + ?Sized>(
        &mut self,
        new: Regime,
        mem: &M,
        map: &H,
    ) -> Result<RegimeChange, ShadowError> {
        if !new.is_short_descriptor() {
            return Err(ShadowError::LongDescriptorUnsupported);
        }
        match self.regime {
            None => {
                self.regime = Some(new);
                self.drop_all_roots();
            }
            Some(old) => {
                let bits = sctlr::M | sctlr::AFE | sctlr::WXN | sctlr::UWXN;
                let structural = (old.sctlr ^ new.sctlr) & bits != 0
                    || old.ttbcr != new.ttbcr
                    || (new.n() != 0 && (old.ttbr1 ^ new.ttbr1) & 0xffff_c000 != 0);
                self.regime = Some(new);
                if structural {
                    self.drop_all_roots();
                } else if new.mmu_on() {
                    let toggled = manager_mask(old.dacr) ^ manager_mask(new.dacr);
                    if toggled != 0 {
                        self.refill_domains(toggled, mem, map)?;
                    }
                }
            }
        }
        let res = self.activate(mem, map);
        // A root built just now already saw every protection change: skip it in rescans.
        let built = res.as_ref().ok().copied().flatten();
        self.drain_pending(mem, map, built);
        res?;
        let regs = self.shadow_regs().ok_or(ShadowError::NoRegime)?;
        Ok(RegimeChange {
            regs,
            flush: self.flush.take().flush,
        })
    }

    /// Brings the shadows up to date after the guest stored `value` at `gpa` (a 4-byte aligned
    /// word; low address bits are ignored). The caller may store the value into guest memory
    /// before or after this call: the engine reads `value` for that word.
    ///
    /// Words that are not in any shadowed guest table cost a range check and one map lookup.
    pub fn sync_write<M: GuestMemory + ?Sized, H: GuestMap + ?Sized>(
        &mut self,
        gpa: GuestPhysAddr,
        value: u32,
        mem: &M,
        map: &H,
    ) -> Result<SyncOutcome, ShadowError> {
        let regime = self.regime.ok_or(ShadowError::NoRegime)?;
        self.stats.syncs += 1;
        if !regime.mmu_on() {
            return Ok(self.flush.take());
        }
        let gpa = gpa.raw() & !3;
        let ov = Overlay { mem, gpa, value };
        let mut res = Ok(());
        // First-level tables.
        let (_, len0) = regime.ttbr0_table();
        let t1 = regime.ttbr1_table();
        for r in 0..self.roots.len() {
            let Some(root) = &self.roots[r] else { continue };
            let b0 = root.key.ttbr0_base as u64;
            if gpa >= b0 && gpa < b0 + len0 as u64 {
                if self.opts.evict_written_inactive && self.active != Some(r) {
                    self.stats.write_evictions += 1;
                    self.evict(r);
                    continue;
                }
                let idx = ((gpa - b0) / 4) as usize;
                res = res.and(self.l1_write(r, idx, &ov, map));
            }
            if let Some((b1, len1)) = t1 {
                let b1 = b1 as u64;
                if gpa >= b1 && gpa < b1 + len1 as u64 {
                    let idx = ((gpa - b1) / 4) as usize;
                    if regime.ttbr_for((idx as u32) << 20) == 1 {
                        res = res.and(self.l1_write(r, idx, &ov, map));
                    }
                }
            }
        }
        // Second-level tables.
        if gpa < FOUR_GIB {
            let key = (gpa >> 10) as u32;
            let j = ((gpa >> 2) & 0xff) as usize;
            // Copy the dependents first: a refill may edit the reverse map.
            let deps: Option<Deps> = self.rmap.get(&key).map(|v| {
                let mut a = [(0u16, 0u16); 4];
                if v.len() <= 4 {
                    a[..v.len()].copy_from_slice(v);
                    (a, v.len(), Vec::new())
                } else {
                    (a, 0, v.clone())
                }
            });
            if let Some((a, n, more)) = deps {
                // Entries sharing a shadow table update it once.
                let mut done = SlotSet::default();
                for &(r, idx) in a[..n].iter().chain(more.iter()) {
                    res = res.and(self.fill_l2_entry(
                        r as usize,
                        idx as usize,
                        j,
                        &ov,
                        map,
                        &mut done,
                    ));
                }
            }
        }
        self.drain_pending(&ov, map, None);
        res?;
        Ok(self.flush.take())
    }

    /// Mirrors a guest TLB maintenance operation. Shadows are synced on every descriptor
    /// write, so only the hardware TLB needs the same invalidation (shadow entries carry the
    /// guest's ASIDs and nG bits).
    pub fn tlb_op(&mut self, op: TlbOp) -> HostTlbOp {
        self.stats.tlb_ops += 1;
        match op {
            TlbOp::All => HostTlbOp::All,
            TlbOp::Mva { va, asid } => HostTlbOp::Mva { va, asid },
            TlbOp::Asid(a) => HostTlbOp::Asid(a),
            TlbOp::Mvaa(va) => HostTlbOp::Mvaa { va, pages: 1 },
        }
    }

    /// Says how to handle a stage-1 abort taken on the shadow at `va` for `access`, without
    /// changing anything (see [`ShadowEngine::resolve_fault`]).
    ///
    /// A walk-trap entry ([`ShadowOptions::walk_trap`]) gives no stage-1 abort but a stage-2
    /// fault on the walk at the trap; for such a `va` this re-walk returns the guest's
    /// [`Resolution::Guest`] external abort on the walk, so it may be used for that fault
    /// too.
    pub fn classify<M: GuestMemory + ?Sized, H: GuestMap + ?Sized>(
        &self,
        va: VirtAddr,
        access: Access,
        mem: &M,
        map: &H,
    ) -> Resolution {
        let Some(regime) = self.regime else {
            return Resolution::Unrepresentable {
                gpa: GuestPhysAddr::new(va.raw() & 0xffff_ffff),
            };
        };
        match translate(&regime, mem, va, access) {
            Err(f) => Resolution::Guest(f),
            Ok(t) => {
                let gpa = GuestPhysAddr::new(t.pa);
                match map.backing(gpa.align_down(0x1000)) {
                    Backing::Hole { .. } => Resolution::Mmio { gpa },
                    Backing::Ram { .. }
                        if access.kind == AccessKind::Write && self.wp.contains(t.pa) =>
                    {
                        Resolution::WriteProtect { gpa }
                    }
                    Backing::Ram { .. } => Resolution::Retry,
                }
            }
        }
    }

    /// Resolves a stage-1 abort taken on the shadow: re-walks the guest tables and decides
    /// between injecting the guest's fault, MMIO emulation, write-protect emulation, or a
    /// refill of the shadow entry followed by a retry (`Unrepresentable` if the refilled
    /// shadow still faults).
    pub fn resolve_fault<M: GuestMemory + ?Sized, H: GuestMap + ?Sized>(
        &mut self,
        va: VirtAddr,
        access: Access,
        mem: &M,
        map: &H,
    ) -> Resolution {
        self.stats.walks += 1;
        let res = self.classify(va, access, mem, map);
        match res {
            Resolution::Guest(_) => self.stats.guest_faults += 1,
            Resolution::Mmio { .. } => self.stats.mmio_faults += 1,
            Resolution::WriteProtect { .. } => self.stats.wp_faults += 1,
            Resolution::Retry => {
                self.stats.retries += 1;
                let gpa = match translate(
                    self.regime.as_ref().unwrap_or(&Regime::default()),
                    mem,
                    va,
                    access,
                ) {
                    Ok(t) => GuestPhysAddr::new(t.pa),
                    Err(_) => GuestPhysAddr::new(0),
                };
                if let Some(r) = self.active {
                    let idx = ((va.raw() as u32) >> 20) as usize;
                    let _ = self.fill_group_or_entry(r, idx, mem, map);
                    self.drain_pending(mem, map, None);
                }
                return match self.shadow_translate(va, access) {
                    Some(Ok(_)) => Resolution::Retry,
                    _ => Resolution::Unrepresentable { gpa },
                };
            }
            Resolution::Unrepresentable { .. } => {}
        }
        res
    }

    /// Host TLB operations accumulated by regime changes not yet reported (normally empty).
    pub fn take_flush(&mut self) -> HostTlbOp {
        self.flush.take().flush
    }

    // ---------------------------------------------------------------------------------
    // Root cache.

    fn key_for(regime: &Regime) -> RootKey {
        RootKey {
            ttbr0_base: if regime.mmu_on() {
                regime.ttbr0_table().0
            } else {
                u32::MAX
            },
        }
    }

    // ---------------------------------------------------------------------------------
    // Write protection.

    /// Adds a reference to guest page `page` (gpa >> 12) in the protected set.
    fn protect(&mut self, page: u32) {
        if self.wp.inc(page) {
            self.wp_changed(page, false);
        }
    }

    /// Drops a reference to guest page `page` in the protected set.
    fn unprotect(&mut self, page: u32) {
        if self.wp.dec(page) {
            self.wp_changed(page, true);
        }
    }

    /// Page `page` just changed protection; `was` is its previous state.
    fn wp_changed(&mut self, page: u32, was: bool) {
        if self.opts.external_wp {
            self.wp_changes.entry(page).or_insert(was);
        } else {
            self.pending.push(page);
        }
    }

    /// True if shadow entries must map the page holding `gpa` read-only.
    #[inline(always)]
    fn ro(&self, gpa: u64) -> bool {
        !self.opts.external_wp && self.wp.contains(gpa)
    }

    /// True if a shadow mapping of `[gpa, gpa + len)` must be split for write protection.
    #[inline]
    fn ro_any_in(&self, gpa: u64, len: u64) -> bool {
        !self.opts.external_wp && self.wp.any_in(gpa, len)
    }

    fn activate<M: GuestMemory + ?Sized, H: GuestMap + ?Sized>(
        &mut self,
        mem: &M,
        map: &H,
    ) -> Result<Option<usize>, ShadowError> {
        let regime = self.regime.ok_or(ShadowError::NoRegime)?;
        let key = Self::key_for(&regime);
        self.tick += 1;
        if let Some(r) = self
            .roots
            .iter()
            .position(|x| x.as_ref().is_some_and(|x| x.key == key))
        {
            self.stats.cache_hits += 1;
            if let Some(root) = self.roots[r].as_mut() {
                root.last_used = self.tick;
            }
            self.active = Some(r);
            return Ok(None);
        }
        self.stats.cache_misses += 1;
        self.active = None;
        let r = match self.roots.iter().position(|x| x.is_none()) {
            Some(r) => r,
            None if self.roots.len() < self.max_roots => {
                self.roots.push(None);
                self.roots.len() - 1
            }
            None => {
                let victim = self
                    .lru_victim(usize::MAX)
                    .ok_or(ShadowError::PoolExhausted)?;
                self.evict(victim);
                victim
            }
        };
        let l1 = loop {
            match self.pool.alloc_l1() {
                Some(b) => break b,
                None => {
                    let v = self.lru_victim(r).ok_or(ShadowError::PoolExhausted)?;
                    self.evict(v);
                }
            }
        };
        let mut l1_pages = Vec::new();
        if regime.mmu_on() {
            let (b0, len0) = regime.ttbr0_table();
            let mut tables = [(b0, len0), (0, 0)];
            if let Some(t1) = regime.ttbr1_table() {
                tables[1] = t1;
            }
            for (b, len) in tables {
                let mut p = b >> 12;
                let end = b as u64 + len as u64;
                while len != 0 && p <= ((end - 1) >> 12) as u32 {
                    // With a walk trap, a table page that is not RAM at all is not a table
                    // the guest can write: nothing to protect.
                    let lo = (b as u64).max((p as u64) << 12);
                    let hi = end.min((p as u64 + 1) << 12);
                    if self.opts.walk_trap.is_none() || any_readable(mem, lo, hi) {
                        l1_pages.push(p);
                    }
                    p += 1;
                }
            }
            for &p in &l1_pages {
                self.protect(p);
            }
        }
        self.roots[r] = Some(Root {
            key,
            l1,
            ents: alloc::vec![Ent { shadow_l2: NONE, guest_l2: NONE }; 4096],
            last_used: self.tick,
            l1_pages,
        });
        self.active = Some(r);
        // Bit set = the guest L1 entry is not a fault: the fresh shadow entry needs a fill.
        let mut live = [0u64; 64];
        if regime.mmu_on() {
            // Protect every guest L2 table first, so that entries mapping them are built
            // read-only straight away instead of being rescanned afterwards.
            let trap = self.opts.walk_trap.is_some();
            for idx in 0..4096 {
                let w = match guest_l1_read(&regime, key.ttbr0_base, mem, idx) {
                    Ok(w) => w,
                    Err(L1Miss::Unreadable) if trap => {
                        // A level-1 walk abort: the entry becomes a walk trap.
                        live[idx / 64] |= 1 << (idx % 64);
                        continue;
                    }
                    Err(_) => 0,
                };
                if w & 3 == 0 {
                    continue;
                }
                live[idx / 64] |= 1 << (idx % 64);
                if let L1Desc::PageTable(t) = L1Desc::decode(w) {
                    if trap && !any_readable(mem, t.base as u64, t.base as u64 + 0x400) {
                        // A level-2 walk abort: a walk trap, no reverse map, no protection.
                        continue;
                    }
                    self.rmap
                        .entry(t.base >> 10)
                        .or_default()
                        .push((r as u16, idx as u16));
                    self.protect(t.base >> 12);
                    if let Some(root) = self.roots[r].as_mut() {
                        root.ents[idx].guest_l2 = t.base;
                    }
                }
            }
        } else {
            live = [u64::MAX; 64];
        }
        let evictions = self.stats.evictions;
        let mut res = Ok(Some(r));
        for idx in 0..4096 {
            // A fresh root is all faults already: only live entries need work.
            if live[idx / 64] >> (idx % 64) & 1 == 0 {
                continue;
            }
            if let Err(e) = self.fill_l1(r, idx, mem, map) {
                res = Err(e);
            }
        }
        if res.is_ok() && self.stats.evictions != evictions {
            // An eviction during the build released protections the entries built before
            // it still reflect: the new root must take part in the rescans.
            res = Ok(None);
        }
        res
    }

    fn lru_victim(&self, keep: usize) -> Option<usize> {
        self.roots
            .iter()
            .enumerate()
            .filter(|(i, x)| x.is_some() && *i != keep && Some(*i) != self.active)
            .min_by_key(|(_, x)| x.as_ref().map_or(0, |x| x.last_used))
            .map(|(i, _)| i)
    }

    fn evict(&mut self, r: usize) {
        let Some(root) = self.roots[r].take() else {
            return;
        };
        self.stats.evictions += 1;
        for (idx, e) in root.ents.iter().enumerate() {
            if e.guest_l2 != NONE {
                self.rmap_remove(e.guest_l2, r, idx);
                self.unprotect(e.guest_l2 >> 12);
            }
            if e.shadow_l2 != NONE {
                self.release_l2(e.shadow_l2);
            }
        }
        for &p in &root.l1_pages {
            self.unprotect(p);
        }
        self.pool.free_l1(root.l1);
        if self.active == Some(r) {
            self.active = None;
        }
        self.flush.everything();
    }

    fn drop_all_roots(&mut self) {
        for r in 0..self.roots.len() {
            if self.roots[r].is_some() {
                self.evict(r);
            }
        }
        self.rmap.clear();
        debug_assert!(self.l2_shared.is_empty() && self.pool.usage() == (0, 0));
        self.l2_shared.clear();
        // Evicting every root released every reference; anything left (none expected) is
        // released here too so that external protection never outlives the roots.
        let left: Vec<u32> = self.wp.pages().collect();
        for page in left {
            self.wp_changed(page, true);
        }
        self.wp.clear();
        self.pending.clear();
        self.active = None;
    }

    fn rmap_remove(&mut self, guest_l2: u32, r: usize, idx: usize) {
        let key = guest_l2 >> 10;
        if let Some(v) = self.rmap.get_mut(&key) {
            if let Some(p) = v
                .iter()
                .position(|&(a, b)| a as usize == r && b as usize == idx)
            {
                v.swap_remove(p);
            }
            if v.is_empty() {
                self.rmap.remove(&key);
            }
        }
    }

    /// Allocates a private shadow L2 slot with one reference, evicting least recently used
    /// roots other than `keep` and the active one while the pool is full.
    fn alloc_l2(&mut self, keep: usize) -> Result<u32, ShadowError> {
        loop {
            if let Some(s) = self.pool.alloc_l2() {
                self.l2_refs[s as usize] = 1;
                self.l2_key[s as usize] = NONE;
                return Ok(s);
            }
            let v = self.lru_victim(keep).ok_or(ShadowError::PoolExhausted)?;
            self.evict(v);
        }
    }

    /// Drops one reference to shadow L2 slot `slot`; the last one returns it to the pool.
    fn release_l2(&mut self, slot: u32) {
        let s = slot as usize;
        debug_assert!(self.l2_refs[s] != 0, "release of free slot {slot}");
        self.l2_refs[s] = self.l2_refs[s].saturating_sub(1);
        if self.l2_refs[s] == 0 {
            if self.l2_key[s] != NONE {
                self.l2_shared.remove(&self.l2_key[s]);
                self.l2_key[s] = NONE;
            }
            self.pool.free_l2(slot);
        }
    }

    /// Makes `*slot` usable for a private table: kept if this entry is its only user
    /// (unshared if it was shared), else the reference is dropped and `*slot` is NONE.
    fn make_private(&mut self, slot: &mut u32) {
        if *slot == NONE {
            return;
        }
        let s = *slot as usize;
        if self.l2_refs[s] > 1 {
            self.release_l2(*slot);
            *slot = NONE;
        } else if self.l2_key[s] != NONE {
            self.l2_shared.remove(&self.l2_key[s]);
            self.l2_key[s] = NONE;
        }
    }

    /// True if shadow L2 slot `slot` is also reached through an L1 index other than `idx`
    /// (in any root), so that a rewritten word must be invalidated at several VAs.
    fn shared_elsewhere(&self, slot: u32, idx: usize) -> bool {
        let s = slot as usize;
        if self.l2_refs[s] <= 1 || self.l2_key[s] == NONE {
            return false;
        }
        let Some(deps) = self.rmap.get(&(self.l2_key[s] >> 1)) else {
            return false;
        };
        deps.iter().any(|&(r2, i2)| {
            i2 as usize != idx
                && self.roots[r2 as usize]
                    .as_ref()
                    .is_some_and(|root| root.ents[i2 as usize].shadow_l2 == slot)
        })
    }

    /// Consistency of the shared-table bookkeeping (tests): reference counts match the
    /// entries, the pool holds exactly the referenced slots, keys match the guest tables the
    /// entries were built from, and the reverse map lists exactly the table-backed entries.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> Result<(), alloc::string::String> {
        use alloc::format;
        let mut refs = alloc::vec![0u32; self.l2_refs.len()];
        let mut rmap_n = 0;
        for (r, root) in self.roots.iter().enumerate() {
            let Some(root) = root else { continue };
            for (idx, e) in root.ents.iter().enumerate() {
                if e.guest_l2 != NONE {
                    rmap_n += 1;
                    let listed = self
                        .rmap
                        .get(&(e.guest_l2 >> 10))
                        .is_some_and(|v| v.contains(&(r as u16, idx as u16)));
                    if !listed {
                        return Err(format!("({r}, {idx:#x}) missing from the reverse map"));
                    }
                    if !self.wp.contains(e.guest_l2 as u64) {
                        return Err(format!("guest L2 {:#x} not protected", e.guest_l2));
                    }
                }
                if e.shadow_l2 == NONE {
                    continue;
                }
                let s = e.shadow_l2 as usize;
                refs[s] += 1;
                let key = self.l2_key[s];
                if key != NONE && (e.guest_l2 == NONE || key >> 1 != e.guest_l2 >> 10) {
                    return Err(format!(
                        "({r}, {idx:#x}) guest L2 {:#x} uses slot {s} keyed {key:#x}",
                        e.guest_l2
                    ));
                }
                let l1 = L1Desc::decode(self.pool.l1_word(root.l1, idx));
                let pa = self.pool.l2_pa(e.shadow_l2) as u32;
                if !matches!(l1, L1Desc::PageTable(t) if t.base == pa) {
                    return Err(format!(
                        "({r}, {idx:#x}) L1 word does not point at slot {s}"
                    ));
                }
            }
        }
        if refs != self.l2_refs {
            return Err(format!("reference counts {:?} != {:?}", self.l2_refs, refs));
        }
        let used = refs.iter().filter(|&&n| n != 0).count();
        if used != self.pool.usage().1 {
            return Err(format!(
                "{used} referenced slots, pool has {}",
                self.pool.usage().1
            ));
        }
        for (s, &key) in self.l2_key.iter().enumerate() {
            if key != NONE && (self.l2_shared.get(&key) != Some(&(s as u32)) || refs[s] == 0) {
                return Err(format!("slot {s} keyed {key:#x} not in the share map"));
            }
        }
        for (&key, &s) in &self.l2_shared {
            if self.l2_key[s as usize] != key {
                return Err(format!("share map {key:#x} -> {s} stale"));
            }
        }
        let listed: usize = self.rmap.values().map(|v| v.len()).sum();
        if listed != rmap_n {
            return Err(format!("reverse map lists {listed}, entries {rmap_n}"));
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // Filling shadow entries.

    fn set_l1(&mut self, r: usize, idx: usize, w: u32) {
        let Some(root) = &self.roots[r] else { return };
        let l1 = root.l1;
        let old = self.pool.l1_word(l1, idx);
        if old != w {
            if old & 3 == 1 || w & 3 == 1 {
                self.flush.everything();
            } else {
                self.flush.page((idx as u32) << 20);
            }
            self.pool.set_l1_word(l1, idx, w);
        }
    }

    /// Refills L1 entry `idx`, or its whole 16-entry group when a supersection is involved.
    fn fill_group_or_entry<M: GuestMemory + ?Sized, H: GuestMap + ?Sized>(
        &mut self,
        r: usize,
        idx: usize,
        mem: &M,
        map: &H,
    ) -> Result<(), ShadowError> {
        let Some(root) = &self.roots[r] else {
            return Ok(());
        };
        let regime = self.regime.ok_or(ShadowError::NoRegime)?;
        let old_ss = matches!(
            L1Desc::decode(self.pool.l1_word(root.l1, idx)),
            L1Desc::Supersection(_)
        );
        let new_ss = regime.mmu_on()
            && matches!(
                guest_l1_word(&regime, root.key.ttbr0_base, mem, idx).map(L1Desc::decode),
                Some(L1Desc::Supersection(_))
            );
        if old_ss || new_ss {
            let g = idx & !15;
            let mut res = Ok(());
            for i in g..g + 16 {
                res = res.and(self.fill_l1(r, i, mem, map));
            }
            res
        } else {
            self.fill_l1(r, idx, mem, map)
        }
    }

    fn l1_write<M: GuestMemory + ?Sized, H: GuestMap + ?Sized>(
        &mut self,
        r: usize,
        idx: usize,
        mem: &M,
        map: &H,
    ) -> Result<(), ShadowError> {
        self.fill_group_or_entry(r, idx, mem, map)
    }

    /// Recomputes shadow L1 entry `idx` of root `r` from the guest tables.
    fn fill_l1<M: GuestMemory + ?Sized, H: GuestMap + ?Sized>(
        &mut self,
        r: usize,
        idx: usize,
        mem: &M,
        map: &H,
    ) -> Result<(), ShadowError> {
        let regime = self.regime.ok_or(ShadowError::NoRegime)?;
        let Some(root) = &self.roots[r] else {
            return Ok(());
        };
        let ttbr0_base = root.key.ttbr0_base;
        let old = root.ents[idx];
        self.stats.fills += 1;
        let read = if regime.mmu_on() {
            Some(guest_l1_read(&regime, ttbr0_base, mem, idx))
        } else {
            None
        };
        let guest = read.and_then(|w| w.ok()).map(L1Desc::decode);
        // The guest second-level table (page-table descriptors only), and the walk-trap word
        // when the guest's walk takes an external abort.
        let mut l2 = [0u32; 256];
        let trap = match (read, guest) {
            (Some(Err(L1Miss::Unreadable)), _) => self.trap_word(0, false, false),
            (_, Some(L1Desc::PageTable(t))) => {
                if read_guest_l2(mem, t.base, &mut l2) == 0 {
                    self.trap_word(t.domain, t.ns, t.pxn)
                } else {
                    None
                }
            }
            _ => None,
        };
        // Reverse map and write protection follow the guest L2 table reference (not for
        // walk traps: an unreadable table cannot be written).
        let new_guest_l2 = match guest {
            Some(L1Desc::PageTable(t)) if trap.is_none() => t.base,
            _ => NONE,
        };
        if new_guest_l2 != old.guest_l2 {
            if old.guest_l2 != NONE {
                self.rmap_remove(old.guest_l2, r, idx);
                self.unprotect(old.guest_l2 >> 12);
            }
            if new_guest_l2 != NONE {
                self.rmap
                    .entry(new_guest_l2 >> 10)
                    .or_default()
                    .push((r as u16, idx as u16));
                self.protect(new_guest_l2 >> 12);
            }
            if let Some(root) = self.roots[r].as_mut() {
                root.ents[idx].guest_l2 = new_guest_l2;
            }
        }
        let mut slot = old.shadow_l2;
        let result = if let Some(w) = trap {
            Ok(w)
        } else if !regime.mmu_on() {
            let region = Region {
                gpa: (idx as u64) << 20,
                domain: 0,
                ap: 0b011,
                xn: false,
                pxn: false,
                attrs: RegionAttrs {
                    tex: 1,
                    c: false,
                    b: false,
                    s: false,
                },
                ng: false,
                ns: false,
            };
            self.region_entry(r, idx, &regime, &region, false, &mut slot, map)
        } else {
            match guest {
                None | Some(L1Desc::Fault(_)) => Ok(0),
                Some(L1Desc::Section(s)) => {
                    let region = Region {
                        gpa: s.base as u64,
                        domain: s.domain,
                        ap: s.ap,
                        xn: s.xn,
                        pxn: s.pxn,
                        attrs: s.attrs,
                        ng: s.ng,
                        ns: s.ns,
                    };
                    let manager = regime.domain_access(s.domain) == DomainAccess::Manager;
                    self.region_entry(r, idx, &regime, &region, manager, &mut slot, map)
                }
                Some(L1Desc::Supersection(ss)) => {
                    let manager = regime.domain_access(0) == DomainAccess::Manager;
                    match self.supersection_word(&regime, ttbr0_base, idx, &ss, manager, mem, map) {
                        Some(w) => Ok(w),
                        None => {
                            let region = Region {
                                gpa: ss.base + (((idx & 15) as u64) << 20),
                                domain: 0,
                                ap: ss.ap,
                                xn: ss.xn,
                                pxn: ss.pxn,
                                attrs: ss.attrs,
                                ng: ss.ng,
                                ns: ss.ns,
                            };
                            self.region_entry(r, idx, &regime, &region, manager, &mut slot, map)
                        }
                    }
                }
                Some(L1Desc::PageTable(t)) => {
                    self.table_entry(r, idx, &regime, &t, &l2, &mut slot, map)
                }
            }
        };
        let w = match result {
            Ok(w) => w,
            Err(e) => {
                self.set_l1(r, idx, 0);
                if slot != NONE {
                    self.release_l2(slot);
                }
                if let Some(root) = self.roots[r].as_mut() {
                    root.ents[idx].shadow_l2 = NONE;
                }
                return Err(e);
            }
        };
        if (w & 3 != 1 || trap.is_some()) && slot != NONE {
            // The entry no longer needs a second-level table (a walk trap has none).
            self.set_l1(r, idx, w);
            self.release_l2(slot);
            slot = NONE;
        } else {
            self.set_l1(r, idx, w);
        }
        if let Some(root) = self.roots[r].as_mut() {
            root.ents[idx].shadow_l2 = slot;
        }
        Ok(())
    }

    /// A shadow supersection word if the whole 16-entry group is the same supersection and
    /// its 16 MiB output is backed contiguously, aligned and unprotected.
    #[allow(clippy::too_many_arguments)]
    fn supersection_word<M: GuestMemory + ?Sized, H: GuestMap + ?Sized>(
        &self,
        regime: &Regime,
        ttbr0_base: u32,
        idx: usize,
        ss: &SupersectionDesc,
        manager: bool,
        mem: &M,
        map: &H,
    ) -> Option<u32> {
        let g = idx & !15;
        let w0 = guest_l1_word(regime, ttbr0_base, mem, idx)?;
        for i in g..g + 16 {
            if guest_l1_word(regime, ttbr0_base, mem, i)? != w0 {
                return None;
            }
        }
        let Backing::Ram { hpa, len } = map.backing(GuestPhysAddr::new(ss.base)) else {
            return None;
        };
        let hpa = hpa.raw();
        if len < 16 * MIB
            || hpa & (16 * MIB - 1) != 0
            || hpa >= 1 << 40
            || self.ro_any_in(ss.base, 16 * MIB)
        {
            return None;
        }
        let (ap, xn, pxn) = perm_bits(regime, ss.ap, ss.xn, ss.pxn, manager, false, true);
        Some(
            L1Desc::Supersection(SupersectionDesc {
                base: hpa,
                pxn,
                xn,
                imp: false,
                ap,
                attrs: ss.attrs,
                ng: ss.ng,
                ns: ss.ns,
            })
            .encode(),
        )
    }

    /// Shadow L1 word for a 1 MiB section-like region: a section if possible, else a shadow
    /// L2 table (in `*slot`, reused or allocated) of large/small pages, or a fault when the
    /// whole region is a hole.
    #[allow(clippy::too_many_arguments)]
    fn region_entry<H: GuestMap + ?Sized>(
        &mut self,
        r: usize,
        idx: usize,
        regime: &Regime,
        reg: &Region,
        manager: bool,
        slot: &mut u32,
        map: &H,
    ) -> Result<u32, ShadowError> {
        let mut cache = RunCache::new();
        let (hpa, left) = cache.get(map, reg.gpa);
        match hpa {
            Some(h)
                if left >= MIB
                    && h & (MIB - 1) == 0
                    && h <= FOUR_GIB - MIB
                    && !self.ro_any_in(reg.gpa, MIB) =>
            {
                let (ap, xn, pxn) =
                    perm_bits(regime, reg.ap, reg.xn, reg.pxn, manager, false, true);
                return Ok(L1Desc::Section(SectionDesc {
                    base: h as u32,
                    pxn,
                    xn,
                    domain: reg.domain,
                    imp: false,
                    ap,
                    attrs: reg.attrs,
                    ng: reg.ng,
                    ns: reg.ns,
                })
                .encode());
            }
            None if left >= MIB => return Ok(0),
            _ => {}
        }
        // The table depends on the region: never shared.
        self.make_private(slot);
        if *slot == NONE {
            *slot = self.alloc_l2(r)?;
        }
        self.stats.l2_builds += 1;
        let mut buf = [0u32; 256];
        let mut k = 0;
        while k < 256 {
            let g = reg.gpa + ((k as u64) << 12);
            let (hpa, left) = cache.get(map, g);
            if let Some(h) = hpa {
                if k % 16 == 0
                    && left >= 0x1_0000
                    && h & 0xffff == 0
                    && h <= FOUR_GIB - 0x1_0000
                    && !self.ro_any_in(g, 0x1_0000)
                {
                    let (ap, xn, _) =
                        perm_bits(regime, reg.ap, reg.xn, reg.pxn, manager, false, false);
                    let w = L2Desc::Large(LargePageDesc {
                        base: h as u32,
                        xn,
                        ap,
                        attrs: reg.attrs,
                        ng: reg.ng,
                        sbz: 0,
                    })
                    .encode();
                    buf[k..k + 16].fill(w);
                    k += 16;
                    continue;
                }
                if h <= FOUR_GIB - 0x1000 {
                    let wp = self.ro(g);
                    let (ap, xn, _) =
                        perm_bits(regime, reg.ap, reg.xn, reg.pxn, manager, wp, false);
                    buf[k] = L2Desc::Small(SmallPageDesc {
                        base: h as u32,
                        xn,
                        ap,
                        attrs: reg.attrs,
                        ng: reg.ng,
                    })
                    .encode();
                }
            }
            k += 1;
        }
        self.write_l2(idx, *slot, &buf);
        let pxn = reg.pxn && !manager;
        Ok(L1Desc::PageTable(PageTableDesc {
            base: self.pool.l2_pa(*slot) as u32,
            pxn,
            ns: reg.ns,
            sbz: false,
            domain: reg.domain,
            imp: false,
        })
        .encode())
    }

    /// Writes the words of shadow L2 slot `slot`, reached (at least) through L1 index `idx`,
    /// that differ from `buf`, with their invalidations.
    fn write_l2(&mut self, idx: usize, slot: u32, buf: &[u32; 256]) {
        let mut elsewhere = None;
        for (j, &w) in buf.iter().enumerate() {
            let old = self.pool.l2_word(slot, j);
            if old != w {
                self.flush.page(((idx as u32) << 20) | ((j as u32) << 12));
                if *elsewhere.get_or_insert_with(|| self.shared_elsewhere(slot, idx)) {
                    self.flush.all_vas();
                }
                self.pool.set_l2_word(slot, j, w);
            }
        }
    }

    /// Shadow L2 word for guest L2 entry `j` whose 16-entry group is `group` (words
    /// `j & !15 ..`).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn l2_word<H: GuestMap + ?Sized>(
        &self,
        regime: &Regime,
        manager: bool,
        j: usize,
        w: u32,
        group: &[u32],
        cache: &mut RunCache,
        map: &H,
    ) -> u32 {
        if w & 3 == 0 {
            return 0;
        }
        if w & 2 != 0 && !manager {
            // Fast path: a small page in a client domain that is not write-protected keeps
            // every attribute bit of the guest descriptor; only the address changes.
            let gpa = (w & 0xffff_f000) as u64;
            match cache.get(map, gpa).0 {
                Some(h) if h <= FOUR_GIB - 0x1000 => {
                    if !self.ro(gpa) {
                        return (h as u32 & 0xffff_f000) | (w & 0xfff);
                    }
                }
                _ => return 0,
            }
        }
        self.l2_word_slow(regime, manager, j, w, group, cache, map)
    }

    /// The general case of [`Self::l2_word`]: large pages, manager domains, protected pages.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn l2_word_slow<H: GuestMap + ?Sized>(
        &self,
        regime: &Regime,
        manager: bool,
        j: usize,
        w: u32,
        group: &[u32],
        cache: &mut RunCache,
        map: &H,
    ) -> u32 {
        let (gpa, ap, xn, attrs, ng, large) = match L2Desc::decode(w) {
            L2Desc::Fault(_) => return 0,
            L2Desc::Small(s) => (s.base as u64, s.ap, s.xn, s.attrs, s.ng, None),
            L2Desc::Large(l) => (
                l.base as u64 + (((j & 15) as u64) << 12),
                l.ap,
                l.xn,
                l.attrs,
                l.ng,
                Some(l),
            ),
        };
        if let Some(l) = large {
            if group.iter().all(|&x| x == w) {
                let (hpa, left) = cache.get(map, l.base as u64);
                if let Some(h) = hpa {
                    if left >= 0x1_0000
                        && h & 0xffff == 0
                        && h <= FOUR_GIB - 0x1_0000
                        && !self.ro_any_in(l.base as u64, 0x1_0000)
                    {
                        let (ap, xn, _) = perm_bits(regime, ap, xn, false, manager, false, false);
                        return L2Desc::Large(LargePageDesc {
                            base: h as u32,
                            xn,
                            ap,
                            attrs,
                            ng,
                            sbz: 0,
                        })
                        .encode();
                    }
                }
            }
        }
        let (hpa, _) = cache.get(map, gpa);
        match hpa {
            Some(h) if h <= FOUR_GIB - 0x1000 => {
                let wp = self.ro(gpa);
                let (ap, xn, _) = perm_bits(regime, ap, xn, false, manager, wp, false);
                L2Desc::Small(SmallPageDesc {
                    base: h as u32,
                    xn,
                    ap,
                    attrs,
                    ng,
                })
                .encode()
            }
            _ => 0,
        }
    }

    /// Shadow L1 word for a guest page-table descriptor whose second-level table holds
    /// `guest` (unreadable words read as 0: they stay shadow faults, and the guest walk
    /// reports the external abort when the fault is resolved). The shadow L2 table is the
    /// shared one for the entry's [`share_key`] if there is one (it is kept exact by
    /// [`ShadowEngine::sync_write`], so nothing is built); else `*slot` (this entry's table,
    /// if no other entry uses it) or a new slot is (re)built and becomes the shared one.
    /// `*slot` holds the entry's reference on return (NONE on error).
    #[allow(clippy::too_many_arguments)]
    fn table_entry<H: GuestMap + ?Sized>(
        &mut self,
        r: usize,
        idx: usize,
        regime: &Regime,
        t: &PageTableDesc,
        guest: &[u32; 256],
        slot: &mut u32,
        map: &H,
    ) -> Result<u32, ShadowError> {
        let manager = regime.domain_access(t.domain) == DomainAccess::Manager;
        let key = share_key(t.base, manager);
        let cur = *slot;
        if cur != NONE && self.l2_key[cur as usize] == key {
            // Already this entry's (possibly shared) table: rebuild in place.
            self.build_table(idx, cur, regime, manager, guest, map);
        } else if let Some(&s) = self.l2_shared.get(&key) {
            if cur != NONE {
                self.release_l2(cur);
            }
            self.l2_refs[s as usize] += 1;
            self.stats.l2_shares += 1;
            *slot = s;
        } else {
            if cur != NONE && self.l2_refs[cur as usize] > 1 {
                self.release_l2(cur);
                *slot = NONE;
            }
            if *slot == NONE {
                *slot = self.alloc_l2(r)?;
            } else {
                // This entry's own table: rekey it (rewriting only what changes).
                let old = self.l2_key[cur as usize];
                if old != NONE {
                    self.l2_shared.remove(&old);
                }
            }
            self.l2_key[*slot as usize] = key;
            self.l2_shared.insert(key, *slot);
            self.build_table(idx, *slot, regime, manager, guest, map);
        }
        Ok(L1Desc::PageTable(PageTableDesc {
            base: self.pool.l2_pa(*slot) as u32,
            pxn: t.pxn && !manager,
            ns: t.ns,
            sbz: false,
            domain: t.domain,
            imp: false,
        })
        .encode())
    }

    /// Builds shadow L2 slot `slot` (reached through L1 index `idx`, among others if shared)
    /// from the guest second-level table words `guest`.
    fn build_table<H: GuestMap + ?Sized>(
        &mut self,
        idx: usize,
        slot: u32,
        regime: &Regime,
        manager: bool,
        guest: &[u32; 256],
        map: &H,
    ) {
        self.stats.l2_builds += 1;
        let mut buf = [0u32; 256];
        let mut cache = RunCache::new();
        for j in 0..256 {
            let g0 = j & !15;
            buf[j] = self.l2_word(
                regime,
                manager,
                j,
                guest[j],
                &guest[g0..g0 + 16],
                &mut cache,
                map,
            );
        }
        self.write_l2(idx, slot, &buf);
    }

    /// Recomputes shadow L2 entry `j` (or its 16-entry group for large pages) of the table
    /// built from a guest L2 table for L1 entry `idx` of root `r`, unless that (shared)
    /// table is in `done` (already recomputed for this word through another entry).
    fn fill_l2_entry<M: GuestMemory + ?Sized, H: GuestMap + ?Sized>(
        &mut self,
        r: usize,
        idx: usize,
        j: usize,
        mem: &M,
        map: &H,
        done: &mut SlotSet,
    ) -> Result<(), ShadowError> {
        let regime = self.regime.ok_or(ShadowError::NoRegime)?;
        let Some(root) = &self.roots[r] else {
            return Ok(());
        };
        let ent = root.ents[idx];
        let t = match guest_l1_word(&regime, root.key.ttbr0_base, mem, idx).map(L1Desc::decode) {
            Some(L1Desc::PageTable(t)) if t.base == ent.guest_l2 && ent.shadow_l2 != NONE => t,
            _ => return self.fill_l1(r, idx, mem, map),
        };
        let slot = ent.shadow_l2;
        let manager = regime.domain_access(t.domain) == DomainAccess::Manager;
        if self.l2_key[slot as usize] != share_key(t.base, manager) {
            return self.fill_l1(r, idx, mem, map);
        }
        if !done.insert(slot) {
            return Ok(());
        }
        let rd = |k: usize| {
            mem.read_u32(GuestPhysAddr::new((t.base | ((k as u32) << 2)) as u64))
                .unwrap_or(0)
        };
        let w = rd(j);
        let g0 = j & !15;
        let old_large = self.pool.l2_word(slot, j) & 3 == 1;
        let new_large = w & 3 == 1;
        let mut cache = RunCache::new();
        let mut group = [0u32; 16];
        if old_large || new_large {
            for (k, g) in group.iter_mut().enumerate() {
                *g = rd(g0 + k);
            }
            for k in 0..16 {
                let nw = self.l2_word(&regime, manager, g0 + k, group[k], &group, &mut cache, map);
                self.set_l2(idx, slot, g0 + k, nw);
            }
        } else {
            let nw = self.l2_word(&regime, manager, j, w, &group, &mut cache, map);
            self.set_l2(idx, slot, j, nw);
        }
        Ok(())
    }

    /// Writes word `j` of shadow L2 slot `slot`, reached (at least) through L1 index `idx`.
    /// A shared table reached at the same index in every root needs one TLBIMVAA per page
    /// (all ASIDs, so every root's entries); at several indices, a full invalidation.
    #[inline]
    fn set_l2(&mut self, idx: usize, slot: u32, j: usize, w: u32) {
        if self.pool.l2_word(slot, j) != w {
            self.flush.page(((idx as u32) << 20) | ((j as u32) << 12));
            if self.shared_elsewhere(slot, idx) {
                self.flush.all_vas();
            }
            self.pool.set_l2_word(slot, j, w);
        }
    }

    /// Refills every entry in a domain whose manager status changed.
    fn refill_domains<M: GuestMemory + ?Sized, H: GuestMap + ?Sized>(
        &mut self,
        domains: u16,
        mem: &M,
        map: &H,
    ) -> Result<(), ShadowError> {
        let mut res = Ok(());
        for r in 0..self.roots.len() {
            let Some(root) = &self.roots[r] else { continue };
            let l1 = root.l1;
            for idx in 0..4096 {
                let d = match L1Desc::decode(self.pool.l1_word(l1, idx)) {
                    L1Desc::Fault(_) => continue,
                    L1Desc::Section(s) => s.domain,
                    L1Desc::PageTable(t) => t.domain,
                    L1Desc::Supersection(_) => 0,
                };
                if domains >> d & 1 != 0 {
                    res = res.and(self.fill_l1(r, idx, mem, map));
                }
            }
        }
        res
    }

    /// Re-derives every shadow entry that maps a guest page whose write protection changed.
    fn drain_pending<M: GuestMemory + ?Sized, H: GuestMap + ?Sized>(
        &mut self,
        mem: &M,
        map: &H,
        skip: Option<usize>,
    ) {
        let mut guard = 0;
        while let Some(page) = self.pending.pop() {
            guard += 1;
            if guard > 1 << 16 {
                self.pending.clear();
                break;
            }
            if self.pending.contains(&page) {
                continue;
            }
            self.rescan(page, mem, map, skip);
        }
    }

    fn rescan<M: GuestMemory + ?Sized, H: GuestMap + ?Sized>(
        &mut self,
        page: u32,
        mem: &M,
        map: &H,
        skip: Option<usize>,
    ) {
        self.stats.rescans += 1;
        let gpa = (page as u64) << 12;
        let Backing::Ram { hpa, .. } = map.backing(GuestPhysAddr::new(gpa)) else {
            return;
        };
        let hpa = hpa.raw();
        // Second-level entries only reach the low 4 GiB.
        let hpa32 = if hpa < FOUR_GIB { hpa as u32 } else { 0 };
        let l2_possible = hpa < FOUR_GIB;
        // (root, L1 index, Some(L2 index) for guest-L2-backed entries).
        let mut work: Vec<(usize, usize, Option<usize>)> = Vec::new();
        // Shared tables already scanned through another entry.
        let mut seen = SlotSet::default();
        for (r, root) in self.roots.iter().enumerate() {
            let Some(root) = root else { continue };
            if skip == Some(r) {
                continue;
            }
            for idx in 0..4096 {
                match L1Desc::decode(self.pool.l1_word(root.l1, idx)) {
                    L1Desc::Fault(_) => {}
                    L1Desc::Section(s) => {
                        if hpa >> 20 == (s.base >> 20) as u64 {
                            work.push((r, idx, None));
                        }
                    }
                    L1Desc::Supersection(s) => {
                        if hpa >> 24 == s.base >> 24 {
                            work.push((r, idx, None));
                        }
                    }
                    L1Desc::PageTable(_) => {
                        let slot = root.ents[idx].shadow_l2;
                        if slot == NONE || !l2_possible {
                            continue;
                        }
                        let from_guest_l2 = root.ents[idx].guest_l2 != NONE;
                        if self.l2_refs[slot as usize] > 1 && !seen.insert(slot) {
                            continue;
                        }
                        // Bit tests instead of a decode: this loop is the scan's cost.
                        // Branch-free so that the compiler can vectorise it.
                        let hit = |w: u32| {
                            let mask = if w & 3 == 1 { 0xffff_0000 } else { 0xffff_f000 };
                            (w & 3 != 0) & ((w ^ hpa32) & mask == 0)
                        };
                        let words = self.pool.l2_slice(slot);
                        if !words.iter().fold(false, |a, &w| a | hit(w)) {
                            continue;
                        }
                        if from_guest_l2 {
                            for (j, &w) in words.iter().enumerate() {
                                if hit(w) {
                                    work.push((r, idx, Some(j)));
                                }
                            }
                        } else {
                            work.push((r, idx, None));
                        }
                    }
                }
            }
        }
        for (r, idx, j) in work {
            let _ = match j {
                Some(j) => self.fill_l2_entry(r, idx, j, mem, map, &mut SlotSet::default()),
                None => self.fill_group_or_entry(r, idx, mem, map),
            };
        }
    }
}
