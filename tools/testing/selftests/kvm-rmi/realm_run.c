// SPDX-License-Identifier: GPL-2.0
/*
 * A realm guest that runs: MMIO through the unprotected alias, host calls
 * (forwarded by the SMCCC filter, answered by KVM, refused for PSCI), PSCI
 * CPU_ON and AFFINITY_INFO, a virtual timer interrupt through the vGIC, an
 * external abort injected with KVM_SET_VCPU_EVENTS, RIPAS changes to EMPTY
 * and back to RAM, a RIPAS change past the memslot rejected by the host,
 * and PSCI SYSTEM_OFF.
 *
 * The guest reports with stores to UCALL (an unprotected IPA no memslot
 * covers), which reach userspace as KVM_EXIT_MMIO at the IPA with the
 * unprotected bit stripped. Each step below is one exit or a short run of
 * them; a step that goes wrong leaves the guest out of step, so the later
 * ones fail as "not reached".
 *
 * Needs an RMM (KRMI_RME=1); SKIP otherwise.
 */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <time.h>

#include "krmi_guest.h"
#include "krmi_mem.h"
#include "krmi_step.h"

#define IPA_BITS 40
#define UNPROTECTED (1ULL << (IPA_BITS - 1))
/* The guest's report address, and where userspace sees it. */
#define UCALL 0x10000000ULL
#define REPORT (UCALL + 0x00)	/* guest writes */
#define SOURCE (UCALL + 0x08)	/* guest reads */
#define SECONDARY (UCALL + 0x10)	/* vCPU 1 writes */
#define ABORTED (UCALL + 0x18)	/* guest reads, userspace injects an SEA */
#define EXCEPTION (UCALL + 0x20)	/* the guest's sync handler writes ESR_EL1 */

#define SLOT_BYTES (64 * 1024)
/* KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG, (3, 0, 0, 5, 0). */
#define ID_AA64DFR0_EL1 (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG | \
			 ARM64_SYS_REG_SHIFT_MASK(3, OP0) | ARM64_SYS_REG_SHIFT_MASK(5, CRM))
#define HOST_CALL_FID 0xc3000001u	/* an OEM service function */
#define SMCCC_VERSION_1_1 0x10001
#define SMCCC_NOT_SUPPORTED (~0ULL)
#define SECONDARY_MAGIC 0xc0febeefULL
#define AFTER_ABORT 0xd0eULL
#define VTIMER_INTID 27

/*
 * The guest: x0 = UCALL, x1 = GICD, x2 = GICR (unprotected aliases). Page 0
 * is code and vectors, page 1 the RsiHostCall struct.
 */
