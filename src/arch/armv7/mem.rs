//! Descriptor accesses and the TLB-maintenance trait of the ARMv7 host (LPAE long
//! descriptors, B3.6; TLB maintenance, B4.2.3 and B4.1.139).
//!
//! Descriptors are 64 bits wide and are read and written with LDRD/STRD, which are
//! single-copy atomic on an LPAE implementation for doubleword-aligned addresses
//! (A3.5.3), so the walker never sees half an entry. The frame allocator behind the
//! tables is shared (`arch::common`).

use super::with_vmid;
use crate::addr::{GuestPhysAddr, VirtAddr};
use crate::pgtable::TlbMaintenance;

/// Loads a table descriptor with one LDRD.
///
/// # Safety
/// `p` must point at an 8-byte-aligned descriptor in identity-mapped table memory.
pub(crate) unsafe fn load_desc(p: *const u64) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: per the contract; LDRD of an aligned doubleword only reads it.
    unsafe {
        core::arch::asm!("ldrd r2, r3, [{p}]", p = in(reg) p, out("r2") lo, out("r3") hi,
            options(nostack, readonly, preserves_flags))
    };
    (hi as u64) << 32 | lo as u64
}

/// Stores a table descriptor with one STRD.
///
/// # Safety
/// As for [`load_desc`], and the store must not break a table another CPU walks.
pub(crate) unsafe fn store_desc(p: *mut u64, v: u64) {
    // SAFETY: per the contract; one STRD stores the whole descriptor.
    unsafe {
        core::arch::asm!("strd r2, r3, [{p}]", p = in(reg) p, in("r2") v as u32,
            in("r3") (v >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// Real TLB maintenance with the inner-shareable broadcast forms.
#[derive(Clone, Copy, Default)]
pub struct HwTlb;

impl TlbMaintenance for HwTlb {
    fn dsb_ishst(&mut self) {
        super::sysreg::dsb_ishst();
    }
    fn dsb_ish(&mut self) {
        super::sysreg::dsb_ish();
    }
    fn isb(&mut self) {
        super::sysreg::isb();
    }
    fn tlbi_ipas2e1is(&mut self, _vmid: u8, _ipa: GuestPhysAddr, _level: u8) {
        // ARMv7 has no invalidation by IPA (TLBIIPAS2IS is ARMv8): TLBIALLNSNHIS drops
        // every Non-secure PL1&0 entry, stage 1 and 2, of every VMID. Invalidating more
        // is always correct; it costs the other VMs their TLB contents.
        crate::mcr!("p15, 4, {0}, c8, c3, 4", 0);
    }
    fn tlbi_vmalle1is(&mut self, vmid: u8) {
        // TLBIALLIS executed in HYP mode: the Non-secure PL1&0 entries of the VMID in
        // VTTBR.
        with_vmid(vmid, || crate::mcr!("p15, 0, {0}, c8, c3, 0", 0));
    }
    fn tlbi_vmalls12e1is(&mut self, _vmid: u8) {
        // TLBIALLNSNHIS: every Non-secure non-Hyp entry, stage 1 and 2, of every VMID.
        // ARMv7 has no per-VMID combined form; invalidating more is always correct.
        crate::mcr!("p15, 4, {0}, c8, c3, 4", 0);
    }
    fn tlbi_vae2is(&mut self, va: VirtAddr) {
        // TLBIMVAHIS: the HYP-mode entry of one MVA.
        crate::mcr!("p15, 4, {0}, c8, c3, 1", (va.raw() as u32) & !0xfff);
    }
    fn tlbi_alle2(&mut self) {
        // TLBIALLHIS.
        crate::mcr!("p15, 4, {0}, c8, c3, 0", 0);
    }
}
