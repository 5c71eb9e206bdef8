// SPDX-License-Identifier: GPL-2.0
/*
 * Once kvm_rmi has activated the RMM, kexec and hibernation are refused for
 * the rest of the boot (even after rmmod): the RMM keeps memory in the Realm
 * PAS, which a new kernel, a kdump kernel reading /proc/vmcore or a
 * hibernation image would touch. A kexec image or crash kernel loaded
 * before the module (as distributions load kdump at boot) would still run:
 * while one is loaded the module refuses to load (EBUSY, logged), and loads
 * once it is unloaded.
 *
 * Without an RMM (KRMI_RME unset or 0) kexec and hibernation stay
 * available, which also shows that the checks below can see them. With an
 * RMM (KRMI_RME=1) the test must run before anything else loads the module
 * in this boot (the test plan runs it first): it loads an image, then a
 * crash kernel (in the crashkernel= reservation), and checks each makes the
 * load fail; then loads and unloads the module and expects kexec loads of
 * both kinds and hibernation refused, and kexec -e (reboot(2) with
 * LINUX_REBOOT_CMD_KEXEC) to find nothing to run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kexec.h>
#include <linux/reboot.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "krmi.h"

/* A destination in QEMU virt RAM that neither boot path puts the kernel at. */
#define KEXEC_DEST 0x48000000UL

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

/* The value of /sys/kernel/<name> (kexec_loaded, kexec_crash_loaded), or -1. */
static int sys_kernel_flag(const char *name)
{
	char path[64];
	int v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/%s", name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%d", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* The start of the crashkernel= reservation ("Crash kernel" in /proc/iomem), or 0. */
static unsigned long crash_kernel_base(void)
{
	unsigned long start = 0, end;
	char line[256];
	FILE *f = fopen("/proc/iomem", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, ": Crash kernel") && sscanf(line, " %lx-%lx", &start, &end) == 2)
			break;
	fclose(f);
	return start;
}

/*
 * Loads a one-page image (never run) at `dest`, a crash kernel if `crash`:
 * 0 or the load's -errno.
 */
static int kexec_load_page(unsigned long dest, bool crash)
{
	static char image[4096];
	struct kexec_segment seg = {
		.buf = image,
		.bufsz = sizeof(image),
		.mem = (void *)dest,
		.memsz = sizeof(image),
	};
	unsigned long flags = KEXEC_ARCH_DEFAULT | (crash ? KEXEC_ON_CRASH : 0);

	return syscall(SYS_kexec_load, dest, 1, &seg, flags) ? -errno : 0;
}

static void kexec_unload(bool crash)
{
	unsigned long flags = KEXEC_ARCH_DEFAULT | (crash ? KEXEC_ON_CRASH : 0);

	if (syscall(SYS_kexec_load, 0, 0, NULL, flags))
		ksft_exit_fail_msg("kexec unload: %s\n", strerror(errno));
}

/* Whether the kernel logged a line containing `text` since `kmsg` was opened. */
static bool kmsg_has(int kmsg, const char *text)
{
	char rec[1024];
	bool found = false;
	ssize_t r;

	while ((r = read(kmsg, rec, sizeof(rec) - 1)) > 0 || (r < 0 && errno == EPIPE)) {
		if (r < 0)
			continue;
		rec[r] = '\0';
		found |= strstr(rec, text) != NULL;
	}
	return found;
}

/* With an image or crash kernel loaded, the module must refuse to load. */
static void test_refused_while_loaded(bool crash, unsigned long dest)
{
	const char *what = crash ? "crash kernel" : "image";
	const char *flag = crash ? "kexec_crash_loaded" : "kexec_loaded";
	int kmsg = kmsg_open(), ret = kexec_load_page(dest, crash), load;
	bool logged;

	if (ret)
		ksft_exit_fail_msg("kexec_load of a %s before the module: %s (the RMM was activated earlier in this boot? this test must run first)\n",
				   what, strerror(-ret));
	load = module_load();
	if (!load)
		module_unload();
	logged = kmsg_has(kmsg, crash ? "a kexec crash kernel is loaded" :
					"a kexec image is loaded");
	close(kmsg);
	ksft_test_result(load == -EBUSY && logged && sys_kernel_flag(flag) == 1,
			 "a kexec %s loaded before it: the module refuses to load (got %d, %slogged), the %s stays\n",
			 what, load, logged ? "" : "not ", what);
	kexec_unload(crash);
}

int main(void)
{
	unsigned long crash_base = crash_kernel_base();
	bool with_rmm = rmm_present(), activated;
	int ret, kmsg;

	ksft_print_header();
	ksft_set_plan(with_rmm ? 7 : 3);
	if (with_rmm) {
		if (access(module_path(), R_OK))
			ksft_exit_skip("%s not found\n", module_path());
		if (module_listed())
			ksft_exit_fail_msg(MODULE_NAME " is already loaded: this test must run first\n");
		test_refused_while_loaded(false, KEXEC_DEST);
		if (crash_base)
			test_refused_while_loaded(true, crash_base);
		else
			ksft_test_result_skip("no crashkernel= reservation: crash kernel case not run\n");
		kmsg = kmsg_open();
		ret = module_load();
		if (!ret)
			ret = module_unload();
		activated = kmsg_has(kmsg, "kvm_rmi: RMM configured (4 KiB granules) and activated");
		close(kmsg);
		ksft_test_result(ret == 0 && activated,
				 "with both unloaded, the module loads (activating the RMM: %s) and unloads (got %d)\n",
				 activated ? "logged" : "not logged", ret);
	}

	ksft_test_result(hibernation_offered() == !with_rmm,
			 "hibernation %s\n", with_rmm ? "refused" : "offered");
	ret = kexec_load_page(KEXEC_DEST, false);
	if (!ret)
		kexec_unload(false);
	ksft_test_result(with_rmm ? ret == -EBUSY : ret == 0,
			 "kexec_load %s (got %d)\n",
			 with_rmm ? "fails with EBUSY" : "succeeds", ret);
	if (crash_base) {
		ret = kexec_load_page(crash_base, true);
		if (!ret)
			kexec_unload(true);
		ksft_test_result(with_rmm ? ret == -EBUSY : ret == 0,
				 "kexec_load of a crash kernel %s (got %d)\n",
				 with_rmm ? "fails with EBUSY" : "succeeds", ret);
	} else {
		ksft_test_result_skip("no crashkernel= reservation: crash kernel load not tried\n");
	}
	if (with_rmm) {
		/* Only with nothing loaded: reboot(2) would run an image. */
		if (sys_kernel_flag("kexec_loaded") == 0)
			ret = syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
				      LINUX_REBOOT_CMD_KEXEC, NULL) ? -errno : 0;
		else
			ret = 1;
		ksft_test_result(ret == -EINVAL,
				 "kexec -e after activation finds nothing to run (got %d)\n", ret);
	}
	ksft_finished();
}
