//! MMIO emulation: decoding a trapped access from a data-abort syndrome and routing it
//! to the emulated device that owns the faulting IPA.
//!
//! Flow for a stage-2 data abort on an emulated range (the arch layer does the register
//! and ELR parts):
//! 1. [`MmioAccess::from_iss`] turns the ISS into an access description (ISV=0 is an
//!    error: the caller injects an external abort into the guest);
//! 2. for a write, [`MmioAccess::store_value`] gives the data from the source register;
//! 3. [`MmioRouter::dispatch`] finds the device, calls it and returns, for a read, the
//!    value to put in the destination register, already sized and sign-extended;
//! 4. the caller advances ELR_EL2 by the instruction length.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::Any;
use core::fmt;

use crate::addr::{GuestPhysAddr, GuestRange};
use crate::esr::DataAbortIss;

/// Errors of the MMIO decode and routing path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// The data abort had no valid instruction syndrome (ISV=0), e.g. LDP/STP or a
    /// post-indexed access: it cannot be emulated.
    NoSyndrome,
    /// No device covers this IPA.
    Unmapped(GuestPhysAddr),
    /// The access runs past the end of the device's range.
    CrossesRange(GuestPhysAddr),
    /// An access size other than 1, 2, 4 or 8.
    BadSize(u8),
    /// A device registration overlaps an existing one.
    Overlap {
        /// The range being registered.
        new: GuestRange,
        /// The already registered range it overlaps.
        existing: GuestRange,
    },
    /// A device registration with an empty or wrapping range.
    BadRange(GuestRange),
    /// The device rejected the access.
    Device {
        /// Which device.
        id: DeviceId,
        /// What it said.
        err: DeviceError,
    },
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSyndrome => write!(f, "data abort without a valid syndrome (ISV=0)"),
            Self::Unmapped(a) => write!(f, "no emulated device at {a}"),
            Self::CrossesRange(a) => write!(f, "access at {a} crosses the end of a device range"),
            Self::BadSize(s) => write!(f, "bad MMIO access size {s}"),
            Self::Overlap { new, existing } => write!(
                f,
                "device range {}+{:#x} overlaps {}+{:#x}",
                new.start, new.size, existing.start, existing.size
            ),
            Self::BadRange(r) => write!(f, "bad device range {}+{:#x}", r.start, r.size),
            Self::Device { id, err } => write!(f, "device #{}: {err}", id.0),
        }
    }
}

/// An error reported by an emulated device for one access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// The device does not support this access size at this offset.
    BadSize {
        /// Offset in the device.
        offset: u64,
        /// Access size in bytes.
        size: u8,
    },
    /// The offset is outside the device or not aligned.
    BadOffset(u64),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSize { offset, size } => {
                write!(f, "unsupported {size}-byte access at offset {offset:#x}")
            }
            Self::BadOffset(o) => write!(f, "bad offset {o:#x}"),
        }
    }
}

/// An emulated MMIO device. Offsets are relative to the start of the device's range;
/// sizes are 1, 2, 4 or 8 bytes. Implementations must not panic on any offset, size or
/// value: all three come from the guest.
pub trait MmioDevice: Any + Send {
    /// Short name for logs and counters (e.g. "pl011").
    fn name(&self) -> &str;
    /// Reads `size` bytes at `offset`; the result's bits above `size` are ignored.
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, DeviceError>;
    /// Writes the low `size` bytes of `value` at `offset`.
    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), DeviceError>;
    /// Called when the VM is reset (PSCI SYSTEM_RESET). Default: nothing.
    fn on_reset(&mut self) {}
}

/// A decoded MMIO access (from the ISS of a data abort with ISV=1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// Access size in bytes: 1, 2, 4 or 8 (SAS).
    pub size: u8,
    /// The load sign-extends (SSE).
    pub sign_extend: bool,
    /// The transfer register (SRT); 31 is the zero register on writes and means
    /// "discard" on reads.
    pub reg: u8,
    /// The register is 64-bit (SF): X rather than W.
    pub reg64: bool,
    /// A write (WnR).
    pub write: bool,
    /// Acquire/release semantics (AR).
    pub acquire_release: bool,
}

