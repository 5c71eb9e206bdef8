// SPDX-License-Identifier: GPL-2.0
/*
 * The tracepoints of kvm_rmi, and the rust_do_trace_*() helpers the Rust
 * crate calls them through.
 */

#define CREATE_TRACE_POINTS
#define CREATE_RUST_TRACE_POINTS
#include "kvm_rmi_trace.h"
