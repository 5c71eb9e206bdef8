// SPDX-License-Identifier: GPL-2.0

//! Realms: their parameters, lifecycle (NONE → NEW → ACTIVE → DYING →
//! DEAD), and the RD and RTTs they own.
//!
//! Part of the sans-IO core. Teardown follows the order the C series'
//! review settled on: terminate, destroy non-root RTTs bottom-up, destroy
//! the RD, then undelegate the root RTTs and the RD. An unexpected RMM
//! answer makes the realm DEAD; whatever the RMM may still hold is then
//! leaked by the owner types, never freed.

use core::fmt;

use crate::addr::{
    Granule,
    GranuleRange,
    Ipa,
    RttLevel,
    GRANULE_SIZE, //
};
use crate::data::{
    DelegatedGuestPage,
    GuestPageRef,
    GuestPages,
    MappedGuestPage,
    PopulateStage,
    StageHost, //
};
use crate::granule::{
    DelegatedBlock,
    DelegatedGranule,
    GranuleSet,
    MemError,
    PageSource,
    Rmi, //
};
use crate::memory::{
    unmap_protected,
    unmap_shared, //
};
use crate::rmi_cmds::{
    realm_activate,
    realm_create,
    realm_destroy,
    realm_terminate,
    rtt_create,
    rtt_data_map_init,
    rtt_destroy,
    rtt_fold,
    rtt_init_ripas,
    rtt_set_ripas,
    RmiFeatureRegs,
    SmcConduit, //
};
use crate::rmi_smc::{
    RmiError,
    RmiRealmParams,
    RmiStatus, //
};
use crate::rtt::{
    rtt_geometry,
    RttGeometry,
    MIN_IPA_BITS, //
};

/// The IPA size of a VM type whose size field is 0 (KVM's default).
pub(crate) const DEFAULT_IPA_BITS: u8 = 40;

/// `RmiRealmFlags0.LPA2` (bit 0).
const FLAGS0_LPA2: u64 = 1 << 0;
/// `RmiRealmFlags0.SVE` (bit 1).
const FLAGS0_SVE: u64 = 1 << 1;

/// The longest SVE vector, in bytes, the RMM gives realms (0 without SVE):
/// feature register 0 `SVE_VL` is the vector length in quadwords minus one.
pub(crate) fn rmm_sve_max_vl(f: &RmiFeatureRegs) -> u32 {
    if f.f0.sve_en() {
        (u32::from(f.f0.sve_vl()) + 1) * 16
    } else {
        0
    }
}

/// `RmiHashAlgorithm` values.
const HASH_SHA256: u8 = 0;
/// See [`HASH_SHA256`].
const HASH_SHA512: u8 = 1;

/// Why a realm cannot have the configuration asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParamsError {
    /// The IPA size is outside `[32, max]` (the RMM's and the host's limit).
    IpaSize {
        /// What was asked.
        asked: u8,
        /// The largest size allowed.
        max: u8,
    },
    /// The host's stage 2 uses LPA2 and the RMM does not support it.
    Lpa2Unsupported,
    /// The RMM offers neither SHA-256 nor SHA-512 for measurements.
    NoHash,
    /// The RMM reports no breakpoints or watchpoints; a realm needs one each.
    NoDebugResources,
    /// SVE with a vector length (bytes) the RMM does not offer: not a
    /// multiple of 16 in `16..=`[`rmm_sve_max_vl`].
    SveVl(u32),
}

/// What the host decides about a realm before creating it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RealmConfig {
    /// IPA size in bits (bits 7:0 of the VM type; 0 means 40).
    pub(crate) ipa_bits: u8,
    /// The host's IPA limit (KVM's `get_kvm_ipa_limit()`).
    pub(crate) host_ipa_limit: u8,
    /// Whether the host's stage 2 uses LPA2: the RMM must then too.
    pub(crate) host_lpa2: bool,
}

/// The IPA size and root geometry a configuration resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RealmShape {
    /// IPA size in bits.
    pub(crate) s2sz: u8,
    /// Whether the RTTs use the LPA2 format.
    pub(crate) lpa2: bool,
    /// Where the RTT walk starts, and how many root granules there are.
    pub(crate) geometry: RttGeometry,
}