/// Mask of the low `size` bytes (size 8 or more: all ones).
const fn size_mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size as u32 * 8)) - 1
    }
}

impl MmioAccess {
    /// Builds an access from a decoded data-abort ISS; `NoSyndrome` when ISV=0.
    pub fn from_iss(iss: &DataAbortIss) -> Result<Self, MmioError> {
        if !iss.isv {
            return Err(MmioError::NoSyndrome);
        }
        Ok(Self {
            size: iss.access_size(),
            sign_extend: iss.sse,
            reg: iss.srt,
            reg64: iss.sf,
            write: iss.wnr,
            acquire_release: iss.ar,
        })
    }

    /// Same as [`MmioAccess::from_iss`], from the raw ISS bits (ESR_EL2[24:0]).
    pub fn from_raw_iss(iss: u32) -> Result<Self, MmioError> {
        Self::from_iss(&DataAbortIss::from_iss(iss))
    }

    /// The data a write stores, given the source register's value: the low `size`
    /// bytes, and zero when the source is register 31 (XZR/WZR).
    pub const fn store_value(&self, reg_value: u64) -> u64 {
        if self.reg == 31 {
            0
        } else {
            reg_value & size_mask(self.size)
        }
    }

    /// The value a read puts in the destination register, given the device's raw
    /// result: truncated to the access size, sign-extended from it when SSE is set,
    /// and with the upper 32 bits zeroed for a W destination (SF=0).
    pub const fn load_value(&self, raw: u64) -> u64 {
        let bits = self.size as u32 * 8;
        let mut v = raw & size_mask(self.size);
        if self.sign_extend && bits < 64 {
            let shift = 64 - bits;
            v = (((v << shift) as i64) >> shift) as u64;
        }
        if !self.reg64 {
            v &= 0xffff_ffff;
        }
        v
    }
}

/// Identifies a device registered with a [`MmioRouter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceId(pub usize);

/// Per-device access counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Reads dispatched to the device.
    pub reads: u64,
    /// Writes dispatched to the device.
    pub writes: u64,
    /// Accesses the device rejected.
    pub errors: u64,
}

struct Slot {
    range: GuestRange,
    dev: Box<dyn MmioDevice>,
    stats: DeviceStats,
}

/// What a dispatched access asks the caller to do with the guest's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioOutcome {
    /// The device that handled the access.
    pub device: DeviceId,
    /// For a read into a register other than 31: `(register, value)` to write back.
    pub writeback: Option<(u8, u64)>,
}

/// The MMIO devices of one VM, keyed by guest-physical range.
#[derive(Default)]
pub struct MmioRouter {
    slots: Vec<Slot>,
}

impl MmioRouter {
    /// An empty router.
    pub const fn new() -> Self {
        Self { slots: Vec::new() }
    }

    /// Registers `dev` for `range`; fails if the range is empty, wraps, or overlaps a
    /// registered one.
    pub fn register(
        &mut self,
        range: GuestRange,
        dev: Box<dyn MmioDevice>,
    ) -> Result<DeviceId, MmioError> {
        if range.size == 0 || range.start.0.checked_add(range.size).is_none() {
            return Err(MmioError::BadRange(range));
        }
        for s in &self.slots {
            if range.start.0 < s.range.end() && s.range.start.0 < range.end() {
                return Err(MmioError::Overlap {
                    new: range,
                    existing: s.range,
                });
            }
        }
        self.slots.push(Slot {
            range,
            dev,
            stats: DeviceStats::default(),
        });
        Ok(DeviceId(self.slots.len() - 1))
    }

    /// The device covering `ipa`, if any.
    pub fn lookup(&self, ipa: GuestPhysAddr) -> Option<DeviceId> {
        self.slots
            .iter()
            .position(|s| s.range.contains(ipa))
            .map(DeviceId)
    }

