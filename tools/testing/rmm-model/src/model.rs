// SPDX-License-Identifier: GPL-2.0

//! An executable model of the RMM behind [`SmcConduit`].
//!
//! It decodes function IDs and registers as TF-RMM does, enforces the
//! spec's preconditions (global INIT/ACTIVE state, configuration once,
//! granule states, tracking, SRO donation and reclaim), counts calls per
//! function ID, and can be told to fail any call. Commands it does not model
//! answer `SMCCC_RET_NOT_SUPPORTED`, as an unknown FID does on a real RMM.

use std::cell::RefCell;
use std::collections::{
    BTreeMap,
    BTreeSet,
    VecDeque, //
};
use std::rc::Rc;

mod rec;

pub(crate) use rec::{
    ScriptedExit,
    MODEL_REC_AUX,
    PSCI_ALREADY_ON,
    PSCI_DENIED, //
};

use crate::addr::{
    Granule,
    GranuleRange,
    RttLevel,
    GRANULE_SIZE, //
};
use crate::mem::{
    FakePages,
    GranuleState,
    Mem,
    WORDS, //
};
use crate::rmi_cmds::SmcConduit;
use crate::rmi_smc::{
    RmiAddrRangeDesc,
    RmiBlockSize,
    RmiDonateReq,
    RmiFid,
    RmiMemState,
    RmiRmmConfig,
    RmiStatus,
    RmiTrackingState,
    RmiVersion,
    SmcRegs,
    RMI_FEATURES,
    RMI_GPT_L1_CREATE,
    RMI_GRANULE_RANGE_DELEGATE,
    RMI_GRANULE_RANGE_UNDELEGATE,
    RMI_GRANULE_TRACKING_GET,
    RMI_OP_CANCEL,
    RMI_OP_CONTINUE,
    RMI_OP_MEM_DONATE,
    RMI_OP_MEM_RECLAIM,
    RMI_PSCI_COMPLETE,
    RMI_REALM_ACTIVATE,
    RMI_REALM_CREATE,
    RMI_REALM_DESTROY,
    RMI_REALM_TERMINATE,
    RMI_REC_CREATE,
    RMI_REC_DESTROY,
    RMI_REC_ENTER,
    RMI_RMM_ACTIVATE,
    RMI_RMM_CONFIG_GET,
    RMI_RMM_CONFIG_SET,
    RMI_RTT_CREATE,
    RMI_RTT_DATA_MAP,
    RMI_RTT_DATA_MAP_INIT,
    RMI_RTT_DATA_UNMAP,
    RMI_RTT_DESTROY,
    RMI_RTT_FOLD,
    RMI_RTT_INIT_RIPAS,
    RMI_RTT_READ_ENTRY,
    RMI_RTT_SET_RIPAS,
    RMI_RTT_UNPROT_MAP,
    RMI_RTT_UNPROT_UNMAP,
    RMI_VERSION,
    SMCCC_RET_NOT_SUPPORTED, //
};

/// Where the model's DRAM starts (QEMU virt).
pub(crate) const DRAM_BASE: u64 = 0x4000_0000;

/// Granules of modelled DRAM: 4 MiB, enough for every test.
pub(crate) const DRAM_GRANULES: u64 = 1024;

/// The L0 GPT block (and tracking region) size: 1 GiB.
pub(crate) const L0GPT_SIZE: u64 = 1 << 30;

/// Feature registers 0..=4 that TF-RMM main reports on QEMU 10.0.2
/// `-cpu max,x-rme=on` (rmi-abi.md section 6).
pub(crate) const QEMU_FEATURES: [u64; 5] = [0x317f34, 0x142a9, 0, 3, 0];

/// Encodes a status and index as the RMM returns them in x0.
pub(crate) fn return_code(status: RmiStatus, index: u8) -> u64 {
    u64::from(status.raw()) | (u64::from(index) << 8)
}

/// A call the test asked to fail, and how.
#[derive(Clone, Copy, Debug)]
struct Injected {
    fid: RmiFid,
    /// Fail the `nth` next call of `fid` (0 = the very next one).
    nth: u32,
    status: RmiStatus,
    index: u8,
}

/// Mutable model state, behind a `RefCell` because [`SmcConduit::call`]
/// takes `&self` like the kernel's stateless conduit.
#[derive(Debug, Default)]
struct State {
    calls: BTreeMap<RmiFid, u32>,
    injected: Vec<Injected>,
    active: bool,
    configured: bool,
    range_mode: RangeMode,
    /// Tracking per 1 GiB region (by index); absent means [`Rmm::default_tracking`].
    tracking: BTreeMap<u64, RmiTrackingState>,
    gpt: GptMode,
    scripts: BTreeMap<RmiFid, VecDeque<Vec<Phase>>>,
    ops: BTreeMap<u64, Op>,
    next_handle: u64,
    /// Granules finished operations left in use (objects they built), in
    /// donation order; a scripted reclaim gives them back.
    held: Vec<Granule>,
    /// Granules the RMM keeps for L1 GPTs for the rest of the boot.
    gpt_tables: Vec<Granule>,
    /// Realms by RD.
    realms: BTreeMap<Granule, ModelRealm>,
    /// RECs by REC granule.
    recs: BTreeMap<Granule, rec::ModelRec>,
}

/// A realm's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RealmState {
    /// Created, not yet activated.
    New,
    /// Activated: RECs may run.
    Active,
    /// A REC called PSCI `SYSTEM_OFF` or `SYSTEM_RESET`: no REC runs again.
    SystemOff,
    /// Terminated (ZOMBIE): can only be destroyed.
    Terminated,
}

/// A non-root RTT.
#[derive(Clone, Copy, Debug)]
struct ModelRtt {
    granule: Granule,
    /// Entries that are tables (no data mapping is modelled yet).
    live: u64,
}

/// A realm, as the RMM keeps it.
#[derive(Debug)]
struct ModelRealm {
    state: RealmState,
    s2sz: u32,
    start: RttLevel,
    root: GranuleRange,
    /// Live entries of the root.
    root_live: u64,
    /// Non-root RTTs by (level, base IPA of the region they map).
    rtts: BTreeMap<(RttLevel, u64), ModelRtt>,
    /// Level-3 entries mapping DATA granules, by IPA. Their RIPAS is RAM
    /// (also recorded in `ram`).
    data: BTreeMap<u64, Granule>,
    /// Where RIPAS is RAM: disjoint `[start, end)` runs, by start. Every
    /// other protected IPA is EMPTY, or DESTROYED if in `destroyed`.
    /// Entries (blocks too) are uniform, as RIPAS changes whole entries.
    ram: BTreeMap<u64, u64>,
    /// Level-3 IPAs whose RIPAS is DESTROYED (DATA unmapped from RAM).
    destroyed: BTreeSet<u64>,
    /// Level-3 entries of the unprotected half mapping NS granules, by
    /// IPA: the granule and whether it is writable.
    ns: BTreeMap<u64, (Granule, bool)>,
    /// RECs created so far (the next REC's index; never goes down).
    rec_count: u64,
    /// RECs alive: `REALM_DESTROY` waits for none.
    rec_refs: u64,
}

impl ModelRealm {
    /// The level the walk for `ipa` reaches, going down to `target` at most.
    fn walk(&self, ipa: u64, target: RttLevel) -> RttLevel {
        let mut level = self.start;
        while level < target {
            let Some(next) = level.below() else { break };
            if !self
                .rtts
                .contains_key(&(next, ipa & !(level.entry_size() - 1)))
            {
                break;
            }
            level = next;
        }
        level
    }

    /// The end of the run of non-live entries, from the entry holding
    /// `ipa`, of the table at `level` on the walk to `ipa`.
    fn skip_non_live(&self, ipa: u64, level: RttLevel) -> u64 {
        let table_end = match level.above() {
            Some(up) if level > self.start => (ipa & !(up.entry_size() - 1)) + up.entry_size(),
            _ => 1u64 << self.s2sz,
        };
        let size = level.entry_size();
        let mut at = ipa & !(size - 1);
        while at < table_end {
            let live = level
                .below()
                .is_some_and(|child| self.rtts.contains_key(&(child, at)));
            if live {
                break;
            }
            at += size;
        }
        at
    }

    /// Whether all of `[start, end)` has RIPAS RAM.
    fn is_ram(&self, start: u64, end: u64) -> bool {
        self.ram
            .range(..=start)
            .next_back()
            .is_some_and(|(_, e)| *e >= end)
    }

