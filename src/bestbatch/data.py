"""CIFAR-10 on disk, read safely, plus a generated stand-in with the same format.

Format (torchvision's "python version", byte for byte what `torchvision.datasets.CIFAR10` reads):
`<root>/cifar-10-batches-py/` holds pickles `data_batch_1..5`, `test_batch` and `batches.meta`.
A batch is a dict {'batch_label': str, 'labels': [int], 'data': uint8 (n, 3072), 'filenames': [str]};
each data row is 1024 red, 1024 green, 1024 blue bytes of a row-major 32x32 image. The meta file is
{'num_cases_per_batch': int, 'label_names': [str], 'num_vis': 3072}. Pickles are read with
encoding="latin1" because the official files were written by Python 2.

Trust: unpickling runs code, so every file is read with `_ArrayOnlyUnpickler`, which admits only the
globals that rebuild a numpy array (plus `_codecs.encode`, with which protocol 2 pickles store bytes)
and refuses every other global, naming it; `restricted_load` reads one file that way.
md5 is checked only where a file's batch_label claims the official release: official files must be intact, while generated or
user-built copies (their own batch_label) are accepted on structure alone and marked official=False.
"""
import hashlib
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path

CIFAR_DIRNAME = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
# md5 of the official files, as in torchvision.datasets.CIFAR10.train_list/test_list/meta (a test keeps them equal)
OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
OFFICIAL_LABELS = {**{f: f"training batch {i} of 5" for i, f in enumerate(TRAIN_FILES, 1)},
                   TEST_FILE: "testing batch 1 of 1"}


CIFAR10_SIZES = (50_000, 10_000)  # training and test images of the official release


def planned_sizes(source, synthetic=None):
    """(n_train, n_test) the workflow plans for before the data is read: the synthetic set's configured
    sizes, or the official release's."""
    return (synthetic["n_train"], synthetic["n_test"]) if source == "synthetic" else CIFAR10_SIZES


class DatasetError(Exception):
    """The data on disk cannot be used; the message names the file and what to do."""


@dataclass(frozen=True, eq=False)  # eq=False: arrays make == ambiguous
class Dataset:
    train_images: np.ndarray  # (N, 32, 32, 3) uint8, HWC like torchvision's CIFAR10.data
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray   # (M, 32, 32, 3) uint8
    test_labels: np.ndarray   # (M,) int64
    classes: tuple
    official: bool            # every file claims the official release and its md5 matched
    files: tuple = ()         # ((name, size_bytes, md5), ...) of the files read, for provenance


def _how_to_get(root, or_download=True):
    return (f"download cifar-10-python.tar.gz from {CIFAR_URL} and extract it so that "
            f"{Path(root) / CIFAR_DIRNAME / TRAIN_FILES[0]} exists" + (", or set data.download: true" * or_download))


# ---------------------------------------------------------------------------------------- reading
def _allowed_globals():
    from numpy._core import multiarray, numeric
    arrays = {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar}
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): __import__("_codecs").encode,  # protocol 2 stores bytes as latin1 text
               ("numpy._core.numeric", "_frombuffer"): numeric._frombuffer,  # protocol 5 arrays
               ("numpy.core.numeric", "_frombuffer"): numeric._frombuffer}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 wrote numpy.core, numpy 2 numpy._core
        allowed.update({(mod, name): fn for name, fn in arrays.items()})
    return allowed


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file, encoding="latin1")
        self.path, self.allowed = path, _allowed_globals()

    def find_class(self, module, name):
        if (module, name) not in self.allowed:
            raise DatasetError(f"{self.path}: refused to unpickle global {module}.{name}; a CIFAR-10 "
                               f"batch holds only lists, strings and numpy arrays. Do not use this file; "
                               f"re-create it from a trusted source.")
        return self.allowed[module, name]


def _loads(raw, path):
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(raw), path).load()
    except DatasetError:
        raise
    except Exception as e:  # EOFError, UnpicklingError, ValueError ...: all mean a damaged file
        raise DatasetError(f"{path}: not a readable CIFAR-10 pickle, truncated or corrupt "
                           f"({type(e).__name__}: {e}); re-download/re-extract or regenerate it.") from e
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a pickled dict, found {type(obj).__name__}; "
                           f"this is not a CIFAR-10 python-version file.")
    return obj


