// SPDX-License-Identifier: GPL-2.0

//! A realm's memory mappings: which memslots a realm accepts, and
//! unmapping guest pages from the protected half of its IPA space, handing
//! them back to guest_memfd.
//!
//! Part of the sans-IO core. Unmapping runs where KVM holds `mmu_lock` for
//! writing (MMU notifiers, guest_memfd invalidation, memslot changes), so
//! nothing here allocates or sleeps; the caller passes a `resched` step it
//! calls between RMM calls (KVM's `cond_resched_rwlock_write` when the
//! invalidation may block).

use crate::addr::{
    Granule,
    Ipa,
    RttLevel,
    GRANULE_SHIFT, //
};
use crate::data::{
    DelegatedGuestPage,
    GuestPages,
    MappedGuestPage, //
};
use crate::granule::{
    PageSource,
    Rmi, //
};
use crate::rmi_cmds::{
    data_unmapped,
    rtt_data_unmap_call,
    SmcConduit, //
};
use crate::rmi_smc::{
    RmiError,
    RmiStatus, //
};
use crate::sro::run_no_memory;

/// A memslot change KVM asks the realm about (`enum kvm_mr_change`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotChange {
    /// A new memslot.
    Create,
    /// The memslot goes.
    Delete,
    /// The memslot moves to another base.
    Move,
    /// Only its flags change.
    FlagsOnly,
}

/// The memslot a change leaves, as far as the policy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotLayout {
    /// The first guest frame.
    pub(crate) base_gfn: u64,
    /// How many frames.
    pub(crate) npages: u64,
    /// Whether KVM is asked to log dirty pages.
    pub(crate) dirty_log: bool,
}

/// Why a realm refuses a memslot (all `EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotRefusal {
    /// The memslot reaches into the unprotected half: memslots describe
    /// protected IPAs, and their shared alias is the same memslot with the
    /// top IPA bit set.
    NotProtected,
    /// Dirty logging: the RMM cannot write-protect a realm's memory for the
    /// host, so a log would be incomplete.
    DirtyLog,
}

/// Checks a memslot change of a realm whose IPA space is `ipa_bits` wide;
/// `new` is the memslot after the change (none for a deletion).
pub(crate) fn check_memslot(
    change: SlotChange,
    new: Option<SlotLayout>,
    ipa_bits: u8,
) -> Result<(), SlotRefusal> {
    let Some(new) = new.filter(|_| change != SlotChange::Delete) else {
        return Ok(());
    };
    if new.dirty_log {
        return Err(SlotRefusal::DirtyLog);
    }
    let protected_frames = 1u64
        .checked_shl(u32::from(ipa_bits).saturating_sub(1 + GRANULE_SHIFT))
        .filter(|_| u32::from(ipa_bits) > GRANULE_SHIFT)
        .ok_or(SlotRefusal::NotProtected)?;
    match new.base_gfn.checked_add(new.npages) {
        Some(end) if end <= protected_frames => Ok(()),
        _ => Err(SlotRefusal::NotProtected),
    }
}

/// What an unmap did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Unmapped {
    /// Guest pages unmapped and given back (undelegated, reference put).
    pub(crate) pages: u64,
    /// Of those, pages that could not be undelegated: leaked, their
    /// reference kept forever.
    pub(crate) leaked: u64,
}

/// Unmaps every guest page mapped in `[base, top)` (protected half) of
/// realm `rd`, undelegates each and drops the reference its mapping held.
///
/// Every DATA granule of the host's realms must have been mapped with
/// [`DelegatedGuestPage::into_mapping`] over `pages` (the RMM reports the
/// PA of what it unmapped, so no table of mappings is needed).
///
/// Ranges without tables are skipped (the host never maps blocks, so an
/// `RMI_ERROR_RTT` above level 3 means nothing is mapped there).
///
/// # Errors
///
/// An unexpected RMM answer: what was unmapped up to there is accounted
/// for in the error's [`Unmapped`], the rest stays mapped.
pub(crate) fn unmap_protected<C: SmcConduit, P: PageSource + GuestPages>(
    rmi: &Rmi<C, P>,
    rd: Granule,
    base: Ipa,
    top: Ipa,
    resched: &mut dyn FnMut(),
) -> Result<Unmapped, (Unmapped, RmiError)> {
    let mut done = Unmapped::default();
    let mut at = base;
    while at.get() < top.get() {
        let answer = run_no_memory(rmi.smc(), &rtt_data_unmap_call(rd, at, top))
            .and_then(|out| data_unmapped(&out, at, top));
        match answer {
            Ok(step) => {
                if let Some(range) = step.granules {
                    for g in range.iter() {
                        // The RMM just unmapped `g` from realm `rd`; by this
                        // function's contract it was mapped with `into_mapping`
                        // over `rmi.pages()`; an unmapped granule is reported once.
                        // SAFETY: As above.
                        let page = unsafe {
                            DelegatedGuestPage::from_unmapped(rmi, rmi.pages(), MappedGuestPage(g))
                        };
                        let before = rmi.leaked();
                        drop(page);
                        done.pages += 1;
                        if rmi.leaked() != before {
                            done.leaked += 1;
                        }
                    }
                }
                at = step.out_top;
            }
            Err(e) if e.status() == RmiStatus::ErrorRtt => {
                // CAST: The index of ERROR_RTT is a level.
                let skip = RttLevel::new(e.index() as i8)
                    .filter(|l| l.get() < 3)
                    .map(RttLevel::entry_size)
                    .ok_or((done, e))?;
                let next = at
                    .align_down(skip)
                    .get()
                    .checked_add(skip)
                    .map_or(top.get(), |n| n.min(top.get()));
                at = Ipa::new(next).ok_or((done, RmiError::bad_output()))?;
            }
            Err(e) => return Err((done, e)),
        }
        resched();
    }
    Ok(done)
}