asm(".pushsection .rodata.krmi_run_guest, \"a\"\n"
    ".balign 4096\n"
    ".globl run_guest, run_guest_end\n"
    ".hidden run_guest, run_guest_end\n"
    "run_guest:\n"
    "	mov	x19, x0\n"
    "	mov	x20, x1\n"
    "	mov	x21, x2\n"
    "	adr	x9, 90f\n"
    "	msr	vbar_el1, x9\n"
    "	isb\n"
    /* MMIO write; 64-bit and 32-bit reads, echoed. */
    "	mov	x9, #0x1111\n"
    "	str	x9, [x19]\n"
    "	ldr	x9, [x19, #8]\n"
    "	str	x9, [x19]\n"
    "	ldr	w9, [x19, #8]\n"
    "	str	x9, [x19]\n"
    /* Host call to the VMM: gprs[0] = fid, gprs[n] = 0x100 + n. */
    "	adr	x22, 95f\n"
    "	str	wzr, [x22]\n"
    "	movz	x9, #0x0001\n"
    "	movk	x9, #0xc300, lsl #16\n"
    "	str	x9, [x22, #8]\n"
    "	add	x12, x22, #8\n"
    "	mov	x10, #1\n"
    "1:	add	x11, x10, #0x100\n"
    "	str	x11, [x12, x10, lsl #3]\n"
    "	add	x10, x10, #1\n"
    "	cmp	x10, #31\n"
    "	b.lo	1b\n"
    "	bl	80f\n"
    /* Host calls KVM answers: SMCCC_VERSION, PSCI_VERSION (refused). */
    "	movz	x9, #0x8000, lsl #16\n"
    "	str	x9, [x22, #8]\n"
    "	bl	80f\n"
    "	movz	x9, #0x8400, lsl #16\n"
    "	str	x9, [x22, #8]\n"
    "	bl	80f\n"
    /* PSCI CPU_ON of MPIDR 1 at 70f with context UCALL; AFFINITY_INFO. */
    "	movz	x0, #0x0003\n"
    "	movk	x0, #0xc400, lsl #16\n"
    "	mov	x1, #1\n"
    "	adr	x2, 70f\n"
    "	mov	x3, x19\n"
    "	smc	#0\n"
    "	str	x0, [x19]\n"
    "	movz	x0, #0x0004\n"
    "	movk	x0, #0xc400, lsl #16\n"
    "	mov	x1, #1\n"
    "	mov	x2, #0\n"
    "	smc	#0\n"
    "	str	x0, [x19]\n"
    /* The virtual timer's PPI through the vGIC: wait for it, report it. */
    "	mov	w9, #2\n"			/* GICD_CTLR.EnableGrp1 */
    "	str	w9, [x20]\n"
    "	add	x10, x21, #0x10, lsl #12\n"	/* the SGI frame */
    "	mov	w9, #-1\n"
    "	str	w9, [x10, #0x80]\n"		/* GICR_IGROUPR0 */
    "	mov	w9, #(1 << 27)\n"
    "	str	w9, [x10, #0x100]\n"		/* GICR_ISENABLER0 */
    "	mov	x9, #0xff\n"
    "	msr	icc_pmr_el1, x9\n"
    "	mov	x9, #1\n"
    "	msr	icc_igrpen1_el1, x9\n"
    "	isb\n"
    "	mov	x23, #0\n"
    "	mov	x9, #0x1000\n"
    "	msr	cntv_tval_el0, x9\n"
    "	mov	x9, #1\n"
    "	msr	cntv_ctl_el0, x9\n"
    "	isb\n"
    /* WFI with IRQs masked wakes on a pending one, which is then taken. */
    "2:	wfi\n"
    "	msr	daifclr, #2\n"
    "	isb\n"
    "	msr	daifset, #2\n"
    "	cbz	x23, 2b\n"
    "	str	x23, [x19]\n"
    /* A read userspace answers with an external abort. */
    "	ldr	x9, [x19, #0x18]\n"
    "	mov	x9, #0xd0e\n"
    "	str	x9, [x19]\n"
    /* RIPAS of [0x4000, 0x6000) to EMPTY, then RAM: each set and read back. */
    "	mov	x23, #0\n"
    "5:	movz	x0, #0x0197\n"			/* RSI_IPA_STATE_SET */
    "	movk	x0, #0xc400, lsl #16\n"
    "	mov	x1, #0x4000\n"
    "	mov	x2, #0x6000\n"
    "	mov	x3, x23\n"
    "	mov	x4, #0\n"
    "	smc	#0\n"
    "	str	x0, [x19]\n"
    "	str	x1, [x19]\n"
    "	str	x2, [x19]\n"
    "	movz	x0, #0x0198\n"			/* RSI_IPA_STATE_GET */
    "	movk	x0, #0xc400, lsl #16\n"
    "	mov	x1, #0x4000\n"
    "	mov	x2, #0x6000\n"
    "	smc	#0\n"
    "	str	x0, [x19]\n"
    "	str	x2, [x19]\n"
    "	add	x23, x23, #1\n"
    "	cmp	x23, #2\n"
    "	b.lo	5b\n"
    /* RIPAS RAM over the memslot's last page and the page past it. */
    "	movz	x0, #0x0197\n"			/* RSI_IPA_STATE_SET */
    "	movk	x0, #0xc400, lsl #16\n"
    "	mov	x1, #0xf000\n"
    "	movz	x2, #0x1000\n"
    "	movk	x2, #0x1, lsl #16\n"
    "	mov	x3, #1\n"
    "	mov	x4, #0\n"
    "	smc	#0\n"
    "	str	x0, [x19]\n"
    "	str	x1, [x19]\n"
    "	str	x2, [x19]\n"
    /* PSCI SYSTEM_OFF. */
    "	movz	x0, #0x0008\n"
    "	movk	x0, #0x8400, lsl #16\n"
    "	smc	#0\n"
    "3:	b	3b\n"
    /* RSI_HOST_CALL with the struct at x22; reports x0, gprs[0..3, 30]. */
    "80:	movz	x0, #0x0199\n"
    "	movk	x0, #0xc400, lsl #16\n"
    "	mov	x1, x22\n"
    "	smc	#0\n"
    "	str	x0, [x19]\n"
    "	ldr	x9, [x22, #8]\n"
    "	str	x9, [x19]\n"
    "	ldr	x9, [x22, #16]\n"
    "	str	x9, [x19]\n"
    "	ldr	x9, [x22, #24]\n"
    "	str	x9, [x19]\n"
    "	ldr	x9, [x22, #32]\n"
    "	str	x9, [x19]\n"
    "	ldr	x9, [x22, #248]\n"
    "	str	x9, [x19]\n"
    "	ret\n"
    /* vCPU 1, from CPU_ON: x0 is the context (UCALL). */
    "70:	movz	x9, #0xbeef\n"
    "	movk	x9, #0xc0fe, lsl #16\n"
    "	str	x9, [x0, #0x10]\n"
    "4:	wfi\n"
    "	b	4b\n"
    /* Vectors: sync reports ESR_EL1 and skips the instruction; IRQ acks. */
    ".balign 2048\n"
    "90:	.skip 0x200\n"
    "	mrs	x9, esr_el1\n"
    "	str	x9, [x19, #0x20]\n"
    "	mrs	x9, elr_el1\n"
    "	add	x9, x9, #4\n"
    "	msr	elr_el1, x9\n"
    "	eret\n"
    ".balign 0x80\n"
    "	mrs	x23, icc_iar1_el1\n"
    "	msr	cntv_ctl_el0, xzr\n"
    "	msr	icc_eoir1_el1, x23\n"
    "	isb\n"
    "	eret\n"
    ".balign 4096\n"
    "95:	.skip 4096\n"
    "run_guest_end:\n"
    ".popsection\n");
