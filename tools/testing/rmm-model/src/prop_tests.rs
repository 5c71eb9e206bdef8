// SPDX-License-Identifier: GPL-2.0

//! Property tests: random sequences of delegate, undelegate, drop, SRO
//! create/destroy and injected faults, in both range modes. After every
//! step the model's granule states must match the host's ownership records
//! exactly (see [`assert_ownership`]).

use std::collections::BTreeSet;

use proptest::prelude::*;

use crate::granule::{
    delegate_range,
    undelegate_range,
    DelegatedGranule,
    PageSource, //
};
use crate::mem::{
    contiguous,
    FakePages, //
};
use crate::model::{
    RangeMode,
    Rmm, //
};
use crate::rmi_smc::{
    RmiFid,
    RmiMemState,
    RmiStatus,
    SmcRegs,
    RMI_GRANULE_RANGE_DELEGATE,
    RMI_GRANULE_RANGE_UNDELEGATE,
    RMI_OP_CONTINUE,
    RMI_OP_MEM_DONATE,
    RMI_OP_MEM_RECLAIM,
    RMI_REC_CREATE,
    RMI_REC_DESTROY, //
};
use crate::sro::run;
use crate::support::{
    assert_ownership,
    create_phases,
    destroy_phases,
    host,
    Ledger,
    TestGranule, //
};

/// One step of a random sequence.
#[derive(Clone, Debug)]
enum Step {
    /// Allocate and delegate a page.
    Delegate,
    /// Undelegate the `i`-th owned page explicitly.
    Undelegate(usize),
    /// Drop the `i`-th owned page (undelegate on drop).
    Drop(usize),
    /// Delegate then undelegate a run of `n` pages the host allocated.
    RangeRoundTrip(u64),
    /// An operation that asks for `n` granules (in `undelegated` state).
    Create {
        n: u64,
        undelegated: bool,
        can_cancel: bool,
        /// Pages the allocator has left, if limited.
        budget: Option<u64>,
    },
    /// An operation that reclaims everything objects hold.
    Destroy { undelegated: bool },
    /// Fail the `nth` next call of one of the FIDs with `status`.
    Fault { fid: usize, nth: u32, busy: bool },
}

const FAULT_FIDS: [RmiFid; 7] = [
    RMI_GRANULE_RANGE_DELEGATE,
    RMI_GRANULE_RANGE_UNDELEGATE,
    RMI_REC_CREATE,
    RMI_REC_DESTROY,
    RMI_OP_MEM_DONATE,
    RMI_OP_MEM_RECLAIM,
    RMI_OP_CONTINUE,
];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Delegate),
        1 => (0usize..8).prop_map(Step::Undelegate),
        1 => (0usize..8).prop_map(Step::Drop),
        1 => (1u64..6).prop_map(Step::RangeRoundTrip),
        2 => (1u64..40, any::<bool>(), any::<bool>(), prop::option::of(0u64..20)).prop_map(
            |(n, undelegated, can_cancel, budget)| Step::Create {
                n,
                undelegated,
                can_cancel,
                budget
            }
        ),
        1 => any::<bool>().prop_map(|undelegated| Step::Destroy { undelegated }),
        2 => (0..FAULT_FIDS.len(), 0u32..4, any::<bool>())
            .prop_map(|(fid, nth, busy)| Step::Fault { fid, nth, busy }),
    ]
}

