//! The hv test device (docs/GUEST-ABI.md, "Test device"), used by the on-target tests.

use crate::mmio::{DeviceError, MmioDevice};

/// Register offsets and constants of the test device (docs/GUEST-ABI.md).
pub mod reg {
    /// ID, RO 32-bit.
    pub const ID: u64 = 0x00;
    /// SCRATCH, RW, 8 bytes, any naturally aligned 1/2/4/8-byte access in 0x08..0x10.
    pub const SCRATCH: u64 = 0x08;
    /// RESET_COUNT, RO 32-bit.
    pub const RESET_COUNT: u64 = 0x10;
    /// Reserved, RAZ/WI.
    pub const RESERVED: u64 = 0x18;
    /// PERSIST0, RW 64-bit, survives SYSTEM_RESET.
    pub const PERSIST0: u64 = 0x20;
    /// PERSIST1, RW 64-bit, survives SYSTEM_RESET.
    pub const PERSIST1: u64 = 0x28;
    /// The value of ID: "HVTD".
    pub const ID_VALUE: u32 = 0x4856_5444;
    /// Size of the device's IPA window.
    pub const WINDOW: u64 = 0x1000;
}

/// The emulated test device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestDev {
    scratch: u64,
    reset_count: u32,
    persist: [u64; 2],
}

fn mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size as u32 * 8)) - 1
    }
}

impl TestDev {
    /// A device in its power-on state.
    pub const fn new() -> Self {
        Self {
            scratch: 0,
            reset_count: 0,
            persist: [0; 2],
        }
    }

    /// Sets the value RESET_COUNT reads as.
    pub fn set_reset_count(&mut self, n: u32) {
        self.reset_count = n;
    }

    /// The current RESET_COUNT.
    pub const fn reset_count(&self) -> u32 {
        self.reset_count
    }

    /// The current SCRATCH value.
    pub const fn scratch(&self) -> u64 {
        self.scratch
    }

    /// The PERSIST registers.
    pub const fn persist(&self) -> [u64; 2] {
        self.persist
    }

    fn scratch_lane(offset: u64, size: u8) -> Option<u32> {
        let in_window = (reg::SCRATCH..reg::SCRATCH + 8).contains(&offset);
        let aligned = matches!(size, 1 | 2 | 4 | 8) && offset.is_multiple_of(size as u64);
        (in_window && aligned && offset + size as u64 <= reg::SCRATCH + 8)
            .then(|| (offset - reg::SCRATCH) as u32 * 8)
    }
}

impl MmioDevice for TestDev {
    fn name(&self) -> &str {
        "testdev"
    }

    fn read(&mut self, offset: u64, size: u8) -> Result<u64, DeviceError> {
        if let Some(shift) = Self::scratch_lane(offset, size) {
            return Ok((self.scratch >> shift) & mask(size));
        }
        Ok(match (offset, size) {
            (reg::ID, 4) => reg::ID_VALUE as u64,
            (reg::RESET_COUNT, 4) => self.reset_count as u64,
            (reg::RESERVED, 1 | 2 | 4 | 8) => 0,
            (reg::PERSIST0, 8) => self.persist[0],
            (reg::PERSIST1, 8) => self.persist[1],
            _ => {
                crate::guest_warn!("testdev: read of unlisted offset {offset:#x} size {size}: RAZ");
                0
            }
        })
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), DeviceError> {
        if let Some(shift) = Self::scratch_lane(offset, size) {
            let m = mask(size) << shift;
            self.scratch = (self.scratch & !m) | ((value << shift) & m);
            return Ok(());
        }
        match (offset, size) {
            (reg::PERSIST0, 8) => self.persist[0] = value,
            (reg::PERSIST1, 8) => self.persist[1] = value,
            (reg::RESERVED, 1 | 2 | 4 | 8) => {}
            _ => crate::guest_warn!("testdev: write of {value:#x} to unlisted/read-only offset {offset:#x} size {size}: ignored"),
        }
        Ok(())
    }