    /// Whether any of `[start, end)` has RIPAS RAM.
    fn any_ram(&self, start: u64, end: u64) -> bool {
        self.ram
            .range(..end)
            .next_back()
            .is_some_and(|(_, e)| *e > start)
    }

    /// Sets RIPAS RAM over `[start, end)`.
    fn set_ram(&mut self, start: u64, end: u64) {
        let (mut lo, mut hi) = (start, end);
        let touching: Vec<(u64, u64)> = self
            .ram
            .range(..=end)
            .filter(|(s, e)| **e >= start && **s <= end)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in touching {
            self.ram.remove(&s);
            lo = lo.min(s);
            hi = hi.max(e);
        }
        self.ram.insert(lo, hi);
    }

    /// Clears RIPAS RAM over `[start, end)`.
    fn clear_ram(&mut self, start: u64, end: u64) {
        let overlapping: Vec<(u64, u64)> = self
            .ram
            .range(..end)
            .filter(|(_, e)| **e > start)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in overlapping {
            self.ram.remove(&s);
            if s < start {
                self.ram.insert(s, start);
            }
            if e > end {
                self.ram.insert(end, e);
            }
        }
    }

    /// The end of the table at `level` holding `ipa` (one 4 KiB table of
    /// 512 entries, as the RMM walks even a concatenated root).
    fn table_end(&self, ipa: u64, level: RttLevel) -> u64 {
        let span = level.entry_size() * 512;
        ((ipa & !(span - 1)) + span).min(1u64 << self.s2sz)
    }

    /// The walk of a range command from `base` down to level 3: the level
    /// it lands at and the end of that table; `RMI_ERROR_RTT` if `base` is
    /// not at the start of an entry there.
    fn range_walk(&self, base: u64) -> Result<(RttLevel, u64), SmcRegs> {
        let leaf = RttLevel::new(3).ok_or_else(|| status(RmiStatus::ErrorInput))?;
        let level = self.walk(base, leaf);
        if base % level.entry_size() != 0 {
            return Err(rtt_error(level));
        }
        Ok((level, self.table_end(base, level)))
    }

    /// Whether the entry at `level` for `ipa` is a table.
    fn is_table(&self, ipa: u64, level: RttLevel) -> bool {
        level.below().is_some_and(|child| {
            self.rtts
                .contains_key(&(child, ipa & !(level.entry_size() - 1)))
        })
    }

    /// Adjusts the live count of the table at `level` holding `ipa`.
    fn table_live(&mut self, ipa: u64, level: RttLevel, delta: i64) {
        let slot = if level == self.start {
            &mut self.root_live
        } else {
            let Some(up) = level.above() else { return };
            match self.rtts.get_mut(&(level, ipa & !(up.entry_size() - 1))) {
                Some(t) => &mut t.live,
                None => return,
            }
        };
        *slot = slot.saturating_add_signed(delta);
    }
}

/// How many granules one range delegate/undelegate call processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum RangeMode {
    /// Exactly one, as TF-RMM main does.
    #[default]
    OnePerCall,
    /// As many as it can: up to the first granule that fails, which the
    /// next call then reports.
    WholeRange,
}

/// How `RMI_GPT_L1_CREATE` behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum GptMode {
    /// Static L1 tables: always `RMI_ERROR_GPT` (TF-RMM on QEMU).
    #[default]
    Static,
    /// Dynamic: a region with tracking NONE gets an L1 table from `granules`
    /// donated (delegated) granules, through an SRO.
    Dynamic {
        /// Granules the table needs.
        granules: u64,
    },
}

/// One step of a modelled stateful operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Ask for `granules` single granules in `state`.
    Donate {
        /// How many.
        granules: u64,
        /// In which state the host must hand them over.
        state: RmiMemState,
        /// Whether `RMI_OP_CANCEL` is allowed meanwhile.
        can_cancel: bool,
    },
    /// Ask for `RMI_OP_CONTINUE`.
    Continue {
        /// Whether `RMI_OP_CANCEL` is allowed meanwhile.
        can_cancel: bool,
    },
    /// Give back what the operation holds (and, with `objects`, everything
    /// earlier operations left in use), `undelegated` or still delegated.
    Reclaim {
        /// Also reclaim what finished operations left in use.
        objects: bool,
        /// Undelegate before returning (`st` = 1).
        undelegated: bool,
    },
    /// Finish: success, the operation's granules stay in use.
    Finish,
    /// Finish with this error.
    Fail(RmiStatus),
}

/// What a finished operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// A scripted operation: its granules become held objects.
    Script,
    /// An L1 GPT for region `0`: tracking becomes FINE.
    GptL1(u64),
    /// `REC_CREATE`: checked, then the REC is built from the granules.
    RecCreate(rec::RecCreate),
    /// `REC_DESTROY` of this REC granule: DELEGATED again at the end.
    RecDestroy(Granule),
}

/// A stateful operation in progress.
#[derive(Debug)]
struct Op {
    phases: VecDeque<Phase>,
    /// Granules still to donate in the current `Donate` phase.
    donate_left: u64,
    holding: Vec<Granule>,
    effect: Effect,
}

impl Op {
    fn new(phases: Vec<Phase>, effect: Effect) -> Self {
        let mut op = Self {
            phases: phases.into(),
            donate_left: 0,
            holding: Vec::new(),
            effect,
        };
        op.enter_phase();
        op
    }

    /// Sets up the phase at the front.
    fn enter_phase(&mut self) {
        if let Some(Phase::Donate { granules, .. }) = self.phases.front() {
            self.donate_left = *granules;
        }
    }

    fn advance(&mut self) {
        self.phases.pop_front();
        self.enter_phase();
    }

    fn can_cancel(&self) -> bool {
        matches!(
            self.phases.front(),
            Some(
                Phase::Donate {
                    can_cancel: true,
                    ..
                } | Phase::Continue { can_cancel: true }
            )
        )
    }
}

/// The RMM model.
#[derive(Debug)]
pub(crate) struct Rmm {
    /// ABI revisions implemented, ascending.
    revisions: Vec<RmiVersion>,
    /// Feature registers 0..=4.
    features: [u64; 5],
    /// Tracking of regions not set with [`Rmm::set_tracking`].
    default_tracking: RmiTrackingState,
    state: RefCell<State>,
    mem: Rc<RefCell<Mem>>,
}

impl Rmm {
    /// An RMM implementing only RMI 2.0, as TF-RMM main does.
    pub(crate) fn new() -> Self {
        Self::with_revisions(&[RmiVersion { major: 2, minor: 0 }])
    }

    /// An RMM implementing `revisions` (at least one).
    pub(crate) fn with_revisions(revisions: &[RmiVersion]) -> Self {
        assert!(
            !revisions.is_empty(),
            "an RMM implements at least one revision"
        );
        let mut revisions = revisions.to_vec();
        revisions.sort();
        let base = Granule::new(DRAM_BASE).expect("aligned");
        Self {
            revisions,
            features: QEMU_FEATURES,
            default_tracking: RmiTrackingState::Fine,
            state: RefCell::new(State::default()),
            mem: Mem::new(base, DRAM_GRANULES),
        }
    }

    /// An RMM already configured and activated, as after the first insmod.
    pub(crate) fn active() -> Self {
        let rmm = Self::new();
        {
            let mut st = rmm.state.borrow_mut();
            st.configured = true;
            st.active = true;
        }
        rmm
    }

    /// The host's page allocator over the model's memory.
    pub(crate) fn pages(&self) -> FakePages {
        FakePages(Rc::clone(&self.mem))
    }

