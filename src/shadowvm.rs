//! Shadow-paging mode of a VM: the guest's virtual translation registers, their trap emulation, and the write-protect bookkeeping around the shadow engine.
//!
//! # Design
//!
//! A shadow-mode VM is an AArch32 EL1 guest with short-descriptor tables. Its real EL1
//! translation registers point at shadow tables built by [`crate::shadow::ShadowEngine`];
//! stage 2 stays on underneath as the isolation backstop and keeps translating guest
//! physical addresses, so the shadow maps guest VA → guest PA (the engine's host map,
//! [`IdentityMap`], is the identity over the guest physical space) and the hardware walks
//! shadow tables that stage 2 maps read-only at [`POOL_IPA`].
//!
//! - **Registers.** HCR_EL2.TVM/TRVM trap the guest's SCTLR, TTBR0/1, TTBCR, DACR,
//!   CONTEXTIDR, PRRR/NMRR accesses; [`ShadowVm::write_reg`] updates the virtual copy and
//!   switches the engine's regime, [`ShadowVm::read_reg`] returns the virtual copy.
//! - **TLB maintenance.** HCR_EL2.TTLB traps it; [`ShadowVm::tlbi`] feeds it to the engine
//!   and says which host TLB operation mirrors it.
//! - **Shadow misses.** There are none the guest can see: roots are built eagerly and every
//!   guest descriptor write is synced before the guest runs again, so a stage-1 fault on
//!   the shadow is exactly the fault the guest's own tables give (same level, domain and
//!   status, because shadow entries keep the guest's structure and domains). That is why
//!   write protection cannot use the shadow's AP bits (the guest would take the permission
//!   fault itself): guest table pages are made read-only in **stage 2**, the write traps
//!   to EL2, is emulated, and synced ([`ShadowVm::sync_words`]).
//! - **Memory.** The engine's pool is a fixed per-VM allocation; the root cache evicts the
//!   least recently used root when it is full, so a guest cannot exhaust it.

use alloc::vec::Vec;

use crate::aarch32::Cp15Reg;
use crate::addr::{GuestPhysAddr, HostPhysAddr};
use crate::shadow::{
    Backing, GuestMap, GuestMemory, HostTlbOp, Pool, Regime, ShadowEngine, ShadowError, ShadowRegs,
    TlbOp,
};

/// Guest physical address where stage 2 maps the shadow pool (read-only) for the
/// hardware walker. It lies outside anything the guest device tree describes; a guest
/// access there is treated as a hole (a stage-1 translation fault).
pub const POOL_IPA: u64 = 0xE000_0000;

/// The walk-trap window right after the pool: shadow entries for guest tables that are
/// not RAM point their walks here, stage 2 leaves it unmapped, and the resulting fault
/// on the stage-1 walk is reported to the guest as its own walk abort.
pub const WALK_TRAP_BYTES: u64 = 0x1000;

/// SCTLR bits the shadow decides (the rest are the guest's).
const SHADOW_SCTLR_BITS: u32 = (1 << 0) | (1 << 28) | (1 << 29) | (1 << 19) | (1 << 20);

/// TTBR0 walk attributes of the shadow: inner and outer write-back write-allocate,
/// inner shareable (the hypervisor writes the shadow through cacheable memory).
const SHADOW_TTBR_ATTRS: u32 = 0x6a;

/// SCTLR of an AArch32 vCPU out of reset (MMU, caches and alignment checks off).
pub const SCTLR_RESET: u32 = 0x00c5_0838;

/// The shadow engine's view of guest physical space: the identity everywhere except
/// the pool window, which is a hole.
#[derive(Clone, Copy, Debug)]
pub struct IdentityMap {
    hole_start: u64,
    hole_end: u64,
}

impl IdentityMap {
    /// Identity map with `[hole_start, hole_end)` (4 KiB aligned) unbacked.
    pub fn new(hole_start: u64, hole_end: u64) -> Self {
        Self {
            hole_start,
            hole_end,
        }
    }
}

impl GuestMap for IdentityMap {
    fn backing(&self, gpa: GuestPhysAddr) -> Backing {
        let g = gpa.raw();
        if g >= self.hole_start && g < self.hole_end {
            Backing::Hole {
                len: self.hole_end - g,
            }
        } else if g < self.hole_start {
            Backing::Ram {
                hpa: HostPhysAddr::new(g),
                len: self.hole_start - g,
            }
        } else {
            Backing::Ram {
                hpa: HostPhysAddr::new(g),
                len: (1u64 << 40).saturating_sub(g).max(0x1000),
            }
        }
    }
}

