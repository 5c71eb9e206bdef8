// SPDX-License-Identifier: GPL-2.0

//! Delegation: range commands in both range modes, partial failure unwind,
//! the leak-on-failed-undelegate rule, BUSY/BLOCKED retries.

use std::collections::BTreeSet;

use crate::addr::{
    Granule,
    GranuleRange,
    GRANULE_SIZE, //
};
use crate::granule::{
    delegate_range,
    undelegate_range,
    DelegatedGranule,
    MemError,
    PageSource, //
};
use crate::mem::GranuleState;
use crate::model::{
    RangeMode,
    Rmm,
    DRAM_BASE, //
};
use crate::rmi_cmds::{
    granule_range_delegate,
    RMI_RETRY_LIMIT, //
};
use crate::rmi_smc::{
    RmiErrorKind,
    RmiStatus,
    RMI_GRANULE_RANGE_DELEGATE,
    RMI_GRANULE_RANGE_UNDELEGATE, //
};
use crate::support::{assert_ownership, host};

const MODES: [RangeMode; 2] = [RangeMode::OnePerCall, RangeMode::WholeRange];

fn g(pa: u64) -> Granule {
    Granule::new(pa).expect("aligned")
}

fn range(base: u64, count: u64) -> GranuleRange {
    GranuleRange::from_count(g(base), count).expect("range")
}

#[test]
fn granule_and_range_arithmetic_is_checked() {
    assert_eq!(Granule::new(0x1001), None);
    assert_eq!(Granule::new(1 << 52).map(Granule::pa), Some(1 << 52));
    assert_eq!(Granule::new((1 << 52) + GRANULE_SIZE), None);
    assert_eq!(g(1 << 52).checked_add(1), None);
    assert_eq!(GranuleRange::new(g(0x2000), g(0x1000)), None);
    let r = range(0x1000, 3);
    assert_eq!(r.count(), 3);
    assert_eq!(
        r.iter().collect::<Vec<_>>(),
        [g(0x1000), g(0x2000), g(0x3000)]
    );
    assert_eq!(r.from(g(0x5000)), None);
    assert_eq!(r.below(g(0x3000)), Some(range(0x1000, 2)));
    assert!(r.from(r.top()).is_some_and(|e| e.is_empty()));
}

#[test]
fn delegated_granule_round_trips_in_both_modes() {
    for mode in MODES {
        let h = host(Rmm::active());
        h.smc().set_range_mode(mode);
        let d = DelegatedGranule::alloc(&h).expect("delegate");
        let gr = d.granule();
        assert_eq!(h.smc().mem().state(gr), Some(GranuleState::Delegated));
        assert_ownership(&h, &BTreeSet::from([gr]));
        drop(d);
        assert_eq!(h.smc().mem().state(gr), Some(GranuleState::Ns));
        assert!(
            h.smc().mem().allocated().is_empty(),
            "page freed after undelegate"
        );
        assert_ownership(&h, &BTreeSet::new());
        assert_eq!(h.smc().calls(RMI_GRANULE_RANGE_UNDELEGATE), 1);
    }
}

#[test]
fn explicit_undelegate_returns_the_page() {
    let h = host(Rmm::active());
    let d = DelegatedGranule::alloc(&h).expect("delegate");
    let gr = d.granule();
    let page = d.undelegate().expect("undelegate");
    assert_eq!(crate::mem::FakePages::granule(&page), gr);
    assert!(
        crate::mem::FakePages::write_words(&page, 0, &[1]),
        "NS again"
    );
    drop(page);
    assert_ownership(&h, &BTreeSet::new());
}

