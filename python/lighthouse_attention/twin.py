"""The PyTorch twin of ``lighthouse train``'s model: the same network, optimizer and recipe,
written independently in PyTorch, started from a checkpoint the trainer wrote.

    lighthouse train ... --save CK --save-initial --dump-batches batches.npy --metrics m.jsonl
    python -m lighthouse_attention.twin --checkpoint CK/step-00000000 --batches batches.npy \\
        --steps 3 --reference m.jsonl

It serves two purposes (issue 12): numerics -- on the same weights and batches, the first steps'
losses and gradient norms must agree with the trainer's (float32: ~1e-5 relative; bf16: to bf16
tolerance) -- and speed: the GPU script times a step of the trainer next to this twin, eager and
under ``torch.compile``, with our op and with every layer dense.

The model (src/train/model.hpp): byte embedding [vocab, C] -> L x [x += Attn(RMSNorm(x)) Wo;
x += SwiGLU(RMSNorm(x) W13) W2] -> RMSNorm -> tied head (embedding^T) or lm_head [C, vocab].
Weights are [in, out] (y = x W). Rotary embeddings "rotate half" (pairs i, i + D/2) with angles
n * base^(-2i/D) computed in float64; SwiGLU's W13 output is [h | g], a = silu(h) * g. Attention:
F.scaled_dot_product_attention(is_causal=True) for dense layers (levels == 1; cuDNN on the GPU),
torch.ops.lighthouse.attention for Lighthouse layers, with the per-layer configuration of the
checkpoint's recipe during stage 1 and dense attention everywhere after it. AdamW: decay on the
matrices only, the trainer's betas, eps, weight decay and learning-rate schedule; the gradient's
global norm (summed in float64) is clipped as the trainer does, without a host sync.

bf16 (``--dtype bf16``): autocast to bfloat16 for the products and attention, with float32 master
weights, residual stream, norms and loss (as the CUDA trainer keeps them).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import struct
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ._library import ops

# ---- checkpoint files ----------------------------------------------------------------------------


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (float32) and the metadata of a safetensors file. Uses the ``safetensors``
    package when it is installed, else reads the format directly (8-byte little-endian header
    length, a JSON header, raw little-endian data)."""
    try:
        from safetensors import safe_open

        tensors = {}
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            for name in f.keys():
                tensors[name] = f.get_tensor(name)
        return tensors, metadata
    except ImportError:
        pass
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    metadata = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, entry in header.items():
        if entry["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} has dtype {entry['dtype']}; expected F32")
        begin, end = entry["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + begin : base + end]), dtype=torch.float32)
        tensors[name] = t.view(entry["shape"])
    return tensors, metadata


def resolve_checkpoint(path: str) -> Path:
    """A checkpoint folder (it holds state.json), or the latest step-* folder under ``path``."""
    p = Path(path)
    if (p / "state.json").is_file():
        return p
    steps = sorted(c for c in p.glob("step-*") if (c / "state.json").is_file())
    if not steps:
        raise FileNotFoundError(f"{path}: holds no checkpoint (neither state.json nor step-*)")
    return steps[-1]


class Checkpoint:
    """What ``lighthouse train --save`` wrote: weights, AdamW moments, state and recipe."""

    def __init__(self, path: str):
        self.folder = resolve_checkpoint(path)
        self.state = json.loads((self.folder / "state.json").read_text())
        if "recipe" not in self.state:
            raise ValueError(
                f"{self.folder}/state.json has no recipe: written by an older lighthouse train"
            )
        self.weights, meta = read_safetensors(self.folder / "model.safetensors")
        self.moments, _ = read_safetensors(self.folder / "optimizer.safetensors")
        self.config = {
            "vocab": int(meta["vocab"]),
            "dim": int(meta["dim"]),
            "layers": int(meta["layers"]),
            "heads": int(meta["heads"]),
            "hidden": int(meta["hidden"]),
            "tied": meta["tied"] == "true",
            "rope_base": float(meta["rope_base"]),
            "norm_eps": float(meta["norm_eps"]),
        }
        self.recipe = self.state["recipe"]
        self.step = int(self.state["step"])
        self.run = self.state["run"]  # seq, batch, accum, stage1_steps


# ---- the model -----------------------------------------------------------------------------------


def rotary_tables(seq: int, head_dim: int, base: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, [seq, head_dim / 2] float32, from angles in float64 (as the trainer)."""
    half = head_dim // 2
    i = torch.arange(half, dtype=torch.float64)
    freq = torch.pow(torch.tensor(base, dtype=torch.float64), -2.0 * i / head_dim)
    angle = torch.arange(seq, dtype=torch.float64)[:, None] * freq[None, :]
    return angle.cos().float().to(device), angle.sin().float().to(device)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, N, H, D] rotated pairwise (i, i + D/2)."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    c, s = cos[None, :, None, :].to(x.dtype), sin[None, :, None, :].to(x.dtype)
    return torch.cat((a * c - b * s, a * s + b * c), dim=-1)


def rms_norm(x: torch.Tensor, gain: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain


class TwinModel(torch.nn.Module):
    """The trainer's model with the checkpoint's weights (parameter names as in the checkpoint,
    dots replaced by underscores)."""

    def __init__(self, config: dict, weights: dict[str, torch.Tensor], device):
        super().__init__()
        self.config = config
        self.names = list(weights.keys())
        for name, value in weights.items():
            self.register_parameter(
                name.replace(".", "_"), torch.nn.Parameter(value.to(device=device).clone())
            )
        # One entry per layer: None for dense, else (levels, pool, topk, selection).
        self.attention: list = [None] * config["layers"]

    def param(self, name: str) -> torch.nn.Parameter:
        return getattr(self, name.replace(".", "_"))

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, cos: torch.Tensor,
                sin: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of inputs -> targets ([B, N]); cos, sin: rotary_tables(N)."""
        c = self.config
        bsz, n = inputs.shape
        dim, heads = c["dim"], c["heads"]
        hd, ffn, eps = dim // heads, c["hidden"], c["norm_eps"]
        x = F.embedding(inputs, self.param("embedding"))
        for l in range(c["layers"]):
            p = f"layers.{l}."
            h = rms_norm(x, self.param(p + "attn_norm"), eps)
            qkv = h @ self.param(p + "wqkv")
            q, k, v = qkv.view(bsz, n, 3, heads, hd).unbind(2)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            cfg = self.attention[l]
            if cfg is None:
                att = F.scaled_dot_product_attention(
                    q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
                ).transpose(1, 2)
            else:
                levels, pool, topk, selection = cfg
                att = ops.attention(q, k, v, levels, pool, topk, None, selection)
            x = x + att.reshape(bsz, n, dim) @ self.param(p + "wo")
            h = rms_norm(x, self.param(p + "mlp_norm"), eps)
            hg = h @ self.param(p + "w13")
            x = x + (F.silu(hg[..., :ffn]) * hg[..., ffn:]) @ self.param(p + "w2")
        h = rms_norm(x, self.param("final_norm"), eps)
        head = self.param("embedding").t() if c["tied"] else self.param("lm_head")
        logits = (h @ head).float()
        return F.cross_entropy(
            logits.view(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1
        )


# ---- the recipe ----------------------------------------------------------------------------------


def learning_rate(schedule: dict, step: int) -> float:
    """Schedule::at (src/train/optimizer.cpp), step counted from 0."""
    lr, warmup, total = schedule["lr"], schedule["warmup"], schedule["total"]
    floor = schedule["min_ratio"] * lr
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule["decay"] == "wsd":
        steps = max(1, round(schedule["cooldown"] * total))
        start = total - steps
        if step < start:
            return lr
        progress = 1.0 if steps <= 1 else min(1.0, (step - start) / (steps - 1))
        return lr + (floor - lr) * progress
    span = total - warmup
    progress = 1.0 if span <= 1 else min(1.0, (step - warmup) / (span - 1))
    if schedule["decay"] == "cosine":
        return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule["decay"] == "linear":
        return lr + (floor - lr) * progress
    return lr


class Twin:
    """The model, AdamW and the recipe of a checkpoint, on `device` in `dtype`."""

    def __init__(self, ck: Checkpoint, device="cpu", dtype="fp32", compile=False, dense=False):
        self.ck, self.device, self.dense = ck, torch.device(device), dense
        self.autocast = dtype == "bf16"
        self.model = TwinModel(ck.config, ck.weights, self.device)
        self.forward = torch.compile(self.model) if compile else self.model
        a = ck.recipe["adamw"]
        decay, no_decay = [], []
        for name in self.model.names:
            p = self.model.param(name)
            (decay if p.dim() == 2 and name != "embedding" else no_decay).append(p)
        self.params = decay + no_decay
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": a["weight_decay"]},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=ck.recipe["schedule"]["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"],
            fused=fused, foreach=None if fused else True,
        )
        if ck.step > 0:  # continue the trainer's AdamW: moments and update count
            for name in self.model.names:
                p = self.model.param(name)
                self.optimizer.state[p] = {
                    "step": torch.tensor(float(ck.step), device=self.device if fused else "cpu"),
                    "exp_avg": ck.moments["m." + name].to(self.device).clone(),
                    "exp_avg_sq": ck.moments["v." + name].to(self.device).clone(),
                }
        self.step_index = ck.step
        self.cos, self.sin = rotary_tables(
            ck.run["seq"], ck.config["dim"] // ck.config["heads"], ck.config["rope_base"],
            self.device)

    def set_stage_attention(self):
        stage1 = self.step_index < self.ck.recipe["stage1_steps"] and not self.dense
        layers = self.ck.recipe["stage1_attention"]
        self.model.attention = [
            (c["levels"], c["pool"], c["topk"], c.get("selection", "original")) if stage1 and c["levels"] > 1 else None
            for c in layers
        ]

    def train_step(self, micro_batches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One optimizer step on [accum, 2, B, N] tokens: the mean loss and the gradient norm
        before clipping (device tensors) and the learning rate."""
        self.set_stage_attention()
        accum = micro_batches.shape[0]
        for p in self.params:
            p.grad = None
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for m in range(accum):
            inputs, targets = micro_batches[m, 0], micro_batches[m, 1]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                loss = self.forward(inputs, targets, self.cos, self.sin)
            (loss / accum).backward()
            total += loss.detach().double()
        grads = [p.grad for p in self.params]
        norms = torch._foreach_norm(grads)
        norm = torch.linalg.vector_norm(torch.stack(norms).double())
        clip = self.ck.recipe["grad_clip"]
        if clip > 0:  # the trainer's rule: scale by clip / (norm + 1e-12) when norm > clip
            scale = torch.clamp(clip / (norm + 1e-12), max=1.0).float()
            torch._foreach_mul_(grads, scale)
        lr = learning_rate(self.ck.recipe["schedule"], self.step_index)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.step_index += 1
        return total / accum, norm, lr


# ---- data ----------------------------------------------------------------------------------------


def read_npy_int32(path: str) -> torch.Tensor:
    """An int32 C-order .npy file (what --dump-batches writes), without numpy."""
    data = Path(path).read_bytes()
    if data[:6] != b"\x93NUMPY":
        raise ValueError(f"{path}: not a .npy file")
    major = data[6]
    n, at = (struct.unpack("<H", data[8:10])[0], 10) if major == 1 else (
        struct.unpack("<I", data[8:12])[0], 12)
    header = data[at : at + n].decode("latin1")
    if "'<i4'" not in header or "'fortran_order': False" not in header:
        raise ValueError(f"{path}: expected little-endian int32 in C order, got {header.strip()}")
    shape = tuple(int(x) for x in header.split("'shape': (")[1].split(")")[0].split(",") if x.strip())
    values = torch.frombuffer(bytearray(data[at + n :]), dtype=torch.int32)
    return values.view(shape)


def batches_for(args, ck: Checkpoint, steps: int) -> torch.Tensor:
    """[steps, accum, 2, B, N] int64 tokens for the steps after the checkpoint."""
    run = ck.run
    shape = (run["accum"], 2, run["batch"], run["seq"])
    if args.batches:
        all_steps = read_npy_int32(args.batches)
        if tuple(all_steps.shape[1:]) != shape:
            raise ValueError(
                f"--batches {args.batches}: batches of shape {tuple(all_steps.shape[1:])}, the "
                f"checkpoint's run has [accum, 2, batch, seq] = {shape}"
            )
        if all_steps.shape[0] < ck.step + steps:
            raise ValueError(
                f"--batches {args.batches}: {all_steps.shape[0]} steps, steps {ck.step} to "
                f"{ck.step + steps} are needed"
            )
        return all_steps[ck.step : ck.step + steps].long()
    # Random bytes (timing only): targets are the inputs shifted by one, as the packer cuts them.
    g = torch.Generator().manual_seed(args.seed)
    tokens = torch.randint(0, 256, (steps, run["accum"], run["batch"], run["seq"] + 1), generator=g)
    return torch.stack((tokens[..., :-1], tokens[..., 1:]), dim=2)


def reference_steps(path: str) -> dict[int, dict]:
    """step -> the trainer's step record, from its metrics JSONL."""
    out = {}
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        if record.get("type") == "step":
            out[int(record["step"])] = record
    return out


# ---- command line --------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m lighthouse_attention.twin",
        description="Train lighthouse train's model in PyTorch from one of its checkpoints.",
    )
    ap.add_argument("--checkpoint", required=True, help="checkpoint folder (or a --save root)")
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps to take")
    ap.add_argument("--batches", help="the .npy of `lighthouse train --dump-batches`; "
                    "default: random bytes (for timing)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random bytes")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--dense", action="store_true",
                    help="every layer dense (F.scaled_dot_product_attention), also in stage 1")
    ap.add_argument("--warmup", type=int, default=0,
                    help="first steps left out of the median step time")
    ap.add_argument("--reference", help="the trainer's metrics JSONL: compare loss and grad norm")
    ap.add_argument("--tolerance", type=float, default=1e-5,
                    help="largest relative difference to --reference that passes")
    ap.add_argument("--json", help="write the steps and the median step time to FILE")
    ap.add_argument("--quiet", action="store_true", help="no line per step")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error(f"--steps = {args.steps}: must be >= 1")
    if args.dtype == "bf16" and args.device == "cpu":
        ap.error("--dtype = bf16: the op runs bf16 on CUDA only (use --device cuda or fp32)")
    try:
        ck = Checkpoint(args.checkpoint)
        twin = Twin(ck, args.device, args.dtype, args.compile, args.dense)
        data = batches_for(args, ck, args.steps).to(twin.device)
    except (OSError, ValueError, KeyError) as e:
        print(f"twin: error: {e}", file=sys.stderr)
        return 2
    cuda = twin.device.type == "cuda"
    rows = []
    for i in range(args.steps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        else:
            t0 = time.perf_counter()
        loss, norm, lr = twin.train_step(data[i])
        if cuda:
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end)
        else:
            ms = 1e3 * (time.perf_counter() - t0)
        row = {"step": twin.step_index, "loss": loss.item(), "grad_norm": norm.item(), "lr": lr,
               "ms": ms}
        rows.append(row)
        if not args.quiet:
            print(f"step {row['step']} | loss {row['loss']:.6f} | norm {row['grad_norm']:.6f} | "
                  f"lr {lr:.2e} | {ms:.1f} ms", flush=True)
    timed = [r["ms"] for r in rows[args.warmup:]] or [rows[-1]["ms"]]
    median = statistics.median(timed)
    mode = ("compiled" if args.compile else "eager") + (", dense" if args.dense else "")
    print(f"twin ({args.device}, {args.dtype}, {mode}): median {median:.1f} ms/step over "
          f"{len(timed)} steps")
    status = 0
    worst = None
    if args.reference:
        ref = reference_steps(args.reference)
        worst = {"loss": 0.0, "grad_norm": 0.0}
        for r in rows:
            if r["step"] not in ref:
                print(f"--reference {args.reference} has no step {r['step']}", file=sys.stderr)
                return 1
            for key in worst:
                want = ref[r["step"]][key]
                worst[key] = max(worst[key], abs(r[key] - want) / max(abs(want), 1e-30))
        ok = all(v <= args.tolerance for v in worst.values())
        print(f"largest relative difference to the trainer: loss {worst['loss']:.2e}, grad norm "
              f"{worst['grad_norm']:.2e} (tolerance {args.tolerance:.0e}): "
              f"{'ok' if ok else 'MISS'}")
        status = 0 if ok else 1
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"device": args.device, "dtype": args.dtype, "compile": args.compile,
             "dense": args.dense, "median_ms": median, "steps": rows,
             "largest_relative_difference": worst}, indent=1) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
