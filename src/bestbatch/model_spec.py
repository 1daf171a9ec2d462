"""What a `models:` entry names, without PyTorch (the workflow plans with it before any job runs).

An entry is one of
* a built-in name (bestbatch.models.MODELS);
* an import path "package.module:callable", e.g. "torchvision.models:resnet18": the callable takes
  `num_classes` and returns a torch.nn.Module;
* a mapping {"import": "package.module:callable", "kwargs": {...}, "name": "..."}: keyword arguments for the
  callable besides num_classes, and optionally the name used in output paths.
`model_spec` turns an entry into a ModelSpec whose `name` is safe in a path (no ':' or '/'), and whose
`describe()` is what every output's provenance records. Given the folders the jobs import from, it also records
an import path's code identity (`code_identity`), found without importing it: `describe()` is every job's
`model` param, so an edit of that code reruns that model's jobs and no other's.
"""

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import re
import sys
from dataclasses import dataclass, field, replace
from importlib.machinery import PathFinder
from pathlib import Path

# the built-in networks' names (bestbatch.models.MODELS builds them; a test keeps the two equal)
BUILTIN = ("dpn92", "dpn26", "resnet18", "small_cnn", "tiny_mlp", "tiny_mlp_bn")
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
# a dotted path where an import path was meant: "torchvision.models.resnet18"
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


class ModelError(ValueError):
    """A `models:` entry that cannot be built or used; the message names the entry and what was found."""


@dataclass(frozen=True)
class ModelSpec:
    """One network of the study: a built-in `name`, or an import `path` with `kwargs`, known by `name`, and the
    `code` identity of that path (code_identity) once it has been looked up."""

    name: str
    path: str = None
    kwargs: dict = field(default_factory=dict)
    code: dict = None

    @property
    def builtin(self):
        return self.path is None

    def describe(self):
        """JSON-able: what the provenance records."""
        if self.builtin:
            return self.name
        described = {"name": self.name, "import": self.path, "kwargs": self.kwargs}
        return described if self.code is None else dict(described, code=self.code)


def _path_name(path, kwargs):
    """A path-safe name for an import path: "torchvision.models:resnet18" -> "torchvision.models.resnet18"
    (plus a short hash of the keyword arguments when there are any)."""
    name = path.replace(":", ".")
    if kwargs:
        name += "-" + hashlib.sha256(json.dumps(kwargs, sort_keys=True).encode()).hexdigest()[:8]
    return name


def _dotted_suggestion(text):
    """What a dotted path probably meant: "torchvision.models.resnet18" -> "; did you mean
    'torchvision.models:resnet18'?" (the last name is the callable); "" for anything else."""
    if isinstance(text, str) and DOTTED.match(text):
        module, _, attr = text.rpartition(".")
        return f"; did you mean {module + ':' + attr!r}?"
    return ""


def model_spec(entry, where="models", import_paths=None):
    """The ModelSpec of one `models:` entry (see the module docstring); ModelError naming `where` otherwise.
    With `import_paths` (the folders the jobs put first on the import path), an import path's spec carries its
    code identity (code_identity); a mapping from describe() keeps the "code" it has."""
    spec = _parse(entry, where)
    if import_paths is not None and not spec.builtin and spec.code is None:
        spec = replace(spec, code=code_identity(spec.path, import_paths, where))
    return spec


def _parse(entry, where):
    if isinstance(entry, ModelSpec):
        return entry
    if isinstance(entry, str):
        if entry in BUILTIN:
            return ModelSpec(entry)
        if IMPORT_PATH.match(entry):
            return ModelSpec(_path_name(entry, {}), entry, {})
        raise ModelError(
            f"{where}: unknown model {entry!r}; allowed: {', '.join(sorted(BUILTIN))}, or an import path "
            f"'package.module:callable'{_dotted_suggestion(entry)}"
        )
    if isinstance(entry, dict):
        # "code" comes back only from describe() (a job's `model` param); the config's schema refuses it
        unknown = sorted(set(entry) - {"import", "kwargs", "name", "code"})
        if unknown or "import" not in entry:
            raise ModelError(
                f"{where}: a mapping needs 'import' (and may have 'kwargs', 'name'); got keys {sorted(entry)}"
            )
        path, kwargs = entry["import"], dict(entry.get("kwargs") or {})
        if not isinstance(path, str) or not IMPORT_PATH.match(path):
            raise ModelError(
                f"{where}.import: {path!r} is not an import path 'package.module:callable'{_dotted_suggestion(path)}"
            )
        if "num_classes" in kwargs:
            raise ModelError(f"{where}.kwargs: num_classes comes from the data set, not from kwargs")
        name = entry.get("name") or _path_name(path, kwargs)
        if not isinstance(name, str) or not SAFE_NAME.match(name) or name in BUILTIN and entry.get("name"):
            raise ModelError(
                f"{where}.name: {name!r} must be letters, digits, '_', '.', '+' or '-' (it names output folders) "
                f"and not a built-in model's name"
            )
        return ModelSpec(name, path, kwargs, entry.get("code"))
    raise ModelError(f"{where}: expected a model name, an import path or a mapping, got {type(entry).__name__}")


