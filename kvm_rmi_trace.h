/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Tracepoints of kvm_rmi (events/kvm_rmi/ in tracefs): every RMI call the
 * module makes, and every REC exit. The Rust side (kvm_trace.rs) calls them
 * through the rust_do_trace_*() helpers kvm_rmi_trace.c generates, and
 * declares their prototypes itself: keep both in step.
 *
 * RMI passes only addresses, IPAs, levels and flags in registers; what a
 * realm holds (populated data, its registers) goes through memory and is not
 * traced.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM kvm_rmi

#if !defined(_KVM_RMI_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _KVM_RMI_TRACE_H

#include <linux/tracepoint.h>

/*
 * One RMI call: @in holds x0..x6 as called (x0 the function ID), @out
 * x0..x3 as returned. @cmd and @status are names of @cmd_len and
 * @status_len bytes, not NUL-terminated. @ns is how long the SMC took;
 * @injected says the call failed by request (debugfs kvm_rmi/inject)
 * without reaching the RMM.
 */
TRACE_EVENT(kvm_rmi_call,
	TP_PROTO(const char *cmd, u32 cmd_len, const u64 *in, const u64 *out,
		 const char *status, u32 status_len, u64 ns, bool injected),
	TP_ARGS(cmd, cmd_len, in, out, status, status_len, ns, injected),

	TP_STRUCT__entry(
		__field(u32, fid)
		__string_len(cmd, cmd, cmd_len)
		__array(u64, args, 6)
		__field(u64, ret)
		__array(u64, out, 3)
		__string_len(status, status, status_len)
		__field(u64, ns)
		__field(bool, injected)
	),

	TP_fast_assign(
		__entry->fid = in[0];
		__assign_str(cmd);
		memcpy(__entry->args, &in[1], sizeof(__entry->args));
		__entry->ret = out[0];
		memcpy(__entry->out, &out[1], sizeof(__entry->out));
		__assign_str(status);
		__entry->ns = ns;
		__entry->injected = injected;
	),

	TP_printk("%s x1=%#llx x2=%#llx x3=%#llx x4=%#llx x5=%#llx x6=%#llx status=%s index=%llu out=%#llx,%#llx,%#llx ns=%llu%s",
		  __get_str(cmd), __entry->args[0], __entry->args[1],
		  __entry->args[2], __entry->args[3], __entry->args[4],
		  __entry->args[5], __get_str(status),
		  (__entry->ret >> 8) & 0xff, __entry->out[0], __entry->out[1],
		  __entry->out[2], __entry->ns,
		  __entry->injected ? " injected" : "")
);

/*
 * One REC exit of vCPU @vcpu of realm @realm (as in debugfs
 * kvm_rmi/realms/): @reason and its name (@name_len bytes, not
 * NUL-terminated), and the syndrome the RMM exposed with it.
 */
TRACE_EVENT(kvm_rmi_rec_exit,
	TP_PROTO(u64 realm, u32 vcpu, u64 reason, const char *name,
		 u32 name_len, u64 esr, u64 far, u64 hpfar),
	TP_ARGS(realm, vcpu, reason, name, name_len, esr, far, hpfar),

	TP_STRUCT__entry(
		__field(u64, realm)
		__field(u32, vcpu)
		__field(u64, reason)
		__string_len(name, name, name_len)
		__field(u64, esr)
		__field(u64, far)
		__field(u64, hpfar)
	),

	TP_fast_assign(
		__entry->realm = realm;
		__entry->vcpu = vcpu;
		__entry->reason = reason;
		__assign_str(name);
		__entry->esr = esr;
		__entry->far = far;
		__entry->hpfar = hpfar;
	),

	TP_printk("realm=%llu vcpu=%u reason=%s esr=%#llx far=%#llx hpfar=%#llx",
		  __entry->realm, __entry->vcpu, __get_str(name), __entry->esr,
		  __entry->far, __entry->hpfar)
);

#endif /* _KVM_RMI_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE kvm_rmi_trace

/* This part must be outside protection */
#include <trace/define_trace.h>