def restricted_load(path):
    """Unpickle one CIFAR-10 file with `_ArrayOnlyUnpickler` (numpy arrays, lists, strings, numbers)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e}).") from e
    return _loads(raw, path)


def _require_keys(d, keys, path):
    missing = [k for k in keys if k not in d]
    if missing:
        raise DatasetError(f"{path}: missing key(s) {missing} (has {sorted(map(str, d))}); "
                           f"not a CIFAR-10 python-version file.")


def _check_batch(d, path, n_classes):
    """Validated (images HWC uint8, labels int64) of one batch dict."""
    _require_keys(d, ("data", "labels"), path)
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: 'data' must be a uint8 array of shape (n, 3072), found {what}.")
    labels = np.asarray(d["labels"])
    if labels.size == 0:
        labels = labels.astype(np.int64)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(f"{path}: 'labels' must be a list of ints, found {labels.dtype} of shape {labels.shape}.")
    if len(labels) != len(data):
        raise DatasetError(f"{path}: {len(labels)} labels for {len(data)} images.")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(f"{path}: labels span [{labels.min()}, {labels.max()}] but batches.meta "
                           f"names {n_classes} classes, so they must lie in [0, {n_classes}).")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def _download(root):
    try:
        from torchvision.datasets import CIFAR10
        for train in (True, False):
            CIFAR10(str(root), train=train, download=True)
    except Exception as e:  # URLError, socket errors, RuntimeError from a bad archive
        raise DatasetError(f"could not download CIFAR-10 into {Path(root) / CIFAR_DIRNAME} "
                           f"({type(e).__name__}: {e}); this machine is probably offline. On a machine "
                           f"with internet, {_how_to_get(root, False)}, then copy that "
                           f"directory here.") from e


def load_cifar10(root, download=False):
    """Read `<root>/cifar-10-batches-py` (official or generated) into a validated Dataset."""
    root = Path(root)
    folder = root / CIFAR_DIRNAME
    if download and not folder.is_dir():
        _download(root)
    for name in (*TRAIN_FILES, TEST_FILE, META_FILE):
        if not (folder / name).is_file():
            hint = (f"; delete {folder} to download it again" if download and folder.is_dir() else "")
            raise DatasetError(f"missing {folder / name}: {_how_to_get(root)}{hint}.")

    def read(name):
        raw = (folder / name).read_bytes()
        return _loads(raw, folder / name), (name, len(raw), hashlib.md5(raw).hexdigest())

    meta, meta_file = read(META_FILE)
    _require_keys(meta, ("label_names",), folder / META_FILE)
    classes = tuple(str(c) for c in meta["label_names"])
    parts, files, claims = {}, [], []
    for name in (*TRAIN_FILES, TEST_FILE):
        d, info = read(name)
        claims.append(d.get("batch_label") == OFFICIAL_LABELS[name])
        if claims[-1] and info[2] != OFFICIAL_MD5[name]:
            raise DatasetError(f"{folder / name}: corrupt copy of the official file (batch_label "
                               f"{d['batch_label']!r} but md5 {info[2]} != {OFFICIAL_MD5[name]}); "
                               f"re-download cifar-10-python.tar.gz from {CIFAR_URL} and re-extract it.")
        parts[name] = _check_batch(d, folder / name, len(classes))
        files.append(info)
    official = all(claims)
    if official and meta_file[2] != OFFICIAL_MD5[META_FILE]:
        raise DatasetError(f"{folder / META_FILE}: corrupt copy of the official file (md5 {meta_file[2]} "
                           f"!= {OFFICIAL_MD5[META_FILE]}); re-download and re-extract it from {CIFAR_URL}.")
    train = [parts[f] for f in TRAIN_FILES]
    return Dataset(np.ascontiguousarray(np.concatenate([x for x, _ in train])),
                   np.concatenate([y for _, y in train]),
                   np.ascontiguousarray(parts[TEST_FILE][0]), parts[TEST_FILE][1],
                   classes, official, tuple(files + [meta_file]))


def dataset_summary(ds):
    """JSON-able provenance: sizes, class balance, official flag, content and file hashes."""
    def md5(a):
        return hashlib.md5(np.ascontiguousarray(a).data).hexdigest()
    k = len(ds.classes)
    return {
        "official": bool(ds.official), "classes": list(ds.classes),
        "n_train": int(len(ds.train_labels)), "n_test": int(len(ds.test_labels)),
        "image_shape": list(ds.train_images.shape[1:]),
        "train_class_counts": np.bincount(ds.train_labels, minlength=k).tolist(),
        "test_class_counts": np.bincount(ds.test_labels, minlength=k).tolist(),
        "train_images_md5": md5(ds.train_images), "train_labels_md5": md5(ds.train_labels),
        "test_images_md5": md5(ds.test_images), "test_labels_md5": md5(ds.test_labels),
        "files": [{"name": n, "bytes": int(b), "md5": h} for n, b, h in ds.files],
    }


# ---------------------------------------------------------------------------------------- writing
def _check_split(images, labels, n_classes, what):
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"{what} images must be uint8 (n, 32, 32, 3), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),) or (labels.size and (labels.dtype.kind not in "iu"
                                                           or labels.min() < 0 or labels.max() >= n_classes)):
        raise ValueError(f"{what} labels must be (n,) ints in [0, {n_classes}), got {labels.dtype} {labels.shape}")
    return images, labels.astype(np.int64)


def _dump(path, obj):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # protocol 2, like the official files, readable by any Python


def write_cifar10(root, train_images, train_labels, test_images, test_labels, classes,
                  source="bestbatch synthetic"):
    """Write arrays as torchvision's CIFAR-10 python version; returns the written paths."""
    if not source.strip():
        raise ValueError("source must be non-empty so the batch_label never claims the official release")
    classes = [str(c) for c in classes]
    train_images, train_labels = _check_split(train_images, train_labels, len(classes), "train")
    test_images, test_labels = _check_split(test_images, test_labels, len(classes), "test")
    folder = Path(root) / CIFAR_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    rows = lambda x: x.transpose(0, 3, 1, 2).reshape(len(x), 3072)  # HWC -> 1024 R, 1024 G, 1024 B
    splits = np.array_split(np.arange(len(train_labels)), len(TRAIN_FILES))
    batches = [(name, f"{source} training batch {i} of 5", idx)
               for i, (name, idx) in enumerate(zip(TRAIN_FILES, splits), 1)]
    paths, start = [], 0
    for name, label, idx in batches + [(TEST_FILE, f"{source} testing batch 1 of 1", None)]:
        x, y = (train_images[idx], train_labels[idx]) if idx is not None else (test_images, test_labels)
        _dump(folder / name, {"batch_label": label, "labels": y.tolist(), "data": np.ascontiguousarray(rows(x)),
                              "filenames": [f"synthetic_{start + j + 1:05d}.png" for j in range(len(y))]})
        paths.append(folder / name)
        start += len(y)
    _dump(folder / META_FILE, {"num_cases_per_batch": len(splits[0]), "label_names": classes, "num_vis": 3072})
    return paths + [folder / META_FILE]


