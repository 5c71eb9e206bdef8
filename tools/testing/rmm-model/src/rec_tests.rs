// SPDX-License-Identifier: GPL-2.0

//! RECs against the model: parameters from vCPUs, creation in index order
//! with the auxiliary granules donated through the SRO, destruction before
//! the realm, running out of memory, and a fault injected at every call.

use std::collections::BTreeSet;

use crate::addr::Granule;
use crate::mem::{
    FakePages,
    GranuleState, //
};
use crate::model::{
    RealmState as ModelState,
    Rmm,
    MODEL_REC_AUX, //
};
use crate::realm::{
    realm_shape,
    Realm,
    RealmOptions, //
};
use crate::realm_tests::{
    cfg,
    qemu, //
};
use crate::rec::{
    check_init_features,
    check_reg_write,
    max_recs,
    realm_regs,
    rec_params,
    vcpu_feature,
    Rec,
    RegRefusal,
    VcpuRefusal,
    VcpuSetup,
    REC_AUX_GRANULES, //
};
use crate::rmi_smc::{
    RmiFid,
    RmiRecMpidr,
    RmiStatus,
    REC_PARAMS_FLAG_RUNNABLE, //
    RMI_GRANULE_RANGE_DELEGATE,
    RMI_GRANULE_RANGE_UNDELEGATE,
    RMI_OP_CONTINUE,
    RMI_OP_MEM_DONATE,
    RMI_OP_MEM_RECLAIM,
    RMI_REALM_DESTROY,
    RMI_REC_CREATE,
    RMI_REC_DESTROY,
};
use crate::sro::SroError;
use crate::support::{
    assert_ownership,
    host,
    Ledger,
    TestRmi, //
};

type TestRec<'r> = Rec<'r, Rmm, FakePages, Ledger<'r>>;
type TestRealm<'r> = Realm<'r, Rmm, FakePages, Ledger<'r>>;

/// A vCPU as a VMM sets one up: initialized, PSCI 0.2, AArch64 EL1.
fn vcpu(id: u32) -> VcpuSetup {
    VcpuSetup {
        id,
        initialized: true,
        psci_0_2: true,
        el1_32bit: false,
        has_el2: false,
        powered_off: id != 0,
        pc: 0x8_0000 + u64::from(id),
        gprs: [u64::from(id), 1, 2, 3, 4, 5, 6, 7],
        sve_vl: 0,
    }
}

/// A NEW realm on `h`.
fn new_realm(h: &TestRmi) -> TestRealm<'_> {
    let shape = realm_shape(&qemu(), cfg(40, false)).expect("shape");
    let mut realm = Realm::new(h, shape, Ledger::default());
    realm
        .create(&qemu(), RealmOptions::default())
        .expect("create");
    realm
}

/// Creates the RECs of vCPUs `0..n` of `realm`.
fn create_recs<'r>(
    h: &'r TestRmi,
    realm: &TestRealm<'r>,
    n: u32,
) -> Result<Vec<TestRec<'r>>, SroError> {
    let rd = realm.rd().expect("rd");
    let max = max_recs(&qemu());
    (0..n)
        .map(|i| {
            let params = rec_params(u64::from(i), &vcpu(i), max, 0).expect("params");
            Rec::create(h, rd, u64::from(i), &params, Ledger::default())
        })
        .collect()
}

/// The RMM status of an SRO failure.
fn status_of(e: SroError) -> Option<RmiStatus> {
    match e {
        SroError::Rmi(e) => Some(e.status()),
        _ => None,
    }
}

/// Everything is back with the host: nothing delegated, nothing allocated.
fn assert_all_back(h: &TestRmi) {
    assert_ownership(h, &BTreeSet::new());
    assert!(h.smc().mem().allocated().is_empty(), "all freed");
}

