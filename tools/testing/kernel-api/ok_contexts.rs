// What each context may do, through the types that prove it: compiles.
use kernel::kvm::{
    LockedVcpu,
    MmuLocked,
    RunningVcpu,
    SlotsLockGuard,
    SrcuReadGuard, //
};

/// Run-loop mutators on a running vCPU; what a locked one may do.
pub fn running(v: &RunningVcpu) -> Result {
    v.set_gpr(0, 1);
    v.exit_mmio(0, 8, true, 0);
    let _ = v.take_mmio();
    v.cancel_mmio();
    v.timer_update(0, 0, 0, 0);
    v.handle_trap(0).map(|_| ())
}

/// A locked vCPU: registers and the pending MMIO exit.
pub fn locked(v: &LockedVcpu) -> u64 {
    v.set_gpr(1, 2);
    v.cancel_mmio();
    v.gpr(1)
}

/// `mmu_lock` held by KVM around an unmap callback.
pub fn mmu(mmu: &mut MmuLocked<'_>) {
    mmu.cond_resched();
}

/// Memslot walks and populate go through the VM's held `slots_lock`.
pub fn slots(slots: &SlotsLockGuard<'_>) -> Result {
    slots.walk_memslots(|slot| {
        let _ = slot.npages();
        Ok(())
    })
}

/// Pages are looked up through a memslot bound to its VM.
pub fn lookup(srcu: &SrcuReadGuard<'_>) -> Result<u64> {
    srcu.memslot(0).ok_or(EINVAL)?.gmem_pfn(0)
}

/// Memory attributes are read under `srcu`.
pub fn attribute(srcu: &SrcuReadGuard<'_>) -> bool {
    srcu.mem_is_private(0)
}
