//! Shadow page tables for ARMv7 short-descriptor guests: descriptor model, guest walker, shadow builder, sync and cache.
//!
//! In shadow mode the hypervisor composes the guest's stage-1 tables (VA → guest PA) with its
//! own map (guest PA → host PA) into shadow tables (VA → host PA) that the MMU walks directly.
//! This module is the pure engine: [`desc`] models descriptors, [`walk`] is an
//! architecturally faithful walker (also used on the shadow itself, through [`ShadowView`]),
//! and [`ShadowEngine`] builds, caches and keeps shadows in sync.
//!
//! # Shadow regime and the domain/permission design
//!
//! The hardware walks a shadow with the registers in [`ShadowRegs`]:
//! - TTBCR = 0 (N=0, PD0=PD1=0): one 16 KiB first-level table covers both the guest's TTBR0
//!   and TTBR1 halves, so a guest TTBR switch is a shadow root switch.
//! - Shadow entries keep the guest's domain numbers. The shadow DACR maps the guest's DACR
//!   field by field: no access → no access, client → client, reserved → no access (the
//!   walker treats reserved as no access), and **manager → client**. Entries in a guest
//!   manager domain are written with full access (AP=0b011, or AP\[2:1\]=0b01 keeping the guest's
//!   AP\[0\] under AFE) and XN=PXN=0, which the hardware enforces exactly like a manager domain.
//!   So a DACR write that only moves domains between no access and client costs nothing
//!   but a new shadow DACR value; only client↔manager changes rewrite the entries of that
//!   domain.
//! - SCTLR.AFE, TRE, WXN and UWXN, PRRR, NMRR and CONTEXTIDR are the guest's, and
//!   TEX/C/B/S, nG and NS are copied from the guest descriptors, so memory attributes,
//!   access-flag faults, ASID tagging and execute-never resolve identically. (Exception,
//!   documented: with WXN/UWXN set, a guest manager-domain page that is writable is
//!   not executable in the shadow; the engine never grants more than the guest.)
//! - Guest translation-table pages are write-protected: the engine keeps a reference-counted
//!   protected set (the pages holding the guest L1 tables of cached roots and the guest L2
//!   tables referenced by shadow entries). By default ([`ShadowEngine::new`]) the shadow
//!   maps them read-only (AP\[2\] set; XN/PXN adjusted so WXN cannot make them executable),
//!   which splits sections/supersections/large pages covering them and rescans the shadows
//!   when a page's protection changes. With [`ShadowOptions::external_wp`]
//!   ([`ShadowEngine::with_options`]) the hypervisor protects them with stage-2 permissions
//!   instead, so a guest write traps to EL2 and no EL1 permission fault is ever visible to
//!   the guest: shadow entries keep the guest's permissions and sizes, nothing is rescanned,
//!   and [`ShadowEngine::take_wp_changes`] reports the pages to (un)protect at stage 2.
//!   A reverse map from guest L2 tables to the shadow entries built from them, plus each
//!   root's guest L1 table range, drives incremental sync.
//! - Guest tables that are not RAM: the guest's own walk takes a synchronous external abort
//!   on the walk, which a faulting shadow entry would turn into a translation fault. With
//!   [`ShadowOptions::walk_trap`] (an IPA the hypervisor leaves unmapped in stage 2) such
//!   L1 indices get a shadow page-table descriptor pointing at the trap: the hardware walk
//!   takes a stage-2 fault on the stage-1 walk ([`ShadowEngine::is_walk_trap`]) and the
//!   hypervisor re-walks the guest to inject its exact fault (level 1 or 2, domain). Trap
//!   entries are synced like any other and cost no second-level table, reverse-map entry
//!   or write protection.
//! - Guest RAM holes (emulated MMIO) are left faulting. Sections/supersections/large pages
//!   are used only where the host backing is contiguous, aligned and free of protected
//!   pages; otherwise the shadow splits down to small pages. So a shadow fault is not always
//!   the guest's fault: [`ShadowEngine::resolve_fault`] re-walks the guest and says whether
//!   to inject the guest's fault, emulate MMIO, emulate a write-protected store, or retry.
//! - SCTLR.M=0 gives an identity shadow over guest RAM (Normal non-cacheable, full access,
//!   domain 0 client).
//!
//! # Root cache
//!
//! Roots are cached by guest TTBR0 table base only ([`RootKey`]): shadow contents do not
//! depend on the ASID, since the hardware TLB tags nG entries with the live CONTEXTIDR. A
//! CONTEXTIDR-only change (Linux writes CONTEXTIDR, then TTBR0) is a cache hit that only
//! changes [`ShadowRegs::contextidr`]. TTBCR, SCTLR.M/AFE/WXN/UWXN and (with N≠0) the TTBR1
//! base are structural: every root is dropped and the protected set released. Least
//! recently used roots are evicted when `max_roots` is reached or the pool runs out.
//! [`ShadowEngine::reset`] drops everything for a VM reboot, and
//! [`ShadowEngine::memory_stats`] accounts shadow and shadowed guest table memory.
//!
//! # Shared second-level tables
//!
//! Each root has its own 16 KiB shadow first-level table, but shadow second-level tables
//! built from guest second-level tables are shared: every shadow first-level entry (in any
//! root, at any index) whose guest page-table descriptor points at the same 1 KiB guest
//! table, in a domain with the same manager status, points at one reference-counted shadow
//! table. Its 256 words depend on nothing else: not on the VA (large pages are grouped by
//! table index, walk traps are first-level entries), and the descriptor's domain, NS and PXN
//! bits go into the first-level word only; the protected set, the guest map and
//! SCTLR.AFE/WXN/UWXN are the same for every root. So the per-process first-level tables of
//! a Linux guest, which all hook the same kernel second-level tables (modules, vmalloc,
//! fixmap, vectors), cost one shadow copy of each, and a new process's root takes
//! references instead of building them. Shadow tables for section-like regions (guest
//! sections, supersections or the MMU-off identity split into pages) stay private to their
//! entry.
//!
//! A synced write to a shared guest table updates the shadow copy once; it is invalidated
//! with TLBIMVAA (all ASIDs, so every root's TLB entries) when every entry using it is at
//! the same L1 index, with a full invalidation otherwise. An entry that stops using a table
//! (guest first-level write, client↔manager change of its domain, eviction of its root)
//! drops its reference, and the last one returns the slot to the pool. The reverse map and
//! the write-protection reference counts stay per entry, so protection is exactly as
//! without sharing.
//!
//! # Costs (see `benches/shadow.rs`)
//!
//! A guest walk is at most two table reads. A synced descriptor write is one reverse-map
//! lookup and one (or 16, for large pages and supersections) shadow descriptor rewrites,
//! once per shadow table however many roots share it. A guest L1 write that hooks a new L2
//! table builds 256 shadow entries (or takes a reference to the shadow table another entry
//! already built from that guest table); when that makes a page newly write-protected (or
//! releases one), every cached shadow is scanned for mappings of that page (O(shadow
//! size), tens of microseconds) unless write protection is external.
//!
//! Guest descriptor writes must be trapped (the table pages are read-only, in the shadow or
//! at stage 2) and reported with [`ShadowEngine::sync_write`]; shadows are therefore never
//! behind guest memory, and guest TLB maintenance only has to be mirrored to the hardware
//! TLB ([`ShadowEngine::tlb_op`]).

