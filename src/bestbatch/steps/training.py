"""Rules of training.smk: the shared initialisation, and one (metric, epoch) job of Algorithm 1."""

import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import torch

from ..augment import images_to_tensor
from ..config import lr_of_epoch, num_batches, phase_of_epoch
from ..data import load_dataset, normalization_of, normalization_record
from ..formats import (
    TRAINING_RECORDS,
    EpochRecords,
    load_checkpoint,
    provenance,
    read_ordering,
    save_checkpoint,
    state_digest,
    write_epoch,
    write_training,
)
from ..gradients import (
    MemoryRows,
    check_memory,
    make_sketch_sink,
    memory_bytes,
    reduce_memory,
    reduce_sketch,
)
from ..logs import step
from ..models import build_model
from ..placement import Images
from ..shards import ShardWriter, shard_bytes
from ..training import (
    DTYPES,
    compare_pass,
    device_description,
    evaluate,
    keep_freed_memory,
    make_optimizer,
    parameter_layout,
    pick_device,
    run_epoch,
    set_numerics,
    train_pass,
)
from ..workflow_support import KillableSink, kill_point
from .orderings import fix_threads

log = logging.getLogger("bestbatch")


def check_disk(path, need_bytes, free_bytes=None):
    """Refuse to start an epoch whose shard the disk cannot hold, with the numbers."""
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free if free_bytes is None else free_bytes
    if need_bytes > free:
        raise OSError(
            f"not enough disk for the gradient shard {path}: it needs {need_bytes / 1e9:.2f} GB "
            f"(K batches x P parameters x bytes per value, plus P float64 for their sum), {folder} has "
            f"{free / 1e9:.2f} GB free; free space there or put results/ on a larger disk"
        )
    log.info("gradient shard: %.3f GB needed, %.1f GB free in %s", need_bytes / 1e9, free / 1e9, folder)


def prepare_training(
    *,
    data_root,
    data_format,
    device,
    threads,
    granted_threads,
    cuda_tf32,
    cuda_deterministic,
    normalization=None,
    placement="device",
):
    """The start of every training job: the configured thread count, the device and its numerics, and the
    data set where `placement` puts it (the rule param `placement`, resolved from data.placement when Snakemake
    planned the job: device, host or mapped; bestbatch.placement). Returns (device, train images, train labels,
    test images, test labels, channel_stats): the images as a tensor on the device (placement device, every
    study's path) or as placement.Images; channel_stats is the inputs' normalisation from the rule param
    `normalization` (data.normalization_of: None, CIFAR-10's constants, where the param is absent; an image
    folder's training-set statistics for "train")."""
    fix_threads(threads, granted_threads)
    dev = pick_device(device)
    set_numerics(dev, allow_tf32=cuda_tf32, deterministic=cuda_deterministic)
    if dev.type == "cpu":
        keep_freed_memory()
    ds = load_dataset(data_root, data_format, mmap=placement == "mapped")
    channel_stats = job_normalization(normalization, ds)
    if placement == "device":
        train, test = images_to_tensor(ds.train_images, dev), images_to_tensor(ds.test_images, dev)
    else:
        train, test = Images(ds.train_images, dev, placement), Images(ds.test_images, dev, placement)
        log.info("data.placement %s: %.1f MB of training images %s", placement, train.nbytes / 1e6, PLACED[placement])
    return (
        dev,
        train,
        torch.as_tensor(ds.train_labels, device=dev),
        test,
        torch.as_tensor(ds.test_labels, device=dev),
        channel_stats,
    )


PLACED = {
    "host": "in host memory (pinned on CUDA), each batch gathered there and copied to the device",
    "mapped": "mapped from the image set file, each batch read ahead in the fixed order by a prefetch thread",
}


def job_normalization(normalization, ds):
    """data.normalization_of for the Dataset `ds` (an image set's stored statistics where it has them), logged
    where it is not CIFAR-10's."""
    channel_stats = normalization_of(normalization, ds.train_images, ds.channel_stats)
    if channel_stats is not None:
        log.info("normalisation (%s): mean %s, std %s", normalization, *channel_stats)
    return channel_stats


