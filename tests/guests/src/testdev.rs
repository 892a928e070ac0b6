//! The hypervisor's test device at 0x0b00_0000 (see docs/GUEST-ABI.md).
use crate::exception::catch;

pub const BASE: u64 = 0x0b00_0000;
pub const ID: u64 = 0x00;
pub const SCRATCH: u64 = 0x08;
pub const RESET_COUNT: u64 = 0x10;
pub const RAZ_WI: u64 = 0x18;
pub const PERSIST0: u64 = 0x20;
pub const PERSIST1: u64 = 0x28;
/// Value of the ID register: "HVTD".
pub const ID_VALUE: u32 = 0x4856_5444;

/// 32-bit read of a register; `None` if the access aborted.
pub fn read32(off: u64) -> Option<u32> {
    let (v, fault) = catch(|| {
        // SAFETY: a 32-bit load from the test device page, mapped as Device memory;
        // an abort is caught and skipped by the exception vectors.
        unsafe { core::ptr::read_volatile((BASE + off) as *const u32) }
    });
    fault.is_none().then_some(v)
}

/// 64-bit read of a register; `None` if the access aborted.
pub fn read64(off: u64) -> Option<u64> {
    let (v, fault) = catch(|| {
        // SAFETY: as in `read32`, with a 64-bit load of an 8-byte aligned register.
        unsafe { core::ptr::read_volatile((BASE + off) as *const u64) }
    });
    fault.is_none().then_some(v)
}

/// 64-bit write of a register; false if the access aborted.
pub fn write64(off: u64, v: u64) -> bool {
    let ((), fault) = catch(|| {
        // SAFETY: a 64-bit store to the test device page (Device memory); an abort is
        // caught and skipped by the exception vectors.
        unsafe { core::ptr::write_volatile((BASE + off) as *mut u64, v) }
    });
    fault.is_none()
}

/// Whether the test device answers with its ID.
pub fn present() -> bool {
    read32(ID) == Some(ID_VALUE)
}
