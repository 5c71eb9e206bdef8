// expect: fields `kvm` and `may_block` of struct `MmuLocked` are private
// Only the callback trampolines, where KVM holds the lock, make one.
use kernel::kvm::{
    Kvm,
    MmuLocked, //
};

/// Forges the proof.
pub fn poke(kvm: &Kvm) {
    let mut mmu = MmuLocked {
        kvm,
        may_block: true,
    };
    mmu.cond_resched();
}
