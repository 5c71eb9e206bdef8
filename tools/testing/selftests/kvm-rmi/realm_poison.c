// SPDX-License-Identifier: GPL-2.0
/*
 * Pages a realm cannot have, and what KVM_RUN gives for them, as KVM gives
 * for normal VMs (arm64 user_mem_abort() and gmem_abort(), x86's
 * kvm_handle_error_pfn()):
 * - the VMM's page behind an unprotected IPA, poisoned (MADV_HWPOISON):
 *   the VMM gets SIGBUS (BUS_MCEERR_AR, the page's address, PAGE_SHIFT) and
 *   KVM_RUN returns EINTR; the VMM replaces the page (MADV_DONTNEED) and the
 *   guest reads the new one;
 * - the VMM's page unmapped (munmap): KVM_RUN fails with EFAULT, no memory
 *   fault exit (the VMM cannot fix it by converting); mapped again, it works;
 * - a realm's guest_memfd page, poisoned while mapped (hwpoison-inject's
 *   corrupt-pfn, the frame read from the kvm_rmi_call trace of its
 *   RTT_DATA_MAP): the realm loses it, and the next access is EHWPOISON
 *   with a KVM_EXIT_MEMORY_FAULT (private) for the frame;
 * - the realm closes with nothing left delegated, the module unloads and
 *   logs no failure, leak or GPF.
 *
 * Needs an RMM (KRMI_RME=1), CONFIG_MEMORY_FAILURE and hwpoison-inject;
 * SKIP otherwise.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>

#include "krmi_guest.h"
#include "krmi_mem.h"
#include "krmi_step.h"

#define IPA_BITS 40
#define UNPROTECTED (1ULL << (IPA_BITS - 1))
#define UCALL 0x10000000ULL
#define SLOT_BYTES (64 * 1024)
#define SHARED_PAGE 0x8000ULL	/* the VMM's, poisoned */
#define PRIVATE_PAGE 0x9000ULL	/* from guest_memfd, poisoned */
#define GONE_PAGE 0xa000ULL	/* the VMM's, unmapped */

#define VMM_VALUE 0x5151ULL
#define TRACEFS "/sys/kernel/tracing/"
#define HWPOISON "/sys/kernel/debug/hwpoison/"

/* x0 = UCALL, x1 = SHARED_PAGE's alias, x2 = PRIVATE_PAGE, x3 = GONE_PAGE's alias. */
asm(".pushsection .rodata.krmi_poison_guest, \"a\"\n"
    ".balign 4096\n"
    ".globl poison_guest, poison_guest_end\n"
    ".hidden poison_guest, poison_guest_end\n"
    "poison_guest:\n"
    "	ldr	x9, [x2]\n"
    "	str	x9, [x0]\n"
    "	ldr	x9, [x1]\n"
    "	str	x9, [x0]\n"
    /* After MADV_HWPOISON: SIGBUS; after MADV_DONTNEED: the new page. */
    "	ldr	x9, [x1]\n"
    "	str	x9, [x0]\n"
    /* Unmapped: EFAULT; mapped again: its page. */
    "	ldr	x9, [x3]\n"
    "	str	x9, [x0]\n"
    /* The guest_memfd page, poisoned. */
    "	ldr	x9, [x2]\n"
    "	str	x9, [x0]\n"
    "1:	b	1b\n"
    "poison_guest_end:\n"
    ".popsection\n");
extern const char poison_guest[], poison_guest_end[];

/* The SIGBUS signals the VMM took, and the last one's details. */
static volatile sig_atomic_t sigbus_count;
static volatile int sigbus_code;
static void *volatile sigbus_addr;
static volatile short sigbus_lsb;

static void on_mceerr(int sig, siginfo_t *info, void *uc)
{
	(void)sig;
	(void)uc;
	sigbus_count++;
	sigbus_code = info->si_code;
	sigbus_addr = info->si_addr;
	sigbus_lsb = info->si_addr_lsb;
}

static bool file_write(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	bool ok;

	if (fd < 0)
		return false;
	ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	close(fd);
	return ok;
}

/*
 * The frame the trace shows mapped at protected IPA `ipa` by
 * RMI_RTT_DATA_MAP (its descriptor, x5, holds the PA in bits 51:12), or 0.
 */
static __u64 traced_data_frame(__u64 ipa)
{
	char line[512], want[64];
	unsigned long long desc = 0;
	FILE *f = fopen(TRACEFS "trace", "r");
	const char *p;

	if (!f)
		return 0;
	snprintf(want, sizeof(want), " x2=%#llx ", (unsigned long long)ipa);
	while (fgets(line, sizeof(line), f)) {
		p = strstr(line, "kvm_rmi_call: RMI_RTT_DATA_MAP ");
		if (!p || !strstr(p, want) || !strstr(p, "status=SUCCESS"))
			continue;
		p = strstr(p, " x5=");
		if (p)
			sscanf(p, " x5=%llx", &desc);
	}
	fclose(f);
	return (desc & 0x000ffffffffff000ULL) >> 12;
}