extern const char run_guest[], run_guest_end[];

/* The realm: its fds and kvm_run pages, and what building it saw. */
struct realm_vm {
	int kvm;
	struct guest_realm g;
	struct kvm_run *run[2];
	/* ID_AA64DFR0_EL1 as shown, then with WRPs lowered to 1 (2 watchpoints). */
	__u64 dfr0, dfr0_lowered;
	/* Getting it, setting it before the RD exists, and after. */
	int dfr0_get, dfr0_set, dfr0_set_late;
};

/* vCPU 1's KVM_RUN, on its own thread. */
struct secondary {
	struct realm_vm *r;
	pthread_t thread;
	int ret;
	bool done;
};

static void on_usr1(int sig)
{
	(void)sig;
}

static void *secondary_run(void *arg)
{
	struct secondary *s = arg;
	sigset_t alrm;

	/* vCPU 0's bounded runs use SIGALRM: keep it off this thread. */
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &alrm, NULL);
	s->ret = ioctl(s->r->g.vcpu[1], KVM_RUN, 0) ? -errno : 0;
	__atomic_store_n(&s->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/* Waits up to `seconds` for vCPU 1's run, then interrupts it. */
static void secondary_join(struct secondary *s, int seconds)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += seconds;
	if (pthread_timedjoin_np(s->thread, NULL, &until)) {
		pthread_kill(s->thread, SIGUSR1);
		pthread_join(s->thread, NULL);
	}
}

/* Builds the realm with the guest, the filter and both vCPUs: 0 or -errno. */
static int realm_build(struct realm_vm *r)
{
	struct kvm_smccc_filter filter = {
		.base = HOST_CALL_FID, .nr_functions = 1,
		.action = KVM_SMCCC_FILTER_FWD_TO_USER,
	};
	int ret;

	ret = guest_realm_open(&r->g, r->kvm, IPA_BITS);
	for (int i = 0; !ret && i < 2; i++) {
		ret = guest_realm_add_vcpu(&r->g, i, i ? 1u << KVM_ARM_VCPU_POWER_OFF : 0);
		r->run[i] = ret ? NULL : vcpu_run_map(r->kvm, r->g.vcpu[i]);
		if (!ret && !r->run[i])
			ret = -ENOMEM;
	}
	if (ret)
		return ret;
	/* Breakpoints and watchpoints: lowered before the RD exists, not after. */
	r->dfr0_get = get_reg(r->g.vcpu[0], ID_AA64DFR0_EL1, &r->dfr0);
	r->dfr0_set = set_reg(r->g.vcpu[0], ID_AA64DFR0_EL1,
			      (r->dfr0 & ~(0xfULL << 20)) | 1ULL << 20);
	get_reg(r->g.vcpu[0], ID_AA64DFR0_EL1, &r->dfr0_lowered);
	/* Populating creates the RD. */
	ret = guest_realm_code(&r->g, SLOT_BYTES, run_guest, run_guest_end) ?:
	      device_attr(r->g.vm, KVM_ARM_VM_SMCCC_CTRL, KVM_ARM_VM_SMCCC_FILTER, &filter);
	if (ret)
		return ret;
	r->dfr0_set_late = set_reg(r->g.vcpu[0], ID_AA64DFR0_EL1, r->dfr0_lowered);
	return vgic_v3_init(r->g.gic) ?:
	       set_reg(r->g.vcpu[0], xreg(0), UNPROTECTED | UCALL) ?:
	       set_reg(r->g.vcpu[0], xreg(1), UNPROTECTED | GICD_BASE) ?:
	       set_reg(r->g.vcpu[0], xreg(2), UNPROTECTED | GICR_BASE);
}

