#!/usr/bin/env python3
"""scripts/gpu-check-prebuilt's sweep step on the CPU, with a stand-in `lighthouse` that writes a
metrics file: the items run one after another by default and all at once with SWEEP_PARALLEL=1
(each stand-in waits until it has seen the others start, which only concurrent runs can do),
their report lines come out in the order given, and a failing item fails the step and the script.

Usage: gpu_check_sweep_test.py PATH/TO/scripts/gpu-check-prebuilt (ctest, label cpu).
"""
import os
import subprocess
import sys
import tempfile

FAKE = r'''#!/usr/bin/env bash
# Stand-in for `lighthouse train`: records that it started, waits (up to 20 s) until $EXPECT runs
# have, and writes one step and one evaluation record to --metrics.
metrics="" fail=0
while [[ $# -gt 0 ]]; do
  [[ "$1" == --metrics ]] && metrics="$2"
  [[ "$1" == --fail ]] && fail=1
  shift
done
name="$(basename "$metrics" .jsonl)"
touch "$MARKS/$name"
for _ in $(seq 200); do
  (($(ls "$MARKS" | wc -l) >= EXPECT)) && break
  sleep 0.1
done
ls "$MARKS" | wc -l > "$MARKS/../seen-$name"
((fail)) && { echo "stand-in: failing as asked" >&2; exit 1; }
printf '%s\n' '{"type":"step","step":1,"seconds":0.5}' \
  '{"type":"eval","step":1,"recall_loss":2.3,"recall_first_loss":2.2,"dense_loss":1.0}' > "$metrics"
'''
OTHER_STEPS = ("linkage gpu-tests train-tests train-cp step-64k step-32k bench-sel bench-packed "
               "bench-scorer leak paper compare")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def run(script, tmp, sweep, expect, parallel):
    work = tempfile.mkdtemp(dir=tmp)
    os.makedirs(f"{work}/bin/marks")
    with open(f"{work}/bin/lighthouse", "w") as f:
        f.write(FAKE)
    os.chmod(f"{work}/bin/lighthouse", 0o755)
    env = dict(os.environ, PACK=f"{work}/no-pack", BIN_DIR=f"{work}/bin", SKIP=OTHER_STEPS,
               SWEEP=sweep, SWEEP_PARALLEL=parallel, SWEEP_LIMIT="40", DEADLINE="60",
               OUT=f"{work}/out", MARKS=f"{work}/bin/marks", EXPECT=str(expect))
    r = subprocess.run(["bash", script], env=env, capture_output=True, text=True)
    seen = {}
    for name in os.listdir(f"{work}/bin"):
        if name.startswith("seen-sweep-"):
            with open(f"{work}/bin/{name}") as f:
                seen[name[len("seen-sweep-"):]] = int(f.read())
    return r, seen


def main():
    script = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        # Side by side: every stand-in sees all three start.
        r, seen = run(script, tmp, "a:--x 1;b:--y 2;c:--z", 3, "1")
        check(r.returncode == 0, f"parallel sweep failed: {r.stdout[-2000:]}")
        check(seen == {"a": 3, "b": 3, "c": 3}, f"not side by side: {seen}")
        lines = [l for l in r.stdout.splitlines() if l.startswith("sweep ") and "steps" in l]
        check([l.split(":")[0] for l in lines] == ["sweep a", "sweep b", "sweep c"],
              f"report lines out of order: {lines}")
        # One after another (the default): the first run sees only itself.
        r, seen = run(script, tmp, "a:--x 1;b:--y 2", 1, "0")
        check(r.returncode == 0, f"sequential sweep failed: {r.stdout[-2000:]}")
        check(seen == {"a": 1, "b": 2}, f"not one after another: {seen}")
        # A failing item fails the step and the script, side by side too.
        r, seen = run(script, tmp, "a:--x 1;b:--fail", 2, "1")
        check(r.returncode == 1, f"a failing item must fail the script: {r.returncode}")
        check(any(l.startswith("sweep ") and "FAIL" in l for l in r.stdout.splitlines()),
              f"the summary must show the sweep failed: {r.stdout[-1500:]}")
    print("gpu-check-prebuilt sweep: all checks passed")


if __name__ == "__main__":
    main()
