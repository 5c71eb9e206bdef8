// SPDX-License-Identifier: GPL-2.0

//! One typed function per RMI command, over an [`SmcConduit`].
//!
//! No raw function ID or register layout leaves this file. Part of the sans-IO
//! core: the kernel shell implements [`SmcConduit`] with a real `smc`, the host
//! crate with an executable RMM model.

use core::fmt;

use crate::addr::{
    Granule,
    GranuleRange,
    Ipa,
    RttLevel,
    GRANULE_SIZE, //
};
use crate::rmi_smc::{
    rmi_result,
    RmiAddrRangeDesc,
    RmiBlockSize,
    RmiError,
    RmiFeatures0,
    RmiFeatures1,
    RmiFeatures2,
    RmiFeatures3,
    RmiFid,
    RmiMemCategory,
    RmiMemState,
    RmiStatus,
    RmiTrackingState,
    RmiVersion,
    SmcRegs,
    RMI_CONTINUE_STOP,
    RMI_FEATURES,
    RMI_GPT_L1_CREATE,
    RMI_GRANULE_RANGE_DELEGATE,
    RMI_GRANULE_RANGE_UNDELEGATE,
    RMI_GRANULE_TRACKING_GET,
    RMI_OP_CANCEL,
    RMI_OP_CONTINUE,
    RMI_OP_MEM_DONATE,
    RMI_OP_MEM_RECLAIM,
    RMI_PSCI_COMPLETE,
    RMI_REALM_ACTIVATE,
    RMI_REALM_CREATE,
    RMI_REALM_DESTROY,
    RMI_REALM_TERMINATE,
    RMI_REC_CREATE,
    RMI_REC_DESTROY,
    RMI_REC_ENTER,
    RMI_RMM_ACTIVATE,
    RMI_RMM_CONFIG_GET,
    RMI_RMM_CONFIG_SET,
    RMI_RTT_CREATE,
    RMI_RTT_DATA_MAP,
    RMI_RTT_DATA_MAP_INIT,
    RMI_RTT_DATA_UNMAP,
    RMI_RTT_DESTROY,
    RMI_RTT_FOLD,
    RMI_RTT_INIT_RIPAS,
    RMI_RTT_READ_ENTRY,
    RMI_RTT_SET_RIPAS,
    RMI_RTT_UNPROT_MAP,
    RMI_RTT_UNPROT_UNMAP,
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

/// One line: what the RMM offers, as the load message and debugfs show it.
impl fmt::Display for RmiFeatureRegs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let (f0, f1) = (&self.f0, &self.f1);
        write!(
            f,
            "IPA {} bits, LPA2 {}, SVE {} (VL field {}), {} BPs, {} WPs, \
             PMU {} ({} counters), RECs 2^{}, SHA-256 {}, SHA-512 {}, DA {}, aux planes {}",
            f0.s2sz(),
            yes_no(f0.lpa2()),
            yes_no(f0.sve_en()),
            f0.sve_vl(),
            u32::from(f0.num_bps()) + 1,
            u32::from(f0.num_wps()) + 1,
            yes_no(f0.pmu_en()),
            f0.pmu_num_ctrs(),
            f1.max_recs_order(),
            yes_no(f1.sha256()),
            yes_no(f1.sha512()),
            yes_no(self.f2.da_en()),
            self.f3.max_num_aux_planes()
        )
    }
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

/// How many times a command answered `RMI_BUSY` or `RMI_BLOCKED` is issued
/// again before the caller gets the error. Both mean another CPU holds the
/// object for a short operation; the bound keeps a stuck RMM from hanging
/// the host (reviewers of the C series asked for it).
pub(crate) const RMI_RETRY_LIMIT: u32 = 1000;

