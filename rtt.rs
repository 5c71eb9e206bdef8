// SPDX-License-Identifier: GPL-2.0

//! Realm translation tables (RTTs): the geometry of the root.
//!
//! Part of the sans-IO core.

use crate::addr::RttLevel;

/// Where the RTT walk of a realm starts: the level and how many
/// concatenated tables (granules) form the root (`rtt_level_start`,
/// `rtt_num_start` of `RmiRealmParams`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RttGeometry {
    /// The starting level.
    pub(crate) start: RttLevel,
    /// Concatenated root tables: 1 to 16, a power of two.
    pub(crate) num_root: u32,
}

/// The smallest IPA size a realm can have.
pub(crate) const MIN_IPA_BITS: u8 = 32;

/// The root of a realm's RTT for an IPA size of `s2sz` bits, or `None` if
/// that size cannot be translated (above 48 bits needs LPA2).
///
/// Like KVM's stage 2, it uses as few levels as it can, concatenating up to
/// 16 root tables (4 more bits); the RMM accepts concatenation at level 0
/// only with LPA2, which is also the only case it is needed.
pub(crate) const fn rtt_geometry(s2sz: u8, lpa2: bool) -> Option<RttGeometry> {
    let max = if lpa2 { 52 } else { 48 };
    if s2sz < MIN_IPA_BITS || s2sz > max {
        return None;
    }
    // KVM's ARM64_HW_PGTABLE_LEVELS(ipa - 4) for 4 KiB pages.
    let levels = (s2sz as u32 - 8) / 9;
    let resolved = 12 + 9 * levels;
    let num_root = if s2sz as u32 > resolved {
        1 << (s2sz as u32 - resolved)
    } else {
        1
    };
    // CAST: `levels` is 2..=4 for 32..=52 bits.
    match RttLevel::new(4 - levels as i8) {
        Some(start) => Some(RttGeometry { start, num_root }),
        None => None,
    }
}
