// SPDX-License-Identifier: GPL-2.0
/*
 * `make bench` (guest side, with an RMM), two Markdown tables; not a test.
 *
 * 1. KVM_ARM_RMI_POPULATE throughput and RMI calls per page, uninterrupted
 *    and under a 50 Hz and a 1 kHz interval timer (SIGALRM, the VMM
 *    calling again until done), against filling a normal VM's guest_memfd
 *    with the same bytes in the same run. The realm's first page is
 *    populated before the measurement, so that the realm's creation (RD,
 *    root RTTs) is not counted; RTTs created on demand are. The RMI calls
 *    come from debugfs kvm_rmi/rmi_calls, the time inside them from
 *    kvm_rmi/rmi_time; the rest is the host's own.
 * 2. The exit round trip to userspace and back: a realm guest's host call
 *    that the SMCCC filter forwards (KVM_EXIT_HYPERCALL), against a normal
 *    VM guest's HVC to the same function, both with a vGICv3; and what the
 *    VMM's first touch of a page costs right after each exit, against a
 *    second touch (QEMU's TCG empties the TLB below EL3 whenever EL3
 *    switches worlds, which every RMI call does).
 *
 * KRMI_CLOCK=icount (QEMU -icount shift=0) says the clocks count
 * instructions, 1 ns each: the tables then show thousands of instructions
 * where they say us.
 */
#define _GNU_SOURCE

#include "../testing/selftests/kvm-rmi/krmi_mem.h"
#include "../testing/selftests/kvm-rmi/krmi_guest.h"

#define BENCH_SIZE (64ULL << 20)

/* The `total` line of kvm_rmi/rmi_calls, or -1. */
static long long rmi_calls_total(void)
{
	FILE *f = fopen("/sys/kernel/debug/kvm_rmi/rmi_calls", "r");
	char name[64];
	long long n, total = -1;

	if (!f)
		return -1;
	while (fscanf(f, "%63s %lld", name, &n) == 2)
		if (!strcmp(name, "total"))
			total = n;
	fclose(f);
	return total;
}

/* `calls` and `ns` of debugfs kvm_rmi/`file`: 0, or -1 if unreadable. */
static int call_time(const char *file, long long *calls, long long *ns)
{
	char path[128];
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "/sys/kernel/debug/kvm_rmi/%s", file);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fscanf(f, "calls %lld ns %lld", calls, ns);
	fclose(f);
	return n == 2 ? 0 : -1;
}

/* `calls` and `ns` of kvm_rmi/rec_enter: 0, or -1 if unreadable. */
static int rec_enter_stat(long long *calls, long long *ns)
{
	return call_time("rec_enter", calls, ns);
}

static void on_tick(int sig)
{
	(void)sig;
}

static int create_gmem(int vm, __u64 size, __u64 flags)
{
	struct kvm_create_guest_memfd gmem = { .size = size, .flags = flags };

	return ioctl(vm, KVM_CREATE_GUEST_MEMFD, &gmem);
}

/* One populate of all but the first page of a realm's gmem slot. */
struct populated {
	double secs;		/* wall clock */
	double rmi_secs;	/* inside RMI calls */
	long long calls;	/* RMI calls */
	int ioctls;
};

/*
 * Populates all but the first page of a realm's gmem slot with `flags`,
 * under a `hz` timer (0: none).
 */
static struct populated realm_populate(int kvm, const char *src, __u32 flags, int hz)
{
	int vm = ioctl(kvm, KVM_CREATE_VM, KVM_VM_TYPE_ARM_REALM), gmem;
	char *shared = map_anon(BENCH_SIZE);
	long long before, calls0, ns0, calls1, ns1;
	struct kvm_arm_rmi_populate args;
	struct populated p = { 0 };
	double t;
	int ret;

