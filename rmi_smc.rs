// SPDX-License-Identifier: GPL-2.0

//! RMI ABI v2.0 (DEN0137, as TF-RMM main implements it): function IDs, the
//! `RmiCommandReturnCode` (status + index) and the version encoding.
//!
//! This file is part of the sans-IO core: it uses `core` only, and is compiled
//! both into the module and into the host crate `tools/testing/rmm-model`.

use core::fmt;

/// Number of general-purpose registers an SMCCC v1.2 call passes: x0..x17.
pub(crate) const SMC_NR_REGS: usize = 18;

/// Registers x0..x17 going into, or coming out of, one SMC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SmcRegs(pub(crate) [u64; SMC_NR_REGS]);

impl SmcRegs {
    /// Registers for a call of `fid` with `args` in x1, x2, ...; the rest zero.
    ///
    /// Takes at most six arguments (x1..x6), the most any RMI command uses.
    pub(crate) const fn new(fid: RmiFid, args: [u64; 6]) -> Self {
        let mut regs = [0u64; SMC_NR_REGS];
        // CAST: Lossless (`u64::from` is not const).
        regs[0] = fid.0 as u64;
        let mut i = 0;
        while i < args.len() {
            regs[i + 1] = args[i];
            i += 1;
        }
        Self(regs)
    }

    /// Register `xN`, or zero for an index past x17.
    pub(crate) fn x(&self, n: usize) -> u64 {
        self.0.get(n).copied().unwrap_or(0)
    }
}

/// An SMCCC function ID in the RMI range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RmiFid(pub(crate) u32);

/// `SMC64_RMI_FID(offset)`: a fast SMC64 call owned by the standard service.
const fn rmi_fid(offset: u32) -> RmiFid {
    RmiFid(0xc400_0150 + offset)
}

/// What an SMCCC call returns in x0 when the function ID is not implemented
/// (`SMCCC_RET_NOT_SUPPORTED`, -1). An EL3 without an RMM, and QEMU's
/// built-in PSCI emulation, answer RMI calls with this.
pub(crate) const SMCCC_RET_NOT_SUPPORTED: u64 = u64::MAX;

/// Declares the RMI function ID table: one constant per command plus a
/// lookup from FID to name for diagnostics.
macro_rules! rmi_fids {
    ($($(#[$doc:meta])* $name:ident = $offset:expr,)*) => {
        $(
            $(#[$doc])*
            pub(crate) const $name: RmiFid = rmi_fid($offset);
        )*

        /// Every RMI function ID with its command name, in FID order.
        pub(crate) const RMI_FID_TABLE: &[(RmiFid, &str)] = &[
            $(($name, stringify!($name)),)*
        ];
    };
}

rmi_fids! {
    /// Negotiate the RMI ABI version.
    RMI_VERSION = 0x00,
}

/// The name of an RMI command, for log messages.
pub(crate) fn rmi_fid_name(fid: RmiFid) -> Option<&'static str> {
    RMI_FID_TABLE
        .iter()
        .find(|(f, _)| *f == fid)
        .map(|(_, name)| *name)
}

/// The status field of an `RmiCommandReturnCode` (bits [7:0] of x0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RmiStatus {
    /// The command completed.
    Success,
    /// An input parameter is invalid.
    ErrorInput,
    /// The realm (RD) is in the wrong state or an RD argument is invalid.
    ErrorRealm,
    /// The REC is in the wrong state or a REC argument is invalid.
    ErrorRec,
    /// An RTT walk did not reach the level the command needs (index = level).
    ErrorRtt,
    /// The command or option is not supported by this RMM.
    ErrorNotSupported,
    /// A device-assignment object is in the wrong state.
    ErrorDevice,
    /// An auxiliary RTT walk failed.
    ErrorRttAux,
    /// A P-SMMU stream table error.
    ErrorPsmmuSt,
    /// A device permission table error.
    ErrorDpt,
    /// A resource is in use by a concurrent operation: retry.
    Busy,
    /// The RMM is in the wrong global state (for example not yet activated).
    ErrorGlobal,
    /// Granule tracking does not cover the address.
    ErrorTracking,
    /// A stateful operation needs more calls (RmiOpMemReq in the index).
    Incomplete,
    /// The operation is blocked by another one: retry.
    Blocked,
    /// A granule protection table operation failed.
    ErrorGpt,
    /// A granule is in the wrong state.
    ErrorGranule,
    /// A status value this ABI revision does not define.
    Unknown(u8),
}

impl RmiStatus {
    /// Decodes a status byte; values past the known set stay representable.
    pub(crate) const fn from_raw(raw: u8) -> Self {
        match raw {
            0 => Self::Success,
            1 => Self::ErrorInput,
            2 => Self::ErrorRealm,
            3 => Self::ErrorRec,
            4 => Self::ErrorRtt,
            5 => Self::ErrorNotSupported,
            6 => Self::ErrorDevice,
            7 => Self::ErrorRttAux,
            8 => Self::ErrorPsmmuSt,
            9 => Self::ErrorDpt,
            10 => Self::Busy,
            11 => Self::ErrorGlobal,
            12 => Self::ErrorTracking,
            13 => Self::Incomplete,
            14 => Self::Blocked,
            15 => Self::ErrorGpt,
            16 => Self::ErrorGranule,
            other => Self::Unknown(other),
        }
    }

    /// The status byte as the RMM encodes it.
    pub(crate) const fn raw(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::ErrorInput => 1,
            Self::ErrorRealm => 2,
            Self::ErrorRec => 3,
            Self::ErrorRtt => 4,
            Self::ErrorNotSupported => 5,
            Self::ErrorDevice => 6,
            Self::ErrorRttAux => 7,
            Self::ErrorPsmmuSt => 8,
            Self::ErrorDpt => 9,
            Self::Busy => 10,
            Self::ErrorGlobal => 11,
            Self::ErrorTracking => 12,
            Self::Incomplete => 13,
            Self::Blocked => 14,
            Self::ErrorGpt => 15,
            Self::ErrorGranule => 16,
            Self::Unknown(raw) => raw,
        }
    }

    /// The spec's name for the status, without the `RMI_` prefix.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::ErrorInput => "ERROR_INPUT",
            Self::ErrorRealm => "ERROR_REALM",
            Self::ErrorRec => "ERROR_REC",
            Self::ErrorRtt => "ERROR_RTT",
            Self::ErrorNotSupported => "ERROR_NOT_SUPPORTED",
            Self::ErrorDevice => "ERROR_DEVICE",
            Self::ErrorRttAux => "ERROR_RTT_AUX",
            Self::ErrorPsmmuSt => "ERROR_PSMMU_ST",
            Self::ErrorDpt => "ERROR_DPT",
            Self::Busy => "BUSY",
            Self::ErrorGlobal => "ERROR_GLOBAL",
            Self::ErrorTracking => "ERROR_TRACKING",
            Self::Incomplete => "INCOMPLETE",
            Self::Blocked => "BLOCKED",
            Self::ErrorGpt => "ERROR_GPT",
            Self::ErrorGranule => "ERROR_GRANULE",
            Self::Unknown(_) => "UNKNOWN",
        }
    }
}

