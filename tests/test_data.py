"""bestbatch.data: the CIFAR-10/CIFAR-100 python formats, the trust rules, and the synthetic stand-in."""

import hashlib
import json
import logging
import os
import pickle
import sys
import types

import numpy as np
import pytest

from bestbatch.data import (
    CIFAR10,
    CIFAR100,
    CIFAR_DIRNAME,
    LAYOUTS,
    META_FILE,
    TEST_FILE,
    TRAIN_FILES,
    Dataset,
    DatasetError,
    dataset_summary,
    load_cifar10,
    load_dataset,
    make_synthetic,
    measure_sizes,
    planned_sizes,
    restricted_load,
    write_cifar10,
    write_dataset,
)


@pytest.fixture(scope="module")
def small():
    return make_synthetic(53, 17, seed=3)  # 53 does not split evenly over 5 files


@pytest.fixture(scope="module")
def small100():
    return make_synthetic(130, 40, seed=4, n_classes=100)


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


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _same_size_other_bytes(path):
    """Change one character of the batch_label or a class name: the same size, another md5."""
    d = _read(path)
    key = "batch_label" if "batch_label" in d else "label_names"
    if key == "batch_label":
        d[key] = d[key][:-1] + ("x" if d[key][-1] != "x" else "y")
    else:
        d[key] = [d[key][0][:-1] + ("x" if d[key][0][-1] != "x" else "y"), *d[key][1:]]
    size = path.stat().st_size
    _write(path, d)
    assert path.stat().st_size == size
    return path


def _point_official_at(monkeypatch, layout, folder, names=None, size=True, md5=True):
    """Make the layout's official table describe these files: their size and/or their md5."""
    for name in names or layout.files:
        official_size, official_md5 = layout.official[name]
        monkeypatch.setitem(
            layout.official,
            name,
            ((folder / name).stat().st_size if size else official_size, _md5(folder / name) if md5 else official_md5),
        )


@pytest.fixture
def logger(caplog):
    caplog.set_level(logging.INFO, logger="bestbatch.test_data")
    return logging.getLogger("bestbatch.test_data")


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


@pytest.mark.parametrize("source", ["cifar10", "cifar100"])
def test_official_md5_table_matches_torchvision(source):
    datasets = pytest.importorskip("torchvision.datasets")
    cifar, layout = (datasets.CIFAR100 if source == "cifar100" else datasets.CIFAR10), LAYOUTS[source]
    table = dict(cifar.train_list + cifar.test_list) | {cifar.meta["filename"]: cifar.meta["md5"]}
    assert table == {name: md5 for name, (_, md5) in layout.official.items()}
    assert set(layout.official) == set(layout.files) and layout.source == source
    assert (cifar.base_folder, cifar.filename, cifar.meta["key"]) == (layout.dirname, layout.archive, layout.names_key)
    assert [name for name, _ in cifar.train_list] == list(layout.train_files)
    assert [name for name, _ in cifar.test_list] == [layout.test_file]


def test_cifar10_aliases():
    assert (CIFAR_DIRNAME, TRAIN_FILES, TEST_FILE, META_FILE) == (
        CIFAR10.dirname,
        CIFAR10.train_files,
        CIFAR10.test_file,
        CIFAR10.meta_file,
    )
    assert LAYOUTS == {"cifar10": CIFAR10, "cifar100": CIFAR100}


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
def _log_lines(caplog, logger):
    return [r.getMessage() for r in caplog.records if r.name == logger.name]


def test_official_label_on_other_bytes_is_a_copy(root, small, logger, caplog):
    """Copies are copies, not corruption: the official batch_label on other bytes (another size) loads,
    marked official=False, with one info line when a logger is passed."""
    folder = root / CIFAR_DIRNAME
    _rewrite(folder / "data_batch_2", batch_label="training batch 2 of 5")
    ds = load_dataset(root, log=logger)
    assert not ds.official and np.array_equal(ds.train_images, small[0]) and np.array_equal(ds.test_labels, small[3])
    lines = _log_lines(caplog, logger)
    assert len(lines) == 1 and "not the official release" in lines[0]
    assert str(folder) in lines[0] and "data_batch_2" in lines[0] and "data.verify: auto" in lines[0]
    caplog.clear()
    assert not load_cifar10(root).official  # no logger, same verdict


def test_official_name_and_size_with_other_md5_is_refused(root, small, monkeypatch, logger, caplog):
    """A file with an official name and the official size but another md5 is a damaged download."""
    batch = root / CIFAR_DIRNAME / "data_batch_1"
    size, md5, official_md5 = batch.stat().st_size, _md5(batch), CIFAR10.official["data_batch_1"][1]
    assert md5 != official_md5
    monkeypatch.setitem(CIFAR10.official, "data_batch_1", (size, official_md5))
    for verify in ("auto", "strict"):
        with pytest.raises(DatasetError) as e:
            load_dataset(root, verify=verify)
        if verify == "auto":  # (strict refuses the meta file, read first)
            message = str(e.value)
            assert str(batch) in message and f"{size:,} bytes" in message
            assert md5 in message and official_md5 in message
    # off: no md5 at all, the file is read as it is
    ds = load_dataset(root, verify="off", log=logger)
    assert not ds.official and np.array_equal(ds.train_images, small[0]) and np.array_equal(ds.train_labels, small[1])
    assert len(_log_lines(caplog, logger)) == 1 and "data.verify: off" in _log_lines(caplog, logger)[0]


