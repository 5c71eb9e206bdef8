#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Check that the realm vCPU entry of kvm_rmi.ko stays inside its noinstr window.

KVM calls the module's vcpu_enter callback from kvm_arm_vcpu_enter_exit()
(noinstr), between guest_state_enter_irqoff() and guest_state_exit_irqoff():
RCU does not watch there, so nothing traced, instrumented or kprobed may run.
The callback is in .noinstr.text; this checks, in the built module, that:

- a vcpu_enter_callback exists and every copy of it is in .noinstr.text;
- code in .noinstr.text calls or jumps to nothing outside .noinstr.text but
  the noinstr C entry kvm_arm_realm_smc() (no out-of-line Rust, no helpers,
  no memcpy/memset, no sanitizer hooks);
- it makes no indirect call (blr), which could go anywhere.

Usage: check-noinstr.py MODULE.ko [OBJDUMP] [READELF]
"""

import re
import subprocess
import sys

ALLOWED_EXTERNAL = {"kvm_arm_realm_smc"}
SECTION = ".noinstr.text"


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ko = sys.argv[1]
    objdump = sys.argv[2] if len(sys.argv) > 2 else "llvm-objdump-19"
    readelf = sys.argv[3] if len(sys.argv) > 3 else "llvm-readelf-19"

    # Section numbers, then the function symbols of each section.
    sections = {}
    for line in run([readelf, "-SW", ko]).splitlines():
        m = re.match(r"\s*\[\s*(\d+)\]\s+(\S+)", line)
        if m:
            sections[m.group(1)] = m.group(2)
    in_section = set()
    callbacks = []
    funcs = []  # (section, start, end, name)
    for line in run([readelf, "-sW", "--demangle", ko]).splitlines():
        f = line.split()
        if len(f) < 8 or f[3] != "FUNC":
            continue
        name, where = " ".join(f[7:]), sections.get(f[6], f[6])
        start = int(f[1], 16)
        funcs.append((where, start, start + int(f[2], 0), name))
        if where == SECTION:
            in_section.add(name)
        if "vcpu_enter_callback" in name:
            callbacks.append((name, where))

    def resolve(target):
        """A relocation's symbol; a section+offset (a local function) as its
        function's name when the symbol table has it."""
        m = re.fullmatch(r"(\.\S+?)(?:\+0x([0-9a-f]+))?", target)
        if not m:
            return target
        off = int(m.group(2) or "0", 16)
        for where, start, end, name in funcs:
            if where == m.group(1) and start <= off < end:
                return name
        return target

    failures = []
    if not callbacks:
        failures.append("no vcpu_enter_callback in the module")
    for name, where in callbacks:
        if where != SECTION:
            failures.append(f"{name} is in {where}, not {SECTION}")

    # Calls and jumps out of the section, by their relocations; intra-section
    # branches resolved by the assembler have none and stay inside.
    listing = run([objdump, "-drC", "--no-show-raw-insn", "-j", SECTION, ko])
    func = "?"
    for line in listing.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if m:
            func = m.group(1)
            continue
        m = re.search(r"R_AARCH64_(CALL26|JUMP26)\s+(.+?)\s*$", line)
        if m:
            target = m.group(2)
            if target.startswith(SECTION + "+") or target == SECTION:
                continue
            target = resolve(target)
            target = re.sub(r"\+0x[0-9a-f]+$", "", target)
            if target not in in_section and target not in ALLOWED_EXTERNAL:
                failures.append(f"{func} calls {target}, outside {SECTION}")
            continue
        if re.search(r"\sblr\s", line):
            failures.append(f"{func} makes an indirect call: {line.strip()}")

    if failures:
        for f in failures:
            print(f"check-noinstr: {ko}: {f}", file=sys.stderr)
        sys.exit(1)
    print(f"check-noinstr: {len(in_section)} function(s) in {SECTION}, "
          f"calls out only to {', '.join(sorted(ALLOWED_EXTERNAL))}")


if __name__ == "__main__":
    main()
