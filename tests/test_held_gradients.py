"""outputs.gradients: an epoch's gradients held in memory (bitwise the shard path's values) or sketched (within
the bound the pages print), in both layouts; their refusals, requests, hashes and plans."""

import json

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, TINY_CONFIG, run_snakemake, tiny_config_with, validated, write_config
from test_gradients import records
from test_normalization import random_ordering

from bestbatch import gradients
from bestbatch.config import ConfigError, check_semantics, config_hash, ordering_hash
from bestbatch.distances import BLOCK, reduce_rows, reduce_shard
from bestbatch.formats import WHOLE_VECTOR, load_checkpoint, read_epoch
from bestbatch.gradients import (
    MemoryRows,
    check_memory,
    memory_bytes,
    reduce_memory,
    sketch_settings,
    sketch_statement,
)
from bestbatch.resources import Study, job_resources
from bestbatch.shards import ShardWriter

TRAINING = dict(
    data_format="cifar10",
    device="cpu",
    threads=1,
    cuda_tf32=False,
    cuda_deterministic=True,
    model="tiny_mlp_bn",
    num_classes=10,
    batch_size=32,
    lr=0.05,
    lr_gamma=0.1,
    lr_milestones=[1],
    momentum=0.9,
    weight_decay=5e-4,
    augment=True,
    config_hash="test",
    progress=False,
    metric="random",
    epoch=1,
    seed=0,
)
EPOCH_DATASETS = ("distance", "cosine", "norm", "layer_distance", "gram", "train_loss", "train_acc", "batch_score_mean")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """96 generated images (3 fixed batches of 32), the random ordering, and an initialisation per dtype."""
    from bestbatch.steps.data import synthetic_dataset
    from bestbatch.steps.training import init_model

    tmp = tmp_path_factory.mktemp("held")
    root = tmp / "data"
    synthetic_dataset(root=root, n_train=96, n_test=40, seed=5)
    random_ordering(tmp / "order.h5", root)
    for dtype in ("float32", "float64"):
        init_model(tmp / f"init_{dtype}.pt", model="tiny_mlp_bn", num_classes=10, seed=0, dtype=dtype, config_hash="t")
    return tmp, root


def epoch_values(path):
    """Every dataset and the full norm of an epoch file, as arrays."""
    with h5py.File(path) as f:
        values = {name: f[name][:] for name in EPOCH_DATASETS if name in f}
        values["full_norm"] = np.asarray(f.attrs["full_norm"])
        values["test_acc"] = np.asarray(f.attrs["test_acc"])
    return values


