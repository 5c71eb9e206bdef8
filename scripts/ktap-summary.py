#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Summarise the KTAP results in a QEMU serial log; exit 1 on any failure.

A test counts as failed when it says "not ok", and also when the plan
announced it but the log has no result for it (the guest crashed or the
run timed out).
"""
import os
import re
import sys


def main(path):
    with open(path, errors="replace") as f:
        lines = [l.rstrip("\r\n") for l in f]
    plan = None
    results = {}
    times = {}
    boot = None
    for line in lines:
        if m := re.match(r"^1\.\.(\d+)$", line):
            plan = int(m.group(1))
        elif m := re.match(r"^(ok|not ok) (\d+) (\S+)(?: # (.*))?$", line):
            ok, num, name, directive = m.groups()
            if directive and directive.startswith("SKIP"):
                verdict = "SKIP"
            elif ok == "ok":
                verdict = "PASS"
            else:
                verdict = "FAIL" + (f" ({directive})" if directive else "")
            results[int(num)] = (name, verdict)
        elif m := re.match(r"^# (\S+): exit -?\d+, ([\d.]+)s$", line):
            times[m.group(1)] = m.group(2)
        elif m := re.match(r"^krmi: userspace up after ([\d.]+)s", line):
            boot = m.group(1)

    print()
    print(f"{'#':>3}  {'test':<44} {'result':<10} {'time':>7}")
    print(f"{'-' * 3}  {'-' * 44} {'-' * 10} {'-' * 7}")
    passed = failed = skipped = 0
    total = plan if plan is not None else max(results, default=0)
    for num in range(1, total + 1):
        name, verdict = results.get(num, ("?", "FAIL (no result: crash or timeout)"))
        if verdict == "PASS":
            passed += 1
        elif verdict == "SKIP":
            skipped += 1
        else:
            failed += 1
        t = times.get(name, "")
        print(f"{num:>3}  {name:<44} {verdict:<10} {t + 's' if t else '':>7}")
    if plan is None:
        print("no KTAP plan in the log: the guest never reached the tests")
        failed += 1
    if boot:
        print(f"boot to userspace: {boot}s (guest clock)")
    line = f"{passed} passed, {failed} failed, {skipped} skipped"
    print(line)
    with open(os.path.join(os.path.dirname(path), "summary.txt"), "w") as f:
        f.write(line + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
