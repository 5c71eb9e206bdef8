// SPDX-License-Identifier: GPL-2.0

//! RECs in the RMM model: `REC_CREATE` and `REC_DESTROY` as stateful
//! operations, `REC_ENTER` against a per-REC script of exits, and
//! `PSCI_COMPLETE`, with TF-RMM's checks (runtime/rmi/rec.c, run.c,
//! rsi/psci.c).

use std::collections::VecDeque;

use super::{
    rtt_error,
    status,
    Effect,
    Op,
    Phase,
    RealmState,
    Rmm,
    State, //
};
use crate::addr::{
    Granule,
    GRANULE_SIZE, //
};
use crate::mem::{
    GranuleState,
    Mem, //
};
use crate::rmi_smc::{
    RmiMemState,
    RmiRecMpidr,
    RmiStatus,
    SmcRegs,
    REC_ENTRY_FLAG_EMUL_MMIO,
    REC_ENTRY_FLAG_INJECT_SEA,
    REC_ENTRY_FLAG_RIPAS_RESPONSE, //
};

/// Auxiliary granules TF-RMM asks for per REC.
pub(crate) const MODEL_REC_AUX: u64 = 16;

/// PSCI function IDs the model's realm calls (SMC64 where there is one).
pub(crate) const PSCI_CPU_OFF: u64 = 0x8400_0002;
/// See [`PSCI_CPU_OFF`].
pub(crate) const PSCI_CPU_ON: u64 = 0xc400_0003;
/// See [`PSCI_CPU_OFF`].
pub(crate) const PSCI_AFFINITY_INFO: u64 = 0xc400_0004;
/// See [`PSCI_CPU_OFF`].
pub(crate) const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;

/// `PSCI_RET_ALREADY_ON`.
pub(crate) const PSCI_ALREADY_ON: u64 = -4i64 as u64;
/// `PSCI_RET_DENIED`.
pub(crate) const PSCI_DENIED: u64 = -3i64 as u64;

/// What the realm does on its next run, as a test scripts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScriptedExit {
    /// A load or store at the unprotected IPA `ipa`, with a syndrome.
    Mmio {
        /// The IPA (with the top bit set).
        ipa: u64,
        /// A store.
        write: bool,
        /// log2 of the access size.
        size_log2: u8,
        /// The value stored.
        value: u64,
    },
    /// A load or store at an unprotected IPA without a syndrome.
    MmioNoSyndrome {
        /// The IPA.
        ipa: u64,
    },
    /// A stage-2 translation fault at the protected IPA `ipa`.
    ProtectedFault {
        /// The IPA.
        ipa: u64,
    },
    /// The entry could not write the results of the pending host call:
    /// their page at `ipa` is not mapped. The RMM reports a stage-2 data
    /// abort there without running the realm, and keeps the call pending.
    HostCallUnmapped {
        /// The IPA of the realm's `RsiHostCall`.
        ipa: u64,
    },
    /// A host IRQ.
    Irq,
    /// `RSI_HOST_CALL` with these registers.
    HostCall {
        /// The immediate.
        imm: u16,
        /// x0..x30 of the call.
        gprs: [u64; 31],
    },
    /// PSCI `CPU_ON` of the REC with this MPIDR.
    CpuOn {
        /// The target's `RmiRecMpidr`.
        mpidr: u64,
    },
    /// PSCI `AFFINITY_INFO` of the REC with this MPIDR.
    AffinityInfo {
        /// The target's `RmiRecMpidr`.
        mpidr: u64,
    },
    /// PSCI `CPU_OFF`.
    CpuOff,
    /// PSCI `SYSTEM_OFF`.
    SystemOff,
    /// `RSI_IPA_STATE_SET` over `[base, top)` to `ripas`.
    RipasChange {
        /// Base.
        base: u64,
        /// Top.
        top: u64,
        /// 0 EMPTY, 1 RAM.
        ripas: u8,
    },
}

/// What the last exit lets the next entry complete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum LastExit {
    /// Nothing to complete.
    #[default]
    Other,
    /// A data abort at an unprotected IPA; `isv` if it had a syndrome.
    UnprotectedAbort { isv: bool },
}

/// An operation the REC waits for the host to complete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Pending {
    #[default]
    None,
    /// `CPU_ON` or `AFFINITY_INFO` of REC `target`: `PSCI_COMPLETE` first.
    Psci { fid: u64, target: u64 },
    /// A host call: the next entry hands the results over.
    HostCall,
    /// A RIPAS change: the next entry answers it.
    Ripas,
}

