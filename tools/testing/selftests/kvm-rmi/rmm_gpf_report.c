// SPDX-License-Identifier: GPL-2.0
/*
 * Granule protection faults are survivable and reported with their owner.
 * (Named to run after module_load, which needs the first load of the boot.)
 *
 * With an RMM, kvm_rmi is loaded with gpf_selftest=1: it delegates a page and
 * reads it with copy_from_kernel_nofault(). The read must take a granule
 * protection fault (FSC 40), which the GPF notifier reports as a kernel
 * access to "the GPF self-test page" at the page's PA, and which the fault
 * handler fixes up (the read fails instead of oopsing); once undelegated the
 * page reads again.
 *
 * Then user accesses, through /dev/kvm_rmi_gpf_test (which that parameter
 * adds): a delegated page mapped into this process raises SIGBUS when read,
 * and read()/write() of a pipe with it as the buffer fail with EFAULT (the
 * uaccess fixup); each is reported. GUP refuses the mapping, so the kernel
 * never reads the page outside a uaccess: /proc/self/mem gives EIO and
 * vmsplice() EFAULT, with no fault. Closing the device undelegates it.
 *
 * Without an RMM there is nothing to delegate: SKIP.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/uio.h>

#include "krmi.h"

#define MAX_LINES 16
#define REPORT_PREFIX "kvm_rmi: granule protection fault: the kernel touched PA "
#define REPORT_OWNER ": the GPF self-test page"
#define PASSED_PREFIX "kvm_rmi: GPF self-test passed: reading delegated "

#define TEST_DEVICE "/dev/kvm_rmi_gpf_test"

/* How many of `lines` contain `text`. */
static int count(char lines[][256], int n, const char *text)
{
	int c = 0;

	for (int i = 0; i < n && i < MAX_LINES; i++)
		c += !!strstr(lines[i], text);
	return c;
}

/*
 * Reads of `map` that pin its page first (GUP): /proc/self/mem, returned,
 * and vmsplice() into `pipe_w`, in `*spliced`: each a count or -errno.
 */
static ssize_t gup_reads(char *map, int pipe_w, ssize_t *spliced)
{
	struct iovec iov = { .iov_base = map, .iov_len = 8 };
	int mem = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	char buf[8];
	ssize_t r;

	r = mem < 0 ? -errno : pread(mem, buf, sizeof(buf), (off_t)(unsigned long)map);
	if (r < 0 && mem >= 0)
		r = -errno;
	if (mem >= 0)
		close(mem);
	*spliced = vmsplice(pipe_w, &iov, 1, 0) < 0 ? -errno : 8;
	return r;
}

/* User-space and uaccess touches of a delegated page mapped here. */
static void test_user_access(void)
{
	char lines[MAX_LINES][256], va[64];
	int kmsg = kmsg_open();
	int fd = open(TEST_DEVICE, O_RDWR | O_CLOEXEC);
	int pipefd[2] = { -1, -1 };
	ssize_t to_user = 0, from_user = 0, proc_mem = 0, spliced = 0;
	char *map = MAP_FAILED;
	bool sigbus = false;
	int n;

	if (fd >= 0)
		map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map != MAP_FAILED && !pipe(pipefd)) {
		sigbus = read_raises_sigbus(map);
		/* copy_to_user() into the delegated page */
		if (write(pipefd[1], "12345678", 8) == 8)
			to_user = read(pipefd[0], map, 8) < 0 ? -errno : 8;
		/* copy_from_user() out of it */
		from_user = write(pipefd[1], map, 8) < 0 ? -errno : 8;
		proc_mem = gup_reads(map, pipefd[1], &spliced);
	}
	ksft_test_result(map != MAP_FAILED && sigbus,
			 "a user read of a mapped delegated page raises SIGBUS (fd %d)\n", fd);
	ksft_test_result(to_user == -EFAULT && from_user == -EFAULT,
			 "read() into it and write() from it fail with EFAULT (%zd, %zd)\n",
			 to_user, from_user);
	ksft_test_result(proc_mem == -EIO && spliced == -EFAULT,
			 "GUP refuses it: /proc/self/mem %zd (want EIO), vmsplice() %zd (want EFAULT)\n",
			 proc_mem, spliced);
	snprintf(va, sizeof(va), "VA %#lx", (unsigned long)map);
	if (map != MAP_FAILED)
		munmap(map, 4096);
	if (fd >= 0)
		close(fd);
	for (int i = 0; i < 2; i++)
		if (pipefd[i] >= 0)
			close(pipefd[i]);
	n = kmsg_module_lines(kmsg, lines, MAX_LINES);
	ksft_test_result(count(lines, n, "granule protection fault: user space touched") >= 1 &&
			 count(lines, n, "granule protection fault: the kernel touched") >= 2 &&
			 count(lines, n, va) >= 3,
			 "the user and uaccess faults are reported at %s\n", va);
	close(kmsg);
}

/* The index of the first of `lines` starting with `prefix`, or -1. */
static int find(char lines[][256], int n, const char *prefix)
{
	for (int i = 0; i < n && i < MAX_LINES; i++)
		if (!strncmp(lines[i], prefix, strlen(prefix)))
			return i;
	return -1;
}

int main(void)
{
	char lines[MAX_LINES][256];
	unsigned long long report_pa = 0, tested_pa = 0;
	int kmsg, ret, n, report, passed;

	ksft_print_header();
	if (!rmm_present())
		ksft_exit_skip("no RMM: nothing can be delegated (boot with RME_FIRMWARE)\n");
	if (access(module_path(), R_OK))
		ksft_exit_skip("%s not found\n", module_path());
	if (module_listed())
		ksft_exit_fail_msg(MODULE_NAME " is already loaded\n");
	ksft_set_plan(8);

	kmsg = kmsg_open();
	ret = module_load_params("gpf_selftest=1");
	ksft_test_result(ret == 0, "load with gpf_selftest=1 (got %d)\n", ret);
	n = kmsg_module_lines(kmsg, lines, MAX_LINES);

	report = find(lines, n, REPORT_PREFIX);
	if (report >= 0)
		sscanf(lines[report] + strlen(REPORT_PREFIX), "%llx", &report_pa);
	ksft_test_result(report >= 0 && strstr(lines[report], REPORT_OWNER),
			 "the fault is reported as a kernel access to the self-test page\n");

	passed = find(lines, n, PASSED_PREFIX);
	if (passed >= 0)
		sscanf(lines[passed] + strlen(PASSED_PREFIX), "%llx", &tested_pa);
	ksft_test_result(passed > report && report_pa && report_pa == tested_pa,
			 "the read was fixed up, the page reads again once undelegated, "
			 "and the report names its PA (%#llx, tested %#llx)\n", report_pa,
			 tested_pa);

	test_user_access();

	ret = ret ? ret : module_unload();
	ksft_test_result(ret == 0 && !module_listed(), "unload (got %d)\n", ret);
	close(kmsg);
	ksft_finished();
}
