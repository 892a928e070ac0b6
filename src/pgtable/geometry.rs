//! Translation geometry as plain data: address sizes, start level, concatenation, VTCR/TCR.
//!
//! One [`Geometry`] describes any of the three regimes the hypervisor builds tables
//! for: AArch64 stage 2 (sized from `ID_AA64MMFR0_EL1.PARange`), ARMv7 LPAE stage 2
//! (40-bit IPA) and the hypervisor's own AArch64 EL2 stage 1. The granule is always
//! 4 KiB. Stage 2 starts one level lower and concatenates up to 16 start-level tables
//! whenever that saves a level (as the architecture allows, and as KVM does).

use super::desc::level_shift;
use super::PageTableError;

/// Which translation regime a [`Geometry`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regime {
    /// AArch64 stage 2 (VTCR_EL2 / VTTBR_EL2).
    Stage2,
    /// ARMv7 LPAE stage 2 (HYP-mode VTCR / VTTBR).
    Stage2Armv7,
    /// AArch64 EL2 stage 1 without VHE (TCR_EL2 / TTBR0_EL2).
    Stage1El2,
    /// ARMv7 LPAE Hyp-mode stage 1 (HTCR / HTTBR); same descriptor format as
    /// [`Regime::Stage1El2`].
    Stage1Armv7Hyp,
}

impl Regime {
    /// True for the stage-1 regimes.
    pub const fn is_stage1(self) -> bool {
        matches!(self, Regime::Stage1El2 | Regime::Stage1Armv7Hyp)
    }
}

/// Address sizes and table layout of one set of translation tables (4 KiB granule).
///
/// Built only through the constructors, which validate; the fields are read through
/// accessors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    regime: Regime,
    ia_bits: u8,
    oa_bits: u8,
    start_level: u8,
    concat: u8,
}

/// Physical address size in bits for an `ID_AA64MMFR0_EL1.PARange` value: 0..=6 give
/// 32, 36, 40, 42, 44, 48, 52; reserved (larger) values give 52.
pub const fn parange_to_bits(parange: u8) -> u8 {
    match parange {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    }
}

/// The `PS`/`IPS` encoding of a physical address size (inverse of [`parange_to_bits`]).
const fn bits_to_ps(bits: u8) -> Option<u64> {
    match bits {
        32 => Some(0),
        36 => Some(1),
        40 => Some(2),
        42 => Some(3),
        44 => Some(4),
        48 => Some(5),
        _ => None,
    }
}

// Shared TCR/VTCR fields: inner and outer write-back read/write-allocate walks,
// inner shareable, TG0 = 4 KiB (0).
const IRGN0_WBWA: u64 = 1 << 8;
const ORGN0_WBWA: u64 = 1 << 10;
const SH0_INNER: u64 = 3 << 12;
const RES1_31: u64 = 1 << 31;

impl Geometry {
    /// AArch64 stage 2 for a CPU whose `ID_AA64MMFR0_EL1.PARange` field is `parange`:
    /// IPA size = PA size, capped at 48 bits (no FEAT_LPA/LPA2 52-bit support).
    pub fn stage2_from_parange(parange: u8) -> Self {
        let bits = parange_to_bits(parange);
        let bits = if bits > 48 { 48 } else { bits };
        match Self::stage2(bits, bits) {
            Ok(g) => g,
            // Unreachable: every capped PARange size is valid; keep a safe fallback.
            Err(_) => Self {
                regime: Regime::Stage2,
                ia_bits: 32,
                oa_bits: 32,
                start_level: 2,
                concat: 4,
            },
        }
    }

    /// AArch64 stage 2 with an `ipa_bits` input range (25..=48) and a `pa_bits` output
    /// range (one of 32, 36, 40, 42, 44, 48). Errors: [`PageTableError::InvalidGeometry`].
    pub fn stage2(ipa_bits: u8, pa_bits: u8) -> Result<Self, PageTableError> {
        if !(25..=48).contains(&ipa_bits) || bits_to_ps(pa_bits).is_none() {
            return Err(PageTableError::InvalidGeometry);
        }
        Ok(Self::stage2_layout(Regime::Stage2, ipa_bits, pa_bits))
    }

