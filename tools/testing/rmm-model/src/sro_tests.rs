// SPDX-License-Identifier: GPL-2.0

//! The SRO loop against the model's operations: donation (delegated and
//! undelegated), reclaim, continue, cancel, running out of memory, and a
//! fault injected at every call.

use std::collections::BTreeSet;

use crate::mem::GranuleState;
use crate::model::{
    Phase,
    Rmm, //
};
use crate::rmi_smc::{
    RmiErrorKind,
    RmiFid,
    RmiMemState,
    RmiStatus,
    SmcRegs,
    RMI_GRANULE_RANGE_DELEGATE,
    RMI_GRANULE_RANGE_UNDELEGATE,
    RMI_OP_CANCEL,
    RMI_OP_CONTINUE,
    RMI_OP_MEM_DONATE,
    RMI_OP_MEM_RECLAIM,
    RMI_REC_CREATE,
    RMI_REC_DESTROY, //
};
use crate::sro::{
    run,
    SroError, //
};
use crate::support::{
    assert_ownership,
    create_phases as create,
    destroy_phases as destroy,
    host,
    Ledger,
    TestRmi, //
};

fn call(fid: RmiFid) -> SmcRegs {
    SmcRegs::new(fid, [0; 6])
}

/// Creates then destroys an object of `n` granules donated in `state`.
fn create_and_destroy(h: &TestRmi, n: u64, state: RmiMemState, undelegated: bool) {
    let mut ledger = Ledger::default();
    h.smc().script(RMI_REC_CREATE, create(n, state, false));
    run(h, &call(RMI_REC_CREATE), &mut ledger).expect("create");
    assert_eq!(ledger.granules.len() as u64, n);
    let held: BTreeSet<_> = h.smc().held().0.into_iter().collect();
    assert_eq!(held, ledger.set(), "host records what the RMM holds");
    assert!(held
        .iter()
        .all(|g| h.smc().mem().state(*g) == Some(GranuleState::InUse)));
    assert_ownership(h, &ledger.set());

    h.smc().script(RMI_REC_DESTROY, destroy(undelegated));
    run(h, &call(RMI_REC_DESTROY), &mut ledger).expect("destroy");
    assert!(ledger.granules.is_empty());
    assert_ownership(h, &BTreeSet::new());
    assert!(h.smc().mem().allocated().is_empty(), "all pages freed");
    assert_eq!(h.smc().ops_in_progress(), 0);
}

#[test]
fn donate_continue_reclaim_as_rec_create_and_destroy() {
    let h = host(Rmm::active());
    create_and_destroy(&h, 16, RmiMemState::Delegated, false);
    assert_eq!(h.smc().calls(RMI_OP_MEM_DONATE), 1);
    assert_eq!(h.smc().calls(RMI_OP_MEM_RECLAIM), 1);
    assert_eq!(h.smc().calls(RMI_OP_CONTINUE), 2);
    // 16 delegated by the host, 16 undelegated after the reclaim.
    assert_eq!(h.smc().calls(RMI_GRANULE_RANGE_DELEGATE), 16);
    assert_eq!(h.smc().calls(RMI_GRANULE_RANGE_UNDELEGATE), 16);
}

#[test]
fn undelegated_donations_and_undelegated_reclaims() {
    let h = host(Rmm::active());
    create_and_destroy(&h, 5, RmiMemState::Undelegated, true);
    // The RMM delegated and undelegated them itself.
    assert_eq!(h.smc().calls(RMI_GRANULE_RANGE_DELEGATE), 0);
    assert_eq!(h.smc().calls(RMI_GRANULE_RANGE_UNDELEGATE), 0);
}

#[test]
fn requests_above_one_list_take_several_donations() {
    let h = host(Rmm::active());
    create_and_destroy(&h, 700, RmiMemState::Delegated, false);
    assert_eq!(h.smc().calls(RMI_OP_MEM_DONATE), 2);
    assert_eq!(h.smc().calls(RMI_OP_MEM_RECLAIM), 2);
}

#[test]
fn out_of_pages_midway_donates_what_it_has_then_cancels() {
    let h = host(Rmm::active());
    // The list page and 5 donation pages, then nothing.
    h.smc().mem_mut().set_alloc_budget(Some(6));
    let mut ledger = Ledger::default();
    h.smc()
        .script(RMI_REC_CREATE, create(16, RmiMemState::Delegated, true));
    let e = run(&h, &call(RMI_REC_CREATE), &mut ledger).expect_err("no memory");
    assert_eq!(e, SroError::NoMemory);
    assert_eq!(h.smc().calls(RMI_OP_MEM_DONATE), 1, "partial donation of 5");
    assert_eq!(h.smc().calls(RMI_OP_CANCEL), 1);
    assert_eq!(h.smc().calls(RMI_OP_MEM_RECLAIM), 1, "the 5 came back");
    assert!(ledger.granules.is_empty());
    assert_eq!(h.smc().ops_in_progress(), 0);
    h.smc().mem_mut().set_alloc_budget(None);
    assert_ownership(&h, &BTreeSet::new());
    assert!(h.smc().mem().allocated().is_empty());
}

#[test]
fn full_ledger_cancels_before_donating() {
    let h = host(Rmm::active());
    let mut ledger = Ledger {
        full: true,
        ..Ledger::default()
    };
    h.smc()
        .script(RMI_REC_CREATE, create(4, RmiMemState::Delegated, true));
    assert_eq!(
        run(&h, &call(RMI_REC_CREATE), &mut ledger),
        Err(SroError::NoMemory)
    );
    assert_eq!(h.smc().calls(RMI_OP_MEM_DONATE), 0);
    assert_eq!(h.smc().calls(RMI_OP_CANCEL), 1);
    assert_eq!(h.smc().ops_in_progress(), 0);
    assert_ownership(&h, &BTreeSet::new());
}

