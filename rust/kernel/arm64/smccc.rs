// SPDX-License-Identifier: GPL-2.0

//! Arm SMC Calling Convention (SMCCC) v1.2 calls into firmware.
//!
//! C header: [`include/linux/arm-smccc.h`](srctree/include/linux/arm-smccc.h)

use crate::bindings;

/// Number of general-purpose registers an SMCCC v1.2 call passes: x0..x17.
pub const NR_REGS: usize = 18;

// `smc` hands `[u64; NR_REGS]` to C as `struct arm_smccc_1_2_regs`: same layout.
crate::static_assert!(
    core::mem::size_of::<bindings::arm_smccc_1_2_regs>() == NR_REGS * core::mem::size_of::<u64>()
);
crate::static_assert!(
    core::mem::align_of::<bindings::arm_smccc_1_2_regs>() == core::mem::align_of::<u64>()
);

/// The instruction the kernel uses to call firmware, as discovered from PSCI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// No SMCCC firmware (or SMCCC older than v1.1).
    None,
    /// Firmware is called with `smc #0` (EL3, or a hypervisor trapping SMC).
    Smc,
    /// Firmware is called with `hvc #0` (the kernel runs under a hypervisor).
    Hvc,
}

/// Returns the conduit for SMCCC v1.1+ calls (`arm_smccc_1_1_get_conduit()`).
pub fn conduit() -> Conduit {
    // SAFETY: `arm_smccc_1_1_get_conduit` only reads a value set at boot.
    match unsafe { bindings::arm_smccc_1_1_get_conduit() } {
        bindings::arm_smccc_conduit_SMCCC_CONDUIT_SMC => Conduit::Smc,
        bindings::arm_smccc_conduit_SMCCC_CONDUIT_HVC => Conduit::Hvc,
        _ => Conduit::None,
    }
}

/// Issues `smc #0` with x0..x17 set to `args` and returns x0..x17 afterwards
/// (`arm_smccc_1_2_smc()`).
///
/// # Safety
///
/// The call must not affect memory or CPU state the kernel relies on: for
/// example it must not hand a page that is still in use to another security
/// state, or turn off the calling CPU.
pub unsafe fn smc(args: &[u64; NR_REGS]) -> [u64; NR_REGS] {
    let mut res = [0u64; NR_REGS];
    // `arm_smccc_1_2_smc` reads `args` and writes `res`, both of the layout of
    // `struct arm_smccc_1_2_regs` (checked above), and touches no other memory.
    // SAFETY: Valid pointers (see above); firmware side effects are the caller's.
    unsafe {
        bindings::arm_smccc_1_2_smc(
            args.as_ptr().cast::<bindings::arm_smccc_1_2_regs>(),
            res.as_mut_ptr().cast::<bindings::arm_smccc_1_2_regs>(),
        )
    };
    res
}
