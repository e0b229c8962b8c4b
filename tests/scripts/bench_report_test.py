#!/usr/bin/env python3
"""scripts/bench-report on hand-made bench JSON: every target judged right, both ways, and the
exit status 0 with MISS rows (a report, and it says so).

Usage: bench_report_test.py PATH/TO/scripts/bench-report (run by ctest, label cpu).
"""
import json
import os
import subprocess
import sys
import tempfile


def row(impl, seq, S, fwd, fwd_bwd, peak):
    return {"impl": impl, "seq": seq, "S": S, "fwd_ms": fwd, "bwd_ms": fwd_bwd - fwd,
            "fwd_bwd_ms": fwd_bwd, "peak_device_bytes": peak}


def bench(levels, pool, topk, rows):
    return {"config": {"levels": levels, "pool": pool, "topk": topk, "dtype": "bfloat16",
                       "batch": 1, "heads": 8, "head_dim": 128}, "rows": rows}


def run(script, *paths):
    return subprocess.run([sys.executable, script, *paths], capture_output=True, text=True)


def line_of(out, n_k):
    for line in out.splitlines():
        if line.split() and line.split()[0] == f"{n_k}K":
            return line.split()
    raise AssertionError(f"no line for {n_k}K in:\n{out}")


def main(script):
    gib = 1 << 30
    with tempfile.TemporaryDirectory() as tmp:
        p4 = os.path.join(tmp, "p4.json")
        with open(p4, "w") as f:
            json.dump(bench(3, 4, 2048, [
                # 32K: everything met (1.10 f+b, 1.10 fwd, 4.4 < 8.5 ms, memory below dense).
                row("dense", 32768, 32768, 3.0, 12.0, 1 * gib),
                row("lighthouse", 32768, 18432, 1.1, 4.4, gib // 2),
                row("floor", 32768, 18432, 1.0, 4.0, gib // 4),
                # 512K: f+b 1.20, fwd 1.30, slower than the original, memory above dense.
                row("dense", 524288, 524288, 1000.0, 3700.0, 10 * gib),
                row("lighthouse", 524288, 49152, 13.0, 80.0, 11 * gib),
                row("floor", 524288, 49152, 10.0, 66.666666, gib),
                # 64K has no floor row: not judged.
                row("lighthouse", 65536, 20480, 2.0, 6.0, gib),
            ]), f)
        p2 = os.path.join(tmp, "p2.json")
        with open(p2, "w") as f:
            json.dump(bench(3, 2, 1536, [
                row("lighthouse", 393216, 104448, 38.0, 144.0, 7 * gib),
                row("floor", 393216, 104448, 37.0, 143.0, 2 * gib),
            ]), f)
        r = run(script, p4, p2)
        assert r.returncode == 0, r.stderr  # MISS rows below: a report exits 0 all the same
        assert "report, not a check" in r.stdout, r.stdout
        met = line_of(r.stdout, 32)
        assert met[4] == "ok" and met[6] == "ok" and met[7] == "ok" and met[10] == "ok", met
        missed = line_of(r.stdout, 512)
        assert missed[3] == "1.20" and missed[4] == "MISS", missed
        assert missed[5] == "1.30" and missed[6] == "MISS", missed
        assert missed[7] == "MISS" and missed[8] == "(72.3", missed
        assert missed[10] == "MISS", missed
        assert "64K" not in r.stdout.split(), r.stdout
        fails = line_of(r.stdout, 384)
        assert fails[7:10] == ["ok", "(original", "fails)"] and fails[10] == "n/a", fails
        bad = run(script, os.path.join(tmp, "missing.json"))
        assert bad.returncode == 2 and "cannot read" in bad.stderr, bad
        assert run(script).returncode == 2
    print("bench-report: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