/// Runs `steps` and checks the ownership invariant after each.
fn check(mode: RangeMode, steps: &[Step]) {
    let h = host(Rmm::active());
    h.smc().set_range_mode(mode);
    let mut owned: Vec<TestGranule<'_>> = Vec::new();
    let mut objects = Ledger::default();
    let call = |fid| SmcRegs::new(fid, [0; 6]);
    for s in steps {
        match *s {
            Step::Delegate => {
                if let Ok(d) = DelegatedGranule::alloc(&h) {
                    owned.push(d);
                }
            }
            Step::Undelegate(i) if i < owned.len() => {
                let _ = owned.swap_remove(i).undelegate();
            }
            Step::Drop(i) if i < owned.len() => drop(owned.swap_remove(i)),
            Step::Undelegate(_) | Step::Drop(_) => {}
            Step::RangeRoundTrip(n) => {
                // A run of pages the host owns: the allocator hands out
                // descending addresses, so sort and keep the contiguous tail.
                let pages: Vec<_> = (0..n).filter_map(|_| h.pages().alloc()).collect();
                let Some(run_range) = contiguous(&pages) else {
                    continue;
                };
                let mut stuck = Vec::new();
                let delegated = delegate_range(h.smc(), run_range, &mut |g| stuck.push(g)).is_ok();
                if delegated {
                    let _ = undelegate_range(h.smc(), run_range, &mut |g| stuck.push(g));
                }
                // A granule the host could not get back is leaked with its page.
                for page in pages {
                    if stuck.contains(&FakePages::granule(&page)) {
                        h.leak(page);
                    }
                }
            }
            Step::Create {
                n,
                undelegated,
                can_cancel,
                budget,
            } => {
                let state = if undelegated {
                    RmiMemState::Undelegated
                } else {
                    RmiMemState::Delegated
                };
                h.smc().mem_mut().set_alloc_budget(budget);
                h.smc()
                    .script(RMI_REC_CREATE, create_phases(n, state, can_cancel));
                let _ = run(&h, &call(RMI_REC_CREATE), &mut objects);
                h.smc().mem_mut().set_alloc_budget(None);
            }
            Step::Destroy { undelegated } => {
                h.smc().script(RMI_REC_DESTROY, destroy_phases(undelegated));
                let _ = run(&h, &call(RMI_REC_DESTROY), &mut objects);
            }
            Step::Fault { fid, nth, busy } => {
                // Busy is retried: it must never surface as a leak.
                let status = if busy {
                    RmiStatus::Busy
                } else {
                    RmiStatus::ErrorInput
                };
                h.smc().fail_call(FAULT_FIDS[fid], nth, status, 0);
            }
        }
        let mut records: BTreeSet<_> = owned.iter().map(TestGranule::granule).collect();
        records.extend(objects.set());
        assert_ownership(&h, &records);
    }
    // Teardown: whatever the RMM still holds leaks; nothing is freed early.
    drop(owned);
    drop(objects);
    assert_ownership(&h, &BTreeSet::new());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ownership_matches_the_model_one_granule_per_call(
        steps in prop::collection::vec(step(), 1..40)
    ) {
        check(RangeMode::OnePerCall, &steps);
    }

    #[test]
    fn ownership_matches_the_model_whole_ranges(
        steps in prop::collection::vec(step(), 1..40)
    ) {
        check(RangeMode::WholeRange, &steps);
    }
}

/// One step of a random realm life.
#[derive(Clone, Debug)]
enum RealmStep {
    Create,
    Activate,
    /// Make sure the RTT at `level` (1..=3) exists for IPA slot `slot`.
    EnsureRtt {
        slot: u64,
        level: i8,
    },
    /// Fold the RTT at `level` for IPA slot `slot`.
    Fold {
        slot: u64,
        level: i8,
    },
    /// KVM no longer needs the stage 2 (first half of teardown).
    TeardownStage2,
    Destroy,
    /// Fail the `nth` next call of one realm-path FID.
    Fault {
        fid: usize,
        nth: u32,
    },
}

const REALM_FAULT_FIDS: [RmiFid; 8] = [
    RMI_GRANULE_RANGE_DELEGATE,
    RMI_GRANULE_RANGE_UNDELEGATE,
    crate::rmi_smc::RMI_REALM_CREATE,
    crate::rmi_smc::RMI_REALM_ACTIVATE,
    crate::rmi_smc::RMI_REALM_TERMINATE,
    crate::rmi_smc::RMI_REALM_DESTROY,
    crate::rmi_smc::RMI_RTT_CREATE,
    crate::rmi_smc::RMI_RTT_DESTROY,
];

