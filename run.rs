// SPDX-License-Identifier: GPL-2.0

//! The state a REC carries from one `REC_ENTER` to the next: what the last
//! exit asked the host for, what the next entry hands back, and how a
//! failed entry is reported to the VMM.
//!
//! Part of the sans-IO core. The RMM completes an exit at the *next* entry
//! (TF-RMM `runtime/rmi/run.c`): an emulated MMIO read or a system register
//! read takes `enter.gprs[0]`, a host call takes `enter.gprs[0..31]`, and
//! the `EMUL_MMIO`, `INJECT_SEA` and `RIPAS_RESPONSE` flags are legal only
//! after the exits they answer; anything else makes the entry fail with
//! `RMI_ERROR_REC`. PSCI `CPU_ON` and `AFFINITY_INFO` need
//! `RMI_PSCI_COMPLETE` before the caller runs again.

use crate::addr::Granule;
use crate::exit::RecExit;
use crate::rmi_cmds::{
    psci_complete,
    PsciStatus,
    SmcConduit, //
};
use crate::rmi_smc::{
    RmiError,
    RmiRecEnter,
    RmiStatus,
    REC_ENTRY_FLAG_EMUL_MMIO,
    REC_ENTRY_FLAG_INJECT_SEA,
    REC_ENTRY_FLAG_RIPAS_RESPONSE,
    REC_ENTRY_FLAG_TRAP_WFE,
    REC_ENTRY_FLAG_TRAP_WFI, //
};

/// A PSCI call a REC made, as the host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PsciCall {
    /// `CPU_ON` of the REC with this index: `PSCI_COMPLETE` needed.
    CpuOn {
        /// The target REC's index.
        target: u64,
    },
    /// `AFFINITY_INFO` of the REC with this index: `PSCI_COMPLETE` needed.
    AffinityInfo {
        /// The target REC's index.
        target: u64,
    },
    /// `CPU_OFF`: the REC is no longer runnable.
    CpuOff,
    /// `CPU_SUSPEND`: a notification (the REC already got SUCCESS).
    CpuSuspend,
    /// `SYSTEM_OFF`: the realm will not run again.
    SystemOff,
    /// `SYSTEM_RESET`: as `SYSTEM_OFF` for the realm; the VMM may restart.
    SystemReset,
    /// Anything else (the RMM answers the rest itself).
    Other,
}

/// PSCI function numbers (the low 5 bits of the FID; SMC32 and SMC64 share
/// them).
const PSCI_FN_CPU_SUSPEND: u64 = 1;
/// See [`PSCI_FN_CPU_SUSPEND`].
const PSCI_FN_CPU_OFF: u64 = 2;
/// See [`PSCI_FN_CPU_SUSPEND`].
const PSCI_FN_CPU_ON: u64 = 3;
/// See [`PSCI_FN_CPU_SUSPEND`].
const PSCI_FN_AFFINITY_INFO: u64 = 4;
/// See [`PSCI_FN_CPU_SUSPEND`].
const PSCI_FN_SYSTEM_OFF: u64 = 8;
/// See [`PSCI_FN_CPU_SUSPEND`].
const PSCI_FN_SYSTEM_RESET: u64 = 9;

/// `PSCI_RET_ALREADY_ON`, as KVM leaves it in x0.
const PSCI_RET_ALREADY_ON: u64 = -4i64 as u64;

/// The REC index an `MPIDR_EL1` value names (TF-RMM's `mpidr_to_rec_idx`):
/// Aff0[3:0] | Aff1 << 4 | Aff2 << 12 | Aff3 (bits [39:32]) << 20.
pub(crate) const fn rec_index_of_mpidr(mpidr: u64) -> u64 {
    (mpidr & 0xf)
        | ((mpidr >> 8) & 0xff) << 4
        | ((mpidr >> 16) & 0xff) << 12
        | ((mpidr >> 32) & 0xff) << 20
}

