//! On-target test: garbage written to the emulated GIC must disturb neither the
//! hypervisor nor anything but this VM's own vGIC (issue 3, "Bad input").
//!
//! A deterministic PRNG (xorshift64*, fixed seed, printed) drives thousands of random
//! accesses: writes of random values with random sizes (1, 2, 4 and 8 bytes) at random
//! offsets, aligned or not, across the whole distributor frame (0x0800_0000: 4 KiB on
//! GICv2, 64 KiB on GICv3), and reads of random offsets. GICD_SGIR (0xF00) is written
//! with every TargetListFilter and random CPU target lists naming CPUs that do not
//! exist. When GICD_PIDR2.ArchRev says GICv3, the redistributor region (0x080a_0000,
//! 128 KiB per vCPU) of this vCPU and of nonexistent vCPUs gets the same treatment,
//! and `msr icc_sgi1r_el1` is issued with random values (nonexistent affinities, RS,
//! IRM included).
//!
//! Every access runs inside `catch`. Allowed outcomes: the access completes (RAZ/WI);
//! an unaligned access takes an alignment fault (Device memory); an 8-byte access, or
//! one outside the registered frames (nonexistent redistributors), may come back as
//! an injected synchronous external abort. An injected abort on a naturally aligned
//! 1/2/4-byte access inside the frames, or any other exception, is a failure.
//!
//! Then: HV_NOP and PSCI_VERSION still answer, the test device still reads its ID,
//! HV_COUNTER(4) grew by exactly the injected aborts seen, the GIC's identification
//! registers are unchanged. A directed case follows: distributor enabled, eight SGIs
//! active (twice the list registers QEMU has) and one more pending, IRQs masked; the
//! vCPU must still run (1000 HV_NOPs). Before the fix in `Vgic::fill` the hypervisor
//! asked for the NPIE maintenance interrupt there, which fired on every entry, so the
//! vCPU never ran again. Then, after restoring a sane state (distributor disabled,
//! everything disabled, not pending, not active) the registers read back that state,
//! a priority round-trips and an SGI to self becomes pending and can be cleared.
//! Both VMs of `boards/qemu-virt/gic-garbage.vm` must pass: this one hammers its own
//! vGIC while the other runs the `mmio` tests.
#![no_std]
#![no_main]

use core::arch::asm;

use hv_guests::exception::{DFSC_SEA, EC_DABT_CUR};
use hv_guests::harness::check_why;
use hv_guests::smccc::{counter, hvc, COUNTER_ABORTS, HV_NOP, PSCI_VERSION};
use hv_guests::testdev::{self, ID_VALUE};
use hv_guests::{catch, check, check_eq, guest_main, println, timer};

const SEED: u64 = 0x6a09_e667_f3bc_c908;

const GICD: u64 = 0x0800_0000;
const GICR: u64 = 0x080a_0000;
const GICR_STRIDE: u64 = 0x2_0000;
/// Redistributor frames hammered on GICv3: this vCPU's and seven that do not exist.
const GICR_FRAMES: u64 = 8;
const SGI_BASE: u64 = 0x1_0000;

const GICD_CTLR: u64 = 0x000;
const GICD_TYPER: u64 = 0x004;
const GICD_IIDR: u64 = 0x008;
const GICD_ISENABLER: u64 = 0x100;
const GICD_ICENABLER: u64 = 0x180;
const GICD_ISPENDR: u64 = 0x200;
const GICD_ICPENDR: u64 = 0x280;
const GICD_ISACTIVER: u64 = 0x300;
const GICD_ICACTIVER: u64 = 0x380;
const GICD_IPRIORITYR: u64 = 0x400;
const GICD_SGIR: u64 = 0xf00;
const GICD_CPENDSGIR: u64 = 0xf10;
const GICD_SPENDSGIR: u64 = 0xf20;
const GICV2_PIDR2: u64 = 0xfe8;
const GICV3_PIDR2: u64 = 0xffe8;
const GICR_WAKER: u64 = 0x14;

