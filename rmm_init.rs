// SPDX-License-Identifier: GPL-2.0

//! RMM discovery and one-time configuration, run at module load.
//!
//! Part of the sans-IO core. The RMM is configured and activated once per
//! boot: a later load (after `rmmod`) finds it active already, checks that
//! its configuration is the one this host needs, and carries on. Then every
//! range of boot memory must be tracked finely by the RMM, or it cannot be
//! delegated; missing L1 GPTs are created (`RMI_ERROR_GPT` means they exist).

use core::fmt;

use crate::addr::{
    Granule,
    GranuleRange, //
};
use crate::granule::{
    GranuleSet,
    PageSource,
    Rmi, //
};
use crate::rmi_cmds::{
    gpt_l1_create_call,
    granule_tracking_get,
    rmi_features,
    rmi_version,
    rmm_activate,
    rmm_config_get,
    rmm_config_set,
    RmiFeatureRegs,
    RmiVersionRange,
    SmcConduit,
    VersionError, //
};
use crate::rmi_smc::{
    RmiError,
    RmiFid,
    RmiRmmConfig,
    RmiStatus,
    RmiTrackingState,
    RmiVersion,
    RMI_FEATURES,
    RMI_GPT_L1_CREATE,
    RMI_GRANULE_TRACKING_GET,
    RMI_RMM_ACTIVATE,
    RMI_RMM_CONFIG_GET,
    RMI_RMM_CONFIG_SET, //
};
use crate::sro::{
    self,
    SroError, //
};

/// Why the RMM cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InitError {
    /// No RMM, or one without ABI 2.0.
    Version(VersionError),
    /// A command failed.
    Cmd {
        /// The command.
        fid: RmiFid,
        /// Its error.
        err: RmiError,
    },
    /// The RMM does not support 4 KiB granules (the host's page size).
    NoGranule4k,
    /// The RMM was configured earlier in this boot with another granule or
    /// tracking size: `(tracking_region_size, rmi_granule_size)`.
    ConfiguredOtherwise(u64, u64),
    /// Out of memory (`ENOMEM`).
    NoMemory,
    /// The RMM asked for memory in a shape the host cannot give.
    UnsupportedDonation,
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version(VersionError::NotSupported) => {
                f.write_str("no RMM (RMI_VERSION not supported)")
            }
            Self::Version(VersionError::Incompatible(r)) => write!(
                f,
                "RMM implements ABI {}..{}, host needs {}",
                r.lower,
                r.higher,
                RmiVersion::HOST
            ),
            Self::Version(VersionError::Malformed { x0 }) => {
                write!(f, "malformed RMI_VERSION answer (x0 {x0:#x})")
            }
            Self::Cmd { fid, err } => write!(
                f,
                "{} failed: {err}",
                crate::rmi_smc::rmi_fid_name(*fid).unwrap_or("RMI_(unknown)")
            ),
            Self::NoGranule4k => f.write_str("RMM does not support 4 KiB granules"),
            Self::ConfiguredOtherwise(t, g) => write!(
                f,
                "RMM configured earlier in this boot with tracking size {t}, granule size {g}"
            ),
            Self::NoMemory => f.write_str("out of memory"),
            Self::UnsupportedDonation => {
                f.write_str("RMM asked for memory in an unsupported shape")
            }
        }
    }
}

/// Wraps a command's error with its FID.
fn cmd(fid: RmiFid) -> impl Fn(RmiError) -> InitError {
    move |err| InitError::Cmd { fid, err }
}

/// What tracking covers, over the boot memory given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TrackingReport {
    /// Granules tracked finely (delegable).
    pub(crate) fine: u64,
    /// Granules left untracked or coarsely tracked (never delegated).
    pub(crate) untracked: u64,
    /// L1 GPTs this load created.
    pub(crate) l1_created: u64,
    /// `RMI_GPT_L1_CREATE` calls that found the table there already.
    pub(crate) l1_existing: u64,
}

/// What the RMM is, after init.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RmmInfo {
    /// ABI revisions it implements.
    pub(crate) versions: RmiVersionRange,
    /// Its feature registers.
    pub(crate) features: RmiFeatureRegs,
    /// Whether this load activated it (false: active from an earlier load).
    pub(crate) activated_now: bool,
    /// Tracking of boot memory.
    pub(crate) tracking: TrackingReport,
}

