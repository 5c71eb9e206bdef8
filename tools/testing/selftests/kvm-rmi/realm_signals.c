// SPDX-License-Identifier: GPL-2.0
/*
 * Long realm ioctls under signals, as VMMs get them (a Go runtime's SIGURG
 * every 10 ms, QEMU's vCPU kicks, profilers at up to 1 kHz): each keeps
 * the progress it made.
 *
 * - KVM_ARM_RMI_POPULATE of 32 MiB without a timer, then under a 50 Hz
 *   and a 1 kHz interval timer (SIGALRM without SA_RESTART): each
 *   finishes within its bound; a call that fails with EINTR did nothing
 *   and one that returns 0 before the end made progress; a signalled
 *   populate takes no more RMI_GRANULE_RANGE_DELEGATE calls than the quiet
 *   one plus one a call, and the same RMI_GRANULE_RANGE_UNDELEGATE ones
 *   (none of its work is undone). The rates are printed.
 * - A guest changes the RIPAS of 64 MiB of populated memory to EMPTY and
 *   back (the VMM discarding the private copy in between), first without a
 *   timer, then re-entered under a 1 kHz one: both finish, the guest reads
 *   each RIPAS back, a KVM_RUN under the timer returned EINTR half way
 *   through a change, and RMI_RTT_SET_RIPAS was called as often as without
 *   the timer (nothing restarted).
 * - Once the populated memory is EMPTY and discarded, its level 3 RTTs are
 *   folded: the realm holds at least 32 RTT pages fewer (debugfs).
 * - Afterwards delegated - leaked is back where it was, and nothing bad
 *   was logged.
 *
 * Needs an RMM (KRMI_RME=1); SKIP otherwise.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/falloc.h>

#include "krmi_mem.h"
#include "krmi_guest.h"
#include "krmi_step.h"

#define IPA_BITS 40
#define UNPROTECTED (1ULL << (IPA_BITS - 1))
#define UCALL 0x10000000ULL
#define POPULATE_BYTES (32ULL << 20)
#define POPULATE_BOUND_S 120.0
#define CODE_BYTES (64 * 1024)
/* The memory whose RIPAS the guest changes: memslot 1. */
#define RIPAS_BASE (64ULL << 20)
#define RIPAS_BYTES (64ULL << 20)
#define RIPAS_BOUND_S 120.0

static volatile sig_atomic_t ticks;

static void on_tick(int sig)
{
	(void)sig;
	ticks++;
}

/* SIGALRM at `hz` (0: none), counted in `ticks`. */
static void timer_start(int hz)
{
	krmi_timer_start(hz, on_tick);
}

static void timer_stop(void)
{
	timer_start(0);
}

/* The calls of RMI command `name` so far (debugfs kvm_rmi/rmi_calls). */
static long long rmi_calls(const char *name)
{
	long long n = krmi_debugfs_value("rmi_calls", name);

	return n < 0 ? 0 : n;
}

/* What one populate of POPULATE_BYTES took. */
struct populated {
	bool done;		/* size reached 0 within the bound */
	bool kept_rules;	/* EINTR did nothing; 0 before the end made progress */
	int calls, eintr, partial, hz;
	long long ticks, delegated, undelegated;
	double secs;
};

/* Populates POPULATE_BYTES from `src` into a new realm under a `hz` timer. */
static struct populated populate_under(int kvm, const char *src, int hz)
{
	struct kvm_create_guest_memfd create = { .size = POPULATE_BYTES };
	struct populated p = { .kept_rules = true, .hz = hz };
	struct kvm_arm_rmi_populate args;
	long long del, undel;
	double start;
	char *shared;
	int vm, gmem;

