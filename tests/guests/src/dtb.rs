//! Just enough of a flattened device tree reader to find the guest's RAM (`/memory`).
//!
//! Runs with the MMU off, so it reads the blob one byte at a time (no unaligned
//! accesses) and bounds-checks every offset against the header's `totalsize`.

const MAGIC: u32 = 0xd00d_feed;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;
/// Largest blob accepted (a guest DTB is a few KiB).
const MAX_SIZE: usize = 1 << 20;

struct Blob {
    base: usize,
    size: usize,
}

impl Blob {
    fn u8(&self, off: usize) -> Option<u8> {
        if off >= self.size {
            return None;
        }
        // SAFETY: `off < size`, the blob's totalsize, checked against MAX_SIZE; the
        // hypervisor (or QEMU) placed the blob in guest RAM at `base`.
        Some(unsafe { core::ptr::read_volatile((self.base + off) as *const u8) })
    }

    fn be32(&self, off: usize) -> Option<u32> {
        let mut v = 0u32;
        for i in 0..4 {
            v = (v << 8) | u32::from(self.u8(off + i)?);
        }
        Some(v)
    }

    fn be64(&self, off: usize) -> Option<u64> {
        Some((u64::from(self.be32(off)?) << 32) | u64::from(self.be32(off + 4)?))
    }

    /// Whether the NUL-terminated string at `off` equals `s` (or starts with `s`
    /// followed by `@` when `prefix` is set).
    fn str_is(&self, off: usize, s: &[u8], prefix: bool) -> bool {
        for (i, &c) in s.iter().enumerate() {
            if self.u8(off + i) != Some(c) {
                return false;
            }
        }
        match self.u8(off + s.len()) {
            Some(0) => true,
            Some(b'@') => prefix,
            _ => false,
        }
    }

    fn str_len(&self, off: usize) -> Option<usize> {
        let mut n = 0;
        while self.u8(off + n)? != 0 {
            n += 1;
        }
        Some(n)
    }
}

fn read_cells(b: &Blob, off: usize, cells: u32) -> Option<u64> {
    match cells {
        1 => b.be32(off).map(u64::from),
        2 => b.be64(off),
        _ => None,
    }
}

/// The first `/memory` node's first (base, size) range, if `addr` holds a valid DTB.
pub fn memory(addr: u64) -> Option<(u64, u64)> {
    if addr == 0 || !addr.is_multiple_of(8) {
        return None;
    }
    let mut b = Blob {
        base: addr as usize,
        size: 40,
    };
    if b.be32(0)? != MAGIC {
        return None;
    }
    let total = b.be32(4)? as usize;
    if !(40..=MAX_SIZE).contains(&total) {
        return None;
    }
    b.size = total;
    let structs = b.be32(8)? as usize;
    let strings = b.be32(12)? as usize;

    let (mut addr_cells, mut size_cells) = (2u32, 1u32);
    let mut depth = 0u32;
    let mut in_memory = false;
    let mut off = structs;
    loop {
        let token = b.be32(off)?;
        off += 4;
        match token {
            BEGIN_NODE => {
                depth += 1;
                let len = b.str_len(off)?;
                in_memory = depth == 2 && b.str_is(off, b"memory", true);
                off = (off + len + 1 + 3) & !3;
            }
            END_NODE => {
                depth = depth.checked_sub(1)?;
                in_memory = false;
            }
            PROP => {
                let len = b.be32(off)? as usize;
                let name = strings + b.be32(off + 4)? as usize;
                let val = off + 8;
                if depth == 1 && b.str_is(name, b"#address-cells", false) {
                    addr_cells = b.be32(val)?;
                } else if depth == 1 && b.str_is(name, b"#size-cells", false) {
                    size_cells = b.be32(val)?;
                } else if in_memory && b.str_is(name, b"reg", false) {
                    let need = 4 * (addr_cells + size_cells) as usize;
                    if len < need {
                        return None;
                    }
                    let base = read_cells(&b, val, addr_cells)?;
                    let size = read_cells(&b, val + 4 * addr_cells as usize, size_cells)?;
                    return Some((base, size));
                }
                off = (val + len + 3) & !3;
            }
            NOP => {}
            END => return None,
            _ => return None,
        }
    }
}
