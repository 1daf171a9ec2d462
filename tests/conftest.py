import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bestbatch.config import load_schema, validate_config

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
# The configs the tests run are files a user can run too (`--configfile .test/config/tiny.yaml`).
TINY_CONFIG_FILE = REPO / ".test" / "config" / "tiny.yaml"
TINY_CONFIG = yaml.safe_load(TINY_CONFIG_FILE.read_text())


def validated(config, config_file=None):
    """The config with its defaults, as the workflow checks it (bestbatch.config with the workflow's schema;
    config_file: where it was read from, for a relative data.root)."""
    return validate_config(config, SCHEMA, config_file)


@pytest.fixture
def tiny_config():
    return copy.deepcopy(TINY_CONFIG)


def tiny_config_with(path, value):
    """TINY_CONFIG with the key at `path` (a tuple of keys) set to `value`."""
    config = copy.deepcopy(TINY_CONFIG)
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return config


def write_config(path, config):
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_snakemake(workdir, *args, check=True, timeout=900):
    """Run the real workflow in `workdir` (which gets its own results/ and logs/)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc
