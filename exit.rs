// SPDX-License-Identifier: GPL-2.0

//! REC exits: what the RMM reports in `RmiRecExit`, decoded into what the
//! host has to do.
//!
//! Part of the sans-IO core. The RMM sanitises the syndrome before the host
//! sees it (TF-RMM `runtime/core/exit.c`): a data abort at a protected IPA
//! carries no ISV, WnR or register number; one at an unprotected IPA with a
//! valid syndrome carries ISV, SAS, SF and WnR with SRT = 0, the offset in
//! the page in `far[11:0]` and a write's value in `gprs[0]`; system register
//! and WFx exits come with the PC already advanced; an exit the RMM does not
//! describe has ESR, FAR and HPFAR all zero.

use crate::rmi_smc::RmiRecExit;

/// `RMI_EXIT_*`: why a REC exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RmiExitReason {
    /// A synchronous exception the host handles (aborts, ICC_* registers, WFx).
    Sync,
    /// An IRQ for the host (also: a realm timer's output changed).
    Irq,
    /// An FIQ for the host.
    Fiq,
    /// A PSCI call the host completes or is told about.
    Psci,
    /// A request to change the RIPAS of a range.
    RipasChange,
    /// `RSI_HOST_CALL`.
    HostCall,
    /// An SError the RMM already injected into the realm.
    SError,
    /// Planes: an S2AP change request.
    S2apChange,
    /// Device assignment: a VDEV request.
    VdevRequest,
    /// Device assignment: a device memory mapping request.
    DevMemMap,
    /// Device assignment: a peer-to-peer binding request.
    VdevP2pBinding,
    /// A value this host does not know.
    Unknown(u64),
}

impl RmiExitReason {
    /// The encoding of [`RmiExitReason::Irq`], for a caller that cannot
    /// call out (the kernel's noinstr window), as the next two.
    pub(crate) const IRQ: u64 = 1;

    /// The encoding of [`RmiExitReason::Fiq`].
    pub(crate) const FIQ: u64 = 2;

    /// The encoding of [`RmiExitReason::SError`].
    pub(crate) const SERROR: u64 = 6;

    /// The reason `raw` stands for.
    pub(crate) const fn from_raw(raw: u64) -> Self {
        match raw {
            0 => Self::Sync,
            Self::IRQ => Self::Irq,
            Self::FIQ => Self::Fiq,
            3 => Self::Psci,
            4 => Self::RipasChange,
            5 => Self::HostCall,
            Self::SERROR => Self::SError,
            7 => Self::S2apChange,
            8 => Self::VdevRequest,
            9 => Self::DevMemMap,
            10 => Self::VdevP2pBinding,
            other => Self::Unknown(other),
        }
    }

    /// Every reason this host knows, in encoding order.
    pub(crate) const KNOWN: [Self; 11] = [
        Self::Sync,
        Self::Irq,
        Self::Fiq,
        Self::Psci,
        Self::RipasChange,
        Self::HostCall,
        Self::SError,
        Self::S2apChange,
        Self::VdevRequest,
        Self::DevMemMap,
        Self::VdevP2pBinding,
    ];

    /// The spec's name without `RMI_EXIT_`; `UNKNOWN` for other values.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Sync => "SYNC",
            Self::Irq => "IRQ",
            Self::Fiq => "FIQ",
            Self::Psci => "PSCI",
            Self::RipasChange => "RIPAS_CHANGE",
            Self::HostCall => "HOST_CALL",
            Self::SError => "SERROR",
            Self::S2apChange => "S2AP_CHANGE",
            Self::VdevRequest => "VDEV_REQUEST",
            Self::DevMemMap => "DEV_MEM_MAP",
            Self::VdevP2pBinding => "VDEV_P2P_BINDING",
            Self::Unknown(_) => "UNKNOWN",
        }
    }
}

/// ESR_EL2 as the RMM reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Esr(pub(crate) u64);

