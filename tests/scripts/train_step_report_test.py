#!/usr/bin/env python3
"""scripts/train-step-report on hand-made run files: medians after the warm-up, ratios, every
target judged both ways, missing sections shown as "-" / "n/a", bad input exit 2.

Usage: train_step_report_test.py PATH/TO/scripts/train-step-report (run by ctest, label cpu).
"""
import json
import os
import subprocess
import sys
import tempfile


def write_trainer(path, lighthouse_ms, dense_ms):
    with open(path, "w") as f:
        f.write(json.dumps({"type": "config"}) + "\n")
        step = 0
        for stage, times in ((1, lighthouse_ms), (2, dense_ms)):
            for ms in times:
                step += 1
                f.write(json.dumps({"type": "step", "step": step, "stage": stage, "ms": ms,
                                    "mfu": {"executed": 0.3, "dense_equivalent": 0.5}}) + "\n")
        f.write(json.dumps({"type": "summary"}) + "\n")


def write_twin(path, median_ms):
    with open(path, "w") as f:
        json.dump({"median_ms": median_ms, "steps": []}, f)


def run(script, *args):
    return subprocess.run([sys.executable, script, *args], capture_output=True, text=True)


def target(out, prefix):
    for line in out.splitlines():
        if line.strip().startswith(prefix):
            return line.split()[-2:]
    raise AssertionError(f"no target {prefix!r} in:\n{out}")


def main(script):
    with tempfile.TemporaryDirectory() as tmp:
        # 32K: warm-up steps (1000 ms) are left out; medians 50 and 300: ratio 50/60 <= 0.9 ok,
        # dense 300/290 > 1 MISS. 64K: speed-up 600/120 = 5.0 >= 4.5 ok; no twin files.
        write_trainer(os.path.join(tmp, "trainer-32k.jsonl"), [1000, 1000, 50, 49, 51],
                      [1000, 1000, 300, 300, 301])
        write_twin(os.path.join(tmp, "twin-op-compiled-32k.json"), 60.0)
        write_twin(os.path.join(tmp, "twin-dense-compiled-32k.json"), 290.0)
        write_twin(os.path.join(tmp, "twin-op-eager-32k.json"), 70.0)
        write_trainer(os.path.join(tmp, "trainer-64k.jsonl"), [9, 9, 120, 120, 120],
                      [9, 9, 600, 600, 600])
        with open(os.path.join(tmp, "agreement-fp32.json"), "w") as f:
            json.dump({"largest_relative_difference": {"loss": 1e-7, "grad_norm": 2e-7}}, f)
        out_json = os.path.join(tmp, "report.json")
        r = run(script, tmp, "--warmup", "2", "--json", out_json)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)  # one MISS
        out = r.stdout
        assert target(out, "32k: Lighthouse step") == ["0.83", "ok"], out
        assert target(out, "32k: dense step") == ["1.03", "MISS"], out
        assert target(out, "64k: stage-1 speed-up") == ["5.00", "ok"], out
        assert target(out, "64k: Lighthouse step") == ["-", "n/a"], out
        row = next(l.split() for l in out.splitlines() if l.split()[:1] == ["32k"])
        assert row == ["32k", "50.0", "70.0", "60.0", "300.0", "-", "290.0", "6.00"], row
        assert "fp32" in out and "0.00000010" in out, out
        data = json.load(open(out_json))
        assert data["contexts"]["64k"]["trainer_lighthouse"] == 120
        # Faster trainer dense step: everything met, exit 0.
        write_twin(os.path.join(tmp, "twin-dense-compiled-32k.json"), 310.0)
        r = run(script, tmp)
        assert r.returncode == 0, (r.stdout, r.stderr)
        # The paper preset's speed-up target, from trainer-paper.jsonl.
        write_trainer(os.path.join(tmp, "trainer-paper.jsonl"), [1, 1, 1000, 1000],
                      [1, 1, 2500, 2500])
        r = run(script, tmp)
        assert r.returncode == 1 and target(r.stdout, "paper-530m") == ["2.50", "MISS"], r.stdout
        # Not a folder: exit 2.
        r = run(script, os.path.join(tmp, "missing"))
        assert r.returncode == 2 and "is not a folder" in r.stderr, r.stderr
    print("train-step-report: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
