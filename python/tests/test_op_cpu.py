"""The op on the CPU: gradients (gradcheck in float64), agreement with the C++ library's own
Context path bit for bit, layouts and strides, autograd modes, and the errors."""

from __future__ import annotations

import pytest
import torch

import lighthouse_attention as la
from conftest import qkv

# (B, N, H, D, levels, pool, topk): the dense case, two and three levels.
SMALL = [
    (1, 48, 2, 4, 1, 2, 128),
    (1, 256, 1, 4, 2, 2, 128),
    (2, 512, 1, 4, 3, 2, 128),
]


@pytest.mark.parametrize("b,n,h,d,levels,pool,topk", SMALL)
def test_gradcheck_float64(b, n, h, d, levels, pool, topk):
    q, k, v = qkv(b, n, h, d, dtype=torch.float64, seed=levels, requires_grad=True)

    def f(q, k, v):
        return la.lighthouse_attention(q, k, v, levels=levels, pool=pool, topk=topk)

    # The selection is piecewise constant in q and k: the finite differences (eps 1e-6) stay on
    # one piece with these well-separated norms, so the check is of the exact gradient.
    assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)
    # Full Jacobian on v, the cheapest input to sweep (N * H * D columns).
    if n * h * d <= 1024:
        assert torch.autograd.gradcheck(lambda v: f(q.detach(), k.detach(), v), (v,), eps=1e-6,
                                        atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("levels,pool,topk", [(3, 4, 128), (2, 2, 256), (1, 2, 128)])
def test_same_bits_as_the_library(dtype, levels, pool, topk):
    b, n, h, d = 2, 2048, 2, 16
    q, k, v = qkv(b, n, h, d, dtype=dtype, seed=3, requires_grad=True)
    dout = torch.randn(b, n, h, d, dtype=dtype, generator=torch.Generator().manual_seed(9))
    out = la.lighthouse_attention(q, k, v, levels=levels, pool=pool, topk=topk)
    out.backward(dout)
    ref = la.ops.library_forward_backward(q.detach(), k.detach(), v.detach(), dout, levels, pool,
                                          topk, None)
    for name, got, want in zip(("out", "dq", "dk", "dv"), (out, q.grad, k.grad, v.grad), ref):
        assert torch.equal(got.detach(), want), name
    assert q.grad.abs().sum() > 0


def test_bhnd_layout_and_strided_inputs_match_bnhd():
    b, n, h, d = 1, 1024, 2, 16
    q, k, v = qkv(b, n, h, d, seed=5)
    kw = dict(levels=3, pool=2, topk=128)
    want = la.lighthouse_attention(q, k, v, **kw)
    # [B, H, N, D] storage, passed as such.
    qh, kh, vh = (t.transpose(1, 2).contiguous() for t in (q, k, v))
    got = la.lighthouse_attention(qh, kh, vh, layout="bhnd", **kw)
    assert got.shape == (b, h, n, d)
    assert torch.equal(got.transpose(1, 2), want)
    # Slices of a fused qkv projection, and a D stride != 1 (copied inside the op).
    fused = torch.cat([q, k, v], dim=-1)
    got = la.lighthouse_attention(fused[..., :d], fused[..., d:2 * d], fused[..., 2 * d:], **kw)
    assert torch.equal(got, want)
    qt = q.transpose(2, 3).contiguous().transpose(2, 3)
    assert qt.stride(3) != 1
    assert torch.equal(la.lighthouse_attention(qt, k, v, **kw), want)


def test_grad_of_broadcast_upstream_and_grad_modes():
    q, k, v = qkv(1, 512, 1, 8, seed=6, requires_grad=True)
    kw = dict(levels=2, pool=2, topk=128)
    la.lighthouse_attention(q, k, v, **kw).sum().backward()  # dout is an expanded (stride 0) 1
    ones = torch.ones(1, 512, 1, 8)
    ref = la.ops.library_forward_backward(q.detach(), k.detach(), v.detach(), ones, 2, 2, 128,
                                          None)
    assert torch.equal(q.grad, ref[1])
    with torch.no_grad():
        a = la.lighthouse_attention(q, k, v, **kw)
    with torch.inference_mode():
        b = la.lighthouse_attention(q, k, v, **kw)
    assert not a.requires_grad and torch.equal(a, ref[0]) and torch.equal(b, ref[0])


def test_scale_is_passed_through():
    q, k, v = qkv(1, 256, 1, 8, seed=7)
    a = la.lighthouse_attention(q, k, v, levels=1, scale=0.5)
    b = la.lighthouse_attention(q * (0.5 * 8 ** 0.5), k, v, levels=1)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_selected_indices_are_distinct_pyramid_entries():
    q, k, v = qkv(1, 2048, 2, 8, seed=8)
    info = la.plan(1, 2048, 2, 8, levels=3, pool=4, topk=128)
    idx = la.selected_indices(q, k, v, levels=3, pool=4, topk=128)
    assert idx.shape == (1, 2, info["S"]) and idx.dtype == torch.int32
    assert int(idx.min()) >= 0 and int(idx.max()) < info["pyramid_size"]
    assert all(len(set(row.tolist())) == info["S"] for row in idx[0])  # no entry twice


# ---- errors: ValueError with the library's message (parameter, value, rule) ---------------------

@pytest.mark.parametrize(
    "kwargs,shape,needle",
    [
        (dict(topk=100), (1, 512, 1, 8), "topk = 100"),
        (dict(pool=3), (1, 512, 1, 8), "pool = 3"),
        (dict(levels=0), (1, 512, 1, 8), "levels = 0"),
        (dict(layout="nhbd"), (1, 512, 1, 8), "layout = 'nhbd'"),
    ],
)
def test_invalid_configurations_raise_value_error(kwargs, shape, needle):
    q = torch.randn(*shape)
    with pytest.raises(ValueError) as info:
        la.lighthouse_attention(q, q, q, **{"levels": 3, "pool": 2, "topk": 128, **kwargs})
    assert needle in str(info.value), str(info.value)


def test_invalid_tensors_raise_value_error():
    q = torch.randn(1, 512, 1, 8)
    with pytest.raises(ValueError, match=r"k = \[1, 256, 1, 8\]"):
        la.lighthouse_attention(q, torch.randn(1, 256, 1, 8), q, levels=2, pool=2, topk=128)
    with pytest.raises(ValueError, match="rank-4"):
        la.lighthouse_attention(q[0], q[0], q[0])
    with pytest.raises(ValueError, match="dtype"):
        b = q.bfloat16()
        la.lighthouse_attention(b, b, b, levels=2, pool=2, topk=128)
    with pytest.raises(ValueError, match="Int"):
        i = torch.zeros(1, 512, 1, 8, dtype=torch.int32)
        la.lighthouse_attention(i, i, i, levels=2, pool=2, topk=128)


def test_module_checks_its_configuration_when_built():
    with pytest.raises(ValueError, match="pool = 6"):
        la.LighthouseAttention(levels=3, pool=6, topk=128)
    with pytest.raises(ValueError, match="layout"):
        la.LighthouseAttention(layout="BNHD")
    with pytest.raises(ValueError, match="seq"):
        la.plan(1, 0, 1, 8, levels=3, pool=4, topk=128)
