#!/usr/bin/env python3
"""Writes the data folder that `cargo xtask train --data-dir` reads from the parts
xtask/gpu/pack_for_gpu.py wrote:

    python3 xtask/gpu/unpack_digits.py OUT PART [PART ...]

Each PART is a folder holding mnist/ (MNIST's IDX .gz files, copied as they are) and/or
mnist_m_train.npz.xz, mnist_m_test.npz.xz (MNIST-M's centre 28x28, u8). OUT gets mnist/ and
mnist_m/ in Ganin's layout: mnist_m_{split}/%08d.png (32x32 RGB: the centre as packed, a zero
border) and mnist_m_{split}_labels.txt. The paper preset crops MNIST-M to its centre 28x28, so it
sees exactly the original images. Needs numpy and pillow.
"""
import io, lzma, os, shutil, sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image


def write_pngs(job):
    folder, start, images = job
    for i, centre in enumerate(images):
        im = np.zeros((32, 32, 3), np.uint8)
        im[2:30, 2:30] = centre
        path = os.path.join(folder, f"{start + i:08d}.png")
        Image.fromarray(im, "RGB").save(path + ".tmp", format="PNG")
        os.replace(path + ".tmp", path)
    return len(images)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, parts = sys.argv[1], sys.argv[2:]
    found = {}
    for p in parts:
        if os.path.isdir(os.path.join(p, "mnist")):
            found["mnist"] = os.path.join(p, "mnist")
        for split in ("train", "test"):
            f = os.path.join(p, f"mnist_m_{split}.npz.xz")
            if os.path.isfile(f):
                found[split] = f
    missing = [k for k in ("mnist", "train", "test") if k not in found]
    if missing:
        sys.exit(f"unpack_digits.py: {parts} hold no {', '.join(missing)} (see pack_for_gpu.py)")
    os.makedirs(os.path.join(out, "mnist"), exist_ok=True)
    for name in os.listdir(found["mnist"]):
        shutil.copyfile(os.path.join(found["mnist"], name), os.path.join(out, "mnist", name))
    jobs, counts = [], {}
    for split in ("train", "test"):
        try:
            with open(found[split], "rb") as f:
                z = np.load(io.BytesIO(lzma.decompress(f.read())))
            ims, labels = z["images"], z["labels"]
        except (OSError, lzma.LZMAError, ValueError, KeyError) as e:
            sys.exit(f"unpack_digits.py: cannot read {found[split]}: {e}")
        if ims.shape[1:] != (28, 28, 3) or len(labels) != len(ims):
            sys.exit(f"unpack_digits.py: {found[split]}: images {ims.shape}, labels {labels.shape}")
        folder = os.path.join(out, "mnist_m", f"mnist_m_{split}")
        os.makedirs(folder, exist_ok=True)
        listing = os.path.join(out, "mnist_m", f"mnist_m_{split}_labels.txt")
        with open(listing + ".tmp", "w") as f:
            f.write("".join(f"{i:08d}.png {int(l)}\n" for i, l in enumerate(labels)))
        os.replace(listing + ".tmp", listing)
        jobs += [(folder, s, ims[s:s + 1000]) for s in range(0, len(ims), 1000)]
        counts[split] = len(ims)
    with ProcessPoolExecutor() as pool:
        n = sum(pool.map(write_pngs, jobs))
    print(f"unpack_digits.py: {out}: MNIST-M {counts['train']} + {counts['test']} ({n} PNGs), MNIST from {found['mnist']}")


if __name__ == "__main__":
    main()
