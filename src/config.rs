//! VM configuration: the text format shipped in the guest bundle and `boards/*/*.vm`.
//!
//! One VM per line: `vm key=value ...`. Blank lines and `#` comments are ignored.
//!
//! | key       | meaning                                            | default |
//! |-----------|----------------------------------------------------|---------|
//! | name      | VM name, used as the console prefix (≤ 15 bytes)   | vmN     |
//! | kernel    | bundle entry holding the kernel image (required)   | —       |
//! | initrd    | bundle entry holding an initrd                     | none    |
//! | cmdline   | bundle entry holding the kernel command line       | none    |
//! | mem       | guest RAM size, with K/M/G suffix, 2 MiB multiple  | 128M    |
//! | cpus      | number of vCPUs                                    | 1       |
//! | first_cpu | physical CPU of vCPU 0 (vCPU n runs on first_cpu+n) | after the previous VM |
//! | mode      | memory mode: `stage2` or `shadow`                  | stage2  |
//! | arch      | guest EL1 state: `aarch64` or `aarch32`            | aarch64 |

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// How guest memory is virtualized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemMode {
    /// Hardware-assisted stage-2 translation.
    Stage2,
    /// Shadow page tables maintained by the hypervisor.
    Shadow,
}

/// The guest's EL1 execution state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestArch {
    /// AArch64 EL1.
    Aarch64,
    /// AArch32 EL1 (HCR_EL2.RW = 0).
    Aarch32,
}

/// One VM's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// Name and console prefix.
    pub name: String,
    /// Bundle entry with the kernel.
    pub kernel: String,
    /// Bundle entry with the initrd.
    pub initrd: Option<String>,
    /// Bundle entry with the command line.
    pub cmdline: Option<String>,
    /// Guest RAM bytes (a multiple of 2 MiB).
    pub mem: u64,
    /// Number of vCPUs.
    pub cpus: usize,
    /// Physical CPU of vCPU 0, if pinned explicitly.
    pub first_cpu: Option<usize>,
    /// Memory mode.
    pub mode: MemMode,
    /// Guest execution state.
    pub arch: GuestArch,
}

/// Errors in a configuration text, with the 1-based line number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A line that does not start with `vm`.
    NotAVm(usize),
    /// `key=value` is malformed or the key is unknown.
    BadKey(usize, String),
    /// A value that does not parse or is out of range.
    BadValue(usize, String, String),
    /// `kernel=` is missing.
    NoKernel(usize),
    /// The text names no VM at all.
    Empty,
    /// Two VMs want the same physical CPU, or more CPUs than exist.
    Cpus(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NotAVm(l) => write!(f, "line {l}: expected `vm key=value ...`"),
            ConfigError::BadKey(l, k) => write!(f, "line {l}: unknown or malformed setting `{k}`"),
            ConfigError::BadValue(l, k, v) => write!(f, "line {l}: bad value `{v}` for `{k}`"),
            ConfigError::NoKernel(l) => write!(f, "line {l}: the VM has no `kernel=`"),
            ConfigError::Empty => write!(f, "the configuration describes no VM"),
            ConfigError::Cpus(m) => write!(f, "{m}"),
        }
    }
}

/// Parses a size such as `128M`, `1G`, `4096` or `0x1000`.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n = match num.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok()?,
        None => num.parse::<u64>().ok()?,
    };
    n.checked_mul(mult)
}

/// Smallest and granularity of guest RAM.
pub const MEM_GRANULE: u64 = 2 << 20;

