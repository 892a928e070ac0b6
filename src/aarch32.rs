//! AArch32 EL1 guests: banked registers, IT state, CP15 traps, exception entry.
//!
//! Everything the hypervisor needs to run an AArch32 EL1 guest (HCR_EL2.RW=0) under an
//! AArch64 EL2, as pure functions over the saved [`GuestRegs`] and decoded syndromes. No
//! system register is touched here: callers read SCTLR/VBAR/TTBCR and write back the
//! values an [`Injection32`] names. Every input is guest-controlled, so nothing here
//! panics, whatever the register and syndrome values.
//!
//! # Conventions (ARM ARM, DDI 0487)
//!
//! - **Registers.** An AArch32 guest's R0-R14 of every mode live in the AArch64 X
//!   registers the world switch saves (`GuestRegs::x`), banked per mode as in the table
//!   "Mapping of the general-purpose registers between the Execution states" (chapter D1,
//!   "The AArch64 System Level Programmers' Model"; pseudocode `LookUpRIndex`).
//!   [`reg_index`] implements it.
//! - **Syndrome register numbers are already AArch64 numbers.** The Rt/Rt2 fields of a
//!   trapped MCR/MRC/MCRR/MRRC (ESR_EL2 EC 0x03-0x06, 0x0C) give "the AArch64 view of the
//!   register", and AArch32 R15 is reported as 0b11111 (ARM ARM, ISS encoding for an
//!   exception from an MCR or MRC access). So use [`read_rt`]/[`write_rt`] with an ISS
//!   Rt, and [`get_reg`]/[`set_reg`] only with an AArch32 register number decoded from an
//!   instruction.
//! - **PSTATE** (`GuestRegs::pstate`) is the AArch64 SPSR_EL2 view of the AArch32 CPSR
//!   (register "SPSR_EL2", exception taken from AArch32 state; C5.2.18 in DDI 0487E.a):
//!   DIT is bit 24 and SS bit 21. The AArch32 SPSR_und/SPSR_abt the guest reads has DIT
//!   at bit 21 and J (RES0) at bit 24 (AArch32 registers "SPSR_und", "SPSR_abt"; G8.2.132
//!   and G8.2.126 in DDI 0487E.a); [`spsr_el2_to_spsr32`] converts.
//! - **Where the AArch32 EL1 registers live at AArch64 EL2** (the architectural mappings
//!   stated in each AArch32 register description): SCTLR = SCTLR_EL1\[31:0\], VBAR =
//!   VBAR_EL1\[31:0\], TTBR0/TTBR1 = TTBR0_EL1/TTBR1_EL1, TTBCR = TCR_EL1\[31:0\], TTBCR2 =
//!   TCR_EL1\[63:32\], DACR = DACR32_EL2, PRRR (MAIR0) = MAIR_EL1\[31:0\], NMRR (MAIR1) =
//!   MAIR_EL1\[63:32\], AMAIR0/AMAIR1 = AMAIR_EL1 low/high halves, CONTEXTIDR =
//!   CONTEXTIDR_EL1, DFSR = ESR_EL1\[31:0\], IFSR = IFSR32_EL2, ADFSR = AFSR0_EL1\[31:0\],
//!   AIFSR = AFSR1_EL1\[31:0\], DFAR = FAR_EL1\[31:0\], IFAR = FAR_EL1\[63:32\], SPSR_und =
//!   SPSR_und, SPSR_abt = SPSR_abt, SPSR_svc = SPSR_EL1.

use crate::esr::{condition_passed, nzcv_from_spsr, Condition, CpRrtIss, CpRtIss};
use crate::shadow::TlbOp;
use crate::vm::GuestRegs;

/// Bits of an AArch32 PSTATE in the SPSR_EL2 view (ARM ARM register "SPSR_EL2", for an
/// exception taken from AArch32 state), i.e. the layout of `GuestRegs::pstate`.
pub mod psr {
    /// M\[4:0\]: the AArch32 mode (M\[4\] = 1 means AArch32).
    pub const M: u64 = 0x1f;
    /// T: T32 (Thumb) instruction set state.
    pub const T: u64 = 1 << 5;
    /// F: FIQ mask.
    pub const F: u64 = 1 << 6;
    /// I: IRQ mask.
    pub const I: u64 = 1 << 7;
    /// A: SError (asynchronous abort) mask.
    pub const A: u64 = 1 << 8;
    /// E: big-endian data accesses.
    pub const E: u64 = 1 << 9;
    /// IT\[7:2\], bits \[15:10\].
    pub const IT_HI: u64 = 0x3f << 10;
    /// GE\[3:0\], bits \[19:16\].
    pub const GE: u64 = 0xf << 16;
    /// IL: illegal execution state.
    pub const IL: u64 = 1 << 20;
    /// SS: software step (SPSR_EL2 view only; AArch32 has no SS bit).
    pub const SS: u64 = 1 << 21;
    /// PAN: privileged access never.
    pub const PAN: u64 = 1 << 22;
    /// SSBS: speculative store bypass safe.
    pub const SSBS: u64 = 1 << 23;
    /// DIT: data independent timing (bit 24 in the SPSR_EL2 view, bit 21 in AArch32).
    pub const DIT: u64 = 1 << 24;
    /// IT\[1:0\], bits \[26:25\].
    pub const IT_LO: u64 = 3 << 25;
    /// Q: cumulative saturation.
    pub const Q: u64 = 1 << 27;
    /// NZCV condition flags, bits \[31:28\].
    pub const NZCV: u64 = 0xf << 28;
    /// DIT in the AArch32 SPSR view (ARM ARM AArch32 registers "SPSR_und", "SPSR_abt").
    pub const SPSR32_DIT: u32 = 1 << 21;
}

/// AArch32 SCTLR bits used on exception entry (ARM ARM AArch32 register "SCTLR").
pub mod sctlr {
    /// V: high exception vectors (0xFFFF_0000).
    pub const V: u32 = 1 << 13;
    /// SPAN: when 0, exception entry to EL1 sets PSTATE.PAN (RES1 without FEAT_PAN).
    pub const SPAN: u32 = 1 << 23;
    /// EE: endianness on exception entry (CPSR.E).
    pub const EE: u32 = 1 << 25;
    /// TE: T32 exception entry (CPSR.T).
    pub const TE: u32 = 1 << 30;
    /// DSSBS: PSTATE.SSBS on exception entry (RES0 without FEAT_SSBS).
    pub const DSSBS: u32 = 1 << 31;
}

/// TTBCR.EAE (bit 31): the guest uses the Long-descriptor (LPAE) translation format, and
/// so the Long-descriptor DFSR/IFSR format (ARM ARM pseudocode `AArch32.ReportDataAbort`).
pub const TTBCR_EAE: u32 = 1 << 31;

/// Exception vector offsets from the vector base (ARM ARM chapter G1, "Exception vectors";
/// `vect_offset` in `AArch32.TakeUndefInstrException` and friends).
pub mod vector {
    /// Undefined Instruction.
    pub const UNDEF: u32 = 0x04;
    /// Prefetch Abort.
    pub const PREFETCH_ABORT: u32 = 0x0c;
    /// Data Abort.
    pub const DATA_ABORT: u32 = 0x10;
    /// The high vector base, used when SCTLR.V is 1.
    pub const HIGH_BASE: u32 = 0xffff_0000;
}

/// An AArch32 processor mode, CPSR.M\[4:0\] (ARM ARM chapter G1, "AArch32 processor modes").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Mode {
    /// User (EL0).
    Usr = 0x10,
    /// FIQ.
    Fiq = 0x11,
    /// IRQ.
    Irq = 0x12,
    /// Supervisor.
    Svc = 0x13,
    /// Monitor (EL3; never the mode of an EL1 guest).
    Mon = 0x16,
    /// Abort.
    Abt = 0x17,
    /// Hyp (EL2; never the mode of an EL1 guest).
    Hyp = 0x1a,
    /// Undefined.
    Und = 0x1b,
    /// System.
    Sys = 0x1f,
}

impl Mode {
    /// Every mode, in encoding order.
    pub const ALL: [Mode; 9] = [
        Mode::Usr,
        Mode::Fiq,
        Mode::Irq,
        Mode::Svc,
        Mode::Mon,
        Mode::Abt,
        Mode::Hyp,
        Mode::Und,
        Mode::Sys,
    ];

    /// The mode named by bits \[4:0\] of `cpsr` (a CPSR, or the SPSR_EL2 of an AArch32
    /// guest). `None` for a reserved encoding, which includes every value with M\[4\] = 0
    /// (AArch64 states). Other bits are ignored.
    pub const fn from_cpsr(cpsr: u64) -> Option<Mode> {
        Some(match cpsr & psr::M {
            0x10 => Mode::Usr,
            0x11 => Mode::Fiq,
            0x12 => Mode::Irq,
            0x13 => Mode::Svc,
            0x16 => Mode::Mon,
            0x17 => Mode::Abt,
            0x1a => Mode::Hyp,
            0x1b => Mode::Und,
            0x1f => Mode::Sys,
            _ => return None,
        })
    }

    /// The M\[4:0\] encoding of this mode.
    pub const fn bits(self) -> u64 {
        self as u64
    }

    /// True for every mode but User (PL1 or higher).
    pub const fn is_privileged(self) -> bool {
        !matches!(self, Mode::Usr)
    }
}

/// The guest's current mode, from `regs.pstate`; `None` if the guest is not in a valid
/// AArch32 mode (see [`Mode::from_cpsr`]).
pub const fn current_mode(regs: &GuestRegs) -> Option<Mode> {
    Mode::from_cpsr(regs.pstate)
}

