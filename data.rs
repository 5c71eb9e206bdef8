// SPDX-License-Identifier: GPL-2.0

//! Delegated pages the host does not allocate itself: guest_memfd's, which
//! become a realm's protected memory.
//!
//! Part of the sans-IO core. guest_memfd may free its pages at any time (a
//! hole punch, the file's release), so a guest page is delegated only while
//! the host holds a reference on it ([`GuestPageRef`]); the reference goes
//! only once the page is back in the NS PAS. If it cannot be undelegated,
//! the reference is kept forever: the page is leaked, never freed.

use core::mem::ManuallyDrop;

use crate::addr::{
    Granule,
    GranuleRange,
    GRANULE_SIZE, //
};
use crate::granule::{
    PageSource,
    Rmi, //
};
use crate::rmi_cmds::{
    granule_range_delegate,
    granule_range_undelegate,
    SmcConduit, //
};
use crate::rmi_smc::{
    RmiError,
    RmiStatus, //
};

/// References on the pages of guest memory (`get_page`/`put_page`).
pub(crate) trait GuestPages {
    /// Takes a reference on the page holding `g`: it is not freed until the
    /// reference is dropped.
    fn get(&self, g: Granule);

    /// Drops a reference taken with [`GuestPages::get`].
    fn put(&self, g: Granule);
}

/// One reference on a guest page.
///
/// # Invariants
///
/// `pages` holds one reference on `granule`'s page, dropped with this value.
pub(crate) struct GuestPageRef<'g, G: GuestPages> {
    pages: &'g G,
    granule: Granule,
}

impl<'g, G: GuestPages> GuestPageRef<'g, G> {
    /// Takes a reference on the guest page `granule`.
    pub(crate) fn get(pages: &'g G, granule: Granule) -> Self {
        pages.get(granule);
        // INVARIANT: Taken just above.
        Self { pages, granule }
    }

    /// Takes over a reference the caller holds on the guest page
    /// `granule` (one `kvm_gmem_get_pfn()` took, say).
    ///
    /// # Safety
    ///
    /// The caller holds one reference on the page, taken as
    /// [`GuestPages::get`] does, and hands it over.
    pub(crate) unsafe fn adopt(pages: &'g G, granule: Granule) -> Self {
        // INVARIANT: The caller's reference, handed over.
        Self { pages, granule }
    }

    /// The page's granule.
    pub(crate) fn granule(&self) -> Granule {
        self.granule
    }
}

impl<G: GuestPages> Drop for GuestPageRef<'_, G> {
    fn drop(&mut self) {
        self.pages.put(self.granule);
    }
}

/// A guest page the host delegated, holding its reference.
///
/// # Invariants
///
/// `page`'s granule is in the Realm PAS, delegated (not mapped) by the host.
pub(crate) struct DelegatedGuestPage<'r, 'g, C: SmcConduit, P: PageSource, G: GuestPages> {
    rmi: &'r Rmi<C, P>,
    page: ManuallyDrop<GuestPageRef<'g, G>>,
}

/// A guest page an RTT entry maps now: the entry owns its reference and its
/// delegation until the page is unmapped ([`DelegatedGuestPage::from_unmapped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MappedGuestPage(pub(crate) Granule);

impl<'r, 'g, C: SmcConduit, P: PageSource, G: GuestPages> DelegatedGuestPage<'r, 'g, C, P, G> {
    /// Delegates the guest page of `page`. On a refusal the reference comes
    /// back with the error (the page is still NS); after a malformed answer
    /// the page's state is unknown, so it is leaked (reference kept).
    pub(crate) fn delegate(
        rmi: &'r Rmi<C, P>,
        page: GuestPageRef<'g, G>,
    ) -> Result<Self, (Option<GuestPageRef<'g, G>>, RmiError)> {
        let Some(one) = GranuleRange::from_count(page.granule(), 1) else {
            return Err((Some(page), RmiError::bad_output()));
        };
        match granule_range_delegate(rmi.smc(), one) {
            // INVARIANT: The RMM delegated it.
            Ok(_) => Ok(Self {
                rmi,
                page: ManuallyDrop::new(page),
            }),
            Err(e) if e.status() == RmiStatus::BadOutput => {
                core::mem::forget(page);
                rmi.count_leak();
                Err((None, e))
            }
            Err(e) => Err((Some(page), e)),
        }
    }

    /// Takes over a guest page the caller delegated, with its reference.
    ///
    /// # Safety
    ///
    /// `page`'s granule is delegated (not mapped), by the caller, who hands
    /// over that delegation.
    pub(crate) unsafe fn assume_delegated(rmi: &'r Rmi<C, P>, page: GuestPageRef<'g, G>) -> Self {
        // INVARIANT: By the function's safety requirements.
        Self {
            rmi,
            page: ManuallyDrop::new(page),
        }
    }

    /// The page's granule.
    pub(crate) fn granule(&self) -> Granule {
        self.page.granule()
    }

    /// Hands the page, delegation and reference, to the RTT entry that now
    /// maps it.
    pub(crate) fn into_mapping(self) -> MappedGuestPage {
        let granule = self.granule();
        // The entry owns the reference now: no undelegation, no `put`.
        core::mem::forget(self);
        MappedGuestPage(granule)
    }

