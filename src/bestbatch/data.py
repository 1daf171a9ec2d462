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

Image folders (`data.source: imagefolder`, torchvision's ImageFolder layout) are scanned, decoded once and
written under the study's results in CIFAR-10's format at 32 x 32, or as an image set (IMAGE_SET,
formats.images_file) at any other size: see the section "image folders" below.
"""

import hashlib
import io
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class Layout:
    """One python-version format: its folder, files, keys, and what the official release holds."""

    source: str  # the config's name for it
    dirname: str  # the folder under data.root
    archive: str  # the official tarball
    train_files: tuple
    test_file: str
    meta_file: str
    label_key: str  # a batch's labels
    names_key: str  # the meta file's class names
    sizes: tuple  # (training, test) images of the official release
    official_labels: dict  # file -> the official batch_label
    official: dict  # file -> (size in bytes or None where not known, md5)

    @property
    def files(self):
        return tuple(f for f in (*self.train_files, self.test_file, self.meta_file) if f)

    @property
    def train_side(self):
        """The files a job that reads only the training split needs (the meta file names the classes)."""
        return tuple(f for f in (*self.train_files, self.meta_file) if f)


# md5 of the official files as in torchvision.datasets.CIFAR10/CIFAR100 (a test keeps them equal); sizes
# as the official archives extract them
CIFAR10 = Layout(
    source="cifar10",
    dirname="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_file="test_batch",
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    sizes=(50_000, 10_000),
    official_labels={
        **{f"data_batch_{i}": f"training batch {i} of 5" for i in range(1, 6)},
        "test_batch": "testing batch 1 of 1",
    },
    official={
        "data_batch_1": (31_035_704, "c99cafc152244af753f735de768cd75f"),
        "data_batch_2": (31_035_320, "d4bba439e000b95fd0a9bffe97cbabec"),
        "data_batch_3": (31_035_999, "54ebc095f3ab1f0389bbae665268c751"),
        "data_batch_4": (31_035_696, "634d18415352ddfa80567beed471001a"),
        "data_batch_5": (31_035_623, "482c414d41f54cd18b22e5b47cb7c3cb"),
        "test_batch": (31_035_526, "40351d587109b95175f43aff81a1287e"),
        "batches.meta": (158, "5ff9c542aee3614f3951f8cda6e48888"),
    },
)
CIFAR100 = Layout(
    source="cifar100",
    dirname="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    train_files=("train",),
    test_file="test",
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    sizes=(50_000, 10_000),
    official_labels={"train": "training batch 1 of 1", "test": "testing batch 1 of 1"},
    official={
        "train": (155_249_918, "16019d7e3df5f24257cddd939b257f8d"),
        "test": (None, "f0ef6b0ae62326f3e7ffdfab6717acfc"),
        "meta": (1_473, "7973b15100ade9c7d40fb424638fde48"),
    },
)
LAYOUTS = {layout.source: layout for layout in (CIFAR10, CIFAR100)}
# An image folder decoded at any size other than CIFAR's 32 (data.image_size), or for a mapped placement
# (data.placement): two image set files (formats.write_images), the training split's with an empty test split
# and the test split's with an empty training split, so that the workflow writes them in two jobs. Not a
# source a config names (data.source is imagefolder): it is made by the workflow, never downloaded or official.
IMAGE_SET = Layout(
    source="imageset",
    dirname="image-set",
    archive="",
    train_files=("train.h5",),
    test_file="test.h5",
    meta_file="",
    label_key="",
    names_key="",
    sizes=(0, 0),
    official_labels={},
    official={},
)
VERIFY = ("auto", "strict", "off")

# CIFAR-10's names, kept for the callers that only know CIFAR-10
CIFAR_DIRNAME, TRAIN_FILES, TEST_FILE, META_FILE = (
    CIFAR10.dirname,
    CIFAR10.train_files,
    CIFAR10.test_file,
    CIFAR10.meta_file,
)


def layout_of(source, synthetic=None, image_size=None, placement=None):
    """The on-disk format of `data.source` (a synthetic set is written in `data.synthetic.format`; an image
    folder is decoded into CIFAR-10's format at 32 x 32, whatever its class count, and into an image set at any
    other `image_size` or for the mapped `placement`)."""
    if source == "imagefolder":
        return IMAGE_SET if image_size not in (None, IMAGE_SIZE) or placement == "mapped" else CIFAR10
    return LAYOUTS[(synthetic or {}).get("format", "cifar10") if source == "synthetic" else source]


class DatasetError(Exception):
    """The data on disk cannot be used; the message names the file and what to do."""


@dataclass(frozen=True, eq=False)  # eq=False: arrays make == ambiguous
class Dataset:
    train_images: np.ndarray  # (N, H, W, 3) uint8, HWC like torchvision's CIFAR10.data (32 x 32 but in an image set)
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray  # (M, H, W, 3) uint8; M = 0 where the test split was not read (test=False)
    test_labels: np.ndarray  # (M,) int64
    classes: tuple
    official: bool  # every file read is the official release's, byte for byte (md5 checked)
    files: tuple = ()  # ((name, size_bytes, md5), ...) of the files read, for provenance
    test_read: bool = True  # False: load_dataset(..., test=False) left the test file alone
    channel_stats: tuple = None  # an image set's training-split (mean, std), stored when it was decoded


def _how_to_get(root, layout=CIFAR10, or_download=True):
    return (
        f"download {layout.archive} from {CIFAR_URL} and extract it so that "
        f"{Path(root) / layout.dirname / layout.files[0]} exists" + (", or set data.download: true" * or_download)
    )


# ---------------------------------------------------------------------------------------- reading
class _NdarrayType:
    """Stands for numpy.ndarray in a pickle: allowed only as _reconstruct's first argument. Called directly,
    ndarray(shape, dtype, buffer, offset, strides) would build an array of any size from a few bytes."""

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError(
            "numpy.ndarray is called directly (only numpy's own _reconstruct may build an array)"
        )


_NDARRAY = _NdarrayType()


def _reconstruct(subtype, shape, dtype):
    """numpy's _reconstruct for plain arrays only; the array's bytes arrive in its __setstate__, which
    numpy checks against the shape."""
    from numpy._core import multiarray

    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError(f"_reconstruct of {subtype!r}: only numpy.ndarray is allowed")
    return multiarray._reconstruct(np.ndarray, shape, dtype)


def _bytes(*args):
    """bytes() as protocol-2 pickles use it (b'' is pickled as a call with no arguments); never bytes(n),
    which would allocate n zero bytes."""
    if not args:
        return b""
    if isinstance(args[0], str) and len(args) == 2 and isinstance(args[1], str):
        return bytes(args[0], args[1])
    if isinstance(args[0], bytes) and len(args) == 1:
        return bytes(args[0])
    raise pickle.UnpicklingError(f"bytes{tuple(type(a).__name__ for a in args)}: only bytes(str, encoding) is allowed")


def _allowed_globals():
    from numpy._core import multiarray, numeric

    arrays = {"_reconstruct": _reconstruct, "scalar": multiarray.scalar}
    allowed = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): __import__("_codecs").encode,  # protocol 2 stores bytes as latin1 text
        ("__builtin__", "bytes"): _bytes,
        ("builtins", "bytes"): _bytes,  # ... and b'' as bytes()
        ("numpy._core.numeric", "_frombuffer"): numeric._frombuffer,  # protocol 5 arrays
        ("numpy.core.numeric", "_frombuffer"): numeric._frombuffer,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 wrote numpy.core, numpy 2 numpy._core
        allowed.update({(mod, name): fn for name, fn in arrays.items()})
    return allowed


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file, encoding="latin1")
        self.path, self.allowed = path, _allowed_globals()

    def find_class(self, module, name):
        if (module, name) not in self.allowed:
            raise DatasetError(
                f"{self.path}: refused to unpickle global {module}.{name}; a CIFAR "
                f"batch holds only lists, strings and numpy arrays. Do not use this file; "
                f"re-create it from a trusted source."
            )
        return self.allowed[module, name]


def _loads(raw, path):
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(raw), path).load()
    except DatasetError:
        raise
    except Exception as e:  # EOFError, UnpicklingError, ValueError ...: all mean a damaged file
        raise DatasetError(
            f"{path}: not a readable CIFAR pickle, truncated or corrupt "
            f"({type(e).__name__}: {e}); re-download/re-extract or regenerate it."
        ) from e
    if not isinstance(obj, dict):
        raise DatasetError(
            f"{path}: expected a pickled dict, found {type(obj).__name__}; this is not a CIFAR python-version file."
        )
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
        raise DatasetError(
            f"{path}: missing key(s) {missing} (has {sorted(map(str, d))}); not a CIFAR python-version file."
        )


def _class_names(meta, layout, path):
    _require_keys(meta, (layout.names_key,), path)
    names = meta[layout.names_key]
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(c, (str, bytes)) for c in names):
        raise DatasetError(
            f"{path}: {layout.names_key!r} must be a non-empty list of class names, found {type(names).__name__}."
        )
    return tuple(c.decode("latin1") if isinstance(c, bytes) else c for c in names)


def _check_batch(d, path, n_classes, label_key="labels"):
    """Validated (images HWC uint8, labels int64) of one batch dict."""
    _require_keys(d, ("data", label_key), path)
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: 'data' must be a uint8 array of shape (n, 3072), found {what}.")
    raw = d[label_key]
    if (
        not isinstance(raw, (list, tuple, np.ndarray))
        or (isinstance(raw, np.ndarray) and raw.ndim != 1)
        or (not isinstance(raw, np.ndarray) and any(isinstance(y, (bool, np.bool_)) for y in raw))
    ):
        raise DatasetError(
            f"{path}: {label_key!r} must be a list of ints, found {type(raw).__name__}"
            f"{' of shape ' + str(raw.shape) if isinstance(raw, np.ndarray) else ''}."
        )
    try:
        labels = np.asarray(raw)
    except (ValueError, TypeError, OverflowError):
        labels = np.asarray(raw, dtype=object)  # ragged or odd items: refused just below
    if labels.size == 0:
        labels = labels.astype(np.int64)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(
            f"{path}: {label_key!r} must be a list of ints, found {labels.dtype} of shape {labels.shape}."
        )
    if len(labels) != len(data):
        raise DatasetError(f"{path}: {len(labels)} labels for {len(data)} images.")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(
            f"{path}: labels span [{labels.min()}, {labels.max()}] but the meta file "
            f"names {n_classes} classes, so they must lie in [0, {n_classes})."
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def _download(root, layout):
    try:
        from torchvision.datasets import CIFAR10 as Official10
        from torchvision.datasets import CIFAR100 as Official100

        official = Official100 if layout is CIFAR100 else Official10
        for train in (True, False):
            official(str(root), train=train, download=True)
    except Exception as e:  # URLError, socket errors, RuntimeError from a bad archive
        raise DatasetError(
            f"could not download {layout.archive} into {Path(root) / layout.dirname} "
            f"({type(e).__name__}: {e}); this machine is probably offline. On a machine "
            f"with internet, {_how_to_get(root, layout, False)}, then copy that "
            f"directory here."
        ) from e


def _is_official(layout, name, size, md5, verify, path, root):
    """Whether a file is the official release's, byte for byte; refuses a damaged official file.

    auto: md5 is demanded only of a file with an official name and the official size (a copy, a subset or
    a re-pickled set is read as it is); strict: every file must be the official one; off: no md5 at all.
    """
    official_size, official_md5 = layout.official[name]
    if verify == "off":
        return False
    size_text = f"{official_size:,} bytes" if official_size is not None else "size not known here"
    fix = f"re-download {layout.archive} from {CIFAR_URL} and re-extract it into {Path(root)}"
    if verify == "strict":
        if md5 != official_md5:
            raise DatasetError(
                f"{path}: data.verify is strict and this is not the official file: compared md5 "
                f"{md5} ({size:,} bytes) with the official {official_md5} ({size_text}); {fix}, or set "
                f"data.verify: auto to read copies."
            )
        return True
    if official_size is not None and size == official_size:
        if md5 != official_md5:
            raise DatasetError(
                f"{path}: has the official file's name and size ({size:,} bytes) but not its md5 "
                f"({md5}, the official file's is {official_md5}): a damaged copy of the official "
                f"release; {fix} (or set data.verify: off to read it as it is)."
            )
        return True
    return md5 == official_md5


def load_dataset(root, source="cifar10", download=False, verify="auto", log=None, test=True, mmap=False):
    """Read `<root>/<layout folder>` (official, a copy, or generated) into a validated Dataset.

    source: cifar10, cifar100 or imageset (the file layout); verify: auto, strict or off (see _is_official).
    test: False reads the training split alone (the jobs that never look at the test set: the orderings, a
    network's probe): the test file is neither required nor read, the test arrays are empty (0, H, W, 3)
    uint8 and (0,) int64, and `files` names only the files read.
    mmap: an image set's image arrays are mapped read-only, not read (data.placement: mapped); ignored for the
    pickled formats, which must be read whole."""
    if source == IMAGE_SET.source:
        return load_image_set(root, test=test, mmap=mmap)
    layout = LAYOUTS[source]
    root = Path(root)
    folder = root / layout.dirname
    if download and not folder.is_dir():
        _download(root, layout)
    names = layout.files if test else (*layout.train_files, layout.meta_file)
    for name in names:
        if not (folder / name).is_file():
            hint = f"; delete {folder} to download it again" if download and folder.is_dir() else ""
            raise DatasetError(f"missing {folder / name}: {_how_to_get(root, layout)}{hint}.")

    def read(name):
        try:
            raw = (folder / name).read_bytes()
        except OSError as e:
            raise DatasetError(f"{folder / name}: cannot read ({e}).") from e
        info = (name, len(raw), hashlib.md5(raw).hexdigest())
        return _loads(raw, folder / name), info, _is_official(layout, *info, verify, folder / name, root)

    meta, meta_file, meta_official = read(layout.meta_file)
    classes = _class_names(meta, layout, folder / layout.meta_file)
    parts, files, official = {}, [], [meta_official]
    for name in (*layout.train_files, layout.test_file) if test else layout.train_files:
        d, info, is_official = read(name)
        parts[name] = _check_batch(d, folder / name, len(classes), layout.label_key)
        files.append(info)
        official.append(is_official)
    if not all(official) and log is not None:
        copies = [f[0] for f, o in zip([meta_file] + files, official) if not o]
        log.info(
            "%s: not the official release (%s differ from the official files, data.verify: %s): read as a "
            "copy, on its structure alone",
            folder,
            ", ".join(copies),
            verify,
        )
    train = [parts[f] for f in layout.train_files]
    test_split = parts[layout.test_file] if test else (np.empty((0, 32, 32, 3), np.uint8), np.empty(0, np.int64))
    return Dataset(
        np.ascontiguousarray(np.concatenate([x for x, _ in train])),
        np.concatenate([y for _, y in train]),
        np.ascontiguousarray(test_split[0]),
        test_split[1],
        classes,
        all(official),
        tuple(files + [meta_file]),
        test_read=bool(test),
    )


def load_image_set(root, test=True, mmap=False):
    """The Dataset of the image set under `<root>/image-set/` (IMAGE_SET): the training split from train.h5, the
    test split from test.h5 (test=True), each file checked as formats.read_images checks it, and the two
    checked to agree (classes, image size). The files' md5 is not taken (a mapped set may be larger than memory):
    dataset_summary hashes their arrays."""
    from .formats import FormatError, read_images

    folder = Path(root) / IMAGE_SET.dirname
    names = (*IMAGE_SET.train_files, IMAGE_SET.test_file) if test else IMAGE_SET.train_files
    for name in names:
        if not (folder / name).is_file():
            raise DatasetError(
                f"missing {folder / name}: the image folder's decoded copy; run snakemake again to decode the "
                "image folder into it"
            )
    parts = {}
    try:
        for name in names:
            parts[name] = read_images(folder / name, test=name == IMAGE_SET.test_file, mmap=mmap)
    except FormatError as exc:
        raise DatasetError(str(exc)) from None
    (train, classes, attrs) = parts[IMAGE_SET.train_files[0]]
    train_images, train_labels = train["train"]
    if test:
        splits, test_classes, _ = parts[IMAGE_SET.test_file]
        test_images, test_labels = splits["test"]
        if test_classes != classes or test_images.shape[1:] != train_images.shape[1:]:
            raise DatasetError(
                f"{folder}: {IMAGE_SET.test_file} ({len(test_classes)} classes, images {test_images.shape[1:3]}) "
                f"does not match {IMAGE_SET.train_files[0]} ({len(classes)} classes, images "
                f"{train_images.shape[1:3]}): delete both and run snakemake again to decode the folder into them"
            )
    else:
        test_images, test_labels = np.empty((0, *train_images.shape[1:]), np.uint8), np.empty(0, np.int64)
    stats = attrs.get("channel_statistics")
    return Dataset(
        train_images,
        train_labels,
        test_images,
        test_labels,
        tuple(classes),
        False,
        tuple((name, (folder / name).stat().st_size, None) for name in names),
        test_read=bool(test),
        channel_stats=None if stats is None else tuple(tuple(float(v) for v in part) for part in json.loads(stats)),
    )


def load_cifar10(root, download=False, verify="auto"):
    """load_dataset for CIFAR-10's layout."""
    return load_dataset(root, "cifar10", download, verify)


def measure_sizes(root, source="cifar10"):
    """(n_train, n_test, n_classes) of the data set under `root`, read from its files (labels and class
    names only are kept), or None if a file is missing or unreadable (the dataset check then says why)."""
    layout = LAYOUTS[source]
    folder = Path(root) / layout.dirname
    try:
        classes = _class_names(restricted_load(folder / layout.meta_file), layout, folder / layout.meta_file)
        count = {}
        for name in (*layout.train_files, layout.test_file):
            d = restricted_load(folder / name)
            _require_keys(d, (layout.label_key,), folder / name)
            count[name] = len(d[layout.label_key])
    except (DatasetError, TypeError):
        return None
    return sum(count[f] for f in layout.train_files), count[layout.test_file], len(classes)


def planned_sizes(source, root, synthetic=None):
    """(n_train, n_test, n_classes, how) that the workflow plans for before the data is checked:
    a synthetic set's configured sizes, else what the files under `root` hold, else (files not there
    yet) the official release's; an image folder's are counted in its train/ and test/ folders (no image is
    decoded; a folder that cannot be used raises DatasetError). The dataset check compares them with what it reads."""
    if source == "imagefolder":
        return (*imagefolder_sizes(root), f"counted in the image folder {root} when Snakemake started")
    layout = layout_of(source, synthetic)
    n_classes_official = 100 if layout is CIFAR100 else 10
    if source == "synthetic":
        return synthetic["n_train"], synthetic["n_test"], n_classes_official, "data.synthetic in the config"
    measured = measure_sizes(root, source)
    if measured is not None:
        return (*measured, f"read from the files under {Path(root) / layout.dirname} when Snakemake started")
    return (*layout.sizes, n_classes_official, f"the official {layout.archive} (its files are not under {root} yet)")


def dataset_summary(ds):
    """JSON-able provenance: sizes, class balance, official flag, content and file hashes (the test split's
    as None where it was not read: load_dataset(..., test=False))."""

    def md5(a):
        return hashlib.md5(np.ascontiguousarray(a).data).hexdigest()

    def if_read(value):
        return value if ds.test_read else None

    k = len(ds.classes)
    return {
        "official": bool(ds.official),
        "classes": list(ds.classes),
        "n_classes": k,
        "n_train": int(len(ds.train_labels)),
        "n_test": if_read(int(len(ds.test_labels))),
        "image_shape": list(ds.train_images.shape[1:]),
        "train_class_counts": np.bincount(ds.train_labels, minlength=k).tolist(),
        "test_class_counts": if_read(np.bincount(ds.test_labels, minlength=k).tolist()),
        "train_images_md5": md5(ds.train_images),
        "train_labels_md5": md5(ds.train_labels),
        "test_images_md5": if_read(md5(ds.test_images)),
        "test_labels_md5": if_read(md5(ds.test_labels)),
        "files": [{"name": n, "bytes": int(b), "md5": h} for n, b, h in ds.files],
    }


# How an input is normalised, (x / 255 - mean) / std per channel (bestbatch.augment.normalize). CIFAR-10's
# constants (kuangliu/pytorch-cifar's) for every data.source but an image folder: cifar10, cifar100 and the
# synthetic stand-in keep the results they had. An image folder's jobs get the rule param `normalization: train`
# and use their training set's own statistics.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
NORMALIZATIONS = {None: "CIFAR-10's channel mean and std", "train": "the training images' channel mean and std"}


def normalization_of(normalization, train_images, stored=None):
    """The (mean, std) a job normalises with, from its rule param `normalization`: None (absent) -> None, which
    means CIFAR-10's constants everywhere (augment.normalize); "train" -> channel_statistics(train_images), or
    `stored`, what channel_statistics gave when an image set was decoded (Dataset.channel_stats: the same values,
    without reading a mapped set whole in every job)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {list(NORMALIZATIONS)}, got {normalization!r}")
    if normalization is None:
        return None
    return stored if stored is not None else channel_statistics(train_images)


def normalization_record(normalization, channel_stats):
    """JSON-able: which normalisation and its values (None: CIFAR-10's constants)."""
    mean, std = channel_stats if channel_stats is not None else (CIFAR_MEAN, CIFAR_STD)
    return dict(source=normalization or "cifar10", what=NORMALIZATIONS[normalization], mean=list(mean), std=list(std))


def channel_statistics(images, chunk=256):
    """(mean, std) per channel of uint8 images (N, H, W, 3), in [0, 1] units: two tuples of three float64.

    The one function every job of an image-folder study normalises with (rule param `normalization: train`, on
    the training images it loads), so all of them get the same values: exact integer sums of x and x^2 (int64,
    a chunk of images at a time), then mean = sum / (n 255) and the population std
    sqrt((n sum(x^2) - sum(x)^2) / (n 255)^2), each divided once in exact integer arithmetic and rounded once
    to float64 (std: twice, the square root's). ~0.25 s for 50,000 32x32 images (2 busy cores)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or not len(images):
        raise ValueError(f"channel_statistics needs uint8 images (N > 0, H, W, 3), got {images.dtype} {images.shape}")
    flat = images.reshape(len(images), -1)  # a row per image, channels interleaved: position p is channel p % 3
    sums = np.zeros(flat.shape[1], np.int64)
    squares = np.zeros(flat.shape[1], np.int64)
    for start in range(0, len(flat), chunk):
        part = flat[start : start + chunk]
        sums += part.sum(0, dtype=np.int64)
        wide = part.astype(np.uint16)  # 255^2 fits
        squares += np.multiply(wide, wide, out=wide).sum(0, dtype=np.int64)
    n = flat.size // 3  # values per channel
    s = [int(v) for v in sums.reshape(-1, 3).sum(0)]
    s2 = [int(v) for v in squares.reshape(-1, 3).sum(0)]
    flat_channels = [c for c in range(3) if n * s2[c] == s[c] * s[c]]
    if flat_channels:
        raise DatasetError(
            f"the training images hold one value only in channel(s) {flat_channels} (0: red, 1: green, 2: blue): "
            "their standard deviation is 0, so they cannot be normalised by it"
        )
    mean = tuple(s[c] / (n * 255) for c in range(3))  # Python ints: a correctly rounded quotient
    std = tuple(float(np.sqrt((n * s2[c] - s[c] * s[c]) / (n * 255) ** 2)) for c in range(3))
    return mean, std


# ---------------------------------------------------------------------------------------- writing
def _check_split(images, labels, n_classes, what):
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"{what} images must be uint8 (n, 32, 32, 3), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),) or (
        labels.size and (labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= n_classes)
    ):
        raise ValueError(f"{what} labels must be (n,) ints in [0, {n_classes}), got {labels.dtype} {labels.shape}")
    return images, labels.astype(np.int64)


def _dump(path, obj, protocol=2):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)  # protocol 2, like the official files, readable by any Python


def write_dataset(
    root,
    train_images,
    train_labels,
    test_images,
    test_labels,
    classes,
    source="cifar10",
    label="bestbatch synthetic",
    official_labels=False,
    protocol=2,
    filenames=None,
    splits=("train", "test"),
):
    """Write arrays in a python-version layout (`source`: cifar10 or cifar100); returns the written paths.

    Each batch_label names `label` (so it never claims the official release), unless official_labels:
    then the files carry the official batch labels, like a subset or re-pickled copy of the release.
    filenames: (train names, test names) for the batches' 'filenames' (default synthetic_00001.png, ...).
    splits: the files written: "train" (the training files and the meta file), "test" (the test file) or both;
    the arrays of a split not written may be None (so an image folder's two splits are written by two jobs)."""
    if not label.strip():
        raise ValueError("label must be non-empty so the batch_label never claims the official release")
    if not splits or set(splits) - {"train", "test"}:
        raise ValueError(f"splits must be train and/or test, got {splits!r}")
    layout = LAYOUTS[source]
    classes = [str(c) for c in classes]
    empty = np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64)
    if "train" in splits:
        train_images, train_labels = _check_split(train_images, train_labels, len(classes), "train")
    else:
        train_images, train_labels = empty
    if "test" in splits:
        test_images, test_labels = _check_split(test_images, test_labels, len(classes), "test")
    else:
        test_images, test_labels = empty
    if filenames is not None:
        filenames = [[str(f) for f in names] if names is not None else [] for names in filenames]
        if [len(f) for f in filenames] != [len(train_labels), len(test_labels)]:
            raise ValueError(
                f"filenames must name every image: got {[len(f) for f in filenames]} names for "
                f"{len(train_labels)} training and {len(test_labels)} test images"
            )
    folder = Path(root) / layout.dirname
    folder.mkdir(parents=True, exist_ok=True)
    rows = lambda x: x.transpose(0, 3, 1, 2).reshape(len(x), 3072)  # HWC -> 1024 R, 1024 G, 1024 B
    chunks = np.array_split(np.arange(len(train_labels)), len(layout.train_files))
    n_train_files = len(layout.train_files)
    batches = [
        (name, f"training batch {i} of {n_train_files}", idx)
        for i, (name, idx) in enumerate(zip(layout.train_files, chunks), 1)
    ]
    paths, start = [], 0
    written = (batches if "train" in splits else []) + [(layout.test_file, "testing batch 1 of 1", None)] * (
        "test" in splits
    )
    for name, batch_label, idx in written:
        x, y = (train_images[idx], train_labels[idx]) if idx is not None else (test_images, test_labels)
        names = [f"synthetic_{start + j + 1:05d}.png" for j in range(len(y))]
        if filenames is not None:
            names = [filenames[0][i] for i in idx] if idx is not None else filenames[1]
        d = {
            "batch_label": batch_label if official_labels else f"{label} {batch_label}",
            layout.label_key: y.tolist(),
            "data": np.ascontiguousarray(rows(x)),
            "filenames": names,
        }
        if layout is CIFAR100:
            d["coarse_labels"] = (y // 5).tolist()  # CIFAR-100's 20 superclasses of 5 classes each
        _dump(folder / name, d, protocol)
        paths.append(folder / name)
        start += len(y)
    if "train" not in splits:
        return paths
    if layout is CIFAR100:
        meta = {
            "fine_label_names": classes,
            "coarse_label_names": [f"group_{i}" for i in range((len(classes) + 4) // 5)],
        }
    else:
        meta = {"num_cases_per_batch": len(chunks[0]), "label_names": classes, "num_vis": 3072}
    _dump(folder / layout.meta_file, meta, protocol)
    return paths + [folder / layout.meta_file]


def write_cifar10(root, train_images, train_labels, test_images, test_labels, classes, source="bestbatch synthetic"):
    """write_dataset in CIFAR-10's layout, each batch_label naming `source`."""
    return write_dataset(root, train_images, train_labels, test_images, test_labels, classes, "cifar10", label=source)


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
        f32 = lambda a: np.asarray(a[sl], np.float32)[:, None, None]  # noqa: B023 (called in this iteration)
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


# ----------------------------------------------------------------------------------- image folders
# `data.source: imagefolder`: <root>/train/<class>/<image> and <root>/test/<class>/<image>, torchvision's
# ImageFolder convention (classes are the train/ subfolders, sorted by name; files sorted within a class;
# a class folder may hold subfolders). The images are decoded once into CIFAR-10's python format under the
# study's results (write_imagefolder_cache), which every job reads with load_dataset(..., "cifar10"); so the
# metrics, orderings and models see the decoded 32x32 RGB uint8 images, after the conversions below.
#
# What is read, converted or refused (every refusal is a DatasetError naming the file):
#   hidden files and folders (a name starting with "."): ignored, not counted;
#   files of other extensions, or outside a class folder: ignored, counted in one log line;
#   a missing train/ or test/, no class folder, fewer than two classes, an empty class folder, or test classes
#     other than the training classes: refused, naming the folder or the classes;
#   8-bit RGB: read as it is; 8-bit greyscale (L), bilevel (1) and palette (P): converted to RGB, logged;
#   RGBA, LA, PA, or a transparent colour (tRNS): converted to RGB if every pixel is fully opaque (logged),
#     else refused ("has transparency");
#   16-bit per channel (I;16, a 48/64-bit PNG), 32-bit integer (I), floating point (F), and any other mode
#     (CMYK, YCbCr, ...): refused, naming the mode;
#   unreadable, truncated or corrupt files: refused;
#   a size other than 32x32: refused, naming the size, unless image_size=32 (`data.image_size`) is declared:
#     then cropped to the largest centred square and resized to 32x32 with Pillow's bicubic filter (which
#     antialiases when it shrinks), logged. EXIF orientation and ICC profiles are ignored, as torchvision's
#     ImageFolder loader ignores them.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
IMAGE_SIZE = 32  # what the CIFAR-style models take
_SHOWN_PROBLEMS = 20  # a refusal lists at most this many files


@dataclass(frozen=True)
class ImageFolderScan:
    """What scan_imagefolder found, without decoding: the class names, each split's files, and content
    fingerprints (bestbatch.fingerprint) that change when an image is added, removed, renamed or its bytes
    change, and not when it is only touched or copied without its times."""

    root: Path
    classes: tuple
    train: tuple  # ((path relative to root, class index, size in bytes, mtime_ns), ...) in reading order
    test: tuple
    ignored: tuple  # paths relative to root of the files skipped (other extensions, outside a class folder)
    fingerprints: dict = None  # {"train": sha256 hex, "test": ...} of each split's content; None: not hashed

    @property
    def fingerprint(self):
        """sha256 hex of both splits' fingerprints (None where the content was not hashed)."""
        if self.fingerprints is None:
            return None
        return hashlib.sha256(f"{self.fingerprints['train']}:{self.fingerprints['test']}".encode()).hexdigest()

    @property
    def sizes(self):
        """(n_train, n_test, n_classes)"""
        return len(self.train), len(self.test), len(self.classes)

    def paths(self, split=None):
        """The image files (str, under root) of one split ("train", "test") or of both, in reading order."""
        entries = {"train": self.train, "test": self.test}[split] if split else self.train + self.test
        return [str(self.root / rel) for rel, *_ in entries]


def _visible(name):
    return not name.startswith(".")


def _class_folders(split_dir):
    return sorted(e.name for e in os.scandir(split_dir) if _visible(e.name) and e.is_dir())


def _scan_class(root, folder, label, extensions, ignored):
    """((relative path, label, size, mtime_ns), ...) of the images under one class folder, sorted (by path parts).

    os.scandir and plain strings, not pathlib: a 100,000-image folder is scanned whenever Snakemake starts."""
    found = []
    pending = [(str(folder), Path(folder).relative_to(root).as_posix())]
    while pending:
        here, rel_here = pending.pop()
        try:
            entries = list(os.scandir(here))
        except OSError as e:
            raise DatasetError(f"{here}: cannot be read ({e}); replace or remove it.") from e
        for entry in entries:
            name = entry.name
            if not _visible(name):
                continue
            rel = f"{rel_here}/{name}"
            try:
                if entry.is_dir():  # follows links, as os.walk(followlinks=True)
                    pending.append((entry.path, rel))
                    continue
                if not name.lower().endswith(extensions):
                    ignored.append(rel)
                    continue
                st = entry.stat()
            except OSError as e:
                raise DatasetError(f"{entry.path}: cannot be read ({e}); replace or remove it.") from e
            found.append((rel.split("/"), rel, label, st.st_size, st.st_mtime_ns))
    found.sort(key=lambda entry: entry[0])
    return [entry[1:] for entry in found]


def scan_imagefolder(root, extensions=IMAGE_EXTENSIONS, log=None, content=True, cache=None, update_cache=True):
    """Describe `<root>/train/<class>/*` and `<root>/test/<class>/*` without decoding an image: an ImageFolderScan.

    Refuses (DatasetError naming the folder) a missing train/ or test/, fewer than two class folders, an empty
    class folder, and test classes that differ from the training classes. Extensions match case-insensitively.
    content: hash every image's bytes into the splits' fingerprints (False: names and sizes only, fingerprints
    None); cache: the JSON file of earlier digests (bestbatch.fingerprint.digests), written back if update_cache."""
    root = Path(root)
    extensions = tuple(e.lower() for e in extensions)
    layout = f"expected {root}/train/<class>/<image> and {root}/test/<class>/<image> ({', '.join(extensions)})"
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DatasetError(f"{root / split}: no such folder; {layout}.")
    classes = _class_folders(root / "train")
    if len(classes) < 2:
        raise DatasetError(
            f"{root / 'train'}: {len(classes)} class folder{'s' * (len(classes) != 1)} "
            f"({', '.join(classes) or 'none'}); a classifier needs at least two: {layout}."
        )
    test_classes = _class_folders(root / "test")
    if test_classes != classes:
        only_train = sorted(set(classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(classes))
        raise DatasetError(
            f"{root}: test/ and train/ must hold the same class folders: "
            + "; ".join(
                [f"only in {root / 'train'}: {', '.join(only_train)}"] * bool(only_train)
                + [f"only in {root / 'test'}: {', '.join(only_test)}"] * bool(only_test)
            )
            + "."
        )
    ignored, splits = [], {}
    for split in ("train", "test"):
        top = [e.name for e in os.scandir(root / split) if _visible(e.name) and not e.is_dir()]
        ignored += [f"{split}/{name}" for name in sorted(top)]  # files outside a class folder
        splits[split] = []
        for label, name in enumerate(classes):
            before = len(ignored)
            files = _scan_class(root, root / split / name, label, extensions, ignored)
            if not files:
                others = len(ignored) - before
                raise DatasetError(
                    f"{root / split / name}: an empty class folder: it holds no {'/'.join(extensions)} image"
                    f"{f' ({others} other file(s) ignored)' if others else ''}; add images, or remove the class "
                    f"from both train/ and test/."
                )
            splits[split] += files
    if ignored and log is not None:
        log.info(
            "%s: ignored %d file(s) that are not %s images or lie outside a class folder, e.g. %s",
            root,
            len(ignored),
            "/".join(extensions),
            ignored[0],
        )
    fingerprints = None
    if content:
        from .fingerprint import fingerprints as content_fingerprints

        try:
            fingerprints = content_fingerprints(root, classes, splits, cache, update=update_cache)
        except OSError as e:
            raise DatasetError(f"{e.filename}: cannot be read ({e.strerror}); replace or remove it.") from e
    return ImageFolderScan(
        root,
        tuple(classes),
        tuple(map(tuple, splits["train"])),
        tuple(map(tuple, splits["test"])),
        tuple(ignored),
        fingerprints,
    )


def imagefolder_sizes(root):
    """(n_train, n_test, n_classes) of the image folder `root`, counted by scan_imagefolder (nothing decoded)."""
    return scan_imagefolder(root, content=False).sizes


def planned_image_shape(image_size, scan=None, root=None):
    """(H, W) of the images a study plans for (before decoding): 32 x 32 for None and every source but an image
    folder, N x N for data.image_size N, and for NATIVE the size of the image folder's first training image (its
    header alone is read; decoding refuses any image of another size)."""
    if image_size != NATIVE:
        size = IMAGE_SIZE if image_size is None else int(image_size)
        return (size, size)
    from PIL import Image

    entries = scan.train or scan.test
    if not entries:
        return (IMAGE_SIZE, IMAGE_SIZE)
    path = Path(root) / entries[0][0]
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{path}: cannot be read as an image ({type(e).__name__}: {e}); replace or remove it") from e
    return (height, width)


class _Refused(Exception):
    """One image that cannot be used; the message names the file."""


def _rawmode(img):
    """The stored pixel format (e.g. RGB;16B for a 48-bit PNG), which Pillow may narrow to its mode."""
    for tile in getattr(img, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        raw = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else None
        if isinstance(raw, str):
            return raw
    return ""


NATIVE = "native"  # data.image_size: every image kept at its own size, which must be one size for all


def _target_size(image_size):
    """The (width, height) images are brought to: (32, 32) for None (where they must already be) and 32, (N, N) for
    an integer N >= 16; None for NATIVE (kept as they are)."""
    if image_size is None:
        return (IMAGE_SIZE, IMAGE_SIZE)
    if image_size == NATIVE:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"image_size must be an integer from 16 up, {NATIVE!r} or None, got {image_size!r}")
    return (int(image_size), int(image_size))


def _decode_image(path, image_size, notes):
    """One image as (H, W, 3) uint8, converted as the section comment says, at image_size (None: 32 x 32 as it is
    stored; N: N x N, centre-cropped to a square and resized where it is not; NATIVE: its own size); conversions go
    to `notes`."""
    from PIL import Image

    try:
        img = Image.open(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _Refused(f"{path}: cannot be read as an image ({type(e).__name__}: {e}); replace or remove it") from e
    with img:
        mode, raw = img.mode, _rawmode(img)
        if ";16" in raw or ";32" in raw or mode.startswith(("I", "F")):
            stored = f", stored as {raw}" if raw and raw != mode else ""
            raise _Refused(
                f"{path}: mode {mode}{stored}, a 16/32-bit integer or floating-point image; only 8-bit images "
                f"are read: save it as 8-bit RGB"
            )
        try:
            img.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise _Refused(f"{path}: truncated or corrupt ({type(e).__name__}: {e}); replace or remove it") from e
        if mode in ("L", "1", "P", "RGB") and "transparency" in img.info:
            img, mode = img.convert("RGBA"), f"{mode} with a transparent colour"
        if img.mode in ("RGBA", "LA", "PA"):
            rgba = img.convert("RGBA")
            alpha = np.asarray(rgba.getchannel("A"))
            if alpha.min() < 255:
                raise _Refused(
                    f"{path}: has transparency (mode {mode}; {int((alpha < 255).sum())} of {alpha.size} pixels "
                    f"not fully opaque); bestbatch will not guess a background: flatten it onto one and save it as RGB"
                )
            img = rgba.convert("RGB")
            notes["alpha"].append((path, mode))
        elif img.mode in ("L", "1", "P"):
            img = img.convert("RGB")
            notes["grey"].append((path, mode))
        elif img.mode != "RGB":
            raise _Refused(f"{path}: mode {mode} is not read (8-bit RGB, greyscale or palette only): save it as RGB")
        target = _target_size(image_size)
        if target is not None and img.size != target:
            w, h = img.size
            if image_size is None:
                raise _Refused(
                    f"{path}: {w}x{h} pixels; the models take {IMAGE_SIZE}x{IMAGE_SIZE} images: resize it, or "
                    f"declare data.image_size: {IMAGE_SIZE} to have every image centre-cropped and resized"
                )
            s = min(w, h)
            left, top = (w - s) // 2, (h - s) // 2  # the largest centred square (an odd margin: 1 px more right/below)
            img = img.crop((left, top, left + s, top + s)).resize(target, Image.Resampling.BICUBIC)
            notes["resized"].append((path, f"{w}x{h}"))
        return np.asarray(img, dtype=np.uint8)


def decode_imagefolder(root, image_size=None, log=None, scan=None, splits=("train", "test"), into=None):
    """(train_images, train_labels, test_images, test_labels, classes) of the image folder `root`: uint8
    (N, 32, 32, 3) and int64 (N,), in scan_imagefolder's order (`scan`: its result, to skip scanning again).

    image_size: None (every image must be 32x32), an integer N from 16 up (other sizes are centre-cropped to a square
    and resized to N x N) or NATIVE (every image kept at its own size, which must be the same for all: else each
    image of another size than the first is refused, naming both sizes).
    splits: the splits decoded; a split left out is (None, None). into: a (N, H, W, 3) uint8 array the one split in
    `splits` is decoded into, in place (an image set's mapped bytes; with NATIVE, its H x W is the one size).
    Conversions are logged to `log`, one line per kind; every file that cannot be used is listed in one
    DatasetError (at most 20, each named with what is wrong)."""
    target = _target_size(image_size)
    scan = scan or scan_imagefolder(root, log=log, content=False)
    root = Path(root)
    notes = {"grey": [], "alpha": [], "resized": []}
    problems, out = [], []
    for split, entries in (("train", scan.train), ("test", scan.test)):
        if split not in splits:
            out += [None, None]
            continue
        if into is not None:
            images, target = into, (into.shape[2], into.shape[1])
        else:
            images = None if target is None else np.zeros((len(entries), target[1], target[0], 3), np.uint8)
        for i, (rel, *_) in enumerate(entries):
            try:
                image = _decode_image(root / rel, image_size, notes)
                if images is None:  # NATIVE: the first image decoded sets the size of both splits
                    images = np.zeros((len(entries), *image.shape), np.uint8)
                    target = image.shape[1], image.shape[0]
                elif image.shape != images.shape[1:]:
                    raise _Refused(
                        f"{root / rel}: {image.shape[1]}x{image.shape[0]} pixels, other images {target[0]}x{target[1]};"
                        f" data.image_size: {NATIVE} needs one size: declare data.image_size: N to resize them all"
                    )
                images[i] = image
            except _Refused as e:
                problems.append(str(e))
        if images is None:  # an empty split, or NATIVE with every image refused
            images = np.zeros((len(entries), *(target or (IMAGE_SIZE, IMAGE_SIZE))[::-1], 3), np.uint8)
        out += [images, np.array([label for _, label, *_ in entries], np.int64)]
    if problems:
        more = len(problems) - _SHOWN_PROBLEMS
        n = sum(len(entries) for split, entries in (("train", scan.train), ("test", scan.test)) if split in splits)
        raise DatasetError(
            f"{root}: {len(problems)} of {n} image file(s) cannot be used:\n  "
            + "\n  ".join(problems[:_SHOWN_PROBLEMS])
            + (f"\n  ... and {more} more" if more > 0 else "")
        )
    if log is not None:
        said = {
            "grey": "converted %d greyscale/palette image(s) to RGB (%s), e.g. %s",
            "alpha": "dropped the alpha channel of %d fully opaque image(s) (%s), e.g. %s",
            "resized": f"resized %d image(s) to {target[0]}x{target[1]} (largest centred square, Pillow bicubic; sizes %s),"
            " e.g. %s",
        }
        for kind, text in said.items():
            if notes[kind]:
                kinds = sorted({what for _, what in notes[kind]})
                shown = ", ".join(kinds[:5]) + (f", ... ({len(kinds)} in all)" if len(kinds) > 5 else "")
                log.info(text, len(notes[kind]), shown, notes[kind][0][0])
    return (*out, scan.classes)


def write_imagefolder_cache(
    root, out_root, image_size=None, log=None, fingerprint=None, split=None, cache=None, format=CIFAR10.source
):
    """Decode the image folder `root` once and write it under `out_root` in CIFAR-10's python format (what
    load_dataset(out_root, "cifar10") reads) or, with format "imageset", as IMAGE_SET files (any image size;
    load_dataset(out_root, "imageset")); returns the written paths. The batch labels name the folder, so
    the files never claim the official release; the batches' filenames are the images' paths under `root`.

    split: None (both), "train" (the training files and the meta file) or "test" (the test file): the workflow
    writes the two in two jobs, so that a changed test image reruns no job that reads only the training split.
    fingerprint: the split's content fingerprint (both splits': ImageFolderScan.fingerprint) when the workflow
    was planned; refused if the folder has changed since. cache: the digests' cache (read, not written)."""
    splits = (split,) if split else ("train", "test")
    layout = IMAGE_SET if format == IMAGE_SET.source else CIFAR10
    if layout is CIFAR10 and image_size not in (None, IMAGE_SIZE):
        raise ValueError(f"CIFAR-10's format holds 32 x 32 images; image_size {image_size!r} needs format imageset")
    scan = scan_imagefolder(root, log=log, cache=cache, update_cache=False)
    now = scan.fingerprints[split] if split else scan.fingerprint
    if fingerprint is not None and now != fingerprint:
        what = f"{split} split of the image folder" if split else "image folder"
        raise DatasetError(
            f"{root}: the {what} changed since the workflow was planned (fingerprint {now[:12]}, "
            f"planned for {str(fingerprint)[:12]}): run snakemake again so that it plans for the files on disk."
        )
    if layout is IMAGE_SET:
        paths = _write_image_set(root, out_root, scan, image_size, splits, log)
    else:
        arrays = decode_imagefolder(root, image_size, log, scan=scan, splits=splits)
        names = tuple(
            [rel for rel, *_ in entries] if s in splits else None
            for s, entries in zip(("train", "test"), (scan.train, scan.test))
        )
        paths = write_dataset(
            out_root, *arrays, source="cifar10", label=f"bestbatch imagefolder {root}", filenames=names, splits=splits
        )
    if log is not None:
        counts = dict(train=len(scan.train), test=len(scan.test))
        log.info(
            "decoded %s of %d classes from %s (fingerprint %s) into %s",
            " and ".join(f"{counts[s]} {s}" for s in splits) + " images",
            len(scan.classes),
            root,
            now[:12],
            Path(out_root) / layout.dirname,
        )
    return paths


def _write_image_set(root, out_root, scan, image_size, splits, log):
    """Decode the image folder's `splits` into IMAGE_SET files, one per split (the other split empty, of the same
    image size), each image decoded straight into the file's mapped bytes (formats.images_file), so a set larger
    than memory decodes in page-cache memory; the training file keeps its images' channel statistics."""
    from .formats import images_file

    height, width = planned_image_shape(image_size, scan, root)
    folder = Path(out_root) / IMAGE_SET.dirname
    folder.mkdir(parents=True, exist_ok=True)
    entries = {"train": scan.train, "test": scan.test}
    paths = []
    for split, name in (("train", IMAGE_SET.train_files[0]), ("test", IMAGE_SET.test_file)):
        if split not in splits:
            continue
        shapes = {s: ((len(entries[s]) if s == split else 0), height, width, 3) for s in ("train", "test")}
        labels = {s: np.array([e[1] for e in entries[s]] if s == split else [], np.int64) for s in ("train", "test")}
        with images_file(folder / name, shapes, labels, scan.classes, f"bestbatch imagefolder {root}") as (out, attrs):
            decode_imagefolder(root, image_size, log, scan=scan, splits=(split,), into=out[split])
            if split == "train" and len(entries[split]):
                attrs["channel_statistics"] = channel_statistics(out[split])
        paths.append(folder / name)
    return paths
