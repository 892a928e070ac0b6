//! ARMv7-A short-descriptor (TTBCR.EAE=0) translation table descriptors: decode and encode.
//!
//! Every 32-bit word decodes to exactly one descriptor and every descriptor encodes back to
//! the same word (`encode(decode(w)) == w`), so the model never loses guest-visible bits.
//! Layouts follow ARM DDI 0406C B3.5.1 (first level) and B3.5.2 (second level). The
//! implementation is assumed to support PXN (as every LPAE/Virtualization-Extensions CPU
//! does), so first-level type `0b11` is a section or supersection with PXN set.

/// Region attribute bits as they appear in a descriptor: TEX\[2:0\], C, B and S.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RegionAttrs {
    /// TEX\[2:0\] (only the low three bits are meaningful).
    pub tex: u8,
    /// C (cacheable) bit.
    pub c: bool,
    /// B (bufferable) bit.
    pub b: bool,
    /// S (shareable) bit.
    pub s: bool,
}

/// A first-level page-table descriptor (bits\[1:0\] = 0b01).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PageTableDesc {
    /// Physical address of the 1 KiB second-level table (bits\[31:10\]; low 10 bits zero).
    pub base: u32,
    /// PXN: privileged execute-never for every page of the table.
    pub pxn: bool,
    /// NS bit (meaningful only for Secure walks).
    pub ns: bool,
    /// Bit 4, should-be-zero; kept so that encoding round-trips.
    pub sbz: bool,
    /// Domain 0..=15.
    pub domain: u8,
    /// IMPLEMENTATION DEFINED bit 9.
    pub imp: bool,
}

/// A first-level section descriptor (1 MiB; bits\[1\] = 1, bit 18 = 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SectionDesc {
    /// Output address PA\[31:20\] (low 20 bits zero).
    pub base: u32,
    /// PXN (bit 0).
    pub pxn: bool,
    /// XN (bit 4).
    pub xn: bool,
    /// Domain 0..=15 (bits\[8:5\]).
    pub domain: u8,
    /// IMPLEMENTATION DEFINED bit 9.
    pub imp: bool,
    /// AP\[2:0\] (AP\[2\] is bit 15, AP\[1:0\] bits\[11:10\]).
    pub ap: u8,
    /// TEX, C, B and S.
    pub attrs: RegionAttrs,
    /// nG: not global (ASID-tagged).
    pub ng: bool,
    /// NS bit.
    pub ns: bool,
}

/// A first-level supersection descriptor (16 MiB, replicated in 16 consecutive entries;
/// bit 18 = 1). Its domain is always 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SupersectionDesc {
    /// Output address PA\[39:24\] (a 40-bit address with the low 24 bits zero).
    pub base: u64,
    /// PXN (bit 0).
    pub pxn: bool,
    /// XN (bit 4).
    pub xn: bool,
    /// IMPLEMENTATION DEFINED bit 9.
    pub imp: bool,
    /// AP\[2:0\].
    pub ap: u8,
    /// TEX, C, B and S.
    pub attrs: RegionAttrs,
    /// nG.
    pub ng: bool,
    /// NS bit.
    pub ns: bool,
}

/// A decoded first-level descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L1Desc {
    /// bits\[1:0\] = 0b00: translation fault. The raw word is kept (bits\[31:2\] are free for
    /// software).
    Fault(u32),
    /// bits\[1:0\] = 0b01: pointer to a second-level table.
    PageTable(PageTableDesc),
    /// A 1 MiB section.
    Section(SectionDesc),
    /// A 16 MiB supersection.
    Supersection(SupersectionDesc),
}

/// A second-level large page descriptor (64 KiB, replicated in 16 consecutive entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LargePageDesc {
    /// Output address PA\[31:16\].
    pub base: u32,
    /// XN (bit 15).
    pub xn: bool,
    /// AP\[2:0\] (AP\[2\] bit 9, AP\[1:0\] bits\[5:4\]).
    pub ap: u8,
    /// TEX (bits\[14:12\]), C, B, S.
    pub attrs: RegionAttrs,
    /// nG.
    pub ng: bool,
    /// Bits\[8:6\], should-be-zero; kept so that encoding round-trips.
    pub sbz: u8,
}

