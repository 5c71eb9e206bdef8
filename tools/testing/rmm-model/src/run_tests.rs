// SPDX-License-Identifier: GPL-2.0

//! The REC run state against the model's `REC_ENTER`: every answer the
//! host hands over is one the RMM takes, the RMM gets exactly what the
//! host meant, PSCI completions, and what failed entries mean.

use proptest::prelude::*;

use crate::addr::{
    Granule,
    Ipa, //
};
use crate::exit::{
    decode,
    RecExit, //
};
use crate::granule::PageSource;
use crate::mem::{
    FakePage,
    FakePages, //
};
use crate::memory::ripas_range_backed;
use crate::model::{
    Rmm,
    ScriptedExit,
    PSCI_ALREADY_ON,
    PSCI_DENIED, //
};
use crate::realm::{
    realm_shape,
    Realm,
    RealmError,
    RealmOptions,
    RealmState,
    RipasWalk, //
};
use crate::realm_tests::{
    cfg,
    qemu, //
};
use crate::rec::{
    max_recs,
    rec_params,
    Rec,
    VcpuSetup, //
};
use crate::rmi_cmds::{
    rec_enter_args,
    PsciStatus,
    SmcConduit, //
};
use crate::rmi_smc::{
    rmi_result,
    RmiError,
    RmiRecEnter,
    RmiRecExit,
    RmiRecMpidr,
    RmiStatus,
    REC_ENTRY_FLAG_EMUL_MMIO,
    REC_ENTRY_FLAG_INJECT_SEA,
    REC_ENTRY_FLAG_RIPAS_RESPONSE,
    REC_ENTRY_FLAG_TRAP_WFI,
    RMI_REC_ENTER,
    RMI_RTT_FOLD,
    RMI_RTT_SET_RIPAS, //
};
use crate::run::{
    host_call_is_psci,
    rec_index_of_mpidr,
    CompletionError,
    EnterFailure,
    PsciCall,
    RecRun, //
};
use crate::support::{
    host,
    Ledger,
    TestRmi, //
};

/// IPA bits of the test realms; the shared half starts at 2^39.
const IPA_BITS: u8 = 40;
/// The unprotected alias bit.
const SHARED: u64 = 1 << (IPA_BITS - 1);

type TestRec<'r> = Rec<'r, Rmm, FakePages, Ledger<'r>>;
type TestRealm<'r> = Realm<'r, Rmm, FakePages, Ledger<'r>>;

/// An active realm with `n` RECs, and one run granule per REC.
struct Running<'r> {
    h: &'r TestRmi,
    realm: TestRealm<'r>,
    recs: Vec<TestRec<'r>>,
    runs: Vec<FakePage>,
    state: Vec<RecRun>,
}

impl<'r> Running<'r> {
    fn new(h: &'r TestRmi, n: u32) -> Self {
        let shape = realm_shape(&qemu(), cfg(IPA_BITS, false)).expect("shape");
        let mut realm = Realm::new(h, shape, Ledger::default());
        realm
            .create(&qemu(), RealmOptions::default())
            .expect("create");
        let rd = realm.rd().expect("rd");
        let recs = (0..n)
            .map(|i| {
                let v = VcpuSetup {
                    id: i,
                    initialized: true,
                    psci_0_2: true,
                    el1_32bit: false,
                    has_el2: false,
                    powered_off: i != 0,
                    pc: 0,
                    gprs: [0; 8],
                    sve_vl: 0,
                };
                let p = rec_params(u64::from(i), &v, max_recs(&qemu()), 0).expect("params");
                Rec::create(h, rd, u64::from(i), &p, Ledger::default()).expect("rec")
            })
            .collect();
        realm.activate().expect("activate");
        let runs = (0..n)
            .map(|_| h.pages().alloc().expect("run page"))
            .collect();
        Self {
            h,
            realm,
            recs,
            runs,
            state: (0..n).map(|i| RecRun::new(i == 0)).collect(),
        }
    }

    fn rec(&self, i: usize) -> Granule {
        self.recs[i].granule().expect("rec")
    }

    fn script(&self, i: usize, exits: &[ScriptedExit]) {
        self.h.smc().rec_script(self.rec(i), exits);
    }

    /// Writes `enter` to REC `i`'s run granule.
    fn write_entry(&self, i: usize, enter: &RmiRecEnter) {
        let page = &self.runs[i];
        assert!(FakePages::write_words(
            page,
            RmiRecEnter::FLAGS_WORD,
            &[enter.flags]
        ));
        assert!(FakePages::write_words(
            page,
            RmiRecEnter::GPRS_WORD,
            &enter.gprs
        ));
    }

