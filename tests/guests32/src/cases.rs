//! The cases. Each starts in the base regime (`mmu::reset_env`: RAM identity mapped,
//! TTBCR.N = 0, DACR all Client, ASID 0, MMU on, SCTLR.C = 0) with the test window
//! 0x8000_0000..0xc000_0000 empty, maps what it needs there (or builds its own tables),
//! and checks values and faults through the probes of `harness`. Expected fault status
//! codes, addresses and values follow from the ARM ARM (v7-A/R, B3.5 short-descriptor
//! format, B3.7 access control, B3.10 TLB maintenance, B3.12 fault checking).

use crate::arch;
use crate::harness::{
    ctx, expect_data_abort, expect_data_abort_in, expect_exec, expect_load, expect_phys,
    expect_prefetch_abort, expect_store, write_phys, Acc, Case, R,
};
use crate::mmu::*;

/// Base of the test window (TTBR0 half of every regime used, outside RAM).
const W: u32 = 0x8000_0000;

macro_rules! case {
    ($name:literal, $f:ident) => {
        Case {
            name: $name,
            run: $f,
        }
    };
}

/// Every case, in output order.
pub const CASES: &[Case] = &[
    case!("mmu-off-to-on", mmu_off_to_on),
    case!("mmu-on-to-off", mmu_on_to_off),
    case!("map-section", map_section),
    case!("map-supersection", map_supersection),
    case!("map-large-page", map_large_page),
    case!("map-small-page", map_small_page),
    case!("remap-page-tlbimva", remap_page_tlbimva),
    case!("remap-page-tlbimvais", remap_page_tlbimvais),
    case!("remap-page-tlbimvaa", remap_page_tlbimvaa),
    case!("remap-section-tlbiall", remap_section_tlbiall),
    case!("unmap-section", unmap_section),
    case!("unmap-page", unmap_page),
    case!("ro-section", ro_section),
    case!("ro-page", ro_page),
    case!("xn-page", xn_page),
    case!("xn-section", xn_section),
    case!("no-tlbi-page", no_tlbi_page),
    case!("no-tlbi-section", no_tlbi_section),
    case!("no-tlbi-l1-table", no_tlbi_l1_table),
    case!("asid-switch", asid_switch),
    case!("asid-global", asid_global),
    case!("asid-tlbiasid", asid_tlbiasid),
    case!("domain-noaccess-section", domain_noaccess_section),
    case!("domain-client-section", domain_client_section),
    case!("domain-manager-section", domain_manager_section),
    case!("domain-noaccess-page", domain_noaccess_page),
    case!("domain-manager-page", domain_manager_page),
    case!("afe-section", afe_section),
    case!("afe-page", afe_page),
    case!("tex-remap", tex_remap),
    case!("storm-remap", storm_remap),
    case!("storm-l2-writes", storm_l2_writes),
    case!("bad-l2-address", bad_l2_address),
    case!("bad-ttbr0", bad_ttbr0),
    case!("loop-table", loop_table),
    case!("many-ttbr0", many_ttbr0),
    case!("many-l2-tables", many_l2_tables),
];

/// Cases that must FAIL (built in with `MMU32_SELFTEST=1`): the harness can fail.
pub const SELFTEST: &[Case] = &[
    case!(
        "selftest-fault-expected-at-mapped-page",
        selftest_fault_at_mapped
    ),
    case!("selftest-wrong-value", selftest_wrong_value),
    case!("selftest-wrong-fault-status", selftest_wrong_fs),
    case!("selftest-wrong-fault-address", selftest_wrong_far),
    case!("selftest-unexpected-abort", selftest_unexpected),
    case!(
        "selftest-prefetch-abort-expected-at-executable-page",
        selftest_exec_ok
    ),
];

/// Maps `va` as a small page of `pa` in the base table through a fresh L2 table (domain 0)
/// and returns the L2 table.
fn map_page(va: u32, pa: u32, a: Attrs) -> u32 {
    let l2 = alloc_l2();
    set_l2(l2, va, small(pa, a));
    set_l1(BASE_L1, va, page_table(l2, 0));
    sync();
    l2
}

/// Maps `va` as a section of `pa` in the base table.
fn map_section_at(va: u32, pa: u32, a: Attrs) {
    set_l1(BASE_L1, va, section(pa, a));
    sync();
}

/// Through the mapping `va` → `pa`: patterns written physically read back at every
/// offset, and values written through `va` land at `pa` + offset.
fn check_window(va: u32, pa: u32, offsets: &[u32], salt: u32) -> R {
    for &o in offsets {
        write_phys(pa + o, pat(pa + o, salt));
    }
    arch::dsb();
    for &o in offsets {
        expect_load(va + o, pat(pa + o, salt))?;
    }
    for &o in offsets {
        expect_store(va + o, pat(pa + o, !salt))?;
    }
    for &o in offsets {
        expect_phys(pa + o, pat(pa + o, !salt))?;
    }
    Ok(())
}

// ---- 1. MMU off / on ---------------------------------------------------------------

/// Data and a table change written with the MMU off are seen through a non-identity
/// mapping once the MMU is on. The mapping was live (and possibly cached) before, so the
/// change is followed by TLBIALL, done with the MMU off.
fn mmu_off_to_on() -> R {
    let va = W + 0x3000;
    let (old, pa) = (page(0), page(1));
    let salt = 0x1111_0001;
    fill(old, PAGE, salt ^ 1);
    let l2 = map_page(va, old, NORMAL);
    expect_load(va + 0x40, pat(old + 0x40, salt ^ 1))?;
    mmu_off();
    fill(pa, PAGE, salt);
    set_l2(l2, va, small(pa, NORMAL));
    flush_tlb();
    mmu_on();
    for o in (0..PAGE).step_by(4) {
        ctx(
            expect_load(va + o, pat(pa + o, salt)),
            format_args!("offset {o:#x}"),
        )?;
    }
    Ok(())
}

/// Data written through a non-identity mapping is in RAM once the MMU is off again.
fn mmu_on_to_off() -> R {
    let va = W + 0x5000;
    let pa = page(2);
    let salt = 0x2222_0002;
    fill(pa, PAGE, salt ^ 1);
    map_page(va, pa, NORMAL);
    for o in (0..PAGE).step_by(4) {
        ctx(
            expect_store(va + o, pat(pa + o, salt)),
            format_args!("offset {o:#x}"),
        )?;
    }
    arch::dcache_clean_inval(va, PAGE);
    mmu_off();
    let mut bad = None;
    for o in (0..PAGE).step_by(4) {
        let v = rd(pa + o);
        if v != pat(pa + o, salt) {
            bad = Some((o, v));
            break;
        }
    }
    mmu_on();
    if let Some((o, v)) = bad {
        fail!(
            "MMU off, physical {:#010x}: expected {:#010x}, got {v:#010x}",
            pa + o,
            pat(pa + o, salt)
        );
    }
    Ok(())
}

