// SPDX-License-Identifier: GPL-2.0

//! A realm's stage-2 faults in the kernel: guest_memfd pages at protected
//! IPAs, the memslot's user pages at their unprotected aliases.
//!
//! Part of the kernel shell, over the core's `memory` plans and maps. The
//! page is looked up under the VM's `srcu` and mapped under `mmu_lock`,
//! unless an MMU invalidation ran meanwhile (KVM's `mmu_invalidate_seq`
//! protocol), so that an unmap (hole punch, `madvise`, memslot deletion)
//! never misses a page mapped while it ran. Missing RTTs are created under
//! the realm's mutex, with neither `srcu` nor `mmu_lock` held. A protected
//! fault also maps the private frames around it in its 64 KiB window
//! (module parameter `fault_around`): guest_memfd has 4 KiB folios only, and
//! a realm would otherwise exit for each 4 KiB it touches first.

use kernel::{
    kvm::{
        Kvm,
        Vcpu, //
    },
    prelude::*,
};

use crate::addr::{
    Granule,
    Ipa,
    GRANULE_SHIFT,
    GRANULE_SIZE, //
};
use crate::data::GuestPageRef;
use crate::kvm_realm::RealmVm;
use crate::memory::{
    map_protected,
    map_shared,
    map_with_rtts,
    plan_fault_around,
    plan_fault_in_order,
    protected_page_usable,
    unmap_shared,
    FaultLookup,
    FaultPlan,
    MapError,
    RealmFault,
    ServeError,
    SlotFacts, //
};
use crate::realm_stats::RealmStats;
use crate::rmi_smc::RmiError;
use crate::{
    Shown,
    RMI, //
};

/// What became of a realm's stage-2 fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// Mapped (or an invalidation raced, or another vCPU mapped it): enter
    /// the realm again, which retries the access.
    Mapped,
    /// No memory there: emulate the access as MMIO.
    Emulate,
    /// The VMM is to make the frame private, or shared
    /// (`KVM_EXIT_MEMORY_FAULT`).
    MemoryFault {
        /// The guest wanted it private.
        private: bool,
    },
    /// The guest_memfd page could not be had (poisoned: `EHWPOISON`; out
    /// of memory; the file gone): `KVM_RUN` fails with the error and a
    /// `KVM_EXIT_MEMORY_FAULT` for the frame, as `gmem_abort()` does.
    PrivateUnavailable(Error),
    /// The VMM's page could not be had: `KVM_RUN` fails with `EFAULT`, as
    /// for a normal VM (`user_mem_abort()`). A poisoned page is not this:
    /// the VMM gets `SIGBUS` and the access is retried.
    SharedUnavailable,
}

/// Serves `fault` of vCPU `vcpu` of realm `vm`.
///
/// # Errors
///
/// An unexpected RMM answer kills the VM (`EIO`); out of memory for an RTT
/// is `ENOMEM`.
pub(crate) fn serve_fault(vcpu: &Vcpu, vm: &RealmVm, fault: &RealmFault) -> Result<Served> {
    let kvm = vcpu.kvm();
    let gfn = fault.gpa >> GRANULE_SHIFT;
    let (plan, seq) = plan_fault_in_order(&mut KvmFaultLookup(kvm), fault);
    let rd = vm.rd().ok_or(EINVAL)?;
    let ipa = if fault.protected {
        fault.gpa
    } else {
        fault.gpa | vm.shared_bit(kvm)
    };
    let ipa = Ipa::new(ipa).ok_or(EINVAL)?;
    let served = match plan {
        FaultPlan::Emulate => return Ok(Served::Emulate),
        FaultPlan::MemoryFault { private } => return Ok(Served::MemoryFault { private }),
        FaultPlan::MapProtected => map_with_rtts(
            || map_private_page(kvm, vm.stats(), rd, ipa, gfn, seq),
            || vm.ensure_leaf_rtt(kvm, ipa),
        )
        .and_then(|served| {
            if served == Served::Mapped {
                map_around(kvm, vm.stats(), rd, gfn, seq).map_err(ServeError::Map)?;
            }
            Ok(served)
        }),
        FaultPlan::MapShared { write, replace } => map_with_rtts(
            || map_user_page(kvm, rd, ipa, gfn, seq, write, replace),
            || vm.ensure_leaf_rtt(kvm, ipa),
        ),
    };
    served.map_err(|e| match e {
        ServeError::Grow(e) => e,
        ServeError::Map(e) => {
            // `NeedRtt` again, or `Mapped` right after an unmap: the RMM
            // contradicts itself.
            let e = match e {
                MapError::Rmi(e) => Shown(e),
                _ => Shown(RmiError::bad_output()),
            };
            pr_err!(
                "realm {}: mapping IPA {:#x} failed: {}\n",
                vm.id(),
                ipa.get(),
                e
            );
            kvm.mark_dead();
            EIO
        }
    })
}

/// What a fault reads of the VM, for [`plan_fault_in_order`].
struct KvmFaultLookup<'a>(&'a Kvm);

impl FaultLookup for KvmFaultLookup<'_> {
    fn invalidate_seq(&mut self) -> u64 {
        self.0.mmu_invalidate_seq()
    }

    fn slot_facts(&mut self, gfn: u64) -> Option<SlotFacts> {
        let srcu = self.0.srcu_read_lock();
        srcu.memslot(gfn).map(|slot| SlotFacts {
            gmem: slot.has_gmem(),
            readonly: slot.readonly(),
            private: srcu.mem_is_private(gfn),
        })
    }
}

