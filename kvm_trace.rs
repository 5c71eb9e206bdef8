// SPDX-License-Identifier: GPL-2.0

//! The module's tracepoints (`events/kvm_rmi/` in tracefs), defined in
//! `kvm_rmi_trace.h`: `kvm_rmi_call` for every RMI call and
//! `kvm_rmi_rec_exit` for every REC exit.
//!
//! As `kernel::declare_trace!` does, each event is called through the
//! `rust_do_trace_*()` helper C generates, behind the tracepoint's static
//! key; the prototypes are declared here rather than in the kernel's
//! bindings so that the events stay in the module. Without
//! `CONFIG_TRACEPOINTS` the events compile to nothing.

use crate::exit::RmiExitReason;
use crate::rmi_observe::call_names;
use crate::rmi_smc::{
    RmiRecExit,
    SmcRegs, //
};

// The events read x0..x6 of a call and x0..x3 of its answer.
const _: () = assert!(crate::rmi_smc::SMC_NR_REGS >= 7);

/// The C side, `kvm_rmi_trace.c`: the prototypes of `kvm_rmi_trace.h`.
#[cfg(CONFIG_TRACEPOINTS)]
mod ffi {
    use kernel::bindings;
    use kernel::ffi::c_char;

    extern "C" {
        pub(super) static __tracepoint_kvm_rmi_call: bindings::tracepoint;
        pub(super) static __tracepoint_kvm_rmi_rec_exit: bindings::tracepoint;

        /// `in_` points to x0..x6 and `out` to x0..x3; `cmd` and `status`
        /// are `cmd_len` and `status_len` bytes.
        pub(super) fn rust_do_trace_kvm_rmi_call(
            cmd: *const c_char,
            cmd_len: u32,
            in_: *const u64,
            out: *const u64,
            status: *const c_char,
            status_len: u32,
            ns: u64,
            injected: bool,
        );

        /// `name` is `name_len` bytes.
        pub(super) fn rust_do_trace_kvm_rmi_rec_exit(
            realm: u64,
            vcpu: u32,
            reason: u64,
            name: *const c_char,
            name_len: u32,
            esr: u64,
            far: u64,
            hpfar: u64,
        );
    }
}

/// Whether `kvm_rmi_call` is enabled: only then is an RMI call timed.
#[inline(always)]
pub(crate) fn rmi_call_enabled() -> bool {
    #[cfg(CONFIG_TRACEPOINTS)]
    {
        // `__tracepoint_kvm_rmi_call` is a tracepoint C defines
        // (`kvm_rmi_trace.c`), and its key may always be queried.
        // SAFETY: As above.
        unsafe {
            kernel::static_branch_unlikely!(
                ffi::__tracepoint_kvm_rmi_call,
                kernel::bindings::tracepoint,
                key
            )
        }
    }
    #[cfg(not(CONFIG_TRACEPOINTS))]
    false
}

/// Whether `kvm_rmi_rec_exit` is enabled.
#[inline(always)]
fn rec_exit_enabled() -> bool {
    #[cfg(CONFIG_TRACEPOINTS)]
    {
        // SAFETY: As in `rmi_call_enabled`, for `kvm_rmi_rec_exit`.
        unsafe {
            kernel::static_branch_unlikely!(
                ffi::__tracepoint_kvm_rmi_rec_exit,
                kernel::bindings::tracepoint,
                key
            )
        }
    }
    #[cfg(not(CONFIG_TRACEPOINTS))]
    false
}

/// The length of a name, as the events take it (names are short).
fn name_len(name: &str) -> u32 {
    u32::try_from(name.len()).unwrap_or(0)
}

/// Emits `kvm_rmi_call` for the call `args` that returned `out` after `ns`
/// nanoseconds (`injected`: failed on request, without reaching the RMM).
///
/// Not from the guest context of RCU (inside `REC_ENTER`): a tracepoint
/// needs RCU watching.
pub(crate) fn rmi_call(args: &SmcRegs, out: &SmcRegs, ns: u64, injected: bool) {
    if !rmi_call_enabled() {
        return;
    }
    let (command, status) = call_names(args, out);
    #[cfg(CONFIG_TRACEPOINTS)]
    // Both names are valid for their lengths; `args.0` holds x0..x17 and
    // `out.0` as many, more than the 7 and 4 words read.
    // SAFETY: As above.
    unsafe {
        ffi::rust_do_trace_kvm_rmi_call(
            command.as_ptr().cast(),
            name_len(command),
            args.0.as_ptr(),
            out.0.as_ptr(),
            status.as_ptr().cast(),
            name_len(status),
            ns,
            injected,
        )
    };
    #[cfg(not(CONFIG_TRACEPOINTS))]
    let _ = (command, status, ns, injected);
}

/// Emits `kvm_rmi_rec_exit` for an exit of vCPU `vcpu` of realm `realm`.
pub(crate) fn rec_exit(realm: u64, vcpu: u32, exit: &RmiRecExit) {
    if !rec_exit_enabled() {
        return;
    }
    let name = RmiExitReason::from_raw(exit.exit_reason).name();
    #[cfg(CONFIG_TRACEPOINTS)]
    // SAFETY: `name` is valid for its length.
    unsafe {
        ffi::rust_do_trace_kvm_rmi_rec_exit(
            realm,
            vcpu,
            exit.exit_reason,
            name.as_ptr().cast(),
            name_len(name),
            exit.esr,
            exit.far,
            exit.hpfar,
        )
    };
    #[cfg(not(CONFIG_TRACEPOINTS))]
    let _ = (realm, vcpu, name);
}
