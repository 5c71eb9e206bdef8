// SPDX-License-Identifier: GPL-2.0

//! The VMM proper, on an aarch64 host with KVM: a realm VM on kvm-rmi (or a
//! normal VM), its RAM, the boot blobs, the vGICv3, a thread per vCPU and
//! their exits.
//!
//! A realm's RAM is one guest_memfd memslot with a shared mapping for the
//! pages the guest makes shared. The VMM never writes realm RAM: the
//! kernel, initrd and device tree are copied to page-aligned staging
//! buffers and populated from there with `KVM_ARM_RMI_POPULATE` (measured);
//! the first `KVM_RUN` sets the rest to RIPAS RAM. A normal VM's RAM is a
//! plain memslot the blobs are written into.

use std::fmt;
use std::fs;
use std::io::{
    self,
    Read,
    Write, //
};
use std::os::fd::{
    AsRawFd,
    FromRawFd,
    OwnedFd, //
};
use std::sync::atomic::{
    AtomicBool,
    AtomicI32,
    AtomicU64,
    Ordering, //
};
use std::sync::{
    Arc,
    Mutex, //
};
use std::thread;
use std::time::Instant;

use kvm_bindings::{
    kvm_create_device,
    kvm_create_guest_memfd,
    kvm_device_attr,
    kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
    kvm_memory_attributes,
    kvm_userspace_memory_region2,
    kvm_vcpu_init,
    KVM_ARM_IRQ_TYPE_SHIFT,
    KVM_ARM_IRQ_TYPE_SPI,
    KVM_ARM_VCPU_POWER_OFF,
    KVM_ARM_VCPU_PSCI_0_2,
    KVM_DEV_ARM_VGIC_CTRL_INIT,
    KVM_DEV_ARM_VGIC_GRP_ADDR,
    KVM_DEV_ARM_VGIC_GRP_CTRL,
    KVM_MEMORY_ATTRIBUTE_PRIVATE,
    KVM_MEMORY_EXIT_FLAG_PRIVATE,
    KVM_MEM_GUEST_MEMFD,
    KVM_REG_ARM64,
    KVM_REG_ARM64_SYSREG,
    KVM_REG_ARM_CORE,
    KVM_REG_SIZE_U64,
    KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN,
    KVM_VGIC_V3_ADDR_TYPE_DIST,
    KVM_VGIC_V3_ADDR_TYPE_REDIST, //
};
use kvm_ioctls::{
    Kvm,
    VcpuExit,
    VcpuFd,
    VmFd, //
};
use vm_superio::Trigger;
use vmm_sys_util::errno;
use vmm_sys_util::signal::{
    register_signal_handler,
    Killable,
    SIGRTMIN, //
};

use crate::args::Options;
use crate::attest::{
    self,
    Challenge,
    ConsoleTap, //
};
use crate::dtb::{
    self,
    DtbConfig, //
};
use crate::layout::{
    ImageHeader,
    Placement,
    Region,
    GICD_BASE,
    GICR_BASE,
    RAM_BASE,
    UART_SPI, //
};
use crate::rim::{
    self,
    MeasuredRecParams,
    RimCandidates,
    REC_RUNNABLE, //
};
use crate::uart::Uart;

/// `KVM_VM_TYPE_ARM_REALM`: the machine type bit of a realm VM (kvm-rmi's
/// uAPI), or'ed with the IPA size.
const KVM_VM_TYPE_ARM_REALM: u64 = 1 << 30;
/// `KVM_CAP_ARM_RMI`: whether a realm provider is loaded.
const KVM_CAP_ARM_RMI: u64 = 252;
/// `KVM_CAP_ARM_VM_IPA_SIZE`.
const KVM_CAP_ARM_VM_IPA_SIZE: u64 = 165;
/// `KVM_ARM_RMI_POPULATE_FLAGS_MEASURE`.
const POPULATE_MEASURE: u32 = 1 << 0;
/// The IPA size the guest gets, if KVM allows it.
const IPA_BITS: u32 = 40;
/// The largest IPA size without LPA2: KVM allows more only when its stage 2
/// uses LPA2, and kvm-rmi then asks the RMM for LPA2 too.
const IPA_BITS_NO_LPA2: u32 = 48;
/// `ID_AA64DFR0_EL1` (op0 3, op1 0, CRn 0, CRm 5, op2 0) as a
/// `KVM_GET_ONE_REG` id.
const REG_ID_AA64DFR0_EL1: u64 =
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG as u64 | (3 << 14) | (5 << 3);

