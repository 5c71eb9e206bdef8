// SPDX-License-Identifier: GPL-2.0

//! What one realm did, for operators (debugfs `kvm_rmi/realms/<id>/`):
//! REC exits by reason, DATA pages mapped, bytes populated, RECs.
//!
//! Lock-free counters, updated where the work happens (the run loop, the
//! fault and unmap paths under `mmu_lock`, populate). Part of the sans-IO
//! core.

use core::fmt;
use core::sync::atomic::{
    AtomicU64,
    AtomicU8,
    Ordering, //
};

use crate::addr::GRANULE_SIZE;
use crate::exit::RmiExitReason;
use crate::realm::RealmState;

/// Exit counter slots: the known reasons, then one for any other value.
const EXIT_SLOTS: usize = RmiExitReason::KNOWN.len() + 1;

/// A realm's counters.
pub(crate) struct RealmStats {
    /// REC exits by reason ([`RmiExitReason::KNOWN`] order, then unknown).
    exits: [AtomicU64; EXIT_SLOTS],
    /// `REC_ENTER` calls the RMM refused (no exit to count).
    entries_refused: AtomicU64,
    /// DATA granules mapped in the realm now.
    data_pages: AtomicU64,
    /// Bytes populated, unmeasured.
    populated_unmeasured: AtomicU64,
    /// Bytes populated and measured.
    populated_measured: AtomicU64,
    /// RECs in the RMM.
    recs: AtomicU64,
    /// RIPAS changes refused (outside guest_memfd memory).
    ripas_rejected: AtomicU64,
    /// The realm's state, as last published ([`state_code`]).
    state: AtomicU8,
    /// RTT pages the realm holds, as last published.
    rtt_pages: AtomicU64,
}

/// The states of a realm, by their code in [`RealmStats::state`].
const STATES: [RealmState; 5] = [
    RealmState::None,
    RealmState::New,
    RealmState::Active,
    RealmState::Dying,
    RealmState::Dead,
];

/// The code of `state` in [`RealmStats::state`].
fn state_code(state: RealmState) -> u8 {
    let code = STATES.iter().position(|s| *s == state).unwrap_or(0);
    // CAST: Below `STATES.len()`.
    code as u8
}

/// Adds `n` to `counter`, stopping at `u64::MAX`.
fn add(counter: &AtomicU64, n: u64) {
    // The closure never fails, so the result is always `Ok`.
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_add(n))
    });
}

impl RealmStats {
    /// All zero.
    pub(crate) const fn new() -> Self {
        Self {
            exits: [const { AtomicU64::new(0) }; EXIT_SLOTS],
            entries_refused: AtomicU64::new(0),
            data_pages: AtomicU64::new(0),
            populated_unmeasured: AtomicU64::new(0),
            populated_measured: AtomicU64::new(0),
            recs: AtomicU64::new(0),
            ripas_rejected: AtomicU64::new(0),
            state: AtomicU8::new(0),
            rtt_pages: AtomicU64::new(0),
        }
    }

    /// Publishes what only the realm's lock knows, as the realm (core)
    /// counts it: its state and the RTT pages it holds. The shell does so
    /// each time the lock is released, so that readers need not take it.
    pub(crate) fn publish(&self, state: RealmState, rtt_pages: u64) {
        self.state.store(state_code(state), Ordering::Relaxed);
        self.rtt_pages.store(rtt_pages, Ordering::Relaxed);
    }

    /// The state last published.
    pub(crate) fn state(&self) -> RealmState {
        let code = usize::from(self.state.load(Ordering::Relaxed));
        STATES.get(code).copied().unwrap_or(RealmState::None)
    }

    /// Counts an exit of the raw reason `raw` (as in `rec_exit`).
    pub(crate) fn exit(&self, raw: u64) {
        let reason = RmiExitReason::from_raw(raw);
        let slot = RmiExitReason::KNOWN
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(EXIT_SLOTS - 1);
        if let Some(counter) = self.exits.get(slot) {
            add(counter, 1);
        }
    }

    /// Counts a `REC_ENTER` the RMM refused.
    pub(crate) fn entry_refused(&self) {
        add(&self.entries_refused, 1);
    }

    /// Counts a RIPAS change the host refused.
    pub(crate) fn ripas_rejected(&self) {
        add(&self.ripas_rejected, 1);
    }

    /// Counts `pages` DATA granules newly mapped.
    pub(crate) fn mapped(&self, pages: u64) {
        add(&self.data_pages, pages);
    }

    /// Counts `pages` DATA granules unmapped.
    pub(crate) fn unmapped(&self, pages: u64) {
        // The closure never fails, so the result is always `Ok`.
        let _ = self
            .data_pages
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(pages))
            });
    }

    /// Counts `pages` granules populated (and mapped), measured or not.
    pub(crate) fn populated(&self, pages: u64, measured: bool) {
        self.mapped(pages);
        let bytes = pages.saturating_mul(GRANULE_SIZE);
        if measured {
            add(&self.populated_measured, bytes);
        } else {
            add(&self.populated_unmeasured, bytes);
        }
    }

    /// Records that the realm has `n` RECs now.
    pub(crate) fn set_recs(&self, n: u64) {
        self.recs.store(n, Ordering::Relaxed);
    }

    /// DATA granules mapped now.
    pub(crate) fn data_pages(&self) -> u64 {
        self.data_pages.load(Ordering::Relaxed)
    }

    /// Writes `NAME count` for every exit reason seen, then
    /// `ENTRY_REFUSED count` and `total count` (exits only).
    pub(crate) fn write_exits(&self, f: &mut impl fmt::Write) -> fmt::Result {
        let mut total = 0u64;
        let names = RmiExitReason::KNOWN
            .iter()
            .map(|r| r.name())
            .chain([RmiExitReason::Unknown(u64::MAX).name()]);
        for (name, counter) in names.zip(&self.exits) {
            let n = counter.load(Ordering::Relaxed);
            if n > 0 {
                writeln!(f, "{name} {n}")?;
                total = total.saturating_add(n);
            }
        }
        writeln!(
            f,
            "ENTRY_REFUSED {}",
            self.entries_refused.load(Ordering::Relaxed)
        )?;
        writeln!(f, "total {total}")
    }

    /// Writes the realm's summary, one `key value` a line, with its state
    /// and RTT pages as last published.
    pub(crate) fn write_info(&self, f: &mut impl fmt::Write, ipa_bits: u8) -> fmt::Result {
        let rtt_pages = self.rtt_pages.load(Ordering::Relaxed);
        let state = match self.state() {
            RealmState::None => "none",
            RealmState::New => "new",
            RealmState::Active => "active",
            RealmState::Dying => "dying",
            RealmState::Dead => "dead",
        };
        writeln!(f, "state {state}")?;
        writeln!(f, "ipa_bits {ipa_bits}")?;
        writeln!(f, "rtt_pages {rtt_pages}")?;
        writeln!(f, "data_pages {}", self.data_pages())?;
        writeln!(f, "recs {}", self.recs.load(Ordering::Relaxed))?;
        writeln!(
            f,
            "ripas_rejected {}",
            self.ripas_rejected.load(Ordering::Relaxed)
        )?;
        writeln!(
            f,
            "populated_measured {}",
            self.populated_measured.load(Ordering::Relaxed)
        )?;
        writeln!(
            f,
            "populated_unmeasured {}",
            self.populated_unmeasured.load(Ordering::Relaxed)
        )
    }
}
