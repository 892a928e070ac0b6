//! Descriptor accesses and the TLB-maintenance trait of the AArch64 host (the frame
//! allocator behind the tables is shared: `arch::common`).

use super::with_vmid;
use crate::addr::{GuestPhysAddr, VirtAddr};
use crate::pgtable::TlbMaintenance;

/// Loads a table descriptor with one single-copy-atomic 64-bit access.
///
/// # Safety
/// `p` must point at an 8-byte-aligned descriptor in identity-mapped table memory.
pub(crate) unsafe fn load_desc(p: *const u64) -> u64 {
    // SAFETY: per the contract; an aligned 64-bit volatile load is one LDR.
    unsafe { p.read_volatile() }
}

/// Stores a table descriptor with one single-copy-atomic 64-bit access.
///
/// # Safety
/// As for [`load_desc`], and the store must not break a table another CPU walks.
pub(crate) unsafe fn store_desc(p: *mut u64, v: u64) {
    // SAFETY: per the contract; an aligned 64-bit volatile store is one STR.
    unsafe { p.write_volatile(v) }
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
    fn tlbi_ipas2e1is(&mut self, vmid: u8, ipa: GuestPhysAddr, _level: u8) {
        with_vmid(vmid, || {
            // SAFETY: TLB invalidation has no memory-safety effect.
            unsafe {
                core::arch::asm!("tlbi ipas2e1is, {0}", in(reg) ipa.raw() >> 12, options(nostack))
            };
        });
    }
    fn tlbi_vmalle1is(&mut self, vmid: u8) {
        // SAFETY: TLB invalidation has no memory-safety effect.
        with_vmid(vmid, || unsafe {
            core::arch::asm!("tlbi vmalle1is", options(nostack))
        });
    }
    fn tlbi_vmalls12e1is(&mut self, vmid: u8) {
        // SAFETY: TLB invalidation has no memory-safety effect.
        with_vmid(vmid, || unsafe {
            core::arch::asm!("tlbi vmalls12e1is", options(nostack))
        });
    }
    fn tlbi_vae2is(&mut self, va: VirtAddr) {
        // SAFETY: TLB invalidation has no memory-safety effect.
        unsafe { core::arch::asm!("tlbi vae2is, {0}", in(reg) va.raw() >> 12, options(nostack)) };
    }
    fn tlbi_alle2(&mut self) {
        // SAFETY: TLB invalidation has no memory-safety effect.
        unsafe { core::arch::asm!("tlbi alle2is", options(nostack)) };
    }
}