    /// Reads the exit half of REC `i`'s run granule.
    fn read_exit(&self, i: usize) -> RmiRecExit {
        let mut w = [0u64; RmiRecExit::NR_WORDS];
        assert!(FakePages::read_words(
            &self.runs[i],
            RmiRecExit::FIRST_WORD,
            &mut w
        ));
        RmiRecExit::from_words(&w)
    }

    /// Enters REC `i` with what its run state hands over, as the kernel
    /// does, and records the outcome.
    fn enter(&mut self, i: usize) -> Result<RecExit, EnterFailure> {
        let entry = self.state[i].entry(false);
        self.write_entry(i, &entry);
        let run = FakePages::granule(&self.runs[i]);
        let result = rec_enter(self.h.smc(), self.rec(i), run);
        let exit = result.map(|()| decode(&self.read_exit(i), IPA_BITS));
        self.state[i].entered(exit.as_ref().map_err(|e| *e))?;
        Ok(exit.expect("checked"))
    }

    /// Completes REC `i`'s pending PSCI call as KVM answered it.
    fn complete_psci(&mut self, i: usize, kvm_x0: u64) {
        let recs: Vec<_> = self.recs.iter().map(|r| r.granule()).collect();
        let me = self.rec(i);
        self.state[i]
            .complete_psci(
                self.h.smc(),
                me,
                |t| recs.get(usize::try_from(t).ok()?).copied().flatten(),
                kvm_x0,
            )
            .expect("complete");
    }

    fn finish(mut self) {
        self.realm.teardown_stage2(&mut || {}).expect("teardown");
        for r in &mut self.recs {
            r.destroy().expect("rec destroy");
        }
        self.recs.clear();
        self.realm.destroy(&mut || {}).expect("destroy");
    }
}

/// `RMI_REC_ENTER` through `smc`, as the kernel's run loop makes it
/// (`rec_enter_args`, then the status in x0).
fn rec_enter(smc: &impl SmcConduit, rec: Granule, run: Granule) -> Result<(), RmiError> {
    rmi_result(smc.call(&rec_enter_args(rec, run)).x(0))
}

fn gprs(seed: u64) -> [u64; 31] {
    core::array::from_fn(|i| seed.wrapping_mul(0x9e37_79b9).wrapping_add(i as u64))
}

#[test]
fn psci_fids_and_mpidrs_decode_as_the_rmm_reports_them() {
    assert_eq!(rec_index_of_mpidr(0), 0);
    assert_eq!(rec_index_of_mpidr(0x101), 17);
    assert_eq!(rec_index_of_mpidr(0x01_0000_0000), 1 << 20);
    for i in [0, 1, 15, 16, 255, 4096, (1 << 20) + 3] {
        // Aff3 moves from [31:24] (RmiRecMpidr) to [39:32] (MPIDR_EL1).
        let rec = RmiRecMpidr::from_index(i).expect("mpidr").raw();
        let el1 = (rec & 0x00ff_ffff) | ((rec >> 24) << 32);
        assert_eq!(rec_index_of_mpidr(el1), i);
    }
    assert_eq!(
        PsciCall::of(0xc400_0003, 0x1),
        PsciCall::CpuOn { target: 1 }
    );
    assert_eq!(
        PsciCall::of(0x8400_0003, 0x2),
        PsciCall::CpuOn { target: 2 }
    );
    assert_eq!(
        PsciCall::of(0xc400_0004, 0x100),
        PsciCall::AffinityInfo { target: 16 }
    );
    assert_eq!(PsciCall::of(0x8400_0002, 0), PsciCall::CpuOff);
    assert_eq!(PsciCall::of(0xc400_0001, 0), PsciCall::CpuSuspend);
    assert_eq!(PsciCall::of(0x8400_0008, 0), PsciCall::SystemOff);
    assert_eq!(PsciCall::of(0x8400_0009, 0), PsciCall::SystemReset);
    assert_eq!(PsciCall::of(0x8600_0003, 0), PsciCall::Other, "not PSCI");
    assert_eq!(PsciCall::of(0xc400_0013, 0), PsciCall::Other);
    let on = PsciCall::CpuOn { target: 1 };
    assert_eq!(on.status(0), PsciStatus::Success);
    assert_eq!(on.status(-4i64 as u64), PsciStatus::Success, "ALREADY_ON");
    assert_eq!(on.status(-2i64 as u64), PsciStatus::Denied);
    assert_eq!(on.status(-3i64 as u64), PsciStatus::Denied);
    let aff = PsciCall::AffinityInfo { target: 1 };
    assert_eq!(aff.status(-2i64 as u64), PsciStatus::Success);
}