	if (vm < 0)
		ksft_exit_fail_msg("realm VM: %s\n", strerror(errno));
	gmem = create_gmem(vm, BENCH_SIZE, 0);
	if (gmem < 0 || set_slot(vm, 0, KVM_MEM_GUEST_MEMFD, 0, BENCH_SIZE, shared, gmem))
		ksft_exit_fail_msg("realm memslot: %s\n", strerror(errno));
	args = req(0, PAGE, (unsigned long)src, flags);
	if (populate(vm, &args))
		ksft_exit_fail_msg("first page: %s\n", strerror(errno));
	args = req(PAGE, BENCH_SIZE - PAGE, (unsigned long)src + PAGE, flags);
	before = rmi_calls_total();
	if (call_time("rmi_time", &calls0, &ns0))
		ksft_exit_fail_msg("kvm_rmi/rmi_time unreadable\n");
	krmi_timer_start(hz, on_tick);
	t = krmi_now();
	do {
		ret = populate(vm, &args);
		p.ioctls++;
	} while ((!ret || ret == -EINTR) && args.size);
	p.secs = krmi_now() - t;
	krmi_timer_start(0, on_tick);
	if (ret || args.size)
		ksft_exit_fail_msg("populate: %d, %llu bytes left\n", ret, args.size);
	p.calls = rmi_calls_total() - before;
	if (call_time("rmi_time", &calls1, &ns1))
		ksft_exit_fail_msg("kvm_rmi/rmi_time unreadable\n");
	p.rmi_secs = (ns1 - ns0) / 1e9;
	close(gmem);
	close(vm);
	munmap(shared, BENCH_SIZE);
	return p;
}

