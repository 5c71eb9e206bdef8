// SPDX-License-Identifier: GPL-2.0

//! KVM on arm64, as a module that provides realm VMs sees it.
//!
//! A provider implements [`RealmOps`] and keeps a [`Registration`] while it
//! is loaded. KVM then creates VMs of type `KVM_VM_TYPE_ARM_REALM` and calls
//! the provider for their realm-specific steps. Each realm VM holds a
//! reference on the provider's module, so the module outlives its realms.
//!
//! The hooks and KVM internals used here are exported to `kvm_rmi` alone
//! (`EXPORT_SYMBOL_FOR_MODULES`, `KVM_SUB_MODULES`). Wrappers of them are
//! generic or `#[inline]`, so that the reference to the C symbol lands in
//! the module that calls them, where modpost and the module loader check it.
//!
//! C header: [`arch/arm64/include/asm/kvm_realm.h`](srctree/arch/arm64/include/asm/kvm_realm.h)

use crate::ffi::{
    c_int,
    c_long,
    c_uint,
    c_ulong,
    c_void, //
};
use crate::{
    alloc::{
        flags::GFP_KERNEL,
        KBox, //
    },
    bindings,
    error::{
        code::EINVAL,
        from_result,
        to_result,
        Error,
        Result, //
    },
    macros::vtable,
    types::{
        ForeignOwnable,
        Opaque, //
    },
    ThisModule,
};
use core::{
    marker::PhantomData,
    pin::Pin,
    ptr,
    sync::atomic::{
        AtomicU64,
        Ordering, //
    }, //
};

/// `VTCR_EL2.T0SZ`, bits [5:0]: the stage-2 input size is `64 - T0SZ` bits.
const VTCR_EL2_T0SZ_MASK: u64 = 0x3f;

/// `VTCR_EL2.DS`, bit 32: stage 2 uses 52-bit descriptors (FEAT_LPA2).
const VTCR_EL2_DS: u64 = 1 << 32;

/// `VCPU_INITIALIZED` in `kvm_vcpu_arch::cflags` (asm/kvm_host.h).
const VCPU_INITIALIZED: u8 = 1 << 0;

/// A VM (`struct kvm`).
///
/// # Invariants
///
/// `self.0` is a VM that stays live as long as the reference to this value.
#[repr(transparent)]
pub struct Kvm(Opaque<bindings::kvm>);

impl Kvm {
    /// Creates a reference to a VM from a pointer KVM passed to a callback.
    ///
    /// # Safety
    ///
    /// `ptr` points to a VM that stays live for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::kvm) -> &'a Self {
        // SAFETY: `Kvm` is a transparent wrapper; the caller keeps it live.
        unsafe { &*ptr.cast() }
    }

    /// The underlying `struct kvm`.
    pub fn as_raw(&self) -> *mut bindings::kvm {
        self.0.get()
    }

    /// The VM's stage-2 translation control value.
    fn vtcr(&self) -> u64 {
        // KVM sets `vtcr` while it creates the VM, before the first callback.
        // SAFETY: The VM is live (type invariant) and `vtcr` no longer changes.
        unsafe { (*self.as_raw()).arch.mmu.vtcr }
    }

    /// The size in bits of the VM's IPA space, as KVM configured stage 2.
    pub fn ipa_bits(&self) -> u32 {
        // CAST: T0SZ is 6 bits wide, so at most 63.
        64 - (self.vtcr() & VTCR_EL2_T0SZ_MASK) as u32
    }

    /// Whether the VM's stage 2 uses 52-bit descriptors (FEAT_LPA2).
    pub fn stage2_lpa2(&self) -> bool {
        self.vtcr() & VTCR_EL2_DS != 0
    }

    /// The VM's value of `ID_AA64DFR0_EL1` (what its vCPUs are shown, the
    /// VMM may lower fields of it until the VM first runs).
    pub fn id_aa64dfr0(&self) -> u64 {
        // SAFETY: The VM is live; the encoding is in the ID register range.
        unsafe { bindings::kvm_read_vm_id_reg(self.as_raw(), SYS_ID_AA64DFR0_EL1) }
    }

    /// Whether the VM has an in-kernel interrupt controller (a vGIC), as
    /// `irqchip_in_kernel()`. Fixed once a vCPU has run.
    pub fn irqchip_in_kernel(&self) -> bool {
        // SAFETY: The VM is live (type invariant); `in_kernel` is a `bool`.
        unsafe { ptr::read_volatile(&raw const (*self.as_raw()).arch.vgic.in_kernel) }
    }

    /// Number of vCPUs created (`online_vcpus`). None can be added once a
    /// vCPU has run (the vGIC is initialised then).
    pub fn online_vcpus(&self) -> u32 {
        let vm = self.as_raw();
        // An `atomic_t` is read with a volatile load, as `atomic_read()` does.
        // SAFETY: The VM is live (type invariant), so is its counter.
        let n = unsafe { core::ptr::read_volatile(&raw const (*vm).online_vcpus.counter) };
        // CAST: Never negative, below `KVM_MAX_VCPUS`.
        n as u32
    }

    /// The vCPU at index `i` (creation order), if it exists.
    ///
    /// vCPUs are freed only when the VM is destroyed, which cannot happen
    /// while the caller holds `&Kvm`.
    pub fn vcpu(&self, i: u32) -> Option<&Vcpu> {
        if i >= self.online_vcpus() {
            return None;
        }
        // CAST: `c_ulong` is 64 bits on arm64.
        let index = i as c_ulong;
        // `xa_load` takes the RCU read lock itself.
        // SAFETY: The VM is live; `vcpu_array` holds its online vCPUs.
        let ptr = unsafe { bindings::xa_load(&raw mut (*self.as_raw()).vcpu_array, index) };
        // SAFETY: An online vCPU lives as long as its VM (see above).
        (!ptr.is_null()).then(|| unsafe { Vcpu::from_raw(ptr.cast()) })
    }

    /// Whether the VM's vCPUs were initialised with `KVM_ARM_VCPU_*`
    /// feature `feature` (arm64 keeps one feature set per VM).
    pub fn vcpu_has_feature(&self, feature: u32) -> bool {
        // The bitmap is set by the first `KVM_ARM_VCPU_INIT`, fixed once a
        // vCPU has run.
        // SAFETY: The VM is live (type invariant).
        let bits = unsafe { (*self.as_raw()).arch.vcpu_features };
        let word = bits.get(feature as usize / 64).copied().unwrap_or(0);
        word & (1 << (feature % 64)) != 0
    }

    /// Marks the VM dead (`kvm_vm_dead()`): its ioctls fail with `EIO` from
    /// now on, and running vCPUs are kicked out.
    pub fn mark_dead(&self) {
        // SAFETY: The VM is live (type invariant).
        unsafe { bindings::kvm_vm_dead(self.as_raw()) };
    }

    /// Takes the VM's `slots_lock`, which keeps its memslots from changing.
    pub fn lock_slots(&self) -> SlotsLockGuard<'_> {
        // SAFETY: The VM is live (type invariant), so is its mutex.
        unsafe { bindings::mutex_lock(&raw mut (*self.as_raw()).slots_lock) };
        // INVARIANT: Locked just above.
        SlotsLockGuard { kvm: self }
    }

    /// Enters a read-side section of the VM's `srcu`, in which memslots
    /// can be looked up.
    pub fn srcu_read_lock(&self) -> SrcuReadGuard<'_> {
        // SAFETY: The VM is live, so is its `srcu`.
        let idx = unsafe { bindings::srcu_read_lock(&raw mut (*self.as_raw()).srcu) };
        // INVARIANT: Entered just above, with this index.
        SrcuReadGuard { kvm: self, idx }
    }

    /// The count of MMU invalidations, to read before looking up the page
    /// a stage-2 fault maps: [`MmuWriteGuard::must_retry`] then tells
    /// whether an invalidation ran meanwhile.
    pub fn mmu_invalidate_seq(&self) -> u64 {
        // SAFETY: The VM is live.
        let seq = unsafe { bindings::kvm_mmu_invalidate_seq_read(self.as_raw()) };
        // CAST: `unsigned long` is 64 bits wide on arm64.
        seq as u64
    }

    /// Takes the VM's `mmu_lock` for writing. Sleeping is not allowed
    /// until the guard drops.
    pub fn mmu_write_lock(&self) -> MmuWriteGuard<'_> {
        // SAFETY: The VM is live, so is its lock.
        unsafe { bindings::kvm_mmu_write_lock(self.as_raw()) };
        // INVARIANT: Taken just above.
        MmuWriteGuard { kvm: self }
    }
}

/// A read-side section of a VM's `srcu`.
///
/// # Invariants
///
/// This thread is in a read-side section of `kvm`'s `srcu`, entered with
/// index `idx`, until this value drops.
pub struct SrcuReadGuard<'a> {
    kvm: &'a Kvm,
    idx: c_int,
}

impl SrcuReadGuard<'_> {
    /// The memslot holding guest frame `gfn` (`gfn_to_memslot()`), if any.
    #[inline]
    pub fn memslot(&self, gfn: u64) -> Option<VmMemSlot<'_>> {
        // SAFETY: The VM is live, and in an `srcu` section (type invariant).
        let slot = unsafe { bindings::gfn_to_memslot(self.kvm.as_raw(), gfn) };
        // Memslots are freed only after an `srcu` grace period: this one
        // stays as it is while `self` is borrowed.
        // SAFETY: As above.
        let slot = (!slot.is_null()).then(|| unsafe { MemSlot::from_raw(slot) })?;
        // INVARIANT: Looked up in `self.kvm`.
        Some(VmMemSlot {
            kvm: self.kvm,
            slot,
        })
    }

    /// Whether guest frame `gfn` has the PRIVATE memory attribute. A realm
    /// frame nothing set an attribute for has its memslot's default, looked
    /// up with `srcu` held.
    pub fn mem_is_private(&self, gfn: u64) -> bool {
        // The VM is live, and in an `srcu` section (type invariant); the
        // attributes are read under RCU.
        // SAFETY: As above.
        unsafe { bindings::kvm_mem_is_private(self.kvm.as_raw(), gfn) }
    }
}

