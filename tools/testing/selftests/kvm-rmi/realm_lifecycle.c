// SPDX-License-Identifier: GPL-2.0
/*
 * Realm VMs created and destroyed through KVM with kvm_rmi loaded.
 *
 * Without the module (and, without an RMM, for good): KVM_CAP_ARM_RMI is 0
 * and realm VM types fail with EINVAL. With it: KVM_CAP_ARM_RMI is 1; every
 * IPA size from 32 bits up to min(host limit, RMM limit) gives a realm, the
 * sizes above fail with EINVAL, and so do invalid types; a realm VM is
 * offered only the realm capabilities; realms are created and destroyed in a
 * loop; rmmod is refused while a realm fd is open and allowed once it is
 * closed; nothing is logged as failed or leaked.
 *
 * The first KVM_RUN of a realm vCPU builds the realm in the RMM (RD, root
 * RTTs, a REC per vCPU) and activates it; its guest powers the realm off,
 * which ends that KVM_RUN with KVM_EXIT_SYSTEM_EVENT. Closing the VM
 * terminates and destroys the realm. This runs for every IPA size and in the
 * loop.
 *
 * Realms have private memory: KVM_CAP_MEMORY_ATTRIBUTES reports PRIVATE
 * (on /dev/kvm only while the module is loaded), a realm's guest_memfd
 * cannot be INIT_SHARED and the host cannot fault it in (SIGBUS), realm
 * guest_memfd memslots keep a userspace mapping for the shared alias, and
 * memory attributes can be set on realms only. Realms get only a GICv3 and
 * no steal time.
 */
#define _GNU_SOURCE
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "krmi.h"
#include "krmi_guest.h"

#define LOOP_REALMS 200
#define MAX_LINES 64

/* Creates a VM of `type` and returns its fd, or -errno. */
static int vm_create(int kvm, unsigned long type)
{
	int vm = ioctl(kvm, KVM_CREATE_VM, type);

	return vm < 0 ? -errno : vm;
}

/* Creates and closes a VM of `type`: 0 or -errno. */
static int vm_create_close(int kvm, unsigned long type)
{
	int vm = vm_create(kvm, type);

	if (vm < 0)
		return vm;
	close(vm);
	return 0;
}

/*
 * A realm VM of `type` with vCPUs `ids` (in creation order), vCPU `ids[i]`
 * powered off if bit i of `off`, all with PSCI 0.2 unless `no_psci`, a
 * vGICv3 if `gic`, and a guest that powers the realm off: 0 if the first
 * KVM_RUN of the first vCPU returned with the realm powered off (PSCI
 * SYSTEM_OFF), -EPROTO for another exit, else the -errno of KVM_RUN or of
 * the step that failed before it.
 */
static int realm_boot(int kvm, unsigned long type, const int *ids, int n, unsigned int off,
		      bool no_psci, bool gic)
{
	int vm = vm_create(kvm, type), vcpu[8], gic_fd = -1, gmem = -1, ret = 0;
	struct kvm_run *run = NULL;
	void *shared = MAP_FAILED;

	if (vm < 0)
		return vm;
	for (int i = 0; i < n; i++)
		vcpu[i] = -1;
	ret = realm_code_slot(vm, 4096, guest_system_off, guest_system_off_end, &gmem, &shared);
	if (!ret && gic) {
		gic_fd = vgic_v3_create(vm);
		ret = gic_fd < 0 ? gic_fd : 0;
	}
	for (int i = 0; i < n && !ret; i++) {
		__u32 features = off & (1u << i) ? 1u << KVM_ARM_VCPU_POWER_OFF : 0;

		vcpu[i] = ioctl(vm, KVM_CREATE_VCPU, ids[i]);
		if (vcpu[i] < 0) {
			ret = -errno;
		} else if (no_psci) {
			struct kvm_vcpu_init init;

			if (ioctl(vm, KVM_ARM_PREFERRED_TARGET, &init))
				ret = -errno;
			init.features[0] |= features;
			if (!ret && ioctl(vcpu[i], KVM_ARM_VCPU_INIT, &init))
				ret = -errno;
		} else {
			ret = vcpu_init(vm, vcpu[i], features);
		}
	}
	if (!ret && gic)
		ret = vgic_v3_init(gic_fd);
	if (!ret) {
		run = vcpu_run_map(kvm, vcpu[0]);
		ret = run ? 0 : -ENOMEM;
	}
	if (!ret)
		ret = vcpu_run_bounded(vcpu[0], 2) ?: exited_off(run) ? 0 : -EPROTO;
	vcpu_run_unmap(kvm, run);
	for (int i = 0; i < n; i++)
		if (vcpu[i] >= 0)
			close(vcpu[i]);
	if (gic_fd >= 0)
		close(gic_fd);
	close(vm);
	if (gmem >= 0)
		close(gmem);
	if (shared != MAP_FAILED)
		munmap(shared, 4096);
	return ret;
}