/// `struct kvm_arm_rmi_populate` (kvm-rmi's uAPI).
#[repr(C)]
#[derive(Default)]
struct RmiPopulate {
    base: u64,
    size: u64,
    source_uaddr: u64,
    flags: u32,
    reserved: u32,
}

vmm_sys_util::ioctl_iowr_nr!(KVM_ARM_RMI_POPULATE, kvm_bindings::KVMIO, 0xd7, RmiPopulate);

/// What stopped the VMM.
#[derive(Debug)]
pub enum VmmError {
    /// An ioctl KVM refused.
    Ioctl {
        /// The ioctl.
        name: &'static str,
        /// Its errno.
        errno: i32,
    },
    /// Anything else, said in words.
    Other(String),
}

impl fmt::Display for VmmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ioctl { name, errno } => write!(
                f,
                "{name} refused: {} ({})",
                errno_name(*errno),
                io::Error::from_raw_os_error(*errno)
            ),
            Self::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for VmmError {}

/// The symbolic name of the errnos KVM gives.
fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOTTY => "ENOTTY",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EHWPOISON => "EHWPOISON",
        _ => "errno",
    }
}

/// Names a failed ioctl.
trait Named<T> {
    /// `self`, its error named `name`.
    fn named(self, name: &'static str) -> Result<T, VmmError>;
}

impl<T> Named<T> for Result<T, errno::Error> {
    fn named(self, name: &'static str) -> Result<T, VmmError> {
        self.map_err(|e| VmmError::Ioctl {
            name,
            errno: e.errno(),
        })
    }
}

/// An anonymous, page-aligned mapping, unmapped on drop.
///
/// # Invariants
///
/// `addr` is a live mapping of `len` bytes, readable and writable.
struct Mapping {
    addr: *mut u8,
    len: usize,
}

// SAFETY: The mapping is plain memory; the VMM shares it only with KVM.
unsafe impl Send for Mapping {}
// SAFETY: As above: accesses from threads go through KVM or are reads of
// bytes the guest may change (the shared pages).
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `len` bytes of zeroed memory.
    fn new(len: u64) -> Result<Self, VmmError> {
        let len = usize::try_from(len).map_err(|_| VmmError::Other("mapping too large".into()))?;
        // SAFETY: A new anonymous mapping; no existing memory is touched.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(VmmError::Other(format!(
                "mmap of {len} bytes: {}",
                io::Error::last_os_error()
            )));
        }
        // INVARIANT: mmap succeeded with `len` bytes, read-write.
        Ok(Self {
            addr: addr.cast(),
            len,
        })
    }

    /// Copies `data` to `offset`: false if it does not fit.
    fn write(&self, offset: u64, data: &[u8]) -> bool {
        let Some(start) = usize::try_from(offset)
            .ok()
            .filter(|&o| o.checked_add(data.len()).is_some_and(|e| e <= self.len))
        else {
            return false;
        };
        // `[start, start + len)` lies in the mapping (checked above, type
        // invariant); `data` cannot overlap it (the VMM hands out no slice
        // of it).
        // SAFETY: As above.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.addr.add(start), data.len()) };
        true
    }

    /// The address of byte `offset`, for KVM.
    fn uaddr(&self, offset: u64) -> u64 {
        self.addr as u64 + offset
    }

    /// Gives back the pages of `[offset, offset + len)` (`MADV_DONTNEED`):
    /// they read as zero from now on.
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(o), Ok(l)) = (usize::try_from(offset), usize::try_from(len)) else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        if o.checked_add(l).is_none_or(|e| e > self.len) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // Within the mapping (checked above); the VMM holds no reference
        // into it.
        // SAFETY: As above.
        let ret = unsafe { libc::madvise(self.addr.add(o).cast(), l, libc::MADV_DONTNEED) };
        if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: The mapping is ours (type invariant) and goes with `self`.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

