//! Connects an emulated device's interrupt output to a line of the VM's vGIC.
//!
//! [`IrqWired`] wraps a device that reports a level ([`LevelIrq`]); after every access
//! (and every [`IrqWired::update`] the owner calls after feeding the device from
//! outside, e.g. console input) it samples the level and, when it changed, drives the
//! vGIC line. It runs under the VM's MMIO router lock and takes the vGIC lock inside
//! it, which is the lock order the vGIC requires.

use crate::mmio::{DeviceError, MmioDevice};
use crate::vgic::SharedVgic;

/// A device with a level-sensitive interrupt output.
pub trait LevelIrq {
    /// The current level of the interrupt output.
    fn irq_level(&self) -> bool;
}

impl LevelIrq for super::Pl011 {
    fn irq_level(&self) -> bool {
        super::Pl011::irq_level(self)
    }
}

/// A device whose interrupt output drives vGIC line `intid` (an SPI).
pub struct IrqWired<D> {
    /// The wrapped device.
    pub dev: D,
    vgic: SharedVgic,
    intid: u32,
    level: bool,
}

impl<D: LevelIrq> IrqWired<D> {
    /// Wires `dev`'s interrupt to SPI `intid` (32..) of `vgic`.
    pub fn new(dev: D, vgic: SharedVgic, intid: u32) -> Self {
        Self {
            dev,
            vgic,
            intid,
            level: false,
        }
    }

    /// Samples the device's level and forwards a change to the vGIC.
    pub fn update(&mut self) {
        let l = self.dev.irq_level();
        if l != self.level {
            self.level = l;
            if let Err(e) = self.vgic.lock().set_level(self.intid, 0, l) {
                crate::guest_warn!("interrupt line {}: {e:?}", self.intid);
            }
        }
    }
}

impl<D: MmioDevice + LevelIrq> MmioDevice for IrqWired<D> {
    fn name(&self) -> &str {
        self.dev.name()
    }
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, DeviceError> {
        let r = self.dev.read(offset, size);
        self.update();
        r
    }
    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), DeviceError> {
        let r = self.dev.write(offset, size, value);
        self.update();
        r
    }
    fn on_reset(&mut self) {
        self.dev.on_reset();
        self.update();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vgic::{GicVersion, Vgic};

    struct Line(bool);
    impl LevelIrq for Line {
        fn irq_level(&self) -> bool {
            self.0
        }
    }
    impl MmioDevice for Line {
        fn name(&self) -> &'static str {
            "line"
        }
        fn read(&mut self, _o: u64, _s: u8) -> Result<u64, DeviceError> {
            Ok(self.0 as u64)
        }
        fn write(&mut self, _o: u64, _s: u8, v: u64) -> Result<(), DeviceError> {
            self.0 = v != 0;
            Ok(())
        }
    }

    #[test]
    fn level_changes_reach_the_vgic() {
        let vg = Vgic::new(GicVersion::V2, 1, 32).unwrap().into_shared();
        // Enable SPI 33 for CPU 0 and the distributor, as a guest driver would.
        {
            let mut g = vg.lock();
            g.dist_write(0, 0x000, 4, 1);
            g.dist_write(0, 0x104, 4, 1 << 1);
            g.dist_write(0, 0x821, 1, 1);
        }
        let mut w = IrqWired::new(Line(false), vg.clone(), 33);
        assert!(!vg.lock().pending_for(0));
        w.write(0, 4, 1).unwrap();
        assert!(vg.lock().pending_for(0));
        w.write(0, 4, 0).unwrap();
        assert!(!vg.lock().pending_for(0));
    }
}

#[cfg(test)]
mod uart_tests {
    use super::*;
    use crate::devices::pl011::Pl011;
    use crate::vgic::lr::Lr;
    use crate::vgic::{GicVersion, Vgic};
    use alloc::boxed::Box;

    /// Console input through the emulated PL011 and the vGIC, the way Linux's
    /// amba-pl011 driver takes it: the interrupt is injected once, and after the driver
    /// has drained the FIFO and EOId it is not injected again.
    #[test]
    fn uart_rx_interrupt_is_not_reinjected_after_draining() {
        let vg = Vgic::new(GicVersion::V2, 1, 32).unwrap().into_shared();
        {
            let mut g = vg.lock();
            g.dist_write(0, 0x000, 4, 1); // GICD_CTLR
            g.dist_write(0, 0x104, 4, 1 << 1); // ISENABLER1: SPI 1 = INTID 33
            g.dist_write(0, 0x821, 1, 1); // ITARGETSR: CPU 0
            g.dist_write(0, 0xc08, 4, 0); // ICFGR2: level-sensitive
        }
        let mut u = IrqWired::new(Pl011::new(Box::new(|_b: u8| {})), vg.clone(), 33);
        u.write(0x30, 4, 0x301).unwrap(); // UARTCR: enable, TX, RX
        u.write(0x38, 4, 0x50).unwrap(); // UARTIMSC: RX | RT
        assert!(u.dev.push_rx(b'a'));
        u.update();
        let f = vg.lock().fill(0, 4);
        assert_eq!(f.used(), 1);
        let lr = Lr::decode(GicVersion::V2, f.values()[0]);
        assert_eq!(lr.vintid, 33);
        // The guest takes it, reads the data until RXFE, and EOIs: the LR comes back
        // invalid (with the EOI maintenance bit the fill set).
        assert_eq!(u.read(0x00, 4).unwrap() & 0xff, b'a' as u64);
        assert_ne!(
            u.read(0x18, 4).unwrap() & (1 << 4),
            0,
            "RXFE after draining"
        );
        assert!(!u.dev.irq_level());
        let eoied = f.values()[0] & !(3 << 28);
        vg.lock().sync(0, &[eoied]);
        assert!(!vg.lock().pending_for(0));
        let f = vg.lock().fill(0, 4);
        assert_eq!(f.used(), 0, "not injected again");
        assert!(
            f.values().iter().all(|&v| v == 0),
            "unused LRs are written empty: {:x?}",
            f.values()
        );
    }
}
