// SPDX-License-Identifier: GPL-2.0
/*
 * Memslots of realm VMs: which ones a realm accepts, and what memslot
 * deletion and memory attribute changes do to populated memory.
 *
 * Without an RMM no realm VM exists and everything is skipped. With one,
 * on a 40-bit realm (protected half below 2^39):
 * - a guest_memfd memslot and a normal memslot in the protected half are
 *   accepted; a memslot reaching into the unprotected half (the shared
 *   alias of the protected one) is refused with EINVAL, created or moved
 *   there;
 * - dirty logging is refused with EINVAL, at creation and as a flags-only
 *   change (the RMM does not let the host write-protect realm memory);
 * - deleting a guest_memfd memslot unmaps what was populated: recreated
 *   over the same file, the same range populates again (no EEXIST);
 * - setting populated pages shared and private again unmaps them: they
 *   populate again;
 * - a normal memslot set private still cannot be populated (EINVAL);
 * - guest_memfd memslot frames are PRIVATE by rule, not per-frame state: a
 *   64 GiB memslot is created within a second and its last frame
 *   populates; a frame set shared before its memslot existed stays shared;
 * - normal VMs keep dirty logging and slots anywhere in their IPA space;
 * - the module unloads and logs no failure, leak or GPF.
 */
#define _GNU_SOURCE
#include "krmi_mem.h"

/* A 40-bit realm; adding its two memslots is the first check. */
static struct realm realm_create(int kvm)
{
	struct realm r = realm_alloc(kvm);
	int ret = realm_add_slots(&r);

	ksft_test_result(!ret, "guest_memfd and normal memslots in the protected half (%d)\n",
			 ret);
	return r;
}

/* Slots reaching into the unprotected half: refused, created or moved. */
static void test_unprotected(struct realm *r)
{
	struct kvm_create_guest_memfd gm = { .size = SLOT_SIZE };
	int gmem = ioctl(r->vm, KVM_CREATE_GUEST_MEMFD, &gm);
	int cross, above, gmem_above, move_in, move_out;

	cross = set_slot(r->vm, 2, 0, PROTECTED_TOP - SLOT_SIZE / 2, SLOT_SIZE, r->src, 0);
	above = set_slot(r->vm, 2, 0, PROTECTED_TOP, SLOT_SIZE, r->src, 0);
	gmem_above = set_slot(r->vm, 3, KVM_MEM_GUEST_MEMFD, PROTECTED_TOP, SLOT_SIZE, r->src,
			      gmem);
	/* Moving the normal slot: within the protected half, then out of it. */
	move_in = set_slot(r->vm, 1, 0, PROTECTED_TOP - SLOT_SIZE, SLOT_SIZE, r->normal, 0);
	move_out = set_slot(r->vm, 1, 0, PROTECTED_TOP, SLOT_SIZE, r->normal, 0);
	set_slot(r->vm, 1, 0, NORMAL_BASE, SLOT_SIZE, r->normal, 0);
	ksft_test_result(gmem >= 0 && cross == -EINVAL && above == -EINVAL &&
			 gmem_above == -EINVAL && !move_in && move_out == -EINVAL,
			 "unprotected half: EINVAL (%d %d %d, moved %d; within %d)\n",
			 cross, above, gmem_above, move_out, move_in);
	if (gmem >= 0)
		close(gmem);
}

/* Dirty logging: refused at creation and as a flags-only change. */
static void test_dirty_log(struct realm *r)
{
	int created, flags_only;

	created = set_slot(r->vm, 2, KVM_MEM_LOG_DIRTY_PAGES, 2 * SLOT_SIZE, SLOT_SIZE, r->src, 0);
	flags_only = set_slot(r->vm, 1, KVM_MEM_LOG_DIRTY_PAGES, NORMAL_BASE, SLOT_SIZE,
			      r->normal, 0);
	ksft_test_result(created == -EINVAL && flags_only == -EINVAL,
			 "dirty logging: EINVAL (creating %d, flags only %d)\n", created,
			 flags_only);
}

/* Deleting the guest_memfd slot unmaps; recreated, the range fills again. */
static void test_delete_recreate(struct realm *r)
{
	struct kvm_arm_rmi_populate args = req(0, 64 * PAGE, (unsigned long)r->src, 0);
	int first = populate(r->vm, &args), del, add, again;

	del = set_slot(r->vm, 0, KVM_MEM_GUEST_MEMFD, 0, 0, r->shared, r->gmem);
	add = set_slot(r->vm, 0, KVM_MEM_GUEST_MEMFD, 0, SLOT_SIZE, r->shared, r->gmem);
	args = req(0, 64 * PAGE, (unsigned long)r->src, 0);
	again = populate(r->vm, &args);
	ksft_test_result(!first && !del && !add && !again && !args.size,
			 "slot deleted, recreated: populated again (%d %d %d %d)\n",
			 first, del, add, again);
}