impl Drop for SrcuReadGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: Entered with `idx` (type invariant), left once, here.
        unsafe { bindings::srcu_read_unlock(&raw mut (*self.kvm.as_raw()).srcu, self.idx) };
    }
}

/// A VM's `mmu_lock`, held for writing.
///
/// # Invariants
///
/// `kvm`'s `mmu_lock` is held for writing by this thread until this value
/// drops.
pub struct MmuWriteGuard<'a> {
    kvm: &'a Kvm,
}

impl MmuWriteGuard<'_> {
    /// Whether an MMU invalidation that may cover `gfn` ran, or is
    /// running, since [`Kvm::mmu_invalidate_seq`] returned `seq`: the page
    /// looked up meanwhile must not be mapped.
    pub fn must_retry(&self, seq: u64, gfn: u64) -> bool {
        // CAST: `unsigned long` is 64 bits wide on arm64.
        // SAFETY: The lock is held (type invariant).
        unsafe { bindings::kvm_mmu_invalidate_retry_gfn(self.kvm.as_raw(), seq as c_ulong, gfn) }
    }
}

impl Drop for MmuWriteGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: Held (type invariant), and released once, here.
        unsafe { bindings::kvm_mmu_write_unlock(self.kvm.as_raw()) };
    }
}

/// A VM's `mmu_lock`, which KVM holds for writing around a callback that
/// unmaps ([`RealmOps::vm_unmap_gfn_range`],
/// [`RealmOps::vm_stage2_unmap_range`]).
///
/// # Invariants
///
/// `kvm`'s `mmu_lock` is held for writing by this thread while this value
/// exists, and KVM lets the holder drop it to reschedule if `may_block`.
pub struct MmuLocked<'a> {
    kvm: &'a Kvm,
    may_block: bool,
}

impl MmuLocked<'_> {
    /// The VM.
    pub fn kvm(&self) -> &Kvm {
        self.kvm
    }

    /// Whether the holder may sleep (see [`MmuLocked::cond_resched`]).
    pub fn may_block(&self) -> bool {
        self.may_block
    }

    /// Lets the scheduler run something else (`cond_resched_rwlock_write()`,
    /// which may drop and retake the lock) if KVM allows blocking; else
    /// does nothing.
    pub fn cond_resched(&mut self) {
        if self.may_block {
            // The VM is live; its `mmu_lock` is held for writing, and may
            // be dropped to reschedule (type invariant).
            // SAFETY: As above.
            unsafe { bindings::kvm_mmu_cond_resched(self.kvm.as_raw()) };
        }
    }
}

/// A page of a memslot's user mapping a stage-2 fault is to map, looked up
/// with `__kvm_faultin_pfn()`: it holds a reference on the page (if the
/// memory has `struct page`s), dropped with [`UserPage::release`] once the
/// page is mapped, or on drop.
///
/// # Invariants
///
/// `page` is null or a page on which this value holds one reference.
pub struct UserPage<'a> {
    kvm: &'a Kvm,
    pfn: u64,
    writable: bool,
    page: *mut bindings::page,
}

impl UserPage<'_> {
    /// The page frame.
    pub fn pfn(&self) -> u64 {
        self.pfn
    }

    /// Whether the user mapping lets the page be written.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether it is ordinary memory, with a `struct page` (not device
    /// memory of a `VM_PFNMAP` mapping).
    pub fn is_normal_memory(&self) -> bool {
        !self.page.is_null()
    }

    /// Drops the reference after the page was mapped (`dirty`: writable
    /// by the guest), under the page's VM's `mmu_lock`
    /// (`kvm_release_faultin_page()`). With another VM's lock it warns and
    /// drops the reference as for a page not mapped.
    pub fn release(self, mmu: &MmuWriteGuard<'_>, dirty: bool) {
        if crate::warn_on!(!ptr::eq(mmu.kvm, self.kvm)) {
            return;
        }
        let this = core::mem::ManuallyDrop::new(self);
        // `this` does not drop: the reference goes once, here.
        // The reference this value holds (type invariant); its VM's
        // `mmu_lock` is held (checked above).
        // SAFETY: As above.
        unsafe { bindings::kvm_release_faultin_page(this.kvm.as_raw(), this.page, false, dirty) };
    }
}

impl Drop for UserPage<'_> {
    fn drop(&mut self) {
        // Not mapped: drop the reference as unused.
        // SAFETY: The reference this value holds (type invariant), dropped once.
        unsafe { bindings::kvm_release_faultin_page(self.kvm.as_raw(), self.page, true, false) };
    }
}

/// KVM's `slots_lock` of a VM, held.
///
/// # Invariants
///
/// `kvm`'s `slots_lock` is held by this thread until this value drops.
pub struct SlotsLockGuard<'a> {
    kvm: &'a Kvm,
}

impl SlotsLockGuard<'_> {
    /// Calls `f` on each memslot of the VM, in no particular order, until
    /// it fails.
    pub fn walk_memslots<F: FnMut(&MemSlot) -> Result>(&self, mut f: F) -> Result {
        // `memslot_callback::<F>` takes `data` as an `F`, which outlives the call.
        // SAFETY: `slots_lock` is held (type invariant); `data` is as above.
        to_result(unsafe {
            bindings::kvm_arm_realm_walk_memslots(
                self.kvm.as_raw(),
                Some(memslot_callback::<F>),
                (&raw mut f).cast(),
            )
        })
    }

    /// Fills guest_memfd pages from `gfn` on with the user pages at `src`
    /// (`kvm_gmem_populate()`), at most `npages` and never past the end of
    /// `gfn`'s memslot: for each, `f(gfn, pfn, src_pa)` runs with the
    /// guest_memfd page `pfn` (referenced and locked against invalidation
    /// for the call) and the source page at `src_pa` (pinned).
    ///
    /// Returns how many pages were done, or the error if none was. `src`
    /// must be page aligned and `npages` positive.
    pub fn gmem_populate<F: FnMut(u64, u64, u64) -> Result>(
        &self,
        gfn: u64,
        src: usize,
        npages: usize,
        mut f: F,
    ) -> Result<usize> {
        let npages = c_long::try_from(npages).map_err(|_| EINVAL)?;
        // `populate_callback::<F>` takes `opaque` as an `F`, which outlives the call.
        // SAFETY: `slots_lock` is held (type invariant); `opaque` is as above.
        let done = unsafe {
            bindings::kvm_gmem_populate(
                self.kvm.as_raw(),
                gfn,
                src as *mut c_void,
                npages,
                false,
                Some(populate_callback::<F>),
                (&raw mut f).cast(),
            )
        };
        if done < 0 {
            // CAST: A negative return is an errno.
            return Err(Error::from_errno(done as i32));
        }
        // CAST: Non-negative and at most `npages`.
        Ok(done as usize)
    }
}

impl Drop for SlotsLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: Held (type invariant), and released once, here.
        unsafe { bindings::mutex_unlock(&raw mut (*self.kvm.as_raw()).slots_lock) };
    }
}

