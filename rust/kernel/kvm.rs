// SPDX-License-Identifier: GPL-2.0

//! KVM on arm64, as a module that provides realm VMs sees it.
//!
//! A provider implements [`RealmOps`] and keeps a [`Registration`] while it
//! is loaded. KVM then creates VMs of type `KVM_VM_TYPE_ARM_REALM` and calls
//! the provider for their realm-specific steps. Each realm VM holds a
//! reference on the provider's module, so the module outlives its realms.
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
use core::{marker::PhantomData, pin::Pin, ptr};

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

    /// Calls `f` on each memslot of the VM, in no particular order, until
    /// it fails.
    pub fn walk_memslots<F: FnMut(&MemSlot) -> Result>(
        &self,
        _slots: &SlotsLockGuard<'_>,
        mut f: F,
    ) -> Result {
        // `memslot_callback::<F>` takes `data` as an `F`, which outlives the call.
        // SAFETY: `_slots` proves `slots_lock` is held; `data` is as above.
        to_result(unsafe {
            bindings::kvm_arm_realm_walk_memslots(
                self.as_raw(),
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
        _slots: &SlotsLockGuard<'_>,
        gfn: u64,
        src: usize,
        npages: usize,
        mut f: F,
    ) -> Result<usize> {
        let npages = c_long::try_from(npages).map_err(|_| EINVAL)?;
        // `populate_callback::<F>` takes `opaque` as an `F`, which outlives the call.
        // SAFETY: `_slots` proves `slots_lock` is held; `opaque` is as above.
        let done = unsafe {
            bindings::kvm_gmem_populate(
                self.as_raw(),
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

    /// Lets the scheduler run something else while the caller holds
    /// `mmu_lock` for writing (`cond_resched_rwlock_write()`), in a KVM
    /// callback that may block.
    pub fn mmu_cond_resched(&self) {
        // KVM called the caller with `mmu_lock` held for writing, allowing blocking.
        // SAFETY: The VM is live, and the lock is held as above.
        unsafe { bindings::kvm_mmu_cond_resched(self.as_raw()) };
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

impl Drop for SlotsLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: Held (type invariant), and released once, here.
        unsafe { bindings::mutex_unlock(&raw mut (*self.kvm.as_raw()).slots_lock) };
    }
}

/// Calls the closure [`Kvm::walk_memslots`] passed as `data`.
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

/// Calls the closure [`Kvm::gmem_populate`] passed as `opaque`.
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

    fn raw(&self) -> &bindings::kvm_memory_slot {
        // SAFETY: Fixed while referenced (type invariant).
        unsafe { &*self.0.get() }
    }

    /// The first guest frame it maps.
    pub fn base_gfn(&self) -> u64 {
        self.raw().base_gfn
    }

    /// How many guest frames it maps.
    pub fn npages(&self) -> u64 {
        // CAST: `unsigned long` is 64 bits wide on arm64.
        self.raw().npages as u64
    }

    /// Whether its private memory comes from a guest_memfd.
    pub fn has_gmem(&self) -> bool {
        self.raw().flags & bindings::KVM_MEM_GUEST_MEMFD != 0
    }

    /// Whether KVM logs the pages written through it.
    pub fn logs_dirty_pages(&self) -> bool {
        self.raw().flags & bindings::KVM_MEM_LOG_DIRTY_PAGES != 0
    }
}

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

    /// Whether the callback may block (with [`Kvm::mmu_cond_resched`]).
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

    /// The PC as KVM holds it (see [`Vcpu::gpr`] on concurrency).
    pub fn pc(&self) -> u64 {
        // SAFETY: The vCPU is live; a `u64` load.
        unsafe { core::ptr::read_volatile(&raw const (*self.as_raw()).arch.ctxt.regs.pc) }
    }

    /// The vCPU's index in its VM.
    pub fn index(&self) -> u32 {
        // SAFETY: The vCPU is live; `vcpu_idx` is set at creation.
        let idx = unsafe { (*self.as_raw()).vcpu_idx };
        // CAST: vCPU indices are below `KVM_MAX_VCPUS`, never negative.
        idx as u32
    }
}

/// What a module does to provide realm VMs.
///
/// The callbacks run in process context and may sleep.
#[vtable]
pub trait RealmOps: Sized {
    /// The provider's state for one realm VM.
    type Realm: Send + Sync;

    /// The largest IPA size, in bits, a realm may have.
    fn ipa_limit() -> u32;

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
    /// invalidation, memory attribute change), holding `mmu_lock` for
    /// writing: must not sleep unless [`GfnRange::may_block`]. Returns
    /// whether KVM must flush TLBs.
    fn vm_unmap_gfn_range(_kvm: &Kvm, _realm: Pin<&Self::Realm>, _range: &GfnRange) -> bool {
        crate::build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }

    /// KVM unmaps IPAs `[start, start + size)` of the realm (memslot deletion
    /// or move), holding `mmu_lock` for writing: must not sleep unless
    /// `may_block`.
    fn vm_stage2_unmap_range(
        _kvm: &Kvm,
        _realm: Pin<&Self::Realm>,
        _start: u64,
        _size: u64,
        _may_block: bool,
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
    fn vcpu_first_run(_vcpu: &Vcpu, _realm: Pin<&Self::Realm>) -> Result {
        crate::build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }
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
    /// Registers `T` as the provider of realm VMs, on behalf of `module`.
    pub fn new(module: &'static ThisModule) -> Result<Self> {
        let ops = KBox::new(
            bindings::kvm_arm_realm_ops {
                owner: module.as_ptr(),
                ipa_limit: Some(Self::ipa_limit_callback),
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
                // Providers run no realm vCPUs yet.
                vm_mem_abort: None,
                prepare_memory_region: if T::HAS_PREPARE_MEMORY_REGION {
                    Some(Self::prepare_memory_region_callback)
                } else {
                    None
                },
                vcpu_create: None,
                vcpu_destroy: None,
                vcpu_first_run: if T::HAS_VCPU_FIRST_RUN {
                    Some(Self::vcpu_first_run_callback)
                } else {
                    None
                },
                vcpu_load: None,
                vcpu_put: None,
                vcpu_pre_enter: None,
                vcpu_enter: None,
                vcpu_handle_exit: None,
                mmio_complete: None,
                inject_sea: None,
                set_vcpu_events: None,
                set_one_reg: None,
                vcpu_check_features: None,
                sanitise_id_reg: None,
                sve_max_vl: None,
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

    extern "C" fn ipa_limit_callback() -> u32 {
        T::ipa_limit()
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
    /// Called by KVM with a live realm VM and a range it keeps fixed for the
    /// call.
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
        T::vm_unmap_gfn_range(vm, realm, unsafe { GfnRange::from_raw(range) })
    }

    /// # Safety
    ///
    /// Called by KVM with a live realm VM.
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
        T::vm_stage2_unmap_range(vm, realm, start, size, may_block);
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
    /// Called by KVM with a live vCPU of a realm VM whose `vm_init`
    /// succeeded.
    unsafe extern "C" fn vcpu_first_run_callback(vcpu: *mut bindings::kvm_vcpu) -> c_int {
        // SAFETY: KVM keeps the vCPU (and so its VM) live during the call.
        let vcpu = unsafe { Vcpu::from_raw(vcpu) };
        // SAFETY: By the function's safety requirements.
        let realm = unsafe { realm_of::<T>(vcpu.kvm().as_raw()) };
        from_result(|| T::vcpu_first_run(vcpu, realm).map(|()| 0))
    }
}

impl<T: RealmOps> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: Registered in `new` (type invariant), with this table.
        unsafe { bindings::kvm_arm_realm_unregister(&*self.ops) };
    }
}