/* Shared then private again: the populated pages were unmapped. */
static void test_attribute_flip(struct realm *r)
{
	__u64 base = 256 * PAGE, size = 16 * PAGE;
	struct kvm_arm_rmi_populate args = req(base, size, (unsigned long)r->src, 0);
	int first = populate(r->vm, &args), shared, private, again;

	shared = set_attributes(r->vm, base, size, 0);
	private = set_attributes(r->vm, base, size, KVM_MEMORY_ATTRIBUTE_PRIVATE);
	args = req(base, size, (unsigned long)r->src, 0);
	again = populate(r->vm, &args);
	ksft_test_result(!first && !shared && !private && !again && !args.size,
			 "shared, private again: populated again (%d %d %d %d)\n",
			 first, shared, private, again);
}

/* Private attributes do not give a normal memslot a guest_memfd. */
static void test_normal_private(struct realm *r)
{
	struct kvm_arm_rmi_populate args = req(NORMAL_BASE, 4 * PAGE, (unsigned long)r->src, 0);
	int private = set_attributes(r->vm, NORMAL_BASE, 4 * PAGE, KVM_MEMORY_ATTRIBUTE_PRIVATE);
	int ret = populate(r->vm, &args);

	ksft_test_result(ret == -EINVAL && args.size == 4 * PAGE,
			 "a normal memslot set private (%d) is not populated: %d\n", private, ret);
}

/*
 * A realm frame nothing set an attribute for is PRIVATE in a guest_memfd
 * memslot, by rule: a 64 GiB memslot is created at once (no per-frame
 * work) and its last frame populates; a frame set shared before its
 * memslot existed stays shared (populate refuses it).
 */
static void test_default_private(int kvm)
{
	const __u64 base = 64ULL << 30, size = 64ULL << 30;
	struct kvm_create_guest_memfd gm = { .size = size };
	int vm = ioctl(kvm, KVM_CREATE_VM, KVM_VM_TYPE_ARM_REALM);
	int gmem = -1, shared = -1, add = -1, last = -1, kept = -1;
	void *uaddr = mmap(NULL, size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	char *src = map_anon(PAGE);
	struct kvm_arm_rmi_populate args;
	double secs = -1, start;

	if (vm >= 0 && uaddr != MAP_FAILED) {
		gmem = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &gm);
		shared = set_attributes(vm, base, PAGE, 0);
		start = krmi_now();
		add = gmem < 0 ? -errno :
		      set_slot(vm, 0, KVM_MEM_GUEST_MEMFD, base, size, uaddr, gmem);
		secs = krmi_now() - start;
		args = req(base + size - PAGE, PAGE, (unsigned long)src, 0);
		last = populate(vm, &args);
		args = req(base, PAGE, (unsigned long)src, 0);
		kept = populate(vm, &args);
	}
	ksft_test_result(!add && secs >= 0 && secs < 1.0,
			 "a 64 GiB guest_memfd memslot is created in %.3f s (%d)\n", secs, add);
	ksft_test_result(!last, "its last frame is private with no attribute set: populated (%d)\n",
			 last);
	ksft_test_result(!shared && kept == -EINVAL,
			 "a frame set shared (%d) before the memslot existed stays shared: not populated (%d)\n",
			 shared, kept);
	if (gmem >= 0)
		close(gmem);
	if (vm >= 0)
		close(vm);
	if (uaddr != MAP_FAILED)
		munmap(uaddr, size);
	munmap(src, PAGE);
}

/* Normal VMs are not affected by the realm policy. */
static void test_normal_vm(int kvm)
{
	int vm = ioctl(kvm, KVM_CREATE_VM, 0), dirty = -1, high = -1;
	char *mem = map_anon(SLOT_SIZE);

	if (vm >= 0) {
		dirty = set_slot(vm, 0, KVM_MEM_LOG_DIRTY_PAGES, 0, SLOT_SIZE, mem, 0);
		high = set_slot(vm, 1, 0, PROTECTED_TOP, SLOT_SIZE / 2, mem + SLOT_SIZE / 2, 0);
		close(vm);
	}
	ksft_test_result(!dirty && !high,
			 "normal VM: dirty logging (%d) and a slot at 2^39 (%d) accepted\n",
			 dirty, high);
	munmap(mem, SLOT_SIZE);
}

int main(void)
{
	int kvm, kmsg;
	struct realm r;

	ksft_print_header();
	kvm = open_kvm_unloaded();
	if (!rmm_present()) {
		ksft_set_plan(1);
		ksft_test_result_skip("realm memslots: no RMM (boot with RME_FIRMWARE)\n");
		ksft_finished();
	}
	ksft_set_plan(13);
	kmsg = load_begin();

	r = realm_create(kvm);
	test_unprotected(&r);
	test_dirty_log(&r);
	test_delete_recreate(&r);
	test_attribute_flip(&r);
	test_normal_private(&r);
	realm_destroy(&r);
	test_default_private(kvm);
	test_normal_vm(kvm);

	close(kvm);
	load_end(kmsg);
	ksft_finished();
}