#[test]
fn uncancellable_operation_keeps_its_granules_recorded() {
    let h = host(Rmm::active());
    h.smc().mem_mut().set_alloc_budget(Some(4));
    let mut ledger = Ledger::default();
    h.smc()
        .script(RMI_REC_CREATE, create(16, RmiMemState::Delegated, false));
    let e = run(&h, &call(RMI_REC_CREATE), &mut ledger).expect_err("no memory");
    assert_eq!(e, SroError::NoMemory);
    assert_eq!(h.smc().calls(RMI_OP_CANCEL), 0);
    assert_eq!(h.smc().ops_in_progress(), 1, "left pending in the RMM");
    assert_eq!(ledger.granules.len(), 3, "the donated ones stay recorded");
    assert_ownership(&h, &ledger.set());
    // Dropping the owner tries to undelegate granules the RMM still uses:
    // refused, so they are leaked, never freed.
    drop(ledger);
    assert_eq!(h.leaked(), 3);
    assert_ownership(&h, &BTreeSet::new());
}

#[test]
fn command_error_is_returned_with_nothing_donated() {
    let h = host(Rmm::active());
    let mut ledger = Ledger::default();
    h.smc().script(
        RMI_REC_CREATE,
        vec![
            Phase::Continue { can_cancel: false },
            Phase::Fail(RmiStatus::ErrorRealm),
        ],
    );
    let e = run(&h, &call(RMI_REC_CREATE), &mut ledger).expect_err("fails");
    let SroError::Rmi(e) = e else { panic!("{e:?}") };
    assert_eq!(e.status(), RmiStatus::ErrorRealm);
    assert_eq!(e.kind(), RmiErrorKind::Failed);
    assert!(h.smc().mem().allocated().is_empty(), "list page freed");
}

#[test]
fn an_operation_that_never_ends_is_bounded() {
    let h = host(Rmm::active());
    let mut ledger = Ledger::default();
    let phases = vec![Phase::Continue { can_cancel: false }; 70_000];
    h.smc().script(RMI_REC_CREATE, phases);
    let e = run(&h, &call(RMI_REC_CREATE), &mut ledger).expect_err("bounded");
    assert!(matches!(e, SroError::Rmi(e) if e.status() == RmiStatus::BadOutput));
}

/// Every call of a create + destroy cycle, failed in turn: the ownership
/// invariant holds, the leak counter equals the undelegate failures that
/// hit a granule, and the error reaching the caller is the injected one.
#[test]
fn a_fault_at_every_call_keeps_ownership_exact() {
    let fids = [
        RMI_REC_CREATE,
        RMI_GRANULE_RANGE_DELEGATE,
        RMI_OP_MEM_DONATE,
        RMI_OP_CONTINUE,
        RMI_REC_DESTROY,
        RMI_OP_MEM_RECLAIM,
        RMI_GRANULE_RANGE_UNDELEGATE,
    ];
    for cancel in [false, true] {
        for fid in fids {
            for nth in 0..6 {
                let h = host(Rmm::active());
                h.smc().fail_call(fid, nth, RmiStatus::ErrorInput, 0);
                let mut ledger = Ledger::default();
                h.smc()
                    .script(RMI_REC_CREATE, create(4, RmiMemState::Delegated, cancel));
                let created = run(&h, &call(RMI_REC_CREATE), &mut ledger);
                assert_ownership(&h, &ledger.set());
                let destroyed = if created.is_ok() {
                    h.smc().script(RMI_REC_DESTROY, destroy(false));
                    Some(run(&h, &call(RMI_REC_DESTROY), &mut ledger))
                } else {
                    None
                };
                assert_ownership(&h, &ledger.set());
                let hit = h.smc().injected_pending() == 0;
                let ctx = format!("cancel {cancel} fid {fid:?} nth {nth}");
                if !hit {
                    assert!(created.is_ok(), "{ctx}");
                    assert!(destroyed.is_some_and(|d| d.is_ok()), "{ctx}");
                    continue;
                }
                let failed = match (&created, &destroyed) {
                    (Err(e), _) | (Ok(_), Some(Err(e))) => Some(*e),
                    _ => None,
                };
                if fid == RMI_GRANULE_RANGE_DELEGATE && nth > 0 {
                    // A page that could not be delegated after others were:
                    // the host donates those, the RMM asks again for the
                    // rest, and the operation completes.
                    assert!(failed.is_none(), "{ctx}: {failed:?}");
                    assert_eq!(h.leaked(), 0, "{ctx}");
                } else if fid == RMI_GRANULE_RANGE_UNDELEGATE {
                    // Undelegating a reclaimed granule failed: leaked.
                    assert_eq!(h.leaked(), 1, "{ctx}");
                    assert!(failed.is_none(), "{ctx}: {failed:?}");
                } else {
                    assert_eq!(h.leaked(), 0, "{ctx}");
                    let e = failed.unwrap_or_else(|| panic!("{ctx}: no error"));
                    assert!(
                        matches!(e, SroError::Rmi(e) if e.status() == RmiStatus::ErrorInput),
                        "{ctx}: {e:?}"
                    );
                }
            }
        }
    }
}
