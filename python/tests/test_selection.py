"""``selection="causal"`` (and its content-free control "stride") through the op: strict
causality (later positions, norms included, change nothing at or before t, outputs nor gradients),
the original selection caught leaking by the same check, stride's layout independent of q and k, the same bits as the library, gradcheck, torch.compile, the module, errors, and on CUDA
the same indices as the CPU."""

from __future__ import annotations

import pytest
import torch

import lighthouse_attention as la
from conftest import qkv, requires_cuda

CFG = dict(levels=3, pool=4, topk=128)


def _out_and_grads(q, k, v, dout, **cfg):
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = la.lighthouse_attention(*leaves, **cfg)
    out.backward(dout)
    return out.detach(), [t.grad for t in leaves]


def _future_changes_leak(selection, t, dtype=torch.float32):
    """True when redrawing q, k, v after position t (norms over six orders of magnitude) changes
    an output at <= t or, with dout zero after t, any gradient."""
    b, n, h, d = 2, 2048, 2, 16
    q, k, v = qkv(b, n, h, d, dtype=dtype, seed=40)
    dout = torch.randn(b, n, h, d, dtype=dtype, generator=torch.Generator().manual_seed(41))
    dout[:, t + 1:] = 0
    g = torch.Generator().manual_seed(42 + t)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for x in (q2, k2, v2):
        later = x[:, t + 1:]
        gain = torch.exp(3 * torch.randn(b, n - t - 1, h, 1, generator=g, dtype=torch.float64))
        later.copy_((gain * torch.randn(later.shape, generator=g, dtype=torch.float64)).to(dtype))
    cfg = dict(CFG, selection=selection)
    out, grads = _out_and_grads(q, k, v, dout, **cfg)
    out2, grads2 = _out_and_grads(q2, k2, v2, dout, **cfg)
    same = torch.equal(out[:, : t + 1], out2[:, : t + 1])
    same = same and all(torch.equal(a, c) for a, c in zip(grads, grads2))
    return not same


@pytest.mark.parametrize("t", [0, 15, 16, 17, 700, 1023, 1024, 2000])
def test_causal_selection_ignores_the_future(t):
    assert not _future_changes_leak("causal", t)


@pytest.mark.parametrize("t", [0, 16, 700, 1023, 2000])
def test_stride_selection_ignores_the_future(t):
    assert not _future_changes_leak("stride", t)


def test_stride_selection_reads_no_scores():
    q, k, v = qkv(1, 2048, 2, 16, seed=5)
    cfg = dict(CFG, selection="stride")
    idx = la.selected_indices(q, k, v, **cfg)
    assert torch.equal(idx, la.selected_indices(1000 * q, k.flip(1), v, **cfg))
    assert torch.equal(idx[:, 0], idx[:, 1])  # every head the same layout
    assert not torch.equal(idx, la.selected_indices(q, k, v, **CFG, selection="causal"))


def test_original_selection_is_caught_leaking():
    assert any(_future_changes_leak("original", t) for t in (15, 700, 1023, 2000))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_bits_as_the_library(dtype):
    b, n, h, d = 2, 2048, 2, 16
    q, k, v = qkv(b, n, h, d, dtype=dtype, seed=3)
    dout = torch.randn(b, n, h, d, dtype=dtype, generator=torch.Generator().manual_seed(9))
    out, grads = _out_and_grads(q, k, v, dout, **CFG, selection="causal")
    ref = la.ops.library_forward_backward(q, k, v, dout, 3, 4, 128, None, "causal")
    for name, got, want in zip(("out", "dq", "dk", "dv"), [out, *grads], ref):
        assert torch.equal(got, want), name
    # Another rule than the original's (the comparison above is not of the default).
    original, _ = _out_and_grads(q, k, v, dout, **CFG)
    assert not torch.equal(original, out)
    causal_idx = la.selected_indices(q, k, v, **CFG, selection="causal")
    assert not torch.equal(causal_idx, la.selected_indices(q, k, v, **CFG))
    info = la.plan(b, n, h, d, **CFG, selection="causal")
    assert causal_idx.shape == (b, h, info["S"]) and info == la.plan(b, n, h, d, **CFG)


def test_gradcheck_float64():
    q, k, v = qkv(1, 512, 1, 4, dtype=torch.float64, seed=2, requires_grad=True)

    def f(q, k, v):
        return la.lighthouse_attention(q, k, v, levels=3, pool=2, topk=128, selection="causal")

    assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


def test_compiled_function_matches_eager():
    q, k, v = qkv(1, 2048, 2, 16, seed=12)

    def f(q, k, v):
        return la.lighthouse_attention(q, k, v, **CFG, selection="causal").square().sum()

    compiled = torch.compile(f, fullgraph=True, backend="eager")
    assert torch.equal(compiled(q, k, v), f(q, k, v))


def test_module_passes_the_selection():
    q, k, v = qkv(1, 2048, 2, 8, seed=13)
    m = la.LighthouseAttention(**CFG, selection="causal")
    assert "selection='causal'" in repr(m)
    assert torch.equal(m(q, k, v), la.lighthouse_attention(q, k, v, **CFG, selection="causal"))


def test_an_unknown_selection_is_a_value_error_naming_the_choices():
    q = torch.randn(1, 512, 1, 8)
    for call in (
        lambda: la.lighthouse_attention(q, q, q, levels=2, pool=2, topk=128, selection="strict"),
        lambda: la.LighthouseAttention(selection="strict"),
        lambda: la.plan(1, 512, 1, 8, levels=2, pool=2, topk=128, selection="strict"),
    ):
        with pytest.raises(ValueError,
                           match="selection = strict: must be original, causal or stride"):
            call()


@requires_cuda
@pytest.mark.parametrize("selection", ["causal", "stride"])
def test_cuda_selects_like_the_cpu(selection):
    q, k, v = (t.bfloat16() for t in qkv(2, 4096, 2, 64, seed=21))
    cfg = dict(CFG, selection=selection)
    gpu = la.selected_indices(q.cuda(), k.cuda(), v.cuda(), **cfg).cpu()
    cpu = la.selected_indices(q.float(), k.float(), v.float(), **cfg)
    assert torch.equal(gpu, cpu)
    assert not torch.equal(gpu, la.selected_indices(q.float(), k.float(), v.float(), **CFG))
