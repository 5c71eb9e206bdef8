// SPDX-License-Identifier: GPL-2.0
/*
 * The module's tracepoints, through tracefs:
 * - events/kvm_rmi/ has kvm_rmi_call and kvm_rmi_rec_exit, with their fields;
 * - enabled while a realm is built, run and closed, every RMI call is traced
 *   exactly once: the lines by command match what debugfs kvm_rmi/rmi_calls
 *   counted, nothing was lost, every call that reached the RMM is timed;
 * - a REC_ENTER failed through kvm_rmi/inject is traced as such (BUSY,
 *   injected), and only that call; the module enters again by itself;
 * - every REC exit is traced once, for the realm of debugfs kvm_rmi/realms/
 *   and its vCPU 0: one per REC_ENTER that succeeded, as many as the realm's
 *   exits file counted; the guest's reports are SYNC data aborts at the
 *   report address (ESR, HPFAR);
 * - disabled, RMI calls trace nothing;
 * - the events go with the module, which logs no failure.
 *
 * The guest reports with stores to UCALL (no memslot: KVM_EXIT_MMIO).
 * Needs an RMM (KRMI_RME=1); SKIP otherwise.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mount.h>

#include "krmi_guest.h"
#include "krmi_mem.h"
#include "krmi_step.h"

#define IPA_BITS 40
#define UNPROTECTED (1ULL << (IPA_BITS - 1))
#define UCALL 0x10000000ULL
#define SLOT_BYTES (64 * 1024)
#define TRACEFS "/sys/kernel/tracing/"
#define EVENTS TRACEFS "events/kvm_rmi/"
/* ESR_ELx.EC of a data abort from a lower EL. */
#define EC_DABT_LOW 0x24

/* The guest: two reports (x0 = UCALL), then a loop. */
asm(".pushsection .rodata.krmi_trace_guest, \"a\"\n"
    ".balign 4096\n"
    ".globl trace_guest, trace_guest_end\n"
    ".hidden trace_guest, trace_guest_end\n"
    "trace_guest:\n"
    "	mov	x9, #1\n"
    "	str	x9, [x0]\n"
    "	mov	x9, #2\n"
    "	str	x9, [x0]\n"
    "1:	b	1b\n"
    "trace_guest_end:\n"
    ".popsection\n");
extern const char trace_guest[], trace_guest_end[];

#define MAX_COMMANDS 96

/* debugfs kvm_rmi/rmi_calls, or the trace's kvm_rmi_call lines, by command. */
struct call_counts {
	int n;
	struct {
		char name[48];
		long long count;
	} c[MAX_COMMANDS];
};

static long long *count_of(struct call_counts *cc, const char *name)
{
	for (int i = 0; i < cc->n; i++)
		if (!strcmp(cc->c[i].name, name))
			return &cc->c[i].count;
	if (cc->n == MAX_COMMANDS)
		return NULL;
	snprintf(cc->c[cc->n].name, sizeof(cc->c[0].name), "%s", name);
	cc->c[cc->n].count = 0;
	return &cc->c[cc->n++].count;
}

/* The `total` of `cc`, or -1. */
static long long total_calls(struct call_counts *cc)
{
	long long *total = count_of(cc, "total");

	return total ? *total : -1;
}

/* kvm_rmi/rmi_calls into `cc` (total included): whether it was read. */
static bool read_rmi_calls(struct call_counts *cc)
{
	char line[128], name[48];
	long long n, *slot;
	FILE *f = fopen(KRMI_DEBUGFS "rmi_calls", "r");

	cc->n = 0;
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%47s %lld", name, &n) == 2 && (slot = count_of(cc, name)))
			*slot = n;
	fclose(f);
	return cc->n > 0;
}

/* Writes `text` to tracefs file `file`: whether it took. */
static bool tracefs_write(const char *file, const char *text)
{
	char path[128];
	int fd;
	bool ok;

	snprintf(path, sizeof(path), TRACEFS "%s", file);
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return false;
	ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	close(fd);
	return ok;
}

/* Whether tracefs file `file` has a line containing `text`. */
static bool tracefs_has(const char *file, const char *text)
{
	char path[128], line[256];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), TRACEFS "%s", file);
	f = fopen(path, "r");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, text);
	fclose(f);
	return found;
}

/* What the trace held of kvm_rmi. */
struct trace_seen {
	struct call_counts calls;
	long long entries, written;	/* from the header: equal if none lost */
	int untimed;			/* calls that reached the RMM with ns=0 */
	int injected, injected_as_asked;
	int enter_ok;			/* REC_ENTER that returned SUCCESS */
	int exits, exits_of_realm, reports;
	char enter[256], exit[256];	/* the first of each, to show */
};

