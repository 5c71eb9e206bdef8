#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make test: every tier, with the time of each stage. The realm tier runs
# with the firmware of RME_FIRMWARE if set, else with the cache directory's
# ($KRMI_CACHE/rme-firmware) if it holds bl1.bin and fip.bin;
# RME_FIRMWARE=none skips it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

stages=()
stage() {
	local name=$1
	shift
	local t0 t1
	t0=$(date +%s.%N)
	log "== stage: $name"
	local rc=0
	"$@" || rc=$?
	t1=$(date +%s.%N)
	stages+=("$(printf '%-10s %7.1fs  %s' "$name" "$(echo "$t1 - $t0" | bc)" \
		"$([ $rc = 0 ] && echo ok || echo "FAILED ($rc)")")")
	if [ $rc != 0 ]; then
		print_stages
		exit $rc
	fi
}
print_stages() {
	echo
	echo "stage       time     result"
	printf '%s\n' "${stages[@]}"
	echo "$tier"
}

# Which firmware the realm tier runs with, said in one line at the end.
cached_fw=$KRMI_CACHE/rme-firmware
if [ "${RME_FIRMWARE:-}" = none ]; then
	unset RME_FIRMWARE
	tier="realm tier: skipped (RME_FIRMWARE=none)"
elif [ -z "${RME_FIRMWARE:-}" ] && [ -f "$cached_fw/bl1.bin" ] && [ -f "$cached_fw/fip.bin" ]; then
	export RME_FIRMWARE=$cached_fw
fi
if [ -n "${RME_FIRMWARE:-}" ]; then
	sums=$(cd "$RME_FIRMWARE" && sha256sum bl1.bin fip.bin 2>/dev/null | awk '{ printf "%s%s %.12s", sep, $2, $1; sep = ", " }')
	tier="realm tier: on, with the RME firmware in $RME_FIRMWARE (sha256 $sums)"
elif [ -z "${tier:-}" ]; then
	tier="realm tier: skipped (no RME firmware: set RME_FIRMWARE, or put bl1.bin and fip.bin in $cached_fw; README \"RME firmware\")"
fi
log "$tier"

stage deps "$here/deps.sh"
stage model "$here/model-test.sh"
stage vmm "$here/vmm-test.sh"
stage kernel "$here/build-kernel.sh"
stage api "$here/check-kernel-api.sh"
stage selftests "$here/build-selftests.sh"
stage guest "$here/build-guest.sh"
stage debian "$here/build-debian-guest.sh"
# With an RMM, first a boot with KVM trapping the GIC registers common to
# both groups (ICH_HCR_EL2.TC), for realm_gic_trap: an exception KVM would
# inject into a realm.
if [ -n "${RME_FIRMWARE:-}" ]; then
	stage gic-trap env KRMI_CMDLINE_EXTRA=kvm-arm.vgic_v3_common_trap=1 \
		KRMI_ONLY=realm_gic_trap KVM_LIST=/dev/null KRMI_LOGS="$KRMI_BUILD/logs/gic-trap" \
		"$here/qemu.sh" test
fi
stage qemu "$here/qemu.sh" test
print_stages
# The QEMU tier's result again, as the last line.
echo "qemu: $(cat "$KRMI_BUILD/logs/summary.txt")"
