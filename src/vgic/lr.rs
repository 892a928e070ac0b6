//! List-register formats: `GICH_LR<n>` (GICv2, 32-bit) and `ICH_LR<n>_EL2` (GICv3, 64-bit).
//!
//! Layouts: IHI 0048B §5.3 (`GICH_LR<n>`) and IHI 0069 §12.4 (`ICH_LR<n>_EL2`)
//! (state `[63:62]`, HW `[61]`, Group `[60]`, Priority `[55:48]`, pINTID `[44:32]` or EOI `[41]`,
//! vINTID `[31:0]`). [`Lr`] is the version-independent view the model works with;
//! [`Lr::encode`] / [`Lr::decode`] convert to and from the raw register values the arch
//! layer reads and writes. The low control bits of GICH_HCR and ICH_HCR_EL2 are
//! identical, so [`HCR_EN`], [`HCR_UIE`] and [`HCR_NPIE`] serve both.

use tock_registers::{register_bitfields, LocalRegisterCopy};

use super::GicVersion;

register_bitfields! {u32,
    /// `GICH_LR<n>` (IHI 0048B §5.3, `GICH_LR<n>`).
    pub GICH_LR [
        /// The virtual interrupt ID the guest sees.
        VirtualID OFFSET(0) NUMBITS(10) [],
        /// HW = 0: for an SGI, the requesting CPU (reported in GICV_IAR.CPUID).
        CPUID OFFSET(10) NUMBITS(3) [],
        /// HW = 1: the physical interrupt deactivated with the virtual one.
        PhysicalID OFFSET(10) NUMBITS(10) [],
        /// HW = 0: raise a maintenance interrupt when the guest deactivates it.
        EOI OFFSET(19) NUMBITS(1) [],
        /// Priority bits `[7:3]`.
        Priority OFFSET(23) NUMBITS(5) [],
        /// Invalid / pending / active / pending and active.
        State OFFSET(28) NUMBITS(2) [],
        /// Group 1 (signalled as IRQ or FIQ per GICV_CTLR).
        Grp1 OFFSET(30) NUMBITS(1) [],
        /// Hardware interrupt: deactivation also deactivates PhysicalID.
        HW OFFSET(31) NUMBITS(1) []
    ]
}

register_bitfields! {u64,
    /// `ICH_LR<n>_EL2` (IHI 0069 §12.4, virtualization control registers).
    pub ICH_LR [
        /// The virtual INTID.
        vINTID OFFSET(0) NUMBITS(32) [],
        /// HW = 1: the physical INTID deactivated with the virtual one.
        pINTID OFFSET(32) NUMBITS(13) [],
        /// HW = 0: raise a maintenance interrupt when the guest deactivates it.
        EOI OFFSET(41) NUMBITS(1) [],
        /// Priority.
        Priority OFFSET(48) NUMBITS(8) [],
        /// Group 1.
        Group OFFSET(60) NUMBITS(1) [],
        /// Hardware interrupt.
        HW OFFSET(61) NUMBITS(1) [],
        /// Invalid / pending / active / pending and active.
        State OFFSET(62) NUMBITS(2) []
    ]
}

/// GICH_HCR.En / ICH_HCR_EL2.En: enable the virtual CPU interface (and maintenance IRQs).
pub const HCR_EN: u64 = 1 << 0;
/// GICH_HCR.UIE / ICH_HCR_EL2.UIE: maintenance IRQ when at most one LR is valid.
pub const HCR_UIE: u64 = 1 << 1;
/// GICH_HCR.NPIE / ICH_HCR_EL2.NPIE: maintenance IRQ when no LR is in the pending state.
pub const HCR_NPIE: u64 = 1 << 3;

/// The state field of a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrState {
    /// Free (the guest deactivated the interrupt, or never used).
    Invalid,
    /// Pending, not yet acknowledged.
    Pending,
    /// Acknowledged, not yet deactivated.
    Active,
    /// Active and pending again.
    PendingActive,
}

impl LrState {
    /// From the 2-bit field.
    pub const fn from_bits(b: u64) -> Self {
        match b & 3 {
            0 => Self::Invalid,
            1 => Self::Pending,
            2 => Self::Active,
            _ => Self::PendingActive,
        }
    }
    /// The 2-bit field.
    pub const fn bits(self) -> u64 {
        match self {
            Self::Invalid => 0,
            Self::Pending => 1,
            Self::Active => 2,
            Self::PendingActive => 3,
        }
    }
    /// From separate pending / active flags.
    pub const fn from_flags(pending: bool, active: bool) -> Self {
        Self::from_bits(pending as u64 | (active as u64) << 1)
    }
    /// The pending bit.
    pub const fn pending(self) -> bool {
        self.bits() & 1 != 0
    }
    /// The active bit.
    pub const fn active(self) -> bool {
        self.bits() & 2 != 0
    }
}

