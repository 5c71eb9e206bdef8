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
    kvm::{
        Kvm,
        RealmOps,
        Vcpu, //
    },
    new_mutex,
    prelude::*,
    sync::{
        Mutex,
        SetOnce, //
    },
};

use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};

use crate::addr::{
    Granule,
    GranuleRange, //
};
use crate::gpf::{
    self,
    Owner,
    RealmPart, //
};
use crate::granule::GranuleSet;
use crate::realm::{
    realm_shape,
    Realm,
    RealmConfig,
    RealmError,
    RealmState, //
};
use crate::rmi_cmds::RmiFeatureRegs;
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

    /// How many granules it holds.
    pub(crate) fn len(&self) -> usize {
        self.granules.len()
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
}

/// Numbers realms for reports, in creation order.
static NEXT_REALM_ID: AtomicU64 = AtomicU64::new(1);

/// A realm as the kernel holds it.
type KernelRealm = Realm<'static, RmiSmc, KernelPages, GranuleList>;

/// The module's state for one realm VM.
#[pin_data]
pub(crate) struct RealmVm {
    /// Its number in reports.
    id: u64,
    /// The process that created the VM.
    pid: i32,
    /// The realm; the lock serialises its RMI operations.
    #[pin]
    realm: Mutex<KernelRealm>,
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
}

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

/// Whether a realm VM is offered capability `ext` (the upstream series'
/// allow-list, plus device control for the SMCCC filter).
fn realm_ext_allowed(ext: u32, features: &RmiFeatureRegs) -> bool {
    match ext {
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
        | bindings::KVM_CAP_ARM_RMI => true,
        bindings::KVM_CAP_ARM_SVE => features.f0.sve_en(),
        _ => false,
    }
}

/// The realm provider registered with KVM.
pub(crate) struct RealmProvider;

#[vtable]
impl RealmOps for RealmProvider {
    type Realm = RealmVm;

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
        let realm = Realm::new(&RMI, shape, rtts);
        KBox::pin_init(
            pin_init!(RealmVm {
                id,
                pid,
                realm <- new_mutex!(realm, "RealmVm::realm"),
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    fn vm_destroy(_kvm: &Kvm, vm: Pin<KBox<RealmVm>>) {
        let mut realm = vm.realm.lock();
        let (rd, root) = (realm.rd(), realm.root_range());
        match realm.destroy() {
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

    fn vcpu_first_run(vcpu: &Vcpu, vm: Pin<&RealmVm>) -> Result {
        let features = RMM_FEATURES.as_ref().ok_or(ENODEV)?;
        let mut realm = vm.realm.lock();
        // Lazy: the first populate may have created it already.
        let created = realm.rd().is_none();
        let built = realm.create(features).and_then(|()| {
            if created {
                record_rd_and_root(&vm, &realm);
            }
            // RIPAS of guest memory and the RECs are set up here, before
            // activation, by the memory and vCPU support.
            realm.activate()
        });
        built.map_err(|e| {
            if realm.state() == RealmState::Dead {
                pr_err!("realm died at its first run: {}\n", Shown(e));
                vcpu.kvm().mark_dead();
            }
            Error::from(e)
        })
    }

    fn vm_stage2_teardown(_kvm: &Kvm, vm: Pin<&RealmVm>) {
        if let Err(e) = vm.realm.lock().teardown_stage2() {
            pr_err!("realm stage-2 teardown failed: {}\n", Shown(e));
        }
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

    fn vm_ioctl(_kvm: &Kvm, _vm: Pin<&RealmVm>, _cmd: u32, _arg: usize) -> Result<isize> {
        // No realm-only VM ioctl yet: KVM answers the ones it may.
        Err(ENOIOCTLCMD)
    }
}
