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
    with pytest.raises(ValueError, match="scorer = l2: must be norm or dilated"):
        la.LighthouseAttention(levels=3, pool=2, topk=128, scorer="l2")
    with pytest.raises(ValueError, match="dilation = 0"):
        la.LighthouseAttention(levels=3, pool=2, topk=128, scorer="dilated", dilation=0)
    module = la.LighthouseAttention(levels=3, pool=2, topk=128, scorer="dilated", dilation=8)
    assert "scorer='dilated', dilation=8" in repr(module)


# ---- grouped-query attention: k and v with fewer heads ------------------------------------------

def _gqa_inputs(b, n, h, hkv, d, dtype=torch.float32, seed=0, requires_grad=False):
    q = qkv(b, n, h, d, dtype=dtype, seed=seed)[0]
    _, k, v = qkv(b, n, hkv, d, dtype=dtype, seed=seed + 1)
    return [t.detach().requires_grad_(requires_grad) for t in (q, k, v)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hkv", [1, 2, 4])
def test_gqa_same_bits_as_the_library(dtype, hkv):
    b, n, h, d = 2, 1024, 4, 16
    q, k, v = _gqa_inputs(b, n, h, hkv, d, dtype=dtype, seed=3, requires_grad=True)
    dout = torch.randn(b, n, h, d, dtype=dtype, generator=torch.Generator().manual_seed(9))
    out = la.lighthouse_attention(q, k, v, levels=3, pool=2, topk=128)
    out.backward(dout)
    assert k.grad.shape == (b, n, hkv, d) and v.grad.shape == (b, n, hkv, d)
    ref = la.ops.library_forward_backward(q.detach(), k.detach(), v.detach(), dout, 3, 2, 128,
                                          None)
    for name, got, want in zip(("out", "dq", "dk", "dv"), (out, q.grad, k.grad, v.grad), ref):
        assert torch.equal(got.detach(), want), name
    idx = la.selected_indices(q.detach(), k.detach(), v.detach(), levels=3, pool=2, topk=128)
    info = la.plan(b, n, h, d, levels=3, pool=2, topk=128, kv_heads=hkv)
    assert idx.shape == (b, hkv, info["S"])


def test_gqa_gradcheck_float64():
    q, k, v = _gqa_inputs(1, 512, 4, 2, 4, dtype=torch.float64, seed=5, requires_grad=True)

    def f(q, k, v):
        return la.lighthouse_attention(q, k, v, levels=3, pool=2, topk=128)

    assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


def test_gqa_with_copied_query_heads_is_the_expanded_multi_head_run():
    """Query heads copied within each group and K/V repeated per head: the same selection and
    the same attention rows per head, so the same forward bits; K/V gradients are the sums of the
    expanded heads' gradients."""
    b, n, h, hkv, d = 1, 1024, 4, 2, 8
    q, k, v = _gqa_inputs(b, n, h, hkv, d, seed=7)
    q = q[:, :, ::2].repeat_interleave(2, dim=2).contiguous().requires_grad_()
    k, v = k.requires_grad_(), v.requires_grad_()
    ke = k.detach().repeat_interleave(2, dim=2).requires_grad_()
    ve = v.detach().repeat_interleave(2, dim=2).requires_grad_()
    kw = dict(levels=3, pool=2, topk=128)
    out = la.lighthouse_attention(q, k, v, **kw)
    qe = q.detach().clone().requires_grad_()
    oute = la.lighthouse_attention(qe, ke, ve, **kw)
    assert torch.equal(out, oute)
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    out.backward(dout)
    oute.backward(dout)
    assert torch.equal(q.grad, qe.grad)
    torch.testing.assert_close(k.grad, ke.grad.view(b, n, hkv, 2, d).sum(3), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v.grad, ve.grad.view(b, n, hkv, 2, d).sum(3), rtol=1e-5, atol=1e-6)


def test_gqa_compiles_to_one_graph_and_the_dense_module_takes_gqa():
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    q, k, v = _gqa_inputs(1, 512, 4, 1, 8, seed=2, requires_grad=True)
    module = la.LighthouseAttention(levels=2, pool=2, topk=128)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(module, fullgraph=True, backend=counter)
    got = compiled(q, k, v)
    got.sum().backward()
    assert counter.frame_count == 1
    want = la.lighthouse_attention(q.detach(), k.detach(), v.detach(), levels=2, pool=2, topk=128)
    assert torch.equal(got.detach(), want)
    assert k.grad.shape == k.shape
    la.set_dense(module)
    dense = module(q.detach(), k.detach(), v.detach())
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.detach().transpose(1, 2), k.detach().repeat_interleave(4, 2).transpose(1, 2),
        v.detach().repeat_interleave(4, 2).transpose(1, 2), is_causal=True).transpose(1, 2)
    torch.testing.assert_close(dense, ref)


