"""data.source imagefolder: <root>/train/<class>/* and <root>/test/<class>/*, scanned without decoding, decoded
once into the CIFAR-10 format every job reads; each conversion and refusal names the file and what was wrong."""

import json
import logging
import os
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from bestbatch.data import (
    CIFAR10,
    DatasetError,
    decode_imagefolder,
    imagefolder_sizes,
    layout_of,
    load_dataset,
    make_synthetic,
    measure_sizes,
    planned_sizes,
    scan_imagefolder,
    write_dataset,
    write_imagefolder_cache,
)

# created in this (unsorted) order: the labels must follow the sorted names, ant=0, bird=1, cat=2
CLASSES = ("cat", "ant", "bird")
# file names whose string order differs from their numeric order: img_10 sorts before img_2
TRAIN_NAMES = {"cat": ["img_2", "img_10", "img_1"], "ant": ["b", "a", "c", "d"], "bird": ["z", "y"]}
TEST_NAMES = {"cat": ["t2", "t1"], "ant": ["t1"], "bird": ["t9", "t10"]}


def _image(seed):
    """A 32x32 RGB image with every channel varying, so a channel swap or transpose shows."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)


def _smooth(seed):
    """A smooth 32x32 RGB image, which JPEG keeps close."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:32, 0:32] / 31
    a, b, c = rng.uniform(30, 200, 3)
    return np.stack([a + 50 * x, b + 50 * y, c + 25 * (x + y)], -1).astype(np.uint8)


def _make_folder(root, train=TRAIN_NAMES, test=TEST_NAMES, ext=".png"):
    """Write the images; returns {relative path: array}."""
    written, seed = {}, 0
    for split, names in (("train", train), ("test", test)):
        for cls in CLASSES:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for name in names[cls]:
                seed += 1
                x = _image(seed) if ext == ".png" else _smooth(seed)  # JPEG keeps a smooth image close
                rel = f"{split}/{cls}/{name}{ext}"
                Image.fromarray(x).save(root / rel, **({} if ext == ".png" else {"quality": 95}))
                written[rel] = x
    return written


def _expected(written, split, names):
    """(images, labels) in the order the folder must be read: classes sorted, files sorted within a class."""
    images, labels = [], []
    for label, cls in enumerate(sorted(CLASSES)):
        for name in sorted(names[cls]):
            images.append(written[f"{split}/{cls}/{name}.png"])
            labels.append(label)
    return np.stack(images), np.array(labels)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    return root, _make_folder(root)


@pytest.fixture
def logger(caplog):
    caplog.set_level(logging.INFO, logger="bestbatch.test_imagefolder")
    return logging.getLogger("bestbatch.test_imagefolder")


def _lines(caplog, logger):
    return [r.getMessage() for r in caplog.records if r.name == logger.name]


def _save(path, img, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def _refused(root, **kw):
    with pytest.raises(DatasetError) as e:
        decode_imagefolder(root, **kw)
    return str(e.value)


# ------------------------------------------------------------------------------------------ reading
def test_decoded_in_sorted_order(folder):
    root, written = folder
    xtr, ytr, xte, yte, classes = decode_imagefolder(root)
    assert classes == ("ant", "bird", "cat")
    assert xtr.dtype == np.uint8 and xtr.shape == (9, 32, 32, 3) and xte.shape == (5, 32, 32, 3)
    assert ytr.dtype == np.int64 and ytr.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2]
    assert yte.tolist() == [0, 1, 1, 2, 2]
    want_x, want_y = _expected(written, "train", TRAIN_NAMES)
    assert np.array_equal(xtr, want_x) and np.array_equal(ytr, want_y)
    want_x, want_y = _expected(written, "test", TEST_NAMES)
    assert np.array_equal(xte, want_x) and np.array_equal(yte, want_y)
    # img_1, img_10, img_2: string order, as torchvision's ImageFolder sorts
    assert np.array_equal(xtr[7], written["train/cat/img_10.png"])


def test_scan_describes_without_decoding(folder):
    root, written = folder
    scan = scan_imagefolder(root)
    assert scan.classes == ("ant", "bird", "cat") and scan.sizes == (9, 5, 3)
    assert [rel for rel, *_ in scan.train][:4] == [f"train/ant/{n}.png" for n in "abcd"]
    assert [rel for rel, *_ in scan.train][6:] == ["train/cat/img_1.png", "train/cat/img_10.png", "train/cat/img_2.png"]
    rel, label, size, mtime = scan.test[-1]
    assert (rel, label) == ("test/cat/t2.png", 2)
    assert size == (root / rel).stat().st_size and mtime == (root / rel).stat().st_mtime_ns
    assert sorted(scan.paths()) == sorted(str(root / rel) for rel in written)
    assert scan.paths("test") == [str(root / rel) for rel, *_ in scan.test] and len(scan.paths("train")) == 9
    assert len(scan.fingerprint) == 64 and scan.ignored == ()


