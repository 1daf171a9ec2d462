"""The two layouts of Algorithm 1 as jobs (`execution.layout`): inline (one job per epoch trains and writes
the shard) and parallel (train_epoch trains; compare_epoch writes the shard from the previous checkpoint).
They give bitwise the same results; in parallel the training chain never waits for a compare job."""

import copy
import re
import shutil
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import REPO, TINY_CONFIG, run_snakemake, write_config

EPOCHS = 3


def h5_contents(path):
    """Every dataset and attribute of an HDF5 file, as plain values."""
    out = {}
    with h5py.File(path, "r") as f:
        for key, value in f.attrs.items():
            out[f"@{key}"] = value
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_h5(a, b):
    x, y = h5_contents(a), h5_contents(b)
    assert x.keys() == y.keys(), (a, sorted(set(x) ^ set(y)))
    for key in x:
        assert np.array_equal(np.asarray(x[key]), np.asarray(y[key])), (a, key)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The tiny study (the random order's run for two seeds, every checkpoint kept) run in each layout."""
    out = {}
    for layout in ("inline", "parallel"):
        work = tmp_path_factory.mktemp(layout)
        config = dict(
            copy.deepcopy(TINY_CONFIG),
            metrics=["random"],
            outputs={"keep_shards": False, "keep_checkpoints": True},
            execution={"layout": layout},
        )
        cfg = write_config(work / "tiny.yaml", config)
        run_snakemake(work, "--configfile", str(cfg), "--cores", "2")
        out[layout] = (work, cfg, config)
    return out


@pytest.mark.slow
def test_parallel_layout_is_bitwise_the_inline_layout(layouts):
    inline, parallel = (layouts[k][0] / "results" / "tiny" for k in ("inline", "parallel"))
    matrices = sorted(p.relative_to(inline) for p in inline.rglob("distances.h5"))
    assert len(matrices) == 2  # one metric, two seeds
    for rel in matrices:
        assert_same_h5(inline / rel, parallel / rel)  # every dataset and attribute, provenance included
        for epoch in range(1, EPOCHS + 1):
            assert_same_h5(
                inline / rel.parent / "epochs" / f"epoch_{epoch}.h5",
                parallel / rel.parent / "epochs" / f"epoch_{epoch}.h5",
            )
    checkpoints = sorted(p.relative_to(inline) for p in inline.rglob("*.pt"))
    assert len(checkpoints) == 2 * (1 + EPOCHS)  # init.pt and every epoch, per seed
    for rel in checkpoints:
        assert (inline / rel).read_bytes() == (parallel / rel).read_bytes(), rel
    # the parallel layout's jobs: a compare job per epoch, its records file gone once reduced (temp)
    logs = layouts["parallel"][0] / "logs" / "tiny" / "tiny_mlp_bn" / "seed_0" / "random"
    assert sorted(p.name for p in logs.glob("compare_epoch_*.log")) == [f"compare_epoch_{e}.log" for e in (1, 2, 3)]
    assert "gradients at the epoch-start parameters" in (logs / "compare_epoch_2.log").read_text()
    assert not list((parallel / "tiny_mlp_bn" / "seed_0" / "random").glob("records/*.h5"))
    assert not (
        layouts["inline"][0] / "logs" / "tiny" / "tiny_mlp_bn" / "seed_0" / "random" / "compare_epoch_1.log"
    ).exists()


@pytest.mark.slow
def test_a_partial_rerun_plans_every_half_of_its_epochs_in_parallel(layouts):
    work, cfg, config = layouts["parallel"]
    proc = run_snakemake(work, "--configfile", str(cfg), "-n", "--forcerun", "seeded_ordering", "--", "study_random")
    planned = set(re.findall(r"metric=(\w+)", proc.stdout))
    assert planned == {"random"}, proc.stdout[-3000:]
    counts = job_counts(proc.stdout)
    assert counts["train_epoch"] == counts["compare_epoch"] == counts["reduce_epoch"] == EPOCHS * len(config["seeds"])


def job_counts(dry_run_stdout):
    table = dry_run_stdout.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def dag(workdir, *args):
    """(labels {node: rule}, edges [(from, to)]) of `snakemake -n --dag`."""
    out = run_snakemake(workdir, "-n", "--dag", *args).stdout
    labels = {int(n): rule for n, rule in re.findall(r'^\s*(\d+)\[label = "(\w+)', out, re.M)}
    edges = [(int(a), int(b)) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", out, re.M)]
    return labels, edges


def longest_chain(labels, edges):
    """The rules along the longest path of dependent jobs (by job count)."""
    children = {n: [] for n in labels}
    parents = {n: [] for n in labels}
    for a, b in edges:
        children[a].append(b)
        parents[b].append(a)
    best = {}
    order = [n for n in labels if not parents[n]]
    seen = set(order)
    i = 0
    while i < len(order):  # Kahn: every node after all its parents
        n = order[i]
        i += 1
        for c in children[n]:
            if c not in seen and all(p in seen for p in parents[c]):
                seen.add(c)
                order.append(c)
    for n in order:
        best[n] = max((best[p] for p in parents[n]), key=len, default=[]) + [n]
    return [labels[n] for n in max(best.values(), key=len)]


@pytest.mark.parametrize("layout", ["inline", "parallel"])
def test_the_longest_chain_of_a_run_is_its_training_chain(tmp_path, layout):
    """The paper's run (150 epochs): in parallel the longest chain of dependent jobs is the 150 training
    jobs plus at most one compare and one reduction; no training job waits for a compare job."""
    par = write_config(tmp_path / "layout.yaml", {"execution": {"layout": layout}})
    target = "results/paper/dpn92/seed_0/color/distances.h5"
    labels, edges = dag(tmp_path, "--configfile", str(REPO / "config" / "config.yaml"), str(par), "--", target)
    chain = longest_chain(labels, edges)
    # 150 epoch jobs and one reduction (not 2 x 150): inline each is train + compare, parallel each is a
    # training job but for at most one compare job (the last epoch's, beside the last training job)
    assert chain.count("train_epoch") + chain.count("compare_epoch") == 150 and chain.count("reduce_epoch") == 1
    if layout == "parallel":
        assert chain.count("compare_epoch") <= 1 and chain.count("train_epoch") >= 149
        assert sum(rule == "compare_epoch" for rule in labels.values()) == 150
        for a, b in edges:
            assert not (labels[a] == "compare_epoch" and labels[b] == "train_epoch")
    else:
        assert "compare_epoch" not in labels.values()
    print(layout, "longest chain:", len(chain), "jobs:", {r: chain.count(r) for r in dict.fromkeys(chain)})


@pytest.mark.slow
def test_parallel_layout_resumes_bitwise_after_sigkill(layouts, tmp_path):
    """SIGKILL in the middle of a compare job's shard, then the very same command: the results equal the
    inline layout's."""
    from test_reliability import TARGETS, final_state, killable_run

    work, _, config = layouts["inline"]
    config = dict(copy.deepcopy(config), metrics=["random"], execution={"layout": "parallel"})
    cfg = write_config(tmp_path / "tiny.yaml", config)
    for part in ("data", "dataset.json", "orderings", "tiny_mlp_bn/seed_0/checkpoints"):
        src = work / "results" / "tiny" / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / "results" / "tiny" / part)
    killed = killable_run(tmp_path, cfg, "batch:2:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    epoch2 = Path(tmp_path / TARGETS[0]).parent
    assert not (epoch2 / "shards/epoch_2.h5").exists() and list((epoch2 / "shards").glob(".tmp-*"))
    resumed = killable_run(tmp_path, cfg)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    want, got = final_state(work), final_state(tmp_path)
    assert want.keys() == got.keys()
    for name in want:
        assert np.array_equal(want[name], got[name]), name
