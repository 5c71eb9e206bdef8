// SPDX-License-Identifier: GPL-2.0

//! A running realm's stage-2 faults: guest_memfd pages mapped at protected
//! IPAs (`RMI_RTT_DATA_MAP`), the VMM's pages at unprotected ones
//! (`RMI_RTT_UNPROT_MAP`, read-only until written), RTTs created on
//! demand, and both unmapped again, with faults injected at every call.

use crate::addr::{
    Granule,
    Ipa,
    RttLevel,
    GRANULE_SIZE, //
};
use crate::data::{
    GuestPageRef,
    GuestPages, //
};
use crate::exit::FaultKind;
use crate::granule::PageSource;
use crate::mem::{
    FakePages,
    GranuleState, //
};
use crate::memory::{
    fault_around,
    map_protected,
    map_shared,
    map_with_rtts,
    plan_fault,
    plan_fault_around,
    plan_fault_in_order,
    protected_page_usable,
    unmap_protected,
    unmap_shared,
    FaultLookup,
    FaultPlan,
    MapError,
    RealmFault,
    ServeError,
    SlotFacts, //
    FAULT_AROUND_FRAMES,
};
use crate::model::Rmm;
use crate::realm::{
    realm_shape,
    Realm,
    RealmOptions, //
};
use crate::realm_tests::{
    cfg,
    qemu, //
};
use crate::rmi_smc::{
    RmiFid,
    RmiStatus,
    RMI_GRANULE_RANGE_DELEGATE,
    RMI_GRANULE_RANGE_UNDELEGATE,
    RMI_RTT_CREATE,
    RMI_RTT_DATA_MAP,
    RMI_RTT_DATA_UNMAP,
    RMI_RTT_DESTROY,
    RMI_RTT_READ_ENTRY,
    RMI_RTT_UNPROT_MAP,
    RMI_RTT_UNPROT_UNMAP, //
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

/// Where the unprotected half of a 40-bit realm starts.
const SHARED: u64 = 1 << 39;

fn ipa(a: u64) -> Ipa {
    Ipa::new(a).expect("ipa")
}

/// An ACTIVE 40-bit realm on `h`, RIPAS RAM over its first 16 MiB.
fn running(h: &TestRmi) -> TestRealm<'_> {
    let shape = realm_shape(&qemu(), cfg(40, false)).expect("shape");
    let mut realm = Realm::new(h, shape, Ledger::default());
    realm
        .create(&qemu(), RealmOptions::default())
        .expect("create");
    realm
        .init_ripas(ipa(0), ipa(16 * MIB), &mut || {})
        .expect("ripas");
    realm.activate().expect("activate");
    realm
}

/// Serves a protected fault at `at` with guest page `g` as the kernel
/// does: a reference from guest_memfd, the map, the RTT on demand.
fn fault_in(
    h: &TestRmi,
    realm: &mut TestRealm<'_>,
    at: u64,
    g: Granule,
) -> Result<(), ServeError<()>> {
    let rd = realm.rd().expect("rd");
    let leaf = RttLevel::new(3).expect("leaf");
    let mut realm_ref = Some(realm);
    map_with_rtts(
        || {
            // guest_memfd hands out the page with a reference.
            h.pages().get(g);
            // SAFETY: The reference just taken is handed over.
            let page = unsafe { GuestPageRef::adopt(h.pages(), g) };
            map_protected(h, rd, ipa(at), page).map(|_| ())
        },
        || {
            let realm = realm_ref.take().ok_or(())?;
            realm.ensure_rtt(ipa(at), leaf).map_err(|_| ())
        },
    )
}

