//! Host device-tree parsing: what the hypervisor needs to know about the machine.
//!
//! The blob is first checked structurally by this module ([`validate`]: header, block
//! bounds, every token of the structure block, property names, nesting depth), and only
//! then handed to the `fdt` crate, whose walkers assume a well-formed blob and would
//! otherwise panic. Lookups by path, alias resolution and bus address translation are
//! done here (not with `Fdt::find_node`, whose alias fallback can recurse without
//! bound). Nothing allocates: the result borrows strings from the blob and keeps lists
//! in fixed-capacity arrays, so this runs before the heap exists.

use core::fmt;

use fdt::node::FdtNode;
use fdt::Fdt;

use crate::addr::{HostPhysAddr, HostRange};

/// FDT header magic (Devicetree Specification v0.4, 5.2 "Header").
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of the FDT header (version 17).
pub const FDT_HEADER_SIZE: usize = 40;
/// Largest blob accepted (QEMU reports its whole 1 MiB buffer as `totalsize`).
pub const FDT_MAX_SIZE: usize = 16 << 20;
/// Deepest node nesting accepted.
pub const MAX_DEPTH: usize = 16;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Why a device tree could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtError {
    /// Fewer bytes than the header or `totalsize` needs.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// The magic number is not 0xd00dfeed (no device tree at this address?).
    BadMagic(u32),
    /// A version this parser cannot read (needs version >= 17, last compatible <= 17).
    UnsupportedVersion {
        /// `version` field.
        version: u32,
        /// `last_comp_version` field.
        last_comp: u32,
    },
    /// `totalsize` is smaller than a header or larger than [`FDT_MAX_SIZE`].
    BadTotalSize(u32),
    /// A header field is inconsistent (a block outside the blob, misaligned, ...).
    BadHeader(&'static str),
    /// The structure block is malformed at this byte offset (from the blob start).
    Malformed {
        /// Offset of the problem.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A required node is absent.
    MissingNode(&'static str),
    /// A property has a malformed value.
    BadProperty {
        /// Which node (a fixed description, e.g. "memory").
        node: &'static str,
        /// Which property.
        prop: &'static str,
    },
    /// More entries of a kind than this parser keeps.
    TooMany(&'static str),
    /// An address could not be translated to a CPU physical address through the
    /// parent buses' `ranges`.
    Untranslatable(&'static str),
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, have } => {
                write!(
                    f,
                    "device tree truncated: needs {needed} bytes, have {have}"
                )
            }
            Self::BadMagic(m) => write!(
                f,
                "no device tree: magic is {m:#010x}, expected {FDT_MAGIC:#010x}"
            ),
            Self::UnsupportedVersion { version, last_comp } => write!(
                f,
                "unsupported device tree version {version} (last compatible {last_comp}); need 17"
            ),
            Self::BadTotalSize(s) => write!(f, "implausible device tree size {s} bytes"),
            Self::BadHeader(w) => write!(f, "malformed device tree header: {w}"),
            Self::Malformed { offset, what } => {
                write!(f, "malformed device tree at byte {offset:#x}: {what}")
            }
            Self::MissingNode(n) => write!(f, "device tree has no {n} node"),
            Self::BadProperty { node, prop } => {
                write!(f, "device tree: malformed property {prop} in {node} node")
            }
            Self::TooMany(w) => write!(f, "device tree has too many {w}"),
            Self::Untranslatable(w) => {
                write!(
                    f,
                    "device tree: cannot translate the {w} address through its buses"
                )
            }
        }
    }
}

/// Types a [`Bounded`] list can hold: `Copy` with a placeholder for unused slots.
pub trait Blank: Copy {
    /// The placeholder value.
    const BLANK: Self;
}

impl Blank for HostRange {
    const BLANK: Self = HostRange::new(HostPhysAddr::new(0), 0);
}

impl Blank for &str {
    const BLANK: Self = "";
}

/// A fixed-capacity list (the parser runs before any heap exists).
#[derive(Clone, Copy)]
pub struct Bounded<T: Blank, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Blank, const N: usize> Default for Bounded<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Blank + PartialEq, const N: usize> PartialEq for Bounded<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Blank + Eq, const N: usize> Eq for Bounded<T, N> {}

impl<T: Blank, const N: usize> Bounded<T, N> {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            items: [T::BLANK; N],
            len: 0,
        }
    }
    /// Appends `v`; `Err(v)` when full.
    pub fn push(&mut self, v: T) -> Result<(), T> {
        if self.len == N {
            return Err(v);
        }
        self.items[self.len] = v;
        self.len += 1;
        Ok(())
    }
    /// The items.
    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }
}

impl<T: Blank, const N: usize> core::ops::Deref for Bounded<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<'s, T: Blank, const N: usize> IntoIterator for &'s Bounded<T, N> {
    type Item = &'s T;
    type IntoIter = core::slice::Iter<'s, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl<T: Blank + fmt::Debug, const N: usize> fmt::Debug for Bounded<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// Maximum memory ranges kept.
pub const MAX_MEMORY: usize = 16;
/// Maximum reserved ranges kept.
pub const MAX_RESERVED: usize = 32;
/// Maximum CPUs kept.
pub const MAX_CPUS: usize = 16;
/// Maximum root compatible strings kept.
pub const MAX_COMPATIBLE: usize = 8;

/// One CPU node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuInfo<'a> {
    /// The `reg` value: the CPU's MPIDR affinity fields.
    pub mpidr: u64,
    /// `enable-method` ("psci", "spin-table", ...), if present.
    pub enable_method: Option<&'a str>,
    /// `cpu-release-addr` for spin-table CPUs.
    pub release_addr: Option<HostPhysAddr>,
}

impl Blank for CpuInfo<'_> {
    const BLANK: Self = CpuInfo {
        mpidr: 0,
        enable_method: None,
        release_addr: None,
    };
}

/// How PSCI calls are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciMethod {
    /// HVC conduit.
    Hvc,
    /// SMC conduit.
    Smc,
}

/// PSCI version implied by the node's compatible strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PsciCompat {
    /// "arm,psci": PSCI 0.1, function ids only from the node.
    V0_1,
    /// "arm,psci-0.2": standard function ids.
    V0_2,
    /// "arm,psci-1.0".
    V1_0,
}

/// The `/psci` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciInfo {
    /// Conduit.
    pub method: PsciMethod,
    /// Highest version in `compatible`.
    pub compat: PsciCompat,
    /// `cpu_on` function id, if given.
    pub cpu_on: Option<u32>,
    /// `cpu_off` function id, if given.
    pub cpu_off: Option<u32>,
    /// `cpu_suspend` function id, if given.
    pub cpu_suspend: Option<u32>,
    /// `migrate` function id, if given.
    pub migrate: Option<u32>,
}

/// An interrupt specifier of a GIC-parented node (3 cells: type, number, flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqSpec {
    /// 0 = SPI, 1 = PPI.
    pub kind: u32,
    /// Number within its kind.
    pub number: u32,
    /// Trigger type and CPU mask cells.
    pub flags: u32,
}

impl Blank for IrqSpec {
    const BLANK: Self = IrqSpec {
        kind: 0,
        number: 0,
        flags: 0,
    };
}

impl IrqSpec {
    /// The GIC interrupt ID (INTID): PPI n = 16 + n, SPI n = 32 + n.
    pub fn intid(&self) -> Option<u32> {
        match self.kind {
            0 => self.number.checked_add(32),
            1 if self.number < 16 => Some(self.number + 16),
            _ => None,
        }
    }
}

/// The interrupt controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicInfo<'a> {
    /// 2 or 3.
    pub version: u8,
    /// The matching compatible string.
    pub compatible: &'a str,
    /// Distributor.
    pub gicd: HostRange,
    /// CPU interface (GICv2; GICv3 legacy interface if described).
    pub gicc: Option<HostRange>,
    /// First redistributor region (GICv3).
    pub gicr: Option<HostRange>,
    /// Virtual interface control (hypervisor) registers.
    pub gich: Option<HostRange>,
    /// Virtual CPU interface.
    pub gicv: Option<HostRange>,
    /// Maintenance interrupt.
    pub maintenance_irq: Option<IrqSpec>,
}

/// Most pin settings kept for the console UART.
pub const MAX_UART_PINS: usize = 8;

/// One pin's multiplexing, from a Broadcom pin-controller group (`brcm,pins` with
/// `brcm,function`, bindings/pinctrl/brcm,bcm2835-gpio.txt).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinMux {
    /// GPIO number.
    pub pin: u32,
    /// Function select value (BCM2835 GPFSEL encoding: 0 input, 1 output, 4 ALT0,
    /// 5 ALT1, 6 ALT2, 7 ALT3, 3 ALT4, 2 ALT5).
    pub function: u32,
}

impl Blank for PinMux {
    const BLANK: Self = PinMux {
        pin: 0,
        function: 0,
    };
}

