// SPDX-License-Identifier: GPL-2.0

//! Realm parameters from the RMM's features and the VM type.

use crate::addr::Granule;
use crate::model::QEMU_FEATURES;
use crate::realm::{
    realm_dfr0,
    realm_dfr0_max,
    realm_params,
    realm_shape,
    rmm_sve_max_vl,
    DebugResources,
    ParamsError,
    RealmConfig,
    RealmOptions, //
};
use crate::rmi_cmds::RmiFeatureRegs;
use crate::rmi_smc::{
    RmiFeatures0,
    RmiFeatures1,
    RmiFeatures2,
    RmiFeatures3, //
};

fn features(f0: u64, f1: u64) -> RmiFeatureRegs {
    RmiFeatureRegs {
        f0: RmiFeatures0(f0),
        f1: RmiFeatures1(f1),
        f2: RmiFeatures2(0),
        f3: RmiFeatures3(3),
    }
}

pub(crate) fn qemu() -> RmiFeatureRegs {
    features(QEMU_FEATURES[0], QEMU_FEATURES[1])
}

pub(crate) fn cfg(ipa_bits: u8, host_lpa2: bool) -> RealmConfig {
    RealmConfig {
        ipa_bits,
        host_ipa_limit: 52,
        host_lpa2,
    }
}

#[test]
fn default_ipa_size_gives_40_bits_and_two_level_1_roots() {
    let shape = realm_shape(&qemu(), cfg(0, false)).expect("shape");
    assert_eq!(shape.s2sz, 40);
    assert_eq!(shape.geometry.start.get(), 1);
    assert_eq!(shape.geometry.num_root, 2);
    let base = Granule::new(0x8000_2000).expect("aligned");
    let p = realm_params(&qemu(), &shape, base, RealmOptions::default()).expect("params");
    assert_eq!(p.flags0, 0);
    assert_eq!(p.s2sz, 40);
    // QEMU's RMM: NUM_BPS 5, NUM_WPS 3, the largest values it accepts.
    assert_eq!((p.num_bps, p.num_wps), (5, 3));
    assert_eq!(p.algorithm, 0, "SHA-256");
    assert_eq!(p.rtt_base, 0x8000_2000);
    assert_eq!(p.rtt_level_start, 1);
    assert_eq!(p.rtt_num_start, 2);
    assert_eq!((p.sve_vl, p.pmu_num_ctrs, p.flags1), (0, 0, 0));
}

#[test]
fn lpa2_hosts_need_an_lpa2_rmm_and_reach_52_bits() {
    let shape = realm_shape(&qemu(), cfg(52, true)).expect("LPA2 RMM");
    assert_eq!(
        (shape.geometry.start.get(), shape.geometry.num_root),
        (0, 16)
    );
    let base = Granule::new(0x10_0000).expect("aligned");
    assert_eq!(
        realm_params(&qemu(), &shape, base, RealmOptions::default()).map(|p| p.flags0),
        Ok(1)
    );
    let no_lpa2 = features(QEMU_FEATURES[0] & !(1 << 8), QEMU_FEATURES[1]);
    assert_eq!(
        realm_shape(&no_lpa2, cfg(40, true)),
        Err(ParamsError::Lpa2Unsupported)
    );
    assert_eq!(
        realm_shape(&qemu(), cfg(52, false)),
        Err(ParamsError::IpaSize { asked: 52, max: 48 })
    );
}

#[test]
fn ipa_size_is_bounded_by_rmm_host_and_architecture() {
    assert_eq!(
        realm_shape(&qemu(), cfg(31, false)),
        Err(ParamsError::IpaSize { asked: 31, max: 48 })
    );
    let limited = RealmConfig {
        ipa_bits: 48,
        host_ipa_limit: 44,
        host_lpa2: false,
    };
    assert_eq!(
        realm_shape(&qemu(), limited),
        Err(ParamsError::IpaSize { asked: 48, max: 44 })
    );
    // An RMM with S2SZ 40 caps it too.
    let small = features((QEMU_FEATURES[0] & !0xff) | 40, QEMU_FEATURES[1]);
    assert!(realm_shape(&small, cfg(40, false)).is_ok());
    assert_eq!(
        realm_shape(&small, cfg(41, false)),
        Err(ParamsError::IpaSize { asked: 41, max: 40 })
    );
    for bits in 32..=48 {
        assert!(realm_shape(&qemu(), cfg(bits, false)).is_ok(), "{bits}");
    }
}

