"""What a `models:` entry names, without PyTorch (the workflow plans with it before any job runs).

An entry is one of
* a built-in name (bestbatch.models.MODELS);
* an import path "package.module:callable", e.g. "torchvision.models:resnet18": the callable takes
  `num_classes` and returns a torch.nn.Module;
* a mapping {"import": "package.module:callable", "kwargs": {...}, "name": "..."}: keyword arguments for the
  callable besides num_classes, and optionally the name used in output paths.
`model_spec` turns an entry into a ModelSpec whose `name` is safe in a path (no ':' or '/'), and whose
`describe()` is what every output's provenance records.
"""

import hashlib
import json
import re
from dataclasses import dataclass, field

# the built-in networks' names (bestbatch.models.MODELS builds them; a test keeps the two equal)
BUILTIN = ("dpn92", "dpn26", "resnet18", "small_cnn", "tiny_mlp", "tiny_mlp_bn")
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
        if entry in BUILTIN:
            return ModelSpec(entry)
        if IMPORT_PATH.match(entry):
            return ModelSpec(_path_name(entry, {}), entry, {})
        raise ModelError(
            f"{where}: unknown model {entry!r}; allowed: {', '.join(sorted(BUILTIN))}, or an import path "
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
        if not isinstance(name, str) or not SAFE_NAME.match(name) or name in BUILTIN and entry.get("name"):
            raise ModelError(
                f"{where}.name: {name!r} must be letters, digits, '_', '.', '+' or '-' (it names output folders) "
                f"and not a built-in model's name"
            )
        return ModelSpec(name, path, kwargs)
    raise ModelError(f"{where}: expected a model name, an import path or a mapping, got {type(entry).__name__}")
