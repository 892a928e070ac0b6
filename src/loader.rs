//! Guest image loading: the arm64 and 32-bit ARM Linux boot protocols, raw images,
//! initrd placement and the generated guest device tree.
//!
//! Placement follows Documentation/arch/arm64/booting.rst: an Image (magic `ARM\x64`
//! at offset 0x38) goes at a 2 MiB-aligned base + `text_offset` and is entered at its
//! first byte with x0 = DTB; a file without the header is a raw image loaded at RAM
//! base + 0x8_0000, as QEMU does. The DTB and the initrd go at the top of RAM, away
//! from the kernel's `image_size` footprint.
//!
//! A 32-bit ARM zImage (magic 0x016F2818 at offset 0x24, Documentation/arch/arm/booting.rst)
//! goes 32 MiB into RAM, so the decompressor (which writes the kernel near the start of
//! RAM) does not have to move itself, and is entered with r0 = 0, r1 = ~0, r2 = DTB. Its
//! DTB and initrd stay in the first 512 MiB of RAM, inside the kernel's lowmem map.

use crate::addr::{GuestPhysAddr, GuestRange};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Offset of a raw image from the start of guest RAM.
pub const RAW_IMAGE_OFFSET: u64 = 0x8_0000;
/// The arm64 Image header's magic, at offset 0x38.
pub const ARM64_MAGIC: u32 = 0x644d_5241;
/// Room reserved for the guest DTB.
pub const DTB_MAX: u64 = 64 * 1024;
/// The 32-bit ARM zImage magic, at offset 0x24.
pub const ZIMAGE_MAGIC: u32 = 0x016f_2818;
/// Offset of a zImage from the start of guest RAM (booting.rst: above 32 MiB avoids a
/// relocation of the decompressor).
pub const ZIMAGE_OFFSET: u64 = 0x0200_0000;
/// A zImage's DTB and initrd stay below RAM base + this (the 32-bit kernel's lowmem).
pub const ZIMAGE_LOWMEM: u64 = 0x2000_0000;
/// Room reserved after a zImage for its decompressor's BSS, stack and 64 KiB malloc area.
const ZIMAGE_SLACK: u64 = 1 << 20;
/// Room the decompressed kernel needs below a zImage loaded at [`ZIMAGE_OFFSET`]: the
/// decompressor writes it at RAM base + 32 KiB, and moves itself when they overlap.
const ZIMAGE_MIN_RAM: u64 = 64 << 20;

/// Why a guest image cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The kernel file is empty.
    EmptyKernel,
    /// The arm64 header is present but inconsistent (size or offsets).
    BadHeader(&'static str),
    /// The kernel, initrd and DTB do not fit in guest RAM.
    TooBig {
        /// What does not fit.
        what: &'static str,
        /// Bytes needed.
        need: u64,
        /// Bytes of guest RAM.
        ram: u64,
    },
    /// The file is shorter than its own headers say (a truncated download or copy).
    Truncated {
        /// Bytes in the file.
        have: u64,
        /// Bytes the PE/COFF section table of the EFI-stub header needs.
        need: u64,
    },
    /// Writing the device tree failed.
    Fdt(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::EmptyKernel => write!(f, "the kernel image is empty"),
            LoadError::BadHeader(m) => write!(f, "corrupt arm64 Image header: {m}"),
            LoadError::TooBig { what, need, ram } => write!(
                f,
                "{what} does not fit in guest RAM: needs {} KiB, the VM has {} KiB (raise --mem)",
                need / 1024,
                ram / 1024
            ),
            LoadError::Truncated { have, need } => write!(
                f,
                "the kernel image is truncated: the file has {have} bytes but its PE/COFF header describes {need}"
            ),
            LoadError::Fdt(m) => write!(f, "building the guest device tree: {m}"),
        }
    }
}

