// SPDX-License-Identifier: GPL-2.0

//! Realm memory: populating guest pages (RTTs on demand), RIPAS RAM at
//! activation, unmapping (hole punch, teardown), with faults injected at
//! every RMM call: a guest page is never freed while delegated, and every
//! page the host cannot get back is leaked and counted.

use std::collections::BTreeSet;

use crate::addr::{
    Granule,
    Ipa,
    RttLevel,
    GRANULE_SIZE, //
};
use crate::granule::PageSource;
use crate::mem::{
    FakePage,
    FakePages,
    GranuleState, //
};
use crate::memory::{
    check_memslot,
    unmap_protected,
    SlotChange,
    SlotLayout,
    SlotRefusal, //
};
use crate::model::Rmm;
use crate::realm::{
    realm_shape,
    PopulatePageError,
    Realm,
    RealmError,
    RealmOptions,
    RealmState, //
};
use crate::realm_tests::{
    cfg,
    qemu, //
};
use crate::rmi_smc::{
    RmiFid,
    RMI_GRANULE_RANGE_DELEGATE,
    RMI_GRANULE_RANGE_UNDELEGATE,
    RMI_REALM_TERMINATE,
    RMI_RTT_CREATE,
    RMI_RTT_DATA_MAP_INIT,
    RMI_RTT_DATA_UNMAP,
    RMI_RTT_DESTROY,
    RMI_RTT_INIT_RIPAS, //
};
use crate::support::{
    assert_all_back,
    fail_each_call,
    host,
    Ledger,
    TestRmi, //
};

type TestRealm<'h> = Realm<'h, Rmm, FakePages, Ledger<'h>>;

const MIB: u64 = 1 << 20;

fn ipa(a: u64) -> Ipa {
    Ipa::new(a).expect("ipa")
}

/// A NEW 40-bit realm on `h`.
fn created(h: &TestRmi) -> TestRealm<'_> {
    let shape = realm_shape(&qemu(), cfg(40, false)).expect("shape");
    let mut realm = Realm::new(h, shape, Ledger::default());
    realm
        .create(&qemu(), RealmOptions::default())
        .expect("create");
    realm
}

/// A source page for populate: NS, kept by the test.
fn source(h: &TestRmi) -> (FakePage, Granule) {
    let page = h.pages().alloc().expect("source");
    let g = FakePages::granule(&page);
    (page, g)
}

/// Guest IPAs the tests populate: a run across a level-3 table boundary,
/// a lone page in another 1 GiB region, and one far up the protected half.
fn layout() -> Vec<u64> {
    let mut v: Vec<u64> = (0..4)
        .map(|i| 2 * MIB - 2 * GRANULE_SIZE + i * GRANULE_SIZE)
        .collect();
    v.push((1 << 30) + 3 * MIB + 5 * GRANULE_SIZE);
    v.push((1 << 39) - GRANULE_SIZE);
    v
}

#[test]
fn populate_maps_each_page_once_with_rtts_on_demand() {
    let h = host(Rmm::active());
    let (src_page, src) = source(&h);
    let mut realm = created(&h);
    let rd = realm.rd().expect("rd");
    let ipas = layout();
    let pages = h.pages().guest_alloc(ipas.len()).expect("guest pages");
    for (a, g) in ipas.iter().zip(&pages) {
        realm
            .populate_page(*g, ipa(*a), src, true)
            .expect("populate");
    }
    let mapped: Vec<(u64, Granule)> = ipas.iter().copied().zip(pages.iter().copied()).collect();
    assert_eq!(h.smc().realm_data(rd), mapped);
    for g in &pages {
        let p = h.smc().mem().guest_page(*g).expect("guest page");
        assert_eq!(p.refs, 1, "the mapping holds one reference");
        assert_eq!(h.smc().mem().state(*g), Some(GranuleState::InUse));
    }
    // Leaf tables exist for exactly the populated 2 MiB regions.
    let leaf = RttLevel::new(3).expect("leaf");
    let leaves: BTreeSet<u64> = h
        .smc()
        .realm_rtts(rd)
        .iter()
        .filter(|(l, _, _)| *l == leaf)
        .map(|(_, base, _)| *base)
        .collect();
    let want: BTreeSet<u64> = ipas.iter().map(|a| a & !(2 * MIB - 1)).collect();
    assert_eq!(leaves, want);
    // Populated pages have RIPAS RAM.
    assert!(h
        .smc()
        .realm_ram(rd)
        .iter()
        .any(|(s, e)| *s <= ipas[0] && *e > ipas[3]));

    // The same IPA again, or the same page elsewhere: refused, unchanged.
    let more = h.pages().guest_alloc(1).expect("page")[0];
    assert_eq!(
        realm.populate_page(more, ipa(ipas[0]), src, false),
        Err(PopulatePageError::Mapped)
    );
    assert_eq!(
        realm.populate_page(pages[0], ipa(8 * MIB), src, false),
        Err(PopulatePageError::Mapped)
    );
    assert_eq!(h.smc().mem().guest_page(more).map(|p| p.refs), Some(0));
    assert_eq!(h.smc().realm_data(rd), mapped);
    assert_eq!(realm.state(), RealmState::New);

    // Only before the first run.
    realm.activate().expect("activate");
    assert_eq!(
        realm.populate_page(more, ipa(8 * MIB), src, false),
        Err(PopulatePageError::Realm(RealmError::WrongState(
            RealmState::Active
        )))
    );

    // Teardown unmaps the data first, so the RTTs can go.
    realm.teardown_stage2(&mut || {}).expect("teardown");
    for g in pages.iter().chain([&more]) {
        assert_eq!(h.smc().mem().guest_page(*g).map(|p| p.refs), Some(0));
        h.pages().guest_punch(*g);
    }
    realm.destroy(&mut || {}).expect("destroy");
    drop(realm);
    drop(src_page);
    assert_all_back(&h);
}

