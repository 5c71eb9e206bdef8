// SPDX-License-Identifier: GPL-2.0
/*
 * An exception KVM would inject into a realm, which the RMM cannot deliver:
 * booted with kvm-arm.vgic_v3_common_trap=1, KVM traps the GIC CPU
 * interface registers common to both groups (ICH_HCR_EL2.TC). The RMM
 * forwards a realm's trapped ICC_CTLR_EL1 read to the host, and KVM, which
 * emulates that register for normal VMs at EL2 only, answers UNDEF. The
 * realm must not see the read succeed with a stale x0: KVM_RUN fails with
 * EIO, the module logs why, and the VM stays dead (EIO again).
 *
 * Needs an RMM (KRMI_RME=1) and the boot option; SKIP otherwise.
 * make test runs it in a second boot with that option.
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
#define STALE 0x5ca1eULL

/* x0 = UCALL: reports STALE, then what ICC_CTLR_EL1 reads (x9 = STALE). */
asm(".pushsection .rodata.krmi_gic_trap_guest, \"a\"\n"
    ".balign 4096\n"
    ".globl gic_trap_guest, gic_trap_guest_end\n"
    ".hidden gic_trap_guest, gic_trap_guest_end\n"
    "gic_trap_guest:\n"
    "	movz	x9, #0xca1e\n"
    "	movk	x9, #0x5, lsl #16\n"
    "	str	x9, [x0]\n"
    "	mrs	x9, s3_0_c12_c12_4\n"		/* ICC_CTLR_EL1 */
    "	str	x9, [x0]\n"
    "1:	b	1b\n"
    "gic_trap_guest_end:\n"
    ".popsection\n");
extern const char gic_trap_guest[], gic_trap_guest_end[];

/* Whether the kernel command line has `opt`. */
static bool cmdline_has(const char *opt)
{
	char buf[1024] = "";
	FILE *f = fopen("/proc/cmdline", "r");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = '\0';
		fclose(f);
	}
	return strstr(buf, opt) != NULL;
}

int main(void)
{
	struct one_vcpu_realm r = { .vcpu = -1, .g = GUEST_REALM_INIT };
	char lines[MAX_LINES][256];
	int kmsg, ret, again = 0, n;
	bool logged = false;

	ksft_print_header();
	if (!rmm_present())
		ksft_exit_skip("needs an RMM (KRMI_RME=1)\n");
	if (!cmdline_has("kvm-arm.vgic_v3_common_trap=1"))
		ksft_exit_skip("needs kvm-arm.vgic_v3_common_trap=1 (make test boots with it)\n");
	ksft_set_plan(5);
	kmsg = kmsg_open();
	ret = module_load();
	ksft_test_result(ret == 0, "load (got %d)\n", ret);
	if (ret)
		ksft_exit_fail_msg("cannot load " MODULE_NAME "\n");
	r.kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (r.kvm < 0)
		ksft_exit_fail_msg("/dev/kvm: %s\n", strerror(errno));
	ret = one_vcpu_realm_open(&r, IPA_BITS, SLOT_BYTES, gic_trap_guest, gic_trap_guest_end) ?:
	      vgic_v3_init(r.g.gic) ?: set_reg(r.vcpu, xreg(0), UNPROTECTED | UCALL);
	ksft_test_result(!ret, "realm with the guest (%d)\n", ret);
	if (ret) {
		lost = true;
		snprintf(why, sizeof(why), "no realm");
	}
	report(step_write(r.vcpu, r.run, UCALL, STALE), "the guest runs");
	ret = lost ? 0 : vcpu_run_bounded(r.vcpu, 10);
	if (!lost && ret == -EIO)
		again = vcpu_run_bounded(r.vcpu, 10);
	if (!lost && ret != -EIO) {
		snprintf(why, sizeof(why), "KVM_RUN %d, exit %u%s", ret, r.run->exit_reason,
			 r.run->exit_reason == KVM_EXIT_MMIO ? " (the read seemed to succeed)" : "");
		lost = true;
	}
	report(ret == -EIO && again == -EIO,
	       "a trapped ICC_CTLR_EL1 read KVM answers with UNDEF: KVM_RUN EIO, and again");
	if (r.run)
		vcpu_run_unmap(r.kvm, r.run);
	guest_realm_close(&r.g);
	close(r.kvm);
	ret = module_unload();
	n = kmsg_module_lines(kmsg, lines, MAX_LINES);
	for (int i = 0; i < n && i < MAX_LINES; i++)
		logged |= strstr(lines[i], "which a realm cannot take: VM stopped") != NULL;
	close(kmsg);
	ksft_test_result(ret == 0 && logged, "the reason is logged; unload (got %d)\n", ret);
	ksft_finished();
}