/// Calls the closure [`SlotsLockGuard::walk_memslots`] passed as `data`.
///
/// # Safety
///
/// `data` points to a live `F`, and `slot` to a memslot of a VM whose
/// `slots_lock` is held.
unsafe extern "C" fn memslot_callback<F: FnMut(&MemSlot) -> Result>(
    slot: *const bindings::kvm_memory_slot,
    data: *mut c_void,
) -> c_int {
    // SAFETY: By the function's safety requirements.
    let f = unsafe { &mut *data.cast::<F>() };
    // SAFETY: Fixed while `slots_lock` is held, i.e. for this call.
    match f(unsafe { MemSlot::from_raw(slot) }) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Calls the closure [`SlotsLockGuard::gmem_populate`] passed as `opaque`.
///
/// # Safety
///
/// `opaque` points to a live `F`; `src` is a pinned page or NULL.
unsafe extern "C" fn populate_callback<F: FnMut(u64, u64, u64) -> Result>(
    _kvm: *mut bindings::kvm,
    gfn: bindings::gfn_t,
    pfn: bindings::kvm_pfn_t,
    src: *mut bindings::page,
    opaque: *mut c_void,
) -> c_int {
    if src.is_null() {
        return EINVAL.to_errno();
    }
    // SAFETY: `src` is a pinned page (function's safety requirements).
    let src = unsafe { bindings::page_to_phys(src) };
    // SAFETY: By the function's safety requirements.
    let f = unsafe { &mut *opaque.cast::<F>() };
    match f(gfn, pfn, src) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// A memslot (`struct kvm_memory_slot`), read while `slots_lock` is held.
///
/// # Invariants
///
/// `self.0` is a memslot that does not change as long as the reference to
/// this value exists.
#[repr(transparent)]
pub struct MemSlot(Opaque<bindings::kvm_memory_slot>);

impl MemSlot {
    /// # Safety
    ///
    /// `ptr` points to a memslot that does not change for `'a`.
    unsafe fn from_raw<'a>(ptr: *const bindings::kvm_memory_slot) -> &'a Self {
        // SAFETY: `MemSlot` is a transparent wrapper; the caller keeps it fixed.
        unsafe { &*ptr.cast() }
    }

    // No `&bindings::kvm_memory_slot` is made: `gmem.file` changes under
    // a live memslot (guest_memfd unbinding, `WRITE_ONCE()`). The fields
    // read here are fixed (type invariant) and read one by one.

    /// The first guest frame it maps.
    pub fn base_gfn(&self) -> u64 {
        // SAFETY: A fixed field of the memslot (see above).
        unsafe { (*self.0.get()).base_gfn }
    }

    /// How many guest frames it maps.
    pub fn npages(&self) -> u64 {
        // SAFETY: A fixed field of the memslot (see above).
        let npages = unsafe { (*self.0.get()).npages };
        // CAST: `unsigned long` is 64 bits wide on arm64.
        npages as u64
    }

    /// Its `KVM_MEM_*` flags.
    fn flags(&self) -> u32 {
        // SAFETY: A fixed field of the memslot (see above).
        unsafe { (*self.0.get()).flags }
    }

    /// Whether its private memory comes from a guest_memfd.
    pub fn has_gmem(&self) -> bool {
        self.flags() & bindings::KVM_MEM_GUEST_MEMFD != 0
    }

    /// Whether KVM logs the pages written through it.
    pub fn logs_dirty_pages(&self) -> bool {
        self.flags() & bindings::KVM_MEM_LOG_DIRTY_PAGES != 0
    }

    /// Whether the guest may only read it.
    pub fn readonly(&self) -> bool {
        self.flags() & bindings::KVM_MEM_READONLY != 0
    }

    /// The user address of guest frame `gfn` (`__gfn_to_hva_memslot()`), if
    /// this memslot maps it.
    pub fn user_address(&self, gfn: u64) -> Option<u64> {
        let offset = gfn.checked_sub(self.base_gfn())?;
        if offset >= self.npages() {
            return None;
        }
        // SAFETY: A fixed field of the memslot (see above).
        let base = unsafe { (*self.0.get()).userspace_addr };
        // CAST: `unsigned long` is 64 bits wide on arm64.
        (base as u64).checked_add(offset.checked_mul(bindings::PAGE_SIZE as u64)?)
    }
}

/// A memslot looked up in a VM ([`SrcuReadGuard::memslot`]), with the VM:
/// what the memslot's pages are looked up through.
///
/// # Invariants
///
/// `slot` is a memslot of `kvm`.
#[derive(Clone, Copy)]
pub struct VmMemSlot<'a> {
    kvm: &'a Kvm,
    slot: &'a MemSlot,
}

impl core::ops::Deref for VmMemSlot<'_> {
    type Target = MemSlot;

    fn deref(&self) -> &MemSlot {
        self.slot
    }
}

impl<'a> VmMemSlot<'a> {
    /// The guest_memfd page of guest frame `gfn` of this memslot
    /// (`kvm_gmem_get_pfn()`), allocated and zeroed if new. Returns its
    /// frame, with one page reference that the caller now owns.
    #[inline]
    pub fn gmem_pfn(&self, gfn: u64) -> Result<u64> {
        let (mut pfn, mut page, mut max_order) = (0, core::ptr::null_mut(), 0);
        // The VM is live; this memslot is one of its (type invariant), fixed
        // while referenced; the out-pointers are valid.
        // SAFETY: As above.
        to_result(unsafe {
            bindings::kvm_gmem_get_pfn(
                self.kvm.as_raw(),
                self.slot.0.get(),
                gfn,
                &mut pfn,
                &mut page,
                &mut max_order,
            )
        })?;
        Ok(pfn)
    }

    /// The page of this memslot's user mapping for guest frame `gfn`
    /// (`__kvm_faultin_pfn()`), faulted in for writing if `write`. May
    /// sleep.
    #[inline]
    pub fn user_page(&self, gfn: u64, write: bool) -> Result<UserPage<'a>> {
        let (mut writable, mut page) = (false, core::ptr::null_mut());
        let foll = if write { bindings::FOLL_WRITE } else { 0 };
        // This memslot is fixed while referenced (type invariant); the
        // out-pointers are valid.
        // SAFETY: As above.
        let pfn = unsafe {
            bindings::__kvm_faultin_pfn(self.slot.0.get(), gfn, foll, &mut writable, &mut page)
        };
        // SAFETY: Only looks at the value.
        if unsafe { bindings::kvm_is_error_noslot_pfn(pfn) } {
            return Err(if pfn == KVM_PFN_ERR_HWPOISON {
                crate::error::code::EHWPOISON
            } else {
                crate::error::code::EFAULT
            });
        }
        // INVARIANT: `__kvm_faultin_pfn()` took a reference on `page` if not null.
        Ok(UserPage {
            kvm: self.kvm,
            pfn,
            writable,
            page,
        })
    }
}

impl VmMemSlot<'_> {
    /// Sends the current task `SIGBUS` (`BUS_MCEERR_AR`) for the user page
    /// of guest frame `gfn`, as KVM does when that page is poisoned
    /// (`kvm_send_hwpoison_signal()`, whose x86 form gives `PAGE_SHIFT` as
    /// the extent): `KVM_RUN` then returns `EINTR` and the VMM takes the
    /// signal, as for a normal VM.
    pub fn report_poisoned(&self, gfn: u64) {
        let Some(hva) = self.user_address(gfn) else {
            return;
        };
        // CAST: `PAGE_SHIFT` (12) fits.
        let lsb = bindings::PAGE_SHIFT as i16;
        // `current` is live; the address is only reported, not accessed.
        // SAFETY: As above.
        unsafe {
            bindings::send_sig_mceerr(
                bindings::BUS_MCEERR_AR as i32,
                hva as *mut crate::ffi::c_void,
                lsb,
                bindings::get_current(),
            )
        };
    }
}

/// `KVM_PFN_ERR_HWPOISON`: the page is poisoned.
const KVM_PFN_ERR_HWPOISON: u64 = (0x7ff << 52) + 1;

/// A memslot change (`enum kvm_mr_change`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemslotChange {
    /// A new memslot.
    Create,
    /// The memslot goes.
    Delete,
    /// The memslot moves to another base.
    Move,
    /// Only its flags change.
    FlagsOnly,
}

impl MemslotChange {
    fn from_raw(change: bindings::kvm_mr_change) -> Option<Self> {
        match change {
            bindings::kvm_mr_change_KVM_MR_CREATE => Some(Self::Create),
            bindings::kvm_mr_change_KVM_MR_DELETE => Some(Self::Delete),
            bindings::kvm_mr_change_KVM_MR_MOVE => Some(Self::Move),
            bindings::kvm_mr_change_KVM_MR_FLAGS_ONLY => Some(Self::FlagsOnly),
            _ => None,
        }
    }
}

/// A range of guest frames KVM unmaps (`struct kvm_gfn_range`), under
/// `mmu_lock` held for writing.
///
/// # Invariants
///
/// `self.0` is a range that does not change as long as the reference to
/// this value exists.
#[repr(transparent)]
pub struct GfnRange(Opaque<bindings::kvm_gfn_range>);

impl GfnRange {
    /// # Safety
    ///
    /// `ptr` points to a range that does not change for `'a`.
    unsafe fn from_raw<'a>(ptr: *const bindings::kvm_gfn_range) -> &'a Self {
        // SAFETY: `GfnRange` is a transparent wrapper; the caller keeps it fixed.
        unsafe { &*ptr.cast() }
    }

    fn raw(&self) -> &bindings::kvm_gfn_range {
        // SAFETY: Fixed while referenced (type invariant).
        unsafe { &*self.0.get() }
    }

    /// The first guest frame.
    pub fn start(&self) -> u64 {
        self.raw().start
    }

    /// The guest frame past the last.
    pub fn end(&self) -> u64 {
        self.raw().end
    }

    /// Whether private (guest_memfd) mappings go.
    pub fn private(&self) -> bool {
        self.raw().attr_filter & bindings::kvm_gfn_range_filter_KVM_FILTER_PRIVATE != 0
    }

    /// Whether shared mappings go.
    pub fn shared(&self) -> bool {
        self.raw().attr_filter & bindings::kvm_gfn_range_filter_KVM_FILTER_SHARED != 0
    }

    /// Whether the callback may block (see [`MmuLocked::cond_resched`]).
    pub fn may_block(&self) -> bool {
        self.raw().may_block
    }
}

/// A vCPU (`struct kvm_vcpu`).
///
/// # Invariants
///
/// `self.0` is a vCPU that stays live as long as the reference to this
/// value, and so does its VM.
#[repr(transparent)]
pub struct Vcpu(Opaque<bindings::kvm_vcpu>);