/// Issues `args`, again while the RMM answers `BUSY` or `BLOCKED` (at most
/// [`RMI_RETRY_LIMIT`] retries), and returns the last registers.
pub(crate) fn call_retrying(smc: &impl SmcConduit, args: &SmcRegs) -> SmcRegs {
    let mut retries = 0;
    loop {
        let out = smc.call(args);
        let contended = matches!(
            rmi_result(out.x(0)).map_err(|e| e.status()),
            Err(RmiStatus::Busy | RmiStatus::Blocked)
        );
        if !contended || retries >= RMI_RETRY_LIMIT {
            return out;
        }
        retries += 1;
        core::hint::spin_loop();
    }
}

/// Issues a command that returns only a status.
fn status_only(smc: &impl SmcConduit, fid: RmiFid, args: [u64; 6]) -> Result<(), RmiError> {
    rmi_result(call_retrying(smc, &SmcRegs::new(fid, args)).x(0))
}

/// `RMI_RMM_CONFIG_SET`: configures the RMM from the `RmiRmmConfig` the
/// caller wrote to the NS granule `config`. Once per boot, before activation.
pub(crate) fn rmm_config_set(smc: &impl SmcConduit, config: Granule) -> Result<(), RmiError> {
    status_only(smc, RMI_RMM_CONFIG_SET, [config.pa(), 0, 0, 0, 0, 0])
}

/// `RMI_RMM_CONFIG_GET`: the RMM writes its `RmiRmmConfig` to the NS
/// granule `config`.
pub(crate) fn rmm_config_get(smc: &impl SmcConduit, config: Granule) -> Result<(), RmiError> {
    status_only(smc, RMI_RMM_CONFIG_GET, [config.pa(), 0, 0, 0, 0, 0])
}

/// `RMI_RMM_ACTIVATE`: moves the RMM from INIT to ACTIVE. A second call in
/// the same boot answers `RMI_ERROR_GLOBAL`.
pub(crate) fn rmm_activate(smc: &impl SmcConduit) -> Result<(), RmiError> {
    status_only(smc, RMI_RMM_ACTIVATE, [0; 6])
}

/// What `RMI_GRANULE_TRACKING_GET` reports for the start of a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tracking {
    /// The kind of memory.
    pub(crate) category: RmiMemCategory,
    /// How it is tracked.
    pub(crate) state: RmiTrackingState,
    /// The end of the part of the range the answer holds for.
    pub(crate) top: Granule,
}

/// `RMI_GRANULE_TRACKING_GET` for `range` (at least one granule).
///
/// The answer holds for `[range.base(), top)`; a `top` outside
/// `(base, range.top()]` is [`RmiError::bad_output`].
pub(crate) fn granule_tracking_get(
    smc: &impl SmcConduit,
    range: GranuleRange,
) -> Result<Tracking, RmiError> {
    let args = [range.base().pa(), range.top().pa(), 0, 0, 0, 0];
    let out = call_retrying(smc, &SmcRegs::new(RMI_GRANULE_TRACKING_GET, args));
    rmi_result(out.x(0))?;
    let top = Granule::new(out.x(3))
        .filter(|t| *t > range.base() && *t <= range.top())
        .ok_or(RmiError::bad_output())?;
    Ok(Tracking {
        category: RmiMemCategory::from_raw(out.x(1)),
        state: RmiTrackingState::from_raw(out.x(2)),
        top,
    })
}

/// The call `RMI_GPT_L1_CREATE` for the L0 GPT block at `base` (aligned to
/// its size), for [`crate::sro::run`]: with dynamic GPTs it asks for memory.
///
/// `RMI_ERROR_GPT` means the L1 table exists already (always so on an RMM
/// with static tables, such as TF-RMM on QEMU).
pub(crate) fn gpt_l1_create_call(base: Granule) -> SmcRegs {
    SmcRegs::new(RMI_GPT_L1_CREATE, [base.pa(), 0, 0, 0, 0, 0])
}