/// The index in `GuestRegs::x` holding AArch32 register R`r` as seen in `mode`, per the
/// ARM ARM table "Mapping of the general-purpose registers between the Execution states"
/// (pseudocode `LookUpRIndex`):
///
/// | mode     | R0-R7 | R8-R12  | SP (R13) | LR (R14) |
/// |----------|-------|---------|----------|----------|
/// | usr, sys | X0-X7 | X8-X12  | X13      | X14      |
/// | hyp      | X0-X7 | X8-X12  | X15      | X14      |
/// | irq      | X0-X7 | X8-X12  | X17      | X16      |
/// | svc      | X0-X7 | X8-X12  | X19      | X18      |
/// | abt      | X0-X7 | X8-X12  | X21      | X20      |
/// | und      | X0-X7 | X8-X12  | X23      | X22      |
/// | fiq      | X0-X7 | X24-X28 | X29      | X30      |
///
/// Hyp mode has no banked LR (it uses LR_usr). Returns `None` for R15 (the PC lives in
/// `GuestRegs::pc`), for any `r` above 15, and for SP/LR in Monitor mode (SP_mon and
/// LR_mon belong to EL3 and are not visible from AArch64 EL2); Monitor mode's R0-R12 are
/// the User ones.
pub const fn reg_index(mode: Mode, r: u8) -> Option<usize> {
    let idx = match r {
        0..=7 => r,
        8..=12 => match mode {
            Mode::Fiq => r + 16,
            _ => r,
        },
        13 => match mode {
            Mode::Usr | Mode::Sys => 13,
            Mode::Hyp => 15,
            Mode::Irq => 17,
            Mode::Svc => 19,
            Mode::Abt => 21,
            Mode::Und => 23,
            Mode::Fiq => 29,
            Mode::Mon => return None,
        },
        14 => match mode {
            Mode::Usr | Mode::Sys | Mode::Hyp => 14,
            Mode::Irq => 16,
            Mode::Svc => 18,
            Mode::Abt => 20,
            Mode::Und => 22,
            Mode::Fiq => 30,
            Mode::Mon => return None,
        },
        _ => return None,
    };
    Some(idx as usize)
}

/// Reads AArch32 register R`r` of `mode` (low 32 bits of its X register). `None` where
/// [`reg_index`] is `None` (R15 and above, Monitor SP/LR).
pub fn get_reg(regs: &GuestRegs, mode: Mode, r: u8) -> Option<u32> {
    let i = reg_index(mode, r)?;
    regs.x.get(i).map(|&v| v as u32)
}

/// Writes AArch32 register R`r` of `mode`, zero-extending `value` into its X register.
/// Returns false, and writes nothing, where [`reg_index`] is `None`.
pub fn set_reg(regs: &mut GuestRegs, mode: Mode, r: u8, value: u32) -> bool {
    match reg_index(mode, r).and_then(|i| regs.x.get_mut(i)) {
        Some(slot) => {
            *slot = u64::from(value);
            true
        }
        None => false,
    }
}

/// The register number an ISS gives for AArch32 R15 (and for an unused register field).
pub const ISS_RT_PC: u8 = 31;

/// The index in `GuestRegs::x` of the register an ISS names (SRT of a data abort, Rt/Rt2
/// of a CP14/CP15 trap) for a vCPU in AArch32 state, or `None` for R15/APSR (15 or 31).
///
/// The ARM ARM says the field holds the AArch64 view of the register (R13_svc is 19,
/// R8_fiq 24). QEMU 10 reports the AArch32 register number (R13 is 13 in every mode).
/// Both readings are served: a value up to 14 is taken as an AArch32 register number in
/// the current mode, which is also what a conforming implementation means by it, since
/// it only reports 8..=14 for registers that are not banked in the current mode (8..=12
/// outside FIQ mode, 13 and 14 in User and System modes, where they are X8..X14); a value
/// of 16..=30 is the AArch64 view.
pub fn iss_reg_index(regs: &GuestRegs, r: u8) -> Option<usize> {
    match r {
        0..=14 => reg_index(current_mode(regs).unwrap_or(Mode::Svc), r),
        16..=30 => Some(r as usize),
        _ => None,
    }
}

/// The 32-bit value of the register an ISS names as Rt (see [`iss_reg_index`]); R15
/// (UNPREDICTABLE for MCR/MCRR) reads as 0.
pub fn read_rt(regs: &GuestRegs, rt: u8) -> u32 {
    iss_reg_index(regs, rt).map_or(0, |i| regs.x[i] as u32)
}

/// Completes a trapped read (MRC) into the register an ISS names as Rt (see
/// [`iss_reg_index`]): it gets `value` zero-extended. Rt = 15 or [`ISS_RT_PC`] is
/// `MRC ..., APSR_nzcv, ...`: bits \[31:28\] of `value` go to the guest's N, Z, C and V
/// flags, the rest is discarded (ARM ARM, instruction MRC with Rt = 15).
pub fn write_rt(regs: &mut GuestRegs, rt: u8, value: u32) {
    match iss_reg_index(regs, rt) {
        Some(i) => regs.x[i] = u64::from(value),
        None if rt == 15 || rt == ISS_RT_PC => {
            regs.pstate = (regs.pstate & !psr::NZCV) | (u64::from(value) & psr::NZCV);
        }
        None => {}
    }
}

/// The 64-bit value an MCRR transfers: Rt2 (bits \[63:32\]) : Rt (bits \[31:0\]), with the
/// registers read as by [`read_rt`].
pub fn read_rt_pair(regs: &GuestRegs, iss: &CpRrtIss) -> u64 {
    (u64::from(read_rt(regs, iss.rt2)) << 32) | u64::from(read_rt(regs, iss.rt))
}

/// Completes a trapped MRRC: Rt gets bits \[31:0\] of `value`, Rt2 bits \[63:32\], each
/// zero-extended (see [`iss_reg_index`]). R15 (UNPREDICTABLE for MRRC) is not written.
pub fn write_rt_pair(regs: &mut GuestRegs, iss: &CpRrtIss, value: u64) {
    if let Some(i) = iss_reg_index(regs, iss.rt) {
        regs.x[i] = value & 0xffff_ffff;
    }
    if let Some(i) = iss_reg_index(regs, iss.rt2) {
        regs.x[i] = value >> 32;
    }
}

/// Decodes the ISS of an EC 0x0C syndrome (trapped MRRC/MCRR to CP14), which has the same
/// layout as EC 0x04 but which [`crate::esr::decode`] reports as `Other`. Bits above 24
/// are ignored.
pub const fn cp14_rrt_iss(iss: u32) -> CpRrtIss {
    CpRrtIss {
        cond: Condition {
            valid: (iss >> 24) & 1 == 1,
            cond: ((iss >> 20) & 0xf) as u8,
        },
        opc1: ((iss >> 16) & 0xf) as u8,
        rt2: ((iss >> 10) & 0x1f) as u8,
        rt: ((iss >> 5) & 0x1f) as u8,
        crm: ((iss >> 1) & 0xf) as u8,
        read: iss & 1 == 1,
    }
}

/// ITSTATE, IT\[7:0\] = CPSR\[15:10\]:CPSR\[26:25\] (ARM ARM, the IT field of register
/// "SPSR_EL2").
pub const fn itstate(cpsr: u64) -> u8 {
    (((cpsr >> 8) & 0xfc) | ((cpsr >> 25) & 3)) as u8
}

/// `cpsr` with its IT\[7:0\] field replaced by `it`; every other bit kept.
pub const fn with_itstate(cpsr: u64, it: u8) -> u64 {
    let it = it as u64;
    (cpsr & !(psr::IT_HI | psr::IT_LO)) | ((it >> 2) << 10) | ((it & 3) << 25)
}

/// Whether a trapped AArch32 instruction would have executed, so must be emulated (true)
/// or only skipped (false). With CV = 1 the syndrome's COND is checked against the
/// guest's NZCV flags. With CV = 0 (allowed for a trapped T32 instruction; ARM ARM, ISS
/// field CV, bit \[24\]) COND is not valid and the condition comes from PSTATE.IT:
/// IT\[3:0\] = 0 means not in an IT block, so the instruction is unconditional (true);
/// otherwise the condition is IT\[7:4\]. Condition 0b1111 counts as passing, as for A32
/// unconditional instructions.
pub fn trap_condition_passes(cond: Condition, cpsr: u64) -> bool {
    let c = if cond.valid {
        cond.cond
    } else {
        let it = itstate(cpsr);
        if it & 0xf == 0 {
            return true;
        }
        it >> 4
    };
    condition_passed(c, nzcv_from_spsr(cpsr))
}

/// PSTATE after `AArch32.ITAdvance` (ARM ARM, shared pseudocode): if IT\[2:0\] is 0 the IT
/// block ends (IT = 0), else IT\[4:0\] shifts left by one; IT\[7:5\] and every other bit are
/// kept. A PSTATE with IT = 0 is returned unchanged.
pub const fn it_advance(cpsr: u64) -> u64 {
    let it = itstate(cpsr);
    let next = if it & 7 == 0 {
        0
    } else {
        (it & 0xe0) | ((it << 1) & 0x1f)
    };
    with_itstate(cpsr, next)
}

/// Skips a trapped instruction of `len` bytes (2 or 4: `Syndrome::instr_len`): PC +=
/// `len` modulo 2^32 (the upper half of `pc` is cleared, as an AArch32 PC has 32 bits),
/// and the IT state advances ([`it_advance`]) so that an instruction skipped inside an IT
/// block leaves the rest of the block conditional as the hardware would. Other values of
/// `len` are added as given, modulo 2^32. Call it both after emulating an instruction and
/// when [`trap_condition_passes`] is false.
pub fn skip_instruction(regs: &mut GuestRegs, len: u64) {
    regs.pc = u64::from((regs.pc as u32).wrapping_add(len as u32));
    regs.pstate = it_advance(regs.pstate);
}