def test_same_classes_and_order_as_torchvision(folder):
    datasets = pytest.importorskip("torchvision.datasets")
    root, _ = folder
    scan = scan_imagefolder(root)
    for split, entries in (("train", scan.train), ("test", scan.test)):
        reference = datasets.ImageFolder(str(root / split))
        assert tuple(reference.classes) == scan.classes
        assert reference.samples == [(str(root / rel), label) for rel, label, *_ in entries]


def test_sizes_and_planning(folder):
    root, _ = folder
    assert imagefolder_sizes(root) == (9, 5, 3)
    *sizes, how = planned_sizes("imagefolder", str(root))
    assert tuple(sizes) == (9, 5, 3) and str(root) in how
    assert layout_of("imagefolder") is CIFAR10
    assert layout_of("cifar10") is CIFAR10 and layout_of("synthetic", {"format": "cifar100"}).source == "cifar100"
    with pytest.raises(DatasetError, match="no such folder"):
        planned_sizes("imagefolder", str(root / "nowhere"))


def test_jpg_and_upper_case_extensions(tmp_path):
    root = tmp_path / "jpg"
    written = _make_folder(root, ext=".jpg")
    (root / "train/ant/a.jpg").rename(root / "train/ant/a.JPEG")
    written["train/ant/a.JPEG"] = written.pop("train/ant/a.jpg")
    xtr, ytr, xte, yte, classes = decode_imagefolder(root)
    assert xtr.shape == (9, 32, 32, 3) and xte.shape == (5, 32, 32, 3) and ytr.tolist()[:4] == [0, 0, 0, 0]
    scan = scan_imagefolder(root)
    for images, entries in ((xtr, scan.train), (xte, scan.test)):
        for x, (rel, *_) in zip(images, entries):
            err = np.abs(x.astype(int) - written[rel].astype(int))
            assert err.mean() < 4 and err.max() < 40, rel  # lossy, but the same picture
    assert scan.train[0][0] == "train/ant/a.JPEG"


def test_cache_reads_back_through_load_dataset(folder, tmp_path):
    root, _ = folder
    out = tmp_path / "results" / "study" / "data"
    paths = write_imagefolder_cache(root, out)
    assert paths == [out / CIFAR10.dirname / name for name in CIFAR10.files]
    assert sorted(os.listdir(out / CIFAR10.dirname)) == sorted(CIFAR10.files)  # no temp files left
    ds = load_dataset(out, "cifar10")
    xtr, ytr, xte, yte, classes = decode_imagefolder(root)
    assert ds.classes == classes == ("ant", "bird", "cat") and not ds.official
    for got, want in zip((ds.train_images, ds.train_labels, ds.test_images, ds.test_labels), (xtr, ytr, xte, yte)):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert measure_sizes(out, "cifar10") == imagefolder_sizes(root) == (9, 5, 3)
    batches = [pickle.loads(p.read_bytes(), encoding="latin1") for p in paths[:6]]
    assert all(str(root) in b["batch_label"] and "imagefolder" in b["batch_label"] for b in batches)
    assert sum((b["filenames"] for b in batches[:5]), []) == [rel for rel, *_ in scan_imagefolder(root).train]
    assert batches[5]["filenames"] == [rel for rel, *_ in scan_imagefolder(root).test]
    meta = pickle.loads(paths[-1].read_bytes(), encoding="latin1")
    assert meta["label_names"] == ["ant", "bird", "cat"] and meta["num_cases_per_batch"] == 2


def test_cache_passes_the_dataset_check_with_its_class_count(folder, tmp_path):
    """verify_dataset, which every run depends on, accepts 3 classes planned from the folder."""
    from bestbatch.steps.data import verify_dataset

    root, _ = folder
    out = tmp_path / "data"
    write_imagefolder_cache(root, out)
    n_train, n_test, n_classes, _ = planned_sizes("imagefolder", root)
    summary = verify_dataset(
        tmp_path / "dataset.json",
        root=out,
        source=layout_of("imagefolder").source,
        download=False,
        verify="auto",
        batch_size=4,
        n_train=n_train,
        n_test=n_test,
        n_classes=n_classes,
    )
    assert summary["n_classes"] == 3 and summary["train_class_counts"] == [4, 2, 3] and summary["num_batches"] == 2
    assert json.loads((tmp_path / "dataset.json").read_text())["classes"] == ["ant", "bird", "cat"]


