"""The data path: the whole training set as one uint8 tensor on the device, augmented per batch.

Random crop (padding 4) and horizontal flip, as in kuangliu/pytorch-cifar, happen on the device for
a whole batch at once. Their randomness comes from (seed, epoch, batch) alone, so any epoch can be
recomputed in isolation, and the training step and the gradient probe see the very same inputs.
"""

import numpy as np
import torch
import torch.nn.functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def images_to_tensor(images_hwc, device):
    """(N, H, W, 3) uint8 numpy -> (N, 3, H, W) uint8 tensor on `device`."""
    return torch.from_numpy(np.ascontiguousarray(images_hwc.transpose(0, 3, 1, 2))).to(device)


def batch_seed(seed, epoch, batch):
    """A 63-bit seed that depends on (seed, epoch, batch) and nothing else."""
    state = np.random.SeedSequence([seed, epoch, batch]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def normalize(x_uint8, dtype):
    """(x / 255 - mean) / std as one fused multiply-add: x * scale + shift."""
    mean = torch.tensor(CIFAR_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, dtype=torch.float64).view(1, 3, 1, 1)
    scale, shift = (1 / (255 * std)).to(x_uint8.device, dtype), (-mean / std).to(x_uint8.device, dtype)
    return torch.addcmul(shift, x_uint8.to(dtype), scale)


def crop_flip(x_uint8, seed, epoch, batch, pad=4):
    """Random crop with zero padding `pad` and random horizontal flip, for a (B, 3, H, W) batch."""
    b, _, h, w = x_uint8.shape
    gen = torch.Generator().manual_seed(batch_seed(seed, epoch, batch))
    shifts = torch.randint(0, 2 * pad + 1, (b, 2), generator=gen)
    flips = torch.rand(b, generator=gen) < 0.5
    dev = x_uint8.device
    rows = (shifts[:, :1] + torch.arange(h)).to(dev)  # (B, H)
    cols = shifts[:, 1:] + torch.arange(w)  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols).to(dev)
    padded = F.pad(x_uint8, (pad, pad, pad, pad))
    hp, wp = h + 2 * pad, w + 2 * pad
    # one flat gather (take) is ~2x faster on CPU than the equivalent 4-D advanced indexing
    flat = (
        torch.arange(b, device=dev)[:, None, None, None] * (3 * hp * wp)
        + torch.arange(3, device=dev)[None, :, None, None] * (hp * wp)
        + rows[:, None, :, None] * wp
        + cols[:, None, None, :]
    )
    return padded.reshape(-1).take(flat)


def make_batch(images, indices, seed, epoch, batch, augment, dtype):
    """The network input of fixed batch `batch`: gather, augment, normalise."""
    x = images[indices]
    if augment:
        x = crop_flip(x, seed, epoch, batch)
    return normalize(x, dtype)