static void realm_free(struct realm_vm *r)
{
	for (int i = 0; i < 2; i++)
		vcpu_run_unmap(r->kvm, r->run[i]);
	guest_realm_close(&r->g);
}

/* Runs vCPU 0 to its next exit. */
static bool run0(struct realm_vm *r)
{
	return step(r->g.vcpu[0]);
}

/* Runs vCPU 0 to a write of `want` at `gpa` (8 bytes): true if it was. */
static bool expect_write(struct realm_vm *r, __u64 gpa, __u64 want)
{
	return step_write(r->g.vcpu[0], r->run[0], gpa, want);
}

/* Runs vCPU 0 to a read of `len` bytes at `gpa` and answers `value`. */
static bool answer_read(struct realm_vm *r, __u64 gpa, __u32 len, __u64 value)
{
	struct kvm_run *run = r->run[0];

	if (!run0(r))
		return false;
	if (!is_mmio(run, gpa, len, false)) {
		snprintf(why, sizeof(why), "exit %u (MMIO %s of %u at 0x%llx); wanted a read of %u at 0x%llx",
			 run->exit_reason, run->mmio.is_write ? "write" : "read", run->mmio.len,
			 (unsigned long long)run->mmio.phys_addr, len, (unsigned long long)gpa);
		lost = true;
		return false;
	}
	memcpy(run->mmio.data, &value, sizeof(value));
	return true;
}

/* The five reports of a host call: x0, gprs[0..3] and gprs[30]. */
static bool expect_host_call_reports(struct realm_vm *r, const __u64 want[6])
{
	for (int i = 0; i < 6; i++)
		if (!expect_write(r, REPORT, want[i]))
			return false;
	return true;
}

/* KVM_ARM_VCPU_INIT of `vcpu` with the preferred target and `features`. */
static int init_with(struct realm_vm *r, int vcpu, __u32 features)
{
	struct kvm_vcpu_init init;

	if (ioctl(r->g.vm, KVM_ARM_PREFERRED_TARGET, &init))
		return -errno;
	init.features[0] = features;
	return ioctl(vcpu, KVM_ARM_VCPU_INIT, &init) ? -errno : 0;
}

/* A core register id from its 32-bit word offset in struct kvm_regs. */
static __u64 core_reg(unsigned int word)
{
	return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | word;
}

/* KVM_GET_REG_LIST: x0..x30 and pc, each readable; too small a list E2BIG. */
static void test_reg_list(struct realm_vm *r)
{
	struct {
		struct kvm_reg_list head;
		__u64 ids[64];
	} list = { .head.n = 64 };
	struct kvm_reg_list small = { .n = 1 };
	int ret = ioctl(r->g.vcpu[0], KVM_GET_REG_LIST, &list) ? -errno : 0;
	int e2big = ioctl(r->g.vcpu[0], KVM_GET_REG_LIST, &small) ? -errno : 0;
	bool ok = !ret && list.head.n == 33 && e2big == -E2BIG && small.n == 33;

	for (unsigned int i = 0; ok && i < 31; i++)
		ok = list.ids[i] == xreg(i);
	ok = ok && list.ids[31] == core_reg(KVM_REG_ARM_CORE_REG(regs.pc)) &&
	     list.ids[32] == ID_AA64DFR0_EL1;
	for (unsigned int i = 0; ok && i < 33; i++) {
		__u64 v;

		ok = !get_reg(r->g.vcpu[0], list.ids[i], &v);
	}
	ksft_test_result(ok, "KVM_GET_REG_LIST: %d, %llu ids (want 33: x0..x30, pc, ID_AA64DFR0_EL1, all readable); n = 1: %d (want E2BIG)\n",
			 ret, (unsigned long long)list.head.n, e2big);
}

/* The RMM's breakpoints and watchpoints, from the module's load log. */
static long rmm_bps = -1, rmm_wps = -1;
static bool rmm_sve;

/* The number before `what` ("N BPs") in `line`, or -1. */
static long count_before(const char *line, const char *what)
{
	const char *p = strstr(line, what);

	if (!p)
		return -1;
	while (p > line && p[-1] != ' ')
		p--;
	return strtol(p, NULL, 10);
}

