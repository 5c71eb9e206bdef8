// SPDX-License-Identifier: GPL-2.0

//! The guest's console: a 16550 UART (`vm-superio`) behind MMIO exits.
//!
//! The device tree says `reg-shift = 0` and 8-bit accesses, as Linux's 8250
//! driver makes them; a wider access is taken as one to its low byte, and
//! the rest of the 4 KiB window reads as zero and ignores writes.

use std::io::Write;

use vm_superio::{
    serial::NoEvents,
    Serial,
    Trigger, //
};

use crate::layout::{
    UART_BASE,
    UART_SIZE, //
};

/// The 16550's registers, at byte offsets 0..8.
const UART_REGS: u64 = 8;

/// The UART, its interrupt raised through `T` and its output written to
/// `W`.
pub struct Uart<T: Trigger, W: Write> {
    serial: Serial<T, NoEvents, W>,
}

/// A UART access that failed.
#[derive(Debug)]
pub struct UartError(String);

impl std::fmt::Display for UartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UART: {}", self.0)
    }
}

impl std::error::Error for UartError {}

/// The register offset of `addr`, if it lies in the UART's window, with
/// `None` inside for the window's unused part.
fn offset(addr: u64) -> Option<Option<u8>> {
    let off = addr.checked_sub(UART_BASE).filter(|&off| off < UART_SIZE)?;
    Some(u8::try_from(off).ok().filter(|_| off < UART_REGS))
}

impl<T: Trigger, W: Write> Uart<T, W> {
    /// A UART in its reset state.
    pub fn new(trigger: T, out: W) -> Self {
        Self {
            serial: Serial::new(trigger, out),
        }
    }

    /// Serves an MMIO read of `data.len()` bytes at `addr`: false if `addr`
    /// is not the UART's.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) -> bool {
        let Some(reg) = offset(addr) else {
            return false;
        };
        data.fill(0);
        if let (Some(reg), Some(low)) = (reg, data.first_mut()) {
            *low = self.serial.read(reg);
        }
        true
    }

    /// Serves an MMIO write of `data` at `addr`: false if `addr` is not the
    /// UART's.
    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) -> Result<bool, UartError> {
        let Some(reg) = offset(addr) else {
            return Ok(false);
        };
        if let (Some(reg), Some(&low)) = (reg, data.first()) {
            self.serial
                .write(reg, low)
                .map_err(|e| UartError(format!("{e:?}")))?;
        }
        Ok(true)
    }

    /// Queues `bytes` of input for the guest; returns how many fit.
    pub fn input(&mut self, bytes: &[u8]) -> Result<usize, UartError> {
        self.serial
            .enqueue_raw_bytes(bytes)
            .map_err(|e| UartError(format!("{e:?}")))
    }

    /// What it wrote to.
    pub fn output(&self) -> &W {
        self.serial.writer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// Counts interrupts.
    #[derive(Clone, Default)]
    struct Count(Rc<Cell<u32>>);

    impl Trigger for Count {
        type E = std::io::Error;

        fn trigger(&self) -> Result<(), Self::E> {
            self.0.set(self.0.get() + 1);
            Ok(())
        }
    }

    /// The 16550's registers used here.
    const THR: u64 = 0;
    const IER: u64 = 1;
    const LSR: u64 = 5;
    /// `IER.ETBEI`: interrupt when the transmitter is empty.
    const IER_THRE: u8 = 0x2;
    /// `LSR.DR` and `LSR.THRE`.
    const LSR_DR: u8 = 0x1;
    const LSR_THRE: u8 = 0x20;

    fn read(u: &mut Uart<Count, Vec<u8>>, reg: u64) -> u8 {
        let mut b = [0xffu8; 1];
        assert!(u.mmio_read(UART_BASE + reg, &mut b));
        b[0]
    }

    #[test]
    fn what_the_guest_writes_comes_out() {
        let irq = Count::default();
        let mut u = Uart::new(irq.clone(), Vec::new());
        for b in b"hi\n" {
            assert!(u.mmio_write(UART_BASE + THR, &[*b]).expect("writes"));
        }
        assert_eq!(u.output(), b"hi\n");
        assert_ne!(read(&mut u, LSR) & LSR_THRE, 0);
        // No interrupt until the guest enables one.
        assert_eq!(irq.0.get(), 0);
        u.mmio_write(UART_BASE + IER, &[IER_THRE]).expect("writes");
        u.mmio_write(UART_BASE + THR, b"x").expect("writes");
        assert!(irq.0.get() > 0);
    }

    #[test]
    fn input_reaches_the_guest() {
        let mut u = Uart::new(Count::default(), Vec::new());
        assert_eq!(read(&mut u, LSR) & LSR_DR, 0);
        assert_eq!(u.input(b"ls").expect("queues"), 2);
        assert_ne!(read(&mut u, LSR) & LSR_DR, 0);
        assert_eq!(read(&mut u, THR), b'l');
        assert_eq!(read(&mut u, THR), b's');
        assert_eq!(read(&mut u, LSR) & LSR_DR, 0);
    }

    #[test]
    fn only_its_window_is_served() {
        let mut u = Uart::new(Count::default(), Vec::new());
        let mut b = [0xffu8; 4];
        assert!(!u.mmio_read(UART_BASE - 1, &mut b));
        assert!(!u.mmio_read(UART_BASE + UART_SIZE, &mut b));
        assert!(!u.mmio_write(0, b"x").expect("not ours"));
        // Past the registers: zero, writes ignored.
        assert!(u.mmio_read(UART_BASE + 0x100, &mut b));
        assert_eq!(b, [0; 4]);
        assert!(u.mmio_write(UART_BASE + 0x100, b"x").expect("ignored"));
        assert!(u.output().is_empty());
        // A wide access: the low byte.
        assert!(u
            .mmio_write(UART_BASE + THR, &[b'w', 1, 2, 3])
            .expect("writes"));
        assert_eq!(u.output(), b"w");
        // An empty access does nothing.
        assert!(u.mmio_write(UART_BASE + THR, &[]).expect("writes"));
        assert_eq!(u.output(), b"w");
    }
}
