//! Per-VM stage-2 translation tables (IPA → host PA) with a VMID and break-before-make.

use super::desc::{LeafAttrs, S2LeafAttrs, OA_MASK};
use super::geometry::Geometry;
use super::table::{Flusher, Tables};
use super::{Mapping, PageTableError, PageTableMm, Prot, TlbMaintenance};
use crate::addr::{GuestPhysAddr, HostPhysAddr};

/// Stage-2 leaf attributes for `prot`: S2AP from R/W, XN unless X, MemAttr normal
/// write-back or (with [`Prot::DEVICE`]) Device-nGnRE, inner shareable, AF set.
/// Errors: [`PageTableError::InvalidProt`] if none of R/W/X is set or for
/// executable device memory.
pub fn prot_to_attrs(prot: Prot) -> Result<S2LeafAttrs, PageTableError> {
    let device = prot.contains(Prot::DEVICE);
    if !prot.has_access() || (device && prot.contains(Prot::X)) {
        return Err(PageTableError::InvalidProt);
    }
    Ok(S2LeafAttrs {
        mem_attr: if device {
            S2LeafAttrs::MEMATTR_DEVICE_NGNRE
        } else {
            S2LeafAttrs::MEMATTR_NORMAL_WB
        },
        read: prot.contains(Prot::R),
        write: prot.contains(Prot::W),
        sh: 3,
        af: true,
        xn: !prot.contains(Prot::X),
    })
}

/// The [`Prot`] of stage-2 leaf attributes: DEVICE for any Device MemAttr
/// (`MemAttr[3:2] == 0`), else normal.
pub fn attrs_to_prot(a: &S2LeafAttrs) -> Prot {
    let mut p = Prot::NONE;
    if a.read {
        p = p | Prot::R;
    }
    if a.write {
        p = p | Prot::W;
    }
    if !a.xn {
        p = p | Prot::X;
    }
    if a.mem_attr & 0b1100 == 0 {
        p = p | Prot::DEVICE;
    }
    p
}

/// Stage-2 TLB maintenance for one VMID.
struct S2Flush<'a, T> {
    tlb: &'a mut T,
    vmid: u8,
    pending: bool,
}

impl<T: TlbMaintenance> Flusher for S2Flush<'_, T> {
    fn break_entry(&mut self, addr: u64, level: u8) {
        self.tlb.dsb_ishst();
        self.tlb
            .tlbi_ipas2e1is(self.vmid, GuestPhysAddr::new(addr), level);
        self.tlb.dsb_ish();
        self.tlb.tlbi_vmalle1is(self.vmid);
        self.tlb.dsb_ish();
    }
    fn unmapped_leaf(&mut self, addr: u64, level: u8) {
        self.tlb.dsb_ishst();
        self.tlb
            .tlbi_ipas2e1is(self.vmid, GuestPhysAddr::new(addr), level);
        self.pending = true;
    }
    fn removed_table(&mut self, addr: u64, _level: u8) {
        self.tlb.dsb_ishst();
        self.tlb
            .tlbi_ipas2e1is(self.vmid, GuestPhysAddr::new(addr), 0);
        self.tlb.dsb_ish();
        self.pending = true;
    }
    fn finish(&mut self) {
        if self.pending {
            self.tlb.dsb_ish();
            self.tlb.tlbi_vmalle1is(self.vmid);
            self.tlb.dsb_ish();
            self.pending = false;
        } else {
            self.tlb.dsb_ishst();
        }
        self.tlb.isb();
    }
    fn flush_all(&mut self) {
        self.tlb.dsb_ishst();
        self.tlb.tlbi_vmalls12e1is(self.vmid);
        self.tlb.dsb_ish();
        self.tlb.isb();
    }
}

/// The stage-2 translation tables of one VM.
///
/// Not internally synchronised: the owner serialises calls (e.g. with a per-VM lock).
/// vCPUs of the VM may run on other CPUs meanwhile; every change to a live entry
/// follows break-before-make:
///
/// 1. write the entry invalid;
/// 2. `dsb ishst`;
/// 3. `tlbi ipas2e1is` for the entry's IPA and level;
/// 4. `dsb ish`; `tlbi vmalle1is`; `dsb ish` (combined stage-1+2 entries);
/// 5. write the new entry;
///
/// and every operation ends with `dsb ishst` (or, after unmapping, `dsb ish`;
/// `tlbi vmalle1is`; `dsb ish`) and `isb`. Freed table frames are returned to the
/// allocator only after their invalidation has completed.
///
/// Dropping the value does what [`destroy`](Self::destroy) does.
pub struct Stage2PageTable<M: PageTableMm, T: TlbMaintenance> {
    tables: Tables<M>,
    tlb: T,
    vmid: u8,
}

impl<M: PageTableMm, T: TlbMaintenance> Stage2PageTable<M, T> {
    /// Empty tables for the VM `vmid` (8-bit VMIDs: VTCR_EL2.VS = 0), allocating the
    /// root (`geometry.concat_tables()` contiguous frames).
    ///
    /// Errors: `InvalidGeometry` if `geometry` is not a stage-2 one; `NoMemory`.
    pub fn new(geometry: Geometry, vmid: u8, mm: M, tlb: T) -> Result<Self, PageTableError> {
        if geometry.regime().is_stage1() {
            return Err(PageTableError::InvalidGeometry);
        }
        Ok(Self {
            tables: Tables::new(geometry, mm)?,
            tlb,
            vmid,
        })
    }

