#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the realm guest kernel: the pinned Linux 7.3 source unmodified (the
# tree's base commit, checked out in build/linux-guest), tinyconfig +
# kernel/configs/realm-guest.config, in its own object directory
# (build/kbuild-guest). No Rust, no modules. Writes
# build/kbuild-guest/arch/arm64/boot/Image, and build/guest-initramfs.cpio:
# busybox and scripts/guest/realm-guest-init as /init.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

"$here/kernel-source.sh"

src=$KRMI_BUILD/linux-guest
obj=$KRMI_BUILD/kbuild-guest
fragment=$KRMI_TOP/kernel/configs/realm-guest.config
base=$(git -C "$KSRC_DIR" rev-parse krmi-base)
if [ "$(git -C "$src" rev-parse HEAD 2>/dev/null)" != "$base" ]; then
	log "checking out the unmodified source in $src"
	git -C "$KSRC_DIR" worktree prune
	rm -rf "$src"
	git -C "$KSRC_DIR" worktree add -q --detach "$src" "$base"
fi

gmake() {
	make -s -C "$src" ARCH=arm64 LLVM=-19 "O=$obj" -j"$(nproc)" "$@"
}

mkdir -p "$obj"
want=$( (echo "$base"; cat "$fragment") | sha256sum | cut -d' ' -f1)
stamp=$obj/.krmi-config
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -f "$obj/.config" ]; then
	log "configuring the guest: tinyconfig + ${fragment##*/}"
	gmake tinyconfig >/dev/null
	KCONFIG_CONFIG=$obj/.config "$src/scripts/kconfig/merge_config.sh" \
		-m -O "$obj" "$obj/.config" "$fragment" >"$obj/merge.log"
	gmake olddefconfig >/dev/null
	bad=$(grep -E '^CONFIG_' "$fragment" | while read -r line; do
		grep -qxF "$line" "$obj/.config" || echo "$line"
	done)
	[ -z "$bad" ] || die "guest config options not applied (missing dependency?): $(echo $bad)"
	echo "$want" >"$stamp"
fi
log "building the guest Image"
gmake Image

root=$KRMI_BUILD/guest-initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,proc,sys,dev,tmp}
mknod -m 600 "$root/dev/console" c 5 1
cp /bin/busybox "$root/bin/busybox"
cp "$KRMI_TOP/scripts/guest/realm-guest-init" "$root/init"
(cd "$root" && find . -print0 | LC_ALL=C sort -z |
	cpio --quiet -o -0 -H newc --owner 0:0 | gzip -9 >"$KRMI_BUILD/guest-initramfs.cpio")
log "guest ready: $obj/arch/arm64/boot/Image ($(stat -c %s "$obj/arch/arm64/boot/Image") bytes)," \
	"$KRMI_BUILD/guest-initramfs.cpio ($(stat -c %s "$KRMI_BUILD/guest-initramfs.cpio") bytes)"
