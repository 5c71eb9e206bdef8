// expect: no method named `mem_is_private` found for reference `&Kvm`
// A realm frame's default attribute comes from its memslot, looked up
// under `srcu`: reading attributes needs the guard.
use kernel::kvm::Kvm;

/// Reads an attribute outside `srcu`.
pub fn poke(kvm: &Kvm) -> bool {
    kvm.mem_is_private(0)
}