#[test]
fn protected_faults_map_guest_pages_with_the_rtt_on_demand() {
    let h = host(Rmm::active());
    let mut realm = running(&h);
    let rd = realm.rd().expect("rd");
    let pages = h.pages().guest_alloc(3).expect("pages");
    let at = [5 * MIB, 5 * MIB + GRANULE_SIZE, 64 * MIB];

    let creates = h.smc().calls(RMI_RTT_CREATE);
    fault_in(&h, &mut realm, at[0], pages[0]).expect("first fault");
    assert!(
        h.smc().calls(RMI_RTT_CREATE) > creates,
        "the leaf RTT came on demand"
    );
    let creates = h.smc().calls(RMI_RTT_CREATE);
    fault_in(&h, &mut realm, at[1], pages[1]).expect("next page: the RTT is there");
    assert_eq!(h.smc().calls(RMI_RTT_CREATE), creates);
    // Outside the RAM the realm set up: mapped, still EMPTY (an access
    // aborts in the realm).
    fault_in(&h, &mut realm, at[2], pages[2]).expect("EMPTY IPA");
    assert_eq!(
        h.smc().realm_data(rd),
        vec![(at[0], pages[0]), (at[1], pages[1]), (at[2], pages[2])]
    );
    for g in &pages {
        assert_eq!(h.smc().mem().guest_page(*g).map(|p| p.refs), Some(1));
        assert_eq!(h.smc().mem().state(*g), Some(GranuleState::InUse));
    }
    assert!(h.smc().realm_ram(rd).iter().all(|(_, e)| *e <= 16 * MIB));

    // A second fault on a mapped page (another vCPU served it): nothing
    // changes, the extra reference is put, and the page is usable.
    assert_eq!(
        fault_in(&h, &mut realm, at[0], pages[0]),
        Err(ServeError::Map(MapError::Mapped))
    );
    assert_eq!(h.smc().mem().guest_page(pages[0]).map(|p| p.refs), Some(1));
    assert_eq!(protected_page_usable(h.smc(), rd, ipa(at[0])), Ok(true));
    assert_eq!(protected_page_usable(h.smc(), rd, ipa(at[2])), Ok(false));

    // A hole punch takes the first page: DESTROYED. A new page maps, but
    // the realm cannot use it until it asks for RAM again.
    let done = unmap_protected(&h, rd, ipa(at[0]), ipa(at[1]), &mut || {}).expect("unmap");
    assert_eq!((done.pages, done.leaked), (1, 0));
    h.pages().guest_punch(pages[0]);
    let fresh = h.pages().guest_alloc(1).expect("page")[0];
    fault_in(&h, &mut realm, at[0], fresh).expect("remap");
    assert_eq!(
        fault_in(&h, &mut realm, at[0], fresh),
        Err(ServeError::Map(MapError::Mapped))
    );
    assert_eq!(protected_page_usable(h.smc(), rd, ipa(at[0])), Ok(false));

    // Teardown gives every page back.
    realm.teardown_stage2(&mut || {}).expect("teardown");
    for g in pages.iter().skip(1).chain([&fresh]) {
        assert_eq!(h.smc().mem().guest_page(*g).map(|p| p.refs), Some(0));
        h.pages().guest_punch(*g);
    }
    drop(realm);
    assert_all_back(&h);
}

