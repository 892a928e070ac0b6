//! Host driver for the ARM PrimeCell UART (PL011), the hypervisor's own console.
//!
//! Register map and field names from the PL011 Technical Reference Manual (ARM DDI 0183,
//! chapter 3 "Programmers Model"; section numbers below are those of revision r1p5,
//! DDI 0183G). The bitfield definitions are shared with the emulated PL011 in
//! `devices::pl011`.

use core::fmt;

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! [
    u32,
    /// UARTDR, Data Register (TRM 3.3.1).
    pub DR [
        /// Receive (read) / transmit (write) data character.
        DATA OFFSET(0) NUMBITS(8) [],
        /// Framing error.
        FE OFFSET(8) NUMBITS(1) [],
        /// Parity error.
        PE OFFSET(9) NUMBITS(1) [],
        /// Break error.
        BE OFFSET(10) NUMBITS(1) [],
        /// Overrun error.
        OE OFFSET(11) NUMBITS(1) []
    ],
    /// UARTRSR/UARTECR, Receive Status / Error Clear Register (TRM 3.3.2).
    pub RSR [
        /// Framing error.
        FE OFFSET(0) NUMBITS(1) [],
        /// Parity error.
        PE OFFSET(1) NUMBITS(1) [],
        /// Break error.
        BE OFFSET(2) NUMBITS(1) [],
        /// Overrun error.
        OE OFFSET(3) NUMBITS(1) []
    ],
    /// UARTFR, Flag Register (TRM 3.3.3).
    pub FR [
        /// Clear to send.
        CTS OFFSET(0) NUMBITS(1) [],
        /// Data set ready.
        DSR OFFSET(1) NUMBITS(1) [],
        /// Data carrier detect.
        DCD OFFSET(2) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO full.
        RXFF OFFSET(6) NUMBITS(1) [],
        /// Transmit FIFO empty.
        TXFE OFFSET(7) NUMBITS(1) [],
        /// Ring indicator.
        RI OFFSET(8) NUMBITS(1) []
    ],
    /// UARTILPR, IrDA Low-Power Counter Register (TRM 3.3.4).
    pub ILPR [
        /// 8-bit low-power divisor.
        ILPDVSR OFFSET(0) NUMBITS(8) []
    ],
    /// UARTIBRD, Integer Baud Rate Register (TRM 3.3.5).
    pub IBRD [
        /// Integer part of the baud rate divisor.
        BAUD_DIVINT OFFSET(0) NUMBITS(16) []
    ],
    /// UARTFBRD, Fractional Baud Rate Register (TRM 3.3.6).
    pub FBRD [
        /// Fractional part of the baud rate divisor.
        BAUD_DIVFRAC OFFSET(0) NUMBITS(6) []
    ],
    /// UARTLCR_H, Line Control Register (TRM 3.3.7).
    pub LCR_H [
        /// Send break.
        BRK OFFSET(0) NUMBITS(1) [],
        /// Parity enable.
        PEN OFFSET(1) NUMBITS(1) [],
        /// Even parity select.
        EPS OFFSET(2) NUMBITS(1) [],
        /// Two stop bits select.
        STP2 OFFSET(3) NUMBITS(1) [],
        /// Enable FIFOs.
        FEN OFFSET(4) NUMBITS(1) [],
        /// Word length.
        WLEN OFFSET(5) NUMBITS(2) [
            FiveBit = 0,
            SixBit = 1,
            SevenBit = 2,
            EightBit = 3
        ],
        /// Stick parity select.
        SPS OFFSET(7) NUMBITS(1) []
    ],
    /// UARTCR, Control Register (TRM 3.3.8).
    pub CR [
        /// UART enable.
        UARTEN OFFSET(0) NUMBITS(1) [],
        /// SIR enable.
        SIREN OFFSET(1) NUMBITS(1) [],
        /// SIR low-power IrDA mode.
        SIRLP OFFSET(2) NUMBITS(1) [],
        /// Loopback enable.
        LBE OFFSET(7) NUMBITS(1) [],
        /// Transmit enable.
        TXE OFFSET(8) NUMBITS(1) [],
        /// Receive enable.
        RXE OFFSET(9) NUMBITS(1) [],
        /// Data transmit ready.
        DTR OFFSET(10) NUMBITS(1) [],
        /// Request to send.
        RTS OFFSET(11) NUMBITS(1) [],
        /// Out1 modem output.
        OUT1 OFFSET(12) NUMBITS(1) [],
        /// Out2 modem output.
        OUT2 OFFSET(13) NUMBITS(1) [],
        /// RTS hardware flow control enable.
        RTSEN OFFSET(14) NUMBITS(1) [],
        /// CTS hardware flow control enable.
        CTSEN OFFSET(15) NUMBITS(1) []
    ],
    /// UARTIFLS, Interrupt FIFO Level Select Register (TRM 3.3.9).
    pub IFLS [
        /// Transmit interrupt FIFO level select.
        TXIFLSEL OFFSET(0) NUMBITS(3) [],
        /// Receive interrupt FIFO level select.
        RXIFLSEL OFFSET(3) NUMBITS(3) []
    ],
    /// The interrupt bits shared by UARTIMSC (TRM 3.3.10, "...IM"), UARTRIS (3.3.11,
    /// "...RIS"), UARTMIS (3.3.12, "...MIS") and UARTICR (3.3.13, "...IC").
    pub INT [
        /// nUARTRI modem interrupt.
        RIM OFFSET(0) NUMBITS(1) [],
        /// nUARTCTS modem interrupt.
        CTSM OFFSET(1) NUMBITS(1) [],
        /// nUARTDCD modem interrupt.
        DCDM OFFSET(2) NUMBITS(1) [],
        /// nUARTDSR modem interrupt.
        DSRM OFFSET(3) NUMBITS(1) [],
        /// Receive interrupt.
        RX OFFSET(4) NUMBITS(1) [],
        /// Transmit interrupt.
        TX OFFSET(5) NUMBITS(1) [],
        /// Receive timeout interrupt.
        RT OFFSET(6) NUMBITS(1) [],
        /// Framing error interrupt.
        FE OFFSET(7) NUMBITS(1) [],
        /// Parity error interrupt.
        PE OFFSET(8) NUMBITS(1) [],
        /// Break error interrupt.
        BE OFFSET(9) NUMBITS(1) [],
        /// Overrun error interrupt.
        OE OFFSET(10) NUMBITS(1) []
    ],
    /// UARTDMACR, DMA Control Register (TRM 3.3.14).
    pub DMACR [
        /// Receive DMA enable.
        RXDMAE OFFSET(0) NUMBITS(1) [],
        /// Transmit DMA enable.
        TXDMAE OFFSET(1) NUMBITS(1) [],
        /// DMA on error.
        DMAONERR OFFSET(2) NUMBITS(1) []
    ]
];

