//! VMSAv8-64 / ARMv7 LPAE long descriptors (4 KiB granule): encode and decode.
//!
//! A descriptor at level 0..=2 is invalid, a table or (levels 1 and 2) a block; at
//! level 3 it is invalid or a page. Blocks and pages carry leaf attributes, which
//! differ between stage 2 ([`S2LeafAttrs`]) and the EL2 stage-1 regime
//! ([`S1LeafAttrs`]); both occupy only the attribute bits [`ATTR_MASK`].

use crate::addr::HostPhysAddr;

/// Bits [47:12]: the output address of a block, page or table descriptor.
pub const OA_MASK: u64 = 0x0000_ffff_ffff_f000;
/// Leaf attribute bits: lower attributes [11:2] and upper attributes [63:50].
pub const ATTR_MASK: u64 = 0xfffc_0000_0000_0ffc;
/// Bit 0: valid.
pub const VALID: u64 = 1 << 0;
/// Bit 1: table (levels 0..=2) or page (level 3); clear for a block.
pub const TYPE_TABLE_OR_PAGE: u64 = 1 << 1;

/// Shift of the address bits resolved at `level` (4 KiB granule): 39, 30, 21, 12.
pub const fn level_shift(level: u8) -> u32 {
    12 + 9 * (3 - level as u32)
}

/// Bytes covered by one entry at `level`: 512 GiB, 1 GiB, 2 MiB, 4 KiB.
pub const fn level_size(level: u8) -> u64 {
    1 << level_shift(level)
}

/// True if `raw` at `level` is a table descriptor.
pub const fn is_table(raw: u64, level: u8) -> bool {
    level < 3 && raw & 3 == 3
}

/// True if `raw` at `level` is a block or page descriptor.
pub const fn is_leaf(raw: u64, level: u8) -> bool {
    match raw & 3 {
        1 => level == 1 || level == 2,
        3 => level == 3,
        _ => false,
    }
}

/// Encodes a leaf: block at level 1 or 2, page at level 3. `oa` must be aligned to
/// [`level_size`] (bits below are dropped) and `attrs` within [`ATTR_MASK`].
pub(crate) const fn leaf(oa: u64, level: u8, attrs: u64) -> u64 {
    let ty = if level == 3 { 3 } else { 1 };
    (oa & OA_MASK & !(level_size(level) - 1)) | (attrs & ATTR_MASK) | ty
}

/// Encodes a table descriptor pointing at the frame `next`.
pub(crate) const fn table(next: u64) -> u64 {
    (next & OA_MASK) | 3
}

/// Leaf attributes of one translation regime, as bits inside [`ATTR_MASK`].
pub trait LeafAttrs: Sized + Copy {
    /// The attribute bits (only bits of [`ATTR_MASK`]).
    fn to_bits(&self) -> u64;
    /// Extracts the attributes from a descriptor (other bits are ignored).
    fn from_bits(raw: u64) -> Self;
}

/// Stage-2 block/page attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S2LeafAttrs {
    /// MemAttr[3:0] (bits [5:2]); see [`S2LeafAttrs::MEMATTR_NORMAL_WB`] and
    /// [`S2LeafAttrs::MEMATTR_DEVICE_NGNRE`].
    pub mem_attr: u8,
    /// S2AP[0] (bit 6): reads allowed.
    pub read: bool,
    /// S2AP[1] (bit 7): writes allowed.
    pub write: bool,
    /// SH[1:0] (bits [9:8]): 0 non-shareable, 2 outer, 3 inner shareable.
    pub sh: u8,
    /// AF (bit 10): access flag.
    pub af: bool,
    /// XN (bit 54): execute never (XN[1] of FEAT_XNX; XN[0], bit 53, is left 0).
    pub xn: bool,
}

impl S2LeafAttrs {
    /// MemAttr for normal memory, outer and inner write-back cacheable.
    pub const MEMATTR_NORMAL_WB: u8 = 0b1111;
    /// MemAttr for Device-nGnRE memory.
    pub const MEMATTR_DEVICE_NGNRE: u8 = 0b0001;
}

impl LeafAttrs for S2LeafAttrs {
    fn to_bits(&self) -> u64 {
        ((self.mem_attr as u64 & 0xf) << 2)
            | ((self.read as u64) << 6)
            | ((self.write as u64) << 7)
            | ((self.sh as u64 & 3) << 8)
            | ((self.af as u64) << 10)
            | ((self.xn as u64) << 54)
    }
    fn from_bits(raw: u64) -> Self {
        Self {
            mem_attr: ((raw >> 2) & 0xf) as u8,
            read: raw & (1 << 6) != 0,
            write: raw & (1 << 7) != 0,
            sh: ((raw >> 8) & 3) as u8,
            af: raw & (1 << 10) != 0,
            xn: raw & (1 << 54) != 0,
        }
    }
}