/// A CP15 register that HCR_EL2.TVM (writes) and TRVM (reads) trap, which a shadow-paging
/// hypervisor must virtualize (ARM ARM register "HCR_EL2", TVM and TRVM fields).
/// The 32-bit encodings (opc1, CRn, CRm, opc2) are given by [`Cp15Reg::encoding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cp15Reg {
    /// SCTLR, p15 0 c1 c0 0.
    Sctlr,
    /// ACTLR, p15 0 c1 c0 1 (trapped only with HSTR.T1, on the ARMv7 host's shadow mode).
    Actlr,
    /// CPACR, p15 0 c1 c0 2 (as ACTLR).
    Cpacr,
    /// TTBR0, p15 0 c2 c0 0 (32-bit) or MCRR p15 0 c2 (64-bit).
    Ttbr0,
    /// TTBR1, p15 0 c2 c0 1 (32-bit) or MCRR p15 1 c2 (64-bit).
    Ttbr1,
    /// TTBCR, p15 0 c2 c0 2.
    Ttbcr,
    /// TTBCR2, p15 0 c2 c0 3 (FEAT_AA32HPD).
    Ttbcr2,
    /// DACR, p15 0 c3 c0 0.
    Dacr,
    /// DFSR, p15 0 c5 c0 0.
    Dfsr,
    /// IFSR, p15 0 c5 c0 1.
    Ifsr,
    /// ADFSR, p15 0 c5 c1 0.
    Adfsr,
    /// AIFSR, p15 0 c5 c1 1.
    Aifsr,
    /// DFAR, p15 0 c6 c0 0.
    Dfar,
    /// IFAR, p15 0 c6 c0 2.
    Ifar,
    /// PRRR, or MAIR0 when TTBCR.EAE = 1 (same encoding), p15 0 c10 c2 0.
    Prrr,
    /// NMRR, or MAIR1 when TTBCR.EAE = 1 (same encoding), p15 0 c10 c2 1.
    Nmrr,
    /// AMAIR0, p15 0 c10 c3 0.
    Amair0,
    /// AMAIR1, p15 0 c10 c3 1.
    Amair1,
    /// CONTEXTIDR, p15 0 c13 c0 1.
    Contextidr,
}

impl Cp15Reg {
    /// Every register, in encoding order.
    pub const ALL: [Cp15Reg; 19] = [
        Cp15Reg::Sctlr,
        Cp15Reg::Actlr,
        Cp15Reg::Cpacr,
        Cp15Reg::Ttbr0,
        Cp15Reg::Ttbr1,
        Cp15Reg::Ttbcr,
        Cp15Reg::Ttbcr2,
        Cp15Reg::Dacr,
        Cp15Reg::Dfsr,
        Cp15Reg::Ifsr,
        Cp15Reg::Adfsr,
        Cp15Reg::Aifsr,
        Cp15Reg::Dfar,
        Cp15Reg::Ifar,
        Cp15Reg::Prrr,
        Cp15Reg::Nmrr,
        Cp15Reg::Amair0,
        Cp15Reg::Amair1,
        Cp15Reg::Contextidr,
    ];

    /// The MCR/MRC encoding `(opc1, CRn, CRm, opc2)` of this register (ARM ARM, the
    /// "Accessing" section of each AArch32 register description).
    pub const fn encoding(self) -> (u8, u8, u8, u8) {
        match self {
            Cp15Reg::Sctlr => (0, 1, 0, 0),
            Cp15Reg::Actlr => (0, 1, 0, 1),
            Cp15Reg::Cpacr => (0, 1, 0, 2),
            Cp15Reg::Ttbr0 => (0, 2, 0, 0),
            Cp15Reg::Ttbr1 => (0, 2, 0, 1),
            Cp15Reg::Ttbcr => (0, 2, 0, 2),
            Cp15Reg::Ttbcr2 => (0, 2, 0, 3),
            Cp15Reg::Dacr => (0, 3, 0, 0),
            Cp15Reg::Dfsr => (0, 5, 0, 0),
            Cp15Reg::Ifsr => (0, 5, 0, 1),
            Cp15Reg::Adfsr => (0, 5, 1, 0),
            Cp15Reg::Aifsr => (0, 5, 1, 1),
            Cp15Reg::Dfar => (0, 6, 0, 0),
            Cp15Reg::Ifar => (0, 6, 0, 2),
            Cp15Reg::Prrr => (0, 10, 2, 0),
            Cp15Reg::Nmrr => (0, 10, 2, 1),
            Cp15Reg::Amair0 => (0, 10, 3, 0),
            Cp15Reg::Amair1 => (0, 10, 3, 1),
            Cp15Reg::Contextidr => (0, 13, 0, 1),
        }
    }

    /// The register with MCR/MRC encoding `(opc1, CRn, CRm, opc2)`, if it is one of these.
    pub const fn from_encoding(opc1: u8, crn: u8, crm: u8, opc2: u8) -> Option<Cp15Reg> {
        Some(match (opc1, crn, crm, opc2) {
            (0, 1, 0, 0) => Cp15Reg::Sctlr,
            (0, 1, 0, 1) => Cp15Reg::Actlr,
            (0, 1, 0, 2) => Cp15Reg::Cpacr,
            (0, 2, 0, 0) => Cp15Reg::Ttbr0,
            (0, 2, 0, 1) => Cp15Reg::Ttbr1,
            (0, 2, 0, 2) => Cp15Reg::Ttbcr,
            (0, 2, 0, 3) => Cp15Reg::Ttbcr2,
            (0, 3, 0, 0) => Cp15Reg::Dacr,
            (0, 5, 0, 0) => Cp15Reg::Dfsr,
            (0, 5, 0, 1) => Cp15Reg::Ifsr,
            (0, 5, 1, 0) => Cp15Reg::Adfsr,
            (0, 5, 1, 1) => Cp15Reg::Aifsr,
            (0, 6, 0, 0) => Cp15Reg::Dfar,
            (0, 6, 0, 2) => Cp15Reg::Ifar,
            (0, 10, 2, 0) => Cp15Reg::Prrr,
            (0, 10, 2, 1) => Cp15Reg::Nmrr,
            (0, 10, 3, 0) => Cp15Reg::Amair0,
            (0, 10, 3, 1) => Cp15Reg::Amair1,
            (0, 13, 0, 1) => Cp15Reg::Contextidr,
            _ => return None,
        })
    }
}

/// What a TLB maintenance operation invalidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbiKind {
    /// Every entry (TLBIALL and friends).
    All,
    /// Entries for one MVA and one ASID, and global entries for that MVA (TLBIMVA*).
    Mva,
    /// Non-global entries of one ASID (TLBIASID*).
    Asid,
    /// Entries for one MVA, any ASID (TLBIMVAA*).
    Mvaa,
}

/// Which TLB an operation names. The instruction- and data-only forms are kept apart only
/// so the caller can log or count them: performing the unified operation instead always
/// invalidates at least as much, which is what [`TlbiOp::to_shadow_op`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbSide {
    /// A unified TLB operation (TLBI*).
    Unified,
    /// ITLB*.
    Instruction,
    /// DTLB*.
    Data,
}

/// A decoded AArch32 TLB maintenance operation from the PL1&0 set (CRn = c8, opc1 = 0;
/// ARM ARM chapter G4, "TLB maintenance instructions"; the Hyp-mode ones are opc1 = 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlbiOp {
    /// What it invalidates.
    pub op: TlbiKind,
    /// The Inner Shareable (broadcast) form (CRm = c3).
    pub inner_shareable: bool,
    /// The last-level-only form (TLBIMVAL*, TLBIMVAAL*), which may leave cached walk
    /// entries; invalidating all levels instead is always correct.
    pub last_level: bool,
    /// Which TLB it names.
    pub side: TlbSide,
}

impl TlbiOp {
    /// Decodes a TLB maintenance encoding `(opc1, CRn, CRm, opc2)`. `None` for anything
    /// else, including the Hyp-only operations (opc1 = 4: TLBIALLH, TLBIIPAS2*, ...).
    pub const fn from_encoding(opc1: u8, crn: u8, crm: u8, opc2: u8) -> Option<TlbiOp> {
        if opc1 != 0 || crn != 8 {
            return None;
        }
        let side = match crm {
            3 | 7 => TlbSide::Unified,
            5 => TlbSide::Instruction,
            6 => TlbSide::Data,
            _ => return None,
        };
        let unified = matches!(side, TlbSide::Unified);
        let (op, last_level) = match opc2 {
            0 => (TlbiKind::All, false),
            1 => (TlbiKind::Mva, false),
            2 => (TlbiKind::Asid, false),
            3 if unified => (TlbiKind::Mvaa, false),
            5 if unified => (TlbiKind::Mva, true),
            7 if unified => (TlbiKind::Mvaa, true),
            _ => return None,
        };
        Some(TlbiOp {
            op,
            inner_shareable: crm == 3,
            last_level,
            side,
        })
    }

    /// The shadow engine's view of this operation given the value written (Rt), per the
    /// register formats of ARM ARM AArch32 "TLBIMVA", "TLBIASID", "TLBIMVAA": MVA ops take
    /// VA = Rt\[31:12\] and ASID = Rt\[7:0\]; ASID ops take ASID = Rt\[7:0\]; MVAA ops take
    /// VA = Rt\[31:12\]; ALL ops ignore Rt. Shareability, last-level and I/D distinctions
    /// are dropped (the result invalidates at least as much).
    pub const fn to_shadow_op(self, rt_value: u32) -> TlbOp {
        let va = rt_value & !0xfff;
        let asid = (rt_value & 0xff) as u8;
        match self.op {
            TlbiKind::All => TlbOp::All,
            TlbiKind::Mva => TlbOp::Mva { va, asid },
            TlbiKind::Asid => TlbOp::Asid(asid),
            TlbiKind::Mvaa => TlbOp::Mvaa(va),
        }
    }
}

/// What a trapped MCR/MRC to CP15 accesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cp15Op {
    /// A register trapped by TVM/TRVM; the ISS says whether it is a read or a write.
    Reg(Cp15Reg),
    /// A TLB maintenance write (trapped by TTLB).
    Tlbi(TlbiOp),
    /// Anything else, including MRC from a TLB maintenance encoding (UNDEFINED).
    Other,
}