/// MMIO reads and writes, an MMIO access without a syndrome, a host call
/// whose results are handed over again after the RMM reported their page
/// missing, and both RIPAS answers: every entry is accepted, and the RMM
/// gets exactly the host's answers.
#[test]
fn each_answer_reaches_the_rmm_as_meant() {
    let h = host(Rmm::active());
    let mut r = Running::new(&h, 1);
    let call = gprs(7);
    r.script(
        0,
        &[
            ScriptedExit::Mmio {
                ipa: SHARED | 0x0900_0008,
                write: false,
                size_log2: 2,
                value: 0,
            },
            ScriptedExit::Mmio {
                ipa: SHARED | 0x0900_0010,
                write: true,
                size_log2: 3,
                value: 0xdead_beef_0bad_f00d,
            },
            ScriptedExit::MmioNoSyndrome {
                ipa: SHARED | 0x0900_0000,
            },
            ScriptedExit::HostCall { imm: 3, gprs: call },
            ScriptedExit::HostCallUnmapped { ipa: 0x2000 },
            ScriptedExit::Irq,
            ScriptedExit::RipasChange {
                base: 0x1000,
                top: 0x3000,
                ripas: 0,
            },
            ScriptedExit::RipasChange {
                base: 0x1000,
                top: 0x3000,
                ripas: 1,
            },
            ScriptedExit::Irq,
        ],
    );
    // 1: a 4-byte read at 0x0900_0008.
    let exit = r.enter(0).expect("enter");
    let RecExit::SharedFault {
        access: Some(a), ..
    } = exit
    else {
        panic!("{exit:?}");
    };
    assert_eq!((a.gpa, a.write, a.len), (0x0900_0008, false, 4));
    assert_eq!(
        r.state[0].complete_sysreg_read(1),
        Err(CompletionError::NotAsked)
    );
    r.state[0].complete_mmio(Some(0x1234_5678)).expect("read");
    assert_eq!(
        r.state[0].complete_mmio(Some(1)),
        Err(CompletionError::Answered)
    );
    // 2: an 8-byte write.
    let exit = r.enter(0).expect("enter");
    let RecExit::SharedFault {
        access: Some(a), ..
    } = exit
    else {
        panic!("{exit:?}");
    };
    assert_eq!((a.write, a.len, a.data), (true, 8, 0xdead_beef_0bad_f00d));
    r.state[0].complete_mmio(None).expect("write");
    // 3: no syndrome: only a SEA answers it.
    let exit = r.enter(0).expect("enter");
    assert!(matches!(exit, RecExit::SharedFault { access: None, .. }));
    assert_eq!(
        r.state[0].complete_mmio(None),
        Err(CompletionError::NotAsked)
    );
    assert!(r.state[0].mmio_pending());
    r.state[0].inject_sea().expect("sea");
    assert!(!r.state[0].mmio_pending());
    // 4: a host call, answered.
    let exit = r.enter(0).expect("enter");
    assert_eq!(exit, RecExit::HostCall { imm: 3 });
    let results = gprs(99);
    r.state[0].complete_host_call(results);
    // 5: the RMM says the results' page faulted; 6: handed over again.
    let exit = r.enter(0).expect("enter");
    assert!(matches!(exit, RecExit::ProtectedFault { ipa: 0x2000, .. }));
    assert_eq!(r.enter(0), Ok(RecExit::Interrupt));
    // 7, 8: RIPAS EMPTY accepted, RAM rejected.
    assert_eq!(
        r.state[0].answer_ripas(true),
        Err(CompletionError::NotAsked)
    );
    let exit = r.enter(0).expect("enter");
    assert!(matches!(exit, RecExit::RipasChange { ripas: 0, .. }));
    r.state[0].answer_ripas(true).expect("accept");
    let exit = r.enter(0).expect("enter");
    assert!(matches!(exit, RecExit::RipasChange { ripas: 1, .. }));
    r.state[0].answer_ripas(false).expect("reject");
    assert_eq!(r.enter(0), Ok(RecExit::Interrupt));

    let seen = h.smc().rec_entries(r.rec(0));
    assert_eq!(seen.len(), 9);
    let flags: Vec<_> = seen
        .iter()
        .map(|e| e.flags & !REC_ENTRY_FLAG_TRAP_WFI)
        .collect();
    assert_eq!(
        flags,
        [
            0,
            REC_ENTRY_FLAG_EMUL_MMIO,
            REC_ENTRY_FLAG_EMUL_MMIO,
            REC_ENTRY_FLAG_INJECT_SEA,
            0,
            0,
            0,
            0,
            REC_ENTRY_FLAG_RIPAS_RESPONSE,
        ]
    );
    assert!(seen.iter().all(|e| e.flags & REC_ENTRY_FLAG_TRAP_WFI != 0));
    assert_eq!(seen[1].gprs[0], 0x1234_5678, "read value in gprs[0]");
    assert_eq!(seen[2].gprs[0], 0, "a write hands nothing back");
    assert!(
        !seen[4].host_call_done && seen[4].gprs == results,
        "page missing"
    );
    assert!(seen[5].host_call_done && seen[5].gprs == results, "again");
    assert!(!seen[6].host_call_done);
    assert_eq!(seen[6].gprs, [0; 31], "delivered: not sent a third time");
    assert_eq!(seen[7].ripas_answer, Some(false), "EMPTY accepted");
    assert_eq!(seen[8].ripas_answer, Some(true), "RAM rejected");
    r.finish();
}

