//! Entry code: the primary vCPU starts at `_start` (the image's first byte), a
//! secondary vCPU started with PSCI CPU_ON at [`secondary_entry_addr`].
//!
//! Both arrive at EL1h with the MMU off and interrupts masked. The primary clears BSS,
//! reads its RAM size from the DTB in x0, builds the identity tables, turns the MMU on
//! and runs the program; a secondary takes the second stack, turns the MMU on with the
//! same tables and runs the function set with [`set_secondary_fn`], then CPU_OFF.
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::{dtb, harness, mmu, smccc, DEFAULT_RAM_SIZE, RAM_BASE};

global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    msr     daifset, #0xf
    mov     x19, x0
    adrp    x1, __stack0_top
    add     x1, x1, :lo12:__stack0_top
    mov     sp, x1
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    str     xzr, [x1], #8
    b       1b
2:  adrp    x1, hvg_vectors
    add     x1, x1, :lo12:hvg_vectors
    msr     vbar_el1, x1
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb
    mov     x0, x19
    bl      {primary}
3:  wfe
    b       3b

    .section .text.hvg_secondary, "ax"
    .global hvg_secondary_entry
    .balign 8
hvg_secondary_entry:
    msr     daifset, #0xf
    mov     x19, x0
    adrp    x1, __stack1_top
    add     x1, x1, :lo12:__stack1_top
    mov     sp, x1
    adrp    x1, hvg_vectors
    add     x1, x1, :lo12:hvg_vectors
    msr     vbar_el1, x1
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb
    bl      hvg_enable_mmu
    mov     x0, x19
    bl      {secondary}
4:  wfe
    b       4b
    "#,
    primary = sym primary_rust,
    secondary = sym secondary_rust,
);

extern "C" {
    fn hvg_secondary_entry();
}

static BOOT_X0: AtomicU64 = AtomicU64::new(0);
static RAM_SIZE: AtomicU64 = AtomicU64::new(0);
static RAM_FROM_DTB: AtomicBool = AtomicBool::new(false);
static SECONDARY_FN: AtomicUsize = AtomicUsize::new(0);
static CPU_OFF_RESULT: AtomicU64 = AtomicU64::new(0);

/// x0 at entry (the DTB address, or 0).
pub fn boot_x0() -> u64 {
    BOOT_X0.load(Ordering::Relaxed)
}

/// Guest RAM size, and whether it came from the DTB (else [`DEFAULT_RAM_SIZE`]).
pub fn ram_size() -> (u64, bool) {
    (
        RAM_SIZE.load(Ordering::Relaxed),
        RAM_FROM_DTB.load(Ordering::Relaxed),
    )
}

/// Physical (= virtual) address to pass to PSCI CPU_ON as the entry point.
pub fn secondary_entry_addr() -> u64 {
    hvg_secondary_entry as *const () as usize as u64
}

/// Sets the function a secondary vCPU runs (with CPU_ON's context id) before CPU_OFF.
pub fn set_secondary_fn(f: fn(u64)) {
    SECONDARY_FN.store(f as usize, Ordering::SeqCst);
}

/// The value CPU_OFF returned on a secondary (0 while it never returned).
pub fn cpu_off_result() -> u64 {
    CPU_OFF_RESULT.load(Ordering::SeqCst)
}

extern "Rust" {
    fn hvg_guest_main();
}

extern "C" fn primary_rust(x0: u64) -> ! {
    // MMU still off: only byte reads of the DTB and writes of the page tables here.
    let (size, from_dtb) = match dtb::memory(x0) {
        Some((base, size)) if base == RAM_BASE && size >= (16 << 20) => (size, true),
        _ => (DEFAULT_RAM_SIZE, false),
    };
    mmu::build_tables(RAM_BASE + size);
    mmu::enable();
    BOOT_X0.store(x0, Ordering::Relaxed);
    RAM_SIZE.store(size, Ordering::Relaxed);
    RAM_FROM_DTB.store(from_dtb, Ordering::Relaxed);
    crate::println!(
        "# hv guest: x0={:#x}, RAM {:#x}+{:#x} ({})",
        x0,
        RAM_BASE,
        size,
        if from_dtb {
            "from the DTB"
        } else {
            "assumed, no DTB"
        }
    );
    // SAFETY: `hvg_guest_main` is defined by the program through `guest_main!`.
    unsafe { hvg_guest_main() };
    harness::finish()
}

extern "C" fn secondary_rust(ctx: u64) -> ! {
    let f = SECONDARY_FN.load(Ordering::SeqCst);
    if f != 0 {
        // SAFETY: SECONDARY_FN only ever holds a `fn(u64)` stored by `set_secondary_fn`.
        let f: fn(u64) = unsafe { core::mem::transmute::<usize, fn(u64)>(f) };
        f(ctx);
    }
    let r = smccc::hvc(smccc::PSCI_CPU_OFF, 0, 0, 0);
    CPU_OFF_RESULT.store(r | (1 << 63), Ordering::SeqCst);
    loop {
        core::hint::spin_loop();
    }
}
