/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the kvm-rmi selftests that run realm vCPUs: the vGICv3
 * a realm needs, the vCPUs' kvm_run, and the smallest realm guest, which
 * powers the realm off.
 *
 * Realm guest code is position-independent AArch64 in .rodata of the test,
 * copied into the realm with KVM_ARM_RMI_POPULATE. A realm vCPU starts at
 * EL1 with the MMU off, at the PC and with the x0..x7 its vCPU had at the
 * first KVM_RUN.
 */
#ifndef KRMI_GUEST_SELFTEST_H
#define KRMI_GUEST_SELFTEST_H

#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "krmi.h"

/* Where the tests put the vGIC: below 4 GiB, so any realm IPA size has it. */
#define GICD_BASE 0x08000000ULL
#define GICR_BASE 0x080a0000ULL

/* PSCI SYSTEM_OFF (SMC32), which a realm makes to the RMM. */
#define PSCI_SYSTEM_OFF 0x84000008

/*
 * Guest: PSCI SYSTEM_OFF, and nothing after it. The labels are global: C
 * reaches them through the GOT, and GOT references to local labels of one
 * section collapse into one entry (the section's start), so the size would
 * come out as 0.
 */
asm(".pushsection .rodata.krmi_guest, \"a\"\n"
    ".balign 4096\n"
    ".globl guest_system_off, guest_system_off_end\n"
    ".hidden guest_system_off, guest_system_off_end\n"
    "guest_system_off:\n"
    "	movz	x0, #0x0008\n"
    "	movk	x0, #0x8400, lsl #16\n"
    "	smc	#0\n"
    "1:	b	1b\n"
    "guest_system_off_end:\n"
    ".popsection\n");
extern const char guest_system_off[], guest_system_off_end[];

/* KVM_ARM_VCPU_INIT with PSCI 0.2 (which realms need), plus `features`. */
static inline int vcpu_init(int vm, int vcpu, __u32 features)
{
	struct kvm_vcpu_init init;

	if (ioctl(vm, KVM_ARM_PREFERRED_TARGET, &init))
		return -errno;
	init.features[0] |= (1u << KVM_ARM_VCPU_PSCI_0_2) | features;
	return ioctl(vcpu, KVM_ARM_VCPU_INIT, &init) ? -errno : 0;
}

/* KVM_SET_DEVICE_ATTR on device `fd`: 0 or -errno. */
static inline int device_attr(int fd, __u32 group, __u64 attr, const void *addr)
{
	struct kvm_device_attr a = {
		.group = group, .attr = attr, .addr = (unsigned long)addr,
	};

	return ioctl(fd, KVM_SET_DEVICE_ATTR, &a) ? -errno : 0;
}

/*
 * A vGICv3 for `vm`, at GICD_BASE/GICR_BASE: its fd, or -errno. Initialise
 * it with vgic_v3_init() once the vCPUs exist.
 */
static inline int vgic_v3_create(int vm)
{
	struct kvm_create_device dev = { .type = KVM_DEV_TYPE_ARM_VGIC_V3 };
	__u64 dist = GICD_BASE, redist = GICR_BASE;
	int ret;

	if (ioctl(vm, KVM_CREATE_DEVICE, &dev))
		return -errno;
	ret = device_attr(dev.fd, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST, &dist) ?:
	      device_attr(dev.fd, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST, &redist);
	if (ret) {
		close(dev.fd);
		return ret;
	}
	return dev.fd;
}

static inline int vgic_v3_init(int fd)
{
	return device_attr(fd, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, NULL);
}

/* A realm guest's fds: its VM, vGICv3, vCPUs, code memslot's guest_memfd. */
struct guest_realm {
	int vm, gic, gmem, vcpu[2];
	/* The code memslot's userspace mapping, `size` bytes. */
	void *shared;
	__u64 size;
};

#define GUEST_REALM_INIT \
	{ .vm = -1, .gic = -1, .gmem = -1, .vcpu = { -1, -1 }, .shared = MAP_FAILED }

/* The realm VM (`ipa_bits` wide) with its vGICv3: 0 or -errno. */
static inline int guest_realm_open(struct guest_realm *g, int kvm, unsigned int ipa_bits)
{
	g->vm = ioctl(kvm, KVM_CREATE_VM,
		      KVM_VM_TYPE_ARM_REALM | KVM_VM_TYPE_ARM_IPA_SIZE(ipa_bits));
	if (g->vm < 0)
		return -errno;
	g->gic = vgic_v3_create(g->vm);
	return g->gic < 0 ? g->gic : 0;
}

/* vCPU `i`, initialised with PSCI 0.2 and `features`: 0 or -errno. */
static inline int guest_realm_add_vcpu(struct guest_realm *g, int i, __u32 features)
{
	g->vcpu[i] = ioctl(g->vm, KVM_CREATE_VCPU, i);
	if (g->vcpu[i] < 0)
		return -errno;
	return vcpu_init(g->vm, g->vcpu[i], features);
}

