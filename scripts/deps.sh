#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install everything kvm-rmi needs to build and test, from Debian and crates.io.
# Idempotent: when all is present it only checks and returns in seconds.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

# Debian packages: "package[:arch][@suite]". A suite is the target release the
# package and its dependencies come from (apt-get -t); the rest come from the
# default suites (bookworm + bookworm-security, where rustc-web 1.96 lives).
apt_pkgs=(
	rustc-web rust-web-src rust-web-clippy rustfmt-web cargo-web
	libstd-rust-web-dev:arm64
	clang-19 lld-19 llvm-19 libclang-19-dev
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross
	qemu-system-arm@bookworm-backports
	busybox-static:arm64
	arm-trusted-firmware-tools
	flex bison bc libelf-dev libssl-dev cpio rsync kmod xz-utils zstd
	python3 perl make git
)

apt_sources() {
	local changed=0
	local list=/etc/apt/sources.list.d/kvm-rmi-backports.sources
	local pin=/etc/apt/preferences.d/kvm-rmi-backports
	local want_list want_pin
	want_list=$(cat <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-trixie-stable.gpg /usr/share/keyrings/debian-archive-trixie-automatic.gpg
SRC
)
	# Low priority: nothing is taken from these suites unless asked for by name.
	want_pin=$(cat <<'PIN'
Package: *
Pin: release n=bookworm-backports
Pin-Priority: 100

Package: *
Pin: release n=trixie-backports
Pin-Priority: 50
PIN
)
	if [ "$(cat "$list" 2>/dev/null)" != "$want_list" ]; then
		printf '%s\n' "$want_list" >"$list"
		changed=1
	fi
	if [ "$(cat "$pin" 2>/dev/null)" != "$want_pin" ]; then
		printf '%s\n' "$want_pin" >"$pin"
		changed=1
	fi
	if ! dpkg --print-foreign-architectures | grep -qx arm64; then
		dpkg --add-architecture arm64
		changed=1
	fi
	if [ "$changed" = 1 ] || [ ! -f /var/lib/apt/lists/lock ] ||
	   ! ls /var/lib/apt/lists/*trixie-backports*Packages* >/dev/null 2>&1; then
		log "apt-get update"
		apt-get update -qq
	fi
}

missing_apt() {
	local p name
	for p in "${apt_pkgs[@]}"; do
		name=${p%@*}
		dpkg-query -W -f='${Status}\n' "$name" 2>/dev/null | grep -q '^install ok installed$' ||
			echo "$p"
	done
}

install_apt() {
	local missing p name suite
	mapfile -t missing < <(missing_apt)
	[ "${#missing[@]}" -eq 0 ] && return 0
	[ "$(id -u)" = 0 ] || die "need root to install: ${missing[*]}"
	apt_sources
	local -A by_suite=()
	for p in "${missing[@]}"; do
		name=${p%@*}
		suite=default
		[ "$name" != "$p" ] && suite=${p#*@}
		if [ "$suite" = default ]; then
			apt-cache show "$name" >/dev/null 2>&1 ||
				die "package not found: $name"
		else
			apt-cache show "$name/$suite" >/dev/null 2>&1 ||
				die "package not found in $suite: $name"
		fi
		by_suite[$suite]+=" $name"
	done
	for suite in "${!by_suite[@]}"; do
		local target=()
		[ "$suite" = default ] || target=(-t "$suite")
		log "apt-get install ${target[*]}${by_suite[$suite]}"
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			"${target[@]}" ${by_suite[$suite]} >"$KRMI_CACHE/apt.log" 2>&1 ||
			{ tail -20 "$KRMI_CACHE/apt.log" >&2; die "apt-get install failed for:${by_suite[$suite]}"; }
	done
	local still
	still=$(missing_apt | tr '\n' ' ')
	[ -z "$still" ] || die "packages still missing after install: $still"
}

install_bindgen() {
	local root=$KRMI_TOOLS
	if [ -x "$root/bin/bindgen" ] &&
	   "$root/bin/bindgen" --version 2>/dev/null | grep -q " $BINDGEN_VERSION\$"; then
		return 0
	fi
	log "cargo install bindgen-cli@$BINDGEN_VERSION into $root"
	RUSTC=/usr/bin/rustc /usr/bin/cargo install --locked --quiet --root "$root" \
		"bindgen-cli@$BINDGEN_VERSION" ||
		die "cargo install bindgen-cli@$BINDGEN_VERSION failed"
}

mkdir -p "$KRMI_CACHE"
install_apt
install_bindgen
log "dependencies present"
