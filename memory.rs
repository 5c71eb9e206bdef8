// SPDX-License-Identifier: GPL-2.0

//! A realm's memory mappings: which memslots a realm accepts, serving its
//! stage-2 faults (guest_memfd pages at protected IPAs, the VMM's pages at
//! their unprotected aliases), and unmapping both, handing guest pages back
//! to guest_memfd.
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
    GRANULE_SHIFT,
    GRANULE_SIZE, //
};
use crate::data::{
    DelegatedGuestPage,
    GuestPageRef,
    GuestPages,
    MappedGuestPage, //
};
use crate::exit::FaultKind;
use crate::granule::{
    PageSource,
    Rmi, //
};
use crate::rmi_cmds::{
    data_unmapped,
    page_mapped,
    rtt_data_map_call,
    rtt_data_unmap_call,
    rtt_read_entry,
    rtt_unprot_map,
    rtt_unprot_unmap_call,
    unmapped_to,
    Ripas,
    RttEntryState,
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
            Err(e) => at = past_unmapped(at, top, e).map_err(|e| (done, e))?,
        }
        resched();
    }
    Ok(done)
}

/// Where an unmap from `at` goes on after the RMM refused with `e`: past
/// the block without tables the walk stopped in (`RMI_ERROR_RTT` above
/// level 3: the host maps only pages, so nothing is mapped there), at most
/// `top`. Any other refusal is returned.
fn past_unmapped(at: Ipa, top: Ipa, e: RmiError) -> Result<Ipa, RmiError> {
    // CAST: The index of ERROR_RTT is a level.
    let skip = RttLevel::new(e.index() as i8)
        .filter(|l| e.status() == RmiStatus::ErrorRtt && l.get() < 3)
        .map(RttLevel::entry_size)
        .ok_or(e)?;
    let next = at
        .align_down(skip)
        .get()
        .checked_add(skip)
        .map_or(top.get(), |n| n.min(top.get()));
    Ipa::new(next).ok_or(RmiError::bad_output())
}

/// Unmaps every NS page mapped in `[base, top)` (unprotected half) of
/// realm `rd` (`RMI_RTT_UNPROT_UNMAP`). Like [`unmap_protected`], for
/// where KVM holds `mmu_lock`; the pages stay the host's throughout.
///
/// # Errors
///
/// An unexpected RMM answer; the rest of the range stays mapped.
pub(crate) fn unmap_shared(
    smc: &impl SmcConduit,
    rd: Granule,
    base: Ipa,
    top: Ipa,
    resched: &mut dyn FnMut(),
) -> Result<(), RmiError> {
    let mut at = base;
    while at.get() < top.get() {
        let answer = run_no_memory(smc, &rtt_unprot_unmap_call(rd, at, top))
            .and_then(|out| unmapped_to(&out, at, top));
        at = match answer {
            Ok(next) => next,
            Err(e) => past_unmapped(at, top, e)?,
        };
        resched();
    }
    Ok(())
}

/// Why a page could not be mapped at a realm IPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapError {
    /// The level-3 RTT for the IPA is missing: create it, then try again.
    NeedRtt,
    /// The IPA's entry maps something already (or, for a guest page, the
    /// page is not the host's to delegate: it is mapped already).
    Mapped,
    /// An unexpected RMM answer.
    Rmi(RmiError),
}

/// Sorts an `RMI_ERROR_RTT` of a level-3 map: a missing table above
/// level 3, or a live entry at level 3.
fn map_error(e: RmiError) -> MapError {
    // CAST: The index of ERROR_RTT is a level.
    match RttLevel::new(e.index() as i8).filter(|_| e.status() == RmiStatus::ErrorRtt) {
        Some(l) if l.get() < 3 => MapError::NeedRtt,
        Some(_) => MapError::Mapped,
        None => MapError::Rmi(e),
    }
}

/// Maps the guest page `page` (from guest_memfd, its reference handed
/// over) at the protected IPA `ipa` of realm `rd` (`RMI_RTT_DATA_MAP`): it
/// is delegated, and zeroed by the RMM; the entry keeps its RIPAS. On
/// success the mapping owns the page's reference and delegation, until
/// [`unmap_protected`] gives them back.
///
/// # Errors
///
/// On every error the page is back in the NS PAS and its reference put
/// (or, if it cannot be undelegated, leaked and counted).
pub(crate) fn map_protected<C: SmcConduit, P: PageSource + GuestPages>(
    rmi: &Rmi<C, P>,
    rd: Granule,
    ipa: Ipa,
    page: GuestPageRef<'_, P>,
) -> Result<MappedGuestPage, MapError> {
    let data = match DelegatedGuestPage::delegate(rmi, page) {
        Ok(data) => data,
        // Not NS: mapped already (by a fault on another vCPU, say).
        Err((Some(_), e)) if e.status() == RmiStatus::ErrorInput => return Err(MapError::Mapped),
        Err((_, e)) => return Err(MapError::Rmi(e)),
    };
    // On every error `data` drops: undelegated, then put.
    let call = rtt_data_map_call(rd, ipa, data.granule()).map_err(MapError::Rmi)?;
    run_no_memory(rmi.smc(), &call)
        .and_then(|out| page_mapped(&out, ipa))
        .map_err(map_error)?;
    Ok(data.into_mapping())
}

