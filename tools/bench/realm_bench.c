// SPDX-License-Identifier: GPL-2.0
/*
 * `make bench` (guest side, with an RMM): KVM_ARM_RMI_POPULATE throughput
 * and RMI calls per page, against filling a normal VM's guest_memfd with the
 * same bytes in the same run. Prints a Markdown table; not a test.
 *
 * The realm's first page is populated before the measurement, so that the
 * realm's creation (RD, root RTTs) is not counted; RTTs created on demand
 * are. The RMI calls come from debugfs kvm_rmi/rmi_calls.
 */
#define _GNU_SOURCE
#include <time.h>

#include "../testing/selftests/kvm-rmi/krmi_mem.h"

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

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int create_gmem(int vm, __u64 size, __u64 flags)
{
	struct kvm_create_guest_memfd gmem = { .size = size, .flags = flags };

	return ioctl(vm, KVM_CREATE_GUEST_MEMFD, &gmem);
}

/*
 * Seconds to populate all but the first page of a realm's gmem slot, with
 * `flags`; the RMI calls that took go to `calls`.
 */
static double realm_populate(int kvm, const char *src, __u32 flags, long long *calls)
{
	int vm = ioctl(kvm, KVM_CREATE_VM, KVM_VM_TYPE_ARM_REALM), gmem;
	char *shared = map_anon(BENCH_SIZE);
	struct kvm_arm_rmi_populate args;
	long long before;
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
	t = now();
	do {
		ret = populate(vm, &args);
	} while (ret == -EINTR);
	t = now() - t;
	if (ret || args.size)
		ksft_exit_fail_msg("populate: %d, %llu bytes left\n", ret, args.size);
	*calls = rmi_calls_total() - before;
	close(gmem);
	close(vm);
	munmap(shared, BENCH_SIZE);
	return t;
}

/* Seconds to copy the same bytes into a normal VM's guest_memfd. */
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
	t = now();
	memcpy(dst, src, BENCH_SIZE);
	t = now() - t;
	munmap(dst, BENCH_SIZE);
	close(gmem);
	close(vm);
	return t;
}

int main(void)
{
	double mib = BENCH_SIZE / (double)(1 << 20), measured_s, unmeasured_s, normal_s;
	__u64 pages = BENCH_SIZE / PAGE - 1;
	long long measured, unmeasured;
	char *src;
	int kvm;

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

	measured_s = realm_populate(kvm, src, KVM_ARM_RMI_POPULATE_FLAGS_MEASURE, &measured);
	unmeasured_s = realm_populate(kvm, src, 0, &unmeasured);
	normal_s = normal_fill(kvm, src);
	printf("| what | MiB | s | MiB/s | RMI calls/page | vs fill | goal |\n");
	printf("|---|---|---|---|---|---|---|\n");
	printf("| realm populate, measured | %.0f | %.3f | %.1f | %.3f | %.2fx | <= 2.05, >= 0.8x |\n",
	       mib, measured_s, mib / measured_s, (double)measured / pages,
	       normal_s / measured_s);
	printf("| realm populate, unmeasured | %.0f | %.3f | %.1f | %.3f | %.2fx | <= 2.05, >= 0.8x |\n",
	       mib, unmeasured_s, mib / unmeasured_s, (double)unmeasured / pages,
	       normal_s / unmeasured_s);
	printf("| normal VM guest_memfd fill | %.0f | %.3f | %.1f | - | 1x | - |\n", mib, normal_s,
	       mib / normal_s);
	munmap(src, BENCH_SIZE);
	close(kvm);
	return module_unload() ? 1 : 0;
}