// ---- 2. Mapping kinds ----------------------------------------------------------------

/// 1 MiB section: offsets across the section; the MiB before and after fault.
fn map_section() -> R {
    let va = W + 0x10_0000;
    map_section_at(va, SECTION_A, NORMAL);
    check_window(
        va,
        SECTION_A,
        &[0, 4, 0x1000, 0x7_fffc, 0x8_0000, 0xa_bcd0, 0xf_fffc],
        0x3333_0003,
    )?;
    expect_data_abort(va + 0x10_0000, Acc::Read, FS_TRANSLATION_SECTION)?;
    expect_data_abort(va - 4, Acc::Read, FS_TRANSLATION_SECTION)
}

/// 16 MiB supersection (16 identical L1 entries, VA and PA 16 MiB aligned).
fn map_supersection() -> R {
    let va = 0x9000_0000;
    set_supersection(BASE_L1, va, SUPER_PA, NORMAL);
    sync();
    check_window(
        va,
        SUPER_PA,
        &[0, 4, 0x10_0000, 0x12_3454, 0x80_0000, 0xab_cde0, 0xff_fffc],
        0x4444_0004,
    )?;
    expect_data_abort(va + 0x100_0000, Acc::Read, FS_TRANSLATION_SECTION)?;
    expect_data_abort(va - 4, Acc::Read, FS_TRANSLATION_SECTION)
}

/// 64 KiB large page (16 identical L2 entries); the pages before and after fault.
fn map_large_page() -> R {
    let va = W + 0x21_0000;
    let l2 = alloc_l2();
    set_large(l2, va, LARGE_A, NORMAL);
    set_l1(BASE_L1, va, page_table(l2, 0));
    sync();
    check_window(
        va,
        LARGE_A,
        &[0, 4, 0x1004, 0x7ff8, 0x8000, 0xabc0, 0xfffc],
        0x5555_0005,
    )?;
    expect_data_abort(va - 4, Acc::Read, FS_TRANSLATION_PAGE)?;
    expect_data_abort(va + 0x1_0000, Acc::Read, FS_TRANSLATION_PAGE)
}

/// 4 KiB small page; the pages before and after fault.
fn map_small_page() -> R {
    let va = W + 0x30_5000;
    let pa = page(3);
    map_page(va, pa, NORMAL);
    check_window(va, pa, &[0, 4, 0x800, 0xffc], 0x6666_0006)?;
    expect_data_abort(va - 4, Acc::Read, FS_TRANSLATION_PAGE)?;
    expect_data_abort(va + PAGE, Acc::Read, FS_TRANSLATION_PAGE)
}

// ---- 3. Changes with TLB maintenance -------------------------------------------------

/// A small page remapped back and forth between two pages; after each change
/// DSB, `inv(va)`, DSB, ISB make the new target visible.
fn remap_page_with(inv: fn(u32)) -> R {
    let va = W + 0x40_7000;
    let (p1, p2) = (page(4), page(5));
    let salt = 0x7777_0007;
    fill(p1, PAGE, salt);
    fill(p2, PAGE, salt);
    let l2 = map_page(va, p1, NORMAL);
    for round in 0..6 {
        let (from, to) = if round % 2 == 0 { (p1, p2) } else { (p2, p1) };
        let r = (|| {
            expect_load(va + 0x10, pat(from + 0x10, salt))?;
            set_l2(l2, va, small(to, NORMAL));
            invalidate(|| inv(va));
            expect_load(va + 0x10, pat(to + 0x10, salt))?;
            expect_load(va + 0xffc, pat(to + 0xffc, salt))
        })();
        ctx(r, format_args!("round {round}"))?;
    }
    Ok(())
}

fn remap_page_tlbimva() -> R {
    // MVA with ASID 0 (the current one; the entry is global anyway).
    remap_page_with(|va| arch::tlbimva(va & !0xfff))
}

fn remap_page_tlbimvais() -> R {
    remap_page_with(|va| arch::tlbimvais(va & !0xfff))
}

fn remap_page_tlbimvaa() -> R {
    remap_page_with(|va| arch::tlbimvaa(va & !0xfff))
}

/// A section remapped between two sections with TLBIALL.
fn remap_section_tlbiall() -> R {
    let va = W + 0x50_0000;
    let salt = 0x8888_0008;
    let offsets = [0, 0x8_1234 & !3, 0xf_fffc];
    for &o in &offsets {
        write_phys(SECTION_A + o, pat(SECTION_A + o, salt));
        write_phys(SECTION_B + o, pat(SECTION_B + o, salt));
    }
    map_section_at(va, SECTION_A, NORMAL);
    for round in 0..6 {
        let (from, to) = if round % 2 == 0 {
            (SECTION_A, SECTION_B)
        } else {
            (SECTION_B, SECTION_A)
        };
        let r = (|| {
            expect_load(va + offsets[1], pat(from + offsets[1], salt))?;
            set_l1(BASE_L1, va, section(to, NORMAL));
            flush_tlb();
            for &o in &offsets {
                expect_load(va + o, pat(to + o, salt))?;
            }
            Ok(())
        })();
        ctx(r, format_args!("round {round}"))?;
    }
    Ok(())
}

/// Section unmapped + TLBIMVA (of an address inside the section, which matches the whole
/// section's entry): section translation fault for read and write; memory unchanged.
fn unmap_section() -> R {
    let va = W + 0x60_0000;
    let o = 0x4_5678;
    let want = pat(SECTION_A + o, 0x9999_0009);
    write_phys(SECTION_A + o, want);
    map_section_at(va, SECTION_A, NORMAL);
    expect_load(va + o, want)?;
    set_l1(BASE_L1, va, 0);
    invalidate(|| arch::tlbimva((va + o) & !0xfff));
    expect_data_abort(va + o, Acc::Read, FS_TRANSLATION_SECTION)?;
    expect_data_abort(va + o, Acc::Write, FS_TRANSLATION_SECTION)?;
    expect_phys(SECTION_A + o, want)
}

/// Small page unmapped + TLBIMVA: page translation fault for read and write.
fn unmap_page() -> R {
    let va = W + 0x61_3000;
    let pa = page(6);
    let o = 0x124;
    let want = pat(pa + o, 0xaaaa_000a);
    write_phys(pa + o, want);
    let l2 = map_page(va, pa, NORMAL);
    expect_load(va + o, want)?;
    set_l2(l2, va, 0);
    invalidate(|| arch::tlbimva(va));
    expect_data_abort(va + o, Acc::Read, FS_TRANSLATION_PAGE)?;
    expect_data_abort(va + o, Acc::Write, FS_TRANSLATION_PAGE)?;
    expect_phys(pa + o, want)
}

