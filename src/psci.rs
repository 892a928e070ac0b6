//! PSCI (Arm DEN 0022) and SMCCC function identifiers, and the guest-side call decoder.

/// PSCI_VERSION.
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// CPU_SUSPEND (SMC32).
pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
/// CPU_SUSPEND (SMC64).
pub const CPU_SUSPEND_64: u32 = 0xC400_0001;
/// CPU_OFF.
pub const CPU_OFF: u32 = 0x8400_0002;
/// CPU_ON (SMC32).
pub const CPU_ON_32: u32 = 0x8400_0003;
/// CPU_ON (SMC64).
pub const CPU_ON_64: u32 = 0xC400_0003;
/// AFFINITY_INFO (SMC32).
pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
/// AFFINITY_INFO (SMC64).
pub const AFFINITY_INFO_64: u32 = 0xC400_0004;
/// MIGRATE_INFO_TYPE.
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// SYSTEM_OFF.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// SYSTEM_RESET.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// PSCI_FEATURES.
pub const PSCI_FEATURES: u32 = 0x8400_000A;
/// SMCCC_VERSION.
pub const SMCCC_VERSION: u32 = 0x8000_0000;

/// Vendor hypervisor service: no-op round trip (docs/GUEST-ABI.md).
pub const HV_NOP: u32 = 0x8600_0000;
/// Vendor hypervisor service: change stage-2 permissions of guest RAM.
pub const HV_MEM_PROTECT: u32 = 0xC600_0001;
/// Vendor hypervisor service: drop stage-2 mappings, keep the memory.
pub const HV_MEM_UNMAP_LAZY: u32 = 0xC600_0002;
/// Vendor hypervisor service: read a per-VM counter.
pub const HV_COUNTER: u32 = 0x8600_0003;

/// PSCI return code: success.
pub const SUCCESS: i64 = 0;
/// PSCI return code: not supported.
pub const NOT_SUPPORTED: i64 = -1;
/// PSCI return code: invalid parameters.
pub const INVALID_PARAMETERS: i64 = -2;
/// PSCI return code: denied.
pub const DENIED: i64 = -3;
/// PSCI return code: already on.
pub const ALREADY_ON: i64 = -4;
/// PSCI return code: an earlier CPU_ON for this CPU is still pending.
pub const ON_PENDING: i64 = -5;
/// PSCI return code: invalid address.
pub const INVALID_ADDRESS: i64 = -9;
/// AFFINITY_INFO: the CPU is on.
pub const AFFINITY_ON: i64 = 0;
/// AFFINITY_INFO: the CPU is off.
pub const AFFINITY_OFF: i64 = 1;
/// AFFINITY_INFO: the CPU is being turned on.
pub const AFFINITY_ON_PENDING: i64 = 2;

/// The PSCI version the hypervisor offers guests: 1.1.
pub const VERSION_1_1: i64 = 0x0001_0001;

/// A decoded guest call (HVC or SMC, function id in x0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// PSCI_VERSION.
    Version,
    /// PSCI_FEATURES for a function id.
    Features(u32),
    /// CPU_ON: target MPIDR, entry point, context id.
    CpuOn {
        /// Target MPIDR.
        mpidr: u64,
        /// Entry address.
        entry: u64,
        /// Value for the target's x0.
        context: u64,
    },
    /// CPU_OFF.
    CpuOff,
    /// AFFINITY_INFO: target MPIDR, lowest affinity level.
    AffinityInfo {
        /// Target MPIDR.
        mpidr: u64,
        /// Lowest affinity level (only 0 is supported).
        level: u64,
    },
    /// MIGRATE_INFO_TYPE.
    MigrateInfoType,
    /// SYSTEM_OFF.
    SystemOff,
    /// SYSTEM_RESET.
    SystemReset,
    /// SMCCC_VERSION.
    SmcccVersion,
    /// HV_NOP.
    HvNop,
    /// HV_MEM_PROTECT: IPA, size, permission bits (R=1, W=2, X=4).
    HvMemProtect {
        /// Guest physical address.
        ipa: u64,
        /// Size in bytes.
        size: u64,
        /// Permission bits.
        perms: u64,
    },
    /// HV_MEM_UNMAP_LAZY: IPA, size.
    HvMemUnmapLazy {
        /// Guest physical address.
        ipa: u64,
        /// Size in bytes.
        size: u64,
    },
    /// HV_COUNTER: counter index.
    HvCounter(u64),
    /// Anything else.
    Unknown(u32),
}

/// Decodes a call from the guest's x0..x3. SMC32 calls use only the low 32 bits of
/// their arguments, as the SMC Calling Convention says.
pub fn decode(x: &[u64; 4]) -> Call {
    let func = x[0] as u32;
    let smc64 = func & 0x4000_0000 != 0;
    let arg = |i: usize| if smc64 { x[i] } else { x[i] & 0xffff_ffff };
    match func {
        PSCI_VERSION => Call::Version,
        PSCI_FEATURES => Call::Features(arg(1) as u32),
        CPU_ON_32 | CPU_ON_64 => Call::CpuOn {
            mpidr: arg(1),
            entry: arg(2),
            context: arg(3),
        },
        CPU_OFF => Call::CpuOff,
        AFFINITY_INFO_32 | AFFINITY_INFO_64 => Call::AffinityInfo {
            mpidr: arg(1),
            level: arg(2),
        },
        MIGRATE_INFO_TYPE => Call::MigrateInfoType,
        SYSTEM_OFF => Call::SystemOff,
        SYSTEM_RESET => Call::SystemReset,
        SMCCC_VERSION => Call::SmcccVersion,
        HV_NOP => Call::HvNop,
        HV_MEM_PROTECT => Call::HvMemProtect {
            ipa: x[1],
            size: x[2],
            perms: x[3],
        },
        HV_MEM_UNMAP_LAZY => Call::HvMemUnmapLazy {
            ipa: x[1],
            size: x[2],
        },
        HV_COUNTER => Call::HvCounter(x[1]),
        f => Call::Unknown(f),
    }
}

/// PSCI_FEATURES: whether the hypervisor implements `func` for guests.
pub fn features(func: u32) -> i64 {
    match func {
        PSCI_VERSION | PSCI_FEATURES | CPU_ON_32 | CPU_ON_64 | CPU_OFF | AFFINITY_INFO_32
        | AFFINITY_INFO_64 | MIGRATE_INFO_TYPE | SYSTEM_OFF | SYSTEM_RESET | SMCCC_VERSION => {
            SUCCESS
        }
        _ => NOT_SUPPORTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_smc32_and_smc64() {
        assert_eq!(
            decode(&[CPU_ON_32 as u64, 0xffff_ffff_0000_0001, 0x1_4008_0000, 7]),
            Call::CpuOn {
                mpidr: 1,
                entry: 0x4008_0000,
                context: 7
            }
        );
        assert_eq!(
            decode(&[CPU_ON_64 as u64, 1, 0x1_4008_0000, 7]),
            Call::CpuOn {
                mpidr: 1,
                entry: 0x1_4008_0000,
                context: 7
            }
        );
        assert_eq!(decode(&[0xffff_ffff_8400_0000, 0, 0, 0]), Call::Version);
        assert_eq!(decode(&[0x1234, 0, 0, 0]), Call::Unknown(0x1234));
        assert_eq!(features(CPU_ON_64), SUCCESS);
        assert_eq!(features(CPU_SUSPEND_64), NOT_SUPPORTED);
        assert_eq!(features(0xdead), NOT_SUPPORTED);
    }
}
