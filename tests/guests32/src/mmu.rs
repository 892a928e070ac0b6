//! ARMv7 short-descriptor translation tables (TTBCR.EAE = 0): the RAM layout of the test,
//! descriptor encoders for sections, supersections, large and small pages and page-table
//! pointers, table writes, the L2-table pool, test patterns, and the base translation
//! regime every case starts and ends in.
//!
//! Encodings (ARM ARM v7-A/R, B3.5 "Short-descriptor translation table format"):
//!
//! ```text
//! L1 page table  [31:10] L2 base  [8:5] domain  [3] NS  [2] PXN  [1:0] 01
//! L1 section     [31:20] PA  [17] nG [16] S [15] AP2 [14:12] TEX [11:10] AP1:0
//!                [8:5] domain [4] XN [3] C [2] B [1] 1 [0] PXN, bit 18 = 0
//! L1 supersection[31:24] PA  [18] 1, attributes as a section, domain 0
//! L2 large page  [31:16] PA  [15] XN [14:12] TEX [11] nG [10] S [9] AP2 [5:4] AP1:0
//!                [3] C [2] B [1:0] 01
//! L2 small page  [31:12] PA  [11] nG [10] S [9] AP2 [8:6] TEX [5:4] AP1:0 [3] C [2] B
//!                [1] 1 [0] XN
//! ```

use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch;
use crate::harness::{read_phys, write_phys};

/// Guest RAM: 128 MiB at 1 GiB (QEMU virt, and the hypervisor's default for test images).
pub const RAM_BASE: u32 = 0x4000_0000;
/// RAM the test uses (all of it is identity mapped by the base regime).
pub const RAM_SIZE: u32 = 128 << 20;
/// The PL011 UART (identity mapped as a Device section).
pub const UART_PA: u32 = 0x0900_0000;

/// The base L1 table: RAM identity (sections), the UART; the test window 0x8000_0000..
/// 0xc000_0000 is cleared before every case.
pub const BASE_L1: u32 = 0x4010_0000;
/// Two more L1 tables for the ASID cases.
pub const ASID_L1_A: u32 = 0x4010_4000;
pub const ASID_L1_B: u32 = 0x4010_8000;
/// The L1 table of the looping-table case (64 KiB aligned: a large page reinterpreted
/// from its own page-table descriptor starts at it).
pub const LOOP_L1: u32 = 0x4011_0000;
/// Pool of 1 KiB L2 tables, refilled for every case.
pub const L2_POOL: u32 = 0x4012_0000;
const L2_POOL_END: u32 = 0x4014_0000;
/// Pool of 4 KiB test pages: `page(0..256)`.
pub const PAGE_POOL: u32 = 0x4020_0000;
/// Two 64 KiB areas for large pages.
pub const LARGE_A: u32 = 0x4030_0000;
pub const LARGE_B: u32 = 0x4031_0000;
/// Three 1 MiB areas for sections.
pub const SECTION_A: u32 = 0x4040_0000;
pub const SECTION_B: u32 = 0x4050_0000;
pub const SECTION_C: u32 = 0x4060_0000;
/// 1024 L1 tables of 16 KiB for the many-TTBR0 case (16 MiB).
pub const MANY_L1: u32 = 0x4100_0000;
pub const MANY_L1_COUNT: u32 = 1024;
/// The many-L2-tables case: its L1 table (16 KiB), its 16 data pages (64 KiB), and one
/// 1 KiB L2 table per L1 index at `MANY_L2_TABLES + i * 1 KiB` (4 MiB).
pub const MANY_L2_L1: u32 = 0x4200_0000;
pub const MANY_L2_DATA: u32 = 0x4201_0000;
pub const MANY_L2_TABLES: u32 = 0x4240_0000;
/// The last 16 MiB-aligned 16 MiB block of RAM, target of the supersection.
pub const SUPER_PA: u32 = 0x4700_0000;

/// Bytes in a small page.
pub const PAGE: u32 = 0x1000;

/// TTBR flags: IRGN = 0b01 (bit 6 IRGN[0]) and RGN = 0b01 (bits 4:3), Normal write-back
/// write-allocate walks, as Linux uses them; the hypervisor must mask them off the base.
pub const TTBR_FLAGS: u32 = 0x48;

/// DACR with every domain Client (0b01): AP checked.
pub const DACR_ALL_CLIENT: u32 = 0x5555_5555;