/// One `RMI_GRANULE_RANGE_DELEGATE` or `_UNDELEGATE` call over `range`:
/// returns how far the RMM got. It may stop anywhere after the first granule
/// (TF-RMM does one granule per call); a failed call changed nothing.
fn granule_range_step(
    smc: &impl SmcConduit,
    fid: RmiFid,
    range: GranuleRange,
) -> Result<Granule, RmiError> {
    let args = [range.base().pa(), range.top().pa(), 0, 0, 0, 0];
    let out = call_retrying(smc, &SmcRegs::new(fid, args));
    rmi_result(out.x(0))?;
    Granule::new(out.x(1))
        .filter(|next| *next > range.base() && *next <= range.top())
        .ok_or(RmiError::bad_output())
}

/// `RMI_GRANULE_RANGE_DELEGATE` (one call); see [`granule_range_step`].
pub(crate) fn granule_range_delegate(
    smc: &impl SmcConduit,
    range: GranuleRange,
) -> Result<Granule, RmiError> {
    granule_range_step(smc, RMI_GRANULE_RANGE_DELEGATE, range)
}

/// `RMI_GRANULE_RANGE_UNDELEGATE` (one call); see [`granule_range_step`].
/// The RMM scrubs each granule before it returns to the NS PAS.
pub(crate) fn granule_range_undelegate(
    smc: &impl SmcConduit,
    range: GranuleRange,
) -> Result<Granule, RmiError> {
    granule_range_step(smc, RMI_GRANULE_RANGE_UNDELEGATE, range)
}

/// The handle of a stateful RMI operation in progress (x1 of its
/// `RMI_INCOMPLETE` answer), passed to every `RMI_OP_*` call for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpHandle(pub(crate) u64);

/// `RMI_OP_CONTINUE`: lets the operation go on (`stop` asks it to end early).
/// Returns the registers: the operation's next step or its final result.
pub(crate) fn op_continue(smc: &impl SmcConduit, handle: OpHandle, stop: bool) -> SmcRegs {
    let flags = if stop { RMI_CONTINUE_STOP } else { 0 };
    call_retrying(
        smc,
        &SmcRegs::new(RMI_OP_CONTINUE, [handle.0, flags, 0, 0, 0, 0]),
    )
}

/// `RMI_OP_MEM_DONATE`: offers the `count` descriptors at NS address `list`.
/// x1 of the answer is the number of granules the RMM took.
pub(crate) fn op_mem_donate(
    smc: &impl SmcConduit,
    handle: OpHandle,
    list: Granule,
    count: u64,
) -> SmcRegs {
    call_retrying(
        smc,
        &SmcRegs::new(RMI_OP_MEM_DONATE, [handle.0, list.pa(), count, 0, 0, 0]),
    )
}

/// `RMI_OP_MEM_RECLAIM`: the RMM writes up to `max` descriptors of granules
/// it gives back to NS address `list`; x1 of the answer is how many.
pub(crate) fn op_mem_reclaim(
    smc: &impl SmcConduit,
    handle: OpHandle,
    list: Granule,
    max: u64,
) -> SmcRegs {
    call_retrying(
        smc,
        &SmcRegs::new(RMI_OP_MEM_RECLAIM, [handle.0, list.pa(), max, 0, 0, 0]),
    )
}

/// `RMI_OP_CANCEL`: abandons the operation (only when it said it can be).
pub(crate) fn op_cancel(smc: &impl SmcConduit, handle: OpHandle) -> SmcRegs {
    call_retrying(smc, &SmcRegs::new(RMI_OP_CANCEL, [handle.0, 0, 0, 0, 0, 0]))
}

/// `RMI_REALM_CREATE`: makes the delegated granule `rd` the RD of a new
/// realm described by the `RmiRealmParams` in the NS granule `params`.
pub(crate) fn realm_create(
    smc: &impl SmcConduit,
    rd: Granule,
    params: Granule,
) -> Result<(), RmiError> {
    status_only(smc, RMI_REALM_CREATE, [rd.pa(), params.pa(), 0, 0, 0, 0])
}