#[test]
fn shared_faults_map_read_only_until_written() {
    let h = host(Rmm::active());
    let mut realm = running(&h);
    let rd = realm.rd().expect("rd");
    let leaf = RttLevel::new(3).expect("leaf");
    let user = h.pages().alloc().expect("user page");
    let pa = FakePages::granule(&user);
    let alias = SHARED + 3 * MIB;

    assert_eq!(
        map_shared(h.smc(), rd, ipa(alias), pa, false),
        Err(MapError::NeedRtt)
    );
    realm.ensure_rtt(ipa(alias), leaf).expect("rtt");
    map_shared(h.smc(), rd, ipa(alias), pa, false).expect("read");
    map_shared(h.smc(), rd, ipa(alias), pa, false).expect("the same again");
    assert_eq!(h.smc().realm_ns(rd), vec![(alias, pa, false)]);
    // A write to it: not over the read-only mapping; unmap, then map.
    assert_eq!(
        map_shared(h.smc(), rd, ipa(alias), pa, true),
        Err(MapError::Mapped)
    );
    unmap_shared(
        h.smc(),
        rd,
        ipa(alias),
        ipa(alias + GRANULE_SIZE),
        &mut || {},
    )
    .expect("unmap");
    map_shared(h.smc(), rd, ipa(alias), pa, true).expect("write");
    assert_eq!(h.smc().realm_ns(rd), vec![(alias, pa, true)]);
    // Only the unprotected half.
    assert!(matches!(
        map_shared(h.smc(), rd, ipa(3 * MIB), pa, true),
        Err(MapError::Rmi(e)) if e.status() == RmiStatus::ErrorInput
    ));

    // Unmapping the whole half skips regions without tables a block at a
    // time; the page is never the RMM's.
    let mut rescheds = 0;
    let calls = h.smc().calls(RMI_RTT_UNPROT_UNMAP);
    unmap_shared(h.smc(), rd, ipa(SHARED), ipa(1 << 40), &mut || {
        rescheds += 1
    })
    .expect("all");
    let calls = h.smc().calls(RMI_RTT_UNPROT_UNMAP) - calls;
    assert!(calls < 2000, "{calls} calls to unmap 512 GiB");
    assert_eq!(rescheds, calls);
    assert!(h.smc().realm_ns(rd).is_empty());
    assert_eq!(h.smc().mem().state(pa), Some(GranuleState::Ns));

    // Teardown unmaps what is still mapped, so the RTTs can go.
    map_shared(h.smc(), rd, ipa(alias), pa, true).expect("again");
    realm.teardown_stage2(&mut || {}).expect("teardown");
    drop(realm);
    drop(user);
    assert_all_back(&h);
}

#[test]
fn fault_plans() {
    let gmem = SlotFacts {
        gmem: true,
        readonly: false,
        private: true,
    };
    let fault = |protected: bool, kind: FaultKind, write: Option<bool>| RealmFault {
        gpa: 0x1000,
        protected,
        kind,
        write,
    };
    let shared_only = SlotFacts {
        gmem: false,
        private: false,
        ..gmem
    };
    let private_attr_no_gmem = SlotFacts {
        gmem: false,
        ..gmem
    };
    let made_shared = SlotFacts {
        private: false,
        ..gmem
    };
    let readonly = SlotFacts {
        readonly: true,
        ..shared_only
    };
    let t = FaultKind::Translation;
    let cases = [
        // Protected: guest_memfd, while private.
        (fault(true, t, None), Some(gmem), FaultPlan::MapProtected),
        (
            fault(true, t, None),
            Some(made_shared),
            FaultPlan::MemoryFault { private: true },
        ),
        (
            fault(true, t, None),
            Some(shared_only),
            FaultPlan::MemoryFault { private: true },
        ),
        (
            fault(true, t, None),
            None,
            FaultPlan::MemoryFault { private: true },
        ),
        (
            fault(true, FaultKind::Permission, None),
            Some(gmem),
            FaultPlan::MemoryFault { private: true },
        ),
        // Shared: the user mapping, while the frame is shared; a frame
        // that is private is the VMM's to convert first, as upstream.
        (
            fault(false, t, None),
            Some(gmem),
            FaultPlan::MemoryFault { private: false },
        ),
        (
            fault(false, t, Some(true)),
            Some(private_attr_no_gmem),
            FaultPlan::MemoryFault { private: false },
        ),
        (
            fault(false, FaultKind::Permission, None),
            Some(gmem),
            FaultPlan::MemoryFault { private: false },
        ),
        (
            fault(false, t, Some(false)),
            Some(made_shared),
            FaultPlan::MapShared {
                write: false,
                replace: false,
            },
        ),
        (
            fault(false, t, Some(true)),
            Some(shared_only),
            FaultPlan::MapShared {
                write: true,
                replace: false,
            },
        ),
        (
            fault(false, FaultKind::Permission, None),
            Some(made_shared),
            FaultPlan::MapShared {
                write: true,
                replace: true,
            },
        ),
        (fault(false, t, Some(true)), None, FaultPlan::Emulate),
        (fault(false, t, None), None, FaultPlan::Emulate),
        // Read-only memslots: reads map, writes are emulated.
        (
            fault(false, t, Some(false)),
            Some(readonly),
            FaultPlan::MapShared {
                write: false,
                replace: false,
            },
        ),
        (
            fault(false, t, Some(true)),
            Some(readonly),
            FaultPlan::Emulate,
        ),
        (
            fault(false, FaultKind::Permission, None),
            Some(readonly),
            FaultPlan::Emulate,
        ),
        (
            fault(false, FaultKind::Other, None),
            Some(made_shared),
            FaultPlan::MemoryFault { private: false },
        ),
    ];
    for (f, slot, want) in cases {
        assert_eq!(plan_fault(&f, slot), want, "{f:?} {slot:?}");
    }
}

