"""The op against the golden cases of the original implementation (tests/data/golden, and the
dilated scorer's in tests/data/golden-dilated, through one loader): the same
selected indices, outputs and gradients to float32 rounding. Without cases the presence test
skips loudly, and fails under CI."""

from __future__ import annotations

import warnings

import pytest
import torch

import lighthouse_attention as la
from conftest import (REPO, ci_strict, golden_cases, golden_roots, load_golden, rel_l2,
                      requires_cuda, skip_loudly)

CASES = golden_cases()


def _ids(cases):
    return [c.name for c in cases]


def test_golden_cases_are_present():
    if not CASES:
        where = ":".join(str(r) for r in golden_roots())
        message = (f"no golden cases under {where} (LIGHTHOUSE_GOLDEN_DIR, default "
                   "tests/data/golden): the golden comparison did not run")
        if ci_strict():
            pytest.fail(message)
        skip_loudly(message)
    assert len(CASES) >= 1


def test_loader_reads_every_implemented_scorer(tmp_path):
    """The dilated case (tests/data/golden-dilated/d1) is loaded with its scorer; a case of a
    scorer the library does not implement is left out with a warning."""
    data = REPO / "tests" / "data"
    assert (data / "golden-dilated" / "d1" / "config.json").is_file()
    names = [c.name for c in golden_cases([data / "golden-dilated", data / "golden"])]
    assert names == ["d1", "g2", "g5"]
    assert load_golden(data / "golden-dilated" / "d1")["config"]["scorer"] == "dilated"
    (tmp_path / "x1").mkdir()
    (tmp_path / "x1" / "config.json").write_text('{"scorer": "learned"}')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert golden_cases([tmp_path]) == []
    assert any("scorer 'learned'" in str(w.message) for w in caught)


def test_dilated_case_is_present():
    """The default roots hold the dilated scorer's case, so that its comparison runs."""
    dilated = [c for c in CASES if load_golden(c)["config"].get("scorer") == "dilated"]
    if not dilated:
        message = ("no dilated golden case under " + ":".join(str(r) for r in golden_roots()) +
                   ": the dilated scorer's golden comparison did not run")
        if ci_strict():
            pytest.fail(message)
        skip_loudly(message)


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
