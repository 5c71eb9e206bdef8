// SPDX-License-Identifier: GPL-2.0

//! RTT geometry against a table derived by hand from the architecture.

use crate::addr::RttLevel;
use crate::rtt::{
    rtt_geometry,
    RttGeometry, //
};

/// Start level and concatenated root tables for each IPA size, 4 KiB
/// granules. A walk from level L resolves 12 + 9 * (4 - L) bits; up to 16
/// tables (4 bits) may be concatenated at the root; level 0 concatenation
/// and sizes above 48 bits need LPA2 (TF-RMM `s2_inconsistent_sl`).
const TABLE: [(u8, i8, u32); 21] = [
    (32, 2, 4),
    (33, 2, 8),
    (34, 2, 16),
    (35, 1, 1),
    (36, 1, 1),
    (37, 1, 1),
    (38, 1, 1),
    (39, 1, 1),
    (40, 1, 2),
    (41, 1, 4),
    (42, 1, 8),
    (43, 1, 16),
    (44, 0, 1),
    (45, 0, 1),
    (46, 0, 1),
    (47, 0, 1),
    (48, 0, 1),
    (49, 0, 2),
    (50, 0, 4),
    (51, 0, 8),
    (52, 0, 16),
];

#[test]
fn geometry_matches_the_architecture_for_every_ipa_size() {
    for (bits, level, num_root) in TABLE {
        let want = Some(RttGeometry {
            start: RttLevel::new(level).expect("level"),
            num_root,
        });
        assert_eq!(rtt_geometry(bits, true), want, "{bits} bits, LPA2");
        let without = if bits <= 48 { want } else { None };
        assert_eq!(rtt_geometry(bits, false), without, "{bits} bits");
    }
    for bits in [0, 31, 53, 64, u8::MAX] {
        assert_eq!(rtt_geometry(bits, true), None, "{bits} bits");
    }
}

#[test]
fn levels_are_checked_and_map_the_right_sizes() {
    assert_eq!(RttLevel::new(-2), None);
    assert_eq!(RttLevel::new(4), None);
    assert_eq!(RttLevel::new(3).expect("leaf").entry_shift(), 12);
    assert_eq!(RttLevel::new(2).map(RttLevel::entry_shift), Some(21));
    assert_eq!(RttLevel::new(1).map(RttLevel::entry_shift), Some(30));
    assert_eq!(RttLevel::new(0).map(RttLevel::entry_shift), Some(39));
    assert_eq!(RttLevel::new(-1).map(RttLevel::entry_shift), Some(48));
}