/// KVM's side of a protected fault racing a private-to-shared attribute
/// change (`kvm_vm_set_mem_attributes()`): `invalidate_begin` under
/// `mmu_lock` (which also unmaps what is mapped), the attribute flipped,
/// then `invalidate_end`, which moves the count. The three land at points
/// `at` of the fault: 0 before its first read, 1 between its two reads, 2
/// before its check under `mmu_lock`, 3 after it.
struct RacingAttributeChange {
    at: [u32; 3],
    point: u32,
    private: bool,
    seq: u64,
    in_progress: bool,
}

impl RacingAttributeChange {
    fn new(at: [u32; 3]) -> Self {
        Self {
            at,
            point: 0,
            private: true,
            seq: 7,
            in_progress: false,
        }
    }

    /// Lets the change go as far as it goes before point `point`.
    fn reach(&mut self, point: u32) {
        for p in self.point..=point {
            if self.at[0] == p {
                self.in_progress = true;
            }
            if self.at[1] == p {
                self.private = false;
            }
            if self.at[2] == p {
                self.seq += 1;
                self.in_progress = false;
            }
        }
        self.point = point + 1;
    }

    /// `mmu_invalidate_retry_gfn()`, under `mmu_lock` at point 2.
    fn must_retry(&mut self, seq: u64) -> bool {
        self.reach(2);
        self.in_progress || self.seq != seq
    }
}

impl FaultLookup for RacingAttributeChange {
    fn invalidate_seq(&mut self) -> u64 {
        let point = self.point;
        self.reach(point);
        self.seq
    }

    fn slot_facts(&mut self, _gfn: u64) -> Option<SlotFacts> {
        let point = self.point;
        self.reach(point);
        Some(SlotFacts {
            gmem: true,
            readonly: false,
            private: self.private,
        })
    }
}

/// Wherever an attribute change lands in a protected fault, the fault never
/// maps the guest_memfd page of a frame that is shared by then: the plan
/// reads the invalidation count before the attribute.
#[test]
fn a_fault_racing_an_attribute_change_never_maps_a_shared_frame() {
    let fault = RealmFault {
        gpa: 0x5000,
        protected: true,
        kind: FaultKind::Translation,
        write: None,
    };
    let mut mapped = 0;
    for begin in 0..4 {
        for flip in begin..4 {
            for end in flip..4 {
                let mut kvm = RacingAttributeChange::new([begin, flip, end]);
                let (plan, seq) = plan_fault_in_order(&mut kvm, &fault);
                if plan != FaultPlan::MapProtected || kvm.must_retry(seq) {
                    continue;
                }
                mapped += 1;
                assert!(
                    kvm.private,
                    "mapped a shared frame: change at {:?}",
                    [begin, flip, end]
                );
            }
        }
    }
    // Changes that land after the check leave the frame private: mapped.
    assert!(mapped > 0);
}