/// What the arm64 Image header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the image from a 2 MiB-aligned base.
    pub text_offset: u64,
    /// Bytes the kernel needs from its load address (BSS included).
    pub image_size: u64,
}

/// Parses the arm64 Linux Image header; `Ok(None)` for a file without one (raw image).
pub fn parse_image_header(k: &[u8]) -> Result<Option<ImageHeader>, LoadError> {
    if k.is_empty() {
        return Err(LoadError::EmptyKernel);
    }
    if k.len() < 64 {
        return Ok(None);
    }
    let u64_at = |o: usize| u64::from_le_bytes(k[o..o + 8].try_into().unwrap_or([0; 8]));
    let magic = u32::from_le_bytes(k[0x38..0x3c].try_into().unwrap_or([0; 4]));
    if magic != ARM64_MAGIC {
        return Ok(None);
    }
    let text_offset = u64_at(0x08);
    let mut image_size = u64_at(0x10);
    if image_size == 0 {
        // Pre-3.17 kernels: text_offset 0x80000 and no size; assume the file plus 1 MiB.
        image_size = k.len() as u64 + (1 << 20);
    }
    if text_offset % 4096 != 0 || text_offset >= (2 << 20) {
        return Err(LoadError::BadHeader(
            "text_offset is not a page multiple below 2 MiB",
        ));
    }
    if image_size < k.len() as u64 {
        return Err(LoadError::BadHeader("image_size is smaller than the file"));
    }
    if let Some(need) = pe_file_size(k) {
        if (k.len() as u64) < need {
            return Err(LoadError::Truncated {
                have: k.len() as u64,
                need,
            });
        }
    }
    Ok(Some(ImageHeader {
        text_offset,
        image_size,
    }))
}

/// What a 32-bit ARM zImage header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZImageHeader {
    /// Bytes of the image (`end - start` from offsets 0x2c and 0x28).
    pub size: u64,
}

/// Parses the 32-bit ARM zImage header; `Ok(None)` for a file without the magic.
///
/// Errors: the header's size is zero or inverted (`BadHeader`), or larger than the file
/// (`Truncated`, a cut download).
pub fn parse_zimage(k: &[u8]) -> Result<Option<ZImageHeader>, LoadError> {
    if k.is_empty() {
        return Err(LoadError::EmptyKernel);
    }
    let u32_at = |o: usize| {
        k.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if u32_at(0x24) != Some(ZIMAGE_MAGIC) {
        return Ok(None);
    }
    let (start, end) = (u32_at(0x28).unwrap_or(0), u32_at(0x2c).unwrap_or(0));
    if end <= start {
        return Err(LoadError::BadHeader(
            "zImage end address is not above its start",
        ));
    }
    let size = (end - start) as u64;
    if size > k.len() as u64 {
        return Err(LoadError::Truncated {
            have: k.len() as u64,
            need: size,
        });
    }
    Ok(Some(ZImageHeader { size }))
}

/// The file size an EFI-stub kernel's PE/COFF header implies: the end of its last
/// section's raw data. `None` when there is no PE header (or it is malformed, which the
/// boot protocol does not require to be valid).
pub fn pe_file_size(k: &[u8]) -> Option<u64> {
    let u16_at = |o: usize| {
        k.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as u64)
    };
    let u32_at = |o: usize| {
        k.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
    };
    let pe = u32_at(0x3c)? as usize;
    if k.get(pe..pe + 4)? != b"PE\0\0" {
        return None;
    }
    let nsec = u16_at(pe + 6)? as usize;
    let opt = u16_at(pe + 20)? as usize;
    let table = pe + 24 + opt;
    let mut end = 0u64;
    for i in 0..nsec.min(96) {
        let e = table + 40 * i;
        let raw_size = u32_at(e + 16)?;
        let raw_ptr = u32_at(e + 20)?;
        end = end.max(raw_ptr + raw_size);
    }
    (end > 0).then_some(end)
}

