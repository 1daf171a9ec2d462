"""bestbatch.data: the CIFAR-10 python format, the trust rules, and the synthetic stand-in."""
import json
import os
import pickle
import sys
import types

import numpy as np
import pytest

from bestbatch.data import (CIFAR_DIRNAME, META_FILE, OFFICIAL_MD5, TEST_FILE, TRAIN_FILES, Dataset,
                            DatasetError, dataset_summary, load_cifar10, make_synthetic, restricted_load,
                            write_cifar10)


@pytest.fixture(scope="module")
def small():
    return make_synthetic(53, 17, seed=3)  # 53 does not split evenly over 5 files


@pytest.fixture
def root(tmp_path, small):
    write_cifar10(tmp_path, *small)
    return tmp_path


def _read(path):
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _write(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _rewrite(path, **changes):
    _write(path, _read(path) | changes)


# ------------------------------------------------------------------------------------ round trip
def test_round_trip_and_paths(tmp_path, small):
    paths = write_cifar10(tmp_path, *small)
    folder = tmp_path / CIFAR_DIRNAME
    assert paths == [folder / f for f in (*TRAIN_FILES, TEST_FILE, META_FILE)]
    assert all(p.is_file() for p in paths)
    assert sorted(os.listdir(folder)) == sorted(p.name for p in paths)  # no temp files left
    ds = load_cifar10(tmp_path)
    for got, want in zip((ds.train_images, ds.train_labels, ds.test_images, ds.test_labels), small):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert ds.train_labels.dtype == np.int64 and ds.classes == small[4] and not ds.official
    assert [len(_read(p)["labels"]) for p in paths[:5]] == [11, 11, 11, 10, 10]
    labels = [_read(p)["batch_label"] for p in paths[:6]]
    assert labels[0] == "bestbatch synthetic training batch 1 of 5"
    assert labels[5] == "bestbatch synthetic testing batch 1 of 1"


def test_torchvision_reading_procedure_agrees(root, small):
    """torchvision's CIFAR10.__init__ steps, inline: the files are in its format."""
    folder = root / CIFAR_DIRNAME
    data, targets = [], []
    for name in TRAIN_FILES:
        with open(folder / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data.append(entry["data"])
        targets.extend(entry["labels"])
    data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))
    classes = _read(folder / META_FILE)["label_names"]
    ds = load_cifar10(root)
    assert np.array_equal(data, ds.train_images) and targets == ds.train_labels.tolist()
    assert tuple(classes) == ds.classes
    assert np.array_equal(data, small[0])


def test_official_md5_table_matches_torchvision():
    cifar = pytest.importorskip("torchvision.datasets").CIFAR10
    table = dict(cifar.train_list + cifar.test_list) | {cifar.meta["filename"]: cifar.meta["md5"]}
    assert table == OFFICIAL_MD5


def test_summary_is_json(root):
    ds = load_cifar10(root)
    s = json.loads(json.dumps(dataset_summary(ds)))
    assert s["n_train"] == 53 and s["n_test"] == 17 and s["official"] is False
    assert sum(s["train_class_counts"]) == 53 and len(s["files"]) == 7


def test_write_rejects_bad_arrays(tmp_path, small):
    xtr, ytr, xte, yte, classes = small
    with pytest.raises(ValueError):
        write_cifar10(tmp_path, xtr.astype(np.int16), ytr, xte, yte, classes)
    with pytest.raises(ValueError):
        write_cifar10(tmp_path, xtr, ytr + 10, xte, yte, classes)
    with pytest.raises(ValueError):
        write_cifar10(tmp_path, xtr, ytr, xte, yte, classes, source="  ")


# ----------------------------------------------------------------------------------- trust rules
def test_official_label_with_wrong_contents_is_corrupt(root):
    _rewrite(root / CIFAR_DIRNAME / "data_batch_2", batch_label="training batch 2 of 5")
    with pytest.raises(DatasetError, match="md5") as e:
        load_cifar10(root)
    assert "corrupt" in str(e.value) and str(root / CIFAR_DIRNAME / "data_batch_2") in str(e.value)


