// SPDX-License-Identifier: GPL-2.0

//! arm64 architecture interfaces.

#[cfg(CONFIG_HAVE_ARM_SMCCC_DISCOVERY)]
pub mod smccc;

pub mod gpf;
