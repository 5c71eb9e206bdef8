// SPDX-License-Identifier: GPL-2.0

//! The host's System RAM, as granule ranges (kernel shell).
//!
//! Memblock is gone once a module can load, so the ranges come from the
//! iomem resource tree ("System RAM"), which `walk_iomem_res_desc()` walks
//! for modules. This is the memory the RMM must track before any of it can
//! be delegated.

use core::ffi::{
    c_int,
    c_void, //
};

use kernel::ffi::c_ulong;

use kernel::{
    bindings,
    prelude::*, //
};

use crate::addr::{
    Granule,
    GranuleRange,
    GRANULE_SIZE, //
};

/// Where the walk collects ranges, and whether an allocation failed.
struct Collector {
    ranges: KVec<GranuleRange>,
    failed: bool,
}

/// Called by `walk_iomem_res_desc()` for each System RAM resource.
///
/// # Safety
///
/// `res` points to a valid `struct resource` for the call; `arg` is the
/// `Collector` passed to the walk, not otherwise borrowed meanwhile.
unsafe extern "C" fn collect(res: *mut bindings::resource, arg: *mut c_void) -> c_int {
    // SAFETY: Per the function's contract.
    let (res, collector) = unsafe { (&*res, &mut *arg.cast::<Collector>()) };
    // `end` is inclusive. RAM is page aligned; a partial granule at either
    // end is left out (never delegated).
    let base = res.start.div_ceil(GRANULE_SIZE).checked_mul(GRANULE_SIZE);
    let top = res.end.checked_add(1).map(|t| t & !(GRANULE_SIZE - 1));
    let range = match (base.and_then(Granule::new), top.and_then(Granule::new)) {
        (Some(b), Some(t)) => GranuleRange::new(b, t),
        _ => None,
    };
    if let Some(r) = range.filter(|r| !r.is_empty()) {
        if collector.ranges.push(r, GFP_KERNEL).is_err() {
            collector.failed = true;
            return -(bindings::ENOMEM as c_int);
        }
    }
    0
}

/// Every System RAM range, ascending.
pub(crate) fn system_ram() -> Result<KVec<GranuleRange>> {
    let mut collector = Collector {
        ranges: KVec::new(),
        failed: false,
    };
    // CAST: The flag and descriptor constants are small; `c_ulong` is 64-bit on arm64.
    let flags = (bindings::IORESOURCE_SYSTEM_RAM | bindings::IORESOURCE_BUSY) as c_ulong;
    // SAFETY: `collect` upholds the callback contract; `collector` outlives the walk.
    unsafe {
        bindings::walk_iomem_res_desc(
            bindings::IORES_DESC_NONE as c_ulong,
            flags,
            0,
            u64::MAX,
            (&raw mut collector).cast(),
            Some(collect),
        )
    };
    if collector.failed {
        return Err(ENOMEM);
    }
    Ok(collector.ranges)
}
