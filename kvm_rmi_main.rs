// SPDX-License-Identifier: GPL-2.0

//! Arm CCA realm support for KVM.
//!
//! This crate root is the kernel shell around the sans-IO core: it issues the
//! real `smc` for the core's [`rmi_cmds::SmcConduit`] and probes the RMM at
//! load. The core files (`rmi_smc`, `rmi_cmds`) are also compiled into the
//! host crate `tools/testing/rmm-model` and tested there against an
//! executable model of the RMM. The module also links `kvm_rmi_trace.c`,
//! the C half of its tracepoints ([`trace`]).

#![crate_name = "kvm_rmi"]

use kernel::{
    alloc::flags::{
        __GFP_ZERO, //
        GFP_KERNEL,
    },
    arm64::{
        self,
        gpf as gpf_notifier,
        smccc, //
    },
    bindings,
    c_str,
    error::to_result,
    kvm,
    miscdevice::{
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    page::{
        Page,
        Pages, //
    },
    prelude::*,
    sync::SetOnce, //
};

use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicU64,
    AtomicU8,
    Ordering, //
};

// The sans-IO core, also built into the host crate tools/testing/rmm-model.
mod addr;
mod data;
mod exit;
mod granule;
mod memory;
mod populate;
#[expect(
    dead_code,
    reason = "the realm model grows test-first against the host RMM model; \
              the shell uses it operation by operation"
)]
mod realm;
mod realm_stats;
mod rec;
mod rmi_cmds;
mod rmi_observe;
#[expect(
    dead_code,
    reason = "the ABI tables grow test-first against the host RMM model; \
              the shell uses them command by command"
)]
mod rmi_smc;
mod rmm_init;
mod rtt;
mod run;
mod sro;

// The kernel shell, in the order a call goes: KVM's callbacks, the VM, a
// vCPU's run loop, its faults; then debugfs, GPF records, RAM, tracepoints.
mod kvm_debugfs;
mod kvm_fault;
mod kvm_gpf;
mod kvm_populate;
mod kvm_provider;
mod kvm_realm;
mod kvm_recs;
mod kvm_system_ram;
mod kvm_trace;
mod kvm_vcpu;

use addr::{
    Granule,
    GranuleRange, //
};
use data::GuestPages;
use granule::{
    DelegatedGranule,
    GranuleSet,
    PageSource,
    Rmi, //
};
use kvm_gpf::{
    GpfReporter,
    GpfTestDevice,
    GranuleList,
    Owner,
    OwnerRecords, //
};
use kvm_provider::RealmProvider;
use rmi_cmds::{
    RmiFeatureRegs,
    SmcConduit,
    VersionError, //
};
use rmi_observe::RmiObserver;
use rmi_smc::{
    RmiError,
    RmiErrorKind,
    RmiVersion,
    SmcRegs,
    SMCCC_RET_NOT_SUPPORTED, //
};
use rmm_init::{
    rmm_init,
    InitError,
    LoadError,
    RmmInfo,
    RmmProbe, //
};

module! {
    type: KvmRmi,
    name: "kvm_rmi",
    authors: ["kvm-rmi developers"],
    description: "Arm CCA realm support (RMI) for KVM",
    license: "GPL",
    params: {
        fault_around: u32 {
            default: crate::memory::FAULT_AROUND_FRAMES,
            description: "Frames a realm's protected stage-2 fault maps, its own included: \
                          an aligned window of private guest_memfd memory in the fault's \
                          level-3 RTT (a power of two up to 512; 1 maps the fault alone)",
        },
        gpf_selftest: bool {
            default: false,
            description: "At load, check that a host read of a delegated page faults, \
                          is reported and is fixed up (granule protection faults)",
        },
    },
}

/// The RMM, reached with `smc #0` from NS-EL2.
///
/// Only the typed command layer ([`rmi_cmds`]) calls it, with function IDs in
/// the RMI range, which EL3 either forwards to the RMM or answers with
/// `SMCCC_RET_NOT_SUPPORTED`. RMI commands only act on the physical addresses
/// passed to them, and the command layer passes only granules its caller owns.
struct RmiSmc;