pub mod desc;
pub mod difftest;
mod engine;
pub mod pool;
pub mod sim;
#[cfg(test)]
mod tests;
pub mod walk;
mod wp;

pub use desc::{L1Desc, L2Desc, RegionAttrs};
pub use engine::{
    HostTlbOp, MemoryStats, RegimeChange, Resolution, RootKey, ShadowEngine, ShadowOptions,
    ShadowRegs, Stats, SyncOutcome, TlbOp,
};
pub use pool::{Pool, ShadowView};
pub use walk::{
    ats1, par, translate, Access, AccessKind, AtsOp, Fault, FaultKind, GuestMemory, MemAttrs,
    MemError, MemType, PageSize, Perms, Pl, Regime, Rwx, Translation,
};

use crate::addr::{GuestPhysAddr, HostPhysAddr};

/// What backs a guest physical page, as the hypervisor's stage-2-equivalent map says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// `[gpa, gpa + len)` is RAM mapped linearly to `[hpa, hpa + len)`.
    Ram {
        /// Host physical address of the queried guest address.
        hpa: HostPhysAddr,
        /// Bytes from the queried address that stay linearly mapped (a multiple of 4 KiB).
        len: u64,
    },
    /// `[gpa, gpa + len)` is not RAM (emulated MMIO or nothing): accesses must trap.
    Hole {
        /// Bytes from the queried address that stay unbacked (a multiple of 4 KiB).
        len: u64,
    },
}

/// The guest-physical → host-physical map the shadow composes with.
pub trait GuestMap {
    /// Backing of the 4 KiB-aligned guest physical address `gpa` (which may lie above 4 GiB).
    /// A `len` below 4 KiB is treated as 4 KiB. Must never panic.
    fn backing(&self, gpa: GuestPhysAddr) -> Backing;
}

/// Errors of the shadow engine (faults the guest takes are [`Fault`]s, not errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShadowError {
    /// TTBCR.EAE=1: the guest uses long descriptors, which this engine does not shadow.
    LongDescriptorUnsupported,
    /// The pool has no room even after evicting every inactive root.
    PoolExhausted,
    /// No guest regime has been set yet ([`ShadowEngine::set_regime`] first).
    NoRegime,
}

impl core::fmt::Display for ShadowError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ShadowError::LongDescriptorUnsupported => {
                write!(f, "long-descriptor guest not supported")
            }
            ShadowError::PoolExhausted => write!(f, "shadow table pool exhausted"),
            ShadowError::NoRegime => write!(f, "no guest regime set"),
        }
    }
}
