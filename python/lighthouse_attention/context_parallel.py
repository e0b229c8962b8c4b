"""Context parallelism for the PyTorch op: one sequence over the ranks of a
``torch.distributed`` process group, with the single-device result.

Sharding: the sequence is cut into ``2 W`` chunks; rank ``r`` holds chunks ``r`` and
``2 W - 1 - r`` (head-tail load balancing), concatenated (``shard``). Each rank runs the pyramid,
the selection and the gather on its chunks (``cp_select_gather``, an op of the extension); an
all-to-all makes the gathered rows head-sharded (all ``S`` rows in causal order for ``H / W``
heads); the dense causal attention runs on them (the library's, ``levels == 1``, or PyTorch's
``scaled_dot_product_attention``); an all-to-all brings the outputs back; the scatter
(``cp_scatter``) adds the previous chunk's last entries, all-gathered, to each chunk's first
tokens. The backward mirrors it. Every collective goes through ``torch.distributed`` on the
group given, so the op composes with FSDP, torchtitan and the like.

The pieces are ``torch.autograd.Function``s (collectives inside), composed by autograd; under
``torch.compile`` they run eagerly (a graph break at each), the rest of the model compiles.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ._library import ops

ATTENTIONS = ("library", "sdpa")


def chunk_ids(world: int, rank: int) -> tuple[int, int]:
    """The two chunks (of ``2 * world``) that ``rank`` holds: ``rank`` and ``2 world - 1 - rank``."""
    return rank, 2 * world - 1 - rank


def shard(x: torch.Tensor, world: int, rank: int, *, dim: int = 1) -> torch.Tensor:
    """The rank's two chunks of a whole tensor along ``dim`` (the sequence), concatenated."""
    n = x.shape[dim]
    if n % (2 * world) != 0:
        raise ValueError(
            f"x.shape[{dim}] = {n}: must be divisible by 2 x world = {2 * world} (equal chunks)"
        )
    if not 0 <= rank < world:
        raise ValueError(f"rank = {rank}: must be in [0, world = {world})")
    parts = x.chunk(2 * world, dim=dim)
    first, second = chunk_ids(world, rank)
    return torch.cat([parts[first], parts[second]], dim=dim)


def unshard(shards: Sequence[torch.Tensor], *, dim: int = 1) -> torch.Tensor:
    """The whole tensor from every rank's shard (in rank order)."""
    world = len(shards)
    chunks: list[Optional[torch.Tensor]] = [None] * (2 * world)
    for rank, local in enumerate(shards):
        a, b = local.chunk(2, dim=dim)
        first, second = chunk_ids(world, rank)
        chunks[first], chunks[second] = a, b
    return torch.cat(chunks, dim=dim)


def gather_shards(local: torch.Tensor, group=None, *, dim: int = 1) -> torch.Tensor:
    """The whole tensor on every rank, from each rank's shard (an all-gather; not differentiable)."""
    world = dist.get_world_size(group)
    shards = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(shards, local.contiguous(), group=group)
    return unshard(shards, dim=dim)