/* A realm of `type` with one vCPU, run once: see realm_boot(). */
static int vm_run_once(int kvm, unsigned long type)
{
	static const int one[] = { 0 };

	return realm_boot(kvm, type, one, 1, 0, false, true);
}

static unsigned long realm_type(unsigned int ipa_bits)
{
	return KVM_VM_TYPE_ARM_REALM | KVM_VM_TYPE_ARM_IPA_SIZE(ipa_bits);
}

/* The count of RMI command `name` in debugfs kvm_rmi/rmi_calls, or -1. */
static long rmi_calls(const char *name)
{
	FILE *f = fopen("/sys/kernel/debug/kvm_rmi/rmi_calls", "r");
	char line[128], n[64];
	long count, found = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s %ld", n, &count) == 2 && !strcmp(n, name))
			found = count;
	fclose(f);
	return found;
}

/*
 * Activation gives every vCPU a REC, and VM destruction destroys them before
 * the realm; vCPU sets the RMM cannot take are refused with EINVAL before any
 * REC is created.
 */
static void test_recs(int kvm)
{
	static const int three[] = { 0, 1, 2 }, swapped[] = { 1, 0 }, one[] = { 0 };
	long created = rmi_calls("RMI_REC_CREATE"), destroyed = rmi_calls("RMI_REC_DESTROY");
	int ret;

	ret = realm_boot(kvm, KVM_VM_TYPE_ARM_REALM, three, 3, 0x6, false, true);
	ksft_test_result(ret == 0 &&
			 rmi_calls("RMI_REC_CREATE") == created + 3 &&
			 rmi_calls("RMI_REC_DESTROY") == destroyed + 3,
			 "3 vCPUs: activated with 3 RECs, vCPU 0 ran and powered off, 3 destroyed "
			 "(run %d, created %ld, destroyed %ld)\n",
			 ret, rmi_calls("RMI_REC_CREATE") - created,
			 rmi_calls("RMI_REC_DESTROY") - destroyed);
	created = rmi_calls("RMI_REC_CREATE");
	ret = realm_boot(kvm, KVM_VM_TYPE_ARM_REALM, swapped, 2, 0x1, false, true);
	ksft_test_result(ret == -EINVAL, "vCPU ids out of creation order: EINVAL (got %d)\n", ret);
	ret = realm_boot(kvm, KVM_VM_TYPE_ARM_REALM, one, 1, 0, true, true);
	ksft_test_result(ret == -EINVAL, "vCPU without PSCI 0.2: EINVAL (got %d)\n", ret);
	ret = realm_boot(kvm, KVM_VM_TYPE_ARM_REALM, three, 3, 0x1, false, true);
	ksft_test_result(ret == -EINVAL, "vCPU 0 powered off: EINVAL (got %d)\n", ret);
	ret = realm_boot(kvm, KVM_VM_TYPE_ARM_REALM, one, 1, 0, false, false);
	ksft_test_result(ret == -EINVAL, "no in-kernel vGICv3: EINVAL (got %d)\n", ret);
	ksft_test_result(rmi_calls("RMI_REC_CREATE") == created,
			 "refused vCPU sets create no REC (%ld created)\n",
			 rmi_calls("RMI_REC_CREATE") - created);
}