/// A running realm's memory life: a protected and a shared fault, a
/// write upgrade, a hole punch, teardown; errors are ignored (the caller
/// injects them and checks what is left).
fn scenario(h: &TestRmi) {
    let shape = realm_shape(&qemu(), cfg(40, false)).expect("shape");
    let mut realm = Realm::new(h, shape, Ledger::default());
    let pages = h.pages().guest_alloc(2).expect("pages");
    let user = h.pages().alloc().expect("user page");
    let pa = FakePages::granule(&user);
    let leaf = RttLevel::new(3).expect("leaf");
    let ok = realm.create(&qemu(), RealmOptions::default()).is_ok()
        && realm.init_ripas(ipa(0), ipa(4 * MIB), &mut || {}).is_ok()
        && realm.activate().is_ok();
    if let (true, Some(rd)) = (ok, realm.rd()) {
        for (i, g) in pages.iter().enumerate() {
            let _ = fault_in(h, &mut realm, MIB + i as u64 * GRANULE_SIZE, *g);
        }
        let _ = fault_in(h, &mut realm, MIB, pages[0]);
        let _ = protected_page_usable(h.smc(), rd, ipa(MIB));
        let alias = ipa(SHARED + MIB);
        let _ = realm.ensure_rtt(alias, leaf);
        let _ = map_shared(h.smc(), rd, alias, pa, false);
        let _ = unmap_shared(h.smc(), rd, alias, ipa(SHARED + 2 * MIB), &mut || {});
        let _ = map_shared(h.smc(), rd, alias, pa, true);
        let _ = unmap_protected(h, rd, ipa(MIB), ipa(MIB + GRANULE_SIZE), &mut || {});
        h.pages().guest_punch(pages[0]);
        let _ = realm.teardown_stage2(&mut || {});
        let _ = realm.destroy(&mut || {});
    }
    drop(realm);
    for g in &pages {
        h.pages().guest_punch(*g);
    }
    drop(user);
}

/// The RMM fails call `nth` of `fid`, once: no page is freed or touched
/// while delegated, and a guest page outlives its hole punch only if it is
/// leaked (its reference kept, counted).
#[test]
fn faults_at_every_call_site_of_the_fault_paths() {
    let fids: [RmiFid; 8] = [
        RMI_GRANULE_RANGE_DELEGATE,
        RMI_GRANULE_RANGE_UNDELEGATE,
        RMI_RTT_CREATE,
        RMI_RTT_DATA_MAP,
        RMI_RTT_READ_ENTRY,
        RMI_RTT_UNPROT_MAP,
        RMI_RTT_UNPROT_UNMAP,
        RMI_RTT_DATA_UNMAP,
    ];
    let h = host(Rmm::active());
    scenario(&h);
    assert!(h.smc().calls(RMI_RTT_DESTROY) > 0, "teardown runs");
    let injected = fail_each_call(&fids, || host(Rmm::active()), scenario);
    assert!(injected > 30, "{injected} runs");
}

#[test]
fn fault_around_covers_the_aligned_window_in_the_faults_rtt() {
    let window: Vec<u64> = fault_around(0x1005, 16).collect();
    assert_eq!(window.len(), 15);
    assert!(window
        .iter()
        .all(|&g| (0x1000..0x1010).contains(&g) && g != 0x1005));
    assert!(window.windows(2).all(|w| w[0] < w[1]));
    // The default: a power of two within one level-3 RTT (512 frames).
    assert!(FAULT_AROUND_FRAMES.is_power_of_two() && FAULT_AROUND_FRAMES <= 512);
    for g in [0, 0x1ff, 0x200, 0x12_3456_7fff] {
        let rtt = g >> 9;
        assert!(fault_around(g, u64::from(FAULT_AROUND_FRAMES)).all(|n| n >> 9 == rtt));
        assert_eq!(fault_around(g, 512).count(), 511);
    }
    // Off, or not a power of two up to 512: the fault alone.
    for frames in [0, 1, 3, 24, 1024, u64::MAX] {
        assert_eq!(fault_around(0x1005, frames).count(), 0, "{frames}");
    }
    // The last window of the address space stops short of wrapping (at
    // frame u64::MAX, which no IPA reaches).
    assert_eq!(fault_around(u64::MAX, 16).count(), 15);
    assert!(fault_around(u64::MAX, 16).all(|g| g >= u64::MAX - 15));
}