register_structs! {
    /// The PL011 register block (TRM 3.2 "Summary of registers").
    pub Pl011Regs {
        /// UARTDR (3.3.1).
        (0x000 => pub dr: ReadWrite<u32, DR::Register>),
        /// UARTRSR / UARTECR (3.3.2).
        (0x004 => pub rsr_ecr: ReadWrite<u32, RSR::Register>),
        (0x008 => _reserved0),
        /// UARTFR (3.3.3).
        (0x018 => pub fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        /// UARTILPR (3.3.4).
        (0x020 => pub ilpr: ReadWrite<u32, ILPR::Register>),
        /// UARTIBRD (3.3.5).
        (0x024 => pub ibrd: ReadWrite<u32, IBRD::Register>),
        /// UARTFBRD (3.3.6).
        (0x028 => pub fbrd: ReadWrite<u32, FBRD::Register>),
        /// UARTLCR_H (3.3.7).
        (0x02c => pub lcr_h: ReadWrite<u32, LCR_H::Register>),
        /// UARTCR (3.3.8).
        (0x030 => pub cr: ReadWrite<u32, CR::Register>),
        /// UARTIFLS (3.3.9).
        (0x034 => pub ifls: ReadWrite<u32, IFLS::Register>),
        /// UARTIMSC (3.3.10).
        (0x038 => pub imsc: ReadWrite<u32, INT::Register>),
        /// UARTRIS (3.3.11).
        (0x03c => pub ris: ReadOnly<u32, INT::Register>),
        /// UARTMIS (3.3.12).
        (0x040 => pub mis: ReadOnly<u32, INT::Register>),
        /// UARTICR (3.3.13).
        (0x044 => pub icr: WriteOnly<u32, INT::Register>),
        /// UARTDMACR (3.3.14).
        (0x048 => pub dmacr: ReadWrite<u32, DMACR::Register>),
        (0x04c => _reserved2),
        /// UARTPeriphID0-3 (3.3, "Peripheral Identification Registers").
        (0xfe0 => pub periph_id: [ReadOnly<u32>; 4]),
        /// UARTPCellID0-3 (3.3, "PrimeCell Identification Registers").
        (0xff0 => pub pcell_id: [ReadOnly<u32>; 4]),
        (0x1000 => @END),
    }
}

/// Register offsets (TRM 3.2), for the emulated device and for tests.
pub mod offset {
    /// UARTDR.
    pub const DR: u64 = 0x000;
    /// UARTRSR (read) / UARTECR (write).
    pub const RSR_ECR: u64 = 0x004;
    /// UARTFR.
    pub const FR: u64 = 0x018;
    /// UARTILPR.
    pub const ILPR: u64 = 0x020;
    /// UARTIBRD.
    pub const IBRD: u64 = 0x024;
    /// UARTFBRD.
    pub const FBRD: u64 = 0x028;
    /// UARTLCR_H.
    pub const LCR_H: u64 = 0x02c;
    /// UARTCR.
    pub const CR: u64 = 0x030;
    /// UARTIFLS.
    pub const IFLS: u64 = 0x034;
    /// UARTIMSC.
    pub const IMSC: u64 = 0x038;
    /// UARTRIS.
    pub const RIS: u64 = 0x03c;
    /// UARTMIS.
    pub const MIS: u64 = 0x040;
    /// UARTICR.
    pub const ICR: u64 = 0x044;
    /// UARTDMACR.
    pub const DMACR: u64 = 0x048;
    /// UARTPeriphID0; ID registers continue every 4 bytes up to UARTPCellID3 at 0xffc.
    pub const PERIPH_ID0: u64 = 0xfe0;
}

/// The identification register values of a PL011 r1p5 (TRM 3.3, "Peripheral
/// Identification Registers" and "PrimeCell Identification Registers"):
/// UARTPeriphID0..3 then UARTPCellID0..3.
pub const ID_REGS: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// The `(IBRD, FBRD)` divisor for `baud` from a `clock_hz` reference clock
/// (TRM 3.3.6: divisor = clock / (16 * baud), fraction in 64ths, rounded), or `None`
/// if `baud` is zero or the integer part does not fit in 16 bits or is zero.
pub fn baud_divisor(clock_hz: u32, baud: u32) -> Option<(u32, u32)> {
    if baud == 0 {
        return None;
    }
    // 64 * clock / (16 * baud) = 4 * clock / baud, rounded to nearest.
    let div64 = (4 * clock_hz as u64 + baud as u64 / 2) / baud as u64;
    let ibrd = div64 >> 6;
    let fbrd = div64 & 0x3f;
    if ibrd == 0 || ibrd > 0xffff {
        return None;
    }
    Some((ibrd as u32, fbrd as u32))
}

/// A PL011 UART at a fixed address.
pub struct Pl011 {
    regs: &'static Pl011Regs,
}

// SAFETY: the driver only performs volatile accesses to the device registers; callers
// serialise use through a lock (the console), and the registers are valid from any CPU.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// Creates a driver for the PL011 whose registers start at `base`.
    ///
    /// # Safety
    /// `base` must be the (mapped, device-memory) address of a PL011 register block of at
    /// least 4 KiB that stays valid for the rest of the program, and no other code may
    /// drive the same UART concurrently without synchronisation.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller guarantees `base` points to a live PL011 register block;
        // `Pl011Regs` is exactly that layout and only contains volatile cells.
        let regs = unsafe { &*(base as *const Pl011Regs) };
        Self { regs }
    }

    /// Initialises the UART for 8N1 with FIFOs, following TRM 3.3.8 (disable, wait for
    /// the end of transmission, flush, reprogram, enable). The baud rate is programmed
    /// only when `clock_hz` is known; otherwise the firmware's divisor is kept.
    pub fn init(&mut self, clock_hz: Option<u32>, baud: u32) {
        self.regs.cr.set(0);
        while self.regs.fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
        // Flush the transmit FIFO by disabling FIFOs.
        self.regs.lcr_h.write(LCR_H::FEN::CLEAR);
        if let Some((ibrd, fbrd)) = clock_hz.and_then(|c| baud_divisor(c, baud)) {
            self.regs.ibrd.write(IBRD::BAUD_DIVINT.val(ibrd));
            self.regs.fbrd.write(FBRD::BAUD_DIVFRAC.val(fbrd));
        }
        // A write to LCR_H latches IBRD/FBRD (TRM 3.3.7).
        self.regs
            .lcr_h
            .write(LCR_H::WLEN::EightBit + LCR_H::FEN::SET);
        self.regs.imsc.set(0);
        self.regs.icr.set(0x7ff);
        self.regs
            .cr
            .write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
    }

    /// Writes one byte, waiting while the transmit FIFO is full.
    pub fn putc(&mut self, b: u8) {
        while self.regs.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.regs.dr.write(DR::DATA.val(b as u32));
    }

    /// Reads one byte if the receive FIFO is not empty.
    pub fn try_getc(&mut self) -> Option<u8> {
        if self.regs.fr.is_set(FR::RXFE) {
            None
        } else {
            Some(self.regs.dr.read(DR::DATA) as u8)
        }
    }

    /// Enables or disables the receive and receive-timeout interrupts (UARTIMSC RXIM,
    /// RTIM; TRM 3.3.10), so that typed input raises the UART's interrupt.
    pub fn set_rx_irq(&mut self, on: bool) {
        if on {
            self.regs.imsc.write(INT::RX::SET + INT::RT::SET);
        } else {
            self.regs.imsc.set(0);
        }
    }

    /// Clears the receive and receive-timeout interrupts (UARTICR; TRM 3.3.13).
    pub fn clear_rx_irq(&mut self) {
        self.regs.icr.write(INT::RX::SET + INT::RT::SET);
    }

    /// Writes a string, turning `\n` into `\r\n`.
    pub fn write_str(&mut self, s: &str) {
        for b in s.bytes() {
            if b == b'\n' {
                self.putc(b'\r');
            }
            self.putc(b);
        }
    }

    /// Waits until everything written has left the UART.
    pub fn flush(&mut self) {
        while self.regs.fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }
}

