#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Pack the guest initramfs: busybox, /init, kvm_rmi.ko, our tests, and (mode
# "test") the KVM selftests of the regression list and /tests/plan; and
# beside it the payload archive: realm-vmm and the Linux guests it boots,
# too large for the RME boot's built-in initramfs (QEMU's flash), which the
# host's init unpacks from a virtio disk (or, without RME, from the same
# -initrd, concatenated).
#   scripts/initramfs.sh run|test|bench      prints the two cpio paths
# KRMI_ONLY=NAME (test mode) keeps only our test NAME (for development).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

mode=${1:-test}
root=$KRMI_BUILD/initramfs-$mode
cpio=$KRMI_BUILD/initramfs-$mode.cpio
proot=$KRMI_BUILD/payload-$mode
pcpio=$KRMI_BUILD/payload-$mode.cpio
rm -rf "$root" "$proot"
mkdir -p "$root"/{bin,sbin,usr/bin,proc,sys,dev,tmp,modules,tests/kvm} "$proot"

# /init needs a console before it can mount devtmpfs. With -initrd the kernel's
# own default cpio provides it, but a built-in initramfs (RME boot) replaces
# that one.
mknod -m 600 "$root/dev/console" c 5 1
cp /bin/busybox "$root/bin/busybox"
cp "$KRMI_TOP/scripts/guest/init" "$root/init"
cp "$KRMI_TOP/scripts/guest/ktap-run" "$KRMI_TOP/scripts/guest/demo.sh" "$root/tests/"
ko=$KOBJ_DIR/arch/arm64/kvm/rmi/kvm_rmi.ko
if [ "$KRMI_STOCK" != 1 ]; then
	[ -f "$ko" ] || die "module missing: $ko (run scripts/build-kernel.sh)"
	# Never pack a module older than its sources (an edit, or a checkout,
	# since the last build).
	for src in "$KRMI_TOP"/Kbuild "$KRMI_TOP"/Kconfig "$KRMI_TOP"/*.rs "$KRMI_TOP"/*.[ch]; do
		[ -e "$src" ] || continue
		[ "$ko" -nt "$src" ] || die "module older than ${src##*/}: run scripts/build-kernel.sh"
	done
	cp "$ko" "$root/modules/"
fi

# The payload: realm-vmm in /tests, the upstream guest in /guest and the
# Debian one in /guest/debian.
add_guest() {
	local gimage=$KRMI_BUILD/kbuild-guest/arch/arm64/boot/Image
	local gcpio=$KRMI_BUILD/guest-initramfs.cpio
	local debian=$KRMI_BUILD/debian-guest
	[ -x "$VMM_BIN" ] || die "realm-vmm missing: $VMM_BIN (run scripts/build-vmm.sh)"
	[ -f "$gimage" ] && [ -f "$gcpio" ] || die "guest missing: $gimage (run scripts/build-guest.sh)"
	[ -f "$debian/Image" ] || die "Debian guest missing: $debian/Image (run scripts/build-debian-guest.sh)"
	mkdir -p "$proot/tests" "$proot/guest/debian"
	cp "$VMM_BIN" "$proot/tests/"
	cp "$gimage" "$proot/guest/Image"
	cp "$gcpio" "$proot/guest/initramfs.cpio"
	cp "$debian/Image" "$debian/initramfs.cpio" "$proot/guest/debian/"
}

[ "$mode" = run ] && [ "$KRMI_STOCK" != 1 ] && {
	add_guest
	demo=$KRMI_BUILD/demo/realm_demo
	mkdir -p "$(dirname "$demo")"
	aarch64-linux-gnu-gcc -static -O2 -Wall -Werror \
		-I"$KSRC_DIR/tools/testing/selftests" -isystem "$KOBJ_DIR/usr/include" \
		-o "$demo" "$KRMI_TOP/tools/demo/realm_demo.c" || die "demo build failed"
	cp "$demo" "$root/tests/"
}