/// The console UART found through `/chosen/stdout-path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UartInfo<'a> {
    /// Node path after alias resolution (without options).
    pub path: &'a str,
    /// CPU physical base address.
    pub base: HostPhysAddr,
    /// Size of the register window.
    pub size: u64,
    /// Reference clock, from `clock-frequency` or a `fixed-clock` in `clocks`.
    pub clock_hz: Option<u32>,
    /// Baud rate from the stdout-path options (e.g. "115200n8").
    pub baud: Option<u32>,
    /// The UART's interrupt (its RX interrupt is forwarded to the console VM).
    pub irq: Option<IrqSpec>,
    /// The pins its "default" pin-control state muxes (`pinctrl-N` groups with
    /// `brcm,pins`/`brcm,function`; groups in other forms contribute nothing).
    /// `None` when the node has no such state.
    pub pins: Option<Bounded<PinMux, MAX_UART_PINS>>,
}

/// The most restrictive DMA window among the root's buses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaLimit<'a> {
    /// Name of the bus node whose `dma-ranges` set the limit ("soc", "emmc2bus").
    pub bus: &'a str,
    /// First CPU physical address its devices cannot reach by DMA.
    pub limit: u64,
}

/// The architected timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerInfo {
    /// Interrupts in binding order: secure phys, non-secure phys, virtual, hyp phys
    /// (and hyp virtual if present).
    pub irqs: Bounded<IrqSpec, 5>,
    /// `clock-frequency`, if the firmware gives one (normally CNTFRQ_EL0 is used).
    pub clock_frequency: Option<u32>,
}

impl TimerInfo {
    /// The non-secure EL1 physical timer interrupt.
    pub fn phys_irq(&self) -> Option<IrqSpec> {
        self.irqs.as_slice().get(1).copied()
    }
    /// The EL1 virtual timer interrupt.
    pub fn virt_irq(&self) -> Option<IrqSpec> {
        self.irqs.as_slice().get(2).copied()
    }
    /// The EL2 physical timer interrupt.
    pub fn hyp_irq(&self) -> Option<IrqSpec> {
        self.irqs.as_slice().get(3).copied()
    }
}

/// Everything the hypervisor takes from the host device tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPlatform<'a> {
    /// Root `model`.
    pub model: Option<&'a str>,
    /// Root `compatible` strings, most specific first.
    pub compatible: Bounded<&'a str, MAX_COMPATIBLE>,
    /// All `reg` entries of all memory nodes (zero-sized ones skipped).
    pub memory: Bounded<HostRange, MAX_MEMORY>,
    /// `/memreserve/` entries, then `/reserved-memory` children with `reg`.
    pub reserved: Bounded<HostRange, MAX_RESERVED>,
    /// Enabled CPUs in tree order.
    pub cpus: Bounded<CpuInfo<'a>, MAX_CPUS>,
    /// The PSCI node.
    pub psci: Option<PsciInfo>,
    /// The GIC.
    pub gic: Option<GicInfo<'a>>,
    /// The raw `/chosen/stdout-path` value, for diagnostics.
    pub stdout_path: Option<&'a str>,
    /// The console UART, if stdout-path names an "arm,pl011" node with `reg`.
    pub uart: Option<UartInfo<'a>>,
    /// The architected timer.
    pub timer: Option<TimerInfo>,
    /// `boot_cpuid_phys` from the header.
    pub boot_cpuid: u32,
    /// The initrd from `/chosen` (`linux,initrd-start` .. `linux,initrd-end`).
    pub initrd: Option<HostRange>,
    /// `/chosen/bootargs`: the hypervisor's own command line (`hv.bundle=`, `hv.log=`).
    pub bootargs: Option<&'a str>,
    /// The lowest DMA limit among the root's child buses with a non-empty
    /// `dma-ranges` (the highest CPU address any of its windows reaches); `None` when
    /// no bus restricts DMA.
    pub dma_limit: Option<DmaLimit<'a>>,
}

impl<'a> HostPlatform<'a> {
    /// Parses a host device tree; same as [`parse`].
    pub fn parse(blob: &'a [u8]) -> Result<Self, DtError> {
        parse(blob)
    }
    /// The root `model`, else the first root compatible, else "unknown machine".
    pub fn model_or_compatible(&self) -> &'a str {
        self.model
            .or_else(|| self.compatible.first().copied())
            .unwrap_or("unknown machine")
    }
    /// The MMIO ranges of the devices the hypervisor itself uses (console UART, GIC
    /// frames), e.g. to map them as device memory in its own stage-1 tables.
    pub fn device_ranges(&self) -> Bounded<HostRange, 6> {
        let mut out = Bounded::new();
        if let Some(u) = self.uart {
            let _ = out.push(HostRange::new(u.base, u.size));
        }
        if let Some(g) = self.gic {
            for r in [Some(g.gicd), g.gicc, g.gicr, g.gich, g.gicv]
                .into_iter()
                .flatten()
            {
                let _ = out.push(r);
            }
        }
        out
    }
    /// True if the root compatible list contains `c`.
    pub fn is_compatible(&self, c: &str) -> bool {
        self.compatible.contains(&c)
    }
    /// Sum of the memory ranges' sizes.
    pub fn total_memory(&self) -> u64 {
        self.memory
            .iter()
            .fold(0u64, |a, r| a.saturating_add(r.size))
    }
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], off: usize) -> Option<u64> {
    Some((be32(b, off)? as u64) << 32 | be32(b, off + 4)? as u64)
}

/// The parsed header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    total: usize,
    off_struct: usize,
    off_strings: usize,
    off_rsvmap: usize,
    size_strings: usize,
    size_struct: usize,
    boot_cpuid: u32,
}

fn parse_header(b: &[u8]) -> Result<Header, DtError> {
    if b.len() < FDT_HEADER_SIZE {
        return Err(DtError::Truncated {
            needed: FDT_HEADER_SIZE,
            have: b.len(),
        });
    }
    let f = |i: usize| be32(b, i * 4).unwrap_or(0);
    let magic = f(0);
    if magic != FDT_MAGIC {
        return Err(DtError::BadMagic(magic));
    }
    let (version, last_comp) = (f(5), f(6));
    if version < 17 || last_comp > 17 {
        return Err(DtError::UnsupportedVersion { version, last_comp });
    }
    let total = f(1) as usize;
    if !(FDT_HEADER_SIZE..=FDT_MAX_SIZE).contains(&total) {
        return Err(DtError::BadTotalSize(f(1)));
    }
    let h = Header {
        total,
        off_struct: f(2) as usize,
        off_strings: f(3) as usize,
        off_rsvmap: f(4) as usize,
        boot_cpuid: f(7),
        size_strings: f(8) as usize,
        size_struct: f(9) as usize,
    };
    let within = |off: usize, size: usize| {
        off >= FDT_HEADER_SIZE && off.checked_add(size).is_some_and(|e| e <= total)
    };
    if !within(h.off_struct, h.size_struct) {
        return Err(DtError::BadHeader("structure block outside the blob"));
    }
    if !within(h.off_strings, h.size_strings) {
        return Err(DtError::BadHeader("strings block outside the blob"));
    }
    if !within(h.off_rsvmap, 16) {
        return Err(DtError::BadHeader(
            "memory reservation block outside the blob",
        ));
    }
    if !h.off_struct.is_multiple_of(4) || !h.off_rsvmap.is_multiple_of(8) {
        return Err(DtError::BadHeader("misaligned block offset"));
    }
    Ok(h)
}

/// Validates a header (the first [`FDT_HEADER_SIZE`] bytes suffice) and returns the
/// blob's `totalsize`, so the caller can form a slice over the whole blob. Checks the
/// magic, the version, the size bounds and that the blocks lie inside `totalsize`.
pub fn fdt_total_size(header_bytes: &[u8]) -> Result<usize, DtError> {
    parse_header(header_bytes).map(|h| h.total)
}

fn cstr_at(b: &[u8], off: usize, end: usize) -> Option<&str> {
    let s = b.get(off..end)?;
    let n = s.iter().position(|&c| c == 0)?;
    core::str::from_utf8(&s[..n]).ok()
}

const fn align4(v: usize) -> usize {
    (v + 3) & !3
}

