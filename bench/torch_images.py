#!/usr/bin/python3
"""PyTorch reference for `genlab bench images` (lua/genlab/bench_images.lua).

Run with Debian's PyTorch (python3-torch, written for 1.13):

    /usr/bin/python3 bench/torch_images.py --only vae|dcgan|unet|ddim [--quick] [--threads N]

One model per process, so that the process's peak RSS is that model's. The
networks are those of the golden-fixture scripts, imported from
tests/fixtures (the same layers, shapes and parameter names as genlab's):
make_gen_fixtures.py's MlpVAE and dcgan_nets, make_diffusion_fixtures.py's
UNet and DDIM step. Each training step does what genlab's does, on fixed
random 28x28 grey images:

  vae    the seed's MLP VAE (784-400-20), batch 128: forward with a fresh
         reparameterization draw, BCE summed + KL, backward, Adam 1e-3
         (vae:loss in lua/genlab/vae.lua)
  dcgan  the 28x28 DCGAN (nz 100, ngf = ndf = 64, DCGAN's init), batch 64 of
         real images, relativistic average least-squares losses: D on real
         and on detached fake, D's Adam step, then D on real again (recorded,
         detached) and on fake for G's loss and Adam step (dcgan:step in
         lua/genlab/gan.lua); Adam 1e-4, betas 0.5/0.999
  unet   the class-conditional UNet of examples/diffusion.lua (base 32,
         mults 1 2 2, attention at 7x7, 10 classes, 8 groups), batch 64:
         DDPM loss at a uniform timestep per image (linear schedule, 1000
         steps) with labels dropped to the null class with probability 0.1,
         backward, Adam 1e-3 (ddpm:loss in lua/genlab/diffusion.lua)
  ddim   the same UNet in eval mode without gradients: 16 images, 50 DDIM
         steps (eta 0, "leading" spacing), classifier-free guidance 3 with
         the conditional and unconditional halves in one batch of 32
         (ddim:sample)

Timing as bench.lua's: one warm-up, then calls until a minimum wall time
and a minimum number of calls (ddim: a 2-step sampling warms up, then one
full sampling is timed). Sizes and timings mirror MODELS in
bench_images.lua; --quick uses its tiny sizes.

It prints one JSON line: {"torch": version, "threads": N, "quick": bool,
"results": [{"name", "config", "ms", "value", "params", "loss", "cpu",
"rss_mib"}]}: ms per step (per sampling for ddim), value images/s, loss of
the first step (per image for the VAE, D's loss for the DCGAN, the MSE for
the UNet), cpu = CPU seconds per wall second while measured. With PyTorch
missing: {"error": why}, exit status 3.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")
sys.path.insert(0, HERE)
from torch_reference import peak_rss_mib, start_torch, timed  # noqa: E402  (imports no torch)

UNET = dict(channels=1, size=28, base=32, mults=[1, 2, 2], blocks=1, attn_res=[7], time_dim=128, num_classes=10,
            groups=8, heads=1)
UNET_TINY = dict(UNET, base=8, time_dim=32, groups=2)
# name -> full size, --quick size, (min seconds, min calls); mirrors MODELS in bench_images.lua
MODELS = {
    "vae": (dict(batch=128), dict(batch=16), (2.0, 10)),
    "dcgan": (dict(batch=64, ngf=64, ndf=64), dict(batch=8, ngf=8, ndf=8), (3.0, 3)),
    "unet": (dict(batch=64, unet=UNET), dict(batch=4, unet=UNET_TINY), (3.0, 3)),
    "ddim": (dict(n=16, steps=50, unet=UNET), dict(n=4, steps=5, unet=UNET_TINY), (0.0, 1)),
}
QUICK_TIMING = (0.05, 1)


def parse():
    ap = argparse.ArgumentParser(description="PyTorch reference for genlab bench images")
    ap.add_argument("--only", required=True, choices=sorted(MODELS), help="the model to measure")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and short timings")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads")
    return ap.parse_args()


def unet_config_str(u):
    return "base %d, mults %s, attn %s, %d classes" % (u["base"], "-".join(map(str, u["mults"])),
                                                       ",".join(map(str, u["attn_res"])), u["num_classes"])


def bench_vae(c, timing):
    from make_gen_fixtures import MlpVAE
    model = MlpVAE(784, 400, 20)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    B = c["batch"]
    x = torch.rand(B, 1, 28, 28)
    first = []

    def step():
        opt.zero_grad(set_to_none=True)
        mu, logvar = model.encode(x)
        recon = model.decode(mu + torch.randn_like(mu) * torch.exp(0.5 * logvar), x.shape)
        loss = F.binary_cross_entropy(recon, x, reduction="sum") - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        loss.backward()
        opt.step()
        if not first:
            first.append(loss.item() / B)

    s = timed(step, *timing)
    return model, "784-400-20 B%d, Adam" % B, s, B, first[0]


def dcgan_init(net):
    """DCGAN's weights_init, as gl.models.dcgan draws its weights."""
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight, 1.0, 0.02)
            torch.nn.init.zeros_(m.bias)


