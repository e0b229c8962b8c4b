"""Context parallelism of the op over a gloo group on the CPU: W ranks as processes
(torch.multiprocessing), each comparing its shard of the output and of the three gradients with
the unsharded op's on the same inputs, bit for bit (the library's dense attention inside); with
PyTorch's SDPA inside, to float rounding. Bad input raises ValueError on every rank."""

from __future__ import annotations

import os
import tempfile
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lighthouse_attention import context_parallel, lighthouse_attention

# (levels, pool, topk, B, N, H, D): every chunk of 2 W holds whole tiles (topk / 128 by 2 W).
CASES = [
    (2, 2, 512, 1, 1024, 2, 16),
    (3, 2, 512, 2, 2048, 2, 8),
    (1, 2, 128, 1, 256, 4, 16),
]


def _inputs(b, n, h, d, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(4):
        x = torch.randn(b, n, h, d, generator=g, dtype=torch.float64)
        if i < 2:
            x = x * torch.exp(0.5 * torch.randn(b, n, h, 1, generator=g, dtype=torch.float64))
        out.append(x.to(dtype))
    return out


def _run_case(rank, world, case, dtype, inner):
    levels, pool, topk, b, n, h, d = case
    q, k, v, dout = _inputs(b, n, h, d, dtype, seed=sum(case))
    cfg = dict(levels=levels, pool=pool, topk=topk)
    # The unsharded op on the whole sequence.
    whole = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = lighthouse_attention(*whole, **cfg)
    ref.backward(dout)
    # This rank's shards through the group.
    mine = [context_parallel.shard(t, world, rank).requires_grad_() for t in (q, k, v)]
    out = lighthouse_attention(*mine, **cfg, cp_group=dist.group.WORLD, cp_attention=inner)
    out.backward(context_parallel.shard(dout, world, rank))
    expected = [ref] + [t.grad for t in whole]
    got = [out] + [t.grad for t in mine]
    for name, e, g in zip(("out", "dq", "dk", "dv"), expected, got):
        e = context_parallel.shard(e.detach(), world, rank)
        if inner == "library":
            assert torch.equal(g, e), f"{case} {dtype} {name}: not bitwise equal"
        else:
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5, msg=f"{case} {name}")


def _worker(rank, world, store_path, results_dir, job):
    try:
        store = dist.FileStore(store_path, world)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
        torch.set_num_threads(1)
        job(rank, world)
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:  # noqa: BLE001 - reported to the parent through a file
        with open(os.path.join(results_dir, f"rank{rank}.err"), "w") as f:
            f.write(traceback.format_exc())
        raise


def _spawn(world, job):
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        try:
            mp.spawn(_worker, args=(world, store, tmp, job), nprocs=world, join=True)
        except Exception:  # show every rank's traceback, not only the first
            errors = [open(os.path.join(tmp, f)).read() for f in sorted(os.listdir(tmp))
                      if f.endswith(".err")]
            pytest.fail("\n".join(errors) or "a rank failed")


def _equality_job(rank, world):
    for case in CASES:
        for dtype in (torch.float32, torch.float64):
            _run_case(rank, world, case, dtype, "library")
    _run_case(rank, world, CASES[0], torch.float64, "sdpa")


def _errors_job(rank, world):
    levels, pool, topk, b, n, h, d = CASES[0]
    q, k, v, _ = _inputs(b, n // world, h, d, torch.float32, seed=1)
    # Ranks disagree on topk: both raise, neither hangs.
    with pytest.raises(ValueError, match="topk = 512 on rank 0, 256 on rank 1"):
        lighthouse_attention(q, k, v, levels=levels, pool=pool, topk=512 if rank == 0 else 256,
                             cp_group=dist.group.WORLD)
    # 4 tiles do not split into 2 W = 8 chunks at W = 4 (checked before any collective).
    with pytest.raises(ValueError, match="topk / 128 = 2 tiles must be divisible by 4"):
        lighthouse_attention(q, k, v, levels=levels, pool=pool, topk=256,
                             cp_group=dist.group.WORLD)
    with pytest.raises(ValueError, match="supports selection = original only"):
        lighthouse_attention(q, k, v, levels=levels, pool=pool, topk=topk, selection="causal",
                             cp_group=dist.group.WORLD)
    with pytest.raises(ValueError, match="cp_attention = 'flash'"):
        lighthouse_attention(q, k, v, levels=levels, pool=pool, topk=topk,
                             cp_group=dist.group.WORLD, cp_attention="flash")


def _ulysses_job(rank, world):
    """The Ulysses anchor of scripts/gpu-cp-check (cp_check._ulysses) is dense causal attention."""
    import torch.nn.functional as F

    from lighthouse_attention.cp_check import _ulysses

    b, n, h, d = 2, 64, 4, 8
    q, k, v, dout = _inputs(b, n, h, d, torch.float64, seed=7)
    whole = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in whole),
                                         is_causal=True).transpose(1, 2)
    ref.backward(dout)
    mine = [context_parallel.shard(t, world, rank).requires_grad_() for t in (q, k, v)]
    out = _ulysses(*mine, dist.group.WORLD, world)
    out.backward(context_parallel.shard(dout, world, rank))
    for name, e, g in zip(("out", "dq", "dk", "dv"), [ref] + [t.grad for t in whole],
                          [out] + [t.grad for t in mine]):
        torch.testing.assert_close(g, context_parallel.shard(e.detach(), world, rank), rtol=1e-12,
                                   atol=1e-12, msg=name)


def test_ulysses_anchor_of_the_gpu_check_is_dense_attention():
    _spawn(2, _ulysses_job)


def test_two_ranks_equal_the_unsharded_op_bit_for_bit():
    _spawn(2, _equality_job)


def test_one_rank_equals_the_unsharded_op():
    _spawn(1, _equality_job)


def test_bad_input_raises_on_every_rank():
    _spawn(2, _errors_job)


def test_shard_and_unshard_are_inverse():
    x = torch.arange(2 * 16 * 3).view(2, 16, 3)
    shards = [context_parallel.shard(x, 4, r) for r in range(4)]
    assert shards[1][0, :, 0].tolist() == [6, 9, 36, 39]  # chunks 1 and 6 of 8 (2 tokens each)
    assert torch.equal(context_parallel.unshard(shards), x)
    with pytest.raises(ValueError, match="divisible by 2 x world = 6"):
        context_parallel.shard(x, 3, 0)