/// A second-level small page descriptor (4 KiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SmallPageDesc {
    /// Output address PA\[31:12\].
    pub base: u32,
    /// XN (bit 0).
    pub xn: bool,
    /// AP\[2:0\] (AP\[2\] bit 9, AP\[1:0\] bits\[5:4\]).
    pub ap: u8,
    /// TEX (bits\[8:6\]), C, B, S.
    pub attrs: RegionAttrs,
    /// nG.
    pub ng: bool,
}

/// A decoded second-level descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L2Desc {
    /// bits\[1:0\] = 0b00: translation fault; the raw word is kept.
    Fault(u32),
    /// bits\[1:0\] = 0b01: 64 KiB large page.
    Large(LargePageDesc),
    /// bits\[1\] = 1: 4 KiB small page (bit 0 is XN).
    Small(SmallPageDesc),
}

#[inline]
const fn bit(w: u32, n: u32) -> bool {
    (w >> n) & 1 != 0
}

#[inline]
const fn b(v: bool, n: u32) -> u32 {
    (v as u32) << n
}

impl L1Desc {
    /// Decodes any 32-bit word; total (never fails).
    #[inline]
    pub const fn decode(w: u32) -> Self {
        match w & 3 {
            0 => L1Desc::Fault(w),
            1 => L1Desc::PageTable(PageTableDesc {
                base: w & 0xffff_fc00,
                pxn: bit(w, 2),
                ns: bit(w, 3),
                sbz: bit(w, 4),
                domain: ((w >> 5) & 0xf) as u8,
                imp: bit(w, 9),
            }),
            _ => {
                let attrs = RegionAttrs {
                    tex: ((w >> 12) & 7) as u8,
                    c: bit(w, 3),
                    b: bit(w, 2),
                    s: bit(w, 16),
                };
                let ap = (((w >> 10) & 3) | ((w >> 13) & 4)) as u8;
                if bit(w, 18) {
                    let base = (w & 0xff00_0000) as u64
                        | (((w >> 20) & 0xf) as u64) << 32
                        | (((w >> 5) & 0xf) as u64) << 36;
                    L1Desc::Supersection(SupersectionDesc {
                        base,
                        pxn: bit(w, 0),
                        xn: bit(w, 4),
                        imp: bit(w, 9),
                        ap,
                        attrs,
                        ng: bit(w, 17),
                        ns: bit(w, 19),
                    })
                } else {
                    L1Desc::Section(SectionDesc {
                        base: w & 0xfff0_0000,
                        pxn: bit(w, 0),
                        xn: bit(w, 4),
                        domain: ((w >> 5) & 0xf) as u8,
                        imp: bit(w, 9),
                        ap,
                        attrs,
                        ng: bit(w, 17),
                        ns: bit(w, 19),
                    })
                }
            }
        }
    }

    /// Encodes the descriptor. Fields wider than their bit field are truncated (addresses
    /// are masked to their architectural alignment); a `Fault` word has bits\[1:0\] forced to 0.
    #[inline]
    pub const fn encode(&self) -> u32 {
        match *self {
            L1Desc::Fault(w) => w & !3,
            L1Desc::PageTable(p) => {
                1 | (p.base & 0xffff_fc00)
                    | b(p.pxn, 2)
                    | b(p.ns, 3)
                    | b(p.sbz, 4)
                    | ((p.domain as u32 & 0xf) << 5)
                    | b(p.imp, 9)
            }
            L1Desc::Section(s) => {
                2 | (s.base & 0xfff0_0000)
                    | b(s.pxn, 0)
                    | b(s.attrs.b, 2)
                    | b(s.attrs.c, 3)
                    | b(s.xn, 4)
                    | ((s.domain as u32 & 0xf) << 5)
                    | b(s.imp, 9)
                    | ((s.ap as u32 & 3) << 10)
                    | ((s.attrs.tex as u32 & 7) << 12)
                    | (((s.ap as u32 >> 2) & 1) << 15)
                    | b(s.attrs.s, 16)
                    | b(s.ng, 17)
                    | b(s.ns, 19)
            }
            L1Desc::Supersection(s) => {
                2 | (1 << 18)
                    | (s.base as u32 & 0xff00_0000)
                    | (((s.base >> 32) as u32 & 0xf) << 20)
                    | (((s.base >> 36) as u32 & 0xf) << 5)
                    | b(s.pxn, 0)
                    | b(s.attrs.b, 2)
                    | b(s.attrs.c, 3)
                    | b(s.xn, 4)
                    | b(s.imp, 9)
                    | ((s.ap as u32 & 3) << 10)
                    | ((s.attrs.tex as u32 & 7) << 12)
                    | (((s.ap as u32 >> 2) & 1) << 15)
                    | b(s.attrs.s, 16)
                    | b(s.ng, 17)
                    | b(s.ns, 19)
            }
        }
    }
}