/* Seconds to copy the same bytes into a normal VM's guest_memfd, once. */
static double normal_fill(int kvm, const char *src)
{
	int vm = ioctl(kvm, KVM_CREATE_VM, 0), gmem;
	char *dst;
	double t;

	if (vm < 0)
		ksft_exit_fail_msg("normal VM: %s\n", strerror(errno));
	gmem = create_gmem(vm, BENCH_SIZE, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
	if (gmem < 0)
		ksft_exit_fail_msg("guest_memfd: %s\n", strerror(errno));
	dst = mmap(NULL, BENCH_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, gmem, 0);
	if (dst == MAP_FAILED)
		ksft_exit_fail_msg("mmap guest_memfd: %s\n", strerror(errno));
	t = krmi_now();
	memcpy(dst, src, BENCH_SIZE);
	t = krmi_now() - t;
	munmap(dst, BENCH_SIZE);
	close(gmem);
	close(vm);
	return t;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The median of FILLS normal_fill() runs: one alone varies by up to 20%. */
#define FILLS 5
static double normal_fill_median(int kvm, const char *src)
{
	double t[FILLS];

	for (int i = 0; i < FILLS; i++)
		t[i] = normal_fill(kvm, src);
	qsort(t, FILLS, sizeof(t[0]), cmp_double);
	return t[FILLS / 2];
}

/* Exits timed per VM, after as many to warm up. */
#define EXITS 4000
#define EXIT_FID 0xc3000001u	/* an OEM service function */

/* Realm guest: RSI_HOST_CALL of EXIT_FID, forever; page 1 is the struct. */
asm(".pushsection .rodata.bench_guests, \"a\"\n"
    ".balign 4096\n"
    ".globl bench_realm_guest, bench_realm_guest_end, bench_normal_guest, bench_normal_guest_end\n"
    ".hidden bench_realm_guest, bench_realm_guest_end, bench_normal_guest, bench_normal_guest_end\n"
    "bench_realm_guest:\n"
    "	adr	x22, 95f\n"
    "	str	wzr, [x22]\n"
    "	movz	x9, #0x0001\n"
    "	movk	x9, #0xc300, lsl #16\n"
    "	str	x9, [x22, #8]\n"
    "1:	movz	x0, #0x0199\n"
    "	movk	x0, #0xc400, lsl #16\n"
    "	mov	x1, x22\n"
    "	smc	#0\n"
    "	b	1b\n"
    ".balign 4096\n"
    "95:	.skip 4096\n"
    "bench_realm_guest_end:\n"
    /* Normal guest: HVC to EXIT_FID, forever. */
    "bench_normal_guest:\n"
    "1:	movz	x0, #0x0001\n"
    "	movk	x0, #0xc300, lsl #16\n"
    "	hvc	#0\n"
    "	b	1b\n"
    "bench_normal_guest_end:\n"
    ".popsection\n");
extern const char bench_realm_guest[], bench_realm_guest_end[];
extern const char bench_normal_guest[], bench_normal_guest_end[];

/* Pages the VMM touches after an ioctl, one load each. */
#define TOUCH_PAGES 64

/* Seconds to load a byte of each of TOUCH_PAGES pages of `buf`. */
static double touch_pages(const volatile char *buf)
{
	double t = krmi_now();

	for (int i = 0; i < TOUCH_PAGES; i++)
		(void)buf[i * PAGE];
	return krmi_now() - t;
}

/* Seconds per page of a VMM's first and second touch after an ioctl. */
struct touch_cost {
	double first, again;
};

#define TOUCHES 2000

/*
 * What touching TOUCH_PAGES pages costs the VMM right after an ioctl that
 * made RMI calls (a one-page KVM_ARM_RMI_POPULATE), and after one that made
 * none (KVM_CHECK_EXTENSION): TCG empties the TLB below EL3 whenever EL3
 * switches worlds, so after any RMI call the host's first touch of each
 * page, kernel or user, walks the page tables and the GPT again.
 */
static void touch_after_ioctl(int kvm, const char *src, struct touch_cost *after_rmi,
			      struct touch_cost *after_plain)
{
	int vm = ioctl(kvm, KVM_CREATE_VM, KVM_VM_TYPE_ARM_REALM), gmem;
	const __u64 size = (TOUCHES + 1) * PAGE;
	char *shared = map_anon(size), *buf = map_anon(TOUCH_PAGES * PAGE);
	struct kvm_arm_rmi_populate args;

	if (vm < 0)
		ksft_exit_fail_msg("realm VM: %s\n", strerror(errno));
	gmem = create_gmem(vm, size, 0);
	if (gmem < 0 || set_slot(vm, 0, KVM_MEM_GUEST_MEMFD, 0, size, shared, gmem))
		ksft_exit_fail_msg("realm memslot: %s\n", strerror(errno));
	memset(buf, 1, TOUCH_PAGES * PAGE);
	*after_rmi = *after_plain = (struct touch_cost){ 0 };
	for (int i = 0; i <= TOUCHES; i++) {
		args = req(i * PAGE, PAGE, (unsigned long)src, 0);
		if (populate(vm, &args) || args.size)
			ksft_exit_fail_msg("populate page %d: %s\n", i, strerror(errno));
		if (!i)
			continue;	/* the realm's creation */
		after_rmi->first += touch_pages(buf);
		after_rmi->again += touch_pages(buf);
		if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_RMI) < 0)
			ksft_exit_fail_msg("KVM_CHECK_EXTENSION: %s\n", strerror(errno));
		after_plain->first += touch_pages(buf);
		after_plain->again += touch_pages(buf);
	}
	after_rmi->first /= (double)TOUCHES * TOUCH_PAGES;
	after_rmi->again /= (double)TOUCHES * TOUCH_PAGES;
	after_plain->first /= (double)TOUCHES * TOUCH_PAGES;
	after_plain->again /= (double)TOUCHES * TOUCH_PAGES;
	close(gmem);
	close(vm);
	munmap(shared, size);
	munmap(buf, TOUCH_PAGES * PAGE);
}

/*
 * Seconds per exit of a VM (realm if `realm`) whose vCPU 0 hypercalls
 * EXIT_FID forever, forwarded to userspace by the SMCCC filter.
 */