/// Section RW → RO (AP 0b101) + TLBIMVA: a write takes a section permission fault and
/// does not happen, reads still work.
fn ro_section() -> R {
    let va = W + 0x70_0000;
    let pa = SECTION_B;
    let o = 0x9_0008;
    write_phys(pa + o, 0);
    map_section_at(va, pa, NORMAL);
    expect_store(va + o, 0x1234_5678)?;
    expect_phys(pa + o, 0x1234_5678)?;
    set_l1(BASE_L1, va, section(pa, NORMAL.ap(AP_RO)));
    invalidate(|| arch::tlbimva(va));
    expect_data_abort(va + o, Acc::Write, FS_PERMISSION_SECTION)?;
    expect_load(va + o, 0x1234_5678)?;
    expect_phys(pa + o, 0x1234_5678)
}

/// Small page RW → RO + TLBIMVA: a write takes a page permission fault.
fn ro_page() -> R {
    let va = W + 0x71_4000;
    let pa = page(7);
    let o = 0xff0;
    write_phys(pa + o, 0);
    let l2 = map_page(va, pa, NORMAL);
    expect_store(va + o, 0x8765_4321)?;
    expect_phys(pa + o, 0x8765_4321)?;
    set_l2(l2, va, small(pa, NORMAL.ap(AP_RO)));
    invalidate(|| arch::tlbimva(va));
    expect_data_abort(va + o, Acc::Write, FS_PERMISSION_PAGE)?;
    expect_load(va + o, 0x8765_4321)?;
    expect_phys(pa + o, 0x8765_4321)
}

/// `mov r0, #0x5a; bx lr` in a small page: runs while executable; after XN + TLBIMVA the
/// fetch takes a prefetch abort (page permission fault, IFAR = the entry point), data
/// reads of the page still work; executable again after clearing XN.
fn xn_page() -> R {
    let va = W + 0x80_2000;
    let pa = page(8);
    put_code(pa, 0x5a);
    let l2 = map_page(va, pa, NORMAL);
    expect_exec(va, 0x5a)?;
    set_l2(l2, va, small(pa, NORMAL.xn(true)));
    invalidate(|| {
        arch::tlbimva(va);
        arch::icache_bp_invalidate();
    });
    expect_prefetch_abort(va, FS_PERMISSION_PAGE)?;
    expect_load(va, 0xe3a0_005a)?;
    set_l2(l2, va, small(pa, NORMAL));
    invalidate(|| {
        arch::tlbimva(va);
        arch::icache_bp_invalidate();
    });
    expect_exec(va, 0x5a)
}

/// As `xn_page` for a section (XN is bit 4): section permission fault.
fn xn_section() -> R {
    let va = W + 0x90_0000;
    let o = 0x100;
    put_code(SECTION_C + o, 0xa5);
    map_section_at(va, SECTION_C, NORMAL);
    expect_exec(va + o, 0xa5)?;
    set_l1(BASE_L1, va, section(SECTION_C, NORMAL.xn(true)));
    invalidate(|| {
        arch::tlbimva(va);
        arch::icache_bp_invalidate();
    });
    expect_prefetch_abort(va + o, FS_PERMISSION_SECTION)?;
    expect_load(va + o + 4, 0xe12f_ff1e)
}

// ---- 4. Invalid → valid needs no TLB maintenance ----------------------------------------
// ARMv7 never holds a translation that faults (Translation fault) in a TLB (B3.10), so a
// faulting entry made valid is used after DSB + ISB alone.

fn no_tlbi_page() -> R {
    let va = W + 0xa0_3000;
    let pa = page(9);
    fill(pa, PAGE, 0xbbbb_000b);
    let l2 = alloc_l2();
    set_l1(BASE_L1, va, page_table(l2, 0));
    sync();
    expect_data_abort(va + 8, Acc::Read, FS_TRANSLATION_PAGE)?;
    set_l2(l2, va, small(pa, NORMAL));
    sync();
    expect_load(va + 8, pat(pa + 8, 0xbbbb_000b))?;
    expect_load(va + 0xffc, pat(pa + 0xffc, 0xbbbb_000b))
}

fn no_tlbi_section() -> R {
    let va = W + 0x0110_0000;
    let o = 0x3_3330;
    write_phys(SECTION_A + o, pat(SECTION_A + o, 0xcccc_000c));
    expect_data_abort(va + o, Acc::Read, FS_TRANSLATION_SECTION)?;
    set_l1(BASE_L1, va, section(SECTION_A, NORMAL));
    sync();
    expect_load(va + o, pat(SECTION_A + o, 0xcccc_000c))
}

/// A faulting L1 entry becomes a page-table pointer (to an already valid L2 table).
fn no_tlbi_l1_table() -> R {
    let va = W + 0xa2_7000;
    let pa = page(10);
    fill(pa, PAGE, 0xdddd_000d);
    let l2 = alloc_l2();
    set_l2(l2, va, small(pa, NORMAL));
    sync();
    expect_data_abort(va + 0x44, Acc::Read, FS_TRANSLATION_SECTION)?;
    set_l1(BASE_L1, va, page_table(l2, 0));
    sync();
    expect_load(va + 0x44, pat(pa + 0x44, 0xdddd_000d))
}

// ---- 5. ASIDs and TTBR0 switches -----------------------------------------------------

/// nG small page: different page in each of the two tables.
const V_PRIVATE: u32 = W;
/// Global small page: the same page in both tables.
const V_GLOBAL: u32 = W + 0x1000;

/// Tables A and B (RAM identity, no UART) with `V_PRIVATE` → `pa` / `pb` (nG) and
/// `V_GLOBAL` → `pg` (global); returns their L2 tables. TLB flushed.
fn asid_tables(pa: u32, pb: u32, pg: u32) -> (u32, u32) {
    build_identity_l1(ASID_L1_A, false);
    build_identity_l1(ASID_L1_B, false);
    let la = alloc_l2();
    let lb = alloc_l2();
    set_l2(la, V_PRIVATE, small(pa, NORMAL.ng(true)));
    set_l2(lb, V_PRIVATE, small(pb, NORMAL.ng(true)));
    set_l2(la, V_GLOBAL, small(pg, NORMAL));
    set_l2(lb, V_GLOBAL, small(pg, NORMAL));
    set_l1(ASID_L1_A, W, page_table(la, 0));
    set_l1(ASID_L1_B, W, page_table(lb, 0));
    flush_tlb();
    (la, lb)
}