/// What the RMM is, as asked before anything is changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RmmProbe {
    /// ABI revisions it implements.
    pub(crate) versions: RmiVersionRange,
    /// Its feature registers.
    pub(crate) features: RmiFeatureRegs,
}

/// Why a load did not go through.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LoadError<E> {
    /// The RMM could not be used or set up.
    Rmm(InitError),
    /// The rest of the host refused, before the RMM was changed.
    Refused(E),
}

/// Finds the RMM (`RMI_VERSION`, `RMI_FEATURES`), then asks `admit`
/// whether the rest of the host takes it (everything else that can refuse
/// a load), and only then configures and activates it and makes sure
/// `memory` (boot memory, ascending ranges) is tracked finely: a load that
/// is refused leaves the RMM, and so the host, as it was. Granules donated
/// for L1 GPTs are recorded in `gpt_tables`; the RMM keeps them for the rest
/// of the boot. `admit` is the last step before the RMM is changed: the
/// host records there what an active RMM rules out (kexec, hibernation),
/// which lasts even if a later step fails.
///
/// # Errors
///
/// See [`InitError`] and [`LoadError`]. Memory the RMM cannot track is not
/// an error: it is reported in [`TrackingReport::untracked`] and never
/// delegated.
pub(crate) fn rmm_init<'r, C: SmcConduit, P: PageSource, A, E>(
    rmi: &'r Rmi<C, P>,
    memory: impl IntoIterator<Item = GranuleRange>,
    gpt_tables: &mut impl GranuleSet<'r, C, P>,
    admit: impl FnOnce(&RmmProbe) -> Result<A, E>,
) -> Result<(RmmInfo, A), LoadError<E>> {
    let smc = rmi.smc();
    let versions = rmi_version(smc, RmiVersion::HOST)
        .map_err(InitError::Version)
        .map_err(LoadError::Rmm)?;
    let features = rmi_features(smc)
        .map_err(cmd(RMI_FEATURES))
        .map_err(LoadError::Rmm)?;
    if !features.f1.granule_4k() {
        return Err(LoadError::Rmm(InitError::NoGranule4k));
    }
    let admitted = admit(&RmmProbe { versions, features }).map_err(LoadError::Refused)?;
    let info =
        activate_and_track(rmi, versions, features, memory, gpt_tables).map_err(LoadError::Rmm)?;
    Ok((info, admitted))
}

/// The part of [`rmm_init`] that changes the RMM.
fn activate_and_track<'r, C: SmcConduit, P: PageSource>(
    rmi: &'r Rmi<C, P>,
    versions: RmiVersionRange,
    features: RmiFeatureRegs,
    memory: impl IntoIterator<Item = GranuleRange>,
    gpt_tables: &mut impl GranuleSet<'r, C, P>,
) -> Result<RmmInfo, InitError> {
    let activated_now = configure_and_activate(rmi)?;
    let l0gpt_bits = 30 + u32::from(features.f1.l0gptsz());
    let mut tracking = TrackingReport::default();
    for range in memory {
        track_range(rmi, range, l0gpt_bits, gpt_tables, &mut tracking)?;
    }
    Ok(RmmInfo {
        versions,
        features,
        activated_now,
        tracking,
    })
}

