//! Decoding of the exception syndrome (ESR_EL2, or the ARMv7 HSR) into typed values.
//!
//! One decoder serves both architectures: the ARMv7 Hyp Syndrome Register has the same
//! EC/IL/ISS layout as the low 32 bits of ESR_EL2 (ARMv8-A ARM, register description
//! "ESR_EL2"; ARMv7-A ARM, "Hyp Syndrome Register"), so an HSR value zero-extended to
//! `u64` decodes the same way. Every field is extracted with masks and shifts:
//! decoding never panics, whatever the (guest-influenced) syndrome holds.

/// Exception class values (ESR_ELx.EC, bits [31:26]) that this decoder knows.
pub mod ec {
    /// Unknown reason (includes undefined instructions trapped to EL2).
    pub const UNKNOWN: u8 = 0x00;
    /// Trapped WFI or WFE.
    pub const WFX: u8 = 0x01;
    /// Trapped MCR or MRC access to CP15 (AArch32).
    pub const CP15_RT: u8 = 0x03;
    /// Trapped MCRR or MRRC access to CP15 (AArch32).
    pub const CP15_RRT: u8 = 0x04;
    /// Trapped MCR or MRC access to CP14 (AArch32).
    pub const CP14_RT: u8 = 0x05;
    /// Trapped LDC or STC access to CP14 (AArch32).
    pub const CP14_LS: u8 = 0x06;
    /// HVC executed in AArch32 state.
    pub const HVC32: u8 = 0x12;
    /// SMC executed in AArch32 state.
    pub const SMC32: u8 = 0x13;
    /// HVC executed in AArch64 state.
    pub const HVC64: u8 = 0x16;
    /// SMC executed in AArch64 state.
    pub const SMC64: u8 = 0x17;
    /// Trapped MSR, MRS or System instruction (AArch64).
    pub const SYS64: u8 = 0x18;
    /// Instruction abort from a lower exception level.
    pub const IABT_LOW: u8 = 0x20;
    /// Instruction abort taken without a change in exception level.
    pub const IABT_CUR: u8 = 0x21;
    /// Data abort from a lower exception level.
    pub const DABT_LOW: u8 = 0x24;
    /// Data abort taken without a change in exception level.
    pub const DABT_CUR: u8 = 0x25;
}

#[inline]
const fn bits(v: u64, hi: u32, lo: u32) -> u64 {
    (v >> lo) & ((1u64 << (hi - lo + 1)) - 1)
}

#[inline]
const fn bit(v: u64, n: u32) -> bool {
    (v >> n) & 1 == 1
}

/// A decoded syndrome: the common fields plus the class-specific decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syndrome {
    /// The raw register value as saved at the trap.
    pub raw: u64,
    /// Exception class, bits [31:26].
    pub ec: u8,
    /// Instruction length bit, bit [25]: true for a 32-bit instruction.
    pub il: bool,
    /// Instruction specific syndrome, bits [24:0].
    pub iss: u32,
    /// The class-specific decoding of `iss`.
    pub class: ExceptionClass,
}

impl Syndrome {
    /// Length in bytes of the trapped instruction (4, or 2 for a 16-bit T32 instruction),
    /// i.e. how far to advance ELR_EL2 to skip it.
    pub const fn instr_len(&self) -> u64 {
        if self.il {
            4
        } else {
            2
        }
    }
}

