"""The modes of issue 14 through the op on the CPU: the dilated scorer (scorer="dilated"),
against the C++ library bit for bit, gradients by gradcheck, and their errors."""

from __future__ import annotations

import pytest
import torch

import lighthouse_attention as la
from conftest import qkv


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("selection", ["original", "causal"])
def test_dilated_scorer_same_bits_as_the_library(dtype, selection):
    b, n, h, d = 1, 2048, 2, 16
    q, k, v = qkv(b, n, h, d, dtype=dtype, seed=12, requires_grad=True)
    dout = torch.randn(b, n, h, d, dtype=dtype, generator=torch.Generator().manual_seed(2))
    kw = dict(levels=3, pool=2, topk=256, selection=selection, scorer="dilated", dilation=4)
    out = la.lighthouse_attention(q, k, v, **kw)
    out.backward(dout)
    ref = la.ops.library_forward_backward(q.detach(), k.detach(), v.detach(), dout, 3, 2, 256,
                                          None, selection, "dilated", 4)
    for name, got, want in zip(("out", "dq", "dk", "dv"), (out, q.grad, k.grad, v.grad), ref):
        assert torch.equal(got.detach(), want), name
    # The scorer is not ignored: the norm scorer selects other entries.
    norm = la.selected_indices(q.detach(), k.detach(), v.detach(), levels=3, pool=2, topk=256,
                               selection=selection)
    dilated = la.selected_indices(q.detach(), k.detach(), v.detach(), levels=3, pool=2, topk=256,
                                  selection=selection, scorer="dilated", dilation=4)
    assert not torch.equal(norm, dilated)


def test_dilated_scorer_gradcheck_float64():
    q, k, v = qkv(1, 512, 1, 4, dtype=torch.float64, seed=4, requires_grad=True)

    def f(q, k, v):
        return la.lighthouse_attention(q, k, v, levels=3, pool=2, topk=128, scorer="dilated",
                                       dilation=2)

    assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


def test_dilated_scorer_errors():
    q = torch.randn(1, 1024, 1, 8)
    with pytest.raises(ValueError, match="dilation = 3: must divide seq = 1024"):
        la.lighthouse_attention(q, q, q, levels=3, pool=2, topk=128, scorer="dilated", dilation=3)
    with pytest.raises(ValueError, match="scorer = l2: must be norm or dilated"):
        la.LighthouseAttention(levels=3, pool=2, topk=128, scorer="l2")
    with pytest.raises(ValueError, match="dilation = 0"):
        la.LighthouseAttention(levels=3, pool=2, topk=128, scorer="dilated", dilation=0)
    module = la.LighthouseAttention(levels=3, pool=2, topk=128, scorer="dilated", dilation=8)
    assert "scorer='dilated', dilation=8" in repr(module)
