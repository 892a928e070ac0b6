//! Guest stage-1 walker for ARMv7 short-descriptor tables, with fault priority and PAR.
//!
//! The walker follows ARM DDI 0406C: table selection by TTBCR.N (B3.5.4), the
//! TranslationTableWalkSD pseudocode for the walk and access-flag check, then the domain
//! check (DACR, B3.7.3) and the permission check (AP\[2:0\], XN/PXN, WXN/UWXN, B3.7.1-B3.7.2).
//! Faults are reported in that priority order: translation / external abort on the walk
//! (level 1 then level 2), access flag, domain, permission.
//!
//! Departures and choices (documented for the on-target differential test):
//! - AP = 0b100 is reserved (UNPREDICTABLE); the walker treats it as no access, as QEMU does.
//! - DACR = 0b10 is reserved; the walker gives a domain fault, as QEMU does.
//! - QEMU checks the domain before the access flag; the ARM ARM pseudocode checks the access
//!   flag inside the walk, before the domain. The walker follows the ARM ARM.
//! - Manager domains skip every permission check, XN, PXN and WXN included (CheckPermission
//!   is not called for Manager).
//! - The walker does not model the Hardware Access flag (SCTLR.HA): AF=0 always faults.
//! - TTBCR.EAE=1 (long descriptors) is outside this walker; callers reject it
//!   (see [`Regime::is_short_descriptor`]).

use super::desc::{L1Desc, L2Desc, RegionAttrs};
use crate::addr::{GuestPhysAddr, VirtAddr};

/// A read of guest memory failed: the address is not backed by guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemError;

/// Read access to the memory that holds translation tables.
pub trait GuestMemory {
    /// Reads the little-endian 32-bit word at `gpa`, which the walker always passes 4-byte
    /// aligned. Returns `Err(MemError)` when `gpa` is not RAM (the walker turns that into a
    /// synchronous external abort on the walk); must never panic, whatever `gpa` is.
    fn read_u32(&self, gpa: GuestPhysAddr) -> Result<u32, MemError>;
}

impl<T: GuestMemory + ?Sized> GuestMemory for &T {
    fn read_u32(&self, gpa: GuestPhysAddr) -> Result<u32, MemError> {
        (**self).read_u32(gpa)
    }
}

/// SCTLR bits the walker reads.
pub mod sctlr {
    /// MMU enable.
    pub const M: u32 = 1 << 0;
    /// Instruction cache enable (attributes of fetches with the MMU off).
    pub const I: u32 = 1 << 12;
    /// Write permission implies XN.
    pub const WXN: u32 = 1 << 19;
    /// Unprivileged write permission implies PL1 XN.
    pub const UWXN: u32 = 1 << 20;
    /// TEX remap enable.
    pub const TRE: u32 = 1 << 28;
    /// Access flag enable (simplified access permissions model).
    pub const AFE: u32 = 1 << 29;
}

/// TTBCR bits the walker reads.
pub mod ttbcr {
    /// N: the TTBR0/TTBR1 split (bits\[2:0\]).
    pub const N_MASK: u32 = 7;
    /// PD0: translation table walks through TTBR0 disabled.
    pub const PD0: u32 = 1 << 4;
    /// PD1: translation table walks through TTBR1 disabled.
    pub const PD1: u32 = 1 << 5;
    /// EAE: long-descriptor format (unsupported here).
    pub const EAE: u32 = 1 << 31;
}

/// The guest's PL1&0 stage-1 translation regime: the registers that steer a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct Regime {
    /// TTBR0 (32-bit short-descriptor form).
    pub ttbr0: u32,
    /// TTBR1.
    pub ttbr1: u32,
    /// TTBCR.
    pub ttbcr: u32,
    /// DACR.
    pub dacr: u32,
    /// SCTLR.
    pub sctlr: u32,
    /// CONTEXTIDR (ASID in bits\[7:0\]).
    pub contextidr: u32,
    /// PRRR (used when SCTLR.TRE=1).
    pub prrr: u32,
    /// NMRR (used when SCTLR.TRE=1).
    pub nmrr: u32,
}

/// How a DACR field treats accesses to a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DomainAccess {
    /// 0b00: every access gives a domain fault.
    NoAccess,
    /// 0b01: accesses are checked against the descriptor permissions.
    Client,
    /// 0b10: reserved; treated as no access.
    Reserved,
    /// 0b11: accesses are not checked.
    Manager,
}

impl DomainAccess {
    /// Decodes a 2-bit DACR field.
    pub const fn from_bits(v: u32) -> Self {
        match v & 3 {
            0 => DomainAccess::NoAccess,
            1 => DomainAccess::Client,
            2 => DomainAccess::Reserved,
            _ => DomainAccess::Manager,
        }
    }
}