static void read_rmm_debug(int kmsg)
{
	char lines[16][256];
	int n = kmsg_module_lines(kmsg, lines, 16);

	for (int i = 0; i < n && i < 16; i++) {
		if (!strstr(lines[i], "RMM features:"))
			continue;
		rmm_bps = count_before(lines[i], " BPs");
		rmm_wps = count_before(lines[i], " WPs");
		rmm_sve = strstr(lines[i], "SVE yes");
	}
}

/*
 * KVM_ARM_GET_REG_WRITABLE_MASKS, how VMMs learn which ID register fields
 * they may lower: offered to realms, with ID_AA64DFR0_EL1.WRPs writable.
 */
static void test_writable_masks(struct realm_vm *r)
{
	static __u64 masks[KVM_ARM_FEATURE_ID_RANGE_SIZE];
	struct reg_mask_range range = { .addr = (unsigned long)masks };
	int cap = ioctl(r->g.vm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES);
	int ret = ioctl(r->g.vm, KVM_ARM_GET_REG_WRITABLE_MASKS, &range) ? -errno : 0;
	__u64 dfr0 = masks[KVM_ARM_FEATURE_ID_RANGE_IDX(3, 0, 0, 5, 0)];

	ksft_test_result(cap == 1 << KVM_ARM_FEATURE_ID_RANGE && !ret && (dfr0 >> 20 & 0xf) == 0xf,
			 "KVM_ARM_GET_REG_WRITABLE_MASKS: capability %d, ioctl %d, ID_AA64DFR0_EL1 mask %#llx (want WRPs)\n",
			 cap, ret, (unsigned long long)dfr0);
}

/* Breakpoints and watchpoints: at most the RMM's, lowered until the RD exists. */
static void test_debug_resources(struct realm_vm *r)
{
	unsigned int brps = (r->dfr0 >> 12) & 0xf, wrps = (r->dfr0 >> 20) & 0xf;
	unsigned int ctx = (r->dfr0 >> 28) & 0xf;

	ksft_test_result(!r->dfr0_get && rmm_bps > 0 && rmm_wps > 0 && brps + 1 <= rmm_bps &&
			 wrps + 1 <= rmm_wps && ctx <= brps,
			 "ID_AA64DFR0_EL1 of a realm: %u breakpoints (%u context-aware), %u watchpoints; the RMM offers %ld, %ld\n",
			 brps + 1, ctx + 1, wrps + 1, rmm_bps, rmm_wps);
	ksft_test_result(!r->dfr0_set && ((r->dfr0_lowered >> 20) & 0xf) == 1 &&
			 r->dfr0_set_late == -EPERM,
			 "ID_AA64DFR0_EL1 watchpoints lowered to 2 before the RD: %d, read back %llu; once populated: %d (want EPERM)\n",
			 r->dfr0_set, (unsigned long long)((r->dfr0_lowered >> 20) & 0xf) + 1,
			 r->dfr0_set_late);
	test_writable_masks(r);
}