/* What every kernel must do when no realm provider is loaded. */
static void test_without_provider(int kvm, const char *when)
{
	int ret = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_RMI);

	ksft_test_result(ret == 0, "%s: KVM_CAP_ARM_RMI is 0 (got %d)\n", when, ret);
	ret = vm_create_close(kvm, KVM_VM_TYPE_ARM_REALM);
	ksft_test_result(ret == -EINVAL, "%s: a realm fails with EINVAL (got %d)\n", when, ret);
	ret = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_ATTRIBUTES);
	ksft_test_result(ret == 0, "%s: KVM_CAP_MEMORY_ATTRIBUTES is 0 (got %d)\n", when, ret);
}

/* The "IPA <n> bits" figure of the "RMM features:" line among `lines`. */
static int rmm_ipa_bits(char lines[][256], int n)
{
	unsigned int bits;

	for (int i = 0; i < n && i < MAX_LINES; i++)
		if (sscanf(lines[i], "kvm_rmi: RMM features: IPA %u bits", &bits) == 1)
			return bits;
	return -1;
}

/* Whether any of `lines` reports a failure or leaked memory. */
static bool bad_lines(char lines[][256], int n)
{
	for (int i = 0; i < n && i < MAX_LINES; i++)
		if (strstr(lines[i], "failed") || strstr(lines[i], "leaked"))
			return true;
	return false;
}

static void test_ipa_sizes(int kvm, int host_limit, int rmm_limit)
{
	int limit = host_limit < rmm_limit ? host_limit : rmm_limit;
	int vm = vm_create(kvm, KVM_VM_TYPE_ARM_REALM);
	int created = 0, refused = 0, wrong = 0, ret;

	ksft_test_result(vm >= 0, "a realm with the default IPA size (got %d)\n", vm);
	if (vm >= 0) {
		ret = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_VM_IPA_SIZE);
		ksft_test_result(ret == limit,
				 "realm VM: KVM_CAP_ARM_VM_IPA_SIZE is min(host %d, RMM %d) (got %d)\n",
				 host_limit, rmm_limit, ret);
		ret = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_RMI);
		ksft_test_result(ret == 1, "realm VM: KVM_CAP_ARM_RMI is 1 (got %d)\n", ret);
		close(vm);
	} else {
		ksft_test_result_fail("realm VM: KVM_CAP_ARM_VM_IPA_SIZE\n");
		ksft_test_result_fail("realm VM: KVM_CAP_ARM_RMI\n");
	}

	for (int bits = 32; bits <= host_limit; bits++) {
		ret = bits <= limit ? vm_run_once(kvm, realm_type(bits)) :
				      vm_create_close(kvm, realm_type(bits));
		if (bits <= limit && ret == 0) {
			created++;
		} else if (bits > limit && ret == -EINVAL) {
			refused++;
		} else {
			wrong++;
			ksft_print_msg("IPA %d bits: got %d\n", bits, ret);
		}
	}
	ksft_test_result(!wrong && created == limit - 31,
			 "IPA sizes 32..%d give realms built and activated at the first KVM_RUN, "
			 "which run until the guest powers off (%d); %d..%d fail with EINVAL (%d)\n",
			 limit, created, limit + 1, host_limit, refused);
	ret = vm_create_close(kvm, realm_type(31));
	ksft_test_result(ret == -EINVAL, "IPA size 31 fails with EINVAL (got %d)\n", ret);
}

static void test_invalid_types(int kvm)
{
	int ret = vm_create_close(kvm, KVM_VM_TYPE_ARM_REALM | KVM_VM_TYPE_ARM_PROTECTED);

	ksft_test_result(ret == -EINVAL, "REALM|PROTECTED fails with EINVAL (got %d)\n", ret);
	ret = vm_create_close(kvm, KVM_VM_TYPE_ARM_REALM | (1UL << 8));
	ksft_test_result(ret == -EINVAL, "REALM with reserved bit 8 fails with EINVAL (got %d)\n",
			 ret);
}