/// CONTEXTIDR with `asid` and a PROCID that changes with `n` (only the ASID tags TLBs).
fn ctxid(asid: u32, n: u32) -> u32 {
    ((0x100 + n) << 8) | asid
}

fn to_a(n: u32) {
    switch_context(ctxid(1, n), ASID_L1_A | TTBR_FLAGS);
}

fn to_b(n: u32) {
    switch_context(ctxid(2, n), ASID_L1_B | TTBR_FLAGS);
}

/// 512 switches between A (ASID 1) and B (ASID 2), no TLB maintenance: each sees and
/// updates its own nG page.
fn asid_switch() -> R {
    let (pa, pb, pg) = (page(11), page(12), page(13));
    asid_tables(pa, pb, pg);
    write_phys(pa, 0xa000_0000);
    write_phys(pb, 0xb000_0000);
    arch::dsb();
    for n in 0..256 {
        let r = (|| {
            to_a(n);
            expect_load(V_PRIVATE, 0xa000_0000 + n)?;
            expect_store(V_PRIVATE, 0xa000_0001 + n)?;
            to_b(n);
            expect_load(V_PRIVATE, 0xb000_0000 + n)?;
            expect_store(V_PRIVATE, 0xb000_0001 + n)
        })();
        ctx(r, format_args!("round {n}"))?;
    }
    expect_phys(pa, 0xa000_0100)?;
    expect_phys(pb, 0xb000_0100)
}

/// The global page is the same memory under both ASIDs.
fn asid_global() -> R {
    let (pa, pb, pg) = (page(14), page(15), page(16));
    asid_tables(pa, pb, pg);
    write_phys(pa, 0xa1a1_a1a1);
    write_phys(pb, 0xb1b1_b1b1);
    write_phys(pg + 0x20, 0);
    arch::dsb();
    for n in 0..64 {
        let r = (|| {
            to_a(n);
            expect_load(V_GLOBAL + 0x20, 2 * n)?;
            expect_store(V_GLOBAL + 0x20, 2 * n + 1)?;
            expect_load(V_PRIVATE, 0xa1a1_a1a1)?;
            to_b(n);
            expect_load(V_GLOBAL + 0x20, 2 * n + 1)?;
            expect_store(V_GLOBAL + 0x20, 2 * n + 2)?;
            expect_load(V_PRIVATE, 0xb1b1_b1b1)
        })();
        ctx(r, format_args!("round {n}"))?;
    }
    expect_phys(pg + 0x20, 128)
}

/// A's nG entry changed while B runs, then TLBIASID(1): back in A the new page is seen,
/// B still sees its own.
fn asid_tlbiasid() -> R {
    let (pa, pb, pg, pc) = (page(17), page(18), page(19), page(20));
    let (la, _) = asid_tables(pa, pb, pg);
    write_phys(pa, 0xa2a2_a2a2);
    write_phys(pb, 0xb2b2_b2b2);
    write_phys(pc, 0xc2c2_c2c2);
    arch::dsb();
    for n in 0..8 {
        // Even rounds move A's page from pa to pc, odd rounds back.
        let (vold, new, vnew) = if n % 2 == 0 {
            (0xa2a2_a2a2, pc, 0xc2c2_c2c2)
        } else {
            (0xc2c2_c2c2, pa, 0xa2a2_a2a2)
        };
        let r = (|| {
            to_a(n);
            expect_load(V_PRIVATE, vold)?;
            to_b(n);
            expect_load(V_PRIVATE, 0xb2b2_b2b2)?;
            set_l2(la, V_PRIVATE, small(new, NORMAL.ng(true)));
            invalidate(|| arch::tlbiasid(1));
            to_a(n);
            expect_load(V_PRIVATE, vnew)?;
            to_b(n);
            expect_load(V_PRIVATE, 0xb2b2_b2b2)
        })();
        ctx(r, format_args!("round {n}"))?;
    }
    Ok(())
}

// ---- 6. Domains ----------------------------------------------------------------------------

/// The test domain.
const DOM: u32 = 5;

/// DACR with domain `DOM` set to `v` (0b00 no access, 0b01 client, 0b11 manager), every
/// other domain Client; then ISB (DACR is not cached in TLBs).
fn set_domain(v: u32) {
    arch::set_dacr((DACR_ALL_CLIENT & !(3 << (2 * DOM))) | (v << (2 * DOM)));
    arch::isb();
}

/// A read-only section in domain 5, readable as Client (TLB warm), then DACR 00: domain
/// fault (section, DFSR.Domain = 5) for read and write; Client again: readable.
fn domain_noaccess_section() -> R {
    let va = W + 0xb0_0000;
    let o = 0x2_0040;
    let want = pat(SECTION_A + o, 0xeeee_000e);
    write_phys(SECTION_A + o, want);
    map_section_at(va, SECTION_A, NORMAL.ap(AP_RO).domain(DOM));
    expect_load(va + o, want)?;
    set_domain(0b00);
    expect_data_abort_in(va + o, Acc::Read, FS_DOMAIN_SECTION, Some(DOM))?;
    expect_data_abort_in(va + o, Acc::Write, FS_DOMAIN_SECTION, Some(DOM))?;
    set_domain(0b01);
    expect_load(va + o, want)?;
    expect_phys(SECTION_A + o, want)
}

/// Client: the read-only section's AP is checked (write → section permission fault).
fn domain_client_section() -> R {
    let va = W + 0x0120_0000;
    let o = 0x7_7770;
    let want = pat(SECTION_B + o, 0xf0f0_000f);
    write_phys(SECTION_B + o, want);
    map_section_at(va, SECTION_B, NORMAL.ap(AP_RO).domain(DOM));
    set_domain(0b01);
    expect_load(va + o, want)?;
    expect_data_abort(va + o, Acc::Write, FS_PERMISSION_SECTION)?;
    expect_phys(SECTION_B + o, want)
}

/// Manager: no permission check, the read-only section is writable; Client again: the
/// write faults again (same TLB entry, only DACR changed).
fn domain_manager_section() -> R {
    let va = W + 0x0130_0000;
    let o = 0xc_0000;
    write_phys(SECTION_C + o, 0);
    map_section_at(va, SECTION_C, NORMAL.ap(AP_RO).domain(DOM));
    expect_data_abort(va + o, Acc::Write, FS_PERMISSION_SECTION)?;
    set_domain(0b11);
    expect_store(va + o, 0x7777_0001)?;
    expect_phys(SECTION_C + o, 0x7777_0001)?;
    expect_load(va + o, 0x7777_0001)?;
    set_domain(0b01);
    expect_data_abort(va + o, Acc::Write, FS_PERMISSION_SECTION)?;
    expect_phys(SECTION_C + o, 0x7777_0001)
}

