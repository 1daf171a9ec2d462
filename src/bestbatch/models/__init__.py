"""Model factory: every model the config may name, built the same way from its entry.

An entry of `models:` is one of
* a built-in name (MODELS below);
* an import path "package.module:callable", e.g. "torchvision.models:resnet18": the callable takes
  `num_classes` and returns a torch.nn.Module;
* a mapping {"import": "package.module:callable", "kwargs": {...}, "name": "..."}: keyword arguments for the
  callable besides num_classes, and optionally the name used in output paths.
`model_spec` turns an entry into a ModelSpec whose `name` is safe in a path (no ':' or '/'), and whose
`describe()` is what every output's provenance records.
"""

import hashlib
import importlib
import json
import re
import sys
from dataclasses import dataclass, field

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
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


class ModelError(ValueError):
    """A `models:` entry that cannot be built or used; the message names the entry and what was found."""


@dataclass(frozen=True)
class ModelSpec:
    """One network of the study: a built-in `name`, or an import `path` with `kwargs`, known by `name`."""

    name: str
    path: str = None
    kwargs: dict = field(default_factory=dict)

    @property
    def builtin(self):
        return self.path is None

    def describe(self):
        """JSON-able: what the provenance records."""
        if self.builtin:
            return self.name
        return {"name": self.name, "import": self.path, "kwargs": self.kwargs}


def _path_name(path, kwargs):
    """A path-safe name for an import path: "torchvision.models:resnet18" -> "torchvision.models.resnet18"
    (plus a short hash of the keyword arguments when there are any)."""
    name = path.replace(":", ".")
    if kwargs:
        name += "-" + hashlib.sha256(json.dumps(kwargs, sort_keys=True).encode()).hexdigest()[:8]
    return name


def model_spec(entry, where="models"):
    """The ModelSpec of one `models:` entry (see the module docstring); ModelError naming `where` otherwise."""
    if isinstance(entry, ModelSpec):
        return entry
    if isinstance(entry, str):
        if entry in MODELS:
            return ModelSpec(entry)
        if IMPORT_PATH.match(entry):
            return ModelSpec(_path_name(entry, {}), entry, {})
        raise ModelError(
            f"{where}: unknown model {entry!r}; allowed: {', '.join(sorted(MODELS))}, or an import path "
            f"'package.module:callable'"
        )
    if isinstance(entry, dict):
        unknown = sorted(set(entry) - {"import", "kwargs", "name"})
        if unknown or "import" not in entry:
            raise ModelError(
                f"{where}: a mapping needs 'import' (and may have 'kwargs', 'name'); got keys {sorted(entry)}"
            )
        path, kwargs = entry["import"], dict(entry.get("kwargs") or {})
        if not isinstance(path, str) or not IMPORT_PATH.match(path):
            raise ModelError(f"{where}.import: {path!r} is not an import path 'package.module:callable'")
        if "num_classes" in kwargs:
            raise ModelError(f"{where}.kwargs: num_classes comes from the data set, not from kwargs")
        name = entry.get("name") or _path_name(path, kwargs)
        if not isinstance(name, str) or not SAFE_NAME.match(name) or name in MODELS and entry.get("name"):
            raise ModelError(
                f"{where}.name: {name!r} must be letters, digits, '_', '.', '+' or '-' (it names output folders) "
                f"and not a built-in model's name"
            )
        return ModelSpec(name, path, kwargs)
    raise ModelError(f"{where}: expected a model name, an import path or a mapping, got {type(entry).__name__}")


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


def check_model(name, num_classes, images, import_paths=(), where="models"):
    """Refuse, before any training, a model that cannot take part: one that does not build (see build_model),
    has no trainable parameters, or whose output on a batch of the data set's images (B, 3, 32, 32 float)
    is not (B, num_classes). Returns its trainable parameter count."""
    model = build_model(name, num_classes, seed=0, import_paths=import_paths, where=where)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n == 0:
        raise ModelError(f"{where}: {model_spec(name).describe()} has no trainable parameters")
    model.train()
    try:
        out = model(images)
    except Exception as exc:
        raise ModelError(
            f"{where}: {model_spec(name).describe()} fails on a batch of the data set's images "
            f"{tuple(images.shape)}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (images.shape[0], num_classes):
        found = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"{where}: {model_spec(name).describe()} gives {found} on a batch of {images.shape[0]} images; expected "
            f"({images.shape[0]}, {num_classes}): one logit per class of the data set"
        )
    return n


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())
