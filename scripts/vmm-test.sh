#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# tools/realm-vmm: host tests (layout, device tree, UART, RIM, tokens),
# clippy and rustfmt for the host and aarch64, and the static aarch64 build
# the QEMU host runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
vmm_env
cd "$KRMI_TOP/tools/realm-vmm"
rustfmt --check --edition 2021 src/*.rs || die "realm-vmm: rustfmt check failed (run: make fmt)"
cargo test --locked "$@"
cargo-clippy clippy --locked --all-targets -- -D warnings
cargo-clippy clippy --locked --all-targets --target "$VMM_TARGET" -- -D warnings
"$here/build-vmm.sh"
log "realm-vmm: host tests, clippy (host, $VMM_TARGET) and the static $VMM_TARGET build pass"