/// The UART's interrupt: an edge on its SPI.
struct UartIrq(Arc<VmFd>);

impl Trigger for UartIrq {
    type E = errno::Error;

    fn trigger(&self) -> Result<(), Self::E> {
        let irq = (KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT) | (32 + UART_SPI);
        self.0.set_irq_line(irq, true)?;
        self.0.set_irq_line(irq, false)
    }
}

/// The guest's RAM: its shared (or, for a normal VM, only) mapping, and
/// for a realm its guest_memfd.
struct Ram {
    map: Mapping,
    gmem: Option<OwnedFd>,
    size: u64,
}

impl Ram {
    /// The offset of guest address `gpa` in RAM, with the offset of its end
    /// `size` bytes on.
    fn offset(&self, gpa: u64, size: u64) -> Option<u64> {
        let off = gpa.checked_sub(RAM_BASE)?;
        off.checked_add(size).filter(|&end| end <= self.size)?;
        Some(off)
    }
}

/// The reg id of core register word `word` (`struct kvm_regs`, in 32-bit
/// words: x`n` is word 2n, the PC word 64).
fn core_reg(word: u64) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | u64::from(KVM_REG_ARM_CORE) | word
}

/// What the vCPUs met, for the summary line.
#[derive(Default)]
struct ExitCounts {
    /// MMIO exits.
    mmio: AtomicU64,
    /// `KVM_EXIT_MEMORY_FAULT`s to shared, and their bytes.
    to_shared: AtomicU64,
    /// See [`ExitCounts::to_shared`].
    to_shared_bytes: AtomicU64,
    /// `KVM_EXIT_MEMORY_FAULT`s to private, and their bytes.
    to_private: AtomicU64,
    /// See [`ExitCounts::to_private`].
    to_private_bytes: AtomicU64,
    /// `KVM_RUN`s cut short by a kick (`EINTR`).
    kicks: AtomicU64,
}

impl ExitCounts {
    /// The summary line.
    fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} MMIO exits, {} memory faults to shared ({} KiB), {} to private ({} KiB), {} kicks",
            g(&self.mmio),
            g(&self.to_shared),
            g(&self.to_shared_bytes) >> 10,
            g(&self.to_private),
            g(&self.to_private_bytes) >> 10,
            g(&self.kicks)
        )
    }
}

/// State the vCPU threads share.
struct Shared {
    vm: Arc<VmFd>,
    ram: Ram,
    uart: Mutex<Uart<UartIrq, ConsoleTap<io::Stdout>>>,
    exits: ExitCounts,
    /// Set when the guest powered off (or the VMM gave up): every vCPU
    /// thread stops.
    stop: AtomicBool,
    /// The VMM's exit status, [`NO_STATUS`] until a vCPU (or Ctrl-A x)
    /// gives one.
    status: AtomicI32,
    /// A vCPU gave [`Shared::status`] from what it stopped for (a realm
    /// found off gives it only if nothing else does).
    status_given: AtomicBool,
}

thread_local! {
    /// The running vCPU's `kvm_run.immediate_exit`, for the kick handler.
    static IMMEDIATE_EXIT: std::cell::Cell<*mut u8> = const { std::cell::Cell::new(std::ptr::null_mut()) };
}

/// The kick signal: makes a vCPU's `KVM_RUN` return (`EINTR`) at once.
extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    IMMEDIATE_EXIT.with(|p| {
        let p = p.get();
        if !p.is_null() {
            // Set by this thread to its own live `kvm_run` before it runs;
            // a byte store is async-signal-safe.
            // SAFETY: As above.
            unsafe { p.write_volatile(1) };
        }
    });
}