/// EL2 (non-VHE) stage-1 block/page attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S1LeafAttrs {
    /// AttrIndx[2:0] (bits [4:2]): index into MAIR_EL2.
    pub attr_indx: u8,
    /// NS (bit 5).
    pub ns: bool,
    /// AP[2:1] (bits [7:6]). In the EL2 regime AP[1] is RES1: 0b01 read/write,
    /// 0b11 read-only.
    pub ap: u8,
    /// SH[1:0] (bits [9:8]).
    pub sh: u8,
    /// AF (bit 10): access flag.
    pub af: bool,
    /// XN (bit 54): execute never.
    pub xn: bool,
}

impl S1LeafAttrs {
    /// AP value for read/write at EL2.
    pub const AP_RW: u8 = 0b01;
    /// AP value for read-only at EL2.
    pub const AP_RO: u8 = 0b11;
}

impl LeafAttrs for S1LeafAttrs {
    fn to_bits(&self) -> u64 {
        ((self.attr_indx as u64 & 7) << 2)
            | ((self.ns as u64) << 5)
            | ((self.ap as u64 & 3) << 6)
            | ((self.sh as u64 & 3) << 8)
            | ((self.af as u64) << 10)
            | ((self.xn as u64) << 54)
    }
    fn from_bits(raw: u64) -> Self {
        Self {
            attr_indx: ((raw >> 2) & 7) as u8,
            ns: raw & (1 << 5) != 0,
            ap: ((raw >> 6) & 3) as u8,
            sh: ((raw >> 8) & 3) as u8,
            af: raw & (1 << 10) != 0,
            xn: raw & (1 << 54) != 0,
        }
    }
}

/// A decoded descriptor of either regime (`A` = [`S2LeafAttrs`] or [`S1LeafAttrs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Desc<A> {
    /// Bit 0 clear (or a reserved encoding): faults.
    Invalid,
    /// Next-level table (levels 0..=2).
    Table(HostPhysAddr),
    /// Block (levels 1 and 2): output address aligned to the block size.
    Block(HostPhysAddr, A),
    /// Page (level 3).
    Page(HostPhysAddr, A),
}

impl<A: LeafAttrs> Desc<A> {
    /// Decodes `raw` found at `level` (0..=3). Reserved encodings (a block at level 0,
    /// `0b01` at level 3) decode as [`Desc::Invalid`], as the hardware treats them.
    pub fn decode(raw: u64, level: u8) -> Self {
        let oa = HostPhysAddr::new(raw & OA_MASK);
        if level > 3 {
            Desc::Invalid
        } else if is_table(raw, level) {
            Desc::Table(oa)
        } else if !is_leaf(raw, level) {
            Desc::Invalid
        } else if level == 3 {
            Desc::Page(oa, A::from_bits(raw))
        } else {
            Desc::Block(oa, A::from_bits(raw))
        }
    }

