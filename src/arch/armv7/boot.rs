//! Entry code of the ARMv7 host: HYP-mode entry (or the step into it from the Secure
//! state), stacks, BSS clearing and the jump into Rust.
//!
//! `qemu-system-arm -M virt,virtualization=on` enters an ELF image in HYP mode; a
//! bootloader following the 32-bit Linux boot protocol passes the DTB in r2, which is
//! handed on to Rust together with the mode the image was entered in:
//! - HYP mode (0x1a): the normal case.
//! - Secure SVC or Monitor mode (`virtualization=on,secure=on`): the image makes its
//!   own way into Non-secure HYP mode. It takes Monitor mode, sets SCR to NS | FW | AW
//!   | HCE (B4.1.129), opens CP10/CP11 and the SMP bit to the Non-secure state through
//!   NSACR (B4.1.111), puts every interrupt of the board's GIC into Group 1 (GICD_IGROUPRn
//!   and the banked GICD_IGROUPR0, IHI 0048B §4.3.4) with both groups enabled, so that
//!   the Non-secure hypervisor can use them, and returns into HYP mode.
//! - Non-secure SVC (found so by the read of SCR being UNDEFINED), or a CPU without the
//!   Security or Virtualization Extensions: Rust reports that and stops.
//!
//! Rust gets `(dtb, mode)`; `mode` is the CPSR.M the image was entered in.

use super::STACK_SIZE;
use core::arch::global_asm;

global_asm!(
    r#"
    .arch_extension virt
    .arch_extension sec
    .section .text.boot, "ax"
    .arm
    .global _start
_start:
    cpsid   aif                     @ the hypervisor runs with every exception masked
    mov     r10, r2                 @ DTB from a bootloader (0 or garbage under QEMU ELF boot)
    mrs     r11, cpsr
    and     r11, r11, #0x1f
    cmp     r11, #0x1a
    beq     .Lin_hyp
    cmp     r11, #0x16
    beq     .Lsecure
    cmp     r11, #0x13
    bne     .Lcommon
    // SVC: Secure only if the Security Extensions exist (ID_PFR1.Security, B4.1.94) and
    // the Virtualization Extensions too (ID_PFR1.Virtualization); QEMU then starts in
    // the Secure state.
    mrc     p15, 0, r0, c0, c1, 1
    ubfx    r1, r0, #4, #4
    ubfx    r2, r0, #12, #4
    cmp     r1, #0
    cmpne   r2, #0
    beq     .Lcommon
    // Secure or Non-secure? Reading SCR is UNDEFINED in the Non-secure state: catch
    // that through a VBAR table (low vectors) whose Undefined entry goes on as PL1.
    mrc     p15, 0, r0, c1, c0, 0
    bic     r0, r0, #0x2000         @ SCTLR.V = 0
    mcr     p15, 0, r0, c1, c0, 0
    ldr     r0, =.Lprobe_vectors
    mcr     p15, 0, r0, c12, c0, 0  @ VBAR
    isb
    mrc     p15, 0, r0, c1, c1, 0   @ SCR
    cps     #0x16
.Lsecure:
    // Monitor mode, Secure. Every interrupt into Group 1 while Secure accesses can.
    ldr     r0, ={gicd}
    ldr     r1, [r0, #4]            @ GICD_TYPER.ITLinesNumber
    and     r1, r1, #0x1f
    add     r1, r1, #1              @ IGROUPR registers
    mov     r2, #0x80               @ GICD_IGROUPR0
    mvn     r3, #0
1:  str     r3, [r0, r2]
    add     r2, r2, #4
    subs    r1, r1, #1
    bne     1b
    mov     r3, #3                  @ GICD_CTLR: EnableGrp0 | EnableGrp1
    str     r3, [r0]
    ldr     r0, ={gicc}
    mov     r3, #0xff
    str     r3, [r0, #4]            @ GICC_PMR: Non-secure writes see half the range
    mov     r3, #3
    str     r3, [r0]                @ GICC_CTLR: EnableGrp0 | EnableGrp1
    // NSACR: CP10, CP11 and NS_SMP for the Non-secure state.
    ldr     r0, =0x00040c00
    mcr     p15, 0, r0, c1, c1, 2
    // SCR: NS | FW | AW | HCE; then return into HYP with A, I, F masked.
    ldr     r0, =0x131
    mcr     p15, 0, r0, c1, c1, 0
    isb
    mov     r0, #0x1da
    msr     spsr_cxsf, r0
    adr     lr, .Lfrom_secure
    movs    pc, lr
.Lfrom_secure:
    mov     r11, #0x16              @ tell Rust the image came from the Secure state
.Lin_hyp:
    // HSCTLR: should-be-one bits only (B4.1.67): MMU, caches and alignment checks off, A32
    // exception entry, little-endian.
    ldr     r0, ={hsctlr}
    mcr     p15, 4, r0, c1, c0, 0
    isb
.Lcommon:
    // Any mode from here on (HYP, or a PL1 mode Rust will refuse with a message).
    ldr     r0, ={stacks}
    ldr     r1, ={stack_size}
    add     sp, r0, r1
    ldr     r0, =__bss_start
    ldr     r1, =__bss_end
    mov     r2, #0
    mov     r3, #0
2:  cmp     r0, r1
    bhs     3f
    strd    r2, r3, [r0], #8
    b       2b
3:  mov     r0, r10
    mov     r1, r11
    bl      {primary}
4:  wfe
    b       4b

    // Secondary CPUs enter here through PSCI CPU_ON with r0 = their CPU index, in HYP
    // mode (QEMU starts them in the caller's mode).
    .balign 32
.Lprobe_vectors:
    .rept 8
    b       .Lcommon                @ any exception here: not the Secure state
    .endr

    .global _secondary_start
_secondary_start:
    cpsid   aif
    mov     r10, r0
    ldr     r0, ={hsctlr}
    mcr     p15, 4, r0, c1, c0, 0
    isb
    ldr     r1, ={stacks}
    ldr     r2, ={stack_size}
    add     r3, r10, #1
    mla     r1, r3, r2, r1
    mov     sp, r1
    mov     r0, r10
    bl      {secondary}
5:  wfe
    b       5b
    .ltorg
    "#,
    stacks = sym super::HV_STACKS,
    stack_size = const STACK_SIZE,
    gicd = const super::BOOT_GICD,
    hsctlr = const super::HSCTLR_SBO,
    gicc = const super::BOOT_GICC,
    primary = sym super::rust_primary_entry,
    secondary = sym super::rust_secondary_entry,
);

extern "C" {
    /// Where secondary CPUs start (an address, never called from Rust).
    pub fn _secondary_start();
    /// First byte of the hypervisor image.
    pub static __image_start: u8;
    /// One past the last byte of the image, BSS included.
    pub static __image_end: u8;
}

/// The physical range the hypervisor image occupies (identity-mapped).
pub fn image_range() -> (u64, u64) {
    // Only the addresses of the linker symbols are taken, never their contents.
    (
        core::ptr::addr_of!(__image_start) as usize as u64,
        core::ptr::addr_of!(__image_end) as usize as u64,
    )
}