/// `RMI_REALM_ACTIVATE`: NEW to ACTIVE; RECs can run from then on.
pub(crate) fn realm_activate(smc: &impl SmcConduit, rd: Granule) -> Result<(), RmiError> {
    status_only(smc, RMI_REALM_ACTIVATE, [rd.pa(), 0, 0, 0, 0, 0])
}

/// `RMI_REALM_TERMINATE`: the realm can never run again (ZOMBIE).
pub(crate) fn realm_terminate(smc: &impl SmcConduit, rd: Granule) -> Result<(), RmiError> {
    status_only(smc, RMI_REALM_TERMINATE, [rd.pa(), 0, 0, 0, 0, 0])
}

/// `RMI_REALM_DESTROY`: a terminated realm with no RECs and no non-root
/// RTTs; its RD and root RTTs return to DELEGATED.
pub(crate) fn realm_destroy(smc: &impl SmcConduit, rd: Granule) -> Result<(), RmiError> {
    status_only(smc, RMI_REALM_DESTROY, [rd.pa(), 0, 0, 0, 0, 0])
}

/// The first call of `RMI_REC_CREATE`: makes the delegated granule `rec` a
/// REC of the NEW realm `rd`, from the `RmiRecParams` in the NS granule
/// `params`. A stateful operation that asks for the REC's auxiliary
/// granules and cannot be cancelled: run it with `sro::run`.
pub(crate) fn rec_create_call(rd: Granule, rec: Granule, params: Granule) -> SmcRegs {
    SmcRegs::new(RMI_REC_CREATE, [rd.pa(), rec.pa(), params.pa(), 0, 0, 0])
}

/// The first call of `RMI_REC_DESTROY`: destroys the REC `rec` (not
/// running), which gives its auxiliary granules back through a reclaim.
/// Run it with `sro::run`; on success `rec` is DELEGATED again.
pub(crate) fn rec_destroy_call(rec: Granule) -> SmcRegs {
    SmcRegs::new(RMI_REC_DESTROY, [rec.pa(), 0, 0, 0, 0, 0])
}

/// The registers of `RMI_REC_ENTER`, which runs the REC `rec` until it
/// exits, with the `RmiRecRun` in the NS granule `run` (the host's `enter`
/// half read, the RMM's `exit` half written on success). The kernel makes
/// that SMC itself, inside the noinstr window of its run loop, once per
/// entry: a refused entry is answered by the next one (`run::RecRun`).
pub(crate) fn rec_enter_args(rec: Granule, run: Granule) -> SmcRegs {
    SmcRegs::new(RMI_REC_ENTER, [rec.pa(), run.pa(), 0, 0, 0, 0])
}

/// A PSCI status as `RMI_PSCI_COMPLETE` takes it (PSCI's return codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PsciStatus {
    /// `PSCI_RET_SUCCESS`: the target was turned on (or the affinity query
    /// answered; the RMM works out the answer itself).
    Success,
    /// `PSCI_RET_DENIED`: the host refuses to turn the target on.
    Denied,
}

impl PsciStatus {
    /// The register value: PSCI's negative codes as 64-bit two's complement.
    pub(crate) const fn raw(self) -> u64 {
        match self {
            Self::Success => 0,
            // CAST: PSCI_RET_DENIED is -3.
            Self::Denied => -3i64 as u64,
        }
    }
}

/// `RMI_PSCI_COMPLETE`: completes the `PSCI_CPU_ON` or
/// `PSCI_AFFINITY_INFO` the REC `calling` made, whose target is the REC
/// `target`. Must come before `calling` is entered again.
pub(crate) fn psci_complete(
    smc: &impl SmcConduit,
    calling: Granule,
    target: Granule,
    status: PsciStatus,
) -> Result<(), RmiError> {
    let args = [calling.pa(), target.pa(), status.raw(), 0, 0, 0];
    status_only(smc, RMI_PSCI_COMPLETE, args)
}