impl Vcpu {
    /// Creates a reference to a vCPU from a pointer KVM passed to a callback.
    ///
    /// # Safety
    ///
    /// `ptr` points to a vCPU that stays live for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::kvm_vcpu) -> &'a Self {
        // SAFETY: `Vcpu` is a transparent wrapper; the caller keeps it live.
        unsafe { &*ptr.cast() }
    }

    /// The underlying `struct kvm_vcpu`.
    pub fn as_raw(&self) -> *mut bindings::kvm_vcpu {
        self.0.get()
    }

    /// The VM the vCPU belongs to.
    pub fn kvm(&self) -> &Kvm {
        // SAFETY: A live vCPU keeps its VM live (type invariant); `kvm` is fixed.
        unsafe { Kvm::from_raw((*self.as_raw()).kvm) }
    }

    /// The vCPU's id (`KVM_CREATE_VCPU`'s argument; MPIDR derives from it).
    pub fn id(&self) -> u32 {
        // SAFETY: The vCPU is live; `vcpu_id` is set at creation.
        let id = unsafe { (*self.as_raw()).vcpu_id };
        // CAST: vCPU ids are below `KVM_MAX_VCPU_IDS`, never negative.
        id as u32
    }

    /// Whether `KVM_ARM_VCPU_INIT` was done (`VCPU_INITIALIZED` in `cflags`).
    pub fn initialized(&self) -> bool {
        // SAFETY: The vCPU is live; `cflags` is a byte.
        let cflags = unsafe { core::ptr::read_volatile(&raw const (*self.as_raw()).arch.cflags) };
        cflags & VCPU_INITIALIZED != 0
    }

    /// Whether the vCPU is powered off (`KVM_MP_STATE_STOPPED`).
    pub fn stopped(&self) -> bool {
        let vcpu = self.as_raw();
        // SAFETY: The vCPU is live; the state is a `u32`.
        let state = unsafe { core::ptr::read_volatile(&raw const (*vcpu).arch.mp_state.mp_state) };
        state == bindings::KVM_MP_STATE_STOPPED
    }

    /// General-purpose register `x<n>` (n < 31) as KVM holds it, else 0.
    ///
    /// Another vCPU's registers may be read without its `mutex`: the value
    /// is then the one set before or after a concurrent `KVM_SET_ONE_REG`.
    pub fn gpr(&self, n: usize) -> u64 {
        if n >= 31 {
            return 0;
        }
        // SAFETY: The vCPU is live; `n` is in bounds; a `u64` load.
        unsafe { core::ptr::read_volatile(&raw const (*self.as_raw()).arch.ctxt.regs.regs[n]) }
    }

    /// The longest SVE vector, in bytes, of a vCPU with SVE (as the VMM left
    /// it with `KVM_REG_ARM64_SVE_VLS`); meaningless without SVE.
    pub fn sve_max_vl(&self) -> u32 {
        // SAFETY: The vCPU is live; a `u32` load.
        unsafe { core::ptr::read_volatile(&raw const (*self.as_raw()).arch.sve_max_vl) }
    }

    /// The PC as KVM holds it (see [`Vcpu::gpr`] on concurrency).
    pub fn pc(&self) -> u64 {
        // SAFETY: The vCPU is live; a `u64` load.
        unsafe { core::ptr::read_volatile(&raw const (*self.as_raw()).arch.ctxt.regs.pc) }
    }

    /// The vCPU's `struct kvm_run`, shared with userspace.
    fn run(&self) -> *mut bindings::kvm_run {
        // SAFETY: The vCPU is live; `run` is set at creation.
        unsafe { (*self.as_raw()).run }
    }

    /// The vCPU's index in its VM.
    pub fn index(&self) -> u32 {
        // SAFETY: The vCPU is live; `vcpu_idx` is set at creation.
        let idx = unsafe { (*self.as_raw()).vcpu_idx };
        // CAST: vCPU indices are below `KVM_MAX_VCPUS`, never negative.
        idx as u32
    }
}

/// A vCPU whose `mutex` this thread holds: one of the vCPU's ioctls is
/// under way ([`RealmOps::vcpu_set_events`], [`RealmOps::vcpu_set_one_reg`],
/// ...). It reads as a [`Vcpu`].
///
/// # Invariants
///
/// The vCPU's `mutex` is held by this thread as long as the reference to
/// this value exists.
#[repr(transparent)]
pub struct LockedVcpu(Vcpu);

impl core::ops::Deref for LockedVcpu {
    type Target = Vcpu;

    fn deref(&self) -> &Vcpu {
        &self.0
    }
}

impl LockedVcpu {
    /// Creates a reference from a pointer KVM passed to a callback.
    ///
    /// # Safety
    ///
    /// `ptr` points to a vCPU that stays live for `'a`, whose `mutex` this
    /// thread holds for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::kvm_vcpu) -> &'a Self {
        // `LockedVcpu` is a transparent wrapper of `Vcpu`, itself one of
        // `struct kvm_vcpu`; the caller keeps it live and locked.
        // SAFETY: As above.
        unsafe { &*ptr.cast() }
    }

    /// Sets `x<n>` (n < 31; others are ignored) as KVM holds it. The vCPU's
    /// `mutex` keeps `KVM_SET_ONE_REG` from racing with it.
    pub fn set_gpr(&self, n: usize, value: u64) {
        if n >= 31 {
            return;
        }
        // SAFETY: The vCPU is live; `n` is in bounds; a `u64` store.
        unsafe { ptr::write_volatile(&raw mut (*self.as_raw()).arch.ctxt.regs.regs[n], value) }
    }

    /// Drops the MMIO exit userspace was to complete: the access is
    /// answered another way (an abort).
    pub fn cancel_mmio(&self) {
        // SAFETY: The vCPU is live and its `mutex` is held by the caller's ioctl.
        unsafe { (*self.as_raw()).mmio_needed = 0 };
    }
}

/// A vCPU in `KVM_RUN` on this thread, its `mutex` held: what the run-loop
/// callbacks ([`RealmOps::vcpu_pre_enter`], [`RealmOps::vcpu_handle_exit`],
/// ...) get. Exits to userspace, traps and timer state are set through it
/// only.
///
/// # Invariants
///
/// The vCPU is in `KVM_RUN` on this thread as long as the reference to this
/// value exists.
#[repr(transparent)]
pub struct RunningVcpu(LockedVcpu);

impl core::ops::Deref for RunningVcpu {
    type Target = LockedVcpu;

    fn deref(&self) -> &LockedVcpu {
        &self.0
    }
}

impl RunningVcpu {
    /// Creates a reference from a pointer KVM passed to a run-loop callback.
    ///
    /// # Safety
    ///
    /// `ptr` points to a vCPU in `KVM_RUN` on this thread for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::kvm_vcpu) -> &'a Self {
        // A transparent wrapper, down to `struct kvm_vcpu`; the caller keeps
        // the vCPU running here.
        // SAFETY: As above.
        unsafe { &*ptr.cast() }
    }

    /// Makes `KVM_RUN` return an MMIO exit for the access of `len` bytes at
    /// `gpa` (a write of the low `len` bytes of `data`, or a read), which
    /// the next `KVM_RUN` completes (see [`RealmOps::mmio_complete`]).
    pub fn exit_mmio(&self, gpa: u64, len: u8, write: bool, data: u64) {
        let len = usize::from(len.min(8));
        let mut buf = [0u8; 8];
        buf[..len].copy_from_slice(&data.to_le_bytes()[..len]);
        let run = self.run();
        // Only this vCPU's thread, in `KVM_RUN`, writes these.
        // SAFETY: `run` is the live vCPU's page; the union member is plain data.
        unsafe {
            (*run).__bindgen_anon_1.mmio = bindings::kvm_run__bindgen_ty_1__bindgen_ty_6 {
                phys_addr: gpa,
                data: buf,
                // CAST: At most 8.
                len: len as u32,
                is_write: u8::from(write),
            };
            (*run).exit_reason = bindings::KVM_EXIT_MMIO;
            (*self.as_raw()).mmio_needed = 1;
        }
    }

    /// Takes the outcome of the MMIO exit userspace handled: `None` if none
    /// was pending, else whether it was a write and, for a read, the value
    /// userspace supplied (zero-extended from its length).
    pub fn take_mmio(&self) -> Option<(bool, u64)> {
        let vcpu = self.as_raw();
        // SAFETY: The vCPU is live and this is its thread, in `KVM_RUN`.
        if unsafe { (*vcpu).mmio_needed } == 0 {
            return None;
        }
        // SAFETY: As above.
        unsafe { (*vcpu).mmio_needed = 0 };
        let run = self.run();
        // SAFETY: As above; userspace may have changed the bytes, any value is valid.
        let mmio = unsafe { ptr::read_volatile(&raw const (*run).__bindgen_anon_1.mmio) };
        let len = usize::try_from(mmio.len).unwrap_or(8).min(8);
        let mut buf = [0u8; 8];
        buf[..len].copy_from_slice(&mmio.data[..len]);
        Some((mmio.is_write != 0, u64::from_le_bytes(buf)))
    }

    /// Makes `KVM_RUN` return `KVM_EXIT_SHUTDOWN`.
    pub fn exit_shutdown(&self) {
        // SAFETY: The live vCPU's page, written by its own thread.
        unsafe { (*self.run()).exit_reason = bindings::KVM_EXIT_SHUTDOWN };
    }

    /// Makes `KVM_RUN` return `KVM_EXIT_INTERNAL_ERROR` for an exit it could
    /// not handle, with `reason` as the one data word.
    pub fn exit_internal_error(&self, reason: u64) {
        let run = self.run();
        // SAFETY: The live vCPU's page, written by its own thread.
        unsafe {
            (*run).exit_reason = bindings::KVM_EXIT_INTERNAL_ERROR;
            (*run).__bindgen_anon_1.internal.suberror =
                bindings::KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON;
            (*run).__bindgen_anon_1.internal.ndata = 1;
            (*run).__bindgen_anon_1.internal.data[0] = reason;
        }
    }

    /// Makes `KVM_RUN` return `KVM_EXIT_MEMORY_FAULT` for `[gpa, gpa + size)`
    /// (`kvm_prepare_memory_fault_exit()`): the VMM is to make the range
    /// `private` or shared, as the guest accessed it.
    pub fn exit_memory_fault(&self, gpa: u64, size: u64, private: bool) {
        let run = self.run();
        let flags = if private {
            u64::from(bindings::KVM_MEMORY_EXIT_FLAG_PRIVATE)
        } else {
            0
        };
        // SAFETY: The live vCPU's page, written by its own thread.
        unsafe {
            (*run).exit_reason = bindings::KVM_EXIT_MEMORY_FAULT;
            (*run).__bindgen_anon_1.memory_fault.flags = flags;
            (*run).__bindgen_anon_1.memory_fault.gpa = gpa;
            (*run).__bindgen_anon_1.memory_fault.size = size;
        }
    }

    /// Lets KVM handle an exit as a trap with syndrome `esr`
    /// (`kvm_arm_realm_handle_trap()`): SMCCC calls, PSCI, GIC system
    /// registers and WFx are emulated as for a normal VM. From
    /// [`RealmOps::vcpu_handle_exit`], where the vCPU is loaded.
    ///
    /// `EOPNOTSUPP` if KVM would inject an exception (an UNDEF for a
    /// register it does not emulate), which the RMM cannot deliver.
    #[inline]
    pub fn handle_trap(&self, esr: u64) -> Result<RunNext> {
        // SAFETY: The live vCPU, from its run loop (its `mutex` held).
        RunNext::from_code(unsafe { bindings::kvm_arm_realm_handle_trap(self.as_raw(), esr) })
    }

    /// Takes in the timer state the RMM reported at an exit
    /// (`kvm_arm_realm_timer_update()`). From [`RealmOps::vcpu_handle_exit`],
    /// where the vCPU is loaded.
    #[inline]
    pub fn timer_update(&self, cntv_ctl: u64, cntv_cval: u64, cntp_ctl: u64, cntp_cval: u64) {
        // SAFETY: The live vCPU, from its run loop (loaded, its `mutex` held).
        unsafe {
            bindings::kvm_arm_realm_timer_update(
                self.as_raw(),
                cntv_ctl,
                cntv_cval,
                cntp_ctl,
                cntp_cval,
            )
        };
    }

    /// Runs `f` in a read-side section of the VM's `srcu`, which memslot and
    /// I/O bus lookups need.
    fn with_srcu<R>(&self, f: impl FnOnce() -> R) -> R {
        let kvm = self.kvm().as_raw();
        // SAFETY: The VM is live, so is its `srcu`.
        let idx = unsafe { bindings::srcu_read_lock(&raw mut (*kvm).srcu) };
        let r = f();
        // SAFETY: Locked just above with this index.
        unsafe { bindings::srcu_read_unlock(&raw mut (*kvm).srcu, idx) };
        r
    }

    /// Writes the low `len` bytes of `value` at `gpa` to an in-kernel MMIO
    /// device (vGIC, ioeventfd). Returns whether one took it.
    #[inline]
    pub fn io_bus_write(&self, gpa: u64, len: u8, value: u64) -> bool {
        let bytes = value.to_le_bytes();
        let len = c_int::from(len.min(8));
        // SAFETY: The live vCPU, under `srcu`; `bytes` is 8 readable bytes.
        self.with_srcu(|| unsafe {
            bindings::kvm_io_bus_write(
                self.as_raw(),
                bindings::kvm_bus_KVM_MMIO_BUS,
                gpa,
                len,
                bytes.as_ptr().cast(),
            )
        }) == 0
    }

    /// Reads `len` bytes at `gpa` from an in-kernel MMIO device, if one
    /// answers.
    #[inline]
    pub fn io_bus_read(&self, gpa: u64, len: u8) -> Option<u64> {
        let mut bytes = [0u8; 8];
        let len = c_int::from(len.min(8));
        // SAFETY: The live vCPU, under `srcu`; `bytes` is 8 writable bytes.
        let r = self.with_srcu(|| unsafe {
            bindings::kvm_io_bus_read(
                self.as_raw(),
                bindings::kvm_bus_KVM_MMIO_BUS,
                gpa,
                len,
                bytes.as_mut_ptr().cast(),
            )
        });
        (r == 0).then(|| u64::from_le_bytes(bytes))
    }
}