/* A realm VM is offered only what a realm can do. */
static void test_realm_caps(int kvm)
{
	struct kvm_enable_cap nisv = { .cap = KVM_CAP_ARM_NISV_TO_USER };
	struct kvm_arm_counter_offset offset = { 0 };
	int vm = vm_create(kvm, KVM_VM_TYPE_ARM_REALM);
	int mte, counter, enable, set_offset;

	if (vm < 0) {
		ksft_test_result_fail("realm capabilities: no realm (%d)\n", vm);
		return;
	}
	mte = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_MTE);
	counter = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_COUNTER_OFFSET);
	enable = ioctl(vm, KVM_ENABLE_CAP, &nisv) ? -errno : 0;
	set_offset = ioctl(vm, KVM_ARM_SET_COUNTER_OFFSET, &offset) ? -errno : 0;
	ksft_test_result(mte == 0 && counter == 0 && enable == -EINVAL && set_offset == -EINVAL,
			 "realm VM: MTE %d, COUNTER_OFFSET %d, enabling NISV_TO_USER %d, "
			 "KVM_ARM_SET_COUNTER_OFFSET %d (want 0, 0, EINVAL, EINVAL)\n",
			 mte, counter, enable, set_offset);
	close(vm);
}

static int gmem_create(int vm, __u64 size, __u64 flags)
{
	struct kvm_create_guest_memfd args = { .size = size, .flags = flags };
	int fd = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &args);

	return fd < 0 ? -errno : fd;
}

/* A guest_memfd memslot at IPA 0 of `size` with a userspace mapping. */
static int gmem_slot(int vm, int gmem, void *uaddr, __u64 size)
{
	struct kvm_userspace_memory_region2 region = {
		.slot = 0,
		.flags = KVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = 0,
		.memory_size = size,
		.userspace_addr = (unsigned long)uaddr,
		.guest_memfd = gmem,
	};

	return ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &region) ? -errno : 0;
}

static int set_attributes(int vm, __u64 size, __u64 attributes)
{
	struct kvm_memory_attributes attrs = { .size = size, .attributes = attributes };

	return ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &attrs) ? -errno : 0;
}

/* What private memory means for realms, against a normal VM. */
static void test_private_memory(int kvm)
{
	const __u64 size = 2 << 20;
	int realm = vm_create(kvm, KVM_VM_TYPE_ARM_REALM), normal = vm_create(kvm, 0);
	int ret, realm_cap, normal_cap, slot, normal_slot;
	int shared = -1, gmem = -1, mapped_gmem = -1;
	int gmem_n = -1, attr_realm, attr_normal;
	char *shared_mem = MAP_FAILED, *gmem_map = MAP_FAILED;

	ret = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_ATTRIBUTES);
	ksft_test_result(ret == KVM_MEMORY_ATTRIBUTE_PRIVATE,
			 "KVM_CAP_MEMORY_ATTRIBUTES is PRIVATE with the module (got %d)\n", ret);
	if (realm < 0 || normal < 0) {
		ksft_test_result_fail("private memory: VMs (%d, %d)\n", realm, normal);
		ksft_test_result_fail("private memory: guest_memfd\n");
		ksft_test_result_fail("private memory: memslots and attributes\n");
		goto out;
	}
	realm_cap = ioctl(realm, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_ATTRIBUTES);
	normal_cap = ioctl(normal, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_ATTRIBUTES);
	ksft_test_result(realm_cap == KVM_MEMORY_ATTRIBUTE_PRIVATE && normal_cap == 0,
			 "KVM_CAP_MEMORY_ATTRIBUTES: realm %d, normal VM %d (want PRIVATE, 0)\n",
			 realm_cap, normal_cap);

	shared = gmem_create(realm, size, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
	mapped_gmem = gmem_create(realm, size, GUEST_MEMFD_FLAG_MMAP);
	if (mapped_gmem >= 0)
		gmem_map = mmap(NULL, size, PROT_READ, MAP_SHARED, mapped_gmem, 0);
	ksft_test_result(shared == -EINVAL && gmem_map != MAP_FAILED &&
			 read_raises_sigbus(gmem_map),
			 "realm guest_memfd: INIT_SHARED refused (%d), mmap'ed but reading it "
			 "raises SIGBUS\n", shared);

	gmem = gmem_create(realm, size, 0);
	gmem_n = gmem_create(normal, size, 0);
	shared_mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	slot = gmem < 0 || shared_mem == MAP_FAILED ? -1 : gmem_slot(realm, gmem, shared_mem, size);
	normal_slot = gmem_n < 0 || shared_mem == MAP_FAILED ? -1 :
		      gmem_slot(normal, gmem_n, shared_mem, size);
	attr_realm = set_attributes(realm, size, KVM_MEMORY_ATTRIBUTE_PRIVATE);
	attr_realm = attr_realm ? attr_realm : set_attributes(realm, size, 0);
	attr_normal = set_attributes(normal, size, KVM_MEMORY_ATTRIBUTE_PRIVATE);
	ksft_test_result(slot == 0 && normal_slot == -EINVAL && attr_realm == 0 &&
			 attr_normal == -EINVAL,
			 "guest_memfd memslot with a shared mapping: realm %d, normal VM %d; "
			 "attributes PRIVATE and back: realm %d, normal VM %d "
			 "(want 0, EINVAL, 0, EINVAL)\n", slot, normal_slot, attr_realm, attr_normal);
	if (gmem >= 0)
		close(gmem);
	if (shared >= 0)
		close(shared);
out:
	if (gmem_map != MAP_FAILED)
		munmap(gmem_map, size);
	if (shared_mem != MAP_FAILED)
		munmap(shared_mem, size);
	if (mapped_gmem >= 0)
		close(mapped_gmem);
	if (gmem_n >= 0)
		close(gmem_n);
	if (realm >= 0)
		close(realm);
	if (normal >= 0)
		close(normal);
}