/// Checks the whole blob structurally, so that the `fdt` crate's walkers cannot panic
/// on it: the header, the reservation map, and every token of the structure block
/// (node names NUL-terminated UTF-8, properties before subnodes, property values and
/// names in bounds, cell-count properties 4 bytes long, no NOP tokens, balanced
/// nesting at most [`MAX_DEPTH`] deep, an unnamed root, a final END token).
/// Returns the blob trimmed to `totalsize`.
pub fn validate(blob: &[u8]) -> Result<&[u8], DtError> {
    let h = parse_header(blob)?;
    if blob.len() < h.total {
        return Err(DtError::Truncated {
            needed: h.total,
            have: blob.len(),
        });
    }
    let b = &blob[..h.total];
    // Reservation map: (address, size) pairs ending with (0, 0).
    let mut off = h.off_rsvmap;
    loop {
        let (a, s) = match (be64(b, off), be64(b, off + 8)) {
            (Some(a), Some(s)) => (a, s),
            _ => {
                return Err(DtError::Malformed {
                    offset: off,
                    what: "unterminated memory reservation map",
                })
            }
        };
        off += 16;
        if a == 0 && s == 0 {
            break;
        }
    }
    let start = h.off_struct;
    let end = h.off_struct + h.size_struct;
    let str_end = h.off_strings + h.size_strings;
    let mal = |offset, what| Err(DtError::Malformed { offset, what });
    let mut p = start;
    let mut depth = 0usize;
    // Per open node: whether a subnode has been seen (properties must come first).
    let mut seen_child = [false; MAX_DEPTH + 1];
    loop {
        let tok = match be32(&b[..end], p) {
            Some(t) => t,
            None => return mal(p, "structure block ends without FDT_END"),
        };
        let tok_off = p;
        p += 4;
        match tok {
            FDT_BEGIN_NODE => {
                if depth > 0 {
                    seen_child[depth] = true;
                } else if tok_off != start {
                    return mal(tok_off, "more than one root node");
                }
                let name = match cstr_at(b, p, end) {
                    Some(n) => n,
                    None => return mal(p, "node name not NUL-terminated UTF-8"),
                };
                if depth == 0 && !name.is_empty() {
                    return mal(p, "root node has a name");
                }
                if depth > 0 && name.is_empty() {
                    return mal(p, "unnamed subnode");
                }
                p = align4(p + name.len() + 1);
                depth += 1;
                if depth > MAX_DEPTH {
                    return mal(tok_off, "nodes nested too deeply");
                }
                seen_child[depth] = false;
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return mal(tok_off, "unbalanced end of node");
                }
                depth -= 1;
            }
            FDT_PROP => {
                if depth == 0 {
                    return mal(tok_off, "property outside a node");
                }
                if seen_child[depth] {
                    return mal(tok_off, "property after a subnode");
                }
                let (len, nameoff) = match (be32(&b[..end], p), be32(&b[..end], p + 4)) {
                    (Some(l), Some(n)) => (l as usize, n as usize),
                    _ => return mal(p, "truncated property header"),
                };
                p += 8;
                if p.checked_add(len).is_none_or(|e| e > end) {
                    return mal(p, "property value runs past the structure block");
                }
                if nameoff >= h.size_strings {
                    return mal(tok_off, "property name offset outside the strings block");
                }
                let name = match cstr_at(b, h.off_strings + nameoff, str_end) {
                    Some(n) => n,
                    None => return mal(tok_off, "property name not NUL-terminated UTF-8"),
                };
                if matches!(name, "#address-cells" | "#size-cells" | "#interrupt-cells") && len != 4
                {
                    return mal(tok_off, "cell-count property is not 4 bytes");
                }
                p = align4(p + len);
            }
            FDT_NOP => return mal(tok_off, "FDT_NOP token (remove with dt::strip_nops)"),
            FDT_END => {
                if depth != 0 || tok_off == start {
                    return mal(tok_off, "FDT_END inside a node or with no root");
                }
                return Ok(b);
            }
            _ => return mal(tok_off, "unknown token"),
        }
        if depth == 0 && tok != FDT_END_NODE {
            return mal(tok_off, "token outside the root node");
        }
    }
}

/// Copies `blob` into `out` without its FDT_NOP tokens (which firmware editing a tree
/// in place may leave, and which the `fdt` crate's walkers mishandle), packing the
/// blocks and fixing the header. Returns the new blob's size. Needs the header to be
/// valid and `out` to be at least as large as the packed result.
pub fn strip_nops(blob: &[u8], out: &mut [u8]) -> Result<usize, DtError> {
    let h = parse_header(blob)?;
    if blob.len() < h.total {
        return Err(DtError::Truncated {
            needed: h.total,
            have: blob.len(),
        });
    }
    let b = &blob[..h.total];
    // Reservation map length, including the terminator.
    let mut rsv_len = 0;
    loop {
        match (
            be64(b, h.off_rsvmap + rsv_len),
            be64(b, h.off_rsvmap + rsv_len + 8),
        ) {
            (Some(a), Some(s)) => {
                rsv_len += 16;
                if a == 0 && s == 0 {
                    break;
                }
            }
            _ => {
                return Err(DtError::Malformed {
                    offset: h.off_rsvmap + rsv_len,
                    what: "unterminated memory reservation map",
                })
            }
        }
    }
    let have = out.len();
    let too_small = |needed| DtError::Truncated { needed, have };
    let rsv_off = FDT_HEADER_SIZE;
    let struct_off = rsv_off + rsv_len;
    if out.len() < struct_off {
        return Err(too_small(struct_off));
    }
    out[..FDT_HEADER_SIZE].copy_from_slice(&b[..FDT_HEADER_SIZE]);
    out[rsv_off..struct_off].copy_from_slice(&b[h.off_rsvmap..h.off_rsvmap + rsv_len]);
    // Copy the structure block token by token, dropping NOPs.
    let (start, end) = (h.off_struct, h.off_struct + h.size_struct);
    let mut p = start;
    let mut o = struct_off;
    loop {
        let Some(tok) = be32(&b[..end], p) else {
            return Err(DtError::Malformed {
                offset: p,
                what: "structure block ends without FDT_END",
            });
        };
        let len = match tok {
            FDT_BEGIN_NODE => {
                let name =
                    b[p + 4..end]
                        .iter()
                        .position(|&c| c == 0)
                        .ok_or(DtError::Malformed {
                            offset: p,
                            what: "node name not NUL-terminated",
                        })?;
                4 + align4(name + 1)
            }
            FDT_PROP => {
                let plen = be32(&b[..end], p + 4).ok_or(DtError::Malformed {
                    offset: p,
                    what: "truncated property header",
                })? as usize;
                // Checked: a hostile length must not overflow on 32-bit hosts.
                plen.checked_add(15).map_or(usize::MAX, |v| v & !3)
            }
            FDT_END_NODE | FDT_END | FDT_NOP => 4,
            _ => {
                return Err(DtError::Malformed {
                    offset: p,
                    what: "unknown token",
                })
            }
        };
        if p.checked_add(len).is_none_or(|e| e > end) {
            return Err(DtError::Malformed {
                offset: p,
                what: "token runs past the structure block",
            });
        }
        if tok != FDT_NOP {
            if out.len() < o + len {
                return Err(too_small(o + len));
            }
            out[o..o + len].copy_from_slice(&b[p..p + len]);
            o += len;
        }
        p += len;
        if tok == FDT_END {
            break;
        }
    }
    let size_struct = o - struct_off;
    let str_off = o;
    let total = str_off + h.size_strings;
    if out.len() < total {
        return Err(too_small(total));
    }
    out[str_off..total].copy_from_slice(&b[h.off_strings..h.off_strings + h.size_strings]);
    let mut set =
        |i: usize, v: usize| out[i * 4..i * 4 + 4].copy_from_slice(&(v as u32).to_be_bytes());
    set(1, total);
    set(2, struct_off);
    set(3, str_off);
    set(4, rsv_off);
    set(9, size_struct);
    Ok(total)
}

type Node<'b, 'a> = FdtNode<'b, 'a>;

/// A node with its ancestors (root first, the node itself last).
#[derive(Clone, Copy)]
struct Chain<'b, 'a> {
    nodes: [Option<Node<'b, 'a>>; MAX_DEPTH],
    len: usize,
}

impl<'b, 'a> Chain<'b, 'a> {
    fn node(&self) -> Node<'b, 'a> {
        // A chain always holds at least the root (constructed non-empty below).
        self.nodes[self.len - 1].unwrap_or_else(|| unreachable!())
    }
    fn get(&self, i: usize) -> Option<Node<'b, 'a>> {
        if i < self.len {
            self.nodes[i]
        } else {
            None
        }
    }
    fn parent(&self) -> Option<Node<'b, 'a>> {
        self.len.checked_sub(2).and_then(|i| self.get(i))
    }
}

fn prop<'a>(n: Node<'_, 'a>, name: &str) -> Option<&'a [u8]> {
    n.property(name).map(|p| p.value)
}

fn prop_str<'a>(n: Node<'_, 'a>, name: &str) -> Option<&'a str> {
    let v = prop(n, name)?;
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    core::str::from_utf8(v).ok()
}

fn prop_u32(n: Node<'_, '_>, name: &str) -> Option<u32> {
    let v = prop(n, name)?;
    if v.len() == 4 {
        be32(v, 0)
    } else {
        None
    }
}

fn strings(v: &[u8]) -> impl Iterator<Item = &str> {
    v.split(|&c| c == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| core::str::from_utf8(s).ok())
}

fn is_compatible(n: Node<'_, '_>, c: &str) -> bool {
    prop(n, "compatible").is_some_and(|v| strings(v).any(|s| s == c))
}

/// (#address-cells, #size-cells) a node gives its children (defaults 2 and 1).
fn cells(n: Node<'_, '_>) -> (usize, usize) {
    (
        prop_u32(n, "#address-cells").unwrap_or(2) as usize,
        prop_u32(n, "#size-cells").unwrap_or(1) as usize,
    )
}

fn read_cells(v: &[u8], off: usize, n: usize) -> Option<u64> {
    match n {
        0 => Some(0),
        1 => be32(v, off).map(u64::from),
        2 => be64(v, off),
        _ => None,
    }
}