/* Keeps the event part of trace line `line` in `keep`, if empty. */
static void keep_first(char keep[256], const char *line)
{
	const char *event = strstr(line, "kvm_rmi_");

	if (!keep[0] && event)
		snprintf(keep, 256, "%.*s", (int)strcspn(event, "\n"), event);
}

/* Reads the trace: `realm` is the realm whose exits are counted. */
static bool read_trace(struct trace_seen *t, long long realm)
{
	char line[512], cmd[48], status[48], reason[32];
	unsigned long long esr, far, hpfar, ns, index;
	long long id, *slot;
	unsigned int vcpu;
	FILE *f = fopen(TRACEFS "trace", "r");
	char *p;

	memset(t, 0, sizeof(*t));
	t->entries = t->written = -1;
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '#') {
			p = strstr(line, "entries-in-buffer/entries-written:");
			if (p)
				sscanf(p, "entries-in-buffer/entries-written: %lld/%lld",
				       &t->entries, &t->written);
			continue;
		}
		p = strstr(line, "kvm_rmi_call: ");
		if (p && sscanf(p, "kvm_rmi_call: %47s", cmd) == 1) {
			slot = count_of(&t->calls, cmd);
			if (slot)
				++*slot;
			slot = count_of(&t->calls, "total");
			if (slot)
				++*slot;
			p = strstr(p, " status=");
			if (!p || sscanf(p, " status=%47s index=%llu", status, &index) != 2)
				continue;
			p = strstr(p, " ns=");
			if (!p || sscanf(p, " ns=%llu", &ns) != 1)
				continue;
			if (strstr(p, " injected")) {
				t->injected++;
				t->injected_as_asked += !strcmp(cmd, "RMI_REC_ENTER") &&
							!strcmp(status, "BUSY") && index == 0;
			} else if (!ns) {
				t->untimed++;
			}
			if (!strcmp(cmd, "RMI_REC_ENTER") && !strcmp(status, "SUCCESS")) {
				t->enter_ok++;
				keep_first(t->enter, line);
			}
			continue;
		}
		p = strstr(line, "kvm_rmi_rec_exit: ");
		if (p && sscanf(p, "kvm_rmi_rec_exit: realm=%lld vcpu=%u reason=%31s esr=%llx far=%llx hpfar=%llx",
				&id, &vcpu, reason, &esr, &far, &hpfar) == 6) {
			t->exits++;
			if (id != realm || vcpu != 0)
				continue;
			t->exits_of_realm++;
			keep_first(t->exit, line);
			t->reports += !strcmp(reason, "SYNC") && (esr >> 26) == EC_DABT_LOW &&
				      hpfar == ((UNPROTECTED | UCALL) >> 12) << 4;
		}
	}
	fclose(f);
	return true;
}

/* The realm with the guest, one vCPU: 0 or -errno. */
static int realm_build(int kvm, struct guest_realm *g)
{
	return guest_realm_open(g, kvm, IPA_BITS) ?:
	       guest_realm_add_vcpu(g, 0, 0) ?:
	       guest_realm_code(g, SLOT_BYTES, trace_guest, trace_guest_end) ?:
	       vgic_v3_init(g->gic) ?:
	       set_reg(g->vcpu[0], xreg(0), UNPROTECTED | UCALL);
}

/*
 * Builds, runs and closes the realm with the events on; `*realm` gets its
 * id and `*exits` its exits as debugfs counted them.
 */
static bool traced_run(int kvm, long long *realm, long long *exits)
{
	struct guest_realm g = GUEST_REALM_INIT;
	struct kvm_run *run = NULL;
	bool ok;

	ok = !realm_build(kvm, &g) && (run = vcpu_run_map(kvm, g.vcpu[0]));
	/* The first entry meets a busy RMM: KVM_RUN enters again by itself. */
	ok = ok && !krmi_inject("REC_ENTER BUSY") &&
	     step_write(g.vcpu[0], run, UCALL, 1) && step_write(g.vcpu[0], run, UCALL, 2);
	if (krmi_realms(realm) != 1)
		*realm = -1;
	if (*realm >= 0) {
		char file[64];

		snprintf(file, sizeof(file), "realms/%lld/exits", *realm);
		*exits = krmi_debugfs_value(file, "total");
	}
	krmi_inject("off");
	vcpu_run_unmap(kvm, run);
	guest_realm_close(&g);
	if (!ok)
		snprintf(why, sizeof(why), "the realm did not run as planned");
	return ok && *realm >= 0 && *exits > 0;
}

