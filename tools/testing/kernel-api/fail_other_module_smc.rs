// expect: module uses symbol 'kvm_arm_realm_smc' from namespace 'module:kvm_rmi', but does not import it.
// module: other_smc
// Only kvm_rmi enters realms: another module cannot reach the RMM through
// the kernel crate's wrapper either.

/// Another module makes the entry SMC.
pub fn poke() -> u64 {
    let args = kernel::kvm::RealmSmcRegs::new();
    let res = kernel::kvm::RealmSmcRegs::new();
    // SAFETY: Never run: the build is the check.
    unsafe { kernel::kvm::realm_smc(&args, &res) };
    res.x0()
}