/* What a realm vCPU refuses before the realm runs. */
static void test_limits_before_run(struct realm_vm *r)
{
	test_debug_resources(r);
	struct kvm_vcpu_events serror = { .exception.serror_pending = 1 };
	struct kvm_vcpu_events dabt = { .exception.ext_dabt_pending = 1 };
	const __u32 psci = 1u << KVM_ARM_VCPU_PSCI_0_2;
	int sp = set_reg(r->g.vcpu[0], core_reg(KVM_REG_ARM_CORE_REG(regs.sp)), 0);
	int pstate = set_reg(r->g.vcpu[0], core_reg(KVM_REG_ARM_CORE_REG(regs.pstate)), 0x3c5);
	int x7 = set_reg(r->g.vcpu[0], xreg(7), 7);
	int pc = set_reg(r->g.vcpu[0], core_reg(KVM_REG_ARM_CORE_REG(regs.pc)), 0);
	int ev_serror = ioctl(r->g.vcpu[0], KVM_SET_VCPU_EVENTS, &serror) ? -errno : 0;
	int ev_dabt = ioctl(r->g.vcpu[0], KVM_SET_VCPU_EVENTS, &dabt) ? -errno : 0;
	int aarch32 = init_with(r, r->g.vcpu[0], psci | 1u << KVM_ARM_VCPU_EL1_32BIT);
	int el2 = init_with(r, r->g.vcpu[0], psci | 1u << KVM_ARM_VCPU_HAS_EL2);
	int pmu = init_with(r, r->g.vcpu[0], psci | 1u << KVM_ARM_VCPU_PMU_V3);
	int sve = init_with(r, r->g.vcpu[0], psci | 1u << KVM_ARM_VCPU_SVE);
	int no_psci = init_with(r, r->g.vcpu[0], 0);

	ksft_test_result(sp == -EINVAL && pstate == -EINVAL && !x7 && !pc,
			 "KVM_SET_ONE_REG before the first run: sp %d, pstate %d (want EINVAL), x7 %d, pc %d (want 0)\n",
			 sp, pstate, x7, pc);
	ksft_test_result(ev_serror == -EINVAL && ev_dabt == -EINVAL,
			 "KVM_SET_VCPU_EVENTS: SError %d, external abort without an MMIO exit %d (want EINVAL)\n",
			 ev_serror, ev_dabt);
	ksft_test_result(aarch32 == -EINVAL && el2 == -EINVAL && pmu == -EINVAL && sve == -EINVAL &&
			 no_psci == -EINVAL,
			 "KVM_ARM_VCPU_INIT refused: AArch32 %d, EL2 %d, PMU %d, SVE in a realm made without %d, no PSCI 0.2 %d (want EINVAL)\n",
			 aarch32, el2, pmu, sve, no_psci);
	test_reg_list(r);
	ksft_test_result(ioctl(r->g.vm, KVM_CHECK_EXTENSION, KVM_CAP_VCPU_EVENTS) == 1 &&
			 ioctl(r->g.vm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_SVE) ==
				 (rmm_sve && ioctl(r->kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_SVE) > 0) &&
			 ioctl(r->g.vm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_INJECT_EXT_DABT) == 0 &&
			 ioctl(r->g.vm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_NISV_TO_USER) == 0,
			 "realm capabilities: VCPU_EVENTS, ARM_SVE if both the RMM (%d) and KVM have it, no INJECT_EXT_DABT or NISV_TO_USER\n",
			 rmm_sve);
}

/* What a realm vCPU refuses once the realm is active. */
static void test_limits_after_activation(struct realm_vm *r)
{
	int pc = set_reg(r->g.vcpu[0], core_reg(KVM_REG_ARM_CORE_REG(regs.pc)), 0);
	int x9 = set_reg(r->g.vcpu[0], xreg(9), 9);
	/* vCPU 1 sits in KVM_RUN (holding its mutex) until CPU_ON. */
	int reinit = init_with(r, r->g.vcpu[0], 1u << KVM_ARM_VCPU_PSCI_0_2);

	ksft_test_result(pc == -EPERM && !x9 && reinit == -EBUSY,
			 "after activation: KVM_SET_ONE_REG pc %d (want EPERM), x9 %d (want 0); KVM_ARM_VCPU_INIT again %d (want EBUSY)\n",
			 pc, x9, reinit);
}

static void test_mmio(struct realm_vm *r)
{
	report(expect_write(r, REPORT, 0x1111),
	       "MMIO write through the unprotected alias: KVM_EXIT_MMIO at the stripped IPA");
	report(answer_read(r, SOURCE, 8, 0x0123456789abcdefULL) &&
	       expect_write(r, REPORT, 0x0123456789abcdefULL) &&
	       answer_read(r, SOURCE, 4, 0xffffffff89abcdefULL) &&
	       expect_write(r, REPORT, 0x89abcdefULL),
	       "MMIO reads: 8 bytes, and 4 bytes zero-extended, reach the guest");
}

static void test_host_calls(struct realm_vm *r)
{
	struct kvm_run *run = r->run[0];
	const __u64 forwarded[6] = { 0, 0xa0, 0xa1, 0xa2, 0xa3, 0x11e };
	const __u64 version[6] = { 0, SMCCC_VERSION_1_1, 0, 0, 0, 0x11e };
	const __u64 psci[6] = { 0, SMCCC_NOT_SUPPORTED, 0, 0, 0, 0x11e };
	bool ok = run0(r);

	if (ok && (run->exit_reason != KVM_EXIT_HYPERCALL || run->hypercall.nr != HOST_CALL_FID)) {
		snprintf(why, sizeof(why), "exit %u (nr 0x%llx); wanted KVM_EXIT_HYPERCALL 0x%x",
			 run->exit_reason, (unsigned long long)run->hypercall.nr, HOST_CALL_FID);
		lost = true;
		ok = false;
	}
	for (int n = 1; ok && n < 31; n++) {
		__u64 v = 0;
		int ret = get_reg(r->g.vcpu[0], xreg(n), &v);

		if (ret || v != 0x100u + n) {
			snprintf(why, sizeof(why), "x%d is 0x%llx (%d), not 0x%x", n,
				 (unsigned long long)v, ret, 0x100 + n);
			lost = true;
			ok = false;
		}
	}
	for (int n = 0; ok && n < 4; n++) {
		int ret = set_reg(r->g.vcpu[0], xreg(n), 0xa0 + n);

		if (ret) {
			snprintf(why, sizeof(why), "setting x%d: %s", n, strerror(-ret));
			lost = true;
			ok = false;
		}
	}
	report(ok && expect_host_call_reports(r, forwarded),
	       "host call in the SMCCC filter: KVM_EXIT_HYPERCALL with gprs 1..30, x0..x3 set by the VMM come back");
	report(expect_host_call_reports(r, version),
	       "host call answered by KVM without an exit: SMCCC_VERSION 1.1");
	report(expect_host_call_reports(r, psci),
	       "host call with a PSCI function: NOT_SUPPORTED");
}

