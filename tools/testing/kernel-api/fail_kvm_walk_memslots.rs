// expect: no method named `walk_memslots` found for reference `&Kvm`
// Walking VM B's memslots under VM A's `slots_lock` is not expressible.
use kernel::kvm::{
    Kvm,
    SlotsLockGuard, //
};

/// Walks `b` under `a`'s lock.
pub fn poke(b: &Kvm, a: &SlotsLockGuard<'_>) -> Result {
    b.walk_memslots(a, |_| Ok(()))
}