/// Runs the VM `opts` asks for until it powers off; returns the status the
/// VMM exits with.
pub fn run(opts: &Options) -> Result<i32, VmmError> {
    let kernel = fs::read(&opts.kernel)
        .map_err(|e| VmmError::Other(format!("{}: {e}", opts.kernel.display())))?;
    let initrd = match &opts.initrd {
        Some(p) => Some(fs::read(p).map_err(|e| VmmError::Other(format!("{}: {e}", p.display())))?),
        None => None,
    };
    let header = ImageHeader::parse(&kernel)
        .map_err(|e| VmmError::Other(format!("{}: {e}", opts.kernel.display())))?;

    let kvm = Kvm::new().named("open /dev/kvm")?;
    let realm = !opts.normal;
    if realm && kvm.check_extension_raw(KVM_CAP_ARM_RMI) <= 0 {
        return Err(VmmError::Other(
            "KVM offers no realms (KVM_CAP_ARM_RMI is 0): load kvm_rmi on an RME host, \
             or use --normal"
                .into(),
        ));
    }
    let ipa_max = u32::try_from(kvm.check_extension_raw(KVM_CAP_ARM_VM_IPA_SIZE)).unwrap_or(0);
    let ipa_bits = if ipa_max >= IPA_BITS {
        IPA_BITS
    } else {
        ipa_max.max(32)
    };
    let vm_type = u64::from(ipa_bits) | if realm { KVM_VM_TYPE_ARM_REALM } else { 0 };
    let vm = Arc::new(kvm.create_vm_with_type(vm_type).named("KVM_CREATE_VM")?);

    let place = Placement::new(
        opts.mem,
        ipa_bits,
        header,
        kernel.len() as u64,
        initrd.as_ref().map(|i| i.len() as u64),
    )
    .map_err(|e| VmmError::Other(e.to_string()))?;
    let challenge = if opts.attest {
        Some(Challenge::fresh().map_err(|e| VmmError::Other(format!("a challenge: {e}")))?)
    } else {
        None
    };
    let cmdline = match &challenge {
        Some(c) => format!("{} {}", opts.cmdline, c.cmdline_param()),
        None => opts.cmdline.clone(),
    };
    let dtb = dtb::build(&DtbConfig {
        vcpus: opts.smp,
        ram_size: opts.mem,
        cmdline,
        initrd: place.initrd,
        realm,
    })
    .map_err(|e| VmmError::Other(e.to_string()))?;
    if dtb.len() as u64 > place.dtb.size {
        return Err(VmmError::Other("device tree larger than 2 MiB".into()));
    }

    let ram = Ram {
        map: Mapping::new(opts.mem)?,
        gmem: None,
        size: opts.mem,
    };
    let ram = add_ram(&vm, ram, realm)?;

    // vCPUs, then the vGIC (its redistributors are per vCPU).
    let mut vcpus = Vec::new();
    let mut kvi = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut kvi)
        .named("KVM_ARM_PREFERRED_TARGET")?;
    for i in 0..opts.smp {
        let vcpu = vm.create_vcpu(u64::from(i)).named("KVM_CREATE_VCPU")?;
        let mut init = kvi;
        init.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
        if i > 0 {
            init.features[0] |= 1 << KVM_ARM_VCPU_POWER_OFF;
        }
        vcpu.vcpu_init(&init).named("KVM_ARM_VCPU_INIT")?;
        vcpus.push(vcpu);
    }
    let gic = vm
        .create_device(&mut kvm_create_device {
            type_: kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
            fd: 0,
            flags: 0,
        })
        .named("KVM_CREATE_DEVICE (vGICv3)")?;
    for (attr, base) in [
        (KVM_VGIC_V3_ADDR_TYPE_DIST, GICD_BASE),
        (KVM_VGIC_V3_ADDR_TYPE_REDIST, GICR_BASE),
    ] {
        gic.set_device_attr(&kvm_device_attr {
            group: KVM_DEV_ARM_VGIC_GRP_ADDR,
            attr: u64::from(attr),
            addr: &base as *const u64 as u64,
            flags: 0,
        })
        .named("KVM_SET_DEVICE_ATTR (vGIC address)")?;
    }
    gic.set_device_attr(&kvm_device_attr {
        group: KVM_DEV_ARM_VGIC_GRP_CTRL,
        attr: u64::from(KVM_DEV_ARM_VGIC_CTRL_INIT),
        addr: 0,
        flags: 0,
    })
    .named("KVM_SET_DEVICE_ATTR (vGIC init)")?;

    // vCPU 0 starts at the kernel with x0 = the device tree.
    let boot = vcpus
        .first()
        .ok_or_else(|| VmmError::Other("no vCPU".into()))?;
    boot.set_one_reg(core_reg(64), &place.kernel.base.to_le_bytes())
        .named("KVM_SET_ONE_REG (pc)")?;
    boot.set_one_reg(core_reg(0), &place.dtb.base.to_le_bytes())
        .named("KVM_SET_ONE_REG (x0)")?;

    // The blobs.
    let blobs = [
        Some((place.kernel, kernel.as_slice(), "kernel")),
        place
            .initrd
            .zip(initrd.as_deref())
            .map(|(r, d)| (r, d, "initrd")),
        Some((place.dtb, dtb.as_slice(), "device tree")),
    ];
    // The RIM the realm will have: what REALM_CREATE measures, each page
    // populated, then the boot REC (the others start off: not measured).
    let mut rims = match challenge {
        Some(_) => {
            let mut dfr0 = [0u8; 8];
            boot.get_one_reg(REG_ID_AA64DFR0_EL1, &mut dfr0)
                .named("KVM_GET_ONE_REG (ID_AA64DFR0_EL1)")?;
            Some(RimCandidates::new(&rim::kvm_rmi_realm_params(
                ipa_bits,
                ipa_max > IPA_BITS_NO_LPA2,
                u64::from_le_bytes(dfr0),
            )))
        }
        None => None,
    };
    for (region, data, what) in blobs.into_iter().flatten() {
        let t = Instant::now();
        load(&vm, &ram, region, data, realm)
            .map_err(|e| VmmError::Other(format!("loading the {what}: {e}")))?;
        if realm {
            eprintln!(
                "realm-vmm: populated the {what}, {} KiB measured, in {:.3} s",
                region.size >> 10,
                t.elapsed().as_secs_f64()
            );
        }
        if let Some(r) = &mut rims {
            r.populate(region.base, region.size, data);
        }
    }
    if let Some(r) = &mut rims {
        let mut gprs = [0; 8];
        gprs[0] = place.dtb.base;
        r.rec(&MeasuredRecParams {
            flags: REC_RUNNABLE,
            pc: place.kernel.base,
            gprs,
        });
    }

    let shared = Arc::new(Shared {
        uart: Mutex::new(Uart::new(
            UartIrq(vm.clone()),
            ConsoleTap::new(io::stdout()),
        )),
        exits: ExitCounts::default(),
        vm,
        ram,
        stop: AtomicBool::new(false),
        status: AtomicI32::new(NO_STATUS),
        status_given: AtomicBool::new(false),
    });
    register_signal_handler(SIGRTMIN(), on_kick).named("sigaction (vCPU kick)")?;
    let _raw = RawTerminal::new();
    {
        let s = shared.clone();
        thread::Builder::new()
            .name("stdin".into())
            .spawn(move || stdin_loop(&s))
            .map_err(|e| VmmError::Other(format!("stdin thread: {e}")))?;
    }
    let mut threads = Vec::new();
    for (i, vcpu) in vcpus.into_iter().enumerate() {
        let s = shared.clone();
        let t = thread::Builder::new()
            .name(format!("vcpu{i}"))
            .spawn(move || vcpu_loop(i, vcpu, &s))
            .map_err(|e| VmmError::Other(format!("vCPU thread: {e}")))?;
        threads.push(t);
    }
    // The first thread to stop stops the others.
    while !shared.stop.load(Ordering::Acquire) {
        thread::park_timeout(std::time::Duration::from_millis(50));
        if threads.iter().any(|t| t.is_finished()) {
            shared.stop.store(true, Ordering::Release);
        }
    }
    for t in &threads {
        let _ = t.kill(SIGRTMIN());
    }
    for t in threads {
        let _ = t.join();
    }
    let _ = io::stdout().flush();
    let mut status = match shared.status.load(Ordering::Acquire) {
        NO_STATUS => 0,
        status => status,
    };
    eprintln!("realm-vmm: {}", shared.exits.summary());
    if let (Some(challenge), Some(rims)) = (challenge, rims) {
        let token = shared
            .uart
            .lock()
            .map_err(|_| VmmError::Other("UART lock".into()))?
            .output()
            .token();
        if let (Ok(t), Some(path)) = (&token, &opts.token_out) {
            if let Err(e) = fs::write(path, t) {
                eprintln!("realm-vmm: writing the token to {}: {e}", path.display());
                status = 1;
            }
        }
        let verdict = match token {
            Ok(t) => attest::check(&t, &challenge, &rims.values()),
            Err(e) => attest::Verdict {
                lines: vec![format!("token: {e}")],
                ok: false,
            },
        };
        for l in &verdict.lines {
            println!("realm-vmm: attestation: {l}");
        }
        println!(
            "realm-vmm: attestation: {}",
            if verdict.ok { "verified" } else { "FAILED" }
        );
        if !verdict.ok && status == 0 {
            status = 1;
        }
    }
    Ok(status)
}

