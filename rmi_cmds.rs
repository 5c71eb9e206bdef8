// SPDX-License-Identifier: GPL-2.0

//! One typed function per RMI command, over an [`SmcConduit`].
//!
//! No raw function ID or register layout leaves this file. Part of the sans-IO
//! core: the kernel shell implements [`SmcConduit`] with a real `smc`, the host
//! crate with an executable RMM model.

use crate::rmi_smc::{
    rmi_result,
    RmiError,
    RmiFeatures0,
    RmiFeatures1,
    RmiFeatures2,
    RmiFeatures3,
    RmiStatus,
    RmiVersion,
    SmcRegs,
    RMI_FEATURES,
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

/// The RMM's feature registers (`RMI_FEATURES` 0..=3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RmiFeatureRegs {
    /// Stage-2 and vCPU features.
    pub(crate) f0: RmiFeatures0,
    /// Granules, hashes, limits.
    pub(crate) f1: RmiFeatures1,
    /// Device assignment.
    pub(crate) f2: RmiFeatures2,
    /// Planes.
    pub(crate) f3: RmiFeatures3,
}

/// `RMI_FEATURES` for one register index.
fn rmi_feature(smc: &impl SmcConduit, index: u64) -> Result<u64, RmiError> {
    let out = smc.call(&SmcRegs::new(RMI_FEATURES, [index, 0, 0, 0, 0, 0]));
    rmi_result(out.x(0)).map(|()| out.x(1))
}

/// Reads feature registers 0 to 3.
pub(crate) fn rmi_features(smc: &impl SmcConduit) -> Result<RmiFeatureRegs, RmiError> {
    Ok(RmiFeatureRegs {
        f0: RmiFeatures0(rmi_feature(smc, 0)?),
        f1: RmiFeatures1(rmi_feature(smc, 1)?),
        f2: RmiFeatures2(rmi_feature(smc, 2)?),
        f3: RmiFeatures3(rmi_feature(smc, 3)?),
    })
}
