//! Pure computation of a synchronous exception injected into an AArch64 EL1 guest.
//!
//! Models the architectural exception entry to EL1 (ARM ARM, ARMv8-A, D1.10 "Exception
//! entry", and its vector-table offsets from VBAR_EL1): the caller saves the returned values
//! into the guest's ESR_EL1/FAR_EL1/ELR_EL1/SPSR_EL1 and resumes it at `pc` with
//! `pstate` (by writing ELR_EL2/SPSR_EL2 before ERET).

use core::fmt;

use crate::addr::VirtAddr;

/// PSTATE/SPSR bits used here (ARM ARM, register description "SPSR_EL2").
pub mod psr {
    /// M[4]: the interrupted state was AArch32.
    pub const NRW: u64 = 1 << 4;
    /// M[3:0] value for EL0t.
    pub const MODE_EL0T: u64 = 0b0000;
    /// M[3:0] value for EL1t (EL1 using SP_EL0).
    pub const MODE_EL1T: u64 = 0b0100;
    /// M[3:0] value for EL1h (EL1 using SP_EL1).
    pub const MODE_EL1H: u64 = 0b0101;
    /// AArch32 User mode, M[4:0].
    pub const MODE_AARCH32_USR: u64 = 0b1_0000;
    /// F: FIQ mask.
    pub const F: u64 = 1 << 6;
    /// I: IRQ mask.
    pub const I: u64 = 1 << 7;
    /// A: SError mask.
    pub const A: u64 = 1 << 8;
    /// D: debug mask.
    pub const D: u64 = 1 << 9;
    /// All four DAIF bits.
    pub const DAIF: u64 = D | A | I | F;
    /// BTYPE, bits [11:10].
    pub const BTYPE: u64 = 3 << 10;
    /// SSBS, bit 12.
    pub const SSBS: u64 = 1 << 12;
    /// IL, bit 20.
    pub const IL: u64 = 1 << 20;
    /// SS, bit 21.
    pub const SS: u64 = 1 << 21;
    /// PAN, bit 22.
    pub const PAN: u64 = 1 << 22;
    /// UAO, bit 23.
    pub const UAO: u64 = 1 << 23;
    /// DIT, bit 24.
    pub const DIT: u64 = 1 << 24;
    /// NZCV, bits [31:28].
    pub const NZCV: u64 = 0xf << 28;
}

/// SCTLR_EL1.SPAN (bit 23): when 0, exception entry to EL1 sets PSTATE.PAN. RES1 on
/// CPUs without FEAT_PAN.
pub const SCTLR_SPAN: u64 = 1 << 23;
/// SCTLR_EL1.DSSBS (bit 44): the value of PSTATE.SSBS on exception entry to EL1.
pub const SCTLR_DSSBS: u64 = 1 << 44;

/// Exception class values written to ESR_EL1.
pub mod ec {
    /// Unknown reason / undefined instruction.
    pub const UNKNOWN: u64 = 0x00;
    /// Instruction abort from a lower EL.
    pub const IABT_LOW: u64 = 0x20;
    /// Instruction abort from the current EL.
    pub const IABT_CUR: u64 = 0x21;
    /// Data abort from a lower EL.
    pub const DABT_LOW: u64 = 0x24;
    /// Data abort from the current EL.
    pub const DABT_CUR: u64 = 0x25;
}

/// Fault status code for a synchronous external abort not on a table walk.
pub const FSC_SYNC_EXTERNAL: u64 = 0x10;

/// Vector table offsets (from VBAR_EL1) of the synchronous entries.
pub mod vector {
    /// Current EL using SP_EL0.
    pub const CURRENT_SP0: u64 = 0x000;
    /// Current EL using SP_ELx.
    pub const CURRENT_SPX: u64 = 0x200;
    /// Lower EL, AArch64.
    pub const LOWER_AARCH64: u64 = 0x400;
    /// Lower EL, AArch32.
    pub const LOWER_AARCH32: u64 = 0x600;
    /// Offset of the synchronous entry within a group.
    pub const SYNC: u64 = 0x000;
}

