// SPDX-License-Identifier: GPL-2.0
/*
 * A running realm's memory, mapped on its stage-2 faults:
 * - a protected page nothing populated comes from guest_memfd, zeroed, and
 *   keeps what the guest writes;
 * - the unprotected alias of a guest_memfd memslot page the VMM has not
 *   made shared is a KVM_EXIT_MEMORY_FAULT (shared), as upstream; made
 *   shared, it is the VMM's page: the guest reads what the VMM wrote, and
 *   the VMM sees what the guest wrote, by a store that describes itself
 *   (ISV) or not (a pair);
 * - madvise(MADV_DONTNEED) of the VMM's page takes it away from the realm:
 *   the guest then reads the new (zero) page;
 * - a VMM that manages memory attributes: a private access to a frame it
 *   made shared is a KVM_EXIT_MEMORY_FAULT (private); made private again,
 *   it maps;
 * - a hole punch of a page the realm accepted takes it away for good
 *   (DESTROYED): the next access is a KVM_EXIT_MEMORY_FAULT (private);
 * - the module unloads and logs no failure, leak or GPF.
 *
 * Then, with the module loaded again, RMI failures injected through debugfs
 * kvm_rmi/inject at each stage of a realm's life (creation, populate,
 * activation, stage-2 fault, REC_ENTER, teardown): each is reached, and
 * once the realm is gone debugfs kvm_rmi/delegated and leaked show that
 * nothing stayed in the Realm PAS but the granules whose undelegation was
 * failed on purpose; a busy REC_ENTER is entered again and the realm runs
 * on; the boot vCPU's REC_ENTER refused with ERROR_REC kills the VM (EIO,
 * then EIO again: no retry loop); a clean realm runs afterwards; nothing
 * raised a GPF.
 *
 * The guest reports with stores to UCALL (no memslot: KVM_EXIT_MMIO).
 * Needs an RMM (KRMI_RME=1); SKIP otherwise.
 */
#define _GNU_SOURCE
#include <fcntl.h>

#include "krmi_guest.h"
#include "krmi_mem.h"
#include "krmi_step.h"

#define IPA_BITS 40
#define UNPROTECTED (1ULL << (IPA_BITS - 1))
#define UCALL 0x10000000ULL
#define SLOT_BYTES (64 * 1024)
/* Guest frames of the guest_memfd memslot at IPA 0 nothing populates. */
#define SHARED_PAGE 0x8000ULL	/* used through its unprotected alias */
#define PRIVATE_PAGE 0x9000ULL
#define FLIPPED_PAGE 0xa000ULL	/* the VMM makes it shared first */
#define PAIR_PAGE 0xb000ULL	/* unprotected alias, written with stp */

#define VMM_VALUE 0x5151ULL
#define GUEST_PRIVATE 0x5a5aULL
#define GUEST_SHARED 0xa5a5ULL
#define GUEST_PAIR 0x77ULL

/* The guest: x0 = UCALL, x1 = SHARED_PAGE, x2 = PRIVATE_PAGE, x3 = FLIPPED_PAGE. */
asm(".pushsection .rodata.krmi_faults_guest, \"a\"\n"
    ".balign 4096\n"
    ".globl faults_guest, faults_guest_end\n"
    ".hidden faults_guest, faults_guest_end\n"
    "faults_guest:\n"
    /* A protected page: zero at first, then what the guest wrote. */
    "	ldr	x9, [x2]\n"
    "	str	x9, [x0]\n"
    "	movz	x10, #0x5a5a\n"
    "	str	x10, [x2]\n"
    "	ldr	x9, [x2]\n"
    "	str	x9, [x0]\n"
    /* The VMM's page: read, then written (ISV). */
    "	ldr	x9, [x1]\n"
    "	str	x9, [x0]\n"
    "	movz	x10, #0xa5a5\n"
    "	str	x10, [x1]\n"
    "	str	x10, [x0]\n"
    /* Another of its pages, first touched by a store pair (no ISV). */
    "	add	x11, x1, #0x3000\n"
    "	mov	x10, #0x77\n"
    "	stp	x10, x10, [x11, #16]\n"
    "	str	x10, [x0]\n"
    /* The VMM's page again, after madvise. */
    "	ldr	x9, [x1]\n"
    "	str	x9, [x0]\n"
    /* The page the VMM made shared, then private again. */
    "	ldr	x9, [x3]\n"
    "	str	x9, [x0]\n"
    /* The protected page again, after a hole punch. */
    "	ldr	x9, [x2]\n"
    "	str	x9, [x0]\n"
    "1:	b	1b\n"
    "faults_guest_end:\n"
    ".popsection\n");
