#!/usr/bin/env python3
"""DANN (Ganin & Lempitsky 2015) training-step benchmark in PyTorch, on the CPU or (--device
cuda) on a GPU.

One step = forward of 64 source + 64 target images (random data), label
cross-entropy on the source half, domain cross-entropy on all 128 (through a
gradient reversal layer), backward, SGD(momentum=0.9) update.
Prints one JSON line with images_per_s (128 images per step) and peak_rss_mb (the process's
resident high-water mark, as `cargo xtask bench` reports its own).
On CUDA the clock stops after torch.cuda.synchronize(), and the steps are not synchronised one by
one (the Rust bench reads each step's loss back, which waits for the GPU every step); cuDNN runs
with PyTorch's defaults (benchmark mode off).

A copy of the shared peer-bench tool, with peak_rss_mb added, so that
`cargo xtask bench --against-pytorch PYTHON` can run it from the repository.
"""
import argparse
import json
import os
import resource
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--arch", choices=["mnist", "svhn"], default="mnist")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=64, help="images per domain")
    p.add_argument("--lambda-grl", type=float, default=0.5)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    return p.parse_args()


args = parse_args()
# Thread env must be set before torch is imported.
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.lam * g, None


def mlp(dims):
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i + 2 < len(dims):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DANN(nn.Module):
    def __init__(self, arch):
        super().__init__()
        if arch == "mnist":  # 28x28x3 input
            self.features = nn.Sequential(
                nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 48, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(),
            )
            feat = 48 * 7 * 7
            self.label = mlp([feat, 100, 100, 10])
            self.domain = mlp([feat, 100, 2])
        else:  # svhn, 32x32x3 input; MaxPool2d(3, 2) floor mode: 32 -> 15 -> 7
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(64, 128, 5, padding=2), nn.ReLU(),
                nn.Flatten(),
            )
            feat = 128 * 7 * 7
            self.label = mlp([feat, 3072, 2048, 10])
            self.domain = mlp([feat, 1024, 1024, 2])

    def forward(self, x, n_src, lam):
        f = self.features(x)
        return self.label(f[:n_src]), self.domain(GradReverse.apply(f, lam))


def grl_check(dev):
    x = torch.randn(4, 7, requires_grad=True, device=dev)
    w = torch.randn(4, 7, device=dev)
    (GradReverse.apply(x, 0.37) * w).sum().backward()
    return float((x.grad + 0.37 * w).abs().max())


def main():
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    hw = 28 if args.arch == "mnist" else 32
    n = args.batch
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("dann_torch_bench.py: --device cuda, but torch.cuda.is_available() is False")
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    model = DANN(args.arch).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(2 * n, 3, hw, hw, device=dev)
    ys = torch.arange(n, device=dev) % 10
    yd = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)]).to(dev)
    t0 = time.perf_counter()
    for s in range(args.warmup + args.steps):
        if s == args.warmup:
            sync()
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        lab, dom = model(x, n, args.lambda_grl)
        loss = F.cross_entropy(lab, ys) + F.cross_entropy(dom, yd)
        loss.backward()
        opt.step()
    sync()
    el = time.perf_counter() - t0
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "arch": args.arch, "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "steps": args.steps, "threads": torch.get_num_threads(),
        "images_per_s": round(args.steps * 2 * n / el, 1),
        "ms_per_step": round(el * 1e3 / args.steps, 2),
        "loss": round(loss.item(), 4), "grl_check_max_err": grl_check(dev),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
