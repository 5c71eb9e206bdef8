// SPDX-License-Identifier: GPL-2.0

//! A model of physical memory shared by the RMM model and the host's page
//! allocator: each granule's PAS state, NS contents, and the allocator's
//! records, so tests can see every page the host frees, leaks or touches.

use std::cell::RefCell;
use std::collections::{
    BTreeMap,
    BTreeSet, //
};
use std::rc::Rc;

use crate::addr::{
    Granule,
    GranuleRange,
    GRANULE_SIZE, //
};
use crate::data::GuestPages;
use crate::granule::PageSource;

/// Words in a granule.
pub(crate) const WORDS: usize = 512;

/// Where a granule is, as the RMM tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GranuleState {
    /// Non-secure PAS: the host may touch it.
    Ns,
    /// Realm PAS, free for the RMM to use.
    Delegated,
    /// Realm PAS, in use by the RMM (donated to an operation or object):
    /// it cannot be undelegated until the RMM gives it back.
    InUse,
}

/// Something the host did that would crash a real machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Violation {
    /// A page went back to the allocator while in the Realm PAS.
    FreedWhileDelegated(Granule),
    /// The host read or wrote a page in the Realm PAS (a GPF).
    TouchedWhileDelegated(Granule),
}

/// Physical memory: one DRAM range.
#[derive(Debug)]
pub(crate) struct Mem {
    states: BTreeMap<Granule, GranuleState>,
    contents: BTreeMap<Granule, Box<[u64; WORDS]>>,
    free: BTreeSet<Granule>,
    allocated: BTreeSet<Granule>,
    /// `Some(n)`: the allocator fails once `n` more pages were handed out.
    alloc_budget: Option<u64>,
    violations: Vec<Violation>,
    /// guest_memfd's pages: see [`GuestPage`].
    guest: BTreeMap<Granule, GuestPage>,
}

/// A page of the fake guest_memfd, and who holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GuestPage {
    /// Whether the file still has it (a hole punch takes it out).
    pub(crate) in_file: bool,
    /// References the host took with `GuestPages::get`.
    pub(crate) refs: u32,
}

impl Mem {
    /// `granules` of DRAM starting at `base`, all NS and free.
    pub(crate) fn new(base: Granule, granules: u64) -> Rc<RefCell<Self>> {
        let dram = GranuleRange::from_count(base, granules).expect("DRAM range");
        Rc::new(RefCell::new(Self {
            states: dram.iter().map(|g| (g, GranuleState::Ns)).collect(),
            contents: BTreeMap::new(),
            free: dram.iter().collect(),
            allocated: BTreeSet::new(),
            alloc_budget: None,
            violations: Vec::new(),
            guest: BTreeMap::new(),
        }))
    }

    /// A granule's state, `None` outside DRAM.
    pub(crate) fn state(&self, g: Granule) -> Option<GranuleState> {
        self.states.get(&g).copied()
    }

    /// Sets a DRAM granule's state.
    pub(crate) fn set_state(&mut self, g: Granule, s: GranuleState) {
        if let Some(slot) = self.states.get_mut(&g) {
            *slot = s;
        }
    }

    /// Granules that are not NS.
    pub(crate) fn realm_granules(&self) -> BTreeSet<Granule> {
        self.states
            .iter()
            .filter(|(_, s)| **s != GranuleState::Ns)
            .map(|(g, _)| *g)
            .collect()
    }

    /// Pages handed out and not freed.
    pub(crate) fn allocated(&self) -> &BTreeSet<Granule> {
        &self.allocated
    }

    /// What the host did wrong so far.
    pub(crate) fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Makes the allocator fail after `n` more pages (`None`: never).
    pub(crate) fn set_alloc_budget(&mut self, n: Option<u64>) {
        self.alloc_budget = n;
    }

    /// Reads a word as the RMM does from NS memory: `None` if the granule
    /// is not NS DRAM.
    pub(crate) fn rmm_read(&self, pa: u64) -> Option<u64> {
        let (g, i) = split(pa)?;
        if self.state(g)? != GranuleState::Ns {
            return None;
        }
        Some(self.contents.get(&g).map_or(0, |c| c[i]))
    }

