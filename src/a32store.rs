//! Decoding of the A32 store instructions whose data aborts carry no syndrome (ISV = 0), so that a trapped write to a write-protected guest table can be emulated without single-stepping.
//!
//! ARMv8 reports ISV = 0 for stores with base-register writeback, for STRD and for STM
//! (ARM ARM, ESR_ELx.ISS "ISV"). Linux's ARMv7 `cpu_v7_set_pte_ext` writes every hardware
//! PTE with `str r3, [r0, #2048]!`, so a shadow-paging hypervisor sees that form on every
//! page-table update. This module decodes the A32 encodings (ARM ARM F5, "STR (immediate)",
//! "STR (register)", "STRB", "STRH", "STRD", "STM/STMIA/STMDA/STMDB/STMIB") into the
//! element stores and the writeback they perform. T32 and anything else is `None`: the
//! caller falls back to single-stepping the instruction.

use crate::aarch32::{self, Mode};
use crate::vm::GuestRegs;
use alloc::vec::Vec;

/// One decoded store: the elements written (address, size in bytes, value) in order,
/// and the base register's new value if it is written back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    /// (virtual address, size 1/2/4, value) per element.
    pub elements: Vec<(u32, u8, u32)>,
    /// (base register, value) when the instruction writes the base back.
    pub writeback: Option<(u8, u32)>,
    /// The status register of a store-exclusive, which gets 0 (the store happened).
    pub status: Option<u8>,
}

/// The value of register `r` as an A32 operand: R15 reads as the instruction's address + 8.
fn operand(regs: &GuestRegs, mode: Mode, r: u8) -> Option<u32> {
    if r == 15 {
        Some((regs.pc as u32).wrapping_add(8))
    } else {
        aarch32::get_reg(regs, mode, r)
    }
}

/// The A32 immediate shift of a register offset (`Shift_C` with the carry ignored;
/// RRX takes the carry from `cpsr`).
fn shifted(v: u32, ty: u32, imm5: u32, cpsr: u64) -> u32 {
    match (ty, imm5) {
        (0, n) => v.wrapping_shl(n),
        (1, 0) => 0,
        (1, n) => v >> n,
        (2, 0) => ((v as i32) >> 31) as u32,
        (2, n) => ((v as i32) >> n) as u32,
        (3, 0) => (v >> 1) | ((((cpsr >> 29) & 1) as u32) << 31),
        (_, n) => v.rotate_right(n),
    }
}

/// STREX, STREXB, STREXH, STREXD (A1: `cond 0001 1ssL Rn Rd 1111 1001 Rt`, L = 0).
///
/// A store-exclusive that traps cannot simply be re-executed: the exception return
/// clears the local monitor, so it would fail and the guest would retry for ever. With
/// one vCPU nothing else can have claimed the location, so the trapped store-exclusive
/// is emulated as one that succeeds: the store happens and Rd gets 0.
fn store_exclusive(insn: u32, regs: &GuestRegs, mode: Mode) -> Option<Store> {
    if insn & 0x0f90_0ff0 != 0x0180_0f90 {
        return None;
    }
    let rn = ((insn >> 16) & 0xf) as u8;
    let rd = ((insn >> 12) & 0xf) as u8;
    let rt = (insn & 0xf) as u8;
    if rn == 15 || rd == 15 || rd == rn || rd == rt {
        return None;
    }
    let addr = aarch32::get_reg(regs, mode, rn)?;
    let elements = match (insn >> 21) & 3 {
        0b00 => alloc::vec![(addr, 4, aarch32::get_reg(regs, mode, rt)?)],
        0b01 => {
            if rt & 1 == 1 || rt == 14 || rd == rt + 1 {
                return None;
            }
            alloc::vec![
                (addr, 4, aarch32::get_reg(regs, mode, rt)?),
                (
                    addr.wrapping_add(4),
                    4,
                    aarch32::get_reg(regs, mode, rt + 1)?
                ),
            ]
        }
        0b10 => alloc::vec![(addr, 1, aarch32::get_reg(regs, mode, rt)? & 0xff)],
        _ => alloc::vec![(addr, 2, aarch32::get_reg(regs, mode, rt)? & 0xffff)],
    };
    Some(Store {
        elements,
        writeback: None,
        status: Some(rd),
    })
}