/// Frame facts for [`plan_fault_around`]: a guest_memfd memslot over
/// `[0, slot_end)`, shared where `shared` says.
struct Frames {
    slot_end: u64,
    shared: fn(u64) -> bool,
}

impl FaultLookup for Frames {
    fn invalidate_seq(&mut self) -> u64 {
        0
    }

    fn slot_facts(&mut self, gfn: u64) -> Option<SlotFacts> {
        (gfn < self.slot_end).then(|| SlotFacts {
            gmem: true,
            readonly: false,
            private: !(self.shared)(gfn),
        })
    }
}

#[test]
fn fault_around_maps_private_guest_memfd_frames_only() {
    // The memslot ends at frame 0x1008; 0x1002 went shared.
    let mut frames = Frames {
        slot_end: 0x1008,
        shared: |g| g == 0x1002,
    };
    let around: Vec<u64> = plan_fault_around(&mut frames, 0x1005, 16).collect();
    assert_eq!(around, vec![0x1000, 0x1001, 0x1003, 0x1004, 0x1006, 0x1007]);
    // A memslot without guest_memfd: nothing around.
    struct NoGmem;
    impl FaultLookup for NoGmem {
        fn invalidate_seq(&mut self) -> u64 {
            0
        }
        fn slot_facts(&mut self, _gfn: u64) -> Option<SlotFacts> {
            Some(SlotFacts {
                gmem: false,
                readonly: false,
                private: true,
            })
        }
    }
    assert_eq!(plan_fault_around(&mut NoGmem, 0x1005, 16).count(), 0);
}

#[test]
fn a_fault_maps_its_window_with_the_one_rtt_it_made() {
    let h = host(Rmm::active());
    let mut realm = running(&h);
    let rd = realm.rd().expect("rd");
    let at = 5 * MIB + 5 * GRANULE_SIZE;
    let gfn = at / GRANULE_SIZE;
    let around: Vec<u64> = fault_around(gfn, u64::from(FAULT_AROUND_FRAMES)).collect();
    let pages = h.pages().guest_alloc(16).expect("pages");
    fault_in(&h, &mut realm, at, pages[0]).expect("the fault");
    let creates = h.smc().calls(RMI_RTT_CREATE);
    // Another vCPU faulted on one of them meanwhile.
    fault_in(&h, &mut realm, around[3] * GRANULE_SIZE, pages[4]).expect("other vCPU");
    for (n, g) in around.iter().enumerate() {
        let page = if n == 3 { pages[4] } else { pages[n + 1] };
        let r = fault_in(&h, &mut realm, g * GRANULE_SIZE, page);
        if n == 3 {
            assert_eq!(r, Err(ServeError::Map(MapError::Mapped)));
        } else {
            r.expect("a frame around");
        }
    }
    assert_eq!(
        h.smc().calls(RMI_RTT_CREATE),
        creates,
        "one leaf RTT for all"
    );
    let mut mapped: Vec<u64> = h.smc().realm_data(rd).iter().map(|(i, _)| *i).collect();
    mapped.sort_unstable();
    let window: Vec<u64> = (0..16).map(|n| 5 * MIB + n * GRANULE_SIZE).collect();
    assert_eq!(mapped, window);
    for g in &pages {
        assert_eq!(h.smc().mem().guest_page(*g).map(|p| p.refs), Some(1));
    }
    realm.teardown_stage2(&mut || {}).expect("teardown");
    for g in &pages {
        h.pages().guest_punch(*g);
    }
    drop(realm);
    assert_all_back(&h);
}