class _Config:
    """What every piece needs: the configuration, the group and its arithmetic (cp_plan)."""

    def __init__(self, q, levels, pool, topk, scale, selection, group, check):
        self.levels, self.pool, self.topk = levels, pool, topk
        self.scale, self.selection, self.group = scale, selection, group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        b, n, h, d = q.shape
        self.seq = n
        # This rank's rules first; a rejection goes through the agreement check, so that the
        # other ranks raise too instead of waiting in a collective.
        rejected = None
        try:
            (self.S, self.chunk_rows, self.edge_tokens, self.edge_levels, self.heads_per_rank,
             _) = ops.cp_plan(b, n, h, d, levels, pool, topk, scale, selection, self.world)
        except (ValueError, RuntimeError) as e:
            rejected = e
        if check:
            self._check_agreement(q, rejected is not None)
        if rejected is not None:
            raise rejected

    def _check_agreement(self, q, failed: bool):
        """Every rank passes the same shapes and configuration (else ValueError on all, naming
        the first field that differs); a rank whose own rules rejected its call makes the others
        raise ValueError as well."""
        dtypes = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
        mine = [*q.shape, self.levels, self.pool, self.topk,
                -1 if self.scale is None else round(self.scale * 2**40),
                0 if self.selection == "original" else 1,
                dtypes.index(q.dtype) if q.dtype in dtypes else -1, int(failed)]
        names = ["batch", "seq", "heads", "head_dim", "levels", "pool", "topk", "scale",
                 "selection", "dtype"]
        t = torch.tensor(mine, dtype=torch.int64, device=q.device)
        every = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(every, t, group=self.group)
        rows = [e.tolist() for e in every]
        for r, row in enumerate(rows):
            for name, a, b in zip(names, rows[0], row):
                if a != b:
                    raise ValueError(
                        f"{name} = {a} on rank 0, {b} on rank {r}: every rank of a context-"
                        "parallel call must pass the same shapes and configuration"
                    )
        failing = [r for r, row in enumerate(rows) if row[-1]]
        if failing and not failed:
            raise ValueError(f"cp_group: rank {failing[0]} rejected its call (its own error says "
                             f"why); rank {self.rank} stops too")

    def chunk_order(self, device):
        """Index of chunk g among the (source rank, which) blocks of an all-to-all."""
        w = self.world
        return torch.tensor([2 * g if g < w else 2 * (2 * w - 1 - g) + 1 for g in range(2 * w)],
                            device=device)


def _to_heads(rows: torch.Tensor, cfg: _Config) -> torch.Tensor:
    """[n, 2, B, H, S/2W, D] (this rank's chunks, all heads) -> [n, B, H/W, S, D] (all chunks in
    causal order, this rank's heads): one all-to-all."""
    n, _, b, h, rows_per_chunk, d = rows.shape
    w, hw = cfg.world, cfg.heads_per_rank
    send = rows.reshape(n, 2, b, w, hw, rows_per_chunk, d).permute(3, 0, 1, 2, 4, 5, 6).contiguous()
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=cfg.group)
    blocks = recv.permute(1, 3, 4, 0, 2, 5, 6).reshape(n, b, hw, 2 * w, rows_per_chunk, d)
    ordered = blocks.index_select(3, cfg.chunk_order(rows.device))
    return ordered.reshape(n, b, hw, 2 * w * rows_per_chunk, d)


def _to_rows(heads: torch.Tensor, cfg: _Config) -> torch.Tensor:
    """The inverse of _to_heads: [n, B, H/W, S, D] -> [n, 2, B, H, S/2W, D]."""
    n, b, hw, s, d = heads.shape
    w, rows_per_chunk = cfg.world, s // (2 * cfg.world)
    blocks = heads.reshape(n, b, hw, 2 * w, rows_per_chunk, d)
    inverse = torch.argsort(cfg.chunk_order(heads.device))
    by_source = blocks.index_select(3, inverse).view(n, b, hw, w, 2, rows_per_chunk, d)
    send = by_source.permute(3, 0, 4, 1, 2, 5, 6).contiguous()  # [W, n, 2, B, H/W, S/2W, D]
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=cfg.group)
    return recv.permute(1, 2, 3, 0, 4, 5, 6).reshape(n, 2, b, w * hw, rows_per_chunk, d)


class _SelectGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cfg):
        qs, ks, vs, sel = ops.cp_select_gather(q, k, v, cfg.levels, cfg.pool, cfg.topk, cfg.scale,
                                               cfg.selection, cfg.world)
        ctx.save_for_backward(sel)
        ctx.cfg = cfg
        ctx.mark_non_differentiable(sel)
        return torch.stack([qs, ks, vs]), sel

    @staticmethod
    def backward(ctx, drows, _):
        (sel,) = ctx.saved_tensors
        cfg = ctx.cfg
        dq, dk, dv = ops.cp_gather_backward(drows[0], drows[1], drows[2], sel, cfg.seq, cfg.levels,
                                            cfg.pool, cfg.topk, cfg.selection, cfg.world)
        return dq, dk, dv, None


