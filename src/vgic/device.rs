//! `MmioDevice` frames over a shared [`super::Vgic`]: the distributor and the redistributors.

use alloc::boxed::Box;

use crate::mmio::{DeviceError, MmioDevice};

use super::SharedVgic;

/// The distributor frame (GICD) as an MMIO device. Banked registers need the vCPU
/// making the access: a resolver closure if one was given, otherwise the last
/// [`GicdMmio::set_current_vcpu`]. Never returns an error: bad accesses are RAZ/WI.
pub struct GicdMmio {
    vgic: SharedVgic,
    current: usize,
    resolver: Option<Box<dyn Fn() -> usize + Send>>,
}

impl GicdMmio {
    /// A frame whose accessing vCPU is set with [`GicdMmio::set_current_vcpu`].
    pub fn new(vgic: SharedVgic) -> Self {
        Self {
            vgic,
            current: 0,
            resolver: None,
        }
    }

    /// A frame that asks `resolver` which vCPU is accessing (called under the router
    /// lock, on the accessing CPU).
    pub fn with_resolver(vgic: SharedVgic, resolver: impl Fn() -> usize + Send + 'static) -> Self {
        Self {
            vgic,
            current: 0,
            resolver: Some(Box::new(resolver)),
        }
    }

    /// Sets the vCPU the next accesses come from (ignored when a resolver is set).
    pub fn set_current_vcpu(&mut self, vcpu: usize) {
        self.current = vcpu;
    }

    /// The shared vGIC behind the frame.
    pub fn vgic(&self) -> &SharedVgic {
        &self.vgic
    }

    fn vcpu(&self) -> usize {
        match &self.resolver {
            Some(r) => r(),
            None => self.current,
        }
    }
}

impl MmioDevice for GicdMmio {
    fn name(&self) -> &str {
        "gicd"
    }
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, DeviceError> {
        let vcpu = self.vcpu();
        Ok(self.vgic.lock().dist_read(vcpu, offset, size))
    }
    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), DeviceError> {
        let vcpu = self.vcpu();
        self.vgic.lock().dist_write(vcpu, offset, size, value);
        Ok(())
    }
    /// Resets the whole vGIC (the redistributor frames have nothing of their own).
    fn on_reset(&mut self) {
        self.vgic.lock().reset();
    }
}

/// The GICv3 redistributor region (all vCPUs' RD_base + SGI_base frames, 128 KiB each)
/// as an MMIO device. Never returns an error: bad accesses are RAZ/WI.
pub struct GicrMmio {
    vgic: SharedVgic,
}

impl GicrMmio {
    /// The region over `vgic`; register it with [`super::Vgic::redist_size`] bytes.
    pub fn new(vgic: SharedVgic) -> Self {
        Self { vgic }
    }
}

impl MmioDevice for GicrMmio {
    fn name(&self) -> &str {
        "gicr"
    }
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, DeviceError> {
        Ok(self.vgic.lock().redist_read(offset, size))
    }
    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), DeviceError> {
        self.vgic.lock().redist_write(offset, size, value);
        Ok(())
    }
}
