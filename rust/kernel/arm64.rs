// SPDX-License-Identifier: GPL-2.0

//! arm64 architecture interfaces.

#[cfg(CONFIG_HAVE_ARM_SMCCC_DISCOVERY)]
pub mod smccc;

pub mod gpf;

/// The generic timer's virtual count (`CNTVCT_EL0`), read after an `isb`
/// so that it is not taken early. Plain register reads: usable anywhere,
/// including with interrupts off in the guest context of RCU.
#[inline(always)]
pub fn counter_ticks() -> u64 {
    let ticks: u64;
    // SAFETY: Reading CNTVCT_EL0 has no side effects; the kernel runs with it accessible.
    unsafe { core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) ticks, options(nostack)) };
    ticks
}

/// The generic timer's frequency in Hz (`CNTFRQ_EL0`).
pub fn counter_frequency() -> u64 {
    let hz: u64;
    // SAFETY: Reading CNTFRQ_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) hz, options(nomem, nostack)) };
    hz
}
