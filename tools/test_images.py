#!/usr/bin/env python3
"""Write a small image folder in torchvision's ImageFolder layout: the test config .test/config/own.yaml reads it.

    python tools/test_images.py [FOLDER [SIZE]]      # default: .test/images, 32

Three classes whose images a network can tell apart (a dominant colour and a stripe direction per class,
with noise), SIZE x SIZE RGB PNGs (32 unless given: .test/config/images64.yaml reads 64 x 64 ones):
<FOLDER>/train/<class>/NNN.png (24 a class) and <FOLDER>/test/<class>/NNN.png (8 a class). Deterministic: the
same files every time (at 32, the files they always were).
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("reds", "greens", "blues")


def image(rng, c, size=32):
    x = rng.integers(0, 90, (size, size, 3)).astype(np.int64)
    x[..., c] += 120
    stripes = (np.arange(size) // (size // 8) % 2 == 0) * 50
    x += (stripes[:, None] if c == 0 else stripes[None, :] if c == 1 else np.add.outer(stripes, stripes) // 2)[
        ..., None
    ]
    return np.clip(x, 0, 255).astype(np.uint8)


def write(folder, n_train=24, n_test=8, seed=0, size=32):
    rng = np.random.default_rng(seed)
    paths = []
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(CLASSES):
            (Path(folder) / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                path = Path(folder) / split / name / f"{i:03d}.png"
                Image.fromarray(image(rng, c, size)).save(path)
                paths.append(path)
    return paths


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / ".test" / "images"
    print(len(write(folder, size=int(sys.argv[2]) if len(sys.argv) > 2 else 32)))
