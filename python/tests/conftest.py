"""Shared helpers of the PyTorch tests: seeded inputs, the golden cases, device selection.

The package under test is the installed ``lighthouse_attention`` (``pip install
--no-build-isolation ./python``), or the sources in python/ with LIGHTHOUSE_TORCH_LIBRARY naming
a built extension (scripts/test-torch does that).

Tests that need a GPU carry ``requires_cuda`` (the ``cuda`` marker): without a CUDA device they
are deselected, and the summary says how many, as ``ctest -LE gpu`` leaves out the C++ GPU
tests. Under CI (``CI=true``) every test that is collected must run: a skipped test fails the
session, so that a green CI never hides a comparison that did not happen.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
DEFAULT_GOLDEN = [REPO / "tests" / "data" / "golden", REPO / "tests" / "data" / "golden-dilated"]

requires_cuda = pytest.mark.cuda


def ci_strict() -> bool:
    """CI=true (or 1): skips are failures, a missing golden folder too."""
    return os.environ.get("CI", "").lower() in ("true", "1")


_SKIPPED: list[str] = []
_NO_CUDA: list[str] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (deselected without one)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    keep = [item for item in items if item.get_closest_marker("cuda") is None]
    if len(keep) != len(items):
        _NO_CUDA.extend(item.nodeid for item in items if item.get_closest_marker("cuda"))
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("cuda")])
        items[:] = keep


def pytest_runtest_logreport(report):
    if report.skipped:
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if ci_strict() and _SKIPPED and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _NO_CUDA:
        terminalreporter.write_line(
            f"lighthouse: {len(_NO_CUDA)} CUDA tests not run: no CUDA device "
            "(scripts/torch-check runs them on a GPU machine)", yellow=True)
    if _SKIPPED:
        verdict = "FAILURE under CI" if ci_strict() else "not checked"
        terminalreporter.write_line(
            f"lighthouse: {len(_SKIPPED)} tests skipped ({verdict}): " + ", ".join(_SKIPPED),
            red=True)


def qkv(b, n, h, d, *, dtype=torch.float32, device="cpu", seed=0, requires_grad=False):
    """q and k with widely varying row norms (clear winners for the selection), normal v."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(3):
        x = torch.randn(b, n, h, d, generator=g, dtype=torch.float64)
        if i < 2:
            x = x * torch.exp(0.5 * torch.randn(b, n, h, 1, generator=g, dtype=torch.float64))
        out.append(x.to(dtype=dtype, device=device).requires_grad_(requires_grad))
    return out


def golden_roots() -> list[Path]:
    """LIGHTHOUSE_GOLDEN_DIR (one folder or several separated by ':'), else tests/data/golden and
    tests/data/golden-dilated."""
    env = os.environ.get("LIGHTHOUSE_GOLDEN_DIR", "")
    return [Path(p) for p in env.split(":") if p] if env else list(DEFAULT_GOLDEN)


def _scorer(case: Path) -> str:
    try:
        return json.loads((case / "config.json").read_text()).get("scorer", "norm")
    except ValueError:
        return "norm"  # load_golden reports the broken file


def golden_cases(roots: list[Path] | None = None) -> list[Path]:
    """Every case folder (with a config.json) under the roots that the library can run, by
    name. Cases of a scorer the library does not implement (other than "norm" and "dilated") are
    left out, with a warning."""
    cases = []
    for root in golden_roots() if roots is None else roots:
        if not root.is_dir():
            continue
        for case in root.iterdir():
            if not (case / "config.json").is_file():
                continue
            scorer = _scorer(case)
            if scorer not in ("norm", "dilated"):
                warnings.warn(f"golden case {case}: scorer '{scorer}' is not implemented: not run")
                continue
            cases.append(case)
    return sorted(cases, key=lambda p: p.name)


def load_golden(case: Path) -> dict:
    np = pytest.importorskip("numpy")
    config = json.loads((case / "config.json").read_text())
    arrays = {name: torch.from_numpy(np.load(case / f"{name}.npy"))
              for name in ("q", "k", "v", "dout", "out", "dq", "dk", "dv", "indices")}
    return {"config": config, **arrays}


def skip_loudly(reason: str):
    """A skip that also shows up as a warning in the summary, so that it is not missed."""
    warnings.warn(reason)
    pytest.skip(reason)


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))
