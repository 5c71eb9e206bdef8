// SPDX-License-Identifier: GPL-2.0

//! Host-side twin of the kvm-rmi module's sans-IO core.
//!
//! The core files at the top of the repository are compiled here with the
//! same module tree as in the kernel (`crate::rmi_smc`, `crate::rmi_cmds`), and
//! run against [`model::Rmm`], an executable model of the RMM that sits behind
//! the same [`rmi_cmds::SmcConduit`] trait the kernel implements with `smc`.

// The core is written for the kernel shell; items only the shell uses yet
// are unused here.
#[allow(dead_code)]
#[path = "../../../../addr.rs"]
pub(crate) mod addr;

#[allow(dead_code)]
#[path = "../../../../rmi_smc.rs"]
pub(crate) mod rmi_smc;

#[allow(dead_code)]
#[path = "../../../../rmi_cmds.rs"]
pub(crate) mod rmi_cmds;

#[allow(dead_code)]
#[path = "../../../../granule.rs"]
pub(crate) mod granule;

#[allow(dead_code)]
#[path = "../../../../sro.rs"]
pub(crate) mod sro;

#[allow(dead_code)]
#[path = "../../../../rtt.rs"]
pub(crate) mod rtt;

#[allow(dead_code)]
#[path = "../../../../realm.rs"]
pub(crate) mod realm;

#[allow(dead_code)]
#[path = "../../../../rmm_init.rs"]
pub(crate) mod rmm_init;

#[allow(dead_code)]
#[path = "../../../../populate.rs"]
pub(crate) mod populate;

#[allow(dead_code)]
#[path = "../../../../data.rs"]
pub(crate) mod data;

#[allow(dead_code)]
#[path = "../../../../memory.rs"]
pub(crate) mod memory;

#[allow(dead_code)]
#[path = "../../../../exit.rs"]
pub(crate) mod exit;

#[allow(dead_code)]
#[path = "../../../../rmi_observe.rs"]
pub(crate) mod rmi_observe;

#[allow(dead_code)]
#[path = "../../../../realm_stats.rs"]
pub(crate) mod realm_stats;

#[allow(dead_code)]
#[path = "../../../../rec.rs"]
pub(crate) mod rec;

#[allow(dead_code)]
#[path = "../../../../run.rs"]
pub(crate) mod run;

pub(crate) mod mem;
pub(crate) mod model;

#[cfg(test)]
mod data_tests;
#[cfg(test)]
mod exit_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod granule_tests;
#[cfg(test)]
mod init_tests;
#[cfg(test)]
mod memory_tests;
#[cfg(test)]
mod observe_tests;
#[cfg(test)]
mod populate_tests;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod realm_tests;
#[cfg(test)]
mod rec_tests;
#[cfg(test)]
mod rtt_tests;
#[cfg(test)]
mod run_tests;
#[cfg(test)]
mod sro_tests;
#[cfg(test)]
mod support;
#[cfg(test)]
mod tests;
