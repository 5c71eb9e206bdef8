// SPDX-License-Identifier: GPL-2.0

//! RMI ABI v2.0 (DEN0137, as TF-RMM main implements it): function IDs, the
//! `RmiCommandReturnCode` (status + index) and the version encoding.
//!
//! This file is part of the sans-IO core: it uses `core` only, and is compiled
//! both into the module and into the host crate `tools/testing/rmm-model`.

use core::fmt;
use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};

use crate::addr::{
    Granule,
    GranuleRange,
    GRANULE_SIZE,
    PA_LIMIT, //
};

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
    /// Map a delegated granule as measured or unmeasured initial DATA.
    RMI_RTT_DATA_MAP_INIT = 0x03,
    /// Move a realm from NEW to ACTIVE.
    RMI_REALM_ACTIVATE = 0x07,
    /// Create a realm descriptor (RD).
    RMI_REALM_CREATE = 0x08,
    /// Destroy a terminated realm's RD.
    RMI_REALM_DESTROY = 0x09,
    /// Create a REC (an SRO: aux granules are donated).
    RMI_REC_CREATE = 0x0a,
    /// Destroy a REC (an SRO: aux granules are reclaimed).
    RMI_REC_DESTROY = 0x0b,
    /// Run a REC until it exits.
    RMI_REC_ENTER = 0x0c,
    /// Create a non-root RTT.
    RMI_RTT_CREATE = 0x0d,
    /// Destroy a non-root RTT.
    RMI_RTT_DESTROY = 0x0e,
    /// Read one RTT entry.
    RMI_RTT_READ_ENTRY = 0x11,
    /// Validate a device mapping requested by a REC.
    RMI_RTT_DEV_VALIDATE = 0x13,
    /// Complete a PSCI call the REC made.
    RMI_PSCI_COMPLETE = 0x14,
    /// Read one RMI feature register.
    RMI_FEATURES = 0x15,
    /// Fold a homogeneous RTT into its parent entry.
    RMI_RTT_FOLD = 0x16,
    /// Set RIPAS of a range of a NEW realm.
    RMI_RTT_INIT_RIPAS = 0x18,
    /// Set RIPAS in answer to a REC's RIPAS change request.
    RMI_RTT_SET_RIPAS = 0x19,
    /// Configure the RMM (granule size, tracking); INIT state only.
    RMI_RMM_CONFIG_SET = 0x1e,
    /// Abort a PDEV operation.
    RMI_PDEV_ABORT = 0x24,
    /// Exchange data with a PDEV's device security manager.
    RMI_PDEV_COMMUNICATE = 0x25,
    /// Create a PDEV.
    RMI_PDEV_CREATE = 0x26,
    /// Destroy a PDEV.
    RMI_PDEV_DESTROY = 0x27,
    /// Read a PDEV's state.
    RMI_PDEV_GET_STATE = 0x28,
    /// Refresh an IDE stream key.
    RMI_PDEV_STREAM_KEY_REFRESH = 0x2a,
    /// Set a PDEV's public key.
    RMI_PDEV_SET_PUBKEY = 0x2b,
    /// Stop a PDEV.
    RMI_PDEV_STOP = 0x2c,
    /// Auxiliary RTT create.
    RMI_RTT_AUX_CREATE = 0x2d,
    /// Auxiliary RTT destroy.
    RMI_RTT_AUX_DESTROY = 0x2e,
    /// Auxiliary RTT fold.
    RMI_RTT_AUX_FOLD = 0x2f,
    /// Map a protected IPA in an auxiliary RTT tree.
    RMI_RTT_AUX_MAP_PROTECTED = 0x30,
    /// Map an unprotected IPA in an auxiliary RTT tree.
    RMI_RTT_AUX_MAP_UNPROTECTED = 0x31,
    /// Unmap a protected IPA from an auxiliary RTT tree.
    RMI_RTT_AUX_UNMAP_PROTECTED = 0x33,
    /// Unmap an unprotected IPA from an auxiliary RTT tree.
    RMI_RTT_AUX_UNMAP_UNPROTECTED = 0x34,
    /// Abort a VDEV operation.
    RMI_VDEV_ABORT = 0x35,
    /// Exchange data with a VDEV.
    RMI_VDEV_COMMUNICATE = 0x36,
    /// Create a VDEV.
    RMI_VDEV_CREATE = 0x37,
    /// Destroy a VDEV.
    RMI_VDEV_DESTROY = 0x38,
    /// Read a VDEV's state.
    RMI_VDEV_GET_STATE = 0x39,
    /// Unlock a VDEV.
    RMI_VDEV_UNLOCK = 0x3a,
    /// Set stage-2 access permissions in answer to a REC's request.
    RMI_RTT_SET_S2AP = 0x3b,
    /// Complete a VDEV request made by a REC.
    RMI_VDEV_COMPLETE = 0x3e,
    /// Fetch a VDEV's TDISP interface report.
    RMI_VDEV_GET_INTERFACE_REPORT = 0x80,
    /// Fetch a VDEV's measurements.
    RMI_VDEV_GET_MEASUREMENTS = 0x81,
    /// Lock a VDEV.
    RMI_VDEV_LOCK = 0x82,
    /// Start a VDEV.
    RMI_VDEV_START = 0x83,
    /// Activate a P-SMMU.
    RMI_PSMMU_ACTIVATE = 0x87,
    /// Deactivate a P-SMMU.
    RMI_PSMMU_DEACTIVATE = 0x88,
    /// Create a P-SMMU level-2 stream table.
    RMI_PSMMU_ST_L2_CREATE = 0x8b,
    /// Destroy a P-SMMU level-2 stream table.
    RMI_PSMMU_ST_L2_DESTROY = 0x8c,
    /// Report the memory category and tracking of a PA range.
    RMI_GRANULE_TRACKING_GET = 0x91,
    /// Read the RMM configuration.
    RMI_RMM_CONFIG_GET = 0x9c,
    /// Delegate a PA range to the Realm world (TF-RMM: one granule a call).
    RMI_GRANULE_RANGE_DELEGATE = 0xa1,
    /// Undelegate a PA range back to the Non-secure world.
    RMI_GRANULE_RANGE_UNDELEGATE = 0xa2,
    /// Create a level-1 GPT for a 1 GiB region.
    RMI_GPT_L1_CREATE = 0xa3,
    /// Map delegated granules as zeroed DATA.
    RMI_RTT_DATA_MAP = 0xa5,
    /// Unmap DATA (may be an SRO).
    RMI_RTT_DATA_UNMAP = 0xa6,
    /// Map a device range into a realm.
    RMI_RTT_DEV_MAP = 0xa7,
    /// Unmap a device range from a realm.
    RMI_RTT_DEV_UNMAP = 0xa8,
    /// Map NS memory at unprotected IPAs.
    RMI_RTT_UNPROT_MAP = 0xab,
    /// Unmap unprotected IPAs (may be an SRO).
    RMI_RTT_UNPROT_UNMAP = 0xac,
    /// Move a realm to ZOMBIE so it can be destroyed.
    RMI_REALM_TERMINATE = 0xb1,
    /// Move the RMM from INIT to ACTIVE.
    RMI_RMM_ACTIVATE = 0xb2,
    /// Continue (or stop) a stateful RMI operation.
    RMI_OP_CONTINUE = 0xb3,
    /// Connect an IDE stream.
    RMI_PDEV_STREAM_CONNECT = 0xb4,
    /// Disconnect an IDE stream.
    RMI_PDEV_STREAM_DISCONNECT = 0xb5,
    /// Complete an IDE stream operation.
    RMI_PDEV_STREAM_COMPLETE = 0xb6,
    /// Purge an IDE stream key.
    RMI_PDEV_STREAM_KEY_PURGE = 0xb7,
    /// Donate granules a stateful operation asked for.
    RMI_OP_MEM_DONATE = 0xb8,
    /// Reclaim granules a stateful operation hands back.
    RMI_OP_MEM_RECLAIM = 0xb9,
    /// Cancel a stateful operation that can be cancelled.
    RMI_OP_CANCEL = 0xba,
}

