#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Write the commits on top of the base in build/linux back to kernel/patches
# (git format-patch) and regenerate kernel/patches/series. Workflow: edit and
# commit in build/linux, then run this.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

patches=$KRMI_TOP/kernel/patches
[ -z "$(git -C "$KSRC_DIR" status --porcelain --untracked-files=no)" ] ||
	die "uncommitted changes in $KSRC_DIR"
rm -f "$patches"/*.patch
git -C "$KSRC_DIR" -c core.abbrev=9 format-patch -q --no-signature --zero-commit -N \
	-o "$patches" krmi-base..HEAD
(cd "$patches" && ls -1 -- *.patch >series 2>/dev/null || : >series)
# The tree already matches the new patches: record that, so the next build
# does not rebuild it from the base.
"$here/prepare-tree.sh" --record
log "exported $(wc -l <"$patches/series") patches"
