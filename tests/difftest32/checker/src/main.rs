//! difftest32-checker: compares QEMU's ATS1C* answers in a difftest32 log with the engine's.
//!
//! `difftest32-checker LOG` reads the log the on-target image printed (see
//! `tests/difftest32/src/main.rs` for the format), regenerates every case from its seed with
//! [`hv::shadow::difftest::generate_ext`], and for every probe and operation computes the
//! engine's architectural outcome ([`hv::shadow::walk::ats1_outcome`]: a PAR value, or the
//! Data Abort an external abort on the walk raises). It compares the architecturally
//! defined bits only:
//!
//! - PAR, fault: F (bit 0), FS (bits\[6:1\]) and LPAE (bit 11);
//! - PAR, success: F, SS (bit 1), LPAE, PA\[31:12\] (PA\[31:24\] and PA\[39:32\] in bits\[23:16\]
//!   for a supersection) and the attribute fields NOS, SH, Inner, Outer (bits 10, 7,
//!   \[6:4\], \[3:2\]) unless the memory type is reserved or IMPLEMENTATION DEFINED. Bit 8 is
//!   IMPLEMENTATION DEFINED and NS (bit 9) is UNKNOWN for a walk from Non-secure state,
//!   which is where QEMU's virt machine without `secure=on` runs the CPU;
//! - Data Abort: DFSR FS\[4:0\], Domain and ExT (bits \[3:0\], 10, \[7:4\], 12) and DFAR = VA.
//!
//! A difference is a *known departure* only when QEMU's answer equals, bit for bit, the
//! answer of [`qemu_model`] — a transcription of QEMU's own short-descriptor walker and PAR
//! formatting — and the difference is one of the kinds documented in
//! docs/SHADOW-DIFFTEST.md (checked against the registers and descriptors of the probe).
//! Anything else is FAILED. The checker ends with `N passed, N failed` and exits non-zero
//! when anything failed.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;

use hv::addr::{GuestPhysAddr, VirtAddr};
use hv::shadow::difftest::{
    generate_ext, parse_abort_line, parse_line, DiffLayout, DiffMemory, OPS, TABLE_AREA,
};
use hv::shadow::walk::{
    ats1_outcome, lookup, sctlr, translate, ttbcr, AtsOutcome, DomainAccess, FaultKind,
    GuestMemory, MemError, MemType, PageSize, Regime,
};

/// Most probes the image reports per case.
const MAX_PROBES: usize = 64;
/// Mismatch details printed at most.
const MAX_DETAILS: usize = 25;

/// What QEMU (or a model of it) answered for one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// PAR after the operation.
    Par(u32),
    /// The operation took a Data Abort.
    Abort { dfsr: u32, dfar: u32 },
}

impl core::fmt::Display for Answer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Answer::Par(p) => write!(f, "PAR {p:08x}"),
            Answer::Abort { dfsr, dfar } => write!(f, "Data Abort DFSR {dfsr:08x} DFAR {dfar:08x}"),
        }
    }
}

/// The memory a case's walks read: the generated tables in zeroed RAM, an unassigned range
/// (external abort), and nothing else. A read anywhere else is recorded: the host cannot
/// know what QEMU read there, so the probe cannot be checked (and the generator promises it
/// never happens).
struct Mem {
    words: HashMap<u32, u32>,
    layout: DiffLayout,
    memory: DiffMemory,
    unmodeled: Cell<Option<u64>>,
}

impl Mem {
    fn read(&self, a: u64) -> Result<u32, MemError> {
        let l = &self.layout;
        let Ok(a32) = u32::try_from(a) else {
            self.unmodeled.set(Some(a));
            return Err(MemError);
        };
        let in_image = a32 >= l.image_base && a32 - l.image_base < l.image_len;
        if a32 >= l.ram_base && a32 - l.ram_base < l.ram_len && !in_image {
            return Ok(self.words.get(&a32).copied().unwrap_or(0));
        }
        if a32 >= self.memory.abort.0 && a32 - self.memory.abort.0 < self.memory.abort.1 {
            return Err(MemError);
        }
        self.unmodeled.set(Some(a));
        Err(MemError)
    }
}

impl GuestMemory for Mem {
    fn read_u32(&self, gpa: GuestPhysAddr) -> Result<u32, MemError> {
        self.read(gpa.raw())
    }
}