	vm = ioctl(kvm, KVM_CREATE_VM, KVM_VM_TYPE_ARM_REALM | KVM_VM_TYPE_ARM_IPA_SIZE(IPA_BITS));
	if (vm < 0)
		ksft_exit_fail_msg("realm VM: %s\n", strerror(errno));
	gmem = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &create);
	shared = map_anon(POPULATE_BYTES);
	if (gmem < 0 || set_slot(vm, 0, KVM_MEM_GUEST_MEMFD, 0, POPULATE_BYTES, shared, gmem))
		ksft_exit_fail_msg("guest_memfd memslot: %s\n", strerror(errno));
	args = req(0, POPULATE_BYTES, (unsigned long)src, 0);
	/* The first call creates the realm; count from the second on. */
	args.size = PAGE;
	if (populate(vm, &args) || args.size)
		ksft_exit_fail_msg("first page: %s\n", strerror(errno));
	args.size = POPULATE_BYTES - PAGE;
	del = rmi_calls("RMI_GRANULE_RANGE_DELEGATE");
	undel = rmi_calls("RMI_GRANULE_RANGE_UNDELEGATE");
	ticks = 0;
	timer_start(hz);
	start = krmi_now();
	while (args.size && krmi_now() - start < POPULATE_BOUND_S) {
		struct kvm_arm_rmi_populate before = args;
		int ret = populate(vm, &args);

		p.calls++;
		if (ret == -EINTR) {
			p.eintr++;
			p.kept_rules &= !memcmp(&before, &args, sizeof(args));
		} else if (ret) {
			ksft_print_msg("populate at %#llx: %s\n", args.base, strerror(-ret));
			break;
		} else if (args.size) {
			p.partial++;
			p.kept_rules &= args.size < before.size;
		}
	}
	p.secs = krmi_now() - start;
	timer_stop();
	p.ticks = ticks;
	p.done = !args.size;
	p.delegated = rmi_calls("RMI_GRANULE_RANGE_DELEGATE") - del;
	p.undelegated = rmi_calls("RMI_GRANULE_RANGE_UNDELEGATE") - undel;
	close(gmem);
	close(vm);
	munmap(shared, POPULATE_BYTES);
	return p;
}

static void report_populate(const struct populated *p, const struct populated *quiet)
{
	double mib = (POPULATE_BYTES - PAGE) / (double)(1 << 20);

	ksft_print_msg("%4d Hz: %.2f s, %.1f MiB/s (%.2fx quiet), %d calls (%d EINTR, %d partial), %lld signals, %lld delegate and %lld undelegate calls\n",
		       p->hz, p->secs, mib / p->secs, quiet->secs / p->secs, p->calls, p->eintr,
		       p->partial, p->ticks, p->delegated, p->undelegated);
	if (p == quiet) {
		ksft_test_result(p->done && p->calls == 1,
				 "populate 32 MiB without signals: one call (%d)\n", p->calls);
		return;
	}
	ksft_test_result(p->done && p->kept_rules && p->ticks > 0 &&
			 p->delegated <= quiet->delegated + p->calls &&
			 p->undelegated == quiet->undelegated,
			 "populate 32 MiB under a %d Hz timer: finished in %.1f s, no work undone\n",
			 p->hz, p->secs);
}

/*
 * The guest: x0 = UCALL (unprotected), [x1, x2) the range. RIPAS to EMPTY
 * then RAM, each RSI_IPA_STATE_SET repeated until the whole range is done
 * and accepted, then read back with RSI_IPA_STATE_GET and reported: x0 and
 * x2 of the GET (SUCCESS and the RIPAS), or of the SET that failed. Then
 * PSCI SYSTEM_OFF.
 */
asm(".pushsection .rodata.krmi_signals_guest, \"a\"\n"
    ".balign 4096\n"
    ".globl signals_guest, signals_guest_end\n"
    ".hidden signals_guest, signals_guest_end\n"
    "signals_guest:\n"
    "	mov	x19, x0\n"
    "	mov	x24, x1\n"
    "	mov	x25, x2\n"
    "	mov	x23, #0\n"
    "1:	mov	x26, x24\n"
    "2:	movz	x0, #0x0197\n"			/* RSI_IPA_STATE_SET */
    "	movk	x0, #0xc400, lsl #16\n"
    "	mov	x1, x26\n"
    "	mov	x2, x25\n"
    "	mov	x3, x23\n"
    "	mov	x4, #0\n"
    "	smc	#0\n"
    "	cbnz	x0, 8f\n"
    "	cbnz	x2, 8f\n"
    "	mov	x26, x1\n"
    "	cmp	x26, x25\n"
    "	b.lo	2b\n"
    "	movz	x0, #0x0198\n"			/* RSI_IPA_STATE_GET */
    "	movk	x0, #0xc400, lsl #16\n"
    "	mov	x1, x24\n"
    "	mov	x2, x25\n"
    "	smc	#0\n"
    "8:	str	x0, [x19]\n"
    "	str	x2, [x19]\n"
    "	add	x23, x23, #1\n"
    "	cmp	x23, #2\n"
    "	b.lo	1b\n"
    "	movz	x0, #0x0008\n"			/* PSCI SYSTEM_OFF */
    "	movk	x0, #0x8400, lsl #16\n"
    "	smc	#0\n"
    "3:	b	3b\n"
    "signals_guest_end:\n"
    ".popsection\n");
