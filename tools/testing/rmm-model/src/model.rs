// SPDX-License-Identifier: GPL-2.0

//! An executable model of the RMM behind [`SmcConduit`].
//!
//! It decodes function IDs and registers as TF-RMM does, counts calls per
//! function ID, and can be told to fail any call. Commands it does not model
//! answer `SMCCC_RET_NOT_SUPPORTED`, as an unknown FID does on a real RMM.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::rmi_cmds::SmcConduit;
use crate::rmi_smc::{
    RmiFid,
    RmiStatus,
    RmiVersion,
    SmcRegs,
    RMI_FEATURES,
    RMI_VERSION,
    SMCCC_RET_NOT_SUPPORTED, //
};

/// Feature registers 0..=4 that TF-RMM main reports on QEMU 10.0.2
/// `-cpu max,x-rme=on` (rmi-abi.md section 6).
pub(crate) const QEMU_FEATURES: [u64; 5] = [0x317f34, 0x142a9, 0, 3, 0];

/// Encodes a status and index as the RMM returns them in x0.
pub(crate) fn return_code(status: RmiStatus, index: u8) -> u64 {
    u64::from(status.raw()) | (u64::from(index) << 8)
}

/// A call the test asked to fail, and how.
#[derive(Clone, Copy, Debug)]
struct Injected {
    fid: RmiFid,
    /// Fail the `nth` next call of `fid` (0 = the very next one).
    nth: u32,
    status: RmiStatus,
    index: u8,
}

/// Mutable model state, behind a `RefCell` because [`SmcConduit::call`]
/// takes `&self` like the kernel's stateless conduit.
#[derive(Debug, Default)]
struct State {
    calls: BTreeMap<RmiFid, u32>,
    injected: Vec<Injected>,
}

/// The RMM model.
#[derive(Debug)]
pub(crate) struct Rmm {
    /// ABI revisions implemented, ascending.
    revisions: Vec<RmiVersion>,
    /// Feature registers 0..=4.
    features: [u64; 5],
    state: RefCell<State>,
}

impl Rmm {
    /// An RMM implementing only RMI 2.0, as TF-RMM main does.
    pub(crate) fn new() -> Self {
        Self::with_revisions(&[RmiVersion { major: 2, minor: 0 }])
    }

    /// An RMM implementing `revisions` (at least one).
    pub(crate) fn with_revisions(revisions: &[RmiVersion]) -> Self {
        assert!(
            !revisions.is_empty(),
            "an RMM implements at least one revision"
        );
        let mut revisions = revisions.to_vec();
        revisions.sort();
        Self {
            revisions,
            features: QEMU_FEATURES,
            state: RefCell::new(State::default()),
        }
    }

    /// The same RMM reporting `features` from `RMI_FEATURES` 0..=4.
    pub(crate) fn with_features(mut self, features: [u64; 5]) -> Self {
        self.features = features;
        self
    }

    /// How many times `fid` has been called.
    pub(crate) fn calls(&self, fid: RmiFid) -> u32 {
        self.state.borrow().calls.get(&fid).copied().unwrap_or(0)
    }

    /// Makes the `nth` next call of `fid` (0 = the next one) return
    /// `status`/`index` without side effects.
    pub(crate) fn fail_call(&self, fid: RmiFid, nth: u32, status: RmiStatus, index: u8) {
        self.state.borrow_mut().injected.push(Injected {
            fid,
            nth,
            status,
            index,
        });
    }

    /// Consumes an injected failure for this call of `fid`, if one is due.
    fn take_injected(&self, fid: RmiFid) -> Option<u64> {
        let mut state = self.state.borrow_mut();
        let mut due = None;
        for (i, inj) in state.injected.iter_mut().enumerate() {
            if inj.fid != fid {
                continue;
            }
            if inj.nth == 0 {
                due = Some(i);
                break;
            }
            inj.nth -= 1;
        }
        due.map(|i| {
            let inj = state.injected.remove(i);
            return_code(inj.status, inj.index)
        })
    }

    /// `RMI_FEATURES`: register x1, or 0 past the last one (as TF-RMM does).
    fn features(&self, args: &SmcRegs) -> SmcRegs {
        let mut out = SmcRegs::default();
        out.0[0] = return_code(RmiStatus::Success, 0);
        out.0[1] = usize::try_from(args.x(1))
            .ok()
            .and_then(|i| self.features.get(i).copied())
            .unwrap_or(0);
        out
    }

    /// `RMI_VERSION`, as `runtime/rmi/version.c` answers it.
    fn version(&self, args: &SmcRegs) -> SmcRegs {
        let highest = *self.revisions.last().unwrap_or(&RmiVersion::HOST);
        let mut out = SmcRegs::default();
        let requested = RmiVersion::from_raw(args.x(1));
        if requested.is_some_and(|r| self.revisions.contains(&r)) {
            out.0[0] = return_code(RmiStatus::Success, 0);
            out.0[1] = args.x(1);
        } else {
            out.0[0] = return_code(RmiStatus::ErrorInput, 0);
            out.0[1] = highest.raw();
        }
        out.0[2] = highest.raw();
        out
    }
}

impl SmcConduit for Rmm {
    fn call(&self, args: &SmcRegs) -> SmcRegs {
        // CAST: SMCCC function IDs are 32 bits (w0).
        let fid = RmiFid(args.x(0) as u32);
        *self.state.borrow_mut().calls.entry(fid).or_default() += 1;
        if let Some(x0) = self.take_injected(fid) {
            let mut out = SmcRegs::default();
            out.0[0] = x0;
            return out;
        }
        match fid {
            RMI_VERSION => self.version(args),
            RMI_FEATURES => self.features(args),
            _ => {
                let mut out = SmcRegs::default();
                out.0[0] = SMCCC_RET_NOT_SUPPORTED;
                out
            }
        }
    }
}

/// A machine with no RMM: QEMU's EL3-less PSCI emulation, which answers an
/// unknown SMC with -1 in x0 and leaves x1.. as they were passed.
#[derive(Debug, Default)]
pub(crate) struct NoRmm;

impl SmcConduit for NoRmm {
    fn call(&self, args: &SmcRegs) -> SmcRegs {
        let mut out = *args;
        out.0[0] = SMCCC_RET_NOT_SUPPORTED;
        out
    }
}
