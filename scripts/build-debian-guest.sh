#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The distribution kernel as a realm guest: Debian's arm64 kernel from
# trixie-backports (pinned, sha256-checked, as linux-source-7.3 is), its
# Image and the modules attestation needs (configfs, tsm_report,
# arm-cca-guest: ARM_CCA_GUEST=m there), with the same busybox init as the
# upstream guest. Writes build/debian-guest/{Image,initramfs.cpio}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

version=7.3.4-1~bpo13+1
kver=7.3.4+deb13-arm64
# package sha256 (from the signed trixie-backports index)
debs=(
	"linux-binary-$kver 0bbfeddbecdea8ab294daf09eb5cc1f4405af5c044b4b7aa57f5d1eaa205530f"
	"linux-modules-$kver df2a118b535e735230717512a9fe4d30b0c24a3c6e68470d5d13e9a08ddfd29a"
)
# In load order.
modules=(fs/configfs/configfs drivers/virt/coco/guest/tsm_report
	drivers/virt/coco/arm-cca-guest/arm-cca-guest)

dl=$KRMI_CACHE/dl
out=$KRMI_BUILD/debian-guest
stamp=$out/.krmi-guest
want=$( (echo "$version"; cat "$KRMI_TOP/scripts/guest/realm-guest-init" /bin/busybox) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -f "$out/Image" ] && [ -f "$out/initramfs.cpio" ]; then
	exit 0
fi
for d in "${debs[@]}"; do
	read -r pkg sha <<<"$d"
	fetch_deb "$dl/${pkg}_${version}_arm64.deb" "$pkg:arm64=$version" "$sha"
done

rm -rf "$out"
mkdir -p "$out/root"/{bin,proc,sys,dev,tmp,lib/modules}
dpkg-deb --fsys-tarfile "$dl/linux-binary-${kver}_${version}_arm64.deb" |
	tar -xO "./usr/lib/modules/$kver/vmlinuz" >"$out/Image"
members=()
for m in "${modules[@]}"; do
	members+=("./usr/lib/modules/$kver/kernel/$m.ko.xz")
done
dpkg-deb --fsys-tarfile "$dl/linux-modules-${kver}_${version}_arm64.deb" |
	tar -x -C "$out" "${members[@]}"
i=0
for m in "${modules[@]}"; do
	# Numbered, so that init loads them in order.
	xz -dc "$out/usr/lib/modules/$kver/kernel/$m.ko.xz" >"$out/root/lib/modules/$i-${m##*/}.ko"
	i=$((i + 1))
done
rm -rf "$out/usr"

root=$out/root
mknod -m 600 "$root/dev/console" c 5 1
cp /bin/busybox "$root/bin/busybox"
cp "$KRMI_TOP/scripts/guest/realm-guest-init" "$root/init"
(cd "$root" && find . -print0 | LC_ALL=C sort -z |
	cpio --quiet -o -0 -H newc --owner 0:0 | gzip -9 >"$out/initramfs.cpio")
rm -rf "$root"
echo "$want" >"$stamp"
log "Debian guest ready: $out/Image ($(stat -c %s "$out/Image") bytes, Linux $kver)," \
	"$out/initramfs.cpio ($(stat -c %s "$out/initramfs.cpio") bytes)"
