// SPDX-License-Identifier: GPL-2.0

//! The RMI observer: injection requests, injection itself, and the count of
//! delegated granules against the model's own view of the PAS.

use crate::addr::{
    GranuleRange,
    GRANULE_SIZE, //
};
use crate::granule::{
    delegate_range,
    DelegatedBlock,
    DelegatedGranule,
    PageSource, //
    Rmi,
};
use crate::mem::FakePages;
use crate::model::{
    RangeMode,
    Rmm,
    DRAM_BASE, //
};
use crate::realm::RealmState;
use crate::realm_stats::RealmStats;
use crate::rmi_cmds::SmcConduit;
use crate::rmi_observe::{
    call_names,
    delegation_delta,
    InjectParseError,
    InjectSpec,
    RmiObserver, //
};
use crate::rmi_smc::{
    rmi_result,
    RmiFid,
    RmiStatus,
    SmcRegs,
    RMI_GRANULE_RANGE_DELEGATE,
    RMI_GRANULE_RANGE_UNDELEGATE,
    RMI_REC_ENTER,
    RMI_RTT_CREATE,
    RMI_VERSION,
    SMCCC_RET_NOT_SUPPORTED, //
};

/// The model behind the observer, as the module's conduit puts it.
struct Watched {
    rmm: Rmm,
    observer: RmiObserver,
}

impl SmcConduit for Watched {
    fn call(&self, args: &SmcRegs) -> SmcRegs {
        self.observer.call(args, |a| self.rmm.call(a)).0
    }
}

type WatchedRmi = Rmi<Watched, FakePages>;

fn watched(mode: RangeMode) -> WatchedRmi {
    let rmm = Rmm::active();
    rmm.set_range_mode(mode);
    let pages = rmm.pages();
    Rmi::new(
        Watched {
            rmm,
            observer: RmiObserver::new(),
        },
        pages,
    )
}

/// The observer's count is the model's Realm PAS, exactly.
fn assert_count_exact(h: &WatchedRmi) {
    let realm = h.smc().rmm.mem().realm_granules().len() as i64;
    assert_eq!(h.smc().observer.delegated(), realm);
}

fn spec(text: &str) -> InjectSpec {
    InjectSpec::parse(text).expect("parses").expect("not off")
}

#[test]
fn injection_requests_parse_with_defaults_and_print_back() {
    let s = spec("RMI_GRANULE_RANGE_UNDELEGATE ERROR_GRANULE");
    assert_eq!(s.fid, Some(RMI_GRANULE_RANGE_UNDELEGATE));
    assert_eq!(
        (s.error.status(), s.error.index(), s.skip, s.times),
        (RmiStatus::ErrorGranule, 0, 0, 1)
    );
    // Short names, numbers and options; whitespace as echo leaves it.
    let s = spec("  RTT_CREATE 4 index=2 skip=7 times=3\n");
    assert_eq!(s.fid, Some(RMI_RTT_CREATE));
    assert_eq!(
        (s.error.status(), s.error.index(), s.skip, s.times),
        (RmiStatus::ErrorRtt, 2, 7, 3)
    );
    let s = spec("any RMI_ERROR_REALM");
    assert_eq!((s.fid, s.error.status()), (None, RmiStatus::ErrorRealm));
    for text in [
        "RMI_REC_ENTER ERROR_REC index=1 skip=0 times=1",
        "any BUSY index=0 skip=3 times=100",
    ] {
        let s = spec(text);
        assert_eq!(s.to_string(), text);
        assert_eq!(spec(&s.to_string()), s);
    }
    assert_eq!(InjectSpec::parse("off\n"), Ok(None));
}