/// The name of an RMI command, for log messages.
pub(crate) fn rmi_fid_name(fid: RmiFid) -> Option<&'static str> {
    RMI_FID_TABLE
        .iter()
        .find(|(f, _)| *f == fid)
        .map(|(_, name)| *name)
}

/// Offsets from the first RMI function ID that [`RmiCallCounts`] counts:
/// every command of the table (the last is at 0xba).
const RMI_FID_SPAN: usize = 0xc0;

/// How many times each RMI command was called since the module loaded, for
/// statistics: lock-free, callable from any context.
pub(crate) struct RmiCallCounts([AtomicU64; RMI_FID_SPAN]);

impl RmiCallCounts {
    /// All zero.
    pub(crate) const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; RMI_FID_SPAN])
    }

    fn slot(&self, fid: u64) -> Option<&AtomicU64> {
        let offset = fid.checked_sub(u64::from(rmi_fid(0).0))?;
        self.0.get(usize::try_from(offset).ok()?)
    }

    /// Counts a call with `x0` = `fid` (other function IDs are ignored).
    pub(crate) fn record(&self, fid: u64) {
        if let Some(count) = self.slot(fid) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls of `fid` so far.
    pub(crate) fn get(&self, fid: RmiFid) -> u64 {
        self.slot(u64::from(fid.0))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Writes `NAME count` for every command called at least once, in FID
    /// order, then `total count`.
    pub(crate) fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        let mut total = 0u64;
        for (fid, name) in RMI_FID_TABLE {
            let n = self.get(*fid);
            if n > 0 {
                writeln!(f, "{name} {n}")?;
                total = total.saturating_add(n);
            }
        }
        writeln!(f, "total {total}")
    }
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
    /// Not an RMM status: the host's verdict that the RMM's output broke
    /// the ABI (progress outside the range asked, reserved values, an
    /// operation that never ends). Encoded as [`RmiStatus::BAD_OUTPUT_RAW`],
    /// which decodes as `Unknown`.
    BadOutput,
}

impl RmiStatus {
    /// The byte [`RmiStatus::BadOutput`] is shown with; no RMM status.
    pub(crate) const BAD_OUTPUT_RAW: u8 = 0xff;

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
            Self::BadOutput => Self::BAD_OUTPUT_RAW,
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
            Self::BadOutput => "BAD_OUTPUT",
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
    /// The error for an RMM answer that broke the ABI ([`RmiStatus::BadOutput`]).
    pub(crate) const fn bad_output() -> Self {
        // INVARIANT: `BadOutput` is not `Success`.
        Self {
            status: RmiStatus::BadOutput,
            index: 0,
        }
    }

    /// The error's status.
    pub(crate) const fn status(&self) -> RmiStatus {
        self.status
    }

    /// The error's index (bits [15:8] of x0).
    pub(crate) const fn index(&self) -> u8 {
        self.index
    }

    /// x0 as the RMM returned it (reserved bits cleared): [`rmi_result`]
    /// of it is this error again.
    pub(crate) const fn raw(&self) -> u64 {
        self.status.raw() as u64 | (self.index as u64) << 8
    }
}

/// How a failed RMI command is reported to the kernel caller; the shell maps
/// each kind to one errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RmiErrorKind {
    /// The host passed something the RMM rejects (`EINVAL`).
    InvalidArgument,
    /// The RMM does not support the command or option (`EOPNOTSUPP`).
    NotSupported,
    /// Contention that outlived the retries (`EBUSY`).
    Busy,
    /// The RMM is not in a state to serve requests (`ENODEV`).
    RmmUnavailable,
    /// Any other failure of a realm object (`ENXIO`, as the C series).
    Failed,
}

