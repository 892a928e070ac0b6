//! An emulated PL011 UART for guests, faithful enough for Linux's amba-pl011 driver.
//!
//! Register map and bit assignments from the PL011 TRM (ARM DDI 0183, 3.2 "Summary of
//! registers" and 3.3 "Register descriptions"); the bitfields are the ones the host
//! driver uses (`drivers::pl011`). Transmission is instantaneous: every byte written
//! to UARTDR goes straight to the [`ConsoleSink`], so the transmit FIFO always reads
//! empty and the UART is never busy. Received bytes are pushed in with
//! [`Pl011::push_rx`] into a 32-entry FIFO (1 entry with FIFOs disabled). As in QEMU's
//! model, the receive interrupt asserts whenever the FIFO holds a byte.

use alloc::boxed::Box;
use log::debug;
use tock_registers::LocalRegisterCopy;

pub use super::ConsoleSink;
use crate::drivers::pl011::{offset, CR, DR, FR, ID_REGS, IFLS, INT, LCR_H, RSR};
use crate::mmio::{DeviceError, MmioDevice};

/// Depth of the receive FIFO with FIFOs enabled (TRM 2.4.3).
pub const FIFO_DEPTH: usize = 32;
/// Size of the device's IPA window.
pub const WINDOW: u64 = 0x1000;

/// All implemented bits of UARTIMSC/UARTRIS/UARTICR.
const INT_MASK: u32 = 0x7ff;

/// The emulated UART.
pub struct Pl011 {
    sink: Box<dyn ConsoleSink>,
    rx: [u16; FIFO_DEPTH],
    rx_head: usize,
    rx_len: usize,
    rsr: LocalRegisterCopy<u32, RSR::Register>,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: LocalRegisterCopy<u32, LCR_H::Register>,
    cr: LocalRegisterCopy<u32, CR::Register>,
    ifls: LocalRegisterCopy<u32, IFLS::Register>,
    imsc: LocalRegisterCopy<u32, INT::Register>,
    /// Latched raw interrupt bits (TX and errors); RX is derived from the FIFO.
    ris_latched: LocalRegisterCopy<u32, INT::Register>,
    dmacr: u32,
}

impl Pl011 {
    /// A UART in its reset state (TRM 3.3: UARTCR = 0x300, UARTIFLS = 0x12) writing
    /// transmitted bytes to `sink`.
    pub fn new(sink: Box<dyn ConsoleSink>) -> Self {
        Self {
            sink,
            rx: [0; FIFO_DEPTH],
            rx_head: 0,
            rx_len: 0,
            rsr: LocalRegisterCopy::new(0),
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: LocalRegisterCopy::new(0),
            cr: LocalRegisterCopy::new(0x300),
            ifls: LocalRegisterCopy::new(0x12),
            imsc: LocalRegisterCopy::new(0),
            ris_latched: LocalRegisterCopy::new(0),
            dmacr: 0,
        }
    }

    fn depth(&self) -> usize {
        if self.lcr_h.is_set(LCR_H::FEN) {
            FIFO_DEPTH
        } else {
            1
        }
    }

    /// True if the receive FIFO has room for another byte.
    pub fn can_accept(&self) -> bool {
        self.rx_len < self.depth()
    }

    /// Queues a received byte. Returns false (and flags an overrun, as the hardware
    /// does) when the FIFO is full; in that case the byte is lost.
    pub fn push_rx(&mut self, byte: u8) -> bool {
        if !self.can_accept() {
            self.rsr.modify(RSR::OE::SET);
            self.ris_latched.modify(INT::OE::SET);
            return false;
        }
        let tail = (self.rx_head + self.rx_len) % FIFO_DEPTH;
        self.rx[tail] = byte as u16;
        self.rx_len += 1;
        true
    }

    fn pop_rx(&mut self) -> u32 {
        if self.rx_len == 0 {
            return 0;
        }
        let v = self.rx[self.rx_head];
        self.rx_head = (self.rx_head + 1) % FIFO_DEPTH;
        self.rx_len -= 1;
        v as u32
    }