impl Regime {
    /// True when SCTLR.M=1.
    pub const fn mmu_on(&self) -> bool {
        self.sctlr & sctlr::M != 0
    }
    /// True when SCTLR.AFE=1 (AP\[0\] is the access flag).
    pub const fn afe(&self) -> bool {
        self.sctlr & sctlr::AFE != 0
    }
    /// True when SCTLR.TRE=1.
    pub const fn tre(&self) -> bool {
        self.sctlr & sctlr::TRE != 0
    }
    /// TTBCR.N.
    pub const fn n(&self) -> u32 {
        self.ttbcr & ttbcr::N_MASK
    }
    /// The current ASID (CONTEXTIDR\[7:0\]).
    pub const fn asid(&self) -> u8 {
        self.contextidr as u8
    }
    /// False when TTBCR.EAE=1: the long-descriptor format is not handled by this engine.
    pub const fn is_short_descriptor(&self) -> bool {
        self.ttbcr & ttbcr::EAE == 0
    }
    /// The DACR setting of `domain` (0..=15).
    pub const fn domain_access(&self, domain: u8) -> DomainAccess {
        DomainAccess::from_bits(self.dacr >> ((domain as u32 & 15) * 2))
    }
    /// Guest-physical base and size in bytes of the TTBR0 first-level table
    /// (16 KiB >> N, aligned to its size).
    pub const fn ttbr0_table(&self) -> (u32, u32) {
        let n = self.n();
        (self.ttbr0 & !((1u32 << (14 - n)) - 1), 0x4000 >> n)
    }
    /// Guest-physical base and size of the TTBR1 table, or `None` when N=0 (TTBR1 unused).
    pub const fn ttbr1_table(&self) -> Option<(u32, u32)> {
        if self.n() == 0 {
            None
        } else {
            Some((self.ttbr1 & 0xffff_c000, 0x4000))
        }
    }
    /// Cacheability and shareability of table walks through TTBR0 (`ttbr` = 0) or TTBR1.
    pub const fn walk_attrs(&self, ttbr: u8) -> WalkAttrs {
        WalkAttrs::from_ttbr(if ttbr == 0 { self.ttbr0 } else { self.ttbr1 })
    }
    /// Which TTBR translates `va` (0 or 1).
    #[inline]
    pub const fn ttbr_for(&self, va: u32) -> u8 {
        let n = self.n();
        if n != 0 && (va >> (32 - n)) != 0 {
            1
        } else {
            0
        }
    }
}

/// Privilege level of an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pl {
    /// Unprivileged (User mode).
    Pl0,
    /// Privileged (PL1).
    Pl1,
}

/// What an access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessKind {
    /// Data read.
    Read,
    /// Data write.
    Write,
    /// Instruction fetch.
    Exec,
}

/// One access to translate: privilege and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    /// Privilege level.
    pub pl: Pl,
    /// Read, write or fetch.
    pub kind: AccessKind,
}

impl Access {
    /// All six (privilege, kind) combinations.
    pub const ALL: [Access; 6] = [
        Access {
            pl: Pl::Pl1,
            kind: AccessKind::Read,
        },
        Access {
            pl: Pl::Pl1,
            kind: AccessKind::Write,
        },
        Access {
            pl: Pl::Pl1,
            kind: AccessKind::Exec,
        },
        Access {
            pl: Pl::Pl0,
            kind: AccessKind::Read,
        },
        Access {
            pl: Pl::Pl0,
            kind: AccessKind::Write,
        },
        Access {
            pl: Pl::Pl0,
            kind: AccessKind::Exec,
        },
    ];
}

/// Read/write/execute permission at one privilege level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Rwx {
    /// Data reads allowed.
    pub r: bool,
    /// Data writes allowed.
    pub w: bool,
    /// Instruction fetches allowed.
    pub x: bool,
}

impl Rwx {
    /// Full access.
    pub const ALL: Rwx = Rwx {
        r: true,
        w: true,
        x: true,
    };
    /// True if `kind` is allowed.
    pub const fn allows(&self, kind: AccessKind) -> bool {
        match kind {
            AccessKind::Read => self.r,
            AccessKind::Write => self.w,
            AccessKind::Exec => self.x,
        }
    }
}

/// Effective permissions at PL1 and PL0 after domain, AP, XN/PXN and WXN/UWXN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Perms {
    /// Privileged permissions.
    pub pl1: Rwx,
    /// Unprivileged permissions.
    pub pl0: Rwx,
}