/// A small page under an L1 page-table entry in domain 5 (the L2 entry is valid): DACR 00
/// gives a page domain fault with DFSR.Domain = 5.
fn domain_noaccess_page() -> R {
    let va = W + 0xc0_4000;
    let pa = page(21);
    let o = 0x3c;
    let want = pat(pa + o, 0x0101_0010);
    write_phys(pa + o, want);
    let l2 = alloc_l2();
    set_l2(l2, va, small(pa, NORMAL));
    set_l1(BASE_L1, va, page_table(l2, DOM));
    sync();
    expect_load(va + o, want)?;
    set_domain(0b00);
    expect_data_abort_in(va + o, Acc::Read, FS_DOMAIN_PAGE, Some(DOM))?;
    expect_data_abort_in(va + o, Acc::Write, FS_DOMAIN_PAGE, Some(DOM))?;
    set_domain(0b01);
    expect_load(va + o, want)
}

/// A read-only page in domain 5: Client → page permission fault, Manager → writable.
fn domain_manager_page() -> R {
    let va = W + 0xc1_8000;
    let pa = page(22);
    let o = 0x800;
    write_phys(pa + o, 0);
    let l2 = alloc_l2();
    set_l2(l2, va, small(pa, NORMAL.ap(AP_RO)));
    set_l1(BASE_L1, va, page_table(l2, DOM));
    sync();
    expect_data_abort(va + o, Acc::Write, FS_PERMISSION_PAGE)?;
    set_domain(0b11);
    expect_store(va + o, 0x7777_0002)?;
    expect_phys(pa + o, 0x7777_0002)?;
    set_domain(0b01);
    expect_data_abort(va + o, Acc::Write, FS_PERMISSION_PAGE)?;
    expect_load(va + o, 0x7777_0002)
}

// ---- 7. Access flag (SCTLR.AFE = 1) -------------------------------------------------------

/// SCTLR.AFE = 1 (simplified access permissions, AP[0] is the access flag), TLB flushed as
/// required after changing AFE. The base map (AP 0b011) stays read/write with AF set.
fn enable_afe() {
    arch::set_sctlr(arch::sctlr() | SCTLR_AFE);
    flush_tlb();
}

/// A section with AF = 0: access flag fault (section) for read and write; AF set +
/// TLBIMVA: accessible. (`reset_env` restores AFE = 0.)
fn afe_section() -> R {
    enable_afe();
    let va = W + 0xd0_0000;
    let o = 0x1_2340;
    let want = pat(SECTION_B + o, 0x0202_0020);
    write_phys(SECTION_B + o, want);
    map_section_at(va, SECTION_B, NORMAL.ap(AP_AF_CLEAR));
    expect_data_abort(va + o, Acc::Read, FS_AF_SECTION)?;
    expect_data_abort(va + o, Acc::Write, FS_AF_SECTION)?;
    set_l1(BASE_L1, va, section(SECTION_B, NORMAL.ap(AP_RW)));
    invalidate(|| arch::tlbimva(va));
    expect_load(va + o, want)?;
    expect_store(va + o, !want)?;
    expect_phys(SECTION_B + o, !want)
}

/// A small page with AF = 0: access flag fault (page); AF set + TLBIMVA: accessible. Also
/// AP[2:1] = 0b10 (AF set) is read-only at PL1 in this model: page permission fault.
fn afe_page() -> R {
    enable_afe();
    let va = W + 0xd1_2000;
    let pa = page(23);
    let o = 0x400;
    write_phys(pa + o, 0);
    let l2 = map_page(va, pa, NORMAL.ap(AP_AF_CLEAR));
    expect_data_abort(va + o, Acc::Write, FS_AF_PAGE)?;
    expect_data_abort(va + o, Acc::Read, FS_AF_PAGE)?;
    set_l2(l2, va, small(pa, NORMAL.ap(AP_RW)));
    invalidate(|| arch::tlbimva(va));
    expect_store(va + o, 0x0303_0030)?;
    expect_phys(pa + o, 0x0303_0030)?;
    set_l2(l2, va, small(pa, NORMAL.ap(AP_RO)));
    invalidate(|| arch::tlbimva(va));
    expect_data_abort(va + o, Acc::Write, FS_PERMISSION_PAGE)?;
    expect_load(va + o, 0x0303_0030)
}

// ---- 8. TEX remap (SCTLR.TRE = 1) ---------------------------------------------------------

/// PRRR/NMRR field helpers: region `n`'s memory type (0 SO, 1 Device, 2 Normal) and its
/// inner/outer cacheability (0 NC, 1 WBWA, 2 WT, 3 WB no WA).
const fn tr(n: u32, t: u32) -> u32 {
    t << (2 * n)
}
const fn ir_or(n: u32, c: u32) -> u32 {
    (c << (2 * n)) | (c << (2 * n + 16))
}

/// With TRE = 1 the index TEX[0]:C:B selects PRRR/NMRR fields and TEX[2:1] are ignored.
/// Regions: 0 SO, 1 Device (the UART: TEX 000 C 0 B 1), 2 Device, 3 Normal NC, 4 Normal
/// WT, 5 Normal WB, 6 and 7 Normal WBWA (the base RAM map: TEX 001 C 1 B 1 → 7). Pages
/// through regions 4, 5 (with TEX[2:1] = 11), 2 and 3 and a section through region 6 read
/// and write correctly.
fn tex_remap() -> R {
    let prrr = tr(0, 0)
        | tr(1, 1)
        | tr(2, 1)
        | tr(3, 2)
        | tr(4, 2)
        | tr(5, 2)
        | tr(6, 2)
        | tr(7, 2)
        | (1 << 17) // DS1: Device with S = 1 is shareable
        | (1 << 19); // NS1: Normal with S = 1 is shareable
    let nmrr = ir_or(3, 0) | ir_or(4, 2) | ir_or(5, 3) | ir_or(6, 1) | ir_or(7, 1);
    arch::set_prrr(prrr);
    arch::set_nmrr(nmrr);
    arch::isb();
    arch::set_sctlr(arch::sctlr() | SCTLR_TRE);
    flush_tlb();
    let pages: [(u32, bool, bool, u32); 4] = [
        (0b001, false, false, page(24)), // index 4: Normal WT
        (0b111, false, true, page(25)),  // index 5: Normal WB (TEX[2:1] ignored)
        (0b000, true, false, page(26)),  // index 2: Device
        (0b110, true, true, page(27)),   // index 3: Normal NC (TEX[2:1] ignored)
    ];
    let va0 = W + 0xe0_0000;
    let l2 = alloc_l2();
    for (k, &(tex, c, b, pa)) in pages.iter().enumerate() {
        set_l2(
            l2,
            va0 + (k as u32) * PAGE,
            small(pa, NORMAL.mem(tex, c, b)),
        );
    }
    set_l1(BASE_L1, va0, page_table(l2, 0));
    let vs = W + 0xf0_0000;
    set_l1(
        BASE_L1,
        vs,
        section(SECTION_C, NORMAL.mem(0b001, true, false)),
    ); // index 6
    sync();
    for (k, &(_, _, _, pa)) in pages.iter().enumerate() {
        let va = va0 + (k as u32) * PAGE;
        ctx(
            check_window(va, pa, &[0, 0x10, 0x7fc, 0xffc], 0x0404_0040),
            format_args!("page {k}"),
        )?;
    }
    ctx(
        check_window(vs, SECTION_C, &[0, 0x4_0000, 0xf_fffc], 0x0505_0050),
        format_args!("section"),
    )
}