/// Ctrl-A, then `x`: quit, as in QEMU, when stdin is a terminal.
const ESCAPE: u8 = 0x01;

/// Stdin, when it is a terminal, in raw mode (keys go to the guest as they
/// are typed, the guest echoes them) until dropped.
struct RawTerminal(Option<libc::termios>);

impl RawTerminal {
    fn new() -> Self {
        // SAFETY: `isatty` only looks at the descriptor.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
            return Self(None);
        }
        let mut old = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: `old` is a termios to fill.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, old.as_mut_ptr()) } != 0 {
            return Self(None);
        }
        // SAFETY: Filled by the successful `tcgetattr` above.
        let old = unsafe { old.assume_init() };
        let mut raw = old;
        // SAFETY: `raw` is a valid termios.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: As above.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            return Self(None);
        }
        eprint!("realm-vmm: console on this terminal; Ctrl-A x quits\r\n");
        Self(Some(old))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            // SAFETY: Puts back the settings `new` read.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, old) };
        }
    }
}

/// The stdin thread: what the VMM reads goes to the guest's UART, until
/// end of file (or Ctrl-A x on a terminal, which stops the VM).
fn stdin_loop(s: &Shared) {
    let mut buf = [0u8; 256];
    let mut escaped = false;
    let tty = {
        // SAFETY: As in `RawTerminal::new`.
        unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
    };
    loop {
        let n = match io::stdin().lock().read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut data = &buf[..n];
        if tty {
            if escaped && data.first() == Some(&b'x') {
                eprint!("\r\nrealm-vmm: quit (Ctrl-A x)\r\n");
                if !s.status_given.swap(true, Ordering::AcqRel) {
                    s.status.store(1, Ordering::Release);
                }
                s.stop.store(true, Ordering::Release);
                return;
            }
            escaped = data.last() == Some(&ESCAPE);
            if escaped {
                data = &data[..n - 1];
            }
        }
        let Ok(mut uart) = s.uart.lock() else {
            return;
        };
        let mut rest = data;
        while !rest.is_empty() {
            let took = uart.input(rest);
            rest = &rest[took..];
            if took == 0 {
                // 64 KiB wait already: let the guest catch up.
                drop(uart);
                thread::sleep(std::time::Duration::from_millis(10));
                let Ok(u) = s.uart.lock() else {
                    return;
                };
                uart = u;
            }
        }
    }
}

