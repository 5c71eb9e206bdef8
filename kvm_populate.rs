// SPDX-License-Identifier: GPL-2.0

//! `KVM_ARM_RMI_POPULATE` in the kernel: the ioctl's structure copied in
//! and back, and the core's [`populate`] run over guest_memfd, whose pages
//! `kvm_gmem_populate()` hands over under `slots_lock`.
//!
//! Part of the kernel shell; the shell half of `populate.rs`.

use kernel::{
    bindings,
    kvm::{
        Kvm,
        SlotsLockGuard,
        VmMemSlot, //
    },
    prelude::*,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

use crate::addr::{
    Granule,
    Ipa,
    GRANULE_SHIFT, //
};
use crate::cond_resched;
use crate::data::StageHost;
use crate::kvm_realm::RealmVm;
use crate::populate::{
    populate,
    PopulateArgs,
    PopulateFailure,
    PopulateHost, //
};
use crate::realm::{
    PopulatePageError,
    RealmState, //
};

/// `KVM_ARM_RMI_POPULATE`: `_IOWR(KVMIO, 0xd7, struct kvm_arm_rmi_populate)`.
pub(crate) const KVM_ARM_RMI_POPULATE: u32 =
    kernel::ioctl::_IOWR::<bindings::kvm_arm_rmi_populate>(bindings::KVMIO, 0xd7);

/// `KVM_ARM_RMI_POPULATE`: copies in, fills, and always copies the
/// structure back with the progress made.
pub(crate) fn populate_ioctl(vm: &RealmVm, kvm: &Kvm, arg: usize) -> Result {
    const LEN: usize = core::mem::size_of::<bindings::kvm_arm_rmi_populate>();
    let (mut reader, mut writer) = UserSlice::new(UserPtr::from_addr(arg), LEN).reader_writer();
    let mut raw = [0u8; LEN];
    reader.read_slice(&mut raw)?;
    let mut args = populate_args_from(&raw);
    let result = populate_vm(vm, kvm, &mut args);
    writer.write_slice(&populate_args_to(&args))?;
    result
}

/// Fills `args`' range of `vm`, advancing `args` by what is done.
fn populate_vm(vm: &RealmVm, kvm: &Kvm, args: &mut PopulateArgs) -> Result {
    let ipa_bits = u8::try_from(kvm.ipa_bits()).map_err(|_| EINVAL)?;
    let mut host = GmemPopulate {
        vm,
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
            let mut realm = self.vm.lock_realm();
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
            let mut realm = vm.lock_realm();
            match realm.populate_staged(page, ipa, src, measure, more, &mut stage) {
                Ok(_) => Ok(()),
                Err(PopulatePageError::Mapped) => Err(EEXIST),
                Err(PopulatePageError::Realm(e)) => Err(vm.fail(kvm, &realm, "populating", e)),
            }
        })?;
        // CAST: At most `pages`, which came from a `u64`.
        let done = done as u64;
        vm.stats().populated(done, measure);
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
