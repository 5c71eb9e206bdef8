// SPDX-License-Identifier: GPL-2.0
/*
 * KVM_ARM_RMI_POPULATE: filling a realm's guest_memfd memory with initial
 * contents before its first run.
 *
 * Without an RMM no realm VM exists: the ioctl fails with ENXIO on a normal
 * VM and the rest is skipped. With one, on a 40-bit realm with a 4 MiB
 * guest_memfd memslot at IPA 0 (and a normal memslot above it):
 * - every invalid request fails with EINVAL and is copied back unchanged:
 *   reserved bits, unknown flags, unaligned fields, a zero source, a range
 *   that wraps, leaves the protected half, or is not guest_memfd memory;
 * - size 0 is a no-op;
 * - a measured and an unmeasured fill succeed, and the struct comes back
 *   advanced to the end; filling a page again fails with EEXIST;
 * - a range running off the guest_memfd memslot stops there: the call
 *   returns 0 with the struct advanced by the pages done, and the VMM's
 *   next call fails with EINVAL for the rest, the struct unchanged;
 * - pages set shared with KVM_SET_MEMORY_ATTRIBUTES are refused; set
 *   private again, they fill;
 * - a hole punch in guest_memfd unmaps populated pages (and they can be
 *   populated again), and deleting the memslot unmaps the rest;
 * - after the first KVM_RUN (which sets RIPAS RAM over the guest_memfd
 *   memslots and activates the realm) populate fails with EINVAL;
 * - closing everything logs no failure or leak.
 */
#define _GNU_SOURCE
#include <linux/falloc.h>

#include "krmi_mem.h"
#include "krmi_guest.h"

/* A 40-bit realm with the two memslots; it fails the test if it cannot. */
static struct realm realm_create(int kvm)
{
	struct realm r = realm_alloc(kvm);

	if (realm_add_slots(&r))
		ksft_exit_fail_msg("memslots: %s\n", strerror(errno));
	return r;
}

/* Each invalid request: EINVAL, and the struct unchanged. */
static void test_invalid(struct realm *r)
{
	__u64 src = (unsigned long)r->src;
	struct {
		const char *what;
		struct kvm_arm_rmi_populate args;
	} cases[] = {
		{ "reserved bits", { .base = 0, .size = PAGE, .source_uaddr = src, .reserved = 1 } },
		{ "unknown flag", req(0, PAGE, src, 1 << 1) },
		{ "unaligned base", req(8, PAGE, src, 0) },
		{ "unaligned size", req(0, PAGE + 8, src, 0) },
		{ "unaligned source", req(0, PAGE, src + 8, 0) },
		{ "zero source", req(0, PAGE, 0, 0) },
		{ "base + size wraps", req(PAGE, -PAGE, src, 0) },
		{ "source + size wraps", req(0, 2 * PAGE, -PAGE, 0) },
		{ "beyond the protected half", req(PROTECTED_TOP - PAGE, 2 * PAGE, src, 0) },
		{ "in the unprotected half", req(PROTECTED_TOP, PAGE, src, 0) },
		{ "a normal memslot", req(NORMAL_BASE, PAGE, src, 0) },
		{ "no memslot", req(64ULL << 20, PAGE, src, 0) },
	};
	int bad = 0;

	for (unsigned int i = 0; i < ARRAY_SIZE(cases); i++) {
		struct kvm_arm_rmi_populate args = cases[i].args;
		int ret = populate(r->vm, &args);

		if (ret != -EINVAL || memcmp(&args, &cases[i].args, sizeof(args))) {
			bad++;
			ksft_print_msg("%s: %d (base %#llx size %#llx)\n", cases[i].what, ret,
				       args.base, args.size);
		}
	}
	ksft_test_result(!bad, "%zu invalid requests fail with EINVAL, unchanged (%d wrong)\n",
			 ARRAY_SIZE(cases), bad);
}

static void test_fill(struct realm *r)
{
	__u64 src = (unsigned long)r->src;
	struct kvm_arm_rmi_populate args = req(PAGE, 0, 0, KVM_ARM_RMI_POPULATE_FLAGS_MEASURE);
	struct kvm_arm_rmi_populate again;
	int ret, ret2;

	ret = populate(r->vm, &args);
	ksft_test_result(ret == 0 && args.base == PAGE && args.size == 0,
			 "size 0 is a no-op (got %d)\n", ret);

	/* 600 pages: more than one chunk of the kernel's loop. */
	args = req(0, 600 * PAGE, src, KVM_ARM_RMI_POPULATE_FLAGS_MEASURE);
	ret = populate(r->vm, &args);
	ksft_test_result(ret == 0 && args.base == 600 * PAGE && args.size == 0 &&
			 args.source_uaddr == src + 600 * PAGE,
			 "measured fill of 600 pages: %d, comes back advanced (base %#llx size %#llx)\n",
			 ret, args.base, args.size);

	args = req(600 * PAGE, 8 * PAGE, src, 0);
	ret = populate(r->vm, &args);
	again = req(PAGE, PAGE, src, 0);
	ret2 = populate(r->vm, &again);
	ksft_test_result(ret == 0 && args.size == 0 && ret2 == -EEXIST && again.size == PAGE,
			 "unmeasured fill: %d; a page again: %d (want 0, EEXIST)\n", ret, ret2);
}

/*
 * A range running off the guest_memfd memslot: the first call returns 0
 * with the progress made, the next one the error, with nothing done.
 */
