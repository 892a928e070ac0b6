//! Typed addresses: guest physical, host physical and hypervisor virtual addresses.
//!
//! The three address spaces never mix silently: converting between them needs an
//! explicit translation (a stage-2 walk, the hypervisor's linear map, ...). Physical
//! addresses are `u64` on every host because ARMv7 LPAE has 40-bit physical addresses.

use core::fmt;
use core::ops::{Add, Sub};

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// Wraps a raw address.
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }
            /// The raw address.
            pub const fn raw(self) -> u64 {
                self.0
            }
            /// True if the address is a multiple of `align`, which must be a power of two.
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
            /// Rounds down to `align`, which must be a power of two.
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }
            /// Rounds up to `align`, which must be a power of two; `None` on overflow.
            pub const fn checked_align_up(self, align: u64) -> Option<Self> {
                match self.0.checked_add(align - 1) {
                    Some(v) => Some(Self(v & !(align - 1))),
                    None => None,
                }
            }
            /// `self + off`, or `None` on overflow.
            pub const fn checked_add(self, off: u64) -> Option<Self> {
                match self.0.checked_add(off) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }

        impl Add<u64> for $name {
            type Output = Self;
            fn add(self, off: u64) -> Self {
                Self(self.0 + off)
            }
        }

        impl Sub<$name> for $name {
            type Output = u64;
            fn sub(self, other: $name) -> u64 {
                self.0 - other.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{:#x}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{:#x}"), self.0)
            }
        }
    };
}

address_type!(
    /// A guest physical address (an IPA: the input of stage-2 translation).
    GuestPhysAddr,
    "gpa:"
);
address_type!(
    /// A host physical address (the output of stage-2 translation).
    HostPhysAddr,
    "hpa:"
);
address_type!(
    /// A virtual address (the hypervisor's own, or a guest's stage-1 input).
    VirtAddr,
    "va:"
);

/// A half-open range `[start, start + size)` of guest physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRange {
    /// First address in the range.
    pub start: GuestPhysAddr,
    /// Size in bytes.
    pub size: u64,
}

impl GuestRange {
    /// Builds a range; `size` may be zero.
    pub const fn new(start: GuestPhysAddr, size: u64) -> Self {
        Self { start, size }
    }
    /// True if `addr` lies in the range.
    pub fn contains(&self, addr: GuestPhysAddr) -> bool {
        addr.0 >= self.start.0 && addr.0 - self.start.0 < self.size
    }
    /// True if `[addr, addr + len)` lies wholly in the range (false on overflow).
    pub fn contains_span(&self, addr: GuestPhysAddr, len: u64) -> bool {
        match addr.0.checked_add(len) {
            Some(end) => addr.0 >= self.start.0 && end <= self.start.0 + self.size,
            None => false,
        }
    }
    /// One past the last address, saturating at `u64::MAX`.
    pub fn end(&self) -> u64 {
        self.start.0.saturating_add(self.size)
    }
}

/// A half-open range `[start, start + size)` of host physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostRange {
    /// First address in the range.
    pub start: HostPhysAddr,
    /// Size in bytes.
    pub size: u64,
}

impl HostRange {
    /// Builds a range; `size` may be zero.
    pub const fn new(start: HostPhysAddr, size: u64) -> Self {
        Self { start, size }
    }
    /// One past the last address, saturating at `u64::MAX`.
    pub fn end(&self) -> u64 {
        self.start.0.saturating_add(self.size)
    }
    /// True if the two ranges share at least one byte.
    pub fn overlaps(&self, other: &HostRange) -> bool {
        self.start.0 < other.end() && other.start.0 < self.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_helpers() {
        let a = GuestPhysAddr::new(0x4020_1234);
        assert!(!a.is_aligned(0x1000));
        assert_eq!(a.align_down(0x1000), GuestPhysAddr::new(0x4020_1000));
        assert_eq!(
            a.checked_align_up(0x1000),
            Some(GuestPhysAddr::new(0x4020_2000))
        );
        assert_eq!(GuestPhysAddr::new(u64::MAX).checked_align_up(0x1000), None);
    }

    #[test]
    fn ranges() {
        let r = GuestRange::new(GuestPhysAddr::new(0x1000), 0x2000);
        assert!(r.contains(GuestPhysAddr::new(0x1000)));
        assert!(r.contains(GuestPhysAddr::new(0x2fff)));
        assert!(!r.contains(GuestPhysAddr::new(0x3000)));
        assert!(!r.contains(GuestPhysAddr::new(0xfff)));
        assert!(r.contains_span(GuestPhysAddr::new(0x2ff8), 8));
        assert!(!r.contains_span(GuestPhysAddr::new(0x2ff9), 8));
        assert!(!r.contains_span(GuestPhysAddr::new(u64::MAX), 8));
        let h1 = HostRange::new(HostPhysAddr::new(0), 0x1000);
        let h2 = HostRange::new(HostPhysAddr::new(0xfff), 1);
        let h3 = HostRange::new(HostPhysAddr::new(0x1000), 1);
        assert!(h1.overlaps(&h2));
        assert!(!h1.overlaps(&h3));
    }
}