impl RmiError {
    /// The kind of failure, for the errno the caller sees.
    pub(crate) const fn kind(&self) -> RmiErrorKind {
        match self.status {
            RmiStatus::ErrorInput => RmiErrorKind::InvalidArgument,
            RmiStatus::ErrorNotSupported => RmiErrorKind::NotSupported,
            RmiStatus::Busy | RmiStatus::Blocked => RmiErrorKind::Busy,
            RmiStatus::ErrorGlobal => RmiErrorKind::RmmUnavailable,
            _ => RmiErrorKind::Failed,
        }
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

/// Bits `[lo + width - 1 : lo]` of `reg`.
const fn field(reg: u64, lo: u32, width: u32) -> u64 {
    (reg >> lo) & ((1u64 << width) - 1)
}

/// Bit `bit` of `reg`.
const fn flag(reg: u64, bit: u32) -> bool {
    field(reg, bit, 1) != 0
}

/// `RMI_FEATURES` register 0: stage-2 and vCPU features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RmiFeatures0(pub(crate) u64);

impl RmiFeatures0 {
    /// Widest IPA a realm can have, in bits (`S2SZ`, [7:0]).
    pub(crate) const fn s2sz(self) -> u8 {
        // CAST: An 8-bit field.
        field(self.0, 0, 8) as u8
    }

    /// LPA2 (52-bit addresses with 4 KiB granules) is supported ([8]).
    pub(crate) const fn lpa2(self) -> bool {
        flag(self.0, 8)
    }

    /// Realms may use SVE ([9]).
    pub(crate) const fn sve_en(self) -> bool {
        flag(self.0, 9)
    }

    /// Largest SVE vector length, as `(VL / 128) - 1` ([13:10]).
    pub(crate) const fn sve_vl(self) -> u8 {
        // CAST: A 4-bit field.
        field(self.0, 10, 4) as u8
    }

    /// Number of breakpoints minus one ([19:14]).
    pub(crate) const fn num_bps(self) -> u8 {
        // CAST: A 6-bit field.
        field(self.0, 14, 6) as u8
    }

    /// Number of watchpoints minus one ([25:20]).
    pub(crate) const fn num_wps(self) -> u8 {
        // CAST: A 6-bit field.
        field(self.0, 20, 6) as u8
    }

    /// Realms may use the PMU ([26]).
    pub(crate) const fn pmu_en(self) -> bool {
        flag(self.0, 26)
    }

    /// Number of PMU event counters ([31:27]).
    pub(crate) const fn pmu_num_ctrs(self) -> u8 {
        // CAST: A 5-bit field.
        field(self.0, 27, 5) as u8
    }
}

/// `RMI_FEATURES` register 1: granules, hashes, limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RmiFeatures1(pub(crate) u64);

impl RmiFeatures1 {
    /// 4 KiB RMI granules are supported ([0]).
    pub(crate) const fn granule_4k(self) -> bool {
        flag(self.0, 0)
    }

    /// 16 KiB RMI granules are supported ([1]).
    pub(crate) const fn granule_16k(self) -> bool {
        flag(self.0, 1)
    }

    /// 64 KiB RMI granules are supported ([2]).
    pub(crate) const fn granule_64k(self) -> bool {
        flag(self.0, 2)
    }

    /// SHA-256 measurements are supported ([3]).
    pub(crate) const fn sha256(self) -> bool {
        flag(self.0, 3)
    }

    /// SHA-384 measurements are supported ([4]).
    pub(crate) const fn sha384(self) -> bool {
        flag(self.0, 4)
    }

    /// SHA-512 measurements are supported ([5]).
    pub(crate) const fn sha512(self) -> bool {
        flag(self.0, 5)
    }

    /// Log2 of the maximum number of RECs per realm ([9:6]).
    pub(crate) const fn max_recs_order(self) -> u8 {
        // CAST: A 4-bit field.
        field(self.0, 6, 4) as u8
    }

    /// Level-0 GPT entry size, encoded as in `GPCCR_EL3.L0GPTSZ` ([13:10]).
    pub(crate) const fn l0gptsz(self) -> u8 {
        // CAST: A 4-bit field.
        field(self.0, 10, 4) as u8
    }

    /// Protected physical address size, encoded as in `GPCCR_EL3.PPS` ([16:14]).
    pub(crate) const fn pps(self) -> u8 {
        // CAST: A 3-bit field.
        field(self.0, 14, 3) as u8
    }
}

/// `RMI_FEATURES` register 2: device assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RmiFeatures2(pub(crate) u64);

impl RmiFeatures2 {
    /// Device assignment is supported ([0]).
    pub(crate) const fn da_en(self) -> bool {
        flag(self.0, 0)
    }
}

/// `RMI_FEATURES` register 3: planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RmiFeatures3(pub(crate) u64);

impl RmiFeatures3 {
    /// Maximum number of auxiliary planes ([3:0]).
    pub(crate) const fn max_num_aux_planes(self) -> u8 {
        // CAST: A 4-bit field.
        field(self.0, 0, 4) as u8
    }

    /// Auxiliary planes use S2AP indirection instead of auxiliary RTTs ([6]).
    pub(crate) const fn rtt_s2ap_indirect(self) -> bool {
        flag(self.0, 6)
    }
}

/// What a stateful RMI operation (SRO) needs before it can go on
/// (`RmiOpMemReq`, bits [9:8] of x0 with `RMI_INCOMPLETE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpMemReq {
    /// Nothing: call `RMI_OP_CONTINUE`.
    None,
    /// Donate granules: call `RMI_OP_MEM_DONATE`.
    Donate,
    /// Take granules back: call `RMI_OP_MEM_RECLAIM`.
    Reclaim,
}

/// The index of an `RMI_INCOMPLETE` return: what the operation needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Incomplete {
    /// What to call next.
    pub(crate) mem_req: OpMemReq,
    /// Whether `RMI_OP_CANCEL` is allowed now (bit 10 of x0).
    pub(crate) can_cancel: bool,
}