def test_official_files_with_matching_md5_are_official(root, monkeypatch):
    """Stand-in for the real release: official labels, and the md5 table pointed at these bytes."""
    import hashlib
    folder = root / CIFAR_DIRNAME
    for i, name in enumerate(TRAIN_FILES, 1):
        _rewrite(folder / name, batch_label=f"training batch {i} of 5")
    _rewrite(folder / TEST_FILE, batch_label="testing batch 1 of 1")
    for name in (*TRAIN_FILES, TEST_FILE, META_FILE):
        monkeypatch.setitem(OFFICIAL_MD5, name, hashlib.md5((folder / name).read_bytes()).hexdigest())
    assert load_cifar10(root).official
    _rewrite(folder / META_FILE, label_names=[f"c{i}" for i in range(10)])
    with pytest.raises(DatasetError, match="corrupt") as e:
        load_cifar10(root)
    assert str(folder / META_FILE) in str(e.value)


def _break(folder, how):
    """Damage one file; returns the path the error must name."""
    batch = folder / "data_batch_3"
    if how == "missing_dir":
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
        return folder / TRAIN_FILES[0]
    if how == "missing_file":
        (folder / TEST_FILE).unlink()
        return folder / TEST_FILE
    if how == "truncated":
        raw = batch.read_bytes()
        batch.write_bytes(raw[: len(raw) // 2])
    elif how == "wrong_width":
        _rewrite(batch, data=np.zeros((11, 3071), np.uint8))
    elif how == "labels_out_of_range":
        _rewrite(batch, labels=[10] * 11)
    elif how == "negative_labels":
        _rewrite(batch, labels=[-1] * 11)
    elif how == "label_count":
        _rewrite(batch, labels=[0] * 10)
    elif how == "not_uint8":
        _rewrite(batch, data=np.zeros((11, 3072), np.int16))
    elif how == "no_labels_key":
        _write(batch, {k: v for k, v in _read(batch).items() if k != "labels"})
    elif how == "not_a_dict":
        _write(batch, [1, 2, 3])
    return batch


@pytest.mark.parametrize("how", ["missing_dir", "missing_file", "truncated", "wrong_width", "labels_out_of_range",
                                 "negative_labels", "label_count", "not_uint8", "no_labels_key", "not_a_dict"])
def test_bad_data_names_the_file(root, how):
    named = _break(root / CIFAR_DIRNAME, how)
    with pytest.raises(DatasetError) as e:
        load_cifar10(root)
    assert str(named) in str(e.value)
    if how.startswith("missing_"):
        assert "https://www.cs.toronto.edu/~kriz/cifar.html" in str(e.value) and "data.download" in str(e.value)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused(root, tmp_path):
    marker = tmp_path / "pwned"
    batch = root / CIFAR_DIRNAME / "data_batch_1"
    _write(batch, {"data": np.zeros((1, 3072), np.uint8), "labels": [_Evil(marker)]})
    for load in (lambda: restricted_load(batch), lambda: load_cifar10(root)):
        with pytest.raises(DatasetError, match="system") as e:
            load()
        assert str(batch) in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_restricted_load_reads_numpy_arrays(tmp_path, protocol):
    a = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    p = tmp_path / "x"
    p.write_bytes(pickle.dumps({"data": a, "labels": [np.int64(1), 2], "batch_label": b"bytes"}, protocol=protocol))
    d = restricted_load(p)
    assert np.array_equal(d["data"], a) and d["labels"] == [1, 2]


def test_restricted_load_reads_numpy1_module_names(tmp_path):
    """The official files were pickled by numpy 1, which names numpy.core.multiarray."""
    a = np.arange(3072, dtype=np.uint8).reshape(1, 3072)
    raw = pickle.dumps({"data": a}, protocol=2)
    assert b"numpy._core.multiarray" in raw
    (tmp_path / "x").write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert np.array_equal(restricted_load(tmp_path / "x")["data"], a)


def _fake_torchvision(monkeypatch, cifar10):
    datasets = types.ModuleType("torchvision.datasets")
    datasets.CIFAR10 = cifar10
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(datasets=datasets))
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)


