#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# kvm_rmi load behaviour. Without an RMM (KRMI_RME=0): insmod fails with
# ENODEV and the module logs exactly one line saying why. With an RMM: it
# loads, logs the RMM's ABI version, and unloads.
ko=${KRMI_MODULE:-/modules/kvm_rmi.ko}
fail() { echo "FAIL: $*"; exit 1; }

dmesg -c >/dev/null
if [ "${KRMI_RME:-0}" = 1 ]; then
	insmod "$ko" || fail "insmod failed with an RMM present"
	dmesg | grep -q 'kvm_rmi: RMM ABI 2\.0 ' || fail "no 'RMM ABI 2.0' line"
	rmmod kvm_rmi || fail "rmmod failed"
	exit 0
fi

if out=$(insmod "$ko" 2>&1); then
	rmmod kvm_rmi
	fail "insmod succeeded without an RMM"
fi
echo "$out"
case "$out" in
*"No such device"*) ;;
*) fail "insmod did not fail with ENODEV" ;;
esac
grep -q '^kvm_rmi ' /proc/modules && fail "module is still listed in /proc/modules"
lines=$(dmesg | grep -c 'kvm_rmi:')
msg=$(dmesg | grep 'kvm_rmi:')
echo "$msg"
[ "$lines" = 1 ] || fail "expected one kvm_rmi line, got $lines"
case "$msg" in
*"kvm_rmi: no RMM found (RMI_VERSION: not supported)") ;;
*) fail "unexpected message" ;;
esac
exit 0