/// How serving a fault with [`map_with_rtts`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServeError<E> {
    /// The map failed (`NeedRtt` again: the RMM does not see the RTT that
    /// was just created).
    Map(MapError),
    /// Creating the RTT failed.
    Grow(E),
}

/// Runs `map` (a level-3 map, under KVM's `mmu_lock`), and when it needs
/// the level-3 RTT, `grow` (which creates it, under the realm's mutex,
/// without `mmu_lock`) and `map` again.
pub(crate) fn map_with_rtts<T, E>(
    mut map: impl FnMut() -> Result<T, MapError>,
    mut grow: impl FnMut() -> Result<(), E>,
) -> Result<T, ServeError<E>> {
    match map() {
        Err(MapError::NeedRtt) => grow().map_err(ServeError::Grow)?,
        other => return other.map_err(ServeError::Map),
    }
    // RTTs go only at teardown: one creation is enough.
    map().map_err(ServeError::Map)
}

/// Whether the protected IPA `ipa` of realm `rd` maps a page the realm can
/// use (assigned, RIPAS RAM): a fault there was spurious, already served.
/// Otherwise (DESTROYED after the host took a page away) the realm cannot
/// use it until it changes the RIPAS itself.
pub(crate) fn protected_page_usable(
    smc: &impl SmcConduit,
    rd: Granule,
    ipa: Ipa,
) -> Result<bool, RmiError> {
    let leaf = RttLevel::new(3).ok_or(RmiError::bad_output())?;
    let entry = rtt_read_entry(smc, rd, ipa, leaf)?;
    Ok(entry.level == leaf && entry.state == RttEntryState::Assigned && entry.ripas == Ripas::Ram)
}

/// Maps the host's NS page `pa` at the unprotected IPA `alias` of realm
/// `rd`, writable if `write` (`RMI_RTT_UNPROT_MAP`).
///
/// # Errors
///
/// [`MapError::Mapped`] if the entry maps another page, or the same one
/// with other permissions: unmap it first.
pub(crate) fn map_shared(
    smc: &impl SmcConduit,
    rd: Granule,
    alias: Ipa,
    pa: Granule,
    write: bool,
) -> Result<(), MapError> {
    rtt_unprot_map(smc, rd, alias, pa, write).map_err(map_error)
}

/// What the host knows of the memslot holding a faulting guest frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotFacts {
    /// Its protected memory comes from guest_memfd.
    pub(crate) gmem: bool,
    /// Its shared memory is read-only to the guest.
    pub(crate) readonly: bool,
    /// The frame's memory attribute is PRIVATE (the default of realm
    /// guest_memfd memslots; a VMM that manages attributes may change it).
    pub(crate) private: bool,
}

/// What planning a fault reads of KVM ([`plan_fault_in_order`]).
pub(crate) trait FaultLookup {
    /// KVM's count of MMU invalidations (`mmu_invalidate_seq`), with the
    /// read barrier that orders it before what is read next.
    fn invalidate_seq(&mut self) -> u64;

    /// What the memslot holding `gfn` is, and the frame's attribute; `None`
    /// without a memslot.
    fn slot_facts(&mut self, gfn: u64) -> Option<SlotFacts>;
}

/// Plans `fault` ([`plan_fault`]) from what `host` reads, in the order that
/// keeps a concurrent attribute change or invalidation from being missed,
/// as x86's `kvm_faultin_pfn()`: the invalidation count first, then the
/// memslot and attribute. Returns the plan and that count: the page looked
/// up for the plan may be mapped only if, under `mmu_lock`, the count has
/// not moved and no invalidation of the frame is running (KVM's
/// `mmu_invalidate_retry_gfn()`), which every attribute change is wrapped in.
pub(crate) fn plan_fault_in_order(
    host: &mut impl FaultLookup,
    fault: &RealmFault,
) -> (FaultPlan, u64) {
    let seq = host.invalidate_seq();
    let facts = host.slot_facts(fault.gpa >> GRANULE_SHIFT);
    (plan_fault(fault, facts), seq)
}

/// A stage-2 fault of a realm, as the RMM reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RealmFault {
    /// The IPA with the unprotected bit cleared, page aligned.
    pub(crate) gpa: u64,
    /// At the protected IPA (else its unprotected alias).
    pub(crate) protected: bool,
    /// The kind of fault.
    pub(crate) kind: FaultKind,
    /// Whether it was a write, when the RMM said (it does only for
    /// emulatable accesses at unprotected IPAs).
    pub(crate) write: Option<bool>,
}

