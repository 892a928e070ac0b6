//! Stage-1 identity map for EL1 (4 KiB granule, 32-bit VA, start at level 1):
//! 0x0000_0000..0x3fff_ffff Device-nGnRE (1 GiB block), guest RAM Normal write-back
//! (2 MiB blocks), the rest of 0x4000_0000..0x7fff_ffff Device-nGnRE (so nothing is
//! speculatively fetched from outside RAM, yet tests can touch it and see the
//! hypervisor's abort), everything above unmapped.
use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;

/// MAIR_EL1: attr0 Device-nGnRE, attr1 Normal inner/outer write-back RW-allocate.
const MAIR: u64 = 0xff04;
/// TCR_EL1: T0SZ=32, IRGN0/ORGN0 WB-WA, SH0 inner shareable, TG0 4 KiB, EPD1, IPS 4 GiB.
const TCR: u64 = 32 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23);

const VALID_BLOCK: u64 = 0b01;
const TABLE: u64 = 0b11;
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
const SH_INNER: u64 = 3 << 8;
const AF: u64 = 1 << 10;
const PXN_UXN: u64 = (1 << 53) | (1 << 54);

const DEVICE_BLOCK: u64 = VALID_BLOCK | ATTR_DEVICE | AF | PXN_UXN;
const NORMAL_BLOCK: u64 = VALID_BLOCK | ATTR_NORMAL | SH_INNER | AF;

/// One translation table.
#[repr(C, align(4096))]
pub struct Table(UnsafeCell<[u64; 512]>);

// SAFETY: the tables are written once by the primary vCPU before any other vCPU runs
// and only read (by the MMU) afterwards.
unsafe impl Sync for Table {}

#[no_mangle]
static HVG_L1: Table = Table(UnsafeCell::new([0; 512]));
static L2_RAM: Table = Table(UnsafeCell::new([0; 512]));

global_asm!(
    r#"
    .section .text.hvg_mmu, "ax"
    .global hvg_enable_mmu
// Turns on the MMU with HVG_L1; uses x0..x2 only, no stack (runs with the MMU off).
hvg_enable_mmu:
    movz    x0, #({mair} & 0xffff)
    msr     mair_el1, x0
    movz    x0, #({tcr} & 0xffff)
    movk    x0, #(({tcr} >> 16) & 0xffff), lsl #16
    msr     tcr_el1, x0
    adrp    x0, HVG_L1
    add     x0, x0, :lo12:HVG_L1
    msr     ttbr0_el1, x0
    isb
    tlbi    vmalle1
    dsb     ish
    isb
    mrs     x0, sctlr_el1
    mov     x1, #((1 << 0) | (1 << 2) | (1 << 12))
    orr     x0, x0, x1
    bic     x0, x0, #(1 << 1)
    bic     x0, x0, #(1 << 19)
    msr     sctlr_el1, x0
    isb
    ret
    "#,
    mair = const MAIR,
    tcr = const TCR,
);

extern "C" {
    fn hvg_enable_mmu();
}

/// Fills the tables (MMU off) for RAM ending at `ram_end`, then cleans them to memory.
pub fn build_tables(ram_end: u64) {
    let l1 = HVG_L1.0.get();
    let l2 = L2_RAM.0.get();
    for i in 0..512u64 {
        let pa = 0x4000_0000 + (i << 21);
        let desc = pa
            | if pa < ram_end {
                NORMAL_BLOCK
            } else {
                DEVICE_BLOCK
            };
        // SAFETY: `i < 512` indexes L2_RAM, which nothing else accesses yet.
        unsafe { (*l2)[i as usize] = desc };
    }
    // SAFETY: as above, for HVG_L1 (entries 0 and 1 of 512).
    unsafe {
        (*l1)[0] = DEVICE_BLOCK;
        (*l1)[1] = (l2 as u64) | TABLE;
    }
    clean_inval(l1 as u64, 4096);
    clean_inval(l2 as u64, 4096);
}

/// Cleans and invalidates data cache lines over [addr, addr + len) to the PoC.
fn clean_inval(addr: u64, len: u64) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {c}, ctr_el0", c = out(reg) ctr, options(nomem, nostack)) };
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let mut a = addr & !(line - 1);
    while a < addr + len {
        // SAFETY: cache maintenance by VA on memory this program owns.
        unsafe { asm!("dc civac, {a}", a = in(reg) a, options(nostack)) };
        a += line;
    }
    // SAFETY: barrier only.
    unsafe { asm!("dsb ish", options(nostack)) };
}

/// Turns the MMU and caches on for this vCPU (tables built by [`build_tables`]).
pub fn enable() {
    // SAFETY: the tables identity-map this image, its stacks and the console, so
    // execution continues at the same addresses; `hvg_enable_mmu` clobbers x0..x2
    // (declared through the C ABI) and touches no memory but system registers.
    unsafe { hvg_enable_mmu() };
}
