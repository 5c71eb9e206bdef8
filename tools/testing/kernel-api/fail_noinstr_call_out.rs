// expect: calls kvm_rmi::record, outside .noinstr.text
// check: noinstr
// An entry that calls an out-of-line function from the noinstr window (as
// the module once did with kmap through Page::read_raw): check-noinstr.py
// refuses it.

/// The entry's registers.
static ARGS: kernel::kvm::RealmSmcRegs = kernel::kvm::RealmSmcRegs::new();
/// The answer.
static RES: kernel::kvm::RealmSmcRegs = kernel::kvm::RealmSmcRegs::new();

/// Out of line, in `.text`.
#[inline(never)]
fn record(x0: u64) -> u64 {
    ARGS.get()[1].wrapping_add(x0)
}

/// Enters, then calls out.
#[no_mangle]
#[link_section = ".noinstr.text"]
pub extern "C" fn vcpu_enter_callback() -> u64 {
    // SAFETY: Never run: the build and check-noinstr.py are the check.
    unsafe { kernel::kvm::realm_smc(&ARGS, &RES) };
    record(RES.x0())
}