/// Frames a protected fault maps (module parameter `fault_around`).
fn fault_around_frames() -> u32 {
    module_parameters::fault_around.value()
}

/// Every RMI call the module makes goes through this: counted by command,
/// delegations tracked, failures injected on request (debugfs `kvm_rmi/`).
static RMI_OBSERVER: RmiObserver = RmiObserver::new();

impl SmcConduit for RmiSmc {
    fn call(&self, args: &SmcRegs) -> SmcRegs {
        let start = arm64::counter_ticks();
        let (out, injected) = RMI_OBSERVER.call(args, |args| {
            if smccc::conduit() != smccc::Conduit::Smc {
                // As `arm_smccc_1_1_invoke()` does: no SMC conduit (firmware
                // older than SMCCC v1.1, or a guest's HVC) means no EL3 to
                // ask, and RMI needs SMCCC v1.2 from EL3.
                let mut out = SmcRegs::default();
                out.0[0] = SMCCC_RET_NOT_SUPPORTED;
                return out;
            }
            // SAFETY: SMC conduit checked above; RMI calls touch only owned PAs (see type docs).
            SmcRegs(unsafe { smccc::smc(&args.0) })
        });
        let ticks = arm64::counter_ticks().wrapping_sub(start);
        RMI_CALL_TIME.add(ticks);
        if kvm_trace::rmi_call_enabled() {
            kvm_trace::rmi_call(args, &out, ticks_to_ns(ticks), injected);
        }
        out
    }
}

/// A vCPU's `RMI_REC_ENTER`, in three steps on the vCPU's thread: prepared
/// before the noinstr window ([`RecEntry::prepare`]: the registers, and the
/// observer's verdict on an injected failure), made inside it
/// ([`RecEntry::enter`]: the SMC and plain memory accesses, nothing else)
/// and accounted for after it ([`RecEntry::finish`]: time, trace).
///
/// Realm vCPUs exist only where [`RmiSmc`] found the RMM, through the SMC
/// conduit.
pub(crate) struct RecEntry {
    /// x0..x17 of the call.
    args: kvm::RealmSmcRegs,
    /// x0..x17 of the answer: the RMM's, or an injected failure's.
    res: kvm::RealmSmcRegs,
    /// Where the entry stands ([`EntryStep`]).
    step: AtomicU8,
    /// Generic timer ticks from the SMC to its return.
    ticks: AtomicU64,
}

/// The steps of a [`RecEntry`], in [`RecEntry::step`].
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum EntryStep {
    /// Nothing prepared, or the last entry accounted for.
    Idle,
    /// `args` ready for the SMC.
    Ready,
    /// `res` holds an injected failure: no SMC.
    ReadyInjected,
    /// The SMC was made: `res` is the RMM's.
    Entered,
    /// The injected failure was taken.
    EnteredInjected,
}

impl EntryStep {
    /// Inlined: [`RecEntry::enter`] uses it inside the noinstr window.
    #[inline(always)]
    fn from_raw(raw: u8) -> Self {
        match raw {
            1 => Self::Ready,
            2 => Self::ReadyInjected,
            3 => Self::Entered,
            4 => Self::EnteredInjected,
            _ => Self::Idle,
        }
    }
}

impl RecEntry {
    /// Nothing prepared.
    pub(crate) const fn new() -> Self {
        Self {
            args: kvm::RealmSmcRegs::new(),
            res: kvm::RealmSmcRegs::new(),
            step: AtomicU8::new(EntryStep::Idle as u8),
            ticks: AtomicU64::new(0),
        }
    }

    /// Readies the entry of `rec` with run granule `run`. An entry prepared
    /// and not made (KVM's loop went back to userspace after
    /// `vcpu_pre_enter`) stays as it was: an injected failure the observer
    /// granted it is not spent twice.
    pub(crate) fn prepare(&self, rec: Granule, run: Granule) {
        if matches!(
            EntryStep::from_raw(self.step.load(Ordering::Relaxed)),
            EntryStep::Ready | EntryStep::ReadyInjected
        ) {
            return;
        }
        let args = rmi_cmds::rec_enter_args(rec, run);
        self.args.set(&args.0);
        let step = match RMI_OBSERVER.admit(&args) {
            Some(out) => {
                self.res.set(&out.0);
                EntryStep::ReadyInjected
            }
            None => EntryStep::Ready,
        };
        self.step.store(step as u8, Ordering::Relaxed);
    }

