"""Kill anywhere and resume exactly; refuse bad input early, naming it; never take half a file as done."""

import copy
import math
import os
import re
import shutil
import signal
import subprocess

import h5py
import numpy as np
import pytest
import torch
from conftest import REPO, SNAKEMAKE, TINY_CONFIG, run_snakemake, tiny_config_with, validated, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bestbatch.config import ConfigError, config_hash

RUN = "results/tiny/tiny_mlp_bn/seed_0"
TARGETS = [f"{RUN}/random/distances.h5", f"{RUN}/random/checkpoints/epoch_3.pt"]


def killable_run(workdir, cfg, kill_at=None):
    """snakemake in its own process group, as a user's terminal would run it; returns the exit code."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    env.pop("BESTBATCH_KILL_AT", None)
    if kill_at:
        env["BESTBATCH_KILL_AT"] = kill_at
    proc = subprocess.run(
        [
            *SNAKEMAKE,
            "-s",
            str(REPO / "workflow" / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(cfg),
            "--cores",
            "1",
            *TARGETS,
        ],
        env=env,
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=600,
    )
    return proc


def final_state(workdir):
    out = {}
    with h5py.File(workdir / TARGETS[0], "r") as f:
        out.update({name: f[name][:] for name in f})
    ckpt = torch.load(workdir / TARGETS[1], weights_only=True)
    out.update({f"model.{k}": v.numpy() for k, v in ckpt["model"].items()})
    return out


def copy_shared_inputs(ref_dir, work):
    """The data, orderings and initialisation of the reference run, shared; the chain from epoch 1 on is recomputed."""
    for part in ("data", "dataset.json", "orderings", "tiny_mlp_bn/seed_0/checkpoints"):
        src = ref_dir / "results" / "tiny" / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / "results" / "tiny" / part)


def assert_same_final_state(ref_dir, work):
    """The matrix file's every dataset and the last checkpoint of `work` are the reference run's, to the bit."""
    want, got = final_state(ref_dir), final_state(work)
    assert want.keys() == got.keys()
    for name in want:
        assert np.array_equal(want[name], got[name]), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    work = tmp_path_factory.mktemp("reference")
    cfg = write_config(work / "tiny.yaml", dict(copy.deepcopy(TINY_CONFIG), metrics=["random"]))
    proc = killable_run(work, cfg)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, cfg


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_at",
    ["batch:2:2", "after_checkpoint:2:0", "reduce:2:1"],
    ids=["mid-epoch, shard incomplete", "after checkpoint, before shard", "during reduction"],
)
def test_sigkill_then_same_command_resumes_bitwise(reference, kill_at, tmp_path):
    ref_dir, cfg = reference
    copy_shared_inputs(ref_dir, tmp_path)
    killed = killable_run(tmp_path, cfg, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / TARGETS[0]).exists()
    epoch2 = tmp_path / RUN / "random"
    if kill_at.startswith("batch"):
        assert not (epoch2 / "shards/epoch_2.h5").exists() and not (epoch2 / "checkpoints/epoch_2.pt").exists()
        assert list((epoch2 / "shards").glob(".tmp-*"))  # the half-written shard sits under a temporary name
    if kill_at.startswith("after_checkpoint"):
        assert (epoch2 / "checkpoints/epoch_2.pt").exists() and not (epoch2 / "shards/epoch_2.h5").exists()
    if kill_at.startswith("reduce"):
        assert (epoch2 / "shards/epoch_2.h5").exists() and not (epoch2 / "epochs/epoch_2.h5").exists()
    resumed = killable_run(tmp_path, cfg)  # the very same command
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "stale lock" in resumed.stderr
    assert_same_final_state(ref_dir, tmp_path)
    assert not list((epoch2 / "shards").glob(".tmp-*"))


# outputs.gradients memory and sketch: kills at moments drawn from the job's kill points (a batch drawn at random,
# the checkpoint written but not the epoch, the reduction under way), seeded so that a failure reruns as it was
_DRAW = np.random.default_rng(31)
HELD_KILLS = [
    ("memory", f"batch:2:{_DRAW.integers(0, 5)}"),
    ("memory", "reduce:2:1"),
    ("sketch", f"batch:2:{_DRAW.integers(0, 5)}"),
    ("sketch", "after_checkpoint:2:0"),
]


@pytest.fixture(scope="module")
def sketch_reference(tmp_path_factory):
    work = tmp_path_factory.mktemp("sketch_reference")
    config = dict(copy.deepcopy(TINY_CONFIG), metrics=["random"])
    config["outputs"] = dict(config["outputs"], gradients="sketch")
    cfg = write_config(work / "tiny.yaml", config)
    proc = killable_run(work, cfg)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, cfg


@pytest.mark.slow
@pytest.mark.parametrize("mode, kill_at", HELD_KILLS, ids=[f"{m} {k}" for m, k in HELD_KILLS])
def test_sigkill_in_a_memory_or_sketch_job_resumes_bitwise(reference, sketch_reference, mode, kill_at, tmp_path):
    """The job holding its gradients (memory, sketch) killed anywhere: the same command resumes it, and the result
    is the uninterrupted run's to the bit; for memory that is the shard study's own result."""
    ref_dir = reference[0]
    if mode == "sketch":
        ref_dir, cfg = sketch_reference
    else:
        config = dict(copy.deepcopy(TINY_CONFIG), metrics=["random"])
        config["outputs"] = dict(config["outputs"], gradients="memory")
        cfg = write_config(tmp_path / "memory.yaml", config)
    copy_shared_inputs(ref_dir, tmp_path)
    killed = killable_run(tmp_path, cfg, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    epoch2 = tmp_path / RUN / "random"
    assert (epoch2 / "epochs/epoch_1.h5").exists() and not (epoch2 / "epochs/epoch_2.h5").exists()
    assert not (epoch2 / "shards").exists()
    resumed = killable_run(tmp_path, cfg)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert_same_final_state(ref_dir, tmp_path)
    assert not list(epoch2.rglob(".tmp-*"))


def training_params(config):
    """The explicit values a train_epoch job gets, as workflow/rules/common.smk hands them over."""
    t = config["training"]
    keys = (
        "batch_size",
        "lr",
        "lr_milestones",
        "lr_gamma",
        "momentum",
        "weight_decay",
        "augment",
        "dtype",
        "device",
        "threads",
        "cuda_tf32",
        "cuda_deterministic",
    )
    return dict(
        data_root=config["data"]["root"],
        data_format="cifar10",
        model=config["models"][0],
        num_classes=10,
        seed=0,
        config_hash=config_hash(config),
        **{key: t[key] for key in keys},
    )


def test_nonfinite_loss_stops_with_epoch_and_batch_and_keeps_previous_epoch(tmp_path):
    from bestbatch.steps.data import synthetic_dataset
    from bestbatch.steps.orderings import make_ordering
    from bestbatch.steps.training import init_model, train_epoch
    from bestbatch.training import NonFiniteError

    config = validated(dict(copy.deepcopy(TINY_CONFIG), data=dict(TINY_CONFIG["data"], root=str(tmp_path / "d"))))
    synthetic_dataset(
        root=config["data"]["root"], **{k: config["data"]["synthetic"][k] for k in ("n_train", "n_test", "seed")}
    )
    make_ordering(
        tmp_path / "order.h5",
        data_root=config["data"]["root"],
        data_format="cifar10",
        metric="random",
        params={},
        threads=1,
        device="cpu",
        config_hash="test",
        progress=False,
    )
    init_model(
        tmp_path / "init.pt", model=config["models"][0], num_classes=10, seed=0, dtype="float32", config_hash="test"
    )
    train_epoch(
        tmp_path / "order.h5",
        tmp_path / "init.pt",
        tmp_path / "e1.pt",
        tmp_path / "s1.h5",
        metric="random",
        epoch=1,
        progress=False,
        **training_params(config),
    )
    before = (tmp_path / "e1.pt").read_bytes()
    config["training"]["lr"] = 1e12  # diverges within the epoch
    with pytest.raises(NonFiniteError, match=r"non-finite training loss in epoch 2, batch \d"):
        train_epoch(
            tmp_path / "order.h5",
            tmp_path / "e1.pt",
            tmp_path / "e2.pt",
            tmp_path / "s2.h5",
            metric="random",
            epoch=2,
            progress=False,
            **training_params(config),
        )
    assert not (tmp_path / "e2.pt").exists() and not (tmp_path / "s2.h5").exists()
    assert not list(tmp_path.glob(".tmp-*"))
    assert (tmp_path / "e1.pt").read_bytes() == before


def test_unloadable_checkpoint_names_the_file(tmp_path):
    from bestbatch.formats import load_checkpoint

    bad = tmp_path / "epoch_4.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(RuntimeError, match=r"checkpoint .*epoch_4.pt cannot be loaded .*delete it and rerun"):
        load_checkpoint(bad, "cpu")


def test_checkpoints_refuse_pickled_code(tmp_path):
    """Checkpoints load with weights_only=True: an object that would run code is refused."""
    from bestbatch.formats import load_checkpoint

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(RuntimeError, match="evil.pt cannot be loaded"):
        load_checkpoint(tmp_path / "evil.pt", "cpu")
    assert not marker.exists()


# --- malformed configs --------------------------------------------------------------------------

LEAVES = [
    ("study",),
    ("data", "source"),
    ("data", "root"),
    ("data", "synthetic", "n_train"),
    ("models",),
    ("seeds",),
    ("training", "epochs"),
    ("training", "batch_size"),
    ("training", "lr"),
    ("training", "momentum"),
    ("training", "weight_decay"),
    ("training", "lr_milestones"),
    ("training", "lr_gamma"),
    ("training", "dtype"),
    ("training", "device"),
    ("training", "threads"),
    ("metrics",),
    ("orderings", "edges", "sigma"),
    ("orderings", "lpips", "pretrained_backbone"),
    ("outputs", "keep_shards"),
]
BAD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 0),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(-5, 500), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# An oracle written from the schema's descriptions, independent of it: is `value` valid at `leaf` of
# TINY_CONFIG (320 images, batches of 64, milestones [1, 2])?
VALID = {
    ("study",): lambda v: isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9_.-]+", v) is not None,
    ("data", "source"): lambda v: v in ("cifar10", "cifar100", "synthetic"),
    ("data", "root"): lambda v: isinstance(v, str) and len(v) > 0,
    # at least two batches of the tiny config's batch size
    ("data", "synthetic", "n_train"): lambda v: _int(v) and v >= 2 * TINY_CONFIG["training"]["batch_size"],
    ("models",): lambda v: (
        isinstance(v, list)
        and len(v) > 0
        and len(set(map(repr, v))) == len(v)
        and all(m in ("dpn92", "dpn26", "resnet18", "small_cnn", "tiny_mlp", "tiny_mlp_bn") for m in v)
    ),
    ("seeds",): lambda v: (
        isinstance(v, list) and len(v) > 0 and all(_int(x) and x >= 0 for x in v) and len(set(v)) == len(v)
    ),
    ("training", "epochs"): lambda v: _int(v) and v >= 3,
    # at least two batches of the tiny config's images
    ("training", "batch_size"): lambda v: _int(v) and 1 <= v <= TINY_CONFIG["data"]["synthetic"]["n_train"] // 2,
    ("training", "lr"): lambda v: _num(v) and v > 0,
    ("training", "momentum"): lambda v: _num(v) and 0 <= v <= 1,
    ("training", "weight_decay"): lambda v: _num(v) and v >= 0,
    ("training", "lr_milestones"): lambda v: v in ([], [1], [2], [1, 2]),
    ("training", "lr_gamma"): lambda v: _num(v) and v > 0,
    ("training", "dtype"): lambda v: v in ("float32", "float64"),
    ("training", "device"): lambda v: v in ("auto", "cpu", "cuda"),
    ("training", "threads"): lambda v: _int(v) and v >= 1,
    ("metrics",): lambda v: (
        isinstance(v, list)
        and len(v) > 0
        and len(set(map(repr, v))) == len(v)
        and all(m in ("intensity", "color", "edges", "lpips", "random") for m in v)
    ),
    ("orderings", "edges", "sigma"): lambda v: _num(v) and v > 0,
    ("orderings", "lpips", "pretrained_backbone"): lambda v: isinstance(v, bool),
    ("outputs", "keep_shards"): lambda v: isinstance(v, bool),
}
LEAVES = list(VALID)
GOOD_VALUES = st.one_of(
    st.sampled_from(["demo", "cifar10", "synthetic", "float64", "cuda", "edges", "resnet18"]),
    st.integers(0, 400),
    st.floats(0, 2),
    st.lists(st.sampled_from(["edges", "random"]), max_size=2),
    st.sampled_from([[1], [2], [2, 1], [1, 1]]),
    st.just(4.0),
    st.just(float("inf")),
    st.sampled_from([["small_cnn"], ["resnet18", "tiny_mlp"], [0, 1], [3], [0, 0], ["dpn92", 1]]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(leaf=st.sampled_from(LEAVES), value=st.one_of(BAD_VALUES, GOOD_VALUES), extra=st.booleans())
def test_malformed_configs_are_refused_naming_the_key(leaf, value, extra):
    config = copy.deepcopy(TINY_CONFIG)
    node = config
    for key in leaf[:-1]:
        node = node[key]
    node[leaf[-1]] = value
    if extra:
        node["surplus_key"] = 1
    valid = VALID[leaf](value) and not extra
    try:
        validated(config)
    except ConfigError as err:
        key = str(err).split(":")[0]
        assert key.split(".")[0] in config, str(err)
        # a rule between two keys may name the other one: too few images for the batch size names the batch size
        other = {("data", "synthetic", "n_train"): "training.batch_size"}.get(leaf, ".".join(leaf[:-1]))
        assert key.startswith(".".join(leaf[:-1])) or key == other, (leaf, str(err))
        assert "allowed" in str(err) or "required" in str(err) or "must be" in str(err), str(err)
        assert not valid, (leaf, value, str(err))  # refused only where the value really is invalid
    else:  # accepted only where the value really is valid
        assert valid, (leaf, value, extra)


@pytest.mark.parametrize(
    "key,value,message",
    [
        (("models",), ["vgg16"], "models.0: 'vgg16' is not allowed; allowed values: dpn92"),
        (
            ("training", "batch_size"),
            5000,
            "training.batch_size: 5000 is larger than the training set (320 training images)",
        ),
        (("metrics",), ["intensity", "hue"], "metrics.1: 'hue' is not allowed; allowed values: intensity, color"),
        (("training", "lr_milestones"), [0], "training.lr_milestones"),
        (("training", "batch_size"), 320, "training.batch_size: 320 leaves one batch per epoch"),
        (("training", "lr"), float("inf"), "training.lr: inf is not a finite number"),
        (("training", "epochs"), 4.0, "training.epochs: 4.0 is not of type 'integer'"),
    ],
)
def test_snakemake_refuses_bad_config_before_any_job(tmp_path, key, value, message):
    cfg = write_config(tmp_path / "bad.yaml", tiny_config_with(key, value))
    proc = run_snakemake(tmp_path, "--configfile", str(cfg), "--cores", "1", check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_missing_data_root_is_refused_with_what_to_put_where(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["data"] = {"source": "cifar10", "root": str(tmp_path / "nowhere")}
    cfg = write_config(tmp_path / "bad.yaml", config)
    proc = run_snakemake(tmp_path, "--configfile", str(cfg), "--cores", "1", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "cifar-10-batches-py" in out and "cifar-10-python.tar.gz" in out
    assert not list((tmp_path / "results").rglob("*.h5"))


def test_dataset_check_refuses_data_that_changed_since_planning(tmp_path):
    """The DAG is sized from the files when Snakemake starts; a set that changed since is named with both numbers."""
    from bestbatch.data import DatasetError, make_synthetic, write_dataset
    from bestbatch.steps.data import verify_dataset

    write_dataset(tmp_path / "d", *make_synthetic(300, 40, seed=1))

    def check(batch_size, n_train):
        verify_dataset(
            tmp_path / "dataset.json",
            root=tmp_path / "d",
            source="cifar10",
            download=False,
            verify="auto",
            batch_size=batch_size,
            n_train=n_train,
            n_test=40,
            n_classes=10,
        )

    with pytest.raises(
        DatasetError, match=r"holds 300 training images, but the workflow was planned for 1024 training"
    ):
        check(batch_size=64, n_train=1024)
    with pytest.raises(
        DatasetError, match=r"training.batch_size: 200 leaves one batch per epoch \(300 training images"
    ):
        check(batch_size=200, n_train=300)
    assert not (tmp_path / "dataset.json").exists()