/// Random accesses to the distributor (and, on GICv3, to the redistributors).
const ITERS: u32 = 12_000;
/// Random GICD_SGIR writes per TargetListFilter.
const SGIR_PER_FILTER: u32 = 256;
/// Random `msr icc_sgi1r_el1` writes (GICv3).
const SGI1R_WRITES: u32 = 2_000;

/// PSCI 1.1, as the hypervisor reports it.
const PSCI_1_1: u64 = 0x1_0001;
/// DFSC of an alignment fault.
const DFSC_ALIGN: u64 = 0x21;

/// xorshift64* (Vigna): deterministic, good enough to pick offsets and values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one access did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    /// Synchronous external abort injected by the hypervisor.
    Sea,
    /// Alignment fault (taken at EL1 directly).
    Align,
    /// Anything else: ESR_EL1.
    Other(u64),
}

/// Tallies over the whole run.
#[derive(Default)]
struct Tally {
    done: u64,
    sea: u64,
    align: u64,
    /// Exceptions that no access should raise, with the first one's details.
    bad: u64,
    first_bad: Option<(u64, u64, u8, bool)>,
}

impl Tally {
    /// Records `o` of an access at `addr` of `size` bytes; `may_abort` says whether an
    /// injected abort is acceptable for it.
    fn record(&mut self, o: Outcome, addr: u64, size: u8, write: bool, may_abort: bool) {
        let unaligned = !addr.is_multiple_of(u64::from(size));
        let ok = match o {
            Outcome::Done => {
                self.done += 1;
                true
            }
            Outcome::Sea => {
                self.sea += 1;
                may_abort
            }
            Outcome::Align => {
                self.align += 1;
                unaligned
            }
            Outcome::Other(_) => false,
        };
        if !ok {
            self.bad += 1;
            if self.first_bad.is_none() {
                let esr = match o {
                    Outcome::Other(e) => e,
                    Outcome::Sea => DFSC_SEA,
                    Outcome::Align => DFSC_ALIGN,
                    Outcome::Done => 0,
                };
                self.first_bad = Some((addr, esr, size, write));
            }
        }
    }
}

fn classify(fault: Option<hv_guests::Fault>) -> Outcome {
    match fault {
        None => Outcome::Done,
        Some(f) if f.ec() == EC_DABT_CUR && f.fsc() == DFSC_SEA && f.count == 1 => Outcome::Sea,
        Some(f) if f.ec() == EC_DABT_CUR && f.fsc() == DFSC_ALIGN && f.count == 1 => Outcome::Align,
        Some(f) => Outcome::Other(f.esr),
    }
}

/// One store of the low `size` bytes of `v` at `addr`.
fn write(addr: u64, size: u8, v: u64) -> Outcome {
    let ((), fault) = catch(|| {
        // SAFETY: a single store to the GIC region (Device memory in the identity map,
        // outside RAM); any abort is caught and the instruction skipped by `catch`.
        unsafe {
            match size {
                1 => asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack)),
                2 => asm!("strh {v:w}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack)),
                4 => asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack)),
                _ => asm!("str {v:x}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack)),
            }
        }
    });
    classify(fault)
}

