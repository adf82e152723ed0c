#!/usr/bin/env python3
"""Writes the data folder that `cargo xtask train --data-dir` reads (mnist/ as IDX .gz files,
mnist_m/ in Ganin's layout: mnist_m_{train,test}/%08d.png and mnist_m_{split}_labels.txt) from
the .npz.xz that `xtask/peer/pack_digits.py --size 32` (without --binarize-mnist) wrote.

MNIST comes back byte for byte as IDX (u8 images, the same header); MNIST-M's first N images of
each split come back as lossless PNGs with the same pixels and names as in the release, so the
loaders see the same data as on the machine that packed it.

    python3 xtask/gpu/unpack_digits.py digits32.npz.xz /tmp/adapt-data
Needs numpy and pillow.
"""
import gzip, io, lzma, os, struct, sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image


def idx_bytes(arr, dims):
    # IDX: magic 0x00000803 (u8, 3 dims) or 0x00000801 (u8, 1 dim), big-endian sizes.
    return struct.pack(">I", 0x800 | len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + arr.tobytes()


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_pngs(job):
    folder, start, images = job
    for i, im in enumerate(images):
        path = os.path.join(folder, f"{start + i:08d}.png")
        Image.fromarray(im, "RGB").save(path + ".tmp", format="PNG")
        os.replace(path + ".tmp", path)
    return len(images)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    try:
        with open(src, "rb") as f:
            z = np.load(io.BytesIO(lzma.decompress(f.read())))
    except (OSError, lzma.LZMAError, ValueError) as e:
        sys.exit(f"unpack_digits.py: cannot read {src}: {e}")
    if bool(z["binarized"]) or z["mnist_train"].shape[1:] != (28, 28) or z["mnist_m_train"].shape[1:] != (32, 32, 3):
        sys.exit(f"unpack_digits.py: {src} is not a pack_digits.py --size 32 archive without --binarize-mnist")
    mnist = os.path.join(out, "mnist")
    os.makedirs(mnist, exist_ok=True)
    for split, stem in [("train", "train"), ("test", "t10k")]:
        ims, labels = z[f"mnist_{split}"], z[f"mnist_{split}_labels"]
        write_atomic(os.path.join(mnist, f"{stem}-images-idx3-ubyte.gz"), gzip.compress(idx_bytes(ims, ims.shape), 6))
        write_atomic(os.path.join(mnist, f"{stem}-labels-idx1-ubyte.gz"), gzip.compress(idx_bytes(labels, labels.shape), 6))
    jobs = []
    for split in ["train", "test"]:
        ims, labels = z[f"mnist_m_{split}"], z[f"mnist_m_{split}_labels"]
        folder = os.path.join(out, "mnist_m", f"mnist_m_{split}")
        os.makedirs(folder, exist_ok=True)
        text = "".join(f"{i:08d}.png {int(l)}\n" for i, l in enumerate(labels))
        write_atomic(os.path.join(out, "mnist_m", f"mnist_m_{split}_labels.txt"), text.encode())
        jobs += [(folder, s, ims[s:s + 1000]) for s in range(0, len(ims), 1000)]
    with ProcessPoolExecutor() as pool:
        n = sum(pool.map(write_pngs, jobs))
    print(f"unpack_digits.py: {out}: MNIST {len(z['mnist_train_labels'])} + {len(z['mnist_test_labels'])}, "
          f"MNIST-M {len(z['mnist_m_train_labels'])} + {len(z['mnist_m_test_labels'])} ({n} PNGs)")


if __name__ == "__main__":
    main()