impl Perms {
    /// True if `access` is allowed.
    pub const fn allows(&self, access: Access) -> bool {
        match access.pl {
            Pl::Pl1 => self.pl1.allows(access.kind),
            Pl::Pl0 => self.pl0.allows(access.kind),
        }
    }
}

/// Data read/write permission pair `(PL1 (r, w), PL0 (r, w))` for AP\[2:0\].
///
/// With `afe` (SCTLR.AFE=1) AP\[0\] is the access flag and the permission comes from
/// AP\[2:1\] alone, which is the table below with AP\[0\] forced to 1. AP=0b100 (reserved) gives
/// no access; AP=0b110 (deprecated) is read-only at both levels like 0b111.
pub const fn ap_permissions(ap: u8, afe: bool) -> ((bool, bool), (bool, bool)) {
    let ap = if afe { ap | 1 } else { ap } & 7;
    match ap {
        0b000 => ((false, false), (false, false)),
        0b001 => ((true, true), (false, false)),
        0b010 => ((true, true), (true, false)),
        0b011 => ((true, true), (true, true)),
        0b100 => ((false, false), (false, false)),
        0b101 => ((true, false), (false, false)),
        _ => ((true, false), (true, false)),
    }
}

/// Cacheability of Normal memory (the 2-bit NMRR / TEX\[1:0\] / C,B encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cacheability {
    /// 0b00 Non-cacheable.
    NonCacheable,
    /// 0b01 Write-Back, Write-Allocate.
    WriteBackWriteAllocate,
    /// 0b10 Write-Through, no Write-Allocate.
    WriteThrough,
    /// 0b11 Write-Back, no Write-Allocate.
    WriteBackNoWriteAllocate,
}

impl Cacheability {
    /// Decodes the 2-bit encoding.
    pub const fn from_bits(v: u32) -> Self {
        match v & 3 {
            0 => Cacheability::NonCacheable,
            1 => Cacheability::WriteBackWriteAllocate,
            2 => Cacheability::WriteThrough,
            _ => Cacheability::WriteBackNoWriteAllocate,
        }
    }
}

/// Memory type after TEX remap or the TEX/C/B table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemType {
    /// Strongly-ordered.
    StronglyOrdered,
    /// Device.
    Device,
    /// Normal memory with inner and outer cacheability.
    Normal {
        /// Inner cacheability.
        inner: Cacheability,
        /// Outer cacheability.
        outer: Cacheability,
    },
    /// TEX=001, C=1, B=0 without TEX remap: IMPLEMENTATION DEFINED.
    ImplementationDefined,
    /// A reserved encoding (TEX/C/B reserved, or PRRR.TRn=0b11).
    Reserved,
}

/// Resolved memory attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemAttrs {
    /// Memory type.
    pub mem_type: MemType,
    /// Shareable.
    pub shareable: bool,
    /// Outer Shareable (only meaningful when `shareable`).
    pub outer_shareable: bool,
}

/// Resolves a descriptor's TEX/C/B/S through the TEX/C/B table (SCTLR.TRE=0, B3.8.2) or
/// through PRRR/NMRR (SCTLR.TRE=1, B3.8.3). Total: reserved encodings give
/// [`MemType::Reserved`].
#[inline]
pub fn resolve_attrs(regime: &Regime, a: RegionAttrs) -> MemAttrs {
    let (c, b) = (a.c as u32, a.b as u32);
    if regime.tre() {
        let n = ((a.tex as u32 & 1) << 2) | (c << 1) | b;
        match (regime.prrr >> (2 * n)) & 3 {
            0 => MemAttrs {
                mem_type: MemType::StronglyOrdered,
                shareable: true,
                outer_shareable: true,
            },
            1 => {
                let sh = regime.prrr >> (16 + a.s as u32) & 1 != 0;
                MemAttrs {
                    mem_type: MemType::Device,
                    shareable: sh,
                    outer_shareable: sh,
                }
            }
            2 => {
                let sh = regime.prrr >> (18 + a.s as u32) & 1 != 0;
                let nos = regime.prrr >> (24 + n) & 1 != 0;
                MemAttrs {
                    mem_type: MemType::Normal {
                        inner: Cacheability::from_bits(regime.nmrr >> (2 * n)),
                        outer: Cacheability::from_bits(regime.nmrr >> (16 + 2 * n)),
                    },
                    shareable: sh,
                    outer_shareable: sh && !nos,
                }
            }
            _ => MemAttrs {
                mem_type: MemType::Reserved,
                shareable: false,
                outer_shareable: false,
            },
        }
    } else {
        let s = a.s;
        let normal = |i: u32, o: u32| MemAttrs {
            mem_type: MemType::Normal {
                inner: Cacheability::from_bits(i),
                outer: Cacheability::from_bits(o),
            },
            shareable: s,
            outer_shareable: s,
        };
        let tex = a.tex & 7;
        if tex & 4 != 0 {
            return normal((c << 1) | b, tex as u32 & 3);
        }
        match (tex, c, b) {
            (0, 0, 0) => MemAttrs {
                mem_type: MemType::StronglyOrdered,
                shareable: true,
                outer_shareable: true,
            },
            (0, 0, 1) => MemAttrs {
                mem_type: MemType::Device,
                shareable: true,
                outer_shareable: true,
            },
            (0, 1, 0) => normal(2, 2),
            (0, 1, 1) => normal(3, 3),
            (1, 0, 0) => normal(0, 0),
            (1, 1, 0) => MemAttrs {
                mem_type: MemType::ImplementationDefined,
                shareable: s,
                outer_shareable: s,
            },
            (1, 1, 1) => normal(1, 1),
            (2, 0, 0) => MemAttrs {
                mem_type: MemType::Device,
                shareable: false,
                outer_shareable: false,
            },
            _ => MemAttrs {
                mem_type: MemType::Reserved,
                shareable: false,
                outer_shareable: false,
            },
        }
    }
}

