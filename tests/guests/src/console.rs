//! Polling PL011 writer for the console at 0x0900_0000 (transmit only, no interrupts).
use core::fmt;

const PL011_BASE: usize = 0x0900_0000;
const DR: usize = 0x00;
const FR: usize = 0x18;
const FR_TXFF: u32 = 1 << 5;

/// Writes one byte, waiting (boundedly) while the transmit FIFO is full.
pub fn putc(b: u8) {
    for _ in 0..100_000 {
        // SAFETY: PL011_BASE + FR is the UART's flag register, mapped as Device memory
        // by the stage-1 tables (or accessed with the MMU off); a 32-bit read has no
        // side effects.
        let fr = unsafe { core::ptr::read_volatile((PL011_BASE + FR) as *const u32) };
        if fr & FR_TXFF == 0 {
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: the data register of the same UART; a 32-bit write queues one byte.
    unsafe { core::ptr::write_volatile((PL011_BASE + DR) as *mut u32, u32::from(b)) };
}

/// `fmt::Write` sink for the console.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(putc);
        Ok(())
    }
}

/// Prints formatted text to the console (used by the macros).
pub fn print(args: fmt::Arguments) {
    let _ = fmt::write(&mut Console, args);
}

/// `print!` for the guest console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// `println!` for the guest console (lines end with `\n` only).
#[macro_export]
macro_rules! println {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => {{
        $crate::console::print(format_args!($($arg)*));
        $crate::console::print(format_args!("\n"));
    }};
}
