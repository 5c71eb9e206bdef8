// SPDX-License-Identifier: GPL-2.0

//! Stateful RMI operations (SRO): commands that answer `RMI_INCOMPLETE` and
//! are driven to the end with `RMI_OP_CONTINUE`, `RMI_OP_MEM_DONATE`,
//! `RMI_OP_MEM_RECLAIM` and `RMI_OP_CANCEL` (rmi-abi.md section 4).
//!
//! Part of the sans-IO core. Donated granules stay owned by the host, as
//! [`DelegatedGranule`]s in the caller's [`GranuleSet`], until the RMM gives
//! them back, so a failed or abandoned operation can never free a page the
//! RMM still uses.

use crate::granule::{
    DelegatedGranule,
    GranuleSet,
    MemError,
    PageSource,
    Rmi, //
};
use crate::rmi_cmds::{
    call_retrying,
    op_cancel,
    op_continue,
    op_mem_donate,
    op_mem_reclaim,
    OpHandle,
    SmcConduit, //
};
use crate::rmi_smc::{
    rmi_result,
    OpMemReq,
    RmiAddrRangeDesc,
    RmiBlockSize,
    RmiDonateReq,
    RmiError,
    RmiMemState,
    SmcRegs, //
};

/// Entries of one address list: a 4 KiB NS page of 64-bit descriptors (the
/// RMM never reads or writes a list across a granule boundary).
pub(crate) const LIST_ENTRIES: usize = 512;

/// Calls one operation may take before the host calls the RMM broken. Far
/// above any real operation (a donation of 512 granules per call).
pub(crate) const SRO_STEP_LIMIT: u32 = 1 << 16;

/// Why an operation did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SroError {
    /// The RMM's own result (or a malformed answer).
    Rmi(RmiError),
    /// The host could not provide the memory asked for (`ENOMEM`).
    NoMemory,
    /// The RMM asked for memory in a shape the host does not provide:
    /// blocks above 4 KiB, or a contiguous run of more than one granule.
    UnsupportedDonation,
}

impl From<RmiError> for SroError {
    fn from(e: RmiError) -> Self {
        Self::Rmi(e)
    }
}

impl From<MemError> for SroError {
    fn from(e: MemError) -> Self {
        match e {
            MemError::NoMemory => Self::NoMemory,
            MemError::Rmi(e) => Self::Rmi(e),
        }
    }
}

/// Runs the command in `first` to its end, answering each `RMI_INCOMPLETE`.
///
/// On success returns the final registers, whose x1.. are the command's
/// results. When the host cannot meet a donation request and the operation
/// can be cancelled, it is cancelled (and drained of what it gives back)
/// and the host's reason is returned.
///
/// # Errors
///
/// The command's error, or [`SroError::NoMemory`] /
/// [`SroError::UnsupportedDonation`]. If a donation cannot be met and the
/// RMM does not allow a cancel, the operation is left pending in the RMM
/// (its granules stay recorded in `donations`).
pub(crate) fn run<'r, C: SmcConduit, P: PageSource>(
    rmi: &'r Rmi<C, P>,
    first: &SmcRegs,
    donations: &mut impl GranuleSet<'r, C, P>,
) -> Result<SmcRegs, SroError> {
    run_from(rmi, first, donations, &mut || rmi.pages().alloc())
}

