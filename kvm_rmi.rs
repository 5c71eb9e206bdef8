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
#[expect(
    dead_code,
    reason = "the ABI tables grow test-first against the host RMM model; \
              the shell uses them command by command"
)]
mod rmi_smc;

use rmi_cmds::{
    rmi_features,
    rmi_version,
    RmiFeatureRegs,
    SmcConduit,
    VersionError, //
};
use rmi_smc::{
    rmi_fid_name,
    rmi_result,
    RmiError,
    RmiErrorKind,
    RmiFid,
    RmiVersion,
    SmcRegs,
    RMI_FEATURES,
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
/// Only the typed command layer ([`rmi_cmds`]) calls it, with function IDs in
/// the RMI range, which EL3 either forwards to the RMM or answers with
/// `SMCCC_RET_NOT_SUPPORTED`. RMI commands only act on the physical addresses
/// passed to them, and the command layer passes only granules its caller owns.
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
        // SAFETY: SMC conduit (invariant); RMI calls touch only owned PAs (see type docs).
        SmcRegs(unsafe { smccc::smc(&args.0) })
    }
}

/// The one place RMI failures become errnos (the core chooses the kind).
impl From<RmiError> for Error {
    fn from(e: RmiError) -> Self {
        match e.kind() {
            RmiErrorKind::InvalidArgument => EINVAL,
            RmiErrorKind::NotSupported => EOPNOTSUPP,
            RmiErrorKind::Busy => EBUSY,
            RmiErrorKind::RmmUnavailable => ENODEV,
            RmiErrorKind::Failed => ENXIO,
        }
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

/// The spec name of an RMI command, for log lines.
fn cmd_name(fid: RmiFid) -> &'static str {
    rmi_fid_name(fid).unwrap_or("RMI_(unknown)")
}

/// Logs why there is no usable RMM, in one line, and returns the errno.
fn report_no_rmm(err: &VersionError) -> Error {
    let cmd = cmd_name(RMI_VERSION);
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

/// Logs the RMM's feature registers in one line.
fn report_features(f: &RmiFeatureRegs) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    pr_info!(
        "RMM features: IPA {} bits, LPA2 {}, SVE {} (VL field {}), {} BPs, {} WPs, \
         PMU {} ({} counters), RECs 2^{}, SHA-256 {}, SHA-512 {}, DA {}, aux planes {}\n",
        f.f0.s2sz(),
        yes_no(f.f0.lpa2()),
        yes_no(f.f0.sve_en()),
        f.f0.sve_vl(),
        u32::from(f.f0.num_bps()) + 1,
        u32::from(f.f0.num_wps()) + 1,
        yes_no(f.f0.pmu_en()),
        f.f0.pmu_num_ctrs(),
        f.f1.max_recs_order(),
        yes_no(f.f1.sha256()),
        yes_no(f.f1.sha512()),
        yes_no(f.f2.da_en()),
        f.f3.max_num_aux_planes()
    );
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
        let features = rmi_features(&smc)
            .inspect_err(|e| pr_err!("{} failed: {}\n", cmd_name(RMI_FEATURES), Shown(e)))?;
        report_features(&features);
        Ok(KvmRmi)
    }
}