#[test]
fn rec_params_follow_the_vcpu_and_only_the_boot_vcpu_runs() {
    let max = max_recs(&qemu());
    assert_eq!(max, 1023, "TF-RMM: 2^10 - 1");
    let p0 = rec_params(0, &vcpu(0), max, 0).expect("vcpu 0");
    assert_eq!(p0.flags, REC_PARAMS_FLAG_RUNNABLE);
    assert_eq!((p0.mpidr, p0.pc), (0, 0x8_0000));
    assert_eq!(p0.gprs, [0, 1, 2, 3, 4, 5, 6, 7]);
    let p17 = rec_params(17, &vcpu(17), max, 0).expect("vcpu 17");
    assert_eq!(p17.flags, 0, "secondaries wait for CPU_ON");
    assert_eq!(p17.mpidr, 0x101, "Aff0 = 1, Aff1 = 1: 16 per cluster");
    assert_eq!(
        RmiRecMpidr::new(p17.mpidr).map(RmiRecMpidr::index),
        Some(17)
    );
    // Word 0x300/8 + 7 holds x7: the page the RMM reads holds the struct.
    let words = p17.words();
    assert!(words.contains(&(0x300 / 8 + 7, 7)));
    assert!(words.contains(&(0x200 / 8, 0x8_0011)));
}

#[test]
fn vcpus_a_realm_cannot_run_are_refused() {
    let max = max_recs(&qemu());
    let with = |f: fn(&mut VcpuSetup)| {
        let mut v = vcpu(1);
        f(&mut v);
        rec_params(1, &v, max, 0)
    };
    assert_eq!(
        with(|v| v.initialized = false),
        Err(VcpuRefusal::NotInitialized)
    );
    assert_eq!(with(|v| v.psci_0_2 = false), Err(VcpuRefusal::NoPsci02));
    assert_eq!(with(|v| v.el1_32bit = true), Err(VcpuRefusal::AArch32));
    assert_eq!(with(|v| v.has_el2 = true), Err(VcpuRefusal::Nested));
    assert_eq!(
        with(|v| v.id = 2),
        Err(VcpuRefusal::IdOutOfOrder { position: 1, id: 2 })
    );
    assert_eq!(
        rec_params(max, &vcpu(5), max, 0),
        Err(VcpuRefusal::TooMany { max })
    );
    let mut boot = vcpu(0);
    boot.powered_off = true;
    assert_eq!(rec_params(0, &boot, max, 0), Err(VcpuRefusal::BootVcpuOff));
    // A secondary that is not powered off is not refused: it only stays
    // not runnable until CPU_ON, as the RMM decides.
    let mut on = vcpu(1);
    on.powered_off = false;
    assert_eq!(rec_params(1, &on, max, 0).map(|p| p.flags), Ok(0));
    // Every vCPU has the realm's SVE vector length, or none without SVE.
    let mut sve = vcpu(1);
    sve.sve_vl = 32;
    assert!(rec_params(1, &sve, max, 32).is_ok());
    assert_eq!(
        rec_params(1, &sve, max, 64),
        Err(VcpuRefusal::SveVl {
            vcpu: 32,
            realm: 64
        })
    );
    assert_eq!(
        rec_params(1, &vcpu(1), max, 32),
        Err(VcpuRefusal::SveVl { vcpu: 0, realm: 32 })
    );
}

#[test]
fn vcpu_init_features_are_checked_as_kvm_arm_vcpu_init_passes_them() {
    let bit = |b: u32| 1u64 << b;
    let psci = bit(vcpu_feature::PSCI_0_2);
    // POWER_OFF (0) and the pointer authentication features (5, 6) are fine.
    assert_eq!(
        check_init_features(psci | bit(0) | bit(5) | bit(6), false),
        Ok(())
    );
    assert_eq!(check_init_features(0, false), Err(VcpuRefusal::NoPsci02));
    assert_eq!(
        check_init_features(psci | bit(vcpu_feature::EL1_32BIT), false),
        Err(VcpuRefusal::AArch32)
    );
    for el2 in [vcpu_feature::HAS_EL2, vcpu_feature::HAS_EL2_E2H0] {
        assert_eq!(
            check_init_features(psci | bit(el2), false),
            Err(VcpuRefusal::Nested)
        );
    }
    assert_eq!(
        check_init_features(psci | bit(vcpu_feature::PMU_V3), false),
        Err(VcpuRefusal::Pmu)
    );
    assert_eq!(
        check_init_features(psci | bit(vcpu_feature::SVE), false),
        Err(VcpuRefusal::Sve)
    );
    // SVE where the realm can have it.
    assert_eq!(
        check_init_features(psci | bit(vcpu_feature::SVE), true),
        Ok(())
    );
    // The uAPI bit numbers.
    assert_eq!(
        [
            vcpu_feature::EL1_32BIT,
            vcpu_feature::PSCI_0_2,
            vcpu_feature::PMU_V3,
            vcpu_feature::SVE,
            vcpu_feature::HAS_EL2,
            vcpu_feature::HAS_EL2_E2H0
        ],
        [1, 2, 3, 4, 7, 8]
    );
}

