//! The default guest of `scripts/run`: a short tour of what the hypervisor offers.
//!
//! It greets, reads the RAM size from the device tree the hypervisor built, makes a
//! few hypercalls, touches the emulated test device, provokes one stage-2 fault the
//! hypervisor resolves and one abort it injects, prints the counters the hypervisor
//! keeps for this VM, and powers off. Each step is also a check.
#![no_std]
#![no_main]

use hv_guests::smccc::{
    self, counter, COUNTER_ABORTS, COUNTER_EXITS, COUNTER_HYPERCALLS, COUNTER_MMIO,
    COUNTER_S2_FAULTS,
};
use hv_guests::testdev::{self, ID, ID_VALUE};
use hv_guests::{catch, check, check_eq, guest_main, println, RAM_BASE};

fn run() {
    println!("Hello from a guest of hv, running at EL1 under the hypervisor.");
    let (size, from_dtb) = hv_guests::entry::ram_size();
    println!(
        "Guest RAM: {:#x}, {} MiB ({})",
        RAM_BASE,
        size >> 20,
        if from_dtb {
            "from the device tree the hypervisor built"
        } else {
            "assumed: no device tree"
        }
    );
    check("the hypervisor passed a device tree in x0", from_dtb);
    let v = smccc::hvc(smccc::PSCI_VERSION, 0, 0, 0);
    println!("PSCI version {}.{}", v >> 16, v & 0xffff);
    check_eq(
        "hypercall HV_NOP returns 0",
        smccc::hvc(smccc::HV_NOP, 0, 0, 0),
        0,
    );
    check(
        "test device answers with its ID",
        testdev::read32(ID) == Some(ID_VALUE),
    );

    // A page the hypervisor unmaps from stage 2 and maps again on first touch.
    let page = RAM_BASE + (16 << 20);
    // SAFETY: the page is guest RAM, far above this program and below the DTB.
    unsafe { (page as *mut u64).write_volatile(0x5eed) };
    let before = counter(COUNTER_S2_FAULTS);
    check_eq(
        "HV_MEM_UNMAP_LAZY",
        smccc::hvc(smccc::HV_MEM_UNMAP_LAZY, page, 4096, 0),
        0,
    );
    // SAFETY: as above.
    let got = unsafe { (page as *const u64).read_volatile() };
    check(
        "contents survive a lazy unmap",
        got == 0x5eed && counter(COUNTER_S2_FAULTS) == before + 1,
    );

    // An address nothing backs: the hypervisor injects a synchronous external abort.
    let (_, fault) = catch(|| {
        // SAFETY: the access is expected to abort; `catch` records and skips it.
        unsafe { (0x3000_0000 as *const u32).read_volatile() }
    });
    check("access outside guest RAM aborts", fault.is_some());

    println!(
        "Counters: exits={} hypercalls={} mmio={} stage2-faults-resolved={} aborts-injected={}",
        counter(COUNTER_EXITS),
        counter(COUNTER_HYPERCALLS),
        counter(COUNTER_MMIO),
        counter(COUNTER_S2_FAULTS),
        counter(COUNTER_ABORTS)
    );
}

guest_main!(run);