def test_step_writes_the_cache_and_logs(folder, tmp_path):
    from bestbatch.steps.data import imagefolder_dataset

    root, _ = folder
    scan = scan_imagefolder(root)
    log = tmp_path / "logs" / "imagefolder_dataset.log"
    out = tmp_path / "data"
    paths = imagefolder_dataset(image_root=str(root), root=str(out), fingerprint=scan.fingerprint, log=str(log))
    assert [p.name for p in paths] == list(CIFAR10.files)
    assert np.array_equal(load_dataset(out).train_images, decode_imagefolder(root)[0])
    text = log.read_text()
    assert "decoded 9 train and 5 test images of 3 classes" in text and scan.fingerprint[:12] in text


def test_changed_folder_since_planning_is_refused(folder, tmp_path):
    from bestbatch.steps.data import imagefolder_dataset

    root, _ = folder
    planned = scan_imagefolder(root).fingerprint
    (root / "train/ant/a.png").unlink()
    with pytest.raises(DatasetError) as e:
        imagefolder_dataset(image_root=root, root=tmp_path / "data", fingerprint=planned)
    assert str(root) in str(e.value) and "changed since" in str(e.value) and planned[:12] in str(e.value)
    assert not (tmp_path / "data").exists()
    write_imagefolder_cache(root, tmp_path / "data", fingerprint=scan_imagefolder(root).fingerprint)
    assert len(load_dataset(tmp_path / "data").train_labels) == 8


def test_write_dataset_filenames(tmp_path):
    arrays = make_synthetic(7, 3, seed=1, n_classes=2)
    paths = write_dataset(tmp_path / "a", *arrays)
    assert pickle.loads(paths[0].read_bytes(), encoding="latin1")["filenames"] == [
        "synthetic_00001.png",
        "synthetic_00002.png",
    ]
    names = ([f"tr{i}" for i in range(7)], [f"te{i}" for i in range(3)])
    paths = write_dataset(tmp_path / "b", *arrays, filenames=names)
    got = [pickle.loads(p.read_bytes(), encoding="latin1")["filenames"] for p in paths[:6]]
    assert sum(got[:5], []) == names[0] and got[5] == names[1]
    with pytest.raises(ValueError, match="name every image"):
        write_dataset(tmp_path / "c", *arrays, filenames=(names[0][:-1], names[1]))


# --------------------------------------------------------------------------------------- fingerprint
def test_fingerprint_follows_the_images_only(folder):
    root, _ = folder
    first = scan_imagefolder(root).fingerprint
    assert scan_imagefolder(root).fingerprint == first  # stable
    # ignored files do not change it
    (root / "train/ant/notes.txt").write_text("x")
    (root / "train/ant/.DS_Store").write_bytes(b"x")
    assert scan_imagefolder(root).fingerprint == first
    # a new image, then removed again: back to the first
    extra = _save(root / "test/bird/new.png", Image.fromarray(_image(99)))
    added = scan_imagefolder(root).fingerprint
    assert added != first
    extra.unlink()
    assert scan_imagefolder(root).fingerprint == first
    # touched (same bytes, new mtime): the content is what counts
    path = root / "train/cat/img_1.png"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert scan_imagefolder(root).fingerprint == first
    # other bytes
    kept = path.read_bytes()
    path.write_bytes(kept + b"\0")
    changed = scan_imagefolder(root).fingerprint
    assert changed not in (first, added)
    path.write_bytes(kept)
    # removed
    (root / "train/cat/img_2.png").unlink()
    assert scan_imagefolder(root).fingerprint not in (first, added, changed)


def test_renamed_image_changes_the_fingerprint(folder):
    root, _ = folder
    first = scan_imagefolder(root).fingerprint
    (root / "train/ant/a.png").rename(root / "train/ant/e.png")
    assert scan_imagefolder(root).fingerprint != first