#[test]
fn hash_and_debug_resources_follow_the_features() {
    let shape = realm_shape(&qemu(), cfg(0, false)).expect("shape");
    let base = Granule::new(0x2000).expect("aligned");
    let sha512_only = features(QEMU_FEATURES[0], QEMU_FEATURES[1] & !(1 << 3));
    assert_eq!(
        realm_params(&sha512_only, &shape, base, RealmOptions::default()).map(|p| p.algorithm),
        Ok(1)
    );
    let no_hash = features(QEMU_FEATURES[0], QEMU_FEATURES[1] & !((1 << 3) | (1 << 5)));
    assert_eq!(
        realm_params(&no_hash, &shape, base, RealmOptions::default()).err(),
        Some(ParamsError::NoHash)
    );
    let no_bps = features(QEMU_FEATURES[0] & !(0x3f << 14), QEMU_FEATURES[1]);
    assert_eq!(
        realm_params(&no_bps, &shape, base, RealmOptions::default()).err(),
        Some(ParamsError::NoDebugResources)
    );
}

#[test]
fn the_vmm_lowers_breakpoints_and_watchpoints_within_the_rmm_s() {
    let shape = realm_shape(&qemu(), cfg(0, false)).expect("shape");
    let base = Granule::new(0x2000).expect("aligned");
    let params = |brps, wrps| {
        let options = RealmOptions {
            debug: Some(DebugResources { brps, wrps }),
            sve_vl: None,
        };
        realm_params(&qemu(), &shape, base, options).map(|p| (p.num_bps, p.num_wps))
    };
    // QEMU's RMM offers BRPs 5, WRPs 3 (6 and 4, minus one).
    assert_eq!(params(2, 1), Ok((2, 1)));
    assert_eq!(params(5, 3), Ok((5, 3)));
    // Above the RMM's, or the reserved 0: the nearest the RMM accepts.
    assert_eq!(params(15, 15), Ok((5, 3)));
    assert_eq!(params(0, 0), Ok((1, 1)));

    // ID_AA64DFR0_EL1: CTX_CMPs [31:28], WRPs [23:20], BRPs [15:12].
    let dfr0 = |ctx: u64, wrps: u64, brps: u64| (ctx << 28) | (wrps << 20) | (brps << 12) | 0x6;
    // A host with 16 of each is bounded by the RMM; other fields kept.
    assert_eq!(realm_dfr0(&qemu(), dfr0(15, 15, 15)), dfr0(5, 3, 5));
    // Below the RMM's: unchanged.
    assert_eq!(realm_dfr0(&qemu(), dfr0(1, 2, 3)), dfr0(1, 2, 3));
    // What KVM gets: BRPs, WRPs and CTX_CMPs bounded, every other field
    // unbounded.
    assert_eq!(realm_dfr0_max(&qemu()), 0x5f3f_5fff | !0xffff_ffff);
    // Field by field, as KVM's id_reg_fields_min(), for a host with every
    // field at 0xf, 0 and a mix.
    for host in [u64::MAX, 0, 0x1234_5678_9abc_def0] {
        let want = (0..16).fold(0, |acc, i| {
            let f = |v: u64| (v >> (4 * i)) & 0xf;
            acc | (f(host).min(f(realm_dfr0_max(&qemu()))) << (4 * i))
        });
        assert_eq!(realm_dfr0(&qemu(), host), want);
    }
    assert_eq!(
        DebugResources::from_dfr0(dfr0(1, 2, 3)),
        DebugResources { brps: 3, wrps: 2 }
    );
}

#[test]
fn sve_takes_a_vector_length_the_rmm_offers() {
    let shape = realm_shape(&qemu(), cfg(0, false)).expect("shape");
    let base = Granule::new(0x2000).expect("aligned");
    // QEMU's RMM: SVE_EN, SVE_VL 15 (2048 bits, 256 bytes).
    assert_eq!(rmm_sve_max_vl(&qemu()), 256);
    let sve = |vl| {
        let options = RealmOptions {
            debug: None,
            sve_vl: Some(vl),
        };
        realm_params(&qemu(), &shape, base, options).map(|p| (p.flags0, p.sve_vl))
    };
    assert_eq!(sve(16), Ok((1 << 1, 0)));
    assert_eq!(sve(32), Ok((1 << 1, 1)));
    assert_eq!(sve(256), Ok((1 << 1, 15)));
    for bad in [0, 8, 24, 272] {
        assert_eq!(sve(bad), Err(ParamsError::SveVl(bad)), "{bad}");
    }
    // Without SVE_EN no length is offered.
    let no_sve = features(QEMU_FEATURES[0] & !(1 << 9), QEMU_FEATURES[1]);
    assert_eq!(rmm_sve_max_vl(&no_sve), 0);
    let options = RealmOptions {
        debug: None,
        sve_vl: Some(16),
    };
    assert_eq!(
        realm_params(&no_sve, &shape, base, options).err(),
        Some(ParamsError::SveVl(16))
    );
    // No SVE asked: the flag and the length stay 0.
    assert_eq!(
        realm_params(&qemu(), &shape, base, RealmOptions::default()).map(|p| (p.flags0, p.sve_vl)),
        Ok((0, 0))
    );
}