/// The guest's view of its translation registers (what it last wrote).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtRegs {
    /// SCTLR.
    pub sctlr: u32,
    /// TTBR0 (64-bit form; the short-descriptor walk uses bits \[31:0\]).
    pub ttbr0: u64,
    /// TTBR1.
    pub ttbr1: u64,
    /// TTBCR.
    pub ttbcr: u32,
    /// DACR.
    pub dacr: u32,
    /// CONTEXTIDR.
    pub contextidr: u32,
    /// PRRR.
    pub prrr: u32,
    /// NMRR.
    pub nmrr: u32,
    /// AMAIR0 (kept, no effect).
    pub amair0: u32,
    /// AMAIR1 (kept, no effect).
    pub amair1: u32,
}

impl Default for VirtRegs {
    fn default() -> Self {
        Self {
            sctlr: SCTLR_RESET,
            ttbr0: 0,
            ttbr1: 0,
            ttbcr: 0,
            dacr: 0,
            contextidr: 0,
            prrr: 0,
            nmrr: 0,
            amair0: 0,
            amair1: 0,
        }
    }
}

impl VirtRegs {
    /// The regime the engine shadows.
    pub fn regime(&self) -> Regime {
        Regime {
            ttbr0: self.ttbr0 as u32,
            ttbr1: self.ttbr1 as u32,
            ttbcr: self.ttbcr,
            dacr: self.dacr,
            sctlr: self.sctlr,
            contextidr: self.contextidr,
            prrr: self.prrr,
            nmrr: self.nmrr,
        }
    }
}

/// The real EL1 register values while the guest runs on a shadow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwRegs {
    /// SCTLR: the guest's, with M, TRE, AFE, WXN, UWXN from the shadow.
    pub sctlr: u32,
    /// TTBR0: the shadow's first-level table (its IPA) and walk attributes.
    pub ttbr0: u32,
    /// TTBCR: 0.
    pub ttbcr: u32,
    /// DACR.
    pub dacr: u32,
    /// CONTEXTIDR.
    pub contextidr: u32,
    /// PRRR.
    pub prrr: u32,
    /// NMRR.
    pub nmrr: u32,
}

impl HwRegs {
    fn new(guest_sctlr: u32, s: &ShadowRegs) -> Self {
        Self {
            sctlr: (guest_sctlr & !SHADOW_SCTLR_BITS) | (s.sctlr & SHADOW_SCTLR_BITS),
            ttbr0: (s.ttbr0 & !0x7f) | SHADOW_TTBR_ATTRS,
            ttbcr: s.ttbcr,
            dacr: s.dacr,
            contextidr: s.contextidr,
            prrr: s.prrr,
            nmrr: s.nmrr,
        }
    }
}

/// What the hypervisor must do on the hardware after a shadow operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effects {
    /// New real EL1 translation registers, if they changed.
    pub program: Option<HwRegs>,
    /// TLB maintenance for this VM's EL1&0 regime.
    pub flush: HostTlbOp,
    /// Guest pages whose stage-2 write protection must change: (page, read-only).
    pub wp: Vec<(GuestPhysAddr, bool)>,
}

/// Counters of the shadow mode (the engine keeps its own in [`ShadowEngine::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShadowCounters {
    /// Trapped writes of translation registers.
    pub reg_writes: u64,
    /// Trapped reads of translation registers.
    pub reg_reads: u64,
    /// Trapped TLB maintenance operations.
    pub tlbi: u64,
    /// Emulated writes to write-protected guest tables whose abort had a syndrome (ISV=1).
    pub wp_emulated: u64,
    /// Emulated writes to write-protected guest tables whose abort had no syndrome
    /// (writeback forms, STRD, STM, store-exclusive), decoded from the A32 instruction.
    pub wp_decoded: u64,
    /// Writes to write-protected guest tables without a syndrome, single-stepped.
    pub wp_stepped: u64,
    /// Peak shadow bytes in use.
    pub peak_shadow_bytes: u64,
    /// Guest translation-table bytes shadowed when the shadow peaked.
    pub guest_table_bytes_at_peak: u64,
    /// Peak guest translation-table bytes shadowed.
    pub peak_guest_table_bytes: u64,
}

