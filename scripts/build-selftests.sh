#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Cross-build (static, aarch64) our tests in tools/testing/selftests/kvm-rmi
# and the upstream KVM selftests named in tools/testing/kvm-regression.list,
# against the built kernel's UAPI headers. ALL=1 builds every arm64 KVM
# selftest instead (to re-pick the baseline).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

out=$KRMI_BUILD/selftests/kvm
mkdir -p "$out"
[ -d "$KOBJ_DIR/usr/include/linux" ] || die "kernel headers missing: run scripts/build-kernel.sh"

ours=$KRMI_BUILD/selftests/kvm-rmi
mkdir -p "$ours"
for c in "$KRMI_TOP"/tools/testing/selftests/kvm-rmi/*.c; do
	bin=$ours/$(basename "$c" .c)
	fresh=1
	for dep in "$c" "$KRMI_TOP"/tools/testing/selftests/kvm-rmi/*.h; do
		[ "$bin" -nt "$dep" ] || fresh=0
	done
	[ "$fresh" = 1 ] && continue
	aarch64-linux-gnu-gcc -static -pthread -O2 -Wall -Werror \
		-I"$KSRC_DIR/tools/testing/selftests" -isystem "$KOBJ_DIR/usr/include" \
		-o "$bin" "$c" || die "build failed: $c"
done

targets=()
if [ "${ALL:-0}" != 1 ]; then
	while read -r name _; do
		targets+=("$out/$name")
	done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$KRMI_TOP/tools/testing/kvm-regression.list")
fi

log "building ${#targets[@]} KVM selftests${ALL:+ (all)}"
make -s -C "$KSRC_DIR/tools/testing/selftests/kvm" ARCH=arm64 \
	CROSS_COMPILE=aarch64-linux-gnu- OUTPUT="$out" \
	KHDR_INCLUDES="-isystem $KOBJ_DIR/usr/include" EXTRA_CFLAGS=-static \
	-j"$(nproc)" "${targets[@]}" >"$out/build.log" 2>&1 ||
	{ tail -30 "$out/build.log" >&2; die "KVM selftests build failed (log: $out/build.log)"; }
