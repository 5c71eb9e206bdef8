// SPDX-License-Identifier: GPL-2.0

//! Realm VMs: KVM's realm callbacks over the core's [`Realm`].
//!
//! Part of the kernel shell. KVM creates the VM and its (empty) host stage 2;
//! this file gives each realm VM a [`Realm`] in state NONE. The RD is created
//! lazily, by the first populate or the first vCPU run, and everything the
//! realm owns goes back when KVM destroys the VM.

use kernel::{
    alloc::flags::GFP_KERNEL_ACCOUNT,
    bindings,
    debugfs::Scope,
    kvm::{
        GfnRange,
        Kvm,
        LockedVcpu,
        MemSlot,
        MemslotChange,
        MmuLocked,
        RealmExit,
        RealmOps,
        RunNext,
        RunningVcpu,
        SlotsLockGuard,
        Vcpu,
        VcpuEvents,
        VmMemSlot,
        SYS_ID_AA64DFR0_EL1, //
    },
    new_mutex,
    prelude::*,
    sync::{
        Arc,
        Mutex,
        SetOnce, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

use core::sync::atomic::{
    AtomicU32,
    AtomicU64,
    Ordering, //
};

use crate::addr::{
    Granule,
    GranuleRange,
    Ipa,
    RttLevel,
    GRANULE_SHIFT, //
};
use crate::data::StageHost;
use crate::gpf::{
    self,
    Owner,
    RealmPart, //
};
use crate::granule::GranuleSet;
use crate::memory::{
    check_memslot,
    ripas_range_backed,
    unmap_protected,
    unmap_shared,
    SlotChange,
    SlotLayout, //
};
use crate::populate::{
    populate,
    PopulateArgs,
    PopulateFailure,
    PopulateHost, //
};
use crate::realm::{
    realm_dfr0,
    realm_shape,
    rmm_sve_max_vl,
    DebugResources,
    PopulatePageError,
    Realm,
    RealmConfig,
    RealmError,
    RealmOptions,
    RealmState,
    RipasWalk, //
};
use crate::realm_stats::RealmStats;
use crate::realm_vcpu::RecVcpu;
use crate::rec::{
    self,
    check_init_features,
    check_reg_write,
    max_recs,
    realm_regs,
    rec_params,
    RealmStage,
    Rec,
    RegRefusal,
    VcpuSetup, //
};
use crate::rmi_cmds::RmiFeatureRegs;
use crate::rmi_smc::RmiError;
use crate::run::RipasRequest;
use crate::sro::SroError;
use crate::stats::{
    self,
    RealmView, //
};
use crate::{
    Delegated,
    KernelPages,
    RmiSmc,
    Shown,
    RMI, //
};

/// The RMM's feature registers, read once when the module loads.
pub(crate) static RMM_FEATURES: SetOnce<RmiFeatureRegs> = SetOnce::new();

/// Delegated granules of one owner (a realm's non-root RTTs, L1 GPTs),
/// found by address and recorded for GPF reports.
pub(crate) struct GranuleList {
    granules: KVec<Delegated>,
    owner: Owner,
}

impl GranuleList {
    /// An empty list of `owner`'s granules.
    pub(crate) fn new(owner: Owner) -> Self {
        Self {
            granules: KVec::new(),
            owner,
        }
    }
}

/// The one-granule range of `g`.
fn one(g: Granule) -> Option<GranuleRange> {
    GranuleRange::from_count(g, 1)
}

impl GranuleSet<'static, RmiSmc, KernelPages> for GranuleList {
    fn reserve(&mut self, n: usize) -> bool {
        self.granules.reserve(n, GFP_KERNEL_ACCOUNT).is_ok()
    }

    fn push(&mut self, g: Delegated) {
        if let Some(range) = one(g.granule()) {
            gpf::record(range, self.owner);
        }
        // Room was reserved; a failure would drop `g`, which is safe.
        let _ = self.granules.push_within_capacity(g);
    }

    fn take(&mut self, g: Granule) -> Option<Delegated> {
        let i = self.granules.iter().position(|d| d.granule() == g)?;
        if let Some(range) = one(g) {
            gpf::forget(range);
        }
        self.granules.remove(i).ok()
    }

    fn len(&self) -> usize {
        self.granules.len()
    }
}

/// Numbers realms for reports, in creation order.
static NEXT_REALM_ID: AtomicU64 = AtomicU64::new(1);

/// A realm as the kernel holds it.
pub(crate) type KernelRealm = Realm<'static, RmiSmc, KernelPages, GranuleList>;

/// A REC as the kernel holds it.
type KernelRec = Rec<'static, RmiSmc, KernelPages, GranuleList>;

/// A REC, and what the run loops of other vCPUs need to know of it.
struct RecSlot {
    rec: KernelRec,
    /// Another vCPU asked KVM to turn this one on and has not yet completed
    /// the call with the RMM: until then `REC_ENTER` fails with
    /// `ERROR_REC`, and the vCPU retries in the kernel.
    cpu_on_pending: bool,
}

/// The module's state for one realm VM.
#[pin_data]
pub(crate) struct RealmVm {
    /// Its number in reports.
    id: u64,
    /// The process that created the VM.
    pid: i32,
    /// The realm; the lock serialises its RMI operations. Lock order:
    /// `slots_lock`, then guest_memfd's invalidate lock, then this, then
    /// `mmu_lock`. Shared with the debugfs files, which read it under the
    /// lock.
    realm: Arc<Mutex<KernelRealm>>,
    /// Counters for debugfs.
    stats: Arc<RealmStats>,
    /// `kvm_rmi/realms/<id>/`, removed (waiting for readers) when the VM
    /// goes, after the realm's lock is released.
    _debugfs: Pin<KBox<Scope<RealmView>>>,
    /// The RECs, by vCPU index (= vCPU id = REC index), created at
    /// activation, when the set of vCPUs is final. Taken after `realm`.
    #[pin]
    recs: Mutex<KVec<RecSlot>>,
    /// The RD's address once created, else 0: for unmapping under
    /// `mmu_lock`, where the realm's mutex cannot be taken.
    rd: AtomicU64,
    /// The SVE vector length in bytes the RD was created with (0: no SVE).
    /// Written once, with the RD, under `realm`.
    sve_vl: AtomicU32,
}

impl RealmVm {
    /// The owner record of a granule that is `part` of this realm.
    fn owner(&self, part: RealmPart) -> Owner {
        Owner::Realm {
            id: self.id,
            pid: self.pid,
            part,
        }
    }

    /// Creates the RD and root RTTs if not done yet, and records them.
    fn create(&self, kvm: &Kvm, realm: &mut KernelRealm) -> Result<(), RealmError> {
        let features = RMM_FEATURES
            .as_ref()
            .ok_or(RealmError::WrongState(realm.state()))?;
        let created = realm.rd().is_none();
        // The breakpoints and watchpoints the VMM left in ID_AA64DFR0_EL1,
        // and the SVE vector length of the first vCPU, which
        // `check_reg_write` locks from now on; activation checks that every
        // vCPU has the same.
        let debug = DebugResources::from_dfr0(kvm.id_aa64dfr0());
        let sve_vl = Self::vcpu_sve_vl(kvm, 0).filter(|&vl| vl != 0);
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
    fn fail(&self, kvm: &Kvm, realm: &KernelRealm, what: &str, e: RealmError) -> Error {
        if realm.state() == RealmState::Dead {
            pr_err!("realm {} died ({what}): {}\n", self.id, Shown(e));
            kvm.mark_dead();
        }
        Error::from(e)
    }

    /// The SVE vector length in bytes of vCPU `index`, 0 without SVE.
    fn vcpu_sve_vl(kvm: &Kvm, index: u32) -> Option<u32> {
        let vcpu = kvm.vcpu(index)?;
        Some(if kvm.vcpu_has_feature(bindings::KVM_ARM_VCPU_SVE) {
            vcpu.sve_max_vl()
        } else {
            0
        })
    }

    /// What REC number `index` is made from: vCPU `index` as it is now.
    fn vcpu_setup(kvm: &Kvm, index: u32) -> Option<VcpuSetup> {
        let vcpu = kvm.vcpu(index)?;
        Some(VcpuSetup {
            id: vcpu.id(),
            initialized: vcpu.initialized(),
            psci_0_2: kvm.vcpu_has_feature(bindings::KVM_ARM_VCPU_PSCI_0_2),
            el1_32bit: kvm.vcpu_has_feature(bindings::KVM_ARM_VCPU_EL1_32BIT),
            has_el2: kvm.vcpu_has_feature(bindings::KVM_ARM_VCPU_HAS_EL2),
            powered_off: vcpu.stopped(),
            pc: vcpu.pc(),
            gprs: core::array::from_fn(|n| vcpu.gpr(n)),
            sve_vl: Self::vcpu_sve_vl(kvm, index).unwrap_or(0),
        })
    }

    /// Creates the RECs of the vCPUs not yet given one, in vCPU order,
    /// after checking them all (a refused set creates none).
    fn create_recs(&self, kvm: &Kvm, realm: &KernelRealm) -> Result {
        let features = RMM_FEATURES.as_ref().ok_or(ENODEV)?;
        let rd = realm.rd().ok_or(EINVAL)?;
        let max = max_recs(features);
        let sve_vl = self.sve_vl.load(Ordering::Relaxed);
        let n = kvm.online_vcpus();
        for i in 0..n {
            let vcpu = Self::vcpu_setup(kvm, i).ok_or(EINVAL)?;
            rec_params(i.into(), &vcpu, max, sve_vl).map_err(|e| {
                pr_info!("realm {} not activated: {}\n", self.id, Shown(e));
                EINVAL
            })?;
        }
        let mut recs = self.recs.lock();
        recs.reserve(n as usize, GFP_KERNEL_ACCOUNT)?;
        // An earlier attempt may have stopped part way (ENOMEM).
        for i in recs.len() as u32..n {
            let vcpu = Self::vcpu_setup(kvm, i).ok_or(EINVAL)?;
            let params = rec_params(i.into(), &vcpu, max, sve_vl).map_err(|_| EINVAL)?;
            let aux = GranuleList::new(self.owner(RealmPart::RecAux));
            let rec = Rec::create(&RMI, rd, i.into(), &params, aux).map_err(|e| match e {
                SroError::NoMemory => ENOMEM,
                e => {
                    pr_err!("realm {} died (REC {i} creation): {:?}\n", self.id, e);
                    kvm.mark_dead();
                    EIO
                }
            })?;
            if let Some(range) = rec.granule().and_then(one) {
                gpf::record(range, self.owner(RealmPart::Rec));
            }
            // Room was reserved above.
            recs.push_within_capacity(RecSlot {
                rec,
                cpu_on_pending: false,
            })
            .map_err(|_| ENOMEM)?;
            // CAST: Lossless, `usize` is 64 bits on arm64.
            self.stats.set_recs(recs.len() as u64);
        }
        Ok(())
    }

    /// Destroys the RECs; those the RMM refuses are leaked (and counted).
    fn destroy_recs(&self) {
        let mut recs = self.recs.lock();
        while let Some(RecSlot { mut rec, .. }) = recs.pop() {
            let granule = rec.granule().and_then(one);
            match rec.destroy() {
                Ok(()) => {
                    if let Some(range) = granule {
                        gpf::forget(range);
                    }
                }
                Err(e) => pr_err!("REC {} of realm {} leaked: {:?}\n", rec.index(), self.id, e),
            }
            // CAST: Lossless, `usize` is 64 bits on arm64.
            self.stats.set_recs(recs.len() as u64);
        }
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
        let mut realm = self.realm.lock();
        realm
            .ensure_rtt(ipa, leaf)
            .map_err(|e| self.fail(kvm, &realm, "creating an RTT", e))
    }

    /// The REC with index `index` (that of vCPU `index`).
    pub(crate) fn rec_granule(&self, index: u64) -> Option<Granule> {
        let i = usize::try_from(index).ok()?;
        self.recs.lock().get(i)?.rec.granule()
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
        let mut realm = self.realm.lock();
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
        let mut recs = self.recs.lock();
        if let Some(slot) = usize::try_from(index).ok().and_then(|i| recs.get_mut(i)) {
            slot.cpu_on_pending = pending;
        }
    }

    /// Whether a `CPU_ON` of REC `index` is being completed.
    pub(crate) fn cpu_on_pending(&self, index: u64) -> bool {
        let recs = self.recs.lock();
        usize::try_from(index)
            .ok()
            .and_then(|i| recs.get(i))
            .is_some_and(|slot| slot.cpu_on_pending)
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

    /// `KVM_ARM_RMI_POPULATE`: copies in, fills, and always copies the
    /// structure back with the progress made.
    fn populate_ioctl(&self, kvm: &Kvm, arg: usize) -> Result {
        const LEN: usize = core::mem::size_of::<bindings::kvm_arm_rmi_populate>();
        let (mut reader, mut writer) = UserSlice::new(UserPtr::from_addr(arg), LEN).reader_writer();
        let mut raw = [0u8; LEN];
        reader.read_slice(&mut raw)?;
        let mut args = populate_args_from(&raw);
        let result = self.populate(kvm, &mut args);
        writer.write_slice(&populate_args_to(&args))?;
        result
    }

    /// Fills `args`' range, advancing `args` by what is done.
    fn populate(&self, kvm: &Kvm, args: &mut PopulateArgs) -> Result {
        let ipa_bits = u8::try_from(kvm.ipa_bits()).map_err(|_| EINVAL)?;
        let mut host = GmemPopulate {
            vm: self,
            kvm,
            slots: None,
        };
        populate(args, ipa_bits, &mut host).map_err(|e| match e {
            PopulateFailure::Invalid(_) => EINVAL,
            PopulateFailure::Interrupted => EINTR,
            PopulateFailure::Stalled => EIO,
            PopulateFailure::Host(e) => e,
        })
    }

    /// Unmaps protected IPAs `[start, end)` (clipped to the protected
    /// half), under `mmu_lock` held for writing: if `private`, the guest
    /// pages there (given back to guest_memfd); if `shared`, the NS pages
    /// at their unprotected aliases. A failure kills the VM.
    fn unmap(
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

/// [`populate`] in the kernel: the realm VM's pages come from guest_memfd
/// through `kvm_gmem_populate()`, under `slots_lock`.
struct GmemPopulate<'a> {
    vm: &'a RealmVm,
    kvm: &'a Kvm,
    /// Taken by `begin`, after the realm's mutex is released (lock order).
    slots: Option<SlotsLockGuard<'a>>,
}

impl PopulateHost for GmemPopulate<'_> {
    type Error = Error;

    fn begin(&mut self) -> Result {
        {
            let mut realm = self.vm.realm.lock();
            self.vm
                .create(self.kvm, &mut realm)
                .map_err(|e| self.vm.fail(self.kvm, &realm, "creating", e))?;
            if realm.state() != RealmState::New {
                return Err(EINVAL);
            }
        }
        self.slots = Some(self.kvm.lock_slots());
        Ok(())
    }

    fn interrupted(&mut self) -> bool {
        kernel::current!().signal_pending()
    }

    fn fill(&mut self, ipa: Ipa, source_uaddr: u64, granules: u64, measure: bool) -> Result<u64> {
        let (vm, kvm) = (self.vm, self.kvm);
        let slots = self.slots.as_ref().ok_or(EINVAL)?;
        let src = usize::try_from(source_uaddr).map_err(|_| EINVAL)?;
        let pages = usize::try_from(granules).map_err(|_| EINVAL)?;
        let first_gfn = ipa.get() >> GRANULE_SHIFT;
        let end_gfn = first_gfn.checked_add(granules).ok_or(EINVAL)?;
        // `slots_lock` keeps the memslot; `srcu` is what looking it up takes.
        let srcu = kvm.srcu_read_lock();
        let mut stage = GmemStage {
            slot: srcu.memslot(first_gfn).filter(|s| s.has_gmem()),
        };
        let done = slots.gmem_populate(first_gfn, src, pages, |gfn, pfn, src| {
            let (Some(page), Some(ipa), Some(src), Some(more)) = (
                Granule::new(pfn << GRANULE_SHIFT),
                gfn.checked_shl(GRANULE_SHIFT).and_then(Ipa::new),
                Granule::new(src),
                end_gfn.checked_sub(gfn).and_then(|n| n.checked_sub(1)),
            ) else {
                return Err(EINVAL);
            };
            let mut realm = vm.realm.lock();
            match realm.populate_staged(page, ipa, src, measure, more, &mut stage) {
                Ok(_) => Ok(()),
                Err(PopulatePageError::Mapped) => Err(EEXIST),
                Err(PopulatePageError::Realm(e)) => Err(vm.fail(kvm, &realm, "populating", e)),
            }
        })?;
        // CAST: At most `pages`, which came from a `u64`.
        let done = done as u64;
        vm.stats.populated(done, measure);
        Ok(done)
    }

    fn resched(&mut self) {
        kernel::task::might_sleep();
        cond_resched();
    }
}

/// What populate stages the following pages from: the guest_memfd memslot
/// of the chunk being filled, and the task's signals.
struct GmemStage<'a> {
    slot: Option<VmMemSlot<'a>>,
}

impl StageHost for GmemStage<'_> {
    fn guest_page(&mut self, gfn: u64) -> Option<Granule> {
        let slot = self.slot?;
        if gfn >= slot.base_gfn().saturating_add(slot.npages()) {
            return None;
        }
        // `kvm_gmem_populate()` holds the file's invalidate lock around
        // the callback; `kvm_gmem_get_pfn()` takes only the folio's lock.
        let pfn = slot.gmem_pfn(gfn).ok()?;
        // A frame's address is granule aligned: never `None`, which would
        // keep the reference just taken (a leak, never a free).
        Granule::new(pfn << GRANULE_SHIFT)
    }

    fn interrupted(&mut self) -> bool {
        kernel::current!().signal_pending()
    }
}

/// Lets the scheduler run something else (`cond_resched()`).
pub(crate) fn cond_resched() {
    // SAFETY: Called from process context, with no lock held.
    unsafe { bindings::cond_resched() };
}

/// Reads a native-endian `u64` at `at` of `raw`.
fn ne_u64(raw: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = raw.get(at..at + 8) {
        b.copy_from_slice(src);
    }
    u64::from_ne_bytes(b)
}

/// Reads a native-endian `u32` at `at` of `raw`.
fn ne_u32(raw: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(src) = raw.get(at..at + 4) {
        b.copy_from_slice(src);
    }
    u32::from_ne_bytes(b)
}

/// `struct kvm_arm_rmi_populate`, as userspace passed it.
fn populate_args_from(raw: &[u8; 32]) -> PopulateArgs {
    PopulateArgs {
        base: ne_u64(raw, 0),
        size: ne_u64(raw, 8),
        source_uaddr: ne_u64(raw, 16),
        flags: ne_u32(raw, 24),
        reserved: ne_u32(raw, 28),
    }
}

/// `struct kvm_arm_rmi_populate` to copy back.
fn populate_args_to(args: &PopulateArgs) -> [u8; 32] {
    let mut raw = [0u8; 32];
    raw[0..8].copy_from_slice(&args.base.to_ne_bytes());
    raw[8..16].copy_from_slice(&args.size.to_ne_bytes());
    raw[16..24].copy_from_slice(&args.source_uaddr.to_ne_bytes());
    raw[24..28].copy_from_slice(&args.flags.to_ne_bytes());
    raw[28..32].copy_from_slice(&args.reserved.to_ne_bytes());
    raw
}

// The uAPI layout the conversions above assume.
const _: () = {
    assert!(core::mem::size_of::<bindings::kvm_arm_rmi_populate>() == 32);
    assert!(core::mem::offset_of!(bindings::kvm_arm_rmi_populate, size) == 8);
    assert!(core::mem::offset_of!(bindings::kvm_arm_rmi_populate, source_uaddr) == 16);
    assert!(core::mem::offset_of!(bindings::kvm_arm_rmi_populate, flags) == 24);
    assert!(core::mem::offset_of!(bindings::kvm_arm_rmi_populate, reserved) == 28);
};

/// Records the RD and root RTTs of `realm` as `vm`'s.
fn record_rd_and_root(vm: &RealmVm, realm: &KernelRealm) {
    let rd = realm.rd().and_then(one);
    for (range, part) in [
        (rd, RealmPart::Rd),
        (realm.root_range(), RealmPart::RootRtt),
    ] {
        if let Some(r) = range {
            gpf::record(r, vm.owner(part));
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

/// Whether a realm VM is offered capability `ext`: the upstream series'
/// allow-list (SVE if the RMM has it), plus device control (the SMCCC
/// filter), vCPU events (external aborts on MMIO, with the RMM's rules)
/// and the ID register writable masks (how VMMs learn that they may lower
/// the watchpoints).
fn realm_ext_allowed(ext: u32, features: &RmiFeatureRegs) -> bool {
    (ext == bindings::KVM_CAP_ARM_SVE && features.f0.sve_en())
        || matches!(
            ext,
            bindings::KVM_CAP_IRQCHIP
                | bindings::KVM_CAP_ARM_PSCI
                | bindings::KVM_CAP_ARM_PSCI_0_2
                | bindings::KVM_CAP_NR_VCPUS
                | bindings::KVM_CAP_MAX_VCPUS
                | bindings::KVM_CAP_MAX_VCPU_ID
                | bindings::KVM_CAP_MSI_DEVID
                | bindings::KVM_CAP_ARM_VM_IPA_SIZE
                | bindings::KVM_CAP_ARM_PTRAUTH_ADDRESS
                | bindings::KVM_CAP_ARM_PTRAUTH_GENERIC
                | bindings::KVM_CAP_DEVICE_CTRL
                | bindings::KVM_CAP_VCPU_EVENTS
                | bindings::KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES
                | bindings::KVM_CAP_ARM_RMI
        )
}

// The core's copy of the `KVM_ARM_VCPU_*` feature bits is the uAPI's.
kernel::static_assert!(
    rec::vcpu_feature::EL1_32BIT == bindings::KVM_ARM_VCPU_EL1_32BIT
        && rec::vcpu_feature::PSCI_0_2 == bindings::KVM_ARM_VCPU_PSCI_0_2
        && rec::vcpu_feature::PMU_V3 == bindings::KVM_ARM_VCPU_PMU_V3
        && rec::vcpu_feature::SVE == bindings::KVM_ARM_VCPU_SVE
        && rec::vcpu_feature::HAS_EL2 == bindings::KVM_ARM_VCPU_HAS_EL2
        && rec::vcpu_feature::HAS_EL2_E2H0 == bindings::KVM_ARM_VCPU_HAS_EL2_E2H0
);

// The core's register ids are the uAPI's.
kernel::static_assert!(
    rec::REALM_REG_CORE_BASE
        == bindings::KVM_REG_ARM64 | bindings::KVM_REG_SIZE_U64 | bindings::KVM_REG_ARM_CORE as u64
);
kernel::static_assert!(
    rec::SVE_VLS_REG
        == bindings::KVM_REG_ARM64
            | bindings::KVM_REG_SIZE_U512
            | bindings::KVM_REG_ARM64_SVE as u64
            | 0xffff
);
kernel::static_assert!(
    rec::ID_AA64DFR0_EL1_REG
        == bindings::KVM_REG_ARM64
            | bindings::KVM_REG_SIZE_U64
            | bindings::KVM_REG_ARM64_SYSREG as u64
            | (3 << bindings::KVM_REG_ARM64_SYSREG_OP0_SHIFT)
            | (5 << bindings::KVM_REG_ARM64_SYSREG_CRM_SHIFT)
);

/// `KVM_ARM_RMI_POPULATE`: `_IOWR(KVMIO, 0xd7, struct kvm_arm_rmi_populate)`.
const KVM_ARM_RMI_POPULATE: u32 =
    kernel::ioctl::_IOWR::<bindings::kvm_arm_rmi_populate>(bindings::KVMIO, 0xd7);

/// The realm provider registered with KVM.
pub(crate) struct RealmProvider;

#[vtable]
impl RealmOps for RealmProvider {
    type Realm = RealmVm;
    type VcpuState = RecVcpu;

    fn ipa_limit() -> u32 {
        RMM_FEATURES.as_ref().map_or(0, |f| u32::from(f.f0.s2sz()))
    }

    fn vm_init(kvm: &Kvm, _vm_type: u64) -> Result<Pin<KBox<RealmVm>>> {
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
        let realm = Arc::pin_init(
            new_mutex!(Realm::new(&RMI, shape, rtts), "RealmVm::realm"),
            GFP_KERNEL_ACCOUNT,
        )?;
        let stats = Arc::new(RealmStats::new(), GFP_KERNEL_ACCOUNT)?;
        let debugfs = stats::realm_scope(RealmView {
            id,
            pid,
            ipa_bits,
            stats: stats.clone(),
            realm: realm.clone(),
        })?;
        KBox::pin_init(
            pin_init!(RealmVm {
                id,
                pid,
                realm,
                stats,
                _debugfs: debugfs,
                recs <- new_mutex!(KVec::new(), "RealmVm::recs"),
                rd: AtomicU64::new(0),
                sve_vl: AtomicU32::new(0),
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    fn vm_destroy(_kvm: &Kvm, vm: Pin<KBox<RealmVm>>) {
        let mut realm = vm.realm.lock();
        // The RMM holds the RD until every REC is gone.
        vm.destroy_recs();
        let (rd, root) = (realm.rd(), realm.root_range());
        // Nothing unmaps any more (no MMU notifier, no guest_memfd file).
        vm.rd.store(0, Ordering::Release);
        match realm.destroy(&mut cond_resched) {
            Ok(()) => {
                // Back in the host: no longer the realm's.
                for range in [rd.and_then(one), root].into_iter().flatten() {
                    gpf::forget(range);
                }
            }
            // The realm is DEAD; what the RMM may still hold stays leaked,
            // and recorded as the realm's.
            Err(e) => pr_err!("realm {} destruction failed: {}\n", vm.id, Shown(e)),
        }
    }

    fn vcpu_first_run(vcpu: &LockedVcpu, vm: Pin<&RealmVm>) -> Result {
        let kvm = vcpu.kvm();
        // The RMM takes interrupts for a realm only from the list registers
        // of the GIC's virtual CPU interface.
        if !kvm.irqchip_in_kernel() {
            pr_info!("realm {} not activated: no in-kernel vGICv3\n", vm.id);
            return Err(EINVAL);
        }
        // Lock order: the memslots (for RIPAS) before the realm.
        let slots = kvm.lock_slots();
        let mut realm = vm.realm.lock();
        // Lazy: the first populate may have created it already.
        vm.create(kvm, &mut realm)
            .map_err(|e| vm.fail(kvm, &realm, "at its creation", e))?;
        // The first vCPU to run activates the realm, with a REC for every
        // vCPU (none can be added once a vCPU has run).
        if realm.state() == RealmState::New {
            vm.init_ripas(kvm, &slots, &mut realm)?;
            vm.create_recs(kvm, &realm)?;
        }
        realm
            .activate()
            .map_err(|e| vm.fail(kvm, &realm, "at activation", e))
    }

    fn vcpu_create(vcpu: &Vcpu, _vm: Pin<&RealmVm>) -> Result<Pin<KBox<RecVcpu>>> {
        // The vCPU of id 0 becomes REC 0, the one created runnable
        // (`rec_params`); its index is not set yet.
        RecVcpu::new(vcpu.id() == 0)
    }

    fn vcpu_pre_enter(
        vcpu: &RunningVcpu,
        vm: Pin<&RealmVm>,
        rec: Pin<&RecVcpu>,
    ) -> Result<RunNext> {
        rec.pre_enter(vcpu, &vm)
    }

    #[inline(always)]
    fn vcpu_enter(rec: Pin<&RecVcpu>) -> RealmExit {
        rec.enter()
    }

    fn vcpu_handle_exit(
        vcpu: &RunningVcpu,
        vm: Pin<&RealmVm>,
        rec: Pin<&RecVcpu>,
        _how: RealmExit,
    ) -> Result<RunNext> {
        rec.handle_exit(vcpu, &vm)
    }

    fn mmio_complete(
        vcpu: &RunningVcpu,
        _vm: Pin<&RealmVm>,
        rec: Pin<&RecVcpu>,
    ) -> Result<RunNext> {
        rec.mmio_complete(vcpu)
    }

    fn vcpu_inject_sea(
        vcpu: &LockedVcpu,
        _vm: Pin<&RealmVm>,
        rec: Pin<&RecVcpu>,
        iabt: bool,
        _addr: u64,
    ) -> Result {
        // The RMM injects only on a data abort exit at an unprotected IPA.
        if iabt {
            return Err(EINVAL);
        }
        rec.inject_sea(vcpu)
    }

    fn vcpu_set_events(
        vcpu: &LockedVcpu,
        _vm: Pin<&RealmVm>,
        rec: Pin<&RecVcpu>,
        events: VcpuEvents,
    ) -> Result {
        // The RMM offers no way to make a realm take an SError.
        if events.serror_pending {
            return Err(EINVAL);
        }
        if events.ext_dabt_pending {
            rec.inject_sea(vcpu)?;
        }
        Ok(())
    }

    fn vcpu_set_one_reg(_vcpu: &LockedVcpu, vm: Pin<&RealmVm>, id: u64) -> Result {
        // A write that passes just before another vCPU activates the realm
        // may miss the REC, as with any register set while vCPUs run.
        let stage = match vm.realm.lock().state() {
            RealmState::None => RealmStage::NoRd,
            RealmState::New => RealmStage::Created,
            _ => RealmStage::Activated,
        };
        check_reg_write(id, stage).map_err(|e| match e {
            RegRefusal::NotHostState => EINVAL,
            RegRefusal::Locked => EPERM,
        })
    }

    fn vcpu_reg_list(vcpu: &Vcpu, _vm: Pin<&RealmVm>) -> &'static [u64] {
        realm_regs(vcpu.kvm().vcpu_has_feature(bindings::KVM_ARM_VCPU_SVE))
    }

    fn sve_max_vl(_vm: Pin<&RealmVm>) -> u32 {
        RMM_FEATURES.as_ref().map_or(0, rmm_sve_max_vl)
    }

    fn sanitise_id_reg(_vm: Pin<&RealmVm>, encoding: u32, value: u64) -> u64 {
        match (encoding, RMM_FEATURES.as_ref()) {
            (SYS_ID_AA64DFR0_EL1, Some(f)) => realm_dfr0(f, value),
            _ => value,
        }
    }

    fn vcpu_check_features(_vcpu: &LockedVcpu, vm: Pin<&RealmVm>, features: u64) -> Result {
        let rmm_sve = RMM_FEATURES.as_ref().is_some_and(|f| f.f0.sve_en());
        // SVE while the realm's parameters are open, or as they were fixed.
        let sve_offered = match vm.realm.lock().state() {
            RealmState::None => rmm_sve,
            RealmState::New => vm.sve_vl.load(Ordering::Relaxed) != 0,
            // A REC cannot be reset: KVM_ARM_VCPU_INIT again after
            // activation would change KVM's view of the vCPU only.
            _ => return Err(EBUSY),
        };
        check_init_features(features, sve_offered).map_err(|_| EINVAL)
    }

    fn vm_stage2_teardown(_kvm: &Kvm, vm: Pin<&RealmVm>) {
        if let Err(e) = vm.realm.lock().teardown_stage2(&mut cond_resched) {
            pr_err!("realm stage-2 teardown failed: {}\n", Shown(e));
        }
    }

    fn vm_unmap_gfn_range(mmu: &mut MmuLocked<'_>, vm: Pin<&RealmVm>, range: &GfnRange) -> bool {
        let (start, end) = (range.start(), range.end());
        let (Some(s), Some(e)) = (
            start.checked_shl(GRANULE_SHIFT),
            end.checked_shl(GRANULE_SHIFT),
        ) else {
            return false;
        };
        // guest_memfd invalidations take the protected pages; MMU
        // notifiers of the user mapping, the shared aliases; attribute
        // changes, the side the frames leave.
        vm.unmap(mmu, (s, e), range.private(), range.shared());
        // The RMM invalidates the realm's TLB entries itself.
        false
    }

    fn vm_stage2_unmap_range(mmu: &mut MmuLocked<'_>, vm: Pin<&RealmVm>, start: u64, size: u64) {
        // A memslot goes (or moves): both of its halves.
        vm.unmap(mmu, (start, start.saturating_add(size)), true, true);
    }

    fn prepare_memory_region(
        kvm: &Kvm,
        _vm: Pin<&RealmVm>,
        change: MemslotChange,
        new: Option<&MemSlot>,
    ) -> Result {
        let ipa_bits = u8::try_from(kvm.ipa_bits()).map_err(|_| EINVAL)?;
        let change = match change {
            MemslotChange::Create => SlotChange::Create,
            MemslotChange::Delete => SlotChange::Delete,
            MemslotChange::Move => SlotChange::Move,
            MemslotChange::FlagsOnly => SlotChange::FlagsOnly,
        };
        let new = new.map(|slot| SlotLayout {
            base_gfn: slot.base_gfn(),
            npages: slot.npages(),
            dirty_log: slot.logs_dirty_pages(),
        });
        check_memslot(change, new, ipa_bits).map_err(|_| EINVAL)
    }

    fn ext_allowed(_vm: Pin<&RealmVm>, ext: i64) -> bool {
        match (u32::try_from(ext), RMM_FEATURES.as_ref()) {
            (Ok(ext), Some(features)) => realm_ext_allowed(ext, features),
            _ => false,
        }
    }

    fn check_extension(_vm: Pin<&RealmVm>, ext: i64, value: i32) -> i32 {
        match u32::try_from(ext) {
            // KVM answers with the host's limit; a realm's is the RMM's too.
            Ok(bindings::KVM_CAP_ARM_VM_IPA_SIZE) => {
                i32::try_from(Self::ipa_limit()).map_or(value, |rmm| rmm.min(value))
            }
            _ => value,
        }
    }

    fn vm_ioctl(kvm: &Kvm, vm: Pin<&RealmVm>, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            KVM_ARM_RMI_POPULATE => vm.populate_ioctl(kvm, arg).map(|()| 0),
            // KVM answers the others it may.
            _ => Err(ENOIOCTLCMD),
        }
    }
}
