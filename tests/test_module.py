"""bestbatch used as a Snakemake module from a user's own folder, laid out as `snakedeploy deploy-workflow` lays it
out (config/ copied from the workflow, workflow/Snakefile declaring the module). The workflow's source is a copy
of this repository in another temporary folder, with its own version string: every output that records the
version proves the jobs imported the package beside the rules, not an installed one or the repository's."""

import json
import os
import shutil
import subprocess

import h5py
import pytest
import yaml
from conftest import REPO, SNAKEMAKE, TINY_CONFIG
from envcheck import install_recorder, missing, script_rules

COPY_VERSION = "0.2.0+deployed-copy"

# snakedeploy's template (use_module.smk.jinja), with the module's Snakefile as a local path
USER_SNAKEFILE = """\
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


module bestbatch:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from bestbatch
"""


def tracked_files():
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The workflow as a user would have it: a checkout outside the user's folder (here, a copy)."""
    src = tmp_path_factory.mktemp("bestbatch-source")
    for name in tracked_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    init = src / "src" / "bestbatch" / "__init__.py"
    text = init.read_text()
    assert '__version__ = "0.2.0"' in text
    init.write_text(text.replace('__version__ = "0.2.0"', f'__version__ = "{COPY_VERSION}"'))
    return src


def deploy(root, source, config):
    """The user's folder: their config in config/, the module declaration in workflow/Snakefile."""
    (root / "workflow").mkdir(parents=True)
    (root / "config").mkdir()
    (root / "workflow" / "Snakefile").write_text(USER_SNAKEFILE.format(snakefile=source / "workflow" / "Snakefile"))
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def snakemake(root, *args, timeout=900, **extra_env):
    # No PYTHONPATH to the package: the workflow must find it itself.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | extra_env
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=root, capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return proc.stdout + proc.stderr


def test_the_demo_dry_runs_as_a_module(tmp_path, source):
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    root = deploy(tmp_path / "my-study", source, demo)
    out = snakemake(root, "-n", "--quiet", "rules")
    assert "train_epoch" in out and "select_train" in out and "index" in out
    assert not (source / "results").exists() and not (source / ".snakemake").exists()


def test_a_bad_user_config_is_refused_with_the_key(tmp_path, source):
    config = dict(TINY_CONFIG, training=dict(TINY_CONFIG["training"], batch_size=0))
    root = deploy(tmp_path / "bad", source, config)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([*SNAKEMAKE, "-n"], cwd=root, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0 and "training.batch_size" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_study_runs_as_a_module_from_another_folder(tmp_path, source):
    config = dict(TINY_CONFIG, study="mine")
    root = deploy(tmp_path / "my-study", source, config)
    site, imports = install_recorder(tmp_path / "imports")
    snakemake(root, "--cores", "2", PYTHONPATH=str(site), BESTBATCH_IMPORT_LOG=str(imports))
    results = root / "results" / "mine"
    assert (results / "index.html").is_file() and (results / "claims.csv").is_file()
    assert (root / "logs" / "mine").is_dir()
    # every job imported the package that ships with the rules
    for matrix in results.glob("*/seed_*/*/distances.h5"):
        with h5py.File(matrix) as f:
            assert json.loads(f.attrs["provenance"])["bestbatch"] == COPY_VERSION, matrix
    assert len(list(results.glob("*/seed_*/*/distances.h5"))) == len(config["metrics"]) * len(config["seeds"])
    # nothing was written beside the workflow's source
    for name in ("results", "logs", ".snakemake", "config/config.yaml.bak"):
        assert not (source / name).exists(), name
    # the report finds its captions in the workflow's folder
    snakemake(root, "--report", "report.html")
    assert (root / "report.html").stat().st_size > 0

    # each job imported only what its rule's conda environment holds (imports inside functions included)
    env_of = {script: env for _, _, script, env in script_rules()}
    seen = set()
    for record in imports.glob("*.json"):
        job = json.loads(record.read_text())
        name = os.path.basename(job["argv0"])
        if "/.snakemake/scripts/" not in job["argv0"]:
            continue  # the Snakemake process itself
        script = name.split(".", 1)[1]  # Snakemake runs a copy named tmp<random>.<script>
        seen.add(script)
        assert not missing(env_of[script], job["modules"]), (script, env_of[script].name)
    assert len(seen) >= 12, sorted(seen)  # every rule of the study but the selection's
