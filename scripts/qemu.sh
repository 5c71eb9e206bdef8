#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot the built kernel + initramfs under QEMU and run the guest side.
#   scripts/qemu.sh run    load kvm_rmi and report what it found
#   scripts/qemu.sh test   run /tests/plan and print KTAP + a summary
#   scripts/qemu.sh bench  run the populate benchmark (needs RME_FIRMWARE)
#
# Without RME_FIRMWARE: -M virt,virtualization=on (EL2, no EL3, no RMM).
# With RME_FIRMWARE=DIR (bl1.bin + fip.bin of the user's own RME-enabled TF-A
# for QEMU with an RMM; the contract is in README.md): our Image, with the
# initramfs and command line built in, replaces BL33 in a copy of the FIP and
# QEMU boots TF-A from flash with RME enabled.
#
# Environment: QEMU_TIMEOUT (s), QEMU_SMP, QEMU_MEM; KRMI_CLOCK=icount runs
# QEMU with -icount shift=0 (clocks count instructions, 1 ns each, without
# what emulating the TLB costs) and tells the guest so; FW_LOG=FILE logs the
# firmware's UART (TF-A, RMM) with RME; QEMU_EXTRA adds QEMU arguments (split
# on spaces), e.g. "-d int -D build/logs/int.log" to log every exception;
# KRMI_CMDLINE_EXTRA adds kernel command line options; KRMI_LOGS is where
# the logs and the summary go (default build/logs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

mode=${1:-test}
case "$mode" in run | test | bench) ;; *) die "usage: $0 run|test|bench" ;; esac
timeout_s=${QEMU_TIMEOUT:-$([ "$mode" = test ] && echo 1500 || echo 300)}
logs=${KRMI_LOGS:-$KRMI_BUILD/logs}
mkdir -p "$logs"
clock=${KRMI_CLOCK:-wall}
case "$clock" in wall | icount) ;; *) die "KRMI_CLOCK=$clock: wall or icount" ;; esac
log_file=$logs/qemu-$mode$([ "$clock" = wall ] || echo "-$clock").log

read -r cpio payload < <("$here/initramfs.sh" "$mode")
rme=0
[ -n "${RME_FIRMWARE:-}" ] && rme=1
# crashkernel=: a reservation for the crash kernel rmm_boot_state loads.
cmdline="console=ttyAMA0 earlycon panic=-1 crashkernel=16M rdinit=/init krmi.mode=$mode krmi.rme=$rme krmi.clock=$clock"
[ -n "${KRMI_CMDLINE_EXTRA:-}" ] && cmdline="$cmdline $KRMI_CMDLINE_EXTRA"
common=(-smp "${QEMU_SMP:-2}" -m "${QEMU_MEM:-2G}" -nographic -no-reboot -nic none)
[ "$clock" = icount ] && common+=(-icount shift=0,sleep=off)
# The second UART is the firmware's (TF-A, RMM) with RME: logged if asked.
[ -n "${FW_LOG:-}" ] && common+=(-serial mon:stdio -serial "file:$FW_LOG")
# shellcheck disable=SC2206 # split on purpose
[ -n "${QEMU_EXTRA:-}" ] && common+=($QEMU_EXTRA)

if [ "$rme" = 1 ]; then
	fw=$RME_FIRMWARE
	for f in bl1.bin fip.bin; do
		[ -f "$fw/$f" ] || die "RME_FIRMWARE=$fw has no $f (see README: firmware contract)"
	done
	rmedir=$KRMI_BUILD/rme
	mkdir -p "$rmedir"
	"$here/build-kernel.sh" --embed "$cpio" "$cmdline" "$rmedir/Image"
	cp "$fw/fip.bin" "$rmedir/fip.bin"
	fiptool update --nt-fw "$rmedir/Image" "$rmedir/fip.bin" >/dev/null ||
		die "fiptool could not put the Image into the FIP as BL33"
	rm -f "$rmedir/flash.bin"
	dd if="$fw/bl1.bin" of="$rmedir/flash.bin" bs=4096 conv=notrunc status=none
	dd if="$rmedir/fip.bin" of="$rmedir/flash.bin" seek=64 bs=4096 conv=notrunc status=none
	machine=(-M virt,virtualization=on,secure=on,gic-version=3,acpi=off
		-cpu max,x-rme=on,pauth-impdef=on -bios "$rmedir/flash.bin")
	# The payload does not fit in the flash: a read-only virtio disk the
	# host's init unpacks (a cpio archive, padded to whole sectors).
	if [ -s "$payload" ]; then
		cp "$payload" "$rmedir/payload.img"
		truncate -s %512 "$rmedir/payload.img"
		machine+=(-drive "if=none,id=payload,format=raw,readonly=on,file=$rmedir/payload.img"
			-device virtio-blk-device,drive=payload)
	fi
else
	# The kernel unpacks concatenated archives in turn.
	initrd=$KRMI_BUILD/initramfs-$mode-all.cpio
	cat "$cpio" "$payload" >"$initrd"
	machine=(-M virt,virtualization=on,gic-version=3 -cpu max,pauth-impdef=on
		-kernel "$KOBJ_DIR/arch/arm64/boot/Image" -initrd "$initrd" -append "$cmdline")
fi

log "booting QEMU ($mode, rme=$rme, timeout ${timeout_s}s), serial log: $log_file"
start=$(date +%s.%N)
set +e
timeout -k 5 "$timeout_s" qemu-system-aarch64 "${machine[@]}" "${common[@]}" </dev/null >"$log_file" 2>&1 &
qpid=$!
# Follow the log: the test results as they come (run mode: the report).
if [ "$mode" = test ]; then
	filter='^(ok|not ok) |^krmi: '
elif [ "$mode" = bench ]; then
	filter='^krmi: |^\||^bench'
else
	filter='^krmi: '
fi
tail -n +1 --pid=$qpid -f "$log_file" | tr -d '\r' | grep --line-buffered -E "$filter"
wait $qpid
qrc=$?
set -e
end=$(date +%s.%N)
elapsed=$(awk "BEGIN { printf \"%.1f\", $end - $start }")
[ "$qrc" = 124 ] && log "QEMU timed out after ${timeout_s}s"
log "QEMU exited ($qrc) after ${elapsed}s"

if [ "$mode" = test ]; then
	python3 "$here/ktap-summary.py" "$log_file"
else
	grep -q '^krmi: done' <(tr -d '\r' <"$log_file") ||
		die "guest did not finish (see $log_file)"
fi