/// Size class of a translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageSize {
    /// 4 KiB small page.
    Small,
    /// 64 KiB large page.
    Large,
    /// 1 MiB section.
    Section,
    /// 16 MiB supersection.
    Supersection,
}

impl PageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Small => 0x1000,
            PageSize::Large => 0x1_0000,
            PageSize::Section => 0x10_0000,
            PageSize::Supersection => 0x100_0000,
        }
    }
}

/// Outer/inner attributes of table walks, from the TTBR (multiprocessing-extensions layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WalkAttrs {
    /// Inner cacheability: IRGN = {TTBR\[0\], TTBR\[6\]}.
    pub inner: Cacheability,
    /// Outer cacheability: RGN = TTBR\[4:3\].
    pub outer: Cacheability,
    /// S (TTBR\[1\]).
    pub shareable: bool,
    /// Outer Shareable: shareable and NOS (TTBR\[5\]) clear.
    pub outer_shareable: bool,
}

impl WalkAttrs {
    /// Decodes the attribute bits of a TTBR value.
    pub const fn from_ttbr(ttbr: u32) -> Self {
        let irgn = ((ttbr & 1) << 1) | ((ttbr >> 6) & 1);
        let sh = ttbr & 2 != 0;
        WalkAttrs {
            inner: Cacheability::from_bits(irgn),
            outer: Cacheability::from_bits(ttbr >> 3),
            shareable: sh,
            outer_shareable: sh && ttbr & (1 << 5) == 0,
        }
    }
}

/// The leaf a walk reached, before any access check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Leaf {
    /// Output (guest-physical) address of the translated VA, up to 40 bits.
    pub pa: u64,
    /// Size class.
    pub size: PageSize,
    /// 1 for sections/supersections, 2 for pages.
    pub level: u8,
    /// Domain (0 for supersections).
    pub domain: u8,
    /// AP\[2:0\].
    pub ap: u8,
    /// XN.
    pub xn: bool,
    /// PXN (from the section, or from the first-level page-table descriptor).
    pub pxn: bool,
    /// nG.
    pub ng: bool,
    /// NS (section bit, or the page-table descriptor bit for pages).
    pub ns: bool,
    /// TEX/C/B/S.
    pub attrs: RegionAttrs,
    /// Which TTBR was used (0 or 1).
    pub ttbr: u8,
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Translation {
    /// Output physical address (up to 40 bits).
    pub pa: u64,
    /// Size class (with the MMU off: `Section`, reported per 1 MiB).
    pub size: PageSize,
    /// Permissions at both privilege levels.
    pub perms: Perms,
    /// Resolved memory attributes.
    pub attrs: MemAttrs,
    /// True when nG=0 (the translation is global, not tied to the ASID).
    pub global: bool,
    /// NS attribute of the descriptor.
    pub ns: bool,
    /// Domain.
    pub domain: u8,
    /// The TTBR whose table was walked (0 or 1; 0 with the MMU off). Its walk attributes
    /// are [`Regime::walk_attrs`].
    pub ttbr: u8,
}

/// Kind of a translation fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Translation fault (fault descriptor, or PD0/PD1 set).
    Translation,
    /// Access flag fault (SCTLR.AFE=1 and AP\[0\]=0).
    AccessFlag,
    /// Domain fault (DACR no access or reserved).
    Domain,
    /// Permission fault.
    Permission,
    /// Synchronous external abort on a translation table walk.
    ExternalAbortOnWalk,
}

