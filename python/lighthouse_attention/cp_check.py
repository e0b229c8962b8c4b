"""The multi-GPU check of context parallelism (issue 16), one process per rank under torchrun:

    torchrun --standalone --nproc-per-node W -m lighthouse_attention.cp_check equality
    torchrun --standalone --nproc-per-node W -m lighthouse_attention.cp_check scaling --seq 512k,1m

equality  lighthouse_attention(..., cp_group=WORLD) against the unsharded op on the same inputs
          (every rank computes the whole single-GPU result and compares its shard): the output
          and the three gradients, both inner attentions ("library", "sdpa"), bf16 and fp32 on
          CUDA (fp32 and fp64 on the CPU, gloo). Relative L2 per tensor, printed; the bound is
          1e-2 in bf16 and 1e-5 in fp32 (fp64: 1e-12). Exit 1 when any case is over it.
scaling   attention forward + backward per N: the op with cp_group, and the Ulysses anchor
          (all-to-all of q, k, v to H / W heads, SDPA over all N tokens, all-to-all back; its
          backward mirrors it) written here with torch.distributed; the slowest rank's median
          milliseconds, the bytes each rank sends per call (forward + backward; this design from
          the library's plan, Ulysses from the shapes), and the time of those collectives alone
          (the same all_to_all_single sizes, timed on their own).

Scorers: the norm scorer only (the dilated scorer is not on main yet; docs/DESIGN.md has the plan
for CP with it). Rank and world come from torchrun's RANK, WORLD_SIZE, LOCAL_RANK; NCCL on CUDA,
gloo on the CPU (--device cpu, for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

from . import context_parallel as cp
from ._library import ops
from .functional import lighthouse_attention


def _sizes(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if part.endswith("m"):
            out.append(int(part[:-1]) * 1024 * 1024)
        elif part.endswith("k"):
            out.append(int(part[:-1]) * 1024)
        else:
            out.append(int(part))
    return out


def _init(device: str) -> tuple[int, int, torch.device]:
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local))
        return dist.get_rank(), dist.get_world_size(), torch.device("cuda", local)
    dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), torch.device("cpu")


def _inputs(shape, dtype, device, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    b, n, h, d = shape
    out = []
    for i in range(4):
        x = torch.randn(b, n, h, d, generator=g)
        if i < 2:  # varied row norms: clear winners for the selection
            x = x * torch.exp(0.75 * torch.randn(b, n, h, 1, generator=g))
        out.append(x.to(device=device, dtype=dtype))
    return out


def _rel_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double(), want.double()
    return float((got - want).norm() / want.norm().clamp_min(1e-300))


def _cases(world: int, quick: bool):
    """(name, (B, N, H, D), levels, pool, topk): H = 8 (W <= 8 divides it), topk / 128 = 2W.
    quick: small heads and lengths (a CPU smoke run)."""
    w = world
    if quick:
        return [
            ("L3_p2", (1, 2048 * w, 8, 16), 3, 2, 256 * w),
            ("dense", (1, 256 * w, 8, 16), 1, 2, 128),
        ]
    return [
        ("L3_p4", (1, 16384 * w, 8, 128), 3, 4, 256 * w),
        ("L2_p2", (2, 4096 * w, 8, 64), 2, 2, 512 * w),
        ("dense", (1, 2048 * w, 8, 128), 1, 2, 128),
    ]


def equality(args, rank, world, device) -> int:
    dtypes = (torch.bfloat16, torch.float32) if device.type == "cuda" else (torch.float32,
                                                                            torch.float64)
    bounds = {torch.bfloat16: 1e-2, torch.float32: 1e-5, torch.float64: 1e-12}
    failed = 0
    for name, shape, levels, pool, topk in _cases(world, args.quick):
        cfg = dict(levels=levels, pool=pool, topk=topk)
        for dtype in dtypes:
            q, k, v, dout = _inputs(shape, dtype, device, seed=sum(shape) + levels)
            whole = [t.clone().requires_grad_() for t in (q, k, v)]
            ref = lighthouse_attention(*whole, **cfg)
            ref.backward(dout)
            want = [cp.shard(t.detach(), world, rank) for t in [ref] + [t.grad for t in whole]]
            for inner in ("library", "sdpa"):
                mine = [cp.shard(t, world, rank).requires_grad_() for t in (q, k, v)]
                out = lighthouse_attention(*mine, **cfg, cp_group=dist.group.WORLD,
                                           cp_attention=inner)
                out.backward(cp.shard(dout, world, rank))
                got = [out.detach()] + [t.grad for t in mine]
                errs = [_rel_l2(g, e) for g, e in zip(got, want)]
                same = all(torch.equal(g, e) for g, e in zip(got, want))
                ok = all(e <= bounds[dtype] for e in errs)
                failed += not ok
                print(f"rank {rank}/{world} {name} {str(dtype)[6:]} {inner}: rel L2 out "
                      f"{errs[0]:.2e} dq {errs[1]:.2e} dk {errs[2]:.2e} dv {errs[3]:.2e}"
                      f"{' (bitwise equal)' if same else ''}: {'PASS' if ok else 'FAIL'}",
                      flush=True)
    total = torch.tensor([failed], device=device)
    dist.all_reduce(total)
    if rank == 0:
        print(f"equality W = {world}: {int(total)} failing case(s)", flush=True)
    return 1 if int(total) else 0


def _timer(device):
    def run(fn, warmup, repeats):
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                import time

                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        ms = torch.tensor([statistics.median(times)], dtype=torch.float64, device=device)
        dist.all_reduce(ms, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
        return float(ms)

    return run


def _ulysses(q, k, v, group, world):
    """Dense causal attention of sequence shards through an all-to-all to head shards (the stock
    CP of dense attention). q, k, v: [B, N / W, H, D] (the rank's two chunks)."""

    class ToHeads(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return _seq_to_heads(x, group, world)

        @staticmethod
        def backward(ctx, g):
            return _heads_to_seq(g, group, world)

    class ToSeq(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return _heads_to_seq(x, group, world)

        @staticmethod
        def backward(ctx, g):
            return _seq_to_heads(g, group, world)

    qkv = ToHeads.apply(torch.stack([q, k, v]))  # [3, B, H/W, N, D], tokens in causal order
    o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
    return ToSeq.apply(o.unsqueeze(0))[0]


def _chunk_order(world, device):
    return torch.tensor([2 * g if g < world else 2 * (2 * world - 1 - g) + 1
                         for g in range(2 * world)], device=device)


def _seq_to_heads(x, group, world):
    """[n, B, N/W, H, D] (chunks r, 2W-1-r) -> [n, B, H/W, N, D] (all chunks, causal order)."""
    n, b, local, h, d = x.shape
    half, hw = local // 2, h // world
    send = x.reshape(n, b, 2, half, world, hw, d).permute(4, 0, 1, 2, 5, 3, 6).contiguous()
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)  # [W src, n, B, 2, H/W, half, D]
    blocks = recv.permute(1, 2, 4, 0, 3, 5, 6).reshape(n, b, hw, 2 * world, half, d)
    return blocks.index_select(3, _chunk_order(world, x.device)).reshape(n, b, hw, world * local, d)


def _heads_to_seq(x, group, world):
    n, b, hw, total, d = x.shape
    local, half = total // world, total // (2 * world)
    blocks = x.reshape(n, b, hw, 2 * world, half, d)
    by_src = blocks.index_select(3, torch.argsort(_chunk_order(world, x.device)))
    send = by_src.view(n, b, hw, world, 2, half, d).permute(3, 0, 1, 4, 5, 2, 6).contiguous()
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)  # [W src (head group), n, B, 2, half, H/W, D]
    return recv.permute(1, 2, 3, 4, 0, 5, 6).reshape(n, b, local, world * hw, d)


def scaling(args, rank, world, device) -> int:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    esize = torch.finfo(dtype).bits // 8
    timer = _timer(device)
    rows = []
    for n in _sizes(args.seq):
        b, h, d = 1, args.heads, args.head_dim
        shape = (b, n // world, h, d)
        q, k, v, dout = _inputs(shape, dtype, device, seed=n)
        for t in (q, k, v):
            t.requires_grad_()
        cfg = dict(levels=args.levels, pool=args.pool, topk=args.topk)

        def lighthouse_step():
            out = lighthouse_attention(q, k, v, **cfg, cp_group=dist.group.WORLD,
                                       cp_attention=args.inner, cp_check=False)
            out.backward(dout)

        def ulysses_step():
            _ulysses(q, k, v, dist.group.WORLD, world).backward(dout)

        s_total = ops.cp_plan(b, n, h, d, args.levels, args.pool, args.topk, None, "original",
                              world)[0]
        per_rank = {"lighthouse": b * h * s_total * d * esize // world,
                    "ulysses": b * h * n * d * esize // world}
        for impl, step in (("lighthouse", lighthouse_step), ("ulysses", ulysses_step)):
            ms = timer(step, args.warmup, args.repeats)
            # q, k, v and out forward; do, dq, dk, dv backward: four tensors each way, of which
            # (W - 1) / W leave the rank.
            sent = 8 * per_rank[impl] * (world - 1) // world
            block = torch.empty(per_rank[impl] // esize, dtype=dtype, device=device)
            recv = torch.empty_like(block)
            coll_ms = timer(lambda: [dist.all_to_all_single(recv, block) for _ in range(8)],
                            1, args.repeats) if world > 1 else 0.0
            row = dict(impl=impl, world=world, seq=n, ms=ms, bytes_sent=sent,
                       collective_ms=coll_ms, heads=h, head_dim=d, levels=args.levels,
                       pool=args.pool, topk=args.topk, dtype=str(dtype)[6:])
            rows.append(row)
            if rank == 0:
                print(f"W={world} N={n} {impl:<10} fwd+bwd {ms:9.2f} ms  sent/rank "
                      f"{sent / 2**20:9.1f} MiB  collectives alone {coll_ms:8.2f} ms", flush=True)
        del q, k, v, dout
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if rank == 0 and args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("equality", "scaling"))
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--seq", default="512k,1m", help="scaling: tokens (whole sequence), k/m suffix")
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--pool", type=int, default=4)
    p.add_argument("--topk", type=int, default=4096)
    p.add_argument("--inner", default="library", choices=("library", "sdpa"))
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default="", help="scaling: rows written here by rank 0")
    p.add_argument("--quick", action="store_true", help="equality: small cases (CPU smoke run)")
    args = p.parse_args(argv)
    rank, world, device = _init(args.device)
    try:
        return equality(args, rank, world, device) if args.mode == "equality" else scaling(
            args, rank, world, device)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
