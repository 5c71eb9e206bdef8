// SPDX-License-Identifier: GPL-2.0

//! Realm vCPUs: KVM's run-loop callbacks over the core's [`RecRun`].
//!
//! Part of the kernel shell. Each vCPU of a realm VM has a run granule, an
//! NS page the RMM reads the entry from and writes the exit to, and the run
//! state of its REC. The REC itself is created at activation and owned by
//! the [`RealmVm`]. Exits KVM emulates the same way for any VM (SMCCC and
//! its filter, PSCI, GIC system registers, WFx) go to KVM's handlers; the
//! rest (MMIO, aborts, RIPAS changes) are handled here.

use kernel::{
    alloc::flags::GFP_KERNEL_ACCOUNT,
    bindings,
    kvm::{
        LockedVcpu,
        RealmExit,
        RunNext,
        RunningVcpu, //
    },
    new_mutex,
    prelude::*,
    sync::Mutex,
};

use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};

use crate::addr::{
    Granule,
    GRANULE_SHIFT, //
};
use crate::exit::{
    decode,
    RecExit,
    RmiExitReason, //
};
use crate::kvm_fault::{
    serve_fault,
    Served, //
};
use crate::kvm_realm::RealmVm;
use crate::kvm_trace;
use crate::memory::RealmFault;
use crate::realm::RipasWalk;
use crate::rmi_smc::{
    rmi_result,
    RmiRecExit,
    SMCCC_RET_NOT_SUPPORTED, //
};
use crate::run::{
    host_call_is_psci,
    EnterFailure,
    PsciCall,
    RecRun, //
};
use crate::{
    RecEntry,
    RunPage,
    RMI, //
};

/// `ESR_ELx` of an `HVC #imm` from AArch64 (EC 0x16, IL set): how KVM's
/// SMCCC handler is asked to handle a host call or a PSCI exit.
const fn hvc64_esr(imm: u32) -> u64 {
    (0x16 << 26) | (1 << 25) | (imm & 0xffff) as u64
}

/// Lets KVM handle a trap with syndrome `esr`. An exception KVM would
/// inject cannot reach a realm (`EOPNOTSUPP` from the hook): the VM is
/// stopped with the reason logged rather than the access seeming to work.
fn trap(vcpu: &RunningVcpu, vm: &RealmVm, esr: u64) -> Result<RunNext> {
    vcpu.handle_trap(esr).map_err(|e| {
        if e == EOPNOTSUPP {
            vm.vcpu_undeliverable(vcpu.kvm(), vcpu.index(), esr)
        } else {
            e
        }
    })
}

/// `RmiRipas` RAM, as a RIPAS change exit reports it.
const RIPAS_RAM: u8 = 1;

/// The size of a granule, as a memory fault exit reports it.
const GRANULE_SIZE: u64 = 1 << GRANULE_SHIFT;

/// The module's state for one realm vCPU.
#[pin_data]
pub(crate) struct RecVcpu {
    /// The run granule.
    run_page: RunPage,
    /// The address of the vCPU's REC once it first entered, else 0.
    rec: AtomicU64,
    /// The next `REC_ENTER`: prepared by `pre_enter`, made by `enter`,
    /// accounted for by `handle_exit`, all on the vCPU's thread.
    entry: RecEntry,
    /// What the next entry hands over. Locked only by the vCPU's thread (in
    /// `KVM_RUN`), before the realm's locks.
    #[pin]
    run: Mutex<VcpuRun>,
}

/// The run state, under [`RecVcpu::run`].
struct VcpuRun {
    /// The REC's run state.
    rec: RecRun,
    /// A host call went to KVM's SMCCC handler: its results are what x0..x30
    /// hold at the next entry (KVM's, or what userspace set after
    /// `KVM_EXIT_HYPERCALL`).
    host_call_due: bool,
}

