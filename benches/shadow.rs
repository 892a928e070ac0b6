//! Criterion benchmarks of the shadow engine: guest walk per mapping kind, full build of a
//! Linux-like address space, and incremental sync per descriptor write.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use hv::addr::{GuestPhysAddr, HostPhysAddr, VirtAddr};
use hv::shadow::sim::{FlatMemory, RegionMap};
use hv::shadow::walk::sctlr;
use hv::shadow::{translate, Access, AccessKind, Pl, Pool, Regime, ShadowEngine};

const RAM: u64 = 0x4000_0000;
const RAM_LEN: u64 = 256 << 20;
const HPA: u64 = 0x8000_0000;
/// Guest memory that holds the tables (the walker only ever reads tables).
const TABLE_MEM: u64 = 4 << 20;
const L1: u64 = RAM + 0x4000;
const L2_BASE: u64 = RAM + 0x10_0000;
const SPARE_L2: u64 = RAM + 0x20_0000;

struct Guest {
    mem: FlatMemory,
    map: RegionMap,
    regime: Regime,
    /// (gpa of a user L2 descriptor, value a, value b) for the sync benchmark.
    l2_slot: u64,
}

fn w(mem: &mut FlatMemory, gpa: u64, v: u32) {
    mem.write_u32(gpa, v).expect("inside table memory");
}

/// Kernel: 256 sections at 0xC000_0000 (linear map of the first 256 MiB of RAM). User:
/// 64 second-level tables (text, heap, mmap, stack) of 200 small pages each. Plus a large
/// page and a supersection for the per-kind walk benchmarks.
fn linux_like() -> Guest {
    let mut mem = FlatMemory::new(RAM, TABLE_MEM);
    let mut map = RegionMap::new();
    map.add_ram(RAM, RAM_LEN, HPA);
    // Kernel sections: AP=001 (PL1 RW), normal WBWA, shareable, global, domain 0.
    for i in 0..256u64 {
        let d = ((RAM + (i << 20)) as u32) | 2 | (1 << 10) | (1 << 12) | (3 << 2) | (1 << 16);
        w(&mut mem, L1 + (0xc00 + i) * 4, d);
    }
    // User L2 tables, domain 1, spread over the user address space.
    let user_mibs: Vec<u64> = (0..16)
        .chain(0x100..0x110)
        .chain(0x400..0x410)
        .chain(0xbe0..0xbf0)
        .collect();
    assert_eq!(user_mibs.len(), 64);
    for (k, &mib) in user_mibs.iter().enumerate() {
        let l2 = L2_BASE + k as u64 * 0x400;
        w(&mut mem, L1 + mib * 4, (l2 as u32) | 1 | (1 << 5));
        for j in 0..200u64 {
            let page = RAM + 0x100_0000 + ((k as u64 * 256 + j) * 7919 % 0xe000) * 0x1000;
            // Small page, AP=011, nG, normal WBWA, shareable.
            let d = (page as u32) | 2 | (3 << 4) | (1 << 6) | (3 << 2) | (1 << 10) | (1 << 11);
            w(&mut mem, l2 + j * 4, d);
        }
    }
    // A spare, unreferenced copy of user table 3 in its own page (for the hook benchmark).
    for j in 0..256u64 {
        let d =
            hv::shadow::GuestMemory::read_u32(&mem, GuestPhysAddr::new(L2_BASE + 0xc00 + j * 4))
                .expect("table");
        w(&mut mem, SPARE_L2 + j * 4, d);
    }
    // A large page (entries 0xf0..0xff of the first user table).
    let large = ((RAM + 0x200_0000) as u32) | 1 | (3 << 4) | (1 << 12) | (3 << 2);
    for j in 0xf0..0x100u64 {
        w(&mut mem, L2_BASE + j * 4, large);
    }
    // A supersection at VA 0xb000_0000 → PA RAM + 16 MiB.
    let ss = ((RAM + 0x100_0000) as u32) | 2 | (1 << 18) | (3 << 10) | (1 << 12) | (3 << 2);
    for i in 0xb00..0xb10u64 {
        w(&mut mem, L1 + i * 4, ss);
    }
    let regime = Regime {
        ttbr0: L1 as u32 | 0x4a,
        ttbr1: 0,
        ttbcr: 0,
        dacr: 0x5,
        sctlr: sctlr::M | sctlr::AFE | sctlr::TRE,
        contextidr: 0x2a,
        prrr: 0xff0a_81a8,
        nmrr: 0x40e0_40e0,
    };
    Guest {
        mem,
        map,
        regime,
        l2_slot: L2_BASE + 0x400 * 3 + 17 * 4,
    }
}