#[test]
fn only_gprs_the_pc_and_dfr0_are_writable_each_until_it_is_used() {
    use crate::rec::RealmStage::{
        Activated,
        Created,
        NoRd, //
    };
    // KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | word offset.
    let core = |word: u64| 0x6030_0000_0010_0000 | word;
    for n in 0..31 {
        for stage in [NoRd, Created, Activated] {
            assert_eq!(check_reg_write(core(2 * n), stage), Ok(()), "x{n}");
        }
    }
    // The listed registers are the writable ones: x0..x30, the pc, DFR0.
    assert_eq!(
        realm_regs(false)[..31],
        core::array::from_fn::<u64, 31, _>(|n| core(2 * n as u64))
    );
    assert_eq!(realm_regs(false)[31], core(64));
    // KVM_REG_ARM64_SYSREG (0x13 << 16), op0 3, op1 0, CRn 0, CRm 5, op2 0.
    assert_eq!(realm_regs(false)[32], 0x6030_0000_0013_c028);
    assert!(realm_regs(true)
        .iter()
        .all(|&id| check_reg_write(id, NoRd).is_ok()));
    // With SVE, KVM_REG_ARM64_SVE_VLS too, locked once the RD exists.
    assert_eq!(realm_regs(true)[..33], *realm_regs(false));
    assert_eq!(realm_regs(true)[33], 0x6060_0000_0015_ffff);
    assert_eq!(
        check_reg_write(realm_regs(true)[33], Created),
        Err(RegRefusal::Locked)
    );
    // The pc until activation, DFR0 until the RD exists.
    assert_eq!(check_reg_write(core(64), Created), Ok(()));
    assert_eq!(
        check_reg_write(core(64), Activated),
        Err(RegRefusal::Locked)
    );
    assert_eq!(
        check_reg_write(realm_regs(false)[32], Created),
        Err(RegRefusal::Locked)
    );
    assert_eq!(
        check_reg_write(realm_regs(false)[32], Activated),
        Err(RegRefusal::Locked)
    );
    // sp (word 62), pstate (66), odd words, a 32-bit access to x0, a system
    // register (SCTLR_EL1), an SVE register and a firmware register are all
    // the RMM's or unknown.
    for id in [
        core(62),
        core(66),
        core(1),
        0x6020_0000_0010_0000,
        0x6030_0000_0013_c080,
        0x6080_0000_0015_0000,
        0x6030_0000_0014_0000,
    ] {
        assert_eq!(
            check_reg_write(id, NoRd),
            Err(RegRefusal::NotHostState),
            "{id:#x}"
        );
    }
}

