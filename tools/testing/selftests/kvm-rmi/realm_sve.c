// SPDX-License-Identifier: GPL-2.0
/*
 * SVE in a realm: the vector length the VMM gives its vCPUs with
 * KVM_REG_ARM64_SVE_VLS becomes the realm's (RmiRealmParams.sve_vl) when the
 * RD is created, after which it is locked; the guest sees that length
 * (RDVL); a vCPU with another length keeps the realm from being activated.
 *
 * Needs an RMM with SVE (KRMI_RME=1 and KVM_CAP_ARM_SVE on a realm VM);
 * SKIP otherwise.
 */
#include <stddef.h>

#include "krmi_guest.h"
#include "krmi_mem.h"

#define IPA_BITS 40
#define UNPROTECTED (1ULL << (IPA_BITS - 1))
#define UCALL 0x10000000ULL
#define SLOT_BYTES (64 * 1024)

/* The guest: enables SVE at EL1, reports RDVL (bytes) to x0, powers off. */
asm(".pushsection .rodata.krmi_sve_guest, \"a\"\n"
    ".balign 4096\n"
    ".globl sve_guest, sve_guest_end\n"
    ".hidden sve_guest, sve_guest_end\n"
    ".arch_extension sve\n"
    "sve_guest:\n"
    "	mov	x9, #(3 << 16)\n"		/* CPACR_EL1.ZEN */
    "	orr	x9, x9, #(3 << 20)\n"		/* CPACR_EL1.FPEN */
    "	msr	cpacr_el1, x9\n"
    "	isb\n"
    "	mov	x9, #0xf\n"			/* ZCR_EL1.LEN: the longest */
    "	msr	zcr_el1, x9\n"
    "	isb\n"
    "	rdvl	x9, #1\n"
    "	str	x9, [x0]\n"
    "	movz	x0, #0x0008\n"
    "	movk	x0, #0x8400, lsl #16\n"
    "	smc	#0\n"
    "1:	b	1b\n"
    "sve_guest_end:\n"
    ".popsection\n");
extern const char sve_guest[], sve_guest_end[];

static int one_reg(int vcpu, unsigned long req, __u64 id, void *addr)
{
	struct kvm_one_reg reg = { .id = id, .addr = (unsigned long)addr };

	return ioctl(vcpu, req, &reg) ? -errno : 0;
}

/* KVM_REG_ARM64_SVE_VLS with vector lengths 16..`max_bytes`. */
static int set_vls(int vcpu, unsigned int max_bytes)
{
	__u64 vqs[KVM_ARM64_SVE_VLS_WORDS] = { (1ULL << (max_bytes / 16)) - 1 };

	return one_reg(vcpu, KVM_SET_ONE_REG, KVM_REG_ARM64_SVE_VLS, vqs);
}

struct sve_realm {
	struct guest_realm g;
	/* What building it saw. */
	int reg_list, reg_list_n, vls_late;
};

/*
 * A realm with two SVE vCPUs whose vectors are at most `vl0` and `vl1`
 * bytes, vCPU 0 seeded to report to UCALL: 0 or -errno.
 */
static int sve_realm_build(int kvm, struct sve_realm *r, unsigned int vl0, unsigned int vl1)
{
	__u64 x0 = UNPROTECTED | UCALL;
	int feature = KVM_ARM_VCPU_SVE, ret;
	struct {
		struct kvm_reg_list head;
		__u64 ids[64];
	} list = { .head.n = 64 };

	ret = guest_realm_open(&r->g, kvm, IPA_BITS);
	for (int i = 0; !ret && i < 2; i++) {
		ret = guest_realm_add_vcpu(&r->g, i, 1u << KVM_ARM_VCPU_SVE |
					   (i ? 1u << KVM_ARM_VCPU_POWER_OFF : 0)) ?:
		      set_vls(r->g.vcpu[i], i ? vl1 : vl0);
		if (!ret && ioctl(r->g.vcpu[i], KVM_ARM_VCPU_FINALIZE, &feature))
			ret = -errno;
	}
	if (ret)
		return ret;
	r->reg_list = ioctl(r->g.vcpu[0], KVM_GET_REG_LIST, &list) ? -errno : 0;
	r->reg_list_n = list.head.n;
	for (unsigned int i = 0; !r->reg_list && i < list.head.n; i++)
		if (list.ids[i] == KVM_REG_ARM64_SVE_VLS)
			r->reg_list_n = -(int)list.head.n; /* listed: negative as a mark */
	/* Populating creates the RD, which fixes the vector length. */
	ret = guest_realm_code(&r->g, SLOT_BYTES, sve_guest, sve_guest_end);
	if (ret)
		return ret;
	r->vls_late = set_vls(r->g.vcpu[0], vl0);
	return vgic_v3_init(r->g.gic) ?:
	       one_reg(r->g.vcpu[0], KVM_SET_ONE_REG,
		       KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
		       KVM_REG_ARM_CORE_REG(regs.regs[0]), &x0);
}