/// A stage-1 fault as the guest would see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    /// Kind.
    pub kind: FaultKind,
    /// 1 (section/first level) or 2 (page/second level).
    pub level: u8,
    /// The domain when the architecture makes it valid (all but level-1 translation faults
    /// and level-1 walk aborts).
    pub domain: Option<u8>,
}

impl Fault {
    /// The 5-bit short-descriptor fault status FS\[4:0\] (B3.13.3, table B3-23).
    pub const fn fs(&self) -> u8 {
        let l2 = self.level >= 2;
        match self.kind {
            FaultKind::Translation => {
                if l2 {
                    0b00111
                } else {
                    0b00101
                }
            }
            FaultKind::AccessFlag => {
                if l2 {
                    0b00110
                } else {
                    0b00011
                }
            }
            FaultKind::Domain => {
                if l2 {
                    0b01011
                } else {
                    0b01001
                }
            }
            FaultKind::Permission => {
                if l2 {
                    0b01111
                } else {
                    0b01101
                }
            }
            FaultKind::ExternalAbortOnWalk => {
                if l2 {
                    0b01110
                } else {
                    0b01100
                }
            }
        }
    }
    /// The DFSR value for a data abort: FS\[3:0\] in bits\[3:0\], Domain in bits\[7:4\] (0 when
    /// not valid), LPAE=0, FS\[4\] in bit 10, WnR in bit 11, ExT=0, CM=0.
    pub const fn dfsr(&self, write: bool) -> u32 {
        let fs = self.fs() as u32;
        let dom = match self.domain {
            Some(d) => d as u32 & 15,
            None => 0,
        };
        (fs & 0xf) | (dom << 4) | ((fs >> 4) << 10) | ((write as u32) << 11)
    }
    /// The IFSR value for a prefetch abort: FS\[3:0\] in bits\[3:0\], FS\[4\] in bit 10.
    pub const fn ifsr(&self) -> u32 {
        let fs = self.fs() as u32;
        (fs & 0xf) | ((fs >> 4) << 10)
    }
}

#[inline]
const fn fault(kind: FaultKind, level: u8, domain: Option<u8>) -> Fault {
    Fault {
        kind,
        level,
        domain,
    }
}

/// Walks the guest tables for `va` (its low 32 bits) and returns the leaf it reaches, or a
/// translation fault / external abort on the walk. Does not look at DACR, AP or AFE.
/// Expects SCTLR.M=1 and TTBCR.EAE=0 (not checked here). Never panics.
#[inline]
pub fn lookup<M: GuestMemory + ?Sized>(
    regime: &Regime,
    mem: &M,
    va: VirtAddr,
) -> Result<Leaf, Fault> {
    let va = va.raw() as u32;
    let ttbr = regime.ttbr_for(va);
    let base = if ttbr == 1 {
        if regime.ttbcr & ttbcr::PD1 != 0 {
            return Err(fault(FaultKind::Translation, 1, None));
        }
        regime.ttbr1 & 0xffff_c000
    } else {
        if regime.ttbcr & ttbcr::PD0 != 0 {
            return Err(fault(FaultKind::Translation, 1, None));
        }
        regime.ttbr0_table().0
    };
    let l1_addr = base | ((va >> 20) << 2);
    let w = mem
        .read_u32(GuestPhysAddr::new(l1_addr as u64))
        .map_err(|_| fault(FaultKind::ExternalAbortOnWalk, 1, None))?;
    leaf_from_l1(mem, w, va, ttbr)
}

/// Completes a walk given the first-level descriptor word `w` for `va`.
#[inline]
pub fn leaf_from_l1<M: GuestMemory + ?Sized>(
    mem: &M,
    w: u32,
    va: u32,
    ttbr: u8,
) -> Result<Leaf, Fault> {
    match L1Desc::decode(w) {
        L1Desc::Fault(_) => Err(fault(FaultKind::Translation, 1, None)),
        L1Desc::Section(s) => Ok(Leaf {
            pa: (s.base | (va & 0xf_ffff)) as u64,
            size: PageSize::Section,
            level: 1,
            domain: s.domain,
            ap: s.ap,
            xn: s.xn,
            pxn: s.pxn,
            ng: s.ng,
            ns: s.ns,
            attrs: s.attrs,
            ttbr,
        }),
        L1Desc::Supersection(s) => Ok(Leaf {
            pa: s.base | (va & 0xff_ffff) as u64,
            size: PageSize::Supersection,
            level: 1,
            domain: 0,
            ap: s.ap,
            xn: s.xn,
            pxn: s.pxn,
            ng: s.ng,
            ns: s.ns,
            attrs: s.attrs,
            ttbr,
        }),
        L1Desc::PageTable(t) => {
            let l2_addr = t.base | (((va >> 12) & 0xff) << 2);
            let w2 = mem
                .read_u32(GuestPhysAddr::new(l2_addr as u64))
                .map_err(|_| fault(FaultKind::ExternalAbortOnWalk, 2, Some(t.domain)))?;
            leaf_from_l2(w2, &t, va, ttbr)
        }
    }
}