def test_strict_refuses_a_generated_set(root):
    folder = root / CIFAR_DIRNAME
    with pytest.raises(DatasetError) as e:
        load_dataset(root, verify="strict")
    message = str(e.value)
    meta = folder / META_FILE  # the first file read: its class names are needed to check the batches
    assert str(meta) in message and "data.verify is strict" in message
    assert "md5" in message and _md5(meta) in message and CIFAR10.official[META_FILE][1] in message
    assert f"{meta.stat().st_size:,} bytes" in message
    assert not any(str(folder / name) in message for name in (*TRAIN_FILES, TEST_FILE))


@pytest.mark.parametrize("source", ["cifar10", "cifar100"])
def test_official_files_with_matching_md5_are_official(tmp_path, small, small100, source, monkeypatch, logger, caplog):
    """Stand-in for the real release: official labels, and the official table pointed at these bytes."""
    layout = LAYOUTS[source]
    folder = tmp_path / layout.dirname
    write_dataset(tmp_path, *(small100 if source == "cifar100" else small), source=source, official_labels=True)
    _point_official_at(monkeypatch, layout, folder)
    for verify in ("auto", "strict"):
        ds = load_dataset(tmp_path, source, verify=verify, log=logger)
        assert ds.official and [f[0] for f in ds.files] == list(layout.files)
        assert [f[1:] for f in ds.files] == [layout.official[name] for name in layout.files]
    assert not _log_lines(caplog, logger)  # an official set says nothing
    assert not load_dataset(tmp_path, source, verify="off").official  # off compares nothing, so claims nothing


def test_damaged_official_meta_file_is_refused(root, monkeypatch):
    """One byte changed at the official size: refused in auto and strict, read in off."""
    folder = root / CIFAR_DIRNAME
    for i, name in enumerate(TRAIN_FILES, 1):
        _rewrite(folder / name, batch_label=f"training batch {i} of 5")
    _rewrite(folder / TEST_FILE, batch_label="testing batch 1 of 1")
    _point_official_at(monkeypatch, CIFAR10, folder)
    assert load_cifar10(root).official
    official_md5 = CIFAR10.official[META_FILE][1]
    meta = _same_size_other_bytes(folder / META_FILE)
    for verify in ("auto", "strict"):
        with pytest.raises(DatasetError) as e:
            load_dataset(root, verify=verify)
        assert str(meta) in str(e.value) and _md5(meta) in str(e.value) and official_md5 in str(e.value)
    ds = load_dataset(root, verify="off")
    assert not ds.official and ds.classes == tuple(_read(meta)["label_names"])


def test_unknown_official_size_is_never_refused_in_auto(tmp_path, small100, monkeypatch):
    """CIFAR-100's test file has no known size here: in auto another md5 only makes it a copy."""
    assert CIFAR100.official["test"][0] is None
    write_dataset(tmp_path, *small100, source="cifar100", official_labels=True)
    assert not load_dataset(tmp_path, "cifar100").official
    with pytest.raises(DatasetError, match="data.verify is strict"):
        load_dataset(tmp_path, "cifar100", verify="strict")


@pytest.mark.parametrize("source", ["cifar10", "cifar100"])
def test_copy_with_official_labels_is_not_official(tmp_path, source, logger, caplog):
    """A subset re-pickled with the official batch labels (1,024 images) is a copy: official=False."""
    layout = LAYOUTS[source]
    data = make_synthetic(1024, 1024, seed=5, n_classes=100 if source == "cifar100" else 10)
    paths = write_dataset(tmp_path, *data, source=source, official_labels=True)
    assert {p.name: _read(p)["batch_label"] for p in paths[:-1]} == layout.official_labels
    ds = load_dataset(tmp_path, source, log=logger)
    assert not ds.official and len(ds.train_labels) == 1024 and len(ds.test_labels) == 1024
    assert all(
        np.array_equal(a, b)
        for a, b in zip((ds.train_images, ds.train_labels, ds.test_images, ds.test_labels), data[:4])
    )
    lines = _log_lines(caplog, logger)
    assert len(lines) == 1 and "not the official release" in lines[0]
    assert all(name in lines[0] for name in layout.files)