/// Why a shadow-mode VM cannot continue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShadowVmError {
    /// The engine failed (long-descriptor guest, pool exhausted).
    Engine(ShadowError),
    /// The guest set SCTLR.EE: big-endian translation tables are not shadowed.
    BigEndian,
}

impl core::fmt::Display for ShadowVmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ShadowVmError::Engine(ShadowError::LongDescriptorUnsupported) => write!(
                f,
                "the guest enabled long descriptors (TTBCR.EAE=1, an LPAE kernel); shadow mode shadows short-descriptor tables only: use mode=stage2 or a non-LPAE kernel"
            ),
            ShadowVmError::Engine(e) => write!(f, "shadow engine: {e}"),
            ShadowVmError::BigEndian => write!(
                f,
                "the guest set SCTLR.EE (big-endian translation tables); shadow mode reads tables little-endian: use mode=stage2"
            ),
        }
    }
}

/// Per-VM state of shadow mode (one vCPU).
pub struct ShadowVm {
    engine: ShadowEngine,
    map: IdentityMap,
    /// The guest's translation registers.
    pub regs: VirtRegs,
    /// Counters.
    pub counters: ShadowCounters,
    active: bool,
}

impl ShadowVm {
    /// Shadow state over `pool` (whose base is its IPA, [`POOL_IPA`]), caching at most
    /// `max_roots` shadow roots. Nothing is shadowed until [`ShadowVm::start`].
    pub fn new(pool: Pool, max_roots: usize) -> Self {
        let blocks = pool.blocks() as u64;
        let base = pool.base().raw();
        let end = base + blocks * crate::shadow::pool::BLOCK_BYTES;
        let engine = ShadowEngine::with_options(
            pool,
            max_roots,
            crate::shadow::ShadowOptions {
                external_wp: true,
                walk_trap: Some(end as u32),
                evict_written_inactive: true,
            },
        );
        Self {
            engine,
            map: IdentityMap::new(base, end + WALK_TRAP_BYTES),
            regs: VirtRegs::default(),
            counters: ShadowCounters::default(),
            active: false,
        }
    }

    /// The engine (for its statistics and memory figures).
    pub fn engine(&self) -> &ShadowEngine {
        &self.engine
    }

    /// The engine's host map (the identity with the pool window as a hole).
    pub fn map(&self) -> &IdentityMap {
        &self.map
    }

    /// (Re)starts shadowing from the reset register state (vCPU boot or VM reset): drops
    /// every shadow and returns the effects, including stage-2 unprotection of every page
    /// that was protected.
    pub fn start<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Result<Effects, ShadowVmError> {
        self.engine.reset();
        self.regs = VirtRegs::default();
        self.active = true;
        let mut e = self.apply(mem)?;
        e.flush = HostTlbOp::All;
        Ok(e)
    }

    /// True once [`ShadowVm::start`] ran.
    pub fn is_active(&self) -> bool {
        self.active
    }

    fn take_wp(&mut self) -> Vec<(GuestPhysAddr, bool)> {
        self.engine.take_wp_changes().into_iter().collect()
    }

    fn note_memory(&mut self) {
        let m = self.engine.memory_stats();
        let c = &mut self.counters;
        if m.shadow_bytes > c.peak_shadow_bytes {
            c.peak_shadow_bytes = m.shadow_bytes;
            c.guest_table_bytes_at_peak = m.guest_table_bytes;
        }
        c.peak_guest_table_bytes = c.peak_guest_table_bytes.max(m.guest_table_bytes);
    }