    /// Encodes for `level`; `None` if this kind of descriptor cannot exist there
    /// (table at level 3, block outside levels 1..=2, page outside level 3) or if the
    /// address is not aligned to what it maps (4 KiB for tables and pages, the block
    /// size for blocks) or has bits above bit 47.
    pub fn encode(&self, level: u8) -> Option<u64> {
        match *self {
            Desc::Invalid => Some(0),
            Desc::Table(next) if level < 3 && next.raw() & !OA_MASK == 0 => Some(table(next.raw())),
            Desc::Block(oa, a)
                if (level == 1 || level == 2)
                    && oa.raw() & !OA_MASK == 0
                    && oa.is_aligned(level_size(level)) =>
            {
                Some(leaf(oa.raw(), level, a.to_bits()))
            }
            Desc::Page(oa, a) if level == 3 && oa.raw() & !OA_MASK == 0 => {
                Some(leaf(oa.raw(), 3, a.to_bits()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s2_attrs() -> impl Strategy<Value = S2LeafAttrs> {
        (
            0u8..16,
            any::<bool>(),
            any::<bool>(),
            0u8..4,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(mem_attr, read, write, sh, af, xn)| S2LeafAttrs {
                mem_attr,
                read,
                write,
                sh,
                af,
                xn,
            })
    }

    fn s1_attrs() -> impl Strategy<Value = S1LeafAttrs> {
        (
            0u8..8,
            any::<bool>(),
            0u8..4,
            0u8..4,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(attr_indx, ns, ap, sh, af, xn)| S1LeafAttrs {
                attr_indx,
                ns,
                ap,
                sh,
                af,
                xn,
            })
    }

    fn cfg() -> ProptestConfig {
        ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(cfg())]

        #[test]
        fn s2_leaf_round_trip(a in s2_attrs(), frame in 0u64..(1 << 36), level in 1u8..4) {
            let oa = HostPhysAddr::new((frame << 12) & !(level_size(level) - 1));
            let d = if level == 3 { Desc::Page(oa, a) } else { Desc::Block(oa, a) };
            let raw = d.encode(level).unwrap();
            prop_assert_eq!(raw & !(OA_MASK | ATTR_MASK | 3), 0);
            prop_assert_eq!(Desc::<S2LeafAttrs>::decode(raw, level), d);
            prop_assert_eq!(S2LeafAttrs::from_bits(a.to_bits()), a);
        }

        #[test]
        fn s1_leaf_round_trip(a in s1_attrs(), frame in 0u64..(1 << 36), level in 1u8..4) {
            let oa = HostPhysAddr::new((frame << 12) & !(level_size(level) - 1));
            let d = if level == 3 { Desc::Page(oa, a) } else { Desc::Block(oa, a) };
            let raw = d.encode(level).unwrap();
            prop_assert_eq!(Desc::<S1LeafAttrs>::decode(raw, level), d);
            prop_assert_eq!(S1LeafAttrs::from_bits(a.to_bits()), a);
        }

        #[test]
        fn table_round_trip(frame in 0u64..(1 << 36), level in 0u8..3) {
            let d = Desc::<S2LeafAttrs>::Table(HostPhysAddr::new(frame << 12));
            let raw = d.encode(level).unwrap();
            prop_assert_eq!(Desc::<S2LeafAttrs>::decode(raw, level), d);
            prop_assert!(is_table(raw, level));
            prop_assert!(!is_leaf(raw, level));
        }

        #[test]
        fn decode_never_panics(raw in any::<u64>(), level in 0u8..6) {
            let d = Desc::<S2LeafAttrs>::decode(raw, level);
            if let Some(re) = d.encode(level) {
                prop_assert_eq!(Desc::<S2LeafAttrs>::decode(re, level), d);
            }
        }
    }

    #[test]
    fn field_positions() {
        let a = S2LeafAttrs {
            mem_attr: S2LeafAttrs::MEMATTR_NORMAL_WB,
            read: true,
            write: true,
            sh: 3,
            af: true,
            xn: true,
        };
        assert_eq!(
            a.to_bits(),
            (0xf << 2) | (3 << 6) | (3 << 8) | (1 << 10) | (1 << 54)
        );
        let raw = Desc::Page(HostPhysAddr::new(0x4000_1000), a)
            .encode(3)
            .unwrap();
        assert_eq!(raw, 0x0040_0000_4000_17ff);
        let s1 = S1LeafAttrs {
            attr_indx: 1,
            ns: false,
            ap: S1LeafAttrs::AP_RO,
            sh: 3,
            af: true,
            xn: true,
        };
        assert_eq!(
            s1.to_bits(),
            (1 << 2) | (3 << 6) | (3 << 8) | (1 << 10) | (1 << 54)
        );
    }

    #[test]
    fn invalid_encodings() {
        let a = S2LeafAttrs::from_bits(0);
        let oa = HostPhysAddr::new(0x20_0000);
        assert_eq!(Desc::Block(oa, a).encode(0), None);
        assert_eq!(Desc::Block(oa, a).encode(3), None);
        assert_eq!(Desc::Block(HostPhysAddr::new(0x1000), a).encode(2), None);
        assert_eq!(Desc::Page(oa, a).encode(2), None);
        assert_eq!(Desc::<S2LeafAttrs>::Table(oa).encode(3), None);
        assert_eq!(
            Desc::<S2LeafAttrs>::Table(HostPhysAddr::new(1 << 48)).encode(1),
            None
        );
        // Level-0 block and level-3 0b01 are reserved: invalid.
        assert_eq!(Desc::<S2LeafAttrs>::decode(0x4000_0001, 0), Desc::Invalid);
        assert_eq!(Desc::<S2LeafAttrs>::decode(0x4000_0001, 3), Desc::Invalid);
        assert_eq!(Desc::<S2LeafAttrs>::decode(0x4000_0002, 2), Desc::Invalid);
    }
}
