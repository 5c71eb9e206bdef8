# SPDX-License-Identifier: GPL-2.0
# Shared settings for the kvm-rmi scripts. Sourced, not run.

KRMI_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# STOCK=1: unpatched Linux 7.3 with the same config minus our module, in its
# own build directory, for the KVM regression baseline.
KRMI_STOCK=${STOCK:-0}
if [ "$KRMI_STOCK" = 1 ]; then
	KRMI_BUILD=${KRMI_BUILD:-$KRMI_TOP/build/stock}
else
	KRMI_BUILD=${KRMI_BUILD:-$KRMI_TOP/build}
fi
# Download cache and project-local tools live outside the work tree so a fresh
# clone reuses them.
KRMI_CACHE=${KRMI_CACHE:-/var/cache/kvm-rmi}
KRMI_TOOLS=${KRMI_TOOLS:-$KRMI_CACHE/tools}
BINDGEN_VERSION=0.73.2

log() { printf '[kvm-rmi] %s\n' "$*" >&2; }
die() { printf '[kvm-rmi] error: %s\n' "$*" >&2; exit 1; }

# Kernel source: Debian's linux-source-7.3 from trixie-backports, pinned.
KSRC_PKG=linux-source-7.3
KSRC_VERSION=${KSRC_VERSION:-7.3.4-1~bpo13+1}
KSRC_SHA256=703e369ddd4cce971452f5a593ee55df3a5c10c83caf0fa0df039633ed181ee3
KSRC_DIR=$KRMI_BUILD/linux
# DEBUG=1 (kernel/configs/debug.config) builds in its own object directory,
# so switching it on and off does not rebuild the whole kernel each time.
if [ "${DEBUG:-0}" = 1 ]; then
	KOBJ_DIR=$KRMI_BUILD/kbuild-debug
else
	KOBJ_DIR=$KRMI_BUILD/kbuild
fi

# Cross build settings, shared by the kernel, module and selftests builds.
# rustc-web installs /usr/bin/rustc (1.96); name every Rust tool by path so a
# rustup toolchain earlier on PATH is never picked up.
KMAKE_ARGS=(ARCH=arm64 LLVM=-19 "O=$KOBJ_DIR"
	RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
	RUSTFMT=/usr/bin/rustfmt CLIPPY_DRIVER=/usr/bin/clippy-driver
	"BINDGEN=$KRMI_TOOLS/bin/bindgen"
	RUST_LIB_SRC=/usr/lib/rustlib/src/rust/library)

# tools/realm-vmm: built with rustc-web's tools only (a rustup toolchain
# earlier on PATH has no aarch64 std, and mixing compilers in one target
# directory breaks the build), statically linked for aarch64.
VMM_TARGET=aarch64-unknown-linux-gnu
VMM_BIN=$KRMI_BUILD/cargo-vmm/$VMM_TARGET/release/realm-vmm
vmm_env() {
	export PATH=/usr/bin:/bin:/usr/sbin:/sbin
	export RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=$KRMI_BUILD/cargo-vmm
	export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
	export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
	[ -d "/usr/lib/rustlib/$VMM_TARGET" ] || die "no aarch64 std for rustc-web: run scripts/deps.sh"
}

# fetch_deb DEB SPEC SHA256: the Debian package SPEC (apt-get download's
# "name[:arch]=version") at path DEB, downloaded unless already there, and
# checked against SHA256.
fetch_deb() {
	local deb=$1 spec=$2 sha=$3
	if [ ! -f "$deb" ] || ! echo "$sha  $deb" | sha256sum -c --quiet - 2>/dev/null; then
		log "downloading $spec"
		rm -f "$deb"
		mkdir -p "$(dirname "$deb")"
		(cd "$(dirname "$deb")" && apt-get download -qq "$spec") || die "download failed: $spec"
	fi
	echo "$sha  $deb" | sha256sum -c --quiet - || die "sha256 mismatch: $deb"
}
