#!/usr/bin/python3
"""PyTorch reference for `genlab bench` (lua/genlab/bench.lua).

Run with Debian's PyTorch (python3-torch, written for 1.13):

    /usr/bin/python3 bench/torch_reference.py [--quick] [--threads N]
    /usr/bin/python3 bench/torch_reference.py train-gpt|generate --only NAME \
        [--quick] [--threads N]

The first form is the reference of plain `genlab bench`; the second measures
one model of `genlab bench train-gpt` / `generate` per process (see "nanoGPT"
below), so that the process's peak RSS is that model's. The first form
builds the same models as bench.lua (same shapes, same ops, same
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
    ap.add_argument("mode", nargs="?", default="default", choices=("default", "train-gpt", "generate"),
                    help="default: the models of plain `genlab bench`; train-gpt, generate: one model of "
                         "`genlab bench train-gpt` / `genlab bench generate` (with --only)")
    ap.add_argument("--only", help="train-gpt, generate: the model to measure (nanogpt, baby, char, baby-char)")
    return ap.parse_args()


def timed(fn, min_time, min_reps, warm=None):
    """Seconds per call of fn: one warm-up call (of warm, else fn), then
    calls until min_time seconds and min_reps calls have passed (bench.lua's
    time()). Also returns the CPU seconds per wall second from the warm-up on."""
    w0, c0 = time.perf_counter(), time.process_time()
    (warm or fn)()
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        elapsed = time.perf_counter() - t0
        if reps >= min_reps and elapsed >= min_time:
            return elapsed / reps, (time.process_time() - c0) / (time.perf_counter() - w0)


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
    s, _ = timed(lambda: torch.matmul(a, b), 0.05 if quick else 0.5, 1 if quick else 3)
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
    s, _ = timed(step, 0.1 if quick else 2, 1 if quick else 10)
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
    s, _ = timed(step, 0.1 if quick else 3, 1 if quick else 10)
    return cfg["B"] * cfg["T"] / s, sum(t.numel() for t in flat), first[0]


def start_torch(threads, script):
    """Imports torch with `threads` threads in one pool (the thread variables
    are set before OpenBLAS and OpenMP start) and seeds it; returns (torch,
    torch.nn.functional). Exits with the JSON error line and status 3 when
    PyTorch cannot be imported."""
    if threads < 1:
        sys.exit("%s: --threads needs a positive integer" % script)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        import torch
        import torch.nn.functional as functional
    except ImportError as e:
        print(json.dumps({"error": "PyTorch not importable: " + str(e).replace('"', "'")}))
        sys.exit(3)
    torch.set_num_threads(threads)
    torch.manual_seed(1337)
    return torch, functional


def main():
    o = parse()
    if o.mode != "default":
        return main_gpt(o)
    global torch, F
    torch, F = start_torch(o.threads, "torch_reference.py")

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


# ---- nanoGPT: `genlab bench train-gpt` and `genlab bench generate` ---------------------
#
# One model per process (--only NAME), so that the peak RSS is that model's.
# The model is nanoGPT's model.py written out (torch 1.13 has no fused
# attention: the manual path with masked_fill + softmax, as nanoGPT takes on
# it), GPT-2 layout: biases, exact GELU, the head tied to the token embedding,
# N(0, 0.02) weights with the residual projections scaled by 1/sqrt(2 L).
# The training step is nanoGPT's train.py loop on a fixed random batch:
# forward + loss, backward, clip_grad_norm_(1.0), AdamW (lr 1e-3, betas
# 0.9/0.99, weight decay 0.1 on 2-D parameters only), zero_grad. Sizes and
# timings mirror GPT_TRAIN / GPT_GENERATE in lua/genlab/bench.lua.

GPT_MODELS = {
    "nanogpt": dict(n_layer=4, n_head=4, n_embd=128, block=64, batch=12, vocab=65, dropout=0.0),
    "baby": dict(n_layer=6, n_head=6, n_embd=384, block=256, batch=64, vocab=65, dropout=0.2),
}
GPT_TINY = dict(n_layer=2, n_head=2, n_embd=32, block=16, batch=4, vocab=65, dropout=0.0)  # --quick
# train-gpt: (min seconds, min steps) after one warm-up step
TRAIN_TIMING = {"nanogpt": (3.0, 10), "baby": (0.0, 2)}
# generate: model name -> (train-gpt config, tokens to generate)
GENERATE_MODELS = {"char": ("nanogpt", 256), "baby-char": ("baby", 256)}
GENERATE_TINY_TOKENS = 40  # --quick: past the tiny block of 16, so the context slides


def gpt_config_str(c):
    return "L%d NH%d C%d T%d B%d V%d dropout %g" % (c["n_layer"], c["n_head"], c["n_embd"], c["block"],
                                                    c["batch"], c["vocab"], c["dropout"])


def make_gpt(c):
    nn = torch.nn
    C, NH, T, p = c["n_embd"], c["n_head"], c["block"], c["dropout"]

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)
            self.attn_dropout = nn.Dropout(p)
            self.resid_dropout = nn.Dropout(p)
            self.register_buffer("bias", torch.tril(torch.ones(T, T)).view(1, 1, T, T))

        def forward(self, x):
            B, T, _ = x.size()
            q, k, v = self.c_attn(x).split(C, dim=2)
            k = k.view(B, T, NH, C // NH).transpose(1, 2)  # [B, NH, T, HS]
            q = q.view(B, T, NH, C // NH).transpose(1, 2)
            v = v.view(B, T, NH, C // NH).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = self.attn_dropout(F.softmax(att, dim=-1))
            y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
            return self.resid_dropout(self.c_proj(y))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(C, 4 * C)
            self.gelu = nn.GELU()
            self.c_proj = nn.Linear(4 * C, C)
            self.dropout = nn.Dropout(p)

        def forward(self, x):
            return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C)
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(C)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(c["vocab"], C), wpe=nn.Embedding(T, C), drop=nn.Dropout(p),
                h=nn.ModuleList([Block() for _ in range(c["n_layer"])]), ln_f=nn.LayerNorm(C)))
            self.lm_head = nn.Linear(C, c["vocab"], bias=False)
            self.transformer.wte.weight = self.lm_head.weight  # tied, as nanoGPT
            self.apply(self._init_weights)
            for pn, prm in self.named_parameters():
                if pn.endswith("c_proj.weight"):
                    torch.nn.init.normal_(prm, mean=0.0, std=0.02 / math.sqrt(2 * c["n_layer"]))

        def _init_weights(self, module):
            if isinstance(module, (nn.Linear, nn.Embedding)):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    torch.nn.init.zeros_(module.bias)

        def forward(self, idx, targets):
            _, t = idx.size()
            pos = torch.arange(0, t, dtype=torch.long)
            x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
            for block in self.transformer.h:
                x = block(x)
            logits = self.lm_head(self.transformer.ln_f(x))
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
            return logits, loss

    return GPT()


def peak_rss_mib():
    """VmHWM of this process (what bench.lua and bench_images.lua read), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_train_gpt(name, quick):
    c = GPT_TINY if quick else GPT_MODELS[name]
    model = make_gpt(c)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))
    B, T, V = c["batch"], c["block"], c["vocab"]
    x, y = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))
    first = [None]

    def step():
        _, loss = model(x, y)
        if first[0] is None:
            first[0] = loss.item()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    min_time, min_reps = (0.1, 1) if quick else TRAIN_TIMING[name]
    s, cpu = timed(step, min_time, min_reps)
    params = sum(p.numel() for p in model.parameters())  # the tied head once
    n = params - model.transformer.wpe.weight.numel()  # nanoGPT's estimate_mfu: no position embeddings
    flops = (6 * n + 12 * c["n_layer"] * c["n_embd"] * T) * T * B
    return dict(name=name, config=gpt_config_str(c), ms=s * 1e3, value=B * T / s, params=params,
                loss=first[0], flops=flops, cpu=cpu)


