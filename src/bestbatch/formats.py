"""Every file bestbatch writes and reads again: names, dtypes, attributes, and the format version.

Each format has its writer and its reader here and nowhere else; every HDF5 file carries the
attributes `format` (which of the formats below) and `format_version`, and a checkpoint the keys of
the same names. A reader refuses a file of another format or version, naming it.

Gradient shard `<metric>/shards/epoch_<e>.h5` (written by shards.ShardWriter, read by the reduction):
    gradients        (K, P) float32|float64  row k: gradient of fixed batch k at the epoch-start
                                             parameters; contiguous and row-major (one byte range a row)
    gradient_sum     (P,) float64            the rows' sum, kept during training
    layout_name, layout_offset, layout_shape (L,)  the flat vector's parameter tensors: name, first
                                             index, shape as JSON
    + the epoch's records (below); written by the parallel layout's compare job, without the training
      ones (train_loss, train_acc, test_loss, test_acc), which the reduction takes from the training records
Per-epoch file `<metric>/epochs/epoch_<e>.h5` (the reduction of one shard, without the gradients):
    distance, cosine, norm  (K,) float64     ||g_k - g_bar||, cos(g_k, g_bar), ||g_k||
    layer_distance (K, L) float64            ||g_k - g_bar|| over parameter tensor l's slice alone, in
                                             the shard's layout order: sum_l layer_distance^2 = distance^2
    layer_name     (L,) str                  the tensors' names (layout_name)
    gram           (K, K) float64            G[i, j] = g_i . g_j, the batch Gram matrix (absent with
                                             outputs.gram: false)
    attrs full_norm (||g_bar||), n_params (P), and sketch (JSON: gradients.sketch_settings) where the rows were
      sketched (outputs.gradients: sketch; the values are then estimates, layer_distance the whole vector)
    + the epoch's records
    Written by reduce_epoch, or by the training job itself with outputs.gradients: memory or sketch.
The epoch's records, in both:
    train_loss, train_acc (K,) float64       net_normal's loss and accuracy on each batch
    batch_score_min/mean/max (K,)            the ordering metric's range over each batch
    attrs epoch, lr, phase, metric, test_loss, test_acc, provenance (JSON)
Gathered matrix `<metric>/distances.h5`: datasets epoch (E,), batch (K,); distance, cosine, norm,
    train_loss, train_acc (E, K) with `units`; full_norm, lr, phase, test_loss, test_acc (E,);
    batch_score_min/mean/max (K,); attrs metric, provenance, and:
    layer_distance (E, K, L) float64         the epochs' layer_distance, with `units`
    layer_name     (L,) str                  the parameter tensors, in network (layout) order
    gram           (E, K, K) float64, `units` the epochs' Gram matrices G[i, j] = g_i . g_j (absent with
                                             outputs.gram: false); every set of batches is answered from it
    noise_scale    (E,) float64, `units`     B_simple = B * mean_k ||g_k - g_bar||^2 / ||g_bar||^2 (McCandlish
                                             et al. 2018), in examples; NaN where B was not given
    gradient_diversity (E,) float64, `units` sum_k ||g_k||^2 / ||sum_k g_k||^2 (Yin et al. 2018),
                                             dimensionless, 1/K when every g_k is equal
    attr batch_size                          B, images per fixed batch (absent when not given)
    attr sketch                              the epochs' sketch settings (JSON), absent for exact gradients
    `<metric>/distances.csv` is the distance matrix as a tidy table (MATRIX_CSV_COLUMNS).
Ordering `orderings/<metric>.h5`: order (N,) int64 (training indices by ascending score, ties by
    index), scores (N,) or (N, c), display_score (N,) float64; attrs metric, params (JSON), provenance.
Selection curve `selection/<model>/budget_<b>/seed_<s>/<arm>/chunk_<c>.h5` and, gathered, `.../curve.h5`:
    step (R,) int64 (optimizer steps done at each evaluation), phase, lr, test_loss, test_acc, train_loss
    (mean over the train_steps steps since the previous evaluation), train_steps; attrs arm, model, seed,
    budget, total_steps, provenance. `.../curve.csv` is the same as a table (CURVE_COLUMNS).
Checkpoint `*.pt` (torch.save of a dict, loaded with weights_only=True): model (state dict),
    optimizer (state dict or None), epoch, meta (JSON: provenance, and for an epoch its metric and
    the digest of the parameters it started from), format, format_version. Bytewise reproducible.
Image set `image-set/train.h5`, `image-set/test.h5` (an image folder decoded at any image size; write_images /
    read_images; the workflow writes one file per split, the other split empty):
    train_images (N, H, W, 3) uint8, test_images (M, H, W, 3) uint8: contiguous, each one byte range, so a job can
    map them instead of reading them; train_labels (N,), test_labels (M,) int64 in [0, C); attrs classes (JSON
    list of C names), image_size [H, W], source, channel_statistics (JSON [mean, std] of the training images,
    where they are in the file). Refused, naming the file and the problem: another format or
    version, an image array that is not uint8 (n, H, W, 3) with H, W >= 1 and one size for both splits, labels
    that are not int64, not one per image or outside the classes, class names that are not C distinct strings,
    and datasets stored outside the file (external or virtual: a file must not make its reader open others).
Training records `<metric>/records/epoch_<e>.h5` (the parallel layout's train_epoch; temporary):
    train_loss, train_acc (K,) float64; attrs epoch, test_loss, test_acc.
"""