    /// Makes the prepared entry: inside the guest context of RCU, with
    /// interrupts off, so nothing but the SMC and plain memory accesses, all
    /// inlined into the noinstr callback. Returns x0 of the answer, or
    /// `None` if no entry was prepared.
    #[inline(always)]
    pub(crate) fn enter(&self) -> Option<u64> {
        let next = match EntryStep::from_raw(self.step.load(Ordering::Relaxed)) {
            EntryStep::Ready => {
                let start = arm64::counter_ticks();
                // SAFETY: `REC_ENTER` of a REC and run granule the caller owns (see type docs).
                unsafe { kvm::realm_smc(&self.args, &self.res) };
                let ticks = arm64::counter_ticks().wrapping_sub(start);
                self.ticks.store(ticks, Ordering::Relaxed);
                EntryStep::Entered
            }
            EntryStep::ReadyInjected => EntryStep::EnteredInjected,
            _ => return None,
        };
        self.step.store(next as u8, Ordering::Relaxed);
        Some(self.res.x0())
    }

    /// After the window, where RCU watches again: accounts for the entry
    /// made (its time, the observer's count of what it delegated, its
    /// `kvm_rmi_call` event) and returns x0 of its answer, or `None` if no
    /// entry was made since the last call.
    pub(crate) fn finish(&self) -> Option<u64> {
        let step = EntryStep::from_raw(self.step.load(Ordering::Relaxed));
        let injected = match step {
            EntryStep::Entered => false,
            EntryStep::EnteredInjected => true,
            _ => return None,
        };
        self.step.store(EntryStep::Idle as u8, Ordering::Relaxed);
        let (args, out) = (SmcRegs(self.args.get()), SmcRegs(self.res.get()));
        let ticks = if injected {
            0
        } else {
            RMI_OBSERVER.account(&args, &out);
            let ticks = self.ticks.load(Ordering::Relaxed);
            REC_ENTER_TIME.add(ticks);
            ticks
        };
        if kvm_trace::rmi_call_enabled() {
            kvm_trace::rmi_call(&args, &out, ticks_to_ns(ticks), injected);
        }
        Some(out.x(0))
    }
}

/// A REC's run granule: an NS page the RMM reads the entry from and writes
/// the exit to, with its address in the kernel's direct map, so that the
/// exit reason can be read inside the noinstr window, where nothing may be
/// mapped.
///
/// # Invariants
///
/// `words` is the direct-map address of `page`, which is never delegated:
/// [`RUN_PAGE_WORDS`] 8-byte words, live as long as `self`.
pub(crate) struct RunPage {
    page: KernelPage,
    words: NonNull<AtomicU64>,
}

/// The 8-byte words of a [`RunPage`].
const RUN_PAGE_WORDS: usize = addr::GRANULE_SIZE as usize / 8;

// SAFETY: `words` only caches an address of the page `self` owns, reached
// through atomics alone.
unsafe impl Send for RunPage {}

// SAFETY: As above.
unsafe impl Sync for RunPage {}

impl RunPage {
    /// A zeroed run granule, or `None` when out of memory.
    pub(crate) fn new() -> Option<Self> {
        let page = KernelPages.alloc()?;
        // Kernel pages come from the direct map on arm64 (no highmem).
        let words = page.page.direct_map_address()?.cast::<AtomicU64>();
        // INVARIANT: `words` is the page's direct-map address; the page is
        // only handed to the RMM as a run granule, never delegated.
        Some(Self { page, words })
    }

    /// The granule's address.
    pub(crate) fn granule(&self) -> Granule {
        self.page.granule
    }

    /// Word `n` of the page, or `None` past its end. Inlined, for the
    /// noinstr window.
    #[inline(always)]
    pub(crate) fn word(&self, n: usize) -> Option<&AtomicU64> {
        if n >= RUN_PAGE_WORDS {
            return None;
        }
        // Within the page (checked above), which lives as long as `self`
        // (type invariant), and 8-byte aligned, as the page is.
        // SAFETY: As above.
        Some(unsafe { &*self.words.as_ptr().add(n) })
    }

