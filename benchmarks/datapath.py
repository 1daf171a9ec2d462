"""The device-side data path against kuangliu's torchvision DataLoader, same augmentation, same images.

PYTHONPATH=src .venv/bin/python benchmarks/datapath.py [--n 10000] [--batch-size 256] [--workers 2]
"""

import argparse
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from bestbatch.augment import CIFAR_MEAN, CIFAR_STD, images_to_tensor, make_batch


class ArrayCIFAR(Dataset):
    """torchvision.datasets.CIFAR10's __getitem__ (PIL image, then the transform) over an array."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def dataloader_epoch(images, labels, batch_size, workers):
    tf = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
        ]
    )
    loader = DataLoader(
        ArrayCIFAR(images, labels, tf),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        drop_last=True,
        persistent_workers=False,
    )
    t0 = time.perf_counter()
    n = sum(x.shape[0] for x, _ in loader)
    return n / (time.perf_counter() - t0)


def device_epoch(images, labels, batch_size, device, seed=0, epoch=1):
    t0 = time.perf_counter()
    data, y = images_to_tensor(images, device), torch.as_tensor(labels, device=device)  # once per job
    order = torch.arange(len(images), device=device)
    n = 0
    for k in range(len(images) // batch_size):
        idx = order[k * batch_size : (k + 1) * batch_size]
        x = make_batch(data, idx, seed, epoch, k, True, torch.float32)
        _ = y[idx]
        n += x.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def measure(n=10000, batch_size=256, workers=2, device=None, repeats=3):
    """Median images/s of each path over interleaved repeats."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    dl, dev = [], []
    for _ in range(repeats):
        dl.append(dataloader_epoch(images, labels, batch_size, workers))
        dev.append(device_epoch(images, labels, batch_size, device))
    return float(np.median(dev)), float(np.median(dl))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    dev, dl = measure(a.n, a.batch_size, a.workers)
    print(f"device data path {dev:,.0f} img/s, DataLoader ({a.workers} workers) {dl:,.0f} img/s, ratio {dev / dl:.1f}x")