impl L2Desc {
    /// Decodes any 32-bit word; total (never fails).
    #[inline]
    pub const fn decode(w: u32) -> Self {
        let ap = (((w >> 4) & 3) | ((w >> 7) & 4)) as u8;
        match w & 3 {
            0 => L2Desc::Fault(w),
            1 => L2Desc::Large(LargePageDesc {
                base: w & 0xffff_0000,
                xn: bit(w, 15),
                ap,
                attrs: RegionAttrs {
                    tex: ((w >> 12) & 7) as u8,
                    c: bit(w, 3),
                    b: bit(w, 2),
                    s: bit(w, 10),
                },
                ng: bit(w, 11),
                sbz: ((w >> 6) & 7) as u8,
            }),
            _ => L2Desc::Small(SmallPageDesc {
                base: w & 0xffff_f000,
                xn: bit(w, 0),
                ap,
                attrs: RegionAttrs {
                    tex: ((w >> 6) & 7) as u8,
                    c: bit(w, 3),
                    b: bit(w, 2),
                    s: bit(w, 10),
                },
                ng: bit(w, 11),
            }),
        }
    }

    /// Encodes the descriptor (fields truncated to their width; `Fault` forces bits\[1:0\]=0).
    #[inline]
    pub const fn encode(&self) -> u32 {
        match *self {
            L2Desc::Fault(w) => w & !3,
            L2Desc::Large(l) => {
                1 | (l.base & 0xffff_0000)
                    | b(l.attrs.b, 2)
                    | b(l.attrs.c, 3)
                    | ((l.ap as u32 & 3) << 4)
                    | ((l.sbz as u32 & 7) << 6)
                    | (((l.ap as u32 >> 2) & 1) << 9)
                    | b(l.attrs.s, 10)
                    | b(l.ng, 11)
                    | ((l.attrs.tex as u32 & 7) << 12)
                    | b(l.xn, 15)
            }
            L2Desc::Small(s) => {
                2 | (s.base & 0xffff_f000)
                    | b(s.xn, 0)
                    | b(s.attrs.b, 2)
                    | b(s.attrs.c, 3)
                    | ((s.ap as u32 & 3) << 4)
                    | ((s.attrs.tex as u32 & 7) << 6)
                    | (((s.ap as u32 >> 2) & 1) << 9)
                    | b(s.attrs.s, 10)
                    | b(s.ng, 11)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attrs() -> impl Strategy<Value = RegionAttrs> {
        (0u8..8, any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(tex, c, b, s)| RegionAttrs { tex, c, b, s })
    }

    fn l1() -> impl Strategy<Value = L1Desc> {
        prop_oneof![
            any::<u32>().prop_map(|w| L1Desc::Fault(w & !3)),
            (any::<u32>(), any::<[bool; 4]>(), 0u8..16).prop_map(|(a, f, d)| {
                L1Desc::PageTable(PageTableDesc {
                    base: a & 0xffff_fc00,
                    pxn: f[0],
                    ns: f[1],
                    sbz: f[2],
                    domain: d,
                    imp: f[3],
                })
            }),
            (any::<u32>(), any::<[bool; 5]>(), 0u8..16, 0u8..8, attrs()).prop_map(
                |(a, f, d, ap, attrs)| L1Desc::Section(SectionDesc {
                    base: a & 0xfff0_0000,
                    pxn: f[0],
                    xn: f[1],
                    domain: d,
                    imp: f[2],
                    ap,
                    attrs,
                    ng: f[3],
                    ns: f[4],
                })
            ),
            (any::<u64>(), any::<[bool; 5]>(), 0u8..8, attrs()).prop_map(|(a, f, ap, attrs)| {
                L1Desc::Supersection(SupersectionDesc {
                    base: a & 0xff_ff00_0000,
                    pxn: f[0],
                    xn: f[1],
                    imp: f[2],
                    ap,
                    attrs,
                    ng: f[3],
                    ns: f[4],
                })
            }),
        ]
    }

    fn l2() -> impl Strategy<Value = L2Desc> {
        prop_oneof![
            any::<u32>().prop_map(|w| L2Desc::Fault(w & !3)),
            (any::<u32>(), any::<[bool; 2]>(), 0u8..8, attrs(), 0u8..8).prop_map(
                |(a, f, ap, attrs, sbz)| L2Desc::Large(LargePageDesc {
                    base: a & 0xffff_0000,
                    xn: f[0],
                    ap,
                    attrs,
                    ng: f[1],
                    sbz,
                })
            ),
            (any::<u32>(), any::<[bool; 2]>(), 0u8..8, attrs()).prop_map(|(a, f, ap, attrs)| {
                L2Desc::Small(SmallPageDesc {
                    base: a & 0xffff_f000,
                    xn: f[0],
                    ap,
                    attrs,
                    ng: f[1],
                })
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn l1_desc_roundtrip(d in l1()) {
            prop_assert_eq!(L1Desc::decode(d.encode()), d);
        }
        #[test]
        fn l2_desc_roundtrip(d in l2()) {
            prop_assert_eq!(L2Desc::decode(d.encode()), d);
        }
        #[test]
        fn l1_word_roundtrip(w in any::<u32>()) {
            prop_assert_eq!(L1Desc::decode(w).encode(), w);
        }
        #[test]
        fn l2_word_roundtrip(w in any::<u32>()) {
            prop_assert_eq!(L2Desc::decode(w).encode(), w);
        }
    }

    /// Every field combination (all flags, all domains, all AP, all TEX/C/B/S) at a few
    /// addresses, exhaustively.
    #[test]
    fn section_every_field_combination() {
        let mut n = 0u32;
        for flags in 0u32..32 {
            for domain in 0u8..16 {
                for ap in 0u8..8 {
                    for a in 0u8..64 {
                        let attrs = RegionAttrs {
                            tex: a & 7,
                            c: a & 8 != 0,
                            b: a & 16 != 0,
                            s: a & 32 != 0,
                        };
                        let f = |i: u32| flags >> i & 1 != 0;
                        let s = SectionDesc {
                            base: 0x8010_0000u32.wrapping_mul(flags + 1) & 0xfff0_0000,
                            pxn: f(0),
                            xn: f(1),
                            domain,
                            imp: f(2),
                            ap,
                            attrs,
                            ng: f(3),
                            ns: f(4),
                        };
                        let d = L1Desc::Section(s);
                        assert_eq!(L1Desc::decode(d.encode()), d);
                        let ss = L1Desc::Supersection(SupersectionDesc {
                            base: ((domain as u64) << 36 | (flags as u64 & 0xf) << 32)
                                | 0x4000_0000,
                            pxn: f(0),
                            xn: f(1),
                            imp: f(2),
                            ap,
                            attrs,
                            ng: f(3),
                            ns: f(4),
                        });
                        assert_eq!(L1Desc::decode(ss.encode()), ss);
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 32 * 16 * 8 * 64);
    }

    #[test]
    fn known_encodings() {
        // Section, domain 3, AP=011, TEX=001 C B, nG, XN at 0x8030_0000.
        let w = 0x8030_0000 | 2 | 1 << 2 | 1 << 3 | 1 << 4 | 3 << 5 | 3 << 10 | 1 << 12 | 1 << 17;
        match L1Desc::decode(w) {
            L1Desc::Section(s) => {
                assert_eq!(s.base, 0x8030_0000);
                assert_eq!(s.domain, 3);
                assert_eq!(s.ap, 3);
                assert!(s.xn && s.ng && !s.pxn && s.attrs.c && s.attrs.b);
                assert_eq!(s.attrs.tex, 1);
            }
            other => panic!("{other:?}"),
        }
        // Supersection with PA[39:32] = 0xa5.
        let w = 0x1200_0000 | 3 | 1 << 18 | 0x5 << 20 | 0xa << 5;
        match L1Desc::decode(w) {
            L1Desc::Supersection(s) => {
                assert_eq!(s.base, 0xa5_1200_0000);
                assert!(s.pxn);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(L2Desc::decode(0x1234_5003), L2Desc::Small(s) if s.xn && s.base == 0x1234_5000)
        );
        assert!(
            matches!(L2Desc::decode(0x1234_0001), L2Desc::Large(l) if !l.xn && l.base == 0x1234_0000)
        );
    }
}