fn base_name(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

fn name_matches(node_name: &str, want: &str) -> bool {
    if want.contains('@') {
        node_name == want
    } else {
        base_name(node_name) == want
    }
}

struct Tree<'b, 'a> {
    fdt: &'b Fdt<'a>,
    root: Node<'b, 'a>,
}

impl<'b, 'a> Tree<'b, 'a> {
    fn root_chain(&self) -> Chain<'b, 'a> {
        let mut c = Chain {
            nodes: [None; MAX_DEPTH],
            len: 1,
        };
        c.nodes[0] = Some(self.root);
        c
    }

    /// Looks up an absolute path ("/a/b@1"), without alias resolution.
    fn lookup(&self, path: &str) -> Option<Chain<'b, 'a>> {
        let rest = path.strip_prefix('/')?;
        Self::descend(self.root_chain(), rest)
    }

    /// Extends `chain` by the `/`-separated node names of `rest`.
    fn descend(mut chain: Chain<'b, 'a>, rest: &str) -> Option<Chain<'b, 'a>> {
        for comp in rest.split('/').filter(|c| !c.is_empty()) {
            if chain.len >= MAX_DEPTH {
                return None;
            }
            let child = chain
                .node()
                .children()
                .find(|c| name_matches(c.name, comp))?;
            chain.nodes[chain.len] = Some(child);
            chain.len += 1;
        }
        Some(chain)
    }

    /// Resolves a path that may start with an alias ("serial0", "serial0/sub").
    fn resolve(&self, path: &str) -> Option<Chain<'b, 'a>> {
        if path.starts_with('/') {
            return self.lookup(path);
        }
        let (alias, rest) = match path.find('/') {
            Some(i) => (&path[..i], &path[i..]),
            None => (path, ""),
        };
        let aliases = self.lookup("/aliases")?.node();
        let target = prop_str(aliases, alias)?;
        if !target.starts_with('/') {
            return None;
        }
        Self::descend(self.lookup(target)?, rest)
    }

    /// Depth-first search for the first node satisfying `pred`.
    fn find(&self, pred: &dyn Fn(Node<'b, 'a>) -> bool) -> Option<Chain<'b, 'a>> {
        let mut chain = self.root_chain();
        if pred(self.root) {
            return Some(chain);
        }
        if self.dfs(&mut chain, pred) {
            Some(chain)
        } else {
            None
        }
    }

    fn dfs(&self, chain: &mut Chain<'b, 'a>, pred: &dyn Fn(Node<'b, 'a>) -> bool) -> bool {
        if chain.len >= MAX_DEPTH {
            return false;
        }
        for child in chain.node().children() {
            chain.nodes[chain.len] = Some(child);
            chain.len += 1;
            if pred(child) || self.dfs(chain, pred) {
                return true;
            }
            chain.len -= 1;
        }
        false
    }

    /// Translates a bus address of the chain's node (i.e. in its parent's address
    /// space) into a CPU physical address through the ancestors' `ranges`.
    fn translate(
        &self,
        chain: &Chain<'b, 'a>,
        addr: u64,
        what: &'static str,
    ) -> Result<u64, DtError> {
        let mut a = addr;
        // Bus i (an ancestor of the node) maps its children's addresses into bus i-1's.
        for i in (1..chain.len.saturating_sub(1)).rev() {
            let (bus, up) = match (chain.get(i), chain.get(i - 1)) {
                (Some(b), Some(u)) => (b, u),
                _ => return Err(DtError::Untranslatable(what)),
            };
            let ranges = match prop(bus, "ranges") {
                Some(r) => r,
                None => return Err(DtError::Untranslatable(what)),
            };
            if ranges.is_empty() {
                continue;
            }
            let (cac, csc) = cells(bus);
            let pac = cells(up).0;
            let entry = (cac + pac + csc) * 4;
            if entry == 0 || cac > 2 || pac > 2 || csc > 2 {
                return Err(DtError::Untranslatable(what));
            }
            let mut hit = None;
            for e in ranges.chunks_exact(entry) {
                let (Some(cb), Some(pb), Some(sz)) = (
                    read_cells(e, 0, cac),
                    read_cells(e, cac * 4, pac),
                    read_cells(e, (cac + pac) * 4, csc),
                ) else {
                    continue;
                };
                if a >= cb && a - cb < sz {
                    hit = pb.checked_add(a - cb);
                    break;
                }
            }
            a = hit.ok_or(DtError::Untranslatable(what))?;
        }
        Ok(a)
    }

    /// The `reg` entries of the chain's node, translated to CPU physical addresses.
    fn regs<const N: usize>(
        &self,
        chain: &Chain<'b, 'a>,
        what: &'static str,
    ) -> Result<Bounded<HostRange, N>, DtError> {
        let node = chain.node();
        let parent = chain.parent().ok_or(DtError::BadProperty {
            node: what,
            prop: "reg",
        })?;
        let (ac, sc) = cells(parent);
        let bad = DtError::BadProperty {
            node: what,
            prop: "reg",
        };
        let v = prop(node, "reg").ok_or(bad)?;
        let entry = (ac + sc) * 4;
        if ac == 0 || ac > 2 || sc > 2 || v.len() % entry != 0 {
            return Err(bad);
        }
        let mut out = Bounded::new();
        for e in v.chunks_exact(entry) {
            let a = read_cells(e, 0, ac).ok_or(bad)?;
            let s = read_cells(e, ac * 4, sc).ok_or(bad)?;
            let a = self.translate(chain, a, what)?;
            out.push(HostRange::new(HostPhysAddr::new(a), s))
                .map_err(|_| DtError::TooMany(what))?;
        }
        Ok(out)
    }

    /// The interrupt specifiers of the chain's node, if its interrupt parent uses
    /// three cells (a GIC). `Ok(None)` when there is no `interrupts` property.
    fn irqs<const N: usize>(
        &self,
        chain: &Chain<'b, 'a>,
        what: &'static str,
    ) -> Result<Option<Bounded<IrqSpec, N>>, DtError> {
        let node = chain.node();
        let Some(v) = prop(node, "interrupts") else {
            return Ok(None);
        };
        // interrupt-parent on the node or the nearest ancestor.
        let mut phandle = None;
        for i in (0..chain.len).rev() {
            if let Some(p) = chain.get(i).and_then(|n| prop_u32(n, "interrupt-parent")) {
                phandle = Some(p);
                break;
            }
        }
        let icells = match phandle.and_then(|p| self.fdt.find_phandle(p)) {
            Some(ic) => prop_u32(ic, "#interrupt-cells"),
            // The interrupt controller itself describing its own interrupt.
            None => prop_u32(node, "#interrupt-cells"),
        };
        if icells != Some(3) {
            return Ok(None);
        }
        if v.len() % 12 != 0 {
            return Err(DtError::BadProperty {
                node: what,
                prop: "interrupts",
            });
        }
        let mut out = Bounded::new();
        for e in v.chunks_exact(12) {
            let spec = IrqSpec {
                kind: be32(e, 0).unwrap_or(0),
                number: be32(e, 4).unwrap_or(0),
                flags: be32(e, 8).unwrap_or(0),
            };
            out.push(spec).map_err(|_| DtError::TooMany(what))?;
        }
        Ok(Some(out))
    }
}

/// Parses a host device tree. `blob` may be longer than the tree; it is validated
/// first (see [`validate`]). Required: the root, at least one memory range, `/cpus`
/// with at least one CPU. Everything else is optional and reported as `None` when
/// absent; a present but malformed property is an error.
pub fn parse(blob: &[u8]) -> Result<HostPlatform<'_>, DtError> {
    let b = validate(blob)?;
    let h = parse_header(b)?;
    let fdt = Fdt::new(b).map_err(|_| DtError::BadHeader("rejected by the fdt parser"))?;
    let root = fdt.find_node("/").ok_or(DtError::MissingNode("root"))?;
    let tree = Tree { fdt: &fdt, root };

    let mut compatible = Bounded::new();
    if let Some(v) = prop(root, "compatible") {
        for s in strings(v) {
            compatible
                .push(s)
                .map_err(|_| DtError::TooMany("root compatible strings"))?;
        }
    }

    // Memory: every root child with device_type = "memory".
    let mut memory = Bounded::<HostRange, MAX_MEMORY>::new();
    for child in root.children() {
        if prop_str(child, "device_type") != Some("memory") {
            continue;
        }
        if prop_str(child, "status").is_some_and(|s| s != "okay" && s != "ok") {
            continue;
        }
        let mut chain = tree.root_chain();
        chain.nodes[1] = Some(child);
        chain.len = 2;
        for r in tree.regs::<MAX_MEMORY>(&chain, "memory")?.iter() {
            if r.size != 0 {
                memory
                    .push(*r)
                    .map_err(|_| DtError::TooMany("memory ranges"))?;
            }
        }
    }
    if memory.is_empty() {
        return Err(DtError::MissingNode("memory"));
    }

    // Reserved memory: the header's map, then /reserved-memory children.
    let mut reserved = Bounded::<HostRange, MAX_RESERVED>::new();
    let mut off = h.off_rsvmap;
    while let (Some(a), Some(s)) = (be64(b, off), be64(b, off + 8)) {
        if a == 0 && s == 0 {
            break;
        }
        reserved
            .push(HostRange::new(HostPhysAddr::new(a), s))
            .map_err(|_| DtError::TooMany("reserved ranges"))?;
        off += 16;
    }
    if let Some(rm) = tree.lookup("/reserved-memory") {
        for child in rm.node().children() {
            if prop(child, "reg").is_none() {
                continue;
            }
            let mut chain = rm;
            if chain.len >= MAX_DEPTH {
                break;
            }
            chain.nodes[chain.len] = Some(child);
            chain.len += 1;
            for r in tree.regs::<4>(&chain, "reserved-memory")?.iter() {
                reserved
                    .push(*r)
                    .map_err(|_| DtError::TooMany("reserved ranges"))?;
            }
        }
    }

    // CPUs.
    let cpus_node = tree
        .lookup("/cpus")
        .ok_or(DtError::MissingNode("/cpus"))?
        .node();
    let (cac, _) = cells(cpus_node);
    let mut cpus = Bounded::<CpuInfo<'_>, MAX_CPUS>::new();
    for cpu in cpus_node.children() {
        if prop_str(cpu, "device_type") != Some("cpu") && base_name(cpu.name) != "cpu" {
            continue;
        }
        if prop_str(cpu, "status").is_some_and(|s| s != "okay" && s != "ok") {
            continue;
        }
        let bad = DtError::BadProperty {
            node: "cpu",
            prop: "reg",
        };
        let reg = prop(cpu, "reg").ok_or(bad)?;
        if cac == 0 || cac > 2 || reg.len() < cac * 4 {
            return Err(bad);
        }
        let mpidr = read_cells(reg, 0, cac).ok_or(bad)?;
        let release_addr = match prop(cpu, "cpu-release-addr") {
            None => None,
            Some(v) if v.len() == 8 => be64(v, 0).map(HostPhysAddr::new),
            Some(v) if v.len() == 4 => be32(v, 0).map(|a| HostPhysAddr::new(a as u64)),
            Some(_) => {
                return Err(DtError::BadProperty {
                    node: "cpu",
                    prop: "cpu-release-addr",
                })
            }
        };
        cpus.push(CpuInfo {
            mpidr,
            enable_method: prop_str(cpu, "enable-method"),
            release_addr,
        })
        .map_err(|_| DtError::TooMany("CPUs"))?;
    }
    if cpus.is_empty() {
        return Err(DtError::MissingNode("cpu"));
    }

    let psci = parse_psci(&tree)?;
    let gic = parse_gic(&tree)?;
    let stdout_path = tree
        .lookup("/chosen")
        .and_then(|c| prop_str(c.node(), "stdout-path"));
    let uart = match stdout_path {
        Some(sp) => parse_uart(&tree, sp)?,
        None => None,
    };
    let timer = parse_timer(&tree)?;
    let initrd = match tree.lookup("/chosen") {
        Some(c) => parse_initrd(c.node())?,
        None => None,
    };
    let dma_limit = parse_dma_limit(&tree)?;

    Ok(HostPlatform {
        model: prop_str(root, "model"),
        compatible,
        memory,
        reserved,
        cpus,
        psci,
        gic,
        stdout_path,
        uart,
        timer,
        boot_cpuid: h.boot_cpuid,
        initrd,
        bootargs: tree
            .lookup("/chosen")
            .and_then(|c| prop_str(c.node(), "bootargs")),
        dma_limit,
    })
}

