// expect: no method named `handle_trap` found for reference `&LockedVcpu`
// A vCPU ioctl other than KVM_RUN holds the mutex but has not loaded the
// vCPU: no trap handling, no timer update.
use kernel::kvm::LockedVcpu;

/// Handles a trap from `KVM_SET_ONE_REG`.
pub fn poke(v: &LockedVcpu) -> Result {
    v.handle_trap(0).map(|_| ())
}
