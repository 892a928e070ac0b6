//! The guest bundle: one blob holding the VM configuration and every guest file.
//!
//! `scripts/run` packs the bundle and QEMU's `-device loader` (or the Raspberry Pi
//! firmware's `initramfs` line) puts it in RAM; `/chosen/bootargs` (`hv.bundle=ADDR`)
//! or `/chosen/linux,initrd-start` says where.
//!
//! Layout (little-endian): magic `HVBUNDLE`; u32 version (1); u32 entry count;
//! u64 total size; then per entry a 16-byte NUL-padded name, u64 offset, u64 size.
//! Offsets are from the start of the bundle.

use core::fmt;

/// The magic at offset 0.
pub const MAGIC: &[u8; 8] = b"HVBUNDLE";
/// Size of the fixed header.
pub const HEADER_SIZE: usize = 24;
const ENTRY_SIZE: usize = 32;
/// Most entries a bundle may have.
pub const MAX_ENTRIES: u32 = 64;

/// Errors when reading a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// The magic is wrong: there is no bundle here.
    NoBundle,
    /// A version this hypervisor does not know.
    Version(u32),
    /// The header, the entry table or an entry lies beyond the bundle's size.
    Truncated,
    /// More than [`MAX_ENTRIES`] entries.
    TooManyEntries(u32),
    /// An entry name that is not UTF-8.
    BadName,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::NoBundle => write!(f, "no guest bundle (bad magic)"),
            BundleError::Version(v) => {
                write!(f, "guest bundle version {v} is not supported (want 1)")
            }
            BundleError::Truncated => {
                write!(f, "guest bundle is truncated or an entry lies outside it")
            }
            BundleError::TooManyEntries(n) => {
                write!(f, "guest bundle has {n} entries (at most {MAX_ENTRIES})")
            }
            BundleError::BadName => write!(f, "guest bundle entry name is not UTF-8"),
        }
    }
}

/// Reads the total size from a bundle header, checking magic and version.
pub fn total_size(header: &[u8]) -> Result<usize, BundleError> {
    if header.len() < HEADER_SIZE || &header[..8] != MAGIC {
        return Err(BundleError::NoBundle);
    }
    let version = u32::from_le_bytes(
        header[8..12]
            .try_into()
            .map_err(|_| BundleError::Truncated)?,
    );
    if version != 1 {
        return Err(BundleError::Version(version));
    }
    let size = u64::from_le_bytes(
        header[16..24]
            .try_into()
            .map_err(|_| BundleError::Truncated)?,
    );
    usize::try_from(size).map_err(|_| BundleError::Truncated)
}

/// A parsed bundle borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Bundle<'a> {
    bytes: &'a [u8],
    count: u32,
}

impl<'a> Bundle<'a> {
    /// Checks the header and every entry against `bytes` (the whole bundle).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BundleError> {
        let size = total_size(bytes)?;
        if size > bytes.len() || size < HEADER_SIZE {
            return Err(BundleError::Truncated);
        }
        let bytes = &bytes[..size];
        let count = u32::from_le_bytes(
            bytes[12..16]
                .try_into()
                .map_err(|_| BundleError::Truncated)?,
        );
        if count > MAX_ENTRIES {
            return Err(BundleError::TooManyEntries(count));
        }
        if HEADER_SIZE + count as usize * ENTRY_SIZE > size {
            return Err(BundleError::Truncated);
        }
        let b = Self { bytes, count };
        for i in 0..count {
            b.entry(i)?;
        }
        Ok(b)
    }

    /// The bundle's size in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    fn entry(&self, i: u32) -> Result<(&'a str, &'a [u8]), BundleError> {
        let e = HEADER_SIZE + i as usize * ENTRY_SIZE;
        let raw = &self.bytes[e..e + ENTRY_SIZE];
        let name_len = raw[..16].iter().position(|&c| c == 0).unwrap_or(16);
        let name = core::str::from_utf8(&raw[..name_len]).map_err(|_| BundleError::BadName)?;
        let off = u64::from_le_bytes(raw[16..24].try_into().map_err(|_| BundleError::Truncated)?);
        let len = u64::from_le_bytes(raw[24..32].try_into().map_err(|_| BundleError::Truncated)?);
        let end = off.checked_add(len).ok_or(BundleError::Truncated)?;
        if end > self.bytes.len() as u64 {
            return Err(BundleError::Truncated);
        }
        Ok((name, &self.bytes[off as usize..end as usize]))
    }

    /// The entry called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, d)| d)
    }

    /// Every entry as (name, contents).
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        (0..self.count).filter_map(move |i| self.entry(i).ok())
    }
}

#[cfg(test)]
pub(crate) fn build_for_test(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let table = HEADER_SIZE + entries.len() * ENTRY_SIZE;
    let total: usize = table + entries.iter().map(|e| e.1.len()).sum::<usize>();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&(total as u64).to_le_bytes());
    let mut off = table;
    for (name, data) in entries {
        let mut n = [0u8; 16];
        n[..name.len()].copy_from_slice(name.as_bytes());
        out.extend_from_slice(&n);
        out.extend_from_slice(&(off as u64).to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        off += data.len();
    }
    for (_, data) in entries {
        out.extend_from_slice(data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let b = build_for_test(&[("config", b"vm name=a"), ("vm0/kernel", &[1, 2, 3])]);
        let p = Bundle::parse(&b).unwrap();
        assert_eq!(p.get("config"), Some(&b"vm name=a"[..]));
        assert_eq!(p.get("vm0/kernel"), Some(&[1u8, 2, 3][..]));
        assert_eq!(p.get("nope"), None);
        assert_eq!(p.iter().count(), 2);
    }

    #[test]
    fn rejects_bad_headers() {
        let mut b = build_for_test(&[("k", b"abc")]);
        assert_eq!(Bundle::parse(&b[..10]).unwrap_err(), BundleError::NoBundle);
        assert_eq!(
            Bundle::parse(&b[..b.len() - 1]).unwrap_err(),
            BundleError::Truncated
        );
        b[8] = 2;
        assert_eq!(Bundle::parse(&b).unwrap_err(), BundleError::Version(2));
        let mut c = build_for_test(&[("k", b"abc")]);
        c[24 + 16] = 0xff; // entry offset beyond the end
        assert_eq!(Bundle::parse(&c).unwrap_err(), BundleError::Truncated);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..300), n in 0u32..4) {
            if bytes.len() >= HEADER_SIZE {
                bytes[..8].copy_from_slice(MAGIC);
                bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
                bytes[12..16].copy_from_slice(&n.to_le_bytes());
            }
            if let Ok(b) = Bundle::parse(&bytes) {
                for (_, d) in b.iter() { prop_assert!(d.len() <= bytes.len()); }
            }
        }
    }
}