import hashlib
import json
import mmap
import os
import platform
import sys
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace

import h5py
import numpy as np

from .atomic import atomic_path

FORMAT_VERSION = 1
SHARD, EPOCH, MATRIX, ORDERING, CHECKPOINT = (
    "gradient shard",
    "epoch distances",
    "distance matrix",
    "ordering",
    "checkpoint",
)
CURVE = "selection curve"
TRAINING = "epoch training records"
IMAGES = "image set"

# the shard's two big datasets; the writer lays them out for direct I/O, the reduction maps them
SHARD_ROWS, SHARD_SUM = "gradients", "gradient_sum"
SHARD_ROWS_DESCRIPTION = "row k: gradient of fixed batch k's mean cross-entropy loss at the epoch-start parameters"
SHARD_SUM_DESCRIPTION = "float64 sum of the rows, kept during training"
LAYOUT = ("layout_name", "layout_shape", "layout_offset")  # the shard's parameter tensors
DISTANCES = ("distance", "cosine", "norm")
MATRIX_UNITS = {
    "distance": "L2 norm of g_k - g_bar, in loss units per parameter unit",
    "cosine": "cosine similarity of g_k and g_bar",
    "norm": "L2 norm of g_k",
    "train_loss": "net_normal's mean cross-entropy on the batch",
    "train_acc": "net_normal's accuracy on the batch",
}
GRAM_UNITS = "dot product of two mini-batch gradients, in squared loss units per parameter unit"
LAYER_UNITS = "L2 norm of the parameter tensor's slice of g_k - g_bar, in loss units per parameter unit"
GRADIENT_STATISTICS = {
    "noise_scale": "examples: B * mean_k ||g_k - g_bar||^2 / ||g_bar||^2 (B_simple)",
    "gradient_diversity": "dimensionless: sum_k ||g_k||^2 / ||sum_k g_k||^2",
}
PER_EPOCH = ("full_norm", "lr", "phase", "test_loss", "test_acc")
WHOLE_VECTOR = "(all parameters)"  # the one tensor of a distances dict that has no layer_distance
MATRIX_CSV_COLUMNS = (
    "metric",
    "epoch",
    "batch",
    "phase",
    "lr",
    "distance",
    "cosine",
    "norm",
    "full_norm",
    "train_loss",
    "score_min",
    "score_mean",
    "score_max",
)


class FormatError(ValueError):
    """A file is not what its reader expects (another format, another version, or not ours)."""


def _stamp(attrs, kind):
    attrs["format"] = kind
    attrs["format_version"] = FORMAT_VERSION


def _check(attrs, kind, path):
    found, version = attrs.get("format"), attrs.get("format_version")
    if found is None or version is None:
        raise FormatError(
            f"{path}: no format/format_version attributes, so it was written by an older bestbatch "
            f"(this one reads {kind} format version {FORMAT_VERSION}); delete it and rerun snakemake "
            f"to recompute it"
        )
    found = found.decode() if isinstance(found, bytes) else str(found)
    if found != kind:
        raise FormatError(f"{path}: a bestbatch {found} file where a {kind} file is expected")
    if int(version) != FORMAT_VERSION:
        raise FormatError(
            f"{path}: {kind} format version {int(version)}, this bestbatch reads version "
            f"{FORMAT_VERSION}; delete it and rerun snakemake to recompute it with this version"
        )


def _attr(value):
    """An HDF5 attribute value: numbers, strings and arrays as they are, anything else as JSON."""
    return value if isinstance(value, (int, float, str, np.integer, np.floating, np.ndarray)) else json.dumps(value)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def provenance(config_hash, device="cpu", **recorded):
    """What produced an output: the hash of the result keys, the software versions, the device."""
    from . import __version__

    versions = dict(
        bestbatch=__version__, python=platform.python_version(), numpy=np.__version__, h5py=h5py.__version__
    )
    # PyTorch's, and torchvision's where a network or a metric of it was imported (an import path's own version is
    # in its `model`: model_spec.code_identity)
    for package in ("torch", "torchvision"):
        if package in sys.modules:
            versions[package] = sys.modules[package].__version__
    return dict(recorded, config_hash=config_hash, device=device, **versions)


# --- the epoch's records (shard and per-epoch file) --------------------------------------------------


@dataclass
class EpochRecords:
    epoch: int
    lr: float
    phase: int
    metric: str
    test_loss: float
    test_acc: float
    provenance: str  # JSON
    train_loss: np.ndarray
    train_acc: np.ndarray
    batch_score_min: np.ndarray
    batch_score_mean: np.ndarray
    batch_score_max: np.ndarray