def normalization_provenance(normalization, channel_stats):
    """What an output's provenance says of its normalisation: nothing for CIFAR-10's constants (those outputs stay
    as they were), the source and values otherwise (data.normalization_record)."""
    return {} if channel_stats is None else {"normalization": normalization_record(normalization, channel_stats)}


@step
def model_cost(
    out_json, *, model, where, num_classes, data_root, data_format, device, import_paths=(), normalization=None
):
    """Once per network outside the built-in ones, before any training: refuse it if it cannot take part
    (models.check_model on a batch of the data set's images, normalised as the training jobs do: it builds,
    returns (B, classes), has trainable parameters) and probe its costs on this job's device kind
    (resources.probe_model_cost), from which every later job of the model is sized. where: the config key that
    names it (models[i]). Reads the training split alone."""
    from ..atomic import write_text
    from ..augment import normalize
    from ..models import check_model
    from ..resources import probe_model_cost

    dev = pick_device(device)
    ds = load_dataset(data_root, data_format, test=False, mmap=True)
    channel_stats = job_normalization(normalization, ds)
    batch = normalize(images_to_tensor(ds.train_images[:4], dev), torch.float32, channel_stats)
    n_trainable = check_model(model, num_classes, batch, import_paths, where=where)
    probe = probe_model_cost(model, num_classes, dev, import_paths=import_paths, image_shape=batch.shape[-2:])
    log.info(
        "%s: %d trainable parameters of %d; %.2f MB of activations and %.3g ms per image on %s",
        where,
        n_trainable,
        probe["params"],
        probe["activation_mb"],
        probe["ms_per_image"],
        device_description(dev),
    )
    write_text(out_json, json.dumps(probe, indent=2))
    return probe


@step
def init_model(out_path, *, model, num_classes, seed, dtype, config_hash, import_paths=()):
    """Epoch 0: the seeded initialisation every metric starts from (seed: an int, or its text from a wildcard)."""
    seed = int(seed)
    net = build_model(model, num_classes=num_classes, seed=seed, import_paths=import_paths).to(DTYPES[dtype])
    meta = provenance(config_hash, seed=seed, dtype=dtype, **model_record(model))
    save_checkpoint(out_path, net.state_dict(), None, 0, meta)


def model_record(model):
    """What an output's provenance says of its network: nothing more for a built-in name (its outputs stay as they
    were), the import path and keyword arguments of any other (models.ModelSpec.describe)."""
    return {} if isinstance(model, str) else {"model": model}


def _epoch_setup(
    order_path,
    start_checkpoint,
    *,
    metric,
    epoch,
    model,
    num_classes,
    batch_size,
    seed,
    dtype,
    device,
    threads,
    granted_threads,
    data_root,
    data_format,
    cuda_tf32,
    cuda_deterministic,
    config_hash,
    import_paths=(),
    normalization=None,
    gradients="shard",
    sketch=None,
    placement="device",
):
    """What both halves of an epoch start from: the device and data (and the inputs' normalisation), the fixed
    order, the network at the epoch-start parameters, the shard's size, the batches' scores and the epoch's
    provenance (where the gradients are held, other than a shard, and a sketch's settings, seed included)."""
    dev, images, labels, test_images, test_labels, channel_stats = prepare_training(
        data_root=data_root,
        data_format=data_format,
        device=device,
        threads=threads,
        granted_threads=granted_threads,
        cuda_tf32=cuda_tf32,
        cuda_deterministic=cuda_deterministic,
        normalization=normalization,
        placement=placement,
    )
    log.info("metric %s, epoch %d, device %s", metric, epoch, device_description(dev))
    torch_dtype = DTYPES[dtype]
    order, scores = read_ordering(order_path)
    state = load_checkpoint(start_checkpoint, dev)
    if state.epoch != epoch - 1:
        raise RuntimeError(f"{start_checkpoint} holds epoch {state.epoch}, expected epoch {epoch - 1}")
    net = build_model(model, num_classes=num_classes, import_paths=import_paths).to(device=dev, dtype=torch_dtype)
    net.load_state_dict(state.model)
    k_batches = num_batches(len(order), batch_size)
    batch_scores = scores[order[: k_batches * batch_size]].reshape(k_batches, -1)  # the fixed batches' scores
    meta = dict(
        provenance(
            config_hash,
            device_description(dev),
            seed=seed,
            dtype=dtype,
            cuda_tf32=cuda_tf32,
            cuda_deterministic=cuda_deterministic,
            **model_record(model),
            **normalization_provenance(normalization, channel_stats),
            **({} if gradients == "shard" else dict(gradients=gradients)),
            **({"sketch": sketch} if gradients == "sketch" else {}),
        ),
        metric=metric,
        epoch=epoch,
        start_params_sha256=state_digest(state.model),
    )
    return SimpleNamespace(
        dev=dev,
        images=images,
        labels=labels,
        test_images=test_images,
        test_labels=test_labels,
        channel_stats=channel_stats,
        fixed_order=order,
        state=state,
        net=net,
        torch_dtype=torch_dtype,
        k_batches=k_batches,
        batch_scores=batch_scores,
        meta=meta,
    )