def assert_bitwise(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name


def run_shard(study, out, dtype, layout):
    from bestbatch.steps.distances import reduce_epoch
    from bestbatch.steps.training import compare_epoch, train_epoch

    tmp, root = study
    job = dict(TRAINING, data_root=root, dtype=dtype)
    start = tmp / f"init_{dtype}.pt"
    if layout == "inline":
        train_epoch(tmp / "order.h5", start, out / "e1.pt", out_shard=out / "shard.h5", **job)
        reduce_epoch(out / "shard.h5", out / "epoch.h5", gram=True)
    else:
        train_epoch(tmp / "order.h5", start, out / "e1.pt", out_records=out / "records.h5", **job)
        compare_epoch(tmp / "order.h5", start, out / "shard.h5", **job)
        reduce_epoch(out / "shard.h5", out / "epoch.h5", out / "records.h5", gram=True)


def run_held(study, out, dtype, layout, mode, sketch=None):
    from bestbatch.steps.distances import complete_epoch
    from bestbatch.steps.training import compare_epoch, train_epoch

    tmp, root = study
    job = dict(TRAINING, data_root=root, dtype=dtype, gradients=mode, gram=True, sketch=sketch)
    start = tmp / f"init_{dtype}.pt"
    if layout == "inline":
        train_epoch(tmp / "order.h5", start, out / "e1.pt", out_epoch=out / "epoch.h5", **job)
    else:
        train_epoch(tmp / "order.h5", start, out / "e1.pt", out_records=out / "records.h5", **job)
        compare_epoch(tmp / "order.h5", start, out_reduced=out / "reduced.h5", **job)
        complete_epoch(out / "reduced.h5", out / "records.h5", out / "epoch.h5")


@pytest.mark.parametrize("layout", ["inline", "parallel"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_memory_mode_gives_the_shard_paths_epoch_bitwise(study, tmp_path, dtype, layout):
    """Every value of the epoch file (distance, norm, cosine, per-tensor distances, Gram matrix, records) and the
    checkpoint are the shard path's, to the bit; no shard is written."""
    (tmp_path / "shard").mkdir()
    (tmp_path / "memory").mkdir()
    run_shard(study, tmp_path / "shard", dtype, layout)
    run_held(study, tmp_path / "memory", dtype, layout, "memory")
    assert_bitwise(epoch_values(tmp_path / "shard" / "epoch.h5"), epoch_values(tmp_path / "memory" / "epoch.h5"))
    shard_state, memory_state = (load_checkpoint(tmp_path / d / "e1.pt", "cpu") for d in ("shard", "memory"))
    assert all(torch.equal(shard_state.model[k], memory_state.model[k]) for k in shard_state.model)
    assert not (tmp_path / "memory" / "shard.h5").exists()
    distances, records = read_epoch(tmp_path / "memory" / "epoch.h5")
    assert distances["sketch"] is None and json.loads(records.provenance)["gradients"] == "memory"


def filled_rows(k_rows, n_params, dtype, seed=0):
    """MemoryRows holding K random rows (as run_epoch fills them) and the same rows as an array."""
    g = torch.from_numpy(np.random.default_rng(seed).standard_normal((k_rows, n_params))).to(dtype)
    sink = MemoryRows(k_rows, n_params, dtype)
    total = sink.total(torch.device("cpu"), n_params)
    for k in range(k_rows):
        row = sink.row(k, torch.device("cpu"), dtype, n_params)
        row.copy_(g[k])
        total.add_(row)
        sink.put(k, row)
    return sink, g


@pytest.mark.parametrize("k_rows", [5, 48])  # the Gram matrix's compiled pairs, and its BLAS products
def test_memory_reduction_is_the_shard_reduction_on_the_compiled_path(tmp_path, k_rows):
    """Rows of more than one block (the compiled passes, in threads): the memory path's reduction of the rows it
    holds is bitwise reduce_shard's of the same rows written to a shard."""
    n_params = 2 * BLOCK + 4099
    layout = [("a.weight", (BLOCK + 7,), 0), ("a.bias", (9,), BLOCK + 7), ("b.weight", (BLOCK + 4083,), BLOCK + 16)]
    sink, g = filled_rows(k_rows, n_params, torch.float32)
    with ShardWriter(tmp_path / "shard.h5", k_rows, n_params, torch.float32) as shard:
        total = shard.total(torch.device("cpu"), n_params)
        for k in range(k_rows):
            row = shard.row(k, torch.device("cpu"), torch.float32, n_params)
            row.copy_(g[k])
            total.add_(row)
            shard.put(k, row)
        shard.finish(layout, records(k_rows))
    exact = reduce_shard(tmp_path / "shard.h5", threads=2, gram=True)
    held = reduce_memory(sink, layout, threads=2, gram=True)
    for name in ("distance", "norm", "cosine", "layer_distance", "gram"):
        assert np.array_equal(exact[name], held[name]), name
    assert exact["full_norm"] == held["full_norm"] and list(exact["layer_name"]) == list(held["layer_name"])


def test_memory_rows_refuse_a_missing_row():
    sink = MemoryRows(3, 10, torch.float32)
    sink.total(torch.device("cpu"), 10)
    sink.put(0, sink.row(0, torch.device("cpu"), torch.float32, 10))
    with pytest.raises(RuntimeError, match=r"rows \[1, 2\] were never formed"):
        sink.arrays()


def test_memory_mode_refuses_what_cannot_fit_naming_the_bytes(study, tmp_path, monkeypatch):
    need = memory_bytes(195, 34_236_634, 4)
    assert need == 195 * 34_236_634 * 4 + 8 * 34_236_634
    with pytest.raises(MemoryError, match=r"needs 26\.98 GB .*K = 195 batches x P = 34236634 parameters .* 16\.00 GB"):
        check_memory(need, 195, 34_236_634, 4, available=16e9)
    check_memory(need, 195, 34_236_634, 4, available=32e9)  # fits: no error
    # in a job: refused before the first batch, and nothing is left under the outputs' names
    monkeypatch.setattr(gradients, "available_memory", lambda: 1000)
    with pytest.raises(MemoryError, match="outputs.gradients: memory needs"):
        run_held(study, tmp_path, "float32", "inline", "memory")
    assert not any(tmp_path.iterdir())


def test_a_sketched_epoch_is_within_the_bound_its_pages_print(study, tmp_path):
    """The same epoch exact (memory) and sketched (d = 256, so that the sketch is shorter than the 986
    parameters): every distance within the stated bound, recorded with the seed; no per-tensor distances."""
    settings = sketch_settings(3, dim=256, seed=11)
    assert settings["dim"] == 256 and 0 < settings["eps"] < 1
    for mode, sketch in (("memory", None), ("sketch", settings)):
        (tmp_path / mode).mkdir()
        run_held(study, tmp_path / mode, "float32", "inline", mode, sketch=sketch)
    exact, _ = read_epoch(tmp_path / "memory" / "epoch.h5")
    sketched, sketched_records = read_epoch(tmp_path / "sketch" / "epoch.h5")
    assert sketched["sketch"] == settings
    assert json.loads(sketched_records.provenance)["sketch"]["seed"] == 11
    assert list(sketched["layer_name"]) == [WHOLE_VECTOR]
    for name in ("distance", "norm"):
        error = np.abs(sketched[name] / exact[name] - 1)
        assert error.max() <= settings["eps"], (name, error.max(), settings["eps"])
        assert error.max() > 0  # an estimate, not the exact value
    assert "seed 11" in sketch_statement(settings) and f"{100 * settings['eps']:.3g}%" in sketch_statement(settings)


def test_sketched_distances_of_real_gradients_meet_the_bound_over_seeds(study, tmp_path, monkeypatch):
    """The bound is a statement over the projection's seed: on the tiny network's gradients of one epoch (K = 3),
    the share of 40 seeds whose largest relative error of D exceeds it stays near its delta (0.05)."""
    from bestbatch.sketch import SparseProjection, reduce_sketches
    from bestbatch.steps import training as steps

    held = {}

    def keep(sink, layout, **kw):
        held["rows"], held["total"] = (a.copy() for a in sink.arrays())
        return reduce_memory(sink, layout, **kw)

    monkeypatch.setattr(steps, "reduce_memory", keep)
    run_held(study, tmp_path, "float32", "inline", "memory")
    rows = held["rows"]
    exact = reduce_rows(rows, held["total"])["distance"]
    settings = sketch_settings(len(rows), dim=256)
    over = 0
    for seed in range(40):
        projection = SparseProjection(rows.shape[1], 256, seed=seed)
        sketched = reduce_sketches(np.stack([projection(torch.from_numpy(r)).numpy() for r in rows]))["distance"]
        over += np.abs(sketched / exact - 1).max() > settings["eps"]
    assert over <= 6, f"{over} of 40 seeds exceed the bound {settings['eps']:.3f} (delta 0.05: about 2 expected)"


def test_a_non_finite_gradient_in_a_sketch_is_named_by_its_batch():
    """A g_k holding NaN sketches to a row of NaN: the reduction names that batch, as the exact paths do; a row
    never put is a different error."""
    from bestbatch.distances import NonFiniteGradient
    from bestbatch.gradients import make_sketch_sink, reduce_sketch

    sink = make_sketch_sink(sketch_settings(3, dim=64), 100, 3, torch.device("cpu"))
    for k in range(3):
        g = torch.ones(100) * (k + 1)
        if k == 1:
            g[7] = float("nan")
        sink.put(k, g)
    with pytest.raises(NonFiniteGradient, match=r"sketched gradients: the gradient of batch 1 \(0-based"):
        reduce_sketch(sink, threads=1, gram=False)
    sink.formed[2] = False
    with pytest.raises(RuntimeError, match=r"rows \[2\] were never formed"):
        reduce_sketch(sink, threads=1, gram=False)


def test_epochs_whose_distances_spread_less_than_the_bound_are_named():
    from bestbatch.gradients import unresolved_epochs, unresolved_statement

    settings = sketch_settings(4, dim=512)  # a bound of about 10%
    distance = np.array([[1.0, 1.01, 0.99, 1.0], [1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]])
    assert unresolved_epochs([1, 2, 3], distance, settings) == [1, 3]
    assert unresolved_epochs([1, 2, 3], distance, None) == [] and unresolved_statement([1], distance[:1], None) == ""
    assert "In epochs 1, 3 the batches' distances spread less" in unresolved_statement([1, 2, 3], distance, settings)


def test_a_sketch_needs_its_settings_for_the_epochs_batches(study, tmp_path):
    with pytest.raises(ValueError, match="needs the sketch's settings for 3 batches"):
        run_held(study, tmp_path, "float32", "inline", "sketch", sketch=sketch_settings(5, dim=64))
    assert not any(tmp_path.iterdir())


# --- config, hashes, requests, plans --------------------------------------------------------------------


@pytest.mark.parametrize(
    "outputs, message",
    [
        ({"gradients": "memory", "keep_shards": True}, "outputs.keep_shards: true keeps gradient shards"),
        ({"gradients": "sketch", "sketch_dim": 8}, "outputs.sketch_dim: 8 is too short"),
    ],
)
def test_contradictory_outputs_are_refused_naming_the_key(outputs, message):
    with pytest.raises(ConfigError, match=message):
        check_semantics(validated(tiny_config_with(("outputs",), dict(TINY_CONFIG["outputs"], **outputs))), 320)


def test_an_unknown_mode_is_refused_by_the_schema():
    with pytest.raises(ConfigError, match="outputs.gradients"):
        validated(tiny_config_with(("outputs", "gradients"), "disk"))


def test_memory_keeps_the_result_hash_and_a_sketch_changes_it_but_not_the_orderings():
    """memory gives the shard's values, so a study switched to it reruns nothing for its hash; a sketch's
    settings are part of its results' hash, and of no ordering's."""
    base = validated(TINY_CONFIG)
    memory = validated(tiny_config_with(("outputs", "gradients"), "memory"))
    sketch = validated(tiny_config_with(("outputs", "gradients"), "sketch"))
    other_seed = validated(
        tiny_config_with(("outputs",), dict(TINY_CONFIG["outputs"], gradients="sketch", sketch_seed=1))
    )
    key = ("edges", "tiny_mlp_bn", 0)
    assert config_hash(base, *key) == config_hash(memory, *key)
    assert len({config_hash(c, *key) for c in (base, sketch, other_seed)}) == 3
    assert ordering_hash(base, "edges") == ordering_hash(sketch, "edges") == ordering_hash(other_seed, "edges")


def paper_study(gradients_mode, **kw):
    return Study(
        model="dpn92",
        n_train=50_000,
        n_test=10_000,
        batch_size=256,
        value_bytes=4,
        threads=4,
        gpu=True,
        gradients=gradients_mode,
        **kw,
    )


def test_requests_follow_where_the_gradients_are_held():
    """memory asks for the K x P rows (27 GB for DPN92) on top of the shard path's training job and no disk; a
    sketch for its K x d values; shard's request is what it was."""
    shard = job_resources(paper_study("shard"))
    memory = job_resources(paper_study("memory"))
    sketch = job_resources(paper_study("sketch", sketch_dim=5426))
    rows_mb = 195 * 34_236_634 * 4 / 1e6
    assert memory["train_epoch"]["mem_mb"] - shard["train_epoch"]["mem_mb"] >= 1.25 * rows_mb - 250
    assert memory["compare_epoch"]["mem_mb"] - shard["compare_epoch"]["mem_mb"] >= 1.25 * rows_mb - 250
    assert sketch["train_epoch"]["mem_mb"] - shard["train_epoch"]["mem_mb"] <= 250  # 8.5 MB of sketches on a GPU
    assert job_resources(paper_study("shard")) == job_resources(
        Study("dpn92", 50_000, 10_000, 256, 4, 4, True)
    )  # the default is the shard path's request


def job_counts(out):
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.parametrize("mode", ["memory", "sketch"])
def test_the_paper_dag_in_a_held_mode_has_no_reduce_epoch_jobs(tmp_path, mode):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.setdefault("outputs", {})["gradients"] = mode
    cfg = write_config(tmp_path / "paper.yaml", config)
    out = run_snakemake(tmp_path, "--configfile", str(cfg), "-n", "--quiet", "rules").stdout
    counts = job_counts(out)
    assert counts["train_epoch"] == 5 * 150 and "reduce_epoch" not in counts and "complete_epoch" not in counts
    assert counts["gather_distances"] == 5 and counts["heatmap"] == 5


def test_the_paper_plan_in_memory_mode_asks_slurm_for_the_rows(tmp_path):
    """The profile's plan: each bundle holds train_epoch jobs only, each asking for memory for the 27 GB of rows."""
    from test_slurm import planned_jobs, snakemake_in_repo

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.setdefault("outputs", {})["gradients"] = "memory"
    cfg = write_config(tmp_path / "paper.yaml", config)
    jobs = planned_jobs(
        snakemake_in_repo("--profile", "slurm", "--configfile", str(cfg), "-n", "--directory", str(tmp_path / "w"))
    )
    epochs = [j for j in jobs if j["group"] is not None and j["group"].startswith("epochs_")]
    assert epochs and {j["rule"] for j in epochs} == {"train_epoch"}
    assert {j["resources"]["mem_mb"] for j in epochs} == {job_resources(paper_study("memory"))["train_epoch"]["mem_mb"]}
    assert min(j["resources"]["mem_mb"] for j in epochs) > 1.25 * 195 * 34_236_634 * 4 / 1e6


# --- the workflow ---------------------------------------------------------------------------------------

RUN = "results/tiny/tiny_mlp_bn/seed_0"


def tiny_run(work, mode, layout, *targets):
    config = tiny_config_with(("outputs", "gradients"), mode)
    config["execution"] = {"layout": layout}
    cfg = write_config(work / "tiny.yaml", config)
    run_snakemake(work, "--cores", "2", "--configfile", str(cfg), "--", *targets)


def matrix_values(path):
    with h5py.File(path) as f:
        return {name: f[name][:] for name in f}, dict(f.attrs)


def test_a_tiny_study_in_memory_mode_gives_the_shard_studys_matrices(tmp_path):
    """Inline and parallel, through Snakemake: distances.h5 is bitwise the shard study's, every dataset."""
    targets = [f"{RUN}/intensity/distances.h5"]
    for mode, layout in (("shard", "inline"), ("memory", "inline"), ("memory", "parallel")):
        (tmp_path / f"{mode}-{layout}").mkdir()
        tiny_run(tmp_path / f"{mode}-{layout}", mode, layout, *targets)
    base, _ = matrix_values(tmp_path / "shard-inline" / targets[0])
    for work in ("memory-inline", "memory-parallel"):
        other, attrs = matrix_values(tmp_path / work / targets[0])
        assert "sketch" not in attrs
        assert_bitwise(base, other)
        assert not list((tmp_path / work).rglob("shards"))


def test_a_sketched_tiny_study_says_so_on_its_pages(tmp_path):
    """The heatmap and layers pages of a sketched run print the bound; distances.h5 records the settings."""
    tiny_run(
        tmp_path, "sketch", "parallel", f"{RUN}/plots/heatmap_intensity.html", f"{RUN}/plots/layers_intensity.html"
    )
    with h5py.File(tmp_path / RUN / "intensity" / "distances.h5") as f:
        settings = json.loads(f.attrs["sketch"])
        assert list(f["layer_name"].asstr()[:]) == [WHOLE_VECTOR]
    assert settings == sketch_settings(5, eps=0.05)
    heatmap = (tmp_path / RUN / "plots" / "heatmap_intensity.html").read_text()
    layers = (tmp_path / RUN / "plots" / "layers_intensity.html").read_text()
    assert "Sketched: each gradient projected to d = " in heatmap and "Projection seed 0" in heatmap
    assert "keep no per-tensor distances" in layers