extern const char faults_guest[], faults_guest_end[];

/* The realm, its guest and registers: 0 or -errno. */
static int realm_build(struct one_vcpu_realm *r)
{
	int ret = one_vcpu_realm_open(r, IPA_BITS, SLOT_BYTES, faults_guest, faults_guest_end);

	if (ret)
		return ret;
	memcpy((char *)r->g.shared + SHARED_PAGE, &(__u64){ VMM_VALUE }, 8);
	return vgic_v3_init(r->g.gic) ?:
	       set_attributes(r->g.vm, FLIPPED_PAGE, PAGE, 0) ?:
	       set_reg(r->vcpu, xreg(0), UNPROTECTED | UCALL) ?:
	       set_reg(r->vcpu, xreg(1), UNPROTECTED | SHARED_PAGE) ?:
	       set_reg(r->vcpu, xreg(2), PRIVATE_PAGE) ?:
	       set_reg(r->vcpu, xreg(3), FLIPPED_PAGE);
}

static bool expect_report(struct one_vcpu_realm *r, __u64 want)
{
	return step_write(r->vcpu, r->run, UCALL, want);
}

/* The 8 bytes at `offset` of the VMM's mapping of the memslot. */
static __u64 shared_word(struct one_vcpu_realm *r, __u64 offset)
{
	__u64 v;

	memcpy(&v, (char *)r->g.shared + offset, 8);
	return v;
}

/* A step that checks what the VMM did or saw between exits. */
static bool vmm_check(bool ok, const char *what, int err)
{
	if (!ok && !lost) {
		snprintf(why, sizeof(why), "%s%s%s", what, err ? ": " : "", err ? strerror(err) : "");
		lost = true;
	}
	return ok && !lost;
}

static void test_private(struct one_vcpu_realm *r)
{
	report(expect_report(r, 0),
	       "protected page nothing populated: mapped from guest_memfd on the fault, zeroed");
	report(expect_report(r, GUEST_PRIVATE), "the guest's write to it reads back");
}

static void test_shared(struct one_vcpu_realm *r)
{
	bool ok = step_memory_fault(r->vcpu, r->run, SHARED_PAGE, PAGE, false);

	report(ok, "unprotected alias of a private frame: KVM_EXIT_MEMORY_FAULT (shared)");
	if (ok && (set_attributes(r->g.vm, SHARED_PAGE, PAGE, 0) ||
		   set_attributes(r->g.vm, PAIR_PAGE, PAGE, 0)))
		ok = vmm_check(false, "KVM_SET_MEMORY_ATTRIBUTES", errno);
	report(ok && expect_report(r, VMM_VALUE),
	       "made shared: the guest reads the VMM's page (mapped read-only)");
	ok = expect_report(r, GUEST_SHARED);
	ok = vmm_check(ok && shared_word(r, SHARED_PAGE) == GUEST_SHARED,
		       "the VMM's page does not hold the guest's write", 0);
	report(ok, "the guest's store (ISV) upgrades the mapping: the VMM sees it");
	ok = expect_report(r, GUEST_PAIR);
	ok = vmm_check(ok && shared_word(r, PAIR_PAGE + 16) == GUEST_PAIR &&
		       shared_word(r, PAIR_PAGE + 24) == GUEST_PAIR,
		       "the VMM's page does not hold the guest's store pair", 0);
	report(ok, "a store pair (no ISV) to a new page: mapped, then upgraded; the VMM sees it");
	if (ok && madvise((char *)r->g.shared + SHARED_PAGE, PAGE, MADV_DONTNEED))
		ok = vmm_check(false, "madvise", errno);
	report(ok && expect_report(r, 0),
	       "madvise(MADV_DONTNEED) unmaps the VMM's page: the guest reads the new one");
}

static void test_attributes(struct one_vcpu_realm *r)
{
	bool ok = step_memory_fault(r->vcpu, r->run, FLIPPED_PAGE, PAGE, true);

	report(ok, "private access to a frame the VMM made shared: KVM_EXIT_MEMORY_FAULT (private)");
	if (ok && set_attributes(r->g.vm, FLIPPED_PAGE, PAGE, KVM_MEMORY_ATTRIBUTE_PRIVATE))
		ok = vmm_check(false, "KVM_SET_MEMORY_ATTRIBUTES", errno);
	report(ok && expect_report(r, 0), "made private again, it maps");
}

