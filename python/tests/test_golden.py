"""The op against the golden cases of the original implementation (shared/golden): the same
selected indices, outputs and gradients to float32 rounding. Skipped, with a warning, where the
cases are not present."""

from __future__ import annotations

import pytest
import torch

import lighthouse_attention as la
from conftest import (golden_cases, golden_dilated_cases, golden_dilated_dir, golden_dir,
                      load_golden, rel_l2, requires_cuda, skip_loudly)

CASES = golden_cases()
DILATED = golden_dilated_cases()


def _ids(cases):
    return [c.name for c in cases]


def test_golden_cases_are_present():
    if not CASES:
        where = golden_dir() or "no such folder"
        skip_loudly(
            "no golden cases found (LIGHTHOUSE_GOLDEN_DIR, else shared/golden beside or inside "
            f"the repository: {where}): the golden comparison did not run"
        )
    assert len(CASES) >= 1


def _run(case, device, dtype):
    g = load_golden(case)
    c = g["config"]
    kw = dict(levels=c["levels"], pool=c["pool"], topk=c["topk"],
              scorer=c.get("scorer", "norm"), dilation=c.get("dilation", 4))
    q, k, v = (g[n].to(device=device, dtype=dtype).requires_grad_() for n in ("q", "k", "v"))
    out = la.lighthouse_attention(q, k, v, **kw)
    out.backward(g["dout"].to(device=device, dtype=dtype))
    indices = la.selected_indices(q.detach(), k.detach(), v.detach(), **kw)
    return g, out.detach(), q.grad, k.grad, v.grad, indices


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_golden_cpu(case, dtype):
    g, out, dq, dk, dv, indices = _run(case, "cpu", dtype)
    assert torch.equal(indices, g["indices"].to(torch.int32))
    for name, got in (("out", out), ("dq", dq), ("dk", dk), ("dv", dv)):
        err = rel_l2(got, g[name])
        assert err < 1e-5, f"{name}: relative L2 error {err:.3e}"


@requires_cuda
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_golden_cuda_float32(case):
    g, out, dq, dk, dv, indices = _run(case, "cuda", torch.float32)
    assert torch.equal(indices.cpu(), g["indices"].to(torch.int32))
    for name, got in (("out", out), ("dq", dq), ("dk", dk), ("dv", dv)):
        err = rel_l2(got.cpu(), g[name])
        assert err < 1e-5, f"{name}: relative L2 error {err:.3e}"


def test_golden_dilated_cases_are_present():
    if not DILATED:
        where = golden_dilated_dir() or "no such folder"
        skip_loudly(
            "no dilated golden cases found (LIGHTHOUSE_GOLDEN_DILATED_DIR, tests/data/golden-dilated "
            f"or shared/golden-dilated: {where}): the dilated scorer's golden comparison did not run"
        )
    assert len(DILATED) >= 1


@pytest.mark.parametrize("case", DILATED, ids=_ids(DILATED))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_golden_dilated_cpu(case, dtype):
    g, out, dq, dk, dv, indices = _run(case, "cpu", dtype)
    assert g["config"]["scorer"] == "dilated"
    assert torch.equal(indices, g["indices"].to(torch.int32))
    for name, got in (("out", out), ("dq", dq), ("dk", dk), ("dv", dv)):
        err = rel_l2(got, g[name])
        assert err < 1e-5, f"{name}: relative L2 error {err:.3e}"


@requires_cuda
@pytest.mark.parametrize("case", DILATED, ids=_ids(DILATED))
def test_golden_dilated_cuda_float32(case):
    g, out, dq, dk, dv, indices = _run(case, "cuda", torch.float32)
    assert torch.equal(indices.cpu(), g["indices"].to(torch.int32))
    for name, got in (("out", out), ("dq", dq), ("dk", dk), ("dv", dv)):
        err = rel_l2(got.cpu(), g[name])
        assert err < 1e-5, f"{name}: relative L2 error {err:.3e}"