impl RmiError {
    /// Decodes the index of an `RMI_INCOMPLETE` return. `None` for any other
    /// status, or for the reserved `RmiOpMemReq` value 3.
    pub(crate) const fn incomplete(&self) -> Option<Incomplete> {
        if !matches!(self.status, RmiStatus::Incomplete) {
            return None;
        }
        let mem_req = match self.index & 0b11 {
            0 => OpMemReq::None,
            1 => OpMemReq::Donate,
            2 => OpMemReq::Reclaim,
            _ => return None,
        };
        Some(Incomplete {
            mem_req,
            can_cancel: self.index & 0b100 != 0,
        })
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

/// `RmiMemCategory`: what kind of memory `RMI_GRANULE_TRACKING_GET` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RmiMemCategory {
    /// Conventional memory (DRAM).
    Conventional,
    /// Non-coherent device memory.
    DevNonCoherent,
    /// Coherent device memory.
    DevCoherent,
    /// A value this ABI revision does not define.
    Unknown(u64),
}

impl RmiMemCategory {
    /// Decodes x1 of `RMI_GRANULE_TRACKING_GET`.
    pub(crate) const fn from_raw(raw: u64) -> Self {
        match raw {
            0 => Self::Conventional,
            1 => Self::DevNonCoherent,
            2 => Self::DevCoherent,
            other => Self::Unknown(other),
        }
    }

    /// The value the RMM encodes.
    pub(crate) const fn raw(self) -> u64 {
        match self {
            Self::Conventional => 0,
            Self::DevNonCoherent => 1,
            Self::DevCoherent => 2,
            Self::Unknown(raw) => raw,
        }
    }
}

/// `RmiTrackingState`: how finely the RMM tracks a region of memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RmiTrackingState {
    /// Reserved: the RMM will never track it.
    Reserved,
    /// Not tracked yet: needs `RMI_GPT_L1_CREATE`.
    None,
    /// Tracked per granule: can be delegated.
    Fine,
    /// Tracked per block only: cannot be delegated granule by granule.
    Coarse,
    /// A value this ABI revision does not define.
    Unknown(u64),
}

impl RmiTrackingState {
    /// Decodes x2 of `RMI_GRANULE_TRACKING_GET`.
    pub(crate) const fn from_raw(raw: u64) -> Self {
        match raw {
            0 => Self::Reserved,
            1 => Self::None,
            2 => Self::Fine,
            3 => Self::Coarse,
            other => Self::Unknown(other),
        }
    }

    /// The value the RMM encodes.
    pub(crate) const fn raw(self) -> u64 {
        match self {
            Self::Reserved => 0,
            Self::None => 1,
            Self::Fine => 2,
            Self::Coarse => 3,
            Self::Unknown(raw) => raw,
        }
    }
}

/// The block size of an address range (`RMI_ADDR_BLK_SIZE`), the size of
/// an RTT entry at a level with 4 KiB granules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RmiBlockSize {
    /// 4 KiB (level 3).
    Page,
    /// 2 MiB (level 2).
    L2Block,
    /// 1 GiB (level 1).
    L1Block,
    /// 512 GiB (level 0).
    L0Block,
}

impl RmiBlockSize {
    /// Decodes the two-bit field.
    pub(crate) const fn from_raw(raw: u64) -> Self {
        match raw & 0b11 {
            0 => Self::Page,
            1 => Self::L2Block,
            2 => Self::L1Block,
            _ => Self::L0Block,
        }
    }

    /// The two-bit field.
    pub(crate) const fn raw(self) -> u64 {
        match self {
            Self::Page => 0,
            Self::L2Block => 1,
            Self::L1Block => 2,
            Self::L0Block => 3,
        }
    }

    /// Granules in one block: 512 per level above 3.
    pub(crate) const fn granules(self) -> u64 {
        1 << (9 * self.raw())
    }
}

/// Whether the granules of an address range are delegated (`st` = 0) or
/// not (`st` = 1), in donation requests and range descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RmiMemState {
    /// In the Realm PAS, owned by the RMM (`RMI_OP_MEM_DELEGATED`).
    Delegated,
    /// In the Non-secure PAS (`RMI_OP_MEM_UNDELEGATED`).
    Undelegated,
}

impl RmiMemState {
    /// Decodes the one-bit field.
    pub(crate) const fn from_bit(bit: bool) -> Self {
        if bit {
            Self::Undelegated
        } else {
            Self::Delegated
        }
    }

    /// The one-bit field.
    pub(crate) const fn bit(self) -> bool {
        matches!(self, Self::Undelegated)
    }
}

/// `RmiAddrRangeDesc4KB`: a run of `count` blocks at `base`, one 64-bit
/// entry of the address lists `RMI_OP_MEM_DONATE`/`RECLAIM` and the RTT
/// map/unmap commands exchange.
///
/// Bits: size [1:0], count [11:2], PA[51:12] [51:12], state [63].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RmiAddrRangeDesc(pub(crate) u64);

impl RmiAddrRangeDesc {
    /// The largest `count` the 10-bit field holds.
    pub(crate) const MAX_COUNT: u64 = (1 << 10) - 1;

    /// Encodes a descriptor. `None` if `count` does not fit or `base` is not
    /// aligned to `size`.
    pub(crate) const fn new(
        base: Granule,
        size: RmiBlockSize,
        count: u64,
        state: RmiMemState,
    ) -> Option<Self> {
        if count > Self::MAX_COUNT
            || !base.is_aligned(size.granules() * GRANULE_SIZE)
            || base.pa() >= PA_LIMIT
        {
            return None;
        }
        Some(Self(
            size.raw() | (count << 2) | base.pa() | ((state.bit() as u64) << 63),
        ))
    }