static void test_psci(struct realm_vm *r, struct secondary *s)
{
	struct kvm_run *run1 = r->run[1];
	bool on = expect_write(r, REPORT, 0) && expect_write(r, REPORT, 0);
	bool ran;

	/* vCPU 1 reports once the guest's CPU_ON made it runnable. */
	secondary_join(s, on ? 10 : 0);
	ran = s->ret == 0 && is_mmio(run1, SECONDARY, 8, true) &&
	      mmio_data(run1) == SECONDARY_MAGIC;
	if (on && !ran)
		ksft_print_msg("vCPU 1: KVM_RUN %d, exit %u, MMIO 0x%llx data 0x%llx\n", s->ret,
			       run1->exit_reason, (unsigned long long)run1->mmio.phys_addr,
			       (unsigned long long)mmio_data(run1));
	report(on && ran,
	       "PSCI CPU_ON: SUCCESS, vCPU 1 runs at the entry with the context in x0; AFFINITY_INFO: ON");
}

static void test_timer(struct realm_vm *r)
{
	report(expect_write(r, REPORT, VTIMER_INTID),
	       "virtual timer interrupt taken through the vGIC (INTID 27), waiting in WFI");
}

static void test_abort(struct realm_vm *r)
{
	struct kvm_vcpu_events events = { .exception.ext_dabt_pending = 1 };
	struct kvm_run *run = r->run[0];
	bool ok = answer_read(r, ABORTED, 8, 0);
	__u64 esr;

	if (ok && ioctl(r->g.vcpu[0], KVM_SET_VCPU_EVENTS, &events)) {
		snprintf(why, sizeof(why), "KVM_SET_VCPU_EVENTS: %s", strerror(errno));
		lost = true;
		ok = false;
	}
	ok = ok && run0(r);
	esr = ok && is_mmio(run, EXCEPTION, 8, true) ? mmio_data(run) : 0;
	if (ok && (esr >> 26 != 0x25 || (esr & 0x3f) != 0x10)) {
		snprintf(why, sizeof(why), "exit %u, ESR_EL1 0x%llx; wanted a synchronous external data abort",
			 run->exit_reason, (unsigned long long)esr);
		lost = true;
		ok = false;
	}
	report(ok && expect_write(r, REPORT, AFTER_ABORT),
	       "KVM_SET_VCPU_EVENTS ext_dabt_pending after an MMIO read: the guest takes a synchronous external abort");
}

/* Runs vCPU 0 to a KVM_EXIT_MEMORY_FAULT (-EFAULT) for [gpa, gpa + size). */
static bool expect_memory_fault(struct realm_vm *r, __u64 gpa, __u64 size, bool private)
{
	return step_memory_fault(r->g.vcpu[0], r->run[0], gpa, size, private);
}

/*
 * RSI_IPA_STATE_SET of [0x4000, 0x6000): the VMM sees a memory fault
 * (shared for EMPTY, private for RAM), gets the range ready and re-enters;
 * the guest sees the change done and reads the RIPAS back.
 */