/// What the run loop of a realm vCPU does after a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunNext {
    /// Enter the vCPU (again).
    Enter,
    /// Return from `KVM_RUN`, with the exit set in `kvm_run`.
    Userspace,
}

impl RunNext {
    /// The callback's return value: > 0 to enter, 0 or an errno to return.
    fn code(r: Result<RunNext>) -> c_int {
        match r {
            Ok(RunNext::Enter) => 1,
            Ok(RunNext::Userspace) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// The meaning of a KVM handler's return value.
    fn from_code(code: c_int) -> Result<RunNext> {
        match code {
            c if c > 0 => Ok(RunNext::Enter),
            0 => Ok(RunNext::Userspace),
            c => Err(Error::from_errno(c)),
        }
    }
}

/// How a realm vCPU left the realm, for KVM's run loop (`ARM_EXCEPTION_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RealmExit {
    /// A host interrupt: KVM takes it before anything else.
    Irq,
    /// An SError.
    SError,
    /// Anything else, for [`RealmOps::vcpu_handle_exit`].
    Trap,
}

impl RealmExit {
    /// Inlined: `vcpu_enter_callback` uses it inside the noinstr window.
    #[inline(always)]
    fn code(self) -> c_int {
        let code = match self {
            Self::Irq => bindings::ARM_EXCEPTION_IRQ,
            Self::SError => bindings::ARM_EXCEPTION_EL1_SERROR,
            Self::Trap => bindings::ARM_EXCEPTION_TRAP,
        };
        // CAST: The codes are small.
        code as c_int
    }
}

/// The registers of the SMC that enters a realm vCPU, x0..x17, laid out as
/// `struct arm_smccc_1_2_regs`: set before the entry and read after it by
/// the vCPU's thread, and handed in place to [`realm_smc`], so that the
/// noinstr window copies nothing.
#[repr(transparent)]
pub struct RealmSmcRegs([AtomicU64; crate::arm64::smccc::NR_REGS]);

// `realm_smc` hands `RealmSmcRegs` to C as `struct arm_smccc_1_2_regs`.
crate::static_assert!(
    core::mem::size_of::<RealmSmcRegs>() == core::mem::size_of::<bindings::arm_smccc_1_2_regs>()
);
crate::static_assert!(
    core::mem::align_of::<RealmSmcRegs>() == core::mem::align_of::<bindings::arm_smccc_1_2_regs>()
);

impl RealmSmcRegs {
    /// All zero.
    pub const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; crate::arm64::smccc::NR_REGS])
    }

    /// Sets x0..x17 to `regs`.
    pub fn set(&self, regs: &[u64; crate::arm64::smccc::NR_REGS]) {
        for (reg, value) in self.0.iter().zip(regs) {
            reg.store(*value, Ordering::Relaxed);
        }
    }

    /// x0..x17.
    pub fn get(&self) -> [u64; crate::arm64::smccc::NR_REGS] {
        let mut regs = [0; crate::arm64::smccc::NR_REGS];
        for (value, reg) in regs.iter_mut().zip(&self.0) {
            *value = reg.load(Ordering::Relaxed);
        }
        regs
    }

    /// x0: an SMCCC call's function ID before it, its status after it.
    /// Usable inside the noinstr window.
    #[inline(always)]
    pub fn x0(&self) -> u64 {
        self.0[0].load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn as_raw(&self) -> *mut bindings::arm_smccc_1_2_regs {
        // Atomics may be written through a pointer to them.
        ptr::from_ref(self).cast_mut().cast()
    }
}

impl Default for RealmSmcRegs {
    fn default() -> Self {
        Self::new()
    }
}

/// Issues the SMC that enters a realm vCPU with x0..x17 from `args`, and
/// leaves x0..x17 afterwards in `res` (`kvm_arm_realm_smc()`). For
/// [`RealmOps::vcpu_enter`] only: it masks all exceptions around the call.
/// Inlined, so that the window reaches nothing but the C function, which
/// is `noinstr`.
///
/// # Safety
///
/// As [`crate::arm64::smccc::smc`]: the call must not affect memory or CPU
/// state the kernel relies on. Nothing else accesses `args` or `res` during
/// the call.
#[inline(always)]
pub unsafe fn realm_smc(args: &RealmSmcRegs, res: &RealmSmcRegs) {
    // Both have `struct arm_smccc_1_2_regs`' layout (checked above); the call
    // writes `res` alone, which nothing else accesses meanwhile (see above).
    // SAFETY: Valid pointers (see above); firmware side effects are the caller's.
    unsafe { bindings::kvm_arm_realm_smc(args.as_raw(), res.as_raw()) }
}

/// What a provider's realms may have, fixed for as long as it is
/// registered: KVM reads it as data (`struct kvm_arm_realm_ops`), with no
/// call into the provider.
pub struct RealmLimits {
    /// The largest IPA size, in bits, a realm may have.
    pub ipa_limit: u32,
    /// The longest SVE vector, in bytes, a realm vCPU may have (0: no SVE).
    pub sve_max_vl: u32,
    /// KVM's `ID_AA64DFR0_EL1` for a realm VM has each 4-bit field lowered
    /// to this one's (`0xf`: unbounded).
    pub id_aa64dfr0_max: u64,
    /// The registers `KVM_GET_REG_LIST` lists for a realm vCPU without SVE,
    /// then those it adds for one with SVE.
    pub regs: &'static [u64],
    /// How many of `regs`, at its end, are listed only with SVE.
    pub nr_sve_regs: usize,
}

/// What a module does to provide realm VMs.
///
/// The callbacks run in process context and may sleep, unless stated
/// otherwise.
#[vtable]
pub trait RealmOps: Sized {
    /// The provider's state for one realm VM.
    type Realm: Send + Sync;

    /// What realms may have, read once, when the provider registers.
    fn limits() -> RealmLimits;