/* Whether every command's count in `traced` is its growth from `a` to `b`. */
static bool counts_match(struct call_counts *a, struct call_counts *b,
			 struct call_counts *traced)
{
	for (int i = 0; i < b->n; i++) {
		long long *before = count_of(a, b->c[i].name);
		long long *seen = count_of(traced, b->c[i].name);

		if (!before || !seen || *seen != b->c[i].count - *before) {
			snprintf(why, sizeof(why), "%s: %lld traced, %lld counted", b->c[i].name,
				 seen ? *seen : -1, b->c[i].count - (before ? *before : 0));
			return false;
		}
	}
	/* And nothing traced that was not counted. */
	for (int i = 0; i < traced->n; i++)
		if (traced->c[i].count && !count_of(b, traced->c[i].name)) {
			snprintf(why, sizeof(why), "%s traced, not counted", traced->c[i].name);
			return false;
		}
	return true;
}

int main(void)
{
	struct call_counts before, after;
	struct trace_seen t;
	long long realm = -1, exits = -1;
	int kvm, kmsg;
	bool ok;

	ksft_print_header();
	if (!rmm_present())
		ksft_exit_skip("needs an RMM (KRMI_RME=1)\n");
	if (access(TRACEFS "events", F_OK) &&
	    mount("tracefs", TRACEFS, "tracefs", 0, NULL))
		ksft_exit_skip("no tracefs: %s\n", strerror(errno));
	ksft_set_plan(14);
	kmsg = load_begin();
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		ksft_exit_fail_msg("/dev/kvm: %s\n", strerror(errno));

	ksft_test_result(tracefs_has("events/kvm_rmi/kvm_rmi_call/format", "u64 ns;") &&
			 tracefs_has("events/kvm_rmi/kvm_rmi_call/format", "injected;") &&
			 tracefs_has("events/kvm_rmi/kvm_rmi_call/format", "__data_loc char[] status;") &&
			 tracefs_has("events/kvm_rmi/kvm_rmi_rec_exit/format", "__data_loc char[] name;") &&
			 tracefs_has("events/kvm_rmi/kvm_rmi_rec_exit/format", "u64 hpfar;"),
			 "events/kvm_rmi/ has kvm_rmi_call and kvm_rmi_rec_exit\n");

	ok = tracefs_write("tracing_on", "0") && tracefs_write("buffer_size_kb", "4096") &&
	     tracefs_write("trace", "") && tracefs_write("events/kvm_rmi/enable", "1") &&
	     tracefs_write("tracing_on", "1") && read_rmi_calls(&before);
	why[0] = 0;
	ok = ok && traced_run(kvm, &realm, &exits);
	ok = tracefs_write("events/kvm_rmi/enable", "0") && ok && read_rmi_calls(&after) &&
	     read_trace(&t, realm);
	ksft_test_result(ok, "a realm built, run (its first entry refused on purpose) and closed, traced %s\n",
			 why);
	ksft_test_result(ok && t.entries == t.written && t.entries > 0,
			 "no event lost (%lld of %lld)\n", t.entries, t.written);
	why[0] = 0;
	ksft_test_result(ok && counts_match(&before, &after, &t.calls),
			 "every RMI call traced once, by command as kvm_rmi/rmi_calls counted %s\n",
			 why);
	ksft_test_result(ok && !t.untimed, "every call that reached the RMM is timed (%d not)\n",
			 t.untimed);
	ksft_test_result(ok && t.injected == 1 && t.injected_as_asked == 1,
			 "the injected REC_ENTER failure, and only it, is traced as injected\n");
	ksft_test_result(ok && t.exits == t.exits_of_realm && t.exits == exits,
			 "every exit traced once, for realm %lld vCPU 0 (%d traced, %lld counted)\n",
			 realm, t.exits, exits);
	ksft_test_result(ok && t.enter_ok == t.exits,
			 "one exit per successful REC_ENTER (%d, %d)\n", t.enter_ok, t.exits);
	ksft_test_result(ok && t.reports == 2,
			 "the reports are SYNC data aborts at the report address (%d)\n", t.reports);
	ksft_print_msg("trace: %s\n", t.enter);
	ksft_print_msg("trace: %s\n", t.exit);

	/* Off: a realm built and closed again traces nothing. */
	{
		struct guest_realm g = GUEST_REALM_INIT;

		ok = tracefs_write("trace", "") && read_rmi_calls(&before) &&
		     !realm_build(kvm, &g);
		guest_realm_close(&g);
		ok = ok && read_rmi_calls(&after) && read_trace(&t, -1);
		ksft_test_result(ok && total_calls(&after) > total_calls(&before) &&
				 t.calls.n == 0 && t.exits == 0,
				 "disabled, RMI calls trace nothing\n");
	}
	close(kvm);
	load_end(kmsg);
	ksft_test_result(access(EVENTS, F_OK) && errno == ENOENT,
			 "events/kvm_rmi/ goes with the module\n");
	ksft_finished();
}