/// One `REC_ENTER` the model accepted, as the test inspects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entered {
    /// `enter.flags`.
    pub(crate) flags: u64,
    /// `enter.gprs`.
    pub(crate) gprs: [u64; 31],
    /// The entry handed over host-call results (`gprs`).
    pub(crate) host_call_done: bool,
    /// The entry answered a RIPAS change; `rejected` if it said no.
    pub(crate) ripas_answer: Option<bool>,
}

/// A REC, as the RMM keeps it.
#[derive(Debug)]
pub(super) struct ModelRec {
    rd: Granule,
    index: u64,
    runnable: bool,
    aux: Vec<Granule>,
    pending: Pending,
    last_exit: LastExit,
    /// x0 as the realm sees it after the last PSCI completion.
    psci_result: Option<u64>,
    /// The RIPAS change requested at the last exit: `[addr, top)` still
    /// to do, to RAM if `ram`. `RTT_SET_RIPAS` advances `addr`.
    set_ripas: Option<SetRipas>,
    script: VecDeque<ScriptedExit>,
    entries: Vec<Entered>,
}

/// A RIPAS change in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SetRipas {
    /// Where the next `RTT_SET_RIPAS` must start.
    pub(super) addr: u64,
    /// The end of the request.
    pub(super) top: u64,
    /// RAM, else EMPTY.
    pub(super) ram: bool,
}

/// The arguments of a `REC_CREATE` in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RecCreate {
    rd: Granule,
    rec: Granule,
    params: u64,
}

impl RecCreate {
    /// The REC granule.
    pub(super) fn rec(&self) -> Granule {
        self.rec
    }
}

/// A model-internal reason to fail, as TF-RMM's status.
type Refusal = RmiStatus;

impl Rmm {
    /// `RMI_REC_CREATE`: the REC granule goes PARTIAL and the operation
    /// asks for the auxiliary granules; `RMI_OP_CONTINUE` then checks the
    /// realm and the params (see [`Rmm::rec_create_check`]).
    pub(super) fn rec_create(&self, args: &SmcRegs) -> SmcRegs {
        let (Some(rd), Some(rec)) = (Granule::new(args.x(1)), Granule::new(args.x(2))) else {
            return status(RmiStatus::ErrorInput);
        };
        if !self.state.borrow().realms.contains_key(&rd)
            || self.mem.borrow().state(rec) != Some(GranuleState::Delegated)
        {
            return status(RmiStatus::ErrorInput);
        }
        self.mem.borrow_mut().set_state(rec, GranuleState::InUse);
        let phases = vec![
            Phase::Donate {
                granules: MODEL_REC_AUX,
                state: RmiMemState::Delegated,
                can_cancel: false,
            },
            Phase::Continue { can_cancel: false },
            Phase::Finish,
        ];
        let effect = Effect::RecCreate(RecCreate {
            rd,
            rec,
            params: args.x(3),
        });
        self.start_op(Op::new(phases, effect))
    }

    /// What `rec_create_continue` checks once the granules are in: NS
    /// params, a NEW realm, an `RmiRecMpidr` naming the next index.
    pub(super) fn rec_create_check(st: &State, mem: &Mem, c: &RecCreate) -> Result<(), Refusal> {
        let (Some(flags), Some(mpidr)) = (mem.rmm_read(c.params), mem.rmm_read(c.params + 0x100))
        else {
            return Err(RmiStatus::ErrorInput);
        };
        let _ = flags;
        let realm = st.realms.get(&c.rd).ok_or(RmiStatus::ErrorInput)?;
        if realm.state != RealmState::New {
            return Err(RmiStatus::ErrorRealm);
        }
        match RmiRecMpidr::new(mpidr) {
            Some(m) if m.index() == realm.rec_count => Ok(()),
            _ => Err(RmiStatus::ErrorInput),
        }
    }

    /// Builds the REC of a `REC_CREATE` that passed its checks.
    pub(super) fn rec_create_finish(st: &mut State, mem: &Mem, c: &RecCreate, aux: Vec<Granule>) {
        let flags = mem.rmm_read(c.params).unwrap_or(0);
        let realm = st.realms.get_mut(&c.rd).expect("checked");
        let index = realm.rec_count;
        realm.rec_count += 1;
        realm.rec_refs += 1;
        st.recs.insert(
            c.rec,
            ModelRec {
                rd: c.rd,
                index,
                runnable: flags & 1 != 0,
                aux,
                pending: Pending::None,
                last_exit: LastExit::Other,
                psci_result: None,
                set_ripas: None,
                script: VecDeque::new(),
                entries: Vec::new(),
            },
        );
    }