    /// Sets up a realm for `kvm`, created with machine type `vm_type`. Its
    /// stage-2 configuration ([`Kvm::ipa_bits`]) is already decided.
    fn vm_init(kvm: &Kvm, vm_type: u64) -> Result<Pin<KBox<Self::Realm>>>;

    /// The last call for a VM whose [`RealmOps::vm_init`] succeeded, after
    /// its vCPUs are gone.
    fn vm_destroy(kvm: &Kvm, realm: Pin<KBox<Self::Realm>>);

    /// Whether capability `ext` is offered to the realm and can be enabled.
    fn ext_allowed(realm: Pin<&Self::Realm>, ext: i64) -> bool;

    /// The value of capability `ext` for the realm, given the value `value`
    /// KVM computed for a normal VM.
    fn check_extension(realm: Pin<&Self::Realm>, ext: i64, value: i32) -> i32;

    /// A VM ioctl on the realm. [`ENOIOCTLCMD`](crate::error::code::ENOIOCTLCMD)
    /// hands it on to KVM, which answers it if the realm's capabilities allow.
    fn vm_ioctl(kvm: &Kvm, realm: Pin<&Self::Realm>, cmd: u32, arg: usize) -> Result<isize>;

    /// KVM no longer needs the realm's stage 2: when the VM's address space
    /// goes away and again when the VM is destroyed, so it must be
    /// idempotent. Not called for a VM whose `vm_init` failed.
    fn vm_stage2_teardown(kvm: &Kvm, realm: Pin<&Self::Realm>);

    /// KVM unmaps guest frames `range` of the realm (MMU notifier, guest_memfd
    /// invalidation, memory attribute change), holding `mmu`: must not
    /// sleep but through [`MmuLocked::cond_resched`]. Returns whether KVM
    /// must flush TLBs.
    fn vm_unmap_gfn_range(
        _mmu: &mut MmuLocked<'_>,
        _realm: Pin<&Self::Realm>,
        _range: &GfnRange,
    ) -> bool {
        crate::build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }

    /// KVM unmaps IPAs `[start, start + size)` of the realm (memslot deletion
    /// or move), holding `mmu`: must not sleep but through
    /// [`MmuLocked::cond_resched`].
    fn vm_stage2_unmap_range(
        _mmu: &mut MmuLocked<'_>,
        _realm: Pin<&Self::Realm>,
        _start: u64,
        _size: u64,
    ) {
        crate::build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }

    /// KVM is about to make memslot change `change` of the realm, leaving
    /// `new` (none for a deletion), under `slots_lock`. An error refuses
    /// the change.
    fn prepare_memory_region(
        _kvm: &Kvm,
        _realm: Pin<&Self::Realm>,
        _change: MemslotChange,
        _new: Option<&MemSlot>,
    ) -> Result {
        crate::build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }

    /// `vcpu` is about to run for the first time, after KVM's own first-run
    /// setup. An error fails that `KVM_RUN`.
    fn vcpu_first_run(_vcpu: &LockedVcpu, _realm: Pin<&Self::Realm>) -> Result {
        crate::build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }

    /// The provider's state for one realm vCPU.
    type VcpuState: Send + Sync;

    /// `vcpu` of the realm was created: its state, kept until KVM destroys
    /// the vCPU (before [`RealmOps::vm_destroy`]).
    fn vcpu_create(vcpu: &Vcpu, realm: Pin<&Self::Realm>) -> Result<Pin<KBox<Self::VcpuState>>>;

    /// Before each entry, where the vCPU may sleep, as
    /// `check_vcpu_requests()`.
    fn vcpu_pre_enter(
        vcpu: &RunningVcpu,
        realm: Pin<&Self::Realm>,
        state: Pin<&Self::VcpuState>,
    ) -> Result<RunNext>;

    /// Enters the vCPU. Runs with interrupts off inside the guest context of
    /// RCU, from a callback in `.noinstr.text`: it may only enter through
    /// [`realm_smc`] and load and store memory. Everything it calls must be
    /// inlined into that section (`#[inline(always)]`): nothing that sleeps,
    /// locks, allocates, prints, is traced or is instrumented, and no call
    /// out of it (the project's `scripts/check-noinstr.sh` checks the
    /// built module). Preparing the entry is [`RealmOps::vcpu_pre_enter`]'s
    /// job, accounting for it [`RealmOps::vcpu_handle_exit`]'s.
    fn vcpu_enter(state: Pin<&Self::VcpuState>) -> RealmExit;

    /// Handles the exit `how` of [`RealmOps::vcpu_enter`], as KVM's
    /// `handle_exit()`.
    fn vcpu_handle_exit(
        vcpu: &RunningVcpu,
        realm: Pin<&Self::Realm>,
        state: Pin<&Self::VcpuState>,
        how: RealmExit,
    ) -> Result<RunNext>;

    /// `KVM_RUN` after an MMIO exit: the access userspace emulated is in
    /// [`RunningVcpu::take_mmio`].
    fn mmio_complete(
        vcpu: &RunningVcpu,
        realm: Pin<&Self::Realm>,
        state: Pin<&Self::VcpuState>,
    ) -> Result<RunNext>;

    /// KVM wants the vCPU to take a synchronous external abort
    /// (`kvm_inject_sea()`), on an instruction fetch if `iabt`, at `addr`.
    fn vcpu_inject_sea(
        _vcpu: &LockedVcpu,
        _realm: Pin<&Self::Realm>,
        _state: Pin<&Self::VcpuState>,
        _iabt: bool,
        _addr: u64,
    ) -> Result {
        crate::build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }

    /// `KVM_SET_VCPU_EVENTS` on the vCPU; KVM checked its padding.
    fn vcpu_set_events(
        _vcpu: &LockedVcpu,
        _realm: Pin<&Self::Realm>,
        _state: Pin<&Self::VcpuState>,
        _events: VcpuEvents,
    ) -> Result {
        crate::build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }

    /// `KVM_SET_ONE_REG` of register `id` on the vCPU, before KVM writes it:
    /// an error refuses it.
    fn vcpu_set_one_reg(_vcpu: &LockedVcpu, _realm: Pin<&Self::Realm>, _id: u64) -> Result {
        crate::build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }

    /// `KVM_ARM_VCPU_INIT` with `features` (a bitmap of `KVM_ARM_VCPU_*`),
    /// before KVM checks them: an error refuses them.
    fn vcpu_check_features(
        _vcpu: &LockedVcpu,
        _realm: Pin<&Self::Realm>,
        _features: u64,
    ) -> Result {
        crate::build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }
}

/// The encoding of `ID_AA64DFR0_EL1` as KVM passes ID registers around:
/// `sys_reg(3, 0, 0, 5, 0)`, with op0 [20:19], op1 [18:16], CRn [15:12],
/// CRm [11:8], op2 [7:5].
pub const SYS_ID_AA64DFR0_EL1: u32 = (3 << 19) | (5 << 8);

/// What `KVM_SET_VCPU_EVENTS` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuEvents {
    /// An SError.
    pub serror_pending: bool,
    /// A synchronous external abort on the access the vCPU exited for.
    pub ext_dabt_pending: bool,
}

/// The provider's state for realm VM `kvm`.
///
/// # Safety
///
/// `kvm` is a live realm VM of provider `T` whose `vm_init` succeeded and
/// whose `vm_destroy` has not started.
unsafe fn realm_of<'a, T: RealmOps>(kvm: *mut bindings::kvm) -> Pin<&'a T::Realm> {
    // `vm_init_callback` stored a `Pin<KBox<T::Realm>>` in `arch.realm`,
    // which `vm_destroy_callback` takes back.
    // SAFETY: The caller is between the two, with a live VM.
    unsafe { <Pin<KBox<T::Realm>> as ForeignOwnable>::borrow((*kvm).arch.realm) }
}

/// The provider's state for realm vCPU `vcpu`.
///
/// # Safety
///
/// `vcpu` is a live vCPU of a realm VM of provider `T`, whose
/// `vcpu_create` succeeded and whose `vcpu_destroy` has not started.
/// Inlined: `vcpu_enter_callback` uses it inside the noinstr window.
#[inline(always)]
unsafe fn vcpu_state_of<'a, T: RealmOps>(vcpu: *mut bindings::kvm_vcpu) -> Pin<&'a T::VcpuState> {
    // `vcpu_create_callback` stored a `Pin<KBox<T::VcpuState>>` in
    // `arch.rec`, which `vcpu_destroy_callback` takes back.
    // SAFETY: The caller is between the two, with a live vCPU.
    unsafe { <Pin<KBox<T::VcpuState>> as ForeignOwnable>::borrow((*vcpu).arch.rec) }
}

/// Whether KVM would take a provider now: what [`Registration::new`]
/// refuses but for its callback table (realms need KVM up, under VHE and
/// without pKVM, and one provider at a time). For a provider to ask before
/// it changes what it cannot undo, so that a refused load leaves the host
/// as it was.
#[inline]
pub fn can_register() -> Result {
    // SAFETY: Only reads KVM's state, under KVM's lock.
    to_result(unsafe { bindings::kvm_arm_realm_can_register() })
}

/// A registered [`RealmOps`] provider; dropping it unregisters.
///
/// # Invariants
///
/// `ops` is registered with KVM for as long as this value exists.
pub struct Registration<T: RealmOps> {
    ops: KBox<bindings::kvm_arm_realm_ops>,
    _provider: PhantomData<T>,
}

// SAFETY: The table is only read, by KVM, and unregistering may run on any
// thread.
unsafe impl<T: RealmOps> Send for Registration<T> {}