#[test]
fn bad_injection_requests_say_why() {
    let cases = [
        ("", InjectParseError::Empty),
        ("   \n", InjectParseError::Empty),
        ("off now", InjectParseError::BadOption),
        ("RMI_NOPE ERROR_INPUT", InjectParseError::UnknownCommand),
        ("RMI_RTT", InjectParseError::UnknownCommand),
        ("RTT_CREATE", InjectParseError::UnknownStatus),
        ("RTT_CREATE ERROR_NOPE", InjectParseError::UnknownStatus),
        ("RTT_CREATE 256", InjectParseError::UnknownStatus),
        ("RTT_CREATE SUCCESS", InjectParseError::NotAnError),
        ("RTT_CREATE 0", InjectParseError::NotAnError),
        ("RTT_CREATE INCOMPLETE", InjectParseError::NotAnError),
        ("RTT_CREATE 13", InjectParseError::NotAnError),
        ("RTT_CREATE 17", InjectParseError::NotAnError),
        ("RTT_CREATE UNKNOWN", InjectParseError::UnknownStatus),
        ("RTT_CREATE BAD_OUTPUT", InjectParseError::UnknownStatus),
        ("RTT_CREATE 255", InjectParseError::NotAnError),
        (
            "RTT_CREATE ERROR_RTT index=256",
            InjectParseError::BadOption,
        ),
        ("RTT_CREATE ERROR_RTT skip=-1", InjectParseError::BadOption),
        ("RTT_CREATE ERROR_RTT nth=1", InjectParseError::BadOption),
        ("RTT_CREATE ERROR_RTT times", InjectParseError::BadOption),
        ("RTT_CREATE ERROR_RTT times=0", InjectParseError::NoTimes),
    ];
    for (text, want) in cases {
        assert_eq!(InjectSpec::parse(text), Err(want), "{text:?}");
    }
}

/// Calls `fid` through the observer with a conduit that answers SUCCESS;
/// returns x0 and whether it reached the conduit.
fn call(o: &RmiObserver, fid: RmiFid) -> (u64, bool) {
    let mut reached = false;
    let (out, injected) = o.call(&SmcRegs::new(fid, [0; 6]), |_| {
        reached = true;
        SmcRegs::default()
    });
    assert_eq!(injected, !reached);
    (out.x(0), reached)
}

fn shown(o: &RmiObserver) -> String {
    let mut s = String::new();
    o.inject.write_to(&mut s).expect("formats");
    s
}

#[test]
fn injection_skips_then_fails_the_matching_calls_only() {
    let o = RmiObserver::new();
    assert_eq!(shown(&o), "off\ninjected 0\n");
    o.inject
        .arm(&spec("RTT_CREATE ERROR_RTT index=2 skip=2 times=3"));
    assert_eq!(
        shown(&o),
        "RMI_RTT_CREATE ERROR_RTT index=2 skip=2 times=3\ninjected 0\n"
    );
    let mut seen = Vec::new();
    for _ in 0..6 {
        // Other commands are never touched, nor counted as skipped.
        assert_eq!(call(&o, RMI_VERSION), (0, true));
        seen.push(call(&o, RMI_RTT_CREATE));
    }
    let rtt_2 = (RmiStatus::ErrorRtt.raw() as u64) | 2 << 8;
    assert_eq!(
        seen,
        [
            (0, true),
            (0, true),
            (rtt_2, false),
            (rtt_2, false),
            (rtt_2, false),
            (0, true)
        ]
    );
    assert_eq!(o.inject.injected(), 3);
    assert_eq!(shown(&o), "off\ninjected 3\n");
    // Every call was counted, failed ones included.
    assert_eq!(o.calls.get(RMI_RTT_CREATE), 6);
    assert_eq!(o.calls.get(RMI_VERSION), 6);
}

