"""Model factory: every network the config may name, built the same way from its entry (a built-in name,
an import path or a mapping: bestbatch.model_spec)."""

import importlib
import sys

import torch

from ..model_spec import BUILTIN, ModelError, ModelSpec, model_spec  # noqa: F401 (the names live there)
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
assert tuple(MODELS) == BUILTIN, "bestbatch.model_spec.BUILTIN must name the models MODELS builds"


def _callable(spec, where):
    module_name, _, attr = spec.path.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module failing while it imports
        raise ModelError(
            f"{where}: cannot import {module_name!r} for {spec.path!r} ({type(exc).__name__}: {exc}); the module must "
            f"be installed or sit in a folder on the import path (the config's folder is added)"
        ) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"{where}: {module_name!r} has no attribute {attr!r} (from {spec.path!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"{where}: {spec.path!r} is a {type(obj).__name__}, not a callable")
    return obj


def build_model(name, num_classes=10, seed=None, import_paths=(), where="models"):
    """A freshly initialised model from a built-in name, an import path, a mapping or a ModelSpec; with a
    seed, the initialisation is the same on every machine. import_paths: folders put on sys.path first
    (the config's folder, for a module that sits beside the config)."""
    spec = model_spec(name, where)
    for folder in import_paths:
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    factory = MODELS[spec.name] if spec.builtin else _callable(spec, where)

    def make():
        try:
            return factory(num_classes=num_classes, **spec.kwargs)
        except TypeError as exc:
            raise ModelError(
                f"{where}: {spec.path or spec.name}(num_classes={num_classes}, **{spec.kwargs}) failed: {exc}"
            ) from exc

    if seed is None:
        model = make()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = make()
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"{where}: {spec.path} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _shown(name):
    """An entry as a message names it: what describe() records, less the code identity (a hash tells a reader
    nothing)."""
    described = model_spec(name).describe()
    return {k: v for k, v in described.items() if k != "code"} if isinstance(described, dict) else described


def check_model(name, num_classes, images, import_paths=(), where="models"):
    """Refuse, before any training, a model that cannot take part: one that does not build (see build_model),
    has no trainable parameters, or whose output on a batch of the data set's images (B, 3, 32, 32 float)
    is not (B, num_classes). Returns its trainable parameter count."""
    model = build_model(name, num_classes, seed=0, import_paths=import_paths, where=where)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n == 0:
        raise ModelError(f"{where}: {_shown(name)} has no trainable parameters")
    model.train()
    try:
        out = model(images)
    except Exception as exc:
        raise ModelError(
            f"{where}: {_shown(name)} fails on a batch of the data set's images "
            f"{tuple(images.shape)}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (images.shape[0], num_classes):
        found = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"{where}: {_shown(name)} gives {found} on a batch of {images.shape[0]} images; expected "
            f"({images.shape[0]}, {num_classes}): one logit per class of the data set"
        )
    return n


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())