    /// Writes `words` at word index `at` (little-endian, as the RMM reads
    /// them). False if that runs past the page.
    pub(crate) fn write_words(&self, at: usize, words: &[u64]) -> bool {
        words.iter().enumerate().all(|(i, w)| {
            at.checked_add(i)
                .and_then(|n| self.word(n))
                .map(|word| word.store(w.to_le(), Ordering::Relaxed))
                .is_some()
        })
    }
}

/// `ticks` of the generic timer in nanoseconds, saturating. In two parts,
/// without 128-bit division (no `__udivti3` in the kernel).
fn ticks_to_ns(ticks: u64) -> u64 {
    const NS: u64 = 1_000_000_000;
    let hz = arm64::counter_frequency().max(1);
    (ticks / hz)
        .saturating_mul(NS)
        .saturating_add((ticks % hz).saturating_mul(NS) / hz)
}

/// How many RMI calls of a kind were made, and how long they took from the
/// SMC to its return (debugfs `kvm_rmi/rec_enter` and `kvm_rmi/rmi_time`).
struct CallTime {
    calls: AtomicU64,
    ticks: AtomicU64,
}

/// `REC_ENTER`: the world switches through EL3 and the RMM, and the
/// realm's own run.
static REC_ENTER_TIME: CallTime = CallTime::new();

/// Every other RMI call: what the host waits for the RMM.
static RMI_CALL_TIME: CallTime = CallTime::new();

impl CallTime {
    /// None yet.
    const fn new() -> Self {
        Self {
            calls: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
        }
    }

    /// Counts one call of `ticks` generic timer ticks.
    fn add(&self, ticks: u64) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.ticks.fetch_add(ticks, Ordering::Relaxed);
    }

    /// Writes `calls N` and `ns T` (the sum).
    fn write_to(&self, f: &mut impl core::fmt::Write) -> core::fmt::Result {
        let ns = ticks_to_ns(self.ticks.load(Ordering::Relaxed));
        writeln!(f, "calls {}", self.calls.load(Ordering::Relaxed))?;
        writeln!(f, "ns {ns}")
    }
}

/// A kernel page and the granule it occupies.
struct KernelPage {
    page: Page,
    granule: Granule,
}

impl KernelPage {
    /// The underlying `struct page`.
    fn as_raw(&self) -> *mut bindings::page {
        self.page.as_ptr()
    }
}

/// A kernel block of `2^order` pages and the granules it occupies.
struct KernelBlock {
    _pages: Pages,
    range: GranuleRange,
}

/// Pages from the kernel's page allocator.
struct KernelPages;

impl PageSource for KernelPages {
    type Page = KernelPage;
    type Block = KernelBlock;

    fn alloc_block(&self, order: u32) -> Option<KernelBlock> {
        let pages = Pages::alloc_pages(GFP_KERNEL | __GFP_ZERO, order).ok()?;
        let count = 1u64.checked_shl(order)?;
        let range = GranuleRange::from_count(Granule::new(pages.phys_addr())?, count)?;
        Some(KernelBlock {
            _pages: pages,
            range,
        })
    }

    fn block_range(block: &KernelBlock) -> GranuleRange {
        block.range
    }

    fn alloc(&self) -> Option<KernelPage> {
        let page = Page::alloc_page(GFP_KERNEL | __GFP_ZERO).ok()?;
        // Always a granule: arm64 PAs are 4 KiB aligned pages below 2^52.
        let granule = Granule::new(page.phys_addr())?;
        Some(KernelPage { page, granule })
    }

    fn granule(page: &KernelPage) -> Granule {
        page.granule
    }

    fn write_words(page: &KernelPage, at: usize, words: &[u64]) -> bool {
        words.iter().enumerate().all(|(i, w)| {
            let bytes = w.to_le_bytes();
            let Some(offset) = at.checked_add(i).and_then(|n| n.checked_mul(8)) else {
                return false;
            };
            // SAFETY: `bytes` is 8 readable bytes; the page is ours and NS, nothing races.
            unsafe { page.page.write_raw(bytes.as_ptr(), offset, bytes.len()) }.is_ok()
        })
    }

