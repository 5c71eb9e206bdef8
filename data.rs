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

/// Bit 0 of a [`PopulateStage`] slot: the page is delegated.
const SLOT_DELEGATED: u64 = 1;

/// Guest pages populate stages at most: referenced and delegated ahead of
/// the per-page callback that maps them.
pub(crate) const STAGE_PAGES: usize = 64;

/// What [`PopulateStage::take`] needs from the host to stage pages.
pub(crate) trait StageHost {
    /// The guest page of frame `gfn`, allocated if new, with a reference
    /// (as [`GuestPages::get`] takes) that the caller now owns; `None` if
    /// there is none to be had (staging stops there).
    fn guest_page(&mut self, gfn: u64) -> Option<Granule>;

    /// Whether staging should stop where it is: a signal is pending.
    fn interrupted(&mut self) -> bool;
}

/// The guest pages of consecutive frames from `first_gfn` on that populate
/// referenced and delegated ahead of mapping them, with one range
/// delegation per run of PA-contiguous pages instead of one per page.
///
/// It outlives each call of the ioctl: what was staged before a signal
/// ended a call waits here for the next one instead of being undelegated.
/// Pages the VMM never populates after all (it goes elsewhere, or runs the
/// realm) are let go, at most [`STAGE_PAGES`] of them.
///
/// # Invariants
///
/// Each non-zero slot `k` holds the granule of a guest page (guest_memfd's
/// for frame `first_gfn + k` when it was staged) on which this value holds
/// one reference; with bit 0 set, the page is delegated by this value and
/// not mapped.
pub(crate) struct PopulateStage<'r, C: SmcConduit, P: PageSource + GuestPages> {
    rmi: &'r Rmi<C, P>,
    first_gfn: u64,
    slots: [u64; STAGE_PAGES],
}

impl<'r, C: SmcConduit, P: PageSource + GuestPages> PopulateStage<'r, C, P> {
    /// An empty stage.
    pub(crate) fn new(rmi: &'r Rmi<C, P>) -> Self {
        // INVARIANT: No slot is used.
        Self {
            rmi,
            first_gfn: 0,
            slots: [0; STAGE_PAGES],
        }
    }

    /// How many pages it holds, delegated or not.
    pub(crate) fn len(&self) -> usize {
        self.slots.iter().filter(|s| **s != 0).count()
    }

    /// Lets the page of slot `k` go: undelegated (leaked if that fails),
    /// then its reference dropped.
    fn release_slot(&mut self, k: usize) {
        let Some(slot) = self.slots.get_mut(k).map(core::mem::take) else {
            return;
        };
        let Some(g) = Granule::new(slot & !SLOT_DELEGATED).filter(|g| g.pa() != 0) else {
            return;
        };
        // SAFETY: The slot's reference (type invariant), taken out above.
        let page = unsafe { GuestPageRef::adopt(self.rmi.pages(), g) };
        if slot & SLOT_DELEGATED != 0 {
            // Dropping it undelegates it, then puts the reference.
            // SAFETY: Delegated here and not mapped (type invariant).
            drop(unsafe { DelegatedGuestPage::assume_delegated(self.rmi, page) });
        }
    }

    /// Lets every page go.
    pub(crate) fn release(&mut self) {
        for k in 0..STAGE_PAGES {
            self.release_slot(k);
        }
    }

    /// Moves the window to start at `gfn`, letting go what lies before it
    /// (frames populate went past) or all of it if `gfn` is elsewhere.
    fn seek(&mut self, gfn: u64) {
        let skip = gfn
            .checked_sub(self.first_gfn)
            .and_then(|d| usize::try_from(d).ok())
            .filter(|d| *d < STAGE_PAGES);
        match skip {
            Some(d) => {
                for k in 0..d {
                    self.release_slot(k);
                }
                self.slots.copy_within(d.., 0);
                self.slots[STAGE_PAGES - d..].fill(0);
            }
            None => self.release(),
        }
        self.first_gfn = gfn;
    }