static inline void guest_realm_close(struct guest_realm *g)
{
	for (int i = 0; i < 2; i++)
		if (g->vcpu[i] >= 0)
			close(g->vcpu[i]);
	if (g->gic >= 0)
		close(g->gic);
	if (g->vm >= 0)
		close(g->vm);
	if (g->gmem >= 0)
		close(g->gmem);
	if (g->shared != MAP_FAILED)
		munmap(g->shared, g->size);
}

/* The kvm_run of `vcpu`, or NULL. */
static inline struct kvm_run *vcpu_run_map(int kvm, int vcpu)
{
	int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	void *p;

	if (size < (int)sizeof(struct kvm_run))
		return NULL;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	return p == MAP_FAILED ? NULL : p;
}

static inline void vcpu_run_unmap(int kvm, struct kvm_run *run)
{
	if (run)
		munmap(run, ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0));
}

static inline void krmi_on_alarm(int sig)
{
	(void)sig;
}

/*
 * KVM_RUN of `vcpu`, interrupted (EINTR) if the vCPU has not exited to
 * userspace within `seconds`, so that a guest that never exits fails its
 * test instead of hanging it: 0 or -errno.
 */
static inline int vcpu_run_bounded(int vcpu, unsigned int seconds)
{
	struct sigaction sa = { .sa_handler = krmi_on_alarm };
	int ret;

	sigaction(SIGALRM, &sa, NULL);
	alarm(seconds);
	ret = ioctl(vcpu, KVM_RUN, 0) ? -errno : 0;
	alarm(0);
	return ret;
}

/* Whether `run` says the guest powered the VM off (PSCI SYSTEM_OFF). */
static inline bool exited_off(const struct kvm_run *run)
{
	return run->exit_reason == KVM_EXIT_SYSTEM_EVENT &&
	       run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN;
}

/*
 * The guest_memfd memslot at IPA 0 of a realm, `size` bytes, its first pages
 * populated (measured) with [code, end), zero-padded to whole pages: 0 or
 * -errno. `*gmem` gets the guest_memfd, to close after the VM (closing it
 * unmaps the memory), and `*shared` the memslot's userspace mapping, to
 * munmap.
 */
static inline int realm_code_slot(int vm, __u64 size, const char *code, const char *end,
				  int *gmem, void **shared)
{
	struct kvm_create_guest_memfd create = { .size = size };
	struct kvm_userspace_memory_region2 region = {
		.flags = KVM_MEM_GUEST_MEMFD,
		.memory_size = size,
	};
	__u64 len = end > code ? (__u64)(end - code + 4095) & ~4095ULL : 0;
	struct kvm_arm_rmi_populate args = {
		.size = len, .flags = KVM_ARM_RMI_POPULATE_FLAGS_MEASURE,
	};
	void *src;
	int ret;

	*gmem = -1;
	*shared = MAP_FAILED;
	if (!len || len > size)
		return -EINVAL;
	*shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (*shared == MAP_FAILED)
		return -ENOMEM;
	src = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (src == MAP_FAILED)
		return -ENOMEM;
	*gmem = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &create);
	if (*gmem < 0) {
		munmap(src, len);
		return -errno;
	}
	memcpy(src, code, end - code);
	region.userspace_addr = (unsigned long)*shared;
	region.guest_memfd = *gmem;
	args.source_uaddr = (unsigned long)src;
	ret = ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &region) ? -errno : 0;
	if (!ret)
		ret = ioctl(vm, KVM_ARM_RMI_POPULATE, &args) ? -errno : 0;
	munmap(src, len);
	return ret;
}

/* realm_code_slot() for `g`: its code memslot of `size` bytes. */
static inline int guest_realm_code(struct guest_realm *g, __u64 size, const char *code,
				   const char *end)
{
	g->size = size;
	return realm_code_slot(g->vm, size, code, end, &g->gmem, &g->shared);
}

/* A realm with one vCPU, as one_vcpu_realm_open() makes it. */
struct one_vcpu_realm {
	int kvm, vcpu;
	struct guest_realm g;
	struct kvm_run *run;
};

/*
 * Makes @r, on @r->kvm, a realm of @ipa_bits with one vCPU, which runs
 * @code..@end from a guest_memfd memslot of @size bytes at IPA 0, its run
 * structure mapped. 0 or -errno.
 */
static inline int one_vcpu_realm_open(struct one_vcpu_realm *r, unsigned int ipa_bits,
				      __u64 size, const char *code, const char *end)
{
	int ret = guest_realm_open(&r->g, r->kvm, ipa_bits) ?: guest_realm_add_vcpu(&r->g, 0, 0);

	if (ret)
		return ret;
	r->vcpu = r->g.vcpu[0];
	r->run = vcpu_run_map(r->kvm, r->vcpu);
	if (!r->run)
		return -ENOMEM;
	return guest_realm_code(&r->g, size, code, end);
}

#endif /* KRMI_GUEST_SELFTEST_H */