/// Decodes the A32 store `insn`, executed at `regs.pc` in mode `mode`, into its element
/// stores. `None` for anything that is not one of the supported stores, for forms the
/// architecture calls UNPREDICTABLE (PC as base with writeback, Rn = Rt with writeback,
/// an empty register list...), and for user-mode (`STRT`) forms.
pub fn decode(insn: u32, regs: &GuestRegs, mode: Mode) -> Option<Store> {
    let rn = ((insn >> 16) & 0xf) as u8;
    let rt = ((insn >> 12) & 0xf) as u8;
    let p = insn & (1 << 24) != 0;
    let u = insn & (1 << 23) != 0;
    let w = insn & (1 << 21) != 0;
    let l = insn & (1 << 20) != 0;
    if insn >> 28 == 0xf || l {
        return None;
    }
    if let Some(st) = store_exclusive(insn, regs, mode) {
        return Some(st);
    }
    let base = operand(regs, mode, rn)?;
    let wb = !p || w;
    let is_stm = (insn >> 25) & 7 == 0b100;
    // Writeback to the PC or to the register being stored is UNPREDICTABLE.
    if !is_stm && wb && (rn == 15 || rn == rt) {
        return None;
    }
    let address = |off: u32| {
        let off_addr = if u {
            base.wrapping_add(off)
        } else {
            base.wrapping_sub(off)
        };
        let addr = if p { off_addr } else { base };
        (addr, wb.then_some((rn, off_addr)))
    };
    match (insn >> 25) & 7 {
        // STR/STRB (immediate), or (register) with bit 4 clear.
        0b010 | 0b011 => {
            let reg_form = (insn >> 25) & 7 == 0b011;
            if reg_form && insn & (1 << 4) != 0 {
                return None;
            }
            if !p && w {
                return None; // STRT/STRBT
            }
            let off = if reg_form {
                let rm = (insn & 0xf) as u8;
                if rm == 15 {
                    return None;
                }
                let v = aarch32::get_reg(regs, mode, rm)?;
                shifted(v, (insn >> 5) & 3, (insn >> 7) & 0x1f, regs.pstate)
            } else {
                insn & 0xfff
            };
            let size = if insn & (1 << 22) != 0 { 1 } else { 4 };
            let (addr, writeback) = address(off);
            let v = operand(regs, mode, rt)?;
            Some(Store {
                elements: alloc::vec![(addr, size, v)],
                writeback,
                status: None,
            })
        }
        // Extra load/store: STRH and STRD (bit 7 and bit 4 set, op2 = 01 or 11).
        0b000 => {
            if insn & 0x90 != 0x90 || (insn >> 5) & 3 == 0 {
                return None;
            }
            if !p && w {
                return None; // STRHT
            }
            let imm = insn & (1 << 22) != 0;
            let off = if imm {
                ((insn >> 4) & 0xf0) | (insn & 0xf)
            } else {
                let rm = (insn & 0xf) as u8;
                if (insn >> 8) & 0xf != 0 || rm == 15 {
                    return None;
                }
                aarch32::get_reg(regs, mode, rm)?
            };
            let (addr, writeback) = address(off);
            match (insn >> 5) & 3 {
                0b01 => Some(Store {
                    elements: alloc::vec![(addr, 2, operand(regs, mode, rt)? & 0xffff)],
                    writeback,
                    status: None,
                }),
                0b11 => {
                    // STRD: Rt must be even and not R14.
                    if rt & 1 == 1 || rt == 14 || (wb && rn == rt + 1) {
                        return None;
                    }
                    Some(Store {
                        elements: alloc::vec![
                            (addr, 4, aarch32::get_reg(regs, mode, rt)?),
                            (
                                addr.wrapping_add(4),
                                4,
                                aarch32::get_reg(regs, mode, rt + 1)?
                            ),
                        ],
                        writeback,
                        status: None,
                    })
                }
                _ => None,
            }
        }
        // STM (bit 22, the user-register form, is excluded).
        0b100 => {
            let list = insn & 0xffff;
            if insn & (1 << 22) != 0 || list == 0 || rn == 15 {
                return None;
            }
            // Writeback with the base in the list, other than as its lowest register,
            // stores an UNKNOWN value.
            if w && list & (1 << rn) != 0 && list & ((1 << rn) - 1) != 0 {
                return None;
            }
            let n = list.count_ones();
            let start = match (p, u) {
                (false, true) => base,                                      // IA
                (true, true) => base.wrapping_add(4),                       // IB
                (false, false) => base.wrapping_sub(4 * n).wrapping_add(4), // DA
                (true, false) => base.wrapping_sub(4 * n),                  // DB
            };
            let mut elements = Vec::with_capacity(n as usize);
            let mut a = start;
            for r in 0..16u8 {
                if list & (1 << r) != 0 {
                    elements.push((a, 4, operand(regs, mode, r)?));
                    a = a.wrapping_add(4);
                }
            }
            let new_base = if u {
                base.wrapping_add(4 * n)
            } else {
                base.wrapping_sub(4 * n)
            };
            Some(Store {
                elements,
                writeback: w.then_some((rn, new_base)),
                status: None,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> GuestRegs {
        let mut r = GuestRegs::zeroed();
        r.pstate = 0x1d3; // SVC
        r.pc = 0x8000_1000;
        for i in 0..13 {
            r.x[i] = 0x1000 * i as u64;
        }
        r.x[19] = 0x7000; // SP_svc
        r
    }

    #[test]
    fn linux_set_pte_ext_store() {
        // str r3, [r0, #2048]!  (e5a03800)
        let mut r = regs();
        r.x[0] = 0xc123_4400;
        r.x[3] = 0x1234_5678;
        let s = decode(0xe5a0_3800, &r, Mode::Svc).unwrap();
        assert_eq!(s.elements, alloc::vec![(0xc123_4c00, 4, 0x1234_5678)]);
        assert_eq!(s.writeback, Some((0, 0xc123_4c00)));
    }

    #[test]
    fn immediate_and_register_forms() {
        let r = regs();
        // str r1, [r2, #-4]  (e5021004): no writeback.
        let s = decode(0xe502_1004, &r, Mode::Svc).unwrap();
        assert_eq!(s.elements, alloc::vec![(0x2000 - 4, 4, 0x1000)]);
        assert_eq!(s.writeback, None);
        // strb r1, [r2], #1  (e4c21001): post-indexed.
        let s = decode(0xe4c2_1001, &r, Mode::Svc).unwrap();
        assert_eq!(s.elements, alloc::vec![(0x2000, 1, 0x1000)]);
        assert_eq!(s.writeback, Some((2, 0x2001)));
        // str r1, [r2, r3, lsl #2]  (e7821103)
        let s = decode(0xe782_1103, &r, Mode::Svc).unwrap();
        assert_eq!(s.elements, alloc::vec![(0x2000 + 0x3000 * 4, 4, 0x1000)]);
        // strt (post-indexed with W) is not emulated.
        assert!(decode(0xe4a2_1004, &r, Mode::Svc).is_none());
        // A load is not a store.
        assert!(decode(0xe592_1000, &r, Mode::Svc).is_none());
    }

    #[test]
    fn halfword_doubleword_and_multiple() {
        let r = regs();
        // strh r1, [r2, #6]  (e1c210b6)
        let s = decode(0xe1c2_10b6, &r, Mode::Svc).unwrap();
        assert_eq!(s.elements, alloc::vec![(0x2006, 2, 0x1000)]);
        // strd r4, r5, [r2, #8]!  (e1e240f8)
        let s = decode(0xe1e2_40f8, &r, Mode::Svc).unwrap();
        assert_eq!(
            s.elements,
            alloc::vec![(0x2008, 4, 0x4000), (0x200c, 4, 0x5000)]
        );
        assert_eq!(s.writeback, Some((2, 0x2008)));
        // strd with an odd Rt is UNPREDICTABLE: refused.
        assert!(decode(0xe1c2_50f8, &r, Mode::Svc).is_none());
        // stmia r0!, {r1, r2, r3}  (e8a0000e)
        let mut r2 = regs();
        r2.x[0] = 0x9000;
        let s = decode(0xe8a0_000e, &r2, Mode::Svc).unwrap();
        assert_eq!(
            s.elements,
            alloc::vec![
                (0x9000, 4, 0x1000),
                (0x9004, 4, 0x2000),
                (0x9008, 4, 0x3000)
            ]
        );
        assert_eq!(s.writeback, Some((0, 0x900c)));
        // push {r4, lr} = stmdb sp!, {r4, lr}  (e92d4010): SP_svc is x19, LR_svc x18.
        let mut r3 = regs();
        r3.x[18] = 0xdead;
        let s = decode(0xe92d_4010, &r3, Mode::Svc).unwrap();
        assert_eq!(
            s.elements,
            alloc::vec![(0x7000 - 8, 4, 0x4000), (0x7000 - 4, 4, 0xdead)]
        );
        assert_eq!(s.writeback, Some((13, 0x7000 - 8)));
        // Empty list and the user-register form are refused.
        assert!(decode(0xe8a0_0000, &r2, Mode::Svc).is_none());
        assert!(decode(0xe8c0_000e, &r2, Mode::Svc).is_none());
    }

    #[test]
    fn store_exclusive_succeeds() {
        let r = regs();
        // strex r0, r1, [r2]  (e1820f91)
        let s = decode(0xe182_0f91, &r, Mode::Svc).unwrap();
        assert_eq!(s.elements, alloc::vec![(0x2000, 4, 0x1000)]);
        assert_eq!(s.status, Some(0));
        // strexd r3, r4, r5, [r2]  (e1a23f94)
        let s = decode(0xe1a2_3f94, &r, Mode::Svc).unwrap();
        assert_eq!(
            s.elements,
            alloc::vec![(0x2000, 4, 0x4000), (0x2004, 4, 0x5000)]
        );
        assert_eq!(s.status, Some(3));
        // strexb r3, r1, [r2]  (e1c23f91), strexh (e1e23f91)
        assert_eq!(decode(0xe1c2_3f91, &r, Mode::Svc).unwrap().elements[0].1, 1);
        assert_eq!(decode(0xe1e2_3f91, &r, Mode::Svc).unwrap().elements[0].1, 2);
        // Rd = Rt is UNPREDICTABLE: refused.
        assert!(decode(0xe182_1f91, &r, Mode::Svc).is_none());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(insn: u32, pc: u32, pstate in 0u64..0x2_0000_0000) {
            let mut r = regs();
            r.pc = pc as u64;
            r.pstate = pstate;
            let mode = aarch32::current_mode(&r).unwrap_or(Mode::Svc);
            if let Some(s) = decode(insn, &r, mode) {
                proptest::prop_assert!(!s.elements.is_empty() && s.elements.len() <= 16);
            }
        }
    }
}