class _ToHeads(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows, cfg):
        ctx.cfg = cfg
        return _to_heads(rows, cfg)

    @staticmethod
    def backward(ctx, grad):
        return _to_rows(grad, ctx.cfg), None


class _ToRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, heads, cfg):
        ctx.cfg = cfg
        return _to_rows(heads, cfg)

    @staticmethod
    def backward(ctx, grad):
        return _to_heads(grad, ctx.cfg), None


def _all_gather(t: torch.Tensor, cfg: _Config) -> torch.Tensor:
    every = [torch.empty_like(t) for _ in range(cfg.world)]
    dist.all_gather(every, t.contiguous(), group=cfg.group)
    return torch.stack(every)


class _Scatter(torch.autograd.Function):
    """out from this rank's output rows; the chunk edges are all-gathered inside (forward: the
    chunks' last entries' outputs; backward: the chunks' first dout tokens), so that every token
    and every gathered row gets the single-device sums."""

    @staticmethod
    def forward(ctx, o_rows, sel, cfg):
        edges = ops.cp_output_edges(o_rows, sel, cfg.seq, cfg.levels, cfg.pool, cfg.topk,
                                    cfg.selection, cfg.world)
        every = _all_gather(edges, cfg) if cfg.edge_levels > 0 else edges.new_empty(0)
        ctx.save_for_backward(sel)
        ctx.cfg = cfg
        return ops.cp_scatter(o_rows, sel, every, cfg.seq, cfg.levels, cfg.pool, cfg.topk,
                              cfg.selection, cfg.world, cfg.rank)

    @staticmethod
    def backward(ctx, dout):
        (sel,) = ctx.saved_tensors
        cfg = ctx.cfg
        if cfg.edge_tokens > 0:
            half = cfg.seq // 2
            edges = torch.stack([dout[:, c * half : c * half + cfg.edge_tokens] for c in (0, 1)])
            every = _all_gather(edges, cfg)
        else:
            every = dout.new_empty(0)
        do_rows = ops.cp_scatter_backward(dout, sel, every, cfg.levels, cfg.pool, cfg.topk,
                                          cfg.selection, cfg.world, cfg.rank)
        return do_rows, None, None


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    levels: int,
    pool: int,
    topk: int,
    scale: Optional[float],
    selection: str,
    group,
    inner: str = "library",
    check: bool = True,
) -> torch.Tensor:
    """Lighthouse attention of this rank's shards ``[B, N / W, H, D]`` over ``group``; the rank's
    shard of the output. See lighthouse_attention(cp_group=...)."""
    if inner not in ATTENTIONS:
        raise ValueError(f"cp_attention = {inner!r}: must be 'library' or 'sdpa'")
    if not dist.is_initialized():
        raise ValueError("cp_group: torch.distributed is not initialised (init_process_group)")
    cfg = _Config(q, levels, pool, topk, scale, selection, group, check)
    rows, sel = _SelectGather.apply(q, k, v, cfg)
    qh, kh, vh = _ToHeads.apply(rows, cfg).unbind(0)  # [B, H/W, S, D] each
    if inner == "library":
        # The library's dense causal attention (levels == 1) reads [B, S, H/W, D] views: on the
        # CPU the same kernel, head by head, as the single-device op (same bits).
        o = ops.attention(qh.transpose(1, 2), kh.transpose(1, 2), vh.transpose(1, 2), 1, 2, 128,
                          scale, "original").transpose(1, 2)
    else:
        o = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True, scale=scale)
    o_rows = _ToRows.apply(o.unsqueeze(0), cfg)[0]  # [2, B, H, S/2W, D]
    return _Scatter.apply(o_rows, sel, cfg)