def generate_gpt(model, c, n_new):
    """gl.generate's loop (lua/genlab/generate.lua) with a hand-written KV
    cache: prompt [0], temperature 1, no filters; when the cache is full it is
    reset and refilled with the last capacity // 2 tokens."""
    L, NH, C, cap = c["n_layer"], c["n_head"], c["n_embd"], c["block"]
    HS = C // NH
    keep = max(1, cap // 2)
    kc, vc = torch.zeros(L, NH, cap, HS), torch.zeros(L, NH, cap, HS)
    tr = model.transformer
    length = [0]

    def append(ids):  # -> logits [V] of the last of ids
        p, n = length[0], len(ids)
        x = tr.wte(torch.tensor(ids)) + tr.wpe.weight[p:p + n]  # [n, C]
        mask = torch.ones(n, p + n).tril(p) == 0 if n > 1 else None
        for l, blk in enumerate(tr.h):
            q, k, v = blk.attn.c_attn(blk.ln_1(x)).split(C, dim=1)
            kc[l, :, p:p + n] = k.view(n, NH, HS).transpose(0, 1)
            vc[l, :, p:p + n] = v.view(n, NH, HS).transpose(0, 1)
            att = (q.view(n, NH, HS).transpose(0, 1) @ kc[l, :, :p + n].transpose(-2, -1)) * (1.0 / math.sqrt(HS))
            if mask is not None:
                att = att.masked_fill(mask, float("-inf"))
            y = (F.softmax(att, dim=-1) @ vc[l, :, :p + n]).transpose(0, 1).reshape(n, C)
            x = x + blk.attn.c_proj(y)
            x = x + blk.mlp(blk.ln_2(x))
        length[0] = p + n
        return model.lm_head(tr.ln_f(x[-1]))

    ctx = [0]
    logits = append(ctx)
    for step in range(1, n_new + 1):
        ctx.append(torch.multinomial(F.softmax(logits, dim=-1), 1).item())
        if step == n_new:
            break
        if length[0] >= cap:
            length[0] = 0
            logits = append(ctx[-keep:])
        else:
            logits = append(ctx[-1:])
    return len(ctx) - 1


def bench_generate(name, quick):
    base, n_new = GENERATE_MODELS[name]
    c = GPT_TINY if quick else GPT_MODELS[base]
    if quick:
        n_new = GENERATE_TINY_TOKENS
    model = make_gpt(c)
    model.eval()
    with torch.inference_mode():
        s, cpu = timed(lambda: generate_gpt(model, c, n_new), 0.05 if quick else 1.0, 1)
    return dict(name=name, config="%s, %d tokens" % (gpt_config_str(c), n_new), ms=s * 1e3, value=n_new / s,
                params=sum(p.numel() for p in model.parameters()),
                cpu=cpu)


def main_gpt(o):
    """train-gpt / generate: one model (--only), one JSON line like main()'s,
    each result with ms (per step or per generation), value (tokens/s),
    params, [loss, flops (per step)], cpu (CPU seconds per wall second while
    measuring) and rss_mib (this process's peak)."""
    table = GPT_MODELS if o.mode == "train-gpt" else GENERATE_MODELS
    if o.only not in table:
        sys.exit("torch_reference.py: %s needs --only %s" % (o.mode, " | ".join(sorted(table))))
    global torch, F
    torch, F = start_torch(o.threads, "torch_reference.py")
    r = (bench_train_gpt if o.mode == "train-gpt" else bench_generate)(o.only, o.quick)
    r["rss_mib"] = peak_rss_mib()
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "quick": o.quick,
                      "results": [r]}))


if __name__ == "__main__":
    main()