/// The class-specific meaning of a syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    /// EC 0x00: unknown reason.
    Unknown,
    /// EC 0x01: trapped WFI/WFE (and WFIT/WFET).
    WfiWfe(WfxIss),
    /// EC 0x03: MCR/MRC to CP15.
    Cp15Mcr(CpRtIss),
    /// EC 0x04: MCRR/MRRC to CP15.
    Cp15Mcrr(CpRrtIss),
    /// EC 0x05: MCR/MRC to CP14.
    Cp14Mcr(CpRtIss),
    /// EC 0x06: LDC/STC to CP14.
    Cp14Ldc(LdcIss),
    /// EC 0x12: HVC from AArch32, with its immediate.
    Hvc32 {
        /// The instruction's 16-bit immediate.
        imm: u16,
    },
    /// EC 0x13: SMC from AArch32.
    Smc32 {
        /// Condition information for the trapped instruction.
        cond: Condition,
        /// CCKNOWNPASS, bit [19]: the condition is known to have passed.
        cc_known_pass: bool,
    },
    /// EC 0x16: HVC from AArch64, with its immediate.
    Hvc64 {
        /// The instruction's 16-bit immediate.
        imm: u16,
    },
    /// EC 0x17: SMC from AArch64, with its immediate.
    Smc64 {
        /// The instruction's 16-bit immediate.
        imm: u16,
    },
    /// EC 0x18: MSR/MRS/system instruction.
    SysReg(SysRegIss),
    /// EC 0x20: instruction abort from a lower EL.
    InstrAbortLower(InstrAbortIss),
    /// EC 0x24: data abort from a lower EL.
    DataAbortLower(DataAbortIss),
    /// Any other class: raw EC and ISS.
    Other {
        /// Exception class.
        ec: u8,
        /// Instruction specific syndrome.
        iss: u32,
    },
}

/// The AArch32 condition information carried by several ISS encodings (CV, bit [24];
/// COND, bits [23:20]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Condition {
    /// CV: the COND field is valid.
    pub valid: bool,
    /// COND: the instruction's condition code (meaningful only if `valid`).
    pub cond: u8,
}

impl Condition {
    fn from_iss(iss: u64) -> Self {
        Self {
            valid: bit(iss, 24),
            cond: bits(iss, 23, 20) as u8,
        }
    }

    /// Whether the trapped instruction would have executed given the guest's NZCV flags
    /// (`nzcv` = N in bit 3 ... V in bit 0, see [`nzcv_from_spsr`]). An invalid COND
    /// field means the instruction was unconditional or already known to pass.
    pub fn passed(&self, nzcv: u8) -> bool {
        !self.valid || condition_passed(self.cond, nzcv)
    }
}

/// The NZCV flags (N in bit 3 ... V in bit 0) from a saved SPSR/PSTATE value.
pub const fn nzcv_from_spsr(spsr: u64) -> u8 {
    ((spsr >> 28) & 0xf) as u8
}

/// The ARM condition check (ARM ARM, "ConditionHolds"): does condition code `cond`
/// (low 4 bits used) hold for flags `nzcv` (N in bit 3, Z bit 2, C bit 1, V bit 0)?
pub fn condition_passed(cond: u8, nzcv: u8) -> bool {
    let n = nzcv & 8 != 0;
    let z = nzcv & 4 != 0;
    let c = nzcv & 2 != 0;
    let v = nzcv & 1 != 0;
    let base = match (cond >> 1) & 7 {
        0 => z,            // EQ / NE
        1 => c,            // CS / CC
        2 => n,            // MI / PL
        3 => v,            // VS / VC
        4 => c && !z,      // HI / LS
        5 => n == v,       // GE / LT
        6 => n == v && !z, // GT / LE
        _ => true,         // AL (0b1110), and 0b1111 which also always holds
    };
    if cond & 1 == 1 && cond != 0xf {
        !base
    } else {
        base
    }
}

/// ISS of a trapped WFI/WFE (EC 0x01).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WfxIss {
    /// AArch32 condition information.
    pub cond: Condition,
    /// TI, bits [1:0]: 0 WFI, 1 WFE, 2 WFIT, 3 WFET.
    pub ti: u8,
}

impl WfxIss {
    /// True for WFE/WFET, false for WFI/WFIT.
    pub const fn is_wfe(&self) -> bool {
        self.ti & 1 == 1
    }
}

/// ISS of a trapped MCR/MRC (EC 0x03 CP15, 0x05 CP14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpRtIss {
    /// AArch32 condition information.
    pub cond: Condition,
    /// Opc2, bits [19:17].
    pub opc2: u8,
    /// Opc1, bits [16:14].
    pub opc1: u8,
    /// CRn, bits [13:10].
    pub crn: u8,
    /// Rt, bits [9:5].
    pub rt: u8,
    /// CRm, bits [4:1].
    pub crm: u8,
    /// Direction, bit [0]: true for a read (MRC), false for a write (MCR).
    pub read: bool,
}