def test_download_offline_says_what_to_do(tmp_path, monkeypatch):
    def offline(root, train, download):
        raise OSError("Name or service not known")
    _fake_torchvision(monkeypatch, offline)
    with pytest.raises(DatasetError, match="offline") as e:
        load_cifar10(tmp_path, download=True)
    assert str(tmp_path / CIFAR_DIRNAME / "data_batch_1") in str(e.value)


def test_download_then_read(tmp_path, monkeypatch, small):
    calls = []

    def fetch(root, train, download):
        calls.append(train)
        if train:
            write_cifar10(root, *small)
    _fake_torchvision(monkeypatch, fetch)
    ds = load_cifar10(tmp_path, download=True)
    assert calls == [True, False] and np.array_equal(ds.test_images, small[2])
    load_cifar10(tmp_path, download=True)  # directory present: no second download
    assert calls == [True, False]


# ------------------------------------------------------------------------------------- synthetic
@pytest.fixture(scope="module")
def synth():
    return make_synthetic(2000, 1000, seed=0)


def test_synthetic_deterministic_and_shaped(synth):
    xtr, ytr, xte, yte, classes = synth
    again = make_synthetic(2000, 1000, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(synth[:4], again[:4])) and classes == again[4]
    assert not np.array_equal(make_synthetic(50, 0, seed=1)[0], xtr[:50])
    assert np.array_equal(make_synthetic(2000, 7, seed=0)[0], xtr)  # train does not depend on n_test
    assert xtr.shape == (2000, 32, 32, 3) and xte.shape == (1000, 32, 32, 3) and xtr.dtype == np.uint8
    assert ytr.dtype == np.int64 and len(classes) == 10 and len(set(classes)) == 10
    counts = np.bincount(make_synthetic(1003, 0, seed=0, n_classes=10)[1], minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 1003
    assert np.array_equal(np.bincount(ytr), [200] * 10)


def test_synthetic_spreads_every_metric(synth):
    from skimage.color import rgb2gray, rgb2hsv
    from skimage.feature import canny
    xtr, ytr = synth[:2]
    intensity = xtr.reshape(len(xtr), -1).sum(1, dtype=np.float64)
    assert intensity.std() / intensity.mean() > 0.3  # measured ~0.48
    hsv = rgb2hsv(xtr.reshape(len(xtr), -1, 3).mean(1)[:, None, :] / 255)[:, 0]
    assert np.histogram(hsv[:, 0], bins=12, range=(0, 1))[0].min() > 50  # hue covers the whole wheel
    assert np.ptp(hsv[:, 1]) > 0.8 and np.ptp(hsv[:, 2]) > 0.7
    edges = np.array([canny(rgb2gray(x), sigma=1).sum() for x in xtr[:400]])
    assert np.percentile(edges, 5) < 10 and edges.max() > 400  # some nearly flat, some busy (measured 0 / 576)
    means = np.stack([xtr[ytr == c].mean(0) for c in range(10)])
    gaps = np.abs(means[:, None] - means[None]).mean((2, 3, 4))
    assert gaps[~np.eye(10, dtype=bool)].min() > 5  # every pair of class-mean images differs


def test_synthetic_is_learnable(synth):
    """Nearest class mean on 8x8 chromaticity: far above the 0.1 of chance (measured ~0.75)."""
    xtr, ytr, xte, yte, _ = synth

    def features(x):
        f = x.reshape(len(x), 8, 4, 8, 4, 3).mean((2, 4)).reshape(len(x), -1)
        return f / (f.mean(1, keepdims=True) + 1)  # divide out brightness, which is a nuisance
    ftr, fte = features(xtr), features(xte)
    centres = np.stack([ftr[ytr == c].mean(0) for c in range(10)])
    pred = ((fte[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
    assert (pred == yte).mean() > 0.5


def test_dataset_from_synthetic_is_plain_data(synth):
    ds = Dataset(*synth[:5], official=False)
    assert dataset_summary(ds)["train_class_counts"] == [200] * 10
