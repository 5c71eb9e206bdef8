// expect: no method named `gmem_pfn` found for reference `&MemSlot`
// A bare memslot does not know its VM: pages are looked up through one
// bound to it (`SrcuReadGuard::memslot`).
use kernel::kvm::{
    Kvm,
    MemSlot, //
};

/// Looks up a page of `slot` as if it were `kvm`'s.
pub fn poke(kvm: &Kvm, slot: &MemSlot) -> Result<u64> {
    slot.gmem_pfn(kvm, 0)
}
