// SPDX-License-Identifier: GPL-2.0

//! Realm VMs in the kernel: the module's state for one KVM VM, over the
//! core's [`Realm`].
//!
//! Part of the kernel shell. KVM creates the VM and its (empty) host stage 2;
//! [`RealmVm::new`] gives it a [`Realm`] in state NONE. The RD is created
//! lazily, by the first populate or the first vCPU run, which activates the
//! realm with its RECs ([`RealmRecs`]); RIPAS changes, stage-2 unmaps and the
//! RMM's refusals are handled here, and everything the realm owns goes back
//! when KVM destroys the VM. What debugfs shows of the realm is published to
//! its [`RealmStats`] each time its lock is released ([`LockedRealm`]).

use kernel::{
    alloc::flags::GFP_KERNEL_ACCOUNT,
    debugfs::Scope,
    kvm::{
        Kvm,
        MemSlot,
        MmuLocked,
        SlotsLockGuard, //
    },
    new_mutex,
    prelude::*,
    sync::{
        Arc,
        Mutex,
        MutexGuard, //
    },
};

use core::ops::{
    Deref,
    DerefMut, //
};
use core::sync::atomic::{
    AtomicU32,
    AtomicU64,
    Ordering, //
};

use crate::addr::{
    Granule,
    Ipa,
    RttLevel,
    GRANULE_SHIFT, //
};
use crate::cond_resched;
use crate::kvm_debugfs::{
    self,
    RealmView, //
};
use crate::kvm_gpf::{
    self,
    one,
    GranuleList,
    Owner,
    RealmPart, //
};
use crate::kvm_recs::{
    vcpu_sve_vl,
    RealmRecs,
    RecOwner, //
};
use crate::memory::{
    ripas_range_backed,
    unmap_protected,
    unmap_shared, //
};
use crate::realm::{
    realm_shape,
    DebugResources,
    Realm,
    RealmConfig,
    RealmError,
    RealmOptions,
    RealmState,
    RipasWalk, //
};
use crate::realm_stats::RealmStats;
use crate::rmi_smc::RmiError;
use crate::run::RipasRequest;
use crate::{
    KernelPages,
    RmiSmc,
    Shown,
    RMI,
    RMM_FEATURES, //
};

/// Numbers realms for reports, in creation order.
static NEXT_REALM_ID: AtomicU64 = AtomicU64::new(1);

/// A realm as the kernel holds it.
pub(crate) type KernelRealm = Realm<'static, RmiSmc, KernelPages, GranuleList>;

/// The module's state for one realm VM.
#[pin_data]
pub(crate) struct RealmVm {
    /// Its number in reports.
    id: u64,
    /// The process that created the VM.
    pid: i32,
    /// The realm; the lock serialises its RMI operations. Taken through
    /// [`RealmVm::lock_realm`] only.
    #[pin]
    realm: Mutex<KernelRealm>,
    /// Counters, shared with the debugfs files.
    stats: Arc<RealmStats>,
    /// `kvm_rmi/realms/<id>/`, removed (waiting for readers) when the VM
    /// goes.
    _debugfs: Pin<KBox<Scope<RealmView>>>,
    /// The RECs, created at activation, when the set of vCPUs is final.
    /// Taken after `realm`.
    #[pin]
    recs: RealmRecs,
    /// The RD's address once created, else 0: for unmapping under
    /// `mmu_lock`, where the realm's mutex cannot be taken.
    rd: AtomicU64,
    /// The SVE vector length in bytes the RD was created with (0: no SVE).
    /// Written once, with the RD, under `realm`.
    sve_vl: AtomicU32,
}

/// A realm VM's realm, locked. Releasing it publishes the realm's state and
/// RTT count to the VM's counters, where debugfs reads them without the
/// lock.
pub(crate) struct LockedRealm<'a> {
    realm: MutexGuard<'a, KernelRealm>,
    stats: &'a RealmStats,
}

impl Deref for LockedRealm<'_> {
    type Target = KernelRealm;

    fn deref(&self) -> &KernelRealm {
        &self.realm
    }
}

