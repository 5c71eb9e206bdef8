// SPDX-License-Identifier: GPL-2.0

//! RMM init at module load: configure once per boot, activate, tracking and
//! L1 GPTs; a second load; a fault at every call.

use std::collections::BTreeSet;

use crate::addr::{
    Granule,
    GranuleRange, //
};
use crate::model::{
    GptMode,
    Rmm,
    DRAM_BASE,
    DRAM_GRANULES,
    L0GPT_SIZE,
    QEMU_FEATURES, //
};
use crate::rmi_cmds::VersionError;
use crate::rmi_smc::{
    RmiFid,
    RmiStatus,
    RmiTrackingState,
    RMI_FEATURES,
    RMI_GPT_L1_CREATE,
    RMI_GRANULE_RANGE_DELEGATE,
    RMI_GRANULE_TRACKING_GET,
    RMI_OP_CONTINUE,
    RMI_OP_MEM_DONATE,
    RMI_RMM_ACTIVATE,
    RMI_RMM_CONFIG_GET,
    RMI_RMM_CONFIG_SET,
    RMI_VERSION, //
};
use crate::rmm_init::{
    rmm_init,
    InitError,
    LoadError,
    RmmInfo,
    RmmProbe,
    TrackingReport, //
};
use crate::support::{
    assert_ownership,
    host,
    Ledger,
    TestRmi, //
};

/// A load the rest of the host does not refuse; `on_admit` is the host's
/// last step before the RMM changes (where the kernel marks it active).
fn init<'r>(
    h: &'r TestRmi,
    memory: impl IntoIterator<Item = GranuleRange>,
    gpt: &mut Ledger<'r>,
    on_admit: impl FnOnce(),
) -> Result<RmmInfo, InitError> {
    let admit = |_: &RmmProbe| {
        on_admit();
        Ok::<(), ()>(())
    };
    match rmm_init(h, memory, gpt, admit) {
        Ok((info, ())) => Ok(info),
        Err(LoadError::Rmm(e)) => Err(e),
        Err(LoadError::Refused(())) => unreachable!("admitted"),
    }
}

/// The model's DRAM, as the host's boot memory.
fn dram() -> GranuleRange {
    GranuleRange::from_count(Granule::new(DRAM_BASE).expect("aligned"), DRAM_GRANULES)
        .expect("range")
}

/// 2 GiB at 4 GiB: two tracking regions outside the modelled DRAM.
fn high_memory() -> GranuleRange {
    let base = Granule::new(4 * L0GPT_SIZE).expect("aligned");
    GranuleRange::from_count(base, 2 * L0GPT_SIZE / 4096).expect("range")
}

#[test]
fn first_load_configures_activates_and_checks_tracking() {
    let h = host(Rmm::new());
    let mut gpt = Ledger::default();
    let info = init(&h, [dram()], &mut gpt, || {}).expect("init");
    assert!(info.activated_now);
    assert!(h.smc().is_active());
    assert_eq!(info.features.f0.0, QEMU_FEATURES[0]);
    assert_eq!(
        info.tracking,
        TrackingReport {
            fine: DRAM_GRANULES,
            ..TrackingReport::default()
        }
    );
    for (fid, n) in [
        (RMI_VERSION, 1),
        (RMI_FEATURES, 4),
        (RMI_RMM_CONFIG_SET, 1),
        (RMI_RMM_ACTIVATE, 1),
        (RMI_RMM_CONFIG_GET, 0),
        (RMI_GRANULE_TRACKING_GET, 1),
        (RMI_GPT_L1_CREATE, 0),
    ] {
        assert_eq!(h.smc().calls(fid), n, "{fid:?}");
    }
    assert!(h.smc().mem().allocated().is_empty(), "config page freed");
}

