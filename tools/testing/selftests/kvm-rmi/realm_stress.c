// SPDX-License-Identifier: GPL-2.0
/*
 * Load, unload and realm lifetimes under stress (meant for the debug
 * configuration too: lockdep, kmemleak, debug objects; the runner's last
 * entries check the kernel log and kmemleak):
 * - 100 load/unload cycles, each creating and closing a realm VM in
 *   between; without an RMM, 100 refused loads (ENODEV) that leave nothing;
 * - 64 realms built and run by 4 threads at once, all alive together, then
 *   closed by the 4 threads at once;
 * - a realm whose VM and vCPU fds are closed by another thread while its
 *   vCPU sits in KVM_RUN: the run goes on until a signal (EINTR), the realm
 *   goes once its last fd is closed; its guest_memfd closed instead: the
 *   run ends with a private memory fault at the guest's code page;
 * and afterwards debugfs kvm_rmi/ shows every delegated granule back, no
 * leak, no realm left; the module logs no failure.
 *
 * The realm parts need an RMM (KRMI_RME=1) and skip without one.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>

#include "krmi_guest.h"
#include "krmi_mem.h"
#include "krmi_step.h"

#define IPA_BITS 40
#define UNPROTECTED (1ULL << (IPA_BITS - 1))
#define UCALL 0x10000000ULL
#define SLOT_BYTES (64 * 1024)
#define CYCLES 100
#define THREADS 4
#define REALMS_PER_THREAD 16

/* The guest: one report (x0 = UCALL), then a loop. */
asm(".pushsection .rodata.krmi_stress_guest, \"a\"\n"
    ".balign 4096\n"
    ".globl stress_guest, stress_guest_end\n"
    ".hidden stress_guest, stress_guest_end\n"
    "stress_guest:\n"
    "	mov	x9, #1\n"
    "	str	x9, [x0]\n"
    "1:	b	1b\n"
    "stress_guest_end:\n"
    ".popsection\n");
extern const char stress_guest[], stress_guest_end[];

/* The realm with the guest, one vCPU: 0 or -errno. */
static int realm_build(int kvm, struct guest_realm *g)
{
	return guest_realm_open(g, kvm, IPA_BITS) ?:
	       guest_realm_add_vcpu(g, 0, 0) ?:
	       guest_realm_code(g, SLOT_BYTES, stress_guest, stress_guest_end) ?:
	       vgic_v3_init(g->gic) ?:
	       set_reg(g->vcpu[0], xreg(0), UNPROTECTED | UCALL);
}

/* Whether KVM_RUN of `g`'s vCPU reaches the guest's report. */
static bool realm_reports(int kvm, struct guest_realm *g)
{
	struct kvm_run *run = vcpu_run_map(kvm, g->vcpu[0]);
	bool ok = run && !vcpu_run_bounded(g->vcpu[0], 20) &&
		  is_mmio(run, UCALL, 8, true) && mmio_data(run) == 1;

	vcpu_run_unmap(kvm, run);
	return ok;
}

/* One load/unload cycle with a realm VM in between: 0, or why not. */
static const char *cycle(void)
{
	int kvm, vm, ret = module_load();

	if (ret)
		return "load failed";
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return "no /dev/kvm";
	ret = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_RMI);
	vm = ioctl(kvm, KVM_CREATE_VM, KVM_VM_TYPE_ARM_REALM | KVM_VM_TYPE_ARM_IPA_SIZE(IPA_BITS));
	if (vm >= 0)
		close(vm);
	close(kvm);
	if (ret != 1 || vm < 0)
		return "no realm VM";
	return module_unload() ? "unload failed" : NULL;
}

static void test_cycles(void)
{
	const char *failed = NULL;
	int i, ret = 0;

	for (i = 0; i < CYCLES && !failed; i++) {
		if (rmm_present()) {
			failed = cycle();
		} else {
			ret = module_load();
			if (ret != -ENODEV)
				failed = "a load without an RMM did not fail with ENODEV";
		}
		if (!failed && module_listed())
			failed = "module listed after the cycle";
	}
	ksft_test_result(!failed, "%d %s (%s)\n", CYCLES,
			 rmm_present() ? "load/unload cycles, a realm VM in each" :
					 "refused loads, nothing left",
			 failed ? failed : "all done");
	if (failed)
		ksft_print_msg("cycle %d: %s (%d)\n", i, failed, ret);
}

/* A thread's share of the realms. */
struct realm_batch {
	pthread_t thread;
	int kvm;
	struct guest_realm g[REALMS_PER_THREAD];
	int built, ran, closed;
};

static pthread_barrier_t all_built;

static void *batch_run(void *arg)
{
	struct realm_batch *b = arg;

	for (int i = 0; i < REALMS_PER_THREAD; i++) {
		b->g[i] = (struct guest_realm)GUEST_REALM_INIT;
		if (realm_build(b->kvm, &b->g[i]))
			continue;
		b->built++;
		b->ran += realm_reports(b->kvm, &b->g[i]);
	}
	/* All alive at once, then all closed at once. */
	pthread_barrier_wait(&all_built);
	for (int i = 0; i < REALMS_PER_THREAD; i++) {
		guest_realm_close(&b->g[i]);
		b->closed++;
	}
	return NULL;
}

