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
