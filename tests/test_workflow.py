"""The real workflow: the paper-scale DAG dry-runs, and a tiny study runs end to end on generated data."""
import re
import shutil
import subprocess

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from bestbatch.formats import load_checkpoint, state_digest
from conftest import REPO, SNAKEMAKE, run_snakemake, write_config


def job_counts(dry_run_stdout):
    table = dry_run_stdout.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_paper_dag_dry_runs_with_chained_per_epoch_jobs(tmp_path):
    out = run_snakemake(tmp_path, "--configfile", str(REPO / "config" / "config.yaml"), "-n", "--quiet", "rules").stdout
    counts = job_counts(out)
    assert counts["train_epoch"] == 5 * 150
    assert counts["reduce_epoch"] == 5 * 150
    assert counts["ordering"] == 5 and counts["gather_distances"] == 5 and counts["heatmap"] == 5
    assert counts["init_model"] == 1 and counts["index"] == 1


def test_paper_dag_chains_epochs_per_metric(tmp_path):
    """Epoch e of a metric needs epoch e-1 of the same metric; epoch 1 needs the shared initialisation."""
    out = run_snakemake(tmp_path, "--configfile", str(REPO / "config" / "config.yaml"), "-n", "-p",
                        "results/paper/color/checkpoints/epoch_3.pt").stdout
    counts = job_counts(out)
    assert counts["train_epoch"] == 3 and "ordering" in counts and counts.get("reduce_epoch", 0) == 0
    assert "results/paper/color/checkpoints/epoch_2.pt" in out and "results/paper/checkpoints/init.pt" in out
    assert "intensity" not in out


def test_lint_is_clean():
    proc = subprocess.run(SNAKEMAKE + ["--lint"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    from conftest import TINY_CONFIG
    work = tmp_path_factory.mktemp("tiny")
    config = dict(TINY_CONFIG, outputs={"keep_shards": False, "keep_checkpoints": True})
    cfg = write_config(work / "tiny.yaml", config)
    run_snakemake(work, "--configfile", str(cfg), "--cores", "2")
    return work, cfg, config


@pytest.mark.slow
def test_tiny_study_produces_every_output(tiny_study):
    work, _, config = tiny_study
    r = work / "results" / "tiny"
    k = 320 // 64
    for metric in config["metrics"]:
        with h5py.File(r / metric / "distances.h5", "r") as f:
            assert f["distance"].shape == (3, k) and list(f["epoch"][:]) == [1, 2, 3]
            assert np.all(f["distance"][:] > 0) and np.all(np.abs(f["cosine"][:]) <= 1)
            assert list(f["phase"][:]) == [1, 2, 3]
            np.testing.assert_allclose(f["lr"][:], [0.05, 0.005, 0.0005])
        table = pd.read_csv(r / metric / "distances.csv")
        assert len(table) == 3 * k and set(table.metric) == {metric}
        assert list(table.columns[:8]) == ["metric", "epoch", "batch", "phase", "lr", "distance", "cosine", "norm"]
        assert not (r / metric / "shards").exists() or not any((r / metric / "shards").iterdir())  # temp() shards
        with h5py.File(r / "orderings" / f"{metric}.h5", "r") as f:
            assert sorted(f["order"][:]) == list(range(320))
        assert (r / "plots" / f"heatmap_{metric}.html").stat().st_size > 1_000_000  # plotly.js inlined
        assert (work / "logs" / "tiny" / metric / "train_epoch_2.log").read_text().count("epoch 2")
    assert (r / "index.html").exists() and (r / "plots" / "training_curves.html").exists()
    with h5py.File(r / "orderings" / "lpips.h5", "r") as f:
        assert '"pretrained_backbone": false' in f.attrs["params"]


@pytest.mark.slow
def test_every_metric_starts_from_the_same_initialisation(tiny_study):
    """Metrics differ only by their order: with the same batches in epoch 1 they would train identically."""
    work, _, config = tiny_study
    r = work / "results" / "tiny"
    first = {m: load_checkpoint(r / m / "checkpoints" / "epoch_1.pt") for m in config["metrics"]}
    init = load_checkpoint(r / "checkpoints" / "init.pt")
    for metric, state in first.items():  # each metric's epoch 1 started from exactly init.pt's parameters
        assert state.meta["start_params_sha256"] == state_digest(init.model), metric
        assert state.meta["metric"] == metric and state.epoch == 1
    assert first["edges"].meta["start_params_sha256"] != state_digest(first["edges"].model)  # it did train
    # different orders -> different parameters after one epoch
    assert not torch.equal(first["intensity"].model["fc1.weight"], first["random"].model["fc1.weight"])


@pytest.mark.slow
def test_every_epoch_starts_where_the_previous_one_ended(tiny_study):
    work, _, config = tiny_study
    r = work / "results" / "tiny"
    for metric in config["metrics"]:
        for epoch in (2, 3):
            before = load_checkpoint(r / metric / "checkpoints" / f"epoch_{epoch - 1}.pt")
            after = load_checkpoint(r / metric / "checkpoints" / f"epoch_{epoch}.pt")
            assert after.meta["start_params_sha256"] == state_digest(before.model), (metric, epoch)


@pytest.mark.slow
def test_one_metric_reruns_alone(tiny_study):
    work, cfg, config = tiny_study
    proc = run_snakemake(work, "--configfile", str(cfg), "-n", "--forcerun", "ordering", "--", "study_edges")
    planned = set(re.findall(r"metric=(\w+)", proc.stdout))
    assert planned == {"edges"}, proc.stdout[-3000:]
    assert job_counts(proc.stdout)["train_epoch"] == 3


@pytest.mark.slow
def test_epochs_in_one_go_equal_epochs_one_invocation_at_a_time(tiny_study, tmp_path):
    """Three separate snakemake invocations (fresh processes) give bitwise the same results."""
    work, _, config = tiny_study
    config = dict(config, metrics=["edges"])
    cfg = write_config(tmp_path / "tiny.yaml", config)
    shutil.copytree(work / "results" / "tiny" / "data", tmp_path / "results" / "tiny" / "data")
    for epoch in (1, 2, 3):
        run_snakemake(tmp_path, "--configfile", str(cfg), "--cores", "1",
                      f"results/tiny/edges/epochs/epoch_{epoch}.h5")
    for epoch in (1, 2, 3):
        a = torch.load(work / "results/tiny/edges/checkpoints" / f"epoch_{epoch}.pt", weights_only=True)
        b = torch.load(tmp_path / "results/tiny/edges/checkpoints" / f"epoch_{epoch}.pt", weights_only=True)
        for name in a["model"]:
            assert torch.equal(a["model"][name], b["model"][name]), (epoch, name)
        with h5py.File(work / f"results/tiny/edges/epochs/epoch_{epoch}.h5") as f, \
                h5py.File(tmp_path / f"results/tiny/edges/epochs/epoch_{epoch}.h5") as g:
            for name in ("distance", "cosine", "norm", "train_loss"):
                assert np.array_equal(f[name][:], g[name][:]), (epoch, name)


@pytest.mark.slow
def test_report_builds(tiny_study):
    work, cfg, _ = tiny_study
    run_snakemake(work, "--configfile", str(cfg), "--report", "report.zip")
    assert (work / "report.zip").stat().st_size > 1_000_000
