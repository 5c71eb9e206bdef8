// SPDX-License-Identifier: GPL-2.0

//! Delegated guest pages: delegated only while referenced, the reference
//! dropped only once NS again, kept forever when undelegation fails.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::addr::Granule;
use crate::data::{
    DelegatedGuestPage,
    GuestPageRef,
    GuestPages, //
};
use crate::granule::PageSource;
use crate::mem::{
    FakePages,
    GranuleState, //
};
use crate::model::Rmm;
use crate::rmi_smc::{
    RmiStatus,
    RMI_GRANULE_RANGE_DELEGATE,
    RMI_GRANULE_RANGE_UNDELEGATE, //
};
use crate::support::{
    host,
    TestRmi, //
};

/// guest_memfd as the model sees it: pages with reference counts, which a
/// hole punch may free only when unreferenced and NS.
#[derive(Default)]
struct FakeGuestMemory {
    refs: RefCell<BTreeMap<Granule, u32>>,
}

impl GuestPages for FakeGuestMemory {
    fn get(&self, g: Granule) {
        *self.refs.borrow_mut().entry(g).or_default() += 1;
    }

    fn put(&self, g: Granule) {
        let mut refs = self.refs.borrow_mut();
        let n = refs.get_mut(&g).expect("put without get");
        *n -= 1;
        if *n == 0 {
            refs.remove(&g);
        }
    }
}

impl FakeGuestMemory {
    fn refs(&self, g: Granule) -> u32 {
        self.refs.borrow().get(&g).copied().unwrap_or(0)
    }

    /// A hole punch: frees the page if nothing references it. Freeing a
    /// page in the Realm PAS is what must never happen.
    fn punch(&self, h: &TestRmi, g: Granule) -> bool {
        if self.refs(g) != 0 {
            return false;
        }
        assert_eq!(
            h.smc().mem().state(g),
            Some(GranuleState::Ns),
            "freed while delegated"
        );
        true
    }
}

/// A guest page: an NS page from the model's memory (kept by the test).
fn guest_page(h: &TestRmi) -> (<FakePages as PageSource>::Page, Granule) {
    let page = h.pages().alloc().expect("page");
    let g = FakePages::granule(&page);
    (page, g)
}

/// Delegates the guest page `g` with a reference from `gmem`.
fn delegated<'r, 'g>(
    h: &'r TestRmi,
    gmem: &'g FakeGuestMemory,
    g: Granule,
) -> DelegatedGuestPage<'r, 'g, Rmm, FakePages, FakeGuestMemory> {
    DelegatedGuestPage::delegate(h, GuestPageRef::get(gmem, g))
        .unwrap_or_else(|(_, e)| panic!("{e:?}"))
}

#[test]
fn delegated_only_while_referenced_and_given_back_ns() {
    let h = host(Rmm::active());
    let gmem = FakeGuestMemory::default();
    let (_page, g) = guest_page(&h);
    let d = delegated(&h, &gmem, g);
    assert_eq!(h.smc().mem().state(g), Some(GranuleState::Delegated));
    assert_eq!(gmem.refs(g), 1);
    assert!(!gmem.punch(&h, g), "a hole punch cannot free it now");
    drop(d);
    assert_eq!(h.smc().mem().state(g), Some(GranuleState::Ns));
    assert_eq!(gmem.refs(g), 0);
    assert!(gmem.punch(&h, g));
    assert_eq!(h.leaked(), 0);
}

#[test]
fn a_refused_delegation_gives_the_reference_back() {
    let h = host(Rmm::active());
    let gmem = FakeGuestMemory::default();
    let (_page, g) = guest_page(&h);
    h.smc()
        .fail_call(RMI_GRANULE_RANGE_DELEGATE, 0, RmiStatus::ErrorInput, 0);
    let (back, e) = match DelegatedGuestPage::delegate(&h, GuestPageRef::get(&gmem, g)) {
        Ok(_) => panic!("delegation must fail"),
        Err(failed) => failed,
    };
    assert_eq!(e.status(), RmiStatus::ErrorInput);
    assert_eq!(gmem.refs(g), 1, "the caller still holds the reference");
    drop(back);
    assert_eq!(gmem.refs(g), 0);
    assert_eq!(h.smc().mem().state(g), Some(GranuleState::Ns));
}

#[test]
fn a_refused_undelegation_keeps_the_reference_forever() {
    let h = host(Rmm::active());
    let gmem = FakeGuestMemory::default();
    let (_page, g) = guest_page(&h);
    let d = delegated(&h, &gmem, g);
    h.smc()
        .fail_call(RMI_GRANULE_RANGE_UNDELEGATE, 0, RmiStatus::ErrorInput, 0);
    drop(d);
    assert_eq!(h.leaked(), 1);
    assert_eq!(gmem.refs(g), 1, "leaked: the reference stays");
    assert!(!gmem.punch(&h, g), "so guest_memfd never frees it");
    assert!(h.smc().mem().violations().is_empty());
}

#[test]
fn a_mapped_page_keeps_its_reference_until_taken_back() {
    let h = host(Rmm::active());
    let gmem = FakeGuestMemory::default();
    let (_page, g) = guest_page(&h);
    let d = delegated(&h, &gmem, g);
    let mapped = d.into_mapping();
    assert_eq!(mapped.0, g);
    assert_eq!(gmem.refs(g), 1, "the mapping owns it");
    assert_eq!(h.smc().mem().state(g), Some(GranuleState::Delegated));
    // SAFETY: `mapped` came from `into_mapping` with `gmem`; taken back once.
    let back = unsafe { DelegatedGuestPage::from_unmapped(&h, &gmem, mapped) };
    drop(back);
    assert_eq!(gmem.refs(g), 0);
    assert_eq!(h.smc().mem().state(g), Some(GranuleState::Ns));
    assert_eq!(h.leaked(), 0);
}