[ "$mode" = bench ] && {
	bench=$KRMI_BUILD/bench/realm_bench
	[ -x "$bench" ] || die "benchmark missing: $bench (run scripts/bench.sh)"
	cp "$bench" "$KRMI_TOP/scripts/guest/linux-bench" "$root/tests/"
	add_guest
}

plan=$root/tests/plan
[ "$mode" = test ] && {
	echo "# name timeout_s command"
	# rmm_boot_state first: it checks what happens to kexec images loaded
	# before the RMM is activated, which happens once per boot.
	sel=$KRMI_TOP/tools/testing/selftests/kvm-rmi
	[ "$KRMI_STOCK" = 1 ] || for c in "$sel/rmm_boot_state.c" $(ls "$sel"/*.c | grep -v /rmm_boot_state.c); do
		t=$(basename "$c" .c)
		[ -z "${KRMI_ONLY:-}" ] || [ "$t" = "$KRMI_ONLY" ] || continue
		bin=$KRMI_BUILD/selftests/kvm-rmi/$t
		[ -x "$bin" ] || die "test missing: $bin (run scripts/build-selftests.sh)"
		cp "$bin" "$root/tests/"
		# Generous: the debug configuration (lockdep, kmemleak) is slow.
		echo "kvm-rmi/$t 300 /tests/$t"
	done
	# Upstream Linux booted by realm-vmm (scripts/vmm-test.sh, build-guest.sh).
	if [ "$KRMI_STOCK" != 1 ] && { [ -z "${KRMI_ONLY:-}" ] || [ "$KRMI_ONLY" = realm_linux ]; }; then
		add_guest
		cp "$KRMI_TOP/scripts/guest/realm-linux" "$root/tests/"
		echo "kvm-rmi/realm_linux 1300 /tests/realm-linux"
	fi
	[ "$KRMI_STOCK" = 1 ] || cp "$KRMI_TOP/scripts/guest/kmemleak-check" \
		"$KRMI_TOP/scripts/guest/kernel-log-check" "$root/tests/"
	# With an RMM, the KVM regression tests run with kvm_rmi loaded (the
	# realm hooks enabled); without one it cannot load and they run as is.
	[ "$KRMI_STOCK" = 1 ] || {
		echo "kvm-rmi/load-for-regression 30 [ \"\$KRMI_RME\" = 1 ] || exit 4; insmod /modules/kvm_rmi.ko"
	}
	# The debug configuration (lockdep, kmemleak) runs them 2-4 times slower.
	slow=1
	[ "${DEBUG:-0}" = 1 ] && slow=4
	while read -r name tmo args; do
		bin=$KRMI_BUILD/selftests/kvm/$name
		[ -x "$bin" ] || die "selftest missing: $bin (run scripts/build-selftests.sh)"
		mkdir -p "$root/tests/kvm/$(dirname "$name")"
		cp "$bin" "$root/tests/kvm/$name"
		echo "kvm/$name $((${tmo:-120} * slow)) /tests/kvm/$name ${args:-}"
	done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "${KVM_LIST:-$KRMI_TOP/tools/testing/kvm-regression.list}")
	[ "$KRMI_STOCK" = 1 ] || {
		echo "kvm-rmi/unload-after-regression 30 [ \"\$KRMI_RME\" = 1 ] || exit 4; rmmod kvm_rmi"
		# Last, with kmemleak (DEBUG=1): no leak from anything above.
		echo "kvm-rmi/kmemleak 300 /tests/kmemleak-check"
		# And the kernel logged no warning, oops or debug report.
		echo "kvm-rmi/kernel-log 30 /tests/kernel-log-check"
	}
} >"$plan"

for r in "$root:$cpio" "$proot:$pcpio"; do
	(cd "${r%%:*}" && find . -print0 | LC_ALL=C sort -z |
		cpio --quiet -o -0 -H newc --owner 0:0 >"${r#*:}")
done
echo "$cpio $pcpio"