    fn read_words(page: &KernelPage, at: usize, words: &mut [u64]) -> bool {
        words.iter_mut().enumerate().all(|(i, w)| {
            let mut bytes = [0u8; 8];
            let Some(offset) = at.checked_add(i).and_then(|n| n.checked_mul(8)) else {
                return false;
            };
            // SAFETY: `bytes` is 8 writable bytes; the page is ours and NS, nothing races.
            let ok = unsafe { page.page.read_raw(bytes.as_mut_ptr(), offset, bytes.len()) }.is_ok();
            *w = u64::from_le_bytes(bytes);
            ok
        })
    }
}

impl GuestPages for KernelPages {
    fn get(&self, g: Granule) {
        // `g` is a guest_memfd page KVM handed over with a reference held.
        // SAFETY: Referenced, so its `struct page` is live.
        unsafe { bindings::get_page_pfn(pfn_of(g)) };
    }

    fn put(&self, g: Granule) {
        // SAFETY: The caller took a reference with `get`, so the page is live.
        unsafe { bindings::put_page_pfn(pfn_of(g)) };
    }
}

/// The page frame number of `g`.
fn pfn_of(g: Granule) -> usize {
    // CAST: PAs are below 2^52, so page frame numbers fit a `usize`.
    (g.pa() >> addr::GRANULE_SHIFT) as usize
}

/// The host's RMI endpoint; delegated memory borrows it for `'static`.
static RMI: Rmi<RmiSmc, KernelPages> = Rmi::new(RmiSmc, KernelPages);

/// The RMM's feature registers, read once when the module loads.
static RMM_FEATURES: SetOnce<RmiFeatureRegs> = SetOnce::new();

/// Lets the scheduler run something else (`cond_resched()`).
fn cond_resched() {
    // SAFETY: Called from process context, with no lock held.
    unsafe { bindings::cond_resched() };
}

/// A page delegated through [`RMI`].
type Delegated = DelegatedGranule<'static, RmiSmc, KernelPages>;

/// Records, in the host kernel, that the RMM is active for the rest of the
/// boot, before it is first changed: from then on kexec and hibernation
/// are refused (hook patch). Refused (`EBUSY`, logged) while a kexec image
/// or crash kernel loaded earlier in the boot could run.
fn mark_rmm_active() -> Result {
    // SAFETY: No preconditions; it takes the kexec lock and sets a flag.
    to_result(unsafe { bindings::arm64_rmm_mark_active() })
}

/// The one place RMI failures become errnos (the core chooses the kind).
impl From<RmiError> for Error {
    fn from(e: RmiError) -> Self {
        match e.kind() {
            RmiErrorKind::InvalidArgument => EINVAL,
            RmiErrorKind::NotSupported => EOPNOTSUPP,
            RmiErrorKind::Busy => EBUSY,
            RmiErrorKind::RmmUnavailable => ENODEV,
            RmiErrorKind::Failed => ENXIO,
        }
    }
}

/// Prints a core value (which implements `core::fmt::Display`) through the
/// kernel's `Display`, which the `pr_*!` macros require.
struct Shown<T>(T);

impl<T: core::fmt::Display> kernel::fmt::Display for Shown<T> {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        core::fmt::Display::fmt(&self.0, f)
    }
}

/// Logs why the RMM cannot be used, in one line, and returns the errno.
fn report_init_error(err: &InitError) -> Error {
    match err {
        InitError::Version(VersionError::NotSupported) => {
            pr_err!("no RMM found (RMI_VERSION: not supported)\n")
        }
        InitError::Version(_) => pr_err!("no RMM found ({})\n", Shown(err)),
        _ => pr_err!("RMM unusable: {}\n", Shown(err)),
    }
    match err {
        InitError::Version(_) | InitError::NoGranule4k | InitError::ConfiguredOtherwise(..) => {
            ENODEV
        }
        InitError::Cmd { err, .. } => Error::from(*err),
        InitError::NoMemory => ENOMEM,
        InitError::UnsupportedDonation => EOPNOTSUPP,
    }
}

