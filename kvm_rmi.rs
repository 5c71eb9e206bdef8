// SPDX-License-Identifier: GPL-2.0

//! Arm CCA realm support for KVM.
//!
//! This crate root is the kernel shell around the sans-IO core: it issues the
//! real `smc` for the core's [`rmi_cmds::SmcConduit`] and probes the RMM at
//! load. The core files (`rmi_smc`, `rmi_cmds`) are also compiled into the
//! host crate `tools/testing/rmm-model` and tested there against an
//! executable model of the RMM.

use kernel::{
    arm64::smccc,
    prelude::*, //
};

mod rmi_cmds;
mod rmi_smc;

use rmi_cmds::{
    rmi_version,
    SmcConduit,
    VersionError, //
};
use rmi_smc::{
    rmi_fid_name,
    rmi_result,
    RmiVersion,
    SmcRegs,
    RMI_VERSION,
    SMCCC_RET_NOT_SUPPORTED, //
};

module! {
    type: KvmRmi,
    name: "kvm_rmi",
    authors: ["kvm-rmi developers"],
    description: "Arm CCA realm support (RMI) for KVM",
    license: "GPL",
}

/// The RMM, reached with `smc #0` from NS-EL2.
///
/// # Invariants
///
/// `smc` is true only if the SMCCC v1.1+ conduit is SMC, so `smc #0` reaches
/// EL3 firmware.
struct RmiSmc {
    smc: bool,
}

impl RmiSmc {
    /// Looks up the firmware conduit once.
    fn new() -> Self {
        // INVARIANT: `smc` is set from the conduit.
        Self {
            smc: smccc::conduit() == smccc::Conduit::Smc,
        }
    }
}

impl SmcConduit for RmiSmc {
    fn call(&self, args: &SmcRegs) -> SmcRegs {
        if !self.smc {
            // As `arm_smccc_1_1_invoke()` does: no SMC conduit (firmware older
            // than SMCCC v1.1, or a guest's HVC) means no EL3 to ask, and RMI
            // needs SMCCC v1.2 from EL3.
            let mut out = SmcRegs::default();
            out.0[0] = SMCCC_RET_NOT_SUPPORTED;
            return out;
        }
        // SAFETY: The conduit is SMC (type invariant). The function ID is in
        // the RMI range, which EL3 either forwards to the RMM or answers with
        // SMCCC_RET_NOT_SUPPORTED. RMI commands only act on the physical
        // addresses passed to them, and the typed command layer passes only
        // granules the caller owns.
        SmcRegs(unsafe { smccc::smc(&args.0) })
    }
}

/// Prints a core value (which implements `core::fmt::Display`) through the
/// kernel's `Display`, which the `pr_*!` macros require.
struct Shown<T>(T);

impl<T: core::fmt::Display> kernel::fmt::Display for Shown<T> {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        core::fmt::Display::fmt(&self.0, f)
    }
}

/// Logs why there is no usable RMM, in one line, and returns the errno.
fn report_no_rmm(err: &VersionError) -> Error {
    let cmd = rmi_fid_name(RMI_VERSION).unwrap_or("RMI_VERSION");
    let host = Shown(RmiVersion::HOST);
    match err {
        VersionError::NotSupported => pr_err!("no RMM found ({cmd}: not supported)\n"),
        VersionError::Incompatible(r) => pr_err!(
            "no RMM found ({cmd}: RMM implements ABI {}..{}, host needs {host})\n",
            Shown(r.lower),
            Shown(r.higher)
        ),
        VersionError::Malformed { x0 } => match rmi_result(*x0) {
            Err(e) => pr_err!("no RMM found ({cmd}: {})\n", Shown(e)),
            Ok(()) => pr_err!("no RMM found ({cmd}: malformed version registers)\n"),
        },
    }
    ENODEV
}

/// The loaded module.
struct KvmRmi;

impl kernel::Module for KvmRmi {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let smc = RmiSmc::new();
        let range = rmi_version(&smc, RmiVersion::HOST).map_err(|e| report_no_rmm(&e))?;
        pr_info!(
            "RMM ABI {} (RMM implements {}..{})\n",
            Shown(RmiVersion::HOST),
            Shown(range.lower),
            Shown(range.higher)
        );
        Ok(KvmRmi)
    }
}