# -------------------------------------------------------------------------------- ignored files
def test_other_files_are_ignored_with_a_count(folder, logger, caplog):
    root, _ = folder
    (root / "train/ant/notes.txt").write_text("x")
    (root / "test/README.md").write_text("x")
    (root / "train/bird/.DS_Store").write_bytes(b"x")  # hidden: not counted
    _save(root / "train/bird/.cache/x.png", Image.fromarray(_image(5)))  # in a hidden folder: not read
    scan = scan_imagefolder(root, log=logger)
    assert scan.ignored == ("train/ant/notes.txt", "test/README.md")
    assert scan.sizes == (9, 5, 3)
    lines = _lines(caplog, logger)
    assert len(lines) == 1 and "ignored 2 file(s)" in lines[0] and "train/ant/notes.txt" in lines[0]
    assert str(root) in lines[0]


def test_images_in_subfolders_of_a_class_are_read(folder):
    root, _ = folder
    x = _image(123)
    _save(root / "train/ant/more/zz.png", Image.fromarray(x))
    xtr, ytr, *_ = decode_imagefolder(root)
    scan = scan_imagefolder(root)
    assert scan.train[4][:2] == ("train/ant/more/zz.png", 0)  # after a..d.png, before bird
    assert np.array_equal(xtr[4], x) and ytr.tolist()[:5] == [0] * 5


# -------------------------------------------------------------------------------- folder refusals
@pytest.mark.parametrize("split", ["train", "test"])
def test_missing_split_is_refused(folder, split):
    root, _ = folder
    (root / split).rename(root / f"{split}_old")
    with pytest.raises(DatasetError) as e:
        scan_imagefolder(root)
    assert str(root / split) in str(e.value) and "no such folder" in str(e.value)


def test_no_or_one_class_is_refused(tmp_path):
    for classes in ([], ["cat"]):
        root = tmp_path / f"k{len(classes)}"
        for split in ("train", "test"):
            (root / split).mkdir(parents=True)
            for cls in classes:
                _save(root / split / cls / "a.png", Image.fromarray(_image(1)))
        with pytest.raises(DatasetError) as e:
            scan_imagefolder(root)
        assert str(root / "train") in str(e.value) and "at least two" in str(e.value)
        assert f"{len(classes)} class folder" in str(e.value)


@pytest.mark.parametrize("split", ["train", "test"])
def test_empty_class_folder_is_refused(folder, split):
    root, _ = folder
    for p in (root / split / "bird").iterdir():
        p.unlink()
    (root / split / "bird" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError) as e:
        scan_imagefolder(root)
    assert str(root / split / "bird") in str(e.value) and "empty class folder" in str(e.value)
    assert "1 other file(s) ignored" in str(e.value)


def test_test_classes_must_match(folder):
    root, _ = folder
    (root / "test/cat").rename(root / "test/dog")
    with pytest.raises(DatasetError) as e:
        scan_imagefolder(root)
    message = str(e.value)
    assert f"only in {root / 'train'}: cat" in message and f"only in {root / 'test'}: dog" in message


# ------------------------------------------------------------------------------------ image modes
def test_grey_palette_and_bilevel_are_converted(folder, logger, caplog):
    root, _ = folder
    grey = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    _save(root / "train/ant/a.png", Image.fromarray(grey, "L"))
    palette = Image.fromarray(_image(7)).quantize(16)
    _save(root / "train/bird/y.png", palette)
    _save(root / "test/ant/t1.png", Image.fromarray(grey > 100))
    _save(root / "test/cat/t1.jpg", Image.fromarray(grey, "L"), quality=100)
    (root / "test/cat/t1.png").unlink()
    xtr, _, xte, _, _ = decode_imagefolder(root, log=logger)
    assert np.array_equal(xtr[0], np.repeat(grey[..., None], 3, -1))
    assert np.array_equal(xtr[4], np.asarray(palette.convert("RGB")))
    assert np.array_equal(xte[0], np.repeat(np.where(grey > 100, 255, 0).astype(np.uint8)[..., None], 3, -1))
    assert np.array_equal(xte[3][..., 0], xte[3][..., 2]) and np.abs(xte[3][..., 0].astype(int) - grey).max() < 8
    lines = _lines(caplog, logger)
    assert len(lines) == 1 and "converted 4 greyscale/palette image(s) to RGB" in lines[0]
    assert "1, L, P" in lines[0] and str(root / "train/ant/a.png") in lines[0]


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P with a transparent colour"])
def test_opaque_alpha_is_dropped(folder, logger, caplog, mode):
    root, _ = folder
    x = _image(11)
    if mode == "RGBA":
        img = Image.fromarray(np.dstack([x, np.full((32, 32), 255, np.uint8)]), "RGBA")
        want = x
    elif mode == "LA":
        img = Image.fromarray(np.dstack([x[..., 0], np.full((32, 32), 255, np.uint8)]), "LA")
        want = np.repeat(x[..., :1], 3, -1)
    else:
        img = Image.fromarray(x).quantize(8)  # 8 colours: index 9 is never used
        want = np.asarray(img.convert("RGB"))
    path = _save(root / "train/cat/img_10.png", img, **({"transparency": 9} if mode.startswith("P") else {}))
    with Image.open(path) as check:
        assert check.mode == mode.split()[0] and (mode.startswith("P") == ("transparency" in check.info))
    xtr, *_ = decode_imagefolder(root, log=logger)
    assert np.array_equal(xtr[7], want)
    lines = _lines(caplog, logger)
    assert len(lines) == 1 and "dropped the alpha channel of 1 fully opaque image(s)" in lines[0]
    assert mode in lines[0] and str(path) in lines[0]


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P with a transparent colour"])
def test_transparency_is_refused(folder, mode):
    root, _ = folder
    x = _image(12)
    alpha = np.full((32, 32), 255, np.uint8)
    alpha[3, 4] = 254
    if mode == "RGBA":
        img, kw, n = Image.fromarray(np.dstack([x, alpha]), "RGBA"), {}, 1
    elif mode == "LA":
        img, kw, n = Image.fromarray(np.dstack([x[..., 0], alpha]), "LA"), {}, 1
    else:
        img = Image.fromarray(x).quantize(8)
        index = np.asarray(img)[3, 4]
        kw, n = {"transparency": int(index)}, int((np.asarray(img) == index).sum())
    path = _save(root / "test/bird/t9.png", img, **kw)
    message = _refused(root)
    assert f"{path}: has transparency (mode {mode}; {n} of 1024 pixels not fully opaque)" in message
    assert "1 of 14 image file(s) cannot be used" in message