    /// True if some device covers `ipa`.
    pub fn is_emulated(&self, ipa: GuestPhysAddr) -> bool {
        self.lookup(ipa).is_some()
    }

    /// Performs `access` at `ipa`. For a write, `reg_value` is the source register's
    /// current value (ignored when the register is 31); for a read it is unused.
    /// Counts the access against the device.
    pub fn dispatch(
        &mut self,
        ipa: GuestPhysAddr,
        access: &MmioAccess,
        reg_value: u64,
    ) -> Result<MmioOutcome, MmioError> {
        if !matches!(access.size, 1 | 2 | 4 | 8) {
            return Err(MmioError::BadSize(access.size));
        }
        let id = self.lookup(ipa).ok_or(MmioError::Unmapped(ipa))?;
        let slot = &mut self.slots[id.0];
        if !slot.range.contains_span(ipa, access.size as u64) {
            return Err(MmioError::CrossesRange(ipa));
        }
        let offset = ipa - slot.range.start;
        if access.write {
            slot.stats.writes += 1;
            let v = access.store_value(reg_value);
            if let Err(err) = slot.dev.write(offset, access.size, v) {
                slot.stats.errors += 1;
                return Err(MmioError::Device { id, err });
            }
            Ok(MmioOutcome {
                device: id,
                writeback: None,
            })
        } else {
            slot.stats.reads += 1;
            match slot.dev.read(offset, access.size) {
                Ok(raw) => Ok(MmioOutcome {
                    device: id,
                    writeback: (access.reg != 31).then(|| (access.reg, access.load_value(raw))),
                }),
                Err(err) => {
                    slot.stats.errors += 1;
                    Err(MmioError::Device { id, err })
                }
            }
        }
    }

    /// Calls [`MmioDevice::on_reset`] on every device.
    pub fn reset_devices(&mut self) {
        for s in &mut self.slots {
            s.dev.on_reset();
        }
    }

    /// Number of registered devices.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True if no device is registered.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The name of a device.
    pub fn name(&self, id: DeviceId) -> Option<&str> {
        self.slots.get(id.0).map(|s| s.dev.name())
    }

    /// The range of a device.
    pub fn range(&self, id: DeviceId) -> Option<GuestRange> {
        self.slots.get(id.0).map(|s| s.range)
    }

    /// The access counters of a device.
    pub fn stats(&self, id: DeviceId) -> Option<DeviceStats> {
        self.slots.get(id.0).map(|s| s.stats)
    }