    fn flags(&self) -> LocalRegisterCopy<u32, FR::Register> {
        let mut fr = LocalRegisterCopy::<u32, FR::Register>::new(0);
        fr.modify(FR::TXFE::SET);
        if self.rx_len == 0 {
            fr.modify(FR::RXFE::SET);
        }
        if self.rx_len >= self.depth() {
            fr.modify(FR::RXFF::SET);
        }
        fr
    }

    /// UARTRIS: latched bits plus the receive interrupt while the FIFO holds data.
    pub fn raw_interrupts(&self) -> u32 {
        let mut ris = self.ris_latched;
        if self.rx_len > 0 {
            ris.modify(INT::RX::SET);
        }
        ris.get() & INT_MASK
    }

    /// UARTIMSC: the interrupt mask the guest set.
    pub fn interrupt_mask(&self) -> u32 {
        self.imsc.get()
    }

    /// The interrupt line level: some raw interrupt is unmasked (UARTMIS != 0).
    pub fn irq_level(&self) -> bool {
        self.raw_interrupts() & self.imsc.get() != 0
    }

    fn transmit(&mut self, byte: u8) {
        if self.cr.is_set(CR::LBE) {
            self.push_rx(byte);
        } else {
            self.sink.write_byte(byte);
        }
        self.ris_latched.modify(INT::TX::SET);
    }

    /// Reads the 32-bit register at `reg` (word aligned). `low_byte` tells whether the
    /// access covers bits [7:0], which is what pops the receive FIFO on UARTDR.
    fn read_reg(&mut self, reg: u64, low_byte: bool) -> Option<u32> {
        Some(match reg {
            offset::DR => {
                if low_byte {
                    let v = self.pop_rx();
                    let errs = self.rsr.get();
                    (v & 0xff) | (errs << DR::FE.shift)
                } else {
                    0
                }
            }
            offset::RSR_ECR => self.rsr.get(),
            offset::FR => self.flags().get(),
            offset::ILPR => self.ilpr,
            offset::IBRD => self.ibrd,
            offset::FBRD => self.fbrd,
            offset::LCR_H => self.lcr_h.get(),
            offset::CR => self.cr.get(),
            offset::IFLS => self.ifls.get(),
            offset::IMSC => self.imsc.get(),
            offset::RIS => self.raw_interrupts(),
            offset::MIS => self.raw_interrupts() & self.imsc.get(),
            offset::ICR => 0,
            offset::DMACR => self.dmacr,
            0xfe0..=0xffc => ID_REGS[((reg - offset::PERIPH_ID0) / 4) as usize] as u32,
            _ => return None,
        })
    }

    /// Writes the bits `mask` of `value` into the 32-bit register at `reg`.
    fn write_reg(&mut self, reg: u64, value: u32, mask: u32) -> bool {
        let merge = |old: u32| (old & !mask) | (value & mask);
        match reg {
            offset::DR => {
                if mask & 0xff == 0xff {
                    self.transmit(value as u8);
                }
            }
            offset::RSR_ECR => self.rsr.set(0),
            offset::ILPR => self.ilpr = merge(self.ilpr) & 0xff,
            offset::IBRD => self.ibrd = merge(self.ibrd) & 0xffff,
            offset::FBRD => self.fbrd = merge(self.fbrd) & 0x3f,
            offset::LCR_H => {
                let old_fen = self.lcr_h.is_set(LCR_H::FEN);
                self.lcr_h.set(merge(self.lcr_h.get()) & 0xff);
                if old_fen != self.lcr_h.is_set(LCR_H::FEN) {
                    // Changing the FIFO mode flushes it (QEMU does the same).
                    self.rx_len = 0;
                    self.rx_head = 0;
                }
            }
            offset::CR => self.cr.set(merge(self.cr.get()) & 0xff87),
            offset::IFLS => self.ifls.set(merge(self.ifls.get()) & 0x3f),
            offset::IMSC => self.imsc.set(merge(self.imsc.get()) & INT_MASK),
            offset::ICR => {
                let clear = value & mask & INT_MASK;
                self.ris_latched.set(self.ris_latched.get() & !clear);
            }
            offset::DMACR => self.dmacr = merge(self.dmacr) & 0x7,
            offset::FR | offset::RIS | offset::MIS | 0xfe0..=0xffc => {
                debug!("pl011: write to read-only register {reg:#x} ignored");
            }
            _ => return false,
        }
        true
    }

