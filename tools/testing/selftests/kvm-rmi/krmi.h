/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the kvm-rmi selftests: loading and unloading kvm_rmi
 * (one finit_module() per attempt: busybox insmod retries with init_module()
 * after a failure, which would run init twice), and reading its log lines.
 */
#ifndef KRMI_SELFTEST_H
#define KRMI_SELFTEST_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "kselftest.h"

#define MODULE_NAME "kvm_rmi"

/* The module file: $KRMI_MODULE, else where the initramfs puts it. */
static inline const char *module_path(void)
{
	const char *p = getenv("KRMI_MODULE");

	return p ? p : "/modules/kvm_rmi.ko";
}

/* Whether the runner booted with an RMM (KRMI_RME=1). */
static inline bool rmm_present(void)
{
	const char *rme = getenv("KRMI_RME");

	return rme && !strcmp(rme, "1");
}

/* Loads the module with parameters `params`: 0 or -errno. */
static inline int module_load_params(const char *params)
{
	int fd = open(module_path(), O_RDONLY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	ret = syscall(SYS_finit_module, fd, params, 0);
	close(fd);
	return ret ? -errno : 0;
}

/* Loads the module: 0 or -errno. */
static inline int module_load(void)
{
	return module_load_params("");
}

/* Unloads the module without waiting for users: 0 or -errno. */
static inline int module_unload(void)
{
	return syscall(SYS_delete_module, MODULE_NAME, O_NONBLOCK) ? -errno : 0;
}

/* Whether the module is in /proc/modules. */
static inline bool module_listed(void)
{
	char line[256];
	bool found = false;
	FILE *f = fopen("/proc/modules", "r");

	if (!f)
		ksft_exit_fail_msg("open /proc/modules: %s\n", strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, MODULE_NAME " ", strlen(MODULE_NAME) + 1))
			found = true;
	fclose(f);
	return found;
}

/*
 * For tests that load the module themselves: skips without the module file
 * or /dev/kvm, fails if the module is loaded already; returns /dev/kvm's fd.
 */
static inline int open_kvm_unloaded(void)
{
	int kvm;

	if (access(module_path(), R_OK))
		ksft_exit_skip("%s not found\n", module_path());
	if (module_listed())
		ksft_exit_fail_msg(MODULE_NAME " is already loaded\n");
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		ksft_exit_skip("/dev/kvm: %s\n", strerror(errno));
	return kvm;
}

/* Opens /dev/kmsg positioned after the last record logged so far. */
static inline int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);

	if (fd < 0)
		ksft_exit_fail_msg("open /dev/kmsg: %s\n", strerror(errno));
	if (lseek(fd, 0, SEEK_END) < 0)
		ksft_exit_fail_msg("seek /dev/kmsg: %s\n", strerror(errno));
	return fd;
}

/*
 * Collects the text of new log records that start with "kvm_rmi:" into
 * lines (up to max, each at most 256 bytes) and echoes them. Returns how
 * many there were.
 */
static inline int kmsg_module_lines(int fd, char lines[][256], int max)
{
	char rec[1024];
	int n = 0;
	ssize_t r;

	while ((r = read(fd, rec, sizeof(rec) - 1)) > 0 || (r < 0 && errno == EPIPE)) {
		char *text, *end;

		if (r < 0)
			continue; /* EPIPE: records were overwritten; read on */
		rec[r] = '\0';
		text = strchr(rec, ';');
		if (!text)
			continue;
		text++;
		end = strchr(text, '\n');
		if (end)
			*end = '\0';
		if (strncmp(text, MODULE_NAME ":", strlen(MODULE_NAME) + 1))
			continue;
		if (n < max)
			snprintf(lines[n], 256, "%s", text);
		n++;
		ksft_print_msg("log: %s\n", text);
	}
	return n;
}

/* For read_raises_sigbus(): where the SIGBUS handler jumps back to. */
static sigjmp_buf sigbus_jmp;

static inline void on_sigbus(int sig)
{
	siglongjmp(sigbus_jmp, 1);
}

/* Whether reading the byte at `p` raises SIGBUS. */
static inline bool read_raises_sigbus(volatile const char *p)
{
	struct sigaction sa = { .sa_handler = on_sigbus }, old;
	bool raised = false;

	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(sigbus_jmp, 1))
		raised = true;
	else
		(void)*p;
	sigaction(SIGBUS, &old, NULL);
	return raised;
}

#define KRMI_DEBUGFS "/sys/kernel/debug/kvm_rmi/"

/*
 * The number after `key ` in debugfs file kvm_rmi/`file`, or the first
 * number in it if `key` is NULL; -1 if there is none.
 */
static inline long long krmi_debugfs_value(const char *file, const char *key)
{
	char path[256], line[256], name[128];
	long long value = -1, v;
	FILE *f;

	snprintf(path, sizeof(path), KRMI_DEBUGFS "%.200s", file);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (value < 0 && fgets(line, sizeof(line), f)) {
		if (!key && sscanf(line, "%lld", &v) == 1)
			value = v;
		else if (key && sscanf(line, "%127s %lld", name, &v) == 2 && !strcmp(name, key))
			value = v;
	}
	fclose(f);
	return value;
}

/* Granules the module delegated and still owns: delegated minus leaked. */
static inline long long krmi_owned_delegated(void)
{
	long long delegated = krmi_debugfs_value("delegated", NULL);
	long long leaked = krmi_debugfs_value("leaked", NULL);

	return delegated < 0 || leaked < 0 ? -1 : delegated - leaked;
}

/*
 * How many realms kvm_rmi/realms/ lists (-1: no such directory); the id of
 * the first into `*first` if not NULL.
 */
static inline int krmi_realms(long long *first)
{
	DIR *d = opendir(KRMI_DEBUGFS "realms");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && ++n == 1 && first)
			*first = atoll(e->d_name);
	closedir(d);
	return n;
}

/* Writes `spec` to kvm_rmi/inject (see the module's rmi.rst): 0 or -errno. */
static inline int krmi_inject(const char *spec)
{
	int fd = open(KRMI_DEBUGFS "inject", O_WRONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, spec, strlen(spec)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* Seconds on the monotonic clock. */
static inline double krmi_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/*
 * SIGALRM to `handler` at `hz` (0: stops it), interrupting system calls
 * (no SA_RESTART), as the signals a VMM gets from its runtime.
 */
static inline void krmi_timer_start(int hz, void (*handler)(int))
{
	struct sigaction sa = { .sa_handler = handler };
	struct itimerval it = { 0 };

	sigaction(SIGALRM, &sa, NULL);
	if (hz) {
		it.it_interval.tv_usec = 1000000 / hz;
		it.it_value = it.it_interval;
	}
	setitimer(ITIMER_REAL, &it, NULL);
}

#endif /* KRMI_SELFTEST_H */