/// Adds `ram` to `vm`: for a realm, a guest_memfd memslot with `ram.map`
/// as its shared half; for a normal VM, `ram.map` alone.
fn add_ram(vm: &VmFd, mut ram: Ram, realm: bool) -> Result<Ram, VmmError> {
    let mut region = kvm_userspace_memory_region2 {
        slot: 0,
        flags: 0,
        guest_phys_addr: RAM_BASE,
        memory_size: ram.size,
        userspace_addr: ram.map.uaddr(0),
        ..Default::default()
    };
    if realm {
        let fd = vm
            .create_guest_memfd(kvm_create_guest_memfd {
                size: ram.size,
                flags: 0,
                ..Default::default()
            })
            .named("KVM_CREATE_GUEST_MEMFD")?;
        // SAFETY: KVM handed us a new file descriptor we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        region.flags = KVM_MEM_GUEST_MEMFD;
        region.guest_memfd = u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX);
        region.guest_memfd_offset = 0;
        ram.gmem = Some(fd);
    }
    // The mapping lives as long as the VM (both in `Shared`, the VM's last
    // user); guest_memfd is ours.
    // SAFETY: As above.
    unsafe { vm.set_user_memory_region2(region) }.named("KVM_SET_USER_MEMORY_REGION2")?;
    Ok(ram)
}

