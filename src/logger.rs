//! The `log` backend: levels, a CPU prefix, output to the host console.
//!
//! Output goes through one lock so lines from different CPUs never interleave. The
//! console is the host PL011 the boot code found through `/chosen/stdout-path`; guest
//! console output and console input go through the same lock.

use crate::drivers::pl011::Pl011;
use core::fmt::Write;
use log::{LevelFilter, Metadata, Record};
use spin::Mutex;

/// The host console, once the boot code has found it.
pub static CONSOLE: Mutex<Option<Pl011>> = Mutex::new(None);

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
pub fn init(console: Pl011, level: LevelFilter) {
    *CONSOLE.lock() = Some(console);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Writes raw bytes to the console (no prefix, no newline translation): guest output.
pub fn write_raw(s: &[u8]) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        for &b in s {
            c.putc(b);
        }
    }
}

/// Reads one byte waiting in the console's receive FIFO, if any.
pub fn read_input() -> Option<u8> {
    CONSOLE.lock().as_mut().and_then(|c| c.try_getc())
}

/// Turns the console's receive interrupt on or off. Input is forwarded to a guest;
/// while the guest's own FIFO is full the interrupt is off, so the input waits in the
/// host UART (and, beyond its FIFO, in whatever feeds it) instead of being dropped.
pub fn set_input_irq(on: bool) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        c.clear_rx_irq();
        c.set_rx_irq(on);
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