static void test_concurrent_realms(int kvm)
{
	static struct realm_batch batch[THREADS];
	int built = 0, ran = 0, closed = 0, started = 0;
	int alive = -1;

	pthread_barrier_init(&all_built, NULL, THREADS + 1);
	for (int t = 0; t < THREADS; t++) {
		batch[t].kvm = kvm;
		started += !pthread_create(&batch[t].thread, NULL, batch_run, &batch[t]);
	}
	if (started != THREADS)
		ksft_exit_fail_msg("pthread_create\n");
	pthread_barrier_wait(&all_built);
	/* The threads are closing theirs now; count what was alive before. */
	for (int t = 0; t < THREADS; t++) {
		pthread_join(batch[t].thread, NULL);
		built += batch[t].built;
		ran += batch[t].ran;
		closed += batch[t].closed;
	}
	pthread_barrier_destroy(&all_built);
	alive = krmi_realms(NULL);
	ksft_test_result(built == THREADS * REALMS_PER_THREAD && ran == built,
			 "%d threads built %d realms and ran %d at once\n", THREADS, built, ran);
	ksft_test_result(closed == THREADS * REALMS_PER_THREAD && alive == 0,
			 "they closed them at once: %d realms left\n", alive);
}

static void on_kick(int sig)
{
	(void)sig;
}

/* The vCPU thread of test_close_during_run(). */
struct running_vcpu {
	int vcpu, ret;
	struct kvm_run *run;
	volatile bool entering, done;
	/* What `run` said when KVM_RUN returned. */
	__u32 exit_reason;
	__u64 gpa, size, flags;
};

static void *vcpu_spin(void *arg)
{
	struct running_vcpu *r = arg;

	r->entering = true;
	/* The guest loops after its report: this KVM_RUN does not end alone. */
	r->ret = ioctl(r->vcpu, KVM_RUN, 0) ? -errno : 0;
	r->exit_reason = r->run->exit_reason;
	r->gpa = r->run->memory_fault.gpa;
	r->size = r->run->memory_fault.size;
	r->flags = r->run->memory_fault.flags;
	r->done = true;
	return NULL;
}

/*
 * A realm's vCPU spins in KVM_RUN while another thread closes the VM's, the
 * vGIC's and the vCPU's own fd (`close_memory`: the guest_memfd instead).
 * Closing the VM's fds leaves the run alone: it ends on a signal, and the
 * realm goes once the guest_memfd (which holds the VM) is closed too.
 * Closing the guest_memfd takes the realm's memory away under it: the run
 * ends at once with a memory fault at the guest's code page.
 */
static void test_close_during_run(int kvm, bool close_memory)
{
	struct sigaction sa = { .sa_handler = on_kick };
	struct guest_realm g = GUEST_REALM_INIT;
	struct running_vcpu r = { .ret = 1 };
	int during = -1, after = -1;
	pthread_t thread;
	bool ok, ended;

	sigaction(SIGUSR1, &sa, NULL);
	ok = !realm_build(kvm, &g) && realm_reports(kvm, &g);
	r.vcpu = g.vcpu[0];
	r.run = vcpu_run_map(kvm, r.vcpu);
	ok = ok && r.run && !pthread_create(&thread, NULL, vcpu_spin, &r);
	if (ok) {
		while (!r.entering)
			usleep(1000);
		/* Well into KVM_RUN, the realm spinning in its loop. */
		usleep(500 * 1000);
		if (close_memory) {
			close(g.gmem);
			g.gmem = -1;
		} else {
			close(g.vm);
			close(g.gic);
			close(r.vcpu);
			g.vm = g.gic = g.vcpu[0] = -1;
		}
		/* Up to 5 s for the run to end alone, then a kick. */
		for (int i = 0; i < 500 && !r.done; i++)
			usleep(10 * 1000);
		ended = r.done;
		during = krmi_realms(NULL);
		pthread_kill(thread, SIGUSR1);
		pthread_join(thread, NULL);
		vcpu_run_unmap(kvm, r.run);
		guest_realm_close(&g);
		if (!close_memory)
			ok = !ended && r.ret == -EINTR;
		else
			ok = ended && r.ret == -EFAULT &&
			     r.exit_reason == KVM_EXIT_MEMORY_FAULT && r.gpa == 0 &&
			     r.size == PAGE && r.flags == KVM_MEMORY_EXIT_FLAG_PRIVATE;
		after = krmi_realms(NULL);
	}
	if (close_memory)
		ksft_test_result(ok && during == 1 && after == 0,
				 "guest_memfd closed under KVM_RUN: a private memory fault at the code page (%d, exit %u, gpa %#llx)\n",
				 r.ret, r.exit_reason, (unsigned long long)r.gpa);
	else
		ksft_test_result(ok && during == 1 && after == 0,
				 "VM and vCPU fds closed under KVM_RUN: the run goes on to a signal (%d), the realm then goes\n",
				 r.ret);
}

int main(void)
{
	long long owned, leaked;
	int kvm, kmsg;

	ksft_print_header();
	if (access(module_path(), R_OK))
		ksft_exit_skip("%s not found\n", module_path());
	if (module_listed())
		ksft_exit_fail_msg(MODULE_NAME " is already loaded\n");
	ksft_set_plan(rmm_present() ? 9 : 1);
	test_cycles();
	if (!rmm_present())
		ksft_finished();

	kmsg = load_begin();
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		ksft_exit_fail_msg("/dev/kvm: %s\n", strerror(errno));
	owned = krmi_owned_delegated();
	leaked = krmi_debugfs_value("leaked", NULL);
	test_concurrent_realms(kvm);
	test_close_during_run(kvm, false);
	test_close_during_run(kvm, true);
	ksft_test_result(owned >= 0 && krmi_owned_delegated() == owned &&
			 krmi_debugfs_value("leaked", NULL) == leaked,
			 "every granule delegated for them is back (owned %lld -> %lld), none leaked\n",
			 owned, krmi_owned_delegated());
	close(kvm);
	load_end(kmsg);
	ksft_finished();
}