/// SCTLR bits.
pub const SCTLR_M: u32 = 1 << 0;
pub const SCTLR_A: u32 = 1 << 1;
pub const SCTLR_C: u32 = 1 << 2;
pub const SCTLR_Z: u32 = 1 << 11;
pub const SCTLR_I: u32 = 1 << 12;
pub const SCTLR_V: u32 = 1 << 13;
pub const SCTLR_HA: u32 = 1 << 17;
pub const SCTLR_WXN: u32 = 1 << 19;
pub const SCTLR_UWXN: u32 = 1 << 20;
pub const SCTLR_EE: u32 = 1 << 25;
pub const SCTLR_TRE: u32 = 1 << 28;
pub const SCTLR_AFE: u32 = 1 << 29;
pub const SCTLR_TE: u32 = 1 << 30;

/// Short-descriptor fault status codes, FS[4:0] (ARM ARM v7-A/R: DFSR and IFSR, short-descriptor format).
pub const FS_AF_SECTION: u32 = 0b00011;
pub const FS_AF_PAGE: u32 = 0b00110;
pub const FS_TRANSLATION_SECTION: u32 = 0b00101;
pub const FS_TRANSLATION_PAGE: u32 = 0b00111;
pub const FS_DOMAIN_SECTION: u32 = 0b01001;
pub const FS_DOMAIN_PAGE: u32 = 0b01011;
pub const FS_PERMISSION_SECTION: u32 = 0b01101;
pub const FS_PERMISSION_PAGE: u32 = 0b01111;
pub const FS_EXT_WALK_L1: u32 = 0b01100;
pub const FS_EXT_WALK_L2: u32 = 0b01110;

/// AP[2:0] = 0b011: read/write at PL1 and PL0 (with SCTLR.AFE = 1: AP[2:1] = 01 read/write
/// at any PL, AP[0] = 1 access flag set).
pub const AP_RW: u32 = 0b011;
/// AP[2:0] = 0b101: read-only at PL1, no access at PL0.
pub const AP_RO: u32 = 0b101;
/// With SCTLR.AFE = 1: read/write at any PL (AP[2:1] = 01), access flag clear (AP[0] = 0).
pub const AP_AF_CLEAR: u32 = 0b010;

/// Attributes of a mapping.
#[derive(Clone, Copy)]
pub struct Attrs {
    pub tex: u32,
    pub c: bool,
    pub b: bool,
    pub ap: u32,
    pub xn: bool,
    pub ng: bool,
    pub s: bool,
    pub domain: u32,
}

/// Normal memory, outer and inner write-back write-allocate (TEX 001, C 1, B 1), read/write,
/// executable, global, domain 0.
pub const NORMAL: Attrs = Attrs {
    tex: 0b001,
    c: true,
    b: true,
    ap: AP_RW,
    xn: false,
    ng: false,
    s: false,
    domain: 0,
};
/// Shareable Device memory (TEX 000, C 0, B 1), read/write, execute-never, global, domain 0.
pub const DEVICE: Attrs = Attrs {
    tex: 0b000,
    c: false,
    b: true,
    ap: AP_RW,
    xn: true,
    ng: false,
    s: false,
    domain: 0,
};

impl Attrs {
    pub const fn ap(self, ap: u32) -> Attrs {
        Attrs { ap, ..self }
    }
    pub const fn xn(self, xn: bool) -> Attrs {
        Attrs { xn, ..self }
    }
    pub const fn ng(self, ng: bool) -> Attrs {
        Attrs { ng, ..self }
    }
    pub const fn domain(self, domain: u32) -> Attrs {
        Attrs { domain, ..self }
    }
    /// TEX, C and B (with SCTLR.TRE = 1, TEX[0]:C:B index PRRR/NMRR).
    pub const fn mem(self, tex: u32, c: bool, b: bool) -> Attrs {
        Attrs { tex, c, b, ..self }
    }
}

const fn bit(v: bool, n: u32) -> u32 {
    (v as u32) << n
}

/// L1 section descriptor mapping the 1 MiB at `pa`.
pub const fn section(pa: u32, a: Attrs) -> u32 {
    (pa & 0xfff0_0000)
        | bit(a.ng, 17)
        | bit(a.s, 16)
        | ((a.ap >> 2) << 15)
        | ((a.tex & 7) << 12)
        | ((a.ap & 3) << 10)
        | ((a.domain & 0xf) << 5)
        | bit(a.xn, 4)
        | bit(a.c, 3)
        | bit(a.b, 2)
        | 0b10
}

/// L1 supersection descriptor mapping the 16 MiB at `pa` (32-bit PA; domain is always 0).
pub const fn supersection(pa: u32, a: Attrs) -> u32 {
    (pa & 0xff00_0000)
        | (1 << 18)
        | bit(a.ng, 17)
        | bit(a.s, 16)
        | ((a.ap >> 2) << 15)
        | ((a.tex & 7) << 12)
        | ((a.ap & 3) << 10)
        | bit(a.xn, 4)
        | bit(a.c, 3)
        | bit(a.b, 2)
        | 0b10
}

