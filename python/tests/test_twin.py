"""The PyTorch twin (lighthouse_attention.twin) against the C++ trainer on the CPU: from the
trainer's step-0 checkpoint and its batches, the twin's float32 losses and gradient norms agree
with the trainer's metrics to 1e-5 relative, through the Lighthouse -> dense switch, with
gradient accumulation and clipping; from a later checkpoint (AdamW moments loaded) as well.

The trainer is the `lighthouse` binary: LIGHTHOUSE_CLI, else the newest build/*/lighthouse."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from lighthouse_attention import twin

REPO = Path(__file__).resolve().parents[2]


def lighthouse_cli() -> Path | None:
    named = os.environ.get("LIGHTHOUSE_CLI")
    if named:
        return Path(named)
    built = [p for p in REPO.glob("build/*/lighthouse") if p.is_file() and os.access(p, os.X_OK)]
    return max(built, key=lambda p: p.stat().st_mtime) if built else None


def train(tmp_path: Path, *flags: str) -> Path:
    cli = lighthouse_cli()
    if cli is None:
        pytest.skip("no lighthouse CLI built (build the project or set LIGHTHOUSE_CLI)")
    args = [str(cli), "train", "--device", "cpu", "--seq", "256", "--levels", "2", "--pool", "2",
            "--topk", "128", "--dim", "32", "--heads", "2", "--corpus-tokens", "20k",
            "--eval-every", "0", "--threads", "1", "--sgemm-size", "0", "--passkey-trials", "0",
            "--save", str(tmp_path / "ck"), "--save-initial", "--save-every", "1",
            "--dump-batches", str(tmp_path / "batches.npy"),
            "--metrics", str(tmp_path / "metrics.jsonl"), "--quiet", *flags]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return tmp_path


def trainer_steps(folder: Path) -> dict[int, dict]:
    return twin.reference_steps(str(folder / "metrics.jsonl"))


def run_twin(folder: Path, start: int, steps: int, **kw) -> list[dict]:
    ck = twin.Checkpoint(str(folder / "ck" / f"step-{start:08d}"))
    t = twin.Twin(ck, "cpu", "fp32", **kw)
    data = twin.read_npy_int32(str(folder / "batches.npy"))[start : start + steps].long()
    rows = []
    for i in range(steps):
        loss, norm, lr = t.train_step(data[i])
        rows.append({"step": t.step_index, "loss": loss.item(), "grad_norm": norm.item(), "lr": lr})
    return rows


def assert_agrees(rows, reference, rtol=1e-5):
    for r in rows:
        ref = reference[r["step"]]
        assert r["lr"] == pytest.approx(ref["lr"], rel=1e-12), r["step"]
        assert r["loss"] == pytest.approx(ref["loss"], rel=rtol), r["step"]
        assert r["grad_norm"] == pytest.approx(ref["grad_norm"], rel=rtol), r["step"]


@pytest.mark.parametrize("tied", [True, False])
def test_twin_reproduces_the_trainer_from_step_0(tmp_path, tied):
    # Two Lighthouse steps then two dense ones; two micro-batches per step; clipping active.
    flags = ["--layers", "3", "--stage1-steps", "2", "--stage2-steps", "2", "--accum", "2",
             "--grad-clip", "0.5"] + ([] if tied else ["--untied", "--batch", "2"])
    folder = train(tmp_path, *flags)
    reference = trainer_steps(folder)
    assert len(reference) == 4
    assert_agrees(run_twin(folder, 0, 4), reference)


def test_twin_continues_a_checkpoint_with_its_optimizer_state(tmp_path):
    folder = train(tmp_path, "--layers", "2", "--stage1-steps", "2", "--stage2-steps", "2",
                   "--warmup", "1", "--decay", "cosine")
    assert_agrees(run_twin(folder, 2, 2), trainer_steps(folder))


def test_the_comparison_can_fail(tmp_path):
    # Every layer dense in stage 1 is another model: its first step's loss already differs.
    folder = train(tmp_path, "--layers", "2", "--stage1-steps", "2", "--stage2-steps", "1",
                   "--dense-layers", "none")
    rows = run_twin(folder, 0, 1, dense=True)
    reference = trainer_steps(folder)
    assert abs(rows[0]["loss"] - reference[1]["loss"]) > 1e-5 * reference[1]["loss"]


def test_command_line_compares_with_the_metrics(tmp_path, capsys):
    folder = train(tmp_path, "--layers", "2", "--stage1-steps", "1", "--stage2-steps", "1")
    out = tmp_path / "twin.json"
    status = twin.main(["--checkpoint", str(folder / "ck" / "step-00000000"), "--batches",
                        str(folder / "batches.npy"), "--steps", "2", "--reference",
                        str(folder / "metrics.jsonl"), "--json", str(out)])
    assert status == 0, capsys.readouterr().out
    result = json.loads(out.read_text())
    assert [r["step"] for r in result["steps"]] == [1, 2]
    assert result["largest_relative_difference"]["loss"] <= 1e-5
    # Batches of another run's shape are refused with the shapes named.
    status = twin.main(["--checkpoint", str(folder / "ck"), "--batches",
                        str(folder / "batches.npy"), "--steps", "1"])
    assert status == 2
    assert "steps 2 to 3 are needed" in capsys.readouterr().err


def test_safetensors_reader_without_the_package(tmp_path, monkeypatch):
    folder = train(tmp_path, "--layers", "1", "--stage1-steps", "0", "--stage2-steps", "1")
    path = folder / "ck" / "step-00000000" / "model.safetensors"
    import builtins

    real_import = builtins.__import__

    def no_safetensors(name, *args, **kwargs):
        if name == "safetensors":
            raise ImportError("hidden for the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_safetensors)
    tensors, meta = twin.read_safetensors(path)
    assert meta["dim"] == "32" and meta["layers"] == "1"
    assert tensors["embedding"].shape == (257, 32)
    assert tensors["embedding"].dtype == torch.float32
    assert tensors["final_norm"].eq(1).all()  # norm gains start at 1