/// Completes a walk given the page-table descriptor and second-level word `w2` for `va`.
#[inline]
pub fn leaf_from_l2(
    w2: u32,
    t: &super::desc::PageTableDesc,
    va: u32,
    ttbr: u8,
) -> Result<Leaf, Fault> {
    match L2Desc::decode(w2) {
        L2Desc::Fault(_) => Err(fault(FaultKind::Translation, 2, Some(t.domain))),
        L2Desc::Large(l) => Ok(Leaf {
            pa: (l.base | (va & 0xffff)) as u64,
            size: PageSize::Large,
            level: 2,
            domain: t.domain,
            ap: l.ap,
            xn: l.xn,
            pxn: t.pxn,
            ng: l.ng,
            ns: t.ns,
            attrs: l.attrs,
            ttbr,
        }),
        L2Desc::Small(s) => Ok(Leaf {
            pa: (s.base | (va & 0xfff)) as u64,
            size: PageSize::Small,
            level: 2,
            domain: t.domain,
            ap: s.ap,
            xn: s.xn,
            pxn: t.pxn,
            ng: s.ng,
            ns: t.ns,
            attrs: s.attrs,
            ttbr,
        }),
    }
}

/// Effective permissions of a leaf under `regime`'s DACR/AFE/WXN/UWXN, or the access-flag /
/// domain fault that any access to it takes (in that priority order).
#[inline]
pub fn leaf_perms(regime: &Regime, leaf: &Leaf) -> Result<Perms, Fault> {
    let afe = regime.afe();
    if afe && leaf.ap & 1 == 0 {
        return Err(fault(FaultKind::AccessFlag, leaf.level, Some(leaf.domain)));
    }
    match regime.domain_access(leaf.domain) {
        DomainAccess::NoAccess | DomainAccess::Reserved => {
            Err(fault(FaultKind::Domain, leaf.level, Some(leaf.domain)))
        }
        DomainAccess::Manager => Ok(Perms {
            pl1: Rwx::ALL,
            pl0: Rwx::ALL,
        }),
        DomainAccess::Client => {
            let ((r1, w1), (r0, w0)) = ap_permissions(leaf.ap, afe);
            let wxn = regime.sctlr & sctlr::WXN != 0;
            let uwxn = regime.sctlr & sctlr::UWXN != 0;
            let blocked1 = leaf.xn || leaf.pxn || (wxn && w1) || (uwxn && w0);
            let x1 = r1 && !blocked1;
            let x0 = r0 && !leaf.xn && !(wxn && w0);
            Ok(Perms {
                pl1: Rwx {
                    r: r1,
                    w: w1,
                    x: x1,
                },
                pl0: Rwx {
                    r: r0,
                    w: w0,
                    x: x0,
                },
            })
        }
    }
}

/// Checks `access` against a leaf and builds the translation.
#[inline]
pub fn check(regime: &Regime, leaf: &Leaf, access: Access) -> Result<Translation, Fault> {
    let perms = leaf_perms(regime, leaf)?;
    if !perms.allows(access) {
        return Err(fault(FaultKind::Permission, leaf.level, Some(leaf.domain)));
    }
    Ok(Translation {
        pa: leaf.pa,
        size: leaf.size,
        perms,
        attrs: resolve_attrs(regime, leaf.attrs),
        global: !leaf.ng,
        ns: leaf.ns,
        domain: leaf.domain,
        ttbr: leaf.ttbr,
    })
}

/// Translates `va` for `access` as the guest's MMU would: the full fault-checking sequence.
///
/// With SCTLR.M=0 the result is the flat map (PA = VA) with full permissions, data accesses
/// Strongly-ordered and fetches Normal (write-through if SCTLR.I else non-cacheable).
/// Never panics, whatever the tables contain.
#[inline]
pub fn translate<M: GuestMemory + ?Sized>(
    regime: &Regime,
    mem: &M,
    va: VirtAddr,
    access: Access,
) -> Result<Translation, Fault> {
    if !regime.mmu_on() {
        return Ok(mmu_off_translation(regime, va.raw() as u32, access.kind));
    }
    let leaf = lookup(regime, mem, va)?;
    check(regime, &leaf, access)
}

