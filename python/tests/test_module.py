"""LighthouseAttention: the dense switch is exactly F.scaled_dot_product_attention(is_causal=True),
set_dense flips every module, and the op's own dense mode (levels=1) agrees with SDPA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lighthouse_attention as la
from conftest import qkv


def _sdpa_bnhd(q, k, v, scale=None):
    return F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, scale=scale
    ).transpose(1, 2)


@pytest.mark.parametrize("layout", ["bnhd", "bhnd"])
def test_dense_switch_equals_sdpa(layout):
    q, k, v = qkv(2, 512, 2, 16, seed=11, requires_grad=True)
    if layout == "bhnd":
        q, k, v = (t.detach().transpose(1, 2).contiguous().requires_grad_() for t in (q, k, v))
    attn = la.LighthouseAttention(levels=2, pool=2, topk=128, layout=layout, dense=True)
    out = attn(q, k, v)
    if layout == "bnhd":
        want = _sdpa_bnhd(q, k, v)
    else:
        want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.equal(out, want)
    (g_out,) = torch.autograd.grad(out.square().sum(), q)
    (g_want,) = torch.autograd.grad(want.square().sum(), q)
    assert torch.equal(g_out, g_want)
    # Switched back: Lighthouse again, which differs from dense at this length.
    attn.dense = False
    sparse = attn(q, k, v)
    assert not torch.allclose(sparse, want, atol=1e-3)


def test_op_dense_mode_matches_sdpa():
    q, k, v = qkv(1, 384, 2, 16, dtype=torch.float64, seed=12, requires_grad=True)
    dout = torch.randn(1, 384, 2, 16, dtype=torch.float64)
    out = la.lighthouse_attention(q, k, v, levels=1)
    want = _sdpa_bnhd(q, k, v)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    wants = torch.autograd.grad(want, (q, k, v), dout)
    for g, w in zip(grads, wants):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11)


def test_set_dense_flips_every_module():
    model = torch.nn.ModuleList(
        [la.LighthouseAttention(levels=2, pool=2, topk=128) for _ in range(4)] + [torch.nn.ReLU()]
    )
    assert la.set_dense(model) == 4
    assert all(m.dense for m in model if isinstance(m, la.LighthouseAttention))
    assert la.set_dense(model, False) == 4
    assert not any(m.dense for m in model if isinstance(m, la.LighthouseAttention))
    assert "lighthouse, levels=2" in repr(model[0])
