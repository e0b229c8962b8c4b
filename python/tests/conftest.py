"""Shared helpers of the PyTorch tests: seeded inputs, the golden cases, device skips.

The package under test is the installed ``lighthouse_attention`` (``pip install
--no-build-isolation ./python``), or the sources in python/ with LIGHTHOUSE_TORCH_LIBRARY naming
a built extension (scripts/test does that).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


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


def golden_dir() -> Path | None:
    """LIGHTHOUSE_GOLDEN_DIR, else the places scripts/gpu-check looks at."""
    candidates = [os.environ.get("LIGHTHOUSE_GOLDEN_DIR")]
    candidates += [REPO / "shared" / "golden", REPO.parent / "shared" / "golden",
                   REPO / "third_party" / "golden"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


def golden_cases():
    root = golden_dir()
    if root is None:
        return []
    return sorted(p for p in root.iterdir() if (p / "config.json").is_file())


def golden_dilated_dir() -> Path | None:
    """The dilated scorer's cases: LIGHTHOUSE_GOLDEN_DILATED_DIR, else tests/data/golden-dilated,
    else shared/golden-dilated beside or inside the repository."""
    candidates = [os.environ.get("LIGHTHOUSE_GOLDEN_DILATED_DIR")]
    candidates += [REPO / "tests" / "data" / "golden-dilated", REPO / "shared" / "golden-dilated",
                   REPO.parent / "shared" / "golden-dilated"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


def golden_dilated_cases():
    root = golden_dilated_dir()
    if root is None:
        return []
    return sorted(p for p in root.iterdir() if (p / "config.json").is_file())


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