/// `RMI_RMM_CONFIG_SET` + `RMI_RMM_ACTIVATE`, or, if an earlier load in
/// this boot did that (both answer `RMI_ERROR_GLOBAL` then), a check with
/// `RMI_RMM_CONFIG_GET` that the configuration is ours. Returns whether
/// this call activated the RMM.
fn configure_and_activate<C: SmcConduit, P: PageSource>(
    rmi: &Rmi<C, P>,
) -> Result<bool, InitError> {
    let smc = rmi.smc();
    // The NS granule the configuration passes through; freed on return.
    let page = rmi.pages().alloc().ok_or(InitError::NoMemory)?;
    let page_granule = P::granule(&page);
    if !P::write_words(&page, 0, &RmiRmmConfig::granule_4k().to_words()) {
        return Err(InitError::NoMemory);
    }
    let configured_earlier = match rmm_config_set(smc, page_granule) {
        Ok(()) => false,
        Err(e) if e.status() == RmiStatus::ErrorGlobal => true,
        Err(e) => return Err(cmd(RMI_RMM_CONFIG_SET)(e)),
    };
    if !configured_earlier {
        rmm_activate(smc).map_err(cmd(RMI_RMM_ACTIVATE))?;
        return Ok(true);
    }
    // Active since an earlier load: ACTIVATE must agree, and the
    // configuration must be the one this host needs.
    match rmm_activate(smc) {
        Err(e) if e.status() == RmiStatus::ErrorGlobal => {}
        Ok(()) => return Ok(true),
        Err(e) => return Err(cmd(RMI_RMM_ACTIVATE)(e)),
    }
    let mut words = [u64::MAX; 2];
    if !P::write_words(&page, 0, &words) {
        return Err(InitError::NoMemory);
    }
    rmm_config_get(smc, page_granule).map_err(cmd(RMI_RMM_CONFIG_GET))?;
    if !P::read_words(&page, 0, &mut words) {
        return Err(InitError::NoMemory);
    }
    if words != RmiRmmConfig::granule_4k().to_words() {
        return Err(InitError::ConfiguredOtherwise(words[0], words[1]));
    }
    Ok(false)
}

/// Walks `range` with `RMI_GRANULE_TRACKING_GET`, creating the L1 GPT of
/// each L0 GPT block (`2^l0gpt_bits` bytes) that is not tracked yet.
fn track_range<'r, C: SmcConduit, P: PageSource>(
    rmi: &'r Rmi<C, P>,
    range: GranuleRange,
    l0gpt_bits: u32,
    gpt_tables: &mut impl GranuleSet<'r, C, P>,
    report: &mut TrackingReport,
) -> Result<(), InitError> {
    let mut next = range.base();
    let mut created_at = None;
    while let Some(rest) = range.from(next).filter(|r| !r.is_empty()) {
        let t = granule_tracking_get(rmi.smc(), rest).map_err(cmd(RMI_GRANULE_TRACKING_GET))?;
        // `t.top` is in `(next, range.top()]`, checked by the command layer.
        let part = rest.below(t.top).unwrap_or(rest);
        let block = l0gpt_block(next, l0gpt_bits).ok_or(InitError::Cmd {
            fid: RMI_GRANULE_TRACKING_GET,
            err: RmiError::bad_output(),
        })?;
        match t.state {
            RmiTrackingState::Fine => report.fine += part.count(),
            // Asked once per block: if creating it did not help, the rest
            // of the block stays untracked.
            RmiTrackingState::None if created_at != Some(block) => {
                created_at = Some(block);
                if create_l1_gpt(rmi, block, gpt_tables)? {
                    report.l1_created += 1;
                } else {
                    report.l1_existing += 1;
                }
                // Ask again for the same granule.
                continue;
            }
            _ => report.untracked += part.count(),
        }
        next = t.top;
    }
    Ok(())
}

/// The base of the L0 GPT block holding `g`.
fn l0gpt_block(g: Granule, bits: u32) -> Option<Granule> {
    let mask = 1u64.checked_shl(bits)?.checked_sub(1)?;
    Granule::new(g.pa() & !mask)
}

/// `RMI_GPT_L1_CREATE` (an SRO that may ask for memory). True if a table
/// was created, false if one existed (`RMI_ERROR_GPT`).
fn create_l1_gpt<'r, C: SmcConduit, P: PageSource>(
    rmi: &'r Rmi<C, P>,
    block: Granule,
    gpt_tables: &mut impl GranuleSet<'r, C, P>,
) -> Result<bool, InitError> {
    match sro::run(rmi, &gpt_l1_create_call(block), gpt_tables) {
        Ok(_) => Ok(true),
        Err(SroError::Rmi(e)) if e.status() == RmiStatus::ErrorGpt => Ok(false),
        Err(SroError::Rmi(err)) => Err(InitError::Cmd {
            fid: RMI_GPT_L1_CREATE,
            err,
        }),
        Err(SroError::NoMemory) => Err(InitError::NoMemory),
        Err(SroError::UnsupportedDonation) => Err(InitError::UnsupportedDonation),
    }
}
