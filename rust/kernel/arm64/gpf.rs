// SPDX-License-Identifier: GPL-2.0

//! Granule protection faults (FEAT_RME): reports of host accesses to memory
//! given to another physical address space, e.g. delegated to the Realm
//! world.
//!
//! The kernel handles the fault itself (a signal, a uaccess fixup, or an
//! oops); a [`Registration`] only hears about it first, to name the owner.
//!
//! C header: [`arch/arm64/include/asm/rmi.h`](srctree/arch/arm64/include/asm/rmi.h)

use crate::{
    bindings,
    error::{
        to_result,
        Error, //
    },
    ffi::{
        c_int,
        c_ulong,
        c_void, //
    },
    prelude::*,
    types::Opaque,
};
use core::marker::PhantomData;

/// One granule protection fault.
#[derive(Clone, Copy, Debug)]
pub struct GpfInfo {
    /// The faulting virtual address.
    pub far: u64,
    /// The exception syndrome.
    pub esr: u64,
    /// The physical address, when the kernel could tell (kernel addresses).
    pub pa: Option<u64>,
    /// Whether user space took the fault.
    pub user: bool,
}

/// What hears about granule protection faults.
pub trait GpfHandler {
    /// Called for each fault, before the kernel handles it, in the context
    /// of the fault: possibly with interrupts off or locks held, so it must
    /// not sleep or take locks that the faulting context may hold.
    fn on_gpf(info: &GpfInfo);
}

/// A registered [`GpfHandler`]; dropping it unregisters.
///
/// # Invariants
///
/// `nb` is on the GPF notifier chain from initialisation to drop.
#[pin_data(PinnedDrop)]
pub struct Registration<T: GpfHandler> {
    #[pin]
    nb: Opaque<bindings::notifier_block>,
    _handler: PhantomData<T>,
}

// SAFETY: The notifier block is only used by the chain, which serialises
// registration; unregistering may run on any thread.
unsafe impl<T: GpfHandler> Send for Registration<T> {}

// SAFETY: `&Registration` gives no access to anything.
unsafe impl<T: GpfHandler> Sync for Registration<T> {}

impl<T: GpfHandler> Registration<T> {
    /// Registers `T` to hear about granule protection faults.
    pub fn new() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            nb <- Opaque::try_ffi_init(|slot: *mut bindings::notifier_block| {
                // SAFETY: `slot` is valid for writes (`try_ffi_init`).
                unsafe {
                    slot.write(bindings::notifier_block {
                        notifier_call: Some(Self::notifier_call),
                        next: core::ptr::null_mut(),
                        priority: 0,
                    })
                };
                // `PinnedDrop` unregisters the block before it goes.
                // SAFETY: `slot` is initialised and pinned.
                to_result(unsafe { bindings::arm64_gpf_notifier_register(slot) })
            }),
            _handler: PhantomData,
        })
    }

    /// # Safety
    ///
    /// Called by the GPF notifier chain with a `struct arm64_gpf_info`.
    unsafe extern "C" fn notifier_call(
        _nb: *mut bindings::notifier_block,
        _action: c_ulong,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: The chain passes the fault's `arm64_gpf_info`, live for the call.
        let info = unsafe { &*data.cast::<bindings::arm64_gpf_info>() };
        T::on_gpf(&GpfInfo {
            // CAST: `unsigned long` is 64 bits wide on arm64.
            far: info.far as u64,
            // CAST: As above.
            esr: info.esr as u64,
            pa: info.pa_valid.then_some(info.pa),
            user: info.user,
        });
        // CAST: NOTIFY_DONE is 0.
        bindings::NOTIFY_DONE as c_int
    }
}

#[pinned_drop]
impl<T: GpfHandler> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // Unregistering waits for running callbacks (RCU).
        // SAFETY: Registered since initialisation (type invariant).
        unsafe { bindings::arm64_gpf_notifier_unregister(self.nb.get()) };
    }
}

/// Maps the `size` bytes of physical memory from frame `pfn` at the start
/// of `vma` (`remap_pfn_range()`): special page table entries, which GUP
/// refuses, in a `VM_PFNMAP | VM_IO` mapping left out of core dumps. For
/// memory in another physical address space: a user access faults (the
/// kernel signals it), and the kernel never reaches the memory through the
/// mapping (vmsplice, O_DIRECT, `/proc/pid/mem`).
///
/// # Safety
///
/// The frames are the caller's to show to the process, and stay so (not
/// freed nor reused) until `vma` is gone, e.g. because the mapping holds
/// the file whose release frees them.
pub unsafe fn map_frames(vma: &crate::mm::virt::VmaNew, pfn: usize, size: usize) -> Result {
    let raw = vma.as_ptr();
    // `vma` is being set up by its mmap hook (type invariant of `VmaNew`);
    // `remap_pfn_range()` checks that the range fits it; the frames are the
    // caller's (function's safety requirements).
    // SAFETY: As above.
    to_result(unsafe {
        bindings::remap_pfn_range(raw, vma.start(), pfn, size, (*raw).vm_page_prot)
    })
}
