"""``lighthouse_attention()``: a drop-in for ``F.scaled_dot_product_attention(q, k, v,
is_causal=True)`` during the sparse stage of training."""

from __future__ import annotations

from typing import Optional

import torch

from ._library import ops

LAYOUTS = ("bnhd", "bhnd")


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(
            f"layout = {layout!r}: must be 'bnhd' ([B, N, H, D], the layout of a model's "
            "projections) or 'bhnd' ([B, H, N, D], the layout of scaled_dot_product_attention)"
        )


def _check_rank(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: str) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            shape = "[B, N, H, D]" if layout == "bnhd" else "[B, H, N, D]"
            raise ValueError(
                f"{name} = {list(t.shape)}: must be a rank-4 {shape} tensor (layout={layout!r})"
            )


def _as_bnhd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: str):
    """Checks ``layout`` and the ranks; returns q, k, v as ``[B, N, H, D]`` (views, no copy)."""
    _check_layout(layout)
    _check_rank(q, k, v, layout)
    if layout == "bhnd":
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    return q, k, v


def lighthouse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    levels: int = 3,
    pool: int = 2,
    topk: int = 1536,
    layout: str = "bnhd",
    scale: Optional[float] = None,
    selection: str = "original",
    scorer: str = "norm",
    dilation: int = 4,
    cp_group=None,
    cp_attention: str = "library",
    cp_check: bool = True,
    cu_seqlens: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Causal Lighthouse attention of ``q``, ``k``, ``v``; differentiable in all three.

    ``layout="bnhd"``: tensors are ``[B, N, H, D]``; ``"bhnd"``: ``[B, H, N, D]`` (read in place
    through a transposed view, no copy). The output has the inputs' layout. ``levels`` (>= 1; 1
    is dense causal attention), ``pool`` (a power of two >= 2) and ``topk`` (a multiple of 128);
    a violation raises ``ValueError`` naming the parameter, its value and the rule. Any N >= 1
    runs: a length that breaks a shape rule is padded with zeros to the next valid one (outputs
    and gradients cut back to N), or is dense causal attention where that length would gather
    at least N entries (docs/SPEC.md, "Any sequence length"). ``scale`` defaults to ``1/sqrt(D)``.

    ``selection="original"`` is the original method's selection, which lets a position's output
    depend on later tokens (a model can learn to read the future through it; the project's
    issue 11 and README). ``selection="causal"`` decides every block's refinement from tokens up
    to its first one, so that the output at t and every gradient flowing from it depend on
    positions <= t only. ``selection="stride"`` is its content-free control: the same layout
    rules, but each tile and level refines evenly spaced blocks and reads no scores (strictly
    causal by construction; for measuring what the content-based choice is worth).

    ``scorer="norm"`` scores tokens by the L2 norms of their q and k rows; ``scorer="dilated"``
    is the original's dilated scorer: causal attention within ``dilation`` interleaved
    subsequences (N is padded to a multiple of ``dilation``), the norms of its outputs as the scores (forward
    only, about ``4 B H N^2 D / dilation`` FLOPs more).

    ``k`` and ``v`` may have fewer heads than ``q`` (grouped-query attention; one head is
    multi-query attention): ``Hkv`` must divide ``H``; each group of ``H / Hkv`` query heads
    shares one selection and its K/V rows.

    CPU: float32 and float64. CUDA: bfloat16, float16 and float32.

    ``cp_group`` (a ``torch.distributed`` process group of W ranks; NCCL on GPUs, gloo on CPUs):
    context parallelism. ``q``, ``k``, ``v`` are then this rank's shard of the sequence, its two
    chunks of ``2 W`` (``context_parallel.shard``), and so is the output; every rank of the group
    makes the same call. The result equals the single-device op's (bit for bit on the CPU with
    ``cp_attention="library"``). Rules: ``topk / 128`` divisible by ``2 W`` (levels >= 2),
    ``H`` by ``W``, ``selection="original"``. ``cp_attention``: the dense attention over the
    gathered rows, ``"library"`` (the op with levels = 1) or ``"sdpa"``
    (``F.scaled_dot_product_attention``). ``cp_check``: the agreement check of every call (an
    all-gather of the shapes and configuration, and a host sync); turn it off once a training
    loop has run a step.

    ``cu_seqlens`` (an int32 tensor of ``docs + 1`` offsets on the tensors' device,
    FlashAttention's varlen convention): packed documents. Document ``i`` is the tokens
    ``[cu[i], cu[i+1])`` of the ``B * N`` tokens in ``(b, n)`` order; each is attended as its own
    sequence (under the any-length rule), so its output and gradients equal a separate call on
    it alone (bit for bit on the CPU). Rules: ``cu[0] = 0``, strictly increasing, last
    ``B * N``, no document across two batch rows; not with ``cp_group``. Compile-clean: the
    saved context is sized from the shapes and ``len(cu_seqlens)`` alone.
    """
    q, k, v = _as_bnhd(q, k, v, layout)
    if cu_seqlens is not None:
        if cp_group is not None:
            raise ValueError("cu_seqlens: packed documents do not run with context parallelism "
                             "(cp_group): documents would cross the ranks' chunks")
        out = ops.attention_varlen(
            q, k, v, cu_seqlens, levels, pool, topk, scale, selection, scorer, dilation
        )
        return out.transpose(1, 2) if layout == "bhnd" else out
    if cp_group is not None:
        from . import context_parallel

        if scorer != "norm":
            raise ValueError(f"scorer = {scorer!r}: context parallelism (cp_group) supports "
                             "scorer='norm' only so far")
        if k.shape[2] != q.shape[2]:
            raise ValueError(f"k has {k.shape[2]} heads, q {q.shape[2]}: context parallelism "
                             "(cp_group) supports as many KV heads as query heads only so far")
        out = context_parallel.attention(
            q, k, v, levels=levels, pool=pool, topk=topk, scale=scale, selection=selection,
            group=cp_group, inner=cp_attention, check=cp_check,
        )
        return out.transpose(1, 2) if layout == "bhnd" else out
    out = ops.attention(q, k, v, levels, pool, topk, scale, selection, scorer, dilation)
    return out.transpose(1, 2) if layout == "bhnd" else out


def validate(
    levels: int,
    pool: int,
    topk: int,
    scale: Optional[float] = None,
    selection: str = "original",
    scorer: str = "norm",
    dilation: int = 4,
) -> None:
    """Checks a configuration's own rules (those that do not involve the sequence length)."""
    ops.validate(levels, pool, topk, scale, selection, scorer, dilation)


def plan(
    batch: int,
    seq: int,
    heads: int,
    head_dim: int,
    *,
    levels: int = 3,
    pool: int = 2,
    topk: int = 1536,
    scale: Optional[float] = None,
    dtype: torch.dtype = torch.float32,
    selection: str = "original",
    scorer: str = "norm",
    dilation: int = 4,
    kv_heads: int = 0,
) -> dict:
    """What a configuration costs at these sizes (``ValueError`` when it is invalid there):
    ``S`` (rows of the inner dense attention per batch and head), ``pyramid_size`` and
    ``tiles``, and ``context_bytes`` (memory saved for the backward pass). ``kv_heads``: the
    heads of k and v (grouped-query attention; 0 means ``heads``)."""
    s, pyramid, tiles, ctx, _ = ops.plan(
        batch, seq, heads, head_dim, levels, pool, topk, scale, dtype, selection, scorer,
        dilation, kv_heads
    )
    return {"S": s, "pyramid_size": pyramid, "tiles": tiles, "context_bytes": ctx}


def selected_indices(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    levels: int = 3,
    pool: int = 2,
    topk: int = 1536,
    layout: str = "bnhd",
    selection: str = "original",
    scorer: str = "norm",
    dilation: int = 4,
) -> torch.Tensor:
    """The pyramid entries the selection keeps, ``[B, Hkv, S]`` int32 in causal order (level
    ``l`` entry ``i`` is ``offset_l + i``; level 1 occupies ``[0, N)``; ``Hkv`` = k's heads, one
    selection per KV group). For analysis and tests: it runs a forward pass and reads the indices
    out of its saved context."""
    q, k, v = _as_bnhd(q, k, v, layout)
    with torch.no_grad():
        _, ctx = ops.attention_forward(
            q, k, v, levels, pool, topk, None, selection, scorer, dilation
        )
    b, n, h, d = q.shape
    hkv = k.shape[2]
    s, _, _, _, at = ops.plan(
        b, n, h, d, levels, pool, topk, None, q.dtype, selection, scorer, dilation, hkv
    )
    return ctx[at : at + b * hkv * s * 4].view(torch.int32).view(b, hkv, s).clone()
