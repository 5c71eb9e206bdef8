// SPDX-License-Identifier: GPL-2.0

//! Delegated memory: who owns a granule while it is in the Realm PAS.
//!
//! A page handed to the RMM must never go back to the host allocator while
//! it is delegated: the next host access would raise a granule protection
//! fault. Part of the sans-IO core. [`DelegatedGranule`] owns one delegated
//! page and undelegates it when dropped. If that fails, the page is leaked on
//! purpose and counted, as TDX and SEV-SNP do.

use core::mem::ManuallyDrop;
use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};

use crate::addr::{
    Granule,
    GranuleRange, //
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

/// Where the core gets 4 KiB pages: the kernel's page allocator in the
/// module, a model of physical memory on the host.
pub(crate) trait PageSource {
    /// An owned page. Dropping it frees it to the allocator, so a delegated
    /// page is only ever dropped through [`DelegatedGranule`].
    type Page;

    /// Allocates a zeroed page, or `None` when out of memory.
    fn alloc(&self) -> Option<Self::Page>;

    /// The granule a page occupies.
    fn granule(page: &Self::Page) -> Granule;

    /// Writes `words` at word index `at` of an NS page (little-endian, as
    /// the RMM reads it). False if that runs past the page.
    fn write_words(page: &Self::Page, at: usize, words: &[u64]) -> bool;

    /// Reads `words.len()` words from word index `at` of an NS page. False
    /// if that runs past the page.
    fn read_words(page: &Self::Page, at: usize, words: &mut [u64]) -> bool;

    /// An owned run of `2^order` contiguous pages, aligned to its size.
    /// Dropping it frees it.
    type Block;

    /// Allocates a zeroed block of `2^order` pages, or `None`.
    fn alloc_block(&self, order: u32) -> Option<Self::Block>;

    /// The granules a block occupies.
    fn block_range(block: &Self::Block) -> GranuleRange;
}

/// Delegated granules one object owns (a realm's RTTs, a REC's donated
/// granules, the L1 GPTs), found again by address when the RMM hands one
/// back. Implemented with a growable vector.
pub(crate) trait GranuleSet<'r, C: SmcConduit, P: PageSource> {
    /// Makes room for `n` more granules; false when out of memory.
    fn reserve(&mut self, n: usize) -> bool;

    /// Adds a granule. Room was reserved.
    fn push(&mut self, g: DelegatedGranule<'r, C, P>);

    /// Takes out the granule at `g`, if the set has it.
    fn take(&mut self, g: Granule) -> Option<DelegatedGranule<'r, C, P>>;

    /// How many granules the set holds.
    fn len(&self) -> usize;
}

/// A failure to get memory into the Realm PAS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MemError {
    /// The host allocator had no page (`ENOMEM`).
    NoMemory,
    /// The RMM refused.
    Rmi(RmiError),
}

impl From<RmiError> for MemError {
    fn from(e: RmiError) -> Self {
        Self::Rmi(e)
    }
}

/// The host's end of the RMI: the conduit, where pages come from, and how
/// many pages were leaked because the RMM would not give them back.
pub(crate) struct Rmi<C, P> {
    smc: C,
    pages: P,
    leaked: AtomicU64,
}

impl<C: SmcConduit, P: PageSource> Rmi<C, P> {
    /// Bundles a conduit and a page source; nothing leaked yet.
    pub(crate) const fn new(smc: C, pages: P) -> Self {
        Self {
            smc,
            pages,
            leaked: AtomicU64::new(0),
        }
    }

    /// The conduit.
    pub(crate) fn smc(&self) -> &C {
        &self.smc
    }

    /// The page source.
    pub(crate) fn pages(&self) -> &P {
        &self.pages
    }

    /// Pages leaked so far because undelegation failed.
    pub(crate) fn leaked(&self) -> u64 {
        self.leaked.load(Ordering::Relaxed)
    }

