#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build-time checks of rust/kernel/kvm.rs and the hook exports: each
# tools/testing/kernel-api/*.rs is built as a tiny module against the built
# kernel. ok_*.rs must build; fail_*.rs must not, and the compiler or
# modpost must say what its first line's "// expect: " says (the misuse the
# API is to refuse, refused for that reason). A file with a line
# "// check: noinstr" is also put through check-noinstr.py, the check of
# kvm_rmi's noinstr window, which so is checked itself. Needs
# scripts/build-kernel.sh first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

[ -f "$KOBJ_DIR/rust/kernel.o" ] || die "no kernel build in $KOBJ_DIR (run scripts/build-kernel.sh)"
checks=$KRMI_TOP/tools/testing/kernel-api
work=$KRMI_BUILD/kernel-api
failed=0
n=0
for f in "$checks"/ok_*.rs "$checks"/fail_*.rs; do
	name=$(basename "$f" .rs)
	dir=$work/$name
	rm -rf "$dir"
	mkdir -p "$dir"
	# Built as kvm_rmi, whom the realm exports are for, unless the check
	# names another module on a "// module: " line.
	mod=$(sed -n 's|^// module: ||p' "$f")
	mod=${mod:-kvm_rmi}
	echo "obj-m := $mod.o" >"$dir/Kbuild"
	{
		echo "// SPDX-License-Identifier: GPL-2.0"
		echo "//! kvm-rmi kernel API check: $name."
		echo "use kernel::prelude::*;"
		echo "module! { type: Check, name: \"$mod\", authors: [\"kvm-rmi\"],"
		echo "    description: \"API check\", license: \"GPL\", }"
		echo "struct Check;"
		echo "impl kernel::Module for Check {"
		echo "    fn init(_m: &'static ThisModule) -> Result<Self> { Ok(Check) }"
		echo "}"
		cat "$f"
	} >"$dir/$mod.rs"
	n=$((n + 1))
	if out=$(make -s -C "$KSRC_DIR" "${KMAKE_ARGS[@]}" "M=$dir" modules 2>&1); then
		built=1
	else
		built=0
	fi
	# "// check: noinstr": the built module must also pass check-noinstr.py,
	# whose refusal counts as the build's.
	if [ "$built" = 1 ] && grep -qx '// check: noinstr' "$f" &&
		! out=$(python3 "$here/check-noinstr.py" "$dir/$mod.ko" 2>&1); then
		built=0
	fi
	case "$name" in
	ok_*)
		if [ "$built" = 1 ]; then
			log "api: $name builds"
		else
			printf '%s\n' "$out" >&2
			log "api: FAIL: $name does not build"
			failed=$((failed + 1))
		fi
		;;
	fail_*)
		want=$(sed -n '1s|^// expect: ||p' "$f")
		[ -n "$want" ] || die "$f: first line must be // expect: <compiler message>"
		if [ "$built" = 1 ]; then
			log "api: FAIL: $name builds; the API lets this through"
			failed=$((failed + 1))
		elif printf '%s\n' "$out" | grep -qF -- "$want"; then
			log "api: $name refused: $want"
		else
			printf '%s\n' "$out" >&2
			log "api: FAIL: $name refused, but not with: $want"
			failed=$((failed + 1))
		fi
		;;
	esac
done
[ "$failed" = 0 ] || die "$failed of $n kernel API checks failed"
log "kernel API checks: $n passed"