/// Whether SMCCC function ID `fid` (w0) is a PSCI call: the standard
/// secure service owner (4), functions 0x00..=0x1f, SMC32 or SMC64. A realm
/// makes PSCI calls to the RMM; one sent as a host call must not drive
/// KVM's PSCI state behind the RMM's back.
pub(crate) const fn host_call_is_psci(fid: u64) -> bool {
    // CAST: SMCCC function IDs are 32 bits (w0).
    let fid = fid as u32;
    fid & 0x8000_0000 != 0 && (fid >> 24) & 0x3f == 4 && fid & 0xffff <= 0x1f
}

impl PsciCall {
    /// Decodes a PSCI exit: `fid` in x0, `mpidr` in x1.
    pub(crate) const fn of(fid: u64, mpidr: u64) -> Self {
        // SMC32 (0x8400_00xx) or SMC64 (0xc400_00xx) standard service.
        if fid & !0x4000_001f != 0x8400_0000 {
            return Self::Other;
        }
        let target = rec_index_of_mpidr(mpidr);
        match fid & 0x1f {
            PSCI_FN_CPU_SUSPEND => Self::CpuSuspend,
            PSCI_FN_CPU_OFF => Self::CpuOff,
            PSCI_FN_CPU_ON => Self::CpuOn { target },
            PSCI_FN_AFFINITY_INFO => Self::AffinityInfo { target },
            PSCI_FN_SYSTEM_OFF => Self::SystemOff,
            PSCI_FN_SYSTEM_RESET => Self::SystemReset,
            _ => Self::Other,
        }
    }

    /// The REC `PSCI_COMPLETE` must name, for the calls that need it.
    pub(crate) const fn completion_target(self) -> Option<u64> {
        match self {
            Self::CpuOn { target } | Self::AffinityInfo { target } => Some(target),
            _ => None,
        }
    }

    /// The status to complete with, from what KVM's PSCI emulation left in
    /// x0: `CPU_ON` succeeded if KVM turned the target on or found it on
    /// (the RMM then says ALREADY_ON itself), else the host denies it;
    /// `AFFINITY_INFO` is always SUCCESS (the RMM works out the answer).
    pub(crate) const fn status(self, kvm_x0: u64) -> PsciStatus {
        match self {
            Self::CpuOn { .. } if kvm_x0 != 0 && kvm_x0 != PSCI_RET_ALREADY_ON => {
                PsciStatus::Denied
            }
            _ => PsciStatus::Success,
        }
    }
}

/// What the last exit lets the next entry complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answerable {
    /// Nothing.
    Nothing,
    /// A data abort at an unprotected IPA; `emulatable` if it had a
    /// syndrome (only then may `EMUL_MMIO` answer it; `INJECT_SEA` may
    /// answer both).
    SharedAbort { emulatable: bool },
    /// A system register read.
    SysRegRead,
    /// A RIPAS change request.
    Ripas,
}

/// `RmiRipas` RAM, as a RIPAS change exit reports it (0 is EMPTY).
const RIPAS_RAM: u8 = 1;

/// A RIPAS change a realm asked for (`RSI_IPA_STATE_SET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RipasRequest {
    /// First IPA the realm asked for.
    pub(crate) start: u64,
    /// First IPA (still to change).
    pub(crate) base: u64,
    /// IPA past the last.
    pub(crate) top: u64,
    /// To RAM (private), else to EMPTY.
    pub(crate) ram: bool,
}

/// Why the host's answer to an exit is not one the RMM would take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CompletionError {
    /// The last exit did not ask for this answer.
    NotAsked,
    /// The exit has been answered already.
    Answered,
}

/// What a failed `REC_ENTER` means for the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EnterFailure {
    /// `RMI_ERROR_REALM`: the realm is off (PSCI `SYSTEM_OFF`/`RESET`) or
    /// not running: `KVM_EXIT_SHUTDOWN`.
    Shutdown,
    /// `RMI_BUSY` or `RMI_BLOCKED`: another CPU holds what the entry needs
    /// for now. Enter again.
    Contended,
    /// `RMI_ERROR_REC` while the REC is off: it waits for the guest's PSCI
    /// `CPU_ON` (retry if one is being completed; else the vCPU cannot run).
    NotYetOn,
    /// Any other failure: a host bug or a broken RMM. The VM is dead.
    Dead(RmiError),
}

