"""Model factory: every model the config may name, built the same way from a name."""

import torch

from .dpn import DPN26, DPN92
from .resnet import ResNet18
from .small_cnn import SmallCNN, TinyMLP

MODELS = {
    "dpn92": DPN92,
    "dpn26": DPN26,
    "resnet18": ResNet18,
    "small_cnn": SmallCNN,
    "tiny_mlp": TinyMLP,
    "tiny_mlp_bn": lambda num_classes=10: TinyMLP(batchnorm=True, num_classes=num_classes),
}


def build_model(name, num_classes=10, seed=None):
    """A freshly initialised model; with a seed, the initialisation is the same on every machine."""
    if name not in MODELS:
        raise ValueError(f"models: unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    if seed is None:
        return MODELS[name](num_classes=num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name](num_classes=num_classes)


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())