impl fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        Pl011::write_str(self, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn register_layout_matches_trm() {
        assert_eq!(offset_of!(Pl011Regs, dr), 0x000);
        assert_eq!(offset_of!(Pl011Regs, rsr_ecr), 0x004);
        assert_eq!(offset_of!(Pl011Regs, fr), 0x018);
        assert_eq!(offset_of!(Pl011Regs, ilpr), 0x020);
        assert_eq!(offset_of!(Pl011Regs, ibrd), 0x024);
        assert_eq!(offset_of!(Pl011Regs, fbrd), 0x028);
        assert_eq!(offset_of!(Pl011Regs, lcr_h), 0x02c);
        assert_eq!(offset_of!(Pl011Regs, cr), 0x030);
        assert_eq!(offset_of!(Pl011Regs, ifls), 0x034);
        assert_eq!(offset_of!(Pl011Regs, imsc), 0x038);
        assert_eq!(offset_of!(Pl011Regs, ris), 0x03c);
        assert_eq!(offset_of!(Pl011Regs, mis), 0x040);
        assert_eq!(offset_of!(Pl011Regs, icr), 0x044);
        assert_eq!(offset_of!(Pl011Regs, dmacr), 0x048);
        assert_eq!(offset_of!(Pl011Regs, periph_id), 0xfe0);
        assert_eq!(offset_of!(Pl011Regs, pcell_id), 0xff0);
        assert_eq!(core::mem::size_of::<Pl011Regs>(), 0x1000);
    }

    #[test]
    fn divisors() {
        // TRM 3.3.6 example: 4 MHz clock, 230400 baud -> 1.085 -> IBRD 1, FBRD 5.
        assert_eq!(baud_divisor(4_000_000, 230_400), Some((1, 5)));
        // QEMU virt's 24 MHz apb-pclk at 115200 -> 13.02 -> IBRD 13, FBRD 1.
        assert_eq!(baud_divisor(24_000_000, 115_200), Some((13, 1)));
        // Raspberry Pi 4's 48 MHz UART clock at 115200 -> 26.04 -> IBRD 26, FBRD 3.
        assert_eq!(baud_divisor(48_000_000, 115_200), Some((26, 3)));
        assert_eq!(baud_divisor(24_000_000, 0), None);
        assert_eq!(baud_divisor(1000, 115_200), None);
    }

    #[test]
    fn driver_on_fake_registers() {
        // A zeroed page stands in for the device: FR reads 0 (not busy, TX not full,
        // RX not empty).
        let mut page = vec![0u32; 1024];
        let base = page.as_mut_ptr() as usize;
        let c = {
            // SAFETY: `page` is 4 KiB of memory that outlives the driver and nothing
            // else accesses it while the driver is in use (this block).
            let mut uart = unsafe { Pl011::new(base) };
            uart.init(Some(24_000_000), 115_200);
            uart.write_str("a\n");
            uart.try_getc()
        };
        assert_eq!(page[0x24 / 4], 13);
        assert_eq!(page[0x28 / 4], 1);
        assert_eq!(page[0x2c / 4], 0x70);
        assert_eq!(page[0x30 / 4], 0x301);
        assert_eq!(page[0], b'\n' as u32);
        assert_eq!(c, Some(b'\n'));
        // Unknown clock: divisors untouched.
        page[0x24 / 4] = 0x55;
        {
            // SAFETY: as above.
            let mut uart = unsafe { Pl011::new(page.as_mut_ptr() as usize) };
            uart.init(None, 115_200);
        }
        assert_eq!(page[0x24 / 4], 0x55);
    }
}
