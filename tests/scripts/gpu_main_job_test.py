#!/usr/bin/env python3
"""scripts/gpu-main-job's mechanics on the CPU (DEVICE=cpu, a 2 x 32 model): the dense warm starts
at the short context without far queries (one per WARM_SEEDS seed), the choice among them
(scripts/warm-choice: the first that copies, else the lowest, with a warning), the extension from
the chosen one, every arm of the comparison starting from the extension's weights with far
queries, WARM_DIR reusing a warm start, WARM_ONLY stopping after it, and bad input (missing
arguments, a failing warm run, a warm run with no summary) exiting non-zero with no comparison
written.

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
             WARM_FLAGS=" ".join(TINY), WARM_SEEDS="1 2")
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


def check_warm_choice(tool, tmp):
    """The choice itself: the first seed in the given order that copies, not the lowest."""
    d = os.path.join(tmp, "choice")
    os.makedirs(d)
    for tag, first in (("a", 2.2), ("b", 1.2), ("c", 0.4)):
        with open(f"{d}/warm-1k-{tag}.jsonl", "w") as f:
            f.write(json.dumps({"type": "summary", "final_recall_first_loss": first}) + "\n")
    r = subprocess.run([tool, d, "a", "b", "c"], capture_output=True, text=True)
    check(r.returncode == 0 and r.stdout.strip() == "b", f"first copying candidate: {r}")
    check("warning" not in r.stderr, f"no warning when one copies: {r.stderr}")
    with open(f"{d}/warm-choice.json") as f:
        check(json.load(f)["chosen"] == "b", "warm-choice.json records the choice")
    r = subprocess.run([tool, d, "c", "b"], capture_output=True, text=True)
    check(r.stdout.strip() == "c", f"the order given decides: {r}")
    r = subprocess.run([tool, d, "a"], capture_output=True, text=True,
                       env=dict(os.environ, WARM_COPY_MAX="2.5"))
    check(r.stdout.strip() == "a", f"WARM_COPY_MAX: {r}")
    r = subprocess.run([tool, d, "a"], capture_output=True, text=True,
                       env=dict(os.environ, WARM_REQUIRE_COPY="1"))
    check(r.returncode == 3 and r.stdout == "" and "stopping" in r.stderr, f"REQUIRE_COPY: {r}")
    open(f"{d}/warm-1k-e.jsonl", "w").close()  # a run that never finished: no summary
    r = subprocess.run([tool, d, "a", "e"], capture_output=True, text=True)
    check(r.returncode != 0 and "warm-1k-e.jsonl has no summary" in r.stderr, f"no summary: {r}")


def main():
    script, cli = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "job")
        r = run(script, cli, d, *COMPARE)
        check(r.returncode == 0, f"the job failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
        # The tiny model does not learn to copy in 3 steps: the job says so and goes on.
        check("no warm start learned to copy" in r.stderr, f"no warning: {r.stderr[-2000:]}")
        # The warm starts: dense only, batch 32 at the short context, no far queries, one a seed.
        for seed in (1, 2):
            warm = config(f"{d}/warm-1k-s{seed}.jsonl")
            check(warm["stage1_steps"] == 0 and warm["stage2_steps"] == 3, f"warm steps {warm}")
            check(warm["batch"] == 32 and warm["far_queries"] == 0.0, f"warm data {warm}")
            check(warm["seed"] == seed and "init_from" not in warm, f"warm start {warm}")
        # The extension: from the chosen warm start's weights (here, none copies: the lowest
        # first-digit loss), with the preset's far queries.
        with open(f"{d}/warm-choice.json") as f:
            choice = json.load(f)
        loss = choice["first_digits"]
        check(choice["candidates"] == ["s1", "s2"] and not choice["copies"], f"choice {choice}")
        check(loss[choice["chosen"]] == min(loss.values()), f"not the lowest: {choice}")
        ext = config(f"{d}/warm-32k.jsonl")
        check(ext["stage2_steps"] == 2 and ext["far_queries"] == 1.0, f"extension {ext}")
        check(ext["init_from"].startswith(f"{d}/warm-1k-{choice['chosen']}"),
              f"extension starts from {ext}, chosen {choice}")
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
        check(not any(n.startswith("warm-") for n in os.listdir(d2)),
              "WARM_DIR must not train a warm start")
        c = config(f"{d2}/causal.jsonl")
        check(c["init_from"].startswith(f"{d}/warm-32k") and c["seed"] == 2, f"WARM_DIR arm {c}")

        # WARM_ONLY: the warm start and nothing else.
        d3 = os.path.join(tmp, "warm-only")
        r = run(script, cli, d3, WARM_ONLY="1", WARM_SEEDS="3")
        check(r.returncode == 0, f"WARM_ONLY failed: {r.stderr[-2000:]}")
        check(os.path.isdir(f"{d3}/warm-32k") and not os.path.exists(f"{d3}/compare.json"),
              "WARM_ONLY writes the warm start alone")
        check(config(f"{d3}/warm-1k-s3.jsonl")["seed"] == 3, "WARM_SEEDS=3 trains seed 3 alone")

        # WARM_CANDIDATES: each candidate's flags go to its own 1K run only.
        d5 = os.path.join(tmp, "candidates")
        r = run(script, cli, d5, WARM_ONLY="1", WARM_CANDIDATES="x:--seed 4;y:--lr 1e-3")
        check(r.returncode == 0, f"WARM_CANDIDATES failed: {r.stderr[-2000:]}")
        x, y = config(f"{d5}/warm-1k-x.jsonl"), config(f"{d5}/warm-1k-y.jsonl")
        check(x["seed"] == 4 and x["lr"] == 3e-3, f"candidate x: {x}")
        check(y["seed"] == 1 and y["lr"] == 1e-3, f"candidate y: {y}")
        check(config(f"{d5}/warm-32k.jsonl")["lr"] == 3e-3,
              "the extension takes no candidate's flags")

        # Bad input: no arguments; a malformed candidate; a warm run that fails stops the job
        # before any comparison.
        r = run(script, cli, os.path.join(tmp, "bad-candidate"), WARM_CANDIDATES="no flags here")
        check(r.returncode == 2 and "must be TAG:FLAGS" in r.stderr, f"bad candidate: {r}")
        # WARM_REQUIRE_COPY=1: no candidate copies in 3 steps, so no extension and no comparison.
        d6 = os.path.join(tmp, "require")
        r = run(script, cli, d6, *COMPARE, WARM_REQUIRE_COPY="1")
        check(r.returncode == 3, f"WARM_REQUIRE_COPY: {r.returncode} {r.stderr[-1000:]}")
        check(not os.path.exists(f"{d6}/warm-32k") and not os.path.exists(f"{d6}/compare.json"),
              "WARM_REQUIRE_COPY stops before the extension")
        r = subprocess.run([script], capture_output=True, text=True)
        check(r.returncode == 2 and "needs CLI and DIR" in r.stderr, f"no arguments: {r}")
        d4 = os.path.join(tmp, "bad")
        r = run(script, cli, d4, *COMPARE, WARM_FLAGS=" ".join(TINY + ["--lr", "-1"]))
        check(r.returncode != 0, "a failing warm start must fail the job")
        check(not os.path.exists(f"{d4}/compare.json"), "no comparison after a failed warm start")
        check_warm_choice(os.path.join(os.path.dirname(script), "warm-choice"), tmp)
    print("gpu-main-job: all checks passed")


if __name__ == "__main__":
    main()
