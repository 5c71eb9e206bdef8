// SPDX-License-Identifier: GPL-2.0

//! Realm translation tables (RTTs): levels and the geometry of the root.
//!
//! Part of the sans-IO core. With 4 KiB granules each level resolves 9 IPA
//! bits above the 12-bit page offset: level 3 maps pages, level 0 bits
//! [47:39], and level -1 (FEAT_LPA2 only) bits [51:48].

/// An RTT level, -1 to 3.
///
/// # Invariants
///
/// `-1 <= self.0 <= 3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RttLevel(i8);

impl RttLevel {
    /// The leaf level, whose entries map 4 KiB pages.
    pub(crate) const LEAF: Self = Self(3);

    /// The level `level`, if it exists with 4 KiB granules.
    pub(crate) const fn new(level: i8) -> Option<Self> {
        if level < -1 || level > 3 {
            return None;
        }
        // INVARIANT: Checked just above.
        Some(Self(level))
    }

    /// The level number, for an RMI argument.
    pub(crate) const fn get(self) -> i8 {
        self.0
    }

    /// log2 of the bytes one entry at this level maps.
    pub(crate) const fn entry_shift(self) -> u32 {
        // CAST: `3 - self.0` is 0..=4 (invariant).
        12 + 9 * (3 - self.0) as u32
    }
}

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
