//! Target implementations of the page-table memory and TLB-maintenance traits.
//!
//! Physical memory is identity-mapped at EL2, so a table frame's host physical
//! address is also its hypervisor virtual address.

use crate::addr::{GuestPhysAddr, HostPhysAddr, HostRange, VirtAddr};
use crate::mm::{FrameAllocator, PAGE_SIZE};
use crate::pgtable::{PageTableMm, TlbMaintenance};
use crate::{read_sysreg, write_sysreg};
use spin::Mutex;

/// The global page-frame allocator.
pub static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::new());

/// Table memory from [`FRAMES`], accessed through the identity map.
#[derive(Clone, Copy, Default)]
pub struct FrameMm;

impl PageTableMm for FrameMm {
    fn alloc_zeroed(&mut self, frames: usize) -> Option<HostPhysAddr> {
        let size = frames as u64 * PAGE_SIZE;
        let pa = FRAMES.lock().alloc(size, size).ok()?;
        // SAFETY: the allocator handed out `size` bytes of RAM at `pa` exclusively to
        // us, and RAM is identity-mapped and writable at EL2.
        unsafe { core::ptr::write_bytes(pa.raw() as *mut u8, 0, size as usize) };
        Some(pa)
    }

    fn free(&mut self, pa: HostPhysAddr, frames: usize) {
        if let Err(e) = FRAMES.lock().free(pa, frames as u64 * PAGE_SIZE) {
            log::error!("freeing table frames at {pa}: {e}");
        }
    }

    fn read_entry(&self, table: HostPhysAddr, index: usize) -> u64 {
        // SAFETY: `table` is a frame this allocator handed out for a table and `index`
        // is within it (the trait's contract); a 64-bit volatile load is single-copy atomic.
        unsafe { ((table.raw() as *const u64).add(index)).read_volatile() }
    }

    fn write_entry(&mut self, table: HostPhysAddr, index: usize, value: u64) {
        // SAFETY: as in `read_entry`; a 64-bit volatile store is single-copy atomic.
        unsafe { ((table.raw() as *mut u64).add(index)).write_volatile(value) }
    }
}

/// Adds free RAM to the frame allocator.
pub fn add_ram(r: HostRange) {
    if let Err(e) = FRAMES.lock().add(r) {
        log::warn!("cannot track RAM {r:?}: {e}");
    }
}

/// Real TLB maintenance with the inner-shareable broadcast forms.
#[derive(Clone, Copy, Default)]
pub struct HwTlb;

fn with_vmid(vmid: u8, f: impl FnOnce()) {
    let old = read_sysreg!("vttbr_el2");
    let want = (old & !(0xffu64 << 48)) | ((vmid as u64) << 48);
    if old != want {
        write_sysreg!("vttbr_el2", want);
        super::sysreg::isb();
    }
    f();
    if old != want {
        write_sysreg!("vttbr_el2", old);
        super::sysreg::isb();
    }
}

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