    /// One line of figures for the power-off log: trapped operations, engine work and
    /// memory (shadow bytes against the guest table bytes they shadow).
    pub fn summary(&self) -> alloc::string::String {
        let c = &self.counters;
        let e = self.engine.stats();
        let m = self.engine.memory_stats();
        alloc::format!(
            "reg_writes={} reg_reads={} tlbi={} wp_emulated={} wp_decoded={} wp_stepped={} syncs={} fills={} l2_builds={} rescans={} cache_hits={} cache_misses={} evictions={} write_evictions={} shadow_bytes={} guest_table_bytes={} peak_shadow_bytes={} guest_table_bytes_at_peak={} peak_guest_table_bytes={} cached_roots={}",
            c.reg_writes,
            c.reg_reads,
            c.tlbi,
            c.wp_emulated,
            c.wp_decoded,
            c.wp_stepped,
            e.syncs,
            e.fills,
            e.l2_builds,
            e.rescans,
            e.cache_hits,
            e.cache_misses,
            e.evictions,
            e.write_evictions,
            m.shadow_bytes,
            m.guest_table_bytes,
            c.peak_shadow_bytes,
            c.guest_table_bytes_at_peak,
            c.peak_guest_table_bytes,
            self.engine.cached_roots()
        )
    }

    fn apply<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Result<Effects, ShadowVmError> {
        let regime = self.regs.regime();
        let res = self.engine.set_regime(regime, mem, &self.map);
        let wp = self.take_wp();
        self.note_memory();
        let ch = res.map_err(ShadowVmError::Engine)?;
        Ok(Effects {
            program: Some(HwRegs::new(self.regs.sctlr, &ch.regs)),
            flush: ch.flush,
            wp,
        })
    }

    /// Emulates a guest write of `value` to a translation register (MCR, or MCRR for the
    /// 64-bit TTBRs). Registers the shadow does not own (fault status and address
    /// registers, ADFSR/AIFSR) return `None`: the caller writes the real register.
    pub fn write_reg<M: GuestMemory + ?Sized>(
        &mut self,
        reg: Cp15Reg,
        value: u64,
        mem: &M,
    ) -> Option<Result<Effects, ShadowVmError>> {
        let v32 = value as u32;
        let r = &mut self.regs;
        match reg {
            Cp15Reg::Sctlr if v32 & (1 << 25) != 0 => {
                return Some(Err(ShadowVmError::BigEndian));
            }
            Cp15Reg::Sctlr => r.sctlr = v32,
            Cp15Reg::Ttbr0 => r.ttbr0 = value,
            Cp15Reg::Ttbr1 => r.ttbr1 = value,
            Cp15Reg::Ttbcr => r.ttbcr = v32,
            Cp15Reg::Dacr => r.dacr = v32,
            Cp15Reg::Contextidr => r.contextidr = v32,
            Cp15Reg::Prrr => r.prrr = v32,
            Cp15Reg::Nmrr => r.nmrr = v32,
            Cp15Reg::Amair0 => {
                r.amair0 = v32;
                return Some(Ok(self.no_effects()));
            }
            Cp15Reg::Amair1 => {
                r.amair1 = v32;
                return Some(Ok(self.no_effects()));
            }
            _ => return None,
        }
        self.counters.reg_writes += 1;
        Some(self.apply(mem))
    }

    fn no_effects(&mut self) -> Effects {
        self.counters.reg_writes += 1;
        Effects {
            program: None,
            flush: HostTlbOp::None,
            wp: Vec::new(),
        }
    }

    /// The guest's value of a translation register, or `None` for registers the caller
    /// reads from the hardware (fault status and address registers).
    pub fn read_reg(&mut self, reg: Cp15Reg) -> Option<u64> {
        let r = &self.regs;
        let v = match reg {
            Cp15Reg::Sctlr => r.sctlr as u64,
            Cp15Reg::Ttbr0 => r.ttbr0,
            Cp15Reg::Ttbr1 => r.ttbr1,
            Cp15Reg::Ttbcr => r.ttbcr as u64,
            Cp15Reg::Dacr => r.dacr as u64,
            Cp15Reg::Contextidr => r.contextidr as u64,
            Cp15Reg::Prrr => r.prrr as u64,
            Cp15Reg::Nmrr => r.nmrr as u64,
            Cp15Reg::Amair0 => r.amair0 as u64,
            Cp15Reg::Amair1 => r.amair1 as u64,
            _ => return None,
        };
        self.counters.reg_reads += 1;
        Some(v)
    }

    /// Mirrors a trapped guest TLB maintenance operation; returns the host operation.
    pub fn tlbi(&mut self, op: TlbOp) -> HostTlbOp {
        self.counters.tlbi += 1;
        self.engine.tlb_op(op)
    }

    /// True if the page holding `gpa` holds a shadowed guest table (stage-2 read-only).
    pub fn is_protected(&self, gpa: GuestPhysAddr) -> bool {
        self.engine.is_protected(gpa)
    }