/// Checks `cfg` against the RMM's features and the host, and works out the
/// realm's IPA size and RTT root.
pub(crate) fn realm_shape(f: &RmiFeatureRegs, cfg: RealmConfig) -> Result<RealmShape, ParamsError> {
    if cfg.host_lpa2 && !f.f0.lpa2() {
        return Err(ParamsError::Lpa2Unsupported);
    }
    let s2sz = if cfg.ipa_bits == 0 {
        DEFAULT_IPA_BITS
    } else {
        cfg.ipa_bits
    };
    let lpa2 = cfg.host_lpa2;
    let max =
        f.f0.s2sz()
            .min(cfg.host_ipa_limit)
            .min(if lpa2 { 52 } else { 48 });
    let ipa_err = ParamsError::IpaSize { asked: s2sz, max };
    if s2sz < MIN_IPA_BITS || s2sz > max {
        return Err(ipa_err);
    }
    let geometry = rtt_geometry(s2sz, lpa2).ok_or(ipa_err)?;
    Ok(RealmShape {
        s2sz,
        lpa2,
        geometry,
    })
}

/// The breakpoints and watchpoints a realm is to have, encoded as in
/// `ID_AA64DFR0_EL1` (the count minus one; 0 is reserved): what the VMM
/// left in the VM's `BRPs` and `WRPs`. `RmiRealmParams` and the RMM's
/// feature register 0 use the same encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DebugResources {
    /// Breakpoints, minus one.
    pub(crate) brps: u8,
    /// Watchpoints, minus one.
    pub(crate) wrps: u8,
}

/// What the VMM chose for a realm, taken when its RD is created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RealmOptions {
    /// Breakpoints and watchpoints; all the RMM offers if `None`.
    pub(crate) debug: Option<DebugResources>,
    /// The SVE vector length in bytes; no SVE if `None`.
    pub(crate) sve_vl: Option<u32>,
}

/// `ID_AA64DFR0_EL1` fields: `BRPs` [15:12], `WRPs` [23:20], `CTX_CMPs`
/// [31:28], each the count minus one.
const DFR0_BRPS_SHIFT: u32 = 12;
/// See [`DFR0_BRPS_SHIFT`].
const DFR0_WRPS_SHIFT: u32 = 20;
/// See [`DFR0_BRPS_SHIFT`].
const DFR0_CTX_CMPS_SHIFT: u32 = 28;

/// The 4-bit field at `shift` of `val`.
const fn field4(val: u64, shift: u32) -> u64 {
    (val >> shift) & 0xf
}

/// `val` with the 4-bit field at `shift` set to `f`.
const fn with_field4(val: u64, shift: u32, f: u64) -> u64 {
    (val & !(0xf << shift)) | ((f & 0xf) << shift)
}

impl DebugResources {
    /// The fields of a value of `ID_AA64DFR0_EL1`.
    pub(crate) const fn from_dfr0(dfr0: u64) -> Self {
        // CAST: 4-bit fields.
        Self {
            brps: field4(dfr0, DFR0_BRPS_SHIFT) as u8,
            wrps: field4(dfr0, DFR0_WRPS_SHIFT) as u8,
        }
    }
}

/// The most of each 4-bit field of `ID_AA64DFR0_EL1` a realm VM shows
/// (`0xf`: unbounded): breakpoints and watchpoints bounded by the RMM's,
/// context-aware breakpoints by the RMM's breakpoints too. KVM lowers its
/// own value to it field by field ([`id_fields_min`]), as data the module
/// registers once.
pub(crate) fn realm_dfr0_max(f: &RmiFeatureRegs) -> u64 {
    let brps = u64::from(f.f0.num_bps());
    let v = with_field4(u64::MAX, DFR0_BRPS_SHIFT, brps);
    let v = with_field4(v, DFR0_WRPS_SHIFT, u64::from(f.f0.num_wps()));
    with_field4(v, DFR0_CTX_CMPS_SHIFT, brps)
}

/// Each 4-bit field of `val` lowered to at most that of `max`, as KVM
/// applies [`realm_dfr0_max`].
pub(crate) fn id_fields_min(val: u64, max: u64) -> u64 {
    (0..64).step_by(4).fold(0, |acc, shift| {
        let field = 0xf << shift;
        acc | (val & field).min(max & field)
    })
}

/// `ID_AA64DFR0_EL1` as a realm VM shows it, from KVM's value `dfr0` for a
/// normal VM: breakpoints and watchpoints bounded by the RMM's
/// (context-aware ones by the breakpoints, as a host's never exceed its
/// breakpoints), so the VMM sees, and can lower, what the realm will get.
pub(crate) fn realm_dfr0(f: &RmiFeatureRegs, dfr0: u64) -> u64 {
    id_fields_min(dfr0, realm_dfr0_max(f))
}