/* The frame of the VMM's page at `addr` (/proc/self/pagemap), or 0. */
static __u64 user_frame(const void *addr)
{
	__u64 entry = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (pread(fd, &entry, 8, (unsigned long)addr / PAGE * 8) != 8)
		entry = 0;
	close(fd);
	return entry & (1ULL << 63) ? entry & ((1ULL << 55) - 1) : 0;
}

/* Whether /proc/kpageflags shows frame `pfn` poisoned (KPF_HWPOISON). */
static bool frame_poisoned(__u64 pfn)
{
	__u64 flags = 0;
	int fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (pread(fd, &flags, 8, pfn * 8) != 8)
		flags = 0;
	close(fd);
	errno = 0;
	return flags & (1ULL << 19);
}

/* Gives frame `pfn` back to the allocator's view (best effort, logged). */
static void unpoison(__u64 pfn)
{
	char text[32];

	if (!pfn)
		return;
	snprintf(text, sizeof(text), "%#llx", (unsigned long long)pfn);
	if (!file_write(HWPOISON "unpoison-pfn", text))
		ksft_print_msg("unpoison-pfn %s: %s (the frame stays poisoned)\n", text,
			       strerror(errno));
}

static int realm_build(struct one_vcpu_realm *r)
{
	int ret = one_vcpu_realm_open(r, IPA_BITS, SLOT_BYTES, poison_guest, poison_guest_end);

	if (ret)
		return ret;
	memcpy((char *)r->g.shared + SHARED_PAGE, &(__u64){ VMM_VALUE }, 8);
	memcpy((char *)r->g.shared + GONE_PAGE, &(__u64){ VMM_VALUE }, 8);
	return vgic_v3_init(r->g.gic) ?:
	       set_attributes(r->g.vm, SHARED_PAGE, PAGE, 0) ?:
	       set_attributes(r->g.vm, GONE_PAGE, PAGE, 0) ?:
	       set_reg(r->vcpu, xreg(0), UNPROTECTED | UCALL) ?:
	       set_reg(r->vcpu, xreg(1), UNPROTECTED | SHARED_PAGE) ?:
	       set_reg(r->vcpu, xreg(2), PRIVATE_PAGE) ?:
	       set_reg(r->vcpu, xreg(3), UNPROTECTED | GONE_PAGE);
}

static bool vmm_failed(const char *what)
{
	if (!lost) {
		snprintf(why, sizeof(why), "%s: %s", what, strerror(errno));
		lost = true;
	}
	return false;
}

/* Runs to the next exit, which must be KVM_RUN failing with `err`. */
static bool step_fails(struct one_vcpu_realm *r, int err)
{
	int ret;

	if (lost)
		return false;
	ret = vcpu_run_bounded(r->vcpu, 10);
	if (ret == -err)
		return true;
	snprintf(why, sizeof(why), "KVM_RUN %d (%s), exit %u; wanted %s", ret,
		 strerror(-ret), r->run->exit_reason, strerror(err));
	lost = true;
	return false;
}

/* The guest maps a guest_memfd page (traced) and the VMM's page. */
static __u64 test_mapped(struct one_vcpu_realm *r)
{
	bool traced = file_write(TRACEFS "trace", "") &&
		      file_write(TRACEFS "events/kvm_rmi/kvm_rmi_call/enable", "1");
	__u64 pfn;

	report(step_write(r->vcpu, r->run, UCALL, 0), "the guest reads a guest_memfd page");
	file_write(TRACEFS "events/kvm_rmi/kvm_rmi_call/enable", "0");
	pfn = traced ? traced_data_frame(PRIVATE_PAGE) : 0;
	ksft_test_result(pfn != 0, "the trace shows its frame (%#llx)\n", (unsigned long long)pfn);
	report(step_write(r->vcpu, r->run, UCALL, VMM_VALUE),
	       "the guest reads the VMM's page through the unprotected alias");
	return pfn;
}