    /// `RMI_REC_DESTROY`: the REC goes, its auxiliary granules come back
    /// (DELEGATED) through a reclaim, then the REC granule is DELEGATED.
    pub(super) fn rec_destroy(&self, args: &SmcRegs) -> SmcRegs {
        let Some(g) = Granule::new(args.x(1)) else {
            return status(RmiStatus::ErrorInput);
        };
        let rec = {
            let mut st = self.state.borrow_mut();
            let Some(rec) = st.recs.remove(&g) else {
                return status(RmiStatus::ErrorInput);
            };
            if let Some(realm) = st.realms.get_mut(&rec.rd) {
                realm.rec_refs -= 1;
            }
            rec
        };
        let phases = vec![
            Phase::Reclaim {
                objects: false,
                undelegated: false,
            },
            Phase::Continue { can_cancel: false },
            Phase::Finish,
        ];
        let mut op = Op::new(phases, Effect::RecDestroy(g));
        op.holding = rec.aux;
        self.start_op(op)
    }

    /// Scripts the next exits of REC `rec`.
    pub(crate) fn rec_script(&self, rec: Granule, exits: &[ScriptedExit]) {
        let mut st = self.state.borrow_mut();
        let r = st.recs.get_mut(&rec).expect("a REC");
        r.script.extend(exits.iter().copied());
    }

    /// The entries REC `rec` accepted, oldest first.
    pub(crate) fn rec_entries(&self, rec: Granule) -> Vec<Entered> {
        self.state.borrow().recs[&rec].entries.clone()
    }

    /// Whether REC `rec` may run.
    pub(crate) fn rec_runnable(&self, rec: Granule) -> bool {
        self.state.borrow().recs[&rec].runnable
    }

    /// REC `rec`'s index, or `None` if there is no such REC.
    pub(crate) fn rec_index(&self, rec: Granule) -> Option<u64> {
        self.state.borrow().recs.get(&rec).map(|r| r.index)
    }

    /// x0 the realm got from the last `PSCI_COMPLETE` of REC `rec`.
    pub(crate) fn rec_psci_result(&self, rec: Granule) -> Option<u64> {
        self.state.borrow().recs[&rec].psci_result
    }

    /// Number of RECs alive.
    pub(crate) fn rec_count(&self) -> usize {
        self.state.borrow().recs.len()
    }

    /// `RMI_REC_ENTER`, with run.c's checks in order, then the next
    /// scripted exit written to the run granule.
    pub(super) fn rec_enter(&self, args: &SmcRegs) -> SmcRegs {
        let (Some(g), Some(run)) = (Granule::new(args.x(1)), Granule::new(args.x(2))) else {
            return status(RmiStatus::ErrorInput);
        };
        if self.mem.borrow().state(run) != Some(GranuleState::Ns) {
            return status(RmiStatus::ErrorInput);
        }
        let mut st = self.state.borrow_mut();
        let Some(rec) = st.recs.get(&g) else {
            return status(RmiStatus::ErrorInput);
        };
        let rd = rec.rd;
        if st.realms.get(&rd).map(|r| r.state) != Some(RealmState::Active) {
            return status(RmiStatus::ErrorRealm);
        }
        let mem = self.mem.borrow();
        let word = |off: u64| mem.rmm_read(run.pa() + off).unwrap_or(0);
        let flags = word(0);
        let mut gprs = [0u64; 31];
        for (i, r) in gprs.iter_mut().enumerate() {
            *r = word(0x200 + 8 * i as u64);
        }
        drop(mem);
        let rec = st.recs.get_mut(&g).expect("present");
        if !rec.runnable || matches!(rec.pending, Pending::Psci { .. }) {
            return status(RmiStatus::ErrorRec);
        }
        let abort = rec.last_exit;
        if flags & REC_ENTRY_FLAG_INJECT_SEA != 0 && abort == LastExit::Other {
            return status(RmiStatus::ErrorRec);
        }
        if flags & REC_ENTRY_FLAG_EMUL_MMIO != 0
            && abort != (LastExit::UnprotectedAbort { isv: true })
        {
            return status(RmiStatus::ErrorRec);
        }
        let Some(exit) = rec.script.pop_front() else {
            panic!("REC {} entered with no scripted exit", rec.index);
        };
        let unmapped = matches!(exit, ScriptedExit::HostCallUnmapped { .. });
        assert!(
            !unmapped || rec.pending == Pending::HostCall,
            "scripted a host call fault with no host call pending"
        );
        let host_call_done = rec.pending == Pending::HostCall && !unmapped;
        let ripas_answer =
            (rec.pending == Pending::Ripas).then_some(flags & REC_ENTRY_FLAG_RIPAS_RESPONSE != 0);
        rec.entries.push(Entered {
            flags,
            gprs,
            host_call_done,
            ripas_answer,
        });
        if !unmapped {
            rec.pending = Pending::None;
            rec.set_ripas = None;
        }
        rec.last_exit = LastExit::Other;
        let out = Self::take_exit(rec, exit);
        if exit == ScriptedExit::SystemOff {
            if let Some(realm) = st.realms.get_mut(&rd) {
                realm.state = RealmState::SystemOff;
            }
        }
        drop(st);
        let mut mem = self.mem.borrow_mut();
        for (i, w) in out.iter().enumerate() {
            mem.rmm_write(run.pa() + 0x800 + 8 * i as u64, *w);
        }
        status(RmiStatus::Success)
    }
}