    /// Writes a word as the RMM does to NS memory; false if not NS DRAM.
    pub(crate) fn rmm_write(&mut self, pa: u64, value: u64) -> bool {
        let Some((g, i)) = split(pa) else {
            return false;
        };
        if self.state(g) != Some(GranuleState::Ns) {
            return false;
        }
        self.contents
            .entry(g)
            .or_insert_with(|| Box::new([0; WORDS]))[i] = value;
        true
    }

    /// Scrubs a granule, as the RMM does before undelegating it.
    pub(crate) fn scrub(&mut self, g: Granule) {
        self.contents.remove(&g);
    }
}

/// The granule and word index of an 8-byte aligned PA.
fn split(pa: u64) -> Option<(Granule, usize)> {
    if pa % 8 != 0 {
        return None;
    }
    let g = Granule::new(pa & !(GRANULE_SIZE - 1))?;
    let i = usize::try_from((pa % GRANULE_SIZE) / 8).ok()?;
    Some((g, i))
}

/// The host's page allocator over [`Mem`].
#[derive(Clone, Debug)]
pub(crate) struct FakePages(pub(crate) Rc<RefCell<Mem>>);

/// A page from [`FakePages`]; dropping it frees it, and a free of a page
/// that is not NS is recorded as a violation.
#[derive(Debug)]
pub(crate) struct FakePage {
    granule: Granule,
    mem: Rc<RefCell<Mem>>,
}

impl Drop for FakePage {
    fn drop(&mut self) {
        let mut mem = self.mem.borrow_mut();
        if mem.state(self.granule) != Some(GranuleState::Ns) {
            mem.violations
                .push(Violation::FreedWhileDelegated(self.granule));
            return;
        }
        mem.allocated.remove(&self.granule);
        mem.contents.remove(&self.granule);
        mem.free.insert(self.granule);
    }
}

/// Whether the host may access `len` words at `at` of granule `g`: in
/// bounds, and NS (else the access is a GPF, recorded as a violation).
fn host_access_ok(mem: &mut Mem, g: Granule, at: usize, len: usize) -> bool {
    if at.checked_add(len).is_none_or(|end| end > WORDS) {
        return false;
    }
    if mem.state(g) != Some(GranuleState::Ns) {
        mem.violations.push(Violation::TouchedWhileDelegated(g));
        return false;
    }
    true
}

/// A block from [`FakePages`]; dropping it frees every granule, and a free
/// of one that is not NS is recorded as a violation (and that one kept).
#[derive(Debug)]
pub(crate) struct FakeBlock {
    range: GranuleRange,
    mem: Rc<RefCell<Mem>>,
}

impl Drop for FakeBlock {
    fn drop(&mut self) {
        let mut mem = self.mem.borrow_mut();
        for g in self.range.iter() {
            if mem.state(g) != Some(GranuleState::Ns) {
                mem.violations.push(Violation::FreedWhileDelegated(g));
                continue;
            }
            mem.allocated.remove(&g);
            mem.contents.remove(&g);
            mem.free.insert(g);
        }
    }
}

impl Mem {
    /// Frees guest page `g` once neither the file nor the host holds it;
    /// freeing it while not NS is recorded as a violation (and it is kept).
    fn release_guest(&mut self, g: Granule) {
        let Some(p) = self.guest.get(&g).copied() else {
            return;
        };
        if p.in_file || p.refs != 0 {
            return;
        }
        self.guest.remove(&g);
        if self.state(g) != Some(GranuleState::Ns) {
            self.violations.push(Violation::FreedWhileDelegated(g));
            return;
        }
        self.allocated.remove(&g);
        self.contents.remove(&g);
        self.free.insert(g);
    }

    /// Guest page `g`'s holders, if it is one.
    pub(crate) fn guest_page(&self, g: Granule) -> Option<GuestPage> {
        self.guest.get(&g).copied()
    }

    /// The guest pages not freed yet.
    pub(crate) fn guest_pages(&self) -> usize {
        self.guest.len()
    }
}

