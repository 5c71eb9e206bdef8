#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# make run: load kvm_rmi and report what it found; with an RMM, run a realm
# (tools/demo/realm_demo.c) and unload.
dmesg -c >/dev/null
if out=$(insmod /modules/kvm_rmi.ko 2>&1); then
	status="kvm_rmi loaded"
else
	status="kvm_rmi refused to load: ${out##*: }"
fi
# busybox insmod retries with init_module() after a failed finit_module(),
# so a refusal is logged twice: show each line once.
dmesg | sed 's/^\[[^]]*\] //' | grep -e '^kvm_rmi' -e '^kvm \[' | uniq | sed 's/^/krmi: dmesg: /'
echo "krmi: $status"
# With an RMM: a realm from creation to teardown.
if [ "$KRMI_RME" = 1 ] && grep -q '^kvm_rmi ' /proc/modules; then
	echo "krmi: running a realm"
	if /tests/realm_demo; then
		echo "krmi: realm demo ok"
	else
		echo "krmi: realm demo FAILED"
	fi
fi
grep -q '^kvm_rmi ' /proc/modules && rmmod kvm_rmi && echo "krmi: kvm_rmi unloaded"
dmesg | sed 's/^\[[^]]*\] //' | grep -e 'leaked' -e 'died' | sed 's/^/krmi: dmesg: /'
true
