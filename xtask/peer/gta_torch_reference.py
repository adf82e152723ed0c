#!/usr/bin/env python3
"""Generate To Adapt MNIST -> MNIST-M in PyTorch as the authors' code trains it, written
independently of `cargo xtask ablation gta`, to tell apart what the recipe gives from what our
implementation gives: the authors' netF / netC / netG / netD, N(0, 0.02) conv init and N(1, 0.02)
BatchNorm weights, one Adam per network (lr 5e-4, beta1 0.8), updates in the order D, G, C, F,
adv_weight 0.1, alpha 0.3, lr decay lr / (1 + 1e-4 iter) on D, F and C, batch 100 + 100, inputs
(p - 0.5) / 0.5. F's update goes through the already-updated C, G and D (as ours does).

    python3 xtask/peer/gta_torch_reference.py --data target/gpu/gta.npz.xz --out DIR 3000 stream1,c1,full 0,1,2

prints one JSON line every 250 iterations (source / target test accuracy, last losses) and saves
DIR/grid_VARIANT_SEED.png: rows of source test images, G from their embeddings, target test
images, G from theirs. The data file comes from pack_digits.py --size 32 (plain MNIST).
Needs torch, numpy, pillow.
"""
import argparse, io, json, lzma, os, time
import numpy as np, torch, torch.nn as nn
from PIL import Image

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--data", required=True)
ap.add_argument("--out", default=".")
ap.add_argument("steps", type=int)
ap.add_argument("variants")
ap.add_argument("seeds")
args = ap.parse_args()
dev = "cuda" if torch.cuda.is_available() else "cpu"
d = np.load(io.BytesIO(lzma.decompress(open(args.data, "rb").read())))
assert not bool(d["binarized"]) and d["mnist_m_train"].shape[1] == 32, "pack with --size 32, without --binarize-mnist"


def mnist32(x):
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    return torch.tensor(np.repeat(x[:, None], 3, 1), dtype=torch.float32) / 255.0


src_x, src_y = mnist32(d["mnist_train"]).to(dev), torch.tensor(d["mnist_train_labels"], dtype=torch.long).to(dev)
src_tx, src_ty = mnist32(d["mnist_test"]).to(dev), torch.tensor(d["mnist_test_labels"], dtype=torch.long).to(dev)
tgt_x = (torch.tensor(d["mnist_m_train"]).permute(0, 3, 1, 2).float() / 255.0).to(dev)
tgt_tx = (torch.tensor(d["mnist_m_test"]).permute(0, 3, 1, 2).float() / 255.0).to(dev)
tgt_ty = torch.tensor(d["mnist_m_test_labels"], dtype=torch.long).to(dev)
MEAN, STD = 0.5, 0.5
norm = lambda p: (p-MEAN)/STD
ndf, ngf, nz, nc = 64, 64, 512, 10
class NetF(nn.Module):
    def __init__(s):
        super().__init__(); s.f = nn.Sequential(nn.Conv2d(3,ndf,5),nn.ReLU(True),nn.MaxPool2d(2,2),nn.Conv2d(ndf,ndf,5),nn.ReLU(True),nn.MaxPool2d(2,2),nn.Conv2d(ndf,2*ndf,5),nn.ReLU(True))
    def forward(s,x): return s.f(x).view(-1,2*ndf)
class NetC(nn.Module):
    def __init__(s): super().__init__(); s.m = nn.Sequential(nn.Linear(2*ndf,2*ndf),nn.ReLU(True),nn.Linear(2*ndf,nc))
    def forward(s,x): return s.m(x)
class NetG(nn.Module):
    def __init__(s):
        super().__init__()
        s.m = nn.Sequential(nn.ConvTranspose2d(nz+2*ndf+nc+1,ngf*8,2,1,0,bias=False),nn.BatchNorm2d(ngf*8),nn.ReLU(True),
            nn.ConvTranspose2d(ngf*8,ngf*4,4,2,1,bias=False),nn.BatchNorm2d(ngf*4),nn.ReLU(True),
            nn.ConvTranspose2d(ngf*4,ngf*2,4,2,1,bias=False),nn.BatchNorm2d(ngf*2),nn.ReLU(True),
            nn.ConvTranspose2d(ngf*2,ngf,4,2,1,bias=False),nn.BatchNorm2d(ngf),nn.ReLU(True),
            nn.ConvTranspose2d(ngf,3,4,2,1,bias=False),nn.Tanh())
    def forward(s,x,z=None):
        if z is None: z = torch.randn(x.shape[0], nz, 1, 1, device=x.device)
        return s.m(torch.cat([x.view(x.shape[0],-1,1,1), z],1))
class NetD(nn.Module):
    def __init__(s):
        super().__init__()
        b = lambda i,o,p: [nn.Conv2d(i,o,3,1,1),nn.BatchNorm2d(o),nn.LeakyReLU(0.2,True),nn.MaxPool2d(p,p)]
        s.f = nn.Sequential(*b(3,ndf,2),*b(ndf,2*ndf,2),*b(2*ndf,4*ndf,2),*b(4*ndf,2*ndf,4))
        s.c = nn.Linear(2*ndf,nc); s.s = nn.Linear(2*ndf,1)
    def forward(s,x):
        h = s.f(x).view(-1,2*ndf); return s.s(h).view(-1), s.c(h)