    /// The block size.
    pub(crate) const fn size(self) -> RmiBlockSize {
        RmiBlockSize::from_raw(field(self.0, 0, 2))
    }

    /// The number of blocks (0 = an empty entry).
    pub(crate) const fn count(self) -> u64 {
        field(self.0, 2, 10)
    }

    /// The first granule.
    pub(crate) const fn base(self) -> Granule {
        // The field is PA[51:12], so the masked value is always a granule.
        match Granule::new(self.0 & (PA_LIMIT - GRANULE_SIZE)) {
            Some(g) => g,
            None => Granule::ZERO,
        }
    }

    /// Whether the granules are delegated.
    pub(crate) const fn state(self) -> RmiMemState {
        RmiMemState::from_bit(flag(self.0, 63))
    }

    /// Whether reserved bits [62:52] are clear.
    pub(crate) const fn reserved_clear(self) -> bool {
        field(self.0, 52, 11) == 0
    }

    /// The granules described, if they stay below [`PA_LIMIT`].
    pub(crate) const fn range(self) -> Option<GranuleRange> {
        GranuleRange::from_count(self.base(), self.count() * self.size().granules())
    }
}

/// `RmiOpMemDonateReq` (x2 of an `RMI_INCOMPLETE` asking for a donation):
/// how much memory the operation needs, and in what shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RmiDonateReq(pub(crate) u64);

impl RmiDonateReq {
    /// Size of each block ([1:0]).
    pub(crate) const fn block_size(self) -> RmiBlockSize {
        RmiBlockSize::from_raw(field(self.0, 0, 2))
    }

    /// Number of blocks ([15:2]).
    pub(crate) const fn block_count(self) -> u64 {
        field(self.0, 2, 14)
    }

    /// Whether all blocks must form one naturally aligned run ([16]).
    pub(crate) const fn contiguous(self) -> bool {
        flag(self.0, 16)
    }

    /// The state the granules must be in when donated ([17]).
    pub(crate) const fn state(self) -> RmiMemState {
        RmiMemState::from_bit(flag(self.0, 17))
    }

    /// Encodes a request (the model's side).
    pub(crate) const fn new(
        size: RmiBlockSize,
        count: u64,
        contiguous: bool,
        state: RmiMemState,
    ) -> Self {
        Self(
            size.raw()
                | ((count & ((1 << 14) - 1)) << 2)
                | ((contiguous as u64) << 16)
                | ((state.bit() as u64) << 17),
        )
    }
}

/// `RmiContinueFlags` bit 0: stop the operation early instead of finishing it.
pub(crate) const RMI_CONTINUE_STOP: u64 = 1;

/// `RmiRmmConfig`: what `RMI_RMM_CONFIG_SET` reads (and `_GET` writes).
#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RmiRmmConfig {
    /// Tracking region size: 0 = 1 GiB with 4 KiB granules.
    pub(crate) tracking_region_size: u64,
    /// `RmiGranuleSize`: 0 = 4 KiB.
    pub(crate) rmi_granule_size: u64,
    _pad0: [u8; 0x1000 - 0x010],
}

impl RmiRmmConfig {
    /// `rmi_granule_size` for 4 KiB granules.
    pub(crate) const GRANULE_4K: u64 = 0;
    /// `tracking_region_size` for 1 GiB regions (with 4 KiB granules).
    pub(crate) const TRACKING_1G: u64 = 0;

    /// The only configuration TF-RMM accepts, and the one a 4 KiB host needs.
    pub(crate) const fn granule_4k() -> Self {
        let mut c = Self::zeroed();
        c.rmi_granule_size = Self::GRANULE_4K;
        c.tracking_region_size = Self::TRACKING_1G;
        c
    }

    /// The 64-bit words of the granule, as written to NS memory.
    pub(crate) const fn to_words(&self) -> [u64; 2] {
        [self.tracking_region_size, self.rmi_granule_size]
    }
}

/// `RmiRealmParams`: what `RMI_REALM_CREATE` reads from an NS granule.
#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RmiRealmParams {
    /// `RmiRealmFlags0`: LPA2 [0], SVE [1], PMU [2], DA [3], MEC policy [8:7].
    pub(crate) flags0: u64,
    /// IPA width in bits.
    pub(crate) s2sz: u32,
    _pad0: [u8; 4],
    /// SVE vector length, as `(VL / 128) - 1`.
    pub(crate) sve_vl: u32,
    _pad1: [u8; 4],
    /// Number of breakpoints (at least 1).
    pub(crate) num_bps: u32,
    _pad2: [u8; 4],
    /// Number of watchpoints (at least 1).
    pub(crate) num_wps: u32,
    _pad3: [u8; 4],
    /// Number of PMU counters.
    pub(crate) pmu_num_ctrs: u32,
    _pad4: [u8; 4],
    /// Measurement algorithm: 0 SHA-256, 1 SHA-512, 2 SHA-384.
    pub(crate) algorithm: u8,
    _pad5: [u8; 7],
    /// Number of auxiliary planes.
    pub(crate) num_aux_planes: u32,
    _pad6: [u8; 0x400 - 0x03c],
    /// Realm personalisation value.
    pub(crate) rpv: [u8; 64],
    /// Plane that ATS requests are attributed to.
    pub(crate) ats_plane: u64,
    _pad7: [u8; 0x808 - 0x448],
    /// PA of the first root RTT granule (delegated).
    pub(crate) rtt_base: u64,
    /// Level of the root RTT.
    pub(crate) rtt_level_start: i64,
    /// Number of concatenated root RTT granules.
    pub(crate) rtt_num_start: u32,
    _pad8: [u8; 4],
    /// `RmiRealmFlags1`: RTT_TREE_PP [0], S2AP_ENC [1].
    pub(crate) flags1: u64,
    _pad9: [u8; 0xf80 - 0x828],
    /// PAs of the auxiliary root RTTs, one per auxiliary plane.
    pub(crate) aux_rtt_base: [u64; 3],
    _pad10: [u8; 0x1000 - 0xf98],
}