/// `ESR_ELx.EC` values the host sees from a realm.
const EC_WFX: u64 = 0x01;
const EC_SYS64: u64 = 0x18;
const EC_IABT_LOW: u64 = 0x20;
const EC_DABT_LOW: u64 = 0x24;

impl Esr {
    /// The exception class.
    pub(crate) const fn ec(self) -> u64 {
        (self.0 >> 26) & 0x3f
    }

    /// Whether ISV says the syndrome describes the access.
    pub(crate) const fn isv(self) -> bool {
        self.0 & (1 << 24) != 0
    }

    /// The access size in bytes (SAS).
    pub(crate) const fn access_bytes(self) -> u8 {
        1 << ((self.0 >> 22) & 3)
    }

    /// Whether an abort is an external abort (EA).
    pub(crate) const fn external(self) -> bool {
        self.0 & (1 << 9) != 0
    }

    /// Whether a data abort was a write (WnR).
    pub(crate) const fn write(self) -> bool {
        self.0 & (1 << 6) != 0
    }

    /// The fault status code of an abort (DFSC/IFSC).
    pub(crate) const fn fsc(self) -> u8 {
        // CAST: Six bits.
        (self.0 & 0x3f) as u8
    }

    /// Whether a system register access is a read (direction bit 1).
    pub(crate) const fn sysreg_read(self) -> bool {
        self.0 & 1 != 0
    }

    /// Whether a WFx trap is a WFE (TI bit 0).
    pub(crate) const fn wfe(self) -> bool {
        self.0 & 1 != 0
    }
}

/// The kind of a stage-2 abort's fault status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// Translation fault: nothing mapped.
    Translation,
    /// Access flag fault.
    AccessFlag,
    /// Permission fault: mapped, but not for this access.
    Permission,
    /// Anything else (external aborts, TLB conflicts, ...).
    Other,
}

impl FaultKind {
    /// The kind of fault status code `fsc` (levels 0..3, and -1 with LPA2).
    pub(crate) const fn of(fsc: u8) -> Self {
        match fsc {
            0x04..=0x07 | 0x2b => Self::Translation,
            0x08..=0x0b => Self::AccessFlag,
            0x0c..=0x0f => Self::Permission,
            _ => Self::Other,
        }
    }
}

/// An access to an unprotected IPA the RMM describes, to be emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MmioAccess {
    /// The IPA with the unprotected bit cleared: the memslot address the VMM
    /// knows.
    pub(crate) gpa: u64,
    /// Whether it is a write.
    pub(crate) write: bool,
    /// Bytes accessed: 1, 2, 4 or 8.
    pub(crate) len: u8,
    /// A write's value, truncated to `len`.
    pub(crate) data: u64,
}

/// A decoded REC exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecExit {
    /// A stage-2 abort at a protected IPA: map guest_memfd memory there, or
    /// tell the VMM.
    ProtectedFault {
        /// The faulting IPA, page aligned.
        ipa: u64,
        /// Whether it was an instruction fetch.
        exec: bool,
        /// The kind of fault.
        kind: FaultKind,
    },
    /// A data abort at an unprotected IPA: the shared alias of `gpa`.
    /// `access` is set when the RMM described the access (ISV), so that it
    /// can be emulated if no memory is there.
    SharedFault {
        /// The IPA with the unprotected bit cleared, page aligned.
        gpa: u64,
        /// The kind of fault.
        kind: FaultKind,
        /// The access, for MMIO emulation.
        access: Option<MmioAccess>,
    },
    /// An external abort the RMM handled or injected already.
    ExternalAbort,
    /// An ICC_* system register access; the PC is already past it.
    SysReg {
        /// The syndrome, for KVM's trap handler.
        esr: Esr,
        /// Whether it is a read (the value goes back in `enter.gprs[0]`).
        read: bool,
        /// A write's value.
        value: u64,
    },
    /// A trapped WFI or WFE; the PC is already past it.
    Wfx {
        /// WFE rather than WFI.
        wfe: bool,
    },
    /// An interrupt for the host (or a realm timer changed).
    Interrupt,
    /// A PSCI call: function ID and, for CPU_ON and AFFINITY_INFO, the
    /// target MPIDR.
    Psci {
        /// The PSCI function ID.
        fid: u64,
        /// The target MPIDR (0 when the call has none).
        target: u64,
    },
    /// A request to set RIPAS `ripas` over `[base, top)`.
    RipasChange {
        /// First IPA.
        base: u64,
        /// IPA past the last.
        top: u64,
        /// The requested RIPAS (0 EMPTY, 1 RAM).
        ripas: u8,
    },
    /// `RSI_HOST_CALL` with immediate `imm` and the realm's x0..x30.
    HostCall {
        /// The call's immediate.
        imm: u32,
    },
    /// An SError the RMM already injected into the realm.
    SError,
    /// Something this host does not handle (the VM is dead): an exit the
    /// RMM did not describe (zero syndrome), a reason for planes or device
    /// assignment, or an unknown one.
    Unhandled,
}

