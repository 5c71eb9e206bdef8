// SPDX-License-Identifier: GPL-2.0

//! The guest's console: a 16550 UART (`vm-superio`) behind MMIO exits.
//!
//! The device tree says `reg-shift = 0` and 8-bit accesses, as Linux's 8250
//! driver makes them; a wider access is taken as one to its low byte, and
//! the rest of the 4 KiB window reads as zero and ignores writes.

use std::collections::VecDeque;
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
/// `IER` (with `LCR.DLAB` clear) and `LCR`.
const REG_IER: u8 = 1;
/// See [`REG_IER`].
const REG_LCR: u8 = 3;
/// `IER.ERBFI`: the receive interrupt, which the driver enables once the
/// port is open.
const IER_ERBFI: u8 = 0x1;
/// `LCR.DLAB`: registers 0 and 1 are the divisor.
const LCR_DLAB: u8 = 0x80;
/// The most input held for the guest.
const INPUT_MAX: usize = 64 << 10;

/// The UART, its interrupt raised through `T` and its output written to
/// `W`.
///
/// Input waits in `pending` until the guest's driver has the port open
/// (the receive interrupt enabled) and then goes to the 16550's FIFO as it
/// drains: bytes sent while the guest boots are not lost to its resets of
/// the FIFO.
pub struct Uart<T: Trigger, W: Write> {
    serial: Serial<T, NoEvents, W>,
    pending: VecDeque<u8>,
    ier: u8,
    lcr: u8,
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
            pending: VecDeque::new(),
            ier: 0,
            lcr: 0,
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
            self.feed();
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
            match reg {
                REG_LCR => self.lcr = low,
                REG_IER if self.lcr & LCR_DLAB == 0 => self.ier = low,
                _ => {}
            }
            self.serial
                .write(reg, low)
                .map_err(|e| UartError(format!("{e:?}")))?;
            self.feed();
        }
        Ok(true)
    }

    /// Queues `bytes` of input for the guest; returns how many were taken
    /// (all, unless 64 KiB already wait).
    pub fn input(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(INPUT_MAX - self.pending.len());
        self.pending.extend(&bytes[..n]);
        self.feed();
        n
    }

    /// Moves waiting input to the FIFO, as much as fits, once the guest
    /// takes it.
    fn feed(&mut self) {
        if self.ier & IER_ERBFI == 0 || self.pending.is_empty() {
            return;
        }
        let n = self.serial.fifo_capacity().min(self.pending.len());
        if n == 0 {
            return;
        }
        let chunk: Vec<u8> = self.pending.drain(..n).collect();
        // Cannot fail: `n` bytes fit; if raising the interrupt fails, the
        // driver still sees them when it next polls.
        let _ = self.serial.enqueue_raw_bytes(&chunk);
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
    const LCR: u64 = 3;
    const LSR: u64 = 5;
    /// `IER.ERBFI`.
    const IER_ERBFI: u8 = 0x1;
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
    fn input_waits_for_the_driver_then_flows_through_the_fifo() {
        let irq = Count::default();
        let mut u = Uart::new(irq.clone(), Vec::new());
        assert_eq!(read(&mut u, LSR) & LSR_DR, 0);
        let long: Vec<u8> = (0..200u8).collect();
        assert_eq!(u.input(&long), 200);
        // The port is not open: nothing yet, no interrupt.
        assert_eq!(read(&mut u, LSR) & LSR_DR, 0);
        assert_eq!(irq.0.get(), 0);
        // Setting the divisor (DLAB) is not enabling interrupts.
        u.mmio_write(UART_BASE + LCR, &[0x83]).expect("writes");
        u.mmio_write(UART_BASE + IER, &[IER_ERBFI]).expect("writes");
        assert_eq!(read(&mut u, LSR) & LSR_DR, 0);
        u.mmio_write(UART_BASE + LCR, &[0x03]).expect("writes");
        u.mmio_write(UART_BASE + IER, &[IER_ERBFI]).expect("writes");
        assert!(irq.0.get() > 0);
        // All 200 bytes arrive, in order, past the FIFO's 64.
        let mut got = Vec::new();
        while read(&mut u, LSR) & LSR_DR != 0 {
            got.push(read(&mut u, THR));
        }
        assert_eq!(got, long);
        // At most 64 KiB wait.
        assert_eq!(u.input(&vec![0; 70 << 10]), 64 << 10);
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