/// Maps the guest_memfd page of `gfn` at protected IPA `ipa` of realm
/// `rd`, once, and counts it in `stats`, unless an invalidation ran since
/// KVM's count was `seq` (read before the plan).
fn map_private_page(
    kvm: &Kvm,
    stats: &RealmStats,
    rd: Granule,
    ipa: Ipa,
    gfn: u64,
    seq: u64,
) -> Result<Served, MapError> {
    let srcu = kvm.srcu_read_lock();
    // The memslot may have gone since the plan.
    let Some(slot) = srcu.memslot(gfn).filter(|s| s.has_gmem()) else {
        return Ok(Served::MemoryFault { private: true });
    };
    let pfn = match slot.gmem_pfn(gfn) {
        Ok(pfn) => pfn,
        Err(e) => return Ok(Served::PrivateUnavailable(e)),
    };
    let granule = pfn
        .checked_shl(GRANULE_SHIFT)
        .and_then(Granule::new)
        .ok_or(MapError::Rmi(RmiError::bad_output()))?;
    // `kvm_gmem_get_pfn()` took one reference on the page, handed over here.
    // SAFETY: As above.
    let page = unsafe { GuestPageRef::adopt(RMI.pages(), granule) };
    let mmu = kvm.mmu_write_lock();
    if mmu.must_retry(seq, gfn) {
        // `page` drops: the reference goes.
        return Ok(Served::Mapped);
    }
    match map_protected(&RMI, rd, ipa, page) {
        Ok(_) => {
            stats.mapped(1);
            Ok(Served::Mapped)
        }
        // Another vCPU mapped it; or the host unmapped a page the realm
        // accepted (DESTROYED), which only the realm can take back.
        Err(MapError::Mapped) => match protected_page_usable(RMI.smc(), rd, ipa) {
            Ok(true) => Ok(Served::Mapped),
            Ok(false) => Ok(Served::MemoryFault { private: true }),
            Err(e) => Err(MapError::Rmi(e)),
        },
        Err(e) => Err(e),
    }
}

/// Maps the frames around `gfn` that a protected fault there maps too
/// ([`plan_fault_around`], `fault_around` frames in all), in the leaf RTT
/// the fault needed: each one's guest_memfd page, as
/// [`map_private_page`] does, with `mmu_lock` taken for each map alone.
/// Best effort: a frame whose page cannot be had, that an invalidation
/// raced (since `seq`, the fault's count), or that is mapped already is left
/// to its own fault.
fn map_around(
    kvm: &Kvm,
    stats: &RealmStats,
    rd: Granule,
    gfn: u64,
    seq: u64,
) -> Result<(), MapError> {
    let frames = u64::from(crate::fault_around_frames());
    let srcu = kvm.srcu_read_lock();
    for g in plan_fault_around(&mut KvmFaultLookup(kvm), gfn, frames) {
        let Some(slot) = srcu.memslot(g).filter(|s| s.has_gmem()) else {
            continue;
        };
        let Ok(pfn) = slot.gmem_pfn(g) else {
            continue;
        };
        let (Some(granule), Some(ipa)) = (
            pfn.checked_shl(GRANULE_SHIFT).and_then(Granule::new),
            g.checked_shl(GRANULE_SHIFT).and_then(Ipa::new),
        ) else {
            return Err(MapError::Rmi(RmiError::bad_output()));
        };
        // `kvm_gmem_get_pfn()` took one reference on the page, handed over here.
        // SAFETY: As above.
        let page = unsafe { GuestPageRef::adopt(RMI.pages(), granule) };
        let mmu = kvm.mmu_write_lock();
        if mmu.must_retry(seq, g) {
            continue;
        }
        match map_protected(&RMI, rd, ipa, page) {
            Ok(_) => stats.mapped(1),
            Err(MapError::Mapped) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Maps the page of `gfn`'s user mapping at unprotected IPA `alias` of
/// realm `rd`, once: writable if `write`, after unmapping what is there if
/// `replace`; unless an invalidation ran since KVM's count was `seq`.
fn map_user_page(
    kvm: &Kvm,
    rd: Granule,
    alias: Ipa,
    gfn: u64,
    seq: u64,
    write: bool,
    replace: bool,
) -> Result<Served, MapError> {
    let srcu = kvm.srcu_read_lock();
    let Some(slot) = srcu.memslot(gfn) else {
        return Ok(Served::Emulate);
    };
    let user = match slot.user_page(gfn, write) {
        Ok(user) => user,
        Err(e) if e == EHWPOISON => {
            // KVM's run loop returns `EINTR` with the signal pending.
            slot.report_poisoned(gfn);
            return Ok(Served::Mapped);
        }
        Err(_) => return Ok(Served::SharedUnavailable),
    };
    // Device memory (a `VM_PFNMAP` mapping) is not given to realms.
    if !user.is_normal_memory() {
        return Ok(Served::MemoryFault { private: false });
    }
    let pa = user
        .pfn()
        .checked_shl(GRANULE_SHIFT)
        .and_then(Granule::new)
        .ok_or(MapError::Rmi(RmiError::bad_output()))?;
    let writable = write && user.writable();
    let mmu = kvm.mmu_write_lock();
    if mmu.must_retry(seq, gfn) {
        return Ok(Served::Mapped);
    }
    if replace {
        let top = alias
            .get()
            .checked_add(GRANULE_SIZE)
            .and_then(Ipa::new)
            .ok_or(MapError::Rmi(RmiError::bad_output()))?;
        unmap_shared(RMI.smc(), rd, alias, top, &mut || {}).map_err(MapError::Rmi)?;
    }
    match map_shared(RMI.smc(), rd, alias, pa, writable) {
        Ok(()) => {
            user.release(&mmu, writable);
            Ok(Served::Mapped)
        }
        // Mapped meanwhile, by another vCPU: the access is retried.
        Err(MapError::Mapped) if !replace => Ok(Served::Mapped),
        Err(e) => Err(e),
    }
}