/// Logs what init found: version, features, activation, tracking.
fn report_rmm(info: &RmmInfo) {
    pr_info!(
        "RMM ABI {} (RMM implements {}..{})\n",
        Shown(RmiVersion::HOST),
        Shown(info.versions.lower),
        Shown(info.versions.higher)
    );
    pr_info!("RMM features: {}\n", Shown(info.features));
    if info.activated_now {
        pr_info!("RMM configured (4 KiB granules) and activated\n");
    } else {
        pr_info!("RMM already active (configured earlier in this boot)\n");
    }
    let t = &info.tracking;
    pr_info!(
        "boot memory: {} MiB tracked, {} MiB untracked; L1 GPTs: {} created, {} present\n",
        t.fine / 256,
        t.untracked / 256,
        t.l1_created,
        t.l1_existing
    );
}

/// The loaded module.
struct KvmRmi {
    /// Realm VMs are provided while this is registered.
    _realms: kvm::Registration<RealmProvider>,
    /// L1 GPT granules this load donated. The RMM keeps them for the rest of
    /// the boot; at unload the records go and the pages are leaked (counted).
    gpt_tables: GranuleList,
    /// Reports host accesses to granules this module delegated.
    _gpf_reports: Pin<KBox<gpf_notifier::Registration<GpfReporter>>>,
    /// The GPF test device, with `gpf_selftest`.
    _gpf_test: Option<Pin<KBox<MiscDeviceRegistration<GpfTestDevice>>>>,
    /// `kvm_rmi/` in debugfs; goes after the realms (each holds a module
    /// reference).
    _debugfs: kvm_debugfs::Debugfs,
    /// Owners of delegated granules; dropped last, once nothing reports.
    _owners: OwnerRecords,
}

impl kernel::Module for KvmRmi {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let memory = kvm_system_ram::system_ram()?;
        let owners = kvm_gpf::init();
        let gpf_reports = KBox::pin_init(gpf_notifier::Registration::new(), GFP_KERNEL)?;
        let mut gpt_tables = GranuleList::new(Owner::Gpt);
        // Everything that can refuse the load is asked before the RMM is
        // configured and activated, which lasts for the rest of the boot.
        let admit = |probe: &RmmProbe| -> Result<kvm_debugfs::Debugfs> {
            kvm::can_register().inspect_err(|e| {
                pr_err!("cannot provide realms to KVM: {:?}\n", e);
            })?;
            RMM_FEATURES.populate(probe.features);
            let debugfs = kvm_debugfs::Debugfs::new(probe.versions, probe.features)?;
            // Last: it cannot be undone.
            mark_rmm_active()?;
            Ok(debugfs)
        };
        let (info, debugfs) = rmm_init(&RMI, memory.iter().copied(), &mut gpt_tables, admit)
            .map_err(|e| match e {
                LoadError::Rmm(e) => report_init_error(&e),
                LoadError::Refused(e) => e,
            })?;
        report_rmm(&info);
        let gpf_test = if module_parameters::gpf_selftest.value() {
            kvm_gpf::selftest()?;
            let options = MiscDeviceOptions {
                name: c_str!("kvm_rmi_gpf_test"),
            };
            Some(KBox::pin_init(
                MiscDeviceRegistration::register(options),
                GFP_KERNEL,
            )?)
        } else {
            None
        };
        // Refused only if another provider registered since `can_register()`.
        let realms = kvm::Registration::new(module).inspect_err(|e| {
            pr_err!("cannot provide realms to KVM: {:?}\n", e);
        })?;
        Ok(KvmRmi {
            _realms: realms,
            gpt_tables,
            _gpf_reports: gpf_reports,
            _gpf_test: gpf_test,
            _debugfs: debugfs,
            _owners: owners,
        })
    }
}

impl Drop for KvmRmi {
    fn drop(&mut self) {
        // The GPT records drop after this; the RMM keeps the tables, so the
        // leak count covers them. Realms will have their own accounting.
        let already = RMI.leaked();
        let tables = self.gpt_tables.len();
        if already > 0 || tables > 0 {
            pr_info!(
                "unloading: {} pages leaked so far, {} L1 GPT pages stay with the RMM\n",
                already,
                tables
            );
        }
    }
}
