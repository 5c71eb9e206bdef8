#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Configure and build the patched kernel (Image + modules) and kvm_rmi.ko with
# LLVM=1 and CLIPPY=1, check the module is warning-free and rustfmt-clean, and
# install the UAPI headers the selftests build against.
#
#   scripts/build-kernel.sh --config-only
# only configures (and checks every fragment option took effect).
#
#   scripts/build-kernel.sh --embed CPIO CMDLINE OUT
# then also writes OUT, an Image with CPIO as its built-in initramfs and
# CMDLINE forced (for booting as BL33 from TF-A, which passes no arguments).
#
# Environment: DEBUG=1 adds kernel/configs/debug.config.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

"$here/prepare-tree.sh"

kmake() {
	make -s -C "$KSRC_DIR" "${KMAKE_ARGS[@]}" CLIPPY=1 -j"$(nproc)" "$@"
}

fragments=("$KRMI_TOP/kernel/configs/qemu.config")
[ "${DEBUG:-0}" = 1 ] && fragments+=("$KRMI_TOP/kernel/configs/debug.config")
if [ "$KRMI_STOCK" = 1 ]; then
	mkdir -p "$KRMI_BUILD"
	grep -v '^CONFIG_KVM_ARM_RMI=' "${fragments[0]}" >"$KRMI_BUILD/qemu-stock.config"
	fragments[0]=$KRMI_BUILD/qemu-stock.config
fi

# Configure when the fragments (or the tree) changed: tinyconfig + fragments.
mkdir -p "$KOBJ_DIR"
want=$( (cat "$KRMI_BUILD/linux.patched" "${fragments[@]}") | sha256sum | cut -d' ' -f1)
stamp=$KOBJ_DIR/.krmi-config
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -f "$KOBJ_DIR/.config" ]; then
	log "configuring: tinyconfig + ${fragments[*]##*/}"
	kmake tinyconfig >/dev/null
	KCONFIG_CONFIG=$KOBJ_DIR/.config "$KSRC_DIR/scripts/kconfig/merge_config.sh" \
		-m -O "$KOBJ_DIR" "$KOBJ_DIR/.config" "${fragments[@]}" >"$KOBJ_DIR/merge.log"
	kmake olddefconfig >/dev/null
	# Every option a fragment asks for must have taken effect.
	bad=$(for f in "${fragments[@]}"; do grep -E '^CONFIG_' "$f"; done | while read -r want_line; do
		grep -qxF "$want_line" "$KOBJ_DIR/.config" || echo "$want_line"
	done)
	[ -z "$bad" ] || die "config options not applied (missing dependency?): $(echo $bad)"
	echo "$want" >"$stamp"
fi

[ "${1:-}" = --config-only ] && { log "configured: $KOBJ_DIR/.config"; exit 0; }

log "building Image and modules"
kmake Image modules

if [ "$KRMI_STOCK" = 1 ]; then
	kmake headers_install >/dev/null
	log "stock kernel ready: $KOBJ_DIR/arch/arm64/boot/Image"
	exit 0
fi

# Rebuild the module alone so its diagnostics are always seen, and fail on any.
rm -f "$KOBJ_DIR/arch/arm64/kvm/rmi/kvm_rmi_main.o"
out=$(kmake modules 2>&1) || { printf '%s\n' "$out" >&2; die "module build failed"; }
if printf '%s\n' "$out" | grep -qE '^(warning|error)'; then
	printf '%s\n' "$out" >&2
	die "kvm_rmi builds with warnings (CLIPPY=1)"
fi

# The realm vCPU entry stays inside its noinstr window (issue 20 item 9).
python3 "$here/check-noinstr.py" "$KOBJ_DIR/arch/arm64/kvm/rmi/kvm_rmi.ko" ||
	die "kvm_rmi: the realm vCPU entry reaches code outside .noinstr.text"

# rustfmt with the kernel's settings, on our files.
rs=("$KSRC_DIR"/arch/arm64/kvm/rmi/*.rs "$KSRC_DIR"/rust/kernel/arm64.rs "$KSRC_DIR"/rust/kernel/arm64/*.rs "$KSRC_DIR"/rust/kernel/kvm.rs)
/usr/bin/rustfmt --check --edition 2021 --config-path "$KSRC_DIR/.rustfmt.toml" "${rs[@]}" ||
	die "rustfmt check failed (run: make fmt)"

kmake headers_install >/dev/null
log "kernel ready: $KOBJ_DIR/arch/arm64/boot/Image, $KOBJ_DIR/arch/arm64/kvm/rmi/kvm_rmi.ko"

if [ "${1:-}" = --embed ]; then
	[ $# = 4 ] || die "usage: $0 --embed CPIO CMDLINE OUT"
	cfg=$KOBJ_DIR/.config
	cp "$cfg" "$cfg.krmi-plain"
	restore() {
		cp "$KOBJ_DIR/.config.krmi-plain" "$KOBJ_DIR/.config"
		kmake olddefconfig >/dev/null
		# The plain Image now has the initramfs and command line built
		# in: remove it so that nothing boots it by mistake.
		rm -f "$KOBJ_DIR/arch/arm64/boot/Image"
	}
	trap restore EXIT
	"$KSRC_DIR/scripts/config" --file "$cfg" --set-str INITRAMFS_SOURCE "$2" \
		--set-str CMDLINE "$3" --enable CMDLINE_FORCE
	kmake olddefconfig >/dev/null
	grep -qxF "CONFIG_CMDLINE_FORCE=y" "$cfg" || die "could not force the command line"
	log "building Image with built-in initramfs and command line"
	kmake Image
	cp "$KOBJ_DIR/arch/arm64/boot/Image" "$4"
fi