    /// Gives up `page` for good: it may still be in the Realm PAS, so it is
    /// neither freed nor touched again.
    pub(crate) fn leak(&self, page: P::Page) {
        core::mem::forget(page);
        self.leaked.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a page given up for good that the host does not own (guest
    /// memory): it keeps its reference, so it is never freed.
    pub(crate) fn count_leak(&self) {
        self.leaked.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives up `block` for good because `stuck` of its granules may still
    /// be in the Realm PAS (the rest is NS, but cannot be freed alone).
    pub(crate) fn leak_block(&self, block: P::Block, stuck: u64) {
        core::mem::forget(block);
        self.leaked.fetch_add(stuck, Ordering::Relaxed);
    }
}

/// Delegates every granule of `range`, however many the RMM does per call.
///
/// # Errors
///
/// The RMM's error. What this call delegated before it has been undelegated
/// again, exactly `[range.base(), failed)`; a granule that could not be is
/// passed to `stuck`, and its owner must leak it.
pub(crate) fn delegate_range(
    smc: &impl SmcConduit,
    range: GranuleRange,
    stuck: &mut impl FnMut(Granule),
) -> Result<(), RmiError> {
    let mut next = range.base();
    while let Some(rest) = range.from(next).filter(|r| !r.is_empty()) {
        match granule_range_delegate(smc, rest) {
            Ok(done) => next = done,
            Err(e) => {
                if let Some(done) = range.below(next) {
                    // Failures are reported through `stuck`.
                    let _ = undelegate_range(smc, done, stuck);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Undelegates every granule of `range`, however many the RMM does per
/// call. A granule the RMM refuses is passed to `stuck` and skipped, so one
/// bad granule does not strand the rest.
///
/// # Errors
///
/// The first refusal, after the whole range has been tried.
pub(crate) fn undelegate_range(
    smc: &impl SmcConduit,
    range: GranuleRange,
    stuck: &mut impl FnMut(Granule),
) -> Result<(), RmiError> {
    let mut first_err = None;
    let mut next = range.base();
    while let Some(rest) = range.from(next).filter(|r| !r.is_empty()) {
        match granule_range_undelegate(smc, rest) {
            Ok(done) => next = done,
            Err(e) => {
                // A failed call changes nothing, so `next` is the culprit.
                // With a malformed answer its state is unknown: still leak.
                stuck(next);
                first_err.get_or_insert(e);
                match next.checked_add(1) {
                    Some(after) => next = after,
                    None => break,
                }
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// One page in the Realm PAS, owned by the host (and perhaps lent to the
/// RMM as an RD, RTT, REC or donation).
///
/// Dropping it undelegates the page and frees it; if the RMM refuses (the
/// page is still in use by a realm object, or the RMM is broken), the page
/// is leaked and counted instead.
///
/// # Invariants
///
/// `page` is delegated, or in a realm object the RMM made from it, until
/// `drop`/`undelegate` runs; `granule` is its address.
pub(crate) struct DelegatedGranule<'r, C: SmcConduit, P: PageSource> {
    page: ManuallyDrop<P::Page>,
    granule: Granule,
    rmi: &'r Rmi<C, P>,
}

impl<'r, C: SmcConduit, P: PageSource> DelegatedGranule<'r, C, P> {
    /// Delegates `page`.
    ///
    /// # Errors
    ///
    /// The RMM's error. The page is then freed; or leaked if the RMM's
    /// answer was malformed and the page's state is unknown.
    pub(crate) fn delegate(rmi: &'r Rmi<C, P>, page: P::Page) -> Result<Self, RmiError> {
        let granule = P::granule(&page);
        let one = GranuleRange::from_count(granule, 1).ok_or(RmiError::bad_output())?;
        match granule_range_delegate(rmi.smc(), one) {
            // INVARIANT: The RMM delegated it.
            Ok(_) => Ok(Self::assume_delegated(rmi, page)),
            Err(e) if e.status() == RmiStatus::BadOutput => {
                rmi.leak(page);
                Err(e)
            }
            // A refused call changed nothing: the page is still NS.
            Err(e) => Err(e),
        }
    }

    /// Allocates a page and delegates it.
    pub(crate) fn alloc(rmi: &'r Rmi<C, P>) -> Result<Self, MemError> {
        let page = rmi.pages().alloc().ok_or(MemError::NoMemory)?;
        Ok(Self::delegate(rmi, page)?)
    }

    /// Takes ownership of a page the RMM delegated itself (a donation of
    /// undelegated memory it consumed).
    pub(crate) fn assume_delegated(rmi: &'r Rmi<C, P>, page: P::Page) -> Self {
        let granule = P::granule(&page);
        // INVARIANT: The caller's RMM answer says the page is delegated.
        Self {
            page: ManuallyDrop::new(page),
            granule,
            rmi,
        }
    }

    /// The granule's address.
    pub(crate) fn granule(&self) -> Granule {
        self.granule
    }

    /// Takes the page out without undelegating it.
    fn into_page(self) -> P::Page {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so `page` is taken exactly once.
        unsafe { ManuallyDrop::take(&mut this.page) }
    }

    /// Undelegates the page and hands it back to the caller.
    ///
    /// # Errors
    ///
    /// The RMM's error; the page has then been leaked and counted.
    pub(crate) fn undelegate(self) -> Result<P::Page, RmiError> {
        let rmi = self.rmi;
        undelegate_page(rmi, self.into_page())
    }

    /// Hands back a page the RMM returned already undelegated (a reclaim
    /// with `st` = 1), without another RMI call.
    pub(crate) fn returned_undelegated(self) -> P::Page {
        self.into_page()
    }
}

/// Undelegates one page; leaks and counts it if the RMM refuses.
fn undelegate_page<C: SmcConduit, P: PageSource>(
    rmi: &Rmi<C, P>,
    page: P::Page,
) -> Result<P::Page, RmiError> {
    let result = GranuleRange::from_count(P::granule(&page), 1)
        .ok_or(RmiError::bad_output())
        .and_then(|one| granule_range_undelegate(rmi.smc(), one));
    match result {
        // The answer was checked to cover exactly this granule.
        Ok(_) => Ok(page),
        Err(e) => {
            rmi.leak(page);
            Err(e)
        }
    }
}

impl<C: SmcConduit, P: PageSource> Drop for DelegatedGranule<'_, C, P> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and `page` is not used after this.
        let page = unsafe { ManuallyDrop::take(&mut self.page) };
        // On failure the page is leaked and counted; the error has nowhere
        // else to go.
        let _ = undelegate_page(self.rmi, page);
    }
}

/// A block of contiguous pages in the Realm PAS, owned by the host (for
/// example a realm's concatenated root RTTs, which must be contiguous and
/// aligned to their size).
///
/// Dropping it undelegates the block and frees it; if any granule is
/// refused, the whole block is leaked and the refused granules counted.
///
/// # Invariants
///
/// Every granule of `range` is delegated, or in a realm object the RMM made
/// from it, until `drop` runs; `range` is the block's.
pub(crate) struct DelegatedBlock<'r, C: SmcConduit, P: PageSource> {
    block: ManuallyDrop<P::Block>,
    range: GranuleRange,
    rmi: &'r Rmi<C, P>,
}

impl<'r, C: SmcConduit, P: PageSource> DelegatedBlock<'r, C, P> {
    /// Allocates `2^order` contiguous pages and delegates them.
    ///
    /// # Errors
    ///
    /// [`MemError::NoMemory`], or the RMM's error after the part delegated
    /// has been undelegated again (the block is freed, or leaked if some
    /// granule could not be undelegated).
    pub(crate) fn alloc(rmi: &'r Rmi<C, P>, order: u32) -> Result<Self, MemError> {
        let block = rmi.pages().alloc_block(order).ok_or(MemError::NoMemory)?;
        let range = P::block_range(&block);
        let mut stuck = 0;
        match delegate_range(rmi.smc(), range, &mut |_| stuck += 1) {
            // INVARIANT: The whole range was delegated.
            Ok(()) => Ok(Self {
                block: ManuallyDrop::new(block),
                range,
                rmi,
            }),
            Err(e) => {
                if stuck > 0 {
                    rmi.leak_block(block, stuck);
                }
                Err(e.into())
            }
        }
    }

    /// The granules of the block.
    pub(crate) fn range(&self) -> GranuleRange {
        self.range
    }
}

impl<C: SmcConduit, P: PageSource> Drop for DelegatedBlock<'_, C, P> {
    fn drop(&mut self) {
        let mut stuck = 0;
        // Refusals are counted through `stuck`.
        let _ = undelegate_range(self.rmi.smc(), self.range, &mut |_| stuck += 1);
        // SAFETY: `drop` runs once and `block` is not used after this.
        let block = unsafe { ManuallyDrop::take(&mut self.block) };
        if stuck > 0 {
            self.rmi.leak_block(block, stuck);
        }
    }
}