/// ISS of a trapped MCRR/MRRC (EC 0x04).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpRrtIss {
    /// AArch32 condition information.
    pub cond: Condition,
    /// Opc1, bits [19:16].
    pub opc1: u8,
    /// Rt2, bits [14:10].
    pub rt2: u8,
    /// Rt, bits [9:5].
    pub rt: u8,
    /// CRm, bits [4:1].
    pub crm: u8,
    /// Direction, bit [0]: true for a read (MRRC).
    pub read: bool,
}

/// ISS of a trapped LDC/STC (EC 0x06).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LdcIss {
    /// AArch32 condition information.
    pub cond: Condition,
    /// imm8, bits [19:12].
    pub imm8: u8,
    /// Rn, bits [9:5].
    pub rn: u8,
    /// Offset, bit [4]: true to add the offset.
    pub add: bool,
    /// AM, bits [3:1]: addressing mode.
    pub am: u8,
    /// Direction, bit [0]: true for a read from memory (LDC).
    pub read: bool,
}

/// ISS of a trapped MSR/MRS/system instruction (EC 0x18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegIss {
    /// Op0, bits [21:20].
    pub op0: u8,
    /// Op2, bits [19:17].
    pub op2: u8,
    /// Op1, bits [16:14].
    pub op1: u8,
    /// CRn, bits [13:10].
    pub crn: u8,
    /// Rt, bits [9:5] (31 = XZR).
    pub rt: u8,
    /// CRm, bits [4:1].
    pub crm: u8,
    /// Direction, bit [0]: true for a read (MRS), false for a write (MSR).
    pub read: bool,
}

impl SysRegIss {
    /// The register encoding with the direction and Rt masked out, comparable with
    /// [`sysreg`]: `(op0, op1, crn, crm, op2)` packed as in the ISS.
    pub const fn key(&self) -> u32 {
        sysreg(self.op0, self.op1, self.crn, self.crm, self.op2)
    }
}

/// Packs a system register encoding the way EC 0x18's ISS does (Rt and direction zero),
/// for matching against [`SysRegIss::key`].
pub const fn sysreg(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> u32 {
    ((op0 as u32 & 3) << 20)
        | ((op2 as u32 & 7) << 17)
        | ((op1 as u32 & 7) << 14)
        | ((crn as u32 & 0xf) << 10)
        | ((crm as u32 & 0xf) << 1)
}

/// ISS of an instruction abort (EC 0x20/0x21).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstrAbortIss {
    /// FnV, bit [10]: FAR is not valid.
    pub fnv: bool,
    /// EA, bit [9]: external abort type.
    pub ea: bool,
    /// S1PTW, bit [7]: stage-2 fault on a stage-1 table walk.
    pub s1ptw: bool,
    /// IFSC, bits [5:0].
    pub ifsc: u8,
}

impl InstrAbortIss {
    /// The classified fault status.
    pub fn fault(&self) -> FaultStatus {
        FaultStatus::from_fsc(self.ifsc)
    }
}

/// ISS of a data abort (EC 0x24/0x25).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbortIss {
    /// ISV, bit [24]: bits [23:14] hold a valid instruction syndrome.
    pub isv: bool,
    /// SAS, bits [23:22]: access size log2 (0 byte, 1 halfword, 2 word, 3 doubleword).
    pub sas: u8,
    /// SSE, bit [21]: the load sign-extends.
    pub sse: bool,
    /// SRT, bits [20:16]: the transfer register.
    pub srt: u8,
    /// SF, bit [15]: the register is 64-bit (X, not W).
    pub sf: bool,
    /// AR, bit [14]: acquire/release semantics.
    pub ar: bool,
    /// FnV, bit [10]: FAR is not valid.
    pub fnv: bool,
    /// EA, bit [9]: external abort type.
    pub ea: bool,
    /// CM, bit [8]: fault from a cache maintenance or address translation instruction.
    pub cm: bool,
    /// S1PTW, bit [7]: stage-2 fault on a stage-1 table walk.
    pub s1ptw: bool,
    /// WnR, bit [6]: the access was a write.
    pub wnr: bool,
    /// DFSC, bits [5:0].
    pub dfsc: u8,
}