static void test_shared_poisoned(struct one_vcpu_realm *r)
{
	char *page = (char *)r->g.shared + SHARED_PAGE;
	__u64 pfn = user_frame(page);
	int took;
	bool ok;

	if (!lost && madvise(page, PAGE, MADV_HWPOISON))
		vmm_failed("madvise(MADV_HWPOISON)");
	took = sigbus_count;
	ok = step_fails(r, EINTR);
	ok = ok && sigbus_count == took + 1 && sigbus_code == BUS_MCEERR_AR &&
	     sigbus_addr == page && sigbus_lsb == 12;
	if (!ok && !lost) {
		snprintf(why, sizeof(why), "SIGBUS %d -> %d, code %d addr %p (page %p) lsb %d",
			 took, (int)sigbus_count, sigbus_code, sigbus_addr, page, sigbus_lsb);
		lost = true;
	}
	report(ok, "its page poisoned: SIGBUS (BUS_MCEERR_AR, the page, PAGE_SHIFT), KVM_RUN EINTR");
	if (!lost && madvise(page, PAGE, MADV_DONTNEED))
		vmm_failed("madvise(MADV_DONTNEED)");
	report(step_write(r->vcpu, r->run, UCALL, 0),
	       "the VMM replaces it (MADV_DONTNEED): the guest reads the new page");
	unpoison(pfn);
}

static void test_shared_unmapped(struct one_vcpu_realm *r)
{
	char *page = (char *)r->g.shared + GONE_PAGE;
	bool ok;

	if (!lost && munmap(page, PAGE))
		vmm_failed("munmap");
	ok = step_fails(r, EFAULT);
	if (ok && r->run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
		snprintf(why, sizeof(why), "a memory fault exit came with it");
		lost = true;
		ok = false;
	}
	report(ok, "its page unmapped: KVM_RUN EFAULT, no memory fault exit");
	if (!lost && mmap(page, PAGE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		vmm_failed("mmap");
	report(step_write(r->vcpu, r->run, UCALL, 0), "mapped again: the guest reads it");
}

static void test_private_poisoned(struct one_vcpu_realm *r, __u64 pfn)
{
	char text[32];
	bool ok;

	snprintf(text, sizeof(text), "%#llx", (unsigned long long)pfn);
	/*
	 * memory_failure() answers EBUSY: guest_memfd keeps the folio in its
	 * page cache (MF_DELAYED), for the VMM to decide. It is poisoned all
	 * the same, and the realm's mapping was invalidated.
	 */
	if (!lost && pfn && !file_write(HWPOISON "corrupt-pfn", text) && errno != EBUSY)
		vmm_failed("hwpoison corrupt-pfn");
	if (!lost && !frame_poisoned(pfn))
		vmm_failed("the frame is not poisoned (/proc/kpageflags)");
	ok = step_fails(r, EHWPOISON);
	ok = ok && r->run->exit_reason == KVM_EXIT_MEMORY_FAULT &&
	     r->run->memory_fault.gpa == PRIVATE_PAGE && r->run->memory_fault.size == PAGE &&
	     (r->run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE);
	if (!ok && !lost) {
		snprintf(why, sizeof(why), "exit %u gpa %#llx flags %#llx", r->run->exit_reason,
			 (unsigned long long)r->run->memory_fault.gpa,
			 (unsigned long long)r->run->memory_fault.flags);
		lost = true;
	}
	report(ok, "its guest_memfd page poisoned: EHWPOISON, KVM_EXIT_MEMORY_FAULT (private)");
}

int main(void)
{
	struct sigaction sa = { .sa_sigaction = on_mceerr, .sa_flags = SA_SIGINFO };
	struct one_vcpu_realm r = { .vcpu = -1, .g = GUEST_REALM_INIT };
	long long owned;
	int kmsg, ret;
	__u64 pfn;

	ksft_print_header();
	if (!rmm_present())
		ksft_exit_skip("needs an RMM (KRMI_RME=1)\n");
	if (access(TRACEFS "trace", W_OK))
		mount("tracefs", TRACEFS, "tracefs", 0, NULL);
	if (access(HWPOISON "corrupt-pfn", W_OK) || access(TRACEFS "trace", W_OK))
		ksft_exit_skip("needs hwpoison-inject and tracefs\n");
	ksft_set_plan(13);
	sigaction(SIGBUS, &sa, NULL);
	kmsg = load_begin();
	owned = krmi_owned_delegated();
	r.kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (r.kvm < 0)
		ksft_exit_fail_msg("/dev/kvm: %s\n", strerror(errno));
	ret = realm_build(&r);
	ksft_test_result(!ret, "realm with the guest, two frames made shared (%d)\n", ret);
	if (ret) {
		lost = true;
		snprintf(why, sizeof(why), "no realm");
	}
	pfn = test_mapped(&r);
	test_shared_poisoned(&r);
	test_shared_unmapped(&r);
	test_private_poisoned(&r, pfn);
	vcpu_run_unmap(r.kvm, r.run);
	guest_realm_close(&r.g);
	close(r.kvm);
	ksft_test_result(krmi_owned_delegated() == owned, "nothing left delegated (%lld -> %lld)\n",
			 owned, krmi_owned_delegated());
	unpoison(pfn);
	load_end(kmsg);
	ksft_finished();
}