def refuse_dotted_paths(entries, where="models"):
    """ModelError for the first string entry that is a dotted path where an import path was meant
    ("torchvision.models.resnet18"), saying what it probably meant: checked before the config's schema, which
    would only say that it matches none of the allowed forms."""
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if isinstance(entry, str) and entry not in BUILTIN and DOTTED.match(entry):
            model_spec(entry, f"{where}[{i}]")


# --- an import path's code identity, found at planning time without importing it -----------------------------
def code_identity(path, import_paths=(), where="models"):
    """What the code behind an import path "package.module:callable" is, from its top-level module or package,
    looked up (not imported: the workflow plans without PyTorch) in `import_paths` first, as the jobs find it
    (the config files' folders: they put them first on sys.path), then on sys.path:

    * {"sha256": ...} for the researcher's own code: a top-level module or package found in one of
      `import_paths`, or found on sys.path but part of no installed distribution;
    * {"distribution": ..., "version": ...} for one an installed distribution provides (torchvision), plus its
      "sha256" when that distribution is installed in editable mode (`pip install -e`: code being edited).

    The sha256 covers the top-level module's file, or every *.py file under the top-level package's folder
    (source_sha256): any byte changes it, a comment or a blank line included. A module that code imports from
    another top-level name is not covered. ModelError naming `where` and the folders searched when the module
    is found nowhere."""
    module = path.partition(":")[0]
    top = module.split(".")[0]
    folders = [str(folder) for folder in import_paths]
    spec = PathFinder.find_spec(top, folders) if folders else None
    if spec is not None:
        return {"sha256": source_sha256(spec)}
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):  # a finder that refuses it, or a module in sys.modules without a spec
        spec = None
    if spec is None:
        searched = f"the config's folder(s) {', '.join(folders)} or " if folders else ""
        raise ModelError(
            f"{where}: cannot import {module!r} for {path!r}: no module or package {top!r} in {searched}the "
            f"folders on Python's path (sys.path) of the environment Snakemake plans in; install it there or put "
            f"it beside the config"
        )
    names = sorted(set(_distributions().get(top, ())))
    if not names:
        return {"sha256": source_sha256(spec)}
    identity = (
        {"distribution": names[0], "version": importlib.metadata.version(names[0])}
        if len(names) == 1
        else {"distributions": {name: importlib.metadata.version(name) for name in names}}
    )
    if any(_editable(name) for name in names):
        identity["sha256"] = source_sha256(spec)
    return identity


def source_sha256(spec):
    """sha256 over a module's source: its file, or every *.py file under a package's folder(s), each as its path
    relative to that folder (sorted) and its bytes. A module with no file (built into Python): Python's version."""
    if spec.submodule_search_locations:  # a package (a namespace package may have several folders)
        files = [
            (file.relative_to(root).as_posix(), file)
            for root in map(Path, spec.submodule_search_locations)
            for file in root.rglob("*.py")
        ]
    elif spec.has_location and spec.origin:
        files = [(Path(spec.origin).name, Path(spec.origin))]
    else:
        files = [("python", None)]
    digest = hashlib.sha256()
    for name, file in sorted(files):
        data = file.read_bytes() if file is not None else sys.version.encode()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


@functools.cache
def _distributions():
    """Top-level import name -> the installed distributions that provide it (read once: ~0.3 s)."""
    return importlib.metadata.packages_distributions()


def _editable(name):
    try:
        direct_url = importlib.metadata.distribution(name).read_text("direct_url.json")
        return bool(json.loads(direct_url or "{}").get("dir_info", {}).get("editable"))
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