/// Parses a configuration text and assigns physical CPUs.
///
/// `phys_cpus` is the number of physical CPUs: VMs whose vCPUs would not fit, or
/// overlap another VM's, are refused with [`ConfigError::Cpus`].
pub fn parse(text: &str, phys_cpus: usize) -> Result<Vec<VmConfig>, ConfigError> {
    let mut vms = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        if words.next() != Some("vm") {
            return Err(ConfigError::NotAVm(lineno));
        }
        let mut vm = VmConfig {
            name: alloc::format!("vm{}", vms.len()),
            kernel: String::new(),
            initrd: None,
            cmdline: None,
            mem: 128 << 20,
            cpus: 1,
            first_cpu: None,
            mode: MemMode::Stage2,
            arch: GuestArch::Aarch64,
        };
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| ConfigError::BadKey(lineno, w.to_string()))?;
            let bad = || ConfigError::BadValue(lineno, k.to_string(), v.to_string());
            match k {
                "name" if !v.is_empty() && v.len() <= 15 => vm.name = v.to_string(),
                "name" => return Err(bad()),
                "kernel" => vm.kernel = v.to_string(),
                "initrd" => vm.initrd = Some(v.to_string()),
                "cmdline" => vm.cmdline = Some(v.to_string()),
                "mem" => {
                    let m = parse_size(v).ok_or_else(bad)?;
                    if m < MEM_GRANULE || m % MEM_GRANULE != 0 || m > (64 << 30) {
                        return Err(bad());
                    }
                    vm.mem = m;
                }
                "cpus" => {
                    vm.cpus = v.parse().map_err(|_| bad())?;
                    if vm.cpus == 0 || vm.cpus > 64 {
                        return Err(bad());
                    }
                }
                "first_cpu" => vm.first_cpu = Some(v.parse().map_err(|_| bad())?),
                "mode" => {
                    vm.mode = match v {
                        "stage2" => MemMode::Stage2,
                        "shadow" => MemMode::Shadow,
                        _ => return Err(bad()),
                    }
                }
                "arch" => {
                    vm.arch = match v {
                        "aarch64" => GuestArch::Aarch64,
                        "aarch32" => GuestArch::Aarch32,
                        _ => return Err(bad()),
                    }
                }
                _ => return Err(ConfigError::BadKey(lineno, w.to_string())),
            }
        }
        if vm.kernel.is_empty() {
            return Err(ConfigError::NoKernel(lineno));
        }
        vms.push(vm);
    }
    if vms.is_empty() {
        return Err(ConfigError::Empty);
    }
    assign_cpus(&mut vms, phys_cpus)?;
    Ok(vms)
}

fn assign_cpus(vms: &mut [VmConfig], phys_cpus: usize) -> Result<(), ConfigError> {
    let mut used = alloc::vec![false; phys_cpus];
    let mut next = 0;
    for vm in vms.iter_mut() {
        let first = vm.first_cpu.unwrap_or(next);
        let end = first + vm.cpus;
        if end > phys_cpus {
            return Err(ConfigError::Cpus(alloc::format!(
                "VM {} wants physical CPUs {}..{} but this machine has {} CPU(s); vCPUs are pinned one-to-one",
                vm.name,
                first,
                end - 1,
                phys_cpus
            )));
        }
        for (c, u) in used.iter_mut().enumerate().take(end).skip(first) {
            if *u {
                return Err(ConfigError::Cpus(alloc::format!(
                    "VM {} wants physical CPU {c}, which another VM already has",
                    vm.name
                )));
            }
            *u = true;
        }
        vm.first_cpu = Some(first);
        next = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_pins() {
        let t = "# two VMs\nvm name=a kernel=a/k mem=64M cpus=2\n\nvm name=b kernel=b/k initrd=b/i mode=shadow arch=aarch32\n";
        let v = parse(t, 4).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].mem, 64 << 20);
        assert_eq!(v[0].first_cpu, Some(0));
        assert_eq!(v[1].first_cpu, Some(2));
        assert_eq!(v[1].mode, MemMode::Shadow);
        assert_eq!(v[1].arch, GuestArch::Aarch32);
        assert_eq!(v[1].initrd.as_deref(), Some("b/i"));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse("vm name=a", 1), Err(ConfigError::NoKernel(1)));
        assert_eq!(parse("\nfoo", 1), Err(ConfigError::NotAVm(2)));
        assert!(matches!(
            parse("vm kernel=k mem=3M", 1),
            Err(ConfigError::BadValue(1, _, _))
        ));
        assert!(matches!(
            parse("vm kernel=k bogus=1", 1),
            Err(ConfigError::BadKey(1, _))
        ));
        assert!(matches!(
            parse("vm kernel=k cpus=3", 2),
            Err(ConfigError::Cpus(_))
        ));
        assert!(matches!(
            parse("vm kernel=k\nvm kernel=j first_cpu=0", 2),
            Err(ConfigError::Cpus(_))
        ));
        assert_eq!(parse("# nothing", 1), Err(ConfigError::Empty));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("0x1000"), Some(0x1000));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999999G"), None);
    }
}
