// SPDX-License-Identifier: GPL-2.0

//! A realm's RECs, which it owns: created at activation, one per vCPU in
//! vCPU order, from the vCPUs as KVM has them then, and destroyed before
//! the realm.
//!
//! Part of the kernel shell, over the core's [`Rec`]. The run loop of each
//! vCPU finds its REC here by index, and so does a vCPU turning another
//! on (PSCI `CPU_ON`).

use kernel::{
    alloc::flags::GFP_KERNEL_ACCOUNT, bindings, kvm::Kvm, new_mutex, prelude::*, sync::Mutex,
};

use crate::addr::Granule;
use crate::kvm_gpf::{
    self,
    one,
    GranuleList,
    Owner,
    RealmPart, //
};
use crate::realm_stats::RealmStats;
use crate::rec::{
    max_recs,
    rec_params,
    Rec,
    VcpuSetup, //
};
use crate::sro::SroError;
use crate::{
    KernelPages,
    RmiSmc,
    Shown,
    RMI,
    RMM_FEATURES, //
};

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

/// Which realm the RECs are of, for reports and GPF records.
#[derive(Clone, Copy)]
pub(crate) struct RecOwner {
    /// The realm's number in reports.
    pub(crate) id: u64,
    /// The process that created it.
    pub(crate) pid: i32,
}

impl RecOwner {
    /// The owner record of a granule that is `part` of the realm.
    fn owner(self, part: RealmPart) -> Owner {
        Owner::Realm {
            id: self.id,
            pid: self.pid,
            part,
        }
    }
}

/// The RECs of one realm, by vCPU index (= vCPU id = REC index).
#[pin_data]
pub(crate) struct RealmRecs {
    /// Taken after the realm's lock.
    #[pin]
    slots: Mutex<KVec<RecSlot>>,
}

/// The SVE vector length in bytes of vCPU `index` of `kvm`, 0 without SVE.
pub(crate) fn vcpu_sve_vl(kvm: &Kvm, index: u32) -> Option<u32> {
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
        sve_vl: vcpu_sve_vl(kvm, index).unwrap_or(0),
    })
}

impl RealmRecs {
    /// None yet.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            slots <- new_mutex!(KVec::new(), "RealmRecs::slots"),
        })
    }

    /// Creates the RECs of the vCPUs of `kvm` not yet given one, in vCPU
    /// order, after checking them all (a refused set creates none), in the
    /// realm of RD `rd`, whose SVE vector length is `sve_vl`. The REC count
    /// goes to `stats`.
    pub(crate) fn create(
        &self,
        kvm: &Kvm,
        rd: Granule,
        of: RecOwner,
        sve_vl: u32,
        stats: &RealmStats,
    ) -> Result {
        let features = RMM_FEATURES.as_ref().ok_or(ENODEV)?;
        let max = max_recs(features);
        let n = kvm.online_vcpus();
        for i in 0..n {
            let vcpu = vcpu_setup(kvm, i).ok_or(EINVAL)?;
            rec_params(i.into(), &vcpu, max, sve_vl).map_err(|e| {
                pr_info!("realm {} not activated: {}\n", of.id, Shown(e));
                EINVAL
            })?;
        }
        let mut slots = self.slots.lock();
        slots.reserve(n as usize, GFP_KERNEL_ACCOUNT)?;
        // An earlier attempt may have stopped part way (ENOMEM).
        for i in slots.len() as u32..n {
            let vcpu = vcpu_setup(kvm, i).ok_or(EINVAL)?;
            let params = rec_params(i.into(), &vcpu, max, sve_vl).map_err(|_| EINVAL)?;
            let aux = GranuleList::new(of.owner(RealmPart::RecAux));
            let rec = Rec::create(&RMI, rd, i.into(), &params, aux).map_err(|e| match e {
                SroError::NoMemory => ENOMEM,
                e => {
                    pr_err!("realm {} died (REC {i} creation): {:?}\n", of.id, e);
                    kvm.mark_dead();
                    EIO
                }
            })?;
            if let Some(range) = rec.granule().and_then(one) {
                kvm_gpf::record(range, of.owner(RealmPart::Rec));
            }
            // Room was reserved above.
            slots
                .push_within_capacity(RecSlot {
                    rec,
                    cpu_on_pending: false,
                })
                .map_err(|_| ENOMEM)?;
            // CAST: Lossless, `usize` is 64 bits on arm64.
            stats.set_recs(slots.len() as u64);
        }
        Ok(())
    }

    /// Destroys the RECs; those the RMM refuses are leaked (and counted).
    pub(crate) fn destroy(&self, of: RecOwner, stats: &RealmStats) {
        let mut slots = self.slots.lock();
        while let Some(RecSlot { mut rec, .. }) = slots.pop() {
            let granule = rec.granule().and_then(one);
            match rec.destroy() {
                Ok(()) => {
                    if let Some(range) = granule {
                        kvm_gpf::forget(range);
                    }
                }
                Err(e) => pr_err!("REC {} of realm {} leaked: {:?}\n", rec.index(), of.id, e),
            }
            // CAST: Lossless, `usize` is 64 bits on arm64.
            stats.set_recs(slots.len() as u64);
        }
    }

    /// The REC with index `index` (that of vCPU `index`).
    pub(crate) fn granule(&self, index: u64) -> Option<Granule> {
        let i = usize::try_from(index).ok()?;
        self.slots.lock().get(i)?.rec.granule()
    }

    /// Records whether a `CPU_ON` of REC `index` is being completed.
    pub(crate) fn set_cpu_on_pending(&self, index: u64, pending: bool) {
        let mut slots = self.slots.lock();
        if let Some(slot) = usize::try_from(index).ok().and_then(|i| slots.get_mut(i)) {
            slot.cpu_on_pending = pending;
        }
    }

    /// Whether a `CPU_ON` of REC `index` is being completed.
    pub(crate) fn cpu_on_pending(&self, index: u64) -> bool {
        let slots = self.slots.lock();
        usize::try_from(index)
            .ok()
            .and_then(|i| slots.get(i))
            .is_some_and(|slot| slot.cpu_on_pending)
    }
}
