"""Inputs are normalised by CIFAR-10's constants for cifar10, cifar100 and synthetic data (bitwise as before), and by
the training images' own channel mean and std for an image folder (rule param `normalization: train`), computed
by one function (data.channel_statistics) that every job of such a study calls on the images it loads."""

import json
from fractions import Fraction

import h5py
import numpy as np
import pytest
import torch

from bestbatch import augment
from bestbatch.augment import images_to_tensor, make_batch, normalize
from bestbatch.data import (
    CIFAR_MEAN,
    CIFAR_STD,
    DatasetError,
    channel_statistics,
    load_dataset,
    normalization_of,
    normalization_record,
)

STEP = dict(data_format="cifar10", device="cpu", threads=1, cuda_tf32=False, cuda_deterministic=True)
TRAINING = dict(
    STEP,
    model="tiny_mlp_bn",
    num_classes=10,
    batch_size=32,
    lr=0.05,
    lr_gamma=0.1,
    momentum=0.9,
    weight_decay=5e-4,
    augment=True,
    dtype="float32",
    config_hash="test",
    progress=False,
)


def images(n=37, h=32, w=32, seed=0, high=256):
    return np.random.default_rng(seed).integers(0, high, (n, h, w, 3), dtype=np.uint8)


def old_normalize(x_uint8, dtype):
    """augment.normalize as it was before the normalisation became a parameter (commit a7084c9)."""
    mean = torch.tensor((0.4914, 0.4822, 0.4465), dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor((0.2023, 0.1994, 0.2010), dtype=torch.float64).view(1, 3, 1, 1)
    scale, shift = (1 / (255 * std)).to(x_uint8.device, dtype), (-mean / std).to(x_uint8.device, dtype)
    return torch.addcmul(shift, x_uint8.to(dtype), scale)


# --- channel_statistics -------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(37, 32, 32), (5, 7, 3), (1, 1, 2)])
def test_channel_statistics_against_a_float64_reference(shape):
    x = images(*shape)
    mean, std = channel_statistics(x)
    assert all(isinstance(v, float) for v in mean + std) and len(mean) == len(std) == 3
    ref = x.reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean(0), rtol=1e-13)
    np.testing.assert_allclose(std, ref.std(0), rtol=1e-12)  # population std (ddof 0)


def test_channel_statistics_are_the_exact_values_rounded_once():
    """The mean is the exact rational sum / (n 255) rounded once; the variance's numerator is exact too."""
    x = images(11, 9, 5, seed=3)
    mean, std = channel_statistics(x)
    for c in range(3):
        values = [int(v) for v in x[..., c].ravel()]
        n, s, s2 = len(values), sum(values), sum(v * v for v in values)
        assert mean[c] == float(Fraction(s, n * 255))
        assert std[c] == float(np.sqrt(float(Fraction(n * s2 - s * s, (n * 255) ** 2))))


def test_channel_statistics_do_not_depend_on_the_chunking():
    x = images(50, seed=1)
    assert channel_statistics(x) == channel_statistics(x, chunk=7) == channel_statistics(x, chunk=1000)


def test_channel_statistics_refuse_what_they_cannot_normalise():
    flat = images(4)
    flat[..., 1] = 17
    with pytest.raises(DatasetError, match=r"one value only in channel\(s\) \[1\]"):
        channel_statistics(flat)
    for bad in (images(3).astype(np.float32), images(3)[..., :2], images(3)[:0]):
        with pytest.raises(ValueError, match="uint8 images"):
            channel_statistics(bad)


# --- normalize ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_default_is_cifar10s_constants_bitwise_as_before(dtype):
    x = images_to_tensor(images(16), "cpu")
    assert torch.equal(normalize(x, dtype), old_normalize(x, dtype))
    assert torch.equal(normalize(x, dtype, (CIFAR_MEAN, CIFAR_STD)), old_normalize(x, dtype))
    assert augment.CIFAR_MEAN == (0.4914, 0.4822, 0.4465) and augment.CIFAR_STD == (0.2023, 0.1994, 0.2010)
    idx = torch.tensor([3, 0, 7, 7, 15])
    want = old_normalize(augment.crop_flip(x[idx], 5, 2, 1), dtype)
    assert torch.equal(make_batch(x, idx, 5, 2, 1, True, dtype), want)
    assert torch.equal(make_batch(x, idx, 5, 2, 1, True, dtype, None), want)


