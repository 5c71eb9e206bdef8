// SPDX-License-Identifier: GPL-2.0

//! `KVM_ARM_RMI_POPULATE`: checking the request and accounting its progress.
//!
//! Part of the sans-IO core. The ioctl copies initial contents into a
//! realm's protected memory, possibly in several calls: each call does part
//! of the range and writes the structure back advanced by what it did, so
//! that `base + size` and `source_uaddr + size` never change.

use crate::addr::{
    Ipa,
    GRANULE_SIZE, //
};

/// `KVM_ARM_RMI_POPULATE_FLAGS_MEASURE`: add the contents to the Realm
/// Initial Measurement.
pub(crate) const POPULATE_FLAGS_MEASURE: u32 = 1 << 0;

/// The ioctl's argument, `struct kvm_arm_rmi_populate`, as plain values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PopulateArgs {
    /// First protected IPA to fill.
    pub(crate) base: u64,
    /// Bytes left to fill.
    pub(crate) size: u64,
    /// The VMM's address of the contents of `base`.
    pub(crate) source_uaddr: u64,
    /// `POPULATE_FLAGS_*`.
    pub(crate) flags: u32,
    /// Must be 0.
    pub(crate) reserved: u32,
}

/// Why a request is refused (all `EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PopulateError {
    /// `reserved` is not 0, or an unknown flag is set.
    Reserved,
    /// `base`, `size` or `source_uaddr` is not granule aligned.
    Unaligned,
    /// `source_uaddr` is 0.
    NoSource,
    /// `base + size` or `source_uaddr + size` wraps around.
    Wraps,
    /// The range reaches beyond the protected half of the IPA space.
    NotProtected,
}

/// A checked, non-empty request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PopulateRange {
    /// First IPA, granule aligned, in the protected half.
    pub(crate) base: Ipa,
    /// Granules to fill, at least one.
    pub(crate) granules: u64,
    /// The VMM's address of the first granule's contents.
    pub(crate) source_uaddr: u64,
    /// Whether the contents are measured.
    pub(crate) measure: bool,
}

/// Checks `args` for a realm whose IPA space is `ipa_bits` wide (the top
/// bit selects the unprotected alias). `Ok(None)`: nothing to do (`size` 0).
///
/// Order: reserved fields and flags, alignment, the empty request, then the
/// source and the range, so that an empty request with bad flags is still
/// refused.
pub(crate) fn check(
    args: &PopulateArgs,
    ipa_bits: u8,
) -> Result<Option<PopulateRange>, PopulateError> {
    if args.reserved != 0 || args.flags & !POPULATE_FLAGS_MEASURE != 0 {
        return Err(PopulateError::Reserved);
    }
    let aligned = |v: u64| v % GRANULE_SIZE == 0;
    if !aligned(args.base) || !aligned(args.size) || !aligned(args.source_uaddr) {
        return Err(PopulateError::Unaligned);
    }
    if args.size == 0 {
        return Ok(None);
    }
    if args.source_uaddr == 0 {
        return Err(PopulateError::NoSource);
    }
    let top = args
        .base
        .checked_add(args.size)
        .ok_or(PopulateError::Wraps)?;
    args.source_uaddr
        .checked_add(args.size)
        .ok_or(PopulateError::Wraps)?;
    let protected_top = 1u64
        .checked_shl(u32::from(ipa_bits).saturating_sub(1))
        .ok_or(PopulateError::NotProtected)?;
    if ipa_bits == 0 || top > protected_top {
        return Err(PopulateError::NotProtected);
    }
    let base = Ipa::new(args.base).ok_or(PopulateError::NotProtected)?;
    Ok(Some(PopulateRange {
        base,
        granules: args.size / GRANULE_SIZE,
        source_uaddr: args.source_uaddr,
        measure: args.flags & POPULATE_FLAGS_MEASURE != 0,
    }))
}