/// The IPA of a stage-2 abort: HPFAR_EL2.FIPA (bits [47:4]) is IPA[55:12].
const fn fault_ipa(hpfar: u64) -> u64 {
    (hpfar & 0x0000_ffff_ffff_fff0) << 8
}

/// Decodes `exit` of a REC of a realm whose IPA space is `ipa_bits` wide (the
/// top bit selects the unprotected alias).
pub(crate) fn decode(exit: &RmiRecExit, ipa_bits: u8) -> RecExit {
    match RmiExitReason::from_raw(exit.exit_reason) {
        RmiExitReason::Sync => decode_sync(exit, ipa_bits),
        RmiExitReason::Irq | RmiExitReason::Fiq => RecExit::Interrupt,
        RmiExitReason::Psci => RecExit::Psci {
            fid: exit.gprs[0],
            target: exit.gprs[1],
        },
        RmiExitReason::RipasChange => RecExit::RipasChange {
            base: exit.ripas_base,
            top: exit.ripas_top,
            ripas: exit.ripas_value,
        },
        RmiExitReason::HostCall => RecExit::HostCall { imm: exit.imm },
        RmiExitReason::SError => RecExit::SError,
        _ => RecExit::Unhandled,
    }
}

fn decode_sync(exit: &RmiRecExit, ipa_bits: u8) -> RecExit {
    let esr = Esr(exit.esr);
    match esr.ec() {
        EC_DABT_LOW | EC_IABT_LOW if esr.external() => RecExit::ExternalAbort,
        EC_DABT_LOW | EC_IABT_LOW => {
            let Some(shared_bit) = u32::from(ipa_bits)
                .checked_sub(1)
                .and_then(|b| 1u64.checked_shl(b))
            else {
                return RecExit::Unhandled;
            };
            let ipa = fault_ipa(exit.hpfar);
            if ipa >= shared_bit.saturating_mul(2) {
                return RecExit::Unhandled;
            }
            let kind = FaultKind::of(esr.fsc());
            let exec = esr.ec() == EC_IABT_LOW;
            if ipa & shared_bit == 0 {
                return RecExit::ProtectedFault { ipa, exec, kind };
            }
            // The RMM injects an SEA for instruction fetches from
            // unprotected IPAs; one here is a broken report.
            if exec {
                return RecExit::Unhandled;
            }
            let gpa = ipa & !shared_bit;
            let access = esr.isv().then(|| {
                let len = esr.access_bytes();
                let mask = u64::MAX >> (64 - 8 * u32::from(len));
                MmioAccess {
                    gpa: gpa | (exit.far & 0xfff),
                    write: esr.write(),
                    len,
                    data: if esr.write() { exit.gprs[0] & mask } else { 0 },
                }
            });
            RecExit::SharedFault { gpa, kind, access }
        }
        EC_SYS64 => RecExit::SysReg {
            esr,
            read: esr.sysreg_read(),
            value: if esr.sysreg_read() { 0 } else { exit.gprs[0] },
        },
        EC_WFX => RecExit::Wfx { wfe: esr.wfe() },
        _ => RecExit::Unhandled,
    }
}