# -------------------------------------------------------------------------------------- synthetic
_KINDS = ("stripes", "checker", "rings")


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB for arrays of equal shape in [0, 1]; returns (..., 3)."""
    k = (np.array([5.0, 3.0, 1.0]).reshape((3,) + (1,) * np.ndim(h)) + 6 * np.asarray(h)) % 6
    rgb = v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)
    return np.moveaxis(rgb, 0, -1)


def _synthetic_split(n, rng, n_classes, chunk=4096):
    """n images with balanced labels; class fixes hue and pattern, everything else varies per image."""
    labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    c = labels.astype(np.float64)
    u = lambda lo, hi: rng.uniform(lo, hi, n)
    # class identity: hue around the wheel, a pattern kind, an orientation and a spatial frequency
    hue = (c / n_classes + rng.normal(0, 0.3 / n_classes, n)) % 1
    kind = labels % len(_KINDS)
    theta = (c * 0.618 * np.pi) % np.pi + rng.normal(0, 0.12, n)
    freq = (1.5 + ((labels * 7) % 10) * 0.45) * u(0.85, 1.15)  # cycles per image
    # nuisances, wide so every ordering metric spreads: brightness, saturation, contrast, sharpness
    value, sat = u(0.12, 1.0), rng.beta(1.3, 1.0, n)
    contrast = rng.beta(1.0, 1.2, n)  # near 0: almost flat images with no edges
    sharp = np.exp(u(np.log(0.5), np.log(10.0)))
    phase, centre = u(0, 2 * np.pi), rng.uniform(-0.35, 0.35, (n, 2))
    colour = _hsv_to_rgb(hue, sat, np.ones(n))
    # an occluding background rectangle in about half the images, in a random low-saturation colour
    occ = rng.random(n) < 0.55
    occ_wh = rng.integers(6, 26, (n, 2)) * occ[:, None]
    occ_xy = rng.integers(0, 32, (n, 2)) - occ_wh // 2
    occ_rgb = _hsv_to_rgb(rng.random(n), u(0.0, 0.4), u(0.0, 1.0))
    noise = u(0.0, 0.25)  # width of uniform pixel noise

    g = (np.arange(32, dtype=np.float32) + 0.5) / 32 - 0.5
    gy, gx = g[:, None], g[None, :]
    out = np.empty((n, 32, 32, 3), np.uint8)
    for lo in range(0, n, chunk):
        sl = slice(lo, min(n, lo + chunk))
        f32 = lambda a: np.asarray(a[sl], np.float32)[:, None, None]
        ct, st, w, ph = np.cos(f32(theta)), np.sin(f32(theta)), 2 * np.pi * f32(freq), f32(phase)
        s = np.empty((len(ct), 32, 32), np.float32)
        for kd, m in enumerate(kind[None, sl] == np.arange(len(_KINDS))[:, None]):  # only each image's own pattern
            along = gx * ct[m] + gy * st[m]
            if kd == 0:
                s[m] = np.sin(w[m] * along + ph[m])
            elif kd == 1:
                s[m] = np.sin(w[m] * along + ph[m]) * np.sin(w[m] * (gy * ct[m] - gx * st[m]) + 2 * ph[m])
            else:
                s[m] = np.cos(w[m] * np.hypot(gx - f32(centre[:, 0])[m], gy - f32(centre[:, 1])[m]) + ph[m])
        k = f32(sharp)
        p = 0.5 + 0.5 * np.tanh(k * s) / np.tanh(k)  # pattern in [0, 1], soft or hard edged
        shade = f32(value) * (1 - f32(contrast) * p)
        img = shade[..., None] * np.asarray(colour[sl], np.float32)[:, None, None, :]
        x0, y0, wh = occ_xy[sl, 0, None, None], occ_xy[sl, 1, None, None], occ_wh[sl]
        xs, ys = np.arange(32)[None, None, :], np.arange(32)[None, :, None]
        box = (xs >= x0) & (xs < x0 + wh[:, 0, None, None]) & (ys >= y0) & (ys < y0 + wh[:, 1, None, None])
        img = np.where(box[..., None], np.asarray(occ_rgb[sl], np.float32)[:, None, None, :], img)
        img += f32(noise)[..., None] * (rng.random(img.shape, dtype=np.float32) - 0.5)  # uniform: 8x faster than normal
        out[sl] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out, labels


def make_synthetic(n_train, n_test, seed, n_classes=10):
    """A CIFAR-shaped stand-in: (train_images, train_labels, test_images, test_labels, classes).

    Each class has its own hue and its own oriented stripe/checker/ring pattern; brightness,
    saturation, contrast, edge sharpness, phase, an occluding box and noise vary per image so the
    intensity, HSV colour, edge and LPIPS orders all have something to sort. Train and test come
    from independent streams of `seed`, so the train set does not depend on n_test.
    """
    if n_classes < 1 or n_train < 0 or n_test < 0:
        raise ValueError("need n_classes >= 1 and non-negative sizes")
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    train = _synthetic_split(n_train, train_rng, n_classes)
    test = _synthetic_split(n_test, test_rng, n_classes)
    classes = tuple(f"{_KINDS[c % len(_KINDS)]}_{round(360 * c / n_classes):03d}" for c in range(n_classes))
    return train[0], train[1], test[0], test[1], classes