/// Classifies a trapped MCR/MRC to CP15 (EC 0x03). The ISS must come from a CP15 trap;
/// the condition and Rt fields are not looked at.
pub const fn decode_mcr(iss: &CpRtIss) -> Cp15Op {
    if iss.crn == 8 {
        return match TlbiOp::from_encoding(iss.opc1, iss.crn, iss.crm, iss.opc2) {
            Some(op) if !iss.read => Cp15Op::Tlbi(op),
            _ => Cp15Op::Other,
        };
    }
    match Cp15Reg::from_encoding(iss.opc1, iss.crn, iss.crm, iss.opc2) {
        Some(r) => Cp15Op::Reg(r),
        None => Cp15Op::Other,
    }
}

/// Classifies a trapped MCRR/MRRC to CP15 (EC 0x04): the 64-bit TTBR0 (opc1 0, CRm c2)
/// or TTBR1 (opc1 1, CRm c2) with the Long-descriptor format, or `None`. Use
/// [`read_rt_pair`]/[`write_rt_pair`] for the value.
pub const fn decode_mcrr(iss: &CpRrtIss) -> Option<Cp15Reg> {
    match (iss.opc1, iss.crm) {
        (0, 2) => Some(Cp15Reg::Ttbr0),
        (1, 2) => Some(Cp15Reg::Ttbr1),
        _ => None,
    }
}

/// True for a CP15 MCR/MRC to a Performance Monitors register (trapped by MDCR_EL2.TPM;
/// ARM ARM AArch32 "Performance Monitors registers"): opc1 0, CRn c9 with CRm c12-c14
/// (PMCR ... PMOVSSET), or CRn c14 with CRm c8-c15 (`PMEVCNTR<n>`, `PMEVTYPER<n>`,
/// PMCCFILTR). The generic timer registers (c14, CRm c0-c3) are not included. A caller
/// that exposes no PMU can make these RAZ/WI with [`raz_wi`].
pub const fn is_pmu(iss: &CpRtIss) -> bool {
    iss.opc1 == 0
        && ((iss.crn == 9 && iss.crm >= 12 && iss.crm <= 14) || (iss.crn == 14 && iss.crm >= 8))
}

/// True for a CP15 MCRR/MRRC to the 64-bit PMCCNTR (opc1 0, CRm c9).
pub const fn is_pmu64(iss: &CpRrtIss) -> bool {
    iss.opc1 == 0 && iss.crm == 9
}

/// The register group a CP14 MCR/MRC/MCRR/MRRC targets (ARM ARM, AArch32 System register
/// encoding: CP14 registers are grouped by opc1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cp14Class {
    /// opc1 = 0: debug registers (DBGDIDR, DBGDSCRint, `DBGBVR<n>`, DBGOSLAR, DBGDRAR, ...),
    /// trapped by MDCR_EL2.TDA/TDOSA/TDRA.
    Debug,
    /// opc1 = 1: trace registers.
    Trace,
    /// opc1 = 7: Jazelle registers (JIDR, JOSCR, JMCR).
    Jazelle,
    /// Anything else.
    Other,
}

/// The group of a trapped CP14 MCR/MRC (EC 0x05).
pub const fn classify_cp14(iss: &CpRtIss) -> Cp14Class {
    match iss.opc1 {
        0 => Cp14Class::Debug,
        1 => Cp14Class::Trace,
        7 => Cp14Class::Jazelle,
        _ => Cp14Class::Other,
    }
}

/// The group of a trapped CP14 MCRR/MRRC (EC 0x0C; see [`cp14_rrt_iss`]): opc1 = 0 is the
/// 64-bit DBGDRAR (CRm c1) / DBGDSAR (CRm c2), so `Debug`; opc1 = 1 is `Trace`.
pub const fn classify_cp14_64(iss: &CpRrtIss) -> Cp14Class {
    match iss.opc1 {
        0 => Cp14Class::Debug,
        1 => Cp14Class::Trace,
        _ => Cp14Class::Other,
    }
}

/// Emulates a trapped MCR/MRC as RAZ/WI: a read (MRC) writes 0 to Rt (clearing NZCV for
/// `APSR_nzcv`, see [`write_rt`]); a write does nothing. Does not skip the instruction:
/// call [`skip_instruction`] afterwards.
pub fn raz_wi(regs: &mut GuestRegs, iss: &CpRtIss) {
    if iss.read {
        write_rt(regs, iss.rt, 0);
    }
}

/// [`raz_wi`] for a trapped MCRR/MRRC: a read writes 0 to Rt and Rt2.
pub fn raz_wi64(regs: &mut GuestRegs, iss: &CpRrtIss) {
    if iss.read {
        write_rt_pair(regs, iss, 0);
    }
}

/// A synchronous exception to inject into an AArch32 EL1 guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception32 {
    /// Undefined Instruction, taken to Undefined mode.
    Undef,
    /// Prefetch Abort, taken to Abort mode, with the IFSR and IFAR values to report.
    PrefetchAbort {
        /// IFSR value (see [`external_abort_ifsr`]).
        ifsr: u32,
        /// IFAR value: the faulting instruction address.
        ifar: u32,
    },
    /// Data Abort, taken to Abort mode, with the DFSR and DFAR values to report.
    DataAbort {
        /// DFSR value (see [`external_abort_fsr`]).
        dfsr: u32,
        /// DFAR value: the faulting data address.
        dfar: u32,
    },
}

/// Which banked SPSR receives the interrupted CPSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpsrBank {
    /// SPSR_und (AArch64 register SPSR_und).
    Und,
    /// SPSR_abt (AArch64 register SPSR_abt).
    Abt,
}

/// The fault address and status registers an abort writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultRegs {
    /// A Data Abort: DFSR (ESR_EL1\[31:0\]) and DFAR (FAR_EL1\[31:0\]).
    Data {
        /// DFSR value.
        dfsr: u32,
        /// DFAR value.
        dfar: u32,
    },
    /// A Prefetch Abort: IFSR (IFSR32_EL2) and IFAR (FAR_EL1\[63:32\]).
    Prefetch {
        /// IFSR value.
        ifsr: u32,
        /// IFAR value.
        ifar: u32,
    },
}

/// The register values realising an exception injected into an AArch32 EL1 guest. The
/// caller writes `spsr` to the banked SPSR, `fault` (if any) to the fault registers, and
/// then applies `pc`, `cpsr` and the LR with [`Injection32::apply`] before resuming the
/// guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection32 {
    /// Where the guest resumes (ELR_EL2): the vector.
    pub pc: u64,
    /// The guest's new CPSR, in the SPSR_EL2 view (for SPSR_EL2).
    pub cpsr: u64,
    /// Index in `GuestRegs::x` of the target mode's LR (22 = LR_und, 20 = LR_abt).
    pub lr_index: usize,
    /// The value of that LR (zero-extended 32-bit return address plus offset).
    pub lr: u64,
    /// Which banked SPSR receives [`Injection32::spsr`].
    pub spsr_bank: SpsrBank,
    /// The interrupted CPSR in the AArch32 SPSR view ([`spsr_el2_to_spsr32`]).
    pub spsr: u32,
    /// The fault status and address registers to write; `None` for Undefined.
    pub fault: Option<FaultRegs>,
}

impl Injection32 {
    /// Applies the PC, CPSR and LR to `regs`. The banked SPSR and the fault registers are
    /// system registers and are the caller's to write.
    pub fn apply(&self, regs: &mut GuestRegs) {
        regs.pc = self.pc;
        regs.pstate = self.cpsr;
        if let Some(lr) = regs.x.get_mut(self.lr_index) {
            *lr = self.lr;
        }
    }
}

/// Converts an AArch32 PSTATE from the SPSR_EL2 view to the AArch32 SPSR view that
/// SPSR_und/SPSR_abt hold (ARM ARM "SPSR_EL2" vs AArch32 "SPSR_und"): DIT moves from bit
/// 24 to bit 21, SS (bit 21, absent from AArch32) is dropped, bit 24 (J, RES0) is
/// cleared, and bits \[63:32\] are dropped. All other bits are common.
pub const fn spsr_el2_to_spsr32(pstate: u64) -> u32 {
    let dit = pstate & psr::DIT != 0;
    let low = (pstate as u32) & !((psr::DIT | psr::SS) as u32);
    if dit {
        low | psr::SPSR32_DIT
    } else {
        low
    }
}

/// The CPSR (SPSR_EL2 view) on entry to `target` from `old`, per `AArch32.EnterMode`
/// (ARM ARM pseudocode): NZCV, Q, GE, DIT kept; I set; A set on entry to Abort, IRQ or FIQ
/// mode, else kept; F set on entry to FIQ mode, else kept; T = SCTLR.TE; E = SCTLR.EE;
/// IT, IL and SS cleared; PAN kept, and set when SCTLR.SPAN is 0; SSBS = SCTLR.DSSBS;
/// bits \[63:32\] cleared.
fn entry_cpsr(old: u64, target: Mode, sctlr: u32) -> u64 {
    let mut new = target.bits() | psr::I;
    new |= old & (psr::NZCV | psr::Q | psr::GE | psr::A | psr::F | psr::DIT | psr::PAN);
    new |= match target {
        Mode::Fiq => psr::A | psr::F,
        Mode::Abt | Mode::Irq => psr::A,
        _ => 0,
    };
    if sctlr & sctlr::TE != 0 {
        new |= psr::T;
    }
    if sctlr & sctlr::EE != 0 {
        new |= psr::E;
    }
    if sctlr & sctlr::SPAN == 0 {
        new |= psr::PAN;
    }
    if sctlr & sctlr::DSSBS != 0 {
        new |= psr::SSBS;
    }
    new
}