def test_gqa_errors():
    q = torch.randn(1, 512, 6, 8)
    with pytest.raises(ValueError, match="kv_heads = 4: must divide heads = 6"):
        la.lighthouse_attention(q, torch.randn(1, 512, 4, 8), torch.randn(1, 512, 4, 8),
                                levels=2, pool=2, topk=128)
    with pytest.raises(ValueError, match="must have the shape of k"):
        la.lighthouse_attention(q, torch.randn(1, 512, 2, 8), torch.randn(1, 512, 3, 8),
                                levels=2, pool=2, topk=128)
    with pytest.raises(ValueError, match="scorer = dilated"):
        k = torch.randn(1, 512, 2, 8)
        la.lighthouse_attention(q, k, k, levels=2, pool=2, topk=128, scorer="dilated")


# ---- any sequence length: N padded with zeros to the next valid length, or dense --------------

def _padded_run(q, k, v, dout, n_pad, **kw):
    """The explicitly padded run (zeros in q, k, v and dout), cut back to the first N tokens."""
    n = q.shape[1]

    def pad(x):
        return torch.cat([x, x.new_zeros(x.shape[0], n_pad - n, *x.shape[2:])], dim=1)

    qp, kp, vp = (pad(x.detach()).requires_grad_(True) for x in (q, k, v))
    out = la.lighthouse_attention(qp, kp, vp, **kw)
    out.backward(pad(dout))
    return [t[:, :n] for t in (out.detach(), qp.grad, kp.grad, vp.grad)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_any_length_equals_the_padded_run(dtype):
    # N = 1000 with the dilated scorer (dilation 3) at L 2, p 2: padded to 1002 = lcm(2, 3) x 167.
    b, n, h, d = 1, 1000, 2, 8
    kw = dict(levels=2, pool=2, topk=128, selection="causal", scorer="dilated", dilation=3)
    assert la.plan(b, n, h, d, **kw)["S"] == 1002 // 2 + 2 * 128
    q, k, v = qkv(b, n, h, d, dtype=dtype, seed=21, requires_grad=True)
    dout = torch.randn(b, n, h, d, dtype=dtype, generator=torch.Generator().manual_seed(3))
    out = la.lighthouse_attention(q, k, v, **kw)
    assert out.shape == (b, n, h, d)
    out.backward(dout)
    want = _padded_run(q, k, v, dout, 1002, **kw)
    for name, got, w in zip(("out", "dq", "dk", "dv"), (out, q.grad, k.grad, v.grad), want):
        assert torch.equal(got.detach(), w), name


def test_any_length_dense_exception_and_meta_shape():
    # N = 1000 at L 3, p 4, K 128: the padded length 2048 would gather S = 1152 >= N, so the
    # function is dense causal attention on the 1000 tokens (the levels = 1 op).
    b, n, h, d = 1, 1000, 2, 8
    q, k, v = qkv(b, n, h, d, seed=22)
    out = la.lighthouse_attention(q, k, v, levels=3, pool=4, topk=128)
    dense = la.lighthouse_attention(q, k, v, levels=1, pool=4, topk=128)
    assert torch.equal(out, dense)
    # The shape-only (meta) kernel gives [B, N, H, D] for a length that needs padding.
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fq = torch.empty(b, n, h, d)
        fo = la.lighthouse_attention(fq, fq, fq, levels=2, pool=2, topk=128, scorer="dilated",
                                     dilation=3)
        assert fo.shape == (b, n, h, d)