/// The `RmiRealmParams` for a realm of `shape` whose root RTT granules
/// start at `rtt_base` (delegated, aligned to their total size).
///
/// Measurements use SHA-256 if offered, else SHA-512; the realm gets the
/// breakpoints and watchpoints `options.debug` asks for, within what the
/// RMM accepts (all it offers without it; 2 of each, the architecture's
/// minimum, for the reserved encoding 0), SVE with `options.sve_vl` if
/// set, and no PMU.
pub(crate) fn realm_params(
    f: &RmiFeatureRegs,
    shape: &RealmShape,
    rtt_base: Granule,
    options: RealmOptions,
) -> Result<RmiRealmParams, ParamsError> {
    let RealmOptions { debug, sve_vl } = options;
    let algorithm = if f.f1.sha256() {
        HASH_SHA256
    } else if f.f1.sha512() {
        HASH_SHA512
    } else {
        return Err(ParamsError::NoHash);
    };
    // The RMM takes at most the feature field's value, and at least 1.
    let (max_bps, max_wps) = (f.f0.num_bps(), f.f0.num_wps());
    if max_bps == 0 || max_wps == 0 {
        return Err(ParamsError::NoDebugResources);
    }
    let (bps, wps) = debug.map_or((max_bps, max_wps), |d| {
        (d.brps.clamp(1, max_bps), d.wrps.clamp(1, max_wps))
    });
    let mut p = RmiRealmParams::zeroed();
    p.flags0 = if shape.lpa2 { FLAGS0_LPA2 } else { 0 };
    if let Some(vl) = sve_vl {
        if vl < 16 || vl % 16 != 0 || vl > rmm_sve_max_vl(f) {
            return Err(ParamsError::SveVl(vl));
        }
        p.flags0 |= FLAGS0_SVE;
        p.sve_vl = vl / 16 - 1;
    }
    p.s2sz = u32::from(shape.s2sz);
    p.num_bps = u32::from(bps);
    p.num_wps = u32::from(wps);
    p.algorithm = algorithm;
    p.rtt_base = rtt_base.pa();
    p.rtt_level_start = i64::from(shape.geometry.start.get());
    p.rtt_num_start = shape.geometry.num_root;
    Ok(p)
}

/// Where a realm is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RealmState {
    /// No RD yet (it is created lazily, on first populate or first run).
    None,
    /// RD created; memory can be populated.
    New,
    /// Activated: RECs can run.
    Active,
    /// Being torn down.
    Dying,
    /// Destroyed, or killed by an unexpected RMM answer; never runs again.
    Dead,
}

/// Why a realm operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RealmError {
    /// Out of memory; the realm is unchanged (`ENOMEM`).
    NoMemory,
    /// The configuration cannot be a realm (`EINVAL`).
    Params(ParamsError),
    /// The operation does not apply in the realm's state (`EINVAL`).
    WrongState(RealmState),
    /// The RMM failed unexpectedly; the realm is now DEAD.
    Rmi(RmiError),
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IpaSize { asked, max } => {
                write!(f, "IPA size {asked} bits outside [{MIN_IPA_BITS}, {max}]")
            }
            Self::Lpa2Unsupported => f.write_str("the host uses LPA2 and the RMM does not"),
            Self::NoHash => f.write_str("the RMM offers no measurement hash"),
            Self::NoDebugResources => f.write_str("the RMM offers no breakpoints or watchpoints"),
            Self::SveVl(vl) => write!(
                f,
                "SVE vector length {vl} bytes, which the RMM does not offer"
            ),
        }
    }
}

impl fmt::Display for RealmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoMemory => f.write_str("out of memory"),
            Self::Params(p) => write!(f, "bad parameters: {p}"),
            Self::WrongState(s) => write!(f, "not possible in state {s:?}"),
            Self::Rmi(e) => write!(f, "RMM error {e}"),
        }
    }
}

/// Why a page could not be populated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PopulatePageError {
    /// The IPA or the page is mapped already (`EEXIST`).
    Mapped,
    /// The realm's error.
    Realm(RealmError),
}

impl From<RealmError> for PopulatePageError {
    fn from(e: RealmError) -> Self {
        Self::Realm(e)
    }
}

/// What [`Realm::fold_rtt`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FoldOutcome {
    /// The table went; its parent entry maps what it did.
    Folded,
    /// Its entries differ (or some are live): it stays.
    NotUniform,
    /// No table at that level there: the walk ended at `reached`.
    Absent {
        /// The deepest level the walk reached.
        reached: RttLevel,
    },
}

/// How a RIPAS walk ([`Realm::set_ripas`]) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RipasWalk {
    /// As far as the RMM would go: the whole range, or up to a page that
    /// cannot take the RIPAS.
    Done,
    /// Stopped early on request; it goes on from where it stopped.
    Paused,
}

