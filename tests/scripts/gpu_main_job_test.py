#!/usr/bin/env python3
"""scripts/gpu-main-job's mechanics on the CPU (DEVICE=cpu, a 2 x 32 model): the dense warm start
at the short context without far queries, the extension from it, every arm of the comparison
starting from the extension's weights with far queries, the warning when the warm start did not
learn to copy, WARM_DIR reusing a warm
start, WARM_ONLY stopping after it, and bad input (missing arguments, a failing warm run) exiting
non-zero with no comparison written.

Usage: gpu_main_job_test.py PATH/TO/scripts/gpu-main-job PATH/TO/lighthouse (ctest, label cpu).
"""
import json
import os
import subprocess
import sys
import tempfile

TINY = ["--layers", "2", "--dim", "32", "--dense-layers", "none", "--seq", "512",
        "--corpus-tokens", "256k"]
COMPARE = TINY + ["--levels", "2", "--topk", "128", "--stage1-steps", "4", "--stage2-steps", "2",
                  "--eval-every", "0", "--eval-batches", "1", "--passkey-trials", "1",
                  "--leak-samples", "2", "--quiet"]


def run(script, cli, folder, *flags, **env):
    e = dict(os.environ, DEVICE="cpu", WARM_STEPS="3", EXTEND_STEPS="2",
             WARM_FLAGS=" ".join(TINY))
    e.update(env)
    return subprocess.run([script, cli, folder, *flags], env=e, capture_output=True, text=True)


def config(path):
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") == "config":
                return r
    raise AssertionError(f"{path}: no config record")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    script, cli = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "job")
        r = run(script, cli, d, *COMPARE)
        check(r.returncode == 0, f"the job failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
        # The tiny model does not learn to copy in 3 steps: the job says so and goes on.
        check("the warm start did not learn to copy" in r.stderr, f"no warning: {r.stderr[-2000:]}")
        warm, ext = config(f"{d}/warm-1k.jsonl"), config(f"{d}/warm-32k.jsonl")
        # The warm start: dense only, batch 32 at the short context, no far queries.
        check(warm["stage1_steps"] == 0 and warm["stage2_steps"] == 3, f"warm steps {warm}")
        check(warm["batch"] == 32 and warm["far_queries"] == 0.0, f"warm data {warm}")
        check("init_from" not in warm, "the warm start starts from scratch")
        # The extension: from the warm start's weights, with the preset's far queries.
        check(ext["stage2_steps"] == 2 and ext["far_queries"] == 1.0, f"extension {ext}")
        check(ext["init_from"].startswith(f"{d}/warm-1k"), f"extension starts from {ext}")
        with open(f"{d}/compare.json") as f:
            arms = [a["arm"] for a in json.load(f)["arms"]]
        check(arms == ["dense", "original", "causal"], f"arms {arms}")
        for arm in arms:
            c = config(f"{d}/{arm}.jsonl")
            check(c["init_from"].startswith(f"{d}/warm-32k"), f"{arm} starts from {c}")
            steps = c["stage1_steps"] + c["stage2_steps"]  # dense runs all 6 steps in stage 2
            check(c["far_queries"] == 1.0 and steps == 6, f"{arm}: {c}")

        # WARM_DIR: the arms start from an earlier warm start; none is written again.
        d2 = os.path.join(tmp, "again")
        r = run(script, cli, d2, *COMPARE, "--arms", "causal", "--seed", "2", WARM_DIR=d)
        check(r.returncode == 0, f"WARM_DIR run failed: {r.stderr[-2000:]}")
        check(not os.path.exists(f"{d2}/warm-1k"), "WARM_DIR must not train a warm start")
        c = config(f"{d2}/causal.jsonl")
        check(c["init_from"].startswith(f"{d}/warm-32k") and c["seed"] == 2, f"WARM_DIR arm {c}")

        # WARM_ONLY: the warm start and nothing else.
        d3 = os.path.join(tmp, "warm-only")
        r = run(script, cli, d3, WARM_ONLY="1")
        check(r.returncode == 0, f"WARM_ONLY failed: {r.stderr[-2000:]}")
        check(os.path.isdir(f"{d3}/warm-32k") and not os.path.exists(f"{d3}/compare.json"),
              "WARM_ONLY writes the warm start alone")

        # Bad input: no arguments; a warm run that fails stops the job before any comparison.
        r = subprocess.run([script], capture_output=True, text=True)
        check(r.returncode == 2 and "needs CLI and DIR" in r.stderr, f"no arguments: {r}")
        d4 = os.path.join(tmp, "bad")
        r = run(script, cli, d4, *COMPARE, WARM_FLAGS=" ".join(TINY + ["--lr", "-1"]))
        check(r.returncode != 0, "a failing warm start must fail the job")
        check(not os.path.exists(f"{d4}/compare.json"), "no comparison after a failed warm start")
    print("gpu-main-job: all checks passed")


if __name__ == "__main__":
    main()
