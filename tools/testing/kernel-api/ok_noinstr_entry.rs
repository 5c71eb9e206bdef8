// check: noinstr
// A vCPU entry as RealmOps::vcpu_enter may make it: the kernel crate's SMC
// wrapper and register accessors inline into the noinstr callback, which
// calls nothing but kvm_arm_realm_smc().

/// The entry's registers.
static ARGS: kernel::kvm::RealmSmcRegs = kernel::kvm::RealmSmcRegs::new();
/// The answer.
static RES: kernel::kvm::RealmSmcRegs = kernel::kvm::RealmSmcRegs::new();

/// Enters, as the module's callback does.
#[no_mangle]
#[link_section = ".noinstr.text"]
pub extern "C" fn vcpu_enter_callback() -> u64 {
    // SAFETY: Never run: the build and check-noinstr.py are the check.
    unsafe { kernel::kvm::realm_smc(&ARGS, &RES) };
    RES.x0()
}
