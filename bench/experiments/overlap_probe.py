"""Does a memory-bound kernel overlap with cuDNN's fused attention on another stream?

One-off probe for docs/PERF.md (issue 3, forward overhead): times cuDNN SDPA over S rows with
H heads and a memory-bound pass over N-token q/k/v (fp32 norms of bf16 rows, ~ the pyramid's
traffic), serially and pipelined over ranges of heads on two streams (the second stream
optionally at high priority). Run: /opt/torch/.venv/bin/python bench/experiments/overlap_probe.py
"""
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

torch.manual_seed(0)
dev = "cuda"
H, D = 8, 128


def timeit(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(True), torch.cuda.Event(True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


for N, S in [(131072, 24576), (524288, 49152)]:
    q = torch.randn(1, H, S, D, device=dev, dtype=torch.bfloat16)
    k, v = torch.randn_like(q), torch.randn_like(q)
    toks = [torch.randn(1, N, H, D, device=dev, dtype=torch.bfloat16) for _ in range(3)]

    def attn(h0, h1):
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return F.scaled_dot_product_attention(q[:, h0:h1], k[:, h0:h1], v[:, h0:h1], is_causal=True)

    def mem(h0, h1):
        return [torch.linalg.vector_norm(t[:, :, h0:h1].float(), dim=-1) for t in toks]

    t_attn = timeit(lambda: attn(0, H))
    t_mem = timeit(lambda: mem(0, H))
    t_serial = timeit(lambda: (mem(0, H), attn(0, H)))
    res = {}
    for prio in (0, -5):
        side = torch.cuda.Stream(priority=prio)
        for G in (2, 4):
            hg = H // G

            def pipe():
                main = torch.cuda.current_stream()
                side.wait_stream(main)
                evs = []
                for g in range(G):
                    with torch.cuda.stream(side):
                        mem(g * hg, (g + 1) * hg)
                        e = torch.cuda.Event()
                        e.record(side)
                    evs.append(e)
                for g in range(G):
                    main.wait_event(evs[g])
                    attn(g * hg, (g + 1) * hg)

            res[(prio, G)] = timeit(pipe)
    t_attn_g2 = timeit(lambda: [attn(g * 4, g * 4 + 4) for g in range(2)])
    print(f"N={N} S={S}: attn {t_attn:.3f} attn(2 groups serial) {t_attn_g2:.3f} mem {t_mem:.3f} "
          f"serial {t_serial:.3f} | " + " ".join(f"prio{p} G{g} {t:.3f}" for (p, g), t in res.items()))
