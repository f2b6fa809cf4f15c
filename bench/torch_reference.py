#!/usr/bin/python3
"""PyTorch reference for `genlab bench` (lua/genlab/bench.lua).

Run with Debian's PyTorch (python3-torch, written for 1.13):

    /usr/bin/python3 bench/torch_reference.py [--quick] [--threads N]

It builds the same models as bench.lua (same shapes, same ops, same
initialisation scheme, AdamW with the same settings) and times them the same
way: one warm-up call, then calls until a minimum wall-clock time and a
minimum number of calls have passed. Attention is written out with
masked_fill + softmax as bench.lua does (no scaled_dot_product_attention, no
torch.compile), and dropout is present with p = 0.

It prints one JSON line: {"torch": version, "threads": N, "quick": bool,
"results": [{"name", "config", "unit", "value"[, "params", "loss"]}, ...]},
where loss is the loss of the first (warm-up) step, or {"error": why} with
exit status 3 when PyTorch cannot be imported. bench.lua reads the line
with a small pattern reader, so the objects are flat and hold only strings
and numbers.
"""
import argparse
import json
import math
import os
import resource
import sys
import time


def parse():
    ap = argparse.ArgumentParser(description="PyTorch reference for genlab bench")
    ap.add_argument("--quick", action="store_true", help="small sizes and short timings")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads")
    return ap.parse_args()


def timed(fn, min_time, min_reps):
    """Seconds per call of fn: one warm-up call, then calls until min_time
    seconds and min_reps calls have passed (bench.lua's time())."""
    fn()
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        elapsed = time.perf_counter() - t0
        if reps >= min_reps and elapsed >= min_time:
            return elapsed / reps


def param(shape, std):
    return (torch.randn(shape) * std).requires_grad_()


def const(shape, value):
    return torch.full(shape, float(value)).requires_grad_()


def adamw(params):
    # bench.lua: lr 1e-3, weight_decay 0.1, default betas (0.9, 0.999), eps 1e-8
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1)


def train_step(opt, loss_fn, first):
    """One step as genlab takes it; zero_grad drops the gradients as
    gl.optim's does. Records the first loss in first[0]."""
    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        if first[0] is None:
            first[0] = loss.item()
        loss.backward()
        opt.step()
    return step


# ---- sgemm -------------------------------------------------------------------------

def bench_sgemm(n, quick):
    a, b = torch.randn(n, n), torch.randn(n, n)
    s = timed(lambda: torch.matmul(a, b), 0.05 if quick else 0.5, 1 if quick else 3)
    return 2 * n ** 3 / s / 1e9


# ---- MLP: 784 -> 256 -> 10, batch 128 ------------------------------------------------

def bench_mlp(quick):
    B, D, H, K = 128, 784, 256, 10
    w1, b1 = param((H, D), 1 / math.sqrt(D)), const((H,), 0)
    w2, b2 = param((K, H), 1 / math.sqrt(H)), const((K,), 0)
    params = [w1, b1, w2, b2]
    opt = adamw(params)
    x, y = torch.randn(B, D), torch.randint(0, K, (B,))
    first = [None]
    step = train_step(opt, lambda: F.cross_entropy(F.linear(F.relu(F.linear(x, w1, b1)), w2, b2), y), first)
    s = timed(step, 0.1 if quick else 2, 1 if quick else 10)
    return B / s, sum(p.numel() for p in params), first[0]


# ---- transformer: char-level GPT, pre-LayerNorm, GELU MLP, learned positions ---------

GPT = dict(L=4, C=128, NH=4, T=64, B=12, V=65)
GPT_QUICK = dict(L=2, C=64, NH=4, T=32, B=4, V=65)
LAYER_KEYS = ("ln1_w", "ln1_b", "qkv_w", "qkv_b", "proj_w", "proj_b",
              "ln2_w", "ln2_b", "fc_w", "fc_b", "fc2_w", "fc2_b")


def gpt_params(cfg):
    C, std = cfg["C"], 0.02
    p = dict(wte=param((cfg["V"], C), std), wpe=param((cfg["T"], C), std),
             lnf_w=const((C,), 1), lnf_b=const((C,), 0),
             head=param((cfg["V"], C), std),  # untied from wte
             layers=[])
    proj_std = std / math.sqrt(2 * cfg["L"])  # GPT-2's scaled residual projections
    for _ in range(cfg["L"]):
        p["layers"].append(dict(
            ln1_w=const((C,), 1), ln1_b=const((C,), 0),
            qkv_w=param((3 * C, C), std), qkv_b=const((3 * C,), 0),
            proj_w=param((C, C), proj_std), proj_b=const((C,), 0),
            ln2_w=const((C,), 1), ln2_b=const((C,), 0),
            fc_w=param((4 * C, C), std), fc_b=const((4 * C,), 0),
            fc2_w=param((C, 4 * C), proj_std), fc2_b=const((C,), 0)))
    flat = [p["wte"], p["wpe"], p["lnf_w"], p["lnf_b"], p["head"]]
    for layer in p["layers"]:
        flat += [layer[k] for k in LAYER_KEYS]
    return p, flat


