//! Emulated devices presented to guests (see docs/GUEST-ABI.md for the guest map).

pub mod irq;
pub mod pl011;
pub mod testdev;

pub use pl011::Pl011;
pub use testdev::TestDev;

/// Where an emulated console's output goes (the VM layer prefixes lines per VM).
pub trait ConsoleSink: Send {
    /// Consumes one transmitted byte.
    fn write_byte(&mut self, b: u8);
}

impl<F: FnMut(u8) + Send> ConsoleSink for F {
    fn write_byte(&mut self, b: u8) {
        self(b)
    }
}
