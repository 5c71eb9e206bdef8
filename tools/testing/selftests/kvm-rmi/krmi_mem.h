/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the kvm-rmi selftests of realm memory: memslots,
 * memory attributes, KVM_ARM_RMI_POPULATE requests, and the module's log.
 */
#ifndef KRMI_MEM_SELFTEST_H
#define KRMI_MEM_SELFTEST_H

#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "krmi.h"

#define MAX_LINES 64
#define PAGE 4096ULL

/* KVM_ARM_RMI_POPULATE: 0 or -errno; `args` is copied back either way. */
static inline int populate(int vm, struct kvm_arm_rmi_populate *args)
{
	return ioctl(vm, KVM_ARM_RMI_POPULATE, args) ? -errno : 0;
}

/* KVM_SET_USER_MEMORY_REGION2 (size 0 deletes): 0 or -errno. */
static inline int set_slot(int vm, __u32 slot, __u32 flags, __u64 gpa, __u64 size,
			   void *uaddr, int gmem)
{
	struct kvm_userspace_memory_region2 region = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (unsigned long)uaddr,
		.guest_memfd = gmem,
	};

	return ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &region) ? -errno : 0;
}

/* KVM_SET_MEMORY_ATTRIBUTES: 0 or -errno. */
static inline int set_attributes(int vm, __u64 gpa, __u64 size, __u64 attributes)
{
	struct kvm_memory_attributes attrs = {
		.address = gpa, .size = size, .attributes = attributes,
	};

	return ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &attrs) ? -errno : 0;
}

/* Anonymous private memory, or the test fails. */
static inline void *map_anon(__u64 size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		ksft_exit_fail_msg("mmap: %s\n", strerror(errno));
	return p;
}

/* A populate request. */
static inline struct kvm_arm_rmi_populate req(__u64 base, __u64 size, __u64 src, __u32 flags)
{
	return (struct kvm_arm_rmi_populate){
		.base = base, .size = size, .source_uaddr = src, .flags = flags,
	};
}

/* Whether the module logged a failure, a leak, a death or a GPF. */
static inline bool bad_lines(char lines[][256], int n)
{
	for (int i = 0; i < n && i < MAX_LINES; i++)
		if (strstr(lines[i], "failed") || strstr(lines[i], "leaked") ||
		    strstr(lines[i], "died") || strstr(lines[i], "granule protection"))
			return true;
	return false;
}

/*
 * Loads the module (a test result; the test ends if it fails) and returns
 * the log opened before, for load_end().
 */
static inline int load_begin(void)
{
	int kmsg = kmsg_open(), ret = module_load();

	ksft_test_result(ret == 0, "load (got %d)\n", ret);
	if (ret)
		ksft_exit_fail_msg("cannot load " MODULE_NAME "\n");
	return kmsg;
}

/* Unloads the module and checks its log since load_begin(): two results. */
static inline void load_end(int kmsg)
{
	char lines[MAX_LINES][256];
	int ret = module_unload(), n;

	ksft_test_result(ret == 0, "unload (got %d)\n", ret);
	n = kmsg_module_lines(kmsg, lines, MAX_LINES);
	ksft_test_result(!bad_lines(lines, n), "no failure, leak or GPF logged\n");
	close(kmsg);
}

/*
 * The realm of the memory tests: 40 bits (protected half below 2^39), a
 * 4 MiB guest_memfd at IPA 0 with its shared mapping, a normal memslot's
 * memory right above it, and a source buffer of the same size.
 */
#define SLOT_SIZE (4ULL << 20)
#define NORMAL_BASE SLOT_SIZE
#define PROTECTED_TOP (1ULL << 39)

struct realm {
	int vm, gmem;
	char *shared, *normal, *src;
};

/* The realm VM, its guest_memfd and buffers, no memslot yet. */
static inline struct realm realm_alloc(int kvm)
{
	struct kvm_create_guest_memfd gmem = { .size = SLOT_SIZE };
	struct realm r = { .vm = ioctl(kvm, KVM_CREATE_VM, KVM_VM_TYPE_ARM_REALM) };

	if (r.vm < 0)
		ksft_exit_fail_msg("realm VM: %s\n", strerror(errno));
	r.gmem = ioctl(r.vm, KVM_CREATE_GUEST_MEMFD, &gmem);
	if (r.gmem < 0)
		ksft_exit_fail_msg("guest_memfd: %s\n", strerror(errno));
	r.shared = map_anon(SLOT_SIZE);
	r.normal = map_anon(SLOT_SIZE);
	r.src = map_anon(SLOT_SIZE);
	for (__u64 i = 0; i < SLOT_SIZE; i++)
		r.src[i] = (char)(i * 7 + i / PAGE);
	return r;
}

/* Memslot 0 (guest_memfd at 0) and memslot 1 (normal, above): 0 or -errno. */
static inline int realm_add_slots(struct realm *r)
{
	return set_slot(r->vm, 0, KVM_MEM_GUEST_MEMFD, 0, SLOT_SIZE, r->shared, r->gmem) ?:
	       set_slot(r->vm, 1, 0, NORMAL_BASE, SLOT_SIZE, r->normal, 0);
}

static inline void realm_destroy(struct realm *r)
{
	close(r->gmem);
	close(r->vm);
	munmap(r->shared, SLOT_SIZE);
	munmap(r->normal, SLOT_SIZE);
	munmap(r->src, SLOT_SIZE);
}

#endif /* KRMI_MEM_SELFTEST_H */