# -------------------------------------------------------------------------------------- CIFAR-100
def test_cifar100_round_trip_and_torchvision_reading(tmp_path, small100):
    paths = write_dataset(tmp_path, *small100, source="cifar100")
    folder = tmp_path / CIFAR100.dirname
    assert paths == [folder / "train", folder / "test", folder / "meta"]
    assert sorted(os.listdir(folder)) == ["meta", "test", "train"]  # no temp files left
    ds = load_dataset(tmp_path, source="cifar100")
    for got, want in zip((ds.train_images, ds.train_labels, ds.test_images, ds.test_labels), small100):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert ds.classes == small100[4] and len(ds.classes) == 100 and not ds.official
    assert [f[0] for f in ds.files] == ["train", "test", "meta"]
    # torchvision's CIFAR100.__init__ steps (CIFAR10's with base_folder, lists and meta key of CIFAR-100), inline
    for name, images, labels in (("train", small100[0], small100[1]), ("test", small100[2], small100[3])):
        data, targets = [], []
        with open(folder / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data.append(entry["data"])
        targets.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
        data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))
        assert np.array_equal(data, images) and targets == labels.tolist()
        assert entry["coarse_labels"] == (labels // 5).tolist()
    with open(folder / "meta", "rb") as f:
        meta = pickle.load(f, encoding="latin1")
    assert meta["fine_label_names"] == list(small100[4]) and len(meta["coarse_label_names"]) == 20
    assert _read(folder / "train")["batch_label"] == "bestbatch synthetic training batch 1 of 1"


# ---------------------------------------------------------------------------------- planned sizes
def test_measure_sizes(tmp_path, small, small100):
    write_cifar10(tmp_path, *small)
    write_dataset(tmp_path, *small100, source="cifar100")
    assert measure_sizes(tmp_path) == measure_sizes(tmp_path, "cifar10") == (53, 17, 10)
    assert measure_sizes(tmp_path, "cifar100") == (130, 40, 100)
    assert measure_sizes(tmp_path / "nowhere", "cifar10") is None
    assert measure_sizes(tmp_path / "nowhere", "cifar100") is None
    (tmp_path / CIFAR_DIRNAME / "data_batch_4").unlink()
    (tmp_path / CIFAR100.dirname / "meta").unlink()
    assert measure_sizes(tmp_path, "cifar10") is None and measure_sizes(tmp_path, "cifar100") is None
    write_cifar10(tmp_path, *small)
    (tmp_path / CIFAR_DIRNAME / TEST_FILE).write_bytes(b"not a pickle")
    assert measure_sizes(tmp_path, "cifar10") is None


def test_planned_sizes(tmp_path, small, small100):
    missing = tmp_path / "nowhere"
    n_train, n_test, n_classes, how = planned_sizes("synthetic", missing, {"n_train": 20, "n_test": 12, "seed": 0})
    assert (n_train, n_test, n_classes) == (20, 12, 10) and "data.synthetic" in how
    assert planned_sizes("synthetic", missing, {"n_train": 30, "n_test": 11, "format": "cifar100"})[:3] == (30, 11, 100)
    write_cifar10(tmp_path, *small)
    assert planned_sizes("synthetic", tmp_path, {"n_train": 20, "n_test": 12})[:3] == (20, 12, 10)  # files ignored
    for source, n_classes in (("cifar10", 10), ("cifar100", 100)):
        *sizes, how = planned_sizes(source, missing)
        assert tuple(sizes) == (50_000, 10_000, n_classes) == (*LAYOUTS[source].sizes, n_classes)
        assert LAYOUTS[source].archive in how
    *sizes, how = planned_sizes("cifar10", tmp_path)
    assert tuple(sizes) == (53, 17, 10) and str(tmp_path / CIFAR_DIRNAME) in how
    write_dataset(tmp_path, *small100, source="cifar100")
    assert planned_sizes("cifar100", tmp_path)[:3] == (130, 40, 100)


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


@pytest.mark.parametrize(
    "how",
    [
        "missing_dir",
        "missing_file",
        "truncated",
        "wrong_width",
        "labels_out_of_range",
        "negative_labels",
        "label_count",
        "not_uint8",
        "no_labels_key",
        "not_a_dict",
    ],
)
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


def _fake_torchvision(monkeypatch, cifar10, cifar100=None):
    datasets = types.ModuleType("torchvision.datasets")
    datasets.CIFAR10, datasets.CIFAR100 = cifar10, cifar100 or cifar10
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


def test_download_cifar100_uses_its_class(tmp_path, monkeypatch, small100):
    calls = []

    def wrong(root, train, download):
        raise AssertionError("CIFAR-100 downloaded with torchvision's CIFAR10")

    def fetch(root, train, download):
        calls.append(train)
        if train:
            write_dataset(root, *small100, source="cifar100")

    _fake_torchvision(monkeypatch, wrong, fetch)
    ds = load_dataset(tmp_path, "cifar100", download=True)
    assert calls == [True, False] and np.array_equal(ds.train_labels, small100[1]) and len(ds.classes) == 100


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