fn realm_step() -> impl Strategy<Value = RealmStep> {
    prop_oneof![
        2 => Just(RealmStep::Create),
        1 => Just(RealmStep::Activate),
        4 => (0u64..8, 2i8..=3).prop_map(|(slot, level)| RealmStep::EnsureRtt { slot, level }),
        2 => (0u64..8, 2i8..=3).prop_map(|(slot, level)| RealmStep::Fold { slot, level }),
        1 => Just(RealmStep::TeardownStage2),
        1 => Just(RealmStep::Destroy),
        2 => (0..REALM_FAULT_FIDS.len(), 0u32..6).prop_map(|(fid, nth)| RealmStep::Fault { fid, nth }),
    ]
}

/// Runs a random realm life on a 40-bit realm; the host never breaks the
/// PAS rules, a dead realm never becomes active again, and once the realm
/// is dropped the host owns nothing and has leaked exactly what the RMM
/// still holds.
fn check_realm(mode: RangeMode, steps: &[RealmStep]) {
    use crate::addr::{
        Ipa,
        RttLevel, //
    };
    use crate::model::QEMU_FEATURES;
    use crate::realm::{
        realm_shape,
        Realm,
        RealmConfig,
        RealmOptions,
        RealmState, //
    };
    use crate::rmi_cmds::RmiFeatureRegs;
    use crate::rmi_smc::{
        RmiFeatures0,
        RmiFeatures1,
        RmiFeatures2,
        RmiFeatures3, //
    };

    let features = RmiFeatureRegs {
        f0: RmiFeatures0(QEMU_FEATURES[0]),
        f1: RmiFeatures1(QEMU_FEATURES[1]),
        f2: RmiFeatures2(0),
        f3: RmiFeatures3(3),
    };
    let cfg = RealmConfig {
        ipa_bits: 40,
        host_ipa_limit: 48,
        host_lpa2: false,
    };
    let h = host(Rmm::active());
    h.smc().set_range_mode(mode);
    let shape = realm_shape(&features, cfg).expect("shape");
    let mut realm = Realm::new(&h, shape, Ledger::default());
    let mut was_dead = false;
    for s in steps {
        // Slots spread over the protected and unprotected halves.
        let ipa = |slot: u64| Ipa::new(slot * (1 << 37) + 0x20_0000).expect("ipa");
        match *s {
            RealmStep::Create => {
                let _ = realm.create(&features, RealmOptions::default());
            }
            RealmStep::Activate => {
                let _ = realm.activate();
            }
            RealmStep::EnsureRtt { slot, level } => {
                let _ = realm.ensure_rtt(ipa(slot), RttLevel::new(level).expect("level"));
            }
            RealmStep::Fold { slot, level } => {
                let _ = realm.fold_rtt(ipa(slot), RttLevel::new(level).expect("level"));
            }
            RealmStep::TeardownStage2 => {
                let _ = realm.teardown_stage2(&mut || {});
            }
            RealmStep::Destroy => {
                let _ = realm.destroy(&mut || {});
            }
            RealmStep::Fault { fid, nth } => {
                h.smc()
                    .fail_call(REALM_FAULT_FIDS[fid], nth, RmiStatus::ErrorInput, 0);
            }
        }
        assert_eq!(h.smc().mem().violations(), &[], "after {s:?}");
        if was_dead {
            assert_eq!(realm.state(), RealmState::Dead, "a dead realm stays dead");
        }
        was_dead = realm.state() == RealmState::Dead;
    }
    drop(realm);
    assert_ownership(&h, &BTreeSet::new());
    // Without an RMM failure nothing may be lost.
    if !steps.iter().any(|s| matches!(s, RealmStep::Fault { .. })) {
        assert_eq!(h.leaked(), 0);
        assert!(h.smc().mem().allocated().is_empty(), "all freed");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn realm_lives_keep_ownership_exact_one_granule_per_call(
        steps in prop::collection::vec(realm_step(), 1..30)
    ) {
        check_realm(RangeMode::OnePerCall, &steps);
    }

    #[test]
    fn realm_lives_keep_ownership_exact_whole_ranges(
        steps in prop::collection::vec(realm_step(), 1..30)
    ) {
        check_realm(RangeMode::WholeRange, &steps);
    }
}
