"""An import-path model's identity includes its code (model_spec.code_identity): a hash of the researcher's own
source, or the version of the distribution that provides it, found without importing it when the workflow plans.
It is part of the `model` param of that model's jobs and of their provenance, so an edit of the code reruns that
model's jobs and no other's; a dotted path where an import path was meant is answered with what it meant."""

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, TINY_CONFIG, run_snakemake, write_config
from test_own_study import own_config, write_images
from test_slurm import planned_jobs

from bestbatch.formats import provenance
from bestbatch.model_spec import ModelError, code_identity, model_spec, refuse_dotted_paths, source_sha256
from bestbatch.models import build_model
from bestbatch.steps.training import model_record

NET = (REPO / ".test" / "config" / "own_net.py").read_text()


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- (a) the done-when: an edit of own_net.py reruns exactly its models' jobs ---------------------------------
DATA_RULES = {"study_config", "plotly_js", "imagefolder_dataset", "verify_dataset", "ordering", "seeded_ordering"}


def snakemake_dry_run(work, cfg):
    out = run_snakemake(work, "--configfile", str(cfg), "-n")
    return out.stdout + out.stderr


@pytest.fixture
def study_with_outputs(tmp_path):
    """The own-network study with four models: own_net:build and own_net_narrow (both from own_net.py), `other`
    (the same code in other_net.py) and the built-in tiny_mlp; one seed, one metric, one epoch. Its outputs are
    made the cheap way: every planned output an empty file (each model's cost.json a small probe), then
    `snakemake --touch --forceall`, which records every job's params as a real run would (the params trigger
    compares those records), so the dry runs below plan what a real study's would."""
    write_images(tmp_path / "images", n_train=16, n_test=4)
    cfg = own_config(
        tmp_path,
        models=[
            "own_net:build",
            {"import": "own_net:build", "kwargs": {"width": 4}, "name": "own_net_narrow"},
            {"import": "other_net:build", "name": "other"},
            "tiny_mlp",
        ],
        seeds=[0],
        metrics=["random"],
    )
    shutil.copy(tmp_path / "own_net.py", tmp_path / "other_net.py")
    config = yaml.safe_load(cfg.read_text())
    config["training"].update(epochs=1, lr_milestones=[])
    del config["selection"]
    write_config(cfg, config)
    outputs = set()
    for line in snakemake_dry_run(tmp_path, cfg).splitlines():
        if m := re.match(r"^\s+output: (.*)$", line):
            outputs.update(f.strip() for f in m.group(1).split(","))
    probe = json.dumps({"params": 1000, "activation_mb": 0.1, "ms_per_image": 1.0})
    for out in outputs:
        write(tmp_path / out, probe if out.endswith("/cost.json") else "")
    run_snakemake(tmp_path, "--configfile", str(cfg), "--touch", "--forceall", "--cores", "1")
    return tmp_path, cfg


@pytest.mark.slow
def test_editing_the_module_reruns_exactly_its_models_jobs(study_with_outputs):
    work, cfg = study_with_outputs
    assert "Nothing to be done" in snakemake_dry_run(work, cfg)
    net = work / "own_net.py"
    assert "width=8" in net.read_text()
    net.write_text(net.read_text().replace("width=8", "width=12"))
    log = snakemake_dry_run(work, cfg)
    jobs = planned_jobs(log)
    per_model = {j["wildcards"]["model"] for j in jobs if "model" in j["wildcards"]}
    assert per_model == {"own_net.build", "own_net_narrow"}, log[-3000:]  # not `other`, nor tiny_mlp
    rules = {j["rule"] for j in jobs}
    assert {"model_cost", "init_model", "train_epoch", "reduce_epoch", "gather_distances"} <= rules
    assert not rules & DATA_RULES, rules
    changed = [j for j in jobs if j["rule"] == "model_cost"]
    assert len(changed) == 2 and "Params have changed since last execution" in log