/// See [`HostPlatform::dma_limit`]. Only the root's children are read: their parent
/// address space is the CPU's, so no translation is needed. (On the Raspberry Pi 4,
/// /soc and /emmc2bus both say 1 GiB; the firmware widens /emmc2bus on newer SoC
/// steppings, and /soc then still gives 1 GiB.)
fn parse_dma_limit<'a>(tree: &Tree<'_, 'a>) -> Result<Option<DmaLimit<'a>>, DtError> {
    let pac = cells(tree.root).0;
    let bad = DtError::BadProperty {
        node: "bus",
        prop: "dma-ranges",
    };
    let mut best: Option<DmaLimit<'a>> = None;
    for bus in tree.root.children() {
        let Some(v) = prop(bus, "dma-ranges") else {
            continue;
        };
        // Empty: the bus reaches all of its parent's space.
        if v.is_empty() || prop_str(bus, "status").is_some_and(|s| s != "okay" && s != "ok") {
            continue;
        }
        let (cac, csc) = cells(bus);
        let entry = (cac + pac + csc) * 4;
        if cac > 3 || pac == 0 || pac > 2 || csc == 0 || csc > 2 || v.len() % entry != 0 {
            return Err(bad);
        }
        let mut limit = 0u64;
        for e in v.chunks_exact(entry) {
            let cpu = read_cells(e, cac * 4, pac).ok_or(bad)?;
            let size = read_cells(e, (cac + pac) * 4, csc).ok_or(bad)?;
            limit = limit.max(cpu.saturating_add(size));
        }
        if best.is_none_or(|b| limit < b.limit) {
            best = Some(DmaLimit {
                bus: bus.name,
                limit,
            });
        }
    }
    Ok(best)
}

/// The "default" pin-control state of a node (see [`UartInfo::pins`]).
fn parse_pins(tree: &Tree<'_, '_>, n: Node<'_, '_>) -> Option<Bounded<PinMux, MAX_UART_PINS>> {
    const STATES: [&str; 4] = ["pinctrl-0", "pinctrl-1", "pinctrl-2", "pinctrl-3"];
    let idx = match prop(n, "pinctrl-names") {
        Some(names) => strings(names).position(|s| s == "default")?,
        None => 0,
    };
    let groups = prop(n, STATES.get(idx)?)?;
    let mut out = Bounded::new();
    for ph in groups.chunks_exact(4) {
        let Some(g) = be32(ph, 0).and_then(|p| tree.fdt.find_phandle(p)) else {
            continue;
        };
        let (Some(pins), Some(funcs)) = (prop(g, "brcm,pins"), prop(g, "brcm,function")) else {
            continue;
        };
        let np = pins.len() / 4;
        // One function for all pins, or one per pin.
        if pins.len() % 4 != 0 || (funcs.len() != 4 && funcs.len() != pins.len()) {
            continue;
        }
        for i in 0..np {
            let f = if funcs.len() == 4 { 0 } else { i * 4 };
            let (Some(pin), Some(function)) = (be32(pins, i * 4), be32(funcs, f)) else {
                continue;
            };
            if out.push(PinMux { pin, function }).is_err() {
                return Some(out);
            }
        }
    }
    Some(out)
}

fn parse_initrd(chosen: Node<'_, '_>) -> Result<Option<HostRange>, DtError> {
    let read = |name: &'static str| -> Result<Option<u64>, DtError> {
        match prop(chosen, name) {
            None => Ok(None),
            Some(v) if v.len() == 4 => Ok(be32(v, 0).map(u64::from)),
            Some(v) if v.len() == 8 => Ok(be64(v, 0)),
            Some(_) => Err(DtError::BadProperty {
                node: "chosen",
                prop: name,
            }),
        }
    };
    match (read("linux,initrd-start")?, read("linux,initrd-end")?) {
        (Some(s), Some(e)) if e >= s => Ok(Some(HostRange::new(HostPhysAddr::new(s), e - s))),
        (None, None) => Ok(None),
        _ => Err(DtError::BadProperty {
            node: "chosen",
            prop: "linux,initrd-end",
        }),
    }
}

fn parse_psci(tree: &Tree<'_, '_>) -> Result<Option<PsciInfo>, DtError> {
    const COMPATS: [(&str, PsciCompat); 3] = [
        ("arm,psci-1.0", PsciCompat::V1_0),
        ("arm,psci-0.2", PsciCompat::V0_2),
        ("arm,psci", PsciCompat::V0_1),
    ];
    let Some(chain) = tree.find(&|n| COMPATS.iter().any(|(c, _)| is_compatible(n, c))) else {
        return Ok(None);
    };
    let n = chain.node();
    let compat = COMPATS
        .iter()
        .filter(|(c, _)| is_compatible(n, c))
        .map(|(_, v)| *v)
        .max()
        .unwrap_or(PsciCompat::V0_1);
    let method = match prop_str(n, "method") {
        Some("hvc") => PsciMethod::Hvc,
        Some("smc") => PsciMethod::Smc,
        _ => {
            return Err(DtError::BadProperty {
                node: "psci",
                prop: "method",
            })
        }
    };
    Ok(Some(PsciInfo {
        method,
        compat,
        cpu_on: prop_u32(n, "cpu_on"),
        cpu_off: prop_u32(n, "cpu_off"),
        cpu_suspend: prop_u32(n, "cpu_suspend"),
        migrate: prop_u32(n, "migrate"),
    }))
}

const GICV2_COMPATS: [&str; 6] = [
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
    "arm,arm11mp-gic",
    "arm,gic-v2",
];

