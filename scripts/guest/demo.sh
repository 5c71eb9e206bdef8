#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# make run: load kvm_rmi and report what it found.
dmesg -c >/dev/null
if out=$(insmod /modules/kvm_rmi.ko 2>&1); then
	status="kvm_rmi loaded"
else
	status="kvm_rmi refused to load: ${out##*: }"
fi
dmesg | grep -e 'kvm_rmi' -e 'kvm \[' | sed 's/^/krmi: dmesg: /'
echo "krmi: $status"
grep -q '^kvm_rmi ' /proc/modules && rmmod kvm_rmi && echo "krmi: kvm_rmi unloaded"