/// The guest state at the trap, as saved by the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestState {
    /// Guest PSTATE: the SPSR_EL2 value at the trap.
    pub pstate: u64,
    /// Guest PC: the ELR_EL2 value at the trap (the faulting instruction).
    pub pc: u64,
    /// The guest's VBAR_EL1.
    pub vbar_el1: u64,
    /// The guest's SCTLR_EL1 (SPAN and DSSBS are used).
    pub sctlr_el1: u64,
}

/// Which abort to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortKind {
    /// A data abort (EC 0x24/0x25).
    Data,
    /// An instruction abort (EC 0x20/0x21).
    Instruction,
}

/// The register values realising an injected exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    /// New ESR_EL1.
    pub esr_el1: u64,
    /// New FAR_EL1, or `None` to leave it unchanged (undefined instruction).
    pub far_el1: Option<VirtAddr>,
    /// New ELR_EL1: the faulting PC.
    pub elr_el1: u64,
    /// New SPSR_EL1: the guest's PSTATE at the trap.
    pub spsr_el1: u64,
    /// Where the guest resumes (goes into ELR_EL2).
    pub pc: u64,
    /// The guest's PSTATE on resuming (goes into SPSR_EL2).
    pub pstate: u64,
}

/// Why an exception cannot be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectError {
    /// The guest PSTATE names a mode this injector does not model (an AArch32 EL1 guest,
    /// or EL2/EL3).
    UnsupportedMode(u64),
}

impl fmt::Display for InjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedMode(m) => write!(f, "cannot inject into guest mode M={m:#x}"),
        }
    }
}

/// Where the guest was when it trapped, as far as exception entry to EL1 cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum From {
    El1Sp0,
    El1Spx,
    El0Aarch64,
    El0Aarch32,
}

fn classify(pstate: u64) -> Result<From, InjectError> {
    let m = pstate & 0x1f;
    if pstate & psr::NRW != 0 {
        return if m == psr::MODE_AARCH32_USR {
            Ok(From::El0Aarch32)
        } else {
            Err(InjectError::UnsupportedMode(m))
        };
    }
    match m {
        psr::MODE_EL0T => Ok(From::El0Aarch64),
        psr::MODE_EL1T => Ok(From::El1Sp0),
        psr::MODE_EL1H => Ok(From::El1Spx),
        _ => Err(InjectError::UnsupportedMode(m)),
    }
}

/// The PSTATE on exception entry to EL1h, per D1.10 (NZCV and DIT kept, DAIF set,
/// SS/IL/BTYPE/UAO cleared, PAN set when SCTLR_EL1.SPAN is 0, SSBS from
/// SCTLR_EL1.DSSBS).
fn entry_pstate(old: u64, sctlr_el1: u64) -> u64 {
    let mut new = psr::MODE_EL1H | psr::DAIF;
    // NZCV, DIT and PAN sit at the same SPSR bits whether the guest was in AArch64 or
    // AArch32 state.
    new |= old & (psr::NZCV | psr::DIT | psr::PAN);
    if sctlr_el1 & SCTLR_SPAN == 0 {
        new |= psr::PAN;
    }
    if sctlr_el1 & SCTLR_DSSBS != 0 {
        new |= psr::SSBS;
    }
    new
}

fn enter(state: &GuestState, from: From, esr_el1: u64, far_el1: Option<VirtAddr>) -> Injection {
    let group = match from {
        From::El1Sp0 => vector::CURRENT_SP0,
        From::El1Spx => vector::CURRENT_SPX,
        From::El0Aarch64 => vector::LOWER_AARCH64,
        From::El0Aarch32 => vector::LOWER_AARCH32,
    };
    Injection {
        esr_el1,
        far_el1,
        elr_el1: state.pc,
        spsr_el1: state.pstate,
        pc: (state.vbar_el1 & !0x7ff).wrapping_add(group + vector::SYNC),
        pstate: entry_pstate(state.pstate, state.sctlr_el1),
    }
}