/// `RMI_RTT_CREATE`: makes the delegated granule `rtt` the RTT at `level`
/// for the region holding `ipa` (aligned to what one level-1 entry maps).
///
/// `RMI_ERROR_RTT` carries the level the walk reached: below `level - 1`,
/// a parent is missing; `level - 1`, the entry already has a table.
pub(crate) fn rtt_create(
    smc: &impl SmcConduit,
    rd: Granule,
    rtt: Granule,
    ipa: Ipa,
    level: RttLevel,
) -> Result<(), RmiError> {
    let args = [rd.pa(), rtt.pa(), ipa.get(), level.raw(), 0, 0];
    status_only(smc, RMI_RTT_CREATE, args)
}

/// The answer of `RMI_RTT_DESTROY`: besides the result, where the next
/// live entry of the parent table may be (x2, "top of the non-live
/// region"), on success and on `RMI_ERROR_RTT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RttDestroyed {
    /// The RTT granule, back to DELEGATED, or the error.
    pub(crate) result: Result<Granule, RmiError>,
    /// Where to go on: at least the IPA asked and at most 2^52 (the end
    /// of the largest IPA space), else the answer was bad.
    pub(crate) next: Option<u64>,
}

/// `RMI_RTT_DESTROY` of the RTT at `level` for the region holding `ipa`.
pub(crate) fn rtt_destroy(
    smc: &impl SmcConduit,
    rd: Granule,
    ipa: Ipa,
    level: RttLevel,
) -> RttDestroyed {
    let args = [rd.pa(), ipa.get(), level.raw(), 0, 0, 0];
    let out = call_retrying(smc, &SmcRegs::new(RMI_RTT_DESTROY, args));
    let next = Some(out.x(2)).filter(|n| *n >= ipa.get() && *n <= 1 << 52);
    let result =
        rmi_result(out.x(0)).and_then(|()| Granule::new(out.x(1)).ok_or(RmiError::bad_output()));
    RttDestroyed { result, next }
}

/// `RMI_RTT_FOLD`: replaces the homogeneous RTT at `level` for `ipa` with
/// one entry in its parent, and returns the RTT granule (DELEGATED again).
/// `RMI_ERROR_RTT` with index `level`: not homogeneous.
pub(crate) fn rtt_fold(
    smc: &impl SmcConduit,
    rd: Granule,
    ipa: Ipa,
    level: RttLevel,
) -> Result<Granule, RmiError> {
    let args = [rd.pa(), ipa.get(), level.raw(), 0, 0, 0];
    let out = call_retrying(smc, &SmcRegs::new(RMI_RTT_FOLD, args));
    rmi_result(out.x(0))?;
    Granule::new(out.x(1)).ok_or(RmiError::bad_output())
}

/// `RMI_RTT_DATA_MAP_INIT`: maps the delegated granule `data` at `ipa` (a
/// level-3 entry, which must be unassigned) of the NEW realm `rd`, with a
/// copy of the NS granule `src`, added to the initial measurement if
/// `measure`. The entry's RIPAS becomes RAM.
pub(crate) fn rtt_data_map_init(
    smc: &impl SmcConduit,
    rd: Granule,
    data: Granule,
    ipa: Ipa,
    src: Granule,
    measure: bool,
) -> Result<(), RmiError> {
    let args = [
        rd.pa(),
        data.pa(),
        ipa.get(),
        src.pa(),
        u64::from(measure),
        0,
    ];
    status_only(smc, RMI_RTT_DATA_MAP_INIT, args)
}