impl RmiRealmParams {
    /// Number of (word index, value) pairs [`RmiRealmParams::words`] yields.
    pub(crate) const NR_WORDS: usize = 24;

    /// The 64-bit words of the granule that hold fields (the rest is
    /// padding and stays zero), little-endian as the RMM reads them: a page
    /// zeroed first and then written with these holds exactly the struct.
    pub(crate) fn words(&self) -> [(usize, u64); Self::NR_WORDS] {
        // The word index of a byte offset.
        const fn word(offset: usize) -> usize {
            offset / 8
        }
        let rpv = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&self.rpv[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        [
            (word(0x000), self.flags0),
            (word(0x008), u64::from(self.s2sz)),
            (word(0x010), u64::from(self.sve_vl)),
            (word(0x018), u64::from(self.num_bps)),
            (word(0x020), u64::from(self.num_wps)),
            (word(0x028), u64::from(self.pmu_num_ctrs)),
            (word(0x030), u64::from(self.algorithm)),
            (word(0x038), u64::from(self.num_aux_planes)),
            (word(0x400), rpv(0)),
            (word(0x400) + 1, rpv(1)),
            (word(0x400) + 2, rpv(2)),
            (word(0x400) + 3, rpv(3)),
            (word(0x400) + 4, rpv(4)),
            (word(0x400) + 5, rpv(5)),
            (word(0x400) + 6, rpv(6)),
            (word(0x400) + 7, rpv(7)),
            (word(0x440), self.ats_plane),
            (word(0x808), self.rtt_base),
            // CAST: The two's complement bits, as the RMM reads the field.
            (word(0x810), self.rtt_level_start as u64),
            (word(0x818), u64::from(self.rtt_num_start)),
            (word(0x820), self.flags1),
            (word(0xf80), self.aux_rtt_base[0]),
            (word(0xf80) + 1, self.aux_rtt_base[1]),
            (word(0xf80) + 2, self.aux_rtt_base[2]),
        ]
    }
}

/// `RmiRecCreateFlags.RUNNABLE`: the REC may run from its creation (only
/// the boot vCPU; the others wait for PSCI CPU_ON).
pub(crate) const REC_PARAMS_FLAG_RUNNABLE: u64 = 1 << 0;

/// `RmiRecEnterFlags`: complete an MMIO access (a read takes `gprs[0]`).
pub(crate) const REC_ENTRY_FLAG_EMUL_MMIO: u64 = 1 << 0;
/// `RmiRecEnterFlags`: inject a synchronous external abort.
pub(crate) const REC_ENTRY_FLAG_INJECT_SEA: u64 = 1 << 1;
/// `RmiRecEnterFlags`: trap WFI for this entry.
pub(crate) const REC_ENTRY_FLAG_TRAP_WFI: u64 = 1 << 2;
/// `RmiRecEnterFlags`: trap WFE for this entry.
pub(crate) const REC_ENTRY_FLAG_TRAP_WFE: u64 = 1 << 3;
/// `RmiRecEnterFlags`: the host rejects the RIPAS change request.
pub(crate) const REC_ENTRY_FLAG_RIPAS_RESPONSE: u64 = 1 << 4;

/// `RmiRecMpidr`: a REC's MPIDR as `RMI_REC_CREATE` takes it, Aff0 in
/// [3:0] (16 RECs per cluster, as GICv3 wants), Aff1..3 in [15:8], [23:16],
/// [31:24]. The RMM requires RECs to be created in index order from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RmiRecMpidr(u64);

impl RmiRecMpidr {
    /// The MPIDR of REC `index` (KVM's MPIDR of vCPU `index`), if the
    /// format can hold it (index below 2^28).
    pub(crate) const fn from_index(index: u64) -> Option<Self> {
        if index >= 1 << 28 {
            return None;
        }
        Some(Self(
            (index & 0xf)
                | ((index >> 4) & 0xff) << 8
                | ((index >> 12) & 0xff) << 16
                | ((index >> 20) & 0xff) << 24,
        ))
    }

    /// The value `raw` if it is in the format, as the RMM checks it.
    pub(crate) const fn new(raw: u64) -> Option<Self> {
        if raw & !0xffff_ff0f != 0 {
            return None;
        }
        Some(Self(raw))
    }

    /// The REC index it stands for.
    pub(crate) const fn index(self) -> u64 {
        (self.0 & 0xf)
            | ((self.0 >> 8) & 0xff) << 4
            | ((self.0 >> 16) & 0xff) << 12
            | ((self.0 >> 24) & 0xff) << 20
    }

    /// The raw value for `RmiRecParams.mpidr`.
    pub(crate) const fn raw(self) -> u64 {
        self.0
    }
}

/// `RmiRecParams`: what `RMI_REC_CREATE` reads from an NS granule.
#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RmiRecParams {
    /// `RmiRecCreateFlags`: RUNNABLE [0].
    pub(crate) flags: u64,
    _pad0: [u8; 0x100 - 0x008],
    /// The vCPU's MPIDR (affinity fields only).
    pub(crate) mpidr: u64,
    _pad1: [u8; 0x200 - 0x108],
    /// Initial program counter.
    pub(crate) pc: u64,
    _pad2: [u8; 0x300 - 0x208],
    /// Initial x0..x7.
    pub(crate) gprs: [u64; 8],
    _pad3: [u8; 0x1000 - 0x340],
}