    /// Syncs the shadows after the hypervisor stored `words` (4-byte aligned guest
    /// addresses and their new values) into write-protected guest tables.
    pub fn sync_words<M: GuestMemory + ?Sized>(
        &mut self,
        words: &[(GuestPhysAddr, u32)],
        mem: &M,
    ) -> Result<Effects, ShadowVmError> {
        let mut flush = HostTlbOp::None;
        let mut err = None;
        for &(gpa, v) in words {
            match self.engine.sync_write(gpa, v, mem, &self.map) {
                Ok(o) => flush = merge_flush(flush, o.flush),
                Err(e) => err = Some(e),
            }
        }
        let wp = self.take_wp();
        self.note_memory();
        if let Some(e) = err {
            return Err(ShadowVmError::Engine(e));
        }
        Ok(Effects {
            program: None,
            flush,
            wp,
        })
    }
}

/// The smallest host TLB operation covering both `a` and `b`.
pub fn merge_flush(a: HostTlbOp, b: HostTlbOp) -> HostTlbOp {
    match (a, b) {
        (HostTlbOp::None, x) | (x, HostTlbOp::None) => x,
        (x, y) if x == y => x,
        _ => HostTlbOp::All,
    }
}

/// Splits a store of `size` bytes (1, 2, 4 or 8) of `value` at `gpa` into the 4-byte
/// words it changes, given the old contents through `mem`: (word address, new word).
/// Returns `None` if a touched word cannot be read.
pub fn store_words<M: GuestMemory + ?Sized>(
    gpa: GuestPhysAddr,
    size: u64,
    value: u64,
    mem: &M,
) -> Option<Vec<(GuestPhysAddr, u32)>> {
    let mut out: Vec<(GuestPhysAddr, u32)> = Vec::new();
    for i in 0..size.min(8) {
        let a = gpa.raw() + i;
        let w = a & !3;
        let byte = ((value >> (8 * i)) & 0xff) as u32;
        let shift = 8 * (a & 3);
        let idx = match out.iter().position(|(g, _)| g.raw() == w) {
            Some(p) => p,
            None => {
                let old = mem.read_u32(GuestPhysAddr::new(w)).ok()?;
                out.push((GuestPhysAddr::new(w), old));
                out.len() - 1
            }
        };
        let e = &mut out[idx].1;
        *e = (*e & !(0xff << shift)) | (byte << shift);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shadow::sim::FlatMemory;

    #[test]
    fn identity_map_has_one_hole() {
        let m = IdentityMap::new(0xe000_0000, 0xe040_0000);
        assert_eq!(
            m.backing(GuestPhysAddr::new(0x4000_0000)),
            Backing::Ram {
                hpa: HostPhysAddr::new(0x4000_0000),
                len: 0xa000_0000
            }
        );
        assert_eq!(
            m.backing(GuestPhysAddr::new(0xe000_1000)),
            Backing::Hole { len: 0x3f_f000 }
        );
        assert!(matches!(
            m.backing(GuestPhysAddr::new(0xe040_0000)),
            Backing::Ram { .. }
        ));
    }

    #[test]
    fn store_words_merges_bytes() {
        let mut mem = FlatMemory::new(0x4000_0000, 0x1000);
        mem.write_u32(0x4000_0000, 0x1122_3344).unwrap();
        mem.write_u32(0x4000_0004, 0x5566_7788).unwrap();
        let w = store_words(GuestPhysAddr::new(0x4000_0002), 4, 0xaabb_ccdd, &mem).unwrap();
        assert_eq!(
            w,
            alloc::vec![
                (GuestPhysAddr::new(0x4000_0000), 0xccdd_3344),
                (GuestPhysAddr::new(0x4000_0004), 0x5566_aabb)
            ]
        );
        assert!(store_words(GuestPhysAddr::new(0x4000_0ffe), 4, 0, &mem).is_none());
    }

    #[test]
    fn merge_flush_widens() {
        let a = HostTlbOp::Asid(3);
        assert_eq!(merge_flush(HostTlbOp::None, a), a);
        assert_eq!(merge_flush(a, a), a);
        assert_eq!(merge_flush(a, HostTlbOp::Asid(4)), HostTlbOp::All);
    }
}