static void test_partial(struct realm *r)
{
	__u64 src = (unsigned long)r->src;
	__u64 base = SLOT_SIZE - 4 * PAGE, end = base + 6 * PAGE;
	struct kvm_arm_rmi_populate args = req(base, 6 * PAGE, src, 0);
	int first, ret, calls = 1;
	__u64 after_first;

	first = populate(r->vm, &args);
	after_first = args.size;
	/* The VMM's loop: call again until done or failed. */
	do {
		ret = populate(r->vm, &args);
		calls++;
	} while (!ret && args.size && calls < 8);
	ksft_test_result(first == 0 && after_first == 2 * PAGE && ret == -EINVAL &&
			 args.base == SLOT_SIZE && args.size == 2 * PAGE &&
			 args.base + args.size == end &&
			 args.source_uaddr + args.size == src + 6 * PAGE,
			 "a range off the memslot stops at its end: %d (size %#llx), then %d after %d calls, base %#llx size %#llx\n",
			 first, after_first, ret, calls, args.base, args.size);
}

static void test_attributes(struct realm *r)
{
	__u64 src = (unsigned long)r->src, base = 800 * PAGE;
	struct kvm_arm_rmi_populate args = req(base, 4 * PAGE, src, 0);
	int shared, refused, private, ret;

	shared = set_attributes(r->vm, base, 4 * PAGE, 0);
	refused = populate(r->vm, &args);
	private = set_attributes(r->vm, base, 4 * PAGE, KVM_MEMORY_ATTRIBUTE_PRIVATE);
	ret = populate(r->vm, &args);
	ksft_test_result(!shared && refused == -EINVAL && !private && ret == 0 && !args.size,
			 "attributes: shared pages refused (%d), private again they fill (%d)\n",
			 refused, ret);
}

/* Hole punch: the pages go back to guest_memfd; they can be filled again. */
static void test_punch(struct realm *r)
{
	__u64 src = (unsigned long)r->src;
	struct kvm_arm_rmi_populate args = req(0, 16 * PAGE, src, 0);
	int punch, ret;

	punch = fallocate(r->gmem, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 16 * PAGE) ?
		-errno : 0;
	ret = populate(r->vm, &args);
	ksft_test_result(!punch && ret == 0 && !args.size,
			 "hole punch over populated pages (%d), filled again (%d)\n", punch, ret);
}

/*
 * Runs a vCPU (with a vGIC) of realm `r`, whose page 0 holds the guest that
 * powers it off: 0 if it did, -EPROTO for another exit, else -errno.
 */
static int run_once(int kvm, struct realm *r)
{
	int vcpu = ioctl(r->vm, KVM_CREATE_VCPU, 0), gic = vgic_v3_create(r->vm), ret;
	struct kvm_run *run = NULL;

	ret = vcpu < 0 ? -errno : gic < 0 ? gic : vcpu_init(r->vm, vcpu, 0) ?: vgic_v3_init(gic);
	if (!ret) {
		run = vcpu_run_map(kvm, vcpu);
		ret = run ? 0 : -ENOMEM;
	}
	if (!ret)
		ret = vcpu_run_bounded(vcpu, 2) ?: exited_off(run) ? 0 : -EPROTO;
	vcpu_run_unmap(kvm, run);
	if (gic >= 0)
		close(gic);
	if (vcpu >= 0)
		close(vcpu);
	return ret;
}

static void test_after_run(int kvm)
{
	struct realm r = realm_create(kvm);
	struct kvm_arm_rmi_populate args = req(0, 4 * PAGE, (unsigned long)r.src, 0);
	int before, run, after;

	memcpy(r.src, guest_system_off, guest_system_off_end - guest_system_off);
	before = populate(r.vm, &args);
	/* The first KVM_RUN activates the realm, whose guest powers it off. */
	run = run_once(kvm, &r);
	args = req(8 * PAGE, PAGE, (unsigned long)r.src, 0);
	after = populate(r.vm, &args);
	ksft_test_result(before == 0 && run == 0 && after == -EINVAL && args.size == PAGE,
			 "after the first run populate fails with EINVAL (before %d, run %d, "
			 "after %d)\n", before, run, after);
	realm_destroy(&r);
}

/* Deleting the memslot unmaps what is populated; the file can go after. */
static void test_delete_slot(int kvm)
{
	struct realm r = realm_create(kvm);
	struct kvm_arm_rmi_populate args = req(0, 64 * PAGE, (unsigned long)r.src, 0);
	int ret = populate(r.vm, &args), del, again;

	del = set_slot(r.vm, 0, KVM_MEM_GUEST_MEMFD, 0, 0, r.shared, r.gmem);
	args = req(0, PAGE, (unsigned long)r.src, 0);
	again = populate(r.vm, &args);
	ksft_test_result(ret == 0 && del == 0 && again == -EINVAL,
			 "memslot deleted after populate (%d, %d); no longer populated (%d)\n",
			 ret, del, again);
	realm_destroy(&r);
}

int main(void)
{
	struct kvm_arm_rmi_populate args = req(0, PAGE, 0, 0);
	int kvm, kmsg, ret, n;
	struct realm r;

	ksft_print_header();
	kvm = open_kvm_unloaded();
	ksft_set_plan(rmm_present() ? 13 : 2);

	n = ioctl(kvm, KVM_CREATE_VM, 0);
	ret = n < 0 ? -errno : populate(n, &args);
	ksft_test_result(ret == -ENXIO, "normal VM: ENXIO (got %d)\n", ret);
	if (n >= 0)
		close(n);
	if (!rmm_present()) {
		ksft_test_result_skip("populating realms: no RMM (boot with RME_FIRMWARE)\n");
		ksft_finished();
	}

	kmsg = load_begin();

	r = realm_create(kvm);
	test_invalid(&r);
	test_fill(&r);
	test_partial(&r);
	test_attributes(&r);
	test_punch(&r);
	realm_destroy(&r);
	test_after_run(kvm);
	test_delete_slot(kvm);

	close(kvm);
	load_end(kmsg);
	ksft_finished();
}