/// Puts `data` at `region`: for a realm populated (and measured) from a
/// staging copy, else written to RAM.
fn load(vm: &VmFd, ram: &Ram, region: Region, data: &[u8], realm: bool) -> Result<(), VmmError> {
    if !realm {
        let off = ram
            .offset(region.base, region.size)
            .ok_or_else(|| VmmError::Other("outside RAM".into()))?;
        return if ram.map.write(off, data) {
            Ok(())
        } else {
            Err(VmmError::Other("does not fit".into()))
        };
    }
    let staging = Mapping::new(region.size)?;
    if !staging.write(0, data) {
        return Err(VmmError::Other("does not fit".into()));
    }
    let mut args = RmiPopulate {
        base: region.base,
        size: region.size,
        source_uaddr: staging.uaddr(0),
        flags: POPULATE_MEASURE,
        reserved: 0,
    };
    // Partial progress returns 0 with the structure advanced: call again
    // until done (a signal may cut a call short).
    while args.size > 0 {
        // SAFETY: `args` is the ioctl's structure; the source is ours.
        let ret = unsafe {
            vmm_sys_util::ioctl::ioctl_with_mut_ref(vm, KVM_ARM_RMI_POPULATE(), &mut args)
        };
        if ret < 0 {
            let e = errno::Error::last();
            if e.errno() == libc::EINTR {
                continue;
            }
            return Err(e).named("KVM_ARM_RMI_POPULATE");
        }
    }
    Ok(())
}