/// Everything else that can refuse a load is asked after the RMM was
/// found and before it is changed: a refused load leaves it in INIT, with
/// nothing donated and activation never reported; the next load goes on.
#[test]
fn a_refused_load_leaves_the_rmm_as_it_was() {
    let h = host(Rmm::new());
    let mut gpt = Ledger::default();
    let marked = std::cell::Cell::new(false);
    let seen = std::cell::Cell::new(None);
    let result = rmm_init(&h, [dram()], &mut gpt, |probe| {
        seen.set(Some(probe.features.f0.0));
        Err::<(), _>("no VHE")
    });
    assert_eq!(result.err(), Some(LoadError::Refused("no VHE")));
    assert_eq!(
        seen.get(),
        Some(QEMU_FEATURES[0]),
        "admit saw the RMM's features"
    );
    assert!(!h.smc().is_active());
    for (fid, n) in [
        (RMI_VERSION, 1),
        (RMI_FEATURES, 4),
        (RMI_RMM_CONFIG_SET, 0),
        (RMI_RMM_ACTIVATE, 0),
        (RMI_GRANULE_TRACKING_GET, 0),
        (RMI_GPT_L1_CREATE, 0),
    ] {
        assert_eq!(h.smc().calls(fid), n, "{fid:?}");
    }
    assert!(gpt.set().is_empty());
    assert!(h.smc().mem().allocated().is_empty());
    let info = init(&h, [dram()], &mut gpt, || marked.set(true)).expect("next load");
    assert!(info.activated_now && marked.get() && h.smc().is_active());
}

#[test]
fn second_load_finds_the_rmm_active_and_carries_on() {
    let h = host(Rmm::new());
    let mut gpt = Ledger::default();
    init(&h, [dram()], &mut gpt, || {}).expect("first load");
    let info = init(&h, [dram()], &mut gpt, || {}).expect("second load");
    assert!(!info.activated_now);
    // CONFIG_SET and ACTIVATE answered ERROR_GLOBAL; CONFIG_GET confirmed.
    assert_eq!(h.smc().calls(RMI_RMM_CONFIG_SET), 2);
    assert_eq!(h.smc().calls(RMI_RMM_ACTIVATE), 2);
    assert_eq!(h.smc().calls(RMI_RMM_CONFIG_GET), 1);
    assert!(h.smc().mem().allocated().is_empty());
}

#[test]
fn static_gpts_answer_error_gpt_and_that_is_not_fatal() {
    let h = host(Rmm::new());
    h.smc().set_tracking(4 * L0GPT_SIZE, RmiTrackingState::None);
    let mut gpt = Ledger::default();
    let info = init(&h, [dram(), high_memory()], &mut gpt, || {}).expect("init");
    // 4 GiB..5 GiB: not tracked, L1 exists (static) so stays untracked;
    // 5 GiB..6 GiB: fine by default.
    assert_eq!(info.tracking.l1_existing, 1);
    assert_eq!(info.tracking.l1_created, 0);
    assert_eq!(info.tracking.untracked, L0GPT_SIZE / 4096);
    assert_eq!(info.tracking.fine, DRAM_GRANULES + L0GPT_SIZE / 4096);
    assert_eq!(h.smc().calls(RMI_GPT_L1_CREATE), 1);
}

#[test]
fn dynamic_gpts_get_donated_memory_the_rmm_keeps() {
    let h = host(Rmm::new());
    h.smc().set_gpt_mode(GptMode::Dynamic { granules: 3 });
    h.smc().set_tracking(4 * L0GPT_SIZE, RmiTrackingState::None);
    h.smc().set_tracking(5 * L0GPT_SIZE, RmiTrackingState::None);
    let mut gpt = Ledger::default();
    let info = init(&h, [dram(), high_memory()], &mut gpt, || {}).expect("init");
    assert_eq!(info.tracking.l1_created, 2);
    assert_eq!(info.tracking.untracked, 0);
    assert_eq!(info.tracking.fine, DRAM_GRANULES + 2 * L0GPT_SIZE / 4096);
    assert_eq!(gpt.granules.len(), 6);
    let tables: BTreeSet<_> = h.smc().held().1.into_iter().collect();
    assert_eq!(tables, gpt.set());
    assert_ownership(&h, &gpt.set());
    assert_eq!(h.smc().tracking(4 * L0GPT_SIZE), RmiTrackingState::Fine);
    // At rmmod the records go; the RMM keeps the tables, so they leak.
    drop(gpt);
    assert_eq!(h.leaked(), 6);
    assert_ownership(&h, &BTreeSet::new());
}