#define SVE_REALM_INIT { .g = GUEST_REALM_INIT }

/* A realm with 32-byte vectors: the guest's RDVL, the locks and the list. */
static void test_vector_length(int kvm)
{
	struct sve_realm r = SVE_REALM_INIT;
	int ret = sve_realm_build(kvm, &r, 32, 32), run_ret = -1;
	struct kvm_run *run = NULL;
	__u64 rdvl = 0;
	bool off = false;

	ksft_test_result(!ret, "realm with two SVE vCPUs of 32-byte vectors, finalized and populated (%d)\n",
			 ret);
	ksft_test_result(!ret && !r.reg_list && r.reg_list_n == -34,
			 "KVM_GET_REG_LIST after finalizing: %d, %d ids (want 34, with SVE_VLS)\n",
			 r.reg_list, r.reg_list_n < 0 ? -r.reg_list_n : r.reg_list_n);
	ksft_test_result(!ret && r.vls_late == -EPERM,
			 "KVM_REG_ARM64_SVE_VLS once populated: %d (want EPERM)\n", r.vls_late);
	if (!ret) {
		run = vcpu_run_map(kvm, r.g.vcpu[0]);
		run_ret = run ? vcpu_run_bounded(r.g.vcpu[0], 10) : -ENOMEM;
	}
	if (!run_ret && run->exit_reason == KVM_EXIT_MMIO && run->mmio.is_write &&
	    run->mmio.phys_addr == UCALL && run->mmio.len == 8) {
		memcpy(&rdvl, run->mmio.data, 8);
		off = !vcpu_run_bounded(r.g.vcpu[0], 10) && exited_off(run);
	}
	ksft_test_result(rdvl == 32 && off, "the guest's RDVL: %llu bytes (want 32), then SYSTEM_OFF: %s\n",
			 (unsigned long long)rdvl, off ? "yes" : "no");
	vcpu_run_unmap(kvm, run);
	guest_realm_close(&r.g);
}

/* vCPUs with different vector lengths: the realm is not activated. */
static void test_mismatch(int kvm)
{
	struct sve_realm r = SVE_REALM_INIT;
	int built = sve_realm_build(kvm, &r, 32, 64);
	int ret = built ? built : vcpu_run_bounded(r.g.vcpu[0], 10);

	ksft_test_result(!built && ret == -EINVAL,
			 "vCPU 1 with 64-byte vectors in a 32-byte realm: built %d, KVM_RUN %d (want 0, EINVAL)\n",
			 built, ret);
	guest_realm_close(&r.g);
}

int main(void)
{
	int kvm, kmsg, vm, sve, ret;

	ksft_print_header();
	if (!rmm_present())
		ksft_exit_skip("needs an RMM (KRMI_RME=1)\n");
	kmsg = kmsg_open();
	ret = module_load();
	if (ret)
		ksft_exit_fail_msg("cannot load " MODULE_NAME ": %s\n", strerror(-ret));
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		ksft_exit_fail_msg("/dev/kvm: %s\n", strerror(errno));
	vm = ioctl(kvm, KVM_CREATE_VM, KVM_VM_TYPE_ARM_REALM | KVM_VM_TYPE_ARM_IPA_SIZE(IPA_BITS));
	sve = vm < 0 ? 0 : ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_SVE);
	if (vm >= 0)
		close(vm);
	if (sve <= 0) {
		close(kvm);
		module_unload();
		ksft_exit_skip("the RMM gives realms no SVE\n");
	}
	ksft_set_plan(7);
	test_vector_length(kvm);
	test_mismatch(kvm);
	close(kvm);
	ksft_test_result(module_unload() == 0, "unload\n");
	{
		char lines[MAX_LINES][256];
		int n = kmsg_module_lines(kmsg, lines, MAX_LINES);

		ksft_test_result(!bad_lines(lines, n), "no failure, leak, death or GPF logged\n");
	}
	close(kmsg);
	ksft_finished();
}
