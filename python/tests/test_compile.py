"""torch.compile(fullgraph=True) of a small transformer block that calls the op: one graph (no
break), the op inside it, and forward, backward and a few training steps equal to eager."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import lighthouse_attention as la
from conftest import requires_cuda

CONFIG = dict(levels=2, pool=2, topk=128)


class Block(nn.Module):
    """Pre-norm transformer block; q, k, v are [B, N, H, D] views of one fused projection."""

    def __init__(self, dim=64, heads=4, dense=False):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.attn = la.LighthouseAttention(**CONFIG, dense=dense)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, c // self.heads).unbind(2)
        x = x + self.proj(self.attn(q, k, v).reshape(b, n, c))
        return x + self.mlp(self.norm2(x))


class Model(nn.Module):
    def __init__(self, layers=2, dim=64):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim) for _ in range(layers)])
        self.head = nn.Linear(dim, 1)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x).square().mean()


def _model(device, dtype, seed=0):
    torch.manual_seed(seed)
    return Model().to(device=device, dtype=dtype)


def _input(device, dtype, seed=1, n=512):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, n, 64, generator=g).to(device=device, dtype=dtype)


def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


def test_one_graph_with_the_op_and_eager_results():
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    model, x = _model("cpu", torch.float32), _input("cpu", torch.float32)
    compiled_model = copy.deepcopy(model)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(compiled_model, fullgraph=True, backend=counter)

    loss = model(x)
    loss.backward()
    closs = compiled(x)
    closs.backward()
    assert counter.frame_count == 1
    code = counter.graphs[0].code
    assert code.count("torch.ops.lighthouse.attention") == 2, code
    torch.testing.assert_close(closs, loss, rtol=1e-6, atol=1e-7)
    for got, want in zip(_grads(compiled_model), _grads(model)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)

    # The stage-2 switch: one recompilation, then dense attention, still one graph per frame.
    assert la.set_dense(model) == 2
    assert la.set_dense(compiled) == 2  # through the compiled wrapper, as a training loop would
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-6, atol=1e-7)
    assert counter.frame_count == 2
    assert "scaled_dot_product_attention" in counter.graphs[1].code


def _train(model, x, steps, compiled):
    fn = torch.compile(model, fullgraph=True) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = fn(x)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize(
    "device,dtype,rtol",
    [
        ("cpu", torch.float32, 1e-4),
        pytest.param("cuda", torch.float32, 1e-4, marks=requires_cuda),
        pytest.param("cuda", torch.bfloat16, 3e-2, marks=requires_cuda),
    ],
)
def test_inductor_training_steps_match_eager(device, dtype, rtol):
    torch._dynamo.reset()
    x = _input(device, dtype)
    eager = _train(_model(device, dtype), x, steps=3, compiled=False)
    compiled = _train(_model(device, dtype), x, steps=3, compiled=True)
    assert all(torch.isfinite(torch.tensor(eager)))
    assert eager[-1] < eager[0]  # it trains
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=rtol, atol=1e-6)