/// QEMU 10's answer, transcribed from target/arm/ptw.c `get_phys_addr_v6` and
/// `get_level1_table_address`, and from the short-descriptor branch of `do_ats_write` /
/// `ats_write` (target/arm/tcg/cpregs-at.c): no memory attributes in PAR, supersections
/// report PA\[31:24\] only, NS=1 (Non-secure CPU), and a synchronous external abort on the
/// walk is taken as a Data Abort (DFSR = the short-format FSC with the domain, DFAR = VA).
/// Used only to certify that a difference from the engine is a documented departure.
fn qemu_model(r: &Regime, mem: &Mem, va: u32, op: usize, secure: bool) -> Answer {
    let is_user = op >= 2;
    let write = op & 1 == 1;
    let fail = |fs: u32, _domain: u32| Answer::Par(1 | ((fs & 0xf) << 1) | ((fs >> 4) & 1) << 5);
    let abort = |fs: u32, domain: u32| Answer::Abort {
        dfsr: (fs & 0xf) | (domain << 4) | ((fs >> 4) << 10),
        dfar: va,
    };
    let n = r.ttbcr & 7;
    let mask = if n == 0 { 0 } else { !(u32::MAX >> n) };
    let table = if va & mask != 0 {
        if r.ttbcr & ttbcr::PD1 != 0 {
            return fail(0b00101, 0);
        }
        r.ttbr1 & 0xffff_c000
    } else {
        if r.ttbcr & ttbcr::PD0 != 0 {
            return fail(0b00101, 0);
        }
        r.ttbr0 & !(0x3fffu32 >> n)
    } | ((va >> 18) & 0x3ffc);
    let Ok(desc) = mem.read(table as u64) else {
        return abort(0b01100, 0);
    };
    let ty = desc & 3;
    if ty == 0 {
        return fail(0b00101, 0);
    }
    let domain = if ty == 1 || desc & (1 << 18) == 0 {
        (desc >> 5) & 15
    } else {
        0
    };
    let l2 = ty == 1;
    let dp = (r.dacr >> (2 * domain)) & 3;
    if dp == 0 || dp == 2 {
        return fail(if l2 { 0b01011 } else { 0b01001 }, domain);
    }
    let (pa, lg, ap): (u64, u32, u32);
    let ns = if l2 { desc >> 3 & 1 } else { desc >> 19 & 1 };
    if !l2 {
        if desc & (1 << 18) != 0 {
            pa = (desc & 0xff00_0000) as u64
                | (va & 0x00ff_ffff) as u64
                | (((desc >> 20) & 0xf) as u64) << 32
                | (((desc >> 5) & 0xf) as u64) << 36;
            lg = 24;
        } else {
            pa = ((desc & 0xfff0_0000) | (va & 0x000f_ffff)) as u64;
            lg = 20;
        }
        ap = ((desc >> 10) & 3) | ((desc >> 13) & 4);
    } else {
        let t = (desc & 0xffff_fc00) | ((va >> 10) & 0x3fc);
        let Ok(d2) = mem.read(t as u64) else {
            return abort(0b01110, domain);
        };
        ap = ((d2 >> 4) & 3) | ((d2 >> 7) & 4);
        match d2 & 3 {
            0 => return fail(0b00111, domain),
            1 => {
                pa = ((d2 & 0xffff_0000) | (va & 0xffff)) as u64;
                lg = 16;
            }
            _ => {
                pa = ((d2 & 0xffff_f000) | (va & 0xfff)) as u64;
                lg = 12;
            }
        }
    }
    if dp != 3 {
        let (rd, wr) = if r.sctlr & sctlr::AFE != 0 {
            if ap & 1 == 0 {
                return fail(if l2 { 0b00110 } else { 0b00011 }, domain);
            }
            match ap >> 1 {
                0 => (!is_user, !is_user),
                1 => (true, true),
                2 => (!is_user, false),
                _ => (true, false),
            }
        } else {
            match ap {
                1 => (!is_user, !is_user),
                2 => (true, !is_user),
                3 => (true, true),
                5 => (!is_user, false),
                6 | 7 => (true, false),
                _ => (false, false),
            }
        };
        if !(if write { wr } else { rd }) {
            return fail(if l2 { 0b01111 } else { 0b01101 }, domain);
        }
    }
    let par = if lg == 24 {
        (pa as u32 & 0xff00_0000) | (1 << 1)
    } else {
        pa as u32 & 0xffff_f000
    };
    // PAR.NS = !attrs.secure: the descriptor's NS bit in Secure state, 1 in Non-secure.
    Answer::Par(par | if !secure || ns != 0 { 1 << 9 } else { 0 })
}