    /// ARMv7 LPAE stage 2: 40-bit IPA and PA, 3 levels starting at level 1 with two
    /// concatenated level-1 tables (VTCR.T0SZ = -8, i.e. 24 in AArch64 terms, SL0 = 1).
    pub fn stage2_armv7() -> Self {
        Self::stage2_layout(Regime::Stage2Armv7, 40, 40)
    }

    /// AArch64 EL2 stage 1 (non-VHE, TTBR0_EL2 only) with a `va_bits` input range
    /// (25..=48) and a `pa_bits` output range (one of 32, 36, 40, 42, 44, 48). No
    /// concatenation. Errors: [`PageTableError::InvalidGeometry`].
    pub fn stage1_el2(va_bits: u8, pa_bits: u8) -> Result<Self, PageTableError> {
        if !(25..=48).contains(&va_bits) || bits_to_ps(pa_bits).is_none() {
            return Err(PageTableError::InvalidGeometry);
        }
        let start_level = if va_bits > 39 {
            0
        } else if va_bits > 30 {
            1
        } else {
            2
        };
        Ok(Self {
            regime: Regime::Stage1El2,
            ia_bits: va_bits,
            oa_bits: pa_bits,
            start_level,
            concat: 1,
        })
    }

    /// ARMv7 LPAE Hyp-mode stage 1: 32-bit VA (HTCR.T0SZ = 0), 40-bit PA, 3 levels
    /// starting at level 1 (4 entries).
    pub fn stage1_armv7_hyp() -> Self {
        Self {
            regime: Regime::Stage1Armv7Hyp,
            ia_bits: 32,
            oa_bits: 40,
            start_level: 1,
            concat: 1,
        }
    }

    /// Stage-2 layout: the highest start level whose table, concatenated up to 16
    /// times (4 extra bits), still covers `ia_bits`.
    fn stage2_layout(regime: Regime, ia_bits: u8, oa_bits: u8) -> Self {
        let mut start_level = 0;
        for level in [2u8, 1] {
            if ia_bits as u32 <= level_shift(level) + 9 + 4 {
                start_level = level;
                break;
            }
        }
        let entries_bits = ia_bits as u32 - level_shift(start_level);
        let concat = if entries_bits > 9 {
            1u8 << (entries_bits - 9)
        } else {
            1
        };
        Self {
            regime,
            ia_bits,
            oa_bits,
            start_level,
            concat,
        }
    }

    /// The translation regime.
    pub const fn regime(&self) -> Regime {
        self.regime
    }
    /// Input address size in bits (IPA for stage 2, VA for stage 1).
    pub const fn ia_bits(&self) -> u8 {
        self.ia_bits
    }
    /// Output (physical) address size in bits.
    pub const fn oa_bits(&self) -> u8 {
        self.oa_bits
    }
    /// One past the highest input address: `1 << ia_bits`.
    pub const fn ia_limit(&self) -> u64 {
        1 << self.ia_bits
    }
    /// One past the highest output address: `1 << oa_bits`.
    pub const fn oa_limit(&self) -> u64 {
        1 << self.oa_bits
    }
    /// First level of the walk (0..=2).
    pub const fn start_level(&self) -> u8 {
        self.start_level
    }
    /// Number of levels walked (`4 - start_level`).
    pub const fn levels(&self) -> u8 {
        4 - self.start_level
    }
    /// Number of concatenated start-level tables (1, 2, 4, 8 or 16): the root is that
    /// many contiguous 4 KiB frames, aligned to their total size.
    pub const fn concat_tables(&self) -> usize {
        self.concat as usize
    }
    /// Entries in the (possibly concatenated) root table that the input range uses.
    pub const fn root_entries(&self) -> usize {
        1 << (self.ia_bits as u32 - level_shift(self.start_level))
    }
    /// T0SZ in AArch64 terms: `64 - ia_bits`.
    pub const fn t0sz(&self) -> u8 {
        64 - self.ia_bits
    }
    /// SL0 for a 4 KiB granule (both AArch64 and ARMv7): 0 = level 2, 1 = level 1,
    /// 2 = level 0.
    pub const fn sl0(&self) -> u8 {
        2 - self.start_level
    }
    /// The PS/IPS field for the output size (AArch64 encodings; 40 bits = 2).
    pub const fn ps(&self) -> u8 {
        match bits_to_ps(self.oa_bits) {
            Some(v) => v as u8,
            None => 0,
        }
    }