impl DataAbortIss {
    /// Decodes the ISS bits of a data abort syndrome.
    pub fn from_iss(iss: u32) -> Self {
        let i = iss as u64;
        Self {
            isv: bit(i, 24),
            sas: bits(i, 23, 22) as u8,
            sse: bit(i, 21),
            srt: bits(i, 20, 16) as u8,
            sf: bit(i, 15),
            ar: bit(i, 14),
            fnv: bit(i, 10),
            ea: bit(i, 9),
            cm: bit(i, 8),
            s1ptw: bit(i, 7),
            wnr: bit(i, 6),
            dfsc: bits(i, 5, 0) as u8,
        }
    }

    /// Access size in bytes (1, 2, 4 or 8) per SAS; meaningful only if `isv`.
    pub const fn access_size(&self) -> u8 {
        1 << self.sas
    }

    /// The classified fault status.
    pub fn fault(&self) -> FaultStatus {
        FaultStatus::from_fsc(self.dfsc)
    }
}

/// A classified data/instruction fault status code (DFSC/IFSC, long-descriptor format).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    /// Address size fault at a lookup level (-1..=3).
    AddressSize {
        /// Lookup level.
        level: i8,
    },
    /// Translation fault at a lookup level (-1..=3).
    Translation {
        /// Lookup level.
        level: i8,
    },
    /// Access flag fault at a lookup level (0..=3).
    AccessFlag {
        /// Lookup level.
        level: i8,
    },
    /// Permission fault at a lookup level (0..=3).
    Permission {
        /// Lookup level.
        level: i8,
    },
    /// Synchronous external abort, not on a table walk (0x10).
    SyncExternal,
    /// Synchronous tag check fault (0x11).
    TagCheck,
    /// Synchronous external abort on a table walk at a level (-1..=3).
    SyncExternalOnWalk {
        /// Lookup level.
        level: i8,
    },
    /// Synchronous parity/ECC error, not on a table walk (0x18).
    Parity,
    /// Synchronous parity/ECC error on a table walk at a level (-1..=3).
    ParityOnWalk {
        /// Lookup level.
        level: i8,
    },
    /// Alignment fault (0x21).
    Alignment,
    /// TLB conflict abort (0x30).
    TlbConflict,
    /// Unsupported atomic hardware update fault (0x31).
    UnsupportedAtomic,
    /// Any other (reserved or implementation defined) code.
    Other(u8),
}

impl FaultStatus {
    /// Classifies a 6-bit fault status code (upper bits ignored).
    pub fn from_fsc(fsc: u8) -> Self {
        let fsc = fsc & 0x3f;
        let level = (fsc & 3) as i8;
        match fsc {
            0x00..=0x03 => Self::AddressSize { level },
            0x04..=0x07 => Self::Translation { level },
            0x08..=0x0b => Self::AccessFlag { level },
            0x0c..=0x0f => Self::Permission { level },
            0x10 => Self::SyncExternal,
            0x11 => Self::TagCheck,
            0x13 => Self::SyncExternalOnWalk { level: -1 },
            0x14..=0x17 => Self::SyncExternalOnWalk { level },
            0x18 => Self::Parity,
            0x1b => Self::ParityOnWalk { level: -1 },
            0x1c..=0x1f => Self::ParityOnWalk { level },
            0x21 => Self::Alignment,
            0x29 => Self::AddressSize { level: -1 },
            0x2b => Self::Translation { level: -1 },
            0x30 => Self::TlbConflict,
            0x31 => Self::UnsupportedAtomic,
            other => Self::Other(other),
        }
    }

    /// True for a translation fault at any level (e.g. an unmapped stage-2 IPA).
    pub const fn is_translation(&self) -> bool {
        matches!(self, Self::Translation { .. })
    }

    /// True for a permission fault at any level.
    pub const fn is_permission(&self) -> bool {
        matches!(self, Self::Permission { .. })
    }
}

