//! SMCCC calls (HVC #0 / SMC #0): PSCI and the hypervisor's vendor services.
use core::arch::asm;

pub const PSCI_VERSION: u32 = 0x8400_0000;
pub const PSCI_CPU_OFF: u32 = 0x8400_0002;
pub const PSCI_CPU_ON: u32 = 0xC400_0003;
pub const PSCI_AFFINITY_INFO: u32 = 0xC400_0004;
pub const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
pub const PSCI_SYSTEM_RESET: u32 = 0x8400_0009;
pub const PSCI_FEATURES: u32 = 0x8400_000A;

pub const HV_NOP: u32 = 0x8600_0000;
pub const HV_MEM_PROTECT: u32 = 0xC600_0001;
pub const HV_MEM_UNMAP_LAZY: u32 = 0xC600_0002;
pub const HV_COUNTER: u32 = 0x8600_0003;

/// HV_COUNTER indices.
pub const COUNTER_EXITS: u64 = 0;
pub const COUNTER_HYPERCALLS: u64 = 1;
pub const COUNTER_MMIO: u64 = 2;
pub const COUNTER_S2_FAULTS: u64 = 3;
pub const COUNTER_ABORTS: u64 = 4;

/// HV_MEM_PROTECT permission bits.
pub const PERM_R: u64 = 1;
pub const PERM_W: u64 = 2;
pub const PERM_X: u64 = 4;
pub const PERM_RWX: u64 = PERM_R | PERM_W | PERM_X;

/// SMCCC / PSCI return codes, as the 64-bit x0 value.
pub const SUCCESS: u64 = 0;
pub const NOT_SUPPORTED: u64 = -1i64 as u64;
pub const INVALID_PARAMETERS: u64 = -2i64 as u64;
pub const ALREADY_ON: u64 = -4i64 as u64;

/// AFFINITY_INFO results.
pub const AFF_ON: u64 = 0;
pub const AFF_OFF: u64 = 1;

/// `hvc #0` with x0 = `fid`, x1..x3 = args; returns x0. x4..x17 are treated as
/// clobbered (SMCCC 1.0 allows the callee to corrupt them).
#[inline(always)]
pub fn hvc(fid: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    let r: u64;
    // SAFETY: an SMCCC call to the hypervisor (or, natively, to QEMU's PSCI); it can
    // change the machine state (memory permissions, other vCPUs) but not this
    // program's memory contents, and every register it may clobber is declared.
    unsafe {
        asm!("hvc #0",
            inout("x0") u64::from(fid) => r, inout("x1") a1 => _, inout("x2") a2 => _,
            inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
            out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
            options(nostack))
    };
    r
}

/// `smc #0`, otherwise as [`hvc`].
#[inline(always)]
pub fn smc(fid: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    let r: u64;
    // SAFETY: as for `hvc`; with the hypervisor trapping SMC (HCR_EL2.TSC) the call
    // reaches it; otherwise it is UNDEFINED and the vectors skip it.
    unsafe {
        asm!("smc #0",
            inout("x0") u64::from(fid) => r, inout("x1") a1 => _, inout("x2") a2 => _,
            inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
            out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
            options(nostack))
    };
    r
}

/// HV_COUNTER(index).
pub fn counter(index: u64) -> u64 {
    hvc(HV_COUNTER, index, 0, 0)
}

/// PSCI SYSTEM_OFF; returns only if the call failed.
pub fn system_off() -> u64 {
    hvc(PSCI_SYSTEM_OFF, 0, 0, 0)
}

/// This vCPU's MPIDR_EL1 affinity fields (Aff3..Aff0).
pub fn mpidr() -> u64 {
    let m: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {m}, mpidr_el1", m = out(reg) m, options(nomem, nostack)) };
    m & 0xff_00ff_ffff
}
