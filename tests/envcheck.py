"""Which conda environment each rule's script runs in, and whether that environment holds what it imports.

An environment "holds" a distribution when its pip section pins it, or pip would install it as a dependency of
one it pins (read from the installed distributions' metadata, which carry requirements.txt's pins), or it is
bestbatch itself (the `${BESTBATCH_PACKAGE}` line)."""

import ast
import re
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import yaml
from conftest import REPO
from packaging.requirements import Requirement

SRC = REPO / "src"
RULE_FILES = [REPO / "workflow" / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
PACKAGE_LINE = "${BESTBATCH_PACKAGE}"


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def script_rules():
    """(rule file, rule name, script file name, conda env path or None) for every rule that runs a script."""
    out = []
    for path in RULE_FILES:
        text = path.read_text()
        heads = list(re.finditer(r"^\s*rule\s*(\w*)\s*:", text, flags=re.M))
        for head, nxt in zip(heads, [*heads[1:], None]):
            body = text[head.end() : nxt.start() if nxt else len(text)]
            script = re.search(r'script:\s*"([^"]+)"', body)
            if not script:
                continue
            conda = re.search(r'conda:\s*"([^"]+)"', body)
            env = (path.parent / conda.group(1)).resolve() if conda else None
            out.append((path.name, head.group(1) or "<loop rule>", Path(script.group(1)).name, env))
    return out


def pip_lines(env_path):
    deps = yaml.safe_load(Path(env_path).read_text())["dependencies"]
    return next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)


@cache
def holds(env_path):
    """Canonical names of every distribution the environment holds (its pins and their dependencies)."""
    lines = pip_lines(env_path)
    todo = [canonical(line.split("==")[0]) for line in lines if line != PACKAGE_LINE]
    held = {"bestbatch"} if PACKAGE_LINE in lines else set()
    while todo:
        name = todo.pop()
        if name in held:
            continue
        held.add(name)
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonical(req.name))
    return held


@cache
def _module_distributions():
    return {module: [canonical(d) for d in dists] for module, dists in metadata.packages_distributions().items()}


def distributions(modules):
    """{top-level module: canonical distribution names} for the third-party modules among `modules`."""
    out = {}
    for module in modules:
        if module in sys.stdlib_module_names or module == "__main__":
            continue
        out[module] = ["bestbatch"] if module == "bestbatch" else _module_distributions().get(module, [])
    return out


def missing(env_path, modules):
    """The modules among `modules` that the environment does not hold, with the distributions they come from."""
    held = holds(env_path)
    return {m: d for m, d in distributions(modules).items() if not set(d) & held}


# --- what a script imports when it starts: module-level imports, through bestbatch's own modules --------


def _module_file(name):
    path = SRC / Path(*name.split("."))
    return path / "__init__.py" if (path / "__init__.py").is_file() else path.with_suffix(".py")


class _ImportTimeImports(ast.NodeVisitor):
    """Imports that run when the module is imported: not those inside a function's body."""

    def __init__(self, package):
        self.package, self.found = package, set()

    def visit_FunctionDef(self, node):
        pass

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_Import(self, node):
        self.found |= {alias.name for alias in node.names}

    def visit_ImportFrom(self, node):
        if node.level:
            parts = self.package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            module = f"{base}.{node.module}" if node.module else base
        else:
            module = node.module
        self.found.add(module)
        self.found |= {f"{module}.{a.name}" for a in node.names if _module_file(f"{module}.{a.name}").is_file()}


def _imports(path, name):
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    visitor = _ImportTimeImports(package)
    visitor.visit(ast.parse(path.read_text()))
    return visitor.found


def import_time_modules(script):
    """Top-level names of every module imported when `script` runs its imports (bestbatch's own followed)."""
    found, seen = set(), set()
    todo = list(_imports(script, "__main__"))
    while todo:
        name = todo.pop()
        found.add(name.split(".")[0])
        if name.split(".")[0] != "bestbatch":
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c imports a and a.b first
            module = ".".join(parts[:i])
            if module not in seen and _module_file(module).is_file():
                seen.add(module)
                todo.extend(_imports(_module_file(module), module))
    return found


# --- what a job really imported: recorded by a sitecustomize on PYTHONPATH ----------------------------

RECORDER = """\
import atexit, json, os, sys

_names = []


class _Recorder:
    # Records an import when the script or one of bestbatch's modules asks for it; what a third-party package
    # imports is its own affair (pip installs its requirements; its optional imports may fail).
    def find_spec(self, name, path=None, target=None):
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
            frame = frame.f_back
        caller = frame.f_globals.get("__name__", "") if frame is not None else ""
        if caller == "__main__" or caller.split(".")[0] == "bestbatch":
            _names.append(name)
        return None


sys.meta_path.insert(0, _Recorder())


@atexit.register
def _write():
    # From the script's first import of the package on (before it: Snakemake's preamble), and only what loaded.
    if "bestbatch" not in _names:
        return
    own = sorted({n.split(".")[0] for n in _names[_names.index("bestbatch"):] if n in sys.modules})
    out = os.path.join(os.environ["BESTBATCH_IMPORT_LOG"], "%d.json" % os.getpid())
    with open(out, "w") as f:
        json.dump({"argv0": sys.argv[0] if sys.argv else "", "modules": own}, f)
"""


def install_recorder(folder):
    """A folder for PYTHONPATH whose sitecustomize records, per Python process, the modules it imported."""
    (folder / "site").mkdir(parents=True)
    (folder / "log").mkdir()
    (folder / "site" / "sitecustomize.py").write_text(RECORDER)
    return folder / "site", folder / "log"