#[test]
fn a_new_request_replaces_the_old_one_and_off_stops_it() {
    let o = RmiObserver::new();
    o.inject.arm(&spec("RTT_CREATE ERROR_RTT times=5"));
    assert!(!call(&o, RMI_RTT_CREATE).1);
    o.inject.arm(&spec("any ERROR_REC times=2"));
    assert_eq!(call(&o, RMI_REC_ENTER).0, RmiStatus::ErrorRec.raw().into());
    assert!(!call(&o, RMI_VERSION).1);
    assert!(call(&o, RMI_RTT_CREATE).1);
    o.inject.arm(&spec("any ERROR_INPUT times=9"));
    o.inject.disarm();
    assert!(call(&o, RMI_RTT_CREATE).1);
    assert_eq!(o.inject.injected(), 3);
}

#[test]
fn delegation_deltas_come_from_successful_range_calls_only() {
    let base = DRAM_BASE;
    let args = |fid| SmcRegs::new(fid, [base, base + 4 * GRANULE_SIZE, 0, 0, 0, 0]);
    let answer = |x0: u64, x1: u64| {
        let mut out = SmcRegs::default();
        out.0[0] = x0;
        out.0[1] = x1;
        out
    };
    let d = args(RMI_GRANULE_RANGE_DELEGATE);
    let u = args(RMI_GRANULE_RANGE_UNDELEGATE);
    assert_eq!(delegation_delta(&d, &answer(0, base + GRANULE_SIZE)), 1);
    assert_eq!(delegation_delta(&d, &answer(0, base + 4 * GRANULE_SIZE)), 4);
    assert_eq!(
        delegation_delta(&u, &answer(0, base + 3 * GRANULE_SIZE)),
        -3
    );
    // Refused, or an answer the host rejects as malformed.
    let granule_err = RmiStatus::ErrorGranule.raw().into();
    assert_eq!(
        delegation_delta(&d, &answer(granule_err, base + GRANULE_SIZE)),
        0
    );
    assert_eq!(delegation_delta(&d, &answer(0, base)), 0);
    assert_eq!(delegation_delta(&d, &answer(0, base + 5 * GRANULE_SIZE)), 0);
    assert_eq!(delegation_delta(&d, &answer(0, base + 8)), 0);
    let other = SmcRegs::new(RMI_RTT_CREATE, [base, base + GRANULE_SIZE, 0, 0, 0, 0]);
    assert_eq!(delegation_delta(&other, &answer(0, base + GRANULE_SIZE)), 0);
    assert!(rmi_result(granule_err).is_err());
}

#[test]
fn the_delegated_count_follows_the_pas_in_both_range_modes() {
    for mode in [RangeMode::OnePerCall, RangeMode::WholeRange] {
        let h = watched(mode);
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(DelegatedGranule::alloc(&h).expect("delegated"));
            assert_count_exact(&h);
        }
        let block = DelegatedBlock::alloc(&h, 3).expect("block");
        assert_count_exact(&h);
        assert_eq!(h.smc().observer.delegated(), 13);
        held.truncate(2);
        assert_count_exact(&h);
        drop(block);
        assert_count_exact(&h);
        // A range whose delegation fails (halfway, one granule a call) is
        // unwound: back to before.
        let page = h.pages().alloc_block(2).expect("pages");
        let range: GranuleRange = FakePages::block_range(&page);
        let nth = if mode == RangeMode::OnePerCall { 2 } else { 0 };
        h.smc()
            .rmm
            .fail_call(RMI_GRANULE_RANGE_DELEGATE, nth, RmiStatus::ErrorGpt, 0);
        let failed = delegate_range(h.smc(), range, &mut |_| panic!("stuck"));
        assert!(failed.is_err(), "{mode:?}");
        assert_count_exact(&h);
        drop(held);
        assert_count_exact(&h);
        assert_eq!(h.smc().observer.delegated(), 0);
        assert_eq!(h.leaked(), 0);
    }
}