/// [`run`], with the pages to donate taken from `supply` (which may fall
/// back to the allocator): for operations that cannot be cancelled, whose
/// pages the caller allocated before starting them.
///
/// # Errors
///
/// As [`run`].
pub(crate) fn run_from<'r, C: SmcConduit, P: PageSource>(
    rmi: &'r Rmi<C, P>,
    first: &SmcRegs,
    donations: &mut impl GranuleSet<'r, C, P>,
    supply: &mut dyn FnMut() -> Option<P::Page>,
) -> Result<SmcRegs, SroError> {
    // The list page is taken first: nothing can be left half done if the
    // host is out of memory.
    let list = rmi.pages().alloc().ok_or(SroError::NoMemory)?;
    let smc = rmi.smc();
    let mut out = call_retrying(smc, first);
    let mut cancelled_for = None;
    // Only the command's first `RMI_INCOMPLETE` carries the handle in x1;
    // the `RMI_OP_*` answers use x1 for their own results.
    let mut handle = None;
    for _ in 0..SRO_STEP_LIMIT {
        let err = match rmi_result(out.x(0)) {
            Ok(()) => return cancelled_for.map_or(Ok(out), Err),
            Err(e) => e,
        };
        let Some(incomplete) = err.incomplete() else {
            return Err(cancelled_for.unwrap_or(SroError::Rmi(err)));
        };
        let handle = *handle.get_or_insert(OpHandle(out.x(1)));
        out = match incomplete.mem_req {
            OpMemReq::None => op_continue(smc, handle, false),
            OpMemReq::Reclaim => reclaim(rmi, handle, &list, donations)?,
            OpMemReq::Donate => match donate(
                rmi,
                handle,
                RmiDonateReq(out.x(2)),
                &list,
                donations,
                supply,
            ) {
                Ok(regs) => regs,
                Err(e) if incomplete.can_cancel && cancelled_for.is_none() => {
                    cancelled_for = Some(e);
                    op_cancel(smc, handle)
                }
                Err(e) => return Err(e),
            },
        };
    }
    Err(SroError::Rmi(RmiError::bad_output()))
}

/// Runs the command in `first`, which never asks for memory, to its end:
/// each `RMI_INCOMPLETE` is answered with `RMI_OP_CONTINUE`. For the RTT
/// map and unmap commands, which may yield but hold no operation memory,
/// and run where the host cannot allocate (under KVM's `mmu_lock`).
///
/// # Errors
///
/// The command's error; a request for memory is a malformed answer.
pub(crate) fn run_no_memory(smc: &impl SmcConduit, first: &SmcRegs) -> Result<SmcRegs, RmiError> {
    let mut out = call_retrying(smc, first);
    let mut handle = None;
    for _ in 0..SRO_STEP_LIMIT {
        let err = match rmi_result(out.x(0)) {
            Ok(()) => return Ok(out),
            Err(e) => e,
        };
        match err.incomplete() {
            Some(i) if i.mem_req == OpMemReq::None => {
                let handle = *handle.get_or_insert(OpHandle(out.x(1)));
                out = op_continue(smc, handle, false);
            }
            Some(_) => return Err(RmiError::bad_output()),
            None => return Err(err),
        }
    }
    Err(RmiError::bad_output())
}

