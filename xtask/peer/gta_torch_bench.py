#!/usr/bin/env python3
"""Generate To Adapt (Sankaranarayanan et al. 2018) training-step benchmark in PyTorch on CPU.

The reference for `adapt_train::gta::GtaTrainer::step`, with the same networks (the authors'
netF, netC, netG, netD for 32x32x3 digits: ndf = ngf = 64, nz = 512, 10 classes) and the same
work per iteration: one Adam per network (lr 5e-4, beta1 0.8), updates in the order D, G, C, F,
each loss evaluated with the current parameters, networks that a loss does not update frozen
(no parameter gradients), D on images in [-1, 1], the authors' lr decay on D, F and C.

One step = --batch source + --batch target images (random data). Prints one JSON line with
images_per_s (2 * batch images per step) and peak_rss_mb (the process's resident high-water mark).
"""
import argparse
import json
import os
import resource
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=100, help="images per domain")
    p.add_argument("--variant", choices=["stream1", "c1", "full"], default="full")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: the clock stops after torch.cuda.synchronize()")
    return p.parse_args()


args = parse_args()
# Thread env must be set before torch is imported.
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

NDF, NGF, NZ, NCLASSES = 64, 64, 512, 10


class NetF(nn.Module):
    def __init__(self):
        super().__init__()
        self.feature = nn.Sequential(
            nn.Conv2d(3, NDF, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(NDF, NDF, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(NDF, 2 * NDF, 5), nn.ReLU(),
        )

    def forward(self, x):
        return self.feature(x).view(-1, 2 * NDF)


class NetC(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(nn.Linear(2 * NDF, 2 * NDF), nn.ReLU(), nn.Linear(2 * NDF, NCLASSES))

    def forward(self, x):
        return self.main(x)


class NetG(nn.Module):
    def __init__(self):
        super().__init__()
        nin = 2 * NDF + NZ + NCLASSES + 1
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nin, NGF * 8, 2, 1, 0, bias=False), nn.BatchNorm2d(NGF * 8), nn.ReLU(),
            nn.ConvTranspose2d(NGF * 8, NGF * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF * 4), nn.ReLU(),
            nn.ConvTranspose2d(NGF * 4, NGF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF * 2), nn.ReLU(),
            nn.ConvTranspose2d(NGF * 2, NGF, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF), nn.ReLU(),
            nn.ConvTranspose2d(NGF, 3, 4, 2, 1, bias=False), nn.Tanh(),
        )

    def forward(self, x):
        return self.main(x.view(x.size(0), -1, 1, 1))


class NetD(nn.Module):
    def __init__(self):
        super().__init__()
        def block(i, o, pool):
            return [nn.Conv2d(i, o, 3, 1, 1), nn.BatchNorm2d(o), nn.LeakyReLU(0.2), nn.MaxPool2d(pool, pool)]
        self.feature = nn.Sequential(
            *block(3, NDF, 2), *block(NDF, 2 * NDF, 2), *block(2 * NDF, 4 * NDF, 2), *block(4 * NDF, 2 * NDF, 4)
        )
        self.real_fake = nn.Linear(2 * NDF, 1)  # logits; the sigmoid is in the loss
        self.cls = nn.Linear(2 * NDF, NCLASSES)

    def forward(self, x):
        f = self.feature(x).view(-1, 2 * NDF)
        return self.real_fake(f).view(-1), self.cls(f)


def weights_init(m):
    name = m.__class__.__name__
    if "Conv" in name:
        m.weight.data.normal_(0.0, 0.02)
    elif "BatchNorm" in name:
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)


def frozen(*nets, trainable=None):
    """Only `trainable`'s parameters require gradients."""
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(net is trainable)