#[test]
fn an_injected_undelegate_failure_leaks_exactly_what_stays_counted() {
    let h = watched(RangeMode::OnePerCall);
    let held: Vec<_> = (0..4)
        .map(|_| DelegatedGranule::alloc(&h).expect("delegated"))
        .collect();
    h.smc().observer.inject.arm(&spec(
        "GRANULE_RANGE_UNDELEGATE ERROR_GRANULE skip=1 times=2",
    ));
    drop(held);
    assert_eq!(h.smc().observer.inject.injected(), 2);
    assert_eq!(h.leaked(), 2);
    // The leaked granules are still delegated, and counted so.
    assert_eq!(h.smc().observer.delegated(), 2);
    assert_count_exact(&h);
    assert!(h.smc().rmm.mem().violations().is_empty());
}

#[test]
fn realm_counters_sum_exits_by_reason_and_track_data_pages() {
    let s = RealmStats::new();
    for raw in [0, 0, 5, 1, 99, 10] {
        s.exit(raw);
    }
    s.entry_refused();
    s.populated(3, true);
    s.populated(2, false);
    s.mapped(1);
    s.unmapped(4);
    s.set_recs(2);
    s.ripas_rejected();
    let mut exits = String::new();
    s.write_exits(&mut exits).expect("formats");
    assert_eq!(
        exits,
        "SYNC 2\nIRQ 1\nHOST_CALL 1\nVDEV_P2P_BINDING 1\nUNKNOWN 1\nENTRY_REFUSED 1\ntotal 6\n"
    );
    let mut info = String::new();
    assert_eq!(s.state(), RealmState::None);
    s.publish(RealmState::Active, 7);
    s.write_info(&mut info, 40).expect("formats");
    assert_eq!(
        info,
        "state active\nipa_bits 40\nrtt_pages 7\ndata_pages 2\nrecs 2\nripas_rejected 1\n\
         populated_measured 12288\npopulated_unmeasured 8192\n"
    );
    // Never below zero.
    s.unmapped(100);
    assert_eq!(s.data_pages(), 0);
    // Every state is published as itself.
    for state in [
        RealmState::None,
        RealmState::New,
        RealmState::Active,
        RealmState::Dying,
        RealmState::Dead,
    ] {
        s.publish(state, 0);
        assert_eq!(s.state(), state);
    }
}

/// Registers with x0 = `x0`.
fn x0(x0: u64) -> SmcRegs {
    let mut regs = SmcRegs::default();
    regs.0[0] = x0;
    regs
}

#[test]
fn traced_calls_are_named_by_command_and_returned_status() {
    let version = SmcRegs::new(RMI_VERSION, [0; 6]);
    assert_eq!(call_names(&version, &x0(0)), ("RMI_VERSION", "SUCCESS"));
    let rtt = SmcRegs::new(RMI_RTT_CREATE, [0; 6]);
    // ERROR_RTT at level 2: the index is not part of the name.
    assert_eq!(
        call_names(&rtt, &x0(0x204)),
        ("RMI_RTT_CREATE", "ERROR_RTT")
    );
    // Reserved bits above the index are ignored, as `rmi_result` does.
    assert_eq!(call_names(&rtt, &x0(0x1_0000)).1, "SUCCESS");
    assert_eq!(
        call_names(&rtt, &x0(SMCCC_RET_NOT_SUPPORTED)).1,
        "SMCCC_NOT_SUPPORTED"
    );
    assert_eq!(call_names(&rtt, &x0(0xee)).1, "UNKNOWN");
    let unknown = SmcRegs::new(RmiFid(0xc400_01ff), [0; 6]);
    assert_eq!(call_names(&unknown, &x0(0)).0, "UNKNOWN");

    // An injected failure is named as the failure it stands for.
    let o = RmiObserver::new();
    o.inject.arm(&spec("REC_ENTER ERROR_REC index=3"));
    let args = SmcRegs::new(RMI_REC_ENTER, [0; 6]);
    let (out, injected) = o.call(&args, |_| x0(0));
    assert!(injected);
    assert_eq!(call_names(&args, &out), ("RMI_REC_ENTER", "ERROR_REC"));
    assert_eq!(out.x(0) >> 8, 3);
}