    /// The model's memory.
    pub(crate) fn mem(&self) -> std::cell::Ref<'_, Mem> {
        self.mem.borrow()
    }

    /// The model's memory, to change (the allocator's budget).
    pub(crate) fn mem_mut(&self) -> std::cell::RefMut<'_, Mem> {
        self.mem.borrow_mut()
    }

    /// Injected failures not yet consumed.
    pub(crate) fn injected_pending(&self) -> usize {
        self.state.borrow().injected.len()
    }

    /// Sets how many granules a range (un)delegate call processes.
    pub(crate) fn set_range_mode(&self, mode: RangeMode) {
        self.state.borrow_mut().range_mode = mode;
    }

    /// Sets how `RMI_GPT_L1_CREATE` behaves.
    pub(crate) fn set_gpt_mode(&self, mode: GptMode) {
        self.state.borrow_mut().gpt = mode;
    }

    /// Sets the tracking of the 1 GiB region holding `pa`.
    pub(crate) fn set_tracking(&self, pa: u64, state: RmiTrackingState) {
        self.state
            .borrow_mut()
            .tracking
            .insert(pa / L0GPT_SIZE, state);
    }

    /// The tracking of the 1 GiB region holding `pa`.
    pub(crate) fn tracking(&self, pa: u64) -> RmiTrackingState {
        self.state
            .borrow()
            .tracking
            .get(&(pa / L0GPT_SIZE))
            .copied()
            .unwrap_or(self.default_tracking)
    }

    /// Whether `RMI_RMM_ACTIVATE` has succeeded.
    pub(crate) fn is_active(&self) -> bool {
        self.state.borrow().active
    }

    /// Makes the next call of `fid` start a stateful operation that runs
    /// `phases` whatever its arguments (the model does not know realms yet).
    pub(crate) fn script(&self, fid: RmiFid, phases: Vec<Phase>) {
        self.state
            .borrow_mut()
            .scripts
            .entry(fid)
            .or_default()
            .push_back(phases);
    }

    /// The state of the realm whose RD is `rd`.
    pub(crate) fn realm_state(&self, rd: Granule) -> Option<RealmState> {
        self.state.borrow().realms.get(&rd).map(|r| r.state)
    }

    /// Non-root RTTs of the realm `rd`: (level, base IPA, granule).
    pub(crate) fn realm_rtts(&self, rd: Granule) -> Vec<(RttLevel, u64, Granule)> {
        self.state
            .borrow()
            .realms
            .get(&rd)
            .map(|r| {
                r.rtts
                    .iter()
                    .map(|((l, ipa), t)| (*l, *ipa, t.granule))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// DATA granules mapped in the realm `rd`: (IPA, granule).
    pub(crate) fn realm_data(&self, rd: Granule) -> Vec<(u64, Granule)> {
        self.state
            .borrow()
            .realms
            .get(&rd)
            .map(|r| r.data.iter().map(|(ipa, g)| (*ipa, *g)).collect())
            .unwrap_or_default()
    }

    /// Where the realm `rd` has RIPAS RAM: `[start, end)` runs.
    pub(crate) fn realm_ram(&self, rd: Granule) -> Vec<(u64, u64)> {
        self.state
            .borrow()
            .realms
            .get(&rd)
            .map(|r| r.ram.iter().map(|(s, e)| (*s, *e)).collect())
            .unwrap_or_default()
    }

    /// NS pages mapped at unprotected IPAs of realm `rd`: (IPA, granule,
    /// writable).
    pub(crate) fn realm_ns(&self, rd: Granule) -> Vec<(u64, Granule, bool)> {
        self.state
            .borrow()
            .realms
            .get(&rd)
            .map(|r| r.ns.iter().map(|(ipa, (g, w))| (*ipa, *g, *w)).collect())
            .unwrap_or_default()
    }

    /// The level-3 IPAs of realm `rd` whose RIPAS is DESTROYED.
    pub(crate) fn realm_destroyed(&self, rd: Granule) -> Vec<u64> {
        self.state
            .borrow()
            .realms
            .get(&rd)
            .map(|r| r.destroyed.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Operations in progress.
    pub(crate) fn ops_in_progress(&self) -> usize {
        self.state.borrow().ops.len()
    }

    /// Granules held by finished operations (objects), and by L1 GPTs.
    pub(crate) fn held(&self) -> (Vec<Granule>, Vec<Granule>) {
        let st = self.state.borrow();
        (st.held.clone(), st.gpt_tables.clone())
    }

    /// The same RMM reporting `features` from `RMI_FEATURES` 0..=4.
    pub(crate) fn with_features(mut self, features: [u64; 5]) -> Self {
        self.features = features;
        self
    }

    /// How many times `fid` has been called.
    pub(crate) fn calls(&self, fid: RmiFid) -> u32 {
        self.state.borrow().calls.get(&fid).copied().unwrap_or(0)
    }

    /// How many calls it has taken in all.
    pub(crate) fn total_calls(&self) -> u64 {
        self.state
            .borrow()
            .calls
            .values()
            .map(|n| u64::from(*n))
            .sum()
    }

    /// Makes the `nth` next call of `fid` (0 = the next one) return
    /// `status`/`index` without side effects.
    pub(crate) fn fail_call(&self, fid: RmiFid, nth: u32, status: RmiStatus, index: u8) {
        self.state.borrow_mut().injected.push(Injected {
            fid,
            nth,
            status,
            index,
        });
    }

    /// Consumes an injected failure for this call of `fid`, if one is due.
    fn take_injected(&self, fid: RmiFid) -> Option<u64> {
        let mut state = self.state.borrow_mut();
        let mut due = None;
        for (i, inj) in state.injected.iter_mut().enumerate() {
            if inj.fid != fid {
                continue;
            }
            if inj.nth == 0 {
                due = Some(i);
                break;
            }
            inj.nth -= 1;
        }
        due.map(|i| {
            let inj = state.injected.remove(i);
            return_code(inj.status, inj.index)
        })
    }

    /// `RMI_FEATURES`: register x1, or 0 past the last one (as TF-RMM does).
    fn features(&self, args: &SmcRegs) -> SmcRegs {
        let mut out = SmcRegs::default();
        out.0[0] = return_code(RmiStatus::Success, 0);
        out.0[1] = usize::try_from(args.x(1))
            .ok()
            .and_then(|i| self.features.get(i).copied())
            .unwrap_or(0);
        out
    }

    /// `RMI_VERSION`, as `runtime/rmi/version.c` answers it.
    fn version(&self, args: &SmcRegs) -> SmcRegs {
        let highest = *self.revisions.last().unwrap_or(&RmiVersion::HOST);
        let mut out = SmcRegs::default();
        let requested = RmiVersion::from_raw(args.x(1));
        if requested.is_some_and(|r| self.revisions.contains(&r)) {
            out.0[0] = return_code(RmiStatus::Success, 0);
            out.0[1] = args.x(1);
        } else {
            out.0[0] = return_code(RmiStatus::ErrorInput, 0);
            out.0[1] = highest.raw();
        }
        out.0[2] = highest.raw();
        out
    }
}

/// Registers with only x0 set.
fn status(status: RmiStatus) -> SmcRegs {
    let mut out = SmcRegs::default();
    out.0[0] = return_code(status, 0);
    out
}

/// `RMI_ERROR_RTT` with the level a walk reached.
fn rtt_error(level: RttLevel) -> SmcRegs {
    let mut out = status(RmiStatus::ErrorRtt);
    // CAST: Levels are -1..=3; the index byte holds them two's complement.
    out.0[0] = return_code(RmiStatus::ErrorRtt, level.get() as u8);
    out
}

/// The `RMI_INCOMPLETE` index for a memory request and cancel bit.
fn incomplete(mem_req: u8, can_cancel: bool) -> u64 {
    return_code(RmiStatus::Incomplete, mem_req | (u8::from(can_cancel) << 2))
}

/// Commands the RMM accepts before `RMI_RMM_ACTIVATE`.
const INIT_STATE_FIDS: [RmiFid; 6] = [
    RMI_VERSION,
    RMI_FEATURES,
    RMI_RMM_CONFIG_GET,
    RMI_RMM_CONFIG_SET,
    RMI_RMM_ACTIVATE,
    RMI_GRANULE_TRACKING_GET,
];

impl Rmm {
    /// `RMI_RMM_CONFIG_SET`: INIT only; only 4 KiB granules with 1 GiB
    /// tracking, read from an NS granule (as TF-RMM).
    fn config_set(&self, args: &SmcRegs) -> SmcRegs {
        if self.state.borrow().active {
            return status(RmiStatus::ErrorGlobal);
        }
        let pa = args.x(1);
        if pa == 0 || pa % GRANULE_SIZE != 0 {
            return status(RmiStatus::ErrorInput);
        }
        let mem = self.mem.borrow();
        let (Some(tracking), Some(granule)) = (mem.rmm_read(pa), mem.rmm_read(pa + 8)) else {
            return status(RmiStatus::ErrorInput);
        };
        if granule != RmiRmmConfig::GRANULE_4K || tracking != RmiRmmConfig::TRACKING_1G {
            return status(RmiStatus::ErrorInput);
        }
        self.state.borrow_mut().configured = true;
        status(RmiStatus::Success)
    }

    /// `RMI_RMM_CONFIG_GET`: writes the configuration to an NS granule.
    fn config_get(&self, args: &SmcRegs) -> SmcRegs {
        let pa = args.x(1);
        if pa == 0 || pa % GRANULE_SIZE != 0 {
            return status(RmiStatus::ErrorInput);
        }
        let mut mem = self.mem.borrow_mut();
        let words = RmiRmmConfig::granule_4k().to_words();
        if !(mem.rmm_write(pa, words[0]) && mem.rmm_write(pa + 8, words[1])) {
            return status(RmiStatus::ErrorInput);
        }
        status(RmiStatus::Success)
    }

    /// `RMI_RMM_ACTIVATE`: INIT and configured, once.
    fn activate(&self) -> SmcRegs {
        let mut st = self.state.borrow_mut();
        if st.active || !st.configured {
            return status(RmiStatus::ErrorGlobal);
        }
        st.active = true;
        status(RmiStatus::Success)
    }

    /// `RMI_GRANULE_TRACKING_GET`: the state of the region holding `base`,
    /// valid up to the region's end or `top`.
    fn tracking_get(&self, args: &SmcRegs) -> SmcRegs {
        let (base, top) = (args.x(1), args.x(2));
        if base % GRANULE_SIZE != 0 || top % GRANULE_SIZE != 0 || top < base + GRANULE_SIZE {
            return status(RmiStatus::ErrorInput);
        }
        let region_end = (base / L0GPT_SIZE + 1) * L0GPT_SIZE;
        let mut out = status(RmiStatus::Success);
        out.0[1] = 0; // conventional memory
        out.0[2] = self.tracking(base).raw();
        out.0[3] = top.min(region_end);
        out
    }

    /// `RMI_GPT_L1_CREATE`.
    fn gpt_l1_create(&self, args: &SmcRegs) -> SmcRegs {
        let base = args.x(1);
        if base % L0GPT_SIZE != 0 {
            return status(RmiStatus::ErrorInput);
        }
        let mode = self.state.borrow().gpt;
        match mode {
            GptMode::Static => status(RmiStatus::ErrorGpt),
            GptMode::Dynamic { granules } => {
                if self.tracking(base) != RmiTrackingState::None {
                    return status(RmiStatus::ErrorGpt);
                }
                let phases = vec![
                    Phase::Donate {
                        granules,
                        state: RmiMemState::Delegated,
                        can_cancel: true,
                    },
                    Phase::Continue { can_cancel: false },
                    Phase::Finish,
                ];
                self.start_op(Op::new(phases, Effect::GptL1(base / L0GPT_SIZE)))
            }
        }
    }

    /// Checks one granule for a range (un)delegate: `Ok` if it can move.
    fn range_granule_ok(&self, g: Granule, from: GranuleState) -> Result<(), RmiStatus> {
        if self.tracking(g.pa()) != RmiTrackingState::Fine {
            return Err(RmiStatus::ErrorTracking);
        }
        match self.mem.borrow().state(g) {
            Some(s) if s == from => Ok(()),
            // Not memory the RMM tracks, or in the wrong state.
            _ => Err(RmiStatus::ErrorInput),
        }
    }

    /// `RMI_GRANULE_RANGE_DELEGATE` / `_UNDELEGATE`.
    fn granule_range(&self, args: &SmcRegs, delegate: bool) -> SmcRegs {
        let (base, top) = (args.x(1), args.x(2));
        let mut out = status(RmiStatus::ErrorInput);
        out.0[1] = base;
        let range = match (Granule::new(base), Granule::new(top)) {
            (Some(b), Some(t)) if top >= base + GRANULE_SIZE => GranuleRange::new(b, t),
            _ => None,
        };
        let Some(range) = range else {
            return out;
        };
        let (from, to) = if delegate {
            (GranuleState::Ns, GranuleState::Delegated)
        } else {
            (GranuleState::Delegated, GranuleState::Ns)
        };
        let limit = match self.state.borrow().range_mode {
            RangeMode::OnePerCall => 1,
            RangeMode::WholeRange => range.count(),
        };
        let mut done = 0;
        for g in range
            .iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
        {
            if let Err(e) = self.range_granule_ok(g, from) {
                if done == 0 {
                    out.0[0] = return_code(e, 0);
                    return out;
                }
                break;
            }
            let mut mem = self.mem.borrow_mut();
            if !delegate {
                mem.scrub(g);
            }
            mem.set_state(g, to);
            done += 1;
        }
        out.0[0] = return_code(RmiStatus::Success, 0);
        out.0[1] = base + done * GRANULE_SIZE;
        out
    }

    /// Registers a new operation and answers with its first step.
    fn start_op(&self, op: Op) -> SmcRegs {
        let handle = {
            let mut st = self.state.borrow_mut();
            let h = st.next_handle;
            st.next_handle += 1;
            st.ops.insert(h, op);
            h
        };
        let mut out = self.step(handle);
        if out.0[0] & 0xff == u64::from(RmiStatus::Incomplete.raw()) {
            out.0[1] = handle;
        }
        out
    }

    /// Answers with the operation's current step; finishes it when done.
    fn step(&self, handle: u64) -> SmcRegs {
        let mut st = self.state.borrow_mut();
        let Some(op) = st.ops.get_mut(&handle) else {
            return status(RmiStatus::ErrorInput);
        };
        let cancel = op.can_cancel();
        let mut out = SmcRegs::default();
        match op.phases.front().copied() {
            Some(Phase::Donate { state, .. }) => {
                out.0[0] = incomplete(1, cancel);
                out.0[2] = RmiDonateReq::new(RmiBlockSize::Page, op.donate_left, false, state).0;
            }
            Some(Phase::Continue { .. }) => out.0[0] = incomplete(0, cancel),
            Some(Phase::Reclaim { objects, .. }) => {
                if objects {
                    let held = std::mem::take(&mut st.held);
                    let op = st.ops.get_mut(&handle).expect("op present");
                    op.holding.extend(held);
                }
                out.0[0] = incomplete(2, false);
            }
            Some(Phase::Fail(e)) => {
                let op = st.ops.remove(&handle).expect("op present");
                // A failed operation gives nothing back here: its
                // granules stay with the RMM as if an object kept them.
                st.held.extend(op.holding);
                out.0[0] = return_code(e, 0);
            }
            Some(Phase::Finish) | None => {
                if let Effect::RecCreate(c) = op.effect {
                    let checked = Self::rec_create_check(&st, &self.mem.borrow(), &c);
                    if let Err(e) = checked {
                        // As TF-RMM: the granules go back through a
                        // reclaim, and the final continue fails.
                        self.mem_mut().set_state(c.rec(), GranuleState::Delegated);
                        let op = st.ops.get_mut(&handle).expect("op present");
                        op.effect = Effect::Script;
                        op.phases = vec![
                            Phase::Reclaim {
                                objects: false,
                                undelegated: false,
                            },
                            Phase::Continue { can_cancel: false },
                            Phase::Fail(e),
                        ]
                        .into();
                        op.enter_phase();
                        out.0[0] = incomplete(2, false);
                        return out;
                    }
                }
                let op = st.ops.remove(&handle).expect("op present");
                match op.effect {
                    Effect::Script => st.held.extend(op.holding),
                    Effect::GptL1(region) => {
                        st.gpt_tables.extend(op.holding);
                        st.tracking.insert(region, RmiTrackingState::Fine);
                    }
                    Effect::RecCreate(c) => {
                        Self::rec_create_finish(&mut st, &self.mem.borrow(), &c, op.holding);
                    }
                    Effect::RecDestroy(g) => {
                        self.mem_mut().set_state(g, GranuleState::Delegated);
                    }
                }
                out.0[0] = return_code(RmiStatus::Success, 0);
            }
        }
        out
    }

    /// The operation `handle`'s current phase, if it exists.
    fn phase(&self, handle: u64) -> Option<Phase> {
        self.state
            .borrow()
            .ops
            .get(&handle)
            .and_then(|op| op.phases.front().copied())
    }

    /// `RMI_OP_CONTINUE`.
    fn op_continue(&self, args: &SmcRegs) -> SmcRegs {
        let handle = args.x(1);
        if !matches!(self.phase(handle), Some(Phase::Continue { .. })) {
            return status(RmiStatus::ErrorInput);
        }
        self.op_mut(handle, Op::advance);
        let mut out = self.step(handle);
        out.0[1] = handle;
        out
    }

    /// Applies `f` to operation `handle`.
    fn op_mut(&self, handle: u64, f: impl FnOnce(&mut Op)) {
        if let Some(op) = self.state.borrow_mut().ops.get_mut(&handle) {
            f(op);
        }
    }

    /// `RMI_OP_CANCEL`: only when the current phase allows it. The
    /// operation then gives back what it holds and fails.
    fn op_cancel(&self, args: &SmcRegs) -> SmcRegs {
        let handle = args.x(1);
        let can = self
            .state
            .borrow()
            .ops
            .get(&handle)
            .is_some_and(Op::can_cancel);
        if !can {
            return status(RmiStatus::ErrorInput);
        }
        self.op_mut(handle, |op| {
            let mut phases = vec![Phase::Fail(RmiStatus::ErrorInput)];
            if !op.holding.is_empty() {
                // As TF-RMM: a reclaim answers INCOMPLETE, and the final
                // status comes from the next RMI_OP_CONTINUE.
                phases.splice(
                    0..0,
                    [
                        Phase::Reclaim {
                            objects: false,
                            undelegated: false,
                        },
                        Phase::Continue { can_cancel: false },
                    ],
                );
            }
            op.phases = phases.into();
            op.enter_phase();
        });
        self.step(handle)
    }

    /// `RMI_OP_MEM_DONATE`: validates the whole list, then takes it all.
    fn op_donate(&self, args: &SmcRegs) -> SmcRegs {
        let (handle, list, count) = (args.x(1), args.x(2), args.x(3));
        let Some(Phase::Donate { state, .. }) = self.phase(handle) else {
            return status(RmiStatus::ErrorInput);
        };
        if list % 8 != 0 {
            return status(RmiStatus::ErrorInput);
        }
        // Entries never cross the list's granule.
        let first = (list % GRANULE_SIZE) / 8;
        let count = count.min(WORDS as u64 - first);
        let left = self.state.borrow().ops[&handle].donate_left;
        let mut granules = Vec::new();
        for i in 0..count {
            let Some(raw) = self.mem.borrow().rmm_read(list + 8 * i) else {
                return status(RmiStatus::ErrorInput);
            };
            let desc = RmiAddrRangeDesc(raw);
            if desc.count() == 0 {
                continue;
            }
            let Some(range) = desc.range() else {
                return status(RmiStatus::ErrorInput);
            };
            if desc.size() != RmiBlockSize::Page || desc.state() != state || !desc.reserved_clear()
            {
                return status(RmiStatus::ErrorInput);
            }
            let want = match state {
                RmiMemState::Delegated => GranuleState::Delegated,
                RmiMemState::Undelegated => GranuleState::Ns,
            };
            for g in range.iter() {
                if self.mem.borrow().state(g) != Some(want) || granules.contains(&g) {
                    return status(RmiStatus::ErrorInput);
                }
                granules.push(g);
            }
        }
        if granules.len() as u64 > left {
            return status(RmiStatus::ErrorInput);
        }
        let taken = granules.len() as u64;
        {
            let mut mem = self.mem.borrow_mut();
            for g in &granules {
                mem.set_state(*g, GranuleState::InUse);
            }
        }
        self.op_mut(handle, |op| {
            op.holding.extend(granules);
            op.donate_left -= taken;
            if op.donate_left == 0 {
                op.advance();
            }
        });
        let mut out = self.step(handle);
        out.0[1] = taken;
        out
    }

    /// `RMI_OP_MEM_RECLAIM`: one descriptor per granule, up to `max`.
    fn op_reclaim(&self, args: &SmcRegs) -> SmcRegs {
        let (handle, list, max) = (args.x(1), args.x(2), args.x(3));
        let Some(Phase::Reclaim { undelegated, .. }) = self.phase(handle) else {
            return status(RmiStatus::ErrorInput);
        };
        if list % 8 != 0 {
            return status(RmiStatus::ErrorInput);
        }
        let first = (list % GRANULE_SIZE) / 8;
        let max = max.min(WORDS as u64 - first);
        // Make the step's `objects` transfer happen before counting.
        let mut written = 0;
        loop {
            let next = self.state.borrow().ops[&handle].holding.last().copied();
            let Some(g) = next else { break };
            if written == max {
                break;
            }
            let st = if undelegated {
                RmiMemState::Undelegated
            } else {
                RmiMemState::Delegated
            };
            let desc = RmiAddrRangeDesc::new(g, RmiBlockSize::Page, 1, st).expect("valid");
            if !self.mem.borrow_mut().rmm_write(list + 8 * written, desc.0) {
                return status(RmiStatus::ErrorInput);
            }
            let mut mem = self.mem.borrow_mut();
            if undelegated {
                mem.scrub(g);
                mem.set_state(g, GranuleState::Ns);
            } else {
                mem.set_state(g, GranuleState::Delegated);
            }
            drop(mem);
            self.op_mut(handle, |op| {
                op.holding.pop();
            });
            written += 1;
        }
        let done = self.state.borrow().ops[&handle].holding.is_empty();
        if done {
            self.op_mut(handle, Op::advance);
        }
        let mut out = self.step(handle);
        out.0[1] = written;
        out
    }
}

/// The fields of `RmiRealmParams` the model checks.
struct Params {
    flags0: u64,
    s2sz: u64,
    num_bps: u64,
    num_wps: u64,
    algorithm: u64,
    rtt_base: u64,
    rtt_level_start: i64,
    rtt_num_start: u64,
}

/// TF-RMM's `s2_inconsistent_sl` (after AArch64.S2InconsistentSL) and
/// `s2_num_root_rtts`, written from the architecture: the number of root
/// tables an IPA size needs from a starting level, if they are consistent.
fn root_tables(ipa_bits: u64, sl: i64, lpa2: bool) -> Option<u64> {
    let min_sl = if lpa2 { -1 } else { 0 };
    let max_bits = if lpa2 { 52 } else { 48 };
    if !(32..=max_bits).contains(&ipa_bits) || sl < min_sl || sl > 3 {
        return None;
    }
    let levels = (3 - sl) as u64;
    let sl_min = levels * 9 + 12 + 1;
    let mut sl_max = if sl == -1 { sl_min + 3 } else { sl_min + 8 };
    if sl > 0 || (sl == 0 && lpa2) {
        sl_max += 4;
    }
    if ipa_bits < sl_min || ipa_bits > sl_max {
        return None;
    }
    let resolved = levels * 9 + 12 + 9;
    Some(if resolved >= ipa_bits {
        1
    } else {
        1 << (ipa_bits - resolved)
    })
}

impl Rmm {
    /// Reads a word of an NS granule, as the RMM does.
    fn ns_word(&self, pa: u64) -> Option<u64> {
        self.mem.borrow().rmm_read(pa)
    }

    /// `RMI_REALM_CREATE`: checks the RD, the params (as TF-RMM's
    /// `validate_realm_params`) and the root RTTs.
    fn realm_create(&self, args: &SmcRegs) -> SmcRegs {
        let (rd, params) = (args.x(1), args.x(2));
        let Some(rd) = Granule::new(rd) else {
            return status(RmiStatus::ErrorInput);
        };
        if self.mem.borrow().state(rd) != Some(GranuleState::Delegated) {
            return status(RmiStatus::ErrorInput);
        }
        let word = |off: u64| self.ns_word(params + off);
        let p = match (
            word(0x000),
            word(0x008),
            word(0x018),
            word(0x020),
            word(0x030),
            word(0x808),
            word(0x810),
            word(0x818),
        ) {
            (Some(f), Some(s), Some(b), Some(w), Some(a), Some(base), Some(sl), Some(n)) => {
                Params {
                    flags0: f,
                    s2sz: s & 0xffff_ffff,
                    num_bps: b & 0xffff_ffff,
                    num_wps: w & 0xffff_ffff,
                    algorithm: a & 0xff,
                    rtt_base: base,
                    // CAST: Two's complement, as the field is encoded.
                    rtt_level_start: sl as i64,
                    rtt_num_start: n & 0xffff_ffff,
                }
            }
            _ => return status(RmiStatus::ErrorInput),
        };
        let f0 = self.features[0];
        let lpa2 = p.flags0 & 1 != 0;
        let field = |lo: u32, width: u32| (f0 >> lo) & ((1 << width) - 1);
        let ok = (!lpa2 || field(8, 1) == 1)
            && p.s2sz >= 32
            && p.s2sz <= field(0, 8)
            && (1..=field(14, 6)).contains(&p.num_bps)
            && (1..=field(20, 6)).contains(&p.num_wps)
            && match p.algorithm {
                0 => self.features[1] & (1 << 3) != 0,
                1 => self.features[1] & (1 << 5) != 0,
                _ => false,
            }
            && root_tables(p.s2sz, p.rtt_level_start, lpa2) == Some(p.rtt_num_start);
        if !ok {
            return status(RmiStatus::ErrorInput);
        }
        let root = Granule::new(p.rtt_base)
            .filter(|b| b.is_aligned(p.rtt_num_start * GRANULE_SIZE))
            .and_then(|b| GranuleRange::from_count(b, p.rtt_num_start));
        let Some(root) = root else {
            return status(RmiStatus::ErrorInput);
        };
        let start = i8::try_from(p.rtt_level_start).ok().and_then(RttLevel::new);
        let Some(start) = start else {
            return status(RmiStatus::ErrorInput);
        };
        {
            let mut mem = self.mem.borrow_mut();
            if root.iter().any(|g| g == rd)
                || !root
                    .iter()
                    .all(|g| mem.state(g) == Some(GranuleState::Delegated))
            {
                return status(RmiStatus::ErrorInput);
            }
            mem.set_state(rd, GranuleState::InUse);
            for g in root.iter() {
                mem.set_state(g, GranuleState::InUse);
            }
        }
        self.state.borrow_mut().realms.insert(
            rd,
            ModelRealm {
                state: RealmState::New,
                // CAST: Checked to be at most 52 above.
                s2sz: p.s2sz as u32,
                start,
                root,
                root_live: 0,
                rtts: BTreeMap::new(),
                data: BTreeMap::new(),
                ram: BTreeMap::new(),
                destroyed: BTreeSet::new(),
                ns: BTreeMap::new(),
                rec_count: 0,
                rec_refs: 0,
            },
        );
        status(RmiStatus::Success)
    }

    /// Applies `f` to the realm whose RD is x1, or answers `ERROR_INPUT`.
    fn with_realm(
        &self,
        args: &SmcRegs,
        f: impl FnOnce(&mut ModelRealm, Granule) -> SmcRegs,
    ) -> SmcRegs {
        let Some(rd) = Granule::new(args.x(1)) else {
            return status(RmiStatus::ErrorInput);
        };
        let mut st = self.state.borrow_mut();
        match st.realms.get_mut(&rd) {
            Some(realm) => f(realm, rd),
            None => status(RmiStatus::ErrorInput),
        }
    }

    /// `RMI_REALM_ACTIVATE`: NEW only.
    fn realm_activate(&self, args: &SmcRegs) -> SmcRegs {
        self.with_realm(args, |r, _| {
            if r.state != RealmState::New {
                return status(RmiStatus::ErrorRealm);
            }
            r.state = RealmState::Active;
            status(RmiStatus::Success)
        })
    }

    /// `RMI_REALM_TERMINATE`: NEW or ACTIVE.
    fn realm_terminate(&self, args: &SmcRegs) -> SmcRegs {
        self.with_realm(args, |r, _| {
            if r.state == RealmState::Terminated {
                return status(RmiStatus::ErrorRealm);
            }
            r.state = RealmState::Terminated;
            status(RmiStatus::Success)
        })
    }

    /// `RMI_REALM_DESTROY`: terminated, no non-root RTTs left.
    fn realm_destroy(&self, args: &SmcRegs) -> SmcRegs {
        let Some(rd) = Granule::new(args.x(1)) else {
            return status(RmiStatus::ErrorInput);
        };
        let mut st = self.state.borrow_mut();
        let Some(realm) = st.realms.get(&rd) else {
            return status(RmiStatus::ErrorInput);
        };
        if realm.state != RealmState::Terminated || realm.root_live != 0 || realm.rec_refs != 0 {
            return status(RmiStatus::ErrorRealm);
        }
        let root = realm.root;
        st.realms.remove(&rd);
        let mut mem = self.mem.borrow_mut();
        mem.set_state(rd, GranuleState::Delegated);
        for g in root.iter() {
            mem.set_state(g, GranuleState::Delegated);
        }
        status(RmiStatus::Success)
    }

    /// Checks `(ipa, level)` for an RTT structure command: `level` in
    /// `(start, 3]`, `ipa` in range and aligned to a level-1 entry.
    fn rtt_args(r: &ModelRealm, ipa: u64, level: u64) -> Option<(RttLevel, RttLevel)> {
        // CAST: Two's complement level argument.
        let level = i8::try_from(level as i64).ok().and_then(RttLevel::new)?;
        let parent = level.above()?;
        if level <= r.start || ipa >= 1u64 << r.s2sz || ipa % parent.entry_size() != 0 {
            return None;
        }
        Some((level, parent))
    }

    /// `RMI_RTT_CREATE`.
    fn rtt_create(&self, args: &SmcRegs) -> SmcRegs {
        let (rtt, ipa, level) = (args.x(2), args.x(3), args.x(4));
        let mem = Rc::clone(&self.mem);
        self.with_realm(args, |r, _| {
            let Some((level, parent)) = Self::rtt_args(r, ipa, level) else {
                return status(RmiStatus::ErrorInput);
            };
            let Some(rtt) = Granule::new(rtt) else {
                return status(RmiStatus::ErrorInput);
            };
            if r.state == RealmState::Terminated
                || mem.borrow().state(rtt) != Some(GranuleState::Delegated)
            {
                return status(RmiStatus::ErrorInput);
            }
            let reached = r.walk(ipa, parent);
            if reached < parent || r.rtts.contains_key(&(level, ipa)) {
                // The walk stopped above, or the entry is a table already.
                let index = if reached < parent { reached } else { parent };
                let mut out = status(RmiStatus::ErrorRtt);
                out.0[0] = return_code(RmiStatus::ErrorRtt, index.get() as u8);
                return out;
            }
            mem.borrow_mut().set_state(rtt, GranuleState::InUse);
            r.rtts.insert(
                (level, ipa),
                ModelRtt {
                    granule: rtt,
                    live: 0,
                },
            );
            r.table_live(ipa, parent, 1);
            status(RmiStatus::Success)
        })
    }

    /// `RMI_RTT_DATA_MAP_INIT`: x2 = DATA (delegated), x3 = IPA, x4 = source
    /// (NS), x5 = measure flag. NEW realms only; the walk must reach the
    /// level-3 table, whose entry must be unassigned.
    fn rtt_data_map_init(&self, args: &SmcRegs) -> SmcRegs {
        let (data, ipa, src, flags) = (args.x(2), args.x(3), args.x(4), args.x(5));
        let mem = Rc::clone(&self.mem);
        self.with_realm(args, |r, _| {
            let (Some(data), Some(src)) = (Granule::new(data), Granule::new(src)) else {
                return status(RmiStatus::ErrorInput);
            };
            let protected_top = 1u64 << (r.s2sz - 1);
            if flags > 1
                || ipa % GRANULE_SIZE != 0
                || ipa >= protected_top
                || mem.borrow().state(data) != Some(GranuleState::Delegated)
                || mem.borrow().state(src) != Some(GranuleState::Ns)
            {
                return status(RmiStatus::ErrorInput);
            }
            if r.state != RealmState::New {
                return status(RmiStatus::ErrorRealm);
            }
            let Some(leaf) = RttLevel::new(3) else {
                return status(RmiStatus::ErrorInput);
            };
            let reached = r.walk(ipa, leaf);
            if reached < leaf || r.data.contains_key(&ipa) {
                let mut out = status(RmiStatus::ErrorRtt);
                out.0[0] = return_code(RmiStatus::ErrorRtt, reached.get() as u8);
                return out;
            }
            mem.borrow_mut().set_state(data, GranuleState::InUse);
            r.data.insert(ipa, data);
            r.set_ram(ipa, ipa + GRANULE_SIZE);
            r.destroyed.remove(&ipa);
            r.table_live(ipa, leaf, 1);
            status(RmiStatus::Success)
        })
    }

    /// `RMI_RTT_INIT_RIPAS` over `[x2, x3)`: NEW realms only; from the
    /// entry at x2 (which must start there) to the end of its table, each
    /// entry wholly below x3 that is EMPTY becomes RAM, RAM stays; any other
    /// (a table, DESTROYED) stops the walk. x1 = where it stopped; no
    /// progress is `RMI_ERROR_RTT` with the level.
    fn rtt_init_ripas(&self, args: &SmcRegs) -> SmcRegs {
        let (base, top) = (args.x(2), args.x(3));
        self.with_realm(args, |r, _| {
            let protected_top = 1u64 << (r.s2sz - 1);
            if top <= base
                || base % GRANULE_SIZE != 0
                || top % GRANULE_SIZE != 0
                || top > protected_top
            {
                return status(RmiStatus::ErrorInput);
            }
            if r.state != RealmState::New {
                return status(RmiStatus::ErrorRealm);
            }
            let (level, end) = match r.range_walk(base) {
                Ok(walked) => walked,
                Err(out) => return out,
            };
            let size = level.entry_size();
            let rtt_error = || rtt_error(level);
            let mut addr = base;
            while addr < end {
                let next = addr + size;
                if next > top || r.is_table(addr, level) || r.destroyed.contains(&addr) {
                    break;
                }
                r.set_ram(addr, next);
                addr = next;
            }
            if addr == base {
                return rtt_error();
            }
            let mut out = status(RmiStatus::Success);
            out.0[1] = addr;
            out
        })
    }

    /// `RMI_RTT_DATA_UNMAP` over `[x2, x3)`, x4 = flags (NONE or SINGLE;
    /// LIST is not modelled). Within the leaf table the walk lands in:
    /// non-live entries are skipped, DATA is unmapped (back to DELEGATED,
    /// RIPAS RAM becomes DESTROYED); a table, or an entry crossing x3, ends
    /// the run (`RMI_ERROR_RTT` if it is the first entry), as does a PA
    /// discontinuity in SINGLE mode. x1 = where it stopped, x2 = the SINGLE
    /// descriptor (0 if nothing was unmapped).
    fn rtt_data_unmap(&self, args: &SmcRegs) -> SmcRegs {
        let (base, top, flags, oaddr) = (args.x(2), args.x(3), args.x(4), args.x(5));
        let mem = Rc::clone(&self.mem);
        self.with_realm(args, |r, _| {
            let protected_top = 1u64 << (r.s2sz - 1);
            let single = match flags {
                0 => false,
                1 => true,
                _ => return status(RmiStatus::ErrorInput),
            };
            if oaddr != 0
                || top <= base
                || base % GRANULE_SIZE != 0
                || top % GRANULE_SIZE != 0
                || top > protected_top
            {
                return status(RmiStatus::ErrorInput);
            }
            let (level, end) = match r.range_walk(base) {
                Ok(walked) => walked,
                Err(out) => return out,
            };
            let size = level.entry_size();
            let rtt_error = || rtt_error(level);
            let mut addr = base;
            let mut run: Option<(u64, u64)> = None;
            while addr < end {
                let next = addr + size;
                let data = if level.get() == 3 {
                    r.data.get(&addr).copied()
                } else {
                    None
                };
                let table = r.is_table(addr, level);
                if next > top || table {
                    if addr == base {
                        return rtt_error();
                    }
                    break;
                }
                if let Some(g) = data {
                    if single {
                        match run {
                            Some((first, n)) if first + n * GRANULE_SIZE != g.pa() => break,
                            Some((first, n)) => run = Some((first, n + 1)),
                            None => run = Some((g.pa(), 1)),
                        }
                    }
                    r.data.remove(&addr);
                    // RAM (and DESTROYED) become DESTROYED; EMPTY stays.
                    if r.is_ram(addr, next) || r.destroyed.contains(&addr) {
                        r.clear_ram(addr, next);
                        r.destroyed.insert(addr);
                    }
                    r.table_live(addr, level, -1);
                    mem.borrow_mut().set_state(g, GranuleState::Delegated);
                }
                addr = next;
            }
            let mut out = status(RmiStatus::Success);
            out.0[1] = addr;
            if let Some((first, n)) = run {
                // Size 0 (4 KiB), count [11:2], PA [51:12].
                out.0[2] = first | (n << 2);
            }
            out
        })
    }

    /// `RMI_RTT_DATA_MAP` (`unprot` false) and `RMI_RTT_UNPROT_MAP` over
    /// `[x2, x3)`, x4 = flags, x5 = one descriptor (SINGLE; LIST and blocks
    /// are not modelled). The walk must reach level 3 (else `RMI_ERROR_RTT`
    /// with the level reached); from there, one granule per entry to the
    /// end of the table, the descriptor or the range. DATA: the range is in
    /// PAR, granules DELEGATED, entries unassigned (or mapping the same
    /// granule), keeping their RIPAS. UNPROT: outside PAR, x4 [22:19] the
    /// permissions, entries unassigned or identical. Any progress is
    /// `RMI_SUCCESS` with x1 = where it stopped.
    fn rtt_map(&self, args: &SmcRegs, unprot: bool) -> SmcRegs {
        let (base, top, flags, desc) = (args.x(2), args.x(3), args.x(4), args.x(5));
        let mem = Rc::clone(&self.mem);
        self.with_realm(args, |r, _| {
            if !matches!(r.state, RealmState::New | RealmState::Active) {
                return status(RmiStatus::ErrorRealm);
            }
            let desc = RmiAddrRangeDesc(desc);
            let protected_top = 1u64 << (r.s2sz - 1);
            let in_par = top <= protected_top;
            let outside_par = base >= protected_top && top <= 1u64 << r.s2sz;
            // S2AP: write [19], read [20], [22:21] SBZ; memattr [18:16].
            let s2ap = (flags >> 19) & 0xf;
            let bad_flags = if unprot {
                s2ap & !0b11 != 0 || (flags >> 16) & 0x7 == 0b100
            } else {
                false
            };
            if top <= base
                || flags & 0b11 != 1
                || bad_flags
                || desc.size() != RmiBlockSize::Page
                || desc.count() == 0
                || (!unprot && desc.state() != RmiMemState::Delegated)
                || base % GRANULE_SIZE != 0
                || top % GRANULE_SIZE != 0
                || (if unprot { !outside_par } else { !in_par })
            {
                return status(RmiStatus::ErrorInput);
            }
            let Some(leaf) = RttLevel::new(3) else {
                return status(RmiStatus::ErrorInput);
            };
            let reached = r.walk(base, leaf);
            if reached < leaf {
                return rtt_error(reached);
            }
            let end = r.table_end(base, leaf);
            let write = s2ap & 1 != 0;
            let mut addr = base;
            let mut result = status(RmiStatus::Success);
            for i in 0..desc.count() {
                let g = Granule::new(desc.base().pa() + i * GRANULE_SIZE);
                let Some(g) = g.filter(|_| addr < end && addr + GRANULE_SIZE <= top) else {
                    if addr + GRANULE_SIZE > top {
                        result = rtt_error(leaf);
                    }
                    break;
                };
                if unprot {
                    match r.ns.get(&addr) {
                        Some(&(mapped, w)) if mapped == g && w == write => {}
                        Some(_) => {
                            result = rtt_error(leaf);
                            break;
                        }
                        None => {
                            r.ns.insert(addr, (g, write));
                            r.table_live(addr, leaf, 1);
                        }
                    }
                } else {
                    match r.data.get(&addr) {
                        Some(&mapped) if mapped == g => {}
                        Some(_) => {
                            result = rtt_error(leaf);
                            break;
                        }
                        None if mem.borrow().state(g) != Some(GranuleState::Delegated) => {
                            result = status(RmiStatus::ErrorInput);
                            break;
                        }
                        None => {
                            mem.borrow_mut().scrub(g);
                            mem.borrow_mut().set_state(g, GranuleState::InUse);
                            r.data.insert(addr, g);
                            r.table_live(addr, leaf, 1);
                        }
                    }
                }
                addr += GRANULE_SIZE;
            }
            if addr > base {
                result = status(RmiStatus::Success);
                result.0[1] = addr;
            }
            result
        })
    }

    /// `RMI_RTT_UNPROT_UNMAP` over `[x2, x3)` (outside PAR), x4 = flags
    /// (NONE only). As `RMI_RTT_DATA_UNMAP`: within the leaf table the walk
    /// lands in, non-live entries are skipped and NS mappings removed; a
    /// table or an entry crossing x3 ends the run (`RMI_ERROR_RTT` if it is
    /// the first). x1 = where it stopped.
    fn rtt_unprot_unmap(&self, args: &SmcRegs) -> SmcRegs {
        let (base, top, flags, oaddr) = (args.x(2), args.x(3), args.x(4), args.x(5));
        self.with_realm(args, |r, _| {
            let protected_top = 1u64 << (r.s2sz - 1);
            if flags != 0
                || oaddr != 0
                || top <= base
                || base % GRANULE_SIZE != 0
                || top % GRANULE_SIZE != 0
                || base < protected_top
                || top > 1u64 << r.s2sz
            {
                return status(RmiStatus::ErrorInput);
            }
            let (level, end) = match r.range_walk(base) {
                Ok(walked) => walked,
                Err(out) => return out,
            };
            let size = level.entry_size();
            let mut addr = base;
            while addr < end {
                let next = addr + size;
                if next > top || r.is_table(addr, level) {
                    if addr == base {
                        return rtt_error(level);
                    }
                    break;
                }
                if level.get() == 3 && r.ns.remove(&addr).is_some() {
                    r.table_live(addr, level, -1);
                }
                addr = next;
            }
            let mut out = status(RmiStatus::Success);
            out.0[1] = addr;
            out
        })
    }

    /// `RMI_RTT_READ_ENTRY` of x2 at level x3: x1 = the level the walk
    /// reached, x2 = the state, x3 = the output address, x4 = the RIPAS.
    fn rtt_read_entry(&self, args: &SmcRegs) -> SmcRegs {
        let (ipa, level) = (args.x(2), args.x(3));
        self.with_realm(args, |r, _| {
            // CAST: Two's complement level argument.
            let Some(level) = i8::try_from(level as i64).ok().and_then(RttLevel::new) else {
                return status(RmiStatus::ErrorInput);
            };
            if level < r.start || ipa >= 1u64 << r.s2sz || ipa % level.entry_size() != 0 {
                return status(RmiStatus::ErrorInput);
            }
            let reached = r.walk(ipa, level);
            let at = ipa & !(reached.entry_size() - 1);
            let next = at + reached.entry_size();
            let ripas = if r.destroyed.contains(&at) {
                2
            } else if r.is_ram(at, next) {
                1
            } else {
                0
            };
            let (state, addr) = if r.is_table(at, reached) {
                (2, 0)
            } else if let Some(g) = r.data.get(&at).filter(|_| reached.get() == 3) {
                (1, g.pa())
            } else if let Some((g, _)) = r.ns.get(&at).filter(|_| reached.get() == 3) {
                (1, g.pa())
            } else {
                (0, 0)
            };
            let mut out = status(RmiStatus::Success);
            // CAST: Two's complement level.
            out.0[1] = reached.get() as i64 as u64;
            out.0[2] = state;
            out.0[3] = addr;
            out.0[4] = if at >= 1u64 << (r.s2sz - 1) { 0 } else { ripas };
            out
        })
    }

    /// Takes the RTT at `level` for `ipa` out of the realm if it has no live
    /// entries (shared by `RMI_RTT_FOLD`, where "no tables below" is what
    /// "homogeneous" means while no data mapping is modelled, and
    /// `RMI_RTT_DESTROY`). On failure: the error, and the level the walk
    /// reached if the table is not there.
    fn take_rtt(
        r: &mut ModelRealm,
        mem: &RefCell<Mem>,
        ipa: u64,
        level: RttLevel,
        parent: RttLevel,
        fold: bool,
    ) -> Result<Granule, (u64, Option<RttLevel>)> {
        let reached = r.walk(ipa, parent);
        let Some(rtt) = r
            .rtts
            .get(&(level, ipa))
            .copied()
            .filter(|_| reached == parent)
        else {
            return Err((
                return_code(RmiStatus::ErrorRtt, reached.get() as u8),
                Some(reached),
            ));
        };
        // A fold needs one RIPAS for all entries (homogeneous).
        let end = ipa + parent.entry_size();
        let mixed = fold
            && ((r.any_ram(ipa, end) && !r.is_ram(ipa, end))
                || r.destroyed.range(ipa..end).next().is_some());
        if rtt.live != 0 || mixed {
            return Err((return_code(RmiStatus::ErrorRtt, level.get() as u8), None));
        }
        r.rtts.remove(&(level, ipa));
        r.table_live(ipa, parent, -1);
        mem.borrow_mut()
            .set_state(rtt.granule, GranuleState::Delegated);
        Ok(rtt.granule)
    }

    /// `RMI_RTT_FOLD` and `RMI_RTT_DESTROY` take the RTT at x3's level for
    /// x2 out of the realm; x1 = the RTT, back to DELEGATED. `destroy` adds
    /// x2, the top of the non-live region (on success and on ERROR_RTT).
    fn rtt_take_out(&self, args: &SmcRegs, destroy: bool) -> SmcRegs {
        let (ipa, level) = (args.x(2), args.x(3));
        let mem = Rc::clone(&self.mem);
        self.with_realm(args, |r, _| {
            let Some((level, parent)) = Self::rtt_args(r, ipa, level) else {
                return status(RmiStatus::ErrorInput);
            };
            let mut out = SmcRegs::default();
            let (x0, next) = match Self::take_rtt(r, &mem, ipa, level, parent, !destroy) {
                Ok(g) => {
                    out.0[1] = g.pa();
                    (
                        return_code(RmiStatus::Success, 0),
                        r.skip_non_live(ipa, parent),
                    )
                }
                // Not there: skip the non-live run where the walk stopped.
                Err((x0, Some(reached))) => (x0, r.skip_non_live(ipa, reached)),
                // Live: stay here.
                Err((x0, None)) => (x0, ipa),
            };
            out.0[0] = x0;
            if destroy {
                out.0[2] = next;
            }
            out
        })
    }
}

impl SmcConduit for Rmm {
    fn call(&self, args: &SmcRegs) -> SmcRegs {
        // CAST: SMCCC function IDs are 32 bits (w0).
        let fid = RmiFid(args.x(0) as u32);
        *self.state.borrow_mut().calls.entry(fid).or_default() += 1;
        if let Some(x0) = self.take_injected(fid) {
            let mut out = SmcRegs::default();
            out.0[0] = x0;
            return out;
        }
        if !self.state.borrow().active && !INIT_STATE_FIDS.contains(&fid) {
            return status(RmiStatus::ErrorGlobal);
        }
        let script = self
            .state
            .borrow_mut()
            .scripts
            .get_mut(&fid)
            .and_then(VecDeque::pop_front);
        if let Some(phases) = script {
            return self.start_op(Op::new(phases, Effect::Script));
        }
        match fid {
            RMI_VERSION => self.version(args),
            RMI_FEATURES => self.features(args),
            RMI_RMM_CONFIG_SET => self.config_set(args),
            RMI_RMM_CONFIG_GET => self.config_get(args),
            RMI_RMM_ACTIVATE => self.activate(),
            RMI_GRANULE_TRACKING_GET => self.tracking_get(args),
            RMI_GPT_L1_CREATE => self.gpt_l1_create(args),
            RMI_GRANULE_RANGE_DELEGATE => self.granule_range(args, true),
            RMI_GRANULE_RANGE_UNDELEGATE => self.granule_range(args, false),
            RMI_OP_CONTINUE => self.op_continue(args),
            RMI_OP_CANCEL => self.op_cancel(args),
            RMI_OP_MEM_DONATE => self.op_donate(args),
            RMI_OP_MEM_RECLAIM => self.op_reclaim(args),
            RMI_REALM_CREATE => self.realm_create(args),
            RMI_REALM_ACTIVATE => self.realm_activate(args),
            RMI_REALM_TERMINATE => self.realm_terminate(args),
            RMI_REALM_DESTROY => self.realm_destroy(args),
            RMI_RTT_CREATE => self.rtt_create(args),
            RMI_RTT_DATA_MAP_INIT => self.rtt_data_map_init(args),
            RMI_RTT_DATA_UNMAP => self.rtt_data_unmap(args),
            RMI_RTT_DATA_MAP => self.rtt_map(args, false),
            RMI_RTT_UNPROT_MAP => self.rtt_map(args, true),
            RMI_RTT_UNPROT_UNMAP => self.rtt_unprot_unmap(args),
            RMI_RTT_READ_ENTRY => self.rtt_read_entry(args),
            RMI_RTT_INIT_RIPAS => self.rtt_init_ripas(args),
            RMI_RTT_SET_RIPAS => self.rtt_set_ripas(args),
            RMI_RTT_DESTROY => self.rtt_take_out(args, true),
            RMI_RTT_FOLD => self.rtt_take_out(args, false),
            RMI_REC_CREATE => self.rec_create(args),
            RMI_REC_DESTROY => self.rec_destroy(args),
            RMI_REC_ENTER => self.rec_enter(args),
            RMI_PSCI_COMPLETE => self.psci_complete(args),
            _ => {
                let mut out = SmcRegs::default();
                out.0[0] = SMCCC_RET_NOT_SUPPORTED;
                out
            }
        }
    }
}

/// A machine with no RMM: QEMU's EL3-less PSCI emulation, which answers an
/// unknown SMC with -1 in x0 and leaves x1.. as they were passed.
#[derive(Debug, Default)]
pub(crate) struct NoRmm;

impl SmcConduit for NoRmm {
    fn call(&self, args: &SmcRegs) -> SmcRegs {
        let mut out = *args;
        out.0[0] = SMCCC_RET_NOT_SUPPORTED;
        out
    }
}