/// Decodes a saved ESR_EL2 (or a zero-extended ARMv7 HSR) value. Never panics.
pub fn decode(esr: u64) -> Syndrome {
    let ec = bits(esr, 31, 26) as u8;
    let il = bit(esr, 25);
    let iss = bits(esr, 24, 0) as u32;
    let i = iss as u64;
    let cond = Condition::from_iss(i);
    let class = match ec {
        ec::UNKNOWN => ExceptionClass::Unknown,
        ec::WFX => ExceptionClass::WfiWfe(WfxIss {
            cond,
            ti: bits(i, 1, 0) as u8,
        }),
        ec::CP15_RT | ec::CP14_RT => {
            let a = CpRtIss {
                cond,
                opc2: bits(i, 19, 17) as u8,
                opc1: bits(i, 16, 14) as u8,
                crn: bits(i, 13, 10) as u8,
                rt: bits(i, 9, 5) as u8,
                crm: bits(i, 4, 1) as u8,
                read: bit(i, 0),
            };
            if ec == ec::CP15_RT {
                ExceptionClass::Cp15Mcr(a)
            } else {
                ExceptionClass::Cp14Mcr(a)
            }
        }
        ec::CP15_RRT => ExceptionClass::Cp15Mcrr(CpRrtIss {
            cond,
            opc1: bits(i, 19, 16) as u8,
            rt2: bits(i, 14, 10) as u8,
            rt: bits(i, 9, 5) as u8,
            crm: bits(i, 4, 1) as u8,
            read: bit(i, 0),
        }),
        ec::CP14_LS => ExceptionClass::Cp14Ldc(LdcIss {
            cond,
            imm8: bits(i, 19, 12) as u8,
            rn: bits(i, 9, 5) as u8,
            add: bit(i, 4),
            am: bits(i, 3, 1) as u8,
            read: bit(i, 0),
        }),
        ec::HVC32 => ExceptionClass::Hvc32 {
            imm: bits(i, 15, 0) as u16,
        },
        ec::SMC32 => ExceptionClass::Smc32 {
            cond,
            cc_known_pass: bit(i, 19),
        },
        ec::HVC64 => ExceptionClass::Hvc64 {
            imm: bits(i, 15, 0) as u16,
        },
        ec::SMC64 => ExceptionClass::Smc64 {
            imm: bits(i, 15, 0) as u16,
        },
        ec::SYS64 => ExceptionClass::SysReg(SysRegIss {
            op0: bits(i, 21, 20) as u8,
            op2: bits(i, 19, 17) as u8,
            op1: bits(i, 16, 14) as u8,
            crn: bits(i, 13, 10) as u8,
            rt: bits(i, 9, 5) as u8,
            crm: bits(i, 4, 1) as u8,
            read: bit(i, 0),
        }),
        ec::IABT_LOW => ExceptionClass::InstrAbortLower(InstrAbortIss {
            fnv: bit(i, 10),
            ea: bit(i, 9),
            s1ptw: bit(i, 7),
            ifsc: bits(i, 5, 0) as u8,
        }),
        ec::DABT_LOW => ExceptionClass::DataAbortLower(DataAbortIss::from_iss(iss)),
        _ => ExceptionClass::Other { ec, iss },
    };
    Syndrome {
        raw: esr,
        ec,
        il,
        iss,
        class,
    }
}

