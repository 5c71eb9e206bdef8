/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Stepping a realm vCPU through the exits its guest makes, for the kvm-rmi
 * selftests whose guests report with MMIO: each step runs the vCPU to its
 * next exit and checks it. A step that goes wrong records why and marks
 * the guest lost: it is out of step from then on, and the later steps
 * fail as "not reached".
 */
#ifndef KRMI_STEP_SELFTEST_H
#define KRMI_STEP_SELFTEST_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "krmi_guest.h"

/* Set once a step went wrong, with why. */
static bool lost;
static char why[160];

static inline int set_reg(int vcpu, __u64 id, __u64 value)
{
	struct kvm_one_reg reg = { .id = id, .addr = (unsigned long)&value };

	return ioctl(vcpu, KVM_SET_ONE_REG, &reg) ? -errno : 0;
}

static inline int get_reg(int vcpu, __u64 id, __u64 *value)
{
	struct kvm_one_reg reg = { .id = id, .addr = (unsigned long)value };

	return ioctl(vcpu, KVM_GET_ONE_REG, &reg) ? -errno : 0;
}

/* The ONE_REG id of xN. */
static inline __u64 xreg(int n)
{
	/* Core register ids count 32-bit words of struct kvm_regs. */
	return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
	       (KVM_REG_ARM_CORE_REG(regs.regs[0]) + 2 * n);
}

/* Runs `vcpu` to its next exit: false (and `why`) if KVM_RUN failed. */
static inline bool step(int vcpu)
{
	int ret;

	if (lost)
		return false;
	ret = vcpu_run_bounded(vcpu, 10);
	if (ret) {
		snprintf(why, sizeof(why), "KVM_RUN: %s", strerror(-ret));
		lost = true;
	}
	return !lost;
}

/* The exit is an MMIO access of `len` bytes at `gpa`, a write or a read. */
static inline bool is_mmio(const struct kvm_run *run, __u64 gpa, __u32 len, bool write)
{
	return run->exit_reason == KVM_EXIT_MMIO && run->mmio.phys_addr == gpa &&
	       run->mmio.len == len && !!run->mmio.is_write == write;
}

static inline __u64 mmio_data(const struct kvm_run *run)
{
	__u64 v = 0;

	memcpy(&v, run->mmio.data, run->mmio.len <= 8 ? run->mmio.len : 8);
	return v;
}

/* Runs `vcpu` to a write of `want` at `gpa` (8 bytes): true if it was. */
static inline bool step_write(int vcpu, struct kvm_run *run, __u64 gpa, __u64 want)
{
	if (!step(vcpu))
		return false;
	if (is_mmio(run, gpa, 8, true) && mmio_data(run) == want)
		return true;
	if (run->exit_reason == KVM_EXIT_MMIO)
		snprintf(why, sizeof(why), "MMIO %s of %u at 0x%llx, data 0x%llx; wanted a write of 0x%llx at 0x%llx",
			 run->mmio.is_write ? "write" : "read", run->mmio.len,
			 (unsigned long long)run->mmio.phys_addr,
			 (unsigned long long)mmio_data(run), (unsigned long long)want,
			 (unsigned long long)gpa);
	else
		snprintf(why, sizeof(why), "exit %u; wanted a write of 0x%llx at 0x%llx",
			 run->exit_reason, (unsigned long long)want, (unsigned long long)gpa);
	lost = true;
	return false;
}

/* Runs `vcpu` to a KVM_EXIT_MEMORY_FAULT (-EFAULT) for [gpa, gpa + size). */
static inline bool step_memory_fault(int vcpu, struct kvm_run *run, __u64 gpa, __u64 size,
				     bool private)
{
	int ret;

	if (lost)
		return false;
	ret = vcpu_run_bounded(vcpu, 10);
	if (ret == -EFAULT && run->exit_reason == KVM_EXIT_MEMORY_FAULT &&
	    run->memory_fault.gpa == gpa && run->memory_fault.size == size &&
	    !!(run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE) == private)
		return true;
	snprintf(why, sizeof(why), "KVM_RUN %d, exit %u (gpa 0x%llx size 0x%llx flags 0x%llx); wanted a memory fault",
		 ret, run->exit_reason, (unsigned long long)run->memory_fault.gpa,
		 (unsigned long long)run->memory_fault.size,
		 (unsigned long long)run->memory_fault.flags);
	lost = true;
	return false;
}

/* A test result for a step, with why it failed. */
static inline void report(bool ok, const char *what)
{
	if (ok)
		ksft_test_result_pass("%s\n", what);
	else
		ksft_test_result_fail("%s: %s\n", what, lost ? why : "not reached");
}

#endif /* KRMI_STEP_SELFTEST_H */