/// The exception vector base, `ExcVectorBase()` (ARM ARM, shared pseudocode): 0xFFFF_0000
/// when SCTLR.V is 1, else VBAR with bits \[4:0\] cleared.
pub const fn vector_base(sctlr: u32, vbar: u32) -> u32 {
    if sctlr & sctlr::V != 0 {
        vector::HIGH_BASE
    } else {
        vbar & !0x1f
    }
}

/// Computes the entry of `exc` into an AArch32 EL1 guest whose state at the trap is
/// `regs` (`regs.pc` = the address of the faulting instruction, `regs.pstate` its CPSR),
/// given the guest's view of SCTLR (V, TE, EE, SPAN, DSSBS are used; pass it as the
/// hardware would hold it: SPAN is RES1 without FEAT_PAN and DSSBS RES0 without FEAT_SSBS)
/// and VBAR. Follows `AArch32.TakeUndefInstrException`,
/// `AArch32.TakePrefetchAbortException`, `AArch32.TakeDataAbortException` and
/// `AArch32.EnterMode` (ARM ARM pseudocode; chapter G1, "Exception entry"):
///
/// | exception      | mode | vector | LR                                   |
/// |----------------|------|--------|--------------------------------------|
/// | Undefined      | und  | +0x04  | instr + 4 (A32) or + 2 (T32, CPSR.T) |
/// | Prefetch Abort | abt  | +0x0C  | instr + 4                            |
/// | Data Abort     | abt  | +0x10  | instr + 8                            |
///
/// The Undefined LR offset depends only on the instruction set: a 32-bit T32 instruction
/// also gets + 2. Addresses wrap at 32 bits. The CPSR is built by `AArch32.EnterMode`'s
/// rules (see the `psr` bits: I set, A set for aborts and kept for Undefined, F kept,
/// T = SCTLR.TE, E = SCTLR.EE, IT/IL/SS cleared, PAN set if SCTLR.SPAN = 0, SSBS =
/// SCTLR.DSSBS). The entry is computed whatever mode the guest was in (Monitor and Hyp
/// cannot occur at EL1; no check is made). Never panics.
pub fn inject(exc: Exception32, regs: &GuestRegs, sctlr: u32, vbar: u32) -> Injection32 {
    let thumb = regs.pstate & psr::T != 0;
    let (target, bank, offset, lr_offset, fault) = match exc {
        Exception32::Undef => (
            Mode::Und,
            SpsrBank::Und,
            vector::UNDEF,
            if thumb { 2 } else { 4 },
            None,
        ),
        Exception32::PrefetchAbort { ifsr, ifar } => (
            Mode::Abt,
            SpsrBank::Abt,
            vector::PREFETCH_ABORT,
            4,
            Some(FaultRegs::Prefetch { ifsr, ifar }),
        ),
        Exception32::DataAbort { dfsr, dfar } => (
            Mode::Abt,
            SpsrBank::Abt,
            vector::DATA_ABORT,
            8,
            Some(FaultRegs::Data { dfsr, dfar }),
        ),
    };
    let lr_index = match target {
        Mode::Und => 22,
        _ => 20,
    };
    Injection32 {
        pc: u64::from(vector_base(sctlr, vbar) | offset),
        cpsr: entry_cpsr(regs.pstate, target, sctlr),
        lr_index,
        lr: u64::from((regs.pc as u32).wrapping_add(lr_offset)),
        spsr_bank: bank,
        spsr: spsr_el2_to_spsr32(regs.pstate),
        fault,
    }
}

/// The DFSR for a synchronous external abort not on a translation table walk (ARM ARM
/// pseudocode `AArch32.FaultStatusSD`, `AArch32.FaultStatusLD`). Short-descriptor format
/// (`long_format` false, TTBCR.EAE = 0): FS = 0b01000 (FS\[4\] is bit 10, FS\[3:0\] bits
/// \[3:0\]), domain 0. Long-descriptor format (TTBCR.EAE = 1): LPAE (bit 9) = 1, STATUS
/// (bits \[5:0\]) = 0b010000. WnR (bit 11) = `write` in both; ExT (bit 12) is 0.
pub const fn external_abort_fsr(write: bool, long_format: bool) -> u32 {
    let wnr = (write as u32) << 11;
    if long_format {
        wnr | (1 << 9) | 0b01_0000
    } else {
        wnr | 0b1000
    }
}

/// The IFSR for a synchronous external abort not on a translation table walk: as
/// [`external_abort_fsr`] without WnR (Short-descriptor 0x008, Long-descriptor 0x210).
pub const fn external_abort_ifsr(long_format: bool) -> u32 {
    external_abort_fsr(false, long_format)
}

/// Whether the guest's fault status registers use the Long-descriptor format, from its
/// TTBCR ([`TTBCR_EAE`]).
pub const fn long_descriptor_format(ttbcr: u32) -> bool {
    ttbcr & TTBCR_EAE != 0
}

#[cfg(test)]
// Syndromes are spelled out field by field, zero fields included.
#[allow(clippy::identity_op)]
mod tests {
    use super::*;
    use crate::esr::{decode, ExceptionClass};
    use proptest::prelude::*;

    const N: u64 = 1 << 31;
    const Z: u64 = 1 << 30;
    const C: u64 = 1 << 29;

    fn regs(pc: u64, pstate: u64) -> GuestRegs {
        let mut r = GuestRegs::zeroed();
        for (i, x) in r.x.iter_mut().enumerate() {
            *x = 0x1000 + i as u64;
        }
        r.pc = pc;
        r.pstate = pstate;
        r
    }

    fn mcr(opc1: u8, crn: u8, crm: u8, opc2: u8, read: bool) -> CpRtIss {
        CpRtIss {
            cond: Condition {
                valid: true,
                cond: 0xe,
            },
            opc2,
            opc1,
            crn,
            rt: 3,
            crm,
            read,
        }
    }

    fn mcrr(opc1: u8, crm: u8, rt: u8, rt2: u8, read: bool) -> CpRrtIss {
        CpRrtIss {
            cond: Condition {
                valid: true,
                cond: 0xe,
            },
            opc1,
            rt2,
            rt,
            crm,
            read,
        }
    }

    #[test]
    fn modes_round_trip() {
        for m in Mode::ALL {
            assert_eq!(Mode::from_cpsr(m.bits() | 0xffff_ffe0), Some(m));
        }
        let valid = [0x10, 0x11, 0x12, 0x13, 0x16, 0x17, 0x1a, 0x1b, 0x1f];
        for m in 0..32u64 {
            assert_eq!(Mode::from_cpsr(m).is_some(), valid.contains(&m), "M={m:#x}");
        }
        assert!(!Mode::Usr.is_privileged());
        assert!(Mode::Sys.is_privileged() && Mode::Svc.is_privileged());
        assert_eq!(current_mode(&regs(0, 0x1d3)), Some(Mode::Svc));
        assert_eq!(current_mode(&regs(0, 0x3c5)), None); // AArch64 EL1h
    }

    #[test]
    fn register_mapping_every_mode() {
        // (mode, R8..R12 base, SP, LR)
        let table: [(Mode, usize, Option<usize>, Option<usize>); 9] = [
            (Mode::Usr, 8, Some(13), Some(14)),
            (Mode::Sys, 8, Some(13), Some(14)),
            (Mode::Hyp, 8, Some(15), Some(14)),
            (Mode::Irq, 8, Some(17), Some(16)),
            (Mode::Svc, 8, Some(19), Some(18)),
            (Mode::Abt, 8, Some(21), Some(20)),
            (Mode::Und, 8, Some(23), Some(22)),
            (Mode::Fiq, 24, Some(29), Some(30)),
            (Mode::Mon, 8, None, None),
        ];
        for (mode, hi, sp, lr) in table {
            for r in 0..8u8 {
                assert_eq!(reg_index(mode, r), Some(r as usize), "{mode:?} R{r}");
            }
            for r in 8..13u8 {
                assert_eq!(
                    reg_index(mode, r),
                    Some(hi + r as usize - 8),
                    "{mode:?} R{r}"
                );
            }
            assert_eq!(reg_index(mode, 13), sp, "{mode:?} SP");
            assert_eq!(reg_index(mode, 14), lr, "{mode:?} LR");
            for r in 15..=255u8 {
                assert_eq!(reg_index(mode, r), None, "{mode:?} R{r}");
            }
        }
        // Every X register but none is the view of some (mode, Rr): X0..X30 all used.
        let mut used = [false; 31];
        for m in Mode::ALL {
            for r in 0..15 {
                if let Some(i) = reg_index(m, r) {
                    used[i] = true;
                }
            }
        }
        assert!(used.iter().all(|&u| u));
    }

    #[test]
    fn get_and_set_reg() {
        let mut r = regs(0, 0x1d3);
        r.x[19] = 0xdead_beef_1234_5678;
        assert_eq!(get_reg(&r, Mode::Svc, 13), Some(0x1234_5678));
        assert!(set_reg(&mut r, Mode::Svc, 13, 0xffff_fff0));
        assert_eq!(r.x[19], 0xffff_fff0);
        assert!(set_reg(&mut r, Mode::Fiq, 8, 7));
        assert_eq!(r.x[24], 7);
        assert_eq!(r.x[8], 0x1008);
        assert_eq!(get_reg(&r, Mode::Svc, 15), None);
        let before = r.clone();
        assert!(!set_reg(&mut r, Mode::Svc, 15, 1));
        assert!(!set_reg(&mut r, Mode::Mon, 14, 1));
        assert_eq!(r, before);
    }