    /// Total accesses (reads + writes) over all devices.
    pub fn total_accesses(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.stats.reads + s.stats.writes)
            .sum()
    }

    /// `(name, range, counters)` of every device, in registration order.
    pub fn iter_stats(&self) -> impl Iterator<Item = (&str, GuestRange, DeviceStats)> {
        self.slots.iter().map(|s| (s.dev.name(), s.range, s.stats))
    }

    /// The registered device `id` as its concrete type `T` (e.g. to push console input
    /// into an emulated PL011), or `None` if the id or the type does not match.
    pub fn device_mut<T: MmioDevice>(&mut self, id: DeviceId) -> Option<&mut T> {
        let dev: &mut dyn Any = self.slots.get_mut(id.0)?.dev.as_mut();
        dev.downcast_mut::<T>()
    }

    /// The first registered device of concrete type `T`.
    pub fn find_mut<T: MmioDevice>(&mut self) -> Option<&mut T> {
        self.slots.iter_mut().find_map(|s| {
            let dev: &mut dyn Any = s.dev.as_mut();
            dev.downcast_mut::<T>()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A device that remembers the last write and returns a fixed value.
    struct Probe {
        value: u64,
        last: Option<(u64, u8, u64)>,
        resets: u32,
    }

    impl MmioDevice for Probe {
        fn name(&self) -> &str {
            "probe"
        }
        fn read(&mut self, offset: u64, _size: u8) -> Result<u64, DeviceError> {
            if offset == 0x100 {
                return Err(DeviceError::BadOffset(offset));
            }
            Ok(self.value)
        }
        fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), DeviceError> {
            self.last = Some((offset, size, value));
            Ok(())
        }
        fn on_reset(&mut self) {
            self.resets += 1;
        }
    }

    fn probe(value: u64) -> Box<Probe> {
        Box::new(Probe {
            value,
            last: None,
            resets: 0,
        })
    }

    fn iss(isv: bool, sas: u8, sse: bool, srt: u8, sf: bool, ar: bool, wnr: bool) -> u32 {
        (isv as u32) << 24
            | (sas as u32) << 22
            | (sse as u32) << 21
            | (srt as u32) << 16
            | (sf as u32) << 15
            | (ar as u32) << 14
            | (wnr as u32) << 6
            | 0x07
    }

    fn gpa(a: u64) -> GuestPhysAddr {
        GuestPhysAddr::new(a)
    }

    #[test]
    fn decode_access() {
        let a = MmioAccess::from_raw_iss(iss(true, 2, false, 5, false, false, true)).unwrap();
        assert_eq!(
            a,
            MmioAccess {
                size: 4,
                sign_extend: false,
                reg: 5,
                reg64: false,
                write: true,
                acquire_release: false
            }
        );
        let a = MmioAccess::from_raw_iss(iss(true, 3, false, 31, true, true, false)).unwrap();
        assert_eq!(
            (a.size, a.reg, a.reg64, a.write, a.acquire_release),
            (8, 31, true, false, true)
        );
        assert_eq!(
            MmioAccess::from_raw_iss(iss(false, 2, false, 5, false, false, true)),
            Err(MmioError::NoSyndrome)
        );
    }

    #[test]
    fn load_value_extension() {
        let mk = |size, sse, sf| MmioAccess {
            size,
            sign_extend: sse,
            reg: 0,
            reg64: sf,
            write: false,
            acquire_release: false,
        };
        // LDRB w0: zero-extend.
        assert_eq!(mk(1, false, false).load_value(0xffff_ff80), 0x80);
        // LDRSB w0: sign-extend to 32 bits, upper half zero.
        assert_eq!(mk(1, true, false).load_value(0x80), 0xffff_ff80);
        // LDRSB x0: sign-extend to 64 bits.
        assert_eq!(mk(1, true, true).load_value(0x80), 0xffff_ffff_ffff_ff80);
        assert_eq!(mk(1, true, true).load_value(0x7f), 0x7f);
        // LDRSH w0 / x0.
        assert_eq!(mk(2, true, false).load_value(0x8001), 0xffff_8001);
        assert_eq!(
            mk(2, true, true).load_value(0x1_8001),
            0xffff_ffff_ffff_8001
        );
        assert_eq!(mk(2, false, true).load_value(0x1_8001), 0x8001);
        // LDR w0 / LDRSW x0.
        assert_eq!(
            mk(4, false, false).load_value(0xdead_beef_8000_0000),
            0x8000_0000
        );
        assert_eq!(
            mk(4, true, true).load_value(0x8000_0000),
            0xffff_ffff_8000_0000
        );
        // LDR x0.
        assert_eq!(mk(8, false, true).load_value(u64::MAX), u64::MAX);
        assert_eq!(
            mk(8, true, true).load_value(0x8000_0000_0000_0000),
            0x8000_0000_0000_0000
        );
    }

    #[test]
    fn store_value_masks_and_zero_register() {
        let mut a = MmioAccess::from_raw_iss(iss(true, 0, false, 3, false, false, true)).unwrap();
        assert_eq!(a.store_value(0x1234), 0x34);
        a.size = 2;
        assert_eq!(a.store_value(0xabcd_1234), 0x1234);
        a.size = 8;
        assert_eq!(a.store_value(u64::MAX), u64::MAX);
        a.reg = 31;
        assert_eq!(a.store_value(u64::MAX), 0);
    }

    #[test]
    fn register_rejects_overlaps() {
        let mut r = MmioRouter::new();
        let a = r
            .register(GuestRange::new(gpa(0x0900_0000), 0x1000), probe(0))
            .unwrap();
        r.register(GuestRange::new(gpa(0x0900_1000), 0x1000), probe(0))
            .unwrap();
        assert!(matches!(
            r.register(GuestRange::new(gpa(0x08ff_f000), 0x1001), probe(0)),
            Err(MmioError::Overlap { .. })
        ));
        assert!(matches!(
            r.register(GuestRange::new(gpa(0x0900_0fff), 1), probe(0)),
            Err(MmioError::Overlap { .. })
        ));
        assert!(matches!(
            r.register(GuestRange::new(gpa(0x1000), 0), probe(0)),
            Err(MmioError::BadRange(_))
        ));
        assert!(matches!(
            r.register(GuestRange::new(gpa(u64::MAX - 10), 0x100), probe(0)),
            Err(MmioError::BadRange(_))
        ));
        assert_eq!(r.len(), 2);
        assert_eq!(r.lookup(gpa(0x0900_0fff)), Some(a));
        assert_eq!(r.lookup(gpa(0x0900_2000)), None);
    }

    #[test]
    fn dispatch_read_write_and_counters() {
        let mut r = MmioRouter::new();
        let id = r
            .register(
                GuestRange::new(gpa(0x0b00_0000), 0x1000),
                probe(0xffff_ffff_ffff_fff0),
            )
            .unwrap();
        // STRH w7 -> offset 0x10.
        let w = MmioAccess::from_raw_iss(iss(true, 1, false, 7, false, false, true)).unwrap();
        let out = r.dispatch(gpa(0x0b00_0010), &w, 0x1_2345).unwrap();
        assert_eq!(out.writeback, None);
        assert_eq!(
            r.device_mut::<Probe>(id).unwrap().last,
            Some((0x10, 2, 0x2345))
        );
        // LDRSB x2.
        let rd = MmioAccess::from_raw_iss(iss(true, 0, true, 2, true, false, false)).unwrap();
        let out = r.dispatch(gpa(0x0b00_0000), &rd, 0).unwrap();
        assert_eq!(out.writeback, Some((2, 0xffff_ffff_ffff_fff0)));
        // LDR wzr: discarded.
        let rz = MmioAccess::from_raw_iss(iss(true, 2, false, 31, false, false, false)).unwrap();
        assert_eq!(
            r.dispatch(gpa(0x0b00_0000), &rz, 0).unwrap().writeback,
            None
        );
        // Device error is reported and counted.
        assert_eq!(
            r.dispatch(gpa(0x0b00_0100), &rd, 0),
            Err(MmioError::Device {
                id,
                err: DeviceError::BadOffset(0x100)
            })
        );
        // Unmapped and crossing accesses.
        assert_eq!(
            r.dispatch(gpa(0x0c00_0000), &rd, 0),
            Err(MmioError::Unmapped(gpa(0x0c00_0000)))
        );
        let r8 = MmioAccess::from_raw_iss(iss(true, 3, false, 1, true, false, false)).unwrap();
        assert_eq!(
            r.dispatch(gpa(0x0b00_0ffc), &r8, 0),
            Err(MmioError::CrossesRange(gpa(0x0b00_0ffc)))
        );
        let st = r.stats(id).unwrap();
        assert_eq!(
            st,
            DeviceStats {
                reads: 3,
                writes: 1,
                errors: 1
            }
        );
        assert_eq!(r.total_accesses(), 4);
        assert_eq!(r.name(id), Some("probe"));
        assert_eq!(r.iter_stats().count(), 1);
        r.reset_devices();
        assert_eq!(r.find_mut::<Probe>().unwrap().resets, 1);
    }

    /// The default VM's test device driven through ISS-decoded accesses, as the
    /// on-target MMIO tests do: every size, signed loads into W and X, stores from XZR.
    #[test]
    fn testdev_through_the_router() {
        use crate::devices::TestDev;
        let mut r = MmioRouter::new();
        r.register(
            GuestRange::new(gpa(0x0b00_0000), 0x1000),
            Box::new(TestDev::new()),
        )
        .unwrap();
        // (SAS, SSE, SRT, SF, WnR)
        let acc = |sas, sse, srt, sf, wnr| {
            MmioAccess::from_raw_iss(iss(true, sas, sse, srt, sf, false, wnr)).unwrap()
        };
        let mut run =
            |a: MmioAccess, addr: u64, v: u64| r.dispatch(gpa(addr), &a, v).unwrap().writeback;
        // LDR w8, [ID]
        assert_eq!(
            run(acc(2, false, 8, false, false), 0x0b00_0000, 0),
            Some((8, 0x4856_5444))
        );
        // STR x1, then STR w4 / STRH w3 / STRB w2 into SCRATCH.
        assert_eq!(
            run(
                acc(3, false, 1, true, true),
                0x0b00_0008,
                0x1111_2222_3333_4444
            ),
            None
        );
        run(acc(2, false, 4, false, true), 0x0b00_0008, 0x5555_6666);
        run(acc(1, false, 3, false, true), 0x0b00_000a, 0xdead_8001);
        run(acc(0, false, 2, false, true), 0x0b00_000f, 0xffff_ff80);
        // LDR x5 sees all four writes.
        assert_eq!(
            run(acc(3, false, 5, true, false), 0x0b00_0008, 0),
            Some((5, 0x8011_2222_8001_6666))
        );
        // LDRSB x6 / LDRSB w6 / LDRB w6 of the top byte 0x80.
        assert_eq!(
            run(acc(0, true, 6, true, false), 0x0b00_000f, 0),
            Some((6, 0xffff_ffff_ffff_ff80))
        );
        assert_eq!(
            run(acc(0, true, 6, false, false), 0x0b00_000f, 0),
            Some((6, 0xffff_ff80))
        );
        assert_eq!(
            run(acc(0, false, 6, false, false), 0x0b00_000f, 0),
            Some((6, 0x80))
        );
        // LDRSH w7 / LDRSH x7 of 0x8001.
        assert_eq!(
            run(acc(1, true, 7, false, false), 0x0b00_000a, 0),
            Some((7, 0xffff_8001))
        );
        assert_eq!(
            run(acc(1, true, 7, true, false), 0x0b00_000a, 0),
            Some((7, 0xffff_ffff_ffff_8001))
        );
        // LDRSW x9 of 0x8011_2222.
        assert_eq!(
            run(acc(2, true, 9, true, false), 0x0b00_000c, 0),
            Some((9, 0xffff_ffff_8011_2222))
        );
        // STR xzr clears SCRATCH whatever register 31 holds (SP on other paths).
        run(
            acc(3, false, 31, true, true),
            0x0b00_0008,
            0xffff_ffff_ffff_ffff,
        );
        assert_eq!(
            run(acc(3, false, 0, true, false), 0x0b00_0008, 0),
            Some((0, 0))
        );
        // PERSIST0 64-bit round trip.
        run(
            acc(3, false, 1, true, true),
            0x0b00_0020,
            0x0123_4567_89ab_cdef,
        );
        assert_eq!(
            run(acc(3, false, 2, true, false), 0x0b00_0020, 0),
            Some((2, 0x0123_4567_89ab_cdef))
        );
    }

    proptest! {
        #[test]
        fn dispatch_never_panics(iss_bits in any::<u32>(), addr in 0x0aff_f000u64..0x0b00_2000, v in any::<u64>()) {
            let mut r = MmioRouter::new();
            r.register(GuestRange::new(gpa(0x0b00_0000), 0x1000), probe(v)).unwrap();
            if let Ok(a) = MmioAccess::from_raw_iss(iss_bits & 0x1ff_ffff) {
                let _ = r.dispatch(gpa(addr), &a, v);
                let lv = a.load_value(v);
                if !a.reg64 { prop_assert!(lv <= u32::MAX as u64); }
            }
        }
    }
}