/// A list register, independent of the GIC version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lr {
    /// The virtual INTID (0..1020).
    pub vintid: u32,
    /// Pending / active state.
    pub state: LrState,
    /// Priority, 8 bits; GICv2 keeps bits `[7:3]` only.
    pub priority: u8,
    /// Group 1 rather than group 0.
    pub group1: bool,
    /// `Some(pintid)`: HW = 1, the guest's deactivation deactivates `pintid`.
    pub hw: Option<u32>,
    /// HW = 0 only: request an EOI maintenance interrupt when the guest deactivates it.
    pub eoi_maint: bool,
    /// GICv2, HW = 0 only: the SGI's source CPU (0..7); zero otherwise.
    pub source: u8,
}

impl Lr {
    /// An invalid (free) list register.
    pub const INVALID: Lr = Lr {
        vintid: 0,
        state: LrState::Invalid,
        priority: 0,
        group1: false,
        hw: None,
        eoi_maint: false,
        source: 0,
    };

    /// The GICH_LR value. Fields wider than the register are truncated.
    pub fn encode_v2(&self) -> u32 {
        let mut r: LocalRegisterCopy<u32, GICH_LR::Register> = LocalRegisterCopy::new(0);
        r.modify(
            GICH_LR::VirtualID.val(self.vintid & 0x3ff)
                + GICH_LR::Priority.val(u32::from(self.priority >> 3))
                + GICH_LR::State.val(self.state.bits() as u32)
                + GICH_LR::Grp1.val(self.group1 as u32),
        );
        match self.hw {
            Some(p) => r.modify(GICH_LR::HW::SET + GICH_LR::PhysicalID.val(p & 0x3ff)),
            None => r.modify(
                GICH_LR::CPUID.val(u32::from(self.source & 7))
                    + GICH_LR::EOI.val(self.eoi_maint as u32),
            ),
        }
        r.get()
    }

    /// Decodes a GICH_LR value.
    pub fn decode_v2(raw: u32) -> Lr {
        let r: LocalRegisterCopy<u32, GICH_LR::Register> = LocalRegisterCopy::new(raw);
        let hw = r.is_set(GICH_LR::HW);
        Lr {
            vintid: r.read(GICH_LR::VirtualID),
            state: LrState::from_bits(u64::from(r.read(GICH_LR::State))),
            priority: (r.read(GICH_LR::Priority) << 3) as u8,
            group1: r.is_set(GICH_LR::Grp1),
            hw: hw.then(|| r.read(GICH_LR::PhysicalID)),
            eoi_maint: !hw && r.is_set(GICH_LR::EOI),
            source: if hw { 0 } else { r.read(GICH_LR::CPUID) as u8 },
        }
    }

    /// The `ICH_LR<n>_EL2` value (the source CPU is not part of it).
    pub fn encode_v3(&self) -> u64 {
        let mut r: LocalRegisterCopy<u64, ICH_LR::Register> = LocalRegisterCopy::new(0);
        r.modify(
            ICH_LR::vINTID.val(u64::from(self.vintid))
                + ICH_LR::Priority.val(u64::from(self.priority))
                + ICH_LR::State.val(self.state.bits())
                + ICH_LR::Group.val(self.group1 as u64),
        );
        match self.hw {
            Some(p) => r.modify(ICH_LR::HW::SET + ICH_LR::pINTID.val(u64::from(p) & 0x1fff)),
            None => r.modify(ICH_LR::EOI.val(self.eoi_maint as u64)),
        }
        r.get()
    }

    /// Decodes an `ICH_LR<n>_EL2` value.
    pub fn decode_v3(raw: u64) -> Lr {
        let r: LocalRegisterCopy<u64, ICH_LR::Register> = LocalRegisterCopy::new(raw);
        let hw = r.is_set(ICH_LR::HW);
        Lr {
            vintid: r.read(ICH_LR::vINTID) as u32,
            state: LrState::from_bits(r.read(ICH_LR::State)),
            priority: r.read(ICH_LR::Priority) as u8,
            group1: r.is_set(ICH_LR::Group),
            hw: hw.then(|| r.read(ICH_LR::pINTID) as u32),
            eoi_maint: !hw && r.is_set(ICH_LR::EOI),
            source: 0,
        }
    }

    /// The raw value for `version` (a GICv2 value is zero-extended).
    pub fn encode(&self, version: GicVersion) -> u64 {
        match version {
            GicVersion::V2 => u64::from(self.encode_v2()),
            GicVersion::V3 => self.encode_v3(),
        }
    }

