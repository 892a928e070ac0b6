//! Drivers for the host's own devices (the hypervisor's console).

pub mod pl011;
