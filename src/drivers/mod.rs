//! Drivers for the host's own devices (the hypervisor's console).

pub mod gicv2;
pub mod pl011;
