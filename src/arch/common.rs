//! Items both hosts share as they are: the per-CPU stacks, the PSCI conduit, the
//! power-off choice, the heap, the panic handler, the page-frame allocator behind the
//! page tables, the VMID switch around TLB maintenance, the barriers (the same
//! instructions in A64 and A32) and the waits.
//!
//! Target-only (it defines the global allocator and the panic handler); each host's
//! module provides what differs: `power_off`'s instructions and `mem::load_desc` /
//! `mem::store_desc`, the single-copy-atomic descriptor accesses.

use crate::addr::{HostPhysAddr, HostRange};
use crate::mm::{FrameAllocator, PAGE_SIZE};
use crate::pgtable::PageTableMm;
use core::sync::atomic::{AtomicU8, Ordering};
use spin::Mutex;

/// Most physical CPUs the hypervisor brings up.
pub const MAX_CPUS: usize = 8;
/// Stack bytes per physical CPU.
pub const STACK_SIZE: usize = 64 * 1024;

/// Per-CPU hypervisor stacks (16-byte aligned).
#[repr(C, align(16))]
pub struct Stacks(pub [[u8; STACK_SIZE]; MAX_CPUS]);

/// The stacks live in BSS; each host's entry code computes a CPU's top from its index.
#[no_mangle]
pub static mut HV_STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);

/// Runs `f` with VMID `vmid` in VTTBR(_EL2), the VMID the EL1&0 (PL1&0) TLB
/// maintenance acts on, and puts the old value back.
pub(crate) fn with_vmid(vmid: u8, f: impl FnOnce()) {
    let old = super::sysreg::vttbr();
    let want = (old & !(0xffu64 << 48)) | ((vmid as u64) << 48);
    if old != want {
        super::sysreg::set_vttbr(want);
        super::sysreg::isb();
    }
    f();
    if old != want {
        super::sysreg::set_vttbr(old);
        super::sysreg::isb();
    }
}

/// The conduit the host firmware's PSCI uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    /// `smc #0` (firmware at EL3 or in the Secure monitor, or QEMU's built-in PSCI).
    Smc,
    /// `hvc #0` (only usable when the image runs at EL1/PL1).
    Hvc,
}

/// How `power_off` ends the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PowerOff {
    /// PSCI SYSTEM_OFF through the given conduit (the default).
    Psci = 0,
    /// No PSCI firmware: the semihosting SYS_EXIT call (`hlt #0xf000` on AArch64,
    /// `svc #0x123456` on ARMv7). Only valid when a debugger or QEMU's `-semihosting`
    /// handles it.
    Semihosting = 1,
    /// No PSCI firmware and no semihosting: halt this CPU (the last log line says why).
    Halt = 2,
}

static POWER_OFF: AtomicU8 = AtomicU8::new(PowerOff::Psci as u8);

/// Chooses how `power_off` (and the panic handler) end the run.
pub fn set_power_off(how: PowerOff) {
    POWER_OFF.store(how as u8, Ordering::Relaxed);
}

/// The choice [`set_power_off`] made.
pub fn power_off_how() -> PowerOff {
    match POWER_OFF.load(Ordering::Relaxed) {
        0 => PowerOff::Psci,
        1 => PowerOff::Semihosting,
        _ => PowerOff::Halt,
    }
}

/// The hypervisor heap.
#[global_allocator]
pub static HEAP: buddy_system_allocator::LockedHeap<32> =
    buddy_system_allocator::LockedHeap::empty();

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if crate::logger::CONSOLE.is_locked() {
        // SAFETY: the machine is about to power off; if this CPU panicked while holding
        // the console lock, breaking it is the only way to report the panic. Output
        // from another CPU may interleave, which is acceptable here.
        unsafe { crate::logger::CONSOLE.force_unlock() };
    }
    log::error!("PANIC: {info}");
    super::power_off(PsciConduit::Smc)
}

/// The global page-frame allocator.
pub static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::new());

/// Adds free RAM to the frame allocator.
pub fn add_ram(r: HostRange) {
    if let Err(e) = FRAMES.lock().add(r) {
        log::warn!("cannot track RAM {r:?}: {e}");
    }
}

/// Table memory from [`FRAMES`], accessed through the identity map (a table frame's host
/// physical address is also its hypervisor virtual address on both hosts).
#[derive(Clone, Copy, Default)]
pub struct FrameMm;

impl PageTableMm for FrameMm {
    fn alloc_zeroed(&mut self, frames: usize) -> Option<HostPhysAddr> {
        let size = frames as u64 * PAGE_SIZE;
        let pa = FRAMES.lock().alloc(size, size).ok()?;
        // SAFETY: the allocator handed out `size` bytes of RAM at `pa` exclusively to
        // us, and RAM is identity-mapped and writable in the hypervisor.
        unsafe { core::ptr::write_bytes(pa.raw() as usize as *mut u8, 0, size as usize) };
        Some(pa)
    }

    fn free(&mut self, pa: HostPhysAddr, frames: usize) {
        if let Err(e) = FRAMES.lock().free(pa, frames as u64 * PAGE_SIZE) {
            log::error!("freeing table frames at {pa}: {e}");
        }
    }

    fn read_entry(&self, table: HostPhysAddr, index: usize) -> u64 {
        let p = (table.raw() as usize + 8 * index) as *const u64;
        // SAFETY: `table` is a frame this allocator handed out for a table and `index`
        // is within it (the trait's contract), so `p` is 8-byte aligned table memory.
        unsafe { super::mem::load_desc(p) }
    }

    fn write_entry(&mut self, table: HostPhysAddr, index: usize, value: u64) {
        let p = (table.raw() as usize + 8 * index) as *mut u64;
        // SAFETY: as in `read_entry`.
        unsafe { super::mem::store_desc(p, value) }
    }
}

/// Instruction synchronization barrier.
#[inline(always)]
pub fn isb() {
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}

/// Data synchronization barrier, inner shareable.
#[inline(always)]
pub fn dsb_ish() {
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
}

/// Data synchronization barrier for stores, inner shareable.
#[inline(always)]
pub fn dsb_ishst() {
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
}

/// Full-system data synchronization barrier.
#[inline(always)]
pub fn dsb_sy() {
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Sends an event to all CPUs (wakes `wfe`).
#[inline(always)]
pub fn sev() {
    // SAFETY: SEV only signals other cores.
    unsafe { core::arch::asm!("sev", options(nomem, nostack, preserves_flags)) };
}

/// Waits for an event.
#[inline(always)]
pub fn wfe() {
    // SAFETY: WFE only pauses this core.
    unsafe { core::arch::asm!("wfe", options(nomem, nostack, preserves_flags)) };
}

/// Wakes CPUs waiting in [`wait_for_event`].
pub fn wake_cpus() {
    dsb_ish();
    sev();
}

/// Waits for a physical interrupt (IRQs stay masked in the hypervisor; a pending one
/// wakes the CPU and is then taken with `HostGic::ack`).
pub fn wait_for_interrupt() {
    dsb_sy();
    // SAFETY: WFI only pauses this core.
    unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
}

/// Waits for an event (another CPU's [`wake_cpus`]) or a spurious wake-up.
pub fn wait_for_event() {
    wfe();
}