    /// Maps `[ipa, ipa + size)` to `[hpa, hpa + size)` with `prot`.
    ///
    /// Uses a 1 GiB block for every 1 GiB-aligned GiB of the range whose host address
    /// is aligned alike, 2 MiB blocks likewise, 4 KiB pages for the rest.
    ///
    /// Contract: `ipa`, `hpa` and `size` must be multiples of 4 KiB (`Misaligned`);
    /// the range must lie below `2^ia_bits` and the host range below `2^oa_bits`
    /// (`OutOfRange`, also on overflow); `prot` must be valid for
    /// [`prot_to_attrs`] (`InvalidProt`). A range that already contains any mapping
    /// is refused with `AlreadyMapped` (unmap first, or use
    /// [`protect`](Self::protect) to change permissions). `size == 0` does nothing.
    /// All or nothing: on any error (`NoMemory` included) the tables are unchanged.
    pub fn map(
        &mut self,
        ipa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: u64,
        prot: Prot,
    ) -> Result<(), PageTableError> {
        let attrs = prot_to_attrs(prot)?.to_bits();
        let mut fl = S2Flush {
            tlb: &mut self.tlb,
            vmid: self.vmid,
            pending: false,
        };
        self.tables.map(&mut fl, ipa.raw(), hpa.raw(), size, attrs)
    }

    /// Unmaps `[ipa, ipa + size)`; unmapped parts of the range are skipped. A block
    /// straddling either end is first split (break-before-make) so that the rest of it
    /// stays mapped. Table frames left empty are freed.
    ///
    /// Errors: `Misaligned` (ipa or size not 4 KiB multiples), `OutOfRange`, and
    /// `NoMemory` if a split needed a table frame: then a prefix of the range may
    /// already be unmapped and the rest is untouched; retrying is safe.
    pub fn unmap(&mut self, ipa: GuestPhysAddr, size: u64) -> Result<(), PageTableError> {
        let mut fl = S2Flush {
            tlb: &mut self.tlb,
            vmid: self.vmid,
            pending: false,
        };
        self.tables.unmap(&mut fl, ipa.raw(), size)
    }

    /// Changes permissions / memory type of every mapped page in `[ipa, ipa + size)`
    /// to `prot` (break-before-make on each changed entry); holes stay unmapped,
    /// blocks straddling either end are split first. Blocks are never merged back.
    ///
    /// Errors: as for [`unmap`](Self::unmap), plus `InvalidProt` (checked first,
    /// nothing changed); on `NoMemory` a prefix of the range may already have the new
    /// permissions.
    pub fn protect(
        &mut self,
        ipa: GuestPhysAddr,
        size: u64,
        prot: Prot,
    ) -> Result<(), PageTableError> {
        let attrs = prot_to_attrs(prot)?.to_bits();
        let mut fl = S2Flush {
            tlb: &mut self.tlb,
            vmid: self.vmid,
            pending: false,
        };
        self.tables.protect(&mut fl, ipa.raw(), size, attrs)
    }

    /// Translates `ipa` (any alignment): host address, permissions and leaf level /
    /// size; `None` if unmapped or outside the IPA range.
    pub fn query(&self, ipa: GuestPhysAddr) -> Option<Mapping> {
        let (raw, level) = self.tables.query(ipa.raw())?;
        let size = super::desc::level_size(level);
        Some(Mapping {
            pa: HostPhysAddr::new((raw & OA_MASK & !(size - 1)) | (ipa.raw() & (size - 1))),
            prot: attrs_to_prot(&S2LeafAttrs::from_bits(raw)),
            level,
            size,
        })
    }

    /// The VTTBR_EL2 (or ARMv7 VTTBR) value: root address | VMID << 48 (CnP = 0).
    pub fn vttbr(&self) -> u64 {
        self.tables.root.raw() | ((self.vmid as u64) << 48)
    }

    /// The VTCR_EL2 (or ARMv7 VTCR) value for this geometry; see [`Geometry::vtcr`].
    /// It leaves VTCR_EL2.HA/HD clear: the tables rely on the hardware never writing
    /// descriptors (AF is set in every leaf), since they update entries with plain
    /// stores.
    pub fn vtcr(&self) -> u64 {
        self.tables.geom.vtcr().unwrap_or(0)
    }

    /// The VMID.
    pub fn vmid(&self) -> u8 {
        self.vmid
    }

    /// The geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.tables.geom
    }

    /// Address of the root table (the first of the concatenated frames).
    pub fn root(&self) -> HostPhysAddr {
        self.tables.root
    }

    /// Table frames in use, the root's included (walks the whole tree).
    pub fn table_frames(&self) -> usize {
        self.tables.table_frames()
    }

    /// The memory operations.
    pub fn mm(&self) -> &M {
        &self.tables.mm
    }

    /// The TLB operations.
    pub fn tlb(&self) -> &T {
        &self.tlb
    }

    /// Tears the tables down: `dsb ishst`; `tlbi vmalls12e1is` for the VMID; `dsb ish`;
    /// `isb`; then frees every table frame (root included).
    ///
    /// Contract: no vCPU of the VM is running or can run with this VTTBR (it is not
    /// in any CPU's VTTBR_EL2 other than transiently for TLB maintenance).
    pub fn destroy(self) {
        drop(self)
    }
}

impl<M: PageTableMm, T: TlbMaintenance> Drop for Stage2PageTable<M, T> {
    fn drop(&mut self) {
        let mut fl = S2Flush {
            tlb: &mut self.tlb,
            vmid: self.vmid,
            pending: false,
        };
        self.tables.destroy(&mut fl);
    }
}