def _records(epoch, lr, lr_milestones, metric, meta, batch_scores, training):
    """The epoch's records; `training` None: the compare job's, without net_normal's (formats.TRAINING_RECORDS)."""
    training = training or dict.fromkeys(TRAINING_RECORDS)
    return EpochRecords(
        epoch=epoch,
        lr=lr,
        phase=phase_of_epoch(epoch, lr_milestones),
        metric=metric,
        provenance=json.dumps(meta),
        **training,
        batch_score_min=batch_scores.min(1),
        batch_score_mean=batch_scores.mean(1),
        batch_score_max=batch_scores.max(1),
    )


def _pass_args(e, *, epoch, batch_size, seed, augment, progress):
    """The keyword arguments both halves of an epoch pass to the training engine (run_epoch, train_pass,
    compare_pass), for the setup `e` of _epoch_setup."""
    return dict(
        epoch=epoch,
        batch_size=batch_size,
        seed=seed,
        augment=augment,
        dtype=e.torch_dtype,
        progress=progress,
        channel_stats=e.channel_stats,
    )


def _held_sink(gradients, e, n_params, sketch):
    """The sink that holds the epoch's gradients in host memory or as sketches (outputs.gradients)."""
    if gradients == "memory":
        value_bytes = e.torch_dtype.itemsize
        check_memory(memory_bytes(e.k_batches, n_params, value_bytes), e.k_batches, n_params, value_bytes)
        return MemoryRows(e.k_batches, n_params, e.torch_dtype)
    if gradients == "sketch":
        if not sketch or int(sketch["batches"]) != e.k_batches:
            raise ValueError(
                f"outputs.gradients: sketch needs the sketch's settings for {e.k_batches} batches, got {sketch!r}"
            )
        return make_sketch_sink(sketch, n_params, e.k_batches, e.dev)
    raise ValueError(f"outputs.gradients: {gradients!r} holds no gradients in this job (memory or sketch do)")


def _write_held(out_path, sink, gradients, layout, n_params, records, gram, sketch, threads):
    """Reduce the gradients `sink` holds (the shard path's reduction, offering kill point reduce:<epoch>:<b>)
    and write the epoch's file, with the sketch's settings where sketched."""
    epoch = int(records.epoch)
    progress = lambda block: kill_point("reduce", epoch, block)  # noqa: E731
    if gradients == "memory":
        result = reduce_memory(sink, layout, threads=threads, gram=bool(gram), progress=progress)
    else:
        result = reduce_sketch(sink, threads=threads, gram=bool(gram), progress=progress)
    write_epoch(out_path, result, n_params, records, sketch=sketch if gradients == "sketch" else None)
    log.info("epoch %d: %d batches, %d parameters, gradients %s", epoch, len(sink.rows), n_params, gradients)
    return result