/// A realm: its shape, state, and the delegated memory it owns.
pub(crate) struct Realm<'r, C: SmcConduit, P: PageSource + GuestPages, S: GranuleSet<'r, C, P>> {
    rmi: &'r Rmi<C, P>,
    shape: RealmShape,
    state: RealmState,
    terminated: bool,
    /// Whether the non-root RTTs are gone (after termination).
    stage2_gone: bool,
    rd: Option<DelegatedGranule<'r, C, P>>,
    root: Option<DelegatedBlock<'r, C, P>>,
    /// Non-root RTTs.
    rtts: S,
    /// Guest pages populate delegated ahead of mapping them.
    stage: PopulateStage<'r, C, P>,
}

impl<'r, C: SmcConduit, P: PageSource + GuestPages, S: GranuleSet<'r, C, P>> Realm<'r, C, P, S> {
    /// A realm of `shape` with no RD yet; `rtts` will hold its RTTs.
    pub(crate) fn new(rmi: &'r Rmi<C, P>, shape: RealmShape, rtts: S) -> Self {
        Self {
            rmi,
            shape,
            state: RealmState::None,
            terminated: false,
            stage2_gone: false,
            rd: None,
            root: None,
            rtts,
            stage: PopulateStage::new(rmi),
        }
    }

    /// The realm's state.
    pub(crate) fn state(&self) -> RealmState {
        self.state
    }

    /// The RD, once created.
    pub(crate) fn rd(&self) -> Option<Granule> {
        self.rd.as_ref().map(DelegatedGranule::granule)
    }

    /// RTT pages the realm holds: the root RTTs and the others.
    pub(crate) fn rtt_pages(&self) -> u64 {
        let root = self.root_range().map_or(0, |r| r.count());
        // CAST: Lossless, `usize` is 64 bits on arm64 and on test hosts.
        root.saturating_add(self.rtts.len() as u64)
    }

    /// The granules of the root RTTs, once created.
    pub(crate) fn root_range(&self) -> Option<GranuleRange> {
        self.root.as_ref().map(DelegatedBlock::range)
    }

    /// Marks the realm DEAD after an unexpected RMM answer.
    fn kill(&mut self, e: RmiError) -> RealmError {
        self.state = RealmState::Dead;
        RealmError::Rmi(e)
    }

    /// Maps a memory failure: out of memory leaves the realm as it was.
    fn mem_error(&mut self, e: MemError) -> RealmError {
        match e {
            MemError::NoMemory => RealmError::NoMemory,
            MemError::Rmi(e) => self.kill(e),
        }
    }

    /// Creates the RD and root RTTs (`RMI_REALM_CREATE`), if not done yet.
    pub(crate) fn create(
        &mut self,
        features: &RmiFeatureRegs,
        options: RealmOptions,
    ) -> Result<(), RealmError> {
        match self.state {
            RealmState::None => {}
            RealmState::New | RealmState::Active => return Ok(()),
            other => return Err(RealmError::WrongState(other)),
        }
        let rmi = self.rmi;
        let rd = DelegatedGranule::alloc(rmi).map_err(|e| self.mem_error(e))?;
        let order = self.shape.geometry.num_root.trailing_zeros();
        let root = DelegatedBlock::alloc(rmi, order).map_err(|e| self.mem_error(e))?;
        let params = realm_params(features, &self.shape, root.range().base(), options)
            .map_err(RealmError::Params)?;
        let page = rmi.pages().alloc().ok_or(RealmError::NoMemory)?;
        let written = params
            .words()
            .iter()
            .all(|(i, w)| P::write_words(&page, *i, &[*w]));
        if !written {
            return Err(RealmError::NoMemory);
        }
        // On failure `rd` and `root` drop: still delegated, so undelegated.
        realm_create(rmi.smc(), rd.granule(), P::granule(&page)).map_err(|e| self.kill(e))?;
        self.rd = Some(rd);
        self.root = Some(root);
        self.state = RealmState::New;
        Ok(())
    }

    /// `RMI_REALM_ACTIVATE`: only from NEW; a DEAD realm never runs again.
    pub(crate) fn activate(&mut self) -> Result<(), RealmError> {
        let rd = match (self.state, self.rd()) {
            (RealmState::New, Some(rd)) => rd,
            (RealmState::Active, _) => return Ok(()),
            (other, _) => return Err(RealmError::WrongState(other)),
        };
        // Populate is over: what it staged and did not map goes back.
        self.stage.release();
        realm_activate(self.rmi.smc(), rd).map_err(|e| self.kill(e))?;
        self.state = RealmState::Active;
        Ok(())
    }

    /// Makes sure the RTT at `level` for `ipa` exists, creating missing
    /// levels above it first.
    pub(crate) fn ensure_rtt(&mut self, ipa: Ipa, level: RttLevel) -> Result<(), RealmError> {
        let rd = match (self.state, self.rd()) {
            (RealmState::New | RealmState::Active, Some(rd)) => rd,
            (other, _) => return Err(RealmError::WrongState(other)),
        };
        let parent = level.above().ok_or(RealmError::WrongState(self.state))?;
        let base = ipa.align_down(parent.entry_size());
        loop {
            if !self.rtts.reserve(1) {
                return Err(RealmError::NoMemory);
            }
            let rtt = DelegatedGranule::alloc(self.rmi).map_err(|e| self.mem_error(e))?;
            let err = match rtt_create(self.rmi.smc(), rd, rtt.granule(), base, level) {
                Ok(()) => {
                    self.rtts.push(rtt);
                    return Ok(());
                }
                Err(e) => e,
            };
            // `rtt` was refused, so it is still delegated and undelegates.
            drop(rtt);
            let reached =
                RttLevel::new(err.index() as i8).filter(|_| err.status() == RmiStatus::ErrorRtt);
            match reached {
                // Someone created it meanwhile.
                Some(r) if r == parent => return Ok(()),
                // A level above is missing: create it, then retry.
                Some(r) if r < parent => match r.below() {
                    Some(missing) => self.ensure_rtt(ipa, missing)?,
                    None => return Err(self.kill(err)),
                },
                _ => return Err(self.kill(err)),
            }
        }
    }

    /// Folds the RTT at `level` for `ipa` into its parent entry (after its
    /// mappings were made uniform, e.g. unmapped), freeing its granule.
    ///
    /// Returns [`FoldOutcome::NotUniform`] if the RMM says it is not homogeneous,
    /// [`FoldOutcome::Absent`] if there is no such table (nothing changed).
    pub(crate) fn fold_rtt(
        &mut self,
        ipa: Ipa,
        level: RttLevel,
    ) -> Result<FoldOutcome, RealmError> {
        let rd = match (self.state, self.rd()) {
            (RealmState::New | RealmState::Active, Some(rd)) => rd,
            (other, _) => return Err(RealmError::WrongState(other)),
        };
        let parent = level.above().ok_or(RealmError::WrongState(self.state))?;
        let base = ipa.align_down(parent.entry_size());
        match rtt_fold(self.rmi.smc(), rd, base, level) {
            Ok(rtt) => {
                let owned = self
                    .rtts
                    .take(rtt)
                    .ok_or_else(|| self.kill(RmiError::bad_output()))?;
                // Back to DELEGATED: dropping it undelegates and frees.
                drop(owned);
                Ok(FoldOutcome::Folded)
            }
            // CAST: The index of ERROR_RTT is a level.
            Err(e) if e.status() == RmiStatus::ErrorRtt => match RttLevel::new(e.index() as i8) {
                Some(l) if l == level => Ok(FoldOutcome::NotUniform),
                // The walk ended above: no table at `level` here.
                Some(reached) if reached < level => Ok(FoldOutcome::Absent { reached }),
                _ => Err(self.kill(e)),
            },
            Err(e) => Err(self.kill(e)),
        }
    }

    /// Folds the level 3 and level 2 RTTs over `[base, top)` whose entries
    /// are uniform (after a RIPAS change made them so), leaves first, so
    /// that tables split for a misaligned change go once the range is
    /// uniform again and RTT memory stays proportional to what the guest
    /// maps. One RMM call per table there may be (a region without tables
    /// above is skipped whole), `resched` between them. Returns how many
    /// tables went.
    pub(crate) fn fold_uniform(
        &mut self,
        base: Ipa,
        top: Ipa,
        resched: &mut dyn FnMut(),
    ) -> Result<u64, RealmError> {
        let mut folded = 0;
        for level in [3, 2].into_iter().filter_map(RttLevel::new) {
            let Some(parent) = level.above() else {
                continue;
            };
            // The RMM folds only tables below the root.
            if level <= self.shape.geometry.start {
                continue;
            }
            let mut at = base.align_down(parent.entry_size());
            while at.get() < top.get() {
                let step = match self.fold_rtt(at, level)? {
                    FoldOutcome::Folded => {
                        folded += 1;
                        parent.entry_size()
                    }
                    FoldOutcome::NotUniform => parent.entry_size(),
                    // Nothing below the entry the walk ended at.
                    FoldOutcome::Absent { reached } => {
                        reached.entry_size().max(parent.entry_size())
                    }
                };
                let next = at
                    .align_down(step)
                    .get()
                    .checked_add(step)
                    .and_then(Ipa::new);
                match next {
                    Some(next) => at = next,
                    None => break,
                }
                resched();
            }
        }
        Ok(folded)
    }

    /// The protected half of the IPA space, `[0, 2^(s2sz - 1))`.
    pub(crate) fn protected_range(&self) -> Option<(Ipa, Ipa)> {
        let top = 1u64.checked_shl(u32::from(self.shape.s2sz).checked_sub(1)?)?;
        Some((Ipa::new(0)?, Ipa::new(top)?))
    }

    /// The RD of a realm in `want`ed states, else the state as the error.
    fn rd_in(&self, want: &[RealmState]) -> Result<Granule, RealmError> {
        match self.rd() {
            Some(rd) if want.contains(&self.state) => Ok(rd),
            _ => Err(RealmError::WrongState(self.state)),
        }
    }

    /// Sets RIPAS RAM over `[base, top)` (protected half, 4 KiB aligned)
    /// of a NEW realm (`RMI_RTT_INIT_RIPAS`), creating RTTs where a block
    /// does not fit the range. Entries that cannot change (DESTROYED, after
    /// a populated page was unmapped) are left as they are.
    ///
    /// Runs to the end, calling `resched` between RMM calls. Returns the
    /// number of pages left unchanged.
    pub(crate) fn init_ripas(
        &mut self,
        base: Ipa,
        top: Ipa,
        resched: &mut dyn FnMut(),
    ) -> Result<u64, RealmError> {
        let rd = self.rd_in(&[RealmState::New])?;
        let (_, protected_top) = self
            .protected_range()
            .ok_or(RealmError::WrongState(self.state))?;
        if top.get() > protected_top.get() || base.get() > top.get() {
            return Err(RealmError::WrongState(self.state));
        }
        let rmi = self.rmi;
        let mut at = base;
        let mut unchanged = 0;
        self.ripas_walk(
            &mut at,
            top,
            |at| rtt_init_ripas(rmi.smc(), rd, at, top),
            // This page cannot become RAM: skip it.
            |at| {
                unchanged += 1;
                Ipa::new(at.get() + GRANULE_SIZE)
            },
            &mut || {
                resched();
                false
            },
        )?;
        Ok(unchanged)
    }

    /// Carries out the RIPAS change REC `rec` of this ACTIVE realm asked
    /// for, from `*at` to `top` (`RMI_RTT_SET_RIPAS`), splitting blocks as
    /// it goes; `*at` follows the RMM's progress. Stops early at a page
    /// that cannot take the RIPAS (the realm sees how far it got and
    /// decides), or when `pause`, asked after each step, says so
    /// ([`RipasWalk::Paused`]: the REC keeps the progress, and a later call
    /// goes on from `*at`).
    ///
    /// # Errors
    ///
    /// [`RealmError::NoMemory`] (the request can be carried on from `*at`
    /// later); after an unexpected RMM answer the realm is DEAD.
    pub(crate) fn set_ripas(
        &mut self,
        rec: Granule,
        at: &mut Ipa,
        top: Ipa,
        pause: &mut dyn FnMut() -> bool,
    ) -> Result<RipasWalk, RealmError> {
        let rd = self.rd_in(&[RealmState::Active])?;
        let rmi = self.rmi;
        self.ripas_walk(
            at,
            top,
            |at| rtt_set_ripas(rmi.smc(), rd, rec, at, top),
            // This page cannot take the RIPAS: the realm learns where its
            // request stopped.
            |_| None,
            pause,
        )
    }

    /// The loop `RMI_RTT_INIT_RIPAS` and `RMI_RTT_SET_RIPAS` share: `call`
    /// goes on from `*at` towards `top`; `RMI_ERROR_RTT` above level 3
    /// means a block crosses `*at` or `top`, which is split before trying
    /// again; at level 3 the page at `*at` cannot change, and `stuck` says
    /// where to go on from, or `None` to stop there. After each RMM call
    /// that moved on, `pause` may stop the walk where it is.
    fn ripas_walk(
        &mut self,
        at: &mut Ipa,
        top: Ipa,
        mut call: impl FnMut(Ipa) -> Result<Ipa, RmiError>,
        mut stuck: impl FnMut(Ipa) -> Option<Ipa>,
        pause: &mut dyn FnMut() -> bool,
    ) -> Result<RipasWalk, RealmError> {
        let mut last_split = None;
        while at.get() < top.get() {
            let err = match call(*at) {
                Ok(reached) => {
                    *at = reached;
                    if at.get() < top.get() && pause() {
                        return Ok(RipasWalk::Paused);
                    }
                    continue;
                }
                Err(e) => e,
            };
            // CAST: The index of ERROR_RTT is a level.
            let level = RttLevel::new(err.index() as i8)
                .filter(|_| err.status() == RmiStatus::ErrorRtt)
                .ok_or_else(|| self.kill(err))?;
            match level.below() {
                // Split again at the same place: the RMM is not moving.
                Some(_) if last_split == Some((*at, level)) => {
                    return Err(self.kill(RmiError::bad_output()))
                }
                Some(below) => {
                    self.ensure_rtt(*at, below)?;
                    last_split = Some((*at, level));
                }
                None => match stuck(*at) {
                    Some(next) => *at = next,
                    None => break,
                },
            }
        }
        Ok(RipasWalk::Done)
    }

    /// Maps guest page `page` at `ipa` (protected half) of a NEW realm with
    /// a copy of the NS granule `src`, measured if `measure`
    /// (`RMI_RTT_DATA_MAP_INIT`), creating the RTTs it needs. The page is
    /// delegated for it and stays so, with its reference, while mapped.
    ///
    /// # Errors
    ///
    /// [`PopulatePageError::Mapped`] if `ipa` or the page is mapped already
    /// (the realm is unchanged), or the realm's error.
    pub(crate) fn populate_page(
        &mut self,
        page: Granule,
        ipa: Ipa,
        src: Granule,
        measure: bool,
    ) -> Result<MappedGuestPage, PopulatePageError> {
        self.rd_in(&[RealmState::New])?;
        let rmi = self.rmi;
        let data = match DelegatedGuestPage::delegate(rmi, GuestPageRef::get(rmi.pages(), page)) {
            Ok(d) => d,
            // Not NS: the page is mapped (or delegated) already.
            Err((Some(_), e)) if e.status() == RmiStatus::ErrorInput => {
                return Err(PopulatePageError::Mapped)
            }
            Err((_, e)) => return Err(self.kill(e).into()),
        };
        self.populate_delegated(data, ipa, src, measure)
    }

    /// [`Realm::populate_page`] of guest_memfd's page `page` for `ipa`
    /// through the realm's [`PopulateStage`]: delegated ahead with the
    /// pages of up to `more` frames after it (from `host`), or earlier with
    /// those of a frame before it.
    ///
    /// # Errors
    ///
    /// As [`Realm::populate_page`].
    pub(crate) fn populate_staged(
        &mut self,
        page: Granule,
        ipa: Ipa,
        src: Granule,
        measure: bool,
        more: u64,
        host: &mut dyn StageHost,
    ) -> Result<MappedGuestPage, PopulatePageError> {
        self.rd_in(&[RealmState::New])?;
        match self.stage.take(ipa.get() / GRANULE_SIZE, page, more, host) {
            Some(data) => self.populate_delegated(data, ipa, src, measure),
            None => self.populate_page(page, ipa, src, measure),
        }
    }

    /// How many guest pages populate holds staged (referenced, most of
    /// them delegated) for the frames it is to fill next.
    pub(crate) fn staged_pages(&self) -> usize {
        self.stage.len()
    }

    /// [`Realm::populate_page`] of a guest page delegated already (ahead
    /// of time, with others: [`PopulateStage`]).
    pub(crate) fn populate_delegated(
        &mut self,
        data: DelegatedGuestPage<'r, 'r, C, P, P>,
        ipa: Ipa,
        src: Granule,
        measure: bool,
    ) -> Result<MappedGuestPage, PopulatePageError> {
        let rd = self.rd_in(&[RealmState::New])?;
        let rmi = self.rmi;
        let Some(leaf) = RttLevel::new(3) else {
            return Err(RealmError::WrongState(self.state).into());
        };
        loop {
            let err = match rtt_data_map_init(rmi.smc(), rd, data.granule(), ipa, src, measure) {
                Ok(()) => return Ok(data.into_mapping()),
                Err(e) => e,
            };
            // On every error path `data` drops: undelegated, then put.
            // CAST: The index of ERROR_RTT is a level.
            match RttLevel::new(err.index() as i8).filter(|_| err.status() == RmiStatus::ErrorRtt) {
                Some(l) if l < leaf => self.ensure_rtt(ipa, leaf)?,
                Some(_) => return Err(PopulatePageError::Mapped),
                None => return Err(self.kill(err).into()),
            }
        }
    }

    /// The first half of teardown, for when KVM no longer needs the realm's
    /// stage 2: terminate, then destroy the non-root RTTs bottom-up. The RD
    /// and the root RTTs stay until [`Realm::destroy`]. Idempotent: once done
    /// it issues no more calls; before the RD exists it does nothing.
    ///
    /// Guest pages still mapped are unmapped and given back first; `resched`
    /// is called between RMM calls.
    pub(crate) fn teardown_stage2(&mut self, resched: &mut dyn FnMut()) -> Result<(), RealmError> {
        let Some(rd) = self.rd() else {
            return Ok(());
        };
        if self.stage2_gone {
            return Ok(());
        }
        // A dead realm is still torn down, to get back what can be, but
        // stays dead.
        if self.state != RealmState::Dead {
            self.state = RealmState::Dying;
        }
        if !self.terminated {
            realm_terminate(self.rmi.smc(), rd).map_err(|e| self.kill(e))?;
            self.terminated = true;
        }
        // The guest pages first: an RTT with live entries cannot go.
        let (base, top) = self
            .protected_range()
            .ok_or(RealmError::WrongState(self.state))?;
        unmap_protected(self.rmi, rd, base, top, resched).map_err(|(_, e)| self.kill(e))?;
        let all = Ipa::new(1u64 << self.shape.s2sz).ok_or(RealmError::WrongState(self.state))?;
        unmap_shared(self.rmi.smc(), rd, top, all, resched).map_err(|e| self.kill(e))?;
        if let Some(level) = self.shape.geometry.start.below() {
            let top = 1u64 << self.shape.s2sz;
            self.destroy_rtts(rd, level, 0, top)
                .map_err(|e| self.kill(e))?;
        }
        self.stage2_gone = true;
        Ok(())
    }

    /// Tears the realm down: [`Realm::teardown_stage2`] if not done yet,
    /// then destroy the RD and undelegate the root RTTs and the RD. Ends
    /// DEAD. On an RMM failure what the RMM may still hold is leaked (and
    /// counted) when the realm drops.
    pub(crate) fn destroy(&mut self, resched: &mut dyn FnMut()) -> Result<(), RealmError> {
        let Some(rd) = self.rd() else {
            self.state = RealmState::Dead;
            return Ok(());
        };
        self.teardown_stage2(resched)?;
        realm_destroy(self.rmi.smc(), rd).map_err(|e| self.kill(e))?;
        // Back to DELEGATED: these drops undelegate and free.
        self.root = None;
        self.rd = None;
        self.state = RealmState::Dead;
        Ok(())
    }

    /// `RMI_RTT_DESTROY` over `[base, top)` at `level`, going down into
    /// live tables first, skipping what the RMM reports non-live.
    fn destroy_rtts(
        &mut self,
        rd: Granule,
        level: RttLevel,
        base: u64,
        top: u64,
    ) -> Result<(), RmiError> {
        // One RTT at `level` maps one entry of the level above.
        let span = level.above().map_or(top, RttLevel::entry_size);
        let mut at = base;
        let mut retried_at = None;
        while at < top {
            let ipa = Ipa::new(at).ok_or(RmiError::bad_output())?;
            let step_end = at.saturating_add(span).min(top);
            let d = rtt_destroy(self.rmi.smc(), rd, ipa, level);
            let next = d.next;
            match d.result {
                Ok(rtt) => {
                    // Back to DELEGATED: dropping it undelegates and frees.
                    let owned = self.rtts.take(rtt).ok_or(RmiError::bad_output())?;
                    drop(owned);
                    at = next.unwrap_or(step_end).max(step_end);
                }
                Err(e) if e.status() == RmiStatus::ErrorRtt => {
                    // CAST: The index of ERROR_RTT is a level, -1..=3.
                    if e.index() as i8 == level.get() {
                        // Live: empty the level below first, then retry
                        // once (still live then means data is mapped).
                        let below = level.below().ok_or(e)?;
                        if retried_at == Some(at) {
                            return Err(e);
                        }
                        self.destroy_rtts(rd, below, at, step_end)?;
                        retried_at = Some(at);
                        continue;
                    }
                    // No table here: skip what the RMM says is non-live.
                    at = next.ok_or(RmiError::bad_output())?.max(step_end);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<'r, C: SmcConduit, P: PageSource + GuestPages, S: GranuleSet<'r, C, P>> Drop
    for Realm<'r, C, P, S>
{
    fn drop(&mut self) {
        if self.rd.is_some() {
            // Errors leave the RMM's granules to be leaked by their owners.
            let _ = self.destroy(&mut || {});
        }
    }
}