RECORD_DATASETS = ("train_loss", "train_acc", "batch_score_min", "batch_score_mean", "batch_score_max")
RECORD_ATTRS = tuple(f.name for f in fields(EpochRecords) if f.name not in RECORD_DATASETS)
# What net_normal's training gives: in the inline layout the shard holds them; in the parallel layout the
# compare job writes the shard without them (None) and the reduction takes them from the training job's
# records file (write_training).
TRAINING_RECORDS = ("train_loss", "train_acc", "test_loss", "test_acc")


def _write_records(f, records):
    for name in RECORD_DATASETS:
        if getattr(records, name) is not None:
            f[name] = getattr(records, name)
    for name in RECORD_ATTRS:
        if getattr(records, name) is not None:
            f.attrs[name] = _attr(getattr(records, name))


def _read_records(f):
    return EpochRecords(
        **{name: f[name][:] if name in f else None for name in RECORD_DATASETS},
        **{name: _plain(f.attrs[name]) if name in f.attrs else None for name in RECORD_ATTRS},
    )


def with_training(records, training):
    """`records` with net_normal's fields (TRAINING_RECORDS) taken from `training` (read_training)."""
    return replace(records, **{name: training[name] for name in TRAINING_RECORDS})


def write_training(path, epoch, training):
    """The parallel layout's training records of one epoch, `<metric>/records/epoch_<e>.h5`: train_loss,
    train_acc (K,) float64; attrs epoch, test_loss, test_acc. The reduction completes the shard's with them."""
    need = 16 * len(training["train_loss"]) + 8192  # two float64 rows and the HDF5 header
    with atomic_path(path, "training records", need_bytes=need) as tmp, h5py.File(tmp, "w") as f:
        f["train_loss"] = np.asarray(training["train_loss"], dtype=np.float64)
        f["train_acc"] = np.asarray(training["train_acc"], dtype=np.float64)
        f.attrs["epoch"] = int(epoch)
        f.attrs["test_loss"] = float(training["test_loss"])
        f.attrs["test_acc"] = float(training["test_acc"])
        _stamp(f.attrs, TRAINING)


def read_training(path, epoch):
    """{train_loss, train_acc, test_loss, test_acc} of `epoch` from write_training's file (checked)."""
    with h5py.File(path, "r") as f:
        _check(f.attrs, TRAINING, path)
        if int(f.attrs["epoch"]) != int(epoch):
            raise FormatError(f"{path}: holds the training records of epoch {int(f.attrs['epoch'])}, not {epoch}")
        return dict(
            train_loss=f["train_loss"][:],
            train_acc=f["train_acc"][:],
            test_loss=float(f.attrs["test_loss"]),
            test_acc=float(f.attrs["test_acc"]),
        )


# --- gradient shard ------------------------------------------------------------------------------------


def finish_shard(f, layout, records):
    """Everything of a shard but its rows and their sum: the parameter layout, the records, the stamp.

    f: the open h5py.File the writer made; layout: [(name, shape, offset)] of the flat vector."""
    names, shapes, offsets = LAYOUT
    f[names] = np.array([n for n, _, _ in layout], dtype=h5py.string_dtype())
    f[offsets] = np.array([o for _, _, o in layout], dtype=np.int64)
    f[shapes] = np.array([json.dumps(list(s)) for _, s, _ in layout], dtype=h5py.string_dtype())
    _write_records(f, records)
    _stamp(f.attrs, SHARD)


def read_shard_records(path):
    """(records, n_params) of a shard, without its rows."""
    with h5py.File(path, "r") as f:
        _check(f.attrs, SHARD, path)
        return _read_records(f), int(f[SHARD_ROWS].shape[1])


def _open_low(path):
    """h5py's low-level API: on a small shard the high-level File/Dataset objects cost as much as reading
    the whole file, so the reduction's reads of the shard's small parts go this way, in one open."""
    return h5py.h5f.open(str(path).encode(), h5py.h5f.ACC_RDONLY)


def _check_low(fid, kind, path):
    attrs = {}
    for name in ("format", "format_version"):
        try:
            attr = h5py.h5a.open(fid, name.encode())
        except KeyError:
            continue
        value = np.empty(attr.shape, dtype=attr.dtype)
        attr.read(value)
        attrs[name] = value.item() if value.shape == () else value
    _check(attrs, kind, path)


def _small_low(fid, name, path):
    try:
        dset = h5py.h5d.open(fid, name.encode())
    except KeyError:
        raise FormatError(f"{path}: a gradient shard without its parameter layout ({', '.join(LAYOUT)})") from None
    value = np.empty(dset.shape, dtype=dset.dtype)
    dset.read(h5py.h5s.ALL, h5py.h5s.ALL, value)
    return value


def _tensors_low(fid, path):
    """(names [str], first indices (L,) int64) of the parameter tensors of an open shard."""
    names, _, offsets = LAYOUT
    return (
        [n.decode() if isinstance(n, bytes) else str(n) for n in _small_low(fid, names, path)],
        _small_low(fid, offsets, path).astype(np.int64),
    )


def _layout_low(fid, path):
    """[(name, shape, offset)] from the layout datasets of an open shard."""
    names, offsets = _tensors_low(fid, path)
    shapes = _small_low(fid, LAYOUT[1], path)
    return [(n, tuple(json.loads(s)), int(o)) for n, s, o in zip(names, shapes, offsets)]


