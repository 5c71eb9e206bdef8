// SPDX-License-Identifier: GPL-2.0

//! Tests of the RMI encoding layer and `RMI_VERSION` against the model.

use crate::model::{
    return_code,
    NoRmm,
    Rmm, //
};
use crate::rmi_cmds::{
    rmi_version,
    RmiVersionRange,
    SmcConduit,
    VersionError, //
};
use crate::rmi_smc::{
    rmi_fid_name,
    rmi_result,
    RmiFid,
    RmiStatus,
    RmiVersion,
    SmcRegs,
    RMI_FID_TABLE,
    RMI_VERSION,
    SMCCC_RET_NOT_SUPPORTED, //
};

const V1_0: RmiVersion = RmiVersion { major: 1, minor: 0 };
const V2_0: RmiVersion = RmiVersion { major: 2, minor: 0 };
const V2_1: RmiVersion = RmiVersion { major: 2, minor: 1 };

#[test]
fn status_byte_round_trips() {
    for raw in 0..=u8::MAX {
        let status = RmiStatus::from_raw(raw);
        assert_eq!(status.raw(), raw);
        // The spec defines statuses 0..=16; later ones must stay representable.
        assert_eq!(
            matches!(status, RmiStatus::Unknown(_)),
            raw > 16,
            "raw {raw}"
        );
    }
}

#[test]
fn status_names_are_distinct() {
    let names: Vec<_> = (0..=16u8).map(|r| RmiStatus::from_raw(r).name()).collect();
    for (i, a) in names.iter().enumerate() {
        assert!(!names[i + 1..].contains(a), "duplicate name {a}");
    }
    assert_eq!(RmiStatus::from_raw(4).to_string(), "ERROR_RTT");
    assert_eq!(RmiStatus::from_raw(200).to_string(), "UNKNOWN(200)");
}

#[test]
fn result_decodes_status_and_index() {
    for status in 0..=u8::MAX {
        for index in [0u8, 1, 2, 3, 0x7f, 0xff] {
            // Reserved bits above [15:8] are ignored.
            let x0 = return_code(RmiStatus::from_raw(status), index) | 0xdead_0000_0000_0000;
            match rmi_result(x0) {
                Ok(()) => assert_eq!(status, 0),
                Err(e) => {
                    assert_ne!(status, 0);
                    assert_eq!(e.status().raw(), status);
                    assert_eq!(e.index(), index);
                }
            }
        }
    }
    let e = rmi_result(return_code(RmiStatus::ErrorRtt, 2)).unwrap_err();
    assert_eq!(e.status(), RmiStatus::ErrorRtt);
    assert_eq!(e.to_string(), "ERROR_RTT (index 2)");
}

#[test]
fn fid_table_is_consistent() {
    assert_eq!(RMI_VERSION, RmiFid(0xc400_0150));
    for (i, (fid, name)) in RMI_FID_TABLE.iter().enumerate() {
        // SMC64 fast calls in the standard-service RMI range.
        assert!((0xc400_0150..=0xc400_020a).contains(&fid.0), "{name}");
        assert!(name.starts_with("RMI_"), "{name}");
        assert_eq!(rmi_fid_name(*fid), Some(*name));
        for (other_fid, other_name) in &RMI_FID_TABLE[i + 1..] {
            assert!(
                fid < other_fid,
                "{name} and {other_name} out of order or equal"
            );
        }
    }
    assert_eq!(rmi_fid_name(RmiFid(0xc400_0190)), None);
}

#[test]
fn version_encoding_round_trips() {
    for major in [0u16, 1, 2, 0x7fff] {
        for minor in [0u16, 1, 0xffff] {
            let v = RmiVersion { major, minor };
            assert_eq!(RmiVersion::from_raw(v.raw()), Some(v));
        }
    }
    assert_eq!(V2_0.raw(), 0x20000);
    // Bits [63:31] are reserved.
    assert_eq!(RmiVersion::from_raw(1 << 31), None);
    assert_eq!(RmiVersion::from_raw(u64::MAX), None);
}

#[test]
fn version_matches_tf_rmm() {
    let rmm = Rmm::new();
    assert_eq!(
        rmi_version(&rmm, V2_0),
        Ok(RmiVersionRange {
            lower: V2_0,
            higher: V2_0
        })
    );
    // An RMM that implements 2.0 only refuses 1.0 and reports 2.0.
    assert_eq!(
        rmi_version(&rmm, V1_0),
        Err(VersionError::Incompatible(RmiVersionRange {
            lower: V2_0,
            higher: V2_0
        }))
    );
    assert_eq!(rmm.calls(RMI_VERSION), 2);

    let newer = Rmm::with_revisions(&[V2_0, V2_1]);
    assert_eq!(
        rmi_version(&newer, V2_0),
        Ok(RmiVersionRange {
            lower: V2_0,
            higher: V2_1
        })
    );
    let older = Rmm::with_revisions(&[V1_0]);
    assert_eq!(
        rmi_version(&older, V2_0),
        Err(VersionError::Incompatible(RmiVersionRange {
            lower: V1_0,
            higher: V1_0
        }))
    );
}

#[test]
fn version_without_rmm_is_not_supported() {
    // x1 comes back as passed (a valid-looking 2.0): the status must be
    // checked before the version registers.
    let out = NoRmm.call(&SmcRegs::new(RMI_VERSION, [V2_0.raw(), 0, 0, 0, 0, 0]));
    assert_eq!(out.x(0), SMCCC_RET_NOT_SUPPORTED);
    assert_eq!(out.x(1), V2_0.raw());
    assert_eq!(rmi_version(&NoRmm, V2_0), Err(VersionError::NotSupported));
}

#[test]
fn version_rejects_malformed_answers() {
    let rmm = Rmm::new();
    rmm.fail_call(RMI_VERSION, 0, RmiStatus::Busy, 0);
    let x0 = return_code(RmiStatus::Busy, 0);
    assert_eq!(rmi_version(&rmm, V2_0), Err(VersionError::Malformed { x0 }));
    // The injection is consumed: the next call succeeds.
    assert!(rmi_version(&rmm, V2_0).is_ok());

    /// An RMM that sets reserved bits in the version registers.
    struct Garbled;
    impl SmcConduit for Garbled {
        fn call(&self, _args: &SmcRegs) -> SmcRegs {
            let mut out = SmcRegs::default();
            out.0[1] = 1 << 40;
            out.0[2] = V2_0.raw();
            out
        }
    }
    assert_eq!(
        rmi_version(&Garbled, V2_0),
        Err(VersionError::Malformed { x0: 0 })
    );
}

#[test]
fn injected_failure_hits_the_nth_call() {
    let rmm = Rmm::new();
    rmm.fail_call(RMI_VERSION, 2, RmiStatus::ErrorGlobal, 0);
    assert!(rmi_version(&rmm, V2_0).is_ok());
    assert!(rmi_version(&rmm, V2_0).is_ok());
    assert!(rmi_version(&rmm, V2_0).is_err());
    assert!(rmi_version(&rmm, V2_0).is_ok());
    assert_eq!(rmm.calls(RMI_VERSION), 4);
}

#[test]
fn call_places_arguments_in_x1_to_x6() {
    let regs = SmcRegs::new(RMI_VERSION, [1, 2, 3, 4, 5, 6]);
    assert_eq!(regs.x(0), 0xc400_0150);
    for i in 1..=6 {
        assert_eq!(regs.x(i), i as u64);
    }
    assert_eq!(regs.x(7), 0);
    assert_eq!(regs.x(99), 0);
}
