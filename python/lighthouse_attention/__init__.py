"""Lighthouse attention for PyTorch.

    from lighthouse_attention import lighthouse_attention, LighthouseAttention, set_dense

    out = lighthouse_attention(q, k, v, levels=3, pool=2, topk=1536)   # q, k, v: [B, N, H, D]

The operator itself is
``torch.ops.lighthouse.attention(q, k, v, levels, pool, topk, scale, selection="original")``,
registered by the compiled extension when this package is imported.
"""

from . import context_parallel
from ._library import library_path, ops
from .functional import lighthouse_attention, plan, selected_indices, validate
from .module import LighthouseAttention, set_dense

__version__ = "0.1.0"

__all__ = [
    "LighthouseAttention",
    "context_parallel",
    "library_path",
    "lighthouse_attention",
    "ops",
    "plan",
    "selected_indices",
    "set_dense",
    "validate",
]
