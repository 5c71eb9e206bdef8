// SPDX-License-Identifier: GPL-2.0

//! The realm provider KVM calls: its callbacks dispatched to the realm VM
//! ([`RealmVm`]), its vCPUs ([`RecVcpu`]) and populate, and the policy
//! answers KVM asks of realms (capabilities, registers, vCPU features).
//!
//! Part of the kernel shell, and where it starts: dispatch here, then the
//! VM (`kvm_realm.rs`, `kvm_recs.rs`, `kvm_populate.rs`), then a vCPU's run
//! loop (`kvm_vcpu.rs`), then its stage-2 faults (`kvm_fault.rs`).

use kernel::{
    bindings,
    kvm::{
        GfnRange,
        Kvm,
        LockedVcpu,
        MemSlot,
        MemslotChange,
        MmuLocked,
        RealmExit,
        RealmLimits,
        RealmOps,
        RunNext,
        RunningVcpu,
        Vcpu,
        VcpuEvents, //
    },
    prelude::*,
};

use crate::addr::GRANULE_SHIFT;
use crate::kvm_populate::{
    populate_ioctl,
    KVM_ARM_RMI_POPULATE, //
};
use crate::kvm_realm::RealmVm;
use crate::kvm_vcpu::RecVcpu;
use crate::memory::{
    check_memslot,
    SlotChange,
    SlotLayout, //
};
use crate::realm::{
    realm_dfr0_max,
    rmm_sve_max_vl,
    RealmState, //
};
use crate::rec::{
    self,
    check_init_features,
    check_reg_write,
    realm_regs,
    RealmStage,
    RegRefusal, //
};
use crate::rmi_cmds::RmiFeatureRegs;
use crate::RMM_FEATURES;

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

/// The largest IPA size, in bits, the RMM gives realms.
fn rmm_ipa_limit(features: &RmiFeatureRegs) -> u32 {
    u32::from(features.f0.s2sz())
}

/// The realm provider registered with KVM.
pub(crate) struct RealmProvider;

#[vtable]
impl RealmOps for RealmProvider {
    type Realm = RealmVm;
    type VcpuState = RecVcpu;

    fn limits() -> RealmLimits {
        let features = RMM_FEATURES.as_ref();
        let regs = realm_regs(true);
        RealmLimits {
            ipa_limit: features.map_or(0, rmm_ipa_limit),
            sve_max_vl: features.map_or(0, rmm_sve_max_vl),
            id_aa64dfr0_max: features.map_or(0, realm_dfr0_max),
            regs,
            nr_sve_regs: regs.len().saturating_sub(realm_regs(false).len()),
        }
    }

    fn vm_init(kvm: &Kvm, _vm_type: u64) -> Result<Pin<KBox<RealmVm>>> {
        RealmVm::new(kvm)
    }

    fn vm_destroy(_kvm: &Kvm, vm: Pin<KBox<RealmVm>>) {
        vm.destroy();
    }

    fn vcpu_first_run(vcpu: &LockedVcpu, vm: Pin<&RealmVm>) -> Result {
        let kvm = vcpu.kvm();
        // The RMM takes interrupts for a realm only from the list registers
        // of the GIC's virtual CPU interface.
        if !kvm.irqchip_in_kernel() {
            pr_info!("realm {} not activated: no in-kernel vGICv3\n", vm.id());
            return Err(EINVAL);
        }
        vm.activate(kvm)
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
        let stage = match vm.state() {
            RealmState::None => RealmStage::NoRd,
            RealmState::New => RealmStage::Created,
            _ => RealmStage::Activated,
        };
        check_reg_write(id, stage).map_err(|e| match e {
            RegRefusal::NotHostState => EINVAL,
            RegRefusal::Locked => EPERM,
        })
    }

    fn vcpu_check_features(_vcpu: &LockedVcpu, vm: Pin<&RealmVm>, features: u64) -> Result {
        let rmm_sve = RMM_FEATURES.as_ref().is_some_and(|f| f.f0.sve_en());
        // SVE while the realm's parameters are open, or as they were fixed.
        let sve_offered = match vm.state() {
            RealmState::None => rmm_sve,
            RealmState::New => vm.sve_vl() != 0,
            // A REC cannot be reset: KVM_ARM_VCPU_INIT again after
            // activation would change KVM's view of the vCPU only.
            _ => return Err(EBUSY),
        };
        check_init_features(features, sve_offered).map_err(|_| EINVAL)
    }

    fn vm_stage2_teardown(_kvm: &Kvm, vm: Pin<&RealmVm>) {
        vm.teardown_stage2();
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
                let rmm = RMM_FEATURES.as_ref().map_or(0, rmm_ipa_limit);
                i32::try_from(rmm).map_or(value, |rmm| rmm.min(value))
            }
            _ => value,
        }
    }

    fn vm_ioctl(kvm: &Kvm, vm: Pin<&RealmVm>, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            KVM_ARM_RMI_POPULATE => populate_ioctl(&vm, kvm, arg).map(|()| 0),
            // KVM answers the others it may.
            _ => Err(ENOIOCTLCMD),
        }
    }
}
