"""Packed documents (``cu_seqlens=``, docs/SPEC.md "Packed documents"): each document attended
as its own sequence, so the packed op equals separate op calls per document (bit for bit on the
CPU, forward and backward); bad offsets raise ValueError naming cu_seqlens; torch.compile traces
it into one graph whose results equal eager ones."""

from __future__ import annotations

import pytest
import torch

import lighthouse_attention as la
from conftest import requires_cuda

KW = dict(levels=2, pool=2, topk=128, selection="causal")


def _inputs(b, n, h, hkv, d, dtype, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, n, h, d, generator=g, dtype=torch.float64)
    k = torch.randn(b, n, hkv, d, generator=g, dtype=torch.float64)
    v = torch.randn(b, n, hkv, d, generator=g, dtype=torch.float64)
    dout = torch.randn(b, n, h, d, generator=g, dtype=torch.float64)
    return [t.to(device=device, dtype=dtype) for t in (q, k, v, dout)]


def _separate(q, k, v, dout, cu, **kw):
    """Each document through its own op call: out, dq, dk, dv in the packed layout."""
    b, n = q.shape[:2]
    flat = [t.detach().reshape(b * n, *t.shape[2:]) for t in (q, k, v, dout)]
    outs = [[] for _ in range(4)]
    for i in range(len(cu) - 1):
        lo, hi = int(cu[i]), int(cu[i + 1])
        dq, dk, dv = (t[lo:hi].unsqueeze(0).clone().requires_grad_(True) for t in flat[:3])
        o = la.lighthouse_attention(dq, dk, dv, **kw)
        o.backward(flat[3][lo:hi].unsqueeze(0))
        for acc, t in zip(outs, (o.detach(), dq.grad, dk.grad, dv.grad)):
            acc.append(t[0])
    return [torch.cat(acc).reshape(b, n, *acc[0].shape[1:]) for acc in outs]


def _packed(q, k, v, dout, cu, **kw):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out = la.lighthouse_attention(q, k, v, cu_seqlens=cu, **kw)
    out.backward(dout)
    return [out.detach(), q.grad, k.grad, v.grad]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hkv", [4, 2])
def test_packed_equals_separate_calls_bit_for_bit(dtype, hkv):
    # Row 0: a length-1 document, a dense one, one padded by one (701); row 1: 1500 (valid).
    b, n, h, d = 2, 1500, 4, 8
    cu = torch.tensor([0, 1, 100, 799, 1500, 3000], dtype=torch.int32)
    q, k, v, dout = _inputs(b, n, h, hkv, d, dtype, seed=3)
    got = _packed(q, k, v, dout, cu, **KW)
    want = _separate(q, k, v, dout, cu, **KW)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        assert torch.equal(g, w), name


def test_bhnd_layout_and_nothing_leaks():
    b, n, h, d = 1, 1200, 2, 8
    cu = torch.tensor([0, 700, 1200], dtype=torch.int32)
    q, k, v, _ = _inputs(b, n, h, h, d, torch.float32, seed=4)
    out = la.lighthouse_attention(q, k, v, cu_seqlens=cu, **KW)
    t = lambda x: x.transpose(1, 2).contiguous()  # noqa: E731
    out_bhnd = la.lighthouse_attention(t(q), t(k), t(v), cu_seqlens=cu, layout="bhnd", **KW)
    assert torch.equal(out_bhnd.transpose(1, 2), out)
    # NaN and huge values in the second document leave the first one's bits alone.
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    q2[:, 700:] = float("nan")
    k2[:, 700:] = 1e30
    v2[:, 700:] = -1e4
    out2 = la.lighthouse_attention(q2, k2, v2, cu_seqlens=cu, **KW)
    assert torch.equal(out2[:, :700], out[:, :700])


@pytest.mark.parametrize(
    "cu,says",
    [
        ([0, 500, 400, 1200], "strictly increasing"),
        ([0, 500, 1100], "must end at B * N"),
        ([3, 1200], "must start at 0"),
    ],
)
def test_bad_offsets_raise_value_error_naming_cu_seqlens(cu, says):
    q, k, v, _ = _inputs(1, 1200, 2, 2, 8, torch.float32)
    with pytest.raises(ValueError, match="cu_seqlens") as info:
        la.lighthouse_attention(q, k, v, cu_seqlens=torch.tensor(cu, dtype=torch.int32), **KW)
    assert says in str(info.value)


def test_int64_offsets_and_cp_group_are_rejected():
    q, k, v, _ = _inputs(1, 1200, 2, 2, 8, torch.float32)
    with pytest.raises(ValueError, match="cu_seqlens.*int32"):
        la.lighthouse_attention(q, k, v, cu_seqlens=torch.tensor([0, 1200]), **KW)
    with pytest.raises(ValueError, match="cu_seqlens.*context parallelism"):
        la.lighthouse_attention(q, k, v, cu_seqlens=torch.tensor([0, 1200], dtype=torch.int32),
                                cp_group=object(), **KW)


def test_compile_one_graph_equals_eager():
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    b, n, h, d = 2, 1000, 2, 8
    cu = torch.tensor([0, 1, 400, 1000, 1999, 2000], dtype=torch.int32)
    q, k, v, dout = _inputs(b, n, h, h, d, torch.float32, seed=5)

    def f(q, k, v, cu):
        return la.lighthouse_attention(q * 1.5, k, v, cu_seqlens=cu, **KW)

    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(f, fullgraph=True, backend=counter)
    results = []
    for fn in (f, compiled):
        qq, kk, vv = (t.clone().requires_grad_(True) for t in (q, k, v))
        out = fn(qq, kk, vv, cu)
        out.backward(dout)
        results.append([out.detach(), qq.grad, kk.grad, vv.grad])
    assert counter.frame_count == 1
    assert "torch.ops.lighthouse.attention_varlen" in counter.graphs[0].code
    for name, got, want in zip(("out", "dq", "dk", "dv"), results[1], results[0]):
        assert torch.equal(got, want), name


def test_meta_shapes_from_shapes_alone():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q = torch.empty(2, 1000, 4, 8)
        k = torch.empty(2, 1000, 2, 8)
        cu = torch.empty(7, dtype=torch.int32)
        out, ctx = torch.ops.lighthouse.attention_varlen_forward(q, k, k, cu, 2, 2, 128)
        assert out.shape == (2, 1000, 4, 8)
        assert ctx.dtype == torch.uint8 and ctx.shape[0] > 0


@requires_cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_cuda_packed_matches_separate_calls(dtype, tol):
    b, n, h, d = 2, 6000, 4, 64
    kw = dict(levels=3, pool=4, topk=256, selection="causal")
    cu = torch.tensor([0, 1, 101, 4197, 6000, 11000, 12000], dtype=torch.int32, device="cuda")
    q, k, v, dout = _inputs(b, n, h, h, d, dtype, device="cuda", seed=6)
    got = _packed(q, k, v, dout, cu, **kw)
    want = _separate(q, k, v, dout, cu.cpu(), **kw)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        err = (g.double() - w.double()).norm() / w.double().norm()
        assert err < tol, f"{name}: {err}"