def read_shard_layout(path):
    """[(name, shape, offset)] of the flat gradient vector: its parameter tensors in network order."""
    fid = _open_low(path)
    try:
        _check_low(fid, SHARD, path)
        return _layout_low(fid, path)
    finally:
        fid.close()


def _byte_ranges_low(fid, names):
    """(offset, shape, dtype) of each dataset if all are stored as one byte range, else None."""
    places = []
    for name in names:
        dset = h5py.h5d.open(fid, name.encode())
        offset = dset.get_offset()  # None unless contiguous and allocated in this file (chunked, compact, external)
        if offset is None:
            return None
        places.append((offset, dset.shape, dset.dtype))
    return places


@contextmanager
def shard_rows(path, tensors=False):
    """Yield (rows (K, P), gradient_sum (P,)) of a shard: memory-mapped views when each is one byte range
    (no copy, each byte read once), else h5py datasets that decode block by block. With `tensors`, a
    third item: (names, first indices (L,) int64) of its parameter tensors (read_shard_layout without
    the shapes), read in the same open of the file."""
    fid = _open_low(path)
    try:
        _check_low(fid, SHARD, path)
        places = _byte_ranges_low(fid, (SHARD_ROWS, SHARD_SUM))
        extra = (_tensors_low(fid, path),) if tensors else ()
    finally:
        fid.close()
    if places is None:  # chunked or compressed
        with h5py.File(path, "r") as f:
            yield (f[SHARD_ROWS], f[SHARD_SUM], *extra)
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    # plain ndarray views (np.memmap's subclass costs on every slice); unmapped when the last view is gone
    whole = np.frombuffer(mapped, dtype=np.uint8)
    del mapped
    rows, total = (
        whole[offset : offset + dtype.itemsize * int(np.prod(shape))].view(dtype).reshape(shape)
        for offset, shape, dtype in places
    )
    try:
        yield (rows, total, *extra)
    finally:
        del whole, rows, total


# --- per-epoch file ------------------------------------------------------------------------------------


def _names(values):
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def _layers(distances):
    """(layer_distance (K, L), layer_name (L,)) of a distances dict; without them, the whole vector as one."""
    if "layer_distance" not in distances:
        return np.asarray(distances["distance"], dtype=np.float64)[:, None], _names([WHOLE_VECTOR])
    layer, names = np.asarray(distances["layer_distance"], dtype=np.float64), _names(distances["layer_name"])
    if layer.ndim != 2 or layer.shape != (len(distances["distance"]), len(names)):
        raise ValueError(
            f"layer_distance of shape {layer.shape} for {len(distances['distance'])} batches and "
            f"{len(names)} layer names"
        )
    return layer, names


def write_epoch(path, distances, n_params, records, sketch=None):
    """distances: dict of distance, cosine, norm (K,), full_norm, and layer_distance (K, L) with
    layer_name (L,) (without them: one layer, the whole vector). sketch: the settings of sketched gradients
    (gradients.sketch_settings; attribute `sketch`, JSON), None for exact ones (no attribute)."""
    layer, names = _layers(distances)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name in DISTANCES:
            f[name] = distances[name]
        f["layer_distance"] = layer
        f["layer_name"] = names.astype(h5py.string_dtype())
        if distances.get("gram") is not None:
            f["gram"] = np.asarray(distances["gram"], dtype=np.float64)
        f.attrs["full_norm"] = distances["full_norm"]
        f.attrs["n_params"] = n_params
        if sketch is not None:
            f.attrs["sketch"] = json.dumps(sketch, sort_keys=True)
        _write_records(f, records)
        _stamp(f.attrs, EPOCH)


def read_epoch(path):
    """(distances dict with full_norm, layer_distance, layer_name, gram (None where not kept) and sketch (the
    sketch's settings, None for exact gradients), records) of one epoch."""
    with h5py.File(path, "r") as f:
        _check(f.attrs, EPOCH, path)
        distances = {name: f[name][:] for name in DISTANCES + ("layer_distance",)}
        distances["gram"] = f["gram"][:] if "gram" in f else None
        distances["layer_name"] = _names(f["layer_name"][:])
        distances["full_norm"] = _plain(f.attrs["full_norm"])
        distances["sketch"] = _sketch_attr(f.attrs)
        return distances, _read_records(f)


def rewrite_epoch(path, out_path, records):
    """The epoch file at `path` written again at `out_path` with `records` instead of its own (the parallel
    layout's complete_epoch: a compare job's epoch, reduced without net_normal's records, completed with them)."""
    distances, _ = read_epoch(path)
    with h5py.File(path, "r") as f:
        n_params = int(f.attrs["n_params"])
    write_epoch(out_path, distances, n_params, records, sketch=distances["sketch"])


def _sketch_attr(attrs):
    return json.loads(_plain(attrs["sketch"])) if "sketch" in attrs else None


# --- gathered matrix -----------------------------------------------------------------------------------