/// What a refused entry means: `BUSY` and `BLOCKED` are retried; the boot
/// REC, on from its creation, refused with `ERROR_REC` is the RMM refusing
/// its state (the VM dies with a reason), never "not on yet", which only a
/// REC the guest has not turned on gets.
#[test]
fn refused_entries_are_told_apart() {
    let h = host(Rmm::active());
    let mut r = Running::new(&h, 2);
    r.script(0, &[ScriptedExit::Irq, ScriptedExit::Irq]);
    for status in [RmiStatus::Busy, RmiStatus::Blocked] {
        h.smc().fail_call(RMI_REC_ENTER, 0, status, 0);
        assert_eq!(r.enter(0), Err(EnterFailure::Contended), "{status:?}");
        assert_eq!(
            r.enter(0),
            Ok(RecExit::Interrupt),
            "{status:?}: entered again"
        );
    }
    h.smc().fail_call(RMI_REC_ENTER, 0, RmiStatus::ErrorRec, 0);
    assert!(
        matches!(r.enter(0), Err(EnterFailure::Dead(e)) if e.status() == RmiStatus::ErrorRec),
        "boot REC refused"
    );
    assert_eq!(
        r.enter(1),
        Err(EnterFailure::NotYetOn),
        "REC 1 never turned on"
    );
    r.finish();
}

/// CPU_ON of REC 1: REC 1 cannot run until it is completed (EAGAIN, not
/// a dead VM); KVM's answers map to the statuses the RMM takes; CPU_OFF
/// turns REC 1 off again; SYSTEM_OFF shuts the realm down.
#[test]
fn psci_completions_turn_recs_on_and_off() {
    let h = host(Rmm::active());
    let mut r = Running::new(&h, 2);
    let mpidr1 = 1;
    assert_eq!(r.enter(1), Err(EnterFailure::NotYetOn));
    r.script(
        0,
        &[
            ScriptedExit::CpuOn { mpidr: mpidr1 },
            ScriptedExit::CpuOn { mpidr: mpidr1 },
            ScriptedExit::AffinityInfo { mpidr: mpidr1 },
            ScriptedExit::CpuOn { mpidr: mpidr1 },
            ScriptedExit::AffinityInfo { mpidr: mpidr1 },
            ScriptedExit::SystemOff,
        ],
    );
    r.script(1, &[ScriptedExit::Irq, ScriptedExit::CpuOff]);
    // 1: CPU_ON, not completed yet: the caller cannot run, the RMM says
    // ERROR_REC, which is a host bug (dead), not a retry.
    let exit = r.enter(0).expect("cpu_on");
    assert_eq!(
        exit,
        RecExit::Psci {
            fid: 0xc400_0003,
            target: mpidr1
        }
    );
    assert_eq!(
        r.state[0].psci_pending(),
        Some(PsciCall::CpuOn { target: 1 })
    );
    let mut early = r.state[0].clone();
    let run = FakePages::granule(&r.runs[0]);
    let e = rec_enter(h.smc(), r.rec(0), run).expect_err("not completed");
    assert_eq!(e.status(), RmiStatus::ErrorRec);
    assert_eq!(early.entered(Err(e)), Err(EnterFailure::Dead(e)));
    assert_eq!(r.enter(1), Err(EnterFailure::NotYetOn), "REC 1 still off");
    r.complete_psci(0, 0);
    assert_eq!(r.state[0].psci_pending(), None);
    assert_eq!(h.smc().rec_psci_result(r.rec(0)), Some(0));
    assert!(h.smc().rec_runnable(r.rec(1)));
    assert_eq!(r.enter(1), Ok(RecExit::Interrupt));
    // 2: CPU_ON again: KVM says ALREADY_ON, so does the RMM.
    r.enter(0).expect("cpu_on");
    r.complete_psci(0, PSCI_ALREADY_ON);
    assert_eq!(h.smc().rec_psci_result(r.rec(0)), Some(PSCI_ALREADY_ON));
    // 3: AFFINITY_INFO: ON (0).
    r.enter(0).expect("affinity");
    r.complete_psci(0, -2i64 as u64);
    assert_eq!(h.smc().rec_psci_result(r.rec(0)), Some(0));
    // REC 1 turns itself off: entering it again is a retry, not a bug.
    let exit = r.enter(1).expect("cpu_off");
    assert!(matches!(
        exit,
        RecExit::Psci {
            fid: 0x8400_0002,
            ..
        }
    ));
    assert_eq!(r.enter(1), Err(EnterFailure::NotYetOn));
    // 4: CPU_ON that KVM refused: DENIED.
    r.enter(0).expect("cpu_on");
    r.complete_psci(0, -2i64 as u64);
    assert_eq!(h.smc().rec_psci_result(r.rec(0)), Some(PSCI_DENIED));
    assert!(!h.smc().rec_runnable(r.rec(1)));
    // 5: AFFINITY_INFO: OFF (1).
    r.enter(0).expect("affinity");
    r.complete_psci(0, 0);
    assert_eq!(h.smc().rec_psci_result(r.rec(0)), Some(1));
    // 6: SYSTEM_OFF: no REC runs again.
    r.enter(0).expect("system_off");
    assert_eq!(r.enter(0), Err(EnterFailure::Shutdown));
    assert_eq!(r.enter(1), Err(EnterFailure::Shutdown));
    r.finish();
}