/// Bits of a PAR the comparison looks at, given the engine's answer.
fn par_mask(engine_par: u32, attrs_defined: bool, secure: bool) -> u32 {
    if engine_par & 1 != 0 {
        0x7f | (1 << 11)
    } else {
        let attrs = if attrs_defined { 0x4fc } else { 0 };
        let ns = if secure { 1 << 9 } else { 0 };
        0xffff_f000 | (1 << 11) | 2 | 1 | attrs | ns
    }
}

/// DFSR bits compared: FS\[3:0\], Domain, FS\[4\], ExT. (WnR and CM are left out: their value
/// for an address translation operation is not what this test is about.)
const DFSR_MASK: u32 = 0xff | (1 << 10) | (1 << 12);

/// How an engine answer and a QEMU answer differ (empty: they agree).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Diff {
    /// Different kinds of outcome, or different fault status.
    outcome: bool,
    /// Different PA (bits\[31:12\], or \[31:24\] for a supersection).
    pa: bool,
    /// Different PA\[39:32\] of a supersection (bits\[23:16\]).
    ext_pa: bool,
    /// Different memory attribute fields.
    attrs: bool,
}

impl Diff {
    fn any(&self) -> bool {
        self.outcome || self.pa || self.ext_pa || self.attrs
    }
}

fn compare(engine: Answer, attrs_defined: bool, secure: bool, qemu: Answer) -> Diff {
    let mut d = Diff::default();
    match (engine, qemu) {
        (Answer::Par(e), Answer::Par(q)) => {
            let m = par_mask(e, attrs_defined, secure);
            let x = (e ^ q) & m;
            if e & 1 != 0 || q & 1 != 0 {
                d.outcome = x != 0 || (e ^ q) & 1 != 0;
            } else {
                let ss = e & 2 != 0;
                d.outcome = x & ((1 << 11) | (1 << 9) | 3) != 0;
                d.pa = x & if ss { 0xff00_0000 } else { 0xffff_f000 } != 0;
                d.ext_pa = ss && x & 0x00ff_0000 != 0;
                d.attrs = x & 0x4fc != 0;
            }
        }
        (Answer::Abort { dfsr: a, dfar: b }, Answer::Abort { dfsr: c, dfar: e }) => {
            d.outcome = (a ^ c) & DFSR_MASK != 0 || b != e;
        }
        _ => d.outcome = true,
    }
    d
}

/// The documented kinds of departure (docs/SHADOW-DIFFTEST.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Departure {
    /// QEMU leaves NOS/SH/Inner/Outer zero in a short-descriptor PAR.
    NoAttributes,
    /// QEMU drops PA\[39:32\] of a supersection from PAR\[23:16\].
    SupersectionHighPa,
    /// QEMU checks the domain before the access flag (no-access/reserved domain, AF=0).
    DomainBeforeAccessFlag,
    /// QEMU never checks the access flag in a manager domain.
    ManagerSkipsAccessFlag,
    /// QEMU checks the domain of a page table before reading the second-level entry.
    DomainBeforeL2Walk,
}

impl Departure {
    fn describe(self) -> &'static str {
        match self {
            Departure::NoAttributes => {
                "QEMU reports no memory attributes (NOS, SH, Inner, Outer) in a short-descriptor PAR"
            }
            Departure::SupersectionHighPa => {
                "QEMU drops a supersection's PA[39:32] from PAR[23:16]"
            }
            Departure::DomainBeforeAccessFlag => {
                "QEMU checks the domain before the access flag (domain fault where the ARM ARM gives an access flag fault)"
            }
            Departure::ManagerSkipsAccessFlag => {
                "QEMU skips the access flag check in a manager domain (success where the ARM ARM gives an access flag fault)"
            }
            Departure::DomainBeforeL2Walk => {
                "QEMU checks a page table's domain before its second-level entry (domain fault where the ARM ARM gives the level-2 translation fault or external abort)"
            }
        }
    }
}

