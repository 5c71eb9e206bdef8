// SPDX-License-Identifier: GPL-2.0

//! realm-vmm: a small VMM that boots Linux in an Arm CCA realm on kvm-rmi,
//! or, with `--normal`, as a normal VM with the same devices.
//!
//! What can be tested on any host lives in this library: the memory map
//! and where the boot blobs go ([`layout`]), the device tree ([`dtb`]) and
//! the console ([`uart`]), the command line ([`args`]) and the Realm
//! Initial Measurement ([`rim`]). `vmm` drives
//! KVM, on aarch64 hosts only.

pub mod args;
pub mod attest;
pub mod dtb;
pub mod layout;
pub mod rim;
pub mod uart;
#[cfg(target_arch = "aarch64")]
pub mod vmm;