def gather_matrix(epochs):
    """A Matrix from [(distances, records)] of consecutive epochs, sorted by epoch (noise_scale,
    gradient_diversity and batch_size are left for the caller to fill in)."""
    value = lambda d, r, name: d[name] if name in d else getattr(r, name)  # noqa: E731
    stacked = {name: np.stack([value(d, r, name) for d, r in epochs]) for name in MATRIX_UNITS}
    per_epoch = {name: np.array([value(d, r, name) for d, r in epochs]) for name in PER_EPOCH}
    per_batch = {name: getattr(epochs[0][1], name) for name in RECORD_DATASETS if name.startswith("batch_score")}
    layers = [_layers(d) for d, _ in epochs]
    names = layers[0][1]
    for (_d, r), (_, other) in zip(epochs, layers):
        if list(other) != list(names):
            raise ValueError(
                f"epoch {int(r.epoch)} has parameter tensors {list(other)[:3]}... ({len(other)}), "
                f"epoch {int(epochs[0][1].epoch)} {list(names)[:3]}... ({len(names)}): not one network"
            )
    grams = [d.get("gram") for d, _ in epochs]
    if any(g is None for g in grams) and not all(g is None for g in grams):
        raise ValueError(
            f"epochs {[int(r.epoch) for (d, r) in epochs if d.get('gram') is None]} have no Gram matrix and the "
            "others have one: reduce them with the same outputs.gram"
        )
    sketches = [d.get("sketch") for d, _ in epochs]
    if any(sketch != sketches[0] for sketch in sketches):
        raise ValueError(
            f"epochs {[int(r.epoch) for _, r in epochs]} were reduced from gradients held differently (sketched "
            "with other settings, or some exact): rerun them with one outputs.gradients"
        )
    return Matrix(
        epoch=np.array([int(r.epoch) for _, r in epochs]),
        batch=np.arange(stacked["distance"].shape[1]),
        **stacked,
        **per_epoch,
        **per_batch,
        layer_distance=np.stack([layer for layer, _ in layers]),
        layer_name=names,
        gram=None if grams[0] is None else np.stack(grams),
        sketch=sketches[0],
    )


def write_matrix(path, metric, m, provenance_json):
    """m: a Matrix; noise_scale and gradient_diversity None are written as NaN, batch_size None not at all."""
    e = len(m.epoch)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f["epoch"], f["batch"] = m.epoch, m.batch
        f["epoch"].attrs["description"] = "1-based epoch (rows)"
        f["batch"].attrs["description"] = "0-based position of the batch in the metric's ascending order (columns)"
        for name, unit in MATRIX_UNITS.items():
            f[name] = getattr(m, name)
            f[name].attrs["units"] = unit
        for name in PER_EPOCH + ("batch_score_min", "batch_score_mean", "batch_score_max"):
            f[name] = getattr(m, name)
        f["layer_distance"] = m.layer_distance
        f["layer_distance"].attrs["units"] = LAYER_UNITS
        f["layer_name"] = _names(m.layer_name).astype(h5py.string_dtype())
        if m.gram is not None:
            f["gram"] = m.gram
            f["gram"].attrs["units"] = GRAM_UNITS
        for name, unit in GRADIENT_STATISTICS.items():
            value = getattr(m, name)
            f[name] = np.full(e, np.nan) if value is None else np.asarray(value, dtype=np.float64)
            f[name].attrs["units"] = unit
        if m.batch_size is not None:
            f.attrs["batch_size"] = int(m.batch_size)
        f.attrs["metric"] = metric
        f.attrs["provenance"] = provenance_json
        if m.sketch is not None:
            f.attrs["sketch"] = json.dumps(m.sketch, sort_keys=True)
        _stamp(f.attrs, MATRIX)


@dataclass
class Matrix:
    """A gathered matrix file in memory (see the module's docstring for what each array is)."""

    epoch: np.ndarray
    batch: np.ndarray = None
    distance: np.ndarray = None
    cosine: np.ndarray = None
    norm: np.ndarray = None
    train_loss: np.ndarray = None
    train_acc: np.ndarray = None
    full_norm: np.ndarray = None
    lr: np.ndarray = None
    phase: np.ndarray = None
    test_loss: np.ndarray = None
    test_acc: np.ndarray = None
    batch_score_min: np.ndarray = None
    batch_score_mean: np.ndarray = None
    batch_score_max: np.ndarray = None
    layer_distance: np.ndarray = None  # (E, K, L)
    layer_name: np.ndarray = None  # (L,) str
    noise_scale: np.ndarray = None  # (E,)
    gradient_diversity: np.ndarray = None  # (E,)
    batch_size: int = None  # an attribute of the file
    gram: np.ndarray = None  # (E, K, K); read only when asked for (read_matrix(gram=True)), absent if not kept
    sketch: dict = None  # the settings of sketched gradients (gradients.sketch_settings); None: exact


MATRIX_ATTRS = ("batch_size", "gram", "sketch")


class NoGram(FormatError):
    """A gathered matrix holds no Gram matrix (its study ran with outputs.gram: false)."""