static double exit_round_trip(int kvm, bool realm, double *in_rmm)
{
	long long calls0 = 0, ns0 = 0, calls1 = 0, ns1 = 0;
	struct kvm_smccc_filter filter = {
		.base = EXIT_FID, .nr_functions = 1, .action = KVM_SMCCC_FILTER_FWD_TO_USER,
	};
	unsigned long type = realm ? KVM_VM_TYPE_ARM_REALM | KVM_VM_TYPE_ARM_IPA_SIZE(40) : 0;
	int vm = ioctl(kvm, KVM_CREATE_VM, type), gmem = -1, gic, vcpu, ret;
	const __u64 size = 64 * 1024;
	void *mem = MAP_FAILED;
	struct kvm_run *run;
	double t = 0;

	if (vm < 0)
		ksft_exit_fail_msg("VM: %s\n", strerror(errno));
	if (realm) {
		ret = realm_code_slot(vm, size, bench_realm_guest, bench_realm_guest_end, &gmem,
				      &mem);
	} else {
		mem = map_anon(size);
		memcpy(mem, bench_normal_guest, bench_normal_guest_end - bench_normal_guest);
		ret = set_slot(vm, 0, 0, 0, size, mem, 0);
	}
	ret = ret ?: device_attr(vm, KVM_ARM_VM_SMCCC_CTRL, KVM_ARM_VM_SMCCC_FILTER, &filter);
	gic = ret ? ret : vgic_v3_create(vm);
	vcpu = gic < 0 ? gic : ioctl(vm, KVM_CREATE_VCPU, 0);
	if (ret || gic < 0 || vcpu < 0 || vcpu_init(vm, vcpu, 0) || vgic_v3_init(gic))
		ksft_exit_fail_msg("%s VM setup: %d %d %d %s\n", realm ? "realm" : "normal", ret,
				   gic, vcpu, strerror(errno));
	run = vcpu_run_map(kvm, vcpu);
	if (!run)
		ksft_exit_fail_msg("kvm_run: %s\n", strerror(errno));
	for (int i = 0; i < 2 * EXITS; i++) {
		if (i == EXITS) {
			rec_enter_stat(&calls0, &ns0);
			t = krmi_now();
		}
		ret = vcpu_run_bounded(vcpu, 10);
		if (ret || run->exit_reason != KVM_EXIT_HYPERCALL || run->hypercall.nr != EXIT_FID)
			ksft_exit_fail_msg("%s exit %d: KVM_RUN %d, exit %u\n",
					   realm ? "realm" : "normal", i, ret, run->exit_reason);
	}
	t = (krmi_now() - t) / EXITS;
	*in_rmm = 0;
	if (realm && !rec_enter_stat(&calls1, &ns1) && calls1 > calls0)
		*in_rmm = (ns1 - ns0) / 1e9 / (calls1 - calls0);
	vcpu_run_unmap(kvm, run);
	close(vcpu);
	close(gic);
	close(vm);
	if (gmem >= 0)
		close(gmem);
	munmap(mem, size);
	return t;
}