// SAFETY: `&Registration` gives no access to anything.
unsafe impl<T: RealmOps> Sync for Registration<T> {}

impl<T: RealmOps> Registration<T> {
    /// Registers `T` as the provider of realm VMs, on behalf of `module`,
    /// with `T::limits()`.
    pub fn new(module: &'static ThisModule) -> Result<Self> {
        let limits = T::limits();
        let nr_regs = limits
            .regs
            .len()
            .checked_sub(limits.nr_sve_regs)
            .ok_or(EINVAL)?;
        let ops = KBox::new(
            bindings::kvm_arm_realm_ops {
                owner: module.as_ptr(),
                ipa_limit: limits.ipa_limit,
                sve_max_vl: limits.sve_max_vl,
                id_aa64dfr0_max: limits.id_aa64dfr0_max,
                // The ids are `'static`, as the table must be.
                regs: limits.regs.as_ptr(),
                nr_regs: c_uint::try_from(nr_regs).map_err(|_| EINVAL)?,
                nr_sve_regs: c_uint::try_from(limits.nr_sve_regs).map_err(|_| EINVAL)?,
                vm_init: Some(Self::vm_init_callback),
                vm_destroy: Some(Self::vm_destroy_callback),
                ext_allowed: Some(Self::ext_allowed_callback),
                check_extension: Some(Self::check_extension_callback),
                vm_ioctl: Some(Self::vm_ioctl_callback),
                vm_stage2_teardown: Some(Self::vm_stage2_teardown_callback),
                vm_stage2_unmap_range: if T::HAS_VM_STAGE2_UNMAP_RANGE {
                    Some(Self::vm_stage2_unmap_range_callback)
                } else {
                    None
                },
                vm_unmap_gfn_range: if T::HAS_VM_UNMAP_GFN_RANGE {
                    Some(Self::vm_unmap_gfn_range_callback)
                } else {
                    None
                },
                // Aborts come to `vcpu_handle_exit` with the RMM's report.
                vm_mem_abort: None,
                prepare_memory_region: if T::HAS_PREPARE_MEMORY_REGION {
                    Some(Self::prepare_memory_region_callback)
                } else {
                    None
                },
                vcpu_create: Some(Self::vcpu_create_callback),
                vcpu_destroy: Some(Self::vcpu_destroy_callback),
                vcpu_first_run: if T::HAS_VCPU_FIRST_RUN {
                    Some(Self::vcpu_first_run_callback)
                } else {
                    None
                },
                vcpu_load: None,
                vcpu_put: None,
                vcpu_pre_enter: Some(Self::vcpu_pre_enter_callback),
                vcpu_enter: Some(Self::vcpu_enter_callback),
                vcpu_handle_exit: Some(Self::vcpu_handle_exit_callback),
                mmio_complete: Some(Self::mmio_complete_callback),
                inject_sea: if T::HAS_VCPU_INJECT_SEA {
                    Some(Self::inject_sea_callback)
                } else {
                    None
                },
                set_vcpu_events: if T::HAS_VCPU_SET_EVENTS {
                    Some(Self::set_vcpu_events_callback)
                } else {
                    None
                },
                set_one_reg: if T::HAS_VCPU_SET_ONE_REG {
                    Some(Self::set_one_reg_callback)
                } else {
                    None
                },
                vcpu_check_features: if T::HAS_VCPU_CHECK_FEATURES {
                    Some(Self::vcpu_check_features_callback)
                } else {
                    None
                },
            },
            GFP_KERNEL,
        )?;
        // `drop` unregisters it before the box goes.
        // SAFETY: `ops` is fully set and lives at a stable address.
        to_result(unsafe { bindings::kvm_arm_realm_register(&*ops) })?;
        Ok(Self {
            ops,
            _provider: PhantomData,
        })
    }