/// What one case's probes share: the regime, the memory and the security state.
struct Ctx<'a> {
    r: &'a Regime,
    mem: &'a Mem,
    secure: bool,
}

/// Explains a difference as documented departures, or `None`.
fn explain(
    ctx: &Ctx<'_>,
    va: u32,
    op: usize,
    engine: Answer,
    attrs_defined: bool,
    qemu: Answer,
) -> Option<Vec<Departure>> {
    let (r, mem, secure) = (ctx.r, ctx.mem, ctx.secure);
    let model = qemu_model(r, mem, va, op, secure);
    let same_model = match (model, qemu) {
        (Answer::Par(m), Answer::Par(q)) => m == q,
        (Answer::Abort { dfsr: a, dfar: b }, Answer::Abort { dfsr: c, dfar: d }) => {
            (a ^ c) & DFSR_MASK == 0 && b == d
        }
        _ => false,
    };
    if !same_model {
        return None;
    }
    let d = compare(engine, attrs_defined, secure, qemu);
    let mut out = Vec::new();
    if d.outcome || d.pa {
        let v = VirtAddr::new(va as u64);
        let t = translate(r, mem, v, OPS[op].access());
        let fault = t.err()?;
        let domain_blocks = |dom: u8| {
            matches!(
                r.domain_access(dom),
                DomainAccess::NoAccess | DomainAccess::Reserved
            )
        };
        let qemu_domain_fault = |level: u8| {
            let fs = if level == 2 { 0b01011u32 } else { 0b01001 };
            qemu == Answer::Par(1 | ((fs & 0xf) << 1) | ((fs >> 4) & 1) << 5)
        };
        match fault.kind {
            FaultKind::AccessFlag => {
                let leaf = lookup(r, mem, v).ok()?;
                if domain_blocks(leaf.domain) && qemu_domain_fault(leaf.level) {
                    out.push(Departure::DomainBeforeAccessFlag);
                } else if r.domain_access(leaf.domain) == DomainAccess::Manager
                    && matches!(qemu, Answer::Par(q) if q & 1 == 0)
                {
                    // The PA must still agree; only the attributes may differ.
                    let e2 = hv::shadow::walk::par(&Ok(hv::shadow::walk::check(
                        &Regime {
                            sctlr: r.sctlr & !sctlr::AFE,
                            ..*r
                        },
                        &leaf,
                        OPS[op].access(),
                    )
                    .ok()?));
                    let d2 = compare(Answer::Par(e2), attrs_defined, secure, qemu);
                    if d2.outcome || d2.pa {
                        return None;
                    }
                    out.push(Departure::ManagerSkipsAccessFlag);
                    if d2.attrs {
                        out.push(Departure::NoAttributes);
                    }
                    if d2.ext_pa {
                        out.push(Departure::SupersectionHighPa);
                    }
                    return Some(out);
                } else {
                    return None;
                }
            }
            FaultKind::Translation | FaultKind::ExternalAbortOnWalk
                if fault.level == 2
                    && fault.domain.is_some_and(domain_blocks)
                    && qemu_domain_fault(2) =>
            {
                out.push(Departure::DomainBeforeL2Walk)
            }
            _ => return None,
        }
        return Some(out);
    }
    if d.attrs {
        match qemu {
            Answer::Par(q) if q & 0x4fc == 0 => out.push(Departure::NoAttributes),
            _ => return None,
        }
    }
    if d.ext_pa {
        match qemu {
            Answer::Par(q) if q & 0x00ff_0000 == 0 => out.push(Departure::SupersectionHighPa),
            _ => return None,
        }
    }
    Some(out)
}

/// One case as the log reports it.
struct LoggedCase {
    seed: u32,
    probes: usize,
    regs: Option<[u32; 8]>,
    answers: Vec<(u32, usize, Answer)>,
}

fn hex(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 16).ok()
}

struct Report {
    passed: u32,
    failed: u32,
    /// Names the log the lines are about.
    prefix: String,
}

impl Report {
    fn check(&mut self, ok: bool, what: &str) {
        if ok {
            self.passed += 1;
            println!("ok - {}{what}", self.prefix);
        } else {
            self.failed += 1;
            println!("FAILED - {}{what}", self.prefix);
        }
    }
}