fn bench_walk(c: &mut Criterion) {
    let g = linux_like();
    let read = Access {
        pl: Pl::Pl0,
        kind: AccessKind::Read,
    };
    let kread = Access {
        pl: Pl::Pl1,
        kind: AccessKind::Read,
    };
    let mut group = c.benchmark_group("walk");
    for (name, va, acc) in [
        ("section", 0xc012_3456u32, kread),
        ("supersection", 0xb0ab_cdef, read),
        ("large_page", 0x000f_5678, read),
        ("small_page", 0x0000_2345, read),
        ("translation_fault", 0x2000_0000, read),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                translate(
                    black_box(&g.regime),
                    &g.mem,
                    black_box(VirtAddr::new(va as u64)),
                    acc,
                )
            })
        });
    }
    group.bench_function("section_lookup_only", |b| {
        b.iter(|| {
            hv::shadow::walk::lookup(
                black_box(&g.regime),
                &g.mem,
                black_box(VirtAddr::new(0xc012_3456)),
            )
        })
    });
    group.finish();
}

fn bench_build(c: &mut Criterion) {
    let g = linux_like();
    c.bench_function("build/linux_like_16k_l1_64_l2", |b| {
        b.iter_batched(
            || ShadowEngine::new(Pool::new(HostPhysAddr::new(0x2000_0000), 128), 4),
            |mut e| {
                e.set_regime(g.regime, &g.mem, &g.map).expect("build");
                e
            },
            BatchSize::LargeInput,
        )
    });
}

fn bench_sync(c: &mut Criterion) {
    let g = linux_like();
    let mut e = ShadowEngine::new(Pool::new(HostPhysAddr::new(0x2000_0000), 128), 4);
    e.set_regime(g.regime, &g.mem, &g.map).expect("build");
    let s = e.stats();
    println!(
        "linux-like build: fills={} l2_builds={} protected_pages={}",
        s.fills,
        s.l2_builds,
        e.protected_pages()
    );
    let page_a = ((RAM + 0x300_0000) as u32) | 2 | (3 << 4) | (1 << 11);
    let page_b = ((RAM + 0x300_1000) as u32) | 2 | (1 << 4) | (1 << 11) | 1;
    let mut group = c.benchmark_group("sync");
    let mut flip = false;
    group.bench_function("l2_small_page_write", |b| {
        b.iter(|| {
            flip = !flip;
            let v = if flip { page_a } else { page_b };
            e.sync_write(GuestPhysAddr::new(g.l2_slot), black_box(v), &g.mem, &g.map)
                .expect("sync")
        })
    });
    let sec_a = ((RAM + 0x500_0000) as u32) | 2 | (1 << 10);
    let sec_b = ((RAM + 0x600_0000) as u32) | 2 | (1 << 10);
    let l1_slot = L1 + 0x300 * 4;
    group.bench_function("l1_section_write", |b| {
        b.iter(|| {
            flip = !flip;
            let v = if flip { sec_a } else { sec_b };
            e.sync_write(GuestPhysAddr::new(l1_slot), black_box(v), &g.mem, &g.map)
                .expect("sync")
        })
    });
    // Re-pointing an L1 entry between a table in an already protected page and a table in an
    // unprotected one: each write builds 256 shadow entries, (un)protects a page and rescans
    // the shadow for mappings of it.
    let pt_a = ((L2_BASE + 0x400 * 3) as u32) | 1 | (1 << 5);
    let pt_b = (SPARE_L2 as u32) | 1 | (1 << 5);
    let l1_user = L1 + 0x200 * 4;
    group.bench_function("l1_page_table_write", |b| {
        b.iter(|| {
            flip = !flip;
            let v = if flip { pt_a } else { pt_b };
            e.sync_write(GuestPhysAddr::new(l1_user), black_box(v), &g.mem, &g.map)
                .expect("sync")
        })
    });
    group.bench_function("non_descriptor_write", |b| {
        b.iter(|| {
            e.sync_write(
                GuestPhysAddr::new(RAM + 0x80_0000),
                black_box(0x1234),
                &g.mem,
                &g.map,
            )
            .expect("sync")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_walk, bench_build, bench_sync);
criterion_main!(benches);