fn parse_gic<'a>(tree: &Tree<'_, 'a>) -> Result<Option<GicInfo<'a>>, DtError> {
    let is_gic = |n: Node<'_, '_>| {
        prop(n, "interrupt-controller").is_some()
            && (is_compatible(n, "arm,gic-v3") || GICV2_COMPATS.iter().any(|c| is_compatible(n, c)))
    };
    let Some(chain) = tree.find(&is_gic) else {
        return Ok(None);
    };
    let n = chain.node();
    let v3 = is_compatible(n, "arm,gic-v3");
    let compatible = if v3 {
        prop(n, "compatible").and_then(|v| strings(v).find(|s| *s == "arm,gic-v3"))
    } else {
        prop(n, "compatible").and_then(|v| strings(v).find(|s| GICV2_COMPATS.contains(s)))
    }
    .unwrap_or("");
    let regs = tree.regs::<16>(&chain, "interrupt-controller")?;
    let r = regs.as_slice();
    let gicd = *r.first().ok_or(DtError::BadProperty {
        node: "interrupt-controller",
        prop: "reg",
    })?;
    let (gicc, gicr, gich, gicv) = if v3 {
        let nr = prop_u32(n, "#redistributor-regions").unwrap_or(1).max(1) as usize;
        let rest = r
            .get(1 + nr.min(r.len().saturating_sub(1))..)
            .unwrap_or(&[]);
        (
            rest.first().copied(),
            r.get(1).copied(),
            rest.get(1).copied(),
            rest.get(2).copied(),
        )
    } else {
        (
            r.get(1).copied(),
            None,
            r.get(2).copied(),
            r.get(3).copied(),
        )
    };
    let maintenance_irq = tree
        .irqs::<4>(&chain, "interrupt-controller")?
        .and_then(|irqs| irqs.as_slice().first().copied());
    Ok(Some(GicInfo {
        version: if v3 { 3 } else { 2 },
        compatible,
        gicd,
        gicc,
        gicr,
        gich,
        gicv,
        maintenance_irq,
    }))
}

fn parse_uart<'a>(
    tree: &Tree<'_, 'a>,
    stdout_path: &'a str,
) -> Result<Option<UartInfo<'a>>, DtError> {
    let (path, opts) = match stdout_path.find(':') {
        Some(i) => (&stdout_path[..i], Some(&stdout_path[i + 1..])),
        None => (stdout_path, None),
    };
    let Some(chain) = tree.resolve(path) else {
        return Ok(None);
    };
    let n = chain.node();
    if !is_compatible(n, "arm,pl011") {
        return Ok(None);
    }
    let regs = tree.regs::<4>(&chain, "uart")?;
    let Some(r) = regs.as_slice().first() else {
        return Err(DtError::BadProperty {
            node: "uart",
            prop: "reg",
        });
    };
    let clock_hz = prop_u32(n, "clock-frequency").or_else(|| {
        let clk = prop(n, "clocks").and_then(|v| be32(v, 0))?;
        let cn = tree.fdt.find_phandle(clk)?;
        if is_compatible(cn, "fixed-clock") {
            prop_u32(cn, "clock-frequency")
        } else {
            None
        }
    });
    let irq = tree
        .irqs::<1>(&chain, "uart")?
        .and_then(|l| l.as_slice().first().copied());
    let baud = opts.and_then(|o| {
        let digits = o.bytes().take_while(|c| c.is_ascii_digit()).count();
        o[..digits].parse::<u32>().ok().filter(|b| *b != 0)
    });
    // The path as it appears in the tree: the alias target if an alias was used.
    let resolved = if path.starts_with('/') {
        path
    } else {
        tree.lookup("/aliases")
            .and_then(|a| prop_str(a.node(), path.split('/').next().unwrap_or(path)))
            .unwrap_or(path)
    };
    Ok(Some(UartInfo {
        path: resolved,
        base: r.start,
        size: r.size,
        clock_hz,
        baud,
        irq,
        pins: parse_pins(tree, n),
    }))
}