/// `RmiRecEnter`: the host's half of `RmiRecRun` (offset 0x000).
#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RmiRecEnter {
    /// `RmiRecEnterFlags` (the `REC_ENTRY_*` bits).
    pub(crate) flags: u64,
    _pad0: [u8; 0x200 - 0x008],
    /// x0..x30 handed to the REC (for example an emulated MMIO read value).
    pub(crate) gprs: [u64; 31],
    _pad1: [u8; 0x800 - 0x2f8],
}

/// `RmiRecExit`: the RMM's half of `RmiRecRun` (offset 0x800).
#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RmiRecExit {
    /// Why the REC exited (`RMI_EXIT_*`).
    pub(crate) exit_reason: u64,
    _pad0: [u8; 0x100 - 0x008],
    /// ESR_EL2 as the RMM exposes it.
    pub(crate) esr: u64,
    /// FAR_EL2 (only bits [11:0] for data aborts at protected IPAs).
    pub(crate) far: u64,
    /// HPFAR_EL2.
    pub(crate) hpfar: u64,
    /// RTT tree of a stage-2 fault.
    pub(crate) rtt_tree: u64,
    /// RTT level of a stage-2 fault.
    pub(crate) rtt_level: i64,
    _pad1: [u8; 0x200 - 0x128],
    /// x0..x30 the REC exposes (for example an MMIO write value).
    pub(crate) gprs: [u64; 31],
    _pad2: [u8; 0x400 - 0x2f8],
    /// CNTP_CTL_EL0.
    pub(crate) cntp_ctl: u64,
    /// CNTP_CVAL_EL0.
    pub(crate) cntp_cval: u64,
    /// CNTV_CTL_EL0.
    pub(crate) cntv_ctl: u64,
    /// CNTV_CVAL_EL0.
    pub(crate) cntv_cval: u64,
    _pad3: [u8; 0x500 - 0x420],
    /// Base of a RIPAS change request.
    pub(crate) ripas_base: u64,
    /// Top of a RIPAS change request.
    pub(crate) ripas_top: u64,
    /// Requested RIPAS.
    pub(crate) ripas_value: u8,
    _pad4: [u8; 0x520 - 0x511],
    /// Base of an S2AP change request.
    pub(crate) s2ap_base: u64,
    /// Top of an S2AP change request.
    pub(crate) s2ap_top: u64,
    /// First VDEV of a device request.
    pub(crate) vdev_id_1: u64,
    /// Second VDEV of a device request.
    pub(crate) vdev_id_2: u64,
    /// Base of a device memory mapping request.
    pub(crate) dev_mem_base: u64,
    /// Top of a device memory mapping request.
    pub(crate) dev_mem_top: u64,
    /// PA of a device memory mapping request.
    pub(crate) dev_mem_pa: u64,
    _pad5: [u8; 0x600 - 0x558],
    /// Immediate of an `RSI_HOST_CALL`.
    pub(crate) imm: u32,
    _pad6: [u8; 4],
    /// Plane that caused the exit.
    pub(crate) plane: u64,
    _pad7: [u8; 0x700 - 0x610],
    /// PMU overflow status.
    pub(crate) pmu_ovf_status: u64,
    _pad8: [u8; 0x800 - 0x708],
}

/// A word index into a run granule: byte offset `at` within half `half`.
const fn run_word(half: usize, at: usize) -> usize {
    (half + at) / 8
}

impl RmiRecEnter {
    /// Word index of `flags` in the run granule.
    pub(crate) const FLAGS_WORD: usize = run_word(
        core::mem::offset_of!(RmiRecRun, enter),
        core::mem::offset_of!(Self, flags),
    );
    /// Word index of `gprs[0]` in the run granule.
    pub(crate) const GPRS_WORD: usize = run_word(
        core::mem::offset_of!(RmiRecRun, enter),
        core::mem::offset_of!(Self, gprs),
    );
}

impl RmiRecExit {
    /// Word index of the exit half in the run granule.
    pub(crate) const FIRST_WORD: usize = run_word(core::mem::offset_of!(RmiRecRun, exit), 0);
    /// Number of words in the exit half.
    pub(crate) const NR_WORDS: usize = core::mem::size_of::<Self>() / 8;

    /// The fields the host uses, from the exit half's words (as read from
    /// the run granule, starting at [`Self::FIRST_WORD`]).
    pub(crate) fn from_words(w: &[u64; Self::NR_WORDS]) -> Self {
        Self::from_fn(|n| w.get(n).copied().unwrap_or(0))
    }

    /// The fields the host uses, with `word(n)` word `n` of the exit half:
    /// only the words of those fields are read (44 of the half's 256).
    pub(crate) fn from_fn(mut word: impl FnMut(usize) -> u64) -> Self {
        use core::mem::offset_of;
        let mut at = |off: usize| word(off / 8);
        let mut e = Self::zeroed();
        e.exit_reason = at(offset_of!(Self, exit_reason));
        e.esr = at(offset_of!(Self, esr));
        e.far = at(offset_of!(Self, far));
        e.hpfar = at(offset_of!(Self, hpfar));
        let gprs = offset_of!(Self, gprs);
        for (n, g) in e.gprs.iter_mut().enumerate() {
            *g = at(gprs + n * 8);
        }
        e.cntp_ctl = at(offset_of!(Self, cntp_ctl));
        e.cntp_cval = at(offset_of!(Self, cntp_cval));
        e.cntv_ctl = at(offset_of!(Self, cntv_ctl));
        e.cntv_cval = at(offset_of!(Self, cntv_cval));
        e.ripas_base = at(offset_of!(Self, ripas_base));
        e.ripas_top = at(offset_of!(Self, ripas_top));
        // CAST: The low byte of the (little-endian) word is the u8 field.
        e.ripas_value = at(offset_of!(Self, ripas_value)) as u8;
        // CAST: The low half of the (little-endian) word is the u32 field.
        e.imm = at(offset_of!(Self, imm)) as u32;
        e.plane = at(offset_of!(Self, plane));
        e
    }
}