    #[test]
    fn iss_registers() {
        let mut r = regs(0, 0x1d3 | N);
        r.x[22] = 0xffff_ffff_0000_0001;
        assert_eq!(read_rt(&r, 22), 1);
        assert_eq!(read_rt(&r, ISS_RT_PC), 0);
        write_rt(&mut r, 22, 0x8000_0000);
        assert_eq!(r.x[22], 0x8000_0000);
        // MRC to APSR_nzcv: only the flags change.
        write_rt(&mut r, ISS_RT_PC, 0x6000_1234);
        assert_eq!(r.pstate, 0x1d3 | Z | C);
        let before = r.clone();
        write_rt(&mut r, 40, 5);
        assert_eq!(r, before);

        let iss = mcrr(0, 2, 4, 5, true);
        r.x[4] = 0xaaaa_bbbb_1111_2222;
        r.x[5] = 0x3333_4444;
        assert_eq!(read_rt_pair(&r, &iss), 0x3333_4444_1111_2222);
        write_rt_pair(&mut r, &iss, 0x0000_00ff_8765_4321);
        assert_eq!((r.x[4], r.x[5]), (0x8765_4321, 0xff));
        let pc_pair = mcrr(0, 2, 31, 31, true);
        let before = r.clone();
        write_rt_pair(&mut r, &pc_pair, u64::MAX);
        assert_eq!(r, before);
    }

    #[test]
    fn cp14_rrt_iss_matches_esr_layout() {
        // MRRC p14, 0, r1(x1), r2(x2), c1 (DBGDRAR), CV=1 AL.
        let iss = 1 << 24 | 0xe << 20 | 0 << 16 | 2 << 10 | 1 << 5 | 1 << 1 | 1;
        let d = cp14_rrt_iss(iss);
        assert_eq!((d.opc1, d.rt2, d.rt, d.crm, d.read), (0, 2, 1, 1, true));
        assert!(d.cond.valid && d.cond.cond == 0xe);
        // Same fields as esr::decode gives for EC 0x04.
        match decode((0x04 << 26 | 1 << 25 | iss) as u64).class {
            ExceptionClass::Cp15Mcrr(e) => assert_eq!(e, d),
            c => panic!("{c:?}"),
        }
        assert_eq!(classify_cp14_64(&d), Cp14Class::Debug);
    }

    #[test]
    fn itstate_fields() {
        // IT[7:2] in bits 15:10, IT[1:0] in bits 26:25.
        let cpsr = 0b101101 << 10 | 0b10 << 25 | 0x30;
        assert_eq!(itstate(cpsr), 0b1011_0110);
        assert_eq!(with_itstate(cpsr, 0), 0x30);
        assert_eq!(with_itstate(0x30, 0b1011_0110), cpsr);
        for it in 0..=255u8 {
            assert_eq!(itstate(with_itstate(!0, it)), it);
        }
    }

    #[test]
    fn it_advance_cases() {
        let base = 0x1f3 | N; // Sys mode, Thumb, N set
        let cases = [
            // mid block: IT[2:0] != 0 -> IT[4:0] <<= 1, IT[7:5] kept.
            (0b0000_0110u8, 0b0000_1100u8),
            (0b1010_1101, 0b1011_1010),
            (0b0001_0100, 0b0000_1000),
            // last instruction (IT[2:0] == 0): block ends.
            (0b0000_1000, 0),
            (0b1111_1000, 0),
            // not in a block: unchanged.
            (0, 0),
        ];
        for (it, want) in cases {
            let got = it_advance(with_itstate(base, it));
            assert_eq!(itstate(got), want, "IT {it:#010b}");
            assert_eq!(got & !(psr::IT_HI | psr::IT_LO), base, "IT {it:#010b}");
        }
    }

    #[test]
    fn it_block_walk() {
        // ITETT NE: IT[7:5] = firstcond[3:1] = 000, IT[4] = firstcond[0] = 1, and
        // IT[3:0] = mask = E(!1), T(1), T(1), terminator 1 = 0111.
        let mut r = regs(0x8000, 0x1f3 | with_itstate(0, 0b0001_0111));
        let mut conds = vec![];
        for _ in 0..5 {
            let it = itstate(r.pstate);
            conds.push(if it & 0xf == 0 { None } else { Some(it >> 4) });
            skip_instruction(&mut r, 2);
        }
        // NE, EQ, NE, NE... then out of the block.
        assert_eq!(conds, vec![Some(1), Some(0), Some(1), Some(1), None]);
        assert_eq!(r.pc, 0x800a);
        assert_eq!(r.pstate, 0x1f3);
    }

    #[test]
    fn skip_wraps_and_keeps_other_bits() {
        let mut r = regs(0xffff_fffe, 0x1d3 | N | psr::GE | psr::A);
        skip_instruction(&mut r, 4);
        assert_eq!(r.pc, 2);
        assert_eq!(r.pstate, 0x1d3 | N | psr::GE | psr::A);
        let mut r = regs(0xdead_0000_0000_1000, 0x1d3);
        skip_instruction(&mut r, 2);
        assert_eq!(r.pc, 0x1002);
    }

    #[test]
    fn conditions_with_cv_and_it() {
        let cv = |cond| Condition { valid: true, cond };
        let no_cv = Condition {
            valid: false,
            cond: 0,
        };
        // CV=1: COND against NZCV.
        assert!(trap_condition_passes(cv(0x0), 0x1d3 | Z)); // EQ
        assert!(!trap_condition_passes(cv(0x0), 0x1d3));
        assert!(trap_condition_passes(cv(0xe), 0x1d3));
        // CV=1 wins over IT.
        assert!(!trap_condition_passes(cv(0x0), with_itstate(0x1f3, 0x18)));
        // CV=0, no IT block: unconditional.
        assert!(trap_condition_passes(no_cv, 0x1d3));
        // IT[3:0] = 0 is not an IT block either.
        assert!(trap_condition_passes(no_cv, with_itstate(0x1d3, 0xf0)));
        // CV=0 in an IT block: cond = IT[7:4].
        let eq_block = with_itstate(0x1f3, 0b0000_1000); // EQ, last instruction
        assert!(!trap_condition_passes(no_cv, eq_block));
        assert!(trap_condition_passes(no_cv, eq_block | Z));
        let ne_block = with_itstate(0x1f3, 0b0001_0100);
        assert!(trap_condition_passes(no_cv, ne_block));
        assert!(!trap_condition_passes(no_cv, ne_block | Z));
        let gt_block = with_itstate(0x1f3, 0b1100_1000);
        assert!(trap_condition_passes(no_cv, gt_block));
        assert!(!trap_condition_passes(no_cv, gt_block | N));
    }

    #[test]
    fn cp15_register_encodings() {
        let want: [(Cp15Reg, (u8, u8, u8, u8)); 19] = [
            (Cp15Reg::Sctlr, (0, 1, 0, 0)),
            (Cp15Reg::Actlr, (0, 1, 0, 1)),
            (Cp15Reg::Cpacr, (0, 1, 0, 2)),
            (Cp15Reg::Ttbr0, (0, 2, 0, 0)),
            (Cp15Reg::Ttbr1, (0, 2, 0, 1)),
            (Cp15Reg::Ttbcr, (0, 2, 0, 2)),
            (Cp15Reg::Ttbcr2, (0, 2, 0, 3)),
            (Cp15Reg::Dacr, (0, 3, 0, 0)),
            (Cp15Reg::Dfsr, (0, 5, 0, 0)),
            (Cp15Reg::Ifsr, (0, 5, 0, 1)),
            (Cp15Reg::Adfsr, (0, 5, 1, 0)),
            (Cp15Reg::Aifsr, (0, 5, 1, 1)),
            (Cp15Reg::Dfar, (0, 6, 0, 0)),
            (Cp15Reg::Ifar, (0, 6, 0, 2)),
            (Cp15Reg::Prrr, (0, 10, 2, 0)),
            (Cp15Reg::Nmrr, (0, 10, 2, 1)),
            (Cp15Reg::Amair0, (0, 10, 3, 0)),
            (Cp15Reg::Amair1, (0, 10, 3, 1)),
            (Cp15Reg::Contextidr, (0, 13, 0, 1)),
        ];
        assert_eq!(want.map(|(r, _)| r), Cp15Reg::ALL);
        for (reg, (o1, n, m, o2)) in want {
            assert_eq!(reg.encoding(), (o1, n, m, o2));
            for read in [false, true] {
                assert_eq!(decode_mcr(&mcr(o1, n, m, o2, read)), Cp15Op::Reg(reg));
            }
            // A different opc1 is another register.
            assert_eq!(decode_mcr(&mcr(1, n, m, o2, false)), Cp15Op::Other);
        }
        // Through the syndrome decoder: MCR p15, 0, r2, c2, c0, 0 (TTBR0), CV=1 AL.
        let iss = 1 << 24 | 0xe << 20 | 0 << 17 | 0 << 14 | 2 << 10 | 2 << 5 | 0 << 1;
        match decode((0x03 << 26 | 1 << 25 | iss) as u64).class {
            ExceptionClass::Cp15Mcr(i) => {
                assert_eq!(decode_mcr(&i), Cp15Op::Reg(Cp15Reg::Ttbr0));
                assert!(!i.read && i.rt == 2);
            }
            c => panic!("{c:?}"),
        }
        // Registers that are not trapped by TVM: MIDR, VBAR, PAR, TPIDRURW.
        for (o1, n, m, o2) in [(0, 0, 0, 0), (0, 12, 0, 0), (0, 7, 4, 0), (0, 13, 0, 2)] {
            assert_eq!(decode_mcr(&mcr(o1, n, m, o2, true)), Cp15Op::Other);
        }
    }

    #[test]
    fn cp15_64bit() {
        assert_eq!(decode_mcrr(&mcrr(0, 2, 0, 1, false)), Some(Cp15Reg::Ttbr0));
        assert_eq!(decode_mcrr(&mcrr(1, 2, 0, 1, true)), Some(Cp15Reg::Ttbr1));
        assert_eq!(decode_mcrr(&mcrr(0, 7, 0, 1, true)), None); // PAR
        assert_eq!(decode_mcrr(&mcrr(2, 2, 0, 1, true)), None);
        assert_eq!(decode_mcrr(&mcrr(0, 14, 0, 1, true)), None); // CNTPCT
    }