#[test]
fn recs_live_between_realm_creation_and_realm_destruction() {
    let h = host(Rmm::active());
    let mut realm = new_realm(&h);
    let mut recs = create_recs(&h, &realm, 3).expect("recs");
    let rmm = h.smc();
    assert_eq!(rmm.rec_count(), 3);
    for (i, r) in recs.iter().enumerate() {
        let g = r.granule().expect("granule");
        assert_eq!(rmm.rec_index(g), Some(i as u64));
        assert_eq!(rmm.rec_runnable(g), i == 0);
        assert_eq!(r.index(), i as u64);
        assert_eq!(rmm.mem().state(g), Some(GranuleState::InUse));
    }
    assert_eq!(MODEL_REC_AUX as usize, REC_AUX_GRANULES);
    assert_eq!(rmm.calls(RMI_OP_MEM_DONATE), 3, "one donation per REC");
    realm.activate().expect("activate");
    assert_eq!(
        rmm.realm_state(realm.rd().expect("rd")),
        Some(ModelState::Active)
    );
    // No REC after activation: ERROR_REALM, and the granules come back.
    let late = rec_params(3, &vcpu(3), 1023, 0).expect("params");
    let rd = realm.rd().expect("rd");
    assert_eq!(
        Rec::create(&h, rd, 3, &late, Ledger::default())
            .err()
            .and_then(status_of),
        Some(RmiStatus::ErrorRealm)
    );
    realm.teardown_stage2(&mut || {}).expect("teardown");
    // The RMM holds the RD while RECs live.
    let destroys = rmm.calls(RMI_REALM_DESTROY);
    for r in &mut recs {
        r.destroy().expect("destroy");
        r.destroy().expect("idempotent");
    }
    assert_eq!(rmm.calls(RMI_REC_DESTROY), 3);
    drop(recs);
    realm.destroy(&mut || {}).expect("realm destroy");
    assert_eq!(rmm.calls(RMI_REALM_DESTROY), destroys + 1);
    drop(realm);
    assert_all_back(&h);
    assert_eq!(h.leaked(), 0);
}

/// The model's `REALM_DESTROY` refuses while a REC lives (TF-RMM's RD
/// refcount), which is why RECs go first.
#[test]
fn the_realm_outlives_its_recs() {
    let h = host(Rmm::active());
    let mut realm = new_realm(&h);
    let mut recs = create_recs(&h, &realm, 1).expect("recs");
    realm.teardown_stage2(&mut || {}).expect("teardown");
    let rd = realm.rd().expect("rd");
    assert_eq!(
        crate::rmi_cmds::realm_destroy(h.smc(), rd).map_err(|e| e.status()),
        Err(RmiStatus::ErrorRealm)
    );
    recs[0].destroy().expect("destroy");
    drop(recs);
    realm.destroy(&mut || {}).expect("realm destroy");
    drop(realm);
    assert_all_back(&h);
}

/// A REC whose MPIDR does not name the next index (vCPU 1 first) is
/// refused after its donation: the RMM reclaims the auxiliary granules
/// and the REC granule, which all go back to the allocator.
#[test]
fn a_rec_out_of_order_gives_everything_back() {
    let h = host(Rmm::active());
    let realm = new_realm(&h);
    let rd = realm.rd().expect("rd");
    let params = rec_params(1, &vcpu(1), 1023, 0).expect("params");
    let before = h.smc().mem().allocated().len();
    assert_eq!(
        Rec::create(&h, rd, 1, &params, Ledger::default())
            .err()
            .and_then(status_of),
        Some(RmiStatus::ErrorInput)
    );
    assert_eq!(h.smc().calls(RMI_OP_MEM_RECLAIM), 1);
    assert_eq!(h.smc().mem().allocated().len(), before);
    assert_eq!(h.smc().rec_count(), 0);
    drop(realm);
    assert_all_back(&h);
}