// ---- 9. Storms ---------------------------------------------------------------------------

/// 5000 remaps of one small page over 16 target pages, each followed by TLBIMVA and a
/// checked read (every 8th also a write, checked in RAM).
fn storm_remap() -> R {
    let va = W + 0x40_5000;
    let salt = 0x0606_0060;
    for t in 0..16 {
        fill(page(32 + t), PAGE, salt);
    }
    let l2 = map_page(va, page(32), NORMAL);
    for i in 0..5000u32 {
        let pa = page(32 + (i * 7 + 3) % 16);
        let o = ((i * 37) % 1024) * 4;
        let r = (|| {
            set_l2(l2, va, small(pa, NORMAL));
            invalidate(|| arch::tlbimva(va));
            expect_load(va + o, pat(pa + o, salt))?;
            if i % 8 == 0 {
                let v = i ^ 0x5eed_0000;
                expect_store(va + o, v)?;
                expect_phys(pa + o, v)?;
                write_phys(pa + o, pat(pa + o, salt));
            }
            Ok(())
        })();
        ctx(r, format_args!("remap {i}"))?;
    }
    Ok(())
}

/// A live L2 table (all 256 pages read once) takes 5000 entry writes with no access and
/// no TLB maintenance in between (faults, read-only and read/write pages of 16 targets);
/// then one TLBIALLIS, and every page must behave as its last written entry says.
fn storm_l2_writes() -> R {
    let base = W + 0x50_0000;
    let salt = 0x0707_0070;
    let target = |t: u32| page(48 + t);
    for t in 0..16 {
        fill(target(t), PAGE, salt);
    }
    let l2 = alloc_l2();
    set_l1(BASE_L1, base, page_table(l2, 0));
    let mut last = [0u32; 256];
    for e in 0..256u32 {
        last[e as usize] = small(target(e % 16), NORMAL);
        set_l2(l2, base + (e << 12), last[e as usize]);
    }
    sync();
    let off = |e: u32| (e * 20) % PAGE;
    for e in 0..256u32 {
        let o = off(e);
        ctx(
            expect_load(base + (e << 12) + o, pat(target(e % 16) + o, salt)),
            format_args!("warm-up entry {e}"),
        )?;
    }
    for i in 0..5000u32 {
        let e = (i * 97 + 11) % 256;
        let t = (i * 13 + 5) % 16;
        let d = match i % 7 {
            3 => 0,
            5 => small(target(t), NORMAL.ap(AP_RO)),
            _ => small(target(t), NORMAL),
        };
        last[e as usize] = d;
        set_l2(l2, base + (e << 12), d);
    }
    invalidate(arch::tlbiallis);
    for e in 0..256u32 {
        let va = base + (e << 12) + off(e);
        let d = last[e as usize];
        let pa = (d & !0xfff) + off(e);
        let r = if d == 0 {
            expect_data_abort(va, Acc::Read, FS_TRANSLATION_PAGE)
        } else if d == small(d & !0xfff, NORMAL.ap(AP_RO)) {
            expect_load(va, pat(pa, salt))
                .and_then(|()| expect_data_abort(va, Acc::Write, FS_PERMISSION_PAGE))
        } else {
            (|| {
                expect_load(va, pat(pa, salt))?;
                expect_store(va, !pat(pa, salt))?;
                expect_phys(pa, !pat(pa, salt))?;
                write_phys(pa, pat(pa, salt));
                Ok(())
            })()
        };
        ctx(r, format_args!("entry {e} = {d:#010x}"))?;
    }
    Ok(())
}

// ---- 10. Bad input -------------------------------------------------------------------------

/// Not RAM and not a device, natively (QEMU virt: between the virtio-mmio transports
/// and the platform bus) and under the hypervisor (no IPA there): a walk of it is a
/// synchronous external abort. (0x2000_0000 is no good natively: QEMU's PCIe MMIO window
/// reads unclaimed addresses as all-ones.)
const NOT_RAM_L2: u32 = 0x0a80_0000;
/// TTBR0 for `bad_ttbr0`: the hypervisor's emulated test device, unassigned natively.
const NOT_RAM_TTBR0: u32 = 0x0b00_0000;

/// An L1 page-table entry whose L2 table is not RAM: synchronous external abort on the
/// second-level walk (FS 0b01110; ExT ignored), for read and write; the machine goes on.
fn bad_l2_address() -> R {
    let va = W + 0x60_3010;
    set_l1(BASE_L1, va, page_table(NOT_RAM_L2, 0));
    sync();
    expect_data_abort(va, Acc::Read, FS_EXT_WALK_L2)?;
    expect_data_abort(va, Acc::Write, FS_EXT_WALK_L2)?;
    expect_data_abort(va + 0x8_0000, Acc::Read, FS_EXT_WALK_L2)?;
    let pa = page(28);
    write_phys(pa + 0x10, 0x0808_0080);
    map_page(W + 0x70_3000, pa, NORMAL);
    expect_load(W + 0x70_3010, 0x0808_0080)
}