/// A synchronous external abort (FSC 0x10) at `far`. `il` is the IL bit of the
/// trapping ESR_EL2 and is reported for data aborts; instruction aborts always report
/// IL=1 (the bit is RES1 for them). EC is the lower-EL variant when the guest was at
/// EL0, the current-EL variant when it was at EL1.
pub fn external_abort(
    state: &GuestState,
    kind: AbortKind,
    far: VirtAddr,
    il: bool,
) -> Result<Injection, InjectError> {
    let from = classify(state.pstate)?;
    let lower = matches!(from, From::El0Aarch64 | From::El0Aarch32);
    let (ec, il) = match (kind, lower) {
        (AbortKind::Data, true) => (ec::DABT_LOW, il),
        (AbortKind::Data, false) => (ec::DABT_CUR, il),
        (AbortKind::Instruction, true) => (ec::IABT_LOW, true),
        (AbortKind::Instruction, false) => (ec::IABT_CUR, true),
    };
    let esr = ec << 26 | (il as u64) << 25 | FSC_SYNC_EXTERNAL;
    Ok(enter(state, from, esr, Some(far)))
}

/// An undefined-instruction exception (EC 0x00). `il` is the IL bit of the trapping
/// ESR_EL2 (1 for a 32-bit instruction). FAR_EL1 is left unchanged.
pub fn undefined_instruction(state: &GuestState, il: bool) -> Result<Injection, InjectError> {
    let from = classify(state.pstate)?;
    let esr = ec::UNKNOWN << 26 | (il as u64) << 25;
    Ok(enter(state, from, esr, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VBAR: u64 = 0x4008_0800;
    const SCTLR: u64 = 0x30d0_0980 | SCTLR_SPAN; // a typical SCTLR_EL1, SPAN set

    fn state(pstate: u64) -> GuestState {
        GuestState {
            pstate,
            pc: 0x4008_1234,
            vbar_el1: VBAR,
            sctlr_el1: SCTLR,
        }
    }

    #[test]
    fn data_abort_from_el1h() {
        let st = state(0x6000_03c5);
        let inj = external_abort(&st, AbortKind::Data, VirtAddr::new(0x1000_0000), true).unwrap();
        assert_eq!(inj.esr_el1, 0x9600_0010); // EC 0x25, IL, FSC 0x10
        assert_eq!(inj.far_el1, Some(VirtAddr::new(0x1000_0000)));
        assert_eq!(inj.elr_el1, 0x4008_1234);
        assert_eq!(inj.spsr_el1, 0x6000_03c5);
        assert_eq!(inj.pc, VBAR + 0x200);
        assert_eq!(inj.pstate, 0x6000_03c5); // NZCV kept, DAIF masked, EL1h
    }

    #[test]
    fn data_abort_from_el1t() {
        let inj = external_abort(
            &state(0x0000_0004),
            AbortKind::Data,
            VirtAddr::new(8),
            false,
        )
        .unwrap();
        assert_eq!(inj.pc, VBAR);
        assert_eq!(inj.esr_el1, 0x25 << 26 | 0x10);
        assert_eq!(inj.pstate, 0x3c5);
    }

    #[test]
    fn aborts_from_el0() {
        let inj =
            external_abort(&state(0x8000_0000), AbortKind::Data, VirtAddr::new(8), true).unwrap();
        assert_eq!(inj.pc, VBAR + 0x400);
        assert_eq!(inj.esr_el1, 0x24 << 26 | 1 << 25 | 0x10);
        assert_eq!(inj.pstate, 0x8000_03c5);
        let inj = external_abort(
            &state(0x10),
            AbortKind::Instruction,
            VirtAddr::new(8),
            false,
        )
        .unwrap();
        assert_eq!(inj.pc, VBAR + 0x600);
        assert_eq!(inj.esr_el1, 0x20 << 26 | 1 << 25 | 0x10);
        assert_eq!(inj.spsr_el1, 0x10);
    }

    #[test]
    fn instruction_abort_current_el() {
        let inj = external_abort(
            &state(0x3c5),
            AbortKind::Instruction,
            VirtAddr::new(0x4000_0000),
            false,
        )
        .unwrap();
        assert_eq!(inj.esr_el1, 0x8600_0010);
        assert_eq!(inj.pc, VBAR + 0x200);
        assert_eq!(inj.far_el1, Some(VirtAddr::new(0x4000_0000)));
    }

    #[test]
    fn undefined() {
        let inj = undefined_instruction(&state(0x3c5), true).unwrap();
        assert_eq!(inj.esr_el1, 0x0200_0000);
        assert_eq!(inj.far_el1, None);
        assert_eq!(inj.pc, VBAR + 0x200);
        let inj = undefined_instruction(&state(0x0), true).unwrap();
        assert_eq!(inj.pc, VBAR + 0x400);
    }

    #[test]
    fn pstate_side_bits() {
        // SS, IL, BTYPE and UAO cleared; DIT kept; PAN kept.
        let old = psr::SS | psr::IL | psr::BTYPE | psr::UAO | psr::DIT | psr::PAN | psr::MODE_EL1H;
        let inj = external_abort(&state(old), AbortKind::Data, VirtAddr::new(0), true).unwrap();
        assert_eq!(inj.pstate, psr::DIT | psr::PAN | psr::DAIF | psr::MODE_EL1H);
        // SPAN clear sets PAN; DSSBS sets SSBS.
        let mut st = state(psr::MODE_EL1H);
        st.sctlr_el1 = SCTLR_DSSBS;
        let inj = external_abort(&st, AbortKind::Data, VirtAddr::new(0), true).unwrap();
        assert_eq!(
            inj.pstate,
            psr::PAN | psr::SSBS | psr::DAIF | psr::MODE_EL1H
        );
    }

    #[test]
    fn vbar_low_bits_ignored_and_bad_modes() {
        let mut st = state(0x3c5);
        st.vbar_el1 = 0x4000_07ff;
        assert_eq!(undefined_instruction(&st, true).unwrap().pc, 0x4000_0200);
        assert_eq!(
            undefined_instruction(&state(0x3c9), true),
            Err(InjectError::UnsupportedMode(0x9))
        );
        assert_eq!(
            undefined_instruction(&state(0x1d3), true),
            Err(InjectError::UnsupportedMode(0x13))
        );
    }

    /// Every AArch64 M[3:0] value and the AArch32 modes: the vector group, the EC
    /// variant, or the refusal.
    #[test]
    fn vector_choice_for_every_mode() {
        for m in 0..32u64 {
            let st = state(m | psr::DAIF);
            let got = external_abort(&st, AbortKind::Data, VirtAddr::new(0), true);
            let want = match m {
                0b0_0000 => Some((0x400, ec::DABT_LOW)),
                0b0_0100 => Some((0x000, ec::DABT_CUR)),
                0b0_0101 => Some((0x200, ec::DABT_CUR)),
                0b1_0000 => Some((0x600, ec::DABT_LOW)),
                _ => None,
            };
            match (got, want) {
                (Ok(inj), Some((off, ec))) => {
                    assert_eq!(inj.pc, VBAR + off, "M={m:#x}");
                    assert_eq!(inj.esr_el1 >> 26, ec, "M={m:#x}");
                }
                (Err(InjectError::UnsupportedMode(mm)), None) => assert_eq!(mm, m),
                (g, w) => panic!("M={m:#x}: got {g:?}, want {w:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics(pstate in any::<u64>(), pc in any::<u64>(), vbar in any::<u64>(), sctlr in any::<u64>(), far in any::<u64>()) {
            let st = GuestState { pstate, pc, vbar_el1: vbar, sctlr_el1: sctlr };
            if let Ok(inj) = external_abort(&st, AbortKind::Data, VirtAddr::new(far), true) {
                prop_assert_eq!(inj.pstate & 0x3cf, 0x3c5);
                prop_assert_eq!(inj.elr_el1, pc);
            }
        }
    }
}