def winit(m):
    n = m.__class__.__name__
    if 'Conv' in n: m.weight.data.normal_(0.0,0.02)
    elif 'BatchNorm' in n: m.weight.data.normal_(1.0,0.02); m.bias.data.fill_(0)
def evaluate(F,C,x,y):
    F.eval(); C.eval(); ok=0
    with torch.no_grad():
        for i in range(0,len(x),1000): ok += (C(F(norm(x[i:i+1000]))).argmax(1)==y[i:i+1000]).sum().item()
    F.train(); C.train(); return ok/len(x)
def run(variant, steps, seed, bs=100, lr=5e-4, beta1=0.8, adv=0.1, alpha=0.3, lrd=1e-4, every=250, grid=None):
    torch.manual_seed(seed); np.random.seed(seed)
    F,C,G,D = NetF().to(dev),NetC().to(dev),NetG().to(dev),NetD().to(dev)
    for m in (F,C,G,D): m.apply(winit)
    oD,oG,oF,oC = [torch.optim.Adam(m.parameters(),lr=lr,betas=(beta1,0.999)) for m in (D,G,F,C)]
    bce = nn.BCEWithLogitsLoss(); ce = nn.CrossEntropyLoss()
    ps = torch.randperm(len(src_x),device=dev); pt = torch.randperm(len(tgt_x),device=dev); si=ti=0
    log=[]
    for it in range(steps):
        if si+bs>len(ps): ps=torch.randperm(len(src_x),device=dev); si=0
        if ti+bs>len(pt): pt=torch.randperm(len(tgt_x),device=dev); ti=0
        xs, ys = src_x[ps[si:si+bs]], src_y[ps[si:si+bs]]; xt = tgt_x[pt[ti:ti+bs]]; si+=bs; ti+=bs
        xs_n, xt_n = norm(xs), norm(xt); real = (xs-0.5)*2
        src_emb = F(xs_n); losses={}
        if variant != 'stream1':
            ls = torch.zeros(bs, nc+1, device=dev); ls[torch.arange(bs),ys]=1
            lt = torch.zeros(bs, nc+1, device=dev); lt[:,nc]=1
            tgt_emb = F(xt_n)
            zs = torch.randn(bs,nz,1,1,device=dev); zt = torch.randn(bs,nz,1,1,device=dev)
            src_gen = G(torch.cat([ls, src_emb.detach()],1), zs); tgt_gen = G(torch.cat([lt, tgt_emb.detach()],1), zt)
            # D
            oD.zero_grad()
            rs, rc = D(real); fs,_ = D(src_gen.detach()); ft,_ = D(tgt_gen.detach())
            errD = bce(rs, torch.ones_like(rs)) + bce(fs, torch.zeros_like(fs)) + bce(ft, torch.zeros_like(ft))
            if variant == 'full': errD = errD + ce(rc, ys)
            errD.backward(); oD.step(); losses['D']=errD.item()
            # G
            oG.zero_grad()
            fs, fc = D(src_gen)
            errG = bce(fs, torch.ones_like(fs)) + (ce(fc, ys) if variant=='full' else 0)
            errG.backward(retain_graph=True); oG.step(); losses['G']=errG.item()
        # C
        oC.zero_grad(); errC = ce(C(src_emb.detach()), ys); errC.backward(); oC.step(); losses['C']=errC.item()
        # F
        oF.zero_grad(); errF = ce(C(src_emb), ys)
        if variant != 'stream1':
            fs, fc = D(G(torch.cat([ls, src_emb],1), zs)); ft,_ = D(G(torch.cat([lt, tgt_emb],1), zt))
            if variant=='full': errF = errF + adv*ce(fc, ys)
            errF = errF + adv*alpha*bce(ft, torch.ones_like(ft))
        errF.backward(); oF.step()
        for m in (C,G,D):
            for p in m.parameters(): p.grad=None; losses['F']=errF.item()
        for o in (oD,oF,oC):
            for g in o.param_groups: g['lr'] = lr/(1+lrd*(it+1))
        if (it+1)%every==0 or it+1==steps:
            r = dict(variant=variant, seed=seed, it=it+1, src=evaluate(F,C,src_tx,src_ty), tgt=evaluate(F,C,tgt_tx,tgt_ty), **{k:round(v,3) for k,v in losses.items()})
            print(json.dumps(r), flush=True); log.append(r)
    if grid and variant!='stream1':
        G.eval(); F.eval()
        with torch.no_grad():
            xs = src_tx[:20]; xt = tgt_tx[:20]
            ls = torch.zeros(20, nc+1, device=dev); ls[torch.arange(20), src_ty[:20]]=1
            lt = torch.zeros(20, nc+1, device=dev); lt[:,nc]=1
            gs = G(torch.cat([ls, F(norm(xs))],1)); gt = G(torch.cat([lt, F(norm(xt))],1))
        img = torch.cat([xs*2-1, gs, xt*2-1, gt],0).clamp(-1,1).add(1).mul(127.5).byte().cpu()
        img = img.view(4,20,3,32,32).permute(0,3,1,4,2).reshape(4*32,20*32,3).numpy()
        Image.fromarray(img).save(grid)
    return log
for s in [int(v) for v in args.seeds.split(",")]:
    for v in args.variants.split(","):
        t = time.time()
        run(v, args.steps, s, grid=os.path.join(args.out, f"grid_{v}_{s}.png"))
        print(json.dumps(dict(variant=v, seed=s, seconds=round(time.time() - t, 1))), flush=True)
