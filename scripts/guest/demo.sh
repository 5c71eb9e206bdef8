#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# make run: load kvm_rmi and report what it found, then boot upstream Linux
# with realm-vmm: in a realm with an RMM (attested, then torn down: the RMI
# calls it took and what it left), else as a normal VM.
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
debugfs=/sys/kernel/debug/kvm_rmi

# What the shell in the guest runs (realm-vmm's stdin is its console).
commands() {
	echo 'cat /sys/devices/system/cpu/online'
	echo 'dmesg | grep -e "RME:" -e "software IO TLB"'
	echo 'free -m | head -2'
	echo 'poweroff -f'
}

# Types the commands once the guest's shell prompts (as a user would: what
# arrives before is echoed by the guest's tty while it boots).
typist() {
	while ! grep -q ':/# ' /tmp/session 2>/dev/null; do
		sleep 0.2
	done
	commands
}

# Boots the guest with options $1 and shows the session, "krmi: | "-prefixed.
guest() {
	echo "krmi: realm-vmm $1 --smp 2 --mem 256M --kernel /guest/Image --initrd /guest/initramfs.cpio"
	: >/tmp/session
	# shellcheck disable=SC2086
	typist | /tests/realm-vmm $1 --smp 2 --mem 256M --kernel /guest/Image \
		--initrd /guest/initramfs.cpio \
		--cmdline "console=ttyS0 quiet panic=-1 swiotlb=8192 realm_vmm.shell" >/tmp/session 2>&1
	rc=$?
	# Without CRs and terminal escapes (ash asks where the cursor is).
	esc=$(printf '\033')
	tr -d '\r' </tmp/session | grep -v '^guest: token [0-9a-f]' |
		sed -e "s/$esc\[[0-9;]*[A-Za-z]//g" -e 's/^/krmi: | /'
	return $rc
}

if [ "$KRMI_RME" = 1 ] && grep -q '^kvm_rmi ' /proc/modules; then
	echo "krmi: booting Linux in a realm (2 vCPUs, 256 MiB), attested"
	base=$(($(cat $debugfs/delegated) - $(cat $debugfs/leaked)))
	cp $debugfs/rmi_calls /tmp/calls.before
	if guest --attest; then
		echo "krmi: the realm ran, attested, and powered off"
	else
		echo "krmi: the realm FAILED (realm-vmm exited $rc)"
	fi
	echo "krmi: RMI calls the realm took:"
	# Counts after minus before, by command.
	awk 'NR == FNR { before[$1] = $2; next }
		$2 - before[$1] > 0 { printf "krmi:   %-28s %d\n", $1, $2 - before[$1] }' \
		/tmp/calls.before $debugfs/rmi_calls
	left=$(($(cat $debugfs/delegated) - $(cat $debugfs/leaked)))
	if [ "$left" = "$base" ]; then
		echo "krmi: nothing left delegated ($left granules, as before); pages leaked: $(cat $debugfs/leaked)"
	else
		echo "krmi: $((left - base)) granules still delegated after the realm"
	fi
	echo "krmi: running a minimal realm (tools/demo/realm_demo.c)"
	if /tests/realm_demo >/tmp/demo 2>&1; then
		echo "krmi: realm demo ok"
	else
		sed 's/^/krmi: /' /tmp/demo
		echo "krmi: realm demo FAILED"
	fi
else
	echo "krmi: booting Linux as a normal VM (realm-vmm --normal: the same guest and devices)"
	if guest --normal; then
		echo "krmi: the VM ran and powered off"
	else
		echo "krmi: the VM FAILED (realm-vmm exited $rc)"
	fi
	echo "krmi: realms need an RMM: see README.md, \"RME firmware\", to run this in a realm"
fi
grep -q '^kvm_rmi ' /proc/modules && rmmod kvm_rmi && echo "krmi: kvm_rmi unloaded"
dmesg | sed 's/^\[[^]]*\] //' | grep -e 'leaked' -e 'died' | sed 's/^/krmi: dmesg: /'
true
