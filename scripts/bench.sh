#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make bench: benchmarks, printed as tables (not tests: nothing here fails on
# a number).
#   1. The model: RMI calls per populated page, with an RMM that delegates one
#      granule per range call (TF-RMM) and one that takes whole ranges.
#   2. With RME_FIRMWARE: under QEMU, KVM_ARM_RMI_POPULATE of 64 MiB (RMI
#      calls per page from debugfs, MiB/s) against filling a normal VM's
#      guest_memfd with the same bytes, and exit round trips; twice: by the
#      wall clock, then with QEMU's clocks counting instructions (-icount),
#      which leaves out what TCG's TLB emulation costs: it empties the TLB
#      at every world switch, so every RMI call makes the host's next
#      touch of each page slow (the last table measures it).
#   3. With RME_FIRMWARE, in the same runs: Linux (upstream and Debian's
#      kernel) booted to init by realm-vmm as a normal VM and in a realm
#      (scripts/guest/linux-bench): boot times, exits, RIPAS changes, time
#      inside the guest (REC_ENTER) and on the host side per exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

log "model: RMI calls per populated page"
"$here/model-test.sh" --release bench_ -- --ignored --nocapture --test-threads=1 |
	grep -o '|.*|$'

if [ -z "${RME_FIRMWARE:-}" ]; then
	log "no RME_FIRMWARE: the in-kernel benchmark needs an RMM, skipped"
	exit 0
fi
"$here/build-kernel.sh"
"$here/build-vmm.sh"
"$here/build-guest.sh"
"$here/build-debian-guest.sh"
out=$KRMI_BUILD/bench
mkdir -p "$out"
aarch64-linux-gnu-gcc -static -O2 -Wall -Werror \
	-I"$KSRC_DIR/tools/testing/selftests" -isystem "$KOBJ_DIR/usr/include" \
	-o "$out/realm_bench" "$KRMI_TOP/tools/bench/realm_bench.c"
log "by the wall clock"
QEMU_TIMEOUT=${QEMU_TIMEOUT:-900} KRMI_CLOCK=wall "$here/qemu.sh" bench
log "in instructions (QEMU -icount shift=0: 1 ns = 1 instruction)"
KRMI_CLOCK=icount "$here/qemu.sh" bench
