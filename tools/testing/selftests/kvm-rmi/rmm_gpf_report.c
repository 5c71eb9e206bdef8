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
 * page reads again. Without an RMM there is nothing to delegate: SKIP.
 */
#define _GNU_SOURCE
#include "krmi.h"

#define MAX_LINES 16
#define REPORT_PREFIX "kvm_rmi: granule protection fault: the kernel touched PA "
#define REPORT_OWNER ": the GPF self-test page"
#define PASSED_PREFIX "kvm_rmi: GPF self-test passed: reading delegated "

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
	ksft_set_plan(4);

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

	ret = ret ? ret : module_unload();
	ksft_test_result(ret == 0 && !module_listed(), "unload (got %d)\n", ret);
	close(kmsg);
	ksft_finished();
}
