//! Stage-2 (per-VM) and EL2 stage-1 translation tables: VMSAv8-64 / ARMv7 LPAE, 4 KiB granule.
//!
//! The module is pure logic and builds for the host, where `cargo test` exercises it
//! against fake memory and a recording TLB. Its layers:
//!
//! | module       | contents                                                           |
//! |--------------|--------------------------------------------------------------------|
//! | [`desc`]     | descriptor encode/decode (stage-2 and EL2 stage-1 leaf attributes) |
//! | [`geometry`] | IPA/VA size, start level, concatenation, VTCR/TCR values           |
//! | `walk`       | the one table walker, with leaf / table-pre / table-post visitors  |
//! | `table`      | regime-independent map, unmap, protect, query, destroy visitors    |
//! | [`stage2`]   | [`Stage2PageTable`]: a VM's stage-2 tables with a VMID             |
//! | [`stage1`]   | [`Stage1PageTable`]: the hypervisor's own EL2 (Hyp) stage-1 tables |
//!
//! Memory for table frames comes through [`PageTableMm`], TLB maintenance and barriers
//! through [`TlbMaintenance`]; the architecture layer implements both for the target.
//!
//! Every address and size handed to the public functions may come from a guest: they
//! are validated and rejected with a [`PageTableError`], never a panic.

pub mod desc;
pub mod geometry;
pub mod stage1;
pub mod stage2;
mod table;
mod walk;

#[cfg(test)]
mod tests;

use core::fmt;
use core::ops::BitOr;

use crate::addr::HostPhysAddr;

pub use desc::{Desc, LeafAttrs, S1LeafAttrs, S2LeafAttrs};
pub use geometry::{Geometry, Regime};
pub use stage1::{MemType, Stage1PageTable, MAIR_EL2, MAIR_IDX_DEVICE, MAIR_IDX_NORMAL};
pub use stage2::Stage2PageTable;

/// Size of a translation granule, of a table frame and of a level-3 page: 4 KiB.
pub const PAGE_SIZE: u64 = 4096;
/// Number of 64-bit entries in one table frame.
pub const ENTRIES_PER_TABLE: usize = 512;
/// Size mapped by a level-2 block: 2 MiB.
pub const BLOCK_2M: u64 = 1 << 21;
/// Size mapped by a level-1 block: 1 GiB.
pub const BLOCK_1G: u64 = 1 << 30;

/// Errors returned by the page-table operations. None of them leaves the tables
/// inconsistent; see each operation for what has changed when it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageTableError {
    /// An address or size is not a multiple of [`PAGE_SIZE`].
    Misaligned,
    /// The range is empty where a non-empty one is needed, overflows, or lies
    /// (partly) outside the input or output address space of the tables.
    OutOfRange,
    /// The table-frame allocator ([`PageTableMm::alloc_zeroed`]) returned `None`.
    NoMemory,
    /// `map` found a valid mapping inside the requested range.
    AlreadyMapped,
    /// The permission set is not allowed (empty, or executable device memory, ...).
    InvalidProt,
    /// The geometry parameters are not supported (address size, regime, ...).
    InvalidGeometry,
}

impl fmt::Display for PageTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Misaligned => "address or size not 4 KiB aligned",
            Self::OutOfRange => "range empty, overflowing or outside the address space",
            Self::NoMemory => "out of memory for translation tables",
            Self::AlreadyMapped => "range already mapped",
            Self::InvalidProt => "invalid permissions",
            Self::InvalidGeometry => "unsupported translation geometry",
        };
        f.write_str(s)
    }
}

/// Generic access permissions and memory type of a mapping.
///
/// A set of the flags [`Prot::R`], [`Prot::W`], [`Prot::X`] and [`Prot::DEVICE`]
/// (device-nGnRE memory instead of normal write-back memory). Guests may get RWX
/// normal memory; executable device memory is refused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Prot(u8);

impl Prot {
    /// No access (not valid for `map`).
    pub const NONE: Prot = Prot(0);
    /// Readable.
    pub const R: Prot = Prot(1);
    /// Writable.
    pub const W: Prot = Prot(2);
    /// Executable.
    pub const X: Prot = Prot(4);
    /// Device-nGnRE memory (without it: normal, inner/outer write-back cacheable).
    pub const DEVICE: Prot = Prot(8);
    /// Read + write.
    pub const RW: Prot = Prot(3);
    /// Read + execute.
    pub const RX: Prot = Prot(5);
    /// Read + write + execute.
    pub const RWX: Prot = Prot(7);
    /// Read + write device memory (typical MMIO pass-through).
    pub const DEVICE_RW: Prot = Prot(11);

    /// The raw flag bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Builds from raw bits; `None` if an unknown bit is set.
    pub const fn from_bits(bits: u8) -> Option<Prot> {
        if bits & !0xf == 0 {
            Some(Prot(bits))
        } else {
            None
        }
    }
    /// True if every flag of `other` is set in `self`.
    pub const fn contains(self, other: Prot) -> bool {
        self.0 & other.0 == other.0
    }
    /// The union of two sets.
    pub const fn union(self, other: Prot) -> Prot {
        Prot(self.0 | other.0)
    }
    /// `self` without the flags of `other`.
    pub const fn difference(self, other: Prot) -> Prot {
        Prot(self.0 & !other.0)
    }
    /// True if at least one of R, W, X is set.
    pub const fn has_access(self) -> bool {
        self.0 & 7 != 0
    }
}

impl BitOr for Prot {
    type Output = Prot;
    fn bitor(self, rhs: Prot) -> Prot {
        self.union(rhs)
    }
}