    /// The VTCR value for a stage-2 geometry, `None` for stage 1.
    ///
    /// AArch64 VTCR_EL2: T0SZ, SL0, IRGN0 = ORGN0 = write-back write-allocate, SH0 =
    /// inner shareable, TG0 = 4 KiB, PS from the output size, VS = 0 (8-bit VMID),
    /// RES1 bit 31. ARMv7 VTCR: T0SZ as a signed 4-bit `32 - ia_bits` with S (bit 4)
    /// its sign, SL0, IRGN0/ORGN0/SH0 as above, RES1 bit 31.
    pub const fn vtcr(&self) -> Option<u64> {
        let common = ((self.sl0() as u64) << 6) | IRGN0_WBWA | ORGN0_WBWA | SH0_INNER | RES1_31;
        match self.regime {
            Regime::Stage2 => Some(self.t0sz() as u64 | common | ((self.ps() as u64) << 16)),
            Regime::Stage2Armv7 => {
                let t0sz = (32 - self.ia_bits as i32) as u64 & 0xf;
                let s = (t0sz >> 3) << 4;
                Some(t0sz | s | common)
            }
            Regime::Stage1El2 | Regime::Stage1Armv7Hyp => None,
        }
    }

    /// The stage-1 control register value: [`tcr_el2`](Self::tcr_el2) for
    /// [`Regime::Stage1El2`], [`htcr`](Self::htcr) for [`Regime::Stage1Armv7Hyp`],
    /// `None` for stage 2.
    pub const fn stage1_tcr(&self) -> Option<u64> {
        match self.regime {
            Regime::Stage1El2 => self.tcr_el2(),
            Regime::Stage1Armv7Hyp => self.htcr(),
            _ => None,
        }
    }

    /// The ARMv7 HTCR value for [`Regime::Stage1Armv7Hyp`], `None` otherwise: T0SZ =
    /// `32 - ia_bits`, IRGN0 = ORGN0 = write-back write-allocate, SH0 = inner
    /// shareable, RES1 bits 23 and 31.
    pub const fn htcr(&self) -> Option<u64> {
        match self.regime {
            Regime::Stage1Armv7Hyp => Some(
                (32 - self.ia_bits as u64)
                    | IRGN0_WBWA
                    | ORGN0_WBWA
                    | SH0_INNER
                    | (1 << 23)
                    | RES1_31,
            ),
            _ => None,
        }
    }