/// The run state of one REC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecRun {
    answerable: Answerable,
    /// Flags and registers the next entry hands over.
    flags: u64,
    /// `enter.gprs[0]` for an MMIO or system register read.
    read_value: Option<u64>,
    /// Host call results: kept until an entry delivered them (the RMM
    /// reports a stage-2 abort instead if their page is not mapped).
    host_call: Option<[u64; 31]>,
    /// A PSCI call that needs `PSCI_COMPLETE` before the next entry.
    psci: Option<PsciCall>,
    /// The RIPAS change the last exit asked for, until it is answered.
    ripas: Option<RipasRequest>,
    /// Whether the REC is on: created runnable (the boot vCPU) or it ran,
    /// and did not turn off since.
    on: bool,
}

impl RecRun {
    /// A REC that has not run yet, created runnable (the boot vCPU) or
    /// not (the others, until the guest turns them on).
    pub(crate) const fn new(runnable: bool) -> Self {
        Self {
            answerable: Answerable::Nothing,
            flags: 0,
            read_value: None,
            host_call: None,
            psci: None,
            ripas: None,
            on: runnable,
        }
    }

    /// The `enter` half of the run granule for the next entry. WFI always
    /// traps (the host blocks the vCPU); WFE traps if `trap_wfe` (another
    /// task wants the CPU, as KVM decides for normal VMs).
    pub(crate) fn entry(&self, trap_wfe: bool) -> RmiRecEnter {
        let mut e = RmiRecEnter::zeroed();
        e.flags = self.flags | REC_ENTRY_FLAG_TRAP_WFI;
        if trap_wfe {
            e.flags |= REC_ENTRY_FLAG_TRAP_WFE;
        }
        if let Some(results) = self.host_call {
            e.gprs = results;
        } else if let Some(v) = self.read_value {
            e.gprs[0] = v;
        }
        e
    }

