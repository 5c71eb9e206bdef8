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
    RMI_VERSION, //
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
/// The SMCCC conduit is SMC, so `smc #0` reaches EL3 firmware (checked by
/// [`RmiSmc::new`]).
struct RmiSmc(());

impl RmiSmc {
    /// Returns the conduit if firmware is called with `smc`.
    fn new() -> Option<Self> {
        // INVARIANT: Checked here.
        (smccc::conduit() == smccc::Conduit::Smc).then_some(Self(()))
    }
}

impl SmcConduit for RmiSmc {
    fn call(&self, args: &SmcRegs) -> SmcRegs {
        // SAFETY: The function ID is in the RMI range, which EL3 either
        // forwards to the RMM or answers with SMCCC_RET_NOT_SUPPORTED. RMI
        // commands only act on the physical addresses passed to them, and
        // the typed command layer passes only granules the caller owns.
        SmcRegs(unsafe { smccc::smc(&args.0) })
    }
}

/// Logs why there is no usable RMM, in one line, and returns the errno.
fn report_no_rmm(err: &VersionError) -> Error {
    let cmd = rmi_fid_name(RMI_VERSION).unwrap_or("RMI_VERSION");
    let host = RmiVersion::HOST;
    match err {
        VersionError::NotSupported => pr_err!("no RMM found ({cmd}: not supported)\n"),
        VersionError::Incompatible(r) => pr_err!(
            "no RMM found ({cmd}: RMM implements ABI {}..{}, host needs {host})\n",
            r.lower,
            r.higher
        ),
        VersionError::Malformed { x0 } => match rmi_result(*x0) {
            Err(e) => pr_err!("no RMM found ({cmd}: {e})\n"),
            Ok(()) => pr_err!("no RMM found ({cmd}: malformed version registers)\n"),
        },
    }
    ENODEV
}

/// The loaded module.
struct KvmRmi;

impl kernel::Module for KvmRmi {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let Some(smc) = RmiSmc::new() else {
            pr_err!("no RMM found (SMCCC conduit is not SMC)\n");
            return Err(ENODEV);
        };
        let range = rmi_version(&smc, RmiVersion::HOST).map_err(|e| report_no_rmm(&e))?;
        pr_info!(
            "RMM ABI {} (RMM implements {}..{})\n",
            RmiVersion::HOST,
            range.lower,
            range.higher
        );
        Ok(KvmRmi)
    }
}