    /// The TCR_EL2 value (non-VHE) for an EL2 stage-1 geometry, `None` otherwise:
    /// T0SZ, IRGN0 = ORGN0 = write-back write-allocate, SH0 = inner shareable, TG0 =
    /// 4 KiB, PS from the output size, TBI = 0, RES1 bits 23 and 31.
    pub const fn tcr_el2(&self) -> Option<u64> {
        match self.regime {
            Regime::Stage1El2 => Some(
                self.t0sz() as u64
                    | IRGN0_WBWA
                    | ORGN0_WBWA
                    | SH0_INNER
                    | ((self.ps() as u64) << 16)
                    | (1 << 23)
                    | RES1_31,
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parange_table() {
        let expect = [
            (0, 32, 2, 4),
            (1, 36, 1, 1),
            (2, 40, 1, 2),
            (3, 42, 1, 8),
            (4, 44, 0, 1),
            (5, 48, 0, 1),
            (6, 48, 0, 1),
            (7, 48, 0, 1),
        ];
        for (pr, bits, start, concat) in expect {
            let g = Geometry::stage2_from_parange(pr);
            assert_eq!(g.ia_bits(), bits, "parange {pr}");
            assert_eq!(g.oa_bits(), bits);
            assert_eq!(g.start_level(), start, "parange {pr}");
            assert_eq!(g.concat_tables(), concat, "parange {pr}");
            assert_eq!(g.root_entries(), (1usize << (bits - 12 - 9 * (3 - start))));
            assert!(g.concat_tables() <= 16);
            assert_eq!(g.vtcr().unwrap() & 0x3f, 64 - bits as u64);
            assert_eq!((g.vtcr().unwrap() >> 16) & 7, pr.min(5) as u64);
        }
    }

    #[test]
    fn vtcr_40_bit() {
        let g = Geometry::stage2_from_parange(2);
        assert_eq!(g.t0sz(), 24);
        assert_eq!(g.sl0(), 1);
        assert_eq!(g.levels(), 3);
        // T0SZ=24 | SL0=1 | IRGN0=1 | ORGN0=1 | SH0=3 | TG0=0 | PS=2 | RES1.
        assert_eq!(g.vtcr(), Some(0x8002_3558));
        assert_eq!(g.tcr_el2(), None);
    }

    #[test]
    fn armv7_lpae() {
        let g = Geometry::stage2_armv7();
        assert_eq!(g.regime(), Regime::Stage2Armv7);
        assert_eq!(
            (g.ia_bits(), g.oa_bits(), g.levels(), g.start_level()),
            (40, 40, 3, 1)
        );
        assert_eq!(g.concat_tables(), 2);
        assert_eq!(g.t0sz(), 24);
        // T0SZ = -8 (0b1000) with S = 1, SL0 = 1, WBWA walks, inner shareable, RES1.
        let v = g.vtcr().unwrap();
        assert_eq!(v & 0xf, 0b1000);
        assert_eq!((v >> 4) & 1, 1);
        assert_eq!((v >> 6) & 3, 1);
        assert_eq!(v, 0x8000_3558);
    }

    #[test]
    fn stage1_el2() {
        let g = Geometry::stage1_el2(48, 40).unwrap();
        assert_eq!(
            (g.start_level(), g.concat_tables(), g.root_entries()),
            (0, 1, 512)
        );
        assert_eq!(g.tcr_el2(), Some(0x8082_3510));
        assert_eq!(g.vtcr(), None);
        assert_eq!(g.stage1_tcr(), g.tcr_el2());
        let g = Geometry::stage1_el2(39, 40).unwrap();
        assert_eq!((g.start_level(), g.root_entries()), (1, 512));
        let g = Geometry::stage1_el2(32, 32).unwrap();
        assert_eq!((g.start_level(), g.root_entries()), (1, 4));
        assert_eq!(
            Geometry::stage1_el2(49, 48),
            Err(PageTableError::InvalidGeometry)
        );
        assert_eq!(
            Geometry::stage1_el2(48, 47),
            Err(PageTableError::InvalidGeometry)
        );
    }

    #[test]
    fn armv7_hyp_stage1() {
        let g = Geometry::stage1_armv7_hyp();
        assert!(g.regime().is_stage1());
        assert_eq!((g.start_level(), g.root_entries(), g.levels()), (1, 4, 3));
        assert_eq!(g.htcr(), Some(0x8080_3500));
        assert_eq!(g.stage1_tcr(), g.htcr());
        assert_eq!((g.tcr_el2(), g.vtcr()), (None, None));
    }

    #[test]
    fn stage2_limits() {
        assert_eq!(
            Geometry::stage2(24, 40),
            Err(PageTableError::InvalidGeometry)
        );
        assert_eq!(
            Geometry::stage2(49, 48),
            Err(PageTableError::InvalidGeometry)
        );
        assert_eq!(
            Geometry::stage2(40, 41),
            Err(PageTableError::InvalidGeometry)
        );
        for bits in 25..=48 {
            let g = Geometry::stage2(bits, 48).unwrap();
            assert!(g.concat_tables() <= 16 && g.concat_tables().is_power_of_two());
            assert!(g.root_entries() <= 512 * g.concat_tables());
        }
    }
}