/* KVM_ARM_RMI_POPULATE is for realms only. */
static void test_populate_normal_vm(int kvm)
{
	struct kvm_arm_rmi_populate args = { 0 };
	int vm = vm_create(kvm, 0);
	int ret = vm < 0 ? vm : ioctl(vm, KVM_ARM_RMI_POPULATE, &args) ? -errno : 0;

	ksft_test_result(ret == -ENXIO, "normal VM: KVM_ARM_RMI_POPULATE fails with ENXIO (got %d)\n",
			 ret);
	if (vm >= 0)
		close(vm);
}

static int create_device(int vm, __u32 type)
{
	struct kvm_create_device dev = { .type = type };

	return ioctl(vm, KVM_CREATE_DEVICE, &dev) ? -errno : (close(dev.fd), 0);
}

/* Steal time on vCPU 0 of `vm`: 0 if offered, else -errno. */
static int vcpu_pvtime(int vm)
{
	struct kvm_device_attr attr = {
		.group = KVM_ARM_VCPU_PVTIME_CTRL,
		.attr = KVM_ARM_VCPU_PVTIME_IPA,
	};
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	int ret;

	if (vcpu < 0)
		return -errno;
	ret = ioctl(vcpu, KVM_HAS_DEVICE_ATTR, &attr) ? -errno : 0;
	close(vcpu);
	return ret;
}

/* Policies of confidential VMs: GICv3 only, no steal time. */
static void test_realm_policies(int kvm)
{
	int realm = vm_create(kvm, KVM_VM_TYPE_ARM_REALM), normal = vm_create(kvm, 0);
	int v2, irqchip, v3, pvtime, normal_pvtime;

	if (realm < 0 || normal < 0) {
		ksft_test_result_fail("realm policies: VMs (%d, %d)\n", realm, normal);
		ksft_test_result_fail("realm policies: steal time\n");
		goto out;
	}
	v2 = create_device(realm, KVM_DEV_TYPE_ARM_VGIC_V2);
	irqchip = ioctl(realm, KVM_CREATE_IRQCHIP, 0) ? -errno : 0;
	v3 = create_device(realm, KVM_DEV_TYPE_ARM_VGIC_V3);
	ksft_test_result(v2 == -ENODEV && irqchip == -ENODEV && v3 == 0,
			 "realm VM: GICv2 device %d, KVM_CREATE_IRQCHIP %d, GICv3 device %d "
			 "(want ENODEV, ENODEV, 0)\n", v2, irqchip, v3);
	pvtime = vcpu_pvtime(realm);
	normal_pvtime = vcpu_pvtime(normal);
	ksft_test_result(pvtime == -ENXIO,
			 "realm vCPU: no steal time (%d; a normal vCPU gets %d)\n", pvtime,
			 normal_pvtime);
out:
	if (realm >= 0)
		close(realm);
	if (normal >= 0)
		close(normal);
}