#[test]
fn init_ripas_covers_the_range_with_blocks_where_they_fit() {
    let h = host(Rmm::active());
    let (src_page, src) = source(&h);
    let mut realm = created(&h);
    let rd = realm.rd().expect("rd");
    // 1 GiB - 8 KiB .. 3 GiB + 2 MiB + 12 KiB: level-1 blocks in the middle,
    // level-2 and level-3 entries at the ends.
    let (base, top) = (
        (1 << 30) - 2 * GRANULE_SIZE,
        (3 << 30) + 2 * MIB + 3 * GRANULE_SIZE,
    );
    assert_eq!(realm.init_ripas(ipa(base), ipa(top), &mut || {}), Ok(0));
    assert_eq!(h.smc().realm_ram(rd), vec![(base, top)]);
    // Tables only where a block does not fit: one level-2 and one level-3
    // table at each end.
    let tables: Vec<(i8, u64)> = h
        .smc()
        .realm_rtts(rd)
        .iter()
        .map(|(l, b, _)| (l.get(), *b))
        .collect();
    assert_eq!(
        tables,
        vec![
            (2, 0),
            (2, 3 << 30),
            (3, (1 << 30) - 2 * MIB),
            (3, (3 << 30) | (2 * MIB))
        ]
    );

    // A populated page that was unmapped (hole punch) is DESTROYED: left
    // as it is, and counted.
    let g = h.pages().guest_alloc(1).expect("page")[0];
    let at = 64 * MIB;
    realm
        .populate_page(g, ipa(at), src, false)
        .expect("populate");
    let done = unmap_protected(&h, rd, ipa(0), ipa(1 << 39), &mut || {}).expect("unmap");
    assert_eq!((done.pages, done.leaked), (1, 0));
    assert_eq!(h.smc().realm_destroyed(rd), vec![at]);
    assert_eq!(
        realm.init_ripas(ipa(at - MIB), ipa(at + MIB), &mut || {}),
        Ok(1)
    );
    assert!(h.smc().realm_destroyed(rd) == vec![at]);

    realm.activate().expect("activate");
    assert_eq!(
        realm.init_ripas(ipa(0), ipa(MIB), &mut || {}),
        Err(RealmError::WrongState(RealmState::Active))
    );
    h.pages().guest_punch(g);
    drop(realm);
    drop(src_page);
    assert_all_back(&h);
}

#[test]
fn unmap_gives_back_only_the_range_and_skips_empty_regions() {
    let h = host(Rmm::active());
    let (src_page, src) = source(&h);
    let mut realm = created(&h);
    let rd = realm.rd().expect("rd");
    let ipas = layout();
    // Non-contiguous pages: every other one of a fresh run.
    let all = h.pages().guest_alloc(2 * ipas.len()).expect("pages");
    let pages: Vec<Granule> = all.iter().step_by(2).copied().collect();
    for g in all.iter().skip(1).step_by(2) {
        h.pages().guest_punch(*g);
    }
    for (a, g) in ipas.iter().zip(&pages) {
        realm
            .populate_page(*g, ipa(*a), src, true)
            .expect("populate");
    }
    // A hole punch of the middle two pages of the first run.
    let (lo, hi) = (ipas[1], ipas[2] + GRANULE_SIZE);
    let unmaps = h.smc().calls(RMI_RTT_DATA_UNMAP);
    let done = unmap_protected(&h, rd, ipa(lo), ipa(hi), &mut || {}).expect("unmap");
    assert_eq!((done.pages, done.leaked), (2, 0));
    assert_eq!(
        h.smc().calls(RMI_RTT_DATA_UNMAP) - unmaps,
        2,
        "one per PA run"
    );
    for g in &pages[1..3] {
        h.pages().guest_punch(*g);
    }
    assert_eq!(h.smc().realm_data(rd).len(), ipas.len() - 2);

    // The whole protected half: regions without tables are skipped a
    // block at a time, not a page at a time.
    let mut rescheds = 0;
    let unmaps = h.smc().calls(RMI_RTT_DATA_UNMAP);
    let done = unmap_protected(&h, rd, ipa(0), ipa(1 << 39), &mut || rescheds += 1).expect("all");
    assert_eq!((done.pages, done.leaked), (ipas.len() as u64 - 2, 0));
    let calls = h.smc().calls(RMI_RTT_DATA_UNMAP) - unmaps;
    assert!(calls < 2000, "{calls} calls to unmap 512 GiB");
    assert_eq!(rescheds, calls, "a resched step after every call");
    assert!(h.smc().realm_data(rd).is_empty());
    for g in pages.iter().skip(3).chain(&pages[..1]) {
        h.pages().guest_punch(*g);
    }
    drop(realm);
    drop(src_page);
    assert_all_back(&h);
}