    /// The delegated page of frame `gfn`, which guest_memfd holds as
    /// `page` now, for the caller to map: from the stage, else staged now
    /// together with the pages of up to `more` frames after it (from
    /// `host`, as long as it is not interrupted). `None` if the RMM would
    /// not delegate `page`: the caller delegates it alone and learns why.
    pub(crate) fn take(
        &mut self,
        gfn: u64,
        page: Granule,
        more: u64,
        host: &mut dyn StageHost,
    ) -> Option<DelegatedGuestPage<'r, 'r, C, P, P>> {
        self.seek(gfn);
        if self.slots[0] & !SLOT_DELEGATED != page.pa() {
            // Not staged, or punched out and replaced since.
            self.release_slot(0);
            self.rmi.pages().get(page);
            // INVARIANT: The reference just taken.
            self.slots[0] = page.pa();
        }
        if self.slots[0] & SLOT_DELEGATED == 0 {
            self.stage(more, host);
        }
        let slot = core::mem::take(&mut self.slots[0]);
        // SAFETY: The slot's reference (type invariant), taken out above.
        let page = unsafe { GuestPageRef::adopt(self.rmi.pages(), page) };
        if slot & SLOT_DELEGATED == 0 {
            return None;
        }
        // SAFETY: Delegated here and not mapped (type invariant).
        Some(unsafe { DelegatedGuestPage::assume_delegated(self.rmi, page) })
    }

    /// Fills the empty slots after the first, for up to `more` frames, and
    /// delegates what is not delegated yet, a range call per PA-contiguous
    /// run: always the run of slot 0, the others while `host` is not
    /// interrupted. A page the RMM refuses stays NS (the one who maps it
    /// tries again, and learns why); one whose state a malformed answer
    /// leaves unknown is leaked.
    fn stage(&mut self, more: u64, host: &mut dyn StageHost) {
        let want =
            usize::try_from(more).map_or(STAGE_PAGES, |m| m.saturating_add(1).min(STAGE_PAGES));
        for k in 1..want {
            if self.slots[k] != 0 {
                continue;
            }
            // CAST: Below `STAGE_PAGES`.
            let gfn = self.first_gfn.checked_add(k as u64);
            if host.interrupted() {
                break;
            }
            match gfn.and_then(|gfn| host.guest_page(gfn)) {
                // INVARIANT: The reference `guest_page` handed over; a
                // granule's bit 0 is clear.
                Some(g) if g.pa() != 0 => self.slots[k] = g.pa(),
                _ => break,
            }
        }
        let undelegated = |s: u64| s != 0 && s & SLOT_DELEGATED == 0;
        let mut at = 0;
        while at < want {
            if !undelegated(self.slots[at]) {
                at += 1;
                continue;
            }
            if at > 0 && host.interrupted() {
                break;
            }
            let mut end = at + 1;
            while end < want
                && undelegated(self.slots[end])
                && self.slots[end - 1].checked_add(GRANULE_SIZE) == Some(self.slots[end])
            {
                end += 1;
            }
            // CAST: At most `STAGE_PAGES`.
            let Some(range) = Granule::new(self.slots[at])
                .and_then(|g| GranuleRange::from_count(g, (end - at) as u64))
            else {
                at += 1;
                continue;
            };
            match granule_range_delegate(self.rmi.smc(), range) {
                Ok(next) => {
                    // CAST: In `1..=end - at`: the decoder keeps `next`
                    // within the range.
                    let done = ((next.pa() - range.base().pa()) / GRANULE_SIZE) as usize;
                    for slot in self.slots.iter_mut().skip(at).take(done) {
                        // INVARIANT: The RMM delegated it.
                        *slot |= SLOT_DELEGATED;
                    }
                    at += done.max(1);
                }
                Err(e) if e.status() == RmiStatus::BadOutput => {
                    // Maybe delegated: keep the reference forever.
                    self.slots[at] = 0;
                    self.rmi.count_leak();
                    at += 1;
                }
                Err(_) => at += 1,
            }
        }
    }
}

impl<C: SmcConduit, P: PageSource + GuestPages> Drop for PopulateStage<'_, C, P> {
    fn drop(&mut self) {
        self.release();
    }
}
