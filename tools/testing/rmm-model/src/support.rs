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
use crate::rmi_smc::RmiMemState;

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
