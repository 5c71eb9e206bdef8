// SPDX-License-Identifier: GPL-2.0

//! Test support: the host side over the model, and the ownership check
//! every test ends with.

use std::collections::BTreeSet;

use crate::addr::Granule;
use crate::granule::{
    DelegatedGranule,
    GranuleSet,
    Rmi, //
};
use crate::mem::FakePages;
use crate::model::{
    Phase,
    Rmm, //
};
use crate::rmi_smc::{
    RmiFid,
    RmiMemState,
    RmiStatus, //
};

/// The host's RMI endpoint over the model.
pub(crate) type TestRmi = Rmi<Rmm, FakePages>;

/// A delegated granule of the test host.
pub(crate) type TestGranule<'r> = DelegatedGranule<'r, Rmm, FakePages>;

/// The host's RMI endpoint over `rmm` and its memory.
pub(crate) fn host(rmm: Rmm) -> TestRmi {
    let pages = rmm.pages();
    Rmi::new(rmm, pages)
}

/// A donation ledger over a `Vec`, which can be told to run out of memory.
#[derive(Default)]
pub(crate) struct Ledger<'r> {
    pub(crate) granules: Vec<TestGranule<'r>>,
    /// Refuse every `reserve`, as a failed `KVec` growth.
    pub(crate) full: bool,
}

impl<'r> GranuleSet<'r, Rmm, FakePages> for Ledger<'r> {
    fn reserve(&mut self, n: usize) -> bool {
        if self.full {
            return false;
        }
        self.granules.reserve(n);
        true
    }

    fn push(&mut self, g: TestGranule<'r>) {
        self.granules.push(g);
    }

    fn take(&mut self, g: Granule) -> Option<TestGranule<'r>> {
        let i = self.granules.iter().position(|d| d.granule() == g)?;
        Some(self.granules.swap_remove(i))
    }

    fn len(&self) -> usize {
        self.granules.len()
    }
}

impl Ledger<'_> {
    /// The granules recorded.
    pub(crate) fn set(&self) -> BTreeSet<Granule> {
        self.granules.iter().map(TestGranule::granule).collect()
    }
}

/// The ownership invariant: the host never freed or touched a page in the
/// Realm PAS; every granule in the Realm PAS is either owned by the host
/// (`owned`) or leaked, and the leak counter counts exactly those; leaked
/// pages were never freed.
pub(crate) fn assert_ownership(h: &TestRmi, owned: &BTreeSet<Granule>) {
    let mem = h.smc().mem();
    assert_eq!(mem.violations(), &[], "host broke the PAS rules");
    let realm = mem.realm_granules();
    assert!(
        owned.is_subset(&realm),
        "host thinks it owns granules the RMM has as NS: {:?}",
        owned.difference(&realm).collect::<Vec<_>>()
    );
    let stranded: BTreeSet<_> = realm.difference(owned).copied().collect();
    assert_eq!(
        stranded.len() as u64,
        h.leaked(),
        "realm granules nobody owns: {stranded:?}"
    );
    assert!(
        stranded.is_subset(mem.allocated()),
        "a stranded granule went back to the allocator"
    );
}

/// A REC_CREATE-shaped operation: donate `n` granules, continue, finish.
pub(crate) fn create_phases(n: u64, state: RmiMemState, can_cancel: bool) -> Vec<Phase> {
    vec![
        Phase::Donate {
            granules: n,
            state,
            can_cancel,
        },
        Phase::Continue { can_cancel },
        Phase::Finish,
    ]
}

/// A REC_DESTROY-shaped operation: reclaim what objects hold, finish.
pub(crate) fn destroy_phases(undelegated: bool) -> Vec<Phase> {
    vec![
        Phase::Reclaim {
            objects: true,
            undelegated,
        },
        Phase::Continue { can_cancel: false },
        Phase::Finish,
    ]
}

/// Everything is back: nothing delegated, allocated or leaked, and no
/// guest page left.
pub(crate) fn assert_all_back(h: &TestRmi) {
    assert_ownership(h, &BTreeSet::new());
    assert_eq!(h.leaked(), 0);
    assert_eq!(h.smc().mem().guest_pages(), 0, "guest pages left");
    assert!(h.smc().mem().allocated().is_empty(), "all freed");
}

/// Fault injection over guest memory: `scenario` runs on a fresh host from
/// `host_of`, once clean, then once per call it makes of each of `fids`,
/// that call failed (`ERROR_INPUT`, then `ERROR_RTT` with index 3). After
/// each run nothing was freed or touched while delegated, ownership is
/// exact, and the guest pages left are at most the leaked ones. Returns
/// the number of faulty runs.
pub(crate) fn fail_each_call(
    fids: &[RmiFid],
    host_of: impl Fn() -> TestRmi,
    scenario: impl Fn(&TestRmi),
) -> usize {
    // A clean run first: how many calls of each there are.
    let clean = host_of();
    scenario(&clean);
    assert_all_back(&clean);
    let mut injected = 0;
    for &fid in fids {
        let total = clean.smc().calls(fid);
        assert!(total > 0, "{fid:?} is exercised");
        for nth in 0..total {
            for status in [RmiStatus::ErrorInput, RmiStatus::ErrorRtt] {
                let f = host_of();
                f.smc().fail_call(fid, nth, status, 3);
                scenario(&f);
                assert_eq!(f.smc().injected_pending(), 0, "{fid:?} #{nth} was reached");
                injected += 1;
                assert_ownership(&f, &BTreeSet::new());
                let mem = f.smc().mem();
                assert_eq!(mem.violations(), &[], "{fid:?} #{nth} {status:?}");
                // Guest pages still around are exactly the leaked ones.
                assert!(
                    mem.guest_pages() as u64 <= f.leaked(),
                    "{fid:?} #{nth} {status:?}: {} guest pages kept, {} leaked",
                    mem.guest_pages(),
                    f.leaked()
                );
            }
        }
    }
    injected
}
