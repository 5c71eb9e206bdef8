// expect: no method named `exit_mmio` found for reference `&Vcpu`
// Exits to userspace are set from the run loop only.
use kernel::kvm::Vcpu;

/// Makes another vCPU's `KVM_RUN` return an MMIO exit.
pub fn poke(v: &Vcpu) {
    v.exit_mmio(0, 8, true, 0);
}
