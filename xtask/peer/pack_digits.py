#!/usr/bin/env python3
"""Packs MNIST and MNIST-M from $ADAPT_DATA_DIR into one xz-compressed .npz for the PyTorch
reference runs (dann_torch_reference.py, gta_torch_reference.py), small enough to carry to a GPU
machine that has no copy of the data.

Arrays: mnist_train / mnist_test (u8 [N, 28, 28], or packed bits [N, 28, 4] with
--binarize-mnist: pumpikano/tf-dann's `> 0`), their labels, and mnist_m_train / mnist_m_test (u8
[N, S, S, 3]) with labels. --size 28 crops MNIST-M's 32x32 images to the centre 28x28 (its digits
are MNIST's padded by 2 pixels), --size 32 keeps them.

    ADAPT_DATA_DIR=../shared/data python3 xtask/peer/pack_digits.py --size 28 --binarize-mnist \\
        --train 30000 --test 9001 target/gpu/dann.npz.xz
Needs numpy and pillow.
"""
import argparse, gzip, io, lzma, os
import numpy as np
from PIL import Image

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("out")
p.add_argument("--size", type=int, choices=[28, 32], default=32)
p.add_argument("--train", type=int, default=30000, help="MNIST-M training images (the first N)")
p.add_argument("--test", type=int, default=9001, help="MNIST-M test images (the first N)")
p.add_argument("--binarize-mnist", action="store_true")
a = p.parse_args()
root = os.environ.get("ADAPT_DATA_DIR") or p.error("set ADAPT_DATA_DIR to the data folder")


def idx(name, header):
    with gzip.open(os.path.join(root, "mnist", name)) as f:
        return np.frombuffer(f.read()[header:], np.uint8)


def mnist_m(split, n):
    d = os.path.join(root, "mnist_m")
    lines = [l.split() for l in open(os.path.join(d, f"mnist_m_{split}_labels.txt")) if l.strip()][:n]
    off = (32 - a.size) // 2
    ims = np.stack([np.asarray(Image.open(os.path.join(d, f"mnist_m_{split}", name)).convert("RGB"))
                    [off:off + a.size, off:off + a.size] for name, _ in lines])
    return ims, np.array([int(l) for _, l in lines], np.uint8)


arrays = {}
for split, stem in [("train", "train"), ("test", "t10k")]:
    ims = idx(f"{stem}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    arrays[f"mnist_{split}"] = np.packbits(ims > 0, axis=-1) if a.binarize_mnist else ims
    arrays[f"mnist_{split}_labels"] = idx(f"{stem}-labels-idx1-ubyte.gz", 8)
    arrays[f"mnist_m_{split}"], arrays[f"mnist_m_{split}_labels"] = mnist_m(split, a.train if split == "train" else a.test)
arrays["binarized"] = np.array(a.binarize_mnist)
buf = io.BytesIO()
np.savez(buf, **arrays)
with open(a.out, "wb") as f:
    f.write(lzma.compress(buf.getvalue(), preset=6))
print(a.out, {k: v.shape for k, v in arrays.items()})
