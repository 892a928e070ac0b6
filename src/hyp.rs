//! The hypervisor proper on the target: boot flow, VM creation and per-CPU run loops.
//!
//! This is glue between the pure layers (device tree, configuration, loader, VM
//! model) and the architecture layer. It runs only on the target.

use crate::addr::{GuestPhysAddr, GuestRange, HostPhysAddr, HostRange};
use crate::arch::gic::HostGic;
use crate::arch::{self, FrameMm, HwTlb, PsciConduit, VcpuContext};
use crate::bundle::Bundle;
use crate::config::{self, VmConfig};
use crate::devices;
use crate::devices::irq::IrqWired;
use crate::dt::HostPlatform;
use crate::loader::{self, GuestDevice, GuestDtSpec, GuestGic};
use crate::mmio::MmioRouter;
use crate::pgtable::{Geometry, Prot, Stage1PageTable, Stage2PageTable};
use crate::shadow;
use crate::shadowvm;
use crate::vgic::{GicVersion, GicdMmio, GicrMmio, Vgic};
use crate::vm;
use crate::vm::{Action, BootInfo, Power, RunState, Vm, VmSpec};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64};
use core::sync::atomic::{AtomicUsize, Ordering};
use log::{error, info, warn};
use spin::Once;

/// Guest IPA of RAM, as on QEMU virt.
pub const GUEST_RAM_BASE: u64 = 0x4000_0000;
/// Guest IPA of the console PL011.
pub const GUEST_UART_BASE: u64 = 0x0900_0000;
/// Guest IPA of the test device.
pub const GUEST_TESTDEV_BASE: u64 = 0x0b00_0000;

/// Guest IPA of the GIC distributor (QEMU virt layout).
pub const GUEST_GICD_BASE: u64 = 0x0800_0000;
/// Guest IPA of the GICv2 CPU interface (where the host's GICV is mapped).
pub const GUEST_GICC_BASE: u64 = 0x0801_0000;
/// Guest IPA of the GICv3 redistributors.
pub const GUEST_GICR_BASE: u64 = 0x080a_0000;
/// SPIs each VM's vGIC implements (INTIDs 32..96).
const GUEST_SPIS: usize = 64;
/// The guest UART's interrupt: SPI 1, as on QEMU virt.
const GUEST_UART_INTID: u32 = 33;
/// Host SGI used to make another physical CPU leave its guest.
const KICK_SGI: u32 = 0;
/// GIC maintenance interrupt (PPI 9).
const MAINTENANCE_INTID: u32 = 25;
/// Virtual and physical timer PPIs, forwarded to the vCPU owning the CPU.
const VTIMER_INTID: u32 = 27;
const PTIMER_INTID: u32 = 30;

/// The host GIC, once initialised.
static GIC: Once<HostGic> = Once::new();
/// The host GIC's virtual CPU interface base (GICv2), to map into guests.
static GICV_BASE: AtomicU64 = AtomicU64::new(0);
/// The host console UART's interrupt (forwarded to the VM on CPU 0).
static UART_INTID: AtomicU32 = AtomicU32::new(u32::MAX);
/// Per physical CPU: MPIDR and GICv2 CPU interface number, for kicks.
static CPU_MPIDR: [AtomicU64; arch::MAX_CPUS] = [const { AtomicU64::new(0) }; arch::MAX_CPUS];
static CPU_IF: [AtomicU32; arch::MAX_CPUS] = [const { AtomicU32::new(0) }; arch::MAX_CPUS];

/// Early heap, used until the frame allocator hands the heap its real memory.
static mut EARLY_HEAP: [u8; 256 * 1024] = [0; 256 * 1024];
/// Heap bytes taken from RAM once memory is known.
const HEAP_SIZE: u64 = 48 << 20;
/// Bytes of shadow translation tables per shadow-mode VM: 512 blocks of 16 KiB, more
/// than the worst-case root (a 16 KiB first level and 4096 second-level tables of 1 KiB),
/// so the active root always fits once the others are evicted.
const SHADOW_POOL_BYTES: usize = 8 << 20;
/// Shadow roots (guest TTBR0 tables) a shadow-mode VM keeps cached.
const SHADOW_MAX_ROOTS: usize = 64;

/// Everything the CPUs share after boot.
struct System {
    conduit: PsciConduit,
    vms: Vec<Vm>,
    /// For each physical CPU: (VM index, vCPU index).
    assignment: Vec<Option<(usize, usize)>>,
    vtcr: u64,
    vttbrs: Vec<u64>,
    images: Vec<VmImages>,
}