#[test]
fn failed_undelegate_leaks_and_counts_the_page() {
    let h = host(Rmm::active());
    let d = DelegatedGranule::alloc(&h).expect("delegate");
    let gr = d.granule();
    h.smc()
        .fail_call(RMI_GRANULE_RANGE_UNDELEGATE, 0, RmiStatus::ErrorInput, 0);
    drop(d);
    assert_eq!(h.leaked(), 1);
    assert_eq!(h.smc().mem().state(gr), Some(GranuleState::Delegated));
    assert!(h.smc().mem().allocated().contains(&gr), "never freed");
    assert_ownership(&h, &BTreeSet::new());

    // The explicit path reports the error and leaks the same way.
    let d = DelegatedGranule::alloc(&h).expect("delegate");
    h.smc()
        .fail_call(RMI_GRANULE_RANGE_UNDELEGATE, 0, RmiStatus::ErrorGranule, 0);
    let e = d.undelegate().expect_err("injected");
    assert_eq!(e.status(), RmiStatus::ErrorGranule);
    assert_eq!(h.leaked(), 2);
    assert_ownership(&h, &BTreeSet::new());
}

#[test]
fn refused_delegate_frees_the_page() {
    let h = host(Rmm::active());
    h.smc()
        .fail_call(RMI_GRANULE_RANGE_DELEGATE, 0, RmiStatus::ErrorInput, 0);
    let e = DelegatedGranule::alloc(&h).err().expect("injected");
    assert_eq!(e, MemError::Rmi(crate::rmi_smc::rmi_result(1).unwrap_err()));
    assert!(h.smc().mem().allocated().is_empty());
    assert_eq!(h.leaked(), 0);
}

#[test]
fn malformed_delegate_answer_leaks_the_page() {
    // SUCCESS with x1 = 0: no progress reported, state unknown.
    let h = host(Rmm::active());
    h.smc()
        .fail_call(RMI_GRANULE_RANGE_DELEGATE, 0, RmiStatus::Success, 0);
    let e = DelegatedGranule::alloc(&h).err().expect("bad output");
    assert!(matches!(e, MemError::Rmi(e) if e.status() == RmiStatus::BadOutput));
    assert_eq!(h.leaked(), 1);
}

#[test]
fn delegate_before_activation_is_rmm_unavailable() {
    let h = host(Rmm::new());
    let e = DelegatedGranule::alloc(&h).err().expect("inactive");
    let MemError::Rmi(e) = e else { panic!("{e:?}") };
    assert_eq!(e.status(), RmiStatus::ErrorGlobal);
    assert_eq!(e.kind(), RmiErrorKind::RmmUnavailable);
    assert!(h.smc().mem().allocated().is_empty());
}

#[test]
fn range_delegate_covers_the_range_in_both_modes() {
    for mode in MODES {
        let rmm = Rmm::active();
        rmm.set_range_mode(mode);
        let r = range(DRAM_BASE, 40);
        delegate_range(&rmm, r, &mut |_| panic!("nothing stuck")).expect("delegate");
        let calls = rmm.calls(RMI_GRANULE_RANGE_DELEGATE);
        assert_eq!(calls, if mode == RangeMode::OnePerCall { 40 } else { 1 });
        assert!(r
            .iter()
            .all(|x| rmm.mem().state(x) == Some(GranuleState::Delegated)));
        undelegate_range(&rmm, r, &mut |_| panic!("nothing stuck")).expect("undelegate");
        assert!(r
            .iter()
            .all(|x| rmm.mem().state(x) == Some(GranuleState::Ns)));
    }
}

#[test]
fn partial_range_delegate_undelegates_exactly_what_it_delegated() {
    for mode in MODES {
        let rmm = Rmm::active();
        rmm.set_range_mode(mode);
        let r = range(DRAM_BASE, 10);
        // Granule 6 is delegated already (someone else's): the range stops there.
        let blocker = range(DRAM_BASE + 6 * GRANULE_SIZE, 1);
        delegate_range(&rmm, blocker, &mut |_| {}).expect("blocker");
        let e = delegate_range(&rmm, r, &mut |_| panic!("nothing stuck")).expect_err("blocked");
        assert_eq!(e.status(), RmiStatus::ErrorInput);
        for (i, x) in r.iter().enumerate() {
            let want = if i == 6 {
                GranuleState::Delegated
            } else {
                GranuleState::Ns
            };
            assert_eq!(rmm.mem().state(x), Some(want), "{mode:?} granule {i}");
        }
        // Exactly granules 0..6 were undelegated again, not the blocker.
        let undelegate_calls = rmm.calls(RMI_GRANULE_RANGE_UNDELEGATE);
        assert_eq!(
            undelegate_calls,
            if mode == RangeMode::OnePerCall { 6 } else { 1 }
        );
    }
}