/// Where everything goes in guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    /// Kernel load address (also its entry point).
    pub kernel: GuestPhysAddr,
    /// True if the kernel follows the Linux boot protocol.
    pub linux: bool,
    /// True if the kernel is a 32-bit ARM zImage (entered with r0 = 0, r1 = ~0, r2 = DTB).
    pub zimage: bool,
    /// Initrd range, if any.
    pub initrd: Option<GuestRange>,
    /// DTB address (8-byte aligned, within the first 512 MiB... as booting.rst asks,
    /// it must not cross a 2 MiB boundary).
    pub dtb: GuestPhysAddr,
}

/// Plans the placement of a kernel, an optional initrd of `initrd_len` bytes and a DTB.
pub fn plan(
    kernel: &[u8],
    initrd_len: Option<u64>,
    ram: GuestRange,
) -> Result<LoadPlan, LoadError> {
    let hdr = parse_image_header(kernel)?;
    let zimage = match hdr {
        Some(_) => None,
        None => parse_zimage(kernel)?,
    };
    // The window the DTB and initrd go in.
    let mut top = ram.end();
    let (kaddr, kend) = match (hdr, zimage) {
        (None, Some(z)) => {
            top = top.min(ram.start.raw() + ZIMAGE_LOWMEM);
            let off = if ram.size >= ZIMAGE_MIN_RAM + z.size + DTB_MAX {
                ZIMAGE_OFFSET
            } else {
                RAW_IMAGE_OFFSET
            };
            let k = ram.start.raw() + off;
            // Whatever follows the image in the file (an appended DTB) is loaded too, and
            // the decompressor's BSS, stack and malloc area come after it.
            (k, k + z.size.max(kernel.len() as u64) + ZIMAGE_SLACK)
        }
        (Some(h), _) => {
            let base = ram
                .start
                .checked_align_up(2 << 20)
                .ok_or(LoadError::BadHeader("RAM base"))?;
            let k = base.raw() + h.text_offset;
            (k, k + h.image_size)
        }
        (None, None) => {
            let k = ram.start.raw() + RAW_IMAGE_OFFSET;
            (k, k + kernel.len() as u64)
        }
    };
    let ram_end = top;
    if kend > ram_end {
        return Err(LoadError::TooBig {
            what: "the kernel",
            need: kend - ram.start.raw(),
            ram: ram.size,
        });
    }
    // DTB in the top 2 MiB-aligned window, initrd right below it.
    let dtb = GuestPhysAddr::new((ram_end - DTB_MAX) & !0xfff);
    if dtb.raw() < kend {
        return Err(LoadError::TooBig {
            what: "the kernel and device tree",
            need: kend - ram.start.raw() + DTB_MAX,
            ram: ram.size,
        });
    }
    let initrd = match initrd_len {
        None => None,
        Some(len) => {
            let start = dtb.raw().checked_sub(len).map(|s| s & !0xfff);
            match start {
                Some(s) if s >= kend.div_ceil(4096) * 4096 => {
                    Some(GuestRange::new(GuestPhysAddr::new(s), len))
                }
                _ => {
                    return Err(LoadError::TooBig {
                        what: "the initrd",
                        need: kend - ram.start.raw() + len + DTB_MAX,
                        ram: ram.size,
                    })
                }
            }
        }
    };
    Ok(LoadPlan {
        kernel: GuestPhysAddr::new(kaddr),
        linux: hdr.is_some() || zimage.is_some(),
        zimage: zimage.is_some(),
        initrd,
        dtb,
    })
}

/// A device in the guest's device tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestDevice {
    /// A PL011 UART (the console when it is the first one).
    Pl011 {
        /// Base IPA.
        base: u64,
        /// SPI number (GIC interrupt 32 + spi), if interrupts are wired.
        spi: Option<u32>,
    },
}