def test_normalize_with_explicit_statistics():
    x8 = images(9, seed=4)
    stats = channel_statistics(x8)
    x = images_to_tensor(x8, "cpu")
    mean = torch.tensor(stats[0], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(stats[1], dtype=torch.float64).view(1, 3, 1, 1)
    got = normalize(x, torch.float64, stats)
    torch.testing.assert_close(got, (x.double() / 255 - mean) / std, rtol=1e-12, atol=1e-12)
    # on the training set itself: mean 0 and std 1 per channel
    torch.testing.assert_close(got.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(got.std((0, 2, 3), correction=0), torch.ones(3, dtype=torch.float64))
    idx = torch.tensor([1, 2])
    assert torch.equal(
        make_batch(x, idx, 0, 1, 0, False, torch.float32, stats), normalize(x[idx], torch.float32, stats)
    )


def test_normalization_of_the_rule_param():
    x = images(6)
    assert normalization_of(None, x) is None
    assert normalization_of("train", x) == channel_statistics(x)
    with pytest.raises(ValueError, match="normalization must be one of"):
        normalization_of("test", x)
    assert normalization_record(None, None) == dict(
        source="cifar10", what="CIFAR-10's channel mean and std", mean=list(CIFAR_MEAN), std=list(CIFAR_STD)
    )
    rec = normalization_record("train", channel_statistics(x))
    assert rec["source"] == "train" and rec["mean"] == list(channel_statistics(x)[0])


# --- the jobs: every step that normalises uses the training set's statistics with `normalization: train` -----
def random_ordering(out, root):
    """The random control's ordering of the data set under `root` (steps.orderings.make_ordering), into `out`."""
    from bestbatch.steps.orderings import make_ordering

    make_ordering(
        out,
        data_root=root,
        data_format="cifar10",
        metric="random",
        params={},
        threads=1,
        device="cpu",
        config_hash="test",
        progress=False,
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A small data set in CIFAR-10's format (what an image folder is decoded into), its random ordering and an
    initialisation; its channel statistics are far from CIFAR-10's."""
    from bestbatch.steps.data import synthetic_dataset
    from bestbatch.steps.training import init_model

    tmp = tmp_path_factory.mktemp("normalization")
    root = tmp / "data"
    synthetic_dataset(root=root, n_train=96, n_test=40, seed=5)
    random_ordering(tmp / "order.h5", root)
    init_model(tmp / "init.pt", model="tiny_mlp_bn", num_classes=10, seed=0, dtype="float32", config_hash="test")
    stats = channel_statistics(load_dataset(root).train_images)
    assert not np.allclose(stats, (CIFAR_MEAN, CIFAR_STD), atol=1e-3)
    return tmp, root, stats


def test_verify_dataset_records_the_normalisation(study, tmp_path):
    from bestbatch.steps.data import verify_dataset

    _, root, stats = study
    check = dict(root=root, source="cifar10", download=False, verify="auto", batch_size=32, n_train=96, n_test=40)
    own = verify_dataset(tmp_path / "own.json", **check, n_classes=10, normalization="train")
    assert json.loads((tmp_path / "own.json").read_text())["normalization"] == own["normalization"]
    assert own["normalization"]["source"] == "train"
    assert (tuple(own["normalization"]["mean"]), tuple(own["normalization"]["std"])) == stats
    cifar = verify_dataset(tmp_path / "cifar.json", **check, n_classes=10)
    assert cifar["normalization"]["source"] == "cifar10" and cifar["normalization"]["mean"] == list(CIFAR_MEAN)
    assert {k: v for k, v in cifar.items() if k != "normalization"} == {
        k: v for k, v in own.items() if k != "normalization"
    }


def as_cifar(monkeypatch, stats):
    """Make CIFAR-10's constants the given statistics: a job without the param must then compute bitwise what a
    job with `normalization: train` computes, if (and only if) that one normalises everything with them."""
    monkeypatch.setattr(augment, "CIFAR_MEAN", stats[0])
    monkeypatch.setattr(augment, "CIFAR_STD", stats[1])


@pytest.mark.parametrize("layout", ["inline", "parallel"])
def test_an_epoch_job_normalises_by_the_training_set(study, tmp_path, monkeypatch, layout):
    from bestbatch.formats import SHARD_ROWS, TRAINING_RECORDS, load_checkpoint, read_shard_records, read_training
    from bestbatch.steps.training import compare_epoch, train_epoch

    tmp, root, stats = study

    def run(name, normalization):
        out = tmp_path / name
        out.mkdir()
        if layout == "inline":
            kw = dict(out_shard=out / "shard.h5")
        else:
            kw = dict(out_records=out / "records.h5")
        job = dict(metric="random", epoch=1, data_root=root, lr_milestones=[1], seed=0, **TRAINING)
        if normalization:
            job["normalization"] = normalization
        train_epoch(tmp / "order.h5", tmp / "init.pt", out / "e1.pt", **kw, **job)
        if layout == "parallel":
            compare_epoch(tmp / "order.h5", tmp / "init.pt", out / "shard.h5", **job)
            records = read_training(out / "records.h5", 1)
        else:
            records = {name: getattr(read_shard_records(out / "shard.h5")[0], name) for name in TRAINING_RECORDS}
        with h5py.File(out / "shard.h5", "r") as f:
            rows = f[SHARD_ROWS][:]  # net_compare's g_k
        return load_checkpoint(out / "e1.pt"), records, rows

    own, own_records, own_rows = run("own", "train")
    assert own.meta["normalization"] == normalization_record("train", stats)
    plain, plain_records, _ = run("plain", None)
    assert "normalization" not in plain.meta  # the other studies' provenance is what it was
    assert any(not torch.equal(value, plain.model[key]) for key, value in own.model.items())
    with monkeypatch.context() as m:
        as_cifar(m, stats)
        same, same_records, same_rows = run("same", None)
    for key, value in own.model.items():
        assert torch.equal(value, same.model[key]), key
    assert np.array_equal(own_rows, same_rows) and own_rows.shape == (3, own_rows.shape[1])
    assert own_records["test_loss"] != plain_records["test_loss"]
    for field in TRAINING_RECORDS:
        assert np.array_equal(own_records[field], same_records[field]), field


def test_a_selection_job_normalises_by_the_training_set(study, tmp_path, monkeypatch):
    from bestbatch.config import phases
    from bestbatch.formats import load_checkpoint, read_curve
    from bestbatch.steps.selection import train_arm_chunk

    tmp, root, stats = study

    def run(name, normalization):
        out = tmp_path / name
        job = dict(
            TRAINING,
            data_root=root,
            profile_paths=[],
            arm="shuffled",
            seed="0",
            budget="1",
            chunk="0",
            chunk_epochs=2,
            epochs=2,
            phases=phases(2, 0.05, [1], 0.1),
            lr_milestones=[1],
            drop_fraction=0.25,
            best_fraction=0.5,
            evaluations=2,
        )
        if normalization:
            job["normalization"] = normalization
        train_arm_chunk(None, tmp / "init.pt", out / "chunk_0.pt", out / "chunk_0.h5", **job)
        curve, attrs = read_curve(out / "chunk_0.h5")
        return load_checkpoint(out / "chunk_0.pt"), curve, json.loads(attrs["provenance"])

    own, own_curve, own_provenance = run("own", "train")
    assert own_provenance["normalization"] == normalization_record("train", stats)
    _, plain_curve, plain_provenance = run("plain", None)
    assert "normalization" not in plain_provenance
    assert not np.array_equal(own_curve.test_loss, plain_curve.test_loss)
    with monkeypatch.context() as m:
        as_cifar(m, stats)
        same, same_curve, _ = run("same", None)
    for key, value in own.model.items():
        assert torch.equal(value, same.model[key]), key
    for field in ("test_loss", "test_acc", "train_loss"):
        assert np.array_equal(getattr(own_curve, field), getattr(same_curve, field)), field


def test_the_training_split_alone_serves_the_orderings_and_the_probe(study, tmp_path, monkeypatch):
    """Neither reads the test file (which a split decode may not have written yet); the probe checks the network
    on inputs normalised as its training jobs normalise them."""
    import shutil

    from bestbatch import models
    from bestbatch.formats import read_ordering
    from bestbatch.steps.training import model_cost

    tmp, root, stats = study
    train_only = tmp_path / "data"
    shutil.copytree(root, train_only)
    (train_only / "cifar-10-batches-py" / "test_batch").unlink()
    random_ordering(tmp_path / "order.h5", train_only)
    assert np.array_equal(read_ordering(tmp_path / "order.h5")[0], read_ordering(tmp / "order.h5")[0])
    seen = []
    check_model = models.check_model
    monkeypatch.setattr(
        models,
        "check_model",
        lambda model, n, batch, *a, **k: seen.append(batch) or check_model(model, n, batch, *a, **k),
    )
    probe = model_cost(
        tmp_path / "cost.json",
        model="tiny_mlp",
        where="models[0]",
        num_classes=10,
        data_root=train_only,
        data_format="cifar10",
        device="cpu",
        normalization="train",
    )
    assert json.loads((tmp_path / "cost.json").read_text()) == probe and probe["params"] > 0
    x = images_to_tensor(load_dataset(root).train_images[:4], "cpu")
    assert torch.equal(seen[0], normalize(x, torch.float32, stats))