fn class_of(r: &Regime, mem: &Mem, va: u32, op: usize) -> String {
    let v = VirtAddr::new(va as u64);
    match translate(r, mem, v, OPS[op].access()) {
        Ok(t) => match t.size {
            PageSize::Section => "section".into(),
            PageSize::Supersection => "supersection".into(),
            PageSize::Large => "large page".into(),
            PageSize::Small => "small page".into(),
        },
        Err(f) => {
            let pd = f.kind == FaultKind::Translation
                && f.level == 1
                && r.ttbcr
                    & if r.ttbr_for(va) == 1 {
                        ttbcr::PD1
                    } else {
                        ttbcr::PD0
                    }
                    != 0;
            let kind = match f.kind {
                FaultKind::Translation if pd => "translation fault (TTBCR.PD0/PD1)",
                FaultKind::Translation => "translation fault",
                FaultKind::AccessFlag => "access flag fault",
                FaultKind::Domain => "domain fault",
                FaultKind::Permission => "permission fault",
                FaultKind::ExternalAbortOnWalk => "external abort on the walk (Data Abort)",
            };
            format!("{kind}, level {}", f.level)
        }
    }
}

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() || paths.iter().any(|p| p.starts_with('-')) {
        eprintln!("usage: difftest32-checker LOG...");
        return ExitCode::from(2);
    }
    let mut rep = Report {
        passed: 0,
        failed: 0,
        prefix: String::new(),
    };
    for path in &paths {
        match std::fs::read_to_string(path) {
            Ok(text) => check_log(path, &text, &mut rep),
            Err(e) => {
                rep.prefix.clear();
                rep.check(false, &format!("{path}: {e}"));
            }
        }
    }
    println!("{} passed, {} failed", rep.passed, rep.failed);
    if rep.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Checks one log, adding its results to `rep`.