    /// Takes back a page the RMM reports unmapped from one of the host's
    /// realms (it is delegated again).
    ///
    /// # Safety
    ///
    /// `mapped` came from [`DelegatedGuestPage::into_mapping`] with `pages`
    /// and the RMM unmapped it; it is taken back once.
    pub(crate) unsafe fn from_unmapped(
        rmi: &'r Rmi<C, P>,
        pages: &'g G,
        mapped: MappedGuestPage,
    ) -> Self {
        // INVARIANT: Unmapped, so delegated again; the caller passes the
        // reference `into_mapping` kept.
        Self {
            rmi,
            page: ManuallyDrop::new(GuestPageRef {
                pages,
                granule: mapped.0,
            }),
        }
    }
}

impl<C: SmcConduit, P: PageSource, G: GuestPages> Drop for DelegatedGuestPage<'_, '_, C, P, G> {
    fn drop(&mut self) {
        let undelegated = GranuleRange::from_count(self.granule(), 1)
            .is_some_and(|one| granule_range_undelegate(self.rmi.smc(), one).is_ok());
        if undelegated {
            // SAFETY: Taken once, here, in `drop`.
            unsafe { ManuallyDrop::drop(&mut self.page) };
        } else {
            // Maybe still in the Realm PAS: keep the reference forever.
            self.rmi.count_leak();
        }
    }
}

/// Bit 0 of a [`PredelegatedPages`] slot: the page is delegated.
const SLOT_DELEGATED: u64 = 1;

/// Guest pages delegated ahead of the commands that map them, one range
/// delegation per run of PA-contiguous pages instead of one per page (for
/// populate, whose pages come one at a time to a callback).
///
/// # Invariants
///
/// Each non-zero slot holds the granule of a guest page on which this value
/// holds one reference (`pages`); with bit 0 set, the page is delegated by
/// this value and not mapped.
pub(crate) struct PredelegatedPages<'r, 's, C: SmcConduit, P: PageSource + GuestPages> {
    rmi: &'r Rmi<C, P>,
    slots: &'s mut [u64],
}

impl<'r, 's, C: SmcConduit, P: PageSource + GuestPages> PredelegatedPages<'r, 's, C, P> {
    /// Delegates the guest pages in `slots` (0: none), a range call per run
    /// of PA-contiguous ones. A page the RMM refuses stays NS (the one
    /// who maps it tries again, and learns why); one whose state a malformed
    /// answer leaves unknown is leaked.
    ///
    /// # Safety
    ///
    /// Each non-zero slot is a granule (bit 0 clear) of a guest page on
    /// which the caller holds one reference, taken as [`GuestPages::get`]
    /// does, and hands it over.
    pub(crate) unsafe fn delegate(rmi: &'r Rmi<C, P>, slots: &'s mut [u64]) -> Self {
        let mut run = 0;
        while run < slots.len() {
            let mut end = run + 1;
            while end < slots.len()
                && slots[run] != 0
                && slots[end - 1].checked_add(GRANULE_SIZE) == Some(slots[end])
            {
                end += 1;
            }
            let mut at = run;
            while at < end {
                let first = Granule::new(slots[at]).filter(|g| g.pa() != 0);
                // CAST: At most the number of slots.
                let Some(range) =
                    first.and_then(|g| GranuleRange::from_count(g, (end - at) as u64))
                else {
                    at += 1;
                    continue;
                };
                match granule_range_delegate(rmi.smc(), range) {
                    Ok(next) => {
                        // CAST: In `1..=end - at`: the decoder keeps `next`
                        // within the range.
                        let done = ((next.pa() - range.base().pa()) / GRANULE_SIZE) as usize;
                        for slot in slots.iter_mut().skip(at).take(done) {
                            *slot |= SLOT_DELEGATED;
                        }
                        at += done.max(1);
                    }
                    Err(e) if e.status() == RmiStatus::BadOutput => {
                        // Maybe delegated: keep the reference forever.
                        slots[at] = 0;
                        rmi.count_leak();
                        at += 1;
                    }
                    Err(_) => at += 1,
                }
            }
            run = end;
        }
        // INVARIANT: The references came with `slots`; bit 0 marks exactly
        // the granules the RMM delegated.
        Self { rmi, slots }
    }

    /// The page of slot `index` if it is `g` and was delegated here: the
    /// caller maps it (or drops it, which undelegates it).
    pub(crate) fn take(
        &mut self,
        index: usize,
        g: Granule,
    ) -> Option<DelegatedGuestPage<'r, 'r, C, P, P>> {
        let slot = self.slots.get_mut(index)?;
        if *slot != g.pa() | SLOT_DELEGATED {
            return None;
        }
        *slot = 0;
        // SAFETY: The slot's reference, handed over with the slot.
        let page = unsafe { GuestPageRef::adopt(self.rmi.pages(), g) };
        // SAFETY: Delegated here and not mapped (type invariant).
        Some(unsafe { DelegatedGuestPage::assume_delegated(self.rmi, page) })
    }
}

impl<C: SmcConduit, P: PageSource + GuestPages> Drop for PredelegatedPages<'_, '_, C, P> {
    fn drop(&mut self) {
        for slot in self.slots.iter_mut() {
            let Some(g) = Granule::new(*slot & !SLOT_DELEGATED).filter(|g| g.pa() != 0) else {
                continue;
            };
            // SAFETY: The slot's reference (type invariant).
            let page = unsafe { GuestPageRef::adopt(self.rmi.pages(), g) };
            if *slot & SLOT_DELEGATED != 0 {
                // Dropping it undelegates it, then puts the reference.
                // SAFETY: Delegated here and not mapped (type invariant).
                drop(unsafe { DelegatedGuestPage::assume_delegated(self.rmi, page) });
            }
            *slot = 0;
        }
    }
}
