// expect: no method named `mmu_cond_resched` found for reference `&Kvm`
// Rescheduling under `mmu_lock` needs the proof that it is held.
use kernel::kvm::Kvm;

/// Drops a lock nobody holds.
pub fn poke(kvm: &Kvm) {
    kvm.mmu_cond_resched();
}