# --- (b) the identity: a module, a package, an installed distribution --------------------------------------
def test_a_module_beside_the_config_is_known_by_its_source(tmp_path):
    """A single module: the sha256 of its file (with its name). Any byte changes it, a comment or a blank line
    included; the folder it lies in does not."""
    write(tmp_path / "a" / "mynet.py", NET)
    first = code_identity("mynet:build", [tmp_path / "a"])
    assert set(first) == {"sha256"} and re.fullmatch(r"[0-9a-f]{64}", first["sha256"])
    write(tmp_path / "b" / "mynet.py", NET)
    assert code_identity("mynet:build", [tmp_path / "b"]) == first  # copied elsewhere: the same code
    write(tmp_path / "a" / "mynet.py", NET + "# a comment\n")
    assert code_identity("mynet:build", [tmp_path / "a"]) != first
    write(tmp_path / "a" / "mynet.py", NET + "\n")
    assert code_identity("mynet:build", [tmp_path / "a"]) != first


def test_a_package_is_known_by_every_python_file_under_it(tmp_path):
    """A package: every *.py under its folder, subpackages included, by relative path and bytes; other files
    (data, compiled caches) do not count, nor does a module it imports from another top-level name."""
    pkg = tmp_path / "nets"
    write(pkg / "__init__.py", "")
    write(pkg / "models.py", "from .blocks.conv import block\n\ndef build(num_classes):\n    return block()\n")
    write(pkg / "blocks" / "__init__.py", "")
    helper = write(pkg / "blocks" / "conv.py", "def block():\n    return None\n")
    first = code_identity("nets.models:build", [tmp_path])
    assert code_identity("nets:anything", [tmp_path]) == first  # the top-level package, whatever the module
    write(pkg / "weights.txt", "not code")
    write(pkg / "__pycache__" / "models.cpython-311.pyc", "compiled")
    assert code_identity("nets.models:build", [tmp_path]) == first
    helper.write_text("def block():\n    return 1\n")
    second = code_identity("nets.models:build", [tmp_path])
    assert second != first
    helper.rename(pkg / "blocks" / "conv2.py")  # the same bytes under another name: other code
    assert code_identity("nets.models:build", [tmp_path]) not in (first, second)


def test_an_installed_distribution_is_known_by_its_version_and_not_imported():
    assert code_identity("torchvision.models:resnet18") == {
        "distribution": "torchvision",
        "version": importlib.metadata.version("torchvision"),
    }
    # found, not imported: planning needs no PyTorch (a fresh interpreter, as Snakemake's)
    script = (
        "import sys; from bestbatch.model_spec import model_spec\n"
        "spec = model_spec('torchvision.models:resnet18', 'models[0]', [])\n"
        "assert spec.code['distribution'] == 'torchvision', spec\n"
        "assert not {'torch', 'torchvision'} & set(sys.modules), sorted(sys.modules)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)


def test_the_config_folder_comes_first_then_sys_path_where_code_of_no_distribution_is_hashed(tmp_path, monkeypatch):
    """Searched as the jobs import: the config files' folders first (a yaml.py there is the researcher's, not
    PyYAML), then sys.path, where a module that no installed distribution provides is hashed like one's own."""
    write(tmp_path / "config" / "yaml.py", NET)
    assert set(code_identity("yaml:build", [tmp_path / "config"])) == {"sha256"}
    assert code_identity("yaml:safe_load", [])["distribution"] == "PyYAML"
    write(tmp_path / "elsewhere" / "loose_net.py", NET)
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))
    assert code_identity("loose_net:build", []) == code_identity("loose_net:build", [tmp_path / "elsewhere"])


