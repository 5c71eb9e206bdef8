// SPDX-License-Identifier: GPL-2.0

//! Granule protection faults: who owns the granule the host touched.
//!
//! Part of the kernel shell. Every granule this module keeps delegated is
//! recorded here with its owner (an L1 GPT, a realm's RD, root RTT or RTT),
//! so that a host access to it, which the kernel turns into a signal, a
//! uaccess failure or an oops, is reported with the name of what it hit.
//! The lookup runs in the fault's context, so it never waits for the lock.
//!
//! With the module parameter `gpf_selftest`, loading checks kernel accesses
//! and `/dev/kvm_rmi_gpf_test` lets a test check user ones: each open
//! delegates a page, `mmap` maps it, and closing undelegates it.

use kernel::{
    alloc::flags::{
        GFP_KERNEL,
        GFP_KERNEL_ACCOUNT, //
    },
    arm64::gpf::{
        map_frames,
        GpfHandler,
        GpfInfo, //
    },
    bindings,
    fs::File,
    global_lock,
    miscdevice::{
        MiscDevice,
        MiscDeviceRegistration, //
    },
    mm::virt::VmaNew,
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNode, //
    },
};

use crate::addr::{
    Granule,
    GranuleRange,
    GRANULE_SHIFT,
    GRANULE_SIZE, //
};
use crate::granule::{
    GranuleSet,
    PageSource, //
};
use crate::{
    Delegated,
    KernelPages,
    RmiSmc,
    RMI, //
};

/// What a realm uses a granule for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RealmPart {
    /// Its Realm Descriptor.
    Rd,
    /// One of its root RTTs.
    RootRtt,
    /// One of its non-root RTTs.
    Rtt,
    /// A REC (one per vCPU).
    Rec,
    /// One of a REC's auxiliary granules.
    RecAux,
}

/// Who a delegated granule belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A level-1 GPT the RMM keeps for the rest of the boot.
    Gpt,
    /// The page of the load-time GPF self-test.
    SelfTest,
    /// Realm `id`, created by process `pid`.
    Realm {
        /// The realm's number in this load of the module.
        id: u64,
        /// The process that created its VM.
        pid: i32,
        /// What the granule is to the realm.
        part: RealmPart,
    },
}

impl core::fmt::Display for Owner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Gpt => f.write_str("a level-1 GPT"),
            Self::SelfTest => f.write_str("the GPF self-test page"),
            Self::Realm { id, pid, part } => {
                let part = match part {
                    RealmPart::Rd => "the RD",
                    RealmPart::RootRtt => "a root RTT",
                    RealmPart::Rtt => "an RTT",
                    RealmPart::Rec => "a REC",
                    RealmPart::RecAux => "a REC's auxiliary granule",
                };
                write!(f, "{part} of realm {id} (VM of pid {pid})")
            }
        }
    }
}

global_lock! {
    // SAFETY: Initialised by `init` before any other use.
    unsafe(uninit) static OWNERS: SpinLock<Option<RBTree<u64, Owner>>> = None;
}

/// The owner records while the module is loaded; dropping this frees them.
pub(crate) struct OwnerRecords(());

impl Drop for OwnerRecords {
    fn drop(&mut self) {
        // Freed after the lock is released.
        let tree = OWNERS.lock().take();
        drop(tree);
    }
}

/// Sets up the owner records; call once, first, at module load, and keep
/// the result until the module goes.
pub(crate) fn init() -> OwnerRecords {
    // SAFETY: Called once, at load, before any other use of `OWNERS`.
    unsafe { OWNERS.init() };
    *OWNERS.lock() = Some(RBTree::new());
    OwnerRecords(())
}

/// Records that `owner` holds the granules of `range`. Best effort: without
/// memory for the record a fault there is reported with no owner.
pub(crate) fn record(range: GranuleRange, owner: Owner) {
    for g in range.iter() {
        let Ok(node) = RBTreeNode::new(g.pa(), owner, GFP_KERNEL) else {
            return;
        };
        if let Some(tree) = OWNERS.lock().as_mut() {
            tree.insert(node);
        }
    }
}

/// Forgets the owner of the granules of `range` (they are back in the host).
pub(crate) fn forget(range: GranuleRange) {
    for g in range.iter() {
        // Dropped after the lock: freeing may not happen under a spinlock
        // that a fault context could be waiting on.
        let node = OWNERS.lock().as_mut().and_then(|t| t.remove_node(&g.pa()));
        drop(node);
    }
}

/// Delegated granules of one owner (a realm's non-root RTTs, L1 GPTs),
/// found by address and recorded for GPF reports.
pub(crate) struct GranuleList {
    granules: KVec<Delegated>,
    owner: Owner,
}

impl GranuleList {
    /// An empty list of `owner`'s granules.
    pub(crate) fn new(owner: Owner) -> Self {
        Self {
            granules: KVec::new(),
            owner,
        }
    }
}

/// The one-granule range of `g`.
pub(crate) fn one(g: Granule) -> Option<GranuleRange> {
    GranuleRange::from_count(g, 1)
}

impl GranuleSet<'static, RmiSmc, KernelPages> for GranuleList {
    fn reserve(&mut self, n: usize) -> bool {
        self.granules.reserve(n, GFP_KERNEL_ACCOUNT).is_ok()
    }

    fn push(&mut self, g: Delegated) {
        if let Some(range) = one(g.granule()) {
            record(range, self.owner);
        }
        // Room was reserved; a failure would drop `g`, which is safe.
        let _ = self.granules.push_within_capacity(g);
    }

    fn take(&mut self, g: Granule) -> Option<Delegated> {
        let i = self.granules.iter().position(|d| d.granule() == g)?;
        if let Some(range) = one(g) {
            forget(range);
        }
        self.granules.remove(i).ok()
    }

    fn len(&self) -> usize {
        self.granules.len()
    }
}

