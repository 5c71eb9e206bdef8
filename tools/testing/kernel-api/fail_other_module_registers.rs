// expect: module uses symbol 'kvm_arm_realm_can_register' from namespace 'module:kvm_rmi', but does not import it.
// module: other_provider
// The hooks (registration, SMCs into realms, the trap handler, marking the
// RMM active) are exported to kvm_rmi alone.

/// Another module asks to provide realms.
pub fn poke() -> Result {
    kernel::kvm::can_register()
}