/// `RMI_RTT_INIT_RIPAS`: sets RIPAS RAM over `[base, top)` of the NEW
/// realm `rd`, as far as one RTT's entries go. Returns the IPA reached.
///
/// `RMI_ERROR_RTT` carries the level the walk reached when no entry could
/// change: a table is missing below it (level < 3), or the entry at `base`
/// is neither EMPTY nor RAM (level 3).
pub(crate) fn rtt_init_ripas(
    smc: &impl SmcConduit,
    rd: Granule,
    base: Ipa,
    top: Ipa,
) -> Result<Ipa, RmiError> {
    let args = [rd.pa(), base.get(), top.get(), 0, 0, 0];
    let out = call_retrying(smc, &SmcRegs::new(RMI_RTT_INIT_RIPAS, args));
    rmi_result(out.x(0))?;
    Ipa::new(out.x(1))
        .filter(|reached| reached.get() > base.get() && reached.get() <= top.get())
        .ok_or(RmiError::bad_output())
}

/// `RMI_RTT_SET_RIPAS`: goes on with the RIPAS change REC `rec` of realm
/// `rd` asked for, over `[base, top)` (`base` where the last call got to),
/// as far as one RTT's entries go. Returns the IPA reached, which the RMM
/// records in the REC.
///
/// `RMI_ERROR_RTT` carries the level the walk reached when no entry could
/// change: `base` is not aligned to it or the entry there crosses `top`
/// (level < 3: a table is missing below it), or the entry cannot take the
/// RIPAS asked for (for example DESTROYED to RAM without the realm's leave).
pub(crate) fn rtt_set_ripas(
    smc: &impl SmcConduit,
    rd: Granule,
    rec: Granule,
    base: Ipa,
    top: Ipa,
) -> Result<Ipa, RmiError> {
    let args = [rd.pa(), rec.pa(), base.get(), top.get(), 0, 0];
    let out = call_retrying(smc, &SmcRegs::new(RMI_RTT_SET_RIPAS, args));
    rmi_result(out.x(0))?;
    Ipa::new(out.x(1))
        .filter(|reached| reached.get() > base.get() && reached.get() <= top.get())
        .ok_or(RmiError::bad_output())
}

/// `RmiRttAddrType` SINGLE: the unmapped granules come back as one
/// descriptor in x2.
const RMI_ADDR_TYPE_SINGLE: u64 = 1;

/// The first call of `RMI_RTT_DATA_UNMAP` over `[base, top)` of realm `rd`,
/// asking for the unmapped granules as one descriptor (they are
/// PA-contiguous). A stateful operation: run it with `sro::run_no_memory`,
/// then decode its answer with [`data_unmapped`].
pub(crate) fn rtt_data_unmap_call(rd: Granule, base: Ipa, top: Ipa) -> SmcRegs {
    SmcRegs::new(
        RMI_RTT_DATA_UNMAP,
        [rd.pa(), base.get(), top.get(), RMI_ADDR_TYPE_SINGLE, 0, 0],
    )
}

/// What one `RMI_RTT_DATA_UNMAP` call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DataUnmapped {
    /// Where the next call starts: past everything unmapped or skipped.
    pub(crate) out_top: Ipa,
    /// The granules unmapped, back to DELEGATED; `None` if there were none.
    pub(crate) granules: Option<GranuleRange>,
}

/// Decodes the final registers of an `RMI_RTT_DATA_UNMAP` over
/// `[base, top)` that succeeded: `out_top` must make progress and stay
/// within the range, and the descriptor must describe level-3 granules
/// (the host never maps blocks).
pub(crate) fn data_unmapped(out: &SmcRegs, base: Ipa, top: Ipa) -> Result<DataUnmapped, RmiError> {
    let out_top = Ipa::new(out.x(1))
        .filter(|t| t.get() > base.get() && t.get() <= top.get())
        .ok_or(RmiError::bad_output())?;
    let granules = match RmiAddrRangeDesc(out.x(2)) {
        RmiAddrRangeDesc(0) => None,
        desc => {
            let range = desc
                .range()
                .filter(|_| {
                    desc.size() == RmiBlockSize::Page
                        && desc.count() > 0
                        && desc.reserved_clear()
                        && desc.count() <= (out_top.get() - base.get()) / GRANULE_SIZE
                })
                .ok_or(RmiError::bad_output())?;
            Some(range)
        }
    };
    Ok(DataUnmapped { out_top, granules })
}

