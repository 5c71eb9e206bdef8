#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# tools/realm-vmm: host tests (layout, device tree), clippy and rustfmt for
# the host and aarch64, and the static aarch64 build the guest runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

# rustc-web's tools only: a rustup toolchain earlier on PATH has no aarch64
# std, and mixing compilers in one target directory breaks the build.
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
export RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=$KRMI_BUILD/cargo-vmm
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
aarch64=aarch64-unknown-linux-gnu
[ -d "/usr/lib/rustlib/$aarch64" ] || die "no aarch64 std for rustc-web: run scripts/deps.sh"

cd "$KRMI_TOP/tools/realm-vmm"
rustfmt --check --edition 2021 src/*.rs || die "realm-vmm: rustfmt check failed (run: make fmt)"
cargo test --locked "$@"
cargo-clippy clippy --locked --all-targets -- -D warnings
cargo-clippy clippy --locked --all-targets --target "$aarch64" -- -D warnings
cargo build --locked --release --target "$aarch64"
log "realm-vmm: host tests, clippy (host, $aarch64) and the static $aarch64 build pass"