/// TTBCR.N = 2 splits at 1 GiB: TTBR1 (the base table) keeps translating 0x4000_0000..,
/// where the image, stacks and vectors are; TTBR0 points at a non-RAM address, so a VA
/// below 1 GiB takes a synchronous external abort on the first-level walk (FS 0b01100).
fn bad_ttbr0() -> R {
    arch::set_ttbr1(BASE_L1 | TTBR_FLAGS);
    arch::isb();
    arch::set_ttbcr(2);
    arch::isb();
    arch::set_ttbr0(NOT_RAM_TTBR0);
    flush_tlb();
    for va in [0x2000_0000, 0x0000_1000, 0x3ff0_0ff0] {
        expect_data_abort(va, Acc::Read, FS_EXT_WALK_L1)?;
    }
    expect_data_abort(0x2000_0000, Acc::Write, FS_EXT_WALK_L1)?;
    let want = pat(SECTION_A + 0x40, 0x0909_0090);
    write_phys(SECTION_A + 0x40, want);
    arch::dsb();
    expect_load(SECTION_A + 0x40, want)
}

/// An L1 table L (64 KiB aligned) whose entry for VA 0x8000_0000 points at L itself as
/// the L2 table: the walk for VA 0x8000_0000 + j * 4 KiB uses word j of L as a
/// second-level descriptor. The words placed in L[0..256) (the L1 entries of VAs below
/// 256 MiB, never used as such) decide what each page maps to:
/// - L[0..16] = page_table(L, domain 1) = L | 0x21: as an L2 descriptor (bits 1:0 = 01) a
///   large page (16 identical entries as required) of PA L[31:16] = L, XN = TEX = nG =
///   S = AP[2] = C = B = 0 (bits 15..9 and 3..2 of L | 0x21), AP[1:0] = bits 5:4 = 0b10:
///   PL1 read/write. So VA 0x8000_0000 + x (x < 64 KiB) reads L + x: L's own words,
///   including the looping entry itself;
/// - L[16] = small(p1, RW), L[18] = small(p2, RO): those pages;
/// - L[17] = 0 and L[48] = 0: page translation faults;
/// - L[32..48] = large(p64, RW): that large page, offset VA[15:0].
fn loop_table() -> R {
    let l = LOOP_L1;
    let (p1, p2, p64) = (page(29), page(30), LARGE_B);
    let salt = 0x0a0a_00a0;
    fill(p1, PAGE, salt);
    fill(p2, PAGE, salt);
    fill(p64, 0x1_0000, salt);
    build_identity_l1(l, false);
    for j in 0..16 {
        write_phys(l + 4 * j, page_table(l, 1));
    }
    write_phys(l + 4 * 16, small(p1, NORMAL));
    write_phys(l + 4 * 18, small(p2, NORMAL.ap(AP_RO)));
    for j in 32..48 {
        write_phys(l + 4 * j, large(p64, NORMAL));
    }
    write_phys(l1_slot(l, W), page_table(l, 0));
    arch::dsb();
    switch_context(0, l | TTBR_FLAGS);
    flush_tlb();
    let page_va = |j: u32| W + (j << 12);
    // j < 16: the large page at L.
    expect_load(W, page_table(l, 1))?;
    expect_load(W + 0x40, small(p1, NORMAL))?;
    expect_load(W + 0x44, 0)?;
    expect_load(W + (RAM_BASE >> 20) * 4, section(RAM_BASE, NORMAL))?;
    expect_load(W + (W >> 20) * 4, page_table(l, 0))?;
    expect_store(W + 0xfff * 4, 0x1234_5670)?; // L1 entry of VA 0xfff0_0000: still a fault
    expect_phys(l + 0xfff * 4, 0x1234_5670)?;
    expect_load(page_va(15) + 0xffc, rd(l + 0xfffc))?;
    // j = 16, 17, 18.
    expect_load(page_va(16), pat(p1, salt))?;
    expect_load(page_va(16) + 0xabc, pat(p1 + 0xabc, salt))?;
    expect_data_abort(page_va(17) + 8, Acc::Read, FS_TRANSLATION_PAGE)?;
    expect_load(page_va(18) + 0x20, pat(p2 + 0x20, salt))?;
    expect_data_abort(page_va(18) + 0x20, Acc::Write, FS_PERMISSION_PAGE)?;
    // j = 32..48: the large page of p64; j = 48: fault.
    expect_load(page_va(32) + 0x10, pat(p64 + 0x10, salt))?;
    expect_load(page_va(37) + 0x124, pat(p64 + 0x5124, salt))?;
    expect_load(page_va(47) + 0xffc, pat(p64 + 0xfffc, salt))?;
    expect_data_abort(page_va(48), Acc::Read, FS_TRANSLATION_PAGE)
}

/// VA of table `i`'s distinguishing section in `many_ttbr0`.
const fn many_va(i: u32) -> u32 {
    W + (i << 20)
}

/// Table `i`'s marker, in its L1 entry 0xfff (VA 0xfff0_0000, bits 1:0 = 0: a fault).
const fn many_marker(i: u32) -> u32 {
    0x5a00_0000 | (i << 8)
}

/// 1024 distinct L1 tables (16 KiB each), each mapping only the image's MiB (global) and
/// one nG section at 0x8000_0000 + i MiB that holds the table itself; 2048 switches in a
/// permuted order (each table twice), ASIDs 1..=255 in generations with TLBIALL at each
/// rollover. After each switch: the table's marker reads through its own section, and the
/// previous table's section is a translation fault.
fn many_ttbr0() -> R {
    for i in 0..MANY_L1_COUNT {
        let t = MANY_L1 + i * 0x4000;
        zero(t, 0x4000);
        set_l1(t, RAM_BASE, section(RAM_BASE, NORMAL));
        set_l1(t, many_va(i), section(t, NORMAL.ng(true)));
        write_phys(t + 0xfff * 4, many_marker(i));
    }
    arch::dsb();
    let probe = |i: u32| many_va(i) + ((MANY_L1 + i * 0x4000) & 0xf_ffff) + 0xfff * 4;
    let mut prev: Option<u32> = None;
    for s in 0..2 * MANY_L1_COUNT {
        let i = (s * 389 + 5) % MANY_L1_COUNT;
        if s % 255 == 0 {
            flush_tlb();
        }
        let asid = 1 + s % 255;
        switch_context((s << 8) | asid, (MANY_L1 + i * 0x4000) | TTBR_FLAGS);
        let r = (|| {
            expect_load(probe(i), many_marker(i))?;
            if let Some(p) = prev.filter(|&p| p != i) {
                expect_data_abort(probe(p), Acc::Read, FS_TRANSLATION_SECTION)?;
            }
            Ok(())
        })();
        ctx(r, format_args!("switch {s} to table {i}"))?;
        prev = Some(i);
    }
    Ok(())
}

/// Whether L1 index `i` keeps its base-map section in `many_l2_tables`: RAM (the image,
/// stacks, vectors and every table) and the UART.
fn ml2_kept(i: u32) -> bool {
    (RAM_BASE >> 20..(RAM_BASE + RAM_SIZE) >> 20).contains(&i) || i == UART_PA >> 20
}