#[cfg(test)]
// Syndromes are spelled out field by field, zero fields included.
#[allow(clippy::identity_op)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mk(ec: u8, il: bool, iss: u32) -> u64 {
        ((ec as u64) << 26) | ((il as u64) << 25) | (iss as u64 & 0x1ff_ffff)
    }

    #[test]
    fn unknown() {
        let s = decode(mk(0, true, 0));
        assert_eq!(s.class, ExceptionClass::Unknown);
        assert_eq!(s.instr_len(), 4);
        assert_eq!(decode(mk(0, false, 0)).instr_len(), 2);
    }

    #[test]
    fn wfi_wfe() {
        // WFI from AArch64: ESR 0x0600_0000 | IL.
        let s = decode(0x0600_0000 | 1 << 25);
        match s.class {
            ExceptionClass::WfiWfe(w) => assert!(!w.is_wfe()),
            c => panic!("{c:?}"),
        }
        let s = decode(mk(1, true, 1 << 24 | 0xe << 20 | 1));
        match s.class {
            ExceptionClass::WfiWfe(w) => {
                assert!(w.is_wfe());
                assert_eq!(
                    w.cond,
                    Condition {
                        valid: true,
                        cond: 0xe
                    }
                );
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn cp15_mcr_mrc() {
        // MRC p15, 0, r3, c1, c0, 0 (SCTLR read), condition NE valid.
        let iss = 1 << 24 | 0x1 << 20 | 0 << 17 | 0 << 14 | 1 << 10 | 3 << 5 | 0 << 1 | 1;
        let s = decode(mk(0x03, true, iss));
        assert_eq!(
            s.class,
            ExceptionClass::Cp15Mcr(CpRtIss {
                cond: Condition {
                    valid: true,
                    cond: 1
                },
                opc2: 0,
                opc1: 0,
                crn: 1,
                rt: 3,
                crm: 0,
                read: true
            })
        );
        // MCR p15, 7, r14, c15, c14, 5
        let iss = 5 << 17 | 7 << 14 | 15 << 10 | 14 << 5 | 14 << 1;
        match decode(mk(0x03, true, iss)).class {
            ExceptionClass::Cp15Mcr(a) => {
                assert_eq!(
                    (a.opc2, a.opc1, a.crn, a.rt, a.crm, a.read),
                    (5, 7, 15, 14, 14, false)
                );
                assert!(!a.cond.valid);
                assert!(a.cond.passed(0));
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn cp14_mcr_and_mcrr_and_ldc() {
        let iss = 2 << 17 | 1 << 14 | 0 << 10 | 7 << 5 | 5 << 1 | 1;
        match decode(mk(0x05, true, iss)).class {
            ExceptionClass::Cp14Mcr(a) => {
                assert_eq!(
                    (a.opc2, a.opc1, a.crn, a.rt, a.crm, a.read),
                    (2, 1, 0, 7, 5, true)
                )
            }
            c => panic!("{c:?}"),
        }
        // MRRC p15, 1, r0, r1, c14 (CNTPCT)
        let iss = 1 << 24 | 0xe << 20 | 1 << 16 | 1 << 10 | 0 << 5 | 14 << 1 | 1;
        assert_eq!(
            decode(mk(0x04, true, iss)).class,
            ExceptionClass::Cp15Mcrr(CpRrtIss {
                cond: Condition {
                    valid: true,
                    cond: 0xe
                },
                opc1: 1,
                rt2: 1,
                rt: 0,
                crm: 14,
                read: true
            })
        );
        let iss = 0x80 << 12 | 2 << 5 | 1 << 4 | 3 << 1;
        assert_eq!(
            decode(mk(0x06, true, iss)).class,
            ExceptionClass::Cp14Ldc(LdcIss {
                cond: Condition {
                    valid: false,
                    cond: 0
                },
                imm8: 0x80,
                rn: 2,
                add: true,
                am: 3,
                read: false
            })
        );
    }

    #[test]
    fn hvc_smc() {
        assert_eq!(
            decode(mk(0x12, true, 0x1234)).class,
            ExceptionClass::Hvc32 { imm: 0x1234 }
        );
        assert_eq!(
            decode(mk(0x13, true, 1 << 24 | 0xb << 20 | 1 << 19)).class,
            ExceptionClass::Smc32 {
                cond: Condition {
                    valid: true,
                    cond: 0xb
                },
                cc_known_pass: true
            }
        );
        // HVC #0 from AArch64: ESR 0x5a00_0000.
        let s = decode(0x5a00_0000);
        assert_eq!(s.class, ExceptionClass::Hvc64 { imm: 0 });
        assert_eq!(s.ec, ec::HVC64);
        assert_eq!(
            decode(mk(0x16, true, 0xffff)).class,
            ExceptionClass::Hvc64 { imm: 0xffff }
        );
        assert_eq!(
            decode(mk(0x17, true, 7)).class,
            ExceptionClass::Smc64 { imm: 7 }
        );
    }

    #[test]
    fn sysreg_access() {
        // MRS x5, CNTFRQ_EL0: op0 3, op1 3, CRn 14, CRm 0, op2 0.
        let iss = 3 << 20 | 0 << 17 | 3 << 14 | 14 << 10 | 5 << 5 | 0 << 1 | 1;
        match decode(mk(0x18, true, iss)).class {
            ExceptionClass::SysReg(r) => {
                assert_eq!(
                    (r.op0, r.op1, r.crn, r.crm, r.op2, r.rt, r.read),
                    (3, 3, 14, 0, 0, 5, true)
                );
                assert_eq!(r.key(), sysreg(3, 3, 14, 0, 0));
            }
            c => panic!("{c:?}"),
        }
        // MSR ICC_SGI1R_EL1, x31: op0 3, op1 0, CRn 12, CRm 11, op2 5, write.
        let iss = 3 << 20 | 5 << 17 | 0 << 14 | 12 << 10 | 31 << 5 | 11 << 1;
        match decode(mk(0x18, true, iss)).class {
            ExceptionClass::SysReg(r) => {
                assert_eq!(
                    (r.op0, r.op1, r.crn, r.crm, r.op2, r.rt, r.read),
                    (3, 0, 12, 11, 5, 31, false)
                );
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn instruction_abort() {
        let s = decode(mk(0x20, true, 1 << 10 | 1 << 7 | 0x06));
        assert_eq!(
            s.class,
            ExceptionClass::InstrAbortLower(InstrAbortIss {
                fnv: true,
                ea: false,
                s1ptw: true,
                ifsc: 6
            })
        );
        if let ExceptionClass::InstrAbortLower(a) = s.class {
            assert_eq!(a.fault(), FaultStatus::Translation { level: 2 });
        }
    }

    #[test]
    fn data_abort_every_field() {
        // LDRSH w3, [x0] to an unmapped IPA at level 3: ISV, SAS=1, SSE, SRT=3, SF=0.
        let iss = 1 << 24 | 1 << 22 | 1 << 21 | 3 << 16 | 0x07;
        match decode(mk(0x24, true, iss)).class {
            ExceptionClass::DataAbortLower(d) => {
                assert!(d.isv && d.sse && !d.sf && !d.wnr && !d.ar);
                assert_eq!((d.sas, d.srt, d.access_size()), (1, 3, 2));
                assert_eq!(d.fault(), FaultStatus::Translation { level: 3 });
            }
            c => panic!("{c:?}"),
        }
        let iss = 1 << 24
            | 3 << 22
            | 30 << 16
            | 1 << 15
            | 1 << 14
            | 1 << 10
            | 1 << 9
            | 1 << 8
            | 1 << 7
            | 1 << 6
            | 0x0f;
        let d = DataAbortIss::from_iss(iss);
        assert_eq!(
            d,
            DataAbortIss {
                isv: true,
                sas: 3,
                sse: false,
                srt: 30,
                sf: true,
                ar: true,
                fnv: true,
                ea: true,
                cm: true,
                s1ptw: true,
                wnr: true,
                dfsc: 0x0f
            }
        );
        assert_eq!(d.access_size(), 8);
        assert!(d.fault().is_permission());
    }

    #[test]
    fn other_and_current_el_classes() {
        assert_eq!(
            decode(mk(0x25, true, 0x10)).class,
            ExceptionClass::Other {
                ec: 0x25,
                iss: 0x10
            }
        );
        assert_eq!(
            decode(mk(0x3f, false, 0x1ff_ffff)).class,
            ExceptionClass::Other {
                ec: 0x3f,
                iss: 0x1ff_ffff
            }
        );
    }

    #[test]
    fn armv7_hsr_same_decoder() {
        // HSR for a 32-bit HVC #5 from a guest: EC 0x12, IL 1.
        let hsr: u32 = 0x12 << 26 | 1 << 25 | 5;
        assert_eq!(decode(hsr as u64).class, ExceptionClass::Hvc32 { imm: 5 });
        // HSR data abort with ISV, 16-bit Thumb instruction (IL=0).
        let hsr: u32 = 0x24 << 26 | 1 << 24 | 2 << 22 | 4 << 16 | 1 << 6 | 0x05;
        let s = decode(hsr as u64);
        assert_eq!(s.instr_len(), 2);
        match s.class {
            ExceptionClass::DataAbortLower(d) => {
                assert!(d.wnr && d.isv);
                assert_eq!((d.srt, d.access_size()), (4, 4));
                assert_eq!(d.fault(), FaultStatus::Translation { level: 1 });
            }
            c => panic!("{c:?}"),
        }
        // Upper bits (ISS2 on ARMv8.7+) do not disturb the decoding.
        assert_eq!(decode(0xff_0000_0000 | hsr as u64).class, s.class);
    }

    #[test]
    fn fault_status_classification() {
        use FaultStatus::*;
        let cases = [
            (0x00, AddressSize { level: 0 }),
            (0x03, AddressSize { level: 3 }),
            (0x04, Translation { level: 0 }),
            (0x05, Translation { level: 1 }),
            (0x06, Translation { level: 2 }),
            (0x07, Translation { level: 3 }),
            (0x08, AccessFlag { level: 0 }),
            (0x0b, AccessFlag { level: 3 }),
            (0x0d, Permission { level: 1 }),
            (0x0f, Permission { level: 3 }),
            (0x10, SyncExternal),
            (0x11, TagCheck),
            (0x13, SyncExternalOnWalk { level: -1 }),
            (0x15, SyncExternalOnWalk { level: 1 }),
            (0x18, Parity),
            (0x1b, ParityOnWalk { level: -1 }),
            (0x1e, ParityOnWalk { level: 2 }),
            (0x21, Alignment),
            (0x29, AddressSize { level: -1 }),
            (0x2b, Translation { level: -1 }),
            (0x30, TlbConflict),
            (0x31, UnsupportedAtomic),
            (0x34, Other(0x34)),
            (0x3f, Other(0x3f)),
        ];
        for (fsc, want) in cases {
            assert_eq!(FaultStatus::from_fsc(fsc), want, "fsc {fsc:#x}");
        }
        assert!(Translation { level: 1 }.is_translation());
        assert!(!Permission { level: 1 }.is_translation());
    }

    #[test]
    fn conditions() {
        const N: u8 = 8;
        const Z: u8 = 4;
        const C: u8 = 2;
        const V: u8 = 1;
        assert!(condition_passed(0x0, Z)); // EQ
        assert!(!condition_passed(0x0, 0));
        assert!(condition_passed(0x1, 0)); // NE
        assert!(condition_passed(0x2, C)); // CS
        assert!(condition_passed(0x3, 0)); // CC
        assert!(condition_passed(0x4, N)); // MI
        assert!(condition_passed(0x5, 0)); // PL
        assert!(condition_passed(0x6, V)); // VS
        assert!(condition_passed(0x7, 0)); // VC
        assert!(condition_passed(0x8, C)); // HI
        assert!(!condition_passed(0x8, C | Z));
        assert!(condition_passed(0x9, Z)); // LS
        assert!(condition_passed(0xa, N | V)); // GE
        assert!(!condition_passed(0xa, N));
        assert!(condition_passed(0xb, N)); // LT
        assert!(condition_passed(0xc, 0)); // GT
        assert!(!condition_passed(0xc, Z));
        assert!(condition_passed(0xd, Z)); // LE
        assert!(condition_passed(0xe, 0)); // AL
        assert!(condition_passed(0xf, N | Z | C | V));
        assert_eq!(nzcv_from_spsr(0x6000_03c5), Z | C);
        assert!(Condition {
            valid: true,
            cond: 0
        }
        .passed(Z));
        assert!(!Condition {
            valid: true,
            cond: 0
        }
        .passed(0));
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_keeps_fields(v in any::<u64>()) {
            let s = decode(v);
            prop_assert_eq!(s.ec as u64, (v >> 26) & 0x3f);
            prop_assert_eq!(s.iss as u64, v & 0x1ff_ffff);
            let _ = FaultStatus::from_fsc(v as u8);
            let _ = condition_passed(v as u8, (v >> 8) as u8);
        }
    }
}
