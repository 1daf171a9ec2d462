"""One function per workflow step: read files, call the science, write files atomically.

These are the edges of the package; `workflow/scripts/*.py` turn `snakemake.*` into one call here.
Nothing here imports snakemake, so every step is testable and runnable without it.
"""
import json
import logging
import platform
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

from . import data as data_mod
from . import metrics as metrics_mod
from .atomic import atomic_path, write_text
from .augment import images_to_tensor
from .config import config_hash, lr_of_epoch, num_batches, phase_of_epoch
from .distances import reduce_shard
from .faults import kill_point
from .models import build_model
from .shards import ShardWriter, read_attrs
from .logs import logged  # noqa: F401  (re-exported for the scripts)
from .training import (device_description, evaluate, keep_freed_memory, make_optimizer, parameter_layout,
                       pick_device, run_epoch, set_numerics)

log = logging.getLogger("bestbatch")


def provenance(config, device=None):
    """What produced an output: seed, versions, device, and the config's hash."""
    t = config["training"]
    return dict(seed=t["seed"], config_hash=config_hash(config), python=platform.python_version(),
                dtype=t["dtype"], cuda_tf32=t["cuda_tf32"], cuda_deterministic=t["cuda_deterministic"],
                torch=torch.__version__, numpy=np.__version__, h5py=h5py.__version__,
                device=device_description(device) if device is not None else "cpu")


def dataset_root(config):
    return Path(config["data"]["root"])


# --- data ---------------------------------------------------------------------------------------

def make_synthetic_dataset(config):
    s = config["data"]["synthetic"]
    arrays = data_mod.make_synthetic(s["n_train"], s["n_test"], s["seed"])
    return data_mod.write_cifar10(dataset_root(config), *arrays)


def verify_dataset(config, out_json):
    ds = data_mod.load_cifar10(dataset_root(config), download=config["data"].get("download", False))
    n, k = len(ds.train_labels), num_batches(config)
    bs = config["training"]["batch_size"]
    if n < bs:
        raise data_mod.DatasetError(f"{dataset_root(config)}: {n} training images, fewer than training.batch_size={bs}")
    summary = dict(data_mod.dataset_summary(ds), batch_size=bs, num_batches=k, dropped_images=n - k * bs)
    write_text(out_json, json.dumps(summary, indent=2))
    return summary


# --- orderings ----------------------------------------------------------------------------------

def fix_threads(configured, granted):
    """Use the configured thread count whatever Snakemake grants: CPU kernels sum in thread-dependent
    order, so only a fixed count keeps results bitwise equal across --cores settings."""
    if granted < configured:
        log.warning("Snakemake granted %d threads (--cores); running %d (training.threads) so that results do "
                    "not depend on --cores", granted, configured)
    torch.set_num_threads(configured)


def make_ordering(config, metric, out_path, threads=1, progress=True):
    fix_threads(config["training"]["threads"], threads)
    ds = data_mod.load_cifar10(dataset_root(config))
    device = pick_device(config["training"]["device"]) if metric == "lpips" else torch.device("cpu")
    params = config.get("orderings", {}).get(metric, {})
    log.info("ordering %s of %d images on %s", metric, len(ds.train_labels), device)
    scores = metrics_mod.score_images(metric, ds.train_images, params, threads=config["training"]["threads"], device=str(device),
                                      progress=progress)
    order = metrics_mod.order_from_scores(scores)
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as f:
        f["order"] = order
        f["order"].attrs["description"] = "training-set indices sorted by ascending score, ties broken by index"
        f["scores"] = scores
        f["display_score"] = metrics_mod.display_score(scores)
        f.attrs["metric"] = metric
        f.attrs["params"] = json.dumps(params, sort_keys=True)
        f.attrs["provenance"] = json.dumps(provenance(config, device))
    return order


def read_order(path):
    with h5py.File(path, "r") as f:
        return f["order"][:], f["display_score"][:]


# --- Algorithm 1 --------------------------------------------------------------------------------

def save_checkpoint(path, net, optimizer, epoch, meta):
    with atomic_path(path) as tmp:
        torch.save(dict(model=net.state_dict(), optimizer=optimizer.state_dict() if optimizer else None,
                        epoch=epoch, meta=json.dumps(meta)), tmp)


def load_checkpoint(path, device):
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"checkpoint {path} cannot be loaded ({type(exc).__name__}: {exc}); delete it and rerun "
                           f"snakemake to recompute it from the previous epoch") from exc