def bench_dcgan(c, timing):
    from make_gen_fixtures import dcgan_nets, ragan_ls
    G, D = dcgan_nets(28, 100, c["ngf"], c["ndf"], 1)
    dcgan_init(G)
    dcgan_init(D)
    G.train()
    D.train()
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.999))
    B = c["batch"]
    real = torch.rand(B, 1, 28, 28) * 2 - 1
    first = []

    def step():
        fake = G(torch.randn(B, 100, 1, 1))
        opt_d.zero_grad(set_to_none=True)
        r, f = D(real).reshape(-1), D(fake.detach()).reshape(-1)
        loss_d, _ = ragan_ls(r, f)
        loss_d.backward()
        opt_d.step()
        rd, fd = r.detach(), f.detach()
        stats = (loss_d.item(), torch.sigmoid(rd - fd.mean()).mean().item(), torch.sigmoid(fd - rd.mean()).mean().item())
        opt_g.zero_grad(set_to_none=True)
        _, loss_g = ragan_ls(D(real).reshape(-1).detach(), D(fake).reshape(-1))
        loss_g.backward()
        opt_g.step()
        loss_g.item()
        if not first:
            first.append(stats[0])

    s = timed(step, *timing)
    model = torch.nn.ModuleDict(dict(G=G, D=D))
    return model, "ngf %d ndf %d B%d, RaLSGAN" % (c["ngf"], c["ndf"], B), s, B, first[0]


def make_unet(u):
    from make_diffusion_fixtures import UNet
    return UNet(**u)


def bench_unet(c, timing):
    from make_diffusion_fixtures import alphas_cumprod
    model = make_unet(c["unet"])
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    acp = alphas_cumprod("linear").float()
    B, null = c["batch"], c["unet"]["num_classes"]
    x0 = torch.rand(B, 1, 28, 28) * 2 - 1
    labels = torch.randint(0, 10, (B,))
    first = []

    def step():
        opt.zero_grad(set_to_none=True)
        t = torch.randint(0, 1000, (B,))
        noise = torch.randn_like(x0)
        ab = acp[t].view(B, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        lab = torch.where(torch.rand(B) < 0.1, torch.full_like(labels, null), labels)
        loss = F.mse_loss(model(xt, t.float(), lab), noise)
        loss.backward()
        opt.step()
        if not first:
            first.append(loss.item())

    s = timed(step, *timing)
    return model, "%s B%d, Adam" % (unet_config_str(c["unet"]), B), s, B, first[0]


def bench_ddim(c, timing):
    from make_diffusion_fixtures import alphas_cumprod, x0_estimate
    model = make_unet(c["unet"])
    model.eval()
    acp = alphas_cumprod("linear")
    n, null = c["n"], c["unet"]["num_classes"]
    labels = torch.arange(n) % 10
    both = torch.cat([labels, torch.full_like(labels, null)])

    def sample(steps):
        r = 1000 // steps
        x = torch.randn(n, 1, 28, 28)
        for i in range(steps - 1, -1, -1):
            t = i * r
            out = model(torch.cat([x, x]), torch.full((2 * n,), float(t)), both)
            cond, uncond = out[:n], out[n:]
            eps = uncond + (cond - uncond) * 3.0
            ab_t, ab_prev = acp[t].item(), acp[t - r].item() if t - r >= 0 else 1.0
            x = x0_estimate(x, eps, ab_t) * ab_prev ** 0.5 + eps * (1 - ab_prev) ** 0.5  # eta 0
        return x

    with torch.no_grad():
        s = timed(lambda: sample(c["steps"]), *timing, warm=lambda: sample(2))
    return model, "%s, %d images x %d steps, guidance 3" % (unet_config_str(c["unet"]), n, c["steps"]), s, n, None


def main():
    o = parse()
    global torch, F
    torch, F = start_torch(o.threads, "torch_images.py")
    sys.path.insert(0, FIXTURES)
    full, tiny, timing = MODELS[o.only]
    bench = {"vae": bench_vae, "dcgan": bench_dcgan, "unet": bench_unet, "ddim": bench_ddim}[o.only]
    model, config, (s, cpu), images, loss = bench(tiny if o.quick else full, QUICK_TIMING if o.quick else timing)
    r = dict(name=o.only, config=config, ms=s * 1e3, value=images / s,
             params=sum(p.numel() for p in model.parameters()), cpu=cpu, rss_mib=peak_rss_mib())
    if loss is not None:
        r["loss"] = loss
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "quick": o.quick,
                      "results": [r]}))


if __name__ == "__main__":
    main()