/// The bytes a VM's memory is loaded from at boot and at every reset.
struct VmImages {
    kernel: &'static [u8],
    kernel_at: GuestPhysAddr,
    initrd: Option<(&'static [u8], GuestPhysAddr)>,
    dtb: Vec<u8>,
    dtb_at: GuestPhysAddr,
    aarch64: bool,
}

static SYSTEM: Once<System> = Once::new();
static VMS_RUNNING: AtomicUsize = AtomicUsize::new(0);

fn conduit_of(p: &HostPlatform) -> PsciConduit {
    match p.psci.as_ref().map(|p| p.method) {
        Some(crate::dt::PsciMethod::Hvc) => PsciConduit::Hvc,
        _ => PsciConduit::Smc,
    }
}

/// Stops everything with a message on the console (if there is one).
fn fatal(conduit: PsciConduit, msg: core::fmt::Arguments) -> ! {
    error!("{msg}");
    error!("stopping");
    arch::power_off(conduit)
}

/// Reports a fatal error found before the device tree could name a console: on the
/// console UART of the board this image was linked for (`HV_BOARD`), then powers off.
fn early_fatal(msg: core::fmt::Arguments) -> ! {
    if let Some(b) = crate::board::by_name(env!("HV_BOARD")) {
        // SAFETY: the image was linked for this board, whose description names its
        // console PL011; QEMU and the firmware leave it enabled. Nothing else runs yet.
        let mut u = unsafe { crate::drivers::pl011::Pl011::new(b.uart_base.raw() as usize) };
        let _ =
            core::fmt::Write::write_fmt(&mut u, format_args!("[hv] FATAL {msg}\n[hv] stopping\n"));
        if b.secondary != crate::board::SecondaryMethod::Psci {
            // A board without PSCI firmware: an SMC would be undefined.
            arch::set_power_off(arch::PowerOff::Halt);
        }
    }
    arch::power_off(PsciConduit::Smc)
}

/// Finds the DTB: x0 from the bootloader, else the start of RAM where QEMU puts it
/// for ELF images (1 MiB below the image, which links at RAM + 1 MiB).
fn find_dtb(x0: u64) -> Option<(u64, usize)> {
    let (img, _) = arch::image_range();
    let candidates = [
        x0,
        img.saturating_sub(1 << 20) & !0xf_ffff,
        img & !0x3fff_ffff,
    ];
    for &c in candidates.iter().filter(|&&c| c != 0) {
        // SAFETY: the candidate is either the bootloader's DTB pointer or RAM below the
        // image; RAM is readable with the MMU off, and only the 40-byte header is read.
        let hdr = unsafe { core::slice::from_raw_parts(c as *const u8, 40) };
        if let Ok(size) = crate::dt::fdt_total_size(hdr) {
            return Some((c, size));
        }
    }
    None
}

/// Room for a packed copy of the host DTB (the Raspberry Pi 4's is about 50 KiB).
const DTB_COPY_SIZE: usize = 256 * 1024;
/// The host DTB without FDT_NOP tokens, written once by [`without_nops`].
static mut DTB_COPY: [u8; DTB_COPY_SIZE] = [0; DTB_COPY_SIZE];

/// The DTB packed without the FDT_NOP tokens that firmware editing it in place leaves
/// (QEMU's raspi4b disables nodes that way, as does the Raspberry Pi firmware). Falls
/// back to the original if it does not fit the copy buffer or cannot be packed.
fn without_nops(dtb: &'static [u8]) -> &'static [u8] {
    // SAFETY: called once, on the primary CPU before any other CPU runs; nothing else
    // refers to DTB_COPY, which lives in the image (reserved from the frame allocator).
    let buf: &'static mut [u8; DTB_COPY_SIZE] = unsafe { &mut *core::ptr::addr_of_mut!(DTB_COPY) };
    if dtb.len() > buf.len() {
        return dtb;
    }
    match crate::dt::strip_nops(dtb, buf) {
        Ok(n) => &buf[..n],
        Err(_) => dtb,
    }
}

fn bootarg<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    args.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Primary CPU: bring the system up, create the VMs, run vCPU 0 of the first VM.
pub fn primary_main(x0: u64, el: u64) -> ! {
    // SAFETY: EARLY_HEAP is used only here, once, before any allocation.
    unsafe {
        let start = core::ptr::addr_of_mut!(EARLY_HEAP) as usize;
        arch::HEAP.lock().init(start, 256 * 1024);
    }
    let Some((dtb_addr, dtb_size)) = find_dtb(x0) else {
        early_fatal(format_args!(
            "no device tree: x0 was {x0:#x} and none was found at the start of RAM; the hypervisor \
             needs one (QEMU provides it; on hardware the firmware passes it in x0)"
        ));
    };
    // SAFETY: fdt_total_size validated the header; the blob is in RAM that nothing
    // else writes, and it is reserved from the frame allocator below.
    let dtb: &'static [u8] =
        unsafe { core::slice::from_raw_parts(dtb_addr as *const u8, dtb_size) };
    let dtb = without_nops(dtb);
    let plat = match HostPlatform::parse(dtb) {
        Ok(p) => p,
        Err(e) => early_fatal(format_args!(
            "the device tree at {dtb_addr:#x} is malformed: {e}"
        )),
    };
    let conduit = match (el, conduit_of(&plat)) {
        // At EL2 an HVC would trap to ourselves: the firmware must be reached by SMC.
        (2 | 3, PsciConduit::Hvc) => PsciConduit::Smc,
        (_, c) => c,
    };
    init_console(&plat);
    let bootargs = plat.bootargs.unwrap_or("");
    let level = bootarg(bootargs, "hv.log")
        .and_then(crate::logger::parse_level)
        .unwrap_or(log::LevelFilter::Info);
    log::set_max_level(level);
    let power_off_how = power_off_method(&plat, bootargs);
    arch::set_power_off(power_off_how);
    info!(
        "hv {} starting on {} ({} CPUs), entered at {}",
        env!("CARGO_PKG_VERSION"),
        plat.model_or_compatible(),
        plat.cpus.len(),
        arch::entry_name(el)
    );
    if el == 3 {
        info!(
            "entered at {}: dropped to {} (non-secure); PSCI needs firmware there",
            arch::entry_name(3),
            arch::entry_name(2)
        );
    }
    match power_off_how {
        arch::PowerOff::Psci => {}
        arch::PowerOff::Semihosting => {
            info!("no PSCI firmware: power-off is a semihosting SYS_EXIT (hv.poweroff=semihosting)")
        }
        arch::PowerOff::Halt => {
            info!(
                "no PSCI firmware: power-off halts after the line 'all VMs are off: powering off'"
            )
        }
    }
    if el != 2 && el != 3 {
        fatal(
            conduit,
            format_args!(
                "entered at {}: the hypervisor needs {} (virtualization extensions). \
                 On QEMU use -M virt,virtualization=on",
                arch::entry_name(el),
                arch::entry_name(2)
            ),
        );
    }
    let board = crate::board::find_board(&plat);
    match board {
        Some(b) => match b.check(&plat, Some(arch::cntfrq())) {
            Ok(c) => info!("board {}: device tree matches: {c}", b.name),
            // Not fatal: the hypervisor runs on what the device tree says.
            Err(e) => error!("{e}"),
        },
        None => warn!(
            "no board description matches this device tree; continuing with the device tree alone"
        ),
    }
    // Guest RAM stays below the DMA limit when it fits (see create_vm).
    let dma_limit = crate::board::dma_limit(board, &plat);

    // Memory: RAM minus the image, the DTB, reserved ranges and the guest bundle.
    let (img_start, img_end) = arch::image_range();
    let bundle_addr = bootarg(bootargs, "hv.bundle")
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .or_else(|| plat.initrd.map(|r| r.start.raw()));
    for r in &plat.memory {
        arch::add_ram(*r);
    }
    {
        let mut f = arch::FRAMES.lock();
        let _ = f.reserve(HostRange::new(
            HostPhysAddr::new(img_start),
            img_end - img_start,
        ));
        let _ = f.reserve(HostRange::new(HostPhysAddr::new(dtb_addr), dtb_size as u64));
        for r in &plat.reserved {
            let _ = f.reserve(*r);
        }
        // Spin-table mailboxes (and the parking code beside them) stay untouched.
        for c in plat.cpus.iter() {
            if let Some(a) = c.release_addr {
                let _ = f.reserve(HostRange::new(HostPhysAddr::new(a.raw() & !0xfff), 0x1000));
            }
        }
    }
    let bundle = match bundle_addr {
        None => fatal(
            conduit,
            format_args!(
                "no guest bundle: pass hv.bundle=ADDR in /chosen/bootargs (scripts/run does)"
            ),
        ),
        Some(a) => {
            // SAFETY: the bundle address comes from the boot command line; reading its
            // 24-byte header from RAM is harmless, and the size is checked before use.
            let hdr =
                unsafe { core::slice::from_raw_parts(a as *const u8, crate::bundle::HEADER_SIZE) };
            match crate::bundle::total_size(hdr) {
                Ok(size) => {
                    let _ = arch::FRAMES
                        .lock()
                        .reserve(HostRange::new(HostPhysAddr::new(a), size as u64));
                    // SAFETY: the bundle was loaded there by QEMU or the firmware and is
                    // reserved from the frame allocator, so nothing else writes it.
                    let bytes: &'static [u8] =
                        unsafe { core::slice::from_raw_parts(a as *const u8, size) };
                    match Bundle::parse(bytes) {
                        Ok(b) => b,
                        Err(e) => fatal(conduit, format_args!("guest bundle at {a:#x}: {e}")),
                    }
                }
                Err(e) => fatal(conduit, format_args!("guest bundle at {a:#x}: {e}")),
            }
        }
    };
    // The real heap.
    match arch::FRAMES.lock().alloc(HEAP_SIZE, 1 << 21) {
        Ok(h) => {
            // SAFETY: the allocator gave us this range exclusively; RAM is identity-mapped.
            unsafe {
                arch::HEAP
                    .lock()
                    .add_to_heap(h.raw() as usize, (h.raw() + HEAP_SIZE) as usize)
            };
        }
        Err(e) => fatal(conduit, format_args!("no memory for the heap: {e}")),
    }
    enable_mmu(&plat, conduit);
    info!(
        "{} MMU on; {} MiB free for guests",
        arch::entry_name(2),
        arch::FRAMES.lock().free_bytes() >> 20
    );
    for (i, c) in plat.cpus.iter().enumerate().take(arch::MAX_CPUS) {
        CPU_MPIDR[i].store(c.mpidr, Ordering::Relaxed);
    }
    init_host_gic(&plat);

    // VMs.
    let cfg_text = bundle
        .get("config")
        .and_then(|c| core::str::from_utf8(c).ok())
        .unwrap_or("");
    let cfgs = match config::parse(cfg_text, plat.cpus.len().min(arch::MAX_CPUS)) {
        Ok(c) => c,
        Err(e) => fatal(conduit, format_args!("VM configuration: {e}")),
    };
    let geometry = arch::stage2_geometry();
    let mut vms = Vec::new();
    let mut images = Vec::new();
    let mut vttbrs = Vec::new();
    let mut assignment = alloc::vec![None; plat.cpus.len().min(arch::MAX_CPUS)];
    for (i, c) in cfgs.iter().enumerate() {
        match create_vm(i, c, &bundle, geometry, cfgs.len() > 1, dma_limit) {
            Ok((vm, img, vttbr)) => {
                let first = vm.first_cpu;
                for v in 0..c.cpus {
                    assignment[first + v] = Some((i, v));
                }
                info!(
                    "VM {} '{}': {} vCPU(s) on CPU {}.., {} MiB RAM at {} (host {}), {} mode",
                    i,
                    c.name,
                    c.cpus,
                    first,
                    c.mem >> 20,
                    vm.ram.start,
                    vm.ram_hpa,
                    if c.mode == config::MemMode::Stage2 {
                        "stage2"
                    } else {
                        "shadow"
                    }
                );
                vms.push(vm);
                images.push(img);
                vttbrs.push(vttbr);
            }
            Err(e) => fatal(conduit, format_args!("VM '{}': {e}", c.name)),
        }
    }
    let sys = SYSTEM.call_once(|| System {
        conduit,
        vms,
        assignment,
        vtcr: geometry.vtcr().unwrap_or(0),
        vttbrs,
        images,
    });
    for (i, vm) in sys.vms.iter().enumerate() {
        load_images(vm, &sys.images[i]);
        vm.start();
        VMS_RUNNING.fetch_add(1, Ordering::AcqRel);
    }
    // Secondary physical CPUs that have vCPUs.
    for (cpu, a) in sys.assignment.iter().enumerate().skip(1) {
        if a.is_some() {
            start_secondary(&plat, conduit, cpu);
        }
    }
    cpu_loop(0)
}

/// How this machine powers off: PSCI SYSTEM_OFF when the device tree has PSCI;
/// otherwise a semihosting exit if the command line asks for it
/// (`hv.poweroff=semihosting`, which scripts/run passes with QEMU's `-semihosting`),
/// else a halt.
fn power_off_method(plat: &HostPlatform, bootargs: &str) -> arch::PowerOff {
    if plat.psci.is_some() {
        arch::PowerOff::Psci
    } else if bootarg(bootargs, "hv.poweroff") == Some("semihosting") {
        arch::PowerOff::Semihosting
    } else {
        arch::PowerOff::Halt
    }
}

/// Starts physical CPU `cpu` (its index in the device tree's cpus) by the method its
/// node names: PSCI CPU_ON, or a write to its spin-table `cpu-release-addr`.
fn start_secondary(plat: &HostPlatform, conduit: PsciConduit, cpu: usize) {
    let c = &plat.cpus[cpu];
    let mpidr = c.mpidr;
    match (c.enable_method, c.release_addr) {
        (Some("spin-table"), Some(addr)) => {
            info!("starting CPU {cpu} (MPIDR {mpidr:#x}) through its spin table at {addr}");
            // SAFETY: the address is this CPU's cpu-release-addr from the device tree,
            // in identity-mapped RAM reserved from the frame allocator above; only the
            // parked CPU reads it. `cpu` is below MAX_CPUS (the assignment is capped).
            unsafe { arch::spin_table_release(addr.raw(), cpu) };
        }
        (Some("spin-table"), None) => {
            error!("CPU {cpu} (MPIDR {mpidr:#x}): spin-table without cpu-release-addr");
        }
        (Some("psci"), _) | (None, _) if plat.psci.is_some() => {
            let r = arch::psci_call(
                conduit,
                arch::PSCI_CPU_ON as u64,
                mpidr,
                arch::secondary_entry(),
                cpu as u64,
            );
            if r != 0 {
                error!("starting CPU {cpu} (MPIDR {mpidr:#x}) failed: PSCI {r}");
            }
        }
        (m, _) => error!(
            "CPU {cpu} (MPIDR {mpidr:#x}): cannot start it: enable-method {:?} is not supported \
             (spin-table, or psci with a psci node)",
            m.unwrap_or("none")
        ),
    }
}

/// Secondary CPU entry.
pub fn secondary_main(cpu: usize) -> ! {
    enable_mmu_secondary();
    init_gic_cpu(cpu);
    cpu_loop(cpu)
}

static EL2_TABLES: Once<(u64, u64, u64)> = Once::new();

fn enable_mmu(plat: &HostPlatform, conduit: PsciConduit) {
    let geom = match arch::el2_geometry() {
        Ok(g) => g,
        Err(e) => fatal(conduit, format_args!("EL2 page-table geometry: {e}")),
    };
    let mut t = match Stage1PageTable::new(geom, FrameMm, HwTlb) {
        Ok(t) => t,
        Err(e) => fatal(conduit, format_args!("EL2 page tables: {e}")),
    };
    let map = |t: &mut Stage1PageTable<FrameMm, HwTlb>,
               base: u64,
               size: u64,
               ty: crate::pgtable::MemType| {
        let s = base & !0xfff;
        let e = (base + size + 0xfff) & !0xfff;
        let prot = if ty == crate::pgtable::MemType::Device {
            Prot::RW
        } else {
            Prot::RWX
        };
        t.map_identity(HostPhysAddr::new(s), e - s, ty, prot)
    };
    for r in &plat.memory {
        if let Err(e) = map(
            &mut t,
            r.start.raw(),
            r.size,
            crate::pgtable::MemType::Normal,
        ) {
            fatal(conduit, format_args!("identity-mapping RAM {r:?}: {e}"));
        }
    }
    for d in plat.device_ranges().iter() {
        if let Err(e) = map(
            &mut t,
            d.start.raw(),
            d.size,
            crate::pgtable::MemType::Device,
        ) {
            warn!("identity-mapping device {d:?}: {e}");
        }
    }
    let regs = (t.ttbr0(), t.tcr(), crate::pgtable::MAIR_EL2);
    core::mem::forget(t);
    EL2_TABLES.call_once(|| regs);
    arch::enable_el2_mmu(regs.0, regs.1, regs.2);
}

fn enable_mmu_secondary() {
    if let Some(&(ttbr, tcr, mair)) = EL2_TABLES.get() {
        arch::enable_el2_mmu(ttbr, tcr, mair);
    }
}

fn init_console(plat: &HostPlatform) {
    if let Some(u) = plat.uart.as_ref() {
        // SAFETY: the base comes from the device tree's stdout-path node, is a PL011
        // per its compatible string, and nothing else drives it: the logger owns it.
        let mut d = unsafe { crate::drivers::pl011::Pl011::new(u.base.raw() as usize) };
        d.init(u.clock_hz, u.baud.unwrap_or(115_200));
        crate::logger::init(d, log::LevelFilter::Info);
    }
}

/// Console output of one VM: straight through for a single VM, line-buffered with a
/// `[name] ` prefix when several VMs share the UART.
struct VmConsole {
    prefix: Option<String>,
    line: Vec<u8>,
}

impl devices::pl011::ConsoleSink for VmConsole {
    fn write_byte(&mut self, b: u8) {
        match &self.prefix {
            None => crate::logger::write_raw(&[b]),
            Some(p) => {
                self.line.push(b);
                if b == b'\n' || self.line.len() >= 256 {
                    let mut out = Vec::with_capacity(p.len() + self.line.len() + 3);
                    out.push(b'[');
                    out.extend_from_slice(p.as_bytes());
                    out.extend_from_slice(b"] ");
                    out.append(&mut self.line);
                    crate::logger::write_raw(&out);
                }
            }
        }
    }
}

fn create_vm(
    id: usize,
    c: &VmConfig,
    bundle: &Bundle<'static>,
    geometry: Geometry,
    prefixed: bool,
    dma_limit: Option<u64>,
) -> Result<(Vm, VmImages, u64), String> {
    use alloc::format;
    let kernel = bundle
        .get(&c.kernel)
        .ok_or_else(|| format!("the bundle has no '{}' (kernel)", c.kernel))?;
    let initrd = match &c.initrd {
        Some(n) => Some(
            bundle
                .get(n)
                .ok_or_else(|| format!("the bundle has no '{n}' (initrd)"))?,
        ),
        None => None,
    };
    let cmdline = match &c.cmdline {
        Some(n) => core::str::from_utf8(
            bundle
                .get(n)
                .ok_or_else(|| format!("the bundle has no '{n}' (cmdline)"))?,
        )
        .map_err(|_| String::from("the command line is not UTF-8"))?
        .trim(),
        None => "",
    };
    let ram = GuestRange::new(GuestPhysAddr::new(GUEST_RAM_BASE), c.mem);
    let aarch32 = c.arch == config::GuestArch::Aarch32;
    let shadow_mode = c.mode == config::MemMode::Shadow;
    if arch::AARCH32_GUESTS_ONLY && !aarch32 {
        return Err(String::from(
            "the ARMv7 host runs AArch32 guests only: add arch=aarch32 (scripts/run --arch armv7 does)",
        ));
    }
    if shadow_mode && !aarch32 {
        return Err(String::from(
            "mode=shadow needs arch=aarch32: shadow paging emulates the ARMv7 short-descriptor format (scripts/run --arch32 --mode shadow)",
        ));
    }
    if shadow_mode && c.cpus != 1 {
        return Err(format!(
            "mode=shadow supports one vCPU (the VM asks for {}); use mode=stage2 for SMP guests",
            c.cpus
        ));
    }
    if aarch32 && ram.end() > shadowvm::POOL_IPA {
        return Err(format!(
            "an AArch32 guest's RAM must end below {:#x} (mem={} MiB is too large)",
            shadowvm::POOL_IPA,
            c.mem >> 20
        ));
    }
    let plan =
        loader::plan(kernel, initrd.map(|i| i.len() as u64), ram).map_err(|e| format!("{e}"))?;
    if plan.zimage && !aarch32 {
        return Err(String::from(
            "the kernel is a 32-bit ARM zImage: boot it as an AArch32 guest (arch=aarch32, scripts/run --arch32)",
        ));
    }
    if aarch32 && plan.linux && !plan.zimage {
        return Err(String::from(
            "the kernel is an arm64 Image but the VM is AArch32 (arch=aarch32): drop --arch32, or give a zImage",
        ));
    }
    // Below the board's DMA limit if it fits there, so that memory a guest hands to a
    // DMA-limited device is reachable; else anywhere, with a warning.
    let (hpa, below) = arch::FRAMES
        .lock()
        .alloc_best_aligned_preferring_below(c.mem, &[1 << 30, 2 << 20], dma_limit)
        .map_err(|e| format!("guest RAM of {} MiB: {e}", c.mem >> 20))?;
    if !below {
        warn!(
            "VM {id} '{}': {} MiB of RAM do not fit below the DMA limit {:#x}; placed at {hpa}, out of reach of the board's DMA-limited devices",
            c.name,
            c.mem >> 20,
            dma_limit.unwrap_or(0)
        );
    }
    let vmid = (id + 1) as u8;
    let mut pt = Stage2PageTable::new(geometry, vmid, FrameMm, HwTlb)
        .map_err(|e| format!("stage-2 tables: {e}"))?;
    let vttbr = pt.vttbr();
    let mut mmio = MmioRouter::default();
    let console = VmConsole {
        prefix: prefixed.then(|| c.name.clone()),
        line: Vec::new(),
    };
    let uart = devices::pl011::Pl011::new(Box::new(console));
    let uart_range = GuestRange::new(GuestPhysAddr::new(GUEST_UART_BASE), 0x1000);
    // The interrupt controller the guest sees follows the host's.
    let version = match GIC.get().map(|g| g.version()) {
        Some(2) => Some(GicVersion::V2),
        Some(_) => Some(GicVersion::V3),
        None => None,
    };
    let (guest_gic, vgic) = match version {
        None => {
            mmio.register(uart_range, Box::new(uart))
                .map_err(|e| format!("{e:?}"))?;
            (GuestGic::None, None)
        }
        Some(ver) => {
            // The timer PPIs are forwarded without a hardware link (see `Lrs::retire_timers`).
            let v = Vgic::new(ver, c.cpus, GUEST_SPIS).map_err(|e| format!("vGIC: {e:?}"))?;
            let (dist_size, redist_size) = (v.dist_size(), v.redist_size());
            let vg = v.into_shared();
            mmio.register(
                GuestRange::new(GuestPhysAddr::new(GUEST_GICD_BASE), dist_size),
                Box::new(GicdMmio::with_resolver(vg.clone(), arch::current_vcpu)),
            )
            .map_err(|e| format!("{e:?}"))?;
            mmio.register(
                uart_range,
                Box::new(IrqWired::new(uart, vg.clone(), GUEST_UART_INTID)),
            )
            .map_err(|e| format!("{e:?}"))?;
            let g = match ver {
                GicVersion::V2 => {
                    // The guest's GICC is the host's virtual CPU interface (GICV).
                    let gicv = HostPhysAddr::new(GICV_BASE.load(Ordering::Relaxed));
                    pt.map(
                        GuestPhysAddr::new(GUEST_GICC_BASE),
                        gicv,
                        0x2000,
                        Prot::DEVICE_RW,
                    )
                    .map_err(|e| format!("mapping GICV: {e}"))?;
                    GuestGic::V2 {
                        dist: GUEST_GICD_BASE,
                        cpu: GUEST_GICC_BASE,
                    }
                }
                GicVersion::V3 => {
                    mmio.register(
                        GuestRange::new(GuestPhysAddr::new(GUEST_GICR_BASE), redist_size),
                        Box::new(GicrMmio::new(vg.clone())),
                    )
                    .map_err(|e| format!("{e:?}"))?;
                    GuestGic::V3 {
                        dist: GUEST_GICD_BASE,
                        redist: GUEST_GICR_BASE,
                        redist_size,
                    }
                }
            };
            (g, Some(vg))
        }
    };
    let devs = [GuestDevice::Pl011 {
        base: GUEST_UART_BASE,
        spi: Some(GUEST_UART_INTID - 32),
    }];
    let dtb = loader::build_guest_dtb(&GuestDtSpec {
        ram,
        cpus: c.cpus,
        bootargs: cmdline,
        initrd: plan.initrd,
        devices: &devs,
        gic: guest_gic,
        timer_freq: 0,
    })
    .map_err(|e| format!("{e}"))?;
    mmio.register(
        GuestRange::new(GuestPhysAddr::new(GUEST_TESTDEV_BASE), 0x1000),
        Box::new(devices::testdev::TestDev::new()),
    )
    .map_err(|e| format!("{e:?}"))?;
    let boot = BootInfo {
        entry: plan.kernel.raw(),
        x0: plan.dtb.raw(),
    };
    let shadow = if shadow_mode {
        // The shadow tables live in hypervisor memory, mapped read-only at POOL_IPA in
        // the VM's stage 2 so that the hardware can walk them.
        let storage = alloc::vec![0u32; SHADOW_POOL_BYTES / 4];
        let pa = storage.as_ptr() as u64;
        if !pa.is_multiple_of(shadow::pool::BLOCK_BYTES) {
            return Err(format!(
                "shadow pool at {pa:#x} is not 16 KiB aligned (allocator change?)"
            ));
        }
        pt.map(
            GuestPhysAddr::new(shadowvm::POOL_IPA),
            HostPhysAddr::new(pa),
            SHADOW_POOL_BYTES as u64,
            Prot::R,
        )
        .map_err(|e| format!("mapping the shadow pool: {e}"))?;
        let pool = shadow::Pool::from_storage(HostPhysAddr::new(shadowvm::POOL_IPA), storage);
        Some(shadowvm::ShadowVm::new(pool, SHADOW_MAX_ROOTS))
    } else {
        None
    };
    let spec = VmSpec {
        id,
        name: c.name.clone(),
        ram,
        ram_hpa: hpa,
        ncpus: c.cpus,
        first_cpu: c.first_cpu.unwrap_or(0),
        boot,
        vgic,
        aarch32,
        shadow,
        ram_io: Some(Box::new(HpaRam { ram, hpa })),
    };
    let vm = Vm::new(spec, Box::new(pt), mmio).map_err(|e| format!("{e:?}"))?;
    let img = VmImages {
        kernel,
        kernel_at: plan.kernel,
        initrd: initrd.zip(plan.initrd.map(|r| r.start)),
        dtb,
        dtb_at: plan.dtb,
        aarch64: c.arch == config::GuestArch::Aarch64,
    };
    Ok((vm, img, vttbr))
}

/// Guest RAM through the hypervisor's identity map of host memory.
struct HpaRam {
    ram: GuestRange,
    hpa: HostPhysAddr,
}

impl HpaRam {
    fn host(&self, gpa: GuestPhysAddr, len: usize) -> Option<*mut u8> {
        self.ram
            .contains_span(gpa, len as u64)
            .then(|| (self.hpa.raw() + (gpa - self.ram.start)) as *mut u8)
    }
}

impl vm::GuestRamIo for HpaRam {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> bool {
        let Some(p) = self.host(gpa, buf.len()) else {
            return false;
        };
        // SAFETY: `p..p+len` lies in the VM's RAM (checked by `host`), which the frame
        // allocator gave to this VM for its whole life and which is identity-mapped at
        // EL2. Another vCPU of the VM may write it meanwhile (guest tables read for a
        // walk-abort report): the bytes read are then stale or torn, never out of bounds,
        // and they only choose which fault to report.
        unsafe { core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
        true
    }
    fn write(&self, gpa: GuestPhysAddr, buf: &[u8]) -> bool {
        let Some(p) = self.host(gpa, buf.len()) else {
            return false;
        };
        // SAFETY: as for `read`; the destination is guest RAM, never hypervisor memory.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), p, buf.len()) };
        true
    }
}

fn copy_into_guest(vm: &Vm, at: GuestPhysAddr, bytes: &[u8]) {
    if !vm.ram.contains_span(at, bytes.len() as u64) {
        error!(
            "{}: image at {at} +{:#x} is outside guest RAM (loader bug)",
            vm.name,
            bytes.len()
        );
        return;
    }
    let hpa = vm.ram_hpa.raw() + (at - vm.ram.start);
    // SAFETY: the destination lies inside the VM's RAM (checked above), which the frame
    // allocator gave to this VM alone and which is identity-mapped at EL2; no vCPU of
    // the VM runs while images are loaded.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), hpa as *mut u8, bytes.len()) };
}

fn load_images(vm: &Vm, img: &VmImages) {
    copy_into_guest(vm, img.kernel_at, img.kernel);
    if let Some((data, at)) = img.initrd {
        copy_into_guest(vm, at, data);
    }
    copy_into_guest(vm, img.dtb_at, &img.dtb);
    let _ = img.aarch64;
}

fn init_host_gic(plat: &HostPlatform) {
    let Some(g) = plat.gic.as_ref() else {
        warn!("no GIC in the device tree: guests get no interrupt controller");
        return;
    };
    let gic = match (g.version, g.gich, g.gicv, g.gicc, g.gicr) {
        (2, Some(gich), Some(gicv), Some(gicc), _) => {
            GICV_BASE.store(gicv.start.raw(), Ordering::Relaxed);
            // SAFETY: the three frames come from the device tree's GIC node and are
            // identity-mapped as device memory; only this driver programs them.
            HostGic::V2(unsafe {
                crate::drivers::gicv2::GicV2::new(
                    g.gicd.start.raw() as usize,
                    gicc.start.raw() as usize,
                    gich.start.raw() as usize,
                )
            })
        }
        (3, _, _, _, Some(gicr)) => match HostGic::v3(
            g.gicd.start.raw() as usize,
            gicr.start.raw() as usize,
            gicr.size as usize,
        ) {
            Ok(gic) => gic,
            Err(e) => {
                warn!("GICv3: {e}: guests get no interrupt controller");
                return;
            }
        },
        _ => {
            warn!("GICv{} without the virtualization extensions (GICH/GICV): guests get no interrupt controller", g.version);
            return;
        }
    };
    gic.init_distributor();
    let gic = GIC.call_once(|| gic);
    info!("host GICv{}: {} list registers", g.version, gic.list_regs());
    init_gic_cpu(0);
    // Console input is forwarded to the VM on CPU 0.
    if let Some(irq) = plat.uart.and_then(|u| u.irq).and_then(|i| i.intid()) {
        UART_INTID.store(irq, Ordering::Relaxed);
        gic.route_spi_here(irq);
        gic.enable(irq);
        crate::logger::set_input_irq(true);
    }
}

fn init_gic_cpu(cpu: usize) {
    let Some(gic) = GIC.get() else { return };
    if !gic.init_cpu() {
        error!(
            "CPU {cpu}: no GIC redistributor found for MPIDR {:#x}",
            arch::mpidr()
        );
        return;
    }
    for intid in [KICK_SGI, MAINTENANCE_INTID, VTIMER_INTID, PTIMER_INTID] {
        gic.enable(intid);
    }
    if let Some(slot) = CPU_IF.get(cpu) {
        slot.store(gic.cpu_interface(), Ordering::Relaxed);
    }
}

/// Makes physical CPU `cpu` leave its guest (or its wait) and re-evaluate.
fn kick_cpu(cpu: usize) {
    if let (Some(gic), Some(m), Some(i)) = (GIC.get(), CPU_MPIDR.get(cpu), CPU_IF.get(cpu)) {
        gic.send_sgi(
            KICK_SGI,
            m.load(Ordering::Relaxed),
            i.load(Ordering::Relaxed),
        );
    }
}

/// Wakes physical CPU `cpu` from its wait for a vCPU to start (see `cpu_loop`).
pub fn wake_cpu(cpu: usize) {
    kick_cpu(cpu);
}

/// Acknowledges and retires the pending physical interrupts while no vCPU runs here.
/// Bounded, so that a level interrupt whose source stays asserted cannot keep this CPU
/// from checking whether its vCPU has been started.
fn drain_host_irqs() {
    let Some(gic) = GIC.get() else { return };
    for _ in 0..64 {
        let Some(iar) = gic.ack() else { return };
        gic.eoi(iar);
        gic.deactivate(iar);
    }
}

/// Kicks the VM's other vCPUs (already marked off) until every one has left its run
/// loop, so that nothing writes guest memory while it is reloaded. A kick always makes
/// a CPU leave its guest, so this ends quickly; false if it did not after ~10^8 polls.
fn wait_for_others_to_leave(vm: &Vm, me: usize) -> bool {
    for round in 0..100_000_000u64 {
        if vm
            .vcpus
            .iter()
            .enumerate()
            .all(|(v, s)| v == me || !s.is_running())
        {
            return true;
        }
        if round % 100_000 == 0 {
            kick_vm(vm, me);
        }
        core::hint::spin_loop();
    }
    false
}

/// Kicks every vCPU of `vm` other than `me` that is running.
fn kick_vm(vm: &Vm, me: usize) {
    for v in 0..vm.vcpus.len() {
        if v != me {
            kick_cpu(vm.first_cpu + v);
        }
    }
    arch::wake_cpus();
}

/// After anything that may have changed the vGIC: kick the vCPUs it names and
/// deactivate physical interrupts the guest cleared by register.
fn vgic_followup(vm: &Vm, me: usize, lrs: &Lrs) {
    let Some(vg) = &vm.vgic else { return };
    if lrs.idle() {
        return; // nothing changed since the last fill: nothing to kick
    }
    let (kicks, deact) = {
        let mut g = vg.lock();
        (g.take_kicks(), g.take_hw_deactivations())
    };
    let mut k = kicks & !(1u64 << me);
    while k != 0 {
        let v = k.trailing_zeros() as usize;
        k &= k - 1;
        kick_cpu(vm.first_cpu + v);
    }
    if let Some(gic) = GIC.get() {
        for p in deact {
            gic.deactivate(p);
        }
    }
}

/// Takes every pending physical interrupt on this CPU and routes it.
fn handle_host_irqs(vm: &Vm, vcpu: usize, lrs: &mut Lrs) {
    let Some(gic) = GIC.get() else { return };
    let uart = UART_INTID.load(Ordering::Relaxed);
    while let Some(iar) = gic.ack() {
        let intid = gic.intid(iar);
        match intid {
            VTIMER_INTID | PTIMER_INTID if vm.vgic.is_some() => {
                // Forwarded as a level interrupt. The physical one stays active (only its
                // priority is dropped) until the guest has EOId the virtual one; then
                // `Lrs::retire_timers` deactivates it, and it fires again if the timer
                // condition still holds.
                gic.eoi(iar);
                lrs.timers_active |= 1 << (intid - VTIMER_INTID);
                if let Some(vg) = &vm.vgic {
                    let _ = vg.lock().set_level(intid, vcpu, true);
                }
            }
            i if i == uart => {
                log::trace!("console input interrupt");
                gic.eoi(iar);
                gic.deactivate(iar);
                console_input(vm);
            }
            MAINTENANCE_INTID => {
                // Its condition (an EOI'd or drained list register) holds until the
                // list registers are rewritten: deactivating it now would make it fire
                // again at once. `Lrs::fill`/`clear` deactivate it afterwards.
                gic.eoi(iar);
                lrs.maintenance_active = true;
            }
            _ => {
                log::trace!("host interrupt {intid}");
                // Kicks and maintenance interrupts only need the exit they caused.
                gic.eoi(iar);
                gic.deactivate(iar);
            }
        }
    }
}

/// Console input is waiting in the host UART for room in the guest's FIFO.
static INPUT_THROTTLED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Moves typed console input into the guest UART of the VM on this CPU, as much as its
/// receive FIFO takes. If input remains, the host UART's interrupt is masked until
/// the guest has read some ([`console_resume`]).
fn console_input(vm: &Vm) {
    let mut mmio = vm.mmio.lock();
    let Some(u) = mmio.find_mut::<IrqWired<devices::pl011::Pl011>>() else {
        return;
    };
    let mut full = false;
    while u.dev.can_accept() {
        match crate::logger::read_input() {
            Some(b) => {
                u.dev.push_rx(b);
            }
            None => break,
        }
        full = !u.dev.can_accept();
    }
    u.update();
    drop(mmio);
    if full {
        INPUT_THROTTLED.store(true, Ordering::Relaxed);
        crate::logger::set_input_irq(false);
    } else {
        crate::logger::set_input_irq(true);
    }
}

/// After a guest exit: if input was held back and the guest's FIFO has room again,
/// take more.
fn console_resume(vm: &Vm) {
    if INPUT_THROTTLED.load(Ordering::Relaxed) && vm.first_cpu == 0 {
        let room = vm
            .mmio
            .lock()
            .find_mut::<IrqWired<devices::pl011::Pl011>>()
            .is_some_and(|u| u.dev.can_accept());
        if room {
            INPUT_THROTTLED.store(false, Ordering::Relaxed);
            console_input(vm);
        }
    }
}

/// Per-vCPU list-register bookkeeping on this CPU.
struct Lrs {
    nr: usize,
    used: usize,
    vals: [u64; crate::vgic::MAX_LRS],
    /// The maintenance interrupt was taken and awaits deactivation.
    maintenance_active: bool,
    /// Forwarded timer PPIs held active (bit n: INTID 27 + n).
    timers_active: u32,
    /// Of those, the ones whose list register came back empty: the guest EOId them.
    timers_done: u32,
    /// The vGIC generation at the last `fill` that left no list register in use.
    idle_generation: Option<u64>,
    /// The vGIC's generation counter, read without its lock.
    generation: Option<alloc::sync::Arc<AtomicU64>>,
}

impl Lrs {
    fn new(vm: &Vm) -> Self {
        let nr = GIC
            .get()
            .map(|g| g.list_regs().min(crate::vgic::MAX_LRS))
            .unwrap_or(0);
        let generation = vm.vgic.as_ref().map(|v| v.lock().generation_handle());
        Self {
            nr,
            used: 0,
            vals: [0; crate::vgic::MAX_LRS],
            maintenance_active: false,
            timers_active: 0,
            timers_done: 0,
            idle_generation: None,
            generation,
        }
    }

    /// True if nothing is in flight and the vGIC has not changed since a fill found
    /// nothing to deliver: the list registers are empty and stay so.
    fn idle(&self) -> bool {
        self.used == 0
            && !self.maintenance_active
            && self.idle_generation.is_some()
            && self.idle_generation == self.generation.as_ref().map(|g| g.load(Ordering::Acquire))
    }

    /// Before entry: load the vGIC's view into the list registers.
    fn fill(&mut self, vm: &Vm, vcpu: usize) {
        let (Some(vg), Some(gic)) = (&vm.vgic, GIC.get()) else {
            return;
        };
        if self.idle() {
            return; // the trap fast path
        }
        let mut g = vg.lock();
        let f = g.fill(vcpu, self.nr);
        self.idle_generation = (f.used() == 0).then(|| g.generation());
        drop(g);
        let n = self.used.max(f.used()).min(self.nr);
        for (i, v) in f.values().iter().enumerate().take(n) {
            gic.write_lr(i, *v);
        }
        self.used = f.used();
        gic.write_hcr(f.hcr());
        self.finish_maintenance(gic);
    }

    /// After exit: hand the list registers' state back to the vGIC.
    fn sync(&mut self, vm: &Vm, vcpu: usize) {
        let (Some(vg), Some(gic)) = (&vm.vgic, GIC.get()) else {
            return;
        };
        if self.used == 0 {
            return;
        }
        for i in 0..self.used {
            self.vals[i] = gic.read_lr(i);
        }
        let mut g = vg.lock();
        if self.timers_active != 0 {
            for raw in &self.vals[..self.used] {
                let lr = crate::vgic::lr::Lr::decode(g.version(), *raw);
                if matches!(lr.vintid, VTIMER_INTID | PTIMER_INTID)
                    && lr.state == crate::vgic::lr::LrState::Invalid
                {
                    self.timers_done |= 1 << (lr.vintid - VTIMER_INTID);
                }
            }
        }
        g.sync(vcpu, &self.vals[..self.used]);
    }

    /// Empties the list registers (their state is in the vGIC after `sync`), so no
    /// maintenance interrupt fires while the CPU waits.
    fn clear(&mut self) {
        let Some(gic) = GIC.get() else { return };
        for i in 0..self.used {
            gic.write_lr(i, 0);
        }
        self.used = 0;
        gic.write_hcr(crate::vgic::lr::HCR_EN);
        self.finish_maintenance(gic);
    }

    /// Deactivates forwarded timer interrupts the guest has finished with, lowering
    /// their virtual line. (A hardware-linked list register would do this by itself,
    /// but QEMU's GICv2 then fails to re-signal a timer interrupt that is already
    /// pending again; doing it here is correct on both.)
    fn retire_timers(&mut self, vm: &Vm, vcpu: usize) {
        let done = core::mem::take(&mut self.timers_done) & self.timers_active;
        if done == 0 {
            return;
        }
        let (Some(vg), Some(gic)) = (&vm.vgic, GIC.get()) else {
            return;
        };
        let mut g = vg.lock();
        for t in [VTIMER_INTID, PTIMER_INTID] {
            let bit = 1 << (t - VTIMER_INTID);
            if done & bit != 0 {
                let _ = g.set_level(t, vcpu, false);
                gic.deactivate(t);
                self.timers_active &= !bit;
            }
        }
    }

    fn finish_maintenance(&mut self, gic: &HostGic) {
        if core::mem::take(&mut self.maintenance_active) {
            gic.deactivate(MAINTENANCE_INTID);
        }
    }
}

/// Blocks this CPU until the vCPU has something to take, or must stop.
fn wait_for_interrupt(vm: &Vm, vcpu: usize, lrs: &mut Lrs) {
    lrs.clear();
    loop {
        if vm.run_state() == RunState::Off || vm.vcpus[vcpu].power() != Power::On {
            return;
        }
        if vm.vgic.as_ref().is_some_and(|v| v.lock().pending_for(vcpu)) {
            return;
        }
        arch::wait_for_interrupt();
        handle_host_irqs(vm, vcpu, lrs);
        vgic_followup(vm, vcpu, lrs);
    }
}

fn cpu_loop(cpu: usize) -> ! {
    let sys = match SYSTEM.get() {
        Some(s) => s,
        None => loop {
            arch::wait_for_event();
        },
    };
    let Some((vm_idx, vcpu)) = sys.assignment.get(cpu).copied().flatten() else {
        loop {
            arch::wait_for_event();
        }
    };
    let vm = &sys.vms[vm_idx];
    let aarch64 = sys.images[vm_idx].aarch64;
    arch::setup_guest_cpu(
        sys.vtcr,
        sys.vttbrs[vm_idx],
        arch::hcr_for_guest(aarch64, vm.shadow.is_some()),
        Vm::vcpu_mpidr(vcpu),
    );
    let mut ctx = VcpuContext::new(vcpu);
    let mut lrs = Lrs::new(vm);
    // The EL1 timers' reset state is UNKNOWN: silence them before the first wait.
    arch::quiesce_el1_timers();
    loop {
        // Wait (halted: QEMU's TCG would spin on WFE) until CPU_ON or a reset starts
        // this vCPU; whoever does that kicks this CPU.
        let (entry, x0) = loop {
            if let Some(s) = vm.vcpus[vcpu].take_start() {
                break s;
            }
            if GIC.get().is_some() {
                arch::wait_for_interrupt();
                drain_host_irqs();
            } else {
                arch::wait_for_event();
            }
        };
        log::debug!("{}: vCPU {vcpu} starts at {entry:#x} (x0 {x0:#x})", vm.name);
        if aarch64 {
            arch::reset_el1();
        } else {
            arch::reset_el1_aarch32();
        }
        if let Some(gic) = GIC.get() {
            // A timer interrupt left active by the previous life of this vCPU would
            // never fire again.
            for t in [VTIMER_INTID, PTIMER_INTID] {
                gic.deactivate(t);
            }
        }
        vm.clear_pending(vcpu);
        lrs.clear();
        lrs.timers_active = 0;
        lrs.timers_done = 0;
        lrs.idle_generation = None;
        let mut action = Action::Resume;
        if aarch64 {
            crate::vm::boot_regs(&mut ctx.guest, entry, x0);
        } else if vm.vcpus[vcpu].is_boot() {
            // The 32-bit ARM Linux boot protocol: r0 = 0, r1 = ~0 (no machine type:
            // use the DTB), r2 = DTB.
            crate::vm::boot_regs32(&mut ctx.guest, entry, [0, u32::MAX, x0 as u32]);
            action = vm.shadow_start(&mut arch::LiveEl1);
        } else {
            // PSCI CPU_ON: r0 = context ID.
            crate::vm::boot_regs32(&mut ctx.guest, entry, [x0 as u32, 0, 0]);
        }
        vm.vcpus[vcpu].set_running(true);
        if action == Action::Resume {
            action = run(vm, vcpu, &mut ctx, &mut lrs);
        }
        vm.vcpus[vcpu].set_running(false);
        // The vCPU is off: its timers must not keep this CPU's idle wait busy.
        arch::quiesce_el1_timers();
        lrs.clear();
        match action {
            Action::Resume | Action::CpuOff | Action::WaitForInterrupt => {}
            Action::VmOff | Action::Stop => {
                if action == Action::Stop {
                    error!("{}: stopped after a fatal guest error", vm.name);
                }
                vm.power_off();
                kick_vm(vm, vcpu);
                let mut per_device = String::new();
                for (name, _range, st) in vm.mmio.lock().iter_stats() {
                    use core::fmt::Write;
                    let _ = write!(per_device, " {name}={}", st.reads + st.writes);
                }
                info!(
                    "{}: powered off; counters: {} mmio_by_device:{per_device}",
                    vm.name, vm.counters
                );
                if let Some(sh) = &vm.shadow {
                    info!("{}: shadow: {}", vm.name, sh.lock().summary());
                }
                if VMS_RUNNING.fetch_sub(1, Ordering::AcqRel) == 1 {
                    info!("all VMs are off: powering off");
                    arch::power_off(sys.conduit);
                }
            }
            Action::VmReset => {
                info!(
                    "{}: reset requested (counters so far: {})",
                    vm.name, vm.counters
                );
                // Other vCPUs must leave the guest before memory is reloaded.
                for v in &vm.vcpus {
                    v.set_off();
                }
                if !wait_for_others_to_leave(vm, vcpu) {
                    error!("{}: a vCPU did not leave the guest; stopping the VM instead of resetting it", vm.name);
                    vm.power_off();
                    continue;
                }
                if let Err(e) = vm.reset() {
                    error!("{}: reset failed: {e}", vm.name);
                    vm.power_off();
                    continue;
                }
                load_images(vm, &sys.images[vm_idx]);
                arch::wake_cpus();
            }
        }
    }
}

/// Runs a started vCPU until it stops being runnable.
fn run(vm: &Vm, vcpu: usize, ctx: &mut VcpuContext, lrs: &mut Lrs) -> Action {
    let mut hw = arch::LiveEl1;
    loop {
        if vm.aarch32 && vm.landing_armed(vcpu) {
            // An injection is landing (see `vm::Landing`): no virtual interrupt may be
            // taken first, so the virtual CPU interface stays off for this one entry and
            // the next fill rewrites it.
            if let Some(gic) = GIC.get() {
                gic.write_hcr(0);
            }
            lrs.idle_generation = None;
        } else {
            lrs.fill(vm, vcpu);
        }
        let kind = arch::run_vcpu(ctx);
        lrs.sync(vm, vcpu);
        lrs.retire_timers(vm, vcpu);
        // The syndrome, read once per synchronous exit.
        let trap = (kind == arch::ExitKind::Sync).then(arch::trap_info);
        if vm.aarch32 {
            let ec = trap.map_or(0, |t| t.esr >> 26);
            if vm.shadow.is_some() {
                if let Some(a) = vm.finish_step(&mut ctx.guest, &mut hw) {
                    return a;
                }
            }
            vm.finish_landing(vcpu, &mut ctx.guest, ec == 0x30 || ec == 0x32, &mut hw);
        }
        let action = match kind {
            arch::ExitKind::Sync => {
                let trap = trap.unwrap_or_else(arch::trap_info);
                vm.handle_sync(vcpu, &mut ctx.guest, &trap, &mut hw)
            }
            arch::ExitKind::Irq | arch::ExitKind::Fiq => {
                vm.counters.exit(crate::counters::ExitReason::Irq);
                handle_host_irqs(vm, vcpu, lrs);
                Action::Resume
            }
            arch::ExitKind::SError => {
                error!(
                    "{}: SError while the guest ran (pc {:#x})",
                    vm.name, ctx.guest.pc
                );
                Action::Stop
            }
        };
        vgic_followup(vm, vcpu, lrs);
        console_resume(vm);
        match action {
            Action::Resume => {}
            Action::WaitForInterrupt => wait_for_interrupt(vm, vcpu, lrs),
            a => return a,
        }
        if vm.run_state() == RunState::Off || vm.vcpus[vcpu].power() != Power::On {
            return Action::CpuOff;
        }
    }
}