@step
def train_epoch(
    order_path,
    start_checkpoint,
    out_checkpoint,
    out_shard=None,
    out_records=None,
    out_epoch=None,
    *,
    data_root,
    data_format,
    metric,
    epoch,
    model,
    num_classes,
    batch_size,
    lr,
    lr_milestones,
    lr_gamma,
    momentum,
    weight_decay,
    seed,
    augment,
    dtype,
    device,
    threads,
    cuda_tf32,
    cuda_deterministic,
    config_hash,
    import_paths=(),
    shard_io="direct",
    granted_threads=None,
    progress=True,
    normalization=None,
    gradients="shard",
    gram=False,
    sketch=None,
    placement="device",
):
    """One (metric, epoch) job of Algorithm 1: a checkpoint and, in the inline layout, the gradient shard
    (`out_shard`), or with the gradients held in memory or sketched (outputs.gradients, `gradients`) the
    epoch's distances themselves (`out_epoch`, reduced in this job; with `gram` the Gram matrix; `sketch` the
    sketch's settings, gradients.sketch_settings). In the parallel layout (`out_records` given instead) it
    trains only and writes net_normal's records of the epoch; compare_epoch forms the gradients from the
    previous checkpoint. normalization: the rule param (absent: CIFAR-10's constants; "train": the training
    images' statistics).

    dtype is the config's name ("float32" or "float64"); from here on it is a torch dtype."""
    seed = int(seed)  # an int, or its text from a wildcard
    e = _epoch_setup(
        order_path,
        start_checkpoint,
        metric=metric,
        epoch=epoch,
        model=model,
        num_classes=num_classes,
        batch_size=batch_size,
        seed=seed,
        dtype=dtype,
        device=device,
        threads=threads,
        granted_threads=granted_threads,
        data_root=data_root,
        data_format=data_format,
        cuda_tf32=cuda_tf32,
        cuda_deterministic=cuda_deterministic,
        config_hash=config_hash,
        import_paths=import_paths,
        normalization=normalization,
        gradients=gradients,
        sketch=sketch,
        placement=placement,
    )
    net, state, torch_dtype = e.net, e.state, e.torch_dtype
    epoch_lr = lr_of_epoch(epoch, lr, lr_milestones, lr_gamma)
    optimizer = make_optimizer(net, epoch_lr, momentum, weight_decay)
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    for group in optimizer.param_groups:
        group["lr"] = epoch_lr  # the step schedule, applied at epoch boundaries
    common = _pass_args(e, epoch=epoch, batch_size=batch_size, seed=seed, augment=augment, progress=progress)
    data = (e.images, e.labels, e.fixed_order)

    def finish(stats):
        test_loss, test_acc = evaluate(net, e.test_images, e.test_labels, torch_dtype, channel_stats=e.channel_stats)
        training = dict(stats, test_loss=test_loss, test_acc=test_acc)
        save_checkpoint(out_checkpoint, net.state_dict(), optimizer.state_dict(), epoch, e.meta)
        kill_point("after_checkpoint", epoch)
        return _records(epoch, epoch_lr, lr_milestones, metric, e.meta, e.batch_scores, training)

    if sum(out is not None for out in (out_shard, out_records, out_epoch)) != 1:
        raise ValueError(
            "train_epoch: give one of out_shard (inline layout), out_epoch (inline, gradients in memory or "
            "sketched) or out_records (parallel layout)"
        )
    if out_records is not None:
        try:
            records = finish(train_pass(net, optimizer, *data, **common))
            write_training(out_records, epoch, records.__dict__)
        except BaseException:
            Path(out_checkpoint).unlink(missing_ok=True)  # no checkpoint without its records
            raise
    elif out_epoch is not None:
        layout, n_params = parameter_layout(net)
        sink = _held_sink(gradients, e, n_params, sketch)
        try:
            records = finish(run_epoch(net, optimizer, *data, **common, sink=KillableSink(sink, epoch)))
            _write_held(out_epoch, sink, gradients, layout, n_params, records, gram, sketch, granted_threads or threads)
        except BaseException:
            Path(out_checkpoint).unlink(missing_ok=True)  # no checkpoint without its distances
            raise
    else:
        layout, n_params = parameter_layout(net)
        check_disk(out_shard, shard_bytes(e.k_batches, n_params, torch_dtype))
        try:
            with ShardWriter(out_shard, e.k_batches, n_params, torch_dtype, direct=shard_io == "direct") as shard:
                records = finish(run_epoch(net, optimizer, *data, **common, sink=KillableSink(shard, epoch)))
                shard.finish(layout, records)
        except BaseException:
            Path(out_checkpoint).unlink(missing_ok=True)  # no checkpoint without its shard
            raise
    log.info(
        "epoch %d: train loss %.4f, train acc %.4f, test acc %.4f, lr %g",
        epoch,
        float(records.train_loss.mean()),
        float(records.train_acc.mean()),
        records.test_acc,
        epoch_lr,
    )
    return records


