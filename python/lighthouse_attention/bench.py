"""Benchmark mode: the op's forward + backward against the C++ library at the same shapes.

    python -m lighthouse_attention.bench [--device cuda] [--seq 32k,64k,...] [--json FILE]

For each sequence length, on the same seeded inputs:
  op        torch.ops.lighthouse.attention forward, then backward through autograd (what a model
            pays: the context tensor, the autograd node, the dispatcher)
  library   the C++ library through its own Context (torch.ops.lighthouse.library_forward_backward:
            lighthouse::forward + lighthouse::backward, nothing else)
  sdpa      F.scaled_dot_product_attention(is_causal=True) at the full length, for scale
Median milliseconds of --repeats timed runs after --warmup, and op / library - 1 (the target is
within 5%). The last line compares with the original implementation's published one-layer time
(72.3 ms at 512K tokens, L=3, p=4, K=2048, H200) when that configuration is among the rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from ._library import ops
from .functional import plan

ORIGINAL_MS = 72.3  # one layer, forward + backward, N = 512K, L=3, p=4, K=2048 (H200)


def _sizes(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        scale = 1024 if part.endswith("k") else 1
        out.append(int(part.rstrip("k")) * scale)
    return out


class Timer:
    """Wall time around a synchronised region (CUDA events on the GPU)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def __call__(self, fn, warmup: int, repeats: int) -> float:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            if self.cuda:
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)


def run(args) -> list[dict]:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
             "fp64": torch.float64}[args.dtype]
    device = args.device
    torch.use_deterministic_algorithms(args.deterministic)
    timer = Timer(device)
    cfg = (args.levels, args.pool, args.topk, None)
    rows = []
    for n in _sizes(args.seq):
        shape = (args.batch, n, args.heads, args.head_dim)
        info = plan(*shape, levels=args.levels, pool=args.pool, topk=args.topk, dtype=dtype)
        g = torch.Generator(device=device).manual_seed(args.seed)
        q, k, v, dout = (torch.randn(shape, generator=g, device=device, dtype=dtype)
                         for _ in range(4))
        leaves = [t.detach().requires_grad_() for t in (q, k, v)]

        def op_step():
            for t in leaves:
                t.grad = None
            ops.attention(*leaves, *cfg).backward(dout)

        def library_step():
            ops.library_forward_backward(q, k, v, dout, *cfg)

        row = {"seq": n, "S": info["S"], "batch": args.batch, "heads": args.heads,
               "head_dim": args.head_dim, "levels": args.levels, "pool": args.pool,
               "topk": args.topk, "dtype": args.dtype, "device": device}
        # Interleaved, so that clock or thermal drift affects both alike.
        row["op_ms"] = timer(op_step, args.warmup, args.repeats)
        row["library_ms"] = timer(library_step, args.warmup, args.repeats)
        row["op_ms"] = min(row["op_ms"], timer(op_step, 0, args.repeats))
        row["library_ms"] = min(row["library_ms"], timer(library_step, 0, args.repeats))
        row["op_vs_library"] = row["op_ms"] / row["library_ms"] - 1
        if args.sdpa and dtype != torch.float64:
            qs, ks, vs = (t.detach().transpose(1, 2).requires_grad_() for t in (q, k, v))
            ds = dout.transpose(1, 2)

            def sdpa_step():
                for t in (qs, ks, vs):
                    t.grad = None
                F.scaled_dot_product_attention(qs, ks, vs, is_causal=True).backward(ds)

            row["sdpa_ms"] = timer(sdpa_step, args.warmup, args.repeats)
        rows.append(row)
        print(_format_row(row), flush=True)
        del q, k, v, dout, leaves
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def _header() -> str:
    return f"{'N':>8} {'S':>7} {'op ms':>10} {'library ms':>11} {'op/lib-1':>9} {'sdpa ms':>10}"


def _format_row(r: dict) -> str:
    sdpa = f"{r['sdpa_ms']:10.2f}" if "sdpa_ms" in r else f"{'-':>10}"
    return (f"{r['seq']:>8} {r['S']:>7} {r['op_ms']:10.2f} {r['library_ms']:11.2f} "
            f"{100 * r['op_vs_library']:+8.1f}% {sdpa}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lighthouse_attention.bench",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seq", default=None, help="comma-separated lengths, 64k = 65536")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=None)
    p.add_argument("--head-dim", type=int, default=None)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--pool", type=int, default=None)
    p.add_argument("--topk", type=int, default=None)
    p.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32", "fp64"])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deterministic", action="store_true",
                   help="torch.use_deterministic_algorithms(True): cuDNN's deterministic backward")
    p.add_argument("--no-sdpa", dest="sdpa", action="store_false", help="skip the dense row")
    p.add_argument("--max-gap", type=float, default=None,
                   help="exit 1 when op/library - 1 exceeds this fraction on any row (e.g. 0.05)")
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    # The C++ bench's defaults: CUDA B=1 H=8 D=128 bf16 L=3 p=4 K=2048; CPU small and float32.
    args.seq = args.seq or ("32k,64k,128k,256k,512k" if cuda else "8k")
    args.heads = args.heads or (8 if cuda else 4)
    args.head_dim = args.head_dim or (128 if cuda else 64)
    args.pool = args.pool or 4
    args.topk = args.topk or (2048 if cuda else 512)
    args.dtype = args.dtype or ("bf16" if cuda else "fp32")

    print(f"lighthouse_attention.bench: torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if cuda else "")
          + f", B={args.batch} H={args.heads} D={args.head_dim} {args.dtype}, "
          f"L={args.levels} p={args.pool} K={args.topk}, deterministic={args.deterministic}, "
          f"median of {args.repeats}")
    print(_header())
    rows = run(args)
    for r in rows:
        if (r["seq"] == 512 * 1024 and (r["levels"], r["pool"], r["topk"]) == (3, 4, 2048)):
            print(f"one layer at 512K (L=3, p=4, K=2048): op {r['op_ms']:.1f} ms, library "
                  f"{r['library_ms']:.1f} ms; the original implementation: {ORIGINAL_MS} ms "
                  f"on an H200 (op / original = {r['op_ms'] / ORIGINAL_MS:.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "torch": torch.__version__, "argv": sys.argv[1:]}, f, indent=1)
    worst = max(r["op_vs_library"] for r in rows)
    print(f"largest op/library gap: {100 * worst:+.1f}%")
    if args.max_gap is not None and worst > args.max_gap:
        print(f"FAIL: the op is more than {100 * args.max_gap:.0f}% slower than the library")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