def main():
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n = args.batch
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gta_torch_bench.py: --device cuda, but torch.cuda.is_available() is False")
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    netF, netC, netG, netD = NetF(), NetC(), NetG(), NetD()
    for net in (netF, netG, netD):
        net.apply(weights_init)
    for net in (netF, netC, netG, netD):
        net.to(dev)
    nets = (netF, netC, netG, netD)
    adam = lambda net: torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.8, 0.999))  # noqa: E731
    optF, optC, optG, optD = adam(netF), adam(netC), adam(netG), adam(netD)
    xs = torch.rand(n, 3, 32, 32, device=dev)
    xt = torch.rand(n, 3, 32, 32, device=dev)
    ys = torch.arange(n, device=dev) % NCLASSES
    code_s = F.one_hot(ys, NCLASSES + 1).float()
    code_t = F.one_hot(torch.full((n,), NCLASSES, device=dev), NCLASSES + 1).float()
    real_d = xs * 2 - 1  # [0, 1] pixels to D's [-1, 1]
    adversarial, aux = args.variant != "stream1", args.variant == "full"
    bce = F.binary_cross_entropy_with_logits
    ones, zeros = torch.ones(n, device=dev), torch.zeros(n, device=dev)

    def step(it):
        # requires_grad is read at forward time: each forward runs with its network's flags.
        frozen(*nets, trainable=netF)
        e_s = netF(xs)
        e_t = netF(xt) if adversarial else None
        frozen(*nets, trainable=netC)
        c_logits = netC(e_s.detach())
        if adversarial:
            z_s, z_t = torch.randn(n, NZ, device=dev), torch.randn(n, NZ, device=dev)
            # D
            frozen(*nets, trainable=netG)
            gen_s = netG(torch.cat([e_s.detach(), z_s, code_s], 1))
            with torch.no_grad():
                gen_t = netG(torch.cat([e_t.detach(), z_t, code_t], 1))
            frozen(*nets, trainable=netD)
            rf_r, cls_r = netD(real_d)
            rf_fs, _ = netD(gen_s.detach())
            rf_ft, _ = netD(gen_t)
            loss_d = bce(rf_r, ones) + bce(rf_fs, zeros) + bce(rf_ft, zeros)
            if aux:
                loss_d = loss_d + F.cross_entropy(cls_r, ys)
            optD.zero_grad(set_to_none=True)
            loss_d.backward()
            optD.step()
            # G
            frozen(*nets, trainable=netG)
            rf, cls = netD(gen_s)
            loss_g = bce(rf, ones) + (F.cross_entropy(cls, ys) if aux else 0)
            optG.zero_grad(set_to_none=True)
            loss_g.backward()
            optG.step()
        # C
        frozen(*nets, trainable=netC)
        loss_c = F.cross_entropy(c_logits, ys)
        optC.zero_grad(set_to_none=True)
        loss_c.backward()
        optC.step()
        # F
        frozen(*nets, trainable=netF)
        loss_f = F.cross_entropy(netC(e_s), ys)
        if adversarial:
            rf_t, _ = netD(netG(torch.cat([e_t, z_t, code_t], 1)))
            loss_f = loss_f + 0.1 * 0.3 * bce(rf_t, ones)
            if aux:
                _, cls_s = netD(netG(torch.cat([e_s, z_s, code_s], 1)))
                loss_f = loss_f + 0.1 * F.cross_entropy(cls_s, ys)
        optF.zero_grad(set_to_none=True)
        loss_f.backward()
        optF.step()
        lr = 5e-4 / (1 + 1e-4 * (it + 1))
        for opt in (optD, optF, optC):
            for g in opt.param_groups:
                g["lr"] = lr
        return loss_c.item(), loss_f.item()

    t0 = time.perf_counter()
    for s in range(args.warmup + args.steps):
        if s == args.warmup:
            sync()
            t0 = time.perf_counter()
        loss_c, loss_f = step(s)
    sync()
    el = time.perf_counter() - t0
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "method": f"gta-{args.variant}",
        "batch": n, "steps": args.steps, "threads": torch.get_num_threads(), "device": args.device,
        "images_per_s": round(args.steps * 2 * n / el, 1),
        "ms_per_step": round(el * 1e3 / args.steps, 2),
        "loss_c": round(loss_c, 4), "loss_f": round(loss_f, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