@step
def compare_epoch(
    order_path,
    start_checkpoint,
    out_shard=None,
    out_reduced=None,
    *,
    data_root,
    data_format,
    metric,
    epoch,
    model,
    num_classes,
    batch_size,
    lr,
    lr_milestones,
    lr_gamma,
    seed,
    augment,
    dtype,
    device,
    threads,
    cuda_tf32,
    cuda_deterministic,
    config_hash,
    import_paths=(),
    shard_io="direct",
    granted_threads=None,
    progress=True,
    normalization=None,
    gradients="shard",
    gram=False,
    sketch=None,
    placement="device",
    **_training_only,
):
    """The parallel layout's compare job of (metric, epoch): net_compare at the epoch-start parameters (the
    checkpoint of epoch - 1) computes every fixed batch's gradient on the same inputs as the training job
    and writes the shard with its float64 sum (`out_shard`), or with the gradients held in memory or sketched
    (`gradients`) reduces them here and writes the epoch's distances without net_normal's records
    (`out_reduced`); the training job's records file completes its records at the reduction (complete_epoch).
    `_training_only`: the training params this job does not use (momentum, weight_decay)."""
    seed = int(seed)
    e = _epoch_setup(
        order_path,
        start_checkpoint,
        metric=metric,
        epoch=epoch,
        model=model,
        num_classes=num_classes,
        batch_size=batch_size,
        seed=seed,
        dtype=dtype,
        device=device,
        threads=threads,
        granted_threads=granted_threads,
        data_root=data_root,
        data_format=data_format,
        cuda_tf32=cuda_tf32,
        cuda_deterministic=cuda_deterministic,
        config_hash=config_hash,
        import_paths=import_paths,
        normalization=normalization,
        gradients=gradients,
        sketch=sketch,
        placement=placement,
    )
    net, torch_dtype = e.net, e.torch_dtype
    layout, n_params = parameter_layout(net)
    epoch_lr = lr_of_epoch(epoch, lr, lr_milestones, lr_gamma)
    records = _records(epoch, epoch_lr, lr_milestones, metric, e.meta, e.batch_scores, None)
    inputs = (net, e.images, e.labels, e.fixed_order)
    common = _pass_args(e, epoch=epoch, batch_size=batch_size, seed=seed, augment=augment, progress=progress)
    if (out_shard is None) == (out_reduced is None):
        raise ValueError("compare_epoch: give out_shard or out_reduced (gradients in memory or sketched), not both")
    if out_reduced is not None:
        sink = _held_sink(gradients, e, n_params, sketch)
        compare_pass(*inputs, **common, sink=KillableSink(sink, epoch))
        _write_held(out_reduced, sink, gradients, layout, n_params, records, gram, sketch, granted_threads or threads)
        return
    check_disk(out_shard, shard_bytes(e.k_batches, n_params, torch_dtype))
    with ShardWriter(out_shard, e.k_batches, n_params, torch_dtype, direct=shard_io == "direct") as shard:
        compare_pass(*inputs, **common, sink=KillableSink(shard, epoch))
        shard.finish(layout, records)
    log.info("epoch %d: %d batch gradients at the epoch-start parameters", epoch, e.k_batches)
