//! Per-VM counters: exits by reason, hypercalls, MMIO, stage-2 faults, injected aborts.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a vCPU left the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum ExitReason {
    /// HVC.
    Hvc = 0,
    /// SMC.
    Smc,
    /// WFI or WFE.
    Wfx,
    /// Stage-2 data abort.
    DataAbort,
    /// Stage-2 instruction abort.
    InstrAbort,
    /// Trapped system-register access.
    SysReg,
    /// Physical IRQ.
    Irq,
    /// Anything else.
    Other,
    /// Trapped AArch32 CP15/CP14 register access (shadow mode: translation registers).
    Cp15,
    /// Trapped guest TLB maintenance (shadow mode).
    Tlbi,
    /// Write to a write-protected guest translation table (shadow mode).
    WriteProtect,
    /// Software-step exception ending a stepped table write (shadow mode).
    Step,
}

/// Number of [`ExitReason`]s.
pub const EXIT_REASONS: usize = 12;
const NAMES: [&str; EXIT_REASONS] = [
    "hvc", "smc", "wfx", "dabt", "iabt", "sysreg", "irq", "other", "cp15", "tlbi", "wp", "step",
];

/// Counters of one VM, updated by all of its vCPUs.
#[derive(Default)]
pub struct VmCounters {
    exits: [AtomicU64; EXIT_REASONS],
    /// Hypercalls handled (PSCI and vendor calls).
    pub hypercalls: AtomicU64,
    /// Emulated MMIO accesses.
    pub mmio: AtomicU64,
    /// Stage-2 faults the hypervisor resolved without the guest noticing.
    pub s2_resolved: AtomicU64,
    /// Synchronous aborts injected into the guest.
    pub aborts_injected: AtomicU64,
    /// Undefined-instruction exceptions injected into the guest.
    pub undef_injected: AtomicU64,
}

impl VmCounters {
    /// Counts one exit.
    pub fn exit(&self, r: ExitReason) {
        self.exits[r as usize].fetch_add(1, Relaxed);
    }
    /// Exits of one reason so far.
    pub fn exits(&self, r: ExitReason) -> u64 {
        self.exits[r as usize].load(Relaxed)
    }
    /// All exits so far.
    pub fn total_exits(&self) -> u64 {
        self.exits.iter().map(|e| e.load(Relaxed)).sum()
    }
    /// Adds one to a counter.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
}

impl fmt::Display for VmCounters {
    /// One line: `exits=N (hvc=.. dabt=..) hypercalls=.. mmio=.. s2_faults_resolved=.. aborts_injected=..`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exits={} (", self.total_exits())?;
        let mut first = true;
        for (i, n) in NAMES.iter().enumerate() {
            let v = self.exits[i].load(Relaxed);
            if v != 0 {
                write!(f, "{}{n}={v}", if first { "" } else { " " })?;
                first = false;
            }
        }
        write!(
            f,
            ") hypercalls={} mmio={} s2_faults_resolved={} aborts_injected={} undef_injected={}",
            self.hypercalls.load(Relaxed),
            self.mmio.load(Relaxed),
            self.s2_resolved.load(Relaxed),
            self.aborts_injected.load(Relaxed),
            self.undef_injected.load(Relaxed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line() {
        let c = VmCounters::default();
        c.exit(ExitReason::Hvc);
        c.exit(ExitReason::Hvc);
        c.exit(ExitReason::DataAbort);
        VmCounters::bump(&c.mmio);
        let s = alloc::format!("{c}");
        assert_eq!(
            s,
            "exits=3 (hvc=2 dabt=1) hypercalls=0 mmio=1 s2_faults_resolved=0 aborts_injected=0 undef_injected=0"
        );
        assert!(!s.contains('\n'));
    }
}
