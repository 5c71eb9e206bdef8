// SPDX-License-Identifier: GPL-2.0
/*
 * `make run` with an RMM (guest side): a realm from start to end. Creates a
 * realm VM with one vCPU and a vGICv3, populates a tiny guest (measured),
 * runs it until it powers the realm off, prints what it wrote to its
 * "UART" (byte stores to an unprotected IPA, which reach userspace as
 * KVM_EXIT_MMIO), the RMI calls all this took (debugfs kvm_rmi/rmi_calls)
 * and whether anything was leaked (kvm_rmi/leaked). kvm_rmi must be loaded.
 *
 * Every line starts with "krmi: "; exit status 0 if the guest said its line
 * and powered off, with the realm's objects all created and destroyed
 * again and nothing leaked.
 */
#define _GNU_SOURCE
#include <stddef.h>

#include "../testing/selftests/kvm-rmi/krmi_guest.h"

#define IPA_BITS 40
#define UART ((1ULL << (IPA_BITS - 1)) | 0x09000000ULL)
#define SLOT_BYTES (64 * 1024)
#define MAX_NAMES 64

/* The guest: prints its message to the UART at x0, then PSCI SYSTEM_OFF. */
asm(".pushsection .rodata.krmi_demo_guest, \"a\"\n"
    ".balign 4096\n"
    ".globl demo_guest, demo_guest_end\n"
    ".hidden demo_guest, demo_guest_end\n"
    "demo_guest:\n"
    "	adr	x20, 10f\n"
    "1:	ldrb	w1, [x20], #1\n"
    "	cbz	w1, 2f\n"
    "	strb	w1, [x0]\n"
    "	b	1b\n"
    "2:	movz	x0, #0x0008\n"
    "	movk	x0, #0x8400, lsl #16\n"
    "	smc	#0\n"
    "3:	b	3b\n"
    "10:	.asciz \"Hello from inside a realm: the host cannot read this page.\"\n"
    "demo_guest_end:\n"
    ".popsection\n");
extern const char demo_guest[], demo_guest_end[];

/* RMI call counts by command name, from debugfs. */
struct rmi_counts {
	int n;
	char name[MAX_NAMES][48];
	long long count[MAX_NAMES];
};

static int read_counts(struct rmi_counts *c)
{
	FILE *f = fopen("/sys/kernel/debug/kvm_rmi/rmi_calls", "r");

	c->n = 0;
	if (!f)
		return -errno;
	while (c->n < MAX_NAMES &&
	       fscanf(f, "%47s %lld", c->name[c->n], &c->count[c->n]) == 2)
		c->n++;
	fclose(f);
	return 0;
}

static long long count_of(const struct rmi_counts *c, const char *name)
{
	for (int i = 0; i < c->n; i++)
		if (!strcmp(c->name[i], name))
			return c->count[i];
	return 0;
}

static long long leaked(void)
{
	FILE *f = fopen("/sys/kernel/debug/kvm_rmi/leaked", "r");
	long long n = -1;

	if (f) {
		if (fscanf(f, "%lld", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

/* Runs the realm until it powers off: 0, or -errno / -EPROTO. */
static int run_realm(int kvm, char *said, size_t room)
{
	int vm = ioctl(kvm, KVM_CREATE_VM, KVM_VM_TYPE_ARM_REALM | KVM_VM_TYPE_ARM_IPA_SIZE(IPA_BITS));
	int gmem = -1, gic = -1, vcpu = -1, ret, exits = 0;
	__u64 uart = UART;
	struct kvm_one_reg x0 = {
		.id = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
		      KVM_REG_ARM_CORE_REG(regs.regs[0]),
		.addr = (unsigned long)&uart,
	};
	struct kvm_run *run = NULL;
	void *shared = MAP_FAILED;
	size_t len = 0;

	if (vm < 0)
		return -errno;
	ret = realm_code_slot(vm, SLOT_BYTES, demo_guest, demo_guest_end, &gmem, &shared);
	if (!ret) {
		gic = vgic_v3_create(vm);
		ret = gic < 0 ? gic : 0;
	}
	if (!ret) {
		vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
		ret = vcpu < 0 ? -errno : vcpu_init(vm, vcpu, 0) ?: vgic_v3_init(gic);
	}
	if (!ret)
		ret = ioctl(vcpu, KVM_SET_ONE_REG, &x0) ? -errno : 0;
	if (!ret) {
		run = vcpu_run_map(kvm, vcpu);
		ret = run ? 0 : -ENOMEM;
	}
	while (!ret) {
		ret = vcpu_run_bounded(vcpu, 10);
		if (ret)
			break;
		exits++;
		if (exited_off(run))
			break;
		if (run->exit_reason != KVM_EXIT_MMIO || !run->mmio.is_write ||
		    run->mmio.phys_addr != (UART & ~(1ULL << (IPA_BITS - 1))) || run->mmio.len != 1) {
			printf("krmi: unexpected exit %u\n", run->exit_reason);
			ret = -EPROTO;
		} else if (len + 1 < room) {
			said[len++] = run->mmio.data[0];
		}
	}
	said[len] = '\0';
	printf("krmi: %d exits to userspace\n", exits);
	vcpu_run_unmap(kvm, run);
	if (vcpu >= 0)
		close(vcpu);
	if (gic >= 0)
		close(gic);
	close(vm);
	if (gmem >= 0)
		close(gmem);
	if (shared != MAP_FAILED)
		munmap(shared, SLOT_BYTES);
	return ret;
}

int main(void)
{
	static const char *const pairs[][2] = {
		{ "RMI_REALM_CREATE", "RMI_REALM_DESTROY" },
		{ "RMI_REC_CREATE", "RMI_REC_DESTROY" },
		{ "RMI_GRANULE_RANGE_DELEGATE", "RMI_GRANULE_RANGE_UNDELEGATE" },
	};
	struct rmi_counts before, after;
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), ret;
	bool balanced = true;
	char said[256];
	long long lost;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (kvm < 0 || read_counts(&before)) {
		printf("krmi: no /dev/kvm or kvm_rmi debugfs\n");
		return 1;
	}
	ret = run_realm(kvm, said, sizeof(said));
	close(kvm);
	read_counts(&after);
	printf("krmi: the realm %s\n", ret ? strerror(-ret) : "powered itself off");
	printf("krmi: guest said: \"%s\"\n", said);
	printf("krmi: RMI calls for this realm:\n");
	for (int i = 0; i < after.n; i++) {
		long long d = after.count[i] - count_of(&before, after.name[i]);

		if (d && strcmp(after.name[i], "total"))
			printf("krmi:   %-30s %lld\n", after.name[i], d);
	}
	printf("krmi:   %-30s %lld\n", "total", count_of(&after, "total") - count_of(&before, "total"));
	/* TF-RMM (un)delegates one granule per range call. */
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		long long made = count_of(&after, pairs[i][0]) - count_of(&before, pairs[i][0]);
		long long undone = count_of(&after, pairs[i][1]) - count_of(&before, pairs[i][1]);

		if (made != undone) {
			printf("krmi: %s %lld, but %s %lld\n", pairs[i][0], made, pairs[i][1], undone);
			balanced = false;
		}
	}
	lost = leaked();
	printf("krmi: torn down: %s; pages leaked so far: %lld\n",
	       balanced ? "every create and delegate undone" : "NOT balanced", lost);
	return !ret && balanced && lost == 0 && strstr(said, "Hello") ? 0 : 1;
}