    /// Decodes a raw value for `version` (a GICv2 value uses the low 32 bits).
    pub fn decode(version: GicVersion, raw: u64) -> Lr {
        match version {
            GicVersion::V2 => Self::decode_v2(raw as u32),
            GicVersion::V3 => Self::decode_v3(raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn v2_known_values() {
        // Pending SGI 1 from CPU 2, priority 0xa0, group 0.
        let lr = Lr {
            vintid: 1,
            state: LrState::Pending,
            priority: 0xa0,
            group1: false,
            hw: None,
            eoi_maint: false,
            source: 2,
        };
        assert_eq!(
            lr.encode_v2(),
            0x1000_0000 | (0xa0 >> 3) << 23 | 2 << 10 | 1
        );
        // HW timer: vINTID 27 -> pINTID 27, pending, group 1.
        let hw = Lr {
            vintid: 27,
            hw: Some(27),
            group1: true,
            ..lr
        };
        assert_eq!(
            hw.encode_v2(),
            0x8000_0000 | 0x4000_0000 | 0x1000_0000 | (0xa0 >> 3) << 23 | 27 << 10 | 27
        );
        assert_eq!(Lr::decode_v2(hw.encode_v2()), Lr { source: 0, ..hw });
        let eoi = Lr {
            vintid: 33,
            eoi_maint: true,
            source: 0,
            state: LrState::PendingActive,
            ..lr
        };
        assert_eq!(
            eoi.encode_v2(),
            0x3000_0000 | (0xa0 >> 3) << 23 | 1 << 19 | 33
        );
    }

    #[test]
    fn v3_known_values() {
        let lr = Lr {
            vintid: 27,
            state: LrState::Active,
            priority: 0xa0,
            group1: true,
            hw: Some(27),
            eoi_maint: false,
            source: 0,
        };
        assert_eq!(
            lr.encode_v3(),
            2 << 62 | 1 << 61 | 1 << 60 | 0xa0 << 48 | 27 << 32 | 27
        );
        let lvl = Lr {
            vintid: 33,
            hw: None,
            eoi_maint: true,
            state: LrState::Pending,
            ..lr
        };
        assert_eq!(
            lvl.encode_v3(),
            1 << 62 | 1 << 60 | 0xa0 << 48 | 1 << 41 | 33
        );
        assert_eq!(Lr::decode_v3(lvl.encode_v3()), lvl);
        assert_eq!(Lr::decode_v3(0).state, LrState::Invalid);
    }

    #[test]
    fn state_flags() {
        for b in 0..4 {
            let s = LrState::from_bits(b);
            assert_eq!(s.bits(), b);
            assert_eq!(LrState::from_flags(s.pending(), s.active()), s);
        }
    }

    fn arb_lr() -> impl Strategy<Value = Lr> {
        (
            0u32..1020,
            0u64..4,
            any::<u8>(),
            any::<bool>(),
            proptest::option::of(16u32..1020),
            any::<bool>(),
            0u8..8,
        )
            .prop_map(|(vintid, st, priority, group1, hw, eoi_maint, source)| Lr {
                vintid,
                state: LrState::from_bits(st),
                priority,
                group1,
                hw,
                eoi_maint: hw.is_none() && eoi_maint,
                source: if hw.is_none() { source } else { 0 },
            })
    }

    proptest! {
        #[test]
        fn v2_round_trip(lr in arb_lr()) {
            let back = Lr::decode_v2(lr.encode_v2());
            prop_assert_eq!(back, Lr { priority: lr.priority & 0xf8, ..lr });
            prop_assert_eq!(back.encode_v2(), lr.encode_v2());
        }

        #[test]
        fn v3_round_trip(lr in arb_lr()) {
            let back = Lr::decode_v3(lr.encode_v3());
            prop_assert_eq!(back, Lr { source: 0, ..lr });
            prop_assert_eq!(Lr::decode(GicVersion::V3, lr.encode(GicVersion::V3)), back);
        }

        #[test]
        fn raw_v2_reencodes_to_itself(raw in any::<u32>()) {
            // Bits [22:20] are reserved; with HW = 0, bits [18:13] are too.
            let hw = raw & (1 << 31) != 0;
            let mask = if hw { !0x0070_0000u32 } else { !0x0077_e000u32 };
            prop_assert_eq!(Lr::decode_v2(raw).encode_v2(), raw & mask);
        }

        #[test]
        fn raw_v3_reencodes_to_itself(raw in any::<u64>()) {
            let hw = raw & (1 << 61) != 0;
            // Reserved: [59:56], [47:45]; with HW = 0 also [44:42] and [40:32].
            let mut mask: u64 = !(0xf << 56 | 0x7 << 45);
            if !hw { mask &= !(0x7 << 42 | 0x1ff << 32); }
            prop_assert_eq!(Lr::decode_v3(raw).encode_v3(), raw & mask);
        }
    }
}