def test_sixteen_bit_grey_is_refused(folder):
    root, _ = folder
    path = _save(root / "train/ant/b.png", Image.fromarray(np.full((32, 32), 40000, np.uint16)))
    message = _refused(root)
    assert f"{path}: mode I;16" in message and "16/32-bit" in message


def _png(path, depth, colour_type, channels):
    """A PNG written by hand (Pillow cannot write 16-bit RGB)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(32 * channels * depth // 8)
    header = struct.pack(">IIBBBBB", 32, 32, depth, colour_type, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * 32)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_sixteen_bit_rgb_is_refused(folder):
    """Pillow reads a 48-bit PNG as 8-bit RGB, silently dropping the low bytes: refused, not narrowed."""
    root, _ = folder
    path = _png(root / "train/bird/z.png", 16, 2, 3)
    with Image.open(path) as img:
        assert img.mode == "RGB"  # what Pillow would hand over
    message = _refused(root)
    assert f"{path}: mode RGB, stored as RGB;16B" in message
    _png(path, 8, 2, 3)  # the same picture at 8 bits is read
    assert decode_imagefolder(root)[0][5].max() == 0


@pytest.mark.parametrize("mode", ["I", "F"])
def test_wide_integer_and_float_are_refused(folder, mode):
    """PNG cannot hold I or F; a TIFF named .png can (Pillow reads the content, not the name)."""
    root, _ = folder
    array = np.full((32, 32), 7, np.int32 if mode == "I" else np.float32)
    path = root / "test/ant/t1.png"
    Image.fromarray(array).save(path, format="TIFF")
    message = _refused(root)
    assert f"{path}: mode {mode}," in message and "only 8-bit images are read" in message


def test_cmyk_is_refused(folder):
    root, _ = folder
    path = _save(root / "train/cat/img_3.jpg", Image.new("CMYK", (32, 32), (10, 20, 30, 40)))
    message = _refused(root)
    assert f"{path}: mode CMYK is not read" in message


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_file_is_refused(folder, damage):
    root, _ = folder
    path = root / "train/ant/c.png"
    raw = path.read_bytes()
    path.write_bytes(b"this is not an image" if damage == "garbage" else raw[: len(raw) // 2])
    message = _refused(root)
    wanted = "cannot be read as an image" if damage == "garbage" else "truncated or corrupt"
    assert f"{path}: {wanted}" in message


def test_every_unusable_file_is_listed(folder):
    root, _ = folder
    bad = [root / "train/ant/a.png", root / "test/cat/t2.png"]
    for p in bad:
        p.write_bytes(b"junk")
    message = _refused(root)
    assert message.startswith(f"{root}: 2 of 14 image file(s) cannot be used")
    assert all(str(p) in message for p in bad)
    for i in range(25):
        (root / f"train/bird/junk_{i:02d}.png").write_bytes(b"junk")
    message = _refused(root)
    assert "27 of 39" in message and "... and 7 more" in message and str(root / "train/bird/junk_18.png") in message
    assert str(root / "train/bird/junk_19.png") not in message  # 20 named: a.png and junk_00 .. junk_18


# -------------------------------------------------------------------------------------- image size
def test_other_sizes_are_refused_by_default(folder):
    root, _ = folder
    path = _save(root / "train/bird/y.png", Image.fromarray(_image(3)).resize((40, 30)))
    message = _refused(root)
    assert f"{path}: 40x30 pixels" in message and "data.image_size: 32" in message


def test_declared_image_size_centre_crops_and_resizes(folder, logger, caplog):
    root, written = folder
    # 64 wide, 32 high: red left quarter, green centre, blue right quarter; the centred square is all green
    wide = np.zeros((32, 64, 3), np.uint8)
    wide[:, :16, 0], wide[:, 16:48, 1], wide[:, 48:, 2] = 255, 200, 255
    _save(root / "train/ant/a.png", Image.fromarray(wide))
    # twice the size of a smooth image: resized back, close to it
    small = _smooth(5)
    _save(root / "test/bird/t10.png", Image.fromarray(small).resize((64, 64), Image.Resampling.NEAREST))
    xtr, _, xte, _, _ = decode_imagefolder(root, image_size=32, log=logger)
    assert np.array_equal(xtr[0][..., 1], np.full((32, 32), 200)) and xtr[0][..., [0, 2]].max() == 0
    assert np.abs(xte[1].astype(int) - small.astype(int)).max() <= 3
    want, _ = _expected(written, "train", TRAIN_NAMES)
    assert np.array_equal(xtr[1:], want[1:])  # 32x32 images are not resampled
    lines = _lines(caplog, logger)
    assert len(lines) == 1 and "resized 2 image(s) to 32x32" in lines[0] and "64x32, 64x64" in lines[0]
    assert "bicubic" in lines[0] and str(root / "train/ant/a.png") in lines[0]


@pytest.mark.parametrize("bad", [8, 15, 64.0, "64", True])
def test_an_image_size_is_an_integer_from_16_or_native(folder, bad):
    root, _ = folder
    with pytest.raises(ValueError, match="image_size must be an integer from 16 up, 'native' or None"):
        decode_imagefolder(root, image_size=bad)


@pytest.mark.parametrize("size", [16, 48, 64, 96])
def test_any_declared_size_centre_crops_and_resizes_as_pillow_does(folder, size):
    """N x N: each image is its largest centred square resized by Pillow's bicubic filter, the same bytes a reader
    who did it by hand gets; 32 x 32 images included (resized up or down like any other)."""
    root, written = folder
    xtr, ytr, xte, _, _ = decode_imagefolder(root, image_size=size)
    assert xtr.shape == (9, size, size, 3) and xte.shape == (5, size, size, 3) and xtr.dtype == np.uint8
    want, labels = _expected(written, "train", TRAIN_NAMES)
    by_hand = np.stack([np.asarray(Image.fromarray(x).resize((size, size), Image.Resampling.BICUBIC)) for x in want])
    assert np.array_equal(xtr, by_hand) and np.array_equal(ytr, labels)


def test_native_keeps_one_size_and_refuses_another(tmp_path):
    """data.image_size: native keeps each image as stored, when they all have one size; an image of another size is
    refused naming both sizes (and the way out)."""
    root = tmp_path / "images"
    for split, n in (("train", 3), ("test", 2)):
        for i in range(n):
            x = np.random.default_rng(i).integers(0, 256, (40, 56, 3), dtype=np.uint8)  # 56 wide, 40 high
            _save(root / split / "a" / f"{i}.png", Image.fromarray(x))
            _save(root / split / "b" / f"{i}.png", Image.fromarray(x[::-1]))
    xtr, _, xte, _, _ = decode_imagefolder(root, image_size="native")
    assert xtr.shape == (6, 40, 56, 3) and xte.shape == (4, 40, 56, 3)
    assert np.array_equal(xtr[0], np.asarray(Image.open(root / "train/a/0.png")))
    _save(root / "test/b/9.png", Image.fromarray(np.zeros((40, 40, 3), np.uint8)))
    message = _refused(root, image_size="native")
    assert "test/b/9.png: 40x40 pixels, other images 56x40" in message and "data.image_size: N" in message
