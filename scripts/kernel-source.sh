#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Fetch Debian's linux-source-7.3 (pinned, sha256-checked) and unpack it as a
# git tree under build/linux with one base commit, so kernel/patches can be
# applied with git am.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

dl=$KRMI_CACHE/dl
mkdir -p "$dl" "$KRMI_BUILD"

# Prints "version sha256" of the .deb to use.
choose_version() {
	local show
	if show=$(apt-cache show "$KSRC_PKG=$KSRC_VERSION" 2>/dev/null) && [ -n "$show" ]; then
		echo "$KSRC_VERSION $KSRC_SHA256"
		return
	fi
	# The pin is gone from the archive: take the newest 7.3.x, verified
	# against the sha256 in the signed package index.
	show=$(apt-cache show "$KSRC_PKG" 2>/dev/null) ||
		die "package not found: $KSRC_PKG (is trixie-backports configured? run make deps)"
	local best
	best=$(printf '%s\n' "$show" | sed -n 's/^Version: //p' | sort -V | tail -1)
	[ -n "$best" ] || die "package not found: $KSRC_PKG"
	log "warning: pinned $KSRC_PKG $KSRC_VERSION unavailable; using $best"
	printf '%s %s\n' "$best" "$(apt-cache show "$KSRC_PKG=$best" | sed -n 's/^SHA256: //p' | head -1)"
}

# Already unpacked at the wanted version?
stamp=$KRMI_BUILD/linux.source
if [ -f "$stamp" ] && [ -d "$KSRC_DIR/.git" ]; then
	exit 0
fi

read -r version sha < <(choose_version)
deb=$dl/${KSRC_PKG}_${version//:/%3a}_all.deb
fetch_deb "$deb" "$KSRC_PKG=$version" "$sha"

log "unpacking $KSRC_PKG $version into $KSRC_DIR"
rm -rf "$KSRC_DIR" "$KSRC_DIR.tmp"
mkdir -p "$KSRC_DIR.tmp"
dpkg-deb --fsys-tarfile "$deb" |
	tar -xO --wildcards './usr/src/linux-source-*.tar.xz' |
	tar -xJ -C "$KSRC_DIR.tmp" --strip-components=1
git -C "$KSRC_DIR.tmp" init -q -b base
# No automatic gc: one detached after the import commit (~90k loose objects)
# holds HEAD.lock while git am runs and makes it fail at random.
git -C "$KSRC_DIR.tmp" config gc.auto 0
git -C "$KSRC_DIR.tmp" add -A -f .
git -C "$KSRC_DIR.tmp" -c user.name=kvm-rmi -c user.email=kvm-rmi@localhost \
	commit -q -m "Linux $version (Debian $KSRC_PKG)"
git -C "$KSRC_DIR.tmp" tag krmi-base
mv "$KSRC_DIR.tmp" "$KSRC_DIR"
echo "$KSRC_PKG $version $sha" >"$stamp"
log "kernel source ready: $(make -s -C "$KSRC_DIR" kernelversion)"