    #[test]
    fn tlbi_encodings() {
        use TlbSide::*;
        use TlbiKind::*;
        // (CRm, opc2, kind, inner shareable, last level, side)
        let table = [
            (3, 0, All, true, false, Unified),       // TLBIALLIS
            (3, 1, Mva, true, false, Unified),       // TLBIMVAIS
            (3, 2, Asid, true, false, Unified),      // TLBIASIDIS
            (3, 3, Mvaa, true, false, Unified),      // TLBIMVAAIS
            (3, 5, Mva, true, true, Unified),        // TLBIMVALIS
            (3, 7, Mvaa, true, true, Unified),       // TLBIMVAALIS
            (5, 0, All, false, false, Instruction),  // ITLBIALL
            (5, 1, Mva, false, false, Instruction),  // ITLBIMVA
            (5, 2, Asid, false, false, Instruction), // ITLBIASID
            (6, 0, All, false, false, Data),         // DTLBIALL
            (6, 1, Mva, false, false, Data),         // DTLBIMVA
            (6, 2, Asid, false, false, Data),        // DTLBIASID
            (7, 0, All, false, false, Unified),      // TLBIALL
            (7, 1, Mva, false, false, Unified),      // TLBIMVA
            (7, 2, Asid, false, false, Unified),     // TLBIASID
            (7, 3, Mvaa, false, false, Unified),     // TLBIMVAA
            (7, 5, Mva, false, true, Unified),       // TLBIMVAL
            (7, 7, Mvaa, false, true, Unified),      // TLBIMVAAL
        ];
        let mut n = 0;
        for crm in 0..16u8 {
            for opc2 in 0..8u8 {
                let got = decode_mcr(&mcr(0, 8, crm, opc2, false));
                match table.iter().find(|t| t.0 == crm && t.1 == opc2) {
                    Some(&(_, _, op, is, ll, side)) => {
                        n += 1;
                        let want = TlbiOp {
                            op,
                            inner_shareable: is,
                            last_level: ll,
                            side,
                        };
                        assert_eq!(got, Cp15Op::Tlbi(want), "c8 c{crm} {opc2}");
                        // MRC from a TLBI encoding is not a TLBI.
                        assert_eq!(decode_mcr(&mcr(0, 8, crm, opc2, true)), Cp15Op::Other);
                    }
                    None => assert_eq!(got, Cp15Op::Other, "c8 c{crm} {opc2}"),
                }
                // Hyp-only operations (opc1 = 4) and other opc1 values.
                for opc1 in 1..8u8 {
                    assert_eq!(
                        decode_mcr(&mcr(opc1, 8, crm, opc2, false)),
                        Cp15Op::Other,
                        "opc1 {opc1} c8 c{crm} {opc2}"
                    );
                }
            }
        }
        assert_eq!(n, table.len());
    }

    #[test]
    fn tlbi_to_shadow_ops() {
        let rt = 0x1234_5abc;
        let op = |crm, opc2| match decode_mcr(&mcr(0, 8, crm, opc2, false)) {
            Cp15Op::Tlbi(t) => t.to_shadow_op(rt),
            o => panic!("{o:?}"),
        };
        assert_eq!(op(7, 0), TlbOp::All);
        assert_eq!(op(3, 0), TlbOp::All);
        assert_eq!(
            op(7, 1),
            TlbOp::Mva {
                va: 0x1234_5000,
                asid: 0xbc
            }
        );
        assert_eq!(
            op(3, 5),
            TlbOp::Mva {
                va: 0x1234_5000,
                asid: 0xbc
            }
        );
        assert_eq!(op(6, 2), TlbOp::Asid(0xbc));
        assert_eq!(op(7, 3), TlbOp::Mvaa(0x1234_5000));
        assert_eq!(op(7, 7), TlbOp::Mvaa(0x1234_5000));
    }

    #[test]
    fn pmu_and_debug_classes() {
        // PMCR (c9 c12 0), PMCCNTR (c9 c13 0), PMUSERENR (c9 c14 0), PMEVCNTR0 (c14 c8 0),
        // PMCCFILTR (c14 c15 7).
        for (n, m, o2) in [(9, 12, 0), (9, 13, 0), (9, 14, 0), (14, 8, 0), (14, 15, 7)] {
            assert!(is_pmu(&mcr(0, n, m, o2, true)), "c{n} c{m} {o2}");
            assert!(!is_pmu(&mcr(1, n, m, o2, true)), "opc1 1 c{n} c{m} {o2}");
        }
        // Not PMU: cache lockdown (c9 c0), CNTFRQ (c14 c0 0), CNTV_CTL (c14 c3 1), SCTLR.
        for (n, m, o2) in [(9, 0, 0), (9, 15, 0), (14, 0, 0), (14, 3, 1), (1, 0, 0)] {
            assert!(!is_pmu(&mcr(0, n, m, o2, true)), "c{n} c{m} {o2}");
        }
        assert!(is_pmu64(&mcrr(0, 9, 0, 1, true)));
        assert!(!is_pmu64(&mcrr(0, 2, 0, 1, true)));
        assert!(!is_pmu64(&mcrr(1, 9, 0, 1, true)));

        // CP14: DBGDIDR (0 c0 c0 0), ETM (1 ...), JIDR (7 c0 c0 0).
        assert_eq!(classify_cp14(&mcr(0, 0, 0, 0, true)), Cp14Class::Debug);
        assert_eq!(classify_cp14(&mcr(0, 1, 0, 4, false)), Cp14Class::Debug); // DBGOSLAR
        assert_eq!(classify_cp14(&mcr(1, 0, 2, 0, true)), Cp14Class::Trace);
        assert_eq!(classify_cp14(&mcr(7, 0, 0, 0, true)), Cp14Class::Jazelle);
        assert_eq!(classify_cp14(&mcr(6, 0, 0, 0, true)), Cp14Class::Other);
        assert_eq!(classify_cp14_64(&mcrr(0, 2, 0, 1, true)), Cp14Class::Debug);
        assert_eq!(classify_cp14_64(&mcrr(3, 2, 0, 1, true)), Cp14Class::Other);
    }

    #[test]
    fn raz_wi_reads_zero_and_ignores_writes() {
        let mut r = regs(0x100, 0x1d3 | N | Z);
        let mut read = mcr(0, 9, 12, 0, true);
        raz_wi(&mut r, &read);
        assert_eq!(r.x[3], 0);
        let before = r.clone();
        raz_wi(&mut r, &mcr(0, 9, 12, 0, false));
        assert_eq!(r, before);
        // mrc p14, 0, APSR_nzcv, c0, c1, 0 (DBGDSCRint): flags cleared.
        read.rt = ISS_RT_PC;
        raz_wi(&mut r, &read);
        assert_eq!(r.pstate, 0x1d3);
        let mut r = regs(0, 0x1d3);
        raz_wi64(&mut r, &mcrr(0, 9, 4, 5, true));
        assert_eq!((r.x[4], r.x[5]), (0, 0));
        let before = r.clone();
        raz_wi64(&mut r, &mcrr(0, 9, 6, 7, false));
        assert_eq!(r, before);
    }

    const SCTLR: u32 = 0x00c5_0878 | sctlr::SPAN; // a typical Linux SCTLR, SPAN set
    const VBAR: u32 = 0xc000_8020;

    #[test]
    fn undef_arm_and_thumb() {
        // ARM state, SVC mode, flags, Q and GE set, A, I and F clear.
        let old = 0x13 | N | C | psr::GE | psr::Q;
        let r = regs(0xc010_0000, old);
        let inj = inject(Exception32::Undef, &r, SCTLR, VBAR);
        assert_eq!(inj.pc, 0xc000_8024);
        assert_eq!(inj.cpsr, 0x1b | psr::I | N | C | psr::GE | psr::Q);
        assert_eq!((inj.lr_index, inj.lr), (22, 0xc010_0004));
        assert_eq!(inj.spsr_bank, SpsrBank::Und);
        assert_eq!(inj.spsr, old as u32);
        assert_eq!(inj.fault, None);
        // A is kept (not set) for Undefined; F kept.
        let r = regs(0x1000, 0x13 | psr::F);
        let inj = inject(Exception32::Undef, &r, SCTLR, VBAR);
        assert_eq!(inj.cpsr, 0x1b | psr::I | psr::F);
        let r = regs(0x1000, 0x13 | psr::A);
        assert_eq!(
            inject(Exception32::Undef, &r, SCTLR, VBAR).cpsr,
            0x1b | psr::I | psr::A
        );
        // Thumb, inside an IT block: LR = instr + 2, IT and T cleared (TE = 0).
        let r = regs(0x2000, with_itstate(0x30 | psr::T, 0b0001_0100));
        let inj = inject(Exception32::Undef, &r, SCTLR, VBAR);
        assert_eq!(inj.lr, 0x2002);
        assert_eq!(inj.cpsr, 0x1b | psr::I);
        assert_eq!(itstate(u64::from(inj.spsr)), 0b0001_0100);
        assert_eq!(inj.spsr & psr::T as u32, psr::T as u32);
    }

    #[test]
    fn aborts_arm_and_thumb() {
        for thumb in [false, true] {
            let t = if thumb { psr::T } else { 0 };
            let r = regs(0x8000_1000, 0x10 | t | Z);
            let inj = inject(
                Exception32::DataAbort {
                    dfsr: 0x808,
                    dfar: 0x1234,
                },
                &r,
                SCTLR,
                VBAR,
            );
            assert_eq!(inj.pc, 0xc000_8030);
            assert_eq!(inj.cpsr, 0x17 | psr::I | psr::A | Z);
            assert_eq!((inj.lr_index, inj.lr), (20, 0x8000_1008));
            assert_eq!(inj.spsr_bank, SpsrBank::Abt);
            assert_eq!(inj.spsr, (0x10 | t | Z) as u32);
            assert_eq!(
                inj.fault,
                Some(FaultRegs::Data {
                    dfsr: 0x808,
                    dfar: 0x1234
                })
            );

            let inj = inject(
                Exception32::PrefetchAbort {
                    ifsr: 0x8,
                    ifar: 0x8000_1000,
                },
                &r,
                SCTLR,
                VBAR,
            );
            assert_eq!(inj.pc, 0xc000_802c);
            assert_eq!(inj.cpsr, 0x17 | psr::I | psr::A | Z);
            assert_eq!((inj.lr_index, inj.lr), (20, 0x8000_1004));
            assert_eq!(
                inj.fault,
                Some(FaultRegs::Prefetch {
                    ifsr: 0x8,
                    ifar: 0x8000_1000
                })
            );
        }
    }