fn parse_timer(tree: &Tree<'_, '_>) -> Result<Option<TimerInfo>, DtError> {
    let Some(chain) =
        tree.find(&|n| is_compatible(n, "arm,armv8-timer") || is_compatible(n, "arm,armv7-timer"))
    else {
        return Ok(None);
    };
    let irqs = tree.irqs::<5>(&chain, "timer")?.unwrap_or_default();
    Ok(Some(TimerInfo {
        irqs,
        clock_frequency: prop_u32(chain.node(), "clock-frequency"),
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) const GICV2: &[u8] = include_bytes!("../tests/data/qemu-virt-gicv2.dtb");
    pub(crate) const GICV3: &[u8] = include_bytes!("../tests/data/qemu-virt-gicv3.dtb");

    fn r(a: u64, s: u64) -> HostRange {
        HostRange::new(HostPhysAddr::new(a), s)
    }

    #[test]
    fn qemu_virt_gicv2() {
        let p = parse(GICV2).unwrap();
        assert_eq!(p.model, Some("linux,dummy-virt"));
        assert!(p.is_compatible("linux,dummy-virt"));
        assert_eq!(p.memory.as_slice(), &[r(0x4000_0000, 0x4000_0000)]);
        assert_eq!(p.total_memory(), 1 << 30);
        assert!(p.reserved.is_empty());
        assert_eq!(p.cpus.len(), 2);
        assert_eq!(p.cpus.as_slice()[1].mpidr, 1);
        assert_eq!(p.cpus.as_slice()[0].enable_method, Some("psci"));
        assert_eq!(p.cpus.as_slice()[0].release_addr, None);
        let psci = p.psci.unwrap();
        assert_eq!(psci.method, PsciMethod::Smc);
        assert_eq!(psci.compat, PsciCompat::V1_0);
        assert_eq!(psci.cpu_on, Some(0xc400_0003));
        assert_eq!(psci.cpu_off, Some(0x8400_0002));
        let gic = p.gic.unwrap();
        assert_eq!(gic.version, 2);
        assert_eq!(gic.compatible, "arm,cortex-a15-gic");
        assert_eq!(gic.gicd, r(0x0800_0000, 0x1_0000));
        assert_eq!(gic.gicc, Some(r(0x0801_0000, 0x1_0000)));
        assert_eq!(gic.gich, Some(r(0x0803_0000, 0x1_0000)));
        assert_eq!(gic.gicv, Some(r(0x0804_0000, 0x1_0000)));
        assert_eq!(gic.gicr, None);
        let mi = gic.maintenance_irq.unwrap();
        assert_eq!(mi.intid(), Some(25));
        let uart = p.uart.unwrap();
        assert_eq!(p.stdout_path, Some("/pl011@9000000"));
        assert_eq!(
            p.uart.as_ref().and_then(|u| u.irq).and_then(|i| i.intid()),
            Some(33)
        );
        assert_eq!(uart.base, HostPhysAddr::new(0x0900_0000));
        assert_eq!(uart.size, 0x1000);
        assert_eq!(uart.clock_hz, Some(24_000_000));
        assert_eq!(uart.baud, None);
        assert_eq!(uart.pins, None);
        assert_eq!(p.dma_limit, None);
        let t = p.timer.unwrap();
        assert_eq!(t.irqs.len(), 4);
        assert_eq!(t.phys_irq().unwrap().intid(), Some(30));
        assert_eq!(t.virt_irq().unwrap().intid(), Some(27));
        assert_eq!(t.hyp_irq().unwrap().intid(), Some(26));
        assert_eq!(t.clock_frequency, None);
        assert_eq!(p.boot_cpuid, 0);
        assert_eq!(p.initrd, None);
        let dev: Vec<HostRange> = p.device_ranges().iter().copied().collect();
        assert_eq!(
            dev,
            [
                r(0x0900_0000, 0x1000),
                r(0x0800_0000, 0x1_0000),
                r(0x0801_0000, 0x1_0000),
                r(0x0803_0000, 0x1_0000),
                r(0x0804_0000, 0x1_0000)
            ]
        );
        assert_eq!(
            HostPlatform::parse(GICV2).unwrap().model_or_compatible(),
            "linux,dummy-virt"
        );
        let mut n = 0;
        for _ in &p.memory {
            n += 1;
        }
        assert_eq!((n, p.cpus[1].mpidr), (1, 1));
    }

    #[test]
    fn qemu_virt_gicv3() {
        let p = parse(GICV3).unwrap();
        let gic = p.gic.unwrap();
        assert_eq!(gic.version, 3);
        assert_eq!(gic.compatible, "arm,gic-v3");
        assert_eq!(gic.gicd, r(0x0800_0000, 0x1_0000));
        assert_eq!(gic.gicr, Some(r(0x080a_0000, 0xf6_0000)));
        assert_eq!(gic.gicc, None);
        assert_eq!(gic.gich, None);
        assert_eq!(gic.maintenance_irq.unwrap().intid(), Some(25));
        assert_eq!(p.cpus.len(), 2);
        assert!(p.uart.is_some());
    }

    #[test]
    fn total_size_header_checks() {
        assert_eq!(fdt_total_size(&GICV2[..40]), Ok(GICV2.len()));
        assert_eq!(
            fdt_total_size(&GICV2[..39]),
            Err(DtError::Truncated {
                needed: 40,
                have: 39
            })
        );
        let mut h = GICV2[..40].to_vec();
        h[0] = 0;
        assert_eq!(fdt_total_size(&h), Err(DtError::BadMagic(0x000d_feed)));
        let mut h = GICV2[..40].to_vec();
        h[23] = 16; // version 16
        assert!(matches!(
            fdt_total_size(&h),
            Err(DtError::UnsupportedVersion { .. })
        ));
        let mut h = GICV2[..40].to_vec();
        h[4..8].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
        assert_eq!(fdt_total_size(&h), Err(DtError::BadTotalSize(0x7fff_ffff)));
        let mut h = GICV2[..40].to_vec();
        h[4..8].copy_from_slice(&64u32.to_be_bytes());
        assert!(matches!(fdt_total_size(&h), Err(DtError::BadHeader(_))));
        // QEMU's own dumps report the whole 1 MiB buffer as totalsize: accepted.
        let mut h = GICV2[..40].to_vec();
        h[4..8].copy_from_slice(&(1u32 << 20).to_be_bytes());
        assert_eq!(fdt_total_size(&h), Ok(1 << 20));
    }

    #[test]
    fn errors_display_clearly() {
        let e = parse(&[0u8; 64]).unwrap_err();
        assert_eq!(e, DtError::BadMagic(0));
        let msg = alloc::format!("{e}");
        assert!(msg.contains("no device tree"), "{msg}");
        let e = parse(&GICV2[..100]).unwrap_err();
        assert!(matches!(e, DtError::Truncated { .. }));
        assert!(alloc::format!("{e}").contains("truncated"));
    }

    /// A tiny DTB builder for synthetic trees.
    pub(crate) struct Builder {
        strct: Vec<u8>,
        strs: Vec<u8>,
        rsv: Vec<(u64, u64)>,
    }

    impl Builder {
        pub(crate) fn new() -> Self {
            Self {
                strct: Vec::new(),
                strs: Vec::new(),
                rsv: Vec::new(),
            }
        }
        fn tok(&mut self, t: u32) {
            self.strct.extend_from_slice(&t.to_be_bytes());
        }
        fn pad(&mut self) {
            while !self.strct.len().is_multiple_of(4) {
                self.strct.push(0);
            }
        }
        pub(crate) fn begin(&mut self, name: &str) -> &mut Self {
            self.tok(FDT_BEGIN_NODE);
            self.strct.extend_from_slice(name.as_bytes());
            self.strct.push(0);
            self.pad();
            self
        }
        pub(crate) fn end(&mut self) -> &mut Self {
            self.tok(FDT_END_NODE);
            self
        }
        pub(crate) fn prop(&mut self, name: &str, v: &[u8]) -> &mut Self {
            let off = match self
                .strs
                .windows(name.len() + 1)
                .position(|w| &w[..name.len()] == name.as_bytes() && w[name.len()] == 0)
            {
                Some(o) => o,
                None => {
                    let o = self.strs.len();
                    self.strs.extend_from_slice(name.as_bytes());
                    self.strs.push(0);
                    o
                }
            };
            self.tok(FDT_PROP);
            self.strct
                .extend_from_slice(&(v.len() as u32).to_be_bytes());
            self.strct.extend_from_slice(&(off as u32).to_be_bytes());
            self.strct.extend_from_slice(v);
            self.pad();
            self
        }
        pub(crate) fn str(&mut self, name: &str, v: &str) -> &mut Self {
            let mut b = v.as_bytes().to_vec();
            b.push(0);
            self.prop(name, &b)
        }
        pub(crate) fn cells(&mut self, name: &str, v: &[u32]) -> &mut Self {
            let b: Vec<u8> = v.iter().flat_map(|c| c.to_be_bytes()).collect();
            self.prop(name, &b)
        }
        pub(crate) fn reserve(&mut self, a: u64, s: u64) -> &mut Self {
            self.rsv.push((a, s));
            self
        }
        pub(crate) fn build(&mut self) -> Vec<u8> {
            self.tok(FDT_END);
            let rsv_off = 40usize;
            let struct_off = rsv_off + 16 * (self.rsv.len() + 1);
            let str_off = struct_off + self.strct.len();
            let total = str_off + self.strs.len();
            let mut out = Vec::new();
            for v in [
                FDT_MAGIC,
                total as u32,
                struct_off as u32,
                str_off as u32,
                rsv_off as u32,
                17,
                16,
                0,
                self.strs.len() as u32,
                self.strct.len() as u32,
            ] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            for (a, s) in self.rsv.iter().chain(core::iter::once(&(0, 0))) {
                out.extend_from_slice(&a.to_be_bytes());
                out.extend_from_slice(&s.to_be_bytes());
            }
            out.extend_from_slice(&self.strct);
            out.extend_from_slice(&self.strs);
            out
        }
    }

    /// A Raspberry Pi 4-like tree: /soc with non-identity ranges, an aliased
    /// stdout-path with options, spin-table CPUs, reserved memory, several memory nodes.
    fn rpi4_like() -> Vec<u8> {
        rpi4_like_with("spin-table")
    }

    /// [`rpi4_like`] with the CPUs' `enable-method` given (the board tests use it too).
    pub(crate) fn rpi4_like_with(enable_method: &str) -> Vec<u8> {
        let mut b = Builder::new();
        b.reserve(0, 0x1000);
        b.begin("")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[1])
            .prop("compatible", b"raspberrypi,4-model-b\0brcm,bcm2711\0")
            .str("model", "Raspberry Pi 4 Model B")
            .cells("interrupt-parent", &[1]);
        b.begin("aliases")
            .str("serial1", "/soc/serial@7e201000")
            .end();
        b.begin("chosen")
            .str("stdout-path", "serial1:115200n8")
            .cells("linux,initrd-start", &[0x0200_0000])
            .cells("linux,initrd-end", &[0, 0x0210_0000])
            .end();
        b.begin("memory@0")
            .str("device_type", "memory")
            .cells("reg", &[0, 0, 0x3b40_0000, 0, 0x4000_0000, 0xbc00_0000])
            .end();
        b.begin("memory@100000000")
            .str("device_type", "memory")
            .cells("reg", &[1, 0, 0x8000_0000])
            .end();
        b.begin("reserved-memory")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[1])
            .prop("ranges", &[]);
        b.begin("linux,cma")
            .str("compatible", "shared-dma-pool")
            .cells("size", &[0x400_0000])
            .end();
        b.begin("nvram@0")
            .cells("reg", &[0, 0x3ee0_0000, 0x1000])
            .end();
        b.end();
        b.begin("cpus")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[0]);
        for i in 0..4u32 {
            b.begin(&alloc::format!("cpu@{i}"))
                .str("device_type", "cpu")
                .cells("reg", &[i])
                .str("enable-method", enable_method)
                .cells("cpu-release-addr", &[0, 0xd8 + 8 * i])
                .end();
        }
        b.end();
        b.begin("psci")
            .prop("compatible", b"arm,psci-1.0\0arm,psci-0.2\0")
            .str("method", "smc")
            .end();
        b.begin("timer")
            .prop("compatible", b"arm,armv8-timer\0arm,armv7-timer\0")
            .cells(
                "interrupts",
                &[1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08, 1, 10, 0xf08],
            )
            .cells("clock-frequency", &[54_000_000])
            .end();
        b.begin("soc")
            .str("compatible", "simple-bus")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[1])
            .cells(
                "ranges",
                &[
                    0x7e00_0000,
                    0,
                    0xfe00_0000,
                    0x0180_0000,
                    0x4000_0000,
                    0,
                    0xff80_0000,
                    0x0080_0000,
                ],
            )
            .cells("dma-ranges", &[0xc000_0000, 0, 0, 0x4000_0000]);
        b.begin("gpio@7e200000")
            .str("compatible", "brcm,bcm2711-gpio")
            .cells("reg", &[0x7e20_0000, 0xb4]);
        b.begin("uart0_gpio14")
            .cells("brcm,pins", &[14, 15])
            .cells("brcm,function", &[4])
            .cells("phandle", &[2])
            .end();
        b.begin("uart0_ctsrts_gpio30")
            .cells("brcm,pins", &[30, 31])
            .cells("brcm,function", &[7, 7])
            .cells("phandle", &[3])
            .end();
        b.end();
        b.begin("serial@7e201000")
            .prop("compatible", b"arm,pl011\0arm,primecell\0")
            .cells("reg", &[0x7e20_1000, 0x200])
            .cells("clock-frequency", &[48_000_000])
            .prop("pinctrl-names", b"sleep\0default\0")
            .cells("pinctrl-0", &[3])
            .cells("pinctrl-1", &[2, 3, 99])
            .end();
        b.begin("interrupt-controller@40041000")
            .str("compatible", "arm,gic-400")
            .prop("interrupt-controller", &[])
            .cells("#interrupt-cells", &[3])
            .cells("phandle", &[1])
            .cells(
                "reg",
                &[
                    0x4004_1000,
                    0x1000,
                    0x4004_2000,
                    0x2000,
                    0x4004_4000,
                    0x2000,
                    0x4004_6000,
                    0x2000,
                ],
            )
            .cells("interrupts", &[1, 9, 0xf04])
            .end();
        b.end();
        // A bus whose window reaches further: the lower limit (/soc's) wins.
        b.begin("emmc2bus")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[1])
            .cells("ranges", &[0, 0x7e00_0000, 0, 0xfe00_0000, 0x0180_0000])
            .cells("dma-ranges", &[0, 0, 0, 0, 0xfc00_0000])
            .end();
        b.begin("firmware").prop("dma-ranges", &[]).end();
        b.end();
        b.build()
    }

    #[test]
    fn synthetic_rpi4_like_tree() {
        let blob = rpi4_like();
        let p = parse(&blob).unwrap();
        assert_eq!(
            p.compatible.as_slice(),
            &["raspberrypi,4-model-b", "brcm,bcm2711"]
        );
        assert_eq!(
            p.memory.as_slice(),
            &[
                r(0, 0x3b40_0000),
                r(0x4000_0000, 0xbc00_0000),
                r(0x1_0000_0000, 0x8000_0000)
            ]
        );
        assert_eq!(
            p.reserved.as_slice(),
            &[r(0, 0x1000), r(0x3ee0_0000, 0x1000)]
        );
        assert_eq!(p.cpus.len(), 4);
        assert_eq!(p.cpus.as_slice()[3].enable_method, Some("spin-table"));
        assert_eq!(
            p.cpus.as_slice()[3].release_addr,
            Some(HostPhysAddr::new(0xf0))
        );
        assert_eq!(p.psci.unwrap().cpu_on, None);
        let uart = p.uart.unwrap();
        assert_eq!(uart.base, HostPhysAddr::new(0xfe20_1000));
        assert_eq!(uart.path, "/soc/serial@7e201000");
        assert_eq!(uart.baud, Some(115_200));
        assert_eq!(uart.clock_hz, Some(48_000_000));
        // The "default" state is pinctrl-1; phandle 99 does not exist and is skipped.
        let pm = |pin, function| PinMux { pin, function };
        assert_eq!(
            uart.pins.as_deref(),
            Some(&[pm(14, 4), pm(15, 4), pm(30, 7), pm(31, 7)][..])
        );
        assert_eq!(
            p.dma_limit,
            Some(DmaLimit {
                bus: "soc",
                limit: 0x4000_0000
            })
        );
        let gic = p.gic.unwrap();
        assert_eq!(gic.gicd, r(0xff84_1000, 0x1000));
        assert_eq!(gic.gicc, Some(r(0xff84_2000, 0x2000)));
        assert_eq!(gic.gicv, Some(r(0xff84_6000, 0x2000)));
        assert_eq!(p.timer.unwrap().clock_frequency, Some(54_000_000));
        assert_eq!(p.initrd, Some(r(0x0200_0000, 0x10_0000)));
        assert_eq!(p.model_or_compatible(), "Raspberry Pi 4 Model B");
        assert_eq!(p.device_ranges().len(), 5);
    }

    #[test]
    fn stdout_not_pl011_or_missing() {
        let mut b = Builder::new();
        b.begin("")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[1]);
        b.begin("chosen").str("stdout-path", "/uart@1000").end();
        b.begin("uart@1000")
            .str("compatible", "ns16550a")
            .cells("reg", &[0x1000, 0x100])
            .end();
        b.begin("memory@0")
            .str("device_type", "memory")
            .cells("reg", &[0, 0x1000_0000])
            .end();
        b.begin("cpus")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[0]);
        b.begin("cpu@0")
            .str("device_type", "cpu")
            .cells("reg", &[0])
            .end();
        b.end();
        b.end();
        let blob = b.build();
        let p = parse(&blob).unwrap();
        assert_eq!(p.stdout_path, Some("/uart@1000"));
        assert_eq!(p.uart, None);
        assert_eq!(p.gic, None);
        assert_eq!(p.psci, None);
        assert_eq!(p.timer, None);
    }

    #[test]
    fn structural_errors() {
        // No memory.
        let mut b = Builder::new();
        b.begin("");
        b.begin("cpus")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[0]);
        b.begin("cpu@0")
            .str("device_type", "cpu")
            .cells("reg", &[0])
            .end();
        b.end();
        b.end();
        assert_eq!(parse(&b.build()), Err(DtError::MissingNode("memory")));
        // Property after a subnode.
        let mut b = Builder::new();
        b.begin("");
        b.begin("a").end();
        b.str("late", "x");
        b.end();
        assert!(matches!(
            parse(&b.build()),
            Err(DtError::Malformed {
                what: "property after a subnode",
                ..
            })
        ));
        // Bad #address-cells length.
        let mut b = Builder::new();
        b.begin("").prop("#address-cells", &[0, 1]).end();
        assert!(matches!(parse(&b.build()), Err(DtError::Malformed { .. })));
        // Unbalanced.
        let mut b = Builder::new();
        b.begin("");
        assert!(matches!(parse(&b.build()), Err(DtError::Malformed { .. })));
        // Alias loop is harmless.
        let mut b = Builder::new();
        b.begin("");
        b.begin("aliases").str("a", "a").str("/x", "/x").end();
        b.begin("chosen").str("stdout-path", "a").end();
        b.begin("memory")
            .str("device_type", "memory")
            .cells("reg", &[0, 0, 0x1000])
            .end();
        b.begin("cpus")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[0]);
        b.begin("cpu@0")
            .str("device_type", "cpu")
            .cells("reg", &[0])
            .end();
        b.end();
        b.end();
        let blob = b.build();
        assert_eq!(parse(&blob).unwrap().uart, None);
        // Too deep.
        let mut b = Builder::new();
        b.begin("");
        for _ in 0..MAX_DEPTH + 1 {
            b.begin("n");
        }
        for _ in 0..MAX_DEPTH + 2 {
            b.end();
        }
        assert!(matches!(
            parse(&b.build()),
            Err(DtError::Malformed {
                what: "nodes nested too deeply",
                ..
            })
        ));
    }

    /// Inserts a NOP token before every property of a builder-made blob.
    fn with_nops(blob: &[u8]) -> Vec<u8> {
        let h = parse_header(blob).unwrap();
        let mut st = Vec::new();
        let mut p = h.off_struct;
        loop {
            let tok = be32(blob, p).unwrap();
            let len = match tok {
                FDT_BEGIN_NODE => {
                    4 + align4(blob[p + 4..].iter().position(|&c| c == 0).unwrap() + 1)
                }
                FDT_PROP => 12 + align4(be32(blob, p + 4).unwrap() as usize),
                _ => 4,
            };
            if tok == FDT_PROP {
                st.extend_from_slice(&FDT_NOP.to_be_bytes());
            }
            st.extend_from_slice(&blob[p..p + len]);
            p += len;
            if tok == FDT_END {
                break;
            }
        }
        let mut out = blob[..h.off_struct].to_vec();
        let str_off = out.len() + st.len();
        out.extend_from_slice(&st);
        out.extend_from_slice(&blob[h.off_strings..h.off_strings + h.size_strings]);
        let total = out.len();
        out[4..8].copy_from_slice(&(total as u32).to_be_bytes());
        out[12..16].copy_from_slice(&(str_off as u32).to_be_bytes());
        out[36..40].copy_from_slice(&(st.len() as u32).to_be_bytes());
        out
    }

    #[test]
    fn nops_are_rejected_then_stripped() {
        let nopped = with_nops(GICV2);
        assert!(nopped.len() > GICV2.len());
        assert!(matches!(parse(&nopped), Err(DtError::Malformed { .. })));
        let mut buf = vec![0u8; nopped.len()];
        let n = strip_nops(&nopped, &mut buf).unwrap();
        assert_eq!(&buf[..n], GICV2);
        assert_eq!(parse(&buf[..n]).unwrap(), parse(GICV2).unwrap());
        let mut small = vec![0u8; 100];
        assert!(matches!(
            strip_nops(&nopped, &mut small),
            Err(DtError::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn strip_nops_never_panics(edits in proptest::collection::vec((0usize..9000, any::<u8>()), 0..6)) {
            let mut v = with_nops(GICV3);
            let len = v.len();
            for (i, x) in edits {
                v[i % len] = x;
            }
            let mut buf = vec![0u8; len];
            if let Ok(n) = strip_nops(&v, &mut buf) {
                let _ = parse(&buf[..n]);
            }
        }

        #[test]
        fn random_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&v);
            let _ = fdt_total_size(&v);
        }

        #[test]
        fn truncations_never_panic(n in 0usize..8000) {
            let n = n.min(GICV2.len());
            let r = parse(&GICV2[..n]);
            if n < GICV2.len() {
                prop_assert!(r.is_err());
            }
        }

        #[test]
        fn mutations_never_panic(edits in proptest::collection::vec((0usize..7815, any::<u8>()), 1..8), which in any::<bool>()) {
            let mut v = if which { GICV2.to_vec() } else { GICV3.to_vec() };
            let len = v.len();
            for (i, x) in edits {
                v[i % len] = x;
            }
            let _ = parse(&v);
        }

        #[test]
        fn word_mutations_never_panic(edits in proptest::collection::vec((0usize..2000, any::<u32>()), 1..4)) {
            let mut v = rpi4_like();
            let words = v.len() / 4;
            for (i, x) in edits {
                let i = (i % words) * 4;
                v[i..i + 4].copy_from_slice(&x.to_be_bytes());
            }
            let _ = parse(&v);
        }
    }
}