#[test]
fn refusals_map_to_typed_errors() {
    let h = host(Rmm::new().with_features([0x317f34, 0x142a8, 0, 3, 0]));
    assert_eq!(
        init(&h, [dram()], &mut Ledger::default(), || {}),
        Err(InitError::NoGranule4k)
    );
    let h = host(crate::model::Rmm::with_revisions(&[
        crate::rmi_smc::RmiVersion { major: 1, minor: 0 },
    ]));
    assert!(matches!(
        init(&h, [dram()], &mut Ledger::default(), || {}),
        Err(InitError::Version(VersionError::Incompatible(_)))
    ));
}

/// A fault at each call of a full first load (with a dynamic GPT): the
/// error names the failed command and carries the injected status, and no
/// page is lost or freed while delegated.
#[test]
fn a_fault_at_every_init_call_is_reported_and_safe() {
    let fids: [RmiFid; 10] = [
        RMI_VERSION,
        RMI_FEATURES,
        RMI_RMM_CONFIG_SET,
        RMI_RMM_ACTIVATE,
        RMI_GRANULE_TRACKING_GET,
        RMI_GPT_L1_CREATE,
        RMI_GRANULE_RANGE_DELEGATE,
        RMI_OP_MEM_DONATE,
        RMI_OP_CONTINUE,
        RMI_RMM_CONFIG_GET,
    ];
    for fid in fids {
        for nth in 0..4 {
            let h = host(Rmm::new());
            h.smc().set_gpt_mode(GptMode::Dynamic { granules: 2 });
            h.smc().set_tracking(4 * L0GPT_SIZE, RmiTrackingState::None);
            h.smc().fail_call(fid, nth, RmiStatus::ErrorInput, 0);
            let mut gpt = Ledger::default();
            let marked = std::cell::Cell::new(false);
            // The host marks the RMM active before anything changes it.
            let mark = || {
                assert_eq!(h.smc().calls(RMI_RMM_CONFIG_SET), 0, "marked late");
                marked.set(true);
            };
            let result = init(&h, [dram(), high_memory()], &mut gpt, mark);
            assert_ownership(&h, &gpt.set());
            let ctx = format!("fid {fid:?} nth {nth}");
            // An active RMM was marked so (kexec/hibernate blocked), even
            // if a later step failed; only a failed probe leaves it unmarked.
            assert!(marked.get() || !h.smc().is_active(), "{ctx}");
            let probed =
                !(fid == RMI_VERSION || fid == RMI_FEATURES) || h.smc().injected_pending() != 0;
            assert_eq!(marked.get(), probed, "{ctx}");
            if h.smc().injected_pending() != 0 {
                assert!(result.is_ok(), "{ctx}: {result:?}");
                continue;
            }
            let Err(e) = result else {
                // A refused delegation after the first one is absorbed: the
                // RMM asks again and gets the rest.
                assert!(fid == RMI_GRANULE_RANGE_DELEGATE && nth > 0, "{ctx}");
                continue;
            };
            match e {
                InitError::Version(_) => assert_eq!(fid, RMI_VERSION, "{ctx}"),
                InitError::Cmd { fid: failed, err } => {
                    // A refused donation delegate fails the GPT operation.
                    let expect = if [
                        RMI_GRANULE_RANGE_DELEGATE,
                        RMI_OP_MEM_DONATE,
                        RMI_OP_CONTINUE,
                    ]
                    .contains(&fid)
                    {
                        RMI_GPT_L1_CREATE
                    } else {
                        fid
                    };
                    assert_eq!(failed, expect, "{ctx}");
                    assert_eq!(err.status(), RmiStatus::ErrorInput, "{ctx}");
                }
                other => panic!("{ctx}: {other:?}"),
            }
        }
    }
}