static void test_hole_punch(struct one_vcpu_realm *r)
{
	bool ok = !lost;

	if (ok && fallocate(r->g.gmem, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, PRIVATE_PAGE,
			    PAGE))
		ok = vmm_check(false, "hole punch", errno);
	report(ok && step_memory_fault(r->vcpu, r->run, PRIVATE_PAGE, PAGE, true),
	       "hole punch of an accepted page: the next access is KVM_EXIT_MEMORY_FAULT (private)");
}

/* Value `key` of file `name` of the realm's directory `dir`. */
static long long realm_value(const char *dir, const char *name, const char *key)
{
	char file[160];

	snprintf(file, sizeof(file), "%.64s%.32s", dir, name);
	return krmi_debugfs_value(file, key);
}

/*
 * What debugfs shows of the running clean realm: active, one REC, the
 * populated code measured, the faulted-in page and the code mapped, and
 * its exits by reason (the fault and the report: SYNC).
 */
static bool realm_dir_shows_the_run(void)
{
	char dir[128], state[32] = "", line[64];
	char path[192];
	long long id;
	FILE *f;

	if (krmi_realms(&id) != 1) {
		snprintf(why, sizeof(why), "not one directory in kvm_rmi/realms");
		return false;
	}
	snprintf(dir, sizeof(dir), "realms/%lld/", id);
	snprintf(path, sizeof(path), KRMI_DEBUGFS "%.64sinfo", dir);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		sscanf(line, "state %31s", state);
	if (f)
		fclose(f);
	if (strcmp(state, "active") || realm_value(dir, "info", "recs") != 1 ||
	    realm_value(dir, "info", "ipa_bits") != IPA_BITS ||
	    realm_value(dir, "info", "populated_measured") <= 0 ||
	    realm_value(dir, "info", "data_pages") < 2 ||
	    realm_value(dir, "info", "rtt_pages") < 2 ||
	    realm_value(dir, "exits", "SYNC") < 2 ||
	    realm_value(dir, "exits", "total") < 2) {
		snprintf(why, sizeof(why), "%.64sinfo or exits wrong (state %.31s)", dir, state);
		return false;
	}
	return true;
}

enum inject_when { AT_BUILD, AT_RUN, AT_CLOSE };

/* Failures to inject, when, and how many granules each strands on purpose. */
static const struct inject_case {
	const char *spec;
	enum inject_when when;
	int times, leaks;
} inject_cases[] = {
	{ "REALM_CREATE ERROR_INPUT", AT_BUILD, 1, 0 },
	{ "GRANULE_RANGE_DELEGATE ERROR_GPT skip=4", AT_BUILD, 1, 0 },
	{ "RTT_CREATE ERROR_INPUT", AT_BUILD, 1, 0 },
	{ "RTT_DATA_MAP_INIT ERROR_INPUT", AT_BUILD, 1, 0 },
	{ "RTT_INIT_RIPAS ERROR_INPUT", AT_RUN, 1, 0 },
	{ "REC_CREATE ERROR_INPUT", AT_RUN, 1, 0 },
	{ "REALM_ACTIVATE ERROR_INPUT", AT_RUN, 1, 0 },
	{ "RTT_DATA_MAP ERROR_INPUT", AT_RUN, 1, 0 },
	{ "REC_ENTER BUSY", AT_RUN, 1, 0 },
	{ "REC_ENTER ERROR_REC", AT_RUN, 1, 0 },
	{ "GRANULE_RANGE_UNDELEGATE ERROR_GRANULE skip=3 times=2", AT_CLOSE, 2, 2 },
};

/*
 * Builds, runs to the guest's first report, and closes a realm, with `c`
 * injected at its stage (none if NULL): whether the failure was reached and
 * contained as the case says. The realm's own steps may fail: they are
 * what the failure hits.
 */