impl fmt::Display for RmiStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(_) => write!(f, "UNKNOWN({})", self.raw()),
            known => f.write_str(known.name()),
        }
    }
}

/// A failed RMI command: its status and index (for example the RTT level
/// for `ErrorRtt`).
///
/// # Invariants
///
/// `status` is never [`RmiStatus::Success`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RmiError {
    status: RmiStatus,
    index: u8,
}

impl RmiError {
    /// The error's status.
    pub(crate) const fn status(&self) -> RmiStatus {
        self.status
    }

    /// The error's index (bits [15:8] of x0).
    pub(crate) const fn index(&self) -> u8 {
        self.index
    }
}

impl fmt::Display for RmiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (index {})", self.status(), self.index())
    }
}

/// Decodes x0 of an RMI command into success or a typed [`RmiError`].
///
/// Bits above [15:8] are reserved and ignored.
pub(crate) const fn rmi_result(x0: u64) -> Result<(), RmiError> {
    // CAST: Truncation to the status and index bytes is the encoding.
    let status = RmiStatus::from_raw(x0 as u8);
    let index = (x0 >> 8) as u8;
    match status {
        RmiStatus::Success => Ok(()),
        // INVARIANT: `status` is not `Success` in this arm.
        _ => Err(RmiError { status, index }),
    }
}

/// An RMI ABI revision (`RmiInterfaceVersion`): `(major << 16) | minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RmiVersion {
    /// Major revision: incompatible changes.
    pub(crate) major: u16,
    /// Minor revision: compatible additions.
    pub(crate) minor: u16,
}

impl RmiVersion {
    /// The ABI this host implements.
    pub(crate) const HOST: Self = Self { major: 2, minor: 0 };

    /// Decodes a version register. Bits [63:31] are reserved and must be zero.
    pub(crate) const fn from_raw(raw: u64) -> Option<Self> {
        if raw >> 31 != 0 {
            return None;
        }
        Some(Self {
            // CAST: Both fields fit after the reserved-bits check.
            major: (raw >> 16) as u16,
            minor: raw as u16,
        })
    }

    /// Encodes the version for x1 of `RMI_VERSION`.
    pub(crate) const fn raw(self) -> u64 {
        ((self.major as u64) << 16) | self.minor as u64
    }
}

impl fmt::Display for RmiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}