/// What to do about a realm's stage-2 fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultPlan {
    /// Map the guest_memfd page of the frame at the protected IPA.
    MapProtected,
    /// Map the memslot's user page at the unprotected alias, writable if
    /// `write`; `replace`: a read-only mapping is there, unmap it first.
    MapShared {
        /// Map it writable (the guest wrote).
        write: bool,
        /// Unmap what is there first.
        replace: bool,
    },
    /// No memory there: emulate the access (MMIO), as KVM does for a
    /// normal VM.
    Emulate,
    /// Tell the VMM (`KVM_EXIT_MEMORY_FAULT`), asking for the frame to be
    /// private or shared.
    MemoryFault {
        /// The guest wanted it private.
        private: bool,
    },
}

/// Decides how to serve `fault`, given the memslot holding its frame.
///
/// Protected IPAs are served from guest_memfd while the frame is private;
/// their unprotected aliases from the memslot's user mapping while it is
/// shared. An access to the side the frame's attribute is not on is the
/// VMM's to convert (`KVM_EXIT_MEMORY_FAULT`), as upstream KVM has it for
/// every VM with private memory. A read maps read-only, so that
/// copy-on-write and the zero page keep working; a write maps writable,
/// and a permission fault (a write to a read-only mapping: the RMM injects
/// aborts for instruction fetches there) upgrades.
pub(crate) fn plan_fault(fault: &RealmFault, slot: Option<SlotFacts>) -> FaultPlan {
    if fault.protected {
        return match slot {
            Some(s) if s.gmem && s.private && fault.kind == FaultKind::Translation => {
                FaultPlan::MapProtected
            }
            _ => FaultPlan::MemoryFault { private: true },
        };
    }
    let Some(slot) = slot else {
        return FaultPlan::Emulate;
    };
    if slot.private {
        return FaultPlan::MemoryFault { private: false };
    }
    let write = fault.write == Some(true) || fault.kind == FaultKind::Permission;
    if write && slot.readonly {
        return FaultPlan::Emulate;
    }
    match fault.kind {
        FaultKind::Translation | FaultKind::AccessFlag => FaultPlan::MapShared {
            write,
            replace: false,
        },
        FaultKind::Permission => FaultPlan::MapShared {
            write: true,
            replace: true,
        },
        FaultKind::Other => FaultPlan::MemoryFault { private: false },
    }
}

/// Frames a protected fault maps at most, its own included, when the others
/// are private guest_memfd memory too: an aligned window of 64 KiB.
/// guest_memfd has order-0 folios only, so without it each 4 KiB a realm
/// touches first is an exit of its own.
pub(crate) const FAULT_AROUND_FRAMES: u32 = 16;

/// The other frames of the aligned window of `frames` frames around `gfn`,
/// in order: those a protected fault at `gfn` maps too (where private
/// guest_memfd memory backs them). The window lies in one level-3 RTT, the
/// one the fault needs: `frames` is a power of two up to the 512 frames of
/// an RTT; any other `frames` (0 or 1 to turn it off) is 1, the fault alone.
pub(crate) fn fault_around(gfn: u64, frames: u64) -> impl Iterator<Item = u64> {
    let frames = if frames.is_power_of_two() && frames <= 512 {
        frames
    } else {
        1
    };
    let base = gfn & !(frames - 1);
    // No wrap: `base` is aligned to `frames`, so the window ends at or
    // below the next multiple, which fits unless `gfn` is in the last one.
    let end = base.saturating_add(frames);
    (base..end).filter(move |&g| g != gfn)
}

/// The frames of [`fault_around`] that a protected fault at `gfn` maps too,
/// from what `host` reads: those private in a guest_memfd memslot, as a
/// protected fault there would be planned ([`plan_fault`]). Read after the
/// fault's invalidation count, as its own frame's facts are.
pub(crate) fn plan_fault_around<'a>(
    host: &'a mut impl FaultLookup,
    gfn: u64,
    frames: u64,
) -> impl Iterator<Item = u64> + 'a {
    fault_around(gfn, frames).filter(|&g| host.slot_facts(g).is_some_and(|s| s.gmem && s.private))
}

/// Whether a RIPAS change of `[base, top)` is one the host carries out:
/// every frame of it lies in a guest_memfd memslot (`gmem_slot_end(gfn)`:
/// the frame past the end of the guest_memfd memslot holding `gfn`, or
/// `None`). Other ranges are refused (the RMM lets the host reject a
/// request): RTTs for IPAs with no memory behind them would be host memory
/// the guest controls.
pub(crate) fn ripas_range_backed(
    base: u64,
    top: u64,
    mut gmem_slot_end: impl FnMut(u64) -> Option<u64>,
) -> bool {
    let mut gfn = base >> GRANULE_SHIFT;
    let Some(end) = top
        .checked_add(GRANULE_SIZE - 1)
        .map(|t| t >> GRANULE_SHIFT)
    else {
        return false;
    };
    if gfn >= end {
        return false;
    }
    while gfn < end {
        match gmem_slot_end(gfn) {
            Some(next) if next > gfn => gfn = next,
            _ => return false,
        }
    }
    true
}
