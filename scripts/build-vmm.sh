#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# tools/realm-vmm: the static aarch64 binary the QEMU host runs
# ($VMM_BIN). scripts/vmm-test.sh also tests and lints it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
vmm_env
cd "$KRMI_TOP/tools/realm-vmm"
cargo build --locked --release --target "$VMM_TARGET"
log "realm-vmm built: $VMM_BIN"