/// Out of memory at any page REC_CREATE needs: `ENOMEM` before the first
/// RMM call that could leave the REC stuck, and nothing left behind.
#[test]
fn out_of_memory_never_leaves_a_rec_half_built() {
    // The aux pages, the list page, the params page and the REC granule.
    let needed = REC_AUX_GRANULES as u64 + 3;
    for budget in 0..needed {
        let h = host(Rmm::active());
        let realm = new_realm(&h);
        let rd = realm.rd().expect("rd");
        let params = rec_params(0, &vcpu(0), 1023, 0).expect("params");
        h.smc().mem_mut().set_alloc_budget(Some(budget));
        let r = Rec::create(&h, rd, 0, &params, Ledger::default());
        h.smc().mem_mut().set_alloc_budget(None);
        assert_eq!(r.err(), Some(SroError::NoMemory), "budget {budget}");
        assert_eq!(h.smc().calls(RMI_REC_CREATE), 0, "budget {budget}");
        drop(realm);
        assert_all_back(&h);
    }
    let h = host(Rmm::active());
    let realm = new_realm(&h);
    let rd = realm.rd().expect("rd");
    let params = rec_params(0, &vcpu(0), 1023, 0).expect("params");
    h.smc().mem_mut().set_alloc_budget(Some(needed));
    let rec = Rec::create(&h, rd, 0, &params, Ledger::default()).expect("just enough");
    h.smc().mem_mut().set_alloc_budget(None);
    drop(rec);
    drop(realm);
    assert_all_back(&h);
}

/// Every call of a REC's life fails once, in turn, with each error: the
/// host never frees a page the RMM holds, counts what it leaks, and when
/// nothing failed gets everything back.
#[test]
fn a_fault_at_any_call_of_a_recs_life_is_survived() {
    let fids: [RmiFid; 7] = [
        RMI_GRANULE_RANGE_DELEGATE,
        RMI_REC_CREATE,
        RMI_OP_MEM_DONATE,
        RMI_OP_CONTINUE,
        RMI_REC_DESTROY,
        RMI_OP_MEM_RECLAIM,
        RMI_GRANULE_RANGE_UNDELEGATE,
    ];
    let statuses = [
        RmiStatus::ErrorInput,
        RmiStatus::ErrorRec,
        RmiStatus::ErrorRealm,
    ];
    let mut injected_runs = 0;
    for fid in fids {
        for nth in 0..40 {
            for status in statuses {
                let h = host(Rmm::active());
                let mut realm = new_realm(&h);
                let calls_before = h.smc().calls(fid);
                h.smc().fail_call(fid, nth, status, 0);
                let recs = create_recs(&h, &realm, 2);
                let _ = realm.activate();
                let _ = realm.teardown_stage2(&mut || {});
                let mut leaked_recs = false;
                if let Ok(mut recs) = recs {
                    for r in &mut recs {
                        leaked_recs |= r.destroy().is_err();
                    }
                }
                let _ = realm.destroy(&mut || {});
                drop(realm);
                let injected = h.smc().injected_pending() == 0;
                // Whatever happened, the ownership rules hold.
                assert_ownership(&h, &BTreeSet::new());
                if !injected {
                    // The fault never fired: a clean life.
                    assert!(!leaked_recs);
                    assert!(
                        h.smc().mem().allocated().is_empty(),
                        "{fid:?} #{nth} {status:?}: all freed"
                    );
                    assert!(h.smc().calls(fid) - calls_before <= nth);
                } else {
                    injected_runs += 1;
                }
                // An operation left stuck in the RMM means granules leaked.
                if h.smc().ops_in_progress() > 0 {
                    assert!(h.leaked() > 0, "{fid:?} #{nth} {status:?}");
                }
            }
        }
    }
    assert!(injected_runs > 100, "faults fired: {injected_runs}");
}

/// A destroyed REC's granule is DELEGATED again before it is undelegated:
/// the model agrees the host took back exactly what it gave.
#[test]
fn rec_destroy_gives_back_the_granules_it_took() {
    let h = host(Rmm::active());
    let realm = new_realm(&h);
    let mut recs = create_recs(&h, &realm, 1).expect("recs");
    let g: Granule = recs[0].granule().expect("granule");
    let in_use_before = h.smc().mem().realm_granules().len();
    recs[0].destroy().expect("destroy");
    assert_eq!(recs[0].granule(), None);
    assert_eq!(h.smc().mem().state(g), Some(GranuleState::Ns));
    assert_eq!(
        h.smc().mem().realm_granules().len(),
        in_use_before - 1 - REC_AUX_GRANULES
    );
    drop(recs);
    drop(realm);
    assert_all_back(&h);
}