int main(void)
{
	double mib = BENCH_SIZE / (double)(1 << 20), normal_s;
	const char *clock = getenv("KRMI_CLOCK");
	__u64 pages = BENCH_SIZE / PAGE - 1;
	char *src;
	int kvm;

	clock = clock && *clock ? clock : "wall";

	kvm = open_kvm_unloaded();
	if (!rmm_present()) {
		printf("bench: no RMM (boot with RME_FIRMWARE)\n");
		return 4;
	}
	if (module_load())
		ksft_exit_fail_msg("cannot load " MODULE_NAME "\n");
	src = map_anon(BENCH_SIZE);
	for (__u64 i = 0; i < BENCH_SIZE; i += 8)
		*(__u64 *)(src + i) = i * 0x9e3779b97f4a7c15ULL;

	{
		struct {
			const char *what;
			__u32 flags;
			int hz;
			struct populated p;
		} rows[] = {
			{ "measured", KVM_ARM_RMI_POPULATE_FLAGS_MEASURE, 0 },
			{ "unmeasured", 0, 0 },
			{ "unmeasured, 50 Hz signals", 0, 50 },
			{ "unmeasured, 1 kHz signals", 0, 1000 },
		};
		double fill_us;

		/*
		 * Once each unmeasured first: the first VM to use a guest page
		 * pays for QEMU backing it (up to 35% more host time).
		 */
		(void)realm_populate(kvm, src, 0, 0);
		(void)normal_fill(kvm, src);
		for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
			rows[i].p = realm_populate(kvm, src, rows[i].flags, rows[i].hz);
		normal_s = normal_fill_median(kvm, src);
		fill_us = normal_s / pages * 1e6;
		printf("bench: clock %s%s\n", clock,
		       strcmp(clock, "icount") ? "" : " (1 instruction = 1 ns: us read as 1000 instructions)");
		printf("| realm populate | MiB | ioctls | s | MiB/s | vs uninterrupted | RMI calls/page | in RMI us/page | host side us/page | host side vs fill | goal |\n");
		printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
		for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
			const struct populated *p = &rows[i].p;
			const struct populated *base = rows[i].flags ? &rows[0].p : &rows[1].p;
			double host_us = (p->secs - p->rmi_secs) / pages * 1e6;

			printf("| %s | %.0f | %d | %.3f | %.1f | %.2fx | %.3f | %.1f | %.1f | %.2fx | %s |\n",
			       rows[i].what, mib, p->ioctls, p->secs, mib / p->secs,
			       base->secs / p->secs, (double)p->calls / pages,
			       p->rmi_secs / pages * 1e6, host_us, host_us / fill_us,
			       rows[i].hz == 50 ? ">= 0.5x; host <= 1.5x" : "host <= 1.5x");
		}
		printf("| normal VM guest_memfd fill (median of %d) | %.0f | - | %.3f | %.1f | - | - | - | %.1f | 1x | - |\n",
		       FILLS, mib, normal_s, mib / normal_s, fill_us);
	}
	{
		struct touch_cost rmi, plain;

		touch_after_ioctl(kvm, src, &rmi, &plain);
		printf("\n| VMM touching %d pages after an ioctl | first touch us/page | second touch us/page | refill us/page |\n",
		       TOUCH_PAGES);
		printf("|---|---|---|---|\n");
		printf("| one-page KVM_ARM_RMI_POPULATE (RMI calls) | %.3f | %.3f | %.3f |\n",
		       rmi.first * 1e6, rmi.again * 1e6, (rmi.first - rmi.again) * 1e6);
		printf("| KVM_CHECK_EXTENSION (none) | %.3f | %.3f | %.3f |\n", plain.first * 1e6,
		       plain.again * 1e6, (plain.first - plain.again) * 1e6);
	}
	munmap(src, BENCH_SIZE);

	{
		double rmm_s, unused, realm_s = exit_round_trip(kvm, true, &rmm_s);
		double normal_exit_s = exit_round_trip(kvm, false, &unused);

		/* REC_ENTER's time is EL3 and the RMM switching worlds, plus the guest. */
		printf("\n| exit to userspace and back | exits | us each | in REC_ENTER | host side | vs normal VM | goal |\n");
		printf("|---|---|---|---|---|---|---|\n");
		printf("| realm host call (KVM_EXIT_HYPERCALL) | %d | %.1f | %.1f | %.1f | %.2fx (host side %.2fx) | <= 1.5x |\n",
		       EXITS, realm_s * 1e6, rmm_s * 1e6, (realm_s - rmm_s) * 1e6,
		       realm_s / normal_exit_s, (realm_s - rmm_s) / normal_exit_s);
		printf("| normal VM HVC (KVM_EXIT_HYPERCALL) | %d | %.1f | - | - | 1x | - |\n", EXITS,
		       normal_exit_s * 1e6);

	}
	close(kvm);
	return module_unload() ? 1 : 0;
}