/// Makes `[gpa, gpa + size)` private (`private`) or shared, as a
/// `KVM_EXIT_MEMORY_FAULT` asks, discarding the copy the guest left: the
/// shared pages when it goes private, guest_memfd's when it goes shared.
fn convert(s: &Shared, gpa: u64, size: u64, private: bool) -> Result<(), VmmError> {
    let off = s
        .ram
        .offset(gpa, size)
        .ok_or_else(|| VmmError::Other(format!("memory fault outside RAM: {gpa:#x}+{size:#x}")))?;
    s.vm.set_memory_attributes(kvm_memory_attributes {
        address: gpa,
        size,
        attributes: if private {
            u64::from(KVM_MEMORY_ATTRIBUTE_PRIVATE)
        } else {
            0
        },
        flags: 0,
    })
    .named("KVM_SET_MEMORY_ATTRIBUTES")?;
    if private {
        s.ram
            .map
            .discard(off, size)
            .map_err(|e| VmmError::Other(format!("discarding shared pages: {e}")))?;
    } else if let Some(gmem) = &s.ram.gmem {
        let (Ok(o), Ok(l)) = (i64::try_from(off), i64::try_from(size)) else {
            return Err(VmmError::Other("memory fault too large".into()));
        };
        // SAFETY: A hole punch in our guest_memfd; no memory is touched.
        let ret = unsafe {
            libc::fallocate(
                gmem.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                o,
                l,
            )
        };
        if ret != 0 {
            return Err(VmmError::Other(format!(
                "punching guest_memfd: {}",
                io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

/// vCPU `i`'s thread: runs it until the VM stops.
fn vcpu_loop(i: usize, mut vcpu: VcpuFd, s: &Shared) {
    let run = vcpu.get_kvm_run() as *mut kvm_bindings::kvm_run;
    // SAFETY: `run` is this vCPU's kvm_run, live while `vcpu` is.
    let immediate = unsafe { std::ptr::addr_of_mut!((*run).immediate_exit) };
    IMMEDIATE_EXIT.with(|p| p.set(immediate));
    let result = (|| -> Result<Option<Stopped>, VmmError> {
        loop {
            if s.stop.load(Ordering::Acquire) {
                return Ok(None);
            }
            match vcpu.run() {
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    s.exits.mmio.fetch_add(1, Ordering::Relaxed);
                    let mut uart = s
                        .uart
                        .lock()
                        .map_err(|_| VmmError::Other("UART lock".into()))?;
                    if !uart.mmio_read(addr, data) {
                        data.fill(0);
                    }
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    s.exits.mmio.fetch_add(1, Ordering::Relaxed);
                    let mut uart = s
                        .uart
                        .lock()
                        .map_err(|_| VmmError::Other("UART lock".into()))?;
                    uart.mmio_write(addr, data)
                        .map_err(|e| VmmError::Other(e.to_string()))?;
                }
                Ok(VcpuExit::SystemEvent(kind, _)) => {
                    return Ok(Some(Stopped::Status(match kind {
                        KVM_SYSTEM_EVENT_SHUTDOWN => 0,
                        // A realm cannot be reset (its measurement would
                        // not hold), so the VMM stops; 2 tells it from a
                        // power-off (a reboot, or a panic with panic=-1).
                        KVM_SYSTEM_EVENT_RESET => {
                            eprintln!("realm-vmm: the guest reset (reboot or panic): stopping");
                            2
                        }
                        other => {
                            eprintln!("realm-vmm: system event {other}: stopping");
                            1
                        }
                    })));
                }
                // A realm the guest turned off: every vCPU entering it
                // again is told so, often before the vCPU whose PSCI call
                // turned it off has returned with the system event.
                Ok(VcpuExit::Shutdown) => return Ok(Some(Stopped::RealmOff)),
                Ok(VcpuExit::MemoryFault { flags, gpa, size }) => {
                    let private = flags & u64::from(KVM_MEMORY_EXIT_FLAG_PRIVATE) != 0;
                    let (n, bytes) = if private {
                        (&s.exits.to_private, &s.exits.to_private_bytes)
                    } else {
                        (&s.exits.to_shared, &s.exits.to_shared_bytes)
                    };
                    n.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(size, Ordering::Relaxed);
                    convert(s, gpa, size, private)?;
                }
                Ok(other) => {
                    return Err(VmmError::Other(format!("unexpected exit {other:?}")));
                }
                Err(e) if e.errno() == libc::EINTR => {
                    s.exits.kicks.fetch_add(1, Ordering::Relaxed);
                    // Only this thread and its signal handler touch the byte.
                    // SAFETY: As above.
                    unsafe { immediate.write_volatile(0) };
                }
                Err(e) => {
                    return Err(VmmError::Ioctl {
                        name: "KVM_RUN",
                        errno: e.errno(),
                    })
                }
            }
        }
    })();
    IMMEDIATE_EXIT.with(|p| p.set(std::ptr::null_mut()));
    // The first vCPU to stop with a status gives it; what the others meet
    // while the VM stops is only reported. Finding the realm off says
    // nothing of why: that status stands only if no system event comes.
    let status = match result {
        Ok(None) => return,
        Ok(Some(Stopped::Status(status))) => status,
        Ok(Some(Stopped::RealmOff)) => {
            let _ = s
                .status
                .compare_exchange(NO_STATUS, 0, Ordering::AcqRel, Ordering::Acquire);
            s.stop.store(true, Ordering::Release);
            return;
        }
        Err(e) => {
            eprintln!("realm-vmm: vCPU {i}: {e}");
            1
        }
    };
    if !s.status_given.swap(true, Ordering::AcqRel) {
        s.status.store(status, Ordering::Release);
    }
    s.stop.store(true, Ordering::Release);
}

/// No exit status yet.
const NO_STATUS: i32 = -1;

/// Why a vCPU's thread stopped the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stopped {
    /// With this exit status (a system event; 1 for an error).
    Status(i32),
    /// The realm was off when the vCPU entered it (another vCPU turned it
    /// off): power-off, unless that vCPU's system event says otherwise.
    RealmOff,
}