impl FakePages {
    /// Allocates `n` guest_memfd pages, lowest first (so a fresh memory
    /// gives one PA-contiguous run).
    pub(crate) fn guest_alloc(&self, n: usize) -> Option<Vec<Granule>> {
        let mut mem = self.0.borrow_mut();
        let pages: Vec<Granule> = mem.free.iter().take(n).copied().collect();
        if pages.len() < n {
            return None;
        }
        for g in &pages {
            mem.free.remove(g);
            mem.allocated.insert(*g);
            mem.guest.insert(
                *g,
                GuestPage {
                    in_file: true,
                    refs: 0,
                },
            );
        }
        Some(pages)
    }

    /// A hole punch (or the file's release) over guest page `g`: the file
    /// drops it, and it is freed unless the host holds a reference.
    pub(crate) fn guest_punch(&self, g: Granule) {
        let mut mem = self.0.borrow_mut();
        if let Some(p) = mem.guest.get_mut(&g) {
            p.in_file = false;
        }
        mem.release_guest(g);
    }
}

impl GuestPages for FakePages {
    fn get(&self, g: Granule) {
        let mut mem = self.0.borrow_mut();
        match mem.guest.get_mut(&g) {
            Some(p) => p.refs += 1,
            None => panic!("reference on {g}, which is not a guest page"),
        }
    }

    fn put(&self, g: Granule) {
        let mut mem = self.0.borrow_mut();
        match mem.guest.get_mut(&g) {
            Some(p) if p.refs > 0 => p.refs -= 1,
            _ => panic!("put of {g} without a reference"),
        }
        mem.release_guest(g);
    }
}

impl PageSource for FakePages {
    type Page = FakePage;
    type Block = FakeBlock;

    fn alloc_block(&self, order: u32) -> Option<FakeBlock> {
        let mut mem = self.0.borrow_mut();
        let n = 1u64 << order;
        if let Some(budget) = mem.alloc_budget.as_mut() {
            if *budget < n {
                return None;
            }
            *budget -= n;
        }
        // The highest free run of `n` granules aligned to its size.
        let range = mem
            .free
            .iter()
            .rev()
            .copied()
            .filter(|g| g.is_aligned(n * GRANULE_SIZE))
            .filter_map(|g| GranuleRange::from_count(g, n))
            .find(|r| r.iter().all(|g| mem.free.contains(&g)))?;
        for g in range.iter() {
            mem.free.remove(&g);
            mem.allocated.insert(g);
        }
        Some(FakeBlock {
            range,
            mem: Rc::clone(&self.0),
        })
    }

    fn block_range(block: &FakeBlock) -> GranuleRange {
        block.range
    }

    fn alloc(&self) -> Option<FakePage> {
        let mut mem = self.0.borrow_mut();
        if let Some(budget) = mem.alloc_budget.as_mut() {
            if *budget == 0 {
                return None;
            }
            *budget -= 1;
        }
        // Highest first, so tests see allocation order independent of
        // address order.
        let g = mem.free.pop_last()?;
        mem.allocated.insert(g);
        Some(FakePage {
            granule: g,
            mem: Rc::clone(&self.0),
        })
    }

    fn granule(page: &FakePage) -> Granule {
        page.granule
    }

    fn write_words(page: &FakePage, at: usize, words: &[u64]) -> bool {
        let mut mem = page.mem.borrow_mut();
        if !host_access_ok(&mut mem, page.granule, at, words.len()) {
            return false;
        }
        let c = mem
            .contents
            .entry(page.granule)
            .or_insert_with(|| Box::new([0; WORDS]));
        c[at..at + words.len()].copy_from_slice(words);
        true
    }

    fn read_words(page: &FakePage, at: usize, words: &mut [u64]) -> bool {
        let mut mem = page.mem.borrow_mut();
        if !host_access_ok(&mut mem, page.granule, at, words.len()) {
            return false;
        }
        match mem.contents.get(&page.granule) {
            Some(c) => words.copy_from_slice(&c[at..at + words.len()]),
            None => words.fill(0),
        }
        true
    }
}

/// The range `pages` cover, if they are contiguous (in any order).
pub(crate) fn contiguous(pages: &[FakePage]) -> Option<GranuleRange> {
    let mut gs: Vec<_> = pages.iter().map(|p| p.granule).collect();
    gs.sort();
    let first = *gs.first()?;
    let range = GranuleRange::from_count(first, gs.len() as u64)?;
    range.iter().eq(gs.iter().copied()).then_some(range)
}
