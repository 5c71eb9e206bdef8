// SPDX-License-Identifier: GPL-2.0
/*
 * kvm_rmi load behaviour, with one finit_module() per attempt (busybox insmod
 * retries with init_module() after a failure, which would run init twice).
 *
 * Without an RMM (KRMI_RME unset or 0): loading fails with ENODEV, nothing
 * stays loaded, and the module logs exactly one line saying why.
 * With an RMM (KRMI_RME=1): it loads, logs the RMM's ABI version, says it
 * configured and activated the RMM (or, after rmm_boot_state, that an
 * earlier load in this boot did), unloads; then loads again, finding the
 * RMM active already (the RMM is configured once per boot), and unloads.
 */
#define _GNU_SOURCE
#include "krmi.h"

#define NO_RMM_LINE "kvm_rmi: no RMM found (RMI_VERSION: not supported)"
#define RMM_LINE_PREFIX "kvm_rmi: RMM ABI 2.0 "
#define ACTIVATED_LINE "kvm_rmi: RMM configured (4 KiB granules) and activated"
#define ALREADY_ACTIVE_LINE "kvm_rmi: RMM already active (configured earlier in this boot)"

static void test_no_rmm(void)
{
	char lines[4][256];
	int kmsg = kmsg_open();
	int ret = module_load();
	int n;

	ksft_test_result(ret == -ENODEV, "load fails with ENODEV (got %d)\n", ret);
	ksft_test_result(!module_listed(), "module not left loaded\n");
	n = kmsg_module_lines(kmsg, lines, 4);
	ksft_test_result(n == 1, "exactly one log line (got %d)\n", n);
	ksft_test_result(n >= 1 && !strcmp(lines[0], NO_RMM_LINE),
			 "log line is \"" NO_RMM_LINE "\"\n");
	close(kmsg);
}

/* Whether one of the first n collected lines is exactly line. */
static bool has_line(char lines[][256], int n, const char *line)
{
	for (int i = 0; i < n && i < 8; i++)
		if (!strcmp(lines[i], line))
			return true;
	return false;
}

static void load_unload_with_rmm(int round)
{
	const char *activation = round == 1 ? ACTIVATED_LINE : ALREADY_ACTIVE_LINE;
	bool earlier;
	char lines[8][256];
	int kmsg = kmsg_open();
	int ret = module_load();
	int n;

	ksft_test_result(ret == 0, "round %d: load succeeds (got %d)\n", round, ret);
	n = kmsg_module_lines(kmsg, lines, 8);
	ksft_test_result(n >= 1 && !strncmp(lines[0], RMM_LINE_PREFIX, strlen(RMM_LINE_PREFIX)),
			 "round %d: logs \"" RMM_LINE_PREFIX "...\"\n", round);
	/*
	 * rmm_boot_state, which runs first in the test plan, activated the
	 * RMM already (and checks that its load logged the activation).
	 */
	earlier = round == 1 && has_line(lines, n, ALREADY_ACTIVE_LINE);
	if (earlier)
		activation = ALREADY_ACTIVE_LINE;
	ksft_test_result(has_line(lines, n, activation), "round %d: logs \"%s\"%s\n",
			 round, activation, earlier ? " (activated earlier in this boot)" : "");
	ret = ret ? ret : module_unload();
	ksft_test_result(ret == 0 && !module_listed(), "round %d: unload\n", round);
	close(kmsg);
}

int main(void)
{
	bool with_rmm = rmm_present();

	ksft_print_header();
	if (access(module_path(), R_OK))
		ksft_exit_skip("%s not found\n", module_path());
	if (module_listed())
		ksft_exit_fail_msg(MODULE_NAME " is already loaded\n");

	if (with_rmm) {
		ksft_set_plan(8);
		load_unload_with_rmm(1);
		load_unload_with_rmm(2);
	} else {
		ksft_set_plan(4);
		test_no_rmm();
	}
	ksft_finished();
}