def shard_bytes(k_batches, n_params, dtype):
    """Size of one epoch's gradient shard: K x P values plus their float64 sum (P values)."""
    return (k_batches * np.dtype(dtype).itemsize + 8) * n_params


def check_disk(path, need_bytes, free_bytes=None):
    """Refuse to start an epoch whose shard the disk cannot hold, with the numbers."""
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free if free_bytes is None else free_bytes
    if need_bytes > free:
        raise OSError(f"not enough disk for the gradient shard {path}: it needs {need_bytes / 1e9:.2f} GB "
                      f"(K batches x P parameters x bytes per value, plus P float64 for their sum), {folder} has {free / 1e9:.2f} GB free; "
                      f"free space there or put results/ on a larger disk")
    log.info("gradient shard: %.3f GB needed, %.1f GB free in %s", need_bytes / 1e9, free / 1e9, folder)


def init_checkpoint(config, out_path):
    """Epoch 0: the seeded initialisation every metric starts from."""
    t = config["training"]
    net = build_model(config["model"]["name"], seed=t["seed"]).to(torch.float64 if t["dtype"] == "float64" else torch.float32)
    save_checkpoint(out_path, net, None, 0, provenance(config))


def train_epoch(config, metric, epoch, order_path, prev_checkpoint, out_checkpoint, out_shard, threads=1,
                progress=True):
    """One (metric, epoch) job of Algorithm 1: a checkpoint and a gradient shard."""
    t = config["training"]
    fix_threads(t["threads"], threads)
    device = pick_device(t["device"])
    set_numerics(device, allow_tf32=t["cuda_tf32"], deterministic=t["cuda_deterministic"])
    if device.type == "cpu":
        keep_freed_memory()
    log.info("metric %s, epoch %d, device %s", metric, epoch, device_description(device))
    dtype = torch.float64 if t["dtype"] == "float64" else torch.float32

    ds = data_mod.load_cifar10(dataset_root(config))
    images, labels = images_to_tensor(ds.train_images, device), torch.as_tensor(ds.train_labels, device=device)
    test_images, test_labels = images_to_tensor(ds.test_images, device), torch.as_tensor(ds.test_labels, device=device)
    order, scores = read_order(order_path)

    state = load_checkpoint(prev_checkpoint, device)
    if state["epoch"] != epoch - 1:
        raise RuntimeError(f"{prev_checkpoint} holds epoch {state['epoch']}, expected epoch {epoch - 1}")
    net = build_model(config["model"]["name"]).to(device=device, dtype=dtype)
    net.load_state_dict(state["model"])
    optimizer = make_optimizer(net, t, epoch)
    if state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    lr = lr_of_epoch(epoch, t["lr"], t["lr_milestones"], t["lr_gamma"])
    for group in optimizer.param_groups:
        group["lr"] = lr  # the step schedule, applied at epoch boundaries

    layout, n_params = parameter_layout(net)
    k_batches = len(order) // t["batch_size"]
    check_disk(out_shard, shard_bytes(k_batches, n_params, t["dtype"]))
    batch_scores = scores[order[:k_batches * t["batch_size"]]].reshape(k_batches, -1)  # fixed batches' scores
    writer = ShardWriter(out_shard, k_batches, n_params, t["dtype"], direct=config["outputs"]["shard_io"] == "direct")
    try:
        def put(k, g):
            writer.put(k, g)
            kill_point("batch", epoch, k)

        stats = run_epoch(net, optimizer, images, labels, order, epoch, t, put, progress=progress,
                          gradient_buffer=writer.buffer)
        test_loss, test_acc = evaluate(net, test_images, test_labels, t["dtype"])
        meta = dict(provenance(config, device), metric=metric, epoch=epoch)
        save_checkpoint(out_checkpoint, net, optimizer, epoch, meta)
        kill_point("after_checkpoint", epoch)
        writer.finish(
            dict(gradient_sum=stats["gradient_sum"], train_loss=stats["train_loss"], train_acc=stats["train_acc"],
                 layout_name=np.array([n for n, _, _ in layout], dtype=h5py.string_dtype()),
                 layout_offset=np.array([o for _, _, o in layout], dtype=np.int64),
                 layout_shape=np.array([json.dumps(s) for _, s, _ in layout], dtype=h5py.string_dtype()),
                 batch_score_min=batch_scores.min(1), batch_score_mean=batch_scores.mean(1),
                 batch_score_max=batch_scores.max(1)),
            dict(epoch=epoch, lr=lr, phase=phase_of_epoch(epoch, t["lr_milestones"]), metric=metric,
                 test_loss=test_loss, test_acc=test_acc, provenance=meta))
    except BaseException:
        writer.abort()
        Path(out_checkpoint).unlink(missing_ok=True)
        raise
    log.info("epoch %d: train loss %.4f, train acc %.4f, test acc %.4f, lr %g", epoch,
             float(stats["train_loss"].mean()), float(stats["train_acc"].mean()), test_acc, lr)
    return stats