def test_an_editable_install_is_known_by_its_version_and_its_source():
    """`pip install -e`: code being edited, so its source hash too (this checkout's bestbatch, where editable)."""
    identity = code_identity("bestbatch.models:ResNet18")
    assert identity["distribution"] == "bestbatch"
    assert identity["version"] == importlib.metadata.version("bestbatch")
    direct_url = json.loads(importlib.metadata.distribution("bestbatch").read_text("direct_url.json") or "{}")
    if direct_url.get("dir_info", {}).get("editable"):
        assert identity["sha256"] == source_sha256(importlib.util.find_spec("bestbatch"))


def test_a_module_found_nowhere_is_refused_naming_the_key_and_the_folders(tmp_path):
    with pytest.raises(ModelError) as exc:
        model_spec({"import": "no_such_net.models:build"}, "models[1]", [tmp_path])
    message = str(exc.value)
    assert message.startswith("models[1]: cannot import 'no_such_net.models' for 'no_such_net.models:build'")
    assert f"no module or package 'no_such_net' in the config's folder(s) {tmp_path} or" in message
    assert "sys.path" in message


def test_describe_carries_the_code_and_the_jobs_accept_it(tmp_path):
    """Built-in models' describe() stays their name (their params, hence their results, do not change); an
    import path's carries the code identity, which model_spec keeps when a job reads it back, build_model
    ignores, and the provenance records (steps.training.model_record)."""
    assert model_spec("tiny_mlp", "models[0]", [tmp_path]).describe() == "tiny_mlp"
    write(tmp_path / "own_net.py", NET)
    entry = {"import": "own_net:build", "kwargs": {"width": 4}, "name": "own_net_narrow"}
    assert "code" not in model_spec(entry).describe()  # without the folders, nothing is looked up
    described = model_spec(entry, "models[1]", [tmp_path]).describe()
    assert described == dict(entry, code=code_identity("own_net:build", [tmp_path]))
    assert model_spec(described).describe() == described  # the job's `model` param, read back
    assert model_spec(described, "models[1]", [tmp_path / "elsewhere"]).code == described["code"]  # not redone
    net = build_model(described, num_classes=3, seed=0, import_paths=[tmp_path])
    assert net[0].out_channels == 4
    assert model_record(described) == {"model": described}
    assert model_record("tiny_mlp") == {}


# --- (c) a dotted path where an import path was meant -----------------------------------------------------
def test_a_dotted_path_is_answered_with_the_import_path_it_meant(tmp_path):
    with pytest.raises(ModelError, match=r"models\[2\]: unknown model .*did you mean 'torchvision.models:resnet18'\?"):
        model_spec("torchvision.models.resnet18", "models[2]")
    with pytest.raises(ModelError, match=r"models\[0\].import: .*did you mean 'own_net:build'\?"):
        model_spec({"import": "own_net.build"}, "models[0]")
    with pytest.raises(ModelError, match=r"models\[1\]: .*did you mean 'a.b:c'\?"):
        refuse_dotted_paths(["tiny_mlp", "a.b.c"])
    refuse_dotted_paths(["tiny_mlp", "own_net:build", "vgg", {"import": "x.y"}])  # left to the schema, model_spec
    with pytest.raises(ModelError) as exc:
        model_spec("vgg")
    assert "did you mean" not in str(exc.value)
    # the workflow says it before the schema would only say "not allowed"
    cfg = write_config(tmp_path / "study.yaml", dict(TINY_CONFIG, models=["tiny_mlp", "torchvision.models.resnet18"]))
    proc = run_snakemake(tmp_path, "--configfile", str(cfg), "-n", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "models[1]: unknown model 'torchvision.models.resnet18'" in text, text[-3000:]
    assert "did you mean 'torchvision.models:resnet18'?" in text


# --- (d) the provenance: torchvision's version where it was imported ---------------------------------------
def test_provenance_has_torchvisions_version_when_it_is_imported():
    import torchvision

    assert provenance("x")["torchvision"] == torchvision.__version__
    script = "from bestbatch.formats import provenance; p = provenance('x'); assert 'torchvision' not in p, p"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
