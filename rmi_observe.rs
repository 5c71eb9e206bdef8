// SPDX-License-Identifier: GPL-2.0

//! What the host sees of its own RMI calls, for operators and tests: every
//! call counted by command, the granules it delegated and has not taken
//! back, and failures injected on purpose to exercise recovery paths.
//!
//! Every RMI call of the module goes through [`RmiObserver::call`], so this
//! is the one place that knows them all. Part of the sans-IO core.

use core::fmt;
use core::sync::atomic::{
    AtomicI64,
    AtomicU64,
    Ordering, //
};

use crate::addr::GRANULE_SIZE;
use crate::rmi_smc::{
    rmi_fid_name,
    rmi_result,
    RmiCallCounts,
    RmiError,
    RmiFid,
    RmiStatus,
    SmcRegs,
    RMI_FID_TABLE,
    RMI_GRANULE_RANGE_DELEGATE,
    RMI_GRANULE_RANGE_UNDELEGATE, //
    SMCCC_RET_NOT_SUPPORTED,
};

/// How many granules a call moved into the Realm PAS (positive) or out of
/// it (negative), judged from its registers: a successful
/// `RMI_GRANULE_RANGE_DELEGATE` or `_UNDELEGATE` returns in x1 the end of
/// what it did, from x1 of the call. An answer outside `(base, top]` moved
/// nothing the host can count (the host leaks such granules anyway).
pub(crate) fn delegation_delta(args: &SmcRegs, out: &SmcRegs) -> i64 {
    // CAST: SMCCC function IDs are 32 bits (w0).
    let fid = RmiFid(args.x(0) as u32);
    let sign = match fid {
        RMI_GRANULE_RANGE_DELEGATE => 1,
        RMI_GRANULE_RANGE_UNDELEGATE => -1,
        _ => return 0,
    };
    if rmi_result(out.x(0)).is_err() {
        return 0;
    }
    let (base, top, done) = (args.x(1), args.x(2), out.x(1));
    if done <= base || done > top || (done - base) % GRANULE_SIZE != 0 {
        return 0;
    }
    i64::try_from((done - base) / GRANULE_SIZE).map_or(0, |n| sign * n)
}

/// The names a trace of one RMI call shows: the command of x0 as called
/// (`UNKNOWN` outside the table), and the status of x0 as returned
/// (`SMCCC_NOT_SUPPORTED` when EL3 has no such function).
pub(crate) fn call_names(args: &SmcRegs, out: &SmcRegs) -> (&'static str, &'static str) {
    // CAST: SMCCC function IDs are 32 bits (w0).
    let command = rmi_fid_name(RmiFid(args.x(0) as u32)).unwrap_or("UNKNOWN");
    let status = match out.x(0) {
        SMCCC_RET_NOT_SUPPORTED => "SMCCC_NOT_SUPPORTED",
        x0 => match rmi_result(x0) {
            Ok(()) => RmiStatus::Success.name(),
            Err(e) => e.status().name(),
        },
    };
    (command, status)
}

/// A failure to inject into RMI calls: which command (or any), the status
/// and index returned instead of calling the RMM, how many matching calls
/// to let through first and how many to fail.
///
/// Written as `COMMAND STATUS [index=N] [skip=N] [times=N]`, where COMMAND
/// is a name from `rmi_calls` (the `RMI_` prefix may be left out) or
/// `any`, and STATUS an error name (`ERROR_INPUT`, ...) or its number.
/// `times` is 1 unless given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InjectSpec {
    /// The command to fail; `None` for any.
    pub(crate) fid: Option<RmiFid>,
    /// What the failed calls return.
    pub(crate) error: RmiError,
    /// Matching calls let through before the first failure.
    pub(crate) skip: u64,
    /// Matching calls failed after that (at least 1).
    pub(crate) times: u64,
}

/// Why an injection request was not understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InjectParseError {
    /// No command given.
    Empty,
    /// Not `any` nor an RMI command name.
    UnknownCommand,
    /// Not an error status name or number.
    UnknownStatus,
    /// A status the host cannot be handed without a real operation behind
    /// it (`SUCCESS`, `INCOMPLETE`) or that no RMM returns.
    NotAnError,
    /// A `key=value` with an unknown key or a value that is no number.
    BadOption,
    /// `times=0`, which would fail nothing.
    NoTimes,
}