/// Answers a donation request with single-granule descriptors, and records
/// the granules the RMM took. Returns the answer to `RMI_OP_MEM_DONATE`.
///
/// If the host runs out of pages part way, it donates what it has (the RMM
/// asks again for the rest); with none at all it fails.
fn donate<'r, C: SmcConduit, P: PageSource>(
    rmi: &'r Rmi<C, P>,
    handle: OpHandle,
    req: RmiDonateReq,
    list: &P::Page,
    donations: &mut impl GranuleSet<'r, C, P>,
    supply: &mut dyn FnMut() -> Option<P::Page>,
) -> Result<SmcRegs, SroError> {
    if req.block_size() != RmiBlockSize::Page || (req.contiguous() && req.block_count() > 1) {
        return Err(SroError::UnsupportedDonation);
    }
    // More than a list holds is asked for again after this batch.
    let wanted = usize::try_from(req.block_count())
        .unwrap_or(LIST_ENTRIES)
        .min(LIST_ENTRIES);
    if wanted == 0 {
        return Err(SroError::Rmi(RmiError::bad_output()));
    }
    if !donations.reserve(wanted) {
        return Err(SroError::NoMemory);
    }
    // Every page offered is recorded in `donations` at once (no second
    // array on the kernel stack); those the RMM does not take are taken
    // out again by address, from the list.
    let state = req.state();
    let mut offered = 0;
    let mut failure = None;
    while offered < wanted {
        match offer(rmi, state, list, offered, supply) {
            Ok(g) => donations.push(g),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        offered += 1;
    }
    if offered == 0 {
        return Err(failure.unwrap_or(SroError::NoMemory));
    }
    // CAST: At most LIST_ENTRIES (512).
    let out = op_mem_donate(rmi.smc(), handle, P::granule(list), offered as u64);
    let taken = match rmi_result(out.x(0)) {
        Ok(()) => out.x(1),
        // x1 is granules taken, except when the operation turned to
        // reclaiming after a failed donation: then the RMM may hold any of
        // the batch, and keeping them all recorded is the safe choice.
        Err(e) => match e.incomplete() {
            Some(i) if i.mem_req == OpMemReq::Reclaim => u64::MAX,
            Some(_) => out.x(1),
            None => 0,
        },
    };
    for i in 0..offered {
        // CAST: `i` < 512.
        if (i as u64) < taken {
            continue;
        }
        let mut raw = [0u64];
        // The host wrote these entries itself.
        if !P::read_words(list, i, &mut raw) {
            continue;
        }
        let desc = RmiAddrRangeDesc(raw[0]);
        if let Some(g) = donations.take(desc.base()) {
            match state {
                // Undelegates, or leaks if the RMM refuses.
                RmiMemState::Delegated => drop(g),
                RmiMemState::Undelegated => drop(g.returned_undelegated()),
            }
        }
    }
    Ok(out)
}

/// Gets one page ready for a donation in `state` and writes its descriptor
/// at entry `i` of `list`.
fn offer<'r, C: SmcConduit, P: PageSource>(
    rmi: &'r Rmi<C, P>,
    state: RmiMemState,
    list: &P::Page,
    i: usize,
    supply: &mut dyn FnMut() -> Option<P::Page>,
) -> Result<DelegatedGranule<'r, C, P>, SroError> {
    let page = supply().ok_or(SroError::NoMemory)?;
    let desc = RmiAddrRangeDesc::new(P::granule(&page), RmiBlockSize::Page, 1, state)
        .ok_or(SroError::Rmi(RmiError::bad_output()))?;
    if !P::write_words(list, i, &[desc.0]) {
        return Err(SroError::Rmi(RmiError::bad_output()));
    }
    Ok(match state {
        RmiMemState::Delegated => DelegatedGranule::delegate(rmi, page)?,
        // Recorded as delegated, which it is once the RMM takes it; if it
        // is not taken it leaves through `returned_undelegated`.
        RmiMemState::Undelegated => DelegatedGranule::assume_delegated(rmi, page),
    })
}

/// Takes back what the RMM returns, undelegating granules it returns
/// delegated, and frees them. Returns the answer to `RMI_OP_MEM_RECLAIM`.
fn reclaim<'r, C: SmcConduit, P: PageSource>(
    rmi: &'r Rmi<C, P>,
    handle: OpHandle,
    list: &P::Page,
    donations: &mut impl GranuleSet<'r, C, P>,
) -> Result<SmcRegs, SroError> {
    // CAST: LIST_ENTRIES is 512.
    let out = op_mem_reclaim(rmi.smc(), handle, P::granule(list), LIST_ENTRIES as u64);
    let written = match rmi_result(out.x(0)) {
        Ok(()) => out.x(1),
        Err(e) if e.incomplete().is_some() => out.x(1),
        Err(_) => 0,
    };
    let written = usize::try_from(written)
        .ok()
        .filter(|w| *w <= LIST_ENTRIES)
        .ok_or(RmiError::bad_output())?;
    let mut malformed = false;
    for i in 0..written {
        let mut raw = [0u64];
        if !P::read_words(list, i, &mut raw) {
            return Err(SroError::Rmi(RmiError::bad_output()));
        }
        let desc = RmiAddrRangeDesc(raw[0]);
        let Some(range) = desc.range() else {
            malformed = true;
            continue;
        };
        for g in range.iter() {
            // A granule the host never donated stays where it is.
            let Some(owned) = donations.take(g) else {
                malformed = true;
                continue;
            };
            match desc.state() {
                // Undelegates, or leaks if the RMM refuses.
                RmiMemState::Delegated => drop(owned),
                RmiMemState::Undelegated => drop(owned.returned_undelegated()),
            }
        }
    }
    if malformed {
        return Err(SroError::Rmi(RmiError::bad_output()));
    }
    Ok(out)
}