fn check_log(path: &str, text: &str, rep: &mut Report) {
    rep.prefix = format!("[{}] ", path.rsplit('/').next().unwrap_or(path));
    // ---- parse
    let mut id: Option<(u32, bool)> = None;
    let mut layout = None;
    let mut cases: Vec<LoggedCase> = Vec::new();
    let mut done = None;
    let mut stray = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_ascii_whitespace().collect();
        match w.first().copied() {
            Some("LAYOUT") if w.len() == 8 => {
                let v: Option<Vec<u32>> = w[1..].iter().map(|s| hex(s)).collect();
                layout = v.map(|v| {
                    (
                        DiffLayout {
                            image_base: v[0],
                            image_len: v[1],
                            table_base: v[2],
                            ram_base: v[3],
                            ram_len: v[4],
                        },
                        DiffMemory {
                            abort: (v[5], v[6]),
                        },
                    )
                });
            }
            Some("CASE") if w.len() == 3 => match (w[1].parse(), w[2].parse()) {
                (Ok(seed), Ok(probes)) => cases.push(LoggedCase {
                    seed,
                    probes,
                    regs: None,
                    answers: Vec::new(),
                }),
                _ => stray.push(line.to_string()),
            },
            Some("REGS") if w.len() == 9 => {
                let v: Option<Vec<u32>> = w[1..].iter().map(|s| hex(s)).collect();
                match (v, cases.last_mut()) {
                    (Some(v), Some(c)) => c.regs = v.try_into().ok(),
                    _ => stray.push(line.to_string()),
                }
            }
            Some("PAR") => match (parse_line(line), cases.last_mut()) {
                (Some((va, op, p)), Some(c)) => c.answers.push((va, op, Answer::Par(p))),
                _ => stray.push(line.to_string()),
            },
            Some("ABORT") => match (parse_abort_line(line), cases.last_mut()) {
                (Some((va, op, dfsr, dfar)), Some(c)) => {
                    c.answers.push((va, op, Answer::Abort { dfsr, dfar }))
                }
                _ => stray.push(line.to_string()),
            },
            Some("ID") if w.len() == 3 => {
                id = hex(w[1]).map(|v| (v, w[2] == "secure"));
            }
            Some("DONE") if w.len() == 3 => {
                done = w[1].parse::<usize>().ok().zip(w[2].parse::<usize>().ok());
            }
            Some("EXCEPTION") | Some("PANIC") => stray.push(line.to_string()),
            _ => {}
        }
    }
    let (Some((layout, memory)), Some((id_pfr1, secure))) = (layout, id) else {
        rep.check(false, "no LAYOUT or ID line (did the image run?)");
        return;
    };
    // TTBCR.PD0/PD1 exist only with the Security Extensions (ID_PFR1.Security != 0).
    let has_pd = id_pfr1 & 0xf0 != 0;
    let total_probes: usize = cases.iter().map(|c| c.probes).sum();
    println!(
        "# {path}: {} cases, {} probes, {} ATS operations; ID_PFR1 {id_pfr1:08x} (Security Extensions: {has_pd}), {} state",
        cases.len(),
        total_probes,
        total_probes * 4,
        if secure { "Secure" } else { "Non-secure" }
    );
    for s in stray.iter().take(MAX_DETAILS) {
        println!("#   unexpected line: {s}");
    }
    rep.check(
        stray.is_empty() && !cases.is_empty() && done == Some((cases.len(), total_probes)),
        &format!(
            "log complete: {} cases, DONE line {:?}, {} unexpected lines",
            cases.len(),
            done,
            stray.len()
        ),
    );

    // ---- compare
    let mut regs_bad = Vec::new();
    let mut shape_bad = Vec::new();
    let mut unmodeled = Vec::new();
    // class -> (results, agreeing, departures, mismatches)
    let mut classes: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    let mut departures: BTreeMap<Departure, u64> = BTreeMap::new();
    let mut details = Vec::new();
    let mut model_bad = 0u64;
    let mut model_details = Vec::new();
    let (mut reserved_ap, mut reserved_dacr, mut afe_cases, mut tre_cases, mut pd_cases) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut splits = [0u64; 8];
    let mut pd_dropped = 0u64;
    for c in &cases {
        let case = generate_ext(c.seed, &layout, &memory);
        let mut r = case.regime;
        afe_cases += (r.sctlr & sctlr::AFE != 0) as u64;
        tre_cases += (r.sctlr & sctlr::TRE != 0) as u64;
        pd_cases += (r.ttbcr & (ttbcr::PD0 | ttbcr::PD1) != 0) as u64;
        splits[r.n() as usize] += 1;
        let want = [
            r.ttbr0,
            r.ttbr1,
            r.ttbcr,
            r.dacr,
            r.sctlr,
            r.contextidr,
            r.prrr,
            r.nmrr,
        ];
        let mut without_pd = want;
        without_pd[2] &= !(ttbcr::PD0 | ttbcr::PD1);
        let mut regs_ok = false;
        if let Some(mut g) = c.regs {
            g[4] &= sctlr::M | sctlr::AFE | sctlr::TRE;
            if g == want {
                regs_ok = true;
            } else if !has_pd && g == without_pd {
                // Not implemented without the Security Extensions: the CPU's regime has
                // PD0=PD1=0, and that is the regime the engine must be given.
                regs_ok = true;
                pd_dropped += 1;
                r.ttbcr = g[2];
            }
        }
        if !regs_ok {
            regs_bad.push(format!(
                "seed {}: read back {:x?}, programmed {want:x?}",
                c.seed, c.regs
            ));
        }
        let n = case.probes.len().min(MAX_PROBES);
        let expected_order: Vec<(u32, usize)> = case.probes[..n]
            .iter()
            .flat_map(|&va| (0..4).map(move |op| (va, op)))
            .collect();
        let got_order: Vec<(u32, usize)> = c.answers.iter().map(|&(va, op, _)| (va, op)).collect();
        if c.probes != n || got_order != expected_order {
            shape_bad.push(format!(
                "seed {}: {} answers for {} probes (expected {n} probes)",
                c.seed,
                c.answers.len(),
                c.probes
            ));
            continue;
        }
        let mem = Mem {
            words: case.writes.iter().copied().collect(),
            layout,
            memory,
            unmodeled: Cell::new(None),
        };
        debug_assert!(case
            .writes
            .iter()
            .all(|&(a, _)| a >= layout.table_base && a < layout.table_base + TABLE_AREA));
        for &(va, op, qemu) in &c.answers {
            let v = VirtAddr::new(va as u64);
            let engine = match ats1_outcome(&r, &mem, v, OPS[op]) {
                AtsOutcome::Par(p) => Answer::Par(p),
                AtsOutcome::DataAbort(f) => Answer::Abort {
                    dfsr: f.dfsr(false),
                    dfar: va,
                },
            };
            let t = translate(&r, &mem, v, OPS[op].access());
            let attrs_defined = !matches!(
                t.map(|t| t.attrs.mem_type),
                Ok(MemType::Reserved | MemType::ImplementationDefined)
            );
            if let Ok(leaf) = lookup(&r, &mem, v) {
                if leaf.ap & 7 == 0b100
                    && r.sctlr & sctlr::AFE == 0
                    && r.domain_access(leaf.domain) == DomainAccess::Client
                {
                    reserved_ap += 1;
                }
                if r.domain_access(leaf.domain) == DomainAccess::Reserved {
                    reserved_dacr += 1;
                }
            }
            let model = qemu_model(&r, &mem, va, op, secure);
            if let Some(a) = mem.unmodeled.take() {
                unmodeled.push(format!("seed {} va {va:08x}: walk read {a:#x}", c.seed));
                continue;
            }
            if model != qemu {
                model_bad += 1;
                if model_details.len() < MAX_DETAILS {
                    model_details.push(format!(
                        "seed {} va {va:08x} op {op}: QEMU {qemu}, model {model}",
                        c.seed
                    ));
                }
            }
            let class = class_of(&r, &mem, va, op);
            let e = classes.entry(class.clone()).or_default();
            e.0 += 1;
            let d = compare(engine, attrs_defined, secure, qemu);
            if !d.any() {
                e.1 += 1;
                continue;
            }
            let ctx = Ctx {
                r: &r,
                mem: &mem,
                secure,
            };
            match explain(&ctx, va, op, engine, attrs_defined, qemu) {
                Some(kinds) if !kinds.is_empty() => {
                    e.2 += 1;
                    for k in kinds {
                        *departures.entry(k).or_default() += 1;
                    }
                }
                _ => {
                    e.3 += 1;
                    if details.len() < MAX_DETAILS {
                        details.push(format!(
                            "seed {} va {va:08x} op {op} ({class}): engine {engine}, QEMU {qemu}, QEMU model {model}; regime {r:x?}",
                            c.seed
                        ));
                    }
                }
            }
        }
    }

    for s in regs_bad.iter().take(MAX_DETAILS) {
        println!("#   {s}");
    }
    rep.check(
        regs_bad.is_empty(),
        &format!(
            "registers read back as programmed in {} of {} cases (TTBCR.N 0..7: {splits:?}, with PD0/PD1: {pd_cases}, of which {pd_dropped} read back without them as ID_PFR1 says, AFE: {afe_cases}, TRE: {tre_cases})",
            cases.len() - regs_bad.len(),
            cases.len()
        ),
    );
    for s in shape_bad.iter().take(MAX_DETAILS) {
        println!("#   {s}");
    }
    rep.check(
        shape_bad.is_empty(),
        &format!(
            "every probe of every case answered ({} cases with a wrong answer list)",
            shape_bad.len()
        ),
    );
    for s in unmodeled.iter().take(MAX_DETAILS) {
        println!("#   {s}");
    }
    rep.check(
        unmodeled.is_empty(),
        &format!(
            "every walk read modeled memory ({} probes read elsewhere)",
            unmodeled.len()
        ),
    );
    for (class, (n, agree, dep, bad)) in &classes {
        rep.check(
            *bad == 0,
            &format!(
                "{class}: {n} results, {agree} agree, {dep} known departures, {bad} mismatches"
            ),
        );
    }
    for d in [
        Departure::NoAttributes,
        Departure::SupersectionHighPa,
        Departure::DomainBeforeAccessFlag,
        Departure::ManagerSkipsAccessFlag,
        Departure::DomainBeforeL2Walk,
    ] {
        let n = departures.get(&d).copied().unwrap_or(0);
        // A documented departure that no longer shows up means QEMU (or the generator)
        // changed and docs/SHADOW-DIFFTEST.md is stale.
        rep.check(
            n > 0,
            &format!("known departure: {}: {n} results", d.describe()),
        );
    }
    for s in &model_details {
        println!("#   {s}");
    }
    rep.check(
        model_bad == 0,
        &format!("the QEMU model (used to certify departures) reproduces QEMU's answers ({model_bad} differ)"),
    );
    println!("# exercised: AP=0b100 (reserved) in a client domain without AFE: {reserved_ap} results; DACR field 0b10 (reserved): {reserved_dacr} results");
    for s in &details {
        println!("#   {s}");
    }
}