/// Records in `args` that its first `granules` granules are done: `base`
/// and `source_uaddr` move on by as much as `size` shrinks. More than is
/// left counts as all of it.
pub(crate) fn advance(args: &mut PopulateArgs, granules: u64) {
    let bytes = granules.saturating_mul(GRANULE_SIZE).min(args.size);
    // `check` bounded `base + size` and `source_uaddr + size`, and
    // `bytes <= size`: these never saturate for a checked request.
    args.base = args.base.saturating_add(bytes);
    args.source_uaddr = args.source_uaddr.saturating_add(bytes);
    args.size -= bytes;
}

/// Granules one [`PopulateHost::fill`] covers at most, between which the
/// caller checks for signals and lets others run.
pub(crate) const POPULATE_CHUNK: u64 = 512;

/// What [`populate`] needs from its surroundings: in the kernel the realm
/// VM and `kvm_gmem_populate()`, in the model a fake guest_memfd.
pub(crate) trait PopulateHost {
    /// Why the host stopped (an errno in the kernel).
    type Error;

    /// Gets the realm ready for a non-empty request: creates it if needed,
    /// and refuses once it has run.
    fn begin(&mut self) -> Result<(), Self::Error>;

    /// Whether the calling task has a signal pending.
    fn interrupted(&mut self) -> bool;

    /// Fills at most `granules` (at least 1) granules from `ipa` with the
    /// contents at `source_uaddr`, as `kvm_gmem_populate()` does: how many
    /// were done in order from the first, or why none was.
    fn fill(
        &mut self,
        ipa: Ipa,
        source_uaddr: u64,
        granules: u64,
        measure: bool,
    ) -> Result<u64, Self::Error>;

    /// Lets others run between chunks (it may sleep).
    fn resched(&mut self);
}

/// Why [`populate`] did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PopulateFailure<E> {
    /// The request is malformed (`EINVAL`).
    Invalid(PopulateError),
    /// A signal was pending before the first page (`EINTR`); the request
    /// can be repeated as it is.
    Interrupted,
    /// The host claimed no progress, or more than it was asked for, without
    /// an error (`EIO`): a bug below us, so stop rather than loop.
    Stalled,
    /// The host's error, before any page was done.
    Host(E),
}

/// `KVM_ARM_RMI_POPULATE` on a realm whose IPA space is `ipa_bits` wide:
/// checks `args`, then fills its range chunk by chunk, advancing `args` by
/// every granule done.
///
/// Partial progress is success, as `kvm_gmem_populate()` has it: the call
/// stops after the chunk in which a signal came or an error was met, and
/// the error (or `EINTR`) is returned only when no page was done, so that
/// the VMM's next call, from where this one stopped, learns it.
pub(crate) fn populate<H: PopulateHost>(
    args: &mut PopulateArgs,
    ipa_bits: u8,
    host: &mut H,
) -> Result<(), PopulateFailure<H::Error>> {
    let Some(request) = check(args, ipa_bits).map_err(PopulateFailure::Invalid)? else {
        return Ok(());
    };
    host.begin().map_err(PopulateFailure::Host)?;
    if host.interrupted() {
        return Err(PopulateFailure::Interrupted);
    }
    let mut progress = false;
    while args.size > 0 {
        let granules = (args.size / GRANULE_SIZE).min(POPULATE_CHUNK);
        // `check` bounded the range to the protected half.
        let ipa =
            Ipa::new(args.base).ok_or(PopulateFailure::Invalid(PopulateError::NotProtected))?;
        let done = match host.fill(ipa, args.source_uaddr, granules, request.measure) {
            Ok(done) if done == 0 || done > granules => return Err(PopulateFailure::Stalled),
            Ok(done) => done,
            Err(_) if progress => return Ok(()),
            Err(e) => return Err(PopulateFailure::Host(e)),
        };
        advance(args, done);
        progress = true;
        if args.size > 0 && host.interrupted() {
            return Ok(());
        }
        host.resched();
    }
    Ok(())
}