def read_matrix(path, gram=False):
    """A gathered matrix file as a Matrix; with gram=True its Gram matrices too (NoGram where the file has none),
    with gram=None where the file keeps them (else Matrix.gram is None)."""
    with h5py.File(path, "r") as f:
        _check(f.attrs, MATRIX, path)
        if gram is None:
            gram = "gram" in f
        if gram and "gram" not in f:
            raise NoGram(
                f"{path} holds no Gram matrix: its study ran with outputs.gram: false (set it to true, the default, "
                "and rerun the study's epochs to answer sets of batches)"
            )
        arrays = {field.name: f[field.name][:] for field in fields(Matrix) if field.name not in MATRIX_ATTRS}
        if gram:
            arrays["gram"] = f["gram"][:]
        arrays["layer_name"] = _names(arrays["layer_name"])
        size = f.attrs.get("batch_size")
        return Matrix(**arrays, batch_size=None if size is None else int(size), sketch=_sketch_attr(f.attrs))


def write_matrix_csv(path, metric, m):
    """The gathered Matrix `m` as a tidy table, one row per (epoch, batch)."""
    import pandas as pd

    e, k = m.distance.shape
    table = pd.DataFrame(
        {
            "metric": metric,
            "epoch": np.repeat(m.epoch, k),
            "batch": np.tile(np.arange(k), e),
            "phase": np.repeat(m.phase, k),
            "lr": np.repeat(m.lr, k),
            "distance": m.distance.ravel(),
            "cosine": m.cosine.ravel(),
            "norm": m.norm.ravel(),
            "full_norm": np.repeat(m.full_norm, k),
            "train_loss": m.train_loss.ravel(),
            "score_min": np.tile(m.batch_score_min, e),
            "score_mean": np.tile(m.batch_score_mean, e),
            "score_max": np.tile(m.batch_score_max, e),
        },
        columns=list(MATRIX_CSV_COLUMNS),
    )
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.9g")
    return table


# --- ordering ------------------------------------------------------------------------------------------


def write_ordering(path, metric, order, scores, display_score, params, provenance_json):
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f["order"] = order
        f["order"].attrs["description"] = "training-set indices sorted by ascending score, ties broken by index"
        f["scores"] = scores
        f["display_score"] = display_score
        f.attrs["metric"] = metric
        f.attrs["params"] = json.dumps(params, sort_keys=True)
        f.attrs["provenance"] = provenance_json
        _stamp(f.attrs, ORDERING)


def read_ordering(path):
    """(order, display_score) of an ordering file."""
    with h5py.File(path, "r") as f:
        _check(f.attrs, ORDERING, path)
        return f["order"][:], f["display_score"][:]


# --- selection curve -----------------------------------------------------------------------------------

CURVE_COLUMNS = ("step", "phase", "lr", "test_loss", "test_acc", "train_loss", "train_steps")
CURVE_ATTRS = ("arm", "model", "seed", "budget", "total_steps", "provenance")


def write_curve(path, rows, attrs, csv_path=None):
    """rows: dicts with CURVE_COLUMNS (one per evaluation); attrs: CURVE_ATTRS."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name in CURVE_COLUMNS:
            f[name] = np.array(
                [r[name] for r in rows], dtype=np.int64 if name in ("step", "phase", "train_steps") else np.float64
            )
        for name in CURVE_ATTRS:
            f.attrs[name] = _attr(attrs[name])
        _stamp(f.attrs, CURVE)
    if csv_path is not None:
        import pandas as pd

        table = pd.DataFrame([{name: r[name] for name in CURVE_COLUMNS} for r in rows], columns=list(CURVE_COLUMNS))
        for name in ("arm", "model", "seed", "budget"):
            table.insert(0, name, attrs[name])
        with atomic_path(csv_path) as tmp:
            table.to_csv(tmp, index=False, float_format="%.9g")


@dataclass
class Curve:
    """A selection curve in memory: one array per column, one value per evaluation."""

    step: np.ndarray
    phase: np.ndarray
    lr: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    train_loss: np.ndarray
    train_steps: np.ndarray

    def rows(self):
        """The evaluations as dicts with CURVE_COLUMNS, as write_curve takes them."""
        return [dict(zip(CURVE_COLUMNS, values)) for values in zip(*(getattr(self, n) for n in CURVE_COLUMNS))]


def read_curve(path):
    """(Curve, attrs dict) of a selection curve."""
    with h5py.File(path, "r") as f:
        _check(f.attrs, CURVE, path)
        return Curve(**{name: f[name][:] for name in CURVE_COLUMNS}), {
            name: _plain(f.attrs[name]) for name in CURVE_ATTRS
        }


# --- checkpoint ----------------------------------------------------------------------------------------


def save_checkpoint(path, model_state, optimizer_state, epoch, meta):
    """The file is bytewise reproducible: torch.save into memory names its archive "archive", not after the
    temporary file it would otherwise be written to. A full disk: a NoSpaceError with the folder and the bytes
    (atomic.atomic_path), and nothing under `path`."""
    import io

    import torch

    from .workflow_support import fill_point

    buffer = io.BytesIO()
    torch.save(
        dict(
            model=model_state,
            optimizer=optimizer_state,
            epoch=epoch,
            meta=json.dumps(meta),
            format=CHECKPOINT,
            format_version=FORMAT_VERSION,
        ),
        buffer,
    )
    fill_point("before_checkpoint", epoch, os.path.dirname(os.path.abspath(path)))  # tests' fault injection
    with atomic_path(path, "checkpoint", need_bytes=buffer.getbuffer().nbytes) as tmp, open(tmp, "wb") as f:
        f.write(buffer.getbuffer())


@dataclass
class Checkpoint:
    model: dict  # state dict
    optimizer: dict  # state dict, or None for the initialisation
    epoch: int  # the last epoch trained (0: the initialisation)
    meta: dict  # provenance; for an epoch also metric, epoch, start_params_sha256


def load_checkpoint(path, device="cpu"):
    """A Checkpoint (loaded with weights_only: a pickle that would run code is refused)."""
    import torch

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise RuntimeError(
            f"checkpoint {path} cannot be loaded ({type(exc).__name__}: {exc}); delete it and rerun "
            f"snakemake to recompute it from the previous epoch"
        ) from exc
    if not isinstance(state, dict):
        raise FormatError(f"{path}: a checkpoint holds a dict, this holds {type(state).__name__}")
    _check(state, CHECKPOINT, path)
    return Checkpoint(
        model=state["model"], optimizer=state["optimizer"], epoch=int(state["epoch"]), meta=json.loads(state["meta"])
    )


def state_digest(state_dict):
    """sha256 of a state dict's names, dtypes, shapes and bytes: the identity of a set of parameters."""
    h = hashlib.sha256()
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# --- image set -------------------------------------------------------------------------------------------

