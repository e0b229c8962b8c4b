#!/usr/bin/env python3
"""docs/SPEC*.md name the tests that guard each rule (`Suite.Name`, or `Suite.*` / `Suite.Prefix*`).
Fails when a cited test does not exist under tests/, so the spec's pointers cannot go stale.

Usage: spec_pointers_test.py REPO_ROOT
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
defined = set()
test_re = re.compile(r"^\s*TEST(?:_P|_F)?\(\s*(\w+)\s*,\s*(\w+)\s*\)", re.M)
for path in (root / "tests").rglob("*"):
    if path.suffix in (".cpp", ".cu"):
        defined.update(test_re.findall(path.read_text(errors="replace")))
if len(defined) < 50:
    sys.exit(f"found only {len(defined)} tests under {root}/tests: wrong root?")

cite_re = re.compile(r"`([A-Z]\w*)\.(\w*\*?)`")
missing, cited = [], 0
for spec in sorted((root / "docs").glob("SPEC*.md")):
    for suite, name in cite_re.findall(spec.read_text()):
        cited += 1
        if name.endswith("*"):
            ok = any(s == suite and n.startswith(name[:-1]) for s, n in defined)
        else:
            ok = (suite, name) in defined
        if not ok:
            missing.append(f"{spec.name}: `{suite}.{name}`")
if cited == 0:
    sys.exit("no test names cited in docs/SPEC*.md")
if missing:
    print("cited in the spec but not defined under tests/:\n  " + "\n  ".join(missing))
    sys.exit(1)
print(f"spec_pointers: {cited} citations, all defined")
