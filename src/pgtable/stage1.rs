//! The hypervisor's own EL2 stage-1 translation tables (non-VHE, TTBR0_EL2).

use super::desc::{LeafAttrs, S1LeafAttrs, OA_MASK};
use super::geometry::Geometry;
use super::table::{Flusher, Tables};
use super::{Mapping, PageTableError, PageTableMm, Prot, TlbMaintenance};
use crate::addr::{HostPhysAddr, VirtAddr};

/// MAIR_EL2 index of normal memory (inner/outer write-back, read/write-allocate).
pub const MAIR_IDX_NORMAL: u8 = 0;
/// MAIR_EL2 index of Device-nGnRE memory.
pub const MAIR_IDX_DEVICE: u8 = 1;
/// The MAIR_EL2 value the stage-1 tables assume: Attr0 = 0xff (normal WB RWA),
/// Attr1 = 0x04 (Device-nGnRE).
pub const MAIR_EL2: u64 = 0x04 << 8 | 0xff;

/// Memory type of an EL2 stage-1 mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    /// Normal memory, write-back cacheable (RAM).
    Normal,
    /// Device-nGnRE memory (MMIO).
    Device,
}

/// EL2 stage-1 leaf attributes. `prot` must contain R and may contain W and X, not
/// DEVICE (the memory type is `mem`); Device + X is refused. Errors: `InvalidProt`.
pub fn s1_attrs(mem: MemType, prot: Prot) -> Result<S1LeafAttrs, PageTableError> {
    if !prot.contains(Prot::R)
        || prot.contains(Prot::DEVICE)
        || (mem == MemType::Device && prot.contains(Prot::X))
    {
        return Err(PageTableError::InvalidProt);
    }
    Ok(S1LeafAttrs {
        attr_indx: match mem {
            MemType::Normal => MAIR_IDX_NORMAL,
            MemType::Device => MAIR_IDX_DEVICE,
        },
        ns: false,
        ap: if prot.contains(Prot::W) {
            S1LeafAttrs::AP_RW
        } else {
            S1LeafAttrs::AP_RO
        },
        sh: 3,
        af: true,
        xn: !prot.contains(Prot::X),
    })
}

/// The [`Prot`] of EL2 stage-1 attributes (DEVICE for [`MAIR_IDX_DEVICE`]).
pub fn s1_prot(a: &S1LeafAttrs) -> Prot {
    let mut p = Prot::R;
    if a.ap & 0b10 == 0 {
        p = p | Prot::W;
    }
    if !a.xn {
        p = p | Prot::X;
    }
    if a.attr_indx == MAIR_IDX_DEVICE {
        p = p | Prot::DEVICE;
    }
    p
}

/// EL2 stage-1 TLB maintenance.
struct S1Flush<'a, T> {
    tlb: &'a mut T,
    pending: bool,
}

impl<T: TlbMaintenance> Flusher for S1Flush<'_, T> {
    fn break_entry(&mut self, addr: u64, _level: u8) {
        self.tlb.dsb_ishst();
        self.tlb.tlbi_vae2is(VirtAddr::new(addr));
        self.tlb.dsb_ish();
        self.tlb.isb();
    }
    fn unmapped_leaf(&mut self, addr: u64, _level: u8) {
        self.tlb.dsb_ishst();
        self.tlb.tlbi_vae2is(VirtAddr::new(addr));
        self.pending = true;
    }
    fn removed_table(&mut self, addr: u64, _level: u8) {
        self.tlb.dsb_ishst();
        self.tlb.tlbi_vae2is(VirtAddr::new(addr));
        self.tlb.dsb_ish();
    }
    fn finish(&mut self) {
        if self.pending {
            self.tlb.dsb_ish();
            self.pending = false;
        } else {
            self.tlb.dsb_ishst();
        }
        self.tlb.isb();
    }
    fn flush_all(&mut self) {
        self.tlb.dsb_ishst();
        self.tlb.tlbi_alle2();
        self.tlb.dsb_ish();
        self.tlb.isb();
    }
}

/// The hypervisor's EL2 stage-1 tables (typically an identity map of RAM and MMIO).
///
/// Same walker, block selection and break-before-make as
/// [`Stage2PageTable`](super::Stage2PageTable), with `tlbi vae2is` instead of the
/// VMID-based invalidations. Tables may be built before the MMU is on. Dropping the
/// value does what [`destroy`](Self::destroy) does.
///
/// Changing or splitting a live entry opens a break window in which the range
/// faults: never change entries that cover the code, stack or tables the CPU doing the
/// change is using (build the identity map before turning the MMU on, as boot does).
pub struct Stage1PageTable<M: PageTableMm, T: TlbMaintenance> {
    tables: Tables<M>,
    tlb: T,
}

