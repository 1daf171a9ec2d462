"""An image folder is known by its content (bestbatch.fingerprint): a sha256 per file, cached by path, size and
mtime; each split has its own fingerprint. And what data.image_size does to an image of another size."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from bestbatch import fingerprint
from bestbatch.data import DatasetError, decode_imagefolder, load_dataset, scan_imagefolder, write_imagefolder_cache


def make_folder(root, sizes=((32, 32),)):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                w, h = sizes[i % len(sizes)]
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


@pytest.fixture
def counted(monkeypatch):
    """The files whose bytes fingerprint.file_digest reads."""
    read = []
    real = fingerprint.file_digest
    monkeypatch.setattr(fingerprint, "file_digest", lambda path: read.append(path) or real(path))
    return read


def test_the_cache_saves_reading_and_never_decides(tmp_path, counted):
    root = make_folder(tmp_path / "images")
    cache = fingerprint.cache_path(tmp_path / "state", root)
    first = scan_imagefolder(root, cache=cache)
    assert len(counted) == 10 and cache.is_file()
    counted.clear()
    assert scan_imagefolder(root, cache=cache).fingerprints == first.fingerprints and counted == []
    # touched: read again (its mtime is not the cached one), found the same
    path = root / "train" / "a" / "0.png"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert scan_imagefolder(root, cache=cache).fingerprints == first.fingerprints and counted == [
        root / "train/a/0.png"
    ]
    # a cache of other digests for the same (size, mtime) would decide wrongly: it belongs to this folder only,
    # and a corrupt or foreign one is rebuilt by reading
    summary = cache.with_name(cache.name + ".summary")
    for text in ("{not json", json.dumps({"version": 1, "root": "/elsewhere", "files": {}})):
        cache.write_text(text)
        summary.write_text("{not json")  # the summary of fingerprints goes with it (fingerprint.fingerprints)
        counted.clear()
        assert scan_imagefolder(root, cache=cache).fingerprints == first.fingerprints and len(counted) == 10
    # the summary answers only for the very listing it was made from: a file replaced by one of the same size and
    # mtime is the one change the cache cannot see (as make and Snakemake's mtime checks cannot)
    assert json.loads(summary.read_text())["fingerprints"] == first.fingerprints
    # no cache: every file read, same answer
    assert scan_imagefolder(root).fingerprints == first.fingerprints


def test_each_split_has_its_own_fingerprint(tmp_path):
    root = make_folder(tmp_path / "images")
    first = scan_imagefolder(root).fingerprints
    # a copy that does not keep times, elsewhere: the same content, the same fingerprints
    shutil.copytree(root, tmp_path / "copy", copy_function=shutil.copyfile)
    assert scan_imagefolder(tmp_path / "copy").fingerprints == first
    # a test image's bytes change: the test split's fingerprint, not the training split's
    path = root / "test" / "b" / "1.png"
    path.write_bytes(path.read_bytes() + b"\0")
    now = scan_imagefolder(root).fingerprints
    assert now["train"] == first["train"] and now["test"] != first["test"]
    # a training image moved to another class: its label is part of it
    (root / "train" / "a" / "2.png").rename(root / "train" / "b" / "2.png")
    assert scan_imagefolder(root).fingerprints["train"] != first["train"]
    assert scan_imagefolder(root, content=False).fingerprints is None


def test_the_two_splits_are_written_apart_and_read_as_one(tmp_path):
    root = make_folder(tmp_path / "images")
    scan = scan_imagefolder(root)
    out = tmp_path / "data"
    train = write_imagefolder_cache(root, out, split="train", fingerprint=scan.fingerprints["train"])
    assert [p.name for p in train] == [f"data_batch_{i}" for i in range(1, 6)] + ["batches.meta"]
    assert load_dataset(out, test=False).train_labels.tolist() == [0, 0, 0, 1, 1, 1]
    test = write_imagefolder_cache(root, out, split="test", fingerprint=scan.fingerprints["test"])
    assert [p.name for p in test] == ["test_batch"]
    both = write_imagefolder_cache(root, tmp_path / "both")
    apart, together = load_dataset(out), load_dataset(tmp_path / "both")
    for key in ("train_images", "train_labels", "test_images", "test_labels", "classes"):
        assert np.array_equal(getattr(apart, key), getattr(together, key)), key
    # planned for other content: refused, naming the split
    with pytest.raises(DatasetError, match="the test split of the image folder changed since"):
        write_imagefolder_cache(root, tmp_path / "x", split="test", fingerprint=scan.fingerprints["train"])
    assert both and not (tmp_path / "x").exists()


@pytest.mark.parametrize("size", [(48, 40), (41, 64), (37, 37), (33, 90)])
def test_image_size_crops_the_largest_centred_square_then_resizes(tmp_path, size):
    """data.image_size: 32 does what config/README.md says, against an independent crop (numpy slicing) and
    Pillow's bicubic resize of the crop alone."""
    root = make_folder(tmp_path / "images", sizes=(size,))
    got = decode_imagefolder(root, image_size=32)[0]
    w, h = size
    s = min(w, h)
    for i, path in enumerate(p for c in ("a", "b") for p in sorted((root / "train" / c).glob("*.png"))):
        x = np.asarray(Image.open(path).convert("RGB"))
        top, left = (h - s) // 2, (w - s) // 2
        crop = Image.fromarray(np.ascontiguousarray(x[top : top + s, left : left + s]))
        want = np.asarray(crop.resize((32, 32), Image.Resampling.BICUBIC)) if s != 32 else np.asarray(crop)
        assert np.array_equal(got[i], want), path
