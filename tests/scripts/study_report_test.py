#!/usr/bin/env python3
"""scripts/study-report on hand-made compare.json folders: mean ± sample s.d. per arm, a missing
metric shown as "–", passkey cells summed over seeds, paired differences to dense with a 95%
t-interval, bad input exit 2.

Usage: study_report_test.py PATH/TO/scripts/study-report (run by ctest, label cpu).
"""
import json
import os
import subprocess
import sys
import tempfile


def arm(name, final, recall, wall, correct, first=None):
    a = {"arm": name, "final_dense_loss": final, "recall_loss": recall, "wall_seconds": wall,
         "stage1": {"seconds": 0.0 if name == "dense" else wall / 2,
                    "tokens_per_second": 0.0 if name == "dense" else 2000.0},
         "stage2": {"seconds": wall if name == "dense" else wall / 2, "tokens_per_second": 1000.0},
         "passkey": {"accuracy": correct / 4, "loss": 2.2 - 0.1 * correct,
                     "cells": [{"length": 1024, "depth": 0.5, "correct": correct, "trials": 4}]}}
    if first is not None:
        a["recall_first_loss"] = first
        a["recall_first_by_distance"] = [
            {"from": 0, "to": 128, "loss": first - 1.0, "tokens": 10},
            {"from": 128, "to": 1024, "loss": None, "tokens": 0}]
    if name != "dense":
        a.update({"jump": 0.1, "recover_steps": 3,
                  "stage1_end": {"own_attention_loss": 1.5, "dense_loss": 1.7},
                  "leak_probe": {"mean_diff": 0.0, "ci95": 0.0}})
    return a


def write(folder, arms):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "compare.json"), "w") as f:
        json.dump({"arms": arms, "tokens_per_run": 1000}, f)


def run(script, *args):
    return subprocess.run([sys.executable, script, *args], capture_output=True, text=True)


def check(cond, what, out):
    if not cond:
        raise AssertionError(f"{what}\n--- output ---\n{out}")


def main():
    script = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        seeds = []
        for i, (dense, causal) in enumerate(((1.0, 0.9), (1.1, 1.0), (1.2, 1.05))):
            folder = os.path.join(tmp, f"s{i + 1}")
            write(folder, [arm("dense", dense, 2.0, 100.0, i + 1),
                           arm("causal", causal, 1.5, 50.0, 0, first=2.1)])
            seeds.append(folder)
        r = run(script, *seeds)
        out = r.stdout
        check(r.returncode == 0, f"exit {r.returncode}: {r.stderr}", out)
        check("| final held-out loss (dense attention) | **1.1000 ± 0.1000** (1.0000, 1.1000, "
              "1.2000) | **0.9833 ± 0.0764** (0.9000, 1.0000, 1.0500) |" in out,
              "the final loss row", out)
        check("| first answer digits only (key match) | – | **2.100 ± 0.000** (2.100, 2.100, 2.100) |"
              in out, "a metric missing from an arm is –", out)
        check("| 1024 | 50% | 50% of 12 | 0% of 12 |" in out, "passkey cells summed over seeds", out)
        check("|   first digits, key last written < 128 back | – | **1.100 ± 0.000** (1.100, 1.100, "
              "1.100) |" in out, "a distance class's row", out)
        check("|   first digits, key last written 1K-8K back | – | – |" in out,
              "a class without answers, or without the list, is –", out)
        check("| passkey loss on its digit (ln 9 = 2.197 without the fact) | **2.000 ± 0.100** "
              "(2.100, 2.000, 1.900) | **2.200 ± 0.000** (2.200, 2.200, 2.200) |" in out,
              "the passkey's loss row", out)
        check("- causal − dense, final held-out loss: -0.1167 ± 0.0717 (per seed -0.1000, -0.1000, "
              "-0.1500)" in out, "the paired difference and its t-interval (t = 4.303, 2 d.f.)", out)
        check("- dense / causal, wall-clock: 2.0000 ± 0.0000" in out, "the wall-clock ratio", out)
        check("| steps to recover the stage-1 loss | – | 3, 3, 3 |" in out, "recovery steps", out)

        r = run(script, seeds[0])
        check(r.returncode == 0 and r.stdout.startswith("1 run (") and
              "| final held-out loss (dense attention) | **1.0000** | **0.9000** |" in r.stdout,
              "one run: its values, no spread", r.stdout)

        r = run(script, seeds[0], os.path.join(tmp, "nothing"))
        check(r.returncode == 2 and "no compare.json" in r.stderr, "a folder without a run",
              r.stderr)
        odd = os.path.join(tmp, "odd")
        write(odd, [arm("dense", 1.0, 2.0, 100.0, 1)])
        r = run(script, seeds[0], odd)
        check(r.returncode == 2 and "differ" in r.stderr, "folders with other arms", r.stderr)
        r = run(script)
        check(r.returncode == 2, "no folder at all", r.stdout + r.stderr)
    print("study_report_test: ok")


if __name__ == "__main__":
    main()
