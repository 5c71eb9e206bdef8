// SPDX-License-Identifier: GPL-2.0

//! Tests of the RMI encoding layer and `RMI_VERSION` against the model.

use crate::model::{
    return_code,
    NoRmm,
    Rmm,
    QEMU_FEATURES, //
};
use crate::rmi_cmds::{
    rmi_features,
    rmi_version,
    RmiVersionRange,
    SmcConduit,
    VersionError, //
};
use crate::rmi_smc::{
    rmi_fid_name,
    rmi_result,
    Incomplete,
    OpMemReq,
    RmiCallCounts,
    RmiErrorKind,
    RmiFeatures0,
    RmiFeatures1,
    RmiFeatures2,
    RmiFeatures3,
    RmiFid,
    RmiRealmParams,
    RmiRecMpidr,
    RmiRecParams,
    RmiRecRun,
    RmiStatus,
    RmiVersion,
    SmcRegs,
    RMI_FEATURES,
    RMI_FID_TABLE,
    RMI_REC_ENTER,
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

/// The absolute function IDs as rmi-abi.md lists them (TF-RMM main,
/// `SMC64_RMI_FID(offset)` worked out), independent of the offsets the
/// table is written with.
const ABI_FIDS: &[(u32, &str)] = &[
    (0xC400_0150, "RMI_VERSION"),
    (0xC400_0153, "RMI_RTT_DATA_MAP_INIT"),
    (0xC400_0157, "RMI_REALM_ACTIVATE"),
    (0xC400_0158, "RMI_REALM_CREATE"),
    (0xC400_0159, "RMI_REALM_DESTROY"),
    (0xC400_015A, "RMI_REC_CREATE"),
    (0xC400_015B, "RMI_REC_DESTROY"),
    (0xC400_015C, "RMI_REC_ENTER"),
    (0xC400_015D, "RMI_RTT_CREATE"),
    (0xC400_015E, "RMI_RTT_DESTROY"),
    (0xC400_0161, "RMI_RTT_READ_ENTRY"),
    (0xC400_0163, "RMI_RTT_DEV_VALIDATE"),
    (0xC400_0164, "RMI_PSCI_COMPLETE"),
    (0xC400_0165, "RMI_FEATURES"),
    (0xC400_0166, "RMI_RTT_FOLD"),
    (0xC400_0168, "RMI_RTT_INIT_RIPAS"),
    (0xC400_0169, "RMI_RTT_SET_RIPAS"),
    (0xC400_016E, "RMI_RMM_CONFIG_SET"),
    (0xC400_0174, "RMI_PDEV_ABORT"),
    (0xC400_0175, "RMI_PDEV_COMMUNICATE"),
    (0xC400_0176, "RMI_PDEV_CREATE"),
    (0xC400_0177, "RMI_PDEV_DESTROY"),
    (0xC400_0178, "RMI_PDEV_GET_STATE"),
    (0xC400_017A, "RMI_PDEV_STREAM_KEY_REFRESH"),
    (0xC400_017B, "RMI_PDEV_SET_PUBKEY"),
    (0xC400_017C, "RMI_PDEV_STOP"),
    (0xC400_017D, "RMI_RTT_AUX_CREATE"),
    (0xC400_017E, "RMI_RTT_AUX_DESTROY"),
    (0xC400_017F, "RMI_RTT_AUX_FOLD"),
    (0xC400_0180, "RMI_RTT_AUX_MAP_PROTECTED"),
    (0xC400_0181, "RMI_RTT_AUX_MAP_UNPROTECTED"),
    (0xC400_0183, "RMI_RTT_AUX_UNMAP_PROTECTED"),
    (0xC400_0184, "RMI_RTT_AUX_UNMAP_UNPROTECTED"),
    (0xC400_0185, "RMI_VDEV_ABORT"),
    (0xC400_0186, "RMI_VDEV_COMMUNICATE"),
    (0xC400_0187, "RMI_VDEV_CREATE"),
    (0xC400_0188, "RMI_VDEV_DESTROY"),
    (0xC400_0189, "RMI_VDEV_GET_STATE"),
    (0xC400_018A, "RMI_VDEV_UNLOCK"),
    (0xC400_018B, "RMI_RTT_SET_S2AP"),
    (0xC400_018E, "RMI_VDEV_COMPLETE"),
    (0xC400_01D0, "RMI_VDEV_GET_INTERFACE_REPORT"),
    (0xC400_01D1, "RMI_VDEV_GET_MEASUREMENTS"),
    (0xC400_01D2, "RMI_VDEV_LOCK"),
    (0xC400_01D3, "RMI_VDEV_START"),
    (0xC400_01D7, "RMI_PSMMU_ACTIVATE"),
    (0xC400_01D8, "RMI_PSMMU_DEACTIVATE"),
    (0xC400_01DB, "RMI_PSMMU_ST_L2_CREATE"),
    (0xC400_01DC, "RMI_PSMMU_ST_L2_DESTROY"),
    (0xC400_01E1, "RMI_GRANULE_TRACKING_GET"),
    (0xC400_01EC, "RMI_RMM_CONFIG_GET"),
    (0xC400_01F1, "RMI_GRANULE_RANGE_DELEGATE"),
    (0xC400_01F2, "RMI_GRANULE_RANGE_UNDELEGATE"),
    (0xC400_01F3, "RMI_GPT_L1_CREATE"),
    (0xC400_01F5, "RMI_RTT_DATA_MAP"),
    (0xC400_01F6, "RMI_RTT_DATA_UNMAP"),
    (0xC400_01F7, "RMI_RTT_DEV_MAP"),
    (0xC400_01F8, "RMI_RTT_DEV_UNMAP"),
    (0xC400_01FB, "RMI_RTT_UNPROT_MAP"),
    (0xC400_01FC, "RMI_RTT_UNPROT_UNMAP"),
    (0xC400_0201, "RMI_REALM_TERMINATE"),
    (0xC400_0202, "RMI_RMM_ACTIVATE"),
    (0xC400_0203, "RMI_OP_CONTINUE"),
    (0xC400_0204, "RMI_PDEV_STREAM_CONNECT"),
    (0xC400_0205, "RMI_PDEV_STREAM_DISCONNECT"),
    (0xC400_0206, "RMI_PDEV_STREAM_COMPLETE"),
    (0xC400_0207, "RMI_PDEV_STREAM_KEY_PURGE"),
    (0xC400_0208, "RMI_OP_MEM_DONATE"),
    (0xC400_0209, "RMI_OP_MEM_RECLAIM"),
    (0xC400_020A, "RMI_OP_CANCEL"),
];

#[test]
fn fid_table_matches_the_abi() {
    let table: Vec<(u32, &str)> = RMI_FID_TABLE.iter().map(|(f, n)| (f.0, *n)).collect();
    assert_eq!(table, ABI_FIDS);
    // v1.0 commands that v2.0 removed must not come back.
    for gone in [
        0xC400_0151,
        0xC400_0152,
        0xC400_0154,
        0xC400_0155,
        0xC400_015F,
        0xC400_0167,
    ] {
        assert_eq!(rmi_fid_name(RmiFid(gone)), None, "{gone:#x}");
    }
}

#[test]
fn incomplete_index_decodes_as_tf_rmm_sends_it() {
    // x0 values from the REC_CREATE / REC_DESTROY SRO trace in rmi-abi.md.
    let decode = |x0: u64| rmi_result(x0).unwrap_err().incomplete();
    assert_eq!(
        decode(0x10d),
        Some(Incomplete {
            mem_req: OpMemReq::Donate,
            can_cancel: false
        })
    );
    assert_eq!(
        decode(0x0d),
        Some(Incomplete {
            mem_req: OpMemReq::None,
            can_cancel: false
        })
    );
    assert_eq!(
        decode(0x20d),
        Some(Incomplete {
            mem_req: OpMemReq::Reclaim,
            can_cancel: false
        })
    );
    assert_eq!(
        decode(0x60d),
        Some(Incomplete {
            mem_req: OpMemReq::Reclaim,
            can_cancel: true
        })
    );
    // RmiOpMemReq 3 is reserved.
    assert_eq!(decode(0x30d), None);
    // Only RMI_INCOMPLETE carries an RmiOpMemReq.
    assert_eq!(decode(return_code(RmiStatus::Busy, 1)), None);
    assert_eq!(decode(return_code(RmiStatus::ErrorRtt, 2)), None);
}

#[test]
fn feature_registers_decode_qemu_values() {
    // Values TF-RMM main reports on QEMU 10.0.2 -cpu max,x-rme=on (rmi-abi.md).
    let f0 = RmiFeatures0(0x317f34);
    assert_eq!(f0.s2sz(), 52);
    assert!(f0.lpa2());
    assert!(f0.sve_en());
    assert_eq!(f0.sve_vl(), 15);
    assert_eq!(f0.num_bps(), 5);
    assert_eq!(f0.num_wps(), 3);
    assert!(!f0.pmu_en());
    assert_eq!(f0.pmu_num_ctrs(), 0);

    let f1 = RmiFeatures1(0x142a9);
    assert!(f1.granule_4k());
    assert!(!f1.granule_16k());
    assert!(!f1.granule_64k());
    assert!(f1.sha256());
    assert!(!f1.sha384());
    assert!(f1.sha512());
    assert_eq!(f1.max_recs_order(), 10);
    assert_eq!(f1.l0gptsz(), 0);
    assert_eq!(f1.pps(), 5);

    assert!(!RmiFeatures2(0).da_en());
    assert_eq!(RmiFeatures3(3).max_num_aux_planes(), 3);
    assert!(!RmiFeatures3(3).rtt_s2ap_indirect());
}

#[test]
fn feature_fields_do_not_bleed() {
    // Every field of register 0 set to its maximum, one at a time.
    let fields: [(u64, fn(RmiFeatures0) -> u64); 8] = [
        (0xff, |f| f.s2sz().into()),
        (1 << 8, |f| f.lpa2().into()),
        (1 << 9, |f| f.sve_en().into()),
        (0xf << 10, |f| f.sve_vl().into()),
        (0x3f << 14, |f| f.num_bps().into()),
        (0x3f << 20, |f| f.num_wps().into()),
        (1 << 26, |f| f.pmu_en().into()),
        (0x1f << 27, |f| f.pmu_num_ctrs().into()),
    ];
    for (i, (mask, _)) in fields.iter().enumerate() {
        let reg = RmiFeatures0(*mask);
        for (j, (m, get)) in fields.iter().enumerate() {
            // The field reads back as its all-ones value, the others as 0.
            let want = if i == j { m >> m.trailing_zeros() } else { 0 };
            assert_eq!(get(reg), want, "field {j} with only field {i} set");
        }
    }
}

#[test]
fn features_reads_registers_0_to_3() {
    let rmm = Rmm::new();
    let f = rmi_features(&rmm).unwrap();
    assert_eq!(f.f0.0, QEMU_FEATURES[0]);
    assert_eq!(f.f1.0, QEMU_FEATURES[1]);
    assert_eq!(f.f2.0, QEMU_FEATURES[2]);
    assert_eq!(f.f3.0, QEMU_FEATURES[3]);
    assert_eq!(rmm.calls(RMI_FEATURES), 4);

    let other = Rmm::new().with_features([1, 2, 3, 4, 5]);
    let f = rmi_features(&other).unwrap();
    assert_eq!([f.f0.0, f.f1.0, f.f2.0, f.f3.0], [1, 2, 3, 4]);
}

#[test]
fn features_fails_on_any_failed_read() {
    for nth in 0..4 {
        let rmm = Rmm::new();
        rmm.fail_call(RMI_FEATURES, nth, RmiStatus::ErrorGlobal, 0);
        let e = rmi_features(&rmm).unwrap_err();
        assert_eq!(e.status(), RmiStatus::ErrorGlobal);
        // It stops at the failed read.
        assert_eq!(rmm.calls(RMI_FEATURES), nth + 1);
    }
    // No RMM: the SMCCC "not supported" x0 decodes as a failed status, never
    // as a feature value.
    assert!(rmi_features(&NoRmm).is_err());
}

/// The bytes of an ABI struct, as the RMM reads them from the granule.
fn bytes_of<T>(v: &T) -> &[u8] {
    // SAFETY: The ABI structs are `repr(C)` integers and arrays with explicit
    // padding fields, so every byte is initialised.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

/// The little-endian u64 at `off`.
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

#[test]
fn abi_structs_place_fields_at_spec_offsets() {
    let mut p = RmiRealmParams::zeroed();
    assert!(bytes_of(&p).iter().all(|&b| b == 0));
    p.flags0 = 0x11;
    p.s2sz = 39;
    p.algorithm = 1;
    p.rpv[63] = 0x5a;
    p.rtt_base = 0x8000_0000;
    p.rtt_level_start = -1;
    p.rtt_num_start = 2;
    p.aux_rtt_base[2] = 0xabc000;
    let b = bytes_of(&p);
    assert_eq!(b.len(), 0x1000);
    assert_eq!(u64_at(b, 0x000), 0x11);
    assert_eq!(u64_at(b, 0x008), 39);
    assert_eq!(b[0x030], 1);
    assert_eq!(b[0x43f], 0x5a);
    assert_eq!(u64_at(b, 0x808), 0x8000_0000);
    assert_eq!(u64_at(b, 0x810), u64::MAX);
    assert_eq!(u64_at(b, 0x818), 2);
    assert_eq!(u64_at(b, 0xf90), 0xabc000);

    let mut r = RmiRecParams::zeroed();
    r.mpidr = 0x0102;
    r.pc = 0x8008_0000;
    r.gprs[7] = 7;
    let b = bytes_of(&r);
    assert_eq!(b.len(), 0x1000);
    assert_eq!(u64_at(b, 0x100), 0x0102);
    assert_eq!(u64_at(b, 0x200), 0x8008_0000);
    assert_eq!(u64_at(b, 0x338), 7);

    let mut run = RmiRecRun::zeroed();
    run.enter.flags = 1;
    run.enter.gprs[0] = 0xcafe_f00d;
    run.exit.exit_reason = 5;
    run.exit.hpfar = 0x4000_0010;
    run.exit.gprs[30] = 30;
    run.exit.ripas_value = 1;
    run.exit.imm = 0x1234;
    run.exit.pmu_ovf_status = 9;
    let b = bytes_of(&run);
    assert_eq!(b.len(), 0x1000);
    assert_eq!(u64_at(b, 0x000), 1);
    assert_eq!(u64_at(b, 0x200), 0xcafe_f00d);
    assert_eq!(u64_at(b, 0x800), 5);
    assert_eq!(u64_at(b, 0x910), 0x4000_0010);
    assert_eq!(u64_at(b, 0xaf0), 30);
    assert_eq!(b[0xd10], 1);
    assert_eq!(u64_at(b, 0xe00), 0x1234);
    assert_eq!(u64_at(b, 0xf00), 9);
}

#[test]
fn error_kinds_follow_the_status() {
    let kind = |status: u8| rmi_result(u64::from(status)).unwrap_err().kind();
    assert_eq!(kind(1), RmiErrorKind::InvalidArgument);
    assert_eq!(kind(5), RmiErrorKind::NotSupported);
    assert_eq!(kind(10), RmiErrorKind::Busy);
    assert_eq!(kind(14), RmiErrorKind::Busy);
    assert_eq!(kind(11), RmiErrorKind::RmmUnavailable);
    for other in [2u8, 3, 4, 6, 7, 8, 9, 12, 13, 15, 16, 17, 0xff] {
        assert_eq!(kind(other), RmiErrorKind::Failed, "status {other}");
    }
    // What the module returns when FEATURES fails before activation.
    let rmm = Rmm::new();
    rmm.fail_call(RMI_FEATURES, 0, RmiStatus::ErrorGlobal, 0);
    assert_eq!(
        rmi_features(&rmm).unwrap_err().kind(),
        RmiErrorKind::RmmUnavailable
    );
}

#[test]
fn an_error_gives_back_its_x0() {
    // A zero status byte is success, whatever the index.
    for x0 in (1u64..=0xffff).filter(|x| x & 0xff != 0) {
        let e = rmi_result(x0).unwrap_err();
        assert_eq!(e.raw(), x0);
        assert_eq!(rmi_result(e.raw()), Err(e));
    }
    // Reserved bits are not part of the error.
    assert_eq!(rmi_result(0x1_0003).unwrap_err().raw(), 3);
}

#[test]
fn call_counts_count_every_command_and_nothing_else() {
    let counts = RmiCallCounts::new();
    // Every command of the table has a counter.
    for (fid, _) in RMI_FID_TABLE {
        counts.record(u64::from(fid.0));
    }
    for (fid, name) in RMI_FID_TABLE {
        assert_eq!(counts.get(*fid), 1, "{name}");
    }
    // Other function IDs (PSCI, SMCCC, below and above the range) are not.
    for other in [0x8400_0000u64, 0xc400_014f, 0xc400_0210, u64::MAX, 0] {
        counts.record(other);
    }
    counts.record(u64::from(RMI_REC_ENTER.0));
    counts.record(u64::from(RMI_REC_ENTER.0));
    let mut text = String::new();
    counts.write_to(&mut text).expect("format");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), RMI_FID_TABLE.len() + 1);
    assert!(lines.contains(&"RMI_REC_ENTER 3"));
    assert_eq!(
        lines.last(),
        Some(&format!("total {}", RMI_FID_TABLE.len() + 2).as_str())
    );
    // Only commands called at least once are listed.
    let fresh = RmiCallCounts::new();
    fresh.record(u64::from(RMI_VERSION.0));
    let mut text = String::new();
    fresh.write_to(&mut text).expect("format");
    assert_eq!(text, "RMI_VERSION 1\ntotal 1\n");
}

#[test]
fn rec_mpidr_round_trips_the_index_in_the_rmm_format() {
    for index in [0u64, 1, 15, 16, 17, 255, 4095, 4096, (1 << 28) - 1] {
        let m = RmiRecMpidr::from_index(index).expect("fits");
        assert_eq!(m.index(), index);
        assert_eq!(RmiRecMpidr::new(m.raw()), Some(m));
        // Aff0[7:4] and bits above 31 stay clear.
        assert_eq!(m.raw() & !0xffff_ff0f, 0);
    }
    // vCPU 0x123: Aff0 3, Aff1 0x12.
    assert_eq!(
        RmiRecMpidr::from_index(0x123).map(|m| m.raw()),
        Some(0x1203)
    );
    assert_eq!(RmiRecMpidr::from_index(1 << 28), None);
    assert_eq!(RmiRecMpidr::new(0x10), None, "Aff0[7:4]");
    assert_eq!(RmiRecMpidr::new(1 << 32), None, "Aff3 of MPIDR_EL1");
    assert_eq!(
        RmiRecMpidr::new(1 << 31),
        Some(RmiRecMpidr::from_index(1 << 27).expect("fits"))
    );
}