/// The flags the run state refuses to set are the ones the RMM refuses.
#[test]
fn answers_nobody_asked_for_are_refused_before_the_rmm_sees_them() {
    let h = host(Rmm::active());
    let mut r = Running::new(&h, 1);
    r.script(
        0,
        &[
            ScriptedExit::Irq,
            ScriptedExit::Irq,
            ScriptedExit::ProtectedFault { ipa: 0x4000 },
            ScriptedExit::Irq,
        ],
    );
    r.enter(0).expect("irq");
    assert_eq!(r.state[0].inject_sea(), Err(CompletionError::NotAsked));
    assert_eq!(
        r.state[0].complete_mmio(None),
        Err(CompletionError::NotAsked)
    );
    assert!(!r.state[0].mmio_pending());
    // What the RMM does with them anyway.
    for flags in [REC_ENTRY_FLAG_EMUL_MMIO, REC_ENTRY_FLAG_INJECT_SEA] {
        let mut e = RmiRecEnter::zeroed();
        e.flags = flags;
        r.write_entry(0, &e);
        let run = FakePages::granule(&r.runs[0]);
        let err = rec_enter(h.smc(), r.rec(0), run).expect_err("refused");
        assert_eq!(err.status(), RmiStatus::ErrorRec);
    }
    r.enter(0).expect("irq");
    // A fault at a protected IPA is the host's to map, not the realm's
    // to be told about.
    r.enter(0).expect("fault");
    assert_eq!(r.state[0].inject_sea(), Err(CompletionError::NotAsked));
    r.enter(0).expect("irq");
    r.finish();
}