extern const char signals_guest[], signals_guest_end[];

/* rtt_pages of the one realm there is (debugfs), or -1. */
static long long realm_rtt_pages(void)
{
	char file[64];
	long long id;

	if (krmi_realms(&id) != 1)
		return -1;
	snprintf(file, sizeof(file), "realms/%lld/info", id);
	return krmi_debugfs_value(file, "rtt_pages");
}

/* What one run of the RIPAS guest did. */
struct ripas_run {
	bool off;		/* reached SYSTEM_OFF within the bound */
	bool faults_ok;		/* memory faults as asked, the discard done */
	int reports;
	__u64 report[4];	/* GET x0, x2 after EMPTY, then after RAM */
	int eintr;		/* KVM_RUN that returned EINTR */
	int paused;		/* ... of them half way through a RIPAS change */
	long long set_ripas;	/* RMI_RTT_SET_RIPAS calls */
	long long rtt_pages[2];	/* the realm's RTT pages as each change starts */
	long long change_calls[2];	/* ... for each change, fault to report */
	double secs;
};

/*
 * Runs the RIPAS guest in a new realm under a `hz` timer; `quiet` (from a
 * run without one) tells how many RMI_RTT_SET_RIPAS calls a whole change
 * takes, to recognise an EINTR half way.
 */
static struct ripas_run ripas_under(int kvm, int hz, const struct ripas_run *quiet)
{
	struct kvm_create_guest_memfd create = { .size = RIPAS_BYTES };
	struct guest_realm g = GUEST_REALM_INIT;
	struct ripas_run r = { .faults_ok = true };
	long long set_before, change_start = -1;
	struct kvm_arm_rmi_populate args;
	struct kvm_run *run = NULL;
	int ret, gmem = -1, changes = 0;
	char *shared, *src;
	double start;

	shared = map_anon(RIPAS_BYTES);
	src = map_anon(RIPAS_BYTES);
	ret = guest_realm_open(&g, kvm, IPA_BITS) ?: guest_realm_add_vcpu(&g, 0, 0);
	run = ret ? NULL : vcpu_run_map(kvm, g.vcpu[0]);
	if (ret || !run)
		ksft_exit_fail_msg("realm with a vCPU: %d\n", ret);
	gmem = ioctl(g.vm, KVM_CREATE_GUEST_MEMFD, &create);
	args = req(RIPAS_BASE, RIPAS_BYTES, (unsigned long)src, 0);
	ret = gmem < 0 ? -errno : guest_realm_code(&g, CODE_BYTES, signals_guest, signals_guest_end);
	ret = ret ?: set_slot(g.vm, 1, KVM_MEM_GUEST_MEMFD, RIPAS_BASE, RIPAS_BYTES, shared, gmem);
	/* Populated: level 3 tables over all of it, as a guest's touched pages. */
	while (!ret && args.size)
		ret = populate(g.vm, &args);
	ret = ret ?: vgic_v3_init(g.gic) ?:
	      set_reg(g.vcpu[0], xreg(0), UNPROTECTED | UCALL) ?:
	      set_reg(g.vcpu[0], xreg(1), RIPAS_BASE) ?:
	      set_reg(g.vcpu[0], xreg(2), RIPAS_BASE + RIPAS_BYTES);
	if (ret)
		ksft_exit_fail_msg("RIPAS guest: %s\n", strerror(-ret));

	set_before = rmi_calls("RMI_RTT_SET_RIPAS");
	ticks = 0;
	timer_start(hz);
	start = krmi_now();
	while (krmi_now() - start < RIPAS_BOUND_S) {
		ret = ioctl(g.vcpu[0], KVM_RUN, 0) ? -errno : 0;
		if (ret == -EINTR) {
			long long done = rmi_calls("RMI_RTT_SET_RIPAS") - change_start;

			r.eintr++;
			/* Half way: some of the change's calls made, not all. */
			if (change_start >= 0 && quiet && done > 0 &&
			    done < quiet->change_calls[changes - 1])
				r.paused++;
			continue;
		}
		if (ret == -EFAULT && run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
			bool to_ram = run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE;

			if (changes < 2)
				r.rtt_pages[changes] = realm_rtt_pages();
			r.faults_ok &= run->memory_fault.gpa == RIPAS_BASE &&
				       run->memory_fault.size == RIPAS_BYTES && to_ram == (changes == 1);
			/* What a VMM does for EMPTY: discard the private copy. */
			if (!to_ram && fallocate(gmem, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						 0, RIPAS_BYTES))
				r.faults_ok = false;
			changes++;
			change_start = rmi_calls("RMI_RTT_SET_RIPAS");
			continue;
		}
		if (change_start >= 0 && changes <= 2)
			r.change_calls[changes - 1] = rmi_calls("RMI_RTT_SET_RIPAS") - change_start;
		change_start = -1;
		if (ret)
			break;
		if (run->exit_reason == KVM_EXIT_MMIO && run->mmio.phys_addr == UCALL &&
		    run->mmio.is_write && run->mmio.len == 8) {
			if (r.reports < 4)
				memcpy(&r.report[r.reports], run->mmio.data, 8);
			r.reports++;
			continue;
		}
		r.off = exited_off(run);
		break;
	}
	r.secs = krmi_now() - start;
	timer_stop();
	r.set_ripas = rmi_calls("RMI_RTT_SET_RIPAS") - set_before;
	vcpu_run_unmap(kvm, run);
	guest_realm_close(&g);
	close(gmem);
	munmap(shared, RIPAS_BYTES);
	munmap(src, RIPAS_BYTES);
	return r;
}

