"""The op on CUDA: bf16 against float32 on the CPU, float32 against the CPU, the same bits as the
library's own Context path, layouts, streams, dense mode against SDPA. Skipped without a GPU."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

import lighthouse_attention as la
from conftest import qkv, rel_l2, requires_cuda

pytestmark = requires_cuda

CASES = [  # (B, N, H, D, levels, pool, topk)
    (2, 4096, 4, 64, 3, 4, 128),
    (1, 8192, 2, 128, 3, 2, 512),
    (1, 2048, 2, 128, 2, 2, 256),
]


@contextlib.contextmanager
def deterministic(on: bool):
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(on)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _run(q, k, v, dout, cfg, layout="bnhd"):
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = la.lighthouse_attention(*leaves, layout=layout, **cfg)
    out.backward(dout)
    return [out.detach()] + [t.grad for t in leaves]


@pytest.mark.parametrize("b,n,h,d,levels,pool,topk", CASES)
def test_bf16_cuda_close_to_fp32_cpu(b, n, h, d, levels, pool, topk):
    cfg = dict(levels=levels, pool=pool, topk=topk)
    # bf16-representable inputs, so that both runs see the same numbers (and select alike).
    q, k, v = (t.bfloat16() for t in qkv(b, n, h, d, seed=21))
    dout = torch.randn(b, n, h, d, generator=torch.Generator().manual_seed(22)).bfloat16()
    got = _run(*(t.cuda() for t in (q, k, v, dout)), cfg)
    want = _run(*(t.float() for t in (q, k, v, dout)), cfg)
    idx_gpu = la.selected_indices(q.cuda(), k.cuda(), v.cuda(), **cfg).cpu()
    idx_cpu = la.selected_indices(q.float(), k.float(), v.float(), **cfg)
    assert torch.equal(idx_gpu, idx_cpu)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        assert g.dtype == torch.bfloat16 and g.is_cuda
        err = rel_l2(g.float().cpu(), w)
        assert err < 2e-2, f"{name}: relative L2 error {err:.3e} against fp32 CPU"


def test_fp32_cuda_matches_cpu():
    cfg = dict(levels=3, pool=4, topk=128)
    q, k, v = qkv(2, 4096, 2, 64, seed=23)
    dout = torch.randn(2, 4096, 2, 64, generator=torch.Generator().manual_seed(24))
    got = _run(*(t.cuda() for t in (q, k, v, dout)), cfg)
    want = _run(q, k, v, dout, cfg)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        err = rel_l2(g.cpu(), w)
        assert err < 1e-5, f"{name}: relative L2 error {err:.3e}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("levels,pool,topk", [(3, 4, 128), (2, 2, 256)])
def test_same_bits_as_the_library(dtype, levels, pool, topk):
    q, k, v = qkv(2, 4096, 2, 64, dtype=dtype, device="cuda", seed=25)
    dout = torch.randn_like(q)
    with deterministic(True):
        got = _run(q, k, v, dout, dict(levels=levels, pool=pool, topk=topk))
        want = la.ops.library_forward_backward(q, k, v, dout, levels, pool, topk, None)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        assert torch.equal(g, w), name


def test_fast_backward_close_to_deterministic():
    cfg = dict(levels=3, pool=4, topk=128)
    q, k, v = qkv(1, 8192, 4, 128, dtype=torch.bfloat16, device="cuda", seed=26)
    dout = torch.randn_like(q)
    with deterministic(True):
        exact = _run(q, k, v, dout, cfg)
    with deterministic(False):
        fast = _run(q, k, v, dout, cfg)
    assert torch.equal(exact[0], fast[0])
    for name, f, e in zip(("dq", "dk", "dv"), fast[1:], exact[1:]):
        assert rel_l2(f, e) < 1e-2, name


def test_bhnd_layout_and_another_stream():
    cfg = dict(levels=3, pool=4, topk=128)
    q, k, v = qkv(1, 4096, 4, 64, dtype=torch.bfloat16, device="cuda", seed=27)
    dout = torch.randn_like(q)
    with deterministic(True):
        want = _run(q, k, v, dout, cfg)
        t = lambda x: x.transpose(1, 2).contiguous()  # noqa: E731
        got = _run(t(q), t(k), t(v), t(dout), cfg, layout="bhnd")
        for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
            assert torch.equal(g.transpose(1, 2), w), f"bhnd {name}"
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            got = _run(q, k, v, dout, cfg)
        torch.cuda.current_stream().wait_stream(side)
        for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
            assert torch.equal(g, w), f"side stream {name}"


def test_dense_mode_close_to_sdpa():
    q, k, v = qkv(2, 2048, 4, 128, dtype=torch.bfloat16, device="cuda", seed=28)
    dout = torch.randn_like(q)
    got = _run(q, k, v, dout, dict(levels=1))
    leaves = [x.detach().transpose(1, 2).requires_grad_() for x in (q, k, v)]
    want = F.scaled_dot_product_attention(*leaves, is_causal=True)
    want.backward(dout.transpose(1, 2))
    wants = [want.detach().transpose(1, 2)] + [x.grad.transpose(1, 2) for x in leaves]
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, wants):
        assert rel_l2(g, w) < 2e-2, name


def test_unsupported_dtype_on_cuda_is_a_value_error():
    q = torch.randn(1, 512, 1, 64, dtype=torch.float64, device="cuda")
    with pytest.raises(ValueError, match="dtype"):
        la.lighthouse_attention(q, q, q, levels=2, pool=2, topk=128)