impl fmt::Display for InjectParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "no command",
            Self::UnknownCommand => "unknown RMI command",
            Self::UnknownStatus => "unknown status",
            Self::NotAnError => "status is not an RMI error",
            Self::BadOption => "bad option (index=, skip=, times=)",
            Self::NoTimes => "times must be at least 1",
        })
    }
}

/// The RMI command called `name`, with or without the `RMI_` prefix.
fn fid_by_name(name: &str) -> Option<RmiFid> {
    let short = name.strip_prefix("RMI_").unwrap_or(name);
    RMI_FID_TABLE
        .iter()
        .find(|(_, n)| n.strip_prefix("RMI_") == Some(short))
        .map(|(fid, _)| *fid)
}

/// The error status called `word` (with or without `RMI_`) or numbered so.
fn status_by_word(word: &str) -> Result<RmiStatus, InjectParseError> {
    let status = match word.parse::<u8>() {
        Ok(raw) => RmiStatus::from_raw(raw),
        Err(_) => {
            let short = word.strip_prefix("RMI_").unwrap_or(word);
            (0..=u8::MAX)
                .map(RmiStatus::from_raw)
                .find(|s| !matches!(s, RmiStatus::Unknown(_)) && s.name() == short)
                .ok_or(InjectParseError::UnknownStatus)?
        }
    };
    match status {
        RmiStatus::Success
        | RmiStatus::Incomplete
        | RmiStatus::Unknown(_)
        | RmiStatus::BadOutput => Err(InjectParseError::NotAnError),
        error => Ok(error),
    }
}

impl InjectSpec {
    /// Parses a request (see the type docs). `Ok(None)` is `off`.
    pub(crate) fn parse(text: &str) -> Result<Option<Self>, InjectParseError> {
        let mut words = text.split_whitespace();
        let command = words.next().ok_or(InjectParseError::Empty)?;
        if command == "off" {
            return match words.next() {
                None => Ok(None),
                Some(_) => Err(InjectParseError::BadOption),
            };
        }
        let fid = match command {
            "any" => None,
            name => Some(fid_by_name(name).ok_or(InjectParseError::UnknownCommand)?),
        };
        let status = status_by_word(words.next().ok_or(InjectParseError::UnknownStatus)?)?;
        let (mut index, mut skip, mut times) = (0u8, 0u64, 1u64);
        for option in words {
            let (key, value) = option.split_once('=').ok_or(InjectParseError::BadOption)?;
            let bad = |_| InjectParseError::BadOption;
            match key {
                "index" => index = value.parse().map_err(bad)?,
                "skip" => skip = value.parse().map_err(bad)?,
                "times" => times = value.parse().map_err(bad)?,
                _ => return Err(InjectParseError::BadOption),
            }
        }
        if times == 0 {
            return Err(InjectParseError::NoTimes);
        }
        let x0 = u64::from(status.raw()) | u64::from(index) << 8;
        // `status` is an error, so `rmi_result` fails.
        let error = rmi_result(x0).err().ok_or(InjectParseError::NotAnError)?;
        Ok(Some(Self {
            fid,
            error,
            skip,
            times,
        }))
    }
}

impl fmt::Display for InjectSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.fid.and_then(rmi_fid_name) {
            Some(name) => f.write_str(name)?,
            None => f.write_str("any")?,
        }
        write!(
            f,
            " {} index={} skip={} times={}",
            self.error.status(),
            self.error.index(),
            self.skip,
            self.times
        )
    }
}

/// `fid` value of an injector that matches any command.
const ANY_FID: u64 = 0;

/// Fails RMI calls on request, without calling the RMM: a refused call
/// changes nothing in the RMM, so the host sees exactly what an RMM that
/// refused would have done. Lock-free, usable where the caller cannot
/// sleep (`REC_ENTER`).
pub(crate) struct RmiFaultInjector {
    /// The command to fail, or [`ANY_FID`].
    fid: AtomicU64,
    /// x0 of a failed call.
    x0: AtomicU64,
    /// Matching calls still to let through.
    skip: AtomicU64,
    /// Matching calls still to fail; 0 when off. Written last when arming.
    times: AtomicU64,
    /// Calls failed so far.
    injected: AtomicU64,
}