/// `ESR_ELx.EC` of a data abort from a lower EL, with IL set.
const ESR_DABT_LOW: u64 = (0x24 << 26) | (1 << 25);
/// `ESR_ELx.ISV`.
const ESR_ISV: u64 = 1 << 24;
/// `ESR_ELx.WnR`.
const ESR_WNR: u64 = 1 << 6;

impl Rmm {
    /// The `RmiRecExit` words (offset 0x800 of the run granule) of `exit`,
    /// and what it leaves the REC waiting for.
    fn take_exit(rec: &mut ModelRec, exit: ScriptedExit) -> [u64; 0x100] {
        let mut w = [0u64; 0x100];
        const REASON: usize = 0;
        const ESR: usize = 0x100 / 8;
        const FAR: usize = ESR + 1;
        const HPFAR: usize = ESR + 2;
        const GPRS: usize = 0x200 / 8;
        const RIPAS: usize = 0x500 / 8;
        const IMM: usize = 0x600 / 8;
        let hpfar = |ipa: u64| (ipa >> 12) << 4;
        match exit {
            ScriptedExit::Mmio {
                ipa,
                write,
                size_log2,
                value,
            } => {
                w[ESR] = ESR_DABT_LOW | ESR_ISV | (u64::from(size_log2) << 22) | 0x05;
                if write {
                    w[ESR] |= ESR_WNR;
                    w[GPRS] = value;
                }
                w[FAR] = ipa & 0xfff;
                w[HPFAR] = hpfar(ipa);
                rec.last_exit = LastExit::UnprotectedAbort { isv: true };
            }
            ScriptedExit::MmioNoSyndrome { ipa } => {
                w[ESR] = ESR_DABT_LOW | 0x05;
                w[HPFAR] = hpfar(ipa);
                rec.last_exit = LastExit::UnprotectedAbort { isv: false };
            }
            ScriptedExit::ProtectedFault { ipa } | ScriptedExit::HostCallUnmapped { ipa } => {
                w[ESR] = ESR_DABT_LOW | 0x07;
                w[HPFAR] = hpfar(ipa);
            }
            ScriptedExit::Irq => w[REASON] = 1,
            ScriptedExit::HostCall { imm, gprs } => {
                w[REASON] = 5;
                w[GPRS..GPRS + 31].copy_from_slice(&gprs);
                w[IMM] = u64::from(imm);
                rec.pending = Pending::HostCall;
            }
            ScriptedExit::CpuOn { mpidr } | ScriptedExit::AffinityInfo { mpidr } => {
                let fid = if matches!(exit, ScriptedExit::CpuOn { .. }) {
                    PSCI_CPU_ON
                } else {
                    PSCI_AFFINITY_INFO
                };
                w[REASON] = 3;
                w[GPRS] = fid;
                w[GPRS + 1] = mpidr;
                let target = RmiRecMpidr::new(mpidr).map_or(u64::MAX, RmiRecMpidr::index);
                rec.pending = Pending::Psci { fid, target };
            }
            ScriptedExit::CpuOff => {
                w[REASON] = 3;
                w[GPRS] = PSCI_CPU_OFF;
                rec.runnable = false;
            }
            ScriptedExit::SystemOff => {
                w[REASON] = 3;
                w[GPRS] = PSCI_SYSTEM_OFF;
            }
            ScriptedExit::RipasChange { base, top, ripas } => {
                w[REASON] = 4;
                w[RIPAS] = base;
                w[RIPAS + 1] = top;
                w[RIPAS + 2] = u64::from(ripas);
                rec.pending = Pending::Ripas;
                rec.set_ripas = Some(SetRipas {
                    addr: base,
                    top,
                    ram: ripas == 1,
                });
            }
        }
        w
    }