static void test_loop(int kvm, int limit)
{
	int failed = 0;

	for (int i = 0; i < LOOP_REALMS; i++) {
		int bits = 32 + i % (limit - 31);
		/* Every other realm is also built in the RMM, and runs */
		int ret = i % 2 ? vm_run_once(kvm, realm_type(bits)) :
				  vm_create_close(kvm, realm_type(bits));

		if (ret) {
			failed++;
			ksft_print_msg("realm %d (IPA %d bits): %d\n", i, bits, ret);
			/* One is enough to fail; each may take the run bound */
			break;
		}
	}
	ksft_test_result(!failed, "%d realms created and destroyed (half built in the RMM and run), %d failed\n",
			 LOOP_REALMS, failed);
}

static void test_unload_while_open(int kvm)
{
	int vm = vm_create(kvm, KVM_VM_TYPE_ARM_REALM);
	int vcpu = vm < 0 ? -1 : ioctl(vm, KVM_CREATE_VCPU, 0);
	int ret = module_unload(), vcpu_only;

	if (vm >= 0)
		close(vm);
	/* A vCPU fd alone keeps the realm VM, and so the module, in use */
	vcpu_only = module_unload();
	ksft_test_result(vm >= 0 && vcpu >= 0 && ret == -EWOULDBLOCK &&
			 vcpu_only == -EWOULDBLOCK && module_listed(),
			 "rmmod refused while a realm VM fd (%d) or only its vCPU fd (%d) is open\n",
			 ret, vcpu_only);
	if (vcpu >= 0)
		close(vcpu);
	ret = module_unload();
	ksft_test_result(ret == 0 && !module_listed(),
			 "rmmod succeeds once it is closed (got %d)\n", ret);
}

int main(void)
{
	char lines[MAX_LINES][256];
	int kvm, kmsg, ret, n, host_limit, rmm_limit;

	ksft_print_header();
	kvm = open_kvm_unloaded();

	if (!rmm_present()) {
		ksft_set_plan(9);
		test_without_provider(kvm, "no module");
		test_populate_normal_vm(kvm);
		ret = module_load();
		ksft_test_result(ret == -ENODEV, "no RMM: load fails with ENODEV (got %d)\n", ret);
		if (!ret)
			module_unload();
		test_without_provider(kvm, "no RMM");
		ksft_test_result_skip("realm lifecycle, IPA sizes, rmmod with realms: no RMM "
				      "(boot with RME_FIRMWARE)\n");
		ksft_finished();
	}

	ksft_set_plan(33);
	test_without_provider(kvm, "before load");
	test_populate_normal_vm(kvm);
	kmsg = kmsg_open();
	ret = module_load();
	ksft_test_result(ret == 0, "load (got %d)\n", ret);
	if (ret)
		ksft_exit_fail_msg("cannot load " MODULE_NAME "\n");
	n = kmsg_module_lines(kmsg, lines, MAX_LINES);
	rmm_limit = rmm_ipa_bits(lines, n);
	ret = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_RMI);
	ksft_test_result(ret == 1, "KVM_CAP_ARM_RMI is 1 (got %d)\n", ret);
	host_limit = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_VM_IPA_SIZE);
	if (host_limit < 32 || rmm_limit < 32)
		ksft_exit_fail_msg("IPA limits: host %d, RMM %d\n", host_limit, rmm_limit);

	test_ipa_sizes(kvm, host_limit, rmm_limit);
	test_invalid_types(kvm);
	test_realm_caps(kvm);
	test_private_memory(kvm);
	test_realm_policies(kvm);
	test_recs(kvm);
	test_loop(kvm, host_limit < rmm_limit ? host_limit : rmm_limit);
	test_unload_while_open(kvm);
	test_without_provider(kvm, "after unload");

	n = kmsg_module_lines(kmsg, lines, MAX_LINES);
	ksft_test_result(!bad_lines(lines, n), "no failure or leak logged\n");
	close(kmsg);
	close(kvm);
	ksft_finished();
}