    #[test]
    fn sctlr_v_te_ee_span_dssbs() {
        let r = regs(0xffff_fffc, 0x13);
        let s = SCTLR | sctlr::V | sctlr::TE | sctlr::EE | sctlr::DSSBS;
        let inj = inject(Exception32::Undef, &r, s, VBAR);
        assert_eq!(inj.pc, 0xffff_0004);
        assert_eq!(inj.cpsr, 0x1b | psr::I | psr::T | psr::E | psr::SSBS);
        // LR wraps at 32 bits.
        assert_eq!(inj.lr, 0);
        let inj = inject(Exception32::DataAbort { dfsr: 0, dfar: 0 }, &r, s, VBAR);
        assert_eq!(inj.pc, 0xffff_0010);
        assert_eq!(inj.lr, 4);
        // SPAN clear sets PAN; PAN already set is kept.
        let inj = inject(Exception32::Undef, &r, SCTLR & !sctlr::SPAN, VBAR);
        assert_eq!(inj.cpsr, 0x1b | psr::I | psr::PAN);
        let inj = inject(Exception32::Undef, &regs(0, 0x13 | psr::PAN), SCTLR, VBAR);
        assert_eq!(inj.cpsr & psr::PAN, psr::PAN);
        // VBAR low bits ignored.
        let inj = inject(Exception32::Undef, &r, SCTLR, 0x1000_001f);
        assert_eq!(inj.pc, 0x1000_0004);
    }

    #[test]
    fn spsr_views() {
        // DIT (bit 24 in SPSR_EL2) moves to bit 21; SS (bit 21) is dropped; IL kept.
        let old = 0x13 | psr::DIT | psr::SS | psr::IL | psr::SSBS | psr::PAN | (7 << 40);
        assert_eq!(
            spsr_el2_to_spsr32(old),
            0x13 | psr::SPSR32_DIT | (psr::IL | psr::SSBS | psr::PAN) as u32
        );
        assert_eq!(spsr_el2_to_spsr32(0x13 | psr::SS), 0x13);
        // The new CPSR keeps DIT in the SPSR_EL2 view and clears SS and IL.
        let inj = inject(Exception32::Undef, &regs(0, old), SCTLR, VBAR);
        assert_eq!(inj.cpsr, 0x1b | psr::I | psr::DIT | psr::PAN);
        assert_eq!(inj.spsr, spsr_el2_to_spsr32(old));
    }

    #[test]
    fn apply_writes_pc_cpsr_lr() {
        let mut r = regs(0x1000, 0x1d3);
        let inj = inject(Exception32::DataAbort { dfsr: 0, dfar: 0 }, &r, SCTLR, VBAR);
        inj.apply(&mut r);
        assert_eq!(r.pc, inj.pc);
        assert_eq!(r.pstate, inj.cpsr);
        assert_eq!(current_mode(&r), Some(Mode::Abt));
        assert_eq!(get_reg(&r, Mode::Abt, 14), Some(0x1008));
        // Only LR_abt changed among the GPRs.
        for i in 0..31 {
            if i != 20 {
                assert_eq!(r.x[i], 0x1000 + i as u64);
            }
        }
    }

    #[test]
    fn fault_status_values() {
        assert_eq!(external_abort_fsr(false, false), 0x008);
        assert_eq!(external_abort_fsr(true, false), 0x808);
        assert_eq!(external_abort_fsr(false, true), 0x210);
        assert_eq!(external_abort_fsr(true, true), 0xa10);
        assert_eq!(external_abort_ifsr(false), 0x008);
        assert_eq!(external_abort_ifsr(true), 0x210);
        // The short format decodes back to FS = 0b01000 (sync external abort).
        let fsr = external_abort_fsr(true, false);
        assert_eq!((fsr & 0xf) | ((fsr >> 10) & 1) << 4, 0b01000);
        assert!(long_descriptor_format(0x8000_0000));
        assert!(!long_descriptor_format(0x7fff_ffff));
    }

    fn any_exception() -> impl Strategy<Value = Exception32> {
        prop_oneof![
            Just(Exception32::Undef),
            (any::<u32>(), any::<u32>())
                .prop_map(|(ifsr, ifar)| Exception32::PrefetchAbort { ifsr, ifar }),
            (any::<u32>(), any::<u32>())
                .prop_map(|(dfsr, dfar)| Exception32::DataAbort { dfsr, dfar }),
        ]
    }

    proptest! {
        #[test]
        fn inject_never_panics(
            exc in any_exception(),
            pc in any::<u64>(),
            pstate in any::<u64>(),
            sctlr_v in any::<u32>(),
            vbar in any::<u32>(),
        ) {
            let mut r = GuestRegs::zeroed();
            r.pc = pc;
            r.pstate = pstate;
            let inj = inject(exc, &r, sctlr_v, vbar);
            let (mode, off) = match exc {
                Exception32::Undef => (Mode::Und, vector::UNDEF),
                Exception32::PrefetchAbort { .. } => (Mode::Abt, vector::PREFETCH_ABORT),
                Exception32::DataAbort { .. } => (Mode::Abt, vector::DATA_ABORT),
            };
            prop_assert_eq!(Mode::from_cpsr(inj.cpsr), Some(mode));
            prop_assert_eq!(inj.pc & 0x1f, u64::from(off));
            prop_assert!(inj.pc >> 32 == 0 && inj.lr >> 32 == 0 && inj.cpsr >> 32 == 0);
            prop_assert_eq!(inj.cpsr & psr::I, psr::I);
            prop_assert_eq!(itstate(inj.cpsr), 0);
            prop_assert_eq!(inj.cpsr & (psr::SS | psr::IL), 0);
            prop_assert_eq!(inj.spsr & (1 << 24), 0);
            prop_assert!(inj.lr_index < 31);
            inj.apply(&mut r);
        }

        #[test]
        fn registers_never_panic(
            x in proptest::array::uniform31(any::<u64>()),
            pstate in any::<u64>(),
            r in any::<u8>(),
            v in any::<u32>(),
        ) {
            let mut g = GuestRegs::zeroed();
            g.x = x;
            g.pstate = pstate;
            for m in Mode::ALL {
                match reg_index(m, r) {
                    Some(i) => {
                        prop_assert!(i < 31 && r < 15);
                        prop_assert!(set_reg(&mut g, m, r, v));
                        prop_assert_eq!(get_reg(&g, m, r), Some(v));
                        prop_assert_eq!(g.x[i], u64::from(v));
                    }
                    None => prop_assert!(get_reg(&g, m, r).is_none()),
                }
            }
            let _ = read_rt(&g, r);
            write_rt(&mut g, r, v);
            let _ = current_mode(&g);
        }

        #[test]
        fn skip_never_panics(
            pc in any::<u64>(),
            pstate in any::<u64>(),
            len in any::<u64>(),
            cond in any::<u8>(),
            valid in any::<bool>(),
        ) {
            let mut g = GuestRegs::zeroed();
            g.pc = pc;
            g.pstate = pstate;
            let _ = trap_condition_passes(Condition { valid, cond: cond & 0xf }, pstate);
            skip_instruction(&mut g, len);
            prop_assert!(g.pc >> 32 == 0);
            let keep = !(psr::IT_HI | psr::IT_LO);
            prop_assert_eq!(g.pstate & keep, pstate & keep);
        }

        #[test]
        fn decoders_never_panic(iss in any::<u32>()) {
            let rt = match decode(u64::from((0x03u32 << 26) | (iss & 0x1ff_ffff))).class {
                ExceptionClass::Cp15Mcr(i) => i,
                c => panic!("{c:?}"),
            };
            let _ = decode_mcr(&rt);
            let _ = is_pmu(&rt);
            let _ = classify_cp14(&rt);
            let rrt = cp14_rrt_iss(iss);
            let _ = decode_mcrr(&rrt);
            let _ = is_pmu64(&rrt);
            let _ = classify_cp14_64(&rrt);
            if let Cp15Op::Tlbi(t) = decode_mcr(&rt) {
                let _ = t.to_shadow_op(iss);
            }
        }
    }

    #[test]
    fn iss_registers_in_both_readings() {
        let mut r = GuestRegs::zeroed();
        r.pstate = 0x13; // SVC
        for i in 0..31 {
            r.x[i] = 0x100 + i as u64;
        }
        // QEMU's AArch32 numbering and the ARM ARM's AArch64 view name the same register.
        assert_eq!(read_rt(&r, 13), 0x100 + 19);
        assert_eq!(read_rt(&r, 19), 0x100 + 19);
        assert_eq!(read_rt(&r, 14), 0x100 + 18);
        assert_eq!(read_rt(&r, 3), 0x103);
        r.pstate = 0x11; // FIQ
        assert_eq!(read_rt(&r, 8), 0x100 + 24);
        assert_eq!(read_rt(&r, 24), 0x100 + 24);
        r.pstate = 0x10; // User
        assert_eq!(read_rt(&r, 13), 0x100 + 13);
        write_rt(&mut r, 15, 0xf000_0000);
        assert_eq!(r.pstate & 0xf000_0000, 0xf000_0000);
        assert_eq!(read_rt(&r, 15), 0);
    }
}