#[test]
fn unwind_reports_granules_it_cannot_undelegate() {
    let rmm = Rmm::active();
    let r = range(DRAM_BASE, 8);
    // Fail at granule 5; then the unwind fails on granule 2.
    rmm.fail_call(RMI_GRANULE_RANGE_DELEGATE, 5, RmiStatus::ErrorInput, 0);
    rmm.fail_call(RMI_GRANULE_RANGE_UNDELEGATE, 2, RmiStatus::ErrorInput, 0);
    let mut stuck = Vec::new();
    delegate_range(&rmm, r, &mut |x| stuck.push(x)).expect_err("injected");
    assert_eq!(stuck, [g(DRAM_BASE + 2 * GRANULE_SIZE)]);
    for (i, x) in r.iter().enumerate() {
        let want = if i == 2 {
            GranuleState::Delegated
        } else {
            GranuleState::Ns
        };
        assert_eq!(rmm.mem().state(x), Some(want), "granule {i}");
    }
}

#[test]
fn undelegate_range_skips_a_refused_granule_and_goes_on() {
    for mode in MODES {
        let rmm = Rmm::active();
        rmm.set_range_mode(mode);
        let r = range(DRAM_BASE, 6);
        delegate_range(&rmm, r, &mut |_| {}).expect("delegate");
        rmm.fail_call(RMI_GRANULE_RANGE_UNDELEGATE, 0, RmiStatus::ErrorInput, 0);
        let mut stuck = Vec::new();
        let e = undelegate_range(&rmm, r, &mut |x| stuck.push(x)).expect_err("injected");
        assert_eq!(e.status(), RmiStatus::ErrorInput);
        assert_eq!(stuck, [g(DRAM_BASE)]);
        assert!(r
            .iter()
            .skip(1)
            .all(|x| rmm.mem().state(x) == Some(GranuleState::Ns)));
    }
}

#[test]
fn busy_and_blocked_are_retried_with_a_bound() {
    let rmm = Rmm::active();
    let one = range(DRAM_BASE, 1);
    rmm.fail_call(RMI_GRANULE_RANGE_DELEGATE, 0, RmiStatus::Busy, 0);
    rmm.fail_call(RMI_GRANULE_RANGE_DELEGATE, 0, RmiStatus::Blocked, 0);
    rmm.fail_call(RMI_GRANULE_RANGE_DELEGATE, 0, RmiStatus::Busy, 0);
    assert_eq!(granule_range_delegate(&rmm, one), Ok(one.top()));
    assert_eq!(rmm.calls(RMI_GRANULE_RANGE_DELEGATE), 4);

    // A contention that never ends gives up after the bound.
    let rmm = Rmm::active();
    for _ in 0..=RMI_RETRY_LIMIT + 5 {
        rmm.fail_call(RMI_GRANULE_RANGE_DELEGATE, 0, RmiStatus::Busy, 0);
    }
    let e = granule_range_delegate(&rmm, one).expect_err("bounded");
    assert_eq!(e.status(), RmiStatus::Busy);
    assert_eq!(e.kind(), RmiErrorKind::Busy);
    assert_eq!(rmm.calls(RMI_GRANULE_RANGE_DELEGATE), RMI_RETRY_LIMIT + 1);
    assert_eq!(rmm.mem().state(one.base()), Some(GranuleState::Ns));
}