impl<M: PageTableMm, T: TlbMaintenance> Stage1PageTable<M, T> {
    /// Empty tables. Errors: `InvalidGeometry` unless `geometry` is a stage-1 one
    /// ([`Geometry::stage1_el2`] or [`Geometry::stage1_armv7_hyp`]); `NoMemory`.
    pub fn new(geometry: Geometry, mm: M, tlb: T) -> Result<Self, PageTableError> {
        if !geometry.regime().is_stage1() {
            return Err(PageTableError::InvalidGeometry);
        }
        Ok(Self {
            tables: Tables::new(geometry, mm)?,
            tlb,
        })
    }

    /// Maps `[va, va + size)` to `[pa, pa + size)` as `mem` with `prot` (see
    /// [`s1_attrs`]), with 1 GiB / 2 MiB blocks where alignment allows.
    ///
    /// Contract as for [`Stage2PageTable::map`](super::Stage2PageTable::map):
    /// `Misaligned`, `OutOfRange`, `InvalidProt`, `AlreadyMapped` if anything in the
    /// range is mapped; all or nothing; `size == 0` does nothing.
    pub fn map(
        &mut self,
        va: VirtAddr,
        pa: HostPhysAddr,
        size: u64,
        mem: MemType,
        prot: Prot,
    ) -> Result<(), PageTableError> {
        let attrs = s1_attrs(mem, prot)?.to_bits();
        let mut fl = S1Flush {
            tlb: &mut self.tlb,
            pending: false,
        };
        self.tables.map(&mut fl, va.raw(), pa.raw(), size, attrs)
    }

    /// Identity-maps `[pa, pa + size)` (`va == pa`); see [`map`](Self::map).
    pub fn map_identity(
        &mut self,
        pa: HostPhysAddr,
        size: u64,
        mem: MemType,
        prot: Prot,
    ) -> Result<(), PageTableError> {
        self.map(VirtAddr::new(pa.raw()), pa, size, mem, prot)
    }

    /// Unmaps `[va, va + size)`; contract as for
    /// [`Stage2PageTable::unmap`](super::Stage2PageTable::unmap).
    pub fn unmap(&mut self, va: VirtAddr, size: u64) -> Result<(), PageTableError> {
        let mut fl = S1Flush {
            tlb: &mut self.tlb,
            pending: false,
        };
        self.tables.unmap(&mut fl, va.raw(), size)
    }

    /// Changes type and permissions of the mapped pages in `[va, va + size)`;
    /// contract as for [`Stage2PageTable::protect`](super::Stage2PageTable::protect).
    pub fn protect(
        &mut self,
        va: VirtAddr,
        size: u64,
        mem: MemType,
        prot: Prot,
    ) -> Result<(), PageTableError> {
        let attrs = s1_attrs(mem, prot)?.to_bits();
        let mut fl = S1Flush {
            tlb: &mut self.tlb,
            pending: false,
        };
        self.tables.protect(&mut fl, va.raw(), size, attrs)
    }

    /// Translates `va`; `None` if unmapped or out of range.
    pub fn query(&self, va: VirtAddr) -> Option<Mapping> {
        let (raw, level) = self.tables.query(va.raw())?;
        let size = super::desc::level_size(level);
        Some(Mapping {
            pa: HostPhysAddr::new((raw & OA_MASK & !(size - 1)) | (va.raw() & (size - 1))),
            prot: s1_prot(&S1LeafAttrs::from_bits(raw)),
            level,
            size,
        })
    }

    /// The TTBR0_EL2 (ARMv7: HTTBR) value: the root address (CnP = 0).
    pub fn ttbr0(&self) -> u64 {
        self.tables.root.raw()
    }

    /// The TCR_EL2 (ARMv7: HTCR) value for this geometry; see
    /// [`Geometry::stage1_tcr`].
    pub fn tcr(&self) -> u64 {
        self.tables.geom.stage1_tcr().unwrap_or(0)
    }

    /// The MAIR_EL2 value the attributes assume ([`MAIR_EL2`]; on ARMv7 its low 32
    /// bits are HMAIR0).
    pub const fn mair(&self) -> u64 {
        MAIR_EL2
    }

    /// The geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.tables.geom
    }

    /// Table frames in use, the root's included.
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

    /// `dsb ishst`; `tlbi alle2`; `dsb ish`; `isb`; then frees every table frame.
    /// Contract: the tables are not live in TTBR0_EL2 on any CPU.
    pub fn destroy(self) {
        drop(self)
    }
}

impl<M: PageTableMm, T: TlbMaintenance> Drop for Stage1PageTable<M, T> {
    fn drop(&mut self) {
        let mut fl = S1Flush {
            tlb: &mut self.tlb,
            pending: false,
        };
        self.tables.destroy(&mut fl);
    }
}