    /// `RMI_RTT_SET_RIPAS` (rtt.c `smc_rtt_set_ripas`): x1 = RD, x2 = REC,
    /// x3 = base, x4 = top. The REC's request must go on at x3 and not past
    /// its end. From the entry at x3 (which must start there) to the end of
    /// its table, each entry wholly below x4 takes the RIPAS asked for,
    /// except a DESTROYED one going to RAM (`RSI_CHANGE_DESTROYED` is not
    /// modelled); a table or such an entry ends the run. x1 = where it
    /// stopped, which the REC records; no progress is `RMI_ERROR_RTT`.
    pub(super) fn rtt_set_ripas(&self, args: &SmcRegs) -> SmcRegs {
        let (Some(rd), Some(g)) = (Granule::new(args.x(1)), Granule::new(args.x(2))) else {
            return status(RmiStatus::ErrorInput);
        };
        let (base, top) = (args.x(3), args.x(4));
        if top <= base || top % GRANULE_SIZE != 0 {
            return status(RmiStatus::ErrorInput);
        }
        let mut st = self.state.borrow_mut();
        let Some(rec) = st.recs.get(&g) else {
            return status(RmiStatus::ErrorInput);
        };
        if rec.rd != rd {
            return status(RmiStatus::ErrorRec);
        }
        let Some(req) = rec.set_ripas else {
            return status(RmiStatus::ErrorInput);
        };
        if base != req.addr || top > req.top {
            return status(RmiStatus::ErrorInput);
        }
        let Some(r) = st.realms.get_mut(&rd) else {
            return status(RmiStatus::ErrorInput);
        };
        let (level, end) = match r.range_walk(base) {
            Ok(walked) => walked,
            Err(out) => return out,
        };
        let size = level.entry_size();
        let mut addr = base;
        while addr < end {
            let next = addr + size;
            if next > top || r.is_table(addr, level) || (req.ram && r.destroyed.contains(&addr)) {
                break;
            }
            if req.ram {
                r.set_ram(addr, next);
            } else {
                r.clear_ram(addr, next);
                r.destroyed.remove(&addr);
            }
            addr = next;
        }
        if addr == base {
            return rtt_error(level);
        }
        if let Some(rec) = st.recs.get_mut(&g) {
            rec.set_ripas = Some(SetRipas { addr, ..req });
        }
        let mut out = status(RmiStatus::Success);
        out.0[1] = addr;
        out
    }

    /// `RMI_PSCI_COMPLETE` (rec.c `smc_psci_complete`, psci.c
    /// `psci_complete_request`).
    pub(super) fn psci_complete(&self, args: &SmcRegs) -> SmcRegs {
        let (Some(calling), Some(target)) = (Granule::new(args.x(1)), Granule::new(args.x(2)))
        else {
            return status(RmiStatus::ErrorInput);
        };
        let result = args.x(3);
        let mut st = self.state.borrow_mut();
        let (Some(c), Some(t)) = (st.recs.get(&calling), st.recs.get(&target)) else {
            return status(RmiStatus::ErrorInput);
        };
        let Pending::Psci { fid, target: idx } = c.pending else {
            return status(RmiStatus::ErrorInput);
        };
        if c.rd != t.rd || t.index != idx || calling == target {
            return status(RmiStatus::ErrorInput);
        }
        let target_runnable = t.runnable;
        let x0 = match fid {
            PSCI_CPU_ON => match result {
                0 if target_runnable => PSCI_ALREADY_ON,
                0 => {
                    st.recs.get_mut(&target).expect("present").runnable = true;
                    0
                }
                PSCI_DENIED => PSCI_DENIED,
                _ => return status(RmiStatus::ErrorInput),
            },
            _ => match result {
                // AFFINITY_INFO: 0 ON, 1 OFF, worked out by the RMM.
                0 => u64::from(!target_runnable),
                _ => return status(RmiStatus::ErrorInput),
            },
        };
        let c = st.recs.get_mut(&calling).expect("present");
        c.pending = Pending::None;
        c.psci_result = Some(x0);
        status(RmiStatus::Success)
    }
}
