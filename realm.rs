// SPDX-License-Identifier: GPL-2.0

//! Realms: the parameters a realm is created with.
//!
//! Part of the sans-IO core. The realm state machine and the RD/RTT
//! lifecycle build on this (issue 4, in progress).

use crate::addr::Granule;
use crate::rmi_cmds::RmiFeatureRegs;
use crate::rmi_smc::RmiRealmParams;
use crate::rtt::{
    rtt_geometry,
    RttGeometry,
    MIN_IPA_BITS, //
};

/// The IPA size of a VM type whose size field is 0 (KVM's default).
pub(crate) const DEFAULT_IPA_BITS: u8 = 40;

/// `RmiRealmFlags0.LPA2` (bit 0).
const FLAGS0_LPA2: u64 = 1 << 0;

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

/// The `RmiRealmParams` for a realm of `shape` whose root RTT granules
/// start at `rtt_base` (delegated, aligned to their total size).
///
/// Measurements use SHA-256 if offered, else SHA-512; the realm gets every
/// breakpoint and watchpoint the RMM offers; SVE and PMU stay off.
pub(crate) fn realm_params(
    f: &RmiFeatureRegs,
    shape: &RealmShape,
    rtt_base: Granule,
) -> Result<RmiRealmParams, ParamsError> {
    let algorithm = if f.f1.sha256() {
        HASH_SHA256
    } else if f.f1.sha512() {
        HASH_SHA512
    } else {
        return Err(ParamsError::NoHash);
    };
    // The RMM takes at most the feature field's value, and at least 1.
    let (bps, wps) = (f.f0.num_bps(), f.f0.num_wps());
    if bps == 0 || wps == 0 {
        return Err(ParamsError::NoDebugResources);
    }
    let mut p = RmiRealmParams::zeroed();
    p.flags0 = if shape.lpa2 { FLAGS0_LPA2 } else { 0 };
    p.s2sz = u32::from(shape.s2sz);
    p.num_bps = u32::from(bps);
    p.num_wps = u32::from(wps);
    p.algorithm = algorithm;
    p.rtt_base = rtt_base.pa();
    p.rtt_level_start = i64::from(shape.geometry.start.get());
    p.rtt_num_start = shape.geometry.num_root;
    Ok(p)
}