static bool inject_one(int kvm, const struct inject_case *c)
{
	struct one_vcpu_realm r = { .kvm = kvm, .vcpu = -1, .g = GUEST_REALM_INIT };
	long long owned = krmi_owned_delegated(), leaked = krmi_debugfs_value("leaked", NULL);
	long long injected = krmi_debugfs_value("inject", "injected");
	bool built, ran = true;
	int err;

	if (owned < 0 || leaked < 0 || injected < 0) {
		snprintf(why, sizeof(why), "no kvm_rmi/ in debugfs");
		return false;
	}
	if (c && c->when == AT_BUILD && krmi_inject(c->spec))
		return false;
	built = !realm_build(&r);
	if (c && c->when == AT_RUN && krmi_inject(c->spec))
		return false;
	if (built) {
		err = vcpu_run_bounded(r.vcpu, 10);
		/*
		 * The boot vCPU's entry refused (ERROR_REC): the RMM will not
		 * run it, the VM is dead (EIO now and after). A busy RMM is
		 * entered again without the VMM seeing it.
		 */
		if (c && strstr(c->spec, "REC_ENTER ERROR_REC"))
			ran = err == -EIO && vcpu_run_bounded(r.vcpu, 10) == -EIO;
		else
			ran = !err && is_mmio(r.run, UCALL, 8, true) && mmio_data(r.run) == 0;
	}
	if (!c && built && ran && !realm_dir_shows_the_run())
		return false;
	if (c && c->when == AT_CLOSE && krmi_inject(c->spec))
		return false;
	if (r.run)
		vcpu_run_unmap(kvm, r.run);
	guest_realm_close(&r.g);
	krmi_inject("off");
	if (!c && !(built && ran)) {
		snprintf(why, sizeof(why), "the clean realm did not run");
		return false;
	}
	if (c && strstr(c->spec, "REC_ENTER") && !ran) {
		snprintf(why, sizeof(why), "%s", strstr(c->spec, "BUSY") ?
			 "no run through a busy entry" : "the refused boot vCPU did not kill the VM");
		return false;
	}
	if (krmi_debugfs_value("inject", "injected") != injected + (c ? c->times : 0)) {
		snprintf(why, sizeof(why), "not reached");
		return false;
	}
	if (krmi_realms(NULL) != 0) {
		snprintf(why, sizeof(why), "kvm_rmi/realms/ not empty after close");
		return false;
	}
	if (krmi_owned_delegated() != owned ||
	    krmi_debugfs_value("leaked", NULL) != leaked + (c ? c->leaks : 0)) {
		snprintf(why, sizeof(why), "owned %lld -> %lld, leaked %lld -> %lld",
			 owned, krmi_owned_delegated(), leaked, krmi_debugfs_value("leaked", NULL));
		return false;
	}
	return true;
}

/* The injection half: its own load, one result per case and four more. */
static void test_injection(void)
{
	char lines[MAX_LINES][256];
	int kvm, kmsg, n, ret;
	bool gpf = false;

	kmsg = load_begin();
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		ksft_exit_fail_msg("/dev/kvm: %s\n", strerror(errno));
	ksft_test_result(krmi_inject("RTT_CREATE SUCCESS") == -EINVAL &&
			 krmi_inject("RMI_NOPE ERROR_INPUT") == -EINVAL &&
			 krmi_inject("any ERROR_INPUT times=0") == -EINVAL,
			 "inject refuses what it cannot do\n");
	for (size_t i = 0; i < sizeof(inject_cases) / sizeof(inject_cases[0]); i++) {
		const struct inject_case *c = &inject_cases[i];

		why[0] = 0;
		ksft_test_result(inject_one(kvm, c), "inject %s: reached, contained %s\n",
				 c->spec, why);
	}
	why[0] = 0;
	ksft_test_result(inject_one(kvm, NULL),
			 "a clean realm runs afterwards; realms/<id>/ shows it, and goes %s\n", why);
	close(kvm);
	ret = module_unload();
	ksft_test_result(ret == 0, "unload (got %d)\n", ret);
	n = kmsg_module_lines(kmsg, lines, MAX_LINES);
	for (int i = 0; i < n && i < MAX_LINES; i++)
		gpf |= !!strstr(lines[i], "granule protection");
	ksft_test_result(!gpf, "no GPF logged\n");
	close(kmsg);
}

int main(void)
{
	struct one_vcpu_realm r = { .vcpu = -1, .g = GUEST_REALM_INIT };
	int kmsg, ret;

	ksft_print_header();
	if (!rmm_present())
		ksft_exit_skip("needs an RMM (KRMI_RME=1)\n");
	ksft_set_plan(14 + 5 + sizeof(inject_cases) / sizeof(inject_cases[0]));
	kmsg = load_begin();
	r.kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (r.kvm < 0)
		ksft_exit_fail_msg("/dev/kvm: %s\n", strerror(errno));
	ret = realm_build(&r);
	ksft_test_result(!ret, "realm with the guest, one frame made shared (%d)\n", ret);
	if (ret) {
		lost = true;
		snprintf(why, sizeof(why), "no realm");
	}
	test_private(&r);
	test_shared(&r);
	test_attributes(&r);
	test_hole_punch(&r);
	vcpu_run_unmap(r.kvm, r.run);
	guest_realm_close(&r.g);
	close(r.kvm);
	load_end(kmsg);
	lost = false;
	test_injection();
	ksft_finished();
}