/// The flat translation used when SCTLR.M=0.
pub const fn mmu_off_translation(regime: &Regime, va: u32, kind: AccessKind) -> Translation {
    let attrs = match kind {
        AccessKind::Exec => {
            let c = if regime.sctlr & sctlr::I != 0 {
                Cacheability::WriteThrough
            } else {
                Cacheability::NonCacheable
            };
            MemAttrs {
                mem_type: MemType::Normal { inner: c, outer: c },
                shareable: true,
                outer_shareable: true,
            }
        }
        _ => MemAttrs {
            mem_type: MemType::StronglyOrdered,
            shareable: true,
            outer_shareable: true,
        },
    };
    Translation {
        pa: va as u64,
        size: PageSize::Section,
        perms: Perms {
            pl1: Rwx::ALL,
            pl0: Rwx::ALL,
        },
        attrs,
        global: true,
        ns: false,
        domain: 0,
        ttbr: 0,
    }
}

/// The four stage-1 current-state address translation operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtsOp {
    /// ATS1CPR: PL1 read.
    Cpr,
    /// ATS1CPW: PL1 write.
    Cpw,
    /// ATS1CUR: PL0 read.
    Cur,
    /// ATS1CUW: PL0 write.
    Cuw,
}

impl AtsOp {
    /// The access the operation checks.
    pub const fn access(self) -> Access {
        match self {
            AtsOp::Cpr => Access {
                pl: Pl::Pl1,
                kind: AccessKind::Read,
            },
            AtsOp::Cpw => Access {
                pl: Pl::Pl1,
                kind: AccessKind::Write,
            },
            AtsOp::Cur => Access {
                pl: Pl::Pl0,
                kind: AccessKind::Read,
            },
            AtsOp::Cuw => Access {
                pl: Pl::Pl0,
                kind: AccessKind::Write,
            },
        }
    }
}

const fn par_inner(t: MemType) -> u32 {
    match t {
        MemType::StronglyOrdered => 0b001,
        MemType::Device => 0b011,
        MemType::Normal { inner, .. } => match inner {
            Cacheability::NonCacheable => 0b000,
            Cacheability::WriteBackWriteAllocate => 0b101,
            Cacheability::WriteThrough => 0b110,
            Cacheability::WriteBackNoWriteAllocate => 0b111,
        },
        MemType::ImplementationDefined | MemType::Reserved => 0,
    }
}

const fn par_outer(t: MemType) -> u32 {
    match t {
        MemType::Normal { outer, .. } => match outer {
            Cacheability::NonCacheable => 0b00,
            Cacheability::WriteBackWriteAllocate => 0b01,
            Cacheability::WriteThrough => 0b10,
            Cacheability::WriteBackNoWriteAllocate => 0b11,
        },
        _ => 0,
    }
}

/// The short-descriptor PAR value (B4.1.129) an ATS1C** operation leaves for `result`.
///
/// Success: PA\[31:12\] in bits\[31:12\] (supersections: PA\[31:24\] in bits\[31:24\], PA\[39:32\] in
/// bits\[23:16\] and SS, bit 1, set), LPAE (bit 11) = 0, NOS (bit 10), NS (bit 9), SH (bit 7),
/// Inner\[2:0\] (bits\[6:4\]), Outer\[1:0\] (bits\[3:2\]), F (bit 0) = 0. IMPLEMENTATION DEFINED
/// and UNKNOWN bits are reported as 0; ImplementationDefined/Reserved memory types report
/// Inner=Outer=0.
/// Fault: F=1 and FS\[5:0\] in bits\[6:1\] = {DFSR.ExT, DFSR.FS\[4\], DFSR.FS\[3:0\]}.
pub const fn par(result: &Result<Translation, Fault>) -> u32 {
    match result {
        Ok(t) => {
            let mut p = if matches!(t.size, PageSize::Supersection) {
                (t.pa as u32 & 0xff00_0000) | ((((t.pa >> 32) & 0xff) as u32) << 16) | (1 << 1)
            } else {
                t.pa as u32 & 0xffff_f000
            };
            if t.attrs.shareable && !t.attrs.outer_shareable {
                p |= 1 << 10;
            }
            if t.ns {
                p |= 1 << 9;
            }
            if t.attrs.shareable {
                p |= 1 << 7;
            }
            p | (par_inner(t.attrs.mem_type) << 4) | (par_outer(t.attrs.mem_type) << 2)
        }
        Err(f) => {
            let fs = f.fs() as u32;
            1 | ((fs & 0xf) << 1) | (((fs >> 4) & 1) << 5)
        }
    }
}