    /// A VM reset: RESET_COUNT increments, SCRATCH clears, PERSIST0/1 survive.
    fn on_reset(&mut self) {
        self.reset_count = self.reset_count.wrapping_add(1);
        self.scratch = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn id_and_reset_count() {
        let mut d = TestDev::new();
        assert_eq!(d.read(0x00, 4), Ok(0x4856_5444));
        for size in [1, 2, 8] {
            assert_eq!(d.read(0x00, size), Ok(0), "ID size {size}");
        }
        d.write(0x00, 4, 1).unwrap();
        assert_eq!(d.read(0x00, 4), Ok(0x4856_5444));
        assert_eq!(d.read(0x10, 4), Ok(0));
        d.set_reset_count(7);
        assert_eq!(d.read(0x10, 4), Ok(7));
        d.write(0x10, 4, 99).unwrap();
        assert_eq!(d.read(0x10, 4), Ok(7));
        assert_eq!(d.read(0x10, 8), Ok(0));
    }

    #[test]
    fn scratch_every_size_and_offset() {
        let mut d = TestDev::new();
        d.write(0x08, 8, 0x0807_0605_0403_0201).unwrap();
        assert_eq!(d.read(0x08, 8), Ok(0x0807_0605_0403_0201));
        for off in 0x08..0x10u64 {
            assert_eq!(d.read(off, 1), Ok(off - 7), "byte at {off:#x}");
        }
        assert_eq!(d.read(0x08, 2), Ok(0x0201));
        assert_eq!(d.read(0x0a, 2), Ok(0x0403));
        assert_eq!(d.read(0x0c, 2), Ok(0x0605));
        assert_eq!(d.read(0x0e, 2), Ok(0x0807));
        assert_eq!(d.read(0x08, 4), Ok(0x0403_0201));
        assert_eq!(d.read(0x0c, 4), Ok(0x0807_0605));
        // Byte lanes: each write replaces exactly its bytes.
        d.write(0x0b, 1, 0xffff_ffaa).unwrap();
        assert_eq!(d.scratch(), 0x0807_0605_aa03_0201);
        d.write(0x0e, 2, 0xbbcc).unwrap();
        assert_eq!(d.scratch(), 0xbbcc_0605_aa03_0201);
        d.write(0x0c, 4, 0x1122_3344).unwrap();
        assert_eq!(d.scratch(), 0x1122_3344_aa03_0201);
        d.write(0x08, 4, 0xdead_beef_5566_7788).unwrap();
        assert_eq!(d.scratch(), 0x1122_3344_5566_7788);
        // Misaligned accesses are unlisted: RAZ/WI.
        assert_eq!(d.read(0x09, 2), Ok(0));
        assert_eq!(d.read(0x0a, 4), Ok(0));
        assert_eq!(d.read(0x0c, 8), Ok(0));
        d.write(0x09, 2, 0).unwrap();
        d.write(0x0c, 8, 0).unwrap();
        assert_eq!(d.scratch(), 0x1122_3344_5566_7788);
    }

    #[test]
    fn reserved_and_unlisted() {
        let mut d = TestDev::new();
        for size in [1, 2, 4, 8] {
            assert_eq!(d.read(0x18, size), Ok(0));
            d.write(0x18, size, u64::MAX).unwrap();
        }
        for off in [0x04, 0x14, 0x30, 0x100, 0xffc, 0x1000, u64::MAX] {
            assert_eq!(d.read(off, 4), Ok(0));
            d.write(off, 4, 1).unwrap();
        }
        assert_eq!(d, TestDev::new());
    }

    #[test]
    fn persist_survives_reset() {
        let mut d = TestDev::new();
        d.write(0x20, 8, 0x1111_2222_3333_4444).unwrap();
        d.write(0x28, 8, 0x5555_6666_7777_8888).unwrap();
        d.write(0x08, 8, 0x99).unwrap();
        // Only 64-bit accesses reach PERSIST.
        d.write(0x20, 4, 0).unwrap();
        assert_eq!(d.read(0x20, 4), Ok(0));
        d.on_reset();
        d.on_reset();
        assert_eq!(d.read(0x20, 8), Ok(0x1111_2222_3333_4444));
        assert_eq!(d.read(0x28, 8), Ok(0x5555_6666_7777_8888));
        assert_eq!(d.read(0x08, 8), Ok(0));
        assert_eq!(d.read(0x10, 4), Ok(2));
        assert_eq!(d.persist(), [0x1111_2222_3333_4444, 0x5555_6666_7777_8888]);
    }

    /// Every offset of the first 0x40 bytes at every size, against the ABI table.
    #[test]
    fn exhaustive_offsets_and_sizes() {
        let mut d = TestDev::new();
        d.set_reset_count(3);
        d.write(0x08, 8, 0x8877_6655_4433_2211).unwrap();
        d.write(0x20, 8, 0xaaaa).unwrap();
        d.write(0x28, 8, 0xbbbb).unwrap();
        for off in 0..0x40u64 {
            for size in [1u8, 2, 4, 8] {
                let aligned = off % size as u64 == 0;
                let want = match (off, size) {
                    (0x00, 4) => 0x4856_5444,
                    (0x10, 4) => 3,
                    (0x20, 8) => 0xaaaa,
                    (0x28, 8) => 0xbbbb,
                    (0x08..=0x0f, _) if aligned => {
                        let lane = (off - 8) * 8;
                        let m = if size == 8 {
                            u64::MAX
                        } else {
                            (1u64 << (size as u32 * 8)) - 1
                        };
                        (0x8877_6655_4433_2211u64 >> lane) & m
                    }
                    _ => 0,
                };
                assert_eq!(d.read(off, size), Ok(want), "read {size} at {off:#x}");
            }
        }
        // Writes everywhere except SCRATCH/PERSIST change nothing.
        let before = d.clone();
        for off in (0..0x40u64).filter(|o| !(0x08..0x10).contains(o) && *o != 0x20 && *o != 0x28) {
            for size in [1u8, 2, 4, 8] {
                d.write(off, size, u64::MAX).unwrap();
            }
        }
        assert_eq!(d, before);
    }

    proptest! {
        #[test]
        fn never_panics(off in any::<u64>(), size in any::<u8>(), v in any::<u64>()) {
            let mut d = TestDev::new();
            let _ = d.write(off, size, v);
            let _ = d.read(off, size);
        }
    }
}