/// A realm's whole life with guest memory: populate, RIPAS, a hole punch,
/// activation, teardown, and the file's release; errors are ignored (the
/// caller injects them and checks what is left).
fn scenario(h: &TestRmi) {
    let (src_page, src) = source(h);
    let shape = realm_shape(&qemu(), cfg(40, false)).expect("shape");
    let mut realm = Realm::new(h, shape, Ledger::default());
    let ipas = layout();
    let pages = h.pages().guest_alloc(ipas.len()).expect("pages");
    if realm.create(&qemu(), RealmOptions::default()).is_ok() {
        for (a, g) in ipas.iter().zip(&pages) {
            let _ = realm.populate_page(*g, ipa(*a), src, true);
        }
        let _ = realm.init_ripas(ipa(0), ipa(8 * MIB), &mut || {});
        // A hole punch of the first page: unmap, then truncate.
        if let Some(rd) = realm.rd() {
            let _ = unmap_protected(h, rd, ipa(ipas[0]), ipa(ipas[0] + GRANULE_SIZE), &mut || {});
        }
        h.pages().guest_punch(pages[0]);
        let _ = realm.activate();
        let _ = realm.teardown_stage2(&mut || {});
        let _ = realm.destroy(&mut || {});
    }
    drop(realm);
    // The file goes: guest_memfd truncates everything.
    for g in &pages {
        h.pages().guest_punch(*g);
    }
    drop(src_page);
}

/// The RMM fails call `nth` (from 0) of `fid`, once: whatever happens, no page
/// is freed or touched while delegated, and a guest page survives its hole
/// punch only if it is leaked (its reference kept, counted).
#[test]
fn faults_at_every_call_site_never_free_a_delegated_page() {
    let fids: [RmiFid; 8] = [
        RMI_GRANULE_RANGE_DELEGATE,
        RMI_GRANULE_RANGE_UNDELEGATE,
        RMI_RTT_CREATE,
        RMI_RTT_DATA_MAP_INIT,
        RMI_RTT_INIT_RIPAS,
        RMI_RTT_DATA_UNMAP,
        RMI_REALM_TERMINATE,
        RMI_RTT_DESTROY,
    ];
    let injected = fail_each_call(&fids, || host(Rmm::active()), scenario);
    assert!(injected > 50, "{injected} runs");
}

#[test]
fn memslots_must_be_protected_and_not_log_dirty_pages() {
    let slot = |base_gfn: u64, npages: u64, dirty_log: bool| SlotLayout {
        base_gfn,
        npages,
        dirty_log,
    };
    // 40 bits: the protected half ends at gfn 2^27.
    let top = 1u64 << 27;
    let cases = [
        (SlotChange::Create, Some(slot(0, 1024, false)), Ok(())),
        (SlotChange::Create, Some(slot(top - 16, 16, false)), Ok(())),
        (
            SlotChange::Create,
            Some(slot(top - 16, 17, false)),
            Err(SlotRefusal::NotProtected),
        ),
        (
            SlotChange::Create,
            Some(slot(top, 1, false)),
            Err(SlotRefusal::NotProtected),
        ),
        (
            SlotChange::Move,
            Some(slot(u64::MAX, 2, false)),
            Err(SlotRefusal::NotProtected),
        ),
        (SlotChange::Move, Some(slot(top / 2, 512, false)), Ok(())),
        (
            SlotChange::Create,
            Some(slot(0, 16, true)),
            Err(SlotRefusal::DirtyLog),
        ),
        (
            SlotChange::FlagsOnly,
            Some(slot(0, 16, true)),
            Err(SlotRefusal::DirtyLog),
        ),
        (SlotChange::FlagsOnly, Some(slot(0, 16, false)), Ok(())),
        // Deleting is always allowed, whatever the old slot was.
        (SlotChange::Delete, Some(slot(top, 16, true)), Ok(())),
        (SlotChange::Delete, None, Ok(())),
    ];
    for (change, new, want) in cases {
        assert_eq!(check_memslot(change, new, 40), want, "{change:?} {new:?}");
    }
    // The limit follows the IPA size.
    assert_eq!(
        check_memslot(SlotChange::Create, Some(slot(top, 16, false)), 41),
        Ok(())
    );
    assert_eq!(
        check_memslot(SlotChange::Create, Some(slot(0, 1, false)), 12),
        Err(SlotRefusal::NotProtected)
    );
}