    /// Records what `REC_ENTER` returned: the exit on success (which
    /// consumed the answers handed over), or what the failure means.
    pub(crate) fn entered(
        &mut self,
        result: Result<&RecExit, RmiError>,
    ) -> Result<(), EnterFailure> {
        let exit = match result {
            Ok(exit) => exit,
            Err(e) => {
                // `ERROR_REC` for a REC that is on is the RMM refusing its
                // state: nothing the VMM can retry.
                return Err(match e.status() {
                    RmiStatus::ErrorRealm => EnterFailure::Shutdown,
                    RmiStatus::Busy | RmiStatus::Blocked => EnterFailure::Contended,
                    RmiStatus::ErrorRec if !self.on && self.psci.is_none() => {
                        EnterFailure::NotYetOn
                    }
                    _ => EnterFailure::Dead(e),
                });
            }
        };
        self.on = true;
        self.flags = 0;
        self.read_value = None;
        // The RMM could not write the results: their page faulted. Any
        // other exit means the realm ran with them.
        if !matches!(exit, RecExit::ProtectedFault { .. }) {
            self.host_call = None;
        }
        self.ripas = match *exit {
            RecExit::RipasChange { base, top, ripas } => Some(RipasRequest {
                start: base,
                base,
                top,
                ram: ripas == RIPAS_RAM,
            }),
            _ => None,
        };
        self.answerable = match exit {
            RecExit::SharedFault { access, .. } => Answerable::SharedAbort {
                emulatable: access.is_some(),
            },
            RecExit::SysReg { read: true, .. } => Answerable::SysRegRead,
            RecExit::RipasChange { .. } => Answerable::Ripas,
            _ => Answerable::Nothing,
        };
        if let RecExit::Psci { fid, target } = *exit {
            let call = PsciCall::of(fid, target);
            match call {
                PsciCall::CpuOff => self.on = false,
                c if c.completion_target().is_some() => self.psci = Some(c),
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks that the last exit was `want` and has no answer yet.
    fn answer(&mut self, want: fn(Answerable) -> bool) -> Result<(), CompletionError> {
        if self.flags != 0 || self.read_value.is_some() {
            return Err(CompletionError::Answered);
        }
        if !want(self.answerable) {
            return Err(CompletionError::NotAsked);
        }
        Ok(())
    }

    /// Completes an emulated MMIO access: a read with the value loaded
    /// (zero-extended; the RMM masks and sign-extends it), a write with
    /// `None`.
    pub(crate) fn complete_mmio(&mut self, read: Option<u64>) -> Result<(), CompletionError> {
        self.answer(|a| a == Answerable::SharedAbort { emulatable: true })?;
        self.flags = REC_ENTRY_FLAG_EMUL_MMIO;
        self.read_value = read;
        Ok(())
    }

    /// Answers a data abort at an unprotected IPA with a synchronous
    /// external abort in the realm.
    pub(crate) fn inject_sea(&mut self) -> Result<(), CompletionError> {
        self.answer(|a| matches!(a, Answerable::SharedAbort { .. }))?;
        self.flags = REC_ENTRY_FLAG_INJECT_SEA;
        Ok(())
    }

    /// Whether the last exit is waiting for an MMIO answer or a SEA.
    pub(crate) fn mmio_pending(&self) -> bool {
        matches!(self.answerable, Answerable::SharedAbort { .. })
            && self.flags == 0
            && self.read_value.is_none()
    }

    /// Completes a system register read with `value`.
    pub(crate) fn complete_sysreg_read(&mut self, value: u64) -> Result<(), CompletionError> {
        self.answer(|a| a == Answerable::SysRegRead)?;
        self.read_value = Some(value);
        Ok(())
    }

    /// The RIPAS change the last exit asked for, until it is answered;
    /// `base` is where it is still to be carried out from.
    pub(crate) fn ripas_request(&self) -> Option<RipasRequest> {
        self.ripas
    }

    /// Records that the RIPAS change asked for is done up to `reached`.
    pub(crate) fn ripas_progress(&mut self, reached: u64) {
        if let Some(r) = self.ripas.as_mut() {
            r.base = reached.clamp(r.base, r.top);
        }
    }

    /// Answers a RIPAS change request: `accept`ed (as far as the host got
    /// with `RMI_RTT_SET_RIPAS`), or rejected.
    pub(crate) fn answer_ripas(&mut self, accept: bool) -> Result<(), CompletionError> {
        self.answer(|a| a == Answerable::Ripas)?;
        self.answerable = Answerable::Nothing;
        self.ripas = None;
        if !accept {
            self.flags = REC_ENTRY_FLAG_RIPAS_RESPONSE;
        }
        Ok(())
    }

    /// Hands host call results (x0..x30) over at the next entry.
    pub(crate) fn complete_host_call(&mut self, results: [u64; 31]) {
        self.host_call = Some(results);
    }

    /// The PSCI call waiting for `PSCI_COMPLETE`.
    pub(crate) fn psci_pending(&self) -> Option<PsciCall> {
        self.psci
    }

    /// `RMI_PSCI_COMPLETE` of the pending PSCI call of REC `rec`, whose
    /// target is the REC `target` (looked up by the call's target index),
    /// with the status from KVM's x0. Nothing to do if none is pending.
    ///
    /// # Errors
    ///
    /// The RMM's error (the VM is then dead: the REC cannot run again).
    pub(crate) fn complete_psci(
        &mut self,
        smc: &impl SmcConduit,
        rec: Granule,
        target: impl FnOnce(u64) -> Option<Granule>,
        kvm_x0: u64,
    ) -> Result<(), RmiError> {
        let Some(call) = self.psci else {
            return Ok(());
        };
        let index = call.completion_target().ok_or(RmiError::bad_output())?;
        // The RMM checked the index against its RECs before exiting.
        let target = target(index).ok_or(RmiError::bad_output())?;
        psci_complete(smc, rec, target, call.status(kvm_x0))?;
        self.psci = None;
        Ok(())
    }
}
