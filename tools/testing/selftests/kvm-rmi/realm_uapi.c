// SPDX-License-Identifier: GPL-2.0
/*
 * The realm user ABI without a realm provider loaded: KVM_CAP_ARM_RMI
 * reports 0, and KVM_CREATE_VM with KVM_VM_TYPE_ARM_REALM fails with EINVAL,
 * as does REALM together with PROTECTED; a normal VM is still created.
 * (Run after module_load, which leaves kvm_rmi unloaded.)
 *
 * Also: a normal guest never sees ID_AA64PFR0_EL1.RME, even when the host
 * has RME (only meaningful under QEMU with x-rme=on).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "kselftest.h"

/* Creates a VM of `type`; returns 0 (and closes it) or -errno. */
static int create_vm(int kvm, unsigned long type)
{
	int vm = ioctl(kvm, KVM_CREATE_VM, type);

	if (vm < 0)
		return -errno;
	close(vm);
	return 0;
}

/* ID_AA64PFR0_EL1 as a vCPU of a normal VM sees it, or -errno. */
static long long guest_pfr0(int kvm)
{
	struct kvm_vcpu_init init;
	__u64 val = 0;
	struct kvm_one_reg reg = {
		/* op0 3, op1 0, CRn 0, CRm 4, op2 0 */
		.id = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG |
		      (3ULL << KVM_REG_ARM64_SYSREG_OP0_SHIFT) |
		      (4ULL << KVM_REG_ARM64_SYSREG_CRM_SHIFT),
		.addr = (__u64)(unsigned long)&val,
	};
	long long ret = 0;
	int vm, vcpu;

	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return -errno;
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0 || ioctl(vm, KVM_ARM_PREFERRED_TARGET, &init) ||
	    ioctl(vcpu, KVM_ARM_VCPU_INIT, &init) || ioctl(vcpu, KVM_GET_ONE_REG, &reg))
		ret = -errno;
	if (vcpu >= 0)
		close(vcpu);
	close(vm);
	return ret ? ret : (long long)val;
}

int main(void)
{
	long long pfr0;
	int kvm, ret;

	ksft_print_header();
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		ksft_exit_skip("/dev/kvm: %s\n", strerror(errno));
	ksft_set_plan(6);

	ret = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_RMI);
	ksft_test_result(ret == 0, "KVM_CAP_ARM_RMI is 0 without the module (got %d)\n", ret);

	ret = create_vm(kvm, KVM_VM_TYPE_ARM_REALM);
	ksft_test_result(ret == -EINVAL, "REALM fails with EINVAL (got %d)\n", ret);

	ret = create_vm(kvm, KVM_VM_TYPE_ARM_REALM | KVM_VM_TYPE_ARM_IPA_SIZE(40));
	ksft_test_result(ret == -EINVAL, "REALM with 40-bit IPA fails with EINVAL (got %d)\n",
			 ret);

	ret = create_vm(kvm, KVM_VM_TYPE_ARM_REALM | KVM_VM_TYPE_ARM_PROTECTED);
	ksft_test_result(ret == -EINVAL, "REALM|PROTECTED fails with EINVAL (got %d)\n", ret);

	ret = create_vm(kvm, 0);
	ksft_test_result(ret == 0, "a normal VM is still created (got %d)\n", ret);

	pfr0 = guest_pfr0(kvm);
	ksft_test_result(pfr0 >= 0 && !((pfr0 >> 52) & 0xf),
			 "guest ID_AA64PFR0_EL1.RME is 0 (ID_AA64PFR0_EL1 %#llx)\n", pfr0);

	close(kvm);
	ksft_finished();
}