    fn check(offset: u64, size: u8) -> bool {
        matches!(size, 1 | 2 | 4) && offset.is_multiple_of(size as u64) && offset < WINDOW
    }
}

impl MmioDevice for Pl011 {
    fn name(&self) -> &str {
        "pl011"
    }

    fn read(&mut self, offset: u64, size: u8) -> Result<u64, DeviceError> {
        if !Self::check(offset, size) {
            crate::guest_warn!("pl011: bad read at {offset:#x} size {size}: RAZ");
            return Ok(0);
        }
        let shift = (offset & 3) * 8;
        match self.read_reg(offset & !3, shift == 0) {
            Some(v) => {
                let m = if size == 4 {
                    u32::MAX
                } else {
                    (1u32 << (size as u32 * 8)) - 1
                };
                Ok(((v >> shift) & m) as u64)
            }
            None => {
                crate::guest_warn!("pl011: read of unknown offset {offset:#x}: RAZ");
                Ok(0)
            }
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), DeviceError> {
        if !Self::check(offset, size) {
            crate::guest_warn!("pl011: bad write at {offset:#x} size {size}: ignored");
            return Ok(());
        }
        let shift = (offset & 3) * 8;
        let m = if size == 4 {
            u32::MAX
        } else {
            (1u32 << (size as u32 * 8)) - 1
        };
        if !self.write_reg(offset & !3, (value as u32) << shift, m << shift) {
            crate::guest_warn!("pl011: write to unknown offset {offset:#x} ignored");
        }
        Ok(())
    }

    fn on_reset(&mut self) {
        let sink = core::mem::replace(&mut self.sink, Box::new(|_b: u8| {}));
        *self = Self::new(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn uart() -> (Pl011, Arc<spin::Mutex<Vec<u8>>>) {
        let out = Arc::new(spin::Mutex::new(Vec::new()));
        let o = out.clone();
        (Pl011::new(Box::new(move |b| o.lock().push(b))), out)
    }

    #[test]
    fn id_registers() {
        let (mut u, _) = uart();
        let ids: Vec<u64> = (0..8).map(|i| u.read(0xfe0 + 4 * i, 4).unwrap()).collect();
        assert_eq!(ids, [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
        assert_eq!(u.read(0xfe0, 1), Ok(0x11));
        u.write(0xfe0, 4, 0).unwrap();
        assert_eq!(u.read(0xfe0, 4), Ok(0x11));
    }

    #[test]
    fn transmit_all_sizes() {
        let (mut u, out) = uart();
        u.write(0x000, 4, 0x141).unwrap();
        u.write(0x000, 2, 0x42).unwrap();
        u.write(0x000, 1, 0x43).unwrap();
        // Bits above the data byte do not reach the sink; a byte write to lane 1 sends
        // nothing.
        u.write(0x001, 1, 0x44).unwrap();
        assert_eq!(&*out.lock(), b"ABC");
        // Transmit is instantaneous.
        let fr = u.read(0x018, 4).unwrap();
        assert_eq!(fr & 0xa8, 0x80, "TXFE set, TXFF and BUSY clear");
    }

    #[test]
    fn reset_values() {
        let (mut u, _) = uart();
        assert_eq!(u.read(0x030, 4), Ok(0x300));
        assert_eq!(u.read(0x034, 4), Ok(0x12));
        assert_eq!(u.read(0x018, 4), Ok(0x90));
        assert_eq!(u.read(0x03c, 4), Ok(0));
        assert!(!u.irq_level());
    }

    #[test]
    fn control_registers_round_trip() {
        let (mut u, _) = uart();
        for (off, v, want) in [
            (0x020, 0x1ff, 0xff),
            (0x024, 0x1_000d, 0xd),
            (0x028, 0xff, 0x3f),
            (0x02c, 0x70, 0x70),
            (0x030, 0xffff_ffff, 0xff87),
            (0x034, 0xff, 0x3f),
            (0x038, 0xffff, 0x7ff),
            (0x048, 0xff, 0x7),
        ] {
            u.write(off, 4, v).unwrap();
            assert_eq!(u.read(off, 4), Ok(want), "offset {off:#x}");
        }
        // 16-bit and 8-bit accesses to a register merge lanes.
        u.write(0x030, 2, 0x0301).unwrap();
        assert_eq!(u.read(0x030, 4), Ok(0x301));
        u.write(0x031, 1, 0x00).unwrap();
        assert_eq!(u.read(0x030, 4), Ok(0x001));
        assert_eq!(u.read(0x030, 1), Ok(0x01));
    }

    #[test]
    fn receive_fifo_and_interrupts() {
        let (mut u, _) = uart();
        u.write(0x02c, 4, 0x70).unwrap(); // FEN, 8 bits
        u.write(0x038, 4, 0x50).unwrap(); // RXIM | RTIM
        assert!(!u.irq_level());
        assert!(u.push_rx(b'h'));
        assert!(u.push_rx(b'i'));
        assert!(u.irq_level());
        assert_eq!(u.read(0x03c, 4).unwrap() & 0x10, 0x10);
        assert_eq!(u.read(0x040, 4).unwrap(), 0x10);
        assert_eq!(u.read(0x018, 4).unwrap() & 0x10, 0);
        assert_eq!(u.read(0x000, 4), Ok(b'h' as u64));
        assert_eq!(u.read(0x000, 1), Ok(b'i' as u64));
        assert_eq!(u.read(0x018, 4).unwrap() & 0x10, 0x10);
        assert!(!u.irq_level());
        assert_eq!(u.read(0x000, 4), Ok(0));
        // Fill the FIFO: RXFF, then overrun.
        for i in 0..FIFO_DEPTH {
            assert!(u.push_rx(i as u8));
        }
        assert_eq!(u.read(0x018, 4).unwrap() & 0x40, 0x40);
        assert!(!u.push_rx(0xff));
        assert_eq!(u.read(0x004, 4), Ok(0x8));
        assert_eq!(u.read(0x03c, 4).unwrap() & 0x400, 0x400);
        u.write(0x004, 4, 0).unwrap(); // UARTECR clears
        u.write(0x044, 4, 0x7ff).unwrap(); // ICR clears latched bits
        assert_eq!(u.read(0x004, 4), Ok(0));
        assert_eq!(
            u.read(0x03c, 4).unwrap(),
            0x10,
            "RX stays while data remains"
        );
    }

    #[test]
    fn fifo_disabled_holds_one_byte() {
        let (mut u, _) = uart();
        assert!(u.push_rx(1));
        assert!(!u.can_accept());
        assert!(!u.push_rx(2));
        assert_eq!(u.read(0x018, 4).unwrap() & 0x40, 0x40);
    }

    #[test]
    fn tx_interrupt_and_loopback() {
        let (mut u, out) = uart();
        u.write(0x038, 4, 0x20).unwrap(); // TXIM
        u.write(0x000, 4, b'x' as u64).unwrap();
        assert!(u.irq_level());
        u.write(0x044, 4, 0x20).unwrap();
        assert!(!u.irq_level());
        u.write(0x030, 4, 0x381).unwrap(); // LBE
        u.write(0x000, 4, b'y' as u64).unwrap();
        assert_eq!(&*out.lock(), b"x");
        assert_eq!(u.read(0x000, 4), Ok(b'y' as u64));
    }

    #[test]
    fn bad_accesses_are_raz_wi() {
        let (mut u, out) = uart();
        assert_eq!(u.read(0x000, 8), Ok(0));
        assert_eq!(u.read(0x002, 4), Ok(0));
        assert_eq!(u.read(0x100, 4), Ok(0));
        assert_eq!(u.read(0x1000, 4), Ok(0));
        u.write(0x000, 8, b'z' as u64).unwrap();
        u.write(0x100, 4, 1).unwrap();
        assert!(out.lock().is_empty());
    }

    #[test]
    fn reset_keeps_sink() {
        let (mut u, out) = uart();
        u.write(0x030, 4, 0).unwrap();
        u.push_rx(1);
        u.on_reset();
        assert_eq!(u.read(0x030, 4), Ok(0x300));
        assert_eq!(u.read(0x018, 4), Ok(0x90));
        u.write(0x000, 1, b'k' as u64).unwrap();
        assert_eq!(&*out.lock(), b"k");
    }

    /// The register sequence Linux's amba-pl011 driver performs at probe and startup
    /// (AMBA ID read, pl011_hwinit, pl011_startup with the loopback "provoke TX"
    /// trick of older kernels, pl011_enable_interrupts, console write, RX interrupt).
    #[test]
    fn linux_driver_sequence() {
        let (mut u, out) = uart();
        // amba_read_periphid: 32-bit reads of 0xfe0..0xffc.
        let mut pid = 0u32;
        let mut cid = 0u32;
        for i in 0..4 {
            pid |= (u.read(0xfe0 + 4 * i, 4).unwrap() as u32 & 0xff) << (8 * i);
            cid |= (u.read(0xff0 + 4 * i, 4).unwrap() as u32 & 0xff) << (8 * i);
        }
        assert_eq!((pid & 0x000f_ffff, cid), (0x0004_1011, 0xb105_f00d));
        // pl011_hwinit: clear errors and interrupts, read the mask.
        u.write(0x004, 4, 0).unwrap();
        u.write(0x044, 4, 0x7ff).unwrap();
        assert_eq!(u.read(0x038, 4), Ok(0));
        // Old startup: loopback write to provoke TX, wait for !BUSY, then normal mode.
        u.write(0x034, 4, 0x12).unwrap();
        u.write(0x030, 4, 0x181).unwrap(); // UARTEN | TXE | LBE
        u.write(0x000, 4, 0).unwrap();
        assert_eq!(u.read(0x018, 4).unwrap() & 0x8, 0);
        u.write(0x030, 4, 0x301).unwrap();
        // pl011_enable_interrupts: drain RX (the looped-back byte), unmask RX/RT.
        u.write(0x044, 4, 0x7ff & !0x20).unwrap();
        let mut drained = 0;
        while u.read(0x018, 4).unwrap() & 0x10 == 0 && drained < 64 {
            u.read(0x000, 4).unwrap();
            drained += 1;
        }
        assert_eq!(drained, 1);
        u.write(0x038, 4, 0x50).unwrap();
        // Baud and line setup (pl011_set_termios), FIFO on.
        u.write(0x024, 4, 13).unwrap();
        u.write(0x028, 4, 1).unwrap();
        u.write(0x02c, 4, 0x70).unwrap();
        // Console write: poll TXFF then write.
        for &b in b"ok\n" {
            while u.read(0x018, 4).unwrap() & 0x20 != 0 {}
            u.write(0x000, 4, b as u64).unwrap();
        }
        assert_eq!(&*out.lock(), b"ok\n");
        // Input raises the (unmasked) RX interrupt until drained.
        u.push_rx(b'x');
        assert!(u.irq_level());
        assert_eq!(u.read(0x040, 4), Ok(0x10));
        assert_eq!(u.read(0x000, 4), Ok(b'x' as u64));
        assert!(!u.irq_level());
    }

    proptest! {
        #[test]
        fn flags_and_irq_invariants(ops in proptest::collection::vec((0u8..4, any::<u8>()), 0..80)) {
            let (mut u, _) = uart();
            u.write(0x02c, 4, 0x70).unwrap();
            u.write(0x038, 4, 0x7ff).unwrap();
            let mut model = 0usize;
            for (op, v) in ops {
                match op {
                    0 => { if u.push_rx(v) { model += 1; } }
                    1 => { let _ = u.read(0x000, 4); model = model.saturating_sub(1); }
                    2 => { let _ = u.write(0x044, 4, v as u64); }
                    _ => { let _ = u.write(0x000, 1, v as u64); }
                }
                let fr = u.read(0x018, 4).unwrap();
                prop_assert_eq!(fr & 0x10 != 0, model == 0);
                prop_assert_eq!(fr & 0x40 != 0, model == FIFO_DEPTH);
                let ris = u.read(0x03c, 4).unwrap();
                let mis = u.read(0x040, 4).unwrap();
                prop_assert_eq!(mis, ris & u.read(0x038, 4).unwrap());
                prop_assert_eq!(u.irq_level(), mis != 0);
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics(ops in proptest::collection::vec((any::<u16>(), 0u8..10, any::<u64>(), any::<bool>()), 0..64)) {
            let (mut u, _) = uart();
            for (off, size, v, w) in ops {
                let off = off as u64 & 0x1fff;
                if w { let _ = u.write(off, size, v); } else { let _ = u.read(off, size); }
                u.push_rx(v as u8);
                let _ = u.irq_level();
            }
        }
    }
}