/// `RmiRttAddrType` NONE: an unmap reports nothing but how far it got.
const RMI_ADDR_TYPE_NONE: u64 = 0;

/// A level-3 descriptor of the one granule `g` in `state`, as the map
/// commands take it in x5 (SINGLE).
fn one_page_desc(g: Granule, state: RmiMemState) -> Result<u64, RmiError> {
    RmiAddrRangeDesc::new(g, RmiBlockSize::Page, 1, state)
        .map(|d| d.0)
        .ok_or(RmiError::bad_output())
}

/// The first call of `RMI_RTT_DATA_MAP`: maps the delegated granule `data`
/// at the protected IPA `ipa` (a level-3 entry, unassigned) of realm `rd`
/// as zeroed DATA, keeping the entry's RIPAS. A stateful operation: run it
/// with `sro::run_no_memory`, then check its answer with [`page_mapped`].
///
/// `RMI_ERROR_RTT` carries the level the walk reached: below 3, a table
/// is missing; 3, the entry is not unassigned (mapped, maybe to another
/// granule).
pub(crate) fn rtt_data_map_call(rd: Granule, ipa: Ipa, data: Granule) -> Result<SmcRegs, RmiError> {
    let desc = one_page_desc(data, RmiMemState::Delegated)?;
    let top = ipa
        .get()
        .checked_add(GRANULE_SIZE)
        .ok_or(RmiError::bad_output())?;
    Ok(SmcRegs::new(
        RMI_RTT_DATA_MAP,
        [rd.pa(), ipa.get(), top, RMI_ADDR_TYPE_SINGLE, desc, 0],
    ))
}

/// Checks the final registers of a one-page map at `ipa` that succeeded:
/// `out_top` (x1) is the end of the page.
pub(crate) fn page_mapped(out: &SmcRegs, ipa: Ipa) -> Result<(), RmiError> {
    if Some(out.x(1)) == ipa.get().checked_add(GRANULE_SIZE) {
        Ok(())
    } else {
        Err(RmiError::bad_output())
    }
}

/// Stage-2 memory attributes of `RmiRttUnprotMapFlags` (S2TTE bits [4:2]
/// with FEAT_S2FWB): normal memory, inner and outer write-back.
const S2_MEMATTR_FWB_NORMAL_WB: u64 = 6;

/// `RMI_RTT_UNPROT_MAP`: maps the NS granule `pa` at the unprotected IPA
/// `ipa` (a level-3 entry) of realm `rd`, as normal write-back memory,
/// readable, and writable if `write`.
///
/// `RMI_ERROR_RTT` carries the level the walk reached: below 3, a table
/// is missing; 3, the entry maps something else (another granule, or the
/// same one with other permissions).
pub(crate) fn rtt_unprot_map(
    smc: &impl SmcConduit,
    rd: Granule,
    ipa: Ipa,
    pa: Granule,
    write: bool,
) -> Result<(), RmiError> {
    // S2AP, direct encoding: bit 0 write, bit 1 read.
    let s2ap = 0b10 | u64::from(write);
    let flags = RMI_ADDR_TYPE_SINGLE | (S2_MEMATTR_FWB_NORMAL_WB << 16) | (s2ap << 19);
    let desc = one_page_desc(pa, RmiMemState::Undelegated)?;
    let top = ipa
        .get()
        .checked_add(GRANULE_SIZE)
        .ok_or(RmiError::bad_output())?;
    let out = call_retrying(
        smc,
        &SmcRegs::new(
            RMI_RTT_UNPROT_MAP,
            [rd.pa(), ipa.get(), top, flags, desc, 0],
        ),
    );
    rmi_result(out.x(0))?;
    page_mapped(&out, ipa)
}

