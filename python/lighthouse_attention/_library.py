"""Loads the compiled extension, which registers the ``torch.ops.lighthouse`` operators.

The extension is ``_lighthouse_torch.so`` beside this file (``pip install`` puts it there). The
environment variable ``LIGHTHOUSE_TORCH_LIBRARY`` may name another build of it instead (a CMake
build folder during development: ``build/.../bindings/torch/_lighthouse_torch.so``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

_NAME = "_lighthouse_torch.so"


def library_path() -> Path:
    override = os.environ.get("LIGHTHOUSE_TORCH_LIBRARY")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / _NAME


def load() -> None:
    """Registers the operators once per process (a second call does nothing)."""
    if hasattr(torch.ops.lighthouse, "attention_forward"):
        return
    path = library_path()
    if not path.is_file():
        raise ImportError(
            f"lighthouse_attention: the compiled extension {path} is missing. Install the "
            "package with `pip install --no-build-isolation ./python`, or set "
            "LIGHTHOUSE_TORCH_LIBRARY to a built _lighthouse_torch.so."
        )
    torch.ops.load_library(str(path))


load()
ops = torch.ops.lighthouse