/// `RmiRecRun`: the NS granule `RMI_REC_ENTER` reads and writes.
#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RmiRecRun {
    /// Written by the host before entry.
    pub(crate) enter: RmiRecEnter,
    /// Written by the RMM on exit.
    pub(crate) exit: RmiRecExit,
}

/// Zero-initialised values, as the RMM expects unused fields.
macro_rules! zeroed_abi_struct {
    ($($ty:ident),*) => {
        $(
            impl $ty {
                /// All fields zero.
                ///
                /// The struct is `repr(C)` and made only of integers and
                /// integer arrays, for which all-zero bytes are valid.
                pub(crate) const fn zeroed() -> Self {
                    // SAFETY: Integers and integer arrays only (see above).
                    unsafe { core::mem::zeroed() }
                }
            }
        )*
    };
}
zeroed_abi_struct!(
    RmiRmmConfig,
    RmiRealmParams,
    RmiRecParams,
    RmiRecEnter,
    RmiRecExit,
    RmiRecRun
);

/// The spec offsets and sizes, checked when either build compiles.
const _: () = {
    use core::mem::{
        offset_of,
        size_of, //
    };
    assert!(size_of::<RmiRmmConfig>() == 0x1000);
    assert!(offset_of!(RmiRmmConfig, tracking_region_size) == 0x000);
    assert!(offset_of!(RmiRmmConfig, rmi_granule_size) == 0x008);

    assert!(size_of::<RmiRealmParams>() == 0x1000);
    assert!(offset_of!(RmiRealmParams, flags0) == 0x000);
    assert!(offset_of!(RmiRealmParams, s2sz) == 0x008);
    assert!(offset_of!(RmiRealmParams, sve_vl) == 0x010);
    assert!(offset_of!(RmiRealmParams, num_bps) == 0x018);
    assert!(offset_of!(RmiRealmParams, num_wps) == 0x020);
    assert!(offset_of!(RmiRealmParams, pmu_num_ctrs) == 0x028);
    assert!(offset_of!(RmiRealmParams, algorithm) == 0x030);
    assert!(offset_of!(RmiRealmParams, num_aux_planes) == 0x038);
    assert!(offset_of!(RmiRealmParams, rpv) == 0x400);
    assert!(offset_of!(RmiRealmParams, ats_plane) == 0x440);
    assert!(offset_of!(RmiRealmParams, rtt_base) == 0x808);
    assert!(offset_of!(RmiRealmParams, rtt_level_start) == 0x810);
    assert!(offset_of!(RmiRealmParams, rtt_num_start) == 0x818);
    assert!(offset_of!(RmiRealmParams, flags1) == 0x820);
    assert!(offset_of!(RmiRealmParams, aux_rtt_base) == 0xf80);

    assert!(size_of::<RmiRecParams>() == 0x1000);
    assert!(offset_of!(RmiRecParams, flags) == 0x000);
    assert!(offset_of!(RmiRecParams, mpidr) == 0x100);
    assert!(offset_of!(RmiRecParams, pc) == 0x200);
    assert!(offset_of!(RmiRecParams, gprs) == 0x300);

    assert!(size_of::<RmiRecRun>() == 0x1000);
    assert!(offset_of!(RmiRecRun, enter) == 0x000);
    assert!(offset_of!(RmiRecRun, exit) == 0x800);
    // The spec gives exit fields as offsets in RmiRecRun.
    let exit = offset_of!(RmiRecRun, exit);
    assert!(offset_of!(RmiRecEnter, flags) == 0x000);
    assert!(offset_of!(RmiRecEnter, gprs) == 0x200);
    assert!(exit + offset_of!(RmiRecExit, exit_reason) == 0x800);
    assert!(exit + offset_of!(RmiRecExit, esr) == 0x900);
    assert!(exit + offset_of!(RmiRecExit, far) == 0x908);
    assert!(exit + offset_of!(RmiRecExit, hpfar) == 0x910);
    assert!(exit + offset_of!(RmiRecExit, rtt_tree) == 0x918);
    assert!(exit + offset_of!(RmiRecExit, rtt_level) == 0x920);
    assert!(exit + offset_of!(RmiRecExit, gprs) == 0xa00);
    assert!(exit + offset_of!(RmiRecExit, cntp_ctl) == 0xc00);
    assert!(exit + offset_of!(RmiRecExit, cntp_cval) == 0xc08);
    assert!(exit + offset_of!(RmiRecExit, cntv_ctl) == 0xc10);
    assert!(exit + offset_of!(RmiRecExit, cntv_cval) == 0xc18);
    assert!(exit + offset_of!(RmiRecExit, ripas_base) == 0xd00);
    assert!(exit + offset_of!(RmiRecExit, ripas_top) == 0xd08);
    assert!(exit + offset_of!(RmiRecExit, ripas_value) == 0xd10);
    assert!(exit + offset_of!(RmiRecExit, s2ap_base) == 0xd20);
    assert!(exit + offset_of!(RmiRecExit, s2ap_top) == 0xd28);
    assert!(exit + offset_of!(RmiRecExit, vdev_id_1) == 0xd30);
    assert!(exit + offset_of!(RmiRecExit, vdev_id_2) == 0xd38);
    assert!(exit + offset_of!(RmiRecExit, dev_mem_base) == 0xd40);
    assert!(exit + offset_of!(RmiRecExit, dev_mem_top) == 0xd48);
    assert!(exit + offset_of!(RmiRecExit, dev_mem_pa) == 0xd50);
    assert!(exit + offset_of!(RmiRecExit, imm) == 0xe00);
    assert!(exit + offset_of!(RmiRecExit, plane) == 0xe08);
    assert!(exit + offset_of!(RmiRecExit, pmu_ovf_status) == 0xf00);
};