static void test_ripas(struct realm_vm *r)
{
	/* x0 SUCCESS, x1 the top reached, x2 ACCEPT; then STATE_GET x0, x2 = RIPAS. */
	const __u64 to_empty[5] = { 0, 0x6000, 0, 0, 0 }, to_ram[5] = { 0, 0x6000, 0, 0, 1 };
	bool ok = expect_memory_fault(r, 0x4000, 0x2000, false);
	int punch;

	/* What a VMM does for EMPTY: discard the private copy. */
	punch = ok ? fallocate(r->g.gmem, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0x4000, 0x2000) : 0;
	if (punch) {
		snprintf(why, sizeof(why), "hole punch: %s", strerror(errno));
		lost = true;
		ok = false;
	}
	for (int i = 0; ok && i < 5; i++)
		ok = expect_write(r, REPORT, to_empty[i]);
	report(ok, "RIPAS to EMPTY: KVM_EXIT_MEMORY_FAULT (shared), then done: the guest reads EMPTY");
	ok = expect_memory_fault(r, 0x4000, 0x2000, true);
	for (int i = 0; ok && i < 5; i++)
		ok = expect_write(r, REPORT, to_ram[i]);
	report(ok, "RIPAS back to RAM: KVM_EXIT_MEMORY_FAULT (private), then done: the guest reads RAM");
}

/* The realm's debugfs info value `key`, or -1. */
static long long realm_info(const char *key)
{
	char file[64];
	long long id;

	if (krmi_realms(&id) != 1)
		return -1;
	snprintf(file, sizeof(file), "realms/%lld/info", id);
	return krmi_debugfs_value(file, key);
}

/*
 * RSI_IPA_STATE_SET of RAM over [0xf000, 0x11000), half past the memslot:
 * the host rejects it without an exit to the VMM; the guest sees SUCCESS,
 * nothing done (x1 = base) and REJECT (x2 = 1).
 */
static void test_ripas_outside_memory(struct realm_vm *r)
{
	const __u64 rejected[3] = { 0, 0xf000, 1 };
	long long before = realm_info("ripas_rejected");
	bool ok = !lost;

	for (int i = 0; ok && i < 3; i++)
		ok = expect_write(r, REPORT, rejected[i]);
	if (ok && realm_info("ripas_rejected") != before + 1) {
		snprintf(why, sizeof(why), "ripas_rejected %lld -> %lld", before,
			 realm_info("ripas_rejected"));
		lost = true;
		ok = false;
	}
	report(ok, "RIPAS RAM past the memslot's end: rejected without a VMM exit, counted");
}

static void test_system_off(struct realm_vm *r)
{
	bool ok = run0(r) && exited_off(r->run[0]);

	if (!ok && !lost) {
		snprintf(why, sizeof(why), "exit %u", r->run[0]->exit_reason);
		lost = true;
	}
	report(ok, "PSCI SYSTEM_OFF: KVM_EXIT_SYSTEM_EVENT shutdown");
}

int main(void)
{
	struct realm_vm r = { .g = GUEST_REALM_INIT };
	struct sigaction usr1 = { .sa_handler = on_usr1 };
	struct secondary s = { .r = &r, .ret = -EINPROGRESS };
	bool threaded;
	int kmsg, ret;

	ksft_print_header();
	if (!rmm_present())
		ksft_exit_skip("needs an RMM (KRMI_RME=1)\n");
	ksft_set_plan(24);
	kmsg = kmsg_open();
	ret = module_load();
	read_rmm_debug(kmsg);
	if (ret)
		ksft_exit_fail_msg("cannot load " MODULE_NAME ": %s\n", strerror(-ret));
	r.kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (r.kvm < 0)
		ksft_exit_fail_msg("/dev/kvm: %s\n", strerror(errno));
	ret = realm_build(&r);
	ksft_test_result(!ret, "realm with 2 vCPUs, a vGICv3, the SMCCC filter and the guest (%d)\n",
			 ret);
	/* Before vCPU 1's thread: its first KVM_RUN activates the realm. */
	if (!ret)
		test_limits_before_run(&r);
	else
		for (int i = 0; i < 8; i++)
			ksft_test_result_fail("limits before the first run: no realm\n");
	sigaction(SIGUSR1, &usr1, NULL);
	threaded = !ret && !pthread_create(&s.thread, NULL, secondary_run, &s);
	if (!threaded) {
		lost = true;
		snprintf(why, sizeof(why), "no realm");
	}
	test_mmio(&r);
	test_limits_after_activation(&r);
	test_host_calls(&r);
	if (threaded)
		test_psci(&r, &s);
	else
		report(false, "PSCI CPU_ON");
	test_timer(&r);
	test_abort(&r);
	test_ripas(&r);
	test_ripas_outside_memory(&r);
	test_system_off(&r);
	realm_free(&r);
	close(r.kvm);
	ksft_test_result(module_unload() == 0, "unload\n");
	{
		char lines[MAX_LINES][256];
		int n = kmsg_module_lines(kmsg, lines, MAX_LINES);

		ksft_test_result(!bad_lines(lines, n), "no failure, leak, death or GPF logged\n");
	}
	close(kmsg);
	ksft_finished();
}