/// The owner of the granule holding `pa`, if recorded and the records are
/// not being changed right now.
fn owner_of(pa: u64) -> Option<Owner> {
    let granule = Granule::new(pa & !(GRANULE_SIZE - 1))?;
    let guard = OWNERS.try_lock()?;
    guard.as_ref()?.get(&granule.pa()).copied()
}

/// Reports granule protection faults with the owner of the granule.
pub(crate) struct GpfReporter;

impl GpfHandler for GpfReporter {
    fn on_gpf(info: &GpfInfo) {
        let who = if info.user {
            "user space"
        } else {
            "the kernel"
        };
        match info.pa.map(|pa| (pa, owner_of(pa))) {
            Some((pa, Some(owner))) => pr_err!(
                "granule protection fault: {} touched PA {:#x} (VA {:#x}, ESR {:#x}): {}\n",
                who,
                pa,
                info.far,
                info.esr,
                crate::Shown(owner)
            ),
            Some((pa, None)) => pr_err!(
                "granule protection fault: {} touched PA {:#x} (VA {:#x}, ESR {:#x}), \
                 not a granule kvm_rmi delegated\n",
                who,
                pa,
                info.far,
                info.esr
            ),
            None => pr_err!(
                "granule protection fault: {} touched VA {:#x} (ESR {:#x}), PA unknown\n",
                who,
                info.far,
                info.esr
            ),
        }
    }
}

/// Whether 8 bytes of `page` can be read, without oopsing if that faults
/// (`copy_from_kernel_nofault()`).
fn readable(page: *mut bindings::page) -> bool {
    let mut word = 0u64;
    // Without highmem the mapping is the page's linear-map address.
    // SAFETY: `page` is a live page of ours, mapped for this scope only.
    let va = unsafe { bindings::kmap_local_page(page) };
    // A faulting read of `va` is fixed up: the call then returns -EFAULT.
    // SAFETY: `word` is 8 writable bytes and `va` is mapped.
    let ret = unsafe { bindings::copy_from_kernel_nofault((&raw mut word).cast(), va, 8) };
    // SAFETY: Mapped above, in this context.
    unsafe { bindings::kunmap_local(va) };
    ret == 0
}

/// Checks the host's GPF handling on this machine: a kernel read of a
/// delegated page must fault, be reported with its owner, and be fixed up
/// (the nofault read fails with `EFAULT`); after undelegation the read must
/// work. Runs at load when asked (module parameter `gpf_selftest`).
pub(crate) fn selftest() -> Result {
    let page = RMI.pages().alloc().ok_or(ENOMEM)?;
    let raw = page.as_raw();
    let granule = KernelPages::granule(&page);
    let before = readable(raw);
    let delegated = Delegated::delegate(&RMI, page)?;
    record(
        GranuleRange::from_count(granule, 1).ok_or(EINVAL)?,
        Owner::SelfTest,
    );
    let delegated_readable = readable(raw);
    forget(GranuleRange::from_count(granule, 1).ok_or(EINVAL)?);
    let page = delegated.undelegate()?;
    let after = readable(page.as_raw());
    if before && !delegated_readable && after {
        pr_info!(
            "GPF self-test passed: reading delegated {} faulted and was fixed up\n",
            crate::Shown(granule)
        );
        Ok(())
    } else {
        pr_err!(
            "GPF self-test failed: {} readable before {}, delegated {}, after {}\n",
            crate::Shown(granule),
            before,
            delegated_readable,
            after
        );
        Err(EIO)
    }
}

/// A page delegated for one open file of the GPF test device.
pub(crate) struct GpfTestPage {
    page: Delegated,
}

/// `/dev/kvm_rmi_gpf_test`: maps delegated pages into user space, so that a
/// test can check that touching one gives a signal (a user access) or a
/// failed copy (a uaccess), never an oops.
pub(crate) struct GpfTestDevice;

#[vtable]
impl MiscDevice for GpfTestDevice {
    type Ptr = KBox<GpfTestPage>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<GpfTestPage>> {
        let page = RMI.pages().alloc().ok_or(ENOMEM)?;
        let page = Delegated::delegate(&RMI, page)?;
        let range = GranuleRange::from_count(page.granule(), 1).ok_or(EINVAL)?;
        let device = KBox::new(GpfTestPage { page }, GFP_KERNEL)?;
        record(range, Owner::SelfTest);
        Ok(device)
    }

    fn release(device: KBox<GpfTestPage>, _file: &File) {
        if let Some(range) = GranuleRange::from_count(device.page.granule(), 1) {
            forget(range);
        }
        // No mapping is left (each holds the file): undelegate and free.
        drop(device);
    }

    fn mmap(device: &GpfTestPage, _file: &File, vma: &VmaNew) -> Result {
        let size = vma.end().checked_sub(vma.start()).ok_or(EINVAL)?;
        if u64::try_from(size) != Ok(GRANULE_SIZE) {
            return Err(EINVAL);
        }
        // Special entries: GUP (vmsplice, O_DIRECT, /proc/pid/mem, ...)
        // refuses them, so the kernel never reads the page outside a
        // uaccess.
        let pfn = usize::try_from(device.page.granule().pa() >> GRANULE_SHIFT);
        let len = usize::try_from(GRANULE_SIZE);
        let (Ok(pfn), Ok(len)) = (pfn, len) else {
            return Err(EINVAL);
        };
        // The page is this file's until its release, which the mapping
        // (holding the file) comes before.
        // SAFETY: As above.
        unsafe { map_frames(vma, pfn, len) }
    }
}