impl fmt::Debug for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |flag: Prot, ch: char| if self.contains(flag) { ch } else { '-' };
        write!(
            f,
            "{}{}{}",
            c(Prot::R, 'r'),
            c(Prot::W, 'w'),
            c(Prot::X, 'x')
        )?;
        if self.contains(Prot::DEVICE) {
            f.write_str("+dev")?;
        }
        Ok(())
    }
}

/// The result of a successful lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The output address of the looked-up input address (page offset included).
    pub pa: HostPhysAddr,
    /// Permissions and memory type of the leaf.
    pub prot: Prot,
    /// Level of the leaf: 1 (1 GiB block), 2 (2 MiB block) or 3 (4 KiB page).
    pub level: u8,
    /// Size of the leaf in bytes.
    pub size: u64,
}

/// Source of translation-table memory (the equivalent of Linux's `kvm_pgtable_mm_ops`).
///
/// Table frames are named by their host physical address. The tables never
/// dereference memory themselves: every entry access goes through
/// [`read_entry`](Self::read_entry) / [`write_entry`](Self::write_entry), so a host
/// fake can back frames with `Vec<u64>`, and the target implementation can use an
/// identity (or linear) map.
pub trait PageTableMm {
    /// Allocates `frames` physically contiguous, zero-filled 4 KiB frames whose start
    /// is aligned to `frames * 4 KiB`, and returns the address of the first one, or
    /// `None` if no memory is left. `frames` is a power of two in `1..=16` (more than
    /// one only for a concatenated stage-2 root).
    ///
    /// On the target the zeroes must be visible to the table walker before the frame
    /// is linked in (the walker is cache-coherent with `IRGN/ORGN = WB`, `SH = inner`;
    /// ordinary cacheable stores suffice, the tables issue the DSBs).
    fn alloc_zeroed(&mut self, frames: usize) -> Option<HostPhysAddr>;
    /// Returns frames obtained from [`alloc_zeroed`](Self::alloc_zeroed) with the same
    /// `frames` count. Called only after the TLB maintenance that makes the frames
    /// unreachable by any walker has completed.
    fn free(&mut self, pa: HostPhysAddr, frames: usize);
    /// Reads entry `index` of the table starting at `table` (the 64-bit word at
    /// `table + 8 * index`; `index < 512 * frames` of that allocation). Must be a
    /// single-copy-atomic 64-bit load (on ARMv7: `ldrd`, or a volatile `u64` read).
    fn read_entry(&self, table: HostPhysAddr, index: usize) -> u64;
    /// Writes entry `index` of the table starting at `table`. Must be a
    /// single-copy-atomic 64-bit store (`str x`; on ARMv7 LPAE `strd`) so a concurrent
    /// hardware walk never sees a torn descriptor; no barrier needed, the tables issue
    /// them.
    fn write_entry(&mut self, table: HostPhysAddr, index: usize, value: u64);
}

/// TLB maintenance and barriers, as single instructions; the tables sequence them.
///
/// All invalidations are broadcast to the inner-shareable domain. The VMID-based
/// operations act on the given VMID: on the target, TLBI by IPA and VMALL* apply to the
/// VMID currently in `VTTBR_EL2`, so the implementation must make `VTTBR_EL2.VMID ==
/// vmid` around the instruction (switching VTTBR_EL2 and back, with an `isb`, if the
/// current one differs).
///
/// ARMv7 (LPAE + virtualization extensions) has no invalidation by IPA: there
/// `tlbi_ipas2e1is` and `tlbi_vmalls12e1is` become `TLBIALLNSNHIS` (every VMID),
/// `tlbi_vmalle1is` is `TLBIALLIS` with the VMID in VTTBR, `tlbi_vae2is` is
/// `TLBIMVAHIS`, `tlbi_alle2` is `TLBIALLHIS`, and the barriers are `dsb ishst` /
/// `dsb ish` / `isb` (`src/arch/armv7/mem.rs`).
pub trait TlbMaintenance {
    /// `dsb ishst`: earlier table stores are visible to all walkers in the domain.
    fn dsb_ishst(&mut self);
    /// `dsb ish`: earlier TLB maintenance has completed everywhere in the domain.
    fn dsb_ish(&mut self);
    /// `isb`.
    fn isb(&mut self);
    /// `tlbi ipas2e1is, Xt` with `Xt = ipa >> 12` (bits [35:0] / [39:0]): invalidate
    /// stage-2 entries (all levels, including walk caches) translating `ipa` for
    /// `vmid`. `level` is the level (1..=3) of the leaf being removed, usable as the
    /// FEAT_TTL hint (`Xt[47:44] = 0b01:level` for 4 KiB) or ignored; 0 means no hint
    /// (a table entry was removed: the walk caches of every level must go).
    fn tlbi_ipas2e1is(&mut self, vmid: u8, ipa: crate::addr::GuestPhysAddr, level: u8);
    /// `tlbi vmalle1is` for `vmid`: all stage-1 (and combined stage-1+2) entries of
    /// the VM; required after IPA invalidation since combined entries are not tagged
    /// by IPA.
    fn tlbi_vmalle1is(&mut self, vmid: u8);
    /// `tlbi vmalls12e1is` for `vmid`: every stage-1 and stage-2 entry of the VM.
    fn tlbi_vmalls12e1is(&mut self, vmid: u8);
    /// `tlbi vae2is, Xt` with `Xt = va >> 12`: EL2 stage-1 entries translating `va`.
    fn tlbi_vae2is(&mut self, va: crate::addr::VirtAddr);
    /// `tlbi alle2is` (or `alle2` on a single CPU): every EL2 stage-1 entry.
    fn tlbi_alle2(&mut self);
}