/// One load of `size` bytes at `addr` (zero-extended).
fn read(addr: u64, size: u8) -> (u64, Outcome) {
    let (v, fault) = catch(|| {
        let mut v: u64 = 0;
        // SAFETY: a single load from the GIC region (Device memory, outside RAM); any
        // abort is caught and the instruction skipped by `catch`.
        unsafe {
            match size {
                1 => {
                    asm!("ldrb {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
                }
                2 => {
                    asm!("ldrh {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack))
                }
                4 => asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack)),
                _ => asm!("ldr {v:x}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack)),
            }
        }
        v
    });
    (v, classify(fault))
}

/// 32-bit read that must not fault; `None` if it did.
fn rd32(addr: u64) -> Option<u32> {
    match read(addr, 4) {
        (v, Outcome::Done) => Some(v as u32),
        _ => None,
    }
}

/// 32-bit write that must not fault.
fn wr32(addr: u64, v: u32) -> bool {
    write(addr, 4, u64::from(v)) == Outcome::Done
}

/// `msr icc_sgi1r_el1, v` (traps to the hypervisor on a GICv3 VM).
fn sgi1r(v: u64) -> Outcome {
    let ((), fault) = catch(|| {
        // SAFETY: writes ICC_SGI1R_EL1 (S3_0_C12_C11_5), which only generates SGIs;
        // an exception (if the register were not there) is caught and skipped.
        unsafe { asm!("msr S3_0_C12_C11_5, {v}", v = in(reg) v, options(nomem, nostack)) }
    });
    classify(fault)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Gic {
    V2,
    V3,
}

/// GICD_PIDR2.ArchRev at 0xFFE8 (GICv3 frame); on GICv2 that offset is outside the
/// 4 KiB frame (an injected abort, recorded in `t`), so ICPIDR2 at 0xFE8 is tried next.
fn detect(t: &mut Tally) -> Option<Gic> {
    let (v, o) = read(GICD + GICV3_PIDR2, 4);
    t.record(o, GICD + GICV3_PIDR2, 4, false, true);
    if o == Outcome::Done && (v >> 4) & 0xf == 3 {
        return Some(Gic::V3);
    }
    let (v, o) = read(GICD + GICV2_PIDR2, 4);
    t.record(o, GICD + GICV2_PIDR2, 4, false, false);
    (o == Outcome::Done && (v >> 4) & 0xf == 2).then_some(Gic::V2)
}

fn random_size(r: &mut Rng) -> u8 {
    [1u8, 2, 4, 8][r.below(4) as usize]
}

/// An offset below `len`: half the time naturally aligned for `size`, else anywhere
/// (keeping the access inside the frame).
fn random_offset(r: &mut Rng, len: u64, size: u8) -> u64 {
    let off = r.below(len - u64::from(size) + 1);
    if r.next() & 1 == 0 {
        off & !(u64::from(size) - 1)
    } else {
        off
    }
}

/// Random values biased towards the interesting ones.
fn random_value(r: &mut Rng) -> u64 {
    match r.below(8) {
        0 => 0,
        1 => u64::MAX,
        2 => 1 << r.below(64),
        _ => r.next(),
    }
}

/// One random access inside `base..base + len`; `frame_ok` says whether the frame is
/// registered with the hypervisor (so aligned 1/2/4-byte accesses must not abort).
fn random_access(r: &mut Rng, t: &mut Tally, base: u64, len: u64, frame_ok: bool) {
    let size = random_size(r);
    let off = random_offset(r, len, size);
    let addr = base + off;
    let may_abort = !frame_ok || size == 8 || !addr.is_multiple_of(u64::from(size));
    if r.below(3) == 0 {
        let (_, o) = read(addr, size);
        t.record(o, addr, size, false, may_abort);
    } else {
        let v = random_value(r);
        let o = write(addr, size, v);
        t.record(o, addr, size, true, may_abort);
    }
}

fn gicd_len(gic: Gic) -> u64 {
    match gic {
        Gic::V2 => 0x1000,
        Gic::V3 => 0x1_0000,
    }
}

fn hammer(r: &mut Rng, t: &mut Tally, gic: Gic) {
    for _ in 0..ITERS {
        if gic == Gic::V3 && r.below(3) == 0 {
            // This vCPU's redistributor (frame 0) or a nonexistent one.
            let frame = if r.next() & 1 == 0 {
                0
            } else {
                r.below(GICR_FRAMES)
            };
            random_access(r, t, GICR + frame * GICR_STRIDE, GICR_STRIDE, frame == 0);
        } else {
            random_access(r, t, GICD, gicd_len(gic), true);
        }
    }
    // GICD_SGIR: every TargetListFilter (3 is reserved), random target lists (only
    // CPU 0 exists), random SGI numbers and NSATT; also byte/halfword writes.
    for filter in 0..4u64 {
        for _ in 0..SGIR_PER_FILTER {
            let v = (filter << 24) | (r.below(256) << 16) | (r.next() & 0x80ff);
            let o = write(GICD + GICD_SGIR, 4, v);
            t.record(o, GICD + GICD_SGIR, 4, true, false);
        }
    }
    for _ in 0..SGIR_PER_FILTER {
        let size = random_size(r);
        let addr = GICD + GICD_SGIR + random_offset(r, 4, size.min(4));
        let o = write(addr, size, r.next());
        t.record(
            o,
            addr,
            size,
            true,
            size == 8 || !addr.is_multiple_of(u64::from(size)),
        );
    }
}

/// Random ICC_SGI1R_EL1 values (GICv3): fully random, IRM = 1, nonexistent Aff1..3
/// and RS, and the whole 16-bit target list.
fn hammer_sgi1r(r: &mut Rng, t: &mut Tally) {
    for i in 0..SGI1R_WRITES {
        let v = match i % 4 {
            0 => r.next(),
            1 => r.next() | 1 << 40,
            2 => r.next() & !(1 << 40) | 0xffff,
            _ => (r.below(16) << 24) | r.below(0x1_0000),
        };
        let o = sgi1r(v);
        t.record(o, 0, 4, true, false);
    }
}

/// Byte offsets of the words of a one-bit-per-interrupt GICD register that cover
/// SPIs (INTID 32 and up); word 0 (banked on GICv2, RAZ on GICv3) is handled apart.
fn spi_words(nr_irqs: u64) -> impl Iterator<Item = u64> {
    (1..nr_irqs.div_ceil(32)).map(|w| w * 4)
}

/// Directed garbage: more active interrupts than there are list registers, plus one
/// pending behind them, with the distributor enabled and IRQs masked at EL1 (so the
/// guest never takes any). The vCPU must keep running: `n` HV_NOPs must complete.
fn overcommit(gic: Gic, n: u32) -> bool {
    let mut ok = wr32(GICD + GICD_CTLR, 3);
    match gic {
        Gic::V2 => {
            // SGIs 0..7 (always enabled) active, SGI 8 pending from CPU 0.
            ok &= wr32(GICD + GICD_ISACTIVER, 0xff);
            ok &= wr32(GICD + GICD_SPENDSGIR + 8, 0x01);
        }
        Gic::V3 => {
            let sgi = GICR + SGI_BASE;
            ok &= wr32(sgi + GICD_ISENABLER, 0x1ff);
            ok &= wr32(sgi + GICD_ISACTIVER, 0xff);
            ok &= wr32(sgi + GICD_ISPENDR, 0x100);
        }
    }
    (0..n).all(|_| hvc(HV_NOP, 0, 0, 0) == 0) && ok
}

/// Back to a sane state: distributor disabled, every interrupt disabled, not pending,
/// not active, priority 0; GICv3: this redistributor's SGIs/PPIs too.
fn restore(gic: Gic, nr_irqs: u64) -> bool {
    let mut ok = wr32(GICD + GICD_CTLR, 0);
    for w in core::iter::once(0).chain(spi_words(nr_irqs)) {
        for reg in [GICD_ICENABLER, GICD_ICPENDR, GICD_ICACTIVER] {
            ok &= wr32(GICD + reg + w, u32::MAX);
        }
    }
    for w in (0..nr_irqs).step_by(4) {
        ok &= wr32(GICD + GICD_IPRIORITYR + w, 0);
    }
    match gic {
        Gic::V2 => {
            for w in (0..16).step_by(4) {
                ok &= wr32(GICD + GICD_CPENDSGIR + w, u32::MAX);
            }
        }
        Gic::V3 => {
            let sgi = GICR + SGI_BASE;
            for reg in [GICD_ICENABLER, GICD_ICPENDR, GICD_ICACTIVER] {
                ok &= wr32(sgi + reg, u32::MAX);
            }
            for w in (0..32).step_by(4) {
                ok &= wr32(sgi + GICD_IPRIORITYR + w, 0);
            }
            ok &= wr32(GICR + GICR_WAKER, 0);
        }
    }
    ok
}

/// Reads back the state `restore` set; returns a description of the first mismatch.
fn verify_restored(gic: Gic, nr_irqs: u64) -> Result<(), (u64, u32, u32)> {
    let expect = |addr: u64, want: u32| match rd32(addr) {
        Some(v) if v == want => Ok(()),
        Some(v) => Err((addr, v, want)),
        None => Err((addr, 0xdead_dead, want)),
    };
    // GICv2: SGIs are permanently enabled (IMPLEMENTATION DEFINED, RAO/WI), and the
    // first words are banked; GICv3: GICD words of INTIDs 0..31 are RAZ (ARE = 1).
    let sgi_enabled = if gic == Gic::V2 { 0xffff } else { 0 };
    let ctlr = rd32(GICD + GICD_CTLR).ok_or((GICD, 0xdead_dead, 0))?;
    if ctlr & 3 != 0 {
        return Err((GICD + GICD_CTLR, ctlr, ctlr & !3));
    }
    expect(GICD + GICD_ISENABLER, sgi_enabled)?;
    expect(GICD + GICD_ISPENDR, 0)?;
    expect(GICD + GICD_ISACTIVER, 0)?;
    for w in spi_words(nr_irqs) {
        for reg in [GICD_ISENABLER, GICD_ISPENDR, GICD_ISACTIVER] {
            expect(GICD + reg + w, 0)?;
        }
    }
    if gic == Gic::V3 {
        let sgi = GICR + SGI_BASE;
        for reg in [GICD_ISENABLER, GICD_ISPENDR, GICD_ISACTIVER] {
            expect(sgi + reg, 0)?;
        }
        expect(GICR + GICR_WAKER, 0)?;
    }
    Ok(())
}

/// With the distributor disabled (so nothing goes to a list register): SGI 5 sent to
/// this vCPU shows as pending, and clearing it works.
fn sgi_self(gic: Gic) -> Result<(), &'static str> {
    let (pend, clear, sent) = match gic {
        Gic::V2 => {
            // TargetListFilter 2: this CPU only.
            if !wr32(GICD + GICD_SGIR, 2 << 24 | 5) {
                return Err("GICD_SGIR write faulted");
            }
            // GICD_SPENDSGIR1 byte 1 = SGI 5's sources: CPU 0.
            let src = rd32(GICD + GICD_SPENDSGIR + 4).ok_or("GICD_SPENDSGIR1 faulted")?;
            if (src >> 8) & 0xff != 1 {
                return Err("GICD_SPENDSGIR1 does not show source CPU 0 for SGI 5");
            }
            (GICD + GICD_ISPENDR, GICD + GICD_CPENDSGIR + 4, 1u32 << 8)
        }
        Gic::V3 => {
            // INTID 5, Aff3.Aff2.Aff1 = 0, RS = 0, TargetList = {Aff0 0}.
            if sgi1r(5 << 24 | 1) != Outcome::Done {
                return Err("msr icc_sgi1r_el1 faulted");
            }
            (
                GICR + SGI_BASE + GICD_ISPENDR,
                GICR + SGI_BASE + GICD_ICPENDR,
                1 << 5,
            )
        }
    };
    let p = rd32(pend).ok_or("ISPENDR0 faulted")?;
    if p != 1 << 5 {
        return Err("ISPENDR0 is not exactly SGI 5 after sending it");
    }
    if !wr32(clear, sent) {
        return Err("clearing SGI 5 faulted");
    }
    if rd32(pend) != Some(0) {
        return Err("SGI 5 still pending after clearing it");
    }
    Ok(())
}

fn run() {
    println!("# gicgarbage: seed {SEED:#x}, {ITERS} random accesses");
    let t0 = timer::ticks();
    let mut t = Tally::default();
    let aborts_before = counter(COUNTER_ABORTS);
    let Some(gic) = detect(&mut t) else {
        check("GIC version detected from GICD_PIDR2", false);
        return;
    };
    println!("# GIC{} detected", if gic == Gic::V3 { "v3" } else { "v2" });
    let ids_before = [
        rd32(GICD + GICD_TYPER),
        rd32(GICD + GICD_IIDR),
        rd32(
            GICD + if gic == Gic::V3 {
                GICV3_PIDR2
            } else {
                GICV2_PIDR2
            },
        ),
    ];
    let nr_irqs = ids_before[0].map_or(32, |typer| (u64::from(typer & 0x1f) + 1) * 32);

    let mut r = Rng(SEED);
    hammer(&mut r, &mut t, gic);
    let mut sgi1r_bad = 0;
    if gic == Gic::V3 {
        let bad_before = t.bad;
        hammer_sgi1r(&mut r, &mut t);
        sgi1r_bad = t.bad - bad_before;
    }
    let aborts_after = counter(COUNTER_ABORTS);
    let secs_x10 = (timer::ticks() - t0) * 10 / timer::frequency().max(1);
    println!(
        "# {} accesses completed, {} injected aborts, {} alignment faults, {} unexpected; {}.{} s",
        t.done,
        t.sea,
        t.align,
        t.bad,
        secs_x10 / 10,
        secs_x10 % 10
    );

    let (addr, esr, size, wr) = t.first_bad.unwrap_or_default();
    check_why(
        "every garbage access completed, or aborted only where allowed",
        t.bad == 0,
        format_args!(
            "{} bad outcomes; first: {} of {size} bytes at {addr:#x}, ESR_EL1/DFSC {esr:#x}",
            t.bad,
            if wr { "write" } else { "read" }
        ),
    );
    if gic == Gic::V3 {
        check_eq(
            "msr icc_sgi1r_el1 with random values never faults",
            sgi1r_bad,
            0,
        );
    }
    check_eq("HV_NOP still answers 0", hvc(HV_NOP, 0, 0, 0), 0);
    check_eq(
        "PSCI_VERSION still answers 1.1",
        hvc(PSCI_VERSION, 0, 0, 0),
        PSCI_1_1,
    );
    check(
        "test device still reads its ID",
        testdev::read32(testdev::ID) == Some(ID_VALUE),
    );
    check_why(
        "HV_COUNTER(4) grew by the injected aborts seen",
        aborts_after.wrapping_sub(aborts_before) == t.sea,
        format_args!(
            "counter {aborts_before} -> {aborts_after}, {} aborts caught",
            t.sea
        ),
    );
    let ids_after = [
        rd32(GICD + GICD_TYPER),
        rd32(GICD + GICD_IIDR),
        rd32(
            GICD + if gic == Gic::V3 {
                GICV3_PIDR2
            } else {
                GICV2_PIDR2
            },
        ),
    ];
    check_why(
        "GICD_TYPER, GICD_IIDR and PIDR2 unchanged by the garbage",
        ids_before == ids_after && ids_before.iter().all(Option::is_some),
        format_args!("before {ids_before:x?}, after {ids_after:x?}"),
    );

    let t1 = timer::ticks();
    let ran = overcommit(gic, 1000);
    let ms = (timer::ticks() - t1) * 1000 / timer::frequency().max(1);
    println!("# 1000 HV_NOPs with 8 active + 1 pending SGIs took {ms} ms");
    check(
        "vCPU keeps running with more active interrupts than list registers",
        ran,
    );
    check(
        "sane GIC state restored without faults",
        restore(gic, nr_irqs),
    );
    let v = verify_restored(gic, nr_irqs);
    let (addr, got, want) = v.err().unwrap_or_default();
    check_why(
        "restored state reads back (disabled, not pending, not active)",
        v.is_ok(),
        format_args!("at {addr:#x}: got {got:#x}, want {want:#x}"),
    );
    let prio_addr = GICD + GICD_IPRIORITYR + 32;
    let prio = wr32(prio_addr, 0x10a0_f880)
        .then(|| rd32(prio_addr))
        .flatten();
    check_eq(
        "GICD_IPRIORITYR of SPIs 32..35 round-trips",
        u64::from(prio.unwrap_or(0)),
        0x10a0_f880,
    );
    let s = sgi_self(gic);
    check_why(
        "an SGI to self is pending and can be cleared",
        s.is_ok(),
        s.err().unwrap_or(""),
    );
    let scratch =
        testdev::write64(testdev::SCRATCH, SEED).then(|| testdev::read64(testdev::SCRATCH));
    check_eq(
        "test device SCRATCH still round-trips",
        scratch.flatten().unwrap_or(0),
        SEED,
    );
}

guest_main!(run);
