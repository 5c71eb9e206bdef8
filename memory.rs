// SPDX-License-Identifier: GPL-2.0

//! A realm's memory mappings: unmapping guest pages from the protected half
//! of its IPA space, and handing them back to guest_memfd.
//!
//! Part of the sans-IO core. Unmapping runs where KVM holds `mmu_lock` for
//! writing (MMU notifiers, guest_memfd invalidation, memslot changes), so
//! nothing here allocates or sleeps; the caller passes a `resched` step it
//! calls between RMM calls (KVM's `cond_resched_rwlock_write` when the
//! invalidation may block).

use crate::addr::{
    Granule,
    Ipa,
    RttLevel, //
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