def gpt_loss(p, cfg, idx, targets, pos, mask):
    """idx, targets: int64 [B, T] -> mean cross-entropy (bench.lua's gpt_loss)."""
    B, T, C, NH = cfg["B"], cfg["T"], cfg["C"], cfg["NH"]
    HS = C // NH
    x = F.dropout(F.embedding(idx, p["wte"]) + F.embedding(pos, p["wpe"]), 0)  # [B, T, C]
    for l in p["layers"]:
        h = F.layer_norm(x, (C,), l["ln1_w"], l["ln1_b"])
        q, k, v = F.linear(h, l["qkv_w"], l["qkv_b"]).split(C, dim=-1)
        q = q.reshape(B, T, NH, HS).transpose(1, 2)  # [B, NH, T, HS]
        k = k.reshape(B, T, NH, HS).transpose(1, 2)
        v = v.reshape(B, T, NH, HS).transpose(1, 2)
        att = torch.matmul(q, k.transpose(-2, -1)) * (1 / math.sqrt(HS))  # [B, NH, T, T]
        att = F.dropout(F.softmax(att.masked_fill(mask, -math.inf), dim=-1), 0)
        y = torch.matmul(att, v).transpose(1, 2).reshape(B, T, C)
        x = x + F.dropout(F.linear(y, l["proj_w"], l["proj_b"]), 0)
        h = F.layer_norm(x, (C,), l["ln2_w"], l["ln2_b"])
        x = x + F.dropout(F.linear(F.gelu(F.linear(h, l["fc_w"], l["fc_b"])), l["fc2_w"], l["fc2_b"]), 0)
    logits = F.linear(F.layer_norm(x, (C,), p["lnf_w"], p["lnf_b"]), p["head"])  # [B, T, V]
    return F.cross_entropy(logits.reshape(B * T, cfg["V"]), targets.reshape(B * T))


def bench_gpt(cfg, quick):
    p, flat = gpt_params(cfg)
    opt = adamw(flat)
    idx = torch.randint(0, cfg["V"], (cfg["B"], cfg["T"]))
    targets = torch.randint(0, cfg["V"], (cfg["B"], cfg["T"]))
    pos = torch.arange(cfg["T"])
    mask = torch.triu(torch.ones(cfg["T"], cfg["T"]), 1).bool()  # True above the diagonal: the future
    first = [None]
    step = train_step(opt, lambda: gpt_loss(p, cfg, idx, targets, pos, mask), first)
    s = timed(step, 0.1 if quick else 3, 1 if quick else 10)
    return cfg["B"] * cfg["T"] / s, sum(t.numel() for t in flat), first[0]


def main():
    o = parse()
    if o.threads < 1:
        sys.exit("torch_reference.py: --threads needs a positive integer")
    # Before torch loads: OpenBLAS and OpenMP read these when they start.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(o.threads)
    global torch, F
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(json.dumps({"error": "PyTorch not importable: " + str(e).replace('"', "'")}))
        sys.exit(3)
    torch.set_num_threads(o.threads)
    torch.manual_seed(1337)

    results = []
    for n in (256, 512, 1024) if o.quick else (256, 512, 1024, 2048):
        results.append(dict(name="sgemm", config="%dx%dx%d" % (n, n, n), unit="GFLOP/s",
                            value=bench_sgemm(n, o.quick)))
    value, params, loss = bench_mlp(o.quick)
    results.append(dict(name="mlp train step (AdamW)", config="784-256-10 B128", unit="samples/s",
                        value=value, params=params, loss=loss))
    g = GPT_QUICK if o.quick else GPT
    value, params, loss = bench_gpt(g, o.quick)
    results.append(dict(name="gpt train step (AdamW)", unit="tokens/s",
                        config="L%d C%d NH%d T%d B%d V%d" % (g["L"], g["C"], g["NH"], g["T"], g["B"], g["V"]),
                        value=value, params=params, loss=loss))
    # ru_maxrss is in KiB on Linux
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results.append(dict(name="peak RSS", config="VmHWM", unit="MiB", value=rss))
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "quick": o.quick, "results": results}))


if __name__ == "__main__":
    main()