/// `words()` writes exactly the struct's bytes into a zeroed granule.
#[test]
fn realm_params_words_are_the_struct_bytes() {
    use crate::rmi_smc::RmiRealmParams;
    let mut p = RmiRealmParams::zeroed();
    p.flags0 = 0x1;
    p.s2sz = 44;
    p.sve_vl = 3;
    p.num_bps = 5;
    p.num_wps = 3;
    p.pmu_num_ctrs = 2;
    p.algorithm = 1;
    p.num_aux_planes = 1;
    for (i, b) in p.rpv.iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    p.ats_plane = 7;
    p.rtt_base = 0x8000_0000;
    p.rtt_level_start = -1;
    p.rtt_num_start = 16;
    p.flags1 = 2;
    p.aux_rtt_base = [0x1000, 0x2000, 0x3000];
    let mut page = [0u64; 512];
    for (i, w) in p.words() {
        page[i] = w;
    }
    // SAFETY: `RmiRealmParams` is 4096 bytes of integers, no implicit padding.
    let bytes: &[u8; 4096] = unsafe { &*(&p as *const RmiRealmParams).cast() };
    let page_bytes: Vec<u8> = page.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(&page_bytes[..], &bytes[..]);
}

mod lifecycle {
    use std::collections::BTreeSet;

    use super::{cfg, qemu};
    use crate::addr::{
        Granule,
        Ipa,
        RttLevel, //
    };
    use crate::mem::{
        FakePages,
        GranuleState, //
    };
    use crate::model::{
        RealmState as ModelState,
        Rmm, //
    };
    use crate::realm::{
        realm_shape,
        FoldOutcome,
        Realm,
        RealmError,
        RealmOptions,
        RealmState, //
    };
    use crate::rmi_smc::{
        RmiFid,
        RmiStatus,
        RMI_GRANULE_RANGE_DELEGATE,
        RMI_GRANULE_RANGE_UNDELEGATE,
        RMI_REALM_ACTIVATE,
        RMI_REALM_CREATE,
        RMI_REALM_DESTROY,
        RMI_REALM_TERMINATE,
        RMI_RTT_CREATE,
        RMI_RTT_DESTROY, //
    };
    use crate::support::{
        assert_ownership,
        host,
        Ledger,
        TestRmi, //
    };

    fn leaf() -> RttLevel {
        RttLevel::new(3).expect("leaf")
    }

    /// IPAs whose leaf RTTs the tests create: two sharing upper levels, one
    /// far away.
    fn ipas(s2sz: u8) -> [Ipa; 3] {
        let top = 1u64 << s2sz;
        [
            Ipa::new(0x20_0000).expect("ipa"),
            Ipa::new(0x40_0000).expect("ipa"),
            Ipa::new(top / 2 + 0x20_0000).expect("ipa"),
        ]
    }

    /// A realm of `s2sz` bits (no LPA2), created (state NEW) on `h`.
    fn created(h: &TestRmi, s2sz: u8) -> Realm<'_, Rmm, FakePages, Ledger<'_>> {
        let shape = realm_shape(&qemu(), cfg(s2sz, false)).expect("shape");
        let mut realm = Realm::new(h, shape, Ledger::default());
        realm
            .create(&qemu(), RealmOptions::default())
            .expect("create");
        realm
    }

    /// Everything is back with the host: nothing delegated, nothing allocated.
    fn assert_all_back(h: &TestRmi) {
        assert_ownership(h, &BTreeSet::new());
        assert!(h.smc().mem().allocated().is_empty(), "all freed");
    }