EPOCH_DATASETS = ("train_loss", "train_acc", "batch_score_min", "batch_score_mean", "batch_score_max")
EPOCH_ATTRS = ("epoch", "lr", "phase", "metric", "test_loss", "test_acc", "provenance")


def reduce_epoch(shard_path, out_path):
    """The epoch's distances (one read of its shard) plus its small records, without the gradients."""
    epoch = read_attrs(shard_path)["epoch"]
    result = reduce_shard(shard_path, progress=lambda k: kill_point("reduce", epoch, k))
    with h5py.File(shard_path, "r") as src, atomic_path(out_path) as tmp, h5py.File(tmp, "w") as f:
        for name in ("distance", "cosine", "norm"):
            f[name] = result[name]
        f.attrs["full_norm"] = result["full_norm"]
        f.attrs["n_params"] = src["gradients"].shape[1]
        for name in EPOCH_DATASETS:
            f[name] = src[name][:]
        for name in EPOCH_ATTRS:
            f.attrs[name] = src.attrs[name]
    return result


def gather_metric(metric, epoch_paths, out_h5, out_csv):
    """Stack a metric's per-epoch distances into one E x K matrix file and a tidy CSV."""
    import pandas as pd

    rows = []
    for path in epoch_paths:
        with h5py.File(path, "r") as f:
            rows.append({**{n: f[n][:] for n in ("distance", "cosine", "norm") + EPOCH_DATASETS},
                         **{n: f.attrs[n] for n in EPOCH_ATTRS + ("full_norm",)}})
    rows.sort(key=lambda r: int(r["epoch"]))
    epochs = np.array([int(r["epoch"]) for r in rows])
    if len(set(epochs)) != len(epochs) or any(str(r["metric"]) != metric for r in rows):
        raise ValueError(f"gather {metric}: epochs {epochs.tolist()} / metrics do not form one chain")
    k = len(rows[0]["distance"])
    stack = lambda name: np.stack([r[name] for r in rows])  # noqa: E731
    per_epoch = lambda name: np.array([r[name] for r in rows])  # noqa: E731
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as f:
        f["epoch"], f["batch"] = epochs, np.arange(k)
        f["epoch"].attrs["description"] = "1-based epoch (rows)"
        f["batch"].attrs["description"] = "0-based position of the batch in the metric's ascending order (columns)"
        for name, unit in (("distance", "L2 norm of g_k - g_bar, in loss units per parameter unit"),
                           ("cosine", "cosine similarity of g_k and g_bar"), ("norm", "L2 norm of g_k"),
                           ("train_loss", "net_normal's mean cross-entropy on the batch"),
                           ("train_acc", "net_normal's accuracy on the batch")):
            f[name] = stack(name)
            f[name].attrs["units"] = unit
        for name in ("full_norm", "lr", "phase", "test_loss", "test_acc"):
            f[name] = per_epoch(name)
        for name in ("batch_score_min", "batch_score_mean", "batch_score_max"):
            f[name] = rows[0][name]
        f.attrs["metric"] = metric
        f.attrs["provenance"] = rows[-1]["provenance"]
    table = pd.DataFrame({
        "metric": metric,
        "epoch": np.repeat(epochs, k),
        "batch": np.tile(np.arange(k), len(epochs)),
        "phase": np.repeat(per_epoch("phase"), k),
        "lr": np.repeat(per_epoch("lr"), k),
        "distance": stack("distance").ravel(),
        "cosine": stack("cosine").ravel(),
        "norm": stack("norm").ravel(),
        "full_norm": np.repeat(per_epoch("full_norm"), k),
        "train_loss": stack("train_loss").ravel(),
        "score_min": np.tile(rows[0]["batch_score_min"], len(epochs)),
        "score_mean": np.tile(rows[0]["batch_score_mean"], len(epochs)),
        "score_max": np.tile(rows[0]["batch_score_max"], len(epochs)),
    })
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.9g")
    return table