/// L1 page-table descriptor pointing at the L2 table at `l2` (1 KiB aligned).
pub const fn page_table(l2: u32, domain: u32) -> u32 {
    (l2 & !0x3ff) | ((domain & 0xf) << 5) | 0b01
}

/// L2 small-page descriptor mapping the 4 KiB at `pa`.
pub const fn small(pa: u32, a: Attrs) -> u32 {
    (pa & !0xfff)
        | bit(a.ng, 11)
        | bit(a.s, 10)
        | ((a.ap >> 2) << 9)
        | ((a.tex & 7) << 6)
        | ((a.ap & 3) << 4)
        | bit(a.c, 3)
        | bit(a.b, 2)
        | 0b10
        | bit(a.xn, 0)
}

/// L2 large-page descriptor mapping the 64 KiB at `pa` (to be written 16 times).
pub const fn large(pa: u32, a: Attrs) -> u32 {
    (pa & 0xffff_0000)
        | bit(a.xn, 15)
        | ((a.tex & 7) << 12)
        | bit(a.ng, 11)
        | bit(a.s, 10)
        | ((a.ap >> 2) << 9)
        | ((a.ap & 3) << 4)
        | bit(a.c, 3)
        | bit(a.b, 2)
        | 0b01
}

/// Address of the L1 entry of `va` in the table at `l1`.
pub const fn l1_slot(l1: u32, va: u32) -> u32 {
    l1 + (va >> 20) * 4
}

/// Address of the L2 entry of `va` in the table at `l2`.
pub const fn l2_slot(l2: u32, va: u32) -> u32 {
    l2 + ((va >> 12) & 0xff) * 4
}

/// Writes the L1 entry of `va` (no barrier).
pub fn set_l1(l1: u32, va: u32, desc: u32) {
    write_phys(l1_slot(l1, va), desc);
}

/// Writes the L2 entry of `va` (no barrier).
pub fn set_l2(l2: u32, va: u32, desc: u32) {
    write_phys(l2_slot(l2, va), desc);
}

/// Writes the 16 L1 entries of the supersection containing `va`.
pub fn set_supersection(l1: u32, va: u32, pa: u32, a: Attrs) {
    for k in 0..16 {
        set_l1(l1, (va & 0xff00_0000) + (k << 20), supersection(pa, a));
    }
}

/// Writes the 16 L2 entries of the large page containing `va`.
pub fn set_large(l2: u32, va: u32, pa: u32, a: Attrs) {
    for k in 0..16 {
        set_l2(l2, (va & 0xffff_0000) + (k << 12), large(pa, a));
    }
}

/// Zeroes `len` bytes at `pa` (RAM, 4-aligned). Words that are already zero are only
/// read: under shadow paging a write to a live table may trap, a read does not.
pub fn zero(pa: u32, len: u32) {
    for a in (pa..pa + len).step_by(4) {
        if read_phys(a) != 0 {
            write_phys(a, 0);
        }
    }
}

/// Test page `n` (0..256).
pub const fn page(n: u32) -> u32 {
    PAGE_POOL + n * PAGE
}

static L2_NEXT: AtomicU32 = AtomicU32::new(L2_POOL);

/// A fresh, zeroed (all faulting) L2 table.
pub fn alloc_l2() -> u32 {
    let t = L2_NEXT.fetch_add(0x400, Ordering::SeqCst);
    assert!(t < L2_POOL_END, "L2 pool exhausted");
    zero(t, 0x400);
    t
}

/// The test pattern of the word at physical `pa`: different for every address and salt.
pub const fn pat(pa: u32, salt: u32) -> u32 {
    (pa ^ salt).wrapping_mul(0x9e37_79b1).rotate_left(13) ^ salt
}

/// Writes `pat(a, salt)` at every word of `[pa, pa + len)`.
pub fn fill(pa: u32, len: u32, salt: u32) {
    for a in (pa..pa + len).step_by(4) {
        write_phys(a, pat(a, salt));
    }
}

/// DSB and ISB: makes table writes visible to the walker for entries that were invalid.
pub fn sync() {
    arch::dsb();
    arch::isb();
}

/// DSB, `inv`, DSB, ISB: the sequence after changing a live entry.
pub fn invalidate(inv: impl FnOnce()) {
    arch::dsb();
    inv();
    arch::dsb();
    arch::isb();
}

/// DSB, TLBIALL, DSB, ISB.
pub fn flush_tlb() {
    invalidate(arch::tlbiall);
}

/// `mov r0, #imm8; bx lr` at `pa` (RAM), made visible to instruction fetches.
pub fn put_code(pa: u32, imm8: u32) {
    write_phys(pa, 0xe3a0_0000 | (imm8 & 0xff));
    write_phys(pa + 4, 0xe12f_ff1e);
    arch::dsb();
    arch::icache_bp_invalidate();
    arch::dsb();
    arch::isb();
}

