// expect: no method named `set_gpr` found for reference `&Vcpu`
// Any `&Vcpu` (say another vCPU's, from `Kvm::vcpu()`) only reads.
use kernel::kvm::Kvm;

/// Sets a register of vCPU 1 from anywhere.
pub fn poke(kvm: &Kvm) {
    if let Some(v) = kvm.vcpu(1) {
        v.set_gpr(0, 1);
    }
}