/// The first call of `RMI_RTT_UNPROT_UNMAP` over `[base, top)` (the
/// unprotected half) of realm `rd`, reporting only how far it got. A
/// stateful operation: run it with `sro::run_no_memory`, then decode its
/// answer with [`unmapped_to`].
pub(crate) fn rtt_unprot_unmap_call(rd: Granule, base: Ipa, top: Ipa) -> SmcRegs {
    SmcRegs::new(
        RMI_RTT_UNPROT_UNMAP,
        [rd.pa(), base.get(), top.get(), RMI_ADDR_TYPE_NONE, 0, 0],
    )
}

/// The `out_top` (x1) of an unmap over `[base, top)` that succeeded: it
/// must make progress and stay within the range.
pub(crate) fn unmapped_to(out: &SmcRegs, base: Ipa, top: Ipa) -> Result<Ipa, RmiError> {
    Ipa::new(out.x(1))
        .filter(|t| t.get() > base.get() && t.get() <= top.get())
        .ok_or(RmiError::bad_output())
}

/// A realm IPA's RIPAS (`RmiRipas`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ripas {
    /// No memory: the realm takes an abort on access.
    Empty,
    /// Memory the realm accepted.
    Ram,
    /// Memory the host took away from under the realm.
    Destroyed,
    /// Device memory.
    Dev,
}

impl Ripas {
    /// Decodes `RmiRipas`.
    pub(crate) const fn from_raw(raw: u64) -> Option<Self> {
        match raw {
            0 => Some(Self::Empty),
            1 => Some(Self::Ram),
            2 => Some(Self::Destroyed),
            3 => Some(Self::Dev),
            _ => None,
        }
    }
}

/// The state of an RTT entry (`RmiRttEntryState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RttEntryState {
    /// Maps nothing.
    Unassigned,
    /// Maps a DATA granule (protected) or NS memory (unprotected).
    Assigned,
    /// Points to the next level's RTT.
    Table,
    /// Maps device memory.
    AssignedDev,
}

/// What `RMI_RTT_READ_ENTRY` reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RttEntry {
    /// The level the walk reached (at most the one asked for).
    pub(crate) level: RttLevel,
    /// The entry's state.
    pub(crate) state: RttEntryState,
    /// The output address of an assigned entry, else 0.
    pub(crate) addr: u64,
    /// The RIPAS of a protected entry.
    pub(crate) ripas: Ripas,
}

/// `RMI_RTT_READ_ENTRY`: the entry for `ipa` of realm `rd` at `level`, or
/// above it where the walk stops.
pub(crate) fn rtt_read_entry(
    smc: &impl SmcConduit,
    rd: Granule,
    ipa: Ipa,
    level: RttLevel,
) -> Result<RttEntry, RmiError> {
    let args = [rd.pa(), ipa.get(), level.raw(), 0, 0, 0];
    let out = call_retrying(smc, &SmcRegs::new(RMI_RTT_READ_ENTRY, args));
    rmi_result(out.x(0))?;
    // CAST: Two's complement level.
    let reached = i8::try_from(out.x(1) as i64)
        .ok()
        .and_then(RttLevel::new)
        .filter(|l| *l <= level);
    let state = match out.x(2) {
        0 => Some(RttEntryState::Unassigned),
        1 => Some(RttEntryState::Assigned),
        2 => Some(RttEntryState::Table),
        3 => Some(RttEntryState::AssignedDev),
        _ => None,
    };
    match (reached, state, Ripas::from_raw(out.x(4))) {
        (Some(level), Some(state), Some(ripas)) => Ok(RttEntry {
            level,
            state,
            addr: out.x(3),
            ripas,
        }),
        _ => Err(RmiError::bad_output()),
    }
}
