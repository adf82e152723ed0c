#!/usr/bin/env python3
"""DANN MNIST -> MNIST-M in PyTorch, the recipe of `cargo xtask train --preset paper` written
independently, to tell apart what the recipe gives from what our implementation gives.

The pipeline of pumpikano/tf-dann's TensorFlow 1 MNIST -> MNIST-M notebook: binarised MNIST
(55000 training images) as 3 channels, MNIST-M cropped to 28x28, the per-channel pixel mean of
both training sets subtracted, /255; conv5x5 32, max-pool 2, conv5x5 48, max-pool 2
(--pad same: zero-padded, 2352 features; valid: the paper's 768);
label fc 100-100-10, domain fc 100-2 behind a gradient reversal layer; Glorot-uniform weights,
zero biases; SGD momentum 0.9, lr 0.01 / (1 + 10p)^0.75, lambda 2 / (1 + exp(-10p)) - 1,
32 + 32 images a step. Each argument is one run's settings as JSON; one JSON line per run:

    python3 xtask/peer/dann_torch_reference.py --data target/gpu/dann.npz.xz \\
        '{"seed": 0, "pad": "valid"}' '{"seed": 0, "pad": "same", "half": 64}'

`spikes` counts steps after the 500th whose total loss exceeded 3 (the collapses seen in the
curves). The data file comes from pack_digits.py (--size 28 --binarize-mnist). Needs torch, numpy.
"""
import argparse, io, json, lzma, time
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as Fn

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--data", required=True)
p.add_argument("runs", nargs="+")
args = p.parse_args()
dev = "cuda" if torch.cuda.is_available() else "cpu"
z = np.load(io.BytesIO(lzma.decompress(open(args.data, "rb").read())))
assert bool(z["binarized"]) and z["mnist_m_train"].shape[1] == 28, "pack with --size 28 --binarize-mnist"
mnist = lambda a: np.repeat(np.unpackbits(a, axis=-1)[..., :28][..., None] * 255, 3, -1).astype(np.uint8)
src, src_test = mnist(z["mnist_train"])[:55000], mnist(z["mnist_test"])
tgt, tgt_test = z["mnist_m_train"], z["mnist_m_test"]
mean = np.vstack([src, tgt]).reshape(-1, 3).mean(0).astype(np.float32)
T = lambda a: torch.tensor(((a.astype(np.float32) - mean) / np.float32(255)).transpose(0, 3, 1, 2)).to(dev)
L = lambda a: torch.tensor(a).long().to(dev)
S, SL, ST, STL = T(src), L(z["mnist_train_labels"][:55000]), T(src_test), L(z["mnist_test_labels"])
TG_ALL, TT, TTL = T(tgt), T(tgt_test), L(z["mnist_m_test_labels"])


class Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.lam * g, None


class Net(nn.Module):
    def __init__(self, pad):
        super().__init__()
        p = 2 if pad == "same" else 0
        self.f = nn.Sequential(nn.Conv2d(3, 32, 5, padding=p), nn.ReLU(), nn.MaxPool2d(2, 2),
                               nn.Conv2d(32, 48, 5, padding=p), nn.ReLU(), nn.MaxPool2d(2, 2))
        d = 48 * 7 * 7 if pad == "same" else 48 * 4 * 4
        self.c = nn.Sequential(nn.Linear(d, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))
        self.d = nn.Sequential(nn.Linear(d, 100), nn.ReLU(), nn.Linear(100, 2))

    def forward(self, x, lam=0.0):
        f = self.f(x).flatten(1)
        return self.c(f), self.d(Reverse.apply(f, lam))


def accuracy(net, x, y):
    net.eval()
    with torch.no_grad():
        ok = sum((net(x[i:i + 2000])[0].argmax(1) == y[i:i + 2000]).sum().item() for i in range(0, len(x), 2000))
    net.train()
    return ok / len(x)


def run(seed, pad="valid", half=32, steps=8600, method="dann", lr0=0.01, ntgt=None):
    torch.manual_seed(seed)
    TG = TG_ALL[:ntgt] if ntgt else TG_ALL
    net = Net(pad).to(dev)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    opt = torch.optim.SGD(net.parameters(), lr=lr0, momentum=0.9)
    ps, pt, si, ti, spikes = torch.randperm(len(S), device=dev), torch.randperm(len(TG), device=dev), 0, 0, 0
    domain = torch.cat([torch.zeros(half), torch.ones(half)]).long().to(dev)
    for i in range(steps):
        prog = i / steps
        lam, lr = 2 / (1 + np.exp(-10 * prog)) - 1, lr0 / (1 + 10 * prog) ** 0.75
        for g in opt.param_groups:
            g["lr"] = lr
        if si + half > len(ps):
            ps, si = torch.randperm(len(S), device=dev), 0
        if ti + half > len(pt):
            pt, ti = torch.randperm(len(TG), device=dev), 0
        xs, ys, xt = S[ps[si:si + half]], SL[ps[si:si + half]], TG[pt[ti:ti + half]]
        si, ti = si + half, ti + half
        if method == "dann":
            yl, yd = net(torch.cat([xs, xt]), lam)
            loss = Fn.cross_entropy(yl[:half], ys) + Fn.cross_entropy(yd, domain)
        else:
            loss = Fn.cross_entropy(net(xs)[0], ys)
        spikes += int(loss.item() > 3 and i > 500)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return dict(method=method, seed=seed, pad=pad, half=half, steps=steps, target_train=len(TG),
                source_acc=accuracy(net, ST, STL), target_acc=round(accuracy(net, TT, TTL), 4), spikes=spikes)


for spec in args.runs:
    t = time.time()
    r = run(**json.loads(spec))
    r["seconds"] = round(time.time() - t, 1)
    print(json.dumps(r), flush=True)