impl RecVcpu {
    /// The state of a new vCPU, with its run granule; `boot` for vCPU 0,
    /// whose REC is created runnable.
    pub(crate) fn new(boot: bool) -> Result<Pin<KBox<Self>>> {
        let run_page = RunPage::new().ok_or(ENOMEM)?;
        KBox::pin_init(
            pin_init!(RecVcpu {
                run_page,
                rec: AtomicU64::new(0),
                entry: RecEntry::new(),
                run <- new_mutex!(
                    VcpuRun {
                        rec: RecRun::new(boot),
                        host_call_due: false,
                    },
                    "RecVcpu::run"
                ),
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// The run granule's address.
    fn run_granule(&self) -> Granule {
        self.run_page.granule()
    }

    /// The vCPU's REC, looked up in `vm` the first time.
    fn rec(&self, vcpu: &RunningVcpu, vm: &RealmVm) -> Result<Granule> {
        if let Some(rec) = Granule::new(self.rec.load(Ordering::Relaxed)).filter(|g| g.pa() != 0) {
            return Ok(rec);
        }
        // The first run activated the realm with a REC for every vCPU.
        let rec = vm.rec_granule(vcpu.index().into()).ok_or(EINVAL)?;
        self.rec.store(rec.pa(), Ordering::Relaxed);
        Ok(rec)
    }

    /// Before an entry: completes what the last exit left pending and writes
    /// the entry half of the run granule.
    pub(crate) fn pre_enter(&self, vcpu: &RunningVcpu, vm: &RealmVm) -> Result<RunNext> {
        let mut run = self.run.lock();
        let rec = self.rec(vcpu, vm)?;
        if run.host_call_due {
            run.rec
                .complete_host_call(core::array::from_fn(|n| vcpu.gpr(n)));
            run.host_call_due = false;
        }
        // A PSCI call userspace answered (SMCCC filter): x0 is its answer.
        self.complete_psci(&mut run, vcpu, vm, rec)?;
        // A RIPAS change the VMM let through by re-entering.
        if let Some(req) = run.rec.ripas_request() {
            let done = vm.set_ripas(vcpu.kvm(), rec, req);
            let (Ok((reached, _)) | Err((reached, _))) = done;
            run.rec.ripas_progress(reached);
            if done.map_err(|(_, e)| e)?.1 == RipasWalk::Paused {
                // A signal is pending: KVM's run loop sees it before the
                // entry and returns KVM_EXIT_INTR; the next KVM_RUN goes on
                // from `reached`. Nothing is written for an entry.
                return Ok(RunNext::Enter);
            }
            run.rec.answer_ripas(true).map_err(|_| EINVAL)?;
        }
        // As KVM does for normal vCPUs: WFE traps when others want the CPU.
        // SAFETY: No preconditions.
        let trap_wfe = !unsafe { bindings::single_task_running() };
        let entry = run.rec.entry(trap_wfe);
        let page = &self.run_page;
        if !page.write_words(crate::rmi_smc::RmiRecEnter::FLAGS_WORD, &[entry.flags])
            || !page.write_words(crate::rmi_smc::RmiRecEnter::GPRS_WORD, &entry.gprs)
        {
            return Err(EINVAL);
        }
        self.entry.prepare(rec, self.run_granule());
        Ok(RunNext::Enter)
    }

    /// `RMI_PSCI_COMPLETE` of the pending PSCI call, if any, with the
    /// status from what KVM (or userspace) left in x0.
    fn complete_psci(
        &self,
        run: &mut VcpuRun,
        vcpu: &RunningVcpu,
        vm: &RealmVm,
        rec: Granule,
    ) -> Result {
        let Some(call) = run.rec.psci_pending() else {
            return Ok(());
        };
        let done =
            run.rec
                .complete_psci(RMI.smc(), rec, |target| vm.rec_granule(target), vcpu.gpr(0));
        if let PsciCall::CpuOn { target } = call {
            vm.set_cpu_on_pending(target, false);
        }
        done.map_err(|e| vm.vcpu_died(vcpu.kvm(), vcpu.index(), "completing PSCI", e))
    }

    /// Enters the REC, inside the guest context of RCU with interrupts off:
    /// the prepared SMC and a load of the exit reason, all inlined into the
    /// noinstr callback.
    #[inline(always)]
    pub(crate) fn enter(&self) -> RealmExit {
        if self.entry.enter() != Some(0) {
            return RealmExit::Trap;
        }
        let Some(reason) = self.run_page.word(RmiRecExit::FIRST_WORD) else {
            return RealmExit::Trap;
        };
        match u64::from_le(reason.load(Ordering::Relaxed)) {
            RmiExitReason::IRQ | RmiExitReason::FIQ => RealmExit::Irq,
            RmiExitReason::SERROR => RealmExit::SError,
            _ => RealmExit::Trap,
        }
    }

    /// The exit half of the run granule.
    fn read_exit(&self) -> Result<RmiRecExit> {
        let mut inside = true;
        let exit = RmiRecExit::from_fn(|n| {
            let word = RmiRecExit::FIRST_WORD
                .checked_add(n)
                .and_then(|n| self.run_page.word(n));
            inside &= word.is_some();
            word.map_or(0, |w| u64::from_le(w.load(Ordering::Relaxed)))
        });
        if inside {
            Ok(exit)
        } else {
            Err(EINVAL)
        }
    }

    /// Handles the outcome of the last entry.
    pub(crate) fn handle_exit(&self, vcpu: &RunningVcpu, vm: &RealmVm) -> Result<RunNext> {
        let mut run = self.run.lock();
        // None: `pre_enter` paused a RIPAS change, and KVM entered anyway
        // (its last check raced with a signal); nothing was entered.
        let Some(status) = self.entry.finish() else {
            return Ok(RunNext::Enter);
        };
        if let Err(e) = rmi_result(status) {
            vm.stats().entry_refused();
            return match run.rec.entered(Err(e)) {
                Err(EnterFailure::Shutdown) => {
                    vcpu.exit_shutdown();
                    Ok(RunNext::Userspace)
                }
                // Another CPU holds what the entry needs: KVM's loop
                // enters again (after signals and requests).
                Err(EnterFailure::Contended) => {
                    crate::cond_resched();
                    Ok(RunNext::Enter)
                }
                // Another vCPU is turning this one on: it completes the
                // call with the RMM right after KVM's emulation.
                Err(EnterFailure::NotYetOn) if vm.cpu_on_pending(vcpu.index().into()) => {
                    crate::cond_resched();
                    Ok(RunNext::Enter)
                }
                // KVM has it running, the realm has it off: only the
                // guest's CPU_ON turns it on.
                Err(EnterFailure::NotYetOn) => {
                    pr_info!(
                        "realm {} vCPU {}: off in the realm until the guest's PSCI CPU_ON \
                         (create secondaries with KVM_ARM_VCPU_POWER_OFF)\n",
                        vm.id(),
                        vcpu.index()
                    );
                    Err(EINVAL)
                }
                Err(EnterFailure::Dead(e)) => {
                    Err(vm.vcpu_died(vcpu.kvm(), vcpu.index(), "entering", e))
                }
                Ok(()) => Err(EINVAL),
            };
        }
        let exit = self.read_exit()?;
        kvm_trace::rec_exit(vm.id(), vcpu.index(), &exit);
        vm.stats().exit(exit.exit_reason);
        vcpu.timer_update(exit.cntv_ctl, exit.cntv_cval, exit.cntp_ctl, exit.cntp_cval);
        let ipa_bits = u8::try_from(vcpu.kvm().ipa_bits()).map_err(|_| EINVAL)?;
        let decoded = decode(&exit, ipa_bits);
        // Only a failed entry is refused.
        run.rec.entered(Ok(&decoded)).map_err(|_| EINVAL)?;
        match decoded {
            RecExit::Interrupt | RecExit::ExternalAbort | RecExit::SError => Ok(RunNext::Enter),
            RecExit::SharedFault { gpa, kind, access } => {
                // Memory is mapped without `run`: it may sleep long.
                drop(run);
                let fault = RealmFault {
                    gpa,
                    protected: false,
                    kind,
                    write: access.map(|a| a.write),
                };
                match serve_fault(vcpu, vm, &fault)? {
                    Served::Mapped => return Ok(RunNext::Enter),
                    Served::MemoryFault { private } => {
                        vcpu.exit_memory_fault(gpa, GRANULE_SIZE, private);
                        return Err(EFAULT);
                    }
                    Served::PrivateUnavailable(e) => {
                        vcpu.exit_memory_fault(gpa, GRANULE_SIZE, true);
                        return Err(e);
                    }
                    Served::SharedUnavailable => return Err(EFAULT),
                    Served::Emulate => {}
                }
                let mut run = self.run.lock();
                let Some(a) = access else {
                    // No syndrome to emulate from: the coco policy.
                    run.rec.inject_sea().map_err(|_| EINVAL)?;
                    return Ok(RunNext::Enter);
                };
                if a.write && vcpu.io_bus_write(a.gpa, a.len, a.data) {
                    run.rec.complete_mmio(None).map_err(|_| EINVAL)?;
                    return Ok(RunNext::Enter);
                }
                if !a.write {
                    if let Some(value) = vcpu.io_bus_read(a.gpa, a.len) {
                        run.rec.complete_mmio(Some(value)).map_err(|_| EINVAL)?;
                        return Ok(RunNext::Enter);
                    }
                }
                vcpu.exit_mmio(a.gpa, a.len, a.write, a.data);
                Ok(RunNext::Userspace)
            }
            RecExit::ProtectedFault { ipa, kind, .. } => {
                drop(run);
                let fault = RealmFault {
                    gpa: ipa,
                    protected: true,
                    kind,
                    write: None,
                };
                match serve_fault(vcpu, vm, &fault)? {
                    Served::Mapped => Ok(RunNext::Enter),
                    Served::MemoryFault { private } => {
                        vcpu.exit_memory_fault(ipa, GRANULE_SIZE, private);
                        Err(EFAULT)
                    }
                    Served::PrivateUnavailable(e) => {
                        vcpu.exit_memory_fault(ipa, GRANULE_SIZE, true);
                        Err(e)
                    }
                    Served::SharedUnavailable => Err(EFAULT),
                    // Nothing is emulated at protected IPAs.
                    Served::Emulate => {
                        vcpu.exit_memory_fault(ipa, GRANULE_SIZE, true);
                        Err(EFAULT)
                    }
                }
            }
            // KVM's handlers run without `run` held: one may call back
            // into this vCPU's state (`kvm_inject_sea()`).
            RecExit::SysReg { esr, read, value } => {
                drop(run);
                // The RMM reports the register as x0 (RT cleared).
                if !read {
                    vcpu.set_gpr(0, value);
                }
                let next = trap(vcpu, vm, esr.0)?;
                if read {
                    self.run
                        .lock()
                        .rec
                        .complete_sysreg_read(vcpu.gpr(0))
                        .map_err(|_| EINVAL)?;
                }
                Ok(next)
            }
            RecExit::Wfx { .. } => {
                drop(run);
                trap(vcpu, vm, exit.esr)
            }
            RecExit::Psci { fid, target } => {
                drop(run);
                for (n, v) in [fid, target, 0, 0].into_iter().enumerate() {
                    vcpu.set_gpr(n, v);
                }
                let call = PsciCall::of(fid, target);
                if let PsciCall::CpuOn { target } = call {
                    vm.set_cpu_on_pending(target, true);
                }
                let next = trap(vcpu, vm, hvc64_esr(0))?;
                // Emulated in the kernel: complete it now, so that a
                // target spinning on `ERROR_REC` waits the least.
                if next == RunNext::Enter {
                    let rec = self.rec(vcpu, vm)?;
                    self.complete_psci(&mut self.run.lock(), vcpu, vm, rec)?;
                }
                Ok(next)
            }
            RecExit::HostCall { imm } => {
                if host_call_is_psci(exit.gprs[0]) {
                    let mut results = exit.gprs;
                    results[0] = SMCCC_RET_NOT_SUPPORTED;
                    run.rec.complete_host_call(results);
                    return Ok(RunNext::Enter);
                }
                run.host_call_due = true;
                drop(run);
                for (n, v) in exit.gprs.iter().enumerate() {
                    vcpu.set_gpr(n, *v);
                }
                trap(vcpu, vm, hvc64_esr(imm))
            }
            RecExit::RipasChange { base, top, ripas } => {
                // Outside the realm's guest_memfd memory: refused without
                // asking the VMM; the realm sees REJECT.
                if !vm.ripas_range_backed(vcpu.kvm(), base, top) {
                    vm.stats().ripas_rejected();
                    run.rec.answer_ripas(false).map_err(|_| EINVAL)?;
                    return Ok(RunNext::Enter);
                }
                // The VMM gets the range ready (it discards the copy the
                // realm gives up) and re-enters, which carries the change
                // out; to refuse it, it does not re-enter.
                let size = top.checked_sub(base).ok_or(EINVAL)?;
                vcpu.exit_memory_fault(base, size, ripas == RIPAS_RAM);
                Err(EFAULT)
            }
            RecExit::Unhandled => {
                vm.vcpu_unhandled_exit(vcpu.kvm(), vcpu.index(), exit.exit_reason, exit.esr);
                vcpu.exit_internal_error(exit.exit_reason);
                Ok(RunNext::Userspace)
            }
        }
    }

    /// Answers the data abort the vCPU last exited for with a synchronous
    /// external abort in the realm, instead of the MMIO emulation userspace
    /// was asked for: `EINVAL` after any other exit, as only then can the
    /// RMM inject one.
    pub(crate) fn inject_sea(&self, vcpu: &LockedVcpu) -> Result {
        self.run.lock().rec.inject_sea().map_err(|_| EINVAL)?;
        vcpu.cancel_mmio();
        Ok(())
    }

    /// `KVM_RUN` after an MMIO exit: hands the access userspace emulated to
    /// the next entry.
    pub(crate) fn mmio_complete(&self, vcpu: &RunningVcpu) -> Result<RunNext> {
        let mut run = self.run.lock();
        if let Some((write, value)) = vcpu.take_mmio() {
            if run.rec.mmio_pending() {
                run.rec
                    .complete_mmio((!write).then_some(value))
                    .map_err(|_| EINVAL)?;
            }
        }
        Ok(RunNext::Enter)
    }
}