/// CONTEXTIDR then TTBR0, each followed by ISB (Linux's order on ARMv7).
pub fn switch_context(contextidr: u32, ttbr0: u32) {
    arch::set_contextidr(contextidr);
    arch::isb();
    arch::set_ttbr0(ttbr0);
    arch::isb();
}

/// SCTLR with the MMU on, as every case starts: M, I and Z set; C, A, V, TRE, AFE, TE,
/// EE, HA, WXN, UWXN clear (data accesses are then Non-cacheable, so no data-cache
/// maintenance is needed anywhere).
static SCTLR_ON: AtomicU32 = AtomicU32::new(0);
/// PRRR and NMRR as found at boot (restored after the TEX-remap case).
static PRRR_BOOT: AtomicU32 = AtomicU32::new(0);
static NMRR_BOOT: AtomicU32 = AtomicU32::new(0);

/// SCTLR value of the base regime (MMU on).
pub fn sctlr_on() -> u32 {
    SCTLR_ON.load(Ordering::SeqCst)
}

/// Turns the MMU off (SCTLR.M = 0); code and stack are identity mapped, so execution
/// carries on at the next instruction.
pub fn mmu_off() {
    arch::set_sctlr(arch::sctlr() & !SCTLR_M);
}

/// Turns the MMU on with the base SCTLR.
pub fn mmu_on() {
    arch::set_sctlr(sctlr_on());
}

/// An L1 table at `l1` mapping RAM identically (1 MiB Normal sections, global, domain 0)
/// and, if `uart`, the UART as a Device section; everything else faults.
pub fn build_identity_l1(l1: u32, uart: bool) {
    zero(l1, 0x4000);
    let mut a = RAM_BASE;
    while a < RAM_BASE + RAM_SIZE {
        set_l1(l1, a, section(a, NORMAL));
        a += 1 << 20;
    }
    if uart {
        set_l1(l1, UART_PA, section(UART_PA, DEVICE));
    }
    arch::dsb();
}

/// Once, with the MMU off: records the boot SCTLR/PRRR/NMRR and builds the base table.
pub fn init() {
    let s = arch::sctlr();
    let clear = SCTLR_M
        | SCTLR_A
        | SCTLR_C
        | SCTLR_Z
        | SCTLR_I
        | SCTLR_V
        | SCTLR_HA
        | SCTLR_WXN
        | SCTLR_UWXN
        | SCTLR_EE
        | SCTLR_TRE
        | SCTLR_AFE
        | SCTLR_TE;
    SCTLR_ON.store((s & !clear) | SCTLR_M | SCTLR_I | SCTLR_Z, Ordering::SeqCst);
    PRRR_BOOT.store(arch::prrr(), Ordering::SeqCst);
    NMRR_BOOT.store(arch::nmrr(), Ordering::SeqCst);
    build_identity_l1(BASE_L1, true);
}

/// The base regime: TTBR0 = TTBR1 = base table, TTBCR 0 (N = 0), every domain Client,
/// ASID 0, boot PRRR/NMRR, the test window cleared, the L2 pool refilled, TLB, branch
/// predictor and I-cache invalidated, MMU on with the base SCTLR. Safe from any state a
/// case may leave (MMU off, TTBCR.N > 0 with a bad TTBR0, other tables, AFE/TRE set):
/// TTBR0 is repointed before TTBCR.N goes back to 0.
pub fn reset_env() {
    arch::set_ttbr0(BASE_L1 | TTBR_FLAGS);
    arch::set_ttbr1(BASE_L1 | TTBR_FLAGS);
    arch::isb();
    arch::set_ttbcr(0);
    arch::set_contextidr(0);
    arch::set_dacr(DACR_ALL_CLIENT);
    arch::set_prrr(PRRR_BOOT.load(Ordering::SeqCst));
    arch::set_nmrr(NMRR_BOOT.load(Ordering::SeqCst));
    arch::isb();
    // With TTBR0 = base the test window's entries are reachable through the identity map
    // (MMU on) or physically (MMU off).
    zero(l1_slot(BASE_L1, 0x8000_0000), 0x400 * 4);
    arch::dsb();
    arch::tlbiall();
    arch::icache_bp_invalidate();
    arch::dsb();
    arch::isb();
    mmu_on();
    arch::tlbiall();
    arch::dsb();
    arch::isb();
    L2_NEXT.store(L2_POOL, Ordering::SeqCst);
}

/// Reads the word at `pa` (re-exported for the cases).
pub fn rd(pa: u32) -> u32 {
    read_phys(pa)
}