static void report_ripas(const struct ripas_run *r, int hz, const struct ripas_run *quiet)
{
	/* GET after EMPTY: SUCCESS, RIPAS EMPTY (0); after RAM: SUCCESS, RAM (1). */
	bool read_back = r->reports == 4 && !r->report[0] && r->report[1] == 0 &&
			 !r->report[2] && r->report[3] == 1;

	/* EMPTY with the copy discarded: the 32 level 3 tables fold. */
	bool folded = r->rtt_pages[0] > 0 && r->rtt_pages[1] > 0 &&
		      r->rtt_pages[1] <= r->rtt_pages[0] - (long long)(RIPAS_BYTES >> 21);

	ksft_print_msg("RIPAS of 64 MiB to EMPTY and back, %d Hz: %.2f s, %d EINTR (%d half way), %lld RMI_RTT_SET_RIPAS (%lld + %lld), RTT pages %lld then %lld, reports %d: %#llx %#llx %#llx %#llx\n",
		       hz, r->secs, r->eintr, r->paused, r->set_ripas, r->change_calls[0],
		       r->change_calls[1], r->rtt_pages[0], r->rtt_pages[1], r->reports,
		       r->report[0], r->report[1], r->report[2], r->report[3]);
	if (!quiet) {
		ksft_test_result(r->off && r->faults_ok && read_back && r->set_ripas >= 2,
				 "RIPAS of 64 MiB to EMPTY and back: done, read back\n");
		ksft_test_result(folded,
				 "made EMPTY (and discarded), its level 3 RTTs fold: %lld RTT pages, then %lld\n",
				 r->rtt_pages[0], r->rtt_pages[1]);
		return;
	}
	ksft_test_result(r->off && r->faults_ok && read_back && r->paused > 0 &&
			 r->set_ripas == quiet->set_ripas,
			 "RIPAS of 64 MiB to EMPTY and back under a %d Hz timer: done in %.1f s, paused %d times half way, nothing restarted\n",
			 hz, r->secs, r->paused);
}

int main(void)
{
	struct populated quiet, slow, fast;
	struct ripas_run ripas_quiet, ripas_fast;
	long long owned;
	char *src;
	int kvm, kmsg;

	ksft_print_header();
	if (!rmm_present())
		ksft_exit_skip("needs an RMM (KRMI_RME=1)\n");
	ksft_set_plan(10);
	kmsg = load_begin();
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		ksft_exit_fail_msg("/dev/kvm: %s\n", strerror(errno));
	owned = krmi_owned_delegated();

	src = map_anon(POPULATE_BYTES);
	memset(src, 0x5a, POPULATE_BYTES);
	quiet = populate_under(kvm, src, 0);
	slow = populate_under(kvm, src, 50);
	fast = populate_under(kvm, src, 1000);
	report_populate(&quiet, &quiet);
	report_populate(&slow, &quiet);
	report_populate(&fast, &quiet);
	munmap(src, POPULATE_BYTES);

	ripas_quiet = ripas_under(kvm, 0, NULL);
	report_ripas(&ripas_quiet, 0, NULL);
	ripas_fast = ripas_under(kvm, 1000, &ripas_quiet);
	report_ripas(&ripas_fast, 1000, &ripas_quiet);

	close(kvm);
	ksft_test_result(owned >= 0 && krmi_owned_delegated() == owned,
			 "delegated - leaked back at %lld (now %lld)\n", owned,
			 krmi_owned_delegated());
	load_end(kmsg);
	ksft_finished();
}
