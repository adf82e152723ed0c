#!/usr/bin/env python3
"""Packs the shared digit data for xtask/gpu/check.sh in two parts that each fit, with the rest
of what travels, in the 64 MiB a GPU-machine call carries:

    ADAPT_DATA_DIR=../shared/data python3 xtask/gpu/pack_for_gpu.py .gpu-a .gpu-b

* A/mnist_m_train.npz.xz: MNIST-M's training images (all the data folder has, 30000), centre
  28x28 (u8 [N, 28, 28, 3]) and labels, xz-compressed (about 45 MB);
* B/mnist_m_test.npz.xz: the 9001 test images, likewise (about 13 MB), and B/mnist/: MNIST's four
  IDX .gz files as they are (11.6 MB).

Only the centre 28x28 of MNIST-M is kept: the paper preset (DANN MNIST -> MNIST-M) crops the
32x32 images to it before anything else, so unpack_digits.py's 32x32 PNGs (the centre restored,
a zero border around it) give that preset exactly the original inputs. Recipes that read the
whole 32x32 image (GTA) would see the zero border: check.sh runs none of them on this data.
Needs numpy and pillow.
"""
import io, lzma, os, shutil, sys

import numpy as np
from PIL import Image


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    root = os.environ.get("ADAPT_DATA_DIR") or sys.exit("pack_for_gpu.py: set ADAPT_DATA_DIR to the data folder")
    a, b = sys.argv[1], sys.argv[2]
    for d in (a, b, os.path.join(b, "mnist")):
        os.makedirs(d, exist_ok=True)
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"]:
        src = os.path.join(root, "mnist", name)
        if not os.path.isfile(src):
            sys.exit(f"pack_for_gpu.py: {src} is missing")
        shutil.copyfile(src, os.path.join(b, "mnist", name + ".tmp"))
        os.replace(os.path.join(b, "mnist", name + ".tmp"), os.path.join(b, "mnist", name))
    d = os.path.join(root, "mnist_m")
    for split, out in [("test", b), ("train", a)]:
        listing = os.path.join(d, f"mnist_m_{split}_labels.txt")
        rows = [l.split() for l in open(listing) if l.strip()]
        present = [(n, int(l)) for n, l in rows if os.path.isfile(os.path.join(d, f"mnist_m_{split}", n))]
        names = [n for n, _ in present]
        if names != [f"{i:08d}.png" for i in range(len(names))]:
            sys.exit(f"pack_for_gpu.py: {listing}: the present images are not 00000000.png ... in order")
        ims = np.stack([np.asarray(Image.open(os.path.join(d, f"mnist_m_{split}", n)).convert("RGB"))[2:30, 2:30]
                        for n in names])
        buf = io.BytesIO()
        np.savez(buf, images=ims, labels=np.array([l for _, l in present], np.uint8))
        path = os.path.join(out, f"mnist_m_{split}.npz.xz")
        with open(path + ".tmp", "wb") as f:
            f.write(lzma.compress(buf.getvalue(), preset=6))
        os.replace(path + ".tmp", path)
        print(f"{path}: {ims.shape}, {os.path.getsize(path) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
