"""``LighthouseAttention``: the attention step of a model, switchable to dense attention for the
recovery stage of the two-stage recipe (README, "PyTorch")."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .functional import _check_layout, _check_rank, lighthouse_attention, validate


class LighthouseAttention(nn.Module):
    """Causal attention of ``q``, ``k``, ``v`` (no projections, no parameters).

    ``dense=False``: Lighthouse attention (``lighthouse_attention``, with ``selection``
    "original", "causal" or "stride" and ``scorer`` "norm" or "dilated"). ``dense=True``: ordinary
    causal attention, ``F.scaled_dot_product_attention(q, k, v, is_causal=True)``, the model the
    training ends with. Flip ``.dense`` (or call ``set_dense(model)``) to resume a checkpoint in
    the dense stage: the module has no state, so checkpoints are the same in both stages.
    The configuration is checked here, when the module is built (``ValueError``); rules that
    involve the sequence length are checked at the first call.
    """

    def __init__(
        self,
        levels: int = 3,
        pool: int = 2,
        topk: int = 1536,
        *,
        layout: str = "bnhd",
        scale: Optional[float] = None,
        selection: str = "original",
        scorer: str = "norm",
        dilation: int = 4,
        dense: bool = False,
    ) -> None:
        super().__init__()
        _check_layout(layout)
        validate(levels, pool, topk, scale, selection, scorer, dilation)
        self.levels, self.pool, self.topk = levels, pool, topk
        self.layout, self.scale, self.selection, self.dense = layout, scale, selection, dense
        self.scorer, self.dilation = scorer, dilation

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if not self.dense:
            return lighthouse_attention(
                q,
                k,
                v,
                levels=self.levels,
                pool=self.pool,
                topk=self.topk,
                layout=self.layout,
                scale=self.scale,
                selection=self.selection,
                scorer=self.scorer,
                dilation=self.dilation,
            )
        _check_rank(q, k, v, self.layout)
        if self.layout == "bnhd":  # SDPA takes [B, H, N, D]
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        # Grouped-query attention (k, v with fewer heads): SDPA's enable_gqa.
        gqa = {"enable_gqa": True} if k.shape[1] != q.shape[1] else {}
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale, **gqa)
        return out.transpose(1, 2) if self.layout == "bnhd" else out

    def extra_repr(self) -> str:
        mode = "dense" if self.dense else "lighthouse"
        return (
            f"{mode}, levels={self.levels}, pool={self.pool}, topk={self.topk}, "
            f"layout={self.layout!r}, scale={self.scale}, selection={self.selection!r}, "
            f"scorer={self.scorer!r}, dilation={self.dilation}"
        )


def set_dense(model: nn.Module, dense: bool = True) -> int:
    """Switches every ``LighthouseAttention`` in ``model`` to dense (or back); returns how many.

    A compiled model recompiles once after the switch (Dynamo guards on the flag)."""
    count = 0
    for module in model.modules():
        if isinstance(module, LighthouseAttention):
            module.dense = dense
            count += 1
    return count
