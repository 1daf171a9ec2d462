"""The layout the code promises: thin scripts, steps without PyTorch where nothing trains, one home per format."""

import ast
import re
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO

SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))
NO_TORCH_STEPS = (
    "bestbatch.steps.data",
    "bestbatch.steps.distances",
    "bestbatch.steps.plots",
    "bestbatch.steps.analysis",
    "bestbatch.steps.proxies",
    "bestbatch.steps.selection",
)
TORCH_SCRIPTS = {
    "verify_dataset.py": "may download with torchvision",
    "select_train.py": "trains",
    "select_train_seed.py": "trains",
}

BLOCK_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "lpips"):
            raise ImportError(f"{name} imported by a step that must not need PyTorch")
sys.meta_path.insert(0, NoTorch())
"""


def run_without_torch(code, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_steps_that_do_not_train_run_without_torch(tmp_path):
    """Synthetic data, reduction, gather, heatmap, curves, sets and index, for real, with PyTorch unimportable."""
    out = run_without_torch(
        """
        import json, numpy as np
        from bestbatch.formats import EpochRecords, write_epoch
        from bestbatch.steps.data import synthetic_dataset, verify_dataset
        from bestbatch.steps.distances import gather_distances
        from bestbatch.steps.analysis import evaluate_claims, study_config, study_index
        from bestbatch.steps.plots import curves_page, heatmap_page, layers_page, sets_page
        from bestbatch.steps.proxies import proxies_table
        synthetic_dataset(root="data", n_train=200, n_test=50, seed=1)
        verify_dataset("dataset.json", root="data", source="cifar10", download=False, verify="auto", batch_size=50,
                       n_train=200, n_test=50, n_classes=10)
        k, rng = 4, np.random.default_rng(0)
        paths = []
        for epoch in (1, 2):
            z = np.zeros(k)
            records = EpochRecords(epoch=epoch, lr=0.1, phase=epoch, metric="edges", test_loss=1.0, test_acc=0.5,
                                   provenance="{}", train_loss=z + 1, train_acc=z, batch_score_min=z,
                                   batch_score_mean=z, batch_score_max=z)
            paths.append(f"e{epoch}.h5")
            g = rng.normal(size=(k, 6))
            write_epoch(paths[-1], dict(distance=rng.uniform(1, 2, k), cosine=z, norm=z + 1, full_norm=1.0,
                                        gram=g @ g.T), 10, records)
        gather_distances(paths, "m.h5", "m.csv", metric="edges", batch_size=50, log="gather.log")
        phases = [(1, 1, 1, 0.1), (2, 2, 2, 0.01)]
        heatmap_page("m.h5", "plots/heatmap_edges.html", metric="edges", phases=phases)
        curves_page(["m.h5"], "plots/curves.html", metrics=["edges"], phases=phases, n_classes=10, n_test=50)
        layers_page("m.h5", "plots/layers_edges.html", metric="edges", phases=phases)
        sets_page("m.h5", "sets.csv", "plots/sets_edges.html", model="tiny", seed=0, metric="edges", phases=phases,
                  draws=20)
        study_config("config.yaml", config={"study": "s"}, files=["s.yaml"], overrides={},
                     run_hashes=[[["tiny", 0, "edges"], "0123"]], log="config.log")
        proxies_table(["m.h5"], "proxies.csv", runs=[["tiny", 0]], metrics=["edges"], phases=phases)
        study_index(["m.h5"], ["plots/heatmap_edges.html"], ["plots/layers_edges.html"], ["plots/curves.html"],
                    "claims.html", "config.yaml", "index.html", "summary.json", study="s", runs=[["tiny", 0]],
                    metrics=["edges"], phases=phases, n_classes=10, n_test=50, proxies_csv="proxies.csv",
                    sets_paths=["plots/sets_edges.html"])
        evaluate_claims(["m.h5"], "claims.csv", "statistics.csv", "claims.html", runs=[["tiny", 0]], metrics=["edges"],
                        phases=phases, alpha=0.05, permutations=99, seed=0, n_classes=10, n_test=50, n_train=200,
                        batch_size=50)
        print(json.load(open("dataset.json"))["num_batches"], sorted(m for m in sys.modules if m.startswith("torch")))
    """,
        tmp_path,
    )
    assert out.split()[0] == "4" and "[]" in out
    assert (tmp_path / "index.html").exists() and (tmp_path / "m.csv").exists()
    assert "<a href='plots/sets_edges.html'>edges</a>" in (tmp_path / "index.html").read_text()


def test_modules_of_the_steps_without_training_import_no_torch(tmp_path):
    run_without_torch(
        """
        import importlib
        for name in ("bestbatch.steps.data", "bestbatch.steps.distances", "bestbatch.steps.plots",
                     "bestbatch.steps.analysis", "bestbatch.steps.proxies", "bestbatch.steps.selection",
                     "bestbatch.stats", "bestbatch.report", "bestbatch.formats",
                     "bestbatch.config", "bestbatch.resources", "bestbatch.workflow_support", "bestbatch.metrics"):
            importlib.import_module(name)
    """,
        tmp_path,
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_scripts_are_thin_and_call_exactly_one_package_function(script):
    source = script.read_text()
    tree = ast.parse(source)
    # docstring, two imports, sys.path.insert, the package import, the call: however it is line-wrapped
    assert len(tree.body) <= 6, f"{script.name}: {len(tree.body)} statements"
    imported = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bestbatch")
        for alias in node.names
    }
    assert len(imported) == 1, f"{script.name} imports {imported} from bestbatch"
    calls = [node.value for node in tree.body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)]
    package_calls = [c for c in calls if isinstance(c.func, ast.Name) and c.func.id in imported]
    assert len(package_calls) == 1, script.name
    others = [ast.unparse(c.func) for c in calls if c not in package_calls]
    assert others == ["sys.path.insert"], (script.name, others)


def test_every_rule_script_goes_with_its_stage():
    """workflow/rules/X.smk -> workflow/scripts/*.py -> bestbatch.steps.X, and the torch-free steps run in
    the environment without PyTorch."""
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        stage = smk.stem
        for rule in re.split(r"\n\s*rule ", smk.read_text())[1:]:
            script = re.search(r'script:\s*"\.\./scripts/(\w+\.py)"', rule)
            if not script:
                continue
            module = re.search(
                r"from (bestbatch\.steps\.\w+) import", (REPO / "workflow" / "scripts" / script.group(1)).read_text()
            ).group(1)
            assert module == f"bestbatch.steps.{stage}", (smk.name, script.group(1), module)
            env = re.search(r'conda:\s*"\.\./\.\./envs/(\w+)\.yaml"', rule).group(1)
            if module in NO_TORCH_STEPS and script.group(1) not in TORCH_SCRIPTS:
                assert env == "analysis", (smk.name, script.group(1), env)


# Config keys that share a dataset's name, and the modules that read them as config keys (outputs.get("<key>"...)):
# outputs.gradients (where an epoch's gradients are held) is not the shard's dataset `gradients`.
CONFIG_KEYS_NAMED_LIKE_FORMATS = {"gradients": ("config.py",)}
# The names of the HDF5 datasets and checkpoint keys: spelled in bestbatch/formats.py and nowhere else in
# the package (names that are also everyday words are checked where they index something).
FORMAT_NAMES = (
    "gradients",
    "gradient_sum",
    "layout_name",
    "layout_offset",
    "layout_shape",
    "train_loss",
    "train_acc",
    "batch_score_min",
    "batch_score_mean",
    "batch_score_max",
    "full_norm",
    "test_loss",
    "test_acc",
    "display_score",
    "scores",
    "order",
    "n_params",
    "provenance",
    "format_version",
)
INDEXED_NAMES = ("distance", "cosine", "norm", "epoch", "batch", "optimizer", "meta")  # not row keys elsewhere


def test_format_names_live_in_formats_only():
    package = REPO / "src" / "bestbatch"
    for path in package.rglob("*.py"):
        if path.name == "formats.py":
            continue
        text = path.read_text()
        for name in FORMAT_NAMES:
            if path.name in CONFIG_KEYS_NAMED_LIKE_FORMATS.get(name, ()):
                text = text.replace(f'outputs.get("{name}"', "")  # the config's key, read as one, is not the dataset
            assert f'"{name}"' not in text, f"{path.relative_to(REPO)} spells the format name {name!r}"
        for name in INDEXED_NAMES:
            assert f'["{name}"]' not in text and f'.attrs["{name}"' not in text, (
                f"{path.relative_to(REPO)} indexes a file by {name!r}"
            )


def test_the_package_is_a_package_with_one_version():
    """setuptools finds every module (a wheel holds the whole package) and pyproject.toml's version is the one
    the outputs record."""
    import tomllib

    import setuptools

    import bestbatch
    from bestbatch.formats import provenance

    found = set(setuptools.find_packages(str(REPO / "src")))
    assert {"bestbatch", "bestbatch.steps", "bestbatch.models"} <= found
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert bestbatch.__version__ == version == provenance("x")["bestbatch"]
    assert f"## {version}" in (REPO / "CHANGELOG.md").read_text()
