#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make test: every tier that runs without RME firmware, with the time of each
# stage. Tier 4 (realm tests) runs when RME_FIRMWARE is set.
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
}

stage deps "$here/deps.sh"
stage model "$here/model-test.sh"
stage vmm "$here/vmm-test.sh"
stage kernel "$here/build-kernel.sh"
stage api "$here/check-kernel-api.sh"
stage selftests "$here/build-selftests.sh"
stage guest "$here/build-guest.sh"
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