IMAGE_SPLITS = ("train", "test")


def _contiguous(f, name, data, fill=True):
    """`data` as a contiguous dataset `name` of `f` whose file space is allocated now (so it is one byte range);
    fill=False leaves its bytes to be written through a map of the file (images_file)."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.CONTIGUOUS)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # no zeros written first: the data (or the map) writes every byte
    space = h5py.h5s.create_simple(data.shape, data.shape)
    dsid = h5py.h5d.create(f.id, name.encode(), h5py.h5t.py_create(data.dtype), space, dcpl=dcpl)
    dset = h5py.Dataset(dsid)
    if data.size and fill:
        dset[...] = data
    return dset


def write_images(path, splits, classes, source, channel_statistics=None):
    """An image set file (module docstring): splits {"train": (images (N, H, W, 3) uint8, labels (N,)), "test":
    ...}, classes: the C class names, source: where the images came from, channel_statistics: the training
    images' (mean, std) per channel (data.channel_statistics), kept so that a job need not read the set to
    normalise it. Checked as read_images checks it, then written atomically (images_file)."""
    arrays = {}
    for split in IMAGE_SPLITS:
        images, labels = splits[split]
        arrays[split] = (np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64))
    _check_images(arrays, list(classes), path)
    shapes = {split: images.shape for split, (images, _) in arrays.items()}
    labels = {split: y for split, (_, y) in arrays.items()}
    with images_file(path, shapes, labels, classes, source) as (out, attrs):
        for split, (images, _) in arrays.items():
            out[split][...] = images
        if channel_statistics is not None:
            attrs["channel_statistics"] = channel_statistics


@contextmanager
def images_file(path, shapes, labels, classes, source):
    """Write an image set whose images are filled in place: yields ({split: writable (N, H, W, 3) uint8 array
    mapped onto the file's bytes}, attrs), where the caller writes each split's images (a decoder, one image at a
    time: a set larger than memory) and may set attrs["channel_statistics"]. On leaving, the images are flushed,
    the attributes written and the file checked as read_images checks it, then renamed into place; on an error
    nothing is left. shapes: {split: (N, H, W, 3)}; labels: {split: (N,) int64}."""
    # shape-only stand-ins (no bytes: np.empty of a set larger than memory can be refused by the kernel)
    blank = {split: np.broadcast_to(np.zeros((), np.uint8), shapes[split]) for split in IMAGE_SPLITS}
    arrays = {split: (blank[split], np.asarray(labels[split], np.int64)) for split in IMAGE_SPLITS}
    _check_images(arrays, list(classes), path)
    need = sum(int(np.prod(shapes[split])) + 8 * len(labels[split]) for split in IMAGE_SPLITS) + (1 << 16)
    attrs = {}
    with atomic_path(path, "image set", need_bytes=need) as tmp:
        with h5py.File(tmp, "w") as f:
            for split in IMAGE_SPLITS:
                _contiguous(f, f"{split}_images", blank[split], fill=False)
                _contiguous(f, f"{split}_labels", arrays[split][1])
            f.attrs["classes"] = json.dumps([str(c) for c in classes])
            f.attrs["image_size"] = np.array(shapes["train"][1:3], dtype=np.int64)
            f.attrs["source"] = str(source)
            filled = [split for split in IMAGE_SPLITS if int(np.prod(shapes[split]))]
            places = dict(zip(filled, _byte_ranges_low(f.id, [f"{split}_images" for split in filled]) or ()))
        whole = np.memmap(tmp, dtype=np.uint8, mode="r+") if places else None
        out = {split: np.empty(shapes[split], np.uint8) for split in IMAGE_SPLITS if split not in places}  # 0 images
        for split, (offset, shape, _) in places.items():
            out[split] = whole[offset : offset + int(np.prod(shape))].reshape(shape)
        yield out, attrs
        if whole is not None:
            whole.flush()
            del out, whole
        with h5py.File(tmp, "r+") as f:
            if attrs.get("channel_statistics") is not None:
                f.attrs["channel_statistics"] = json.dumps(
                    [[float(v) for v in part] for part in attrs["channel_statistics"]]
                )
            _stamp(f.attrs, IMAGES)  # last: a file without its stamp is not an image set
        read_images(tmp, mmap=True)  # the checks a reader makes, before the file takes its name


def _check_images(arrays, classes, path):
    """Refuse an image set whose arrays or classes are not what the module docstring says, naming the problem."""
    if not isinstance(classes, list) or not classes or len(set(classes)) != len(classes):
        raise FormatError(f"{path}: classes must be a list of distinct names, got {classes!r:.200}")
    if not all(isinstance(c, str) for c in classes):
        raise FormatError(f"{path}: every class name must be a string, got {classes!r:.200}")
    sizes = set()
    for split, (images, labels) in arrays.items():
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or min(images.shape[1:3]) < 1:
            raise FormatError(
                f"{path}: {split}_images must be uint8 (n, H, W, 3) RGB images, got {images.dtype} {images.shape}"
            )
        if split == "train" or images.shape[0]:
            sizes.add(images.shape[1:3])
        if labels.dtype != np.int64 or labels.shape != images.shape[:1]:
            raise FormatError(
                f"{path}: {split}_labels must be int64, one per image ({images.shape[0]}), got {labels.dtype} "
                f"{labels.shape}"
            )
        bad = np.flatnonzero((labels < 0) | (labels >= len(classes)))
        if bad.size:
            raise FormatError(
                f"{path}: {split}_labels[{int(bad[0])}] is {int(labels[bad[0]])}, outside the {len(classes)} classes "
                f"({bad.size} labels are)"
            )
    if len(sizes) > 1:
        raise FormatError(f"{path}: the splits' images have different sizes {sorted(sizes)}")


def read_images(path, test=True, mmap=False):
    """(splits {"train": (images, labels), "test": ...}, classes, attrs) of an image set file, checked (module
    docstring). test=False leaves the test split out (empty arrays of the train images' size). mmap=True maps the
    image arrays read-only instead of reading them (the file's pages are read as they are touched); else they are
    read into memory. Labels are always read."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FormatError(f"{path}: not a readable HDF5 file ({exc}); delete it and rerun to decode it again") from None
    with f:
        _check(f.attrs, IMAGES, path)
        wanted = IMAGE_SPLITS if test else ("train",)
        for split in IMAGE_SPLITS:
            for name in (f"{split}_images", f"{split}_labels"):
                if name not in f or not isinstance(f[name], h5py.Dataset):
                    raise FormatError(f"{path}: no dataset {name}: not a complete image set")
                dset = f[name]
                if dset.is_virtual or dset.external:
                    raise FormatError(f"{path}: {name} is stored outside the file (virtual or external): refused")
        try:
            classes = json.loads(_plain(f.attrs["classes"]))
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{path}: no readable classes attribute (a JSON list of names)") from None
        labels = {split: f[f"{split}_labels"][:] for split in wanted}
        shapes = {split: f[f"{split}_images"].shape for split in IMAGE_SPLITS}
        if mmap:
            mapped = [split for split in wanted if int(np.prod(shapes[split]))]
            places = dict(zip(mapped, _byte_ranges_low(f.id, [f"{split}_images" for split in mapped]) or ()))
            if len(places) != len(mapped):
                raise FormatError(f"{path}: its images are not stored contiguously, so they cannot be mapped")
            images = {split: np.empty(shapes[split], np.uint8) for split in wanted if split not in places}
        else:
            images = {split: f[f"{split}_images"][:] for split in wanted}
        attrs = {k: _plain(f.attrs[k]) for k in ("source", "image_size", "channel_statistics") if k in f.attrs}
    if mmap and places:
        whole = np.memmap(path, dtype=np.uint8, mode="r")
        for split, (offset, shape, dtype) in places.items():
            if dtype != np.uint8:
                raise FormatError(f"{path}: {split}_images must be uint8, got {dtype}")
            if offset + int(np.prod(shape)) > whole.size:
                raise FormatError(f"{path}: {split}_images lies beyond the end of the file: truncated")
            images[split] = np.asarray(whole[offset : offset + int(np.prod(shape))]).reshape(shape)
    if not test:
        height, width = shapes["train"][1:3]
        images["test"], labels["test"] = np.empty((0, height, width, 3), np.uint8), np.empty(0, np.int64)
    arrays = {split: (images[split], labels[split]) for split in IMAGE_SPLITS}
    _check_images(arrays, classes, path)
    return arrays, classes, attrs