    /// # Safety
    ///
    /// Called by KVM with a realm VM it is creating.
    unsafe extern "C" fn vm_init_callback(kvm: *mut bindings::kvm, vm_type: c_ulong) -> c_int {
        from_result(|| {
            // SAFETY: KVM keeps the VM live during the call.
            let vm = unsafe { Kvm::from_raw(kvm) };
            // CAST: `c_ulong` is 64 bits wide on arm64.
            let realm = T::vm_init(vm, vm_type as u64)?;
            // SAFETY: As above; nothing reads `arch.realm` before `vm_init` returns.
            unsafe { (*kvm).arch.realm = realm.into_foreign() };
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by KVM, once, with a realm VM whose `vm_init` succeeded.
    unsafe extern "C" fn vm_destroy_callback(kvm: *mut bindings::kvm) {
        // SAFETY: KVM keeps the VM live and makes no other call for it meanwhile.
        let state = unsafe { ptr::replace(&raw mut (*kvm).arch.realm, ptr::null_mut()) };
        if state.is_null() {
            return;
        }
        // SAFETY: Stored by `vm_init_callback` and taken back only here.
        let realm = unsafe { <Pin<KBox<T::Realm>> as ForeignOwnable>::from_foreign(state) };
        // SAFETY: KVM keeps the VM live during the call.
        T::vm_destroy(unsafe { Kvm::from_raw(kvm) }, realm);
    }

    /// # Safety
    ///
    /// Called by KVM with a live realm VM whose `vm_init` succeeded.
    unsafe extern "C" fn ext_allowed_callback(kvm: *mut bindings::kvm, ext: c_long) -> bool {
        // SAFETY: By the function's safety requirements.
        let realm = unsafe { realm_of::<T>(kvm) };
        // CAST: `c_long` is 64 bits wide on arm64.
        T::ext_allowed(realm, ext as i64)
    }

    /// # Safety
    ///
    /// Called by KVM with a live realm VM whose `vm_init` succeeded.
    unsafe extern "C" fn check_extension_callback(
        kvm: *mut bindings::kvm,
        ext: c_long,
        value: c_int,
    ) -> c_int {
        // SAFETY: By the function's safety requirements.
        let realm = unsafe { realm_of::<T>(kvm) };
        // CAST: `c_long` is 64 bits wide on arm64.
        T::check_extension(realm, ext as i64, value)
    }

    /// # Safety
    ///
    /// Called by KVM with a live realm VM whose `vm_init` succeeded.
    unsafe extern "C" fn vm_ioctl_callback(
        kvm: *mut bindings::kvm,
        cmd: c_uint,
        arg: c_ulong,
    ) -> c_long {
        // SAFETY: By the function's safety requirements.
        let (vm, realm) = unsafe { (Kvm::from_raw(kvm), realm_of::<T>(kvm)) };
        match T::vm_ioctl(vm, realm, cmd, arg) {
            Ok(v) => v,
            // CAST: An errno is small and negative; `c_long` holds any `i32`.
            Err(e) => e.to_errno() as c_long,
        }
    }
}

impl<T: RealmOps> Registration<T> {
    /// # Safety
    ///
    /// Called by KVM with a live realm VM, whose `vm_init` may have failed
    /// or not run, and never concurrently with `vm_destroy`.
    unsafe extern "C" fn vm_stage2_teardown_callback(kvm: *mut bindings::kvm) {
        // SAFETY: KVM keeps the VM live during the call.
        if unsafe { (*kvm).arch.realm }.is_null() {
            return;
        }
        // SAFETY: `vm_init` succeeded (the state is set); `vm_destroy` has not started.
        let (vm, realm) = unsafe { (Kvm::from_raw(kvm), realm_of::<T>(kvm)) };
        T::vm_stage2_teardown(vm, realm);
    }

    /// # Safety
    ///
    /// Called by KVM with a live realm VM, its `mmu_lock` held for writing,
    /// and a range it keeps fixed for the call.
    unsafe extern "C" fn vm_unmap_gfn_range_callback(
        kvm: *mut bindings::kvm,
        range: *mut bindings::kvm_gfn_range,
    ) -> bool {
        // SAFETY: KVM keeps the VM live during the call.
        if unsafe { (*kvm).arch.realm }.is_null() {
            return false;
        }
        // KVM unregisters its MMU notifier before `vm_destroy`, and each
        // guest_memfd file holds a VM reference, so that has not started.
        // SAFETY: `vm_init` succeeded (the state is set); see above.
        let (vm, realm) = unsafe { (Kvm::from_raw(kvm), realm_of::<T>(kvm)) };
        // SAFETY: KVM keeps the range fixed during the call.
        let range = unsafe { GfnRange::from_raw(range) };
        // INVARIANT: KVM calls this with `mmu_lock` held for writing, and
        // lets it go only if the range allows blocking.
        let mut mmu = MmuLocked {
            kvm: vm,
            may_block: range.may_block(),
        };
        T::vm_unmap_gfn_range(&mut mmu, realm, range)
    }

    /// # Safety
    ///
    /// Called by KVM with a live realm VM, its `mmu_lock` held for writing.
    unsafe extern "C" fn vm_stage2_unmap_range_callback(
        kvm: *mut bindings::kvm,
        start: bindings::phys_addr_t,
        size: u64,
        may_block: bool,
    ) {
        // SAFETY: KVM keeps the VM live during the call.
        if unsafe { (*kvm).arch.realm }.is_null() {
            return;
        }
        // Memslot changes end before `vm_destroy`.
        // SAFETY: `vm_init` succeeded (the state is set); see above.
        let (vm, realm) = unsafe { (Kvm::from_raw(kvm), realm_of::<T>(kvm)) };
        // INVARIANT: KVM calls this with `mmu_lock` held for writing, to
        // be let go only if `may_block`.
        let mut mmu = MmuLocked { kvm: vm, may_block };
        T::vm_stage2_unmap_range(&mut mmu, realm, start, size);
    }

    /// # Safety
    ///
    /// Called by KVM with a live realm VM, under its `slots_lock`, with the
    /// memslot after the change (null for a deletion), fixed for the call.
    unsafe extern "C" fn prepare_memory_region_callback(
        kvm: *mut bindings::kvm,
        _old: *const bindings::kvm_memory_slot,
        new: *mut bindings::kvm_memory_slot,
        change: bindings::kvm_mr_change,
    ) -> c_int {
        from_result(|| {
            let change = MemslotChange::from_raw(change).ok_or(EINVAL)?;
            // SAFETY: KVM keeps the VM live during the call.
            if unsafe { (*kvm).arch.realm }.is_null() {
                return Err(EINVAL);
            }
            // Memslots change only on a VM KVM finished creating.
            // SAFETY: `vm_init` succeeded (the state is set); see above.
            let (vm, realm) = unsafe { (Kvm::from_raw(kvm), realm_of::<T>(kvm)) };
            // SAFETY: KVM keeps `new` fixed during the call, when not null.
            let new = (!new.is_null()).then(|| unsafe { MemSlot::from_raw(new) });
            T::prepare_memory_region(vm, realm, change, new).map(|()| 0)
        })
    }

    /// # Safety
    ///
    /// Called by KVM in `KVM_RUN` with a live vCPU of a realm VM whose
    /// `vm_init` succeeded, its `mutex` held.
    unsafe extern "C" fn vcpu_first_run_callback(vcpu: *mut bindings::kvm_vcpu) -> c_int {
        // SAFETY: KVM keeps the vCPU (and so its VM) live and locked during the call.
        let vcpu = unsafe { LockedVcpu::from_raw(vcpu) };
        // SAFETY: By the function's safety requirements.
        let realm = unsafe { realm_of::<T>(vcpu.kvm().as_raw()) };
        from_result(|| T::vcpu_first_run(vcpu, realm).map(|()| 0))
    }
}

impl<T: RealmOps> Registration<T> {
    /// # Safety
    ///
    /// Called by KVM with a live vCPU it is creating, of a realm VM whose
    /// `vm_init` succeeded.
    unsafe extern "C" fn vcpu_create_callback(vcpu: *mut bindings::kvm_vcpu) -> c_int {
        // SAFETY: KVM keeps the vCPU (and so its VM) live during the call.
        let v = unsafe { Vcpu::from_raw(vcpu) };
        // SAFETY: By the function's safety requirements.
        let realm = unsafe { realm_of::<T>(v.kvm().as_raw()) };
        from_result(|| {
            let state = T::vcpu_create(v, realm)?;
            // SAFETY: Nothing reads `arch.rec` before `vcpu_create` returns.
            unsafe { (*vcpu).arch.rec = state.into_foreign() };
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by KVM, once, with a live vCPU of a realm VM it is destroying.
    unsafe extern "C" fn vcpu_destroy_callback(vcpu: *mut bindings::kvm_vcpu) {
        // SAFETY: KVM keeps the vCPU live and makes no other call for it meanwhile.
        let state = unsafe { ptr::replace(&raw mut (*vcpu).arch.rec, ptr::null_mut()) };
        if state.is_null() {
            return;
        }
        // SAFETY: Stored by `vcpu_create_callback` and taken back only here.
        drop(unsafe { <Pin<KBox<T::VcpuState>> as ForeignOwnable>::from_foreign(state) });
    }

    /// # Safety
    ///
    /// Called by KVM from the run loop of a live vCPU of a realm VM whose
    /// `vm_init` and `vcpu_create` succeeded.
    unsafe extern "C" fn vcpu_pre_enter_callback(vcpu: *mut bindings::kvm_vcpu) -> c_int {
        // SAFETY: By the function's safety requirements.
        let (v, state) = unsafe { (RunningVcpu::from_raw(vcpu), vcpu_state_of::<T>(vcpu)) };
        // SAFETY: As above.
        let realm = unsafe { realm_of::<T>(v.kvm().as_raw()) };
        RunNext::code(T::vcpu_pre_enter(v, realm, state))
    }

    /// In `.noinstr.text`, as the C function that calls it
    /// (`kvm_arm_vcpu_enter_exit()`): kprobes stay out, and everything it
    /// runs is inlined into it (see [`RealmOps::vcpu_enter`]).
    ///
    /// # Safety
    ///
    /// As `vcpu_pre_enter_callback`, with interrupts off in the guest
    /// context of RCU.
    #[link_section = ".noinstr.text"]
    unsafe extern "C" fn vcpu_enter_callback(vcpu: *mut bindings::kvm_vcpu) -> c_int {
        // SAFETY: By the function's safety requirements.
        let state = unsafe { vcpu_state_of::<T>(vcpu) };
        T::vcpu_enter(state).code()
    }

    /// # Safety
    ///
    /// As `vcpu_pre_enter_callback`, with `ret` from `vcpu_enter_callback`.
    unsafe extern "C" fn vcpu_handle_exit_callback(
        vcpu: *mut bindings::kvm_vcpu,
        ret: c_int,
    ) -> c_int {
        // SAFETY: By the function's safety requirements.
        let (v, state) = unsafe { (RunningVcpu::from_raw(vcpu), vcpu_state_of::<T>(vcpu)) };
        // SAFETY: As above.
        let realm = unsafe { realm_of::<T>(v.kvm().as_raw()) };
        let how = match u32::try_from(ret) {
            Ok(bindings::ARM_EXCEPTION_IRQ) => RealmExit::Irq,
            Ok(bindings::ARM_EXCEPTION_EL1_SERROR) => RealmExit::SError,
            _ => RealmExit::Trap,
        };
        RunNext::code(T::vcpu_handle_exit(v, realm, state, how))
    }

    /// # Safety
    ///
    /// As `vcpu_pre_enter_callback`, at the start of `KVM_RUN`.
    unsafe extern "C" fn mmio_complete_callback(vcpu: *mut bindings::kvm_vcpu) -> c_int {
        // SAFETY: By the function's safety requirements.
        let (v, state) = unsafe { (RunningVcpu::from_raw(vcpu), vcpu_state_of::<T>(vcpu)) };
        // SAFETY: As above.
        let realm = unsafe { realm_of::<T>(v.kvm().as_raw()) };
        RunNext::code(T::mmio_complete(v, realm, state))
    }

    /// # Safety
    ///
    /// Called by KVM with a live vCPU of a realm VM whose `vm_init` and
    /// `vcpu_create` succeeded, its `mutex` held.
    unsafe extern "C" fn inject_sea_callback(
        vcpu: *mut bindings::kvm_vcpu,
        iabt: bool,
        addr: u64,
    ) -> c_int {
        // SAFETY: By the function's safety requirements.
        let (v, state) = unsafe { (LockedVcpu::from_raw(vcpu), vcpu_state_of::<T>(vcpu)) };
        // SAFETY: As above.
        let realm = unsafe { realm_of::<T>(v.kvm().as_raw()) };
        // As `kvm_inject_sea()`: 1 to resume the guest.
        from_result(|| T::vcpu_inject_sea(v, realm, state, iabt, addr).map(|()| 1))
    }

    /// # Safety
    ///
    /// As `inject_sea_callback`; `events` points to the ioctl's argument.
    unsafe extern "C" fn set_vcpu_events_callback(
        vcpu: *mut bindings::kvm_vcpu,
        events: *mut bindings::kvm_vcpu_events,
    ) -> c_int {
        // SAFETY: By the function's safety requirements.
        let (v, state) = unsafe { (LockedVcpu::from_raw(vcpu), vcpu_state_of::<T>(vcpu)) };
        // SAFETY: As above.
        let realm = unsafe { realm_of::<T>(v.kvm().as_raw()) };
        // SAFETY: KVM copied the argument in; it is valid for the call.
        let exception = unsafe { (*events).exception };
        let events = VcpuEvents {
            serror_pending: exception.serror_pending != 0,
            ext_dabt_pending: exception.ext_dabt_pending != 0,
        };
        from_result(|| T::vcpu_set_events(v, realm, state, events).map(|()| 0))
    }

    /// # Safety
    ///
    /// Called by KVM with a live vCPU of a realm VM whose `vm_init`
    /// succeeded, its `mutex` held; `reg` points to the ioctl's argument.
    unsafe extern "C" fn set_one_reg_callback(
        vcpu: *mut bindings::kvm_vcpu,
        reg: *const bindings::kvm_one_reg,
    ) -> c_int {
        // SAFETY: By the function's safety requirements.
        let (v, id) = unsafe { (LockedVcpu::from_raw(vcpu), (*reg).id) };
        // SAFETY: As above.
        let realm = unsafe { realm_of::<T>(v.kvm().as_raw()) };
        from_result(|| T::vcpu_set_one_reg(v, realm, id).map(|()| 0))
    }

    /// # Safety
    ///
    /// As `set_one_reg_callback`.
    unsafe extern "C" fn vcpu_check_features_callback(
        vcpu: *mut bindings::kvm_vcpu,
        features: c_ulong,
    ) -> c_int {
        // SAFETY: By the function's safety requirements.
        let v = unsafe { LockedVcpu::from_raw(vcpu) };
        // SAFETY: As above.
        let realm = unsafe { realm_of::<T>(v.kvm().as_raw()) };
        // CAST: `c_ulong` is 64 bits wide on arm64.
        from_result(|| T::vcpu_check_features(v, realm, features as u64).map(|()| 0))
    }
}

impl<T: RealmOps> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: Registered in `new` (type invariant), with this table.
        unsafe { bindings::kvm_arm_realm_unregister(&*self.ops) };
    }
}
