import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

TINY_CONFIG = {
    "study": "tiny",
    "data": {"source": "synthetic", "root": "results/tiny/data", "synthetic": {"n_train": 320, "n_test": 100, "seed": 3}},
    "model": {"name": "tiny_mlp_bn"},
    "training": {"epochs": 3, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
                 "lr_milestones": [1, 2], "lr_gamma": 0.1, "seed": 0, "augment": True, "dtype": "float32",
                 "device": "cpu", "threads": 1},
    "metrics": ["intensity", "color", "edges", "lpips", "random"],
    "orderings": {"edges": {"sigma": 1.0}, "lpips": {"pretrained_backbone": False, "batch_size": 100, "seed": 0},
                  "random": {"seed": 0}},
    "outputs": {"keep_shards": False, "keep_checkpoints": False},
}


@pytest.fixture
def tiny_config():
    return copy.deepcopy(TINY_CONFIG)


def tiny_config_with(path, value):
    """TINY_CONFIG with the key at `path` (a tuple of keys) set to `value`."""
    config = copy.deepcopy(TINY_CONFIG)
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


def write_config(path, config):
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_snakemake(workdir, *args, check=True, timeout=900):
    """Run the real workflow in `workdir` (which gets its own results/ and logs/)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc
