// SPDX-License-Identifier: GPL-2.0
/*
 * Once kvm_rmi has activated the RMM, kexec and hibernation are refused for
 * the rest of the boot (even after rmmod): the RMM keeps memory in the Realm
 * PAS, which a new kernel or a hibernation image would touch.
 *
 * Without an RMM (KRMI_RME unset or 0) both stay available, which also shows
 * that the checks below can see them. With an RMM (KRMI_RME=1) the test
 * loads and unloads the module first, then expects both refused.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kexec.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "krmi.h"

/* A destination in QEMU virt RAM that neither boot path puts the kernel at. */
#define KEXEC_DEST 0x48000000UL

static int load_and_unload(void)
{
	int ret = module_load();

	return ret ? ret : module_unload();
}

/* Whether /sys/power/state offers "disk" (hibernation_available()). */
static bool hibernation_offered(void)
{
	char buf[256] = "";
	FILE *f = fopen("/sys/power/state", "r");

	if (!f)
		ksft_exit_fail_msg("open /sys/power/state: %s\n", strerror(errno));
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	ksft_print_msg("/sys/power/state: %s", buf);
	return strstr(buf, "disk") != NULL;
}

/*
 * Loads a one-page kexec image (never run), then unloads it. Returns 0 or
 * the load's -errno.
 */
static int kexec_load_and_unload(void)
{
	static char image[4096];
	struct kexec_segment seg = {
		.buf = image,
		.bufsz = sizeof(image),
		.mem = (void *)KEXEC_DEST,
		.memsz = sizeof(image),
	};

	if (syscall(SYS_kexec_load, KEXEC_DEST, 1, &seg, KEXEC_ARCH_DEFAULT))
		return -errno;
	if (syscall(SYS_kexec_load, 0, 0, NULL, KEXEC_ARCH_DEFAULT))
		ksft_exit_fail_msg("kexec unload: %s\n", strerror(errno));
	return 0;
}

int main(void)
{
	const char *rme = getenv("KRMI_RME");
	bool with_rmm = rme && !strcmp(rme, "1");
	int ret;

	ksft_print_header();
	ksft_set_plan(2);
	if (with_rmm) {
		if (access(module_path(), R_OK))
			ksft_exit_skip("%s not found\n", module_path());
		ret = load_and_unload();
		if (ret)
			ksft_exit_fail_msg("load/unload kvm_rmi: %s\n", strerror(-ret));
	}

	ksft_test_result(hibernation_offered() == !with_rmm,
			 "hibernation %s\n", with_rmm ? "refused" : "offered");
	ret = kexec_load_and_unload();
	ksft_test_result(with_rmm ? ret == -EBUSY : ret == 0,
			 "kexec_load %s (got %d)\n",
			 with_rmm ? "fails with EBUSY" : "succeeds", ret);
	ksft_finished();
}