/// One scripted exit and how the host answers it.
#[derive(Clone, Copy, Debug)]
enum Step {
    Read(u8, u64),
    Write(u8, u64),
    NoSyndrome(bool),
    Host(u64),
    Fault,
    Irq,
    Ripas(bool, bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..4, any::<u64>()).prop_map(|(s, v)| Step::Read(s, v)),
        (0u8..4, any::<u64>()).prop_map(|(s, v)| Step::Write(s, v)),
        any::<bool>().prop_map(Step::NoSyndrome),
        any::<u64>().prop_map(Step::Host),
        Just(Step::Fault),
        Just(Step::Irq),
        (any::<bool>(), any::<bool>()).prop_map(|(r, a)| Step::Ripas(r, a)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random exit sequences, answered (or not) at random: the RMM never
    /// refuses an entry the run state prepared.
    #[test]
    fn the_rmm_takes_every_entry_the_run_state_prepares(steps in prop::collection::vec(step(), 1..40)) {
        let h = host(Rmm::active());
        let mut r = Running::new(&h, 1);
        for s in &steps {
            let exit = match *s {
                Step::Read(size_log2, _) => ScriptedExit::Mmio { ipa: SHARED | 0x100, write: false, size_log2, value: 0 },
                Step::Write(size_log2, value) => ScriptedExit::Mmio { ipa: SHARED | 0x100, write: true, size_log2, value },
                Step::NoSyndrome(_) => ScriptedExit::MmioNoSyndrome { ipa: SHARED },
                Step::Host(_) => ScriptedExit::HostCall { imm: 0, gprs: [1; 31] },
                Step::Fault => ScriptedExit::ProtectedFault { ipa: 0x1000 },
                Step::Irq => ScriptedExit::Irq,
                Step::Ripas(ram, _) => ScriptedExit::RipasChange { base: 0, top: 0x1000, ripas: u8::from(ram) },
            };
            r.script(0, &[exit]);
            prop_assert!(r.enter(0).is_ok(), "{s:?}");
            match *s {
                Step::Read(_, v) => r.state[0].complete_mmio(Some(v)).expect("read"),
                Step::Write(..) => r.state[0].complete_mmio(None).expect("write"),
                Step::NoSyndrome(true) => r.state[0].inject_sea().expect("sea"),
                Step::Host(v) => r.state[0].complete_host_call([v; 31]),
                Step::Ripas(_, accept) => r.state[0].answer_ripas(accept).expect("ripas"),
                _ => {}
            }
        }
        r.script(0, &[ScriptedExit::Irq]);
        prop_assert!(r.enter(0).is_ok());
        r.finish();
    }
}

#[test]
fn psci_host_calls_are_told_apart_from_other_smccc_calls() {
    // PSCI_VERSION, CPU_ON (SMC32 and SMC64), SYSTEM_OFF, the last PSCI
    // function; upper halves of x0 are ignored (w0 is the ID).
    for fid in [
        0x8400_0000u64,
        0x8400_0003,
        0xc400_0003,
        0x8400_0008,
        0xc400_001f,
        0xffff_ffff_8400_0002,
    ] {
        assert!(host_call_is_psci(fid), "{fid:#x}");
    }
    // SMCCC_VERSION (arch), past the PSCI range, RSI (standard, 0x190+),
    // vendor hypervisor, a yielding call, and the (non-)fast bit clear.
    for fid in [
        0x8000_0000u64,
        0x8400_0020,
        0xc400_0190,
        0xc600_0001,
        0x8600_ff01,
        0x0400_0003,
    ] {
        assert!(!host_call_is_psci(fid), "{fid:#x}");
    }
}

#[test]
fn a_ripas_change_is_carried_out_with_set_ripas_splitting_blocks() {
    let h = host(Rmm::active());
    let mut r = Running::new(&h, 1);
    let rd = r.realm.rd().expect("rd");
    // Neither range starts on a 2 MiB boundary: level 2 and 3 tables are
    // created on the way. EMPTY over [1 MiB + 4 KiB, 3 MiB), then RAM back
    // over part of it.
    let (base, top) = (0x10_1000, 0x30_0000);
    r.script(
        0,
        &[
            ScriptedExit::RipasChange {
                base,
                top,
                ripas: 0,
            },
            ScriptedExit::RipasChange {
                base: 0x20_0000,
                top: 0x20_3000,
                ripas: 1,
            },
            ScriptedExit::Irq,
        ],
    );
    let ipa = |a: u64| Ipa::new(a).expect("ipa");
    let exit = r.enter(0).expect("enter");
    assert!(matches!(exit, RecExit::RipasChange { ripas: 0, .. }));
    let req = r.state[0].ripas_request().expect("request");
    assert_eq!((req.base, req.top, req.ram), (base, top, false));
    let mut at = ipa(req.base);
    r.realm
        .set_ripas(r.rec(0), &mut at, ipa(req.top), &mut || false)
        .expect("set ripas");
    assert_eq!(at.get(), top);
    r.state[0].ripas_progress(at.get());
    assert_eq!(r.state[0].ripas_request().map(|q| q.base), Some(top));
    r.state[0].answer_ripas(true).expect("accept");
    assert_eq!(r.state[0].ripas_request(), None);
    assert!(h.smc().realm_ram(rd).is_empty());

    let exit = r.enter(0).expect("enter");
    assert!(matches!(exit, RecExit::RipasChange { ripas: 1, .. }));
    let req = r.state[0].ripas_request().expect("request");
    let mut at = ipa(req.base);
    r.realm
        .set_ripas(r.rec(0), &mut at, ipa(req.top), &mut || false)
        .expect("set ripas");
    assert_eq!(at.get(), 0x20_3000);
    r.state[0].answer_ripas(true).expect("accept");
    assert_eq!(h.smc().realm_ram(rd), vec![(0x20_0000, 0x20_3000)]);
    assert_eq!(r.enter(0), Ok(RecExit::Interrupt));
    // Both answers were acceptances.
    let answers: Vec<_> = h
        .smc()
        .rec_entries(r.rec(0))
        .iter()
        .map(|e| e.ripas_answer)
        .collect();
    assert_eq!(answers, vec![None, Some(false), Some(false)]);
    // Without a request the RMM refuses the call: a host bug, the realm dies.
    let mut at = ipa(0x40_0000);
    assert!(r
        .realm
        .set_ripas(r.rec(0), &mut at, ipa(0x40_1000), &mut || false)
        .is_err());
    assert_eq!(r.realm.state(), RealmState::Dead);
}

#[test]
fn a_ripas_change_out_of_memory_goes_on_where_it_stopped() {
    let h = host(Rmm::active());
    let mut r = Running::new(&h, 1);
    let rd = r.realm.rd().expect("rd");
    // [2 MiB - 8 KiB, 4 MiB + 8 KiB): level-3 tables at both ends, one
    // 2 MiB block in between.
    let (base, top) = (0x1f_e000, 0x40_2000);
    r.script(
        0,
        &[
            ScriptedExit::RipasChange {
                base,
                top,
                ripas: 0,
            },
            ScriptedExit::Irq,
        ],
    );
    assert!(matches!(r.enter(0), Ok(RecExit::RipasChange { .. })));
    let ipa = |a: u64| Ipa::new(a).expect("ipa");
    // Each retry gets one more page than the last, until none is missing.
    let mut budget = 0;
    loop {
        let req = r.state[0].ripas_request().expect("request");
        h.smc().mem_mut().set_alloc_budget(Some(budget));
        let mut at = ipa(req.base);
        let done = r
            .realm
            .set_ripas(r.rec(0), &mut at, ipa(req.top), &mut || false);
        h.smc().mem_mut().set_alloc_budget(None);
        assert!(at.get() >= req.base && at.get() <= top);
        r.state[0].ripas_progress(at.get());
        match done {
            Ok(RipasWalk::Done) => break,
            Ok(RipasWalk::Paused) => panic!("paused without being asked to"),
            Err(RealmError::NoMemory) => budget += 1,
            Err(e) => panic!("{e:?}"),
        }
        assert!(budget < 16, "no progress");
    }
    assert!(budget > 0, "the range needed tables");
    assert_eq!(r.state[0].ripas_request().map(|q| q.base), Some(top));
    r.state[0].answer_ripas(true).expect("accept");
    assert!(h.smc().realm_ram(rd).is_empty());
    assert_eq!(r.enter(0), Ok(RecExit::Interrupt));
    assert_eq!(r.realm.state(), RealmState::Active);
}

/// RIPAS changes of 64 MiB (EMPTY, then RAM back) carried out with
/// `pause` asked after each step, the VMM re-entering after each pause:
/// the `RMI_RTT_SET_RIPAS` calls taken, and the pauses.
fn ripas_changes_paused(pause_every: Option<u32>) -> (u32, u32) {
    let h = host(Rmm::active());
    let mut r = Running::new(&h, 1);
    let rd = r.realm.rd().expect("rd");
    // 64 MiB not on a 2 MiB boundary at either end, as a guest converting
    // a swiotlb pool to shared and back.
    let (base, top) = (0x10_1000, 0x410_3000);
    r.script(
        0,
        &[
            ScriptedExit::RipasChange {
                base,
                top,
                ripas: 0,
            },
            ScriptedExit::RipasChange {
                base,
                top,
                ripas: 1,
            },
            ScriptedExit::Irq,
        ],
    );
    let ipa = |a: u64| Ipa::new(a).expect("ipa");
    let before = h.smc().calls(RMI_RTT_SET_RIPAS);
    let (mut pauses, mut steps) = (0, 0);
    for ram in [false, true] {
        assert!(matches!(r.enter(0), Ok(RecExit::RipasChange { .. })));
        loop {
            let req = r.state[0].ripas_request().expect("request");
            assert_eq!(req.ram, ram);
            let mut at = ipa(req.base);
            let mut pause = || {
                steps += 1;
                pause_every.is_some_and(|n| steps % n == 0)
            };
            let walk = r
                .realm
                .set_ripas(r.rec(0), &mut at, ipa(req.top), &mut pause)
                .expect("set ripas");
            assert!(at.get() > req.base, "a walk without progress");
            r.state[0].ripas_progress(at.get());
            match walk {
                RipasWalk::Done => break,
                RipasWalk::Paused => pauses += 1,
            }
        }
        assert_eq!(r.state[0].ripas_request().map(|q| q.base), Some(top));
        r.state[0].answer_ripas(true).expect("accept");
    }
    assert_eq!(h.smc().realm_ram(rd), vec![(base, top)]);
    assert_eq!(r.enter(0), Ok(RecExit::Interrupt));
    assert_eq!(r.realm.state(), RealmState::Active);
    (h.smc().calls(RMI_RTT_SET_RIPAS) - before, pauses)
}

/// A large RIPAS change paused after every step (a signal pending at each
/// one) goes on where it stopped: no call more than without pauses.
#[test]
fn a_paused_ripas_change_goes_on_where_it_stopped() {
    let (calls, pauses) = ripas_changes_paused(None);
    assert_eq!(pauses, 0);
    for every in [1, 2, 3] {
        let (paused_calls, pauses) = ripas_changes_paused(Some(every));
        assert_eq!(paused_calls, calls, "pausing every {every} steps");
        assert!(pauses > 0 && pauses <= calls, "{pauses} pauses");
    }
}

/// A misaligned RIPAS change splits blocks into tables; once the range is
/// uniform again (all EMPTY, nothing mapped), the fold after the change
/// takes them back, so RTT memory follows what the guest maps, not how it
/// changed RIPAS. A range that stays mixed keeps its tables.
#[test]
fn tables_split_by_a_ripas_change_fold_when_the_range_is_uniform_again() {
    let h = host(Rmm::active());
    let mut r = Running::new(&h, 1);
    let ipa = |a: u64| Ipa::new(a).expect("ipa");
    let before = r.realm.rtt_pages();
    let (base, top) = (0x20_1000, 0x20_3000);
    r.script(
        0,
        &[
            ScriptedExit::RipasChange {
                base,
                top,
                ripas: 1,
            },
            ScriptedExit::RipasChange {
                base,
                top,
                ripas: 0,
            },
            ScriptedExit::Irq,
        ],
    );
    for ram in [true, false] {
        let exit = r.enter(0).expect("enter");
        assert!(matches!(exit, RecExit::RipasChange { .. }));
        let req = r.state[0].ripas_request().expect("request");
        assert_eq!((req.start, req.ram), (base, ram));
        let mut at = ipa(req.base);
        let walk = r
            .realm
            .set_ripas(r.rec(0), &mut at, ipa(req.top), &mut || false)
            .expect("set ripas");
        assert_eq!(walk, RipasWalk::Done);
        let split = r.realm.rtt_pages();
        assert!(split > before, "the change split blocks");
        let folded = r
            .realm
            .fold_uniform(ipa(req.start), at, &mut || {})
            .expect("fold");
        if ram {
            // RAM in the middle of EMPTY: the tables stay.
            assert_eq!(folded, 0);
            assert_eq!(r.realm.rtt_pages(), split);
        } else {
            assert_eq!(folded, split - before);
            assert_eq!(r.realm.rtt_pages(), before);
        }
        r.state[0].answer_ripas(true).expect("accept");
    }
    assert_eq!(r.enter(0), Ok(RecExit::Interrupt));
    assert_ne!(r.realm.state(), RealmState::Dead);
}

/// The fold looks at each table there may be, but a region with no table
/// above is skipped whole: 1 GiB without tables costs a call or two.
#[test]
fn folding_skips_regions_without_tables() {
    let h = host(Rmm::active());
    let mut r = Running::new(&h, 1);
    let ipa = |a: u64| Ipa::new(a).expect("ipa");
    let calls = h.smc().calls(RMI_RTT_FOLD);
    let folded = r
        .realm
        .fold_uniform(ipa(0x4000_0000), ipa(0x8000_0000), &mut || {})
        .expect("fold");
    assert_eq!(folded, 0);
    let made = h.smc().calls(RMI_RTT_FOLD) - calls;
    assert!(made <= 2, "{made} RTT_FOLD calls for 1 GiB without tables");
    assert_ne!(r.realm.state(), RealmState::Dead);
}

#[test]
fn ripas_ranges_must_lie_in_guest_memfd_memslots() {
    // Memslots of frames [0, 16) and [16, 32), then [64, 80).
    let slots = |gfn: u64| match gfn {
        0..16 => Some(16),
        16..32 => Some(32),
        64..80 => Some(80),
        _ => None,
    };
    assert!(
        ripas_range_backed(0, 0x2_0000, slots),
        "across two memslots"
    );
    assert!(ripas_range_backed(0x4_0000, 0x5_0000, slots));
    assert!(ripas_range_backed(0x1000, 0x1800, slots), "part of a frame");
    assert!(
        !ripas_range_backed(0x1_f000, 0x2_1000, slots),
        "past the end"
    );
    assert!(
        !ripas_range_backed(0x3_f000, 0x4_1000, slots),
        "before the start"
    );
    assert!(
        !ripas_range_backed(0x10_0000, 0x10_1000, slots),
        "no memslot"
    );
    assert!(!ripas_range_backed(0x1000, 0x1000, slots), "empty");
    assert!(
        !ripas_range_backed(0x1000, u64::MAX, slots),
        "overflowing top"
    );
}