    /// Create, activate, map leaf RTTs, tear stage 2 down twice (as KVM
    /// does: address space gone, then VM destroyed), destroy, drop: the
    /// whole life.
    fn life(h: &TestRmi, s2sz: u8, lpa2: bool) -> Result<(), RealmError> {
        let shape = realm_shape(&qemu(), cfg(s2sz, lpa2)).map_err(RealmError::Params)?;
        let mut realm = Realm::new(h, shape, Ledger::default());
        assert_eq!(realm.state(), RealmState::None);
        realm.create(&qemu(), RealmOptions::default())?;
        assert_eq!(realm.state(), RealmState::New);
        for ipa in ipas(s2sz) {
            realm.ensure_rtt(ipa, leaf())?;
        }
        realm.activate()?;
        assert_eq!(realm.state(), RealmState::Active);
        realm.teardown_stage2(&mut || {})?;
        realm.teardown_stage2(&mut || {})?;
        realm.destroy(&mut || {})?;
        assert_eq!(realm.state(), RealmState::Dead);
        assert_eq!(
            realm.activate(),
            Err(RealmError::WrongState(RealmState::Dead))
        );
        Ok(())
    }

    #[test]
    fn every_ipa_size_lives_and_dies_cleanly() {
        for (s2sz, lpa2) in (32..=48)
            .map(|b| (b, false))
            .chain((32..=52).map(|b| (b, true)))
        {
            let h = host(Rmm::active());
            life(&h, s2sz, lpa2).unwrap_or_else(|e| panic!("{s2sz} bits lpa2 {lpa2}: {e:?}"));
            assert_ownership(&h, &BTreeSet::new());
            assert!(h.smc().mem().allocated().is_empty(), "{s2sz}: all freed");
        }
    }

    /// Stage-2 teardown terminates and empties the realm but keeps the RD
    /// and the root; a second call issues no call at all; before the RD
    /// exists it does nothing.
    #[test]
    fn stage2_teardown_is_idempotent_and_keeps_the_rd() {
        let h = host(Rmm::active());
        let shape = realm_shape(&qemu(), cfg(48, false)).expect("shape");
        let mut realm = Realm::new(&h, shape, Ledger::default());
        realm.teardown_stage2(&mut || {}).expect("before create");
        assert_eq!(realm.state(), RealmState::None);
        assert_eq!(h.smc().calls(RMI_REALM_TERMINATE), 0);
        realm
            .create(&qemu(), RealmOptions::default())
            .expect("create");
        let rd = realm.rd().expect("rd");
        for ipa in ipas(48) {
            realm.ensure_rtt(ipa, leaf()).expect("rtt");
        }
        realm.activate().expect("activate");
        realm.teardown_stage2(&mut || {}).expect("teardown");
        assert_eq!(realm.state(), RealmState::Dying);
        assert_eq!(h.smc().realm_state(rd), Some(ModelState::Terminated));
        assert!(h.smc().realm_rtts(rd).is_empty(), "non-root RTTs gone");
        let (terminates, destroys) = (
            h.smc().calls(RMI_REALM_TERMINATE),
            h.smc().calls(RMI_RTT_DESTROY),
        );
        realm.teardown_stage2(&mut || {}).expect("again");
        assert_eq!(h.smc().calls(RMI_REALM_TERMINATE), terminates);
        assert_eq!(h.smc().calls(RMI_RTT_DESTROY), destroys);
        assert_eq!(
            realm.activate(),
            Err(RealmError::WrongState(RealmState::Dying))
        );
        realm.destroy(&mut || {}).expect("destroy");
        assert_eq!(h.smc().realm_state(rd), None);
        drop(realm);
        assert_all_back(&h);
    }

    #[test]
    fn missing_levels_are_created_and_shared() {
        let h = host(Rmm::active());
        let mut realm = created(&h, 48);
        let rd = realm.rd().expect("rd");
        assert_eq!(h.smc().realm_state(rd), Some(ModelState::New));
        let [a, b, c] = ipas(48);
        realm.ensure_rtt(a, leaf()).expect("a");
        // Levels 1, 2, 3 under a level-0 root.
        assert_eq!(h.smc().realm_rtts(rd).len(), 3);
        realm.ensure_rtt(b, leaf()).expect("b");
        // b shares levels 1 and 2 with a: one more leaf table.
        assert_eq!(h.smc().realm_rtts(rd).len(), 4);
        realm.ensure_rtt(c, leaf()).expect("c");
        assert_eq!(h.smc().realm_rtts(rd).len(), 7);
        // Asking again creates nothing.
        realm.ensure_rtt(a, leaf()).expect("again");
        assert_eq!(h.smc().realm_rtts(rd).len(), 7);
        // What debugfs shows: the seven and the root.
        let roots = realm.root_range().expect("root").count();
        assert_eq!(realm.rtt_pages(), 7 + roots);
        let tables: Vec<_> = h.smc().realm_rtts(rd).into_iter().map(|t| t.2).collect();
        assert!(tables
            .iter()
            .all(|g| h.smc().mem().state(*g) == Some(GranuleState::InUse)));
        realm.destroy(&mut || {}).expect("destroy");
        assert_eq!(h.smc().realm_state(rd), None);
        drop(realm);
        assert_all_back(&h);
    }

