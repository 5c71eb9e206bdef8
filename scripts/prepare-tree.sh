#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Make build/linux = pinned Linux 7.3 + kernel/patches (git am) + our files:
# rust/ is copied over the tree's rust/, and the module (Kbuild, Kconfig, *.rs,
# *.c, *.h at the top of this repository) into arch/arm64/kvm/rmi/, and
# Documentation/ over the tree's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

"$here/kernel-source.sh"

patches=$KRMI_TOP/kernel/patches
series=()
if [ "$KRMI_STOCK" != 1 ] && [ -f "$patches/series" ]; then
	mapfile -t series < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$patches/series")
fi

# The patched tree is reused while the series, the patches and the set of
# overlay files stay the same; otherwise it is rebuilt from the base commit.
want=$(
	cat "$KRMI_BUILD/linux.source"
	for p in "${series[@]}"; do
		sha256sum "$patches/$p" 2>/dev/null || echo "missing $p"
	done
	[ "$KRMI_STOCK" = 1 ] || (cd "$KRMI_TOP" && find rust -type f | sort)
)
want=$(printf '%s' "$want" | sha256sum | cut -d' ' -f1)
stamp=$KRMI_BUILD/linux.patched
# --record: the tree's commits are the patches (export-patches.sh wrote them
# from it); note that, so that the tree and its objects are kept.
if [ "${1:-}" = --record ]; then
	echo "$want" >"$stamp"
	exit 0
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
	log "applying kernel/patches (${#series[@]} patches)"
	rm -f "$stamp"
	# Trees unpacked before kernel-source.sh turned automatic gc off.
	git -C "$KSRC_DIR" config gc.auto 0
	git -C "$KSRC_DIR" am --abort >/dev/null 2>&1 || true
	git -C "$KSRC_DIR" checkout -q -f krmi-base 2>/dev/null ||
		git -C "$KSRC_DIR" reset -q --hard krmi-base
	git -C "$KSRC_DIR" clean -q -fdx
	for p in "${series[@]}"; do
		[ -f "$patches/$p" ] || die "patch listed in kernel/patches/series is missing: $p"
		if ! git -C "$KSRC_DIR" -c user.name=kvm-rmi -c user.email=kvm-rmi@localhost \
			am -q --keep-cr "$patches/$p" >"$KRMI_BUILD/git-am.log" 2>&1; then
			git -C "$KSRC_DIR" am --abort >/dev/null 2>&1 || true
			cat "$KRMI_BUILD/git-am.log" >&2
			die "patch does not apply: kernel/patches/$p"
		fi
	done
	echo "$want" >"$stamp"
fi

[ "$KRMI_STOCK" = 1 ] && exit 0

# Overlay: copy only what changed (rsync keeps mtimes, so make sees edits).
rsync -a "$KRMI_TOP/rust/" "$KSRC_DIR/rust/"
mkdir -p "$KSRC_DIR/arch/arm64/kvm/rmi"
rsync -a --delete --include='/Kbuild' --include='/Kconfig' --include='/*.rs' \
	--include='/*.c' --include='/*.h' \
	--exclude='*' "$KRMI_TOP/" "$KSRC_DIR/arch/arm64/kvm/rmi/"
# The operator's documentation (listed in the arm index by the series).
rsync -a "$KRMI_TOP/Documentation/" "$KSRC_DIR/Documentation/"
