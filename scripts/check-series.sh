#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Checks that every patch of kernel/patches builds on its own: applies the
# series one patch at a time in a separate work tree (build/series) and
# builds the kernel Image after each, with the configuration of `make
# kernel` minus Rust (the module and rust/ overlay only build with the whole
# series). Also runs checkpatch on each patch. Slow: one full build, then
# one incremental build per patch. Not part of `make test`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

"$here/build-kernel.sh" --config-only >/dev/null
wt=$KRMI_BUILD/series
obj=$KRMI_BUILD/kbuild-series
patches=$KRMI_TOP/kernel/patches
mapfile -t series < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$patches/series")

rm -rf "$wt"
git -C "$KSRC_DIR" worktree prune
git -C "$KSRC_DIR" worktree add -q --detach "$wt" krmi-base
# The build hook patch sources the module's Kconfig and Kbuild.
mkdir -p "$wt/arch/arm64/kvm/rmi"
cp "$KRMI_TOP/Kconfig" "$KRMI_TOP/Kbuild" "$wt/arch/arm64/kvm/rmi/"
mkdir -p "$obj"
cp "$KOBJ_DIR/.config" "$obj/.config"
"$KSRC_DIR/scripts/config" --file "$obj/.config" --disable RUST
smake() {
	make -s -C "$wt" ARCH=arm64 LLVM=-19 "O=$obj" -j"$(nproc)" "$@"
}
smake olddefconfig >/dev/null

failed=0
for p in "${series[@]}"; do
	git -C "$wt" -c user.name=kvm-rmi -c user.email=kvm-rmi@localhost \
		am -q --keep-cr "$patches/$p" || die "does not apply: $p"
	# From the kernel tree: elsewhere checkpatch misreads context lines.
	cp_out=$(cd "$KSRC_DIR" && ./scripts/checkpatch.pl --no-tree -q \
		--ignore FILE_PATH_CHANGES "$patches/$p" 2>&1) || { echo "$cp_out"; failed=1; }
	if smake Image >"$obj/build.log" 2>&1; then
		log "builds: $p"
	else
		tail -20 "$obj/build.log"
		log "BUILD FAILED: $p"
		failed=1
	fi
done
git -C "$KSRC_DIR" worktree remove --force "$wt"
[ "$failed" = 0 ] || die "some patches do not build or are not checkpatch clean"
log "all ${#series[@]} patches build on their own and are checkpatch clean"