/// The one valid entry of L2 table `i` (VA[19:12]).
const fn ml2_index(i: u32) -> u32 {
    (i * 37 + 11) & 0xff
}

/// The data page table `i`'s entry maps: one of 16.
const fn ml2_page(i: u32) -> u32 {
    MANY_L2_DATA + (i & 15) * PAGE
}

/// Offset of table `i`'s marker in its data page: (i, offset) is distinct for every i.
const fn ml2_offset(i: u32) -> u32 {
    (i >> 4) * 4
}

/// The marker of L1 index `i` (its own word: no other index reads it).
const fn ml2_marker(i: u32) -> u32 {
    0x6d00_0000 | (i << 12) | (ml2_index(i) << 4) | 0xb
}

/// VA of table `i`'s marker: L1 index i, L2 index `ml2_index(i)`, offset `ml2_offset(i)`.
const fn ml2_va(i: u32) -> u32 {
    (i << 20) | (ml2_index(i) << 12) | ml2_offset(i)
}

/// A VA through a faulting entry of table `i` (L2 index `ml2_index(i) ^ 0x80`).
const fn ml2_hole(i: u32) -> u32 {
    (i << 20) | ((ml2_index(i) ^ 0x80) << 12) | (ml2_offset(i) ^ 0xc04)
}

/// An L1 table in which every entry but RAM's 128 and the UART's (sections, as in the
/// base map) is a page-table descriptor to its own 1 KiB L2 table: 3967 L2 tables, about
/// 4 MiB of them. Table i maps one small page, at L2 index `ml2_index(i)`, onto data page
/// i mod 16, where the word at (i / 16) * 4 is i's marker; its other 255 entries fault.
/// After TTBR0 = this table (ASID 0, TLBIALL): every marker reads back, in two permuted
/// passes; every 8th table of the first pass gives a level-2 translation fault (FS 0b00111,
/// DFAR) at a faulting entry; every 32nd of the second pass takes a write, checked in RAM.
/// Back on the base table: those VAs fault at level 1 again, and a fresh mapping works.
fn many_l2_tables() -> R {
    let l = MANY_L2_L1;
    let salt = 0x0b0b_00b0;
    fill(MANY_L2_DATA, 16 * PAGE, salt);
    build_identity_l1(l, true);
    let mut tables = 0;
    for i in 0..0x1000 {
        if ml2_kept(i) {
            continue;
        }
        let t = MANY_L2_TABLES + i * 0x400;
        zero(t, 0x400);
        write_phys(t + 4 * ml2_index(i), small(ml2_page(i), NORMAL));
        write_phys(ml2_page(i) + ml2_offset(i), ml2_marker(i));
        write_phys(l + 4 * i, page_table(t, 0));
        tables += 1;
    }
    arch::dsb();
    let want = 0x1000 - (RAM_SIZE >> 20) - 1;
    ensure!(tables == want, "built {tables} L2 tables, expected {want}");
    switch_context(0, l | TTBR_FLAGS);
    flush_tlb();
    // The kept RAM sections still translate (identity).
    expect_load(ml2_page(7) + ml2_offset(7), ml2_marker(7))?;
    for (pass, mul, add) in [(0u32, 1229u32, 7u32), (1, 2731, 1001)] {
        for s in 0..0x1000u32 {
            let i = (s * mul + add) & 0xfff; // odd multiplier: a permutation of 0..4096
            if ml2_kept(i) {
                continue;
            }
            let r = (|| {
                expect_load(ml2_va(i), ml2_marker(i))?;
                if pass == 0 && s % 8 == 0 {
                    expect_data_abort(ml2_hole(i), Acc::Read, FS_TRANSLATION_PAGE)?;
                }
                if pass == 1 && s % 32 == 0 {
                    let v = !ml2_marker(i);
                    expect_store(ml2_va(i), v)?;
                    expect_phys(ml2_page(i) + ml2_offset(i), v)?;
                    expect_load(ml2_va(i), v)?;
                    expect_store(ml2_va(i), ml2_marker(i))?;
                }
                Ok(())
            })();
            ctx(r, format_args!("pass {pass}, L1 index {i:#05x}"))?;
        }
    }
    expect_data_abort(ml2_hole(0xfff), Acc::Write, FS_TRANSLATION_PAGE)?;
    switch_context(0, BASE_L1 | TTBR_FLAGS);
    flush_tlb();
    for i in [0x001, 0x800, 0x9ab, 0xfff] {
        expect_data_abort(ml2_va(i), Acc::Read, FS_TRANSLATION_SECTION)?;
    }
    let i = 0x803;
    let va = W + 0x7_5000;
    map_page(va, ml2_page(i), NORMAL);
    expect_load(va + ml2_offset(i), ml2_marker(i))?;
    expect_load(ml2_page(i) + ml2_offset(i), ml2_marker(i))
}

// ---- 11. Harness self-test (MMU32_SELFTEST=1 builds only; every one must FAIL) -----------

fn selftest_fault_at_mapped() -> R {
    let va = W + 0x1000;
    map_page(va, page(31), NORMAL);
    expect_data_abort(va, Acc::Read, FS_TRANSLATION_PAGE)
}

fn selftest_wrong_value() -> R {
    let va = W + 0x1000;
    fill(page(31), PAGE, 1);
    map_page(va, page(31), NORMAL);
    expect_load(va + 4, pat(page(31) + 4, 1) ^ 1)
}

fn selftest_wrong_fs() -> R {
    let l2 = alloc_l2();
    set_l1(BASE_L1, W, page_table(l2, 0));
    sync();
    expect_data_abort(W + 0x2000, Acc::Read, FS_TRANSLATION_SECTION)
}

fn selftest_wrong_far() -> R {
    expect_data_abort(W + 0x2000, Acc::Read, FS_TRANSLATION_SECTION)?;
    let r = crate::harness::load(W + 0x3000);
    match r {
        Err(f) if f.far == W + 0x3004 => Ok(()),
        Err(f) => fail!("expected DFAR {:#010x}, got {f}", W + 0x3004),
        Ok(v) => fail!("expected a fault, read {v:#010x}"),
    }
}

fn selftest_unexpected() -> R {
    // SAFETY: a deliberate access to an unmapped VA outside any probe: the data abort
    // vector skips the load, and the runner must report the unseen exception.
    let _ = unsafe { core::ptr::read_volatile((W + 0x5000) as *const u32) };
    Ok(())
}

fn selftest_exec_ok() -> R {
    let va = W + 0x6000;
    put_code(page(31), 0x11);
    map_page(va, page(31), NORMAL);
    expect_prefetch_abort(va, FS_PERMISSION_PAGE)
}