impl RmiFaultInjector {
    /// Off, nothing injected.
    pub(crate) const fn new() -> Self {
        Self {
            fid: AtomicU64::new(ANY_FID),
            x0: AtomicU64::new(0),
            skip: AtomicU64::new(0),
            times: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// Starts injecting as `spec` says, replacing any earlier request.
    pub(crate) fn arm(&self, spec: &InjectSpec) {
        self.times.store(0, Ordering::Release);
        let fid = spec.fid.map_or(ANY_FID, |fid| u64::from(fid.0));
        self.fid.store(fid, Ordering::Relaxed);
        self.x0.store(spec.error.raw(), Ordering::Relaxed);
        self.skip.store(spec.skip, Ordering::Relaxed);
        // Publishes the fields above to `intercept`.
        self.times.store(spec.times, Ordering::Release);
    }

    /// Stops injecting.
    pub(crate) fn disarm(&self) {
        self.times.store(0, Ordering::Release);
    }

    /// Calls failed so far.
    pub(crate) fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// The answer to `args` if it is to fail, else `None` (make the call).
    pub(crate) fn intercept(&self, args: &SmcRegs) -> Option<SmcRegs> {
        if self.times.load(Ordering::Acquire) == 0 {
            return None;
        }
        let fid = self.fid.load(Ordering::Relaxed);
        if fid != ANY_FID && fid != args.x(0) {
            return None;
        }
        let dec = |n: u64| n.checked_sub(1);
        if self
            .skip
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, dec)
            .is_ok()
        {
            return None;
        }
        self.times
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, dec)
            .ok()?;
        self.injected.fetch_add(1, Ordering::Relaxed);
        let mut out = SmcRegs::default();
        out.0[0] = self.x0.load(Ordering::Relaxed);
        Some(out)
    }

    /// Writes the request in force (`off` if none) and `injected N`.
    pub(crate) fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        let times = self.times.load(Ordering::Acquire);
        if times == 0 {
            writeln!(f, "off")?;
        } else {
            let fid = self.fid.load(Ordering::Relaxed);
            let spec = u32::try_from(fid)
                .ok()
                .filter(|_| fid != ANY_FID)
                .map(RmiFid);
            let x0 = self.x0.load(Ordering::Relaxed);
            match rmi_result(x0) {
                Err(error) => writeln!(
                    f,
                    "{}",
                    InjectSpec {
                        fid: spec,
                        error,
                        skip: self.skip.load(Ordering::Relaxed),
                        times,
                    }
                )?,
                Ok(()) => writeln!(f, "off")?,
            }
        }
        writeln!(f, "injected {}", self.injected())
    }
}

/// The module's view of all its RMI calls (see the module docs).
pub(crate) struct RmiObserver {
    /// Calls by command, failed injected ones included.
    pub(crate) calls: RmiCallCounts,
    /// Failures to inject.
    pub(crate) inject: RmiFaultInjector,
    /// Granules delegated and not undelegated since the module loaded:
    /// owned ones and leaked ones. Granules of undelegated donations, which
    /// the RMM delegates itself, are not seen (TF-RMM asks for delegated
    /// ones).
    delegated: AtomicI64,
}

impl RmiObserver {
    /// Nothing seen yet.
    pub(crate) const fn new() -> Self {
        Self {
            calls: RmiCallCounts::new(),
            inject: RmiFaultInjector::new(),
            delegated: AtomicI64::new(0),
        }
    }

    /// Granules in the Realm PAS by this host's delegation (see the field).
    pub(crate) fn delegated(&self) -> i64 {
        self.delegated.load(Ordering::Relaxed)
    }

    /// Makes the call `args` through `smc` (the real SMC), unless an
    /// injected failure answers it; counts it and what it delegated.
    /// Returns the answer and whether it was injected.
    pub(crate) fn call(
        &self,
        args: &SmcRegs,
        smc: impl FnOnce(&SmcRegs) -> SmcRegs,
    ) -> (SmcRegs, bool) {
        if let Some(out) = self.admit(args) {
            return (out, true);
        }
        let out = smc(args);
        self.account(args, &out);
        (out, false)
    }

    /// The first half of [`RmiObserver::call`], for a call made where the
    /// observer cannot run (`REC_ENTER`, inside the noinstr window): counts
    /// the call and returns its answer if an injected failure is to answer
    /// it, else `None` (make the call, then [`RmiObserver::account`]).
    pub(crate) fn admit(&self, args: &SmcRegs) -> Option<SmcRegs> {
        self.calls.record(args.x(0));
        self.inject.intercept(args)
    }

    /// The second half of [`RmiObserver::call`]: counts what the call
    /// `args`, answered `out` by the RMM, delegated.
    pub(crate) fn account(&self, args: &SmcRegs, out: &SmcRegs) {
        let delta = delegation_delta(args, out);
        if delta != 0 {
            self.delegated.fetch_add(delta, Ordering::Relaxed);
        }
    }
}