impl DerefMut for LockedRealm<'_> {
    fn deref_mut(&mut self) -> &mut KernelRealm {
        &mut self.realm
    }
}

impl Drop for LockedRealm<'_> {
    fn drop(&mut self) {
        self.stats
            .publish(self.realm.state(), self.realm.rtt_pages());
    }
}

impl RealmVm {
    /// The module's state for a new realm VM `kvm`, whose stage-2 size
    /// KVM has checked against the RMM's limit and its own.
    pub(crate) fn new(kvm: &Kvm) -> Result<Pin<KBox<Self>>> {
        let features = RMM_FEATURES.as_ref().ok_or(ENODEV)?;
        // KVM checked the size against `ipa_limit()` and its own limit.
        let ipa_bits = u8::try_from(kvm.ipa_bits()).map_err(|_| EINVAL)?;
        let config = RealmConfig {
            ipa_bits,
            host_ipa_limit: ipa_bits,
            host_lpa2: kvm.stage2_lpa2(),
        };
        let shape = realm_shape(features, config).map_err(|e| {
            pr_warn!("realm refused: {}\n", Shown(e));
            EINVAL
        })?;
        let id = NEXT_REALM_ID.fetch_add(1, Ordering::Relaxed);
        let pid = kernel::current!().tgid();
        let rtts = GranuleList::new(Owner::Realm {
            id,
            pid,
            part: RealmPart::Rtt,
        });
        let realm = new_mutex!(Realm::new(&RMI, shape, rtts), "RealmVm::realm");
        let stats = Arc::new(RealmStats::new(), GFP_KERNEL_ACCOUNT)?;
        let debugfs = kvm_debugfs::realm_scope(RealmView {
            id,
            pid,
            ipa_bits,
            stats: stats.clone(),
        })?;
        KBox::pin_init(
            pin_init!(RealmVm {
                id,
                pid,
                realm <- realm,
                stats,
                _debugfs: debugfs,
                recs <- RealmRecs::new(),
                rd: AtomicU64::new(0),
                sve_vl: AtomicU32::new(0),
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// Destroys the RECs, then the realm, when KVM destroys the VM.
    pub(crate) fn destroy(&self) {
        let mut realm = self.lock_realm();
        // The RMM holds the RD until every REC is gone.
        self.recs.destroy(self.rec_owner(), &self.stats);
        let (rd, root) = (realm.rd(), realm.root_range());
        // Nothing unmaps any more (no MMU notifier, no guest_memfd file).
        self.rd.store(0, Ordering::Release);
        match realm.destroy(&mut cond_resched) {
            Ok(()) => {
                // Back in the host: no longer the realm's.
                for range in [rd.and_then(one), root].into_iter().flatten() {
                    kvm_gpf::forget(range);
                }
            }
            // The realm is DEAD; what the RMM may still hold stays leaked,
            // and recorded as the realm's.
            Err(e) => pr_err!("realm {} destruction failed: {}\n", self.id, Shown(e)),
        }
    }

    /// Activates the realm when its first vCPU first runs: creates the RD
    /// if populate did not, sets RIPAS RAM over its guest_memfd memslots
    /// and creates a REC for every vCPU (none can be added once a vCPU has
    /// run).
    pub(crate) fn activate(&self, kvm: &Kvm) -> Result {
        // Lock order: the memslots (for RIPAS) before the realm.
        let slots = kvm.lock_slots();
        let mut realm = self.lock_realm();
        // Lazy: the first populate may have created it already.
        self.create(kvm, &mut realm)
            .map_err(|e| self.fail(kvm, &realm, "at its creation", e))?;
        if realm.state() == RealmState::New {
            self.init_ripas(kvm, &slots, &mut realm)?;
            let rd = realm.rd().ok_or(EINVAL)?;
            let sve_vl = self.sve_vl.load(Ordering::Relaxed);
            self.recs
                .create(kvm, rd, self.rec_owner(), sve_vl, &self.stats)?;
        }
        realm
            .activate()
            .map_err(|e| self.fail(kvm, &realm, "at activation", e))
    }

    /// Locks the realm. Lock order: `slots_lock`, then guest_memfd's
    /// invalidate lock, then this, then `mmu_lock`.
    pub(crate) fn lock_realm(&self) -> LockedRealm<'_> {
        LockedRealm {
            realm: self.realm.lock(),
            stats: &self.stats,
        }
    }

    /// Where the realm is in its life (its lock taken and released).
    pub(crate) fn state(&self) -> RealmState {
        self.lock_realm().state()
    }

    /// The SVE vector length in bytes the RD was created with (0: none).
    pub(crate) fn sve_vl(&self) -> u32 {
        self.sve_vl.load(Ordering::Relaxed)
    }

    /// Tears down the realm's stage 2 (KVM's `kvm_arch_flush_shadow_all()`).
    pub(crate) fn teardown_stage2(&self) {
        if let Err(e) = self.lock_realm().teardown_stage2(&mut cond_resched) {
            pr_err!(
                "realm {} stage-2 teardown failed: {}
",
                self.id,
                Shown(e)
            );
        }
    }

    /// Which realm its RECs are of.
    fn rec_owner(&self) -> RecOwner {
        RecOwner {
            id: self.id,
            pid: self.pid,
        }
    }

    /// The owner record of a granule that is `part` of this realm.
    fn owner(&self, part: RealmPart) -> Owner {
        Owner::Realm {
            id: self.id,
            pid: self.pid,
            part,
        }
    }

    /// Creates the RD and root RTTs if not done yet, and records them.
    pub(crate) fn create(&self, kvm: &Kvm, realm: &mut KernelRealm) -> Result<(), RealmError> {
        let features = RMM_FEATURES
            .as_ref()
            .ok_or(RealmError::WrongState(realm.state()))?;
        let created = realm.rd().is_none();
        // The breakpoints and watchpoints the VMM left in ID_AA64DFR0_EL1,
        // and the SVE vector length of the first vCPU, which
        // `check_reg_write` locks from now on; activation checks that every
        // vCPU has the same.
        let debug = DebugResources::from_dfr0(kvm.id_aa64dfr0());
        let sve_vl = vcpu_sve_vl(kvm, 0).filter(|&vl| vl != 0);
        realm.create(
            features,
            RealmOptions {
                debug: Some(debug),
                sve_vl,
            },
        )?;
        if created {
            self.sve_vl.store(sve_vl.unwrap_or(0), Ordering::Relaxed);
            record_rd_and_root(self, realm);
            if let Some(rd) = realm.rd() {
                self.rd.store(rd.pa(), Ordering::Release);
            }
        }
        Ok(())
    }

    /// Turns a realm error into an errno; a realm that died marks its VM
    /// dead (its ioctls fail from now on).
    pub(crate) fn fail(&self, kvm: &Kvm, realm: &KernelRealm, what: &str, e: RealmError) -> Error {
        if realm.state() == RealmState::Dead {
            pr_err!("realm {} died ({what}): {}\n", self.id, Shown(e));
            kvm.mark_dead();
        }
        Error::from(e)
    }

    /// Its number in reports.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Its counters.
    pub(crate) fn stats(&self) -> &RealmStats {
        &self.stats
    }

    /// The RD, once created.
    pub(crate) fn rd(&self) -> Option<Granule> {
        Granule::new(self.rd.load(Ordering::Acquire)).filter(|g| g.pa() != 0)
    }

    /// The unprotected bit of the VM's IPA space: the top one.
    pub(crate) fn shared_bit(&self, kvm: &Kvm) -> u64 {
        1u64 << (kvm.ipa_bits().saturating_sub(1) & 63)
    }

    /// Creates the level-3 RTT for `ipa` (and the tables above it) if
    /// missing, for a stage-2 fault.
    pub(crate) fn ensure_leaf_rtt(&self, kvm: &Kvm, ipa: Ipa) -> Result {
        let leaf = RttLevel::new(3).ok_or(EINVAL)?;
        let mut realm = self.lock_realm();
        realm
            .ensure_rtt(ipa, leaf)
            .map_err(|e| self.fail(kvm, &realm, "creating an RTT", e))
    }

    /// The REC with index `index` (that of vCPU `index`).
    pub(crate) fn rec_granule(&self, index: u64) -> Option<Granule> {
        self.recs.granule(index)
    }

    /// Carries out RIPAS change `req` of REC `rec` (before its next entry),
    /// until done or a signal is pending ([`RipasWalk::Paused`]). Returns
    /// how far it got, also with the error: `ENOMEM` (the next `KVM_RUN`
    /// goes on from there), or the VM is dead.
    pub(crate) fn set_ripas(
        &self,
        kvm: &Kvm,
        rec: Granule,
        req: RipasRequest,
    ) -> Result<(u64, RipasWalk), (u64, Error)> {
        let (Some(mut at), Some(top)) = (Ipa::new(req.base), Ipa::new(req.top)) else {
            return Err((req.base, EINVAL));
        };
        let mut realm = self.lock_realm();
        // Between RMM calls: let others run, and stop for a signal (the
        // REC keeps the progress; the next KVM_RUN goes on from there).
        let mut pause = || {
            cond_resched();
            kernel::current!().signal_pending()
        };
        let done = realm
            .set_ripas(rec, &mut at, top, &mut pause)
            .and_then(|walk| {
                // Tables split for the change go if the range is uniform again.
                if walk == RipasWalk::Done {
                    if let Some(start) = Ipa::new(req.start) {
                        realm.fold_uniform(start, at, &mut cond_resched)?;
                    }
                }
                Ok(walk)
            });
        done.map(|walk| (at.get(), walk)).map_err(|e| {
            let what = if req.ram {
                "setting RIPAS RAM"
            } else {
                "setting RIPAS EMPTY"
            };
            (at.get(), self.fail(kvm, &realm, what, e))
        })
    }

    /// Whether a RIPAS change of `[base, top)` lies in this realm's
    /// guest_memfd memslots ([`ripas_range_backed`]).
    pub(crate) fn ripas_range_backed(&self, kvm: &Kvm, base: u64, top: u64) -> bool {
        let srcu = kvm.srcu_read_lock();
        ripas_range_backed(base, top, |gfn| {
            srcu.memslot(gfn)
                .filter(|slot| slot.has_gmem())
                .and_then(|slot| slot.base_gfn().checked_add(slot.npages()))
        })
    }

    /// Records whether a `CPU_ON` of REC `index` is being completed.
    pub(crate) fn set_cpu_on_pending(&self, index: u64, pending: bool) {
        self.recs.set_cpu_on_pending(index, pending);
    }

    /// Whether a `CPU_ON` of REC `index` is being completed.
    pub(crate) fn cpu_on_pending(&self, index: u64) -> bool {
        self.recs.cpu_on_pending(index)
    }

    /// The RMM refused an operation on the REC of vCPU `index`: the REC
    /// cannot run again, so the VM is dead.
    pub(crate) fn vcpu_died(&self, kvm: &Kvm, index: u32, what: &str, e: RmiError) -> Error {
        pr_err!(
            "realm {} vCPU {index} died ({what}): {}\n",
            self.id,
            Shown(e)
        );
        kvm.mark_dead();
        EIO
    }

    /// KVM would have injected an exception into vCPU `index` for the trap
    /// with syndrome `esr` (an UNDEF for a register it does not emulate):
    /// the RMM cannot deliver it, and the access must not seem to succeed,
    /// so the VM is dead.
    pub(crate) fn vcpu_undeliverable(&self, kvm: &Kvm, index: u32, esr: u64) -> Error {
        pr_err!(
            "realm {} vCPU {index}: KVM would inject an exception for ESR {esr:#x}, which a realm cannot take: VM stopped\n",
            self.id
        );
        kvm.mark_dead();
        EIO
    }

    /// vCPU `index` exited for a reason the host does not handle: the VM is
    /// dead.
    pub(crate) fn vcpu_unhandled_exit(&self, kvm: &Kvm, index: u32, reason: u64, esr: u64) {
        pr_err!(
            "realm {} vCPU {index}: unhandled exit (reason {reason}, ESR {esr:#x})\n",
            self.id
        );
        kvm.mark_dead();
    }

    /// Unmaps protected IPAs `[start, end)` (clipped to the protected
    /// half), under `mmu_lock` held for writing: if `private`, the guest
    /// pages there (given back to guest_memfd); if `shared`, the NS pages
    /// at their unprotected aliases. A failure kills the VM.
    pub(crate) fn unmap(
        &self,
        mmu: &mut MmuLocked<'_>,
        (start, end): (u64, u64),
        private: bool,
        shared: bool,
    ) {
        let Some(rd) = self.rd() else {
            return;
        };
        let half = self.shared_bit(mmu.kvm());
        let (start, end) = (start.min(half), end.min(half));
        let at = |offset: u64| {
            let ipa = |a: u64| a.checked_add(offset).and_then(Ipa::new);
            ipa(start).zip(ipa(end))
        };
        let mut resched = || mmu.cond_resched();
        let mut failed = None;
        if let (true, Some((base, top))) = (private && start < end, at(0)) {
            match unmap_protected(&RMI, rd, base, top, &mut resched) {
                Ok(done) => self.stats.unmapped(done.pages),
                Err((done, e)) => {
                    self.stats.unmapped(done.pages);
                    failed = Some((base, e));
                }
            }
        }
        if let (true, Some((base, top))) = (shared && start < end, at(half)) {
            if let Err(e) = unmap_shared(RMI.smc(), rd, base, top, &mut resched) {
                failed = Some((base, e));
            }
        }
        if let Some((base, e)) = failed {
            pr_err!(
                "realm {}: unmapping from {:#x} failed: {}\n",
                self.id,
                base.get(),
                Shown(e)
            );
            mmu.kvm().mark_dead();
        }
    }

    /// Sets RIPAS RAM over every guest_memfd memslot (before activation).
    fn init_ripas(&self, kvm: &Kvm, slots: &SlotsLockGuard<'_>, realm: &mut KernelRealm) -> Result {
        let mut failed = None;
        slots
            .walk_memslots(|slot: &MemSlot| {
                if !slot.has_gmem() {
                    return Ok(());
                }
                let range = slot
                    .base_gfn()
                    .checked_shl(GRANULE_SHIFT)
                    .zip(slot.base_gfn().checked_add(slot.npages()))
                    .and_then(|(b, t)| {
                        Some((Ipa::new(b)?, Ipa::new(t.checked_shl(GRANULE_SHIFT)?)?))
                    });
                let Some((base, top)) = range else {
                    return Err(EINVAL);
                };
                match realm.init_ripas(base, top, &mut cond_resched) {
                    Ok(0) => Ok(()),
                    Ok(n) => {
                        pr_info!("realm {}: {} unmapped pages left DESTROYED\n", self.id, n);
                        Ok(())
                    }
                    Err(e) => {
                        failed = Some(e);
                        Err(EINVAL)
                    }
                }
            })
            .map_err(|errno| match failed {
                Some(e) => self.fail(kvm, realm, "setting RIPAS", e),
                None => errno,
            })
    }
}

/// Records the RD and root RTTs of `realm` as `vm`'s.
fn record_rd_and_root(vm: &RealmVm, realm: &KernelRealm) {
    let rd = realm.rd().and_then(one);
    for (range, part) in [
        (rd, RealmPart::Rd),
        (realm.root_range(), RealmPart::RootRtt),
    ] {
        if let Some(r) = range {
            kvm_gpf::record(r, vm.owner(part));
        }
    }
}

impl From<RealmError> for Error {
    fn from(e: RealmError) -> Self {
        match e {
            RealmError::NoMemory => ENOMEM,
            RealmError::Params(_) | RealmError::WrongState(_) => EINVAL,
            RealmError::Rmi(e) => e.into(),
        }
    }
}
