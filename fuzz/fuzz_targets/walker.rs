//! Fuzz target: the short-descriptor walker and PAR computation on arbitrary tables and registers.
#![no_main]

use hv::addr::{GuestPhysAddr, VirtAddr};
use hv::shadow::{ats1, translate, Access, AtsOp, GuestMemory, MemError, Regime};
use libfuzzer_sys::fuzz_target;

/// Guest memory whose words come from the fuzz input (wrapping), with a hole above
/// 0xC000_0000 so external aborts on the walk are reached too.
struct Bytes<'a>(&'a [u8]);

impl GuestMemory for Bytes<'_> {
    fn read_u32(&self, gpa: GuestPhysAddr) -> Result<u32, MemError> {
        if self.0.len() < 4 || gpa.raw() >= 0xc000_0000 {
            return Err(MemError);
        }
        let i = (gpa.raw() as usize / 4 * 4) % (self.0.len() - 3);
        Ok(u32::from_le_bytes([
            self.0[i],
            self.0[i + 1],
            self.0[i + 2],
            self.0[i + 3],
        ]))
    }
}

fn word(d: &[u8], i: usize) -> u32 {
    let g = |k: usize| d.get(i * 4 + k).copied().unwrap_or(0) as u32;
    g(0) | g(1) << 8 | g(2) << 16 | g(3) << 24
}

fuzz_target!(|data: &[u8]| {
    let r = Regime {
        ttbr0: word(data, 0),
        ttbr1: word(data, 1),
        ttbcr: word(data, 2),
        dacr: word(data, 3),
        sctlr: word(data, 4),
        contextidr: word(data, 5),
        prrr: word(data, 6),
        nmrr: word(data, 7),
    };
    let mem = Bytes(data.get(32..).unwrap_or(&[]));
    for k in 0..8 {
        let va = VirtAddr::new(word(data, 8 + k) as u64);
        for a in Access::ALL {
            let t = translate(&r, &mem, va, a);
            if let Ok(t) = t {
                assert!(t.pa < 1 << 40);
            }
        }
        for op in [AtsOp::Cpr, AtsOp::Cpw, AtsOp::Cur, AtsOp::Cuw] {
            let _ = ats1(&r, &mem, va, op);
        }
    }
});