/// The interrupt controller the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestGic {
    /// No interrupt controller.
    None,
    /// GICv2: distributor and CPU interface bases.
    V2 {
        /// GICD base.
        dist: u64,
        /// GICC base.
        cpu: u64,
    },
    /// GICv3: distributor and redistributor region.
    V3 {
        /// GICD base.
        dist: u64,
        /// GICR base.
        redist: u64,
        /// GICR region size.
        redist_size: u64,
    },
}

/// Everything the guest device tree describes.
#[derive(Clone, Debug)]
pub struct GuestDtSpec<'a> {
    /// Guest RAM.
    pub ram: GuestRange,
    /// Number of vCPUs.
    pub cpus: usize,
    /// Kernel command line.
    pub bootargs: &'a str,
    /// Initrd range.
    pub initrd: Option<GuestRange>,
    /// Devices.
    pub devices: &'a [GuestDevice],
    /// Interrupt controller.
    pub gic: GuestGic,
    /// Generic timer frequency to advertise (0: let the guest read CNTFRQ).
    pub timer_freq: u32,
}

fn fdt_err(e: vm_fdt::Error) -> LoadError {
    LoadError::Fdt(alloc::format!("{e:?}"))
}

/// Builds the guest's flattened device tree (a QEMU-virt-like layout).
pub fn build_guest_dtb(s: &GuestDtSpec) -> Result<Vec<u8>, LoadError> {
    const GIC_PHANDLE: u32 = 1;
    const CLK_PHANDLE: u32 = 2;
    let mut w = vm_fdt::FdtWriter::new().map_err(fdt_err)?;
    let root = w.begin_node("").map_err(fdt_err)?;
    w.property_string("compatible", "linux,dummy-virt")
        .map_err(fdt_err)?;
    w.property_string("model", "hv guest").map_err(fdt_err)?;
    w.property_u32("#address-cells", 2).map_err(fdt_err)?;
    w.property_u32("#size-cells", 2).map_err(fdt_err)?;
    if s.gic != GuestGic::None {
        w.property_u32("interrupt-parent", GIC_PHANDLE)
            .map_err(fdt_err)?;
    }

    let chosen = w.begin_node("chosen").map_err(fdt_err)?;
    w.property_string("bootargs", s.bootargs).map_err(fdt_err)?;
    if let Some(GuestDevice::Pl011 { base, .. }) = s.devices.first() {
        w.property_string("stdout-path", &alloc::format!("/pl011@{base:x}"))
            .map_err(fdt_err)?;
    }
    if let Some(i) = s.initrd {
        w.property_u64("linux,initrd-start", i.start.raw())
            .map_err(fdt_err)?;
        w.property_u64("linux,initrd-end", i.end())
            .map_err(fdt_err)?;
    }
    w.end_node(chosen).map_err(fdt_err)?;

    let mem = w
        .begin_node(&alloc::format!("memory@{:x}", s.ram.start.raw()))
        .map_err(fdt_err)?;
    w.property_string("device_type", "memory")
        .map_err(fdt_err)?;
    w.property_array_u64("reg", &[s.ram.start.raw(), s.ram.size])
        .map_err(fdt_err)?;
    w.end_node(mem).map_err(fdt_err)?;

    let cpus = w.begin_node("cpus").map_err(fdt_err)?;
    w.property_u32("#address-cells", 1).map_err(fdt_err)?;
    w.property_u32("#size-cells", 0).map_err(fdt_err)?;
    for c in 0..s.cpus {
        let n = w.begin_node(&alloc::format!("cpu@{c}")).map_err(fdt_err)?;
        w.property_string("device_type", "cpu").map_err(fdt_err)?;
        w.property_string("compatible", "arm,armv8")
            .map_err(fdt_err)?;
        w.property_u32("reg", c as u32).map_err(fdt_err)?;
        w.property_string("enable-method", "psci")
            .map_err(fdt_err)?;
        w.end_node(n).map_err(fdt_err)?;
    }
    w.end_node(cpus).map_err(fdt_err)?;

    let psci = w.begin_node("psci").map_err(fdt_err)?;
    w.property_string_list(
        "compatible",
        alloc::vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()],
    )
    .map_err(fdt_err)?;
    w.property_string("method", "hvc").map_err(fdt_err)?;
    w.end_node(psci).map_err(fdt_err)?;

    match s.gic {
        GuestGic::None => {}
        GuestGic::V2 { dist, cpu } => {
            let g = w
                .begin_node(&alloc::format!("intc@{dist:x}"))
                .map_err(fdt_err)?;
            w.property_string("compatible", "arm,cortex-a15-gic")
                .map_err(fdt_err)?;
            w.property_u32("#interrupt-cells", 3).map_err(fdt_err)?;
            w.property_null("interrupt-controller").map_err(fdt_err)?;
            w.property_array_u64("reg", &[dist, 0x1_0000, cpu, 0x1_0000])
                .map_err(fdt_err)?;
            w.property_phandle(GIC_PHANDLE).map_err(fdt_err)?;
            w.end_node(g).map_err(fdt_err)?;
        }
        GuestGic::V3 {
            dist,
            redist,
            redist_size,
        } => {
            let g = w
                .begin_node(&alloc::format!("intc@{dist:x}"))
                .map_err(fdt_err)?;
            w.property_string("compatible", "arm,gic-v3")
                .map_err(fdt_err)?;
            w.property_u32("#interrupt-cells", 3).map_err(fdt_err)?;
            w.property_null("interrupt-controller").map_err(fdt_err)?;
            w.property_u32("#redistributor-regions", 1)
                .map_err(fdt_err)?;
            w.property_array_u64("reg", &[dist, 0x1_0000, redist, redist_size])
                .map_err(fdt_err)?;
            w.property_phandle(GIC_PHANDLE).map_err(fdt_err)?;
            w.end_node(g).map_err(fdt_err)?;
        }
    }

    if s.gic != GuestGic::None {
        // Secure, non-secure, virtual and hypervisor timer PPIs 13, 14, 11, 10,
        // level-high (flags 4), as on QEMU virt.
        let t = w.begin_node("timer").map_err(fdt_err)?;
        w.property_string("compatible", "arm,armv8-timer")
            .map_err(fdt_err)?;
        w.property_array_u32("interrupts", &[1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4])
            .map_err(fdt_err)?;
        w.property_null("always-on").map_err(fdt_err)?;
        if s.timer_freq != 0 {
            w.property_u32("clock-frequency", s.timer_freq)
                .map_err(fdt_err)?;
        }
        w.end_node(t).map_err(fdt_err)?;
    }

    let clk = w.begin_node("apb-pclk").map_err(fdt_err)?;
    w.property_string("compatible", "fixed-clock")
        .map_err(fdt_err)?;
    w.property_u32("#clock-cells", 0).map_err(fdt_err)?;
    w.property_u32("clock-frequency", 24_000_000)
        .map_err(fdt_err)?;
    w.property_string("clock-output-names", "clk24mhz")
        .map_err(fdt_err)?;
    w.property_phandle(CLK_PHANDLE).map_err(fdt_err)?;
    w.end_node(clk).map_err(fdt_err)?;

    for d in s.devices {
        match d {
            GuestDevice::Pl011 { base, spi } => {
                let u = w
                    .begin_node(&alloc::format!("pl011@{base:x}"))
                    .map_err(fdt_err)?;
                w.property_string_list(
                    "compatible",
                    alloc::vec!["arm,pl011".into(), "arm,primecell".into()],
                )
                .map_err(fdt_err)?;
                w.property_array_u64("reg", &[*base, 0x1000])
                    .map_err(fdt_err)?;
                if let (Some(spi), true) = (spi, s.gic != GuestGic::None) {
                    w.property_array_u32("interrupts", &[0, *spi, 4])
                        .map_err(fdt_err)?;
                }
                w.property_array_u32("clocks", &[CLK_PHANDLE, CLK_PHANDLE])
                    .map_err(fdt_err)?;
                w.property_string_list(
                    "clock-names",
                    alloc::vec!["uartclk".into(), "apb_pclk".into()],
                )
                .map_err(fdt_err)?;
                w.end_node(u).map_err(fdt_err)?;
            }
        }
    }
    w.end_node(root).map_err(fdt_err)?;
    let dtb = w.finish().map_err(fdt_err)?;
    if dtb.len() as u64 > DTB_MAX {
        return Err(LoadError::Fdt(alloc::format!(
            "{} bytes is more than the {DTB_MAX} reserved",
            dtb.len()
        )));
    }
    Ok(dtb)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(text_offset: u64, image_size: u64, len: usize) -> Vec<u8> {
        let mut k = alloc::vec![0u8; len];
        k[0x08..0x10].copy_from_slice(&text_offset.to_le_bytes());
        k[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
        k[0x38..0x3c].copy_from_slice(&ARM64_MAGIC.to_le_bytes());
        k
    }

    fn zimage(start: u32, end: u32, len: usize) -> Vec<u8> {
        let mut k = alloc::vec![0u8; len];
        k[0x24..0x28].copy_from_slice(&ZIMAGE_MAGIC.to_le_bytes());
        k[0x28..0x2c].copy_from_slice(&start.to_le_bytes());
        k[0x2c..0x30].copy_from_slice(&end.to_le_bytes());
        k
    }

    #[test]
    fn zimage_goes_above_32_mib_with_dtb_and_initrd_in_lowmem() {
        let ram = GuestRange::new(GuestPhysAddr::new(0x4000_0000), 1 << 30);
        let k = zimage(0, 6 << 20, 6 << 20);
        let p = plan(&k, Some(8 << 20), ram).unwrap();
        assert!(p.zimage && p.linux);
        assert_eq!(p.kernel.raw(), 0x4000_0000 + ZIMAGE_OFFSET);
        // The DTB and initrd stay below RAM base + 512 MiB even with 1 GiB of RAM.
        assert!(p.dtb.raw() + DTB_MAX <= 0x4000_0000 + ZIMAGE_LOWMEM);
        let i = p.initrd.unwrap();
        assert!(i.start.raw() >= p.kernel.raw() + (6 << 20));
        assert!(i.end() <= p.dtb.raw());
        // Small RAM: the zImage goes at the raw offset and the decompressor relocates.
        let small = GuestRange::new(GuestPhysAddr::new(0x4000_0000), 48 << 20);
        assert_eq!(
            plan(&k, None, small).unwrap().kernel.raw(),
            0x4000_0000 + RAW_IMAGE_OFFSET
        );
    }

    #[test]
    fn zimage_header_errors() {
        assert_eq!(
            parse_zimage(&zimage(0, 8 << 20, 1 << 20)),
            Err(LoadError::Truncated {
                have: 1 << 20,
                need: 8 << 20
            })
        );
        assert!(matches!(
            parse_zimage(&zimage(0x100, 0x100, 4096)),
            Err(LoadError::BadHeader(_))
        ));
        assert_eq!(parse_zimage(&[0u8; 0x30]), Ok(None));
        assert_eq!(parse_zimage(&[1u8; 3]), Ok(None));
        assert_eq!(
            parse_zimage(&zimage(0, 4096, 4096)),
            Ok(Some(ZImageHeader { size: 4096 }))
        );
    }

    const RAM: GuestRange = GuestRange::new(GuestPhysAddr::new(0x4000_0000), 128 << 20);

    #[test]
    fn raw_image_goes_at_base_plus_512k() {
        let p = plan(&[0u8; 100], None, RAM).unwrap();
        assert_eq!(p.kernel.raw(), 0x4008_0000);
        assert!(!p.linux);
        assert_eq!(p.dtb.raw(), 0x4000_0000 + (128 << 20) - DTB_MAX);
    }

    #[test]
    fn linux_image_honours_header() {
        let k = image(0, 0x200_0000, 4096);
        let p = plan(&k, Some(0x10_0000), RAM).unwrap();
        assert!(p.linux);
        assert_eq!(p.kernel.raw(), 0x4000_0000);
        let i = p.initrd.unwrap();
        assert!(i.start.raw() >= 0x4200_0000 && i.end() <= p.dtb.raw());
        let k2 = image(0x8_0000, 0x200_0000, 4096);
        assert_eq!(plan(&k2, None, RAM).unwrap().kernel.raw(), 0x4008_0000);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert_eq!(plan(&[], None, RAM), Err(LoadError::EmptyKernel));
        assert!(matches!(
            plan(&image(0x123, 0x1000, 4096), None, RAM),
            Err(LoadError::BadHeader(_))
        ));
        assert!(matches!(
            plan(&image(0, 100, 4096), None, RAM),
            Err(LoadError::BadHeader(_))
        ));
        assert!(matches!(
            plan(&image(0, 200 << 20, 4096), None, RAM),
            Err(LoadError::TooBig {
                what: "the kernel",
                ..
            })
        ));
        assert!(matches!(
            plan(&image(0, 1 << 20, 4096), Some(130 << 20), RAM),
            Err(LoadError::TooBig {
                what: "the initrd",
                ..
            })
        ));
    }

    #[test]
    fn truncated_efi_stub_image_is_detected() {
        let mut k = image(0, 0x20_0000, 0x3000);
        // A PE header at 0x40 with one section whose raw data ends at 0x3000.
        k[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        k[0x40..0x44].copy_from_slice(b"PE\0\0");
        k[0x46..0x48].copy_from_slice(&1u16.to_le_bytes());
        k[0x54..0x56].copy_from_slice(&0u16.to_le_bytes());
        let sec = 0x40 + 24;
        k[sec + 16..sec + 20].copy_from_slice(&0x2000u32.to_le_bytes());
        k[sec + 20..sec + 24].copy_from_slice(&0x1000u32.to_le_bytes());
        assert_eq!(pe_file_size(&k), Some(0x3000));
        assert!(plan(&k, None, RAM).is_ok());
        assert_eq!(
            plan(&k[..0x2800], None, RAM),
            Err(LoadError::Truncated {
                have: 0x2800,
                need: 0x3000
            })
        );
    }

    #[test]
    fn guest_dtb_parses_back() {
        let devs = [GuestDevice::Pl011 {
            base: 0x0900_0000,
            spi: Some(1),
        }];
        let spec = GuestDtSpec {
            ram: RAM,
            cpus: 2,
            bootargs: "console=ttyAMA0",
            initrd: Some(GuestRange::new(GuestPhysAddr::new(0x4400_0000), 0x1234)),
            devices: &devs,
            gic: GuestGic::V2 {
                dist: 0x0800_0000,
                cpu: 0x0801_0000,
            },
            timer_freq: 0,
        };
        let dtb = build_guest_dtb(&spec).unwrap();
        let fdt = fdt::Fdt::new(&dtb).unwrap();
        let m = fdt.memory().regions().next().unwrap();
        assert_eq!(m.starting_address as u64, 0x4000_0000);
        assert_eq!(m.size, Some(128 << 20));
        assert_eq!(fdt.cpus().count(), 2);
        assert_eq!(fdt.chosen().bootargs(), Some("console=ttyAMA0"));
        assert_eq!(fdt.chosen().stdout().unwrap().name, "pl011@9000000");
        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(psci.property("method").unwrap().as_str(), Some("hvc"));
        let ch = fdt.find_node("/chosen").unwrap();
        assert_eq!(
            ch.property("linux,initrd-start").unwrap().as_usize(),
            Some(0x4400_0000)
        );
        assert!(fdt.find_node("/timer").is_some());
    }
}
