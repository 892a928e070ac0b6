//! Entry code: EL3/EL2/EL1 entry, stacks, BSS clearing and the jump into Rust.
//!
//! QEMU enters an ELF image with x0 = 0 (the DTB, if any, sits at the start of RAM);
//! the Raspberry Pi firmware's armstub enters with x0 = DTB. Either way x0 is passed on
//! to Rust together with the exception level the image was entered at. Entered at EL3,
//! the image drops to EL2h (non-secure, AArch64, HVC enabled) first. Entered at EL1,
//! Rust reports that the virtualization extensions are unavailable and powers off.
//! The image starts with an arm64 Linux Image header, so its flat binary also boots as
//! a Linux kernel would (QEMU `-kernel` of a raw file, or the Raspberry Pi firmware).

use super::STACK_SIZE;
use core::arch::global_asm;

global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    // The arm64 Linux Image header (Documentation/arch/arm64/booting.rst), so that the
    // flat binary (kernel8.img) is loaded like a Linux kernel: at a 2 MiB-aligned RAM
    // base + text_offset, entered with x0 = DTB and secondaries parked on the spin
    // table. An ELF boot enters here too and just branches over it.
    b       0f                      // code0
    .word   0                       // code1
    .quad   HV_TEXT_OFFSET          // text_offset (boards/<board>/memory.ld)
    .quad   __image_size            // image_size, BSS included
    .quad   0x2                     // flags: little-endian, 4 KiB pages
    .quad   0, 0, 0                 // res2..res4
    .ascii  "ARM\x64"               // magic
    .word   0                       // res5
0:  mov     x19, x0                 // DTB from a bootloader, or 0 under QEMU's ELF boot
    mrs     x20, CurrentEL
    ubfx    x20, x20, #2, #2
    cmp     x20, #3
    b.ne    1f
    // EL3: SCR_EL3 = RW | HCE | RES1(5:4) | NS, then ERET to EL2h with DAIF masked.
    mov     x0, #0x531
    msr     scr_el3, x0
    ldr     x0, =0x30c50830         // SCTLR_EL2 RES1 bits, MMU and caches off
    msr     sctlr_el2, x0
    mov     x0, #0x3c9
    msr     spsr_el3, x0
    adr     x0, 1f
    msr     elr_el3, x0
    eret
1:  // x20 still holds the entry level (3 if we dropped from EL3 to EL2 above).
    // Primary stack: top of CPU 0's stack.
    adrp    x0, {stacks}
    add     x0, x0, :lo12:{stacks}
    mov     x1, #{stack_size}
    add     x0, x0, x1
    mov     sp, x0
    // Clear BSS (the stacks are in BSS too; nothing has been pushed yet).
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
2:  cmp     x0, x1
    b.hs    3f
    stp     xzr, xzr, [x0], #16
    b       2b
3:
    mov     x0, x19
    mov     x1, x20
    bl      {primary}
4:  wfe
    b       4b

    // Spin-table entries, one per CPU index (8 bytes each): a CPU released through its
    // cpu-release-addr starts with x0 = 0, so the entry address carries the index.
    .balign 8
    .global _secondary_spin_entries
_secondary_spin_entries:
    .irp    n, 0, 1, 2, 3, 4, 5, 6, 7
    mov     x0, #\n
    b       _secondary_start
    .endr

    // Secondary CPUs enter here through PSCI CPU_ON with x0 = their CPU index.
    .global _secondary_start
_secondary_start:
    mov     x19, x0
    adrp    x1, {stacks}
    add     x1, x1, :lo12:{stacks}
    mov     x2, #{stack_size}
    add     x3, x19, #1
    madd    x1, x3, x2, x1
    mov     sp, x1
    mov     x0, x19
    bl      {secondary}
5:  wfe
    b       5b
    "#,
    stacks = sym super::HV_STACKS,
    stack_size = const STACK_SIZE,
    primary = sym super::rust_primary_entry,
    secondary = sym super::rust_secondary_entry,
);

extern "C" {
    /// Where secondary CPUs start (an address, never called from Rust).
    pub fn _secondary_start();
    /// [`MAX_CPUS`] spin-table entries of 8 bytes each (an address, never called).
    pub fn _secondary_spin_entries();
    /// First byte of the hypervisor image.
    pub static __image_start: u8;
    /// One past the last byte of the image, BSS included.
    pub static __image_end: u8;
}

/// The physical range the hypervisor image occupies (identity-mapped).
pub fn image_range() -> (u64, u64) {
    // Only the addresses of the linker symbols are taken, never their contents.
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    )
}
