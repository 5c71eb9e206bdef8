// SPDX-License-Identifier: GPL-2.0

//! One typed function per RMI command, over an [`SmcConduit`].
//!
//! No raw function ID or register layout leaves this file. Part of the sans-IO
//! core: the kernel shell implements [`SmcConduit`] with a real `smc`, the host
//! crate with an executable RMM model.

use crate::rmi_smc::{
    rmi_result,
    RmiStatus,
    RmiVersion,
    SmcRegs,
    RMI_VERSION,
    SMCCC_RET_NOT_SUPPORTED, //
};

/// Issues one SMC: registers in, registers out.
pub(crate) trait SmcConduit {
    /// Performs the call described by `args` and returns x0..x17 afterwards.
    fn call(&self, args: &SmcRegs) -> SmcRegs;
}

/// The revisions an RMM reports from `RMI_VERSION`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RmiVersionRange {
    /// The lower revision: the requested one if the RMM implements it,
    /// otherwise the highest it implements below it (TF-RMM: its highest).
    pub(crate) lower: RmiVersion,
    /// The highest revision the RMM implements.
    pub(crate) higher: RmiVersion,
}

/// Why `RMI_VERSION` did not yield a usable ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VersionError {
    /// No RMM: the SMC returned `SMCCC_RET_NOT_SUPPORTED`.
    NotSupported,
    /// The RMM implements only the revisions in the range, not the one asked.
    Incompatible(RmiVersionRange),
    /// The RMM answered with a status `RMI_VERSION` does not define, or with
    /// reserved bits set in a version register.
    Malformed {
        /// x0 as returned.
        x0: u64,
    },
}

/// `RMI_VERSION`: asks the RMM for ABI revision `requested`.
///
/// Succeeds only if the RMM implements `requested`, and returns the range it
/// implements. An RMM that does not implement it answers `RMI_ERROR_INPUT`
/// and still reports its range, which [`VersionError::Incompatible`] carries.
pub(crate) fn rmi_version(
    smc: &impl SmcConduit,
    requested: RmiVersion,
) -> Result<RmiVersionRange, VersionError> {
    let out = smc.call(&SmcRegs::new(RMI_VERSION, [requested.raw(), 0, 0, 0, 0, 0]));
    let x0 = out.x(0);
    // Checked first: without an RMM, x1 and x2 are whatever was passed in.
    if x0 == SMCCC_RET_NOT_SUPPORTED {
        return Err(VersionError::NotSupported);
    }
    let range = match (
        RmiVersion::from_raw(out.x(1)),
        RmiVersion::from_raw(out.x(2)),
    ) {
        (Some(lower), Some(higher)) => RmiVersionRange { lower, higher },
        _ => return Err(VersionError::Malformed { x0 }),
    };
    match rmi_result(x0) {
        Ok(()) => Ok(range),
        Err(e) if e.status() == RmiStatus::ErrorInput => Err(VersionError::Incompatible(range)),
        Err(_) => Err(VersionError::Malformed { x0 }),
    }
}
