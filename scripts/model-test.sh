#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Host tests: the sans-IO core against the RMM model (tools/testing/rmm-model).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

cd "$KRMI_TOP/tools/testing/rmm-model"
RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=$KRMI_BUILD/cargo /usr/bin/cargo test --locked "$@"
