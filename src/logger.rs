//! The `log` backend: levels, a CPU prefix, output to the host console.
//!
//! Output goes through one lock so lines from different CPUs never interleave. The
//! console is whatever `core::fmt::Write` the boot code installs (the host PL011).

use core::fmt::Write;
use log::{LevelFilter, Metadata, Record};
use spin::Mutex;

/// The host console, once the boot code has found it.
pub static CONSOLE: Mutex<Option<&'static mut (dyn Write + Send)>> = Mutex::new(None);

struct Logger;

static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let cpu = crate::arch::cpu_id();
        if let Some(c) = CONSOLE.lock().as_mut() {
            let _ = writeln!(c, "[hv cpu{cpu}] {:5} {}", r.level(), r.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the console and the logger with the given level.
pub fn init(console: &'static mut (dyn Write + Send), level: LevelFilter) {
    *CONSOLE.lock() = Some(console);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Writes raw text to the console (no prefix), e.g. guest console output.
pub fn write_raw(s: &[u8]) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        for &b in s {
            let _ = c.write_char(b as char);
        }
    }
}

/// Parses a level name from the hypervisor's command line (`hv.log=debug`).
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    match s {
        "off" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}