    /// A fault at every RMI call site of a realm's life: the host never
    /// frees or touches a granule the RMM holds, leaks exactly those, the
    /// error carries the injected status, and the realm (not the host)
    /// dies.
    #[test]
    fn a_fault_at_every_call_kills_the_realm_not_the_host() {
        let fids: [RmiFid; 8] = [
            RMI_GRANULE_RANGE_DELEGATE,
            RMI_REALM_CREATE,
            RMI_RTT_CREATE,
            RMI_REALM_ACTIVATE,
            RMI_REALM_TERMINATE,
            RMI_RTT_DESTROY,
            RMI_REALM_DESTROY,
            RMI_GRANULE_RANGE_UNDELEGATE,
        ];
        for fid in fids {
            for nth in 0..12 {
                for status in [RmiStatus::ErrorInput, RmiStatus::ErrorRealm] {
                    let h = host(Rmm::active());
                    h.smc().fail_call(fid, nth, status, 0);
                    let result = life(&h, 40, false);
                    let hit = h.smc().injected_pending() == 0;
                    let ctx = format!("{fid:?} nth {nth} {status:?}");
                    // Everything is dropped now: nothing owned remains.
                    assert_ownership(&h, &BTreeSet::new());
                    if !hit {
                        assert_eq!(result, Ok(()), "{ctx}");
                        continue;
                    }
                    match result {
                        Err(RealmError::Rmi(e)) => assert_eq!(e.status(), status, "{ctx}"),
                        // A refused undelegation is absorbed: the page leaks.
                        Ok(()) => {
                            assert_eq!(fid, RMI_GRANULE_RANGE_UNDELEGATE, "{ctx}");
                            assert_eq!(h.leaked(), 1, "{ctx}");
                        }
                        other => panic!("{ctx}: {other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn uniform_tables_fold_and_live_ones_do_not() {
        let h = host(Rmm::active());
        let mut realm = created(&h, 40);
        let rd = realm.rd().expect("rd");
        let [a, ..] = ipas(40);
        realm.ensure_rtt(a, leaf()).expect("leaf");
        let two = RttLevel::new(2).expect("level");
        assert_eq!(h.smc().realm_rtts(rd).len(), 2);
        // The level-2 table holds the leaf table: not uniform.
        assert_eq!(realm.fold_rtt(a, two), Ok(FoldOutcome::NotUniform));
        assert_eq!(realm.fold_rtt(a, leaf()), Ok(FoldOutcome::Folded));
        assert_eq!(realm.fold_rtt(a, two), Ok(FoldOutcome::Folded));
        // Gone: the walk ends at the root's entry.
        let one = RttLevel::new(1).expect("level");
        assert_eq!(
            realm.fold_rtt(a, leaf()),
            Ok(FoldOutcome::Absent { reached: one })
        );
        assert!(h.smc().realm_rtts(rd).is_empty());
        assert_eq!(h.smc().mem().allocated().len(), 2 + 1, "RD and root left");
        drop(realm);
        assert_all_back(&h);
    }

    #[test]
    fn a_failed_fold_kills_the_realm_safely() {
        let h = host(Rmm::active());
        let mut realm = created(&h, 40);
        let [a, ..] = ipas(40);
        realm.ensure_rtt(a, leaf()).expect("leaf");
        h.smc()
            .fail_call(crate::rmi_smc::RMI_RTT_FOLD, 0, RmiStatus::ErrorInput, 0);
        let e = realm.fold_rtt(a, leaf()).expect_err("injected");
        assert!(matches!(e, RealmError::Rmi(e) if e.status() == RmiStatus::ErrorInput));
        assert_eq!(realm.state(), RealmState::Dead);
        assert_eq!(
            realm.activate(),
            Err(RealmError::WrongState(RealmState::Dead))
        );
        drop(realm);
        assert_ownership(&h, &BTreeSet::new());
    }

    /// `RMI_RTT_DATA_MAP_INIT` needs a NEW realm, the level-3 table and an
    /// unassigned entry in the protected half; the mapped granule is then
    /// the RMM's, and its table stays live (it cannot be destroyed while
    /// the data is mapped), so a teardown without unmapping leaves the
    /// realm dead with the granules leaked, never freed.
    #[test]
    fn data_map_init_needs_a_new_realm_a_leaf_table_and_an_empty_entry() {
        use crate::granule::{
            DelegatedGranule,
            PageSource, //
        };
        use crate::rmi_cmds::rtt_data_map_init;

        let h = host(Rmm::active());
        let mut realm = created(&h, 40);
        let rd = realm.rd().expect("rd");
        let [a, ..] = ipas(40);
        let src = h.pages().alloc().expect("source page");
        let src_granule = crate::mem::FakePages::granule(&src);
        let data = DelegatedGranule::alloc(&h).expect("data");
        let other = DelegatedGranule::alloc(&h).expect("other data");
        let map_with =
            |g: Granule, ipa: Ipa| rtt_data_map_init(h.smc(), rd, g, ipa, src_granule, true);
        let map = |ipa: Ipa| map_with(data.granule(), ipa);

        // No level-2 or level-3 table yet: the walk stops at level 1.
        let e = map(a).expect_err("no leaf table");
        assert_eq!((e.status(), e.index()), (RmiStatus::ErrorRtt, 1));
        realm.ensure_rtt(a, leaf()).expect("leaf");
        // The unprotected half is refused.
        let unprotected = Ipa::new((1 << 39) + a.get()).expect("ipa");
        assert_eq!(
            map(unprotected).map_err(|e| e.status()),
            Err(RmiStatus::ErrorInput)
        );
        map(a).expect("map");
        assert_eq!(h.smc().realm_data(rd), vec![(a.get(), data.granule())]);
        assert_eq!(
            h.smc().mem().state(data.granule()),
            Some(GranuleState::InUse)
        );
        // The granule is in use now, and the entry is taken.
        assert_eq!(map(a).map_err(|e| e.status()), Err(RmiStatus::ErrorInput));
        let e = map_with(other.granule(), a).expect_err("assigned");
        assert_eq!((e.status(), e.index()), (RmiStatus::ErrorRtt, 3));
        // Only a NEW realm is populated.
        realm.activate().expect("activate");
        let b = Ipa::new(a.get() + 0x1000).expect("ipa");
        assert_eq!(
            map_with(other.granule(), b).map_err(|e| e.status()),
            Err(RmiStatus::ErrorRealm)
        );

        // RTT_DATA_UNMAP gives the granule back (DELEGATED) and leaves
        // the entry DESTROYED, so the table is no longer live.
        let top = Ipa::new(a.get() + 0x1000).expect("top");
        let out =
            crate::sro::run_no_memory(h.smc(), &crate::rmi_cmds::rtt_data_unmap_call(rd, a, top))
                .expect("unmap");
        let unmapped = crate::rmi_cmds::data_unmapped(&out, a, top).expect("answer");
        assert_eq!(unmapped.out_top, top);
        assert_eq!(
            unmapped.granules.map(|r| (r.base(), r.count())),
            Some((data.granule(), 1))
        );
        assert!(h.smc().realm_data(rd).is_empty());
        assert_eq!(
            h.smc().mem().state(data.granule()),
            Some(GranuleState::Delegated)
        );
        realm.destroy(&mut || {}).expect("destroy");
        drop(other);
        drop(data);
        drop(realm);
        drop(src);
        assert_all_back(&h);
        assert_eq!(h.leaked(), 0);
    }

    #[test]
    fn out_of_memory_leaves_the_realm_unborn() {
        for budget in 0..4 {
            let h = host(Rmm::active());
            h.smc().mem_mut().set_alloc_budget(Some(budget));
            let shape = realm_shape(&qemu(), cfg(40, false)).expect("shape");
            let mut realm = Realm::new(&h, shape, Ledger::default());
            assert_eq!(
                realm.create(&qemu(), RealmOptions::default()),
                Err(RealmError::NoMemory),
                "{budget}"
            );
            assert_eq!(realm.state(), RealmState::None);
            h.smc().mem_mut().set_alloc_budget(None);
            realm
                .create(&qemu(), RealmOptions::default())
                .expect("retry");
            drop(realm);
            assert_ownership(&h, &BTreeSet::new());
            assert!(h.smc().mem().allocated().is_empty());
        }
    }
}