/// Performs ATS1CPR/ATS1CPW/ATS1CUR/ATS1CUW in the model and returns the PAR value.
///
/// A synchronous external abort on the walk is returned here in PAR format; the
/// architecture does not report it in PAR but takes a Data Abort exception, which
/// [`ats1_outcome`] models.
pub fn ats1<M: GuestMemory + ?Sized>(regime: &Regime, mem: &M, va: VirtAddr, op: AtsOp) -> u32 {
    let access = op.access();
    if !regime.mmu_on() {
        // Address translation operations report data-access attributes.
        return par(&Ok(mmu_off_translation(
            regime,
            va.raw() as u32,
            AccessKind::Read,
        )));
    }
    par(&translate(regime, mem, va, access))
}

/// What an ATS1C** operation architecturally does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtsOutcome {
    /// The operation completed and wrote this PAR value (a translation, or a fault in PAR
    /// format).
    Par(u32),
    /// The walk took a synchronous external abort. Such an abort is not reported in PAR:
    /// it is taken as a Data Abort exception with this fault in DFSR and the VA in DFAR
    /// (found by the on-target differential test: QEMU does the same; see
    /// docs/SHADOW-DIFFTEST.md).
    DataAbort(Fault),
}

/// Performs ATS1CPR/ATS1CPW/ATS1CUR/ATS1CUW in the model: the PAR value, or the Data Abort
/// that an external abort on the walk raises instead.
pub fn ats1_outcome<M: GuestMemory + ?Sized>(
    regime: &Regime,
    mem: &M,
    va: VirtAddr,
    op: AtsOp,
) -> AtsOutcome {
    if !regime.mmu_on() {
        return AtsOutcome::Par(ats1(regime, mem, va, op));
    }
    match translate(regime, mem, va, op.access()) {
        Err(f) if f.kind == FaultKind::ExternalAbortOnWalk => AtsOutcome::DataAbort(f),
        r => AtsOutcome::Par(par(&r)),
    }
}

#[cfg(test)]
mod ats_outcome_tests {
    use super::*;
    use crate::shadow::sim::SparseMemory;

    /// Regression (on-target differential test): an external abort on the walk of an
    /// ATS1C** operation is a Data Abort, not a PAR value; other faults stay in PAR.
    #[test]
    fn external_abort_on_the_walk_is_a_data_abort() {
        let mut mem = SparseMemory::new(&[(0x4000_0000, 0x10_0000)]);
        let r = Regime {
            ttbr0: 0x4000_0000,
            dacr: 0x5555_5555,
            sctlr: sctlr::M,
            ..Regime::default()
        };
        // VA 0x0010_0000: page table at 0x8000_0000 (unbacked), domain 3.
        mem.write_u32(0x4000_0004, 0x8000_0000 | (3 << 5) | 1)
            .unwrap();
        // VA 0x0020_0000: page table in RAM, all fault entries.
        mem.write_u32(0x4000_0008, 0x4000_8000 | 1).unwrap();
        // TTBR0 outside RAM for a second regime: level-1 abort.
        let far = Regime {
            ttbr0: 0x9000_0000,
            ..r
        };
        for op in [AtsOp::Cpr, AtsOp::Cpw, AtsOp::Cur, AtsOp::Cuw] {
            let l2 = ats1_outcome(&r, &mem, VirtAddr::new(0x0010_0000), op);
            let AtsOutcome::DataAbort(f) = l2 else {
                panic!("{op:?}: {l2:?}")
            };
            assert_eq!(
                (f.kind, f.level, f.domain),
                (FaultKind::ExternalAbortOnWalk, 2, Some(3))
            );
            assert_eq!(f.dfsr(false), 0b1110 | (3 << 4));
            let l1 = ats1_outcome(&far, &mem, VirtAddr::new(0x0010_0000), op);
            assert!(
                matches!(l1, AtsOutcome::DataAbort(f) if f.level == 1 && f.dfsr(false) == 0b1100),
                "{l1:?}"
            );
            // A translation fault stays in PAR, exactly as ats1 reports it.
            let t = ats1_outcome(&r, &mem, VirtAddr::new(0x0020_0000), op);
            assert_eq!(t, AtsOutcome::Par(1 | (0b00111 << 1)));
            assert_eq!(
                t,
                AtsOutcome::Par(ats1(&r, &mem, VirtAddr::new(0x0020_0000), op))
            );
        }
    }
}
