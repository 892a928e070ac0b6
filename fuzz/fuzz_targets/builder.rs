//! Fuzz target: shadow build, sync, regime changes and fault resolution on arbitrary guest tables.
#![no_main]

use hv::addr::{GuestPhysAddr, HostPhysAddr, VirtAddr};
use hv::shadow::sim::{RegionMap, SparseMemory};
use hv::shadow::{translate, Access, Pool, Regime, Resolution, ShadowEngine};
use libfuzzer_sys::fuzz_target;

const RAM: u64 = 0x4000_0000;

fuzz_target!(|data: &[u8]| {
    let words: Vec<u32> = data
        .chunks(4)
        .map(|c| c.iter().rev().fold(0u32, |a, &b| a << 8 | b as u32))
        .collect();
    if words.len() < 8 {
        return;
    }
    let mut map = RegionMap::new();
    map.add_ram(RAM, 0x40_0000, 0x6000_0000);
    map.add_ram(RAM + 0x40_0000, 0x1000, 0x7000_0000);
    let mut mem = SparseMemory::new(&map.ram_ranges());
    // Registers point into RAM most of the time so the walk sees the fuzzed tables.
    let pick = |w: u32| {
        if w & 1 == 0 {
            (RAM as u32) | (w & 0x3f_c000)
        } else {
            w
        }
    };
    let mut r = Regime {
        ttbr0: pick(words[0]),
        ttbr1: pick(words[1]),
        ttbcr: words[2] & 0x3f,
        dacr: words[3],
        sctlr: words[4] | 1,
        contextidr: words[5],
        prrr: words[6],
        nmrr: words[7],
    };
    // Scatter descriptor words over the first 4 MiB of RAM (tables live there).
    for pair in words[8..].chunks(2) {
        if let [addr, val] = *pair {
            let _ = mem.write_u32(RAM + (addr as u64 & 0x3f_fffc), val);
        }
    }
    let mut e = ShadowEngine::new(Pool::new(HostPhysAddr::new(0x8000_0000), 24), 2);
    if e.set_regime(r, &mem, &map).is_err() {
        return;
    }
    for (i, pair) in words[8..].chunks(2).enumerate().take(64) {
        let [addr, val] = *pair else { break };
        let va = VirtAddr::new(val as u64);
        for a in Access::ALL {
            // Safety property: the shadow never grants an access the guest denies.
            if let Some(Ok(s)) = e.shadow_translate(va, a) {
                let g = translate(&r, &mem, va, a);
                assert!(
                    g.is_ok(),
                    "shadow grants {va:?} {a:?} -> {:#x}, guest {g:?}",
                    s.pa
                );
            }
            if let Resolution::Guest(f) = e.resolve_fault(va, a, &mem, &map) {
                let _ = f.dfsr(true);
            }
        }
        // Mutate a table word and sync it; now and then change a register.
        let gpa = RAM + (addr as u64 & 0x3f_fffc);
        if mem.write_u32(gpa, val.rotate_left(13)).is_ok() {
            let _ = e.sync_write(GuestPhysAddr::new(gpa), val.rotate_left(13), &mem, &map);
        }
        if i % 8 == 7 {
            r.dacr = addr;
            r.contextidr = val & 3;
            let _ = e.set_regime(r, &mem, &map);
        }
    }
});