/// The values TF-RMM sent on QEMU (rmi-abi.md section 4) decode as seen.
#[test]
fn sro_encodings_decode_as_tf_rmm_sends_them() {
    use crate::rmi_smc::{
        RmiAddrRangeDesc,
        RmiBlockSize,
        RmiDonateReq,
        RmiMemState, //
    };
    let req = RmiDonateReq(0x40);
    assert_eq!(req.block_size(), RmiBlockSize::Page);
    assert_eq!(req.block_count(), 16);
    assert!(!req.contiguous());
    assert_eq!(req.state(), RmiMemState::Delegated);
    assert_eq!(
        RmiDonateReq::new(RmiBlockSize::Page, 16, false, RmiMemState::Delegated),
        req
    );

    let desc = RmiAddrRangeDesc(0x7002_0040);
    assert_eq!(desc.base(), g(0x7002_0000));
    assert_eq!(desc.count(), 16);
    assert_eq!(desc.size(), RmiBlockSize::Page);
    assert_eq!(desc.state(), RmiMemState::Delegated);
    assert_eq!(desc.range(), Some(range(0x7002_0000, 16)));
    assert_eq!(
        RmiAddrRangeDesc::new(
            g(0x7002_0000),
            RmiBlockSize::Page,
            16,
            RmiMemState::Delegated
        ),
        Some(desc)
    );
    // Undelegated state is bit 63; blocks must be aligned to their size.
    let st = RmiAddrRangeDesc::new(
        g(0x20_0000),
        RmiBlockSize::L2Block,
        2,
        RmiMemState::Undelegated,
    )
    .expect("aligned");
    assert_eq!(st.0, (1 << 63) | 0x20_0000 | (2 << 2) | 1);
    assert_eq!(st.range().map(|r| r.count()), Some(1024));
    assert_eq!(
        RmiAddrRangeDesc::new(g(0x1000), RmiBlockSize::L2Block, 1, RmiMemState::Delegated),
        None
    );
    assert_eq!(
        RmiAddrRangeDesc::new(g(0), RmiBlockSize::Page, 1024, RmiMemState::Delegated),
        None
    );
    assert!(!RmiAddrRangeDesc(1 << 55).reserved_clear());
}

#[test]
fn delegated_block_round_trips_aligned_in_both_modes() {
    use crate::granule::DelegatedBlock;
    for mode in MODES {
        let h = host(Rmm::active());
        h.smc().set_range_mode(mode);
        let b = DelegatedBlock::alloc(&h, 4).expect("16 granules");
        let r = b.range();
        assert_eq!(r.count(), 16);
        assert!(r.base().is_aligned(16 * GRANULE_SIZE));
        assert!(r
            .iter()
            .all(|x| h.smc().mem().state(x) == Some(GranuleState::Delegated)));
        assert_ownership(&h, &r.iter().collect());
        drop(b);
        assert!(h.smc().mem().allocated().is_empty(), "block freed");
        assert_ownership(&h, &BTreeSet::new());
    }
}

#[test]
fn block_failures_unwind_or_leak_only_the_block() {
    use crate::granule::DelegatedBlock;
    // Delegation refused at granule 3: 0..3 undelegated, block freed.
    let h = host(Rmm::active());
    h.smc()
        .fail_call(RMI_GRANULE_RANGE_DELEGATE, 3, RmiStatus::ErrorInput, 0);
    assert!(DelegatedBlock::alloc(&h, 3).is_err());
    assert!(h.smc().mem().allocated().is_empty());
    assert_ownership(&h, &BTreeSet::new());

    // Undelegation refused for one granule at drop: the block is kept
    // (leaked), one granule counted, the rest back in the NS PAS.
    let h = host(Rmm::active());
    let b = DelegatedBlock::alloc(&h, 2).expect("block");
    h.smc()
        .fail_call(RMI_GRANULE_RANGE_UNDELEGATE, 1, RmiStatus::ErrorInput, 0);
    drop(b);
    assert_eq!(h.leaked(), 1);
    assert_eq!(h.smc().mem().allocated().len(), 4, "never freed");
    assert_ownership(&h, &BTreeSet::new());

    // Out of memory.
    let h = host(Rmm::active());
    h.smc().mem_mut().set_alloc_budget(Some(7));
    assert_eq!(DelegatedBlock::alloc(&h, 3).err(), Some(MemError::NoMemory));
}
