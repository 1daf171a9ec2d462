"""Rules of distances.smk: one epoch's distances from its shard, and a metric's epochs gathered."""

import logging
from dataclasses import replace

from ..distances import gradient_diversity, noise_scale, reduce_shard
from ..formats import (
    FormatError,
    gather_matrix,
    read_epoch,
    read_shard_records,
    read_training,
    rewrite_epoch,
    with_training,
    write_epoch,
    write_matrix,
    write_matrix_csv,
)
from ..logs import step
from ..workflow_support import kill_point

log = logging.getLogger("bestbatch")


@step
def reduce_epoch(shard_path, out_path, training_path=None, threads=1, gram=True):
    """The epoch's distances, per parameter tensor too, and with `gram` (outputs.gram) the batch Gram matrix
    (one read of its shard), plus its small records, without the gradients. training_path: the parallel layout's training records of the epoch, which
    complete a shard its compare job wrote (that shard has none of net_normal's); threads: the job's grant,
    over which the reduction splits its parameter blocks (the same sums, bit for bit)."""
    records, n_params = read_shard_records(shard_path)
    if training_path is not None:
        records = with_training(records, read_training(training_path, records.epoch))
    elif records.train_loss is None:
        raise FormatError(f"{shard_path} holds no training records: reduce it with the epoch's records file")
    result = reduce_shard(
        shard_path,
        progress=lambda block: kill_point("reduce", records.epoch, block),
        threads=int(threads),
        gram=bool(gram),
    )
    write_epoch(out_path, result, n_params, records)
    log.info("epoch %d: %d batches, %d parameters", records.epoch, len(records.train_loss), n_params)
    return result


@step
def complete_epoch(reduced_path, training_path, out_path):
    """The parallel layout with the gradients held in memory or sketched (outputs.gradients): the compare job's
    epoch file, reduced in that job without net_normal's records, completed with the training job's records
    file. Reads and writes small files only."""
    _, records = read_epoch(reduced_path)
    records = with_training(records, read_training(training_path, records.epoch))
    rewrite_epoch(reduced_path, out_path, records)
    log.info("epoch %d: completed with the training records of %s", records.epoch, training_path)


@step
def gather_distances(epoch_paths, out_h5, out_csv, *, metric, batch_size=None):
    """Stack a metric's per-epoch distances into one E x K (x L tensors) matrix file and a tidy CSV, with
    each epoch's gradient noise scale B_simple and gradient diversity.

    batch_size: B, the images per fixed batch (the B of B_simple); None leaves noise_scale NaN."""
    epochs = sorted((read_epoch(path) for path in epoch_paths), key=lambda e: int(e[1].epoch))
    numbers = [int(r.epoch) for _, r in epochs]
    if len(set(numbers)) != len(numbers) or any(str(r.metric) != metric for _, r in epochs):
        raise ValueError(f"gather {metric}: epochs {numbers} / metrics do not form one chain")
    m = gather_matrix(epochs)
    if batch_size is None:
        log.warning("%s: no batch_size given, so the gradient noise scale is left NaN", metric)
    m = replace(
        m,
        batch_size=batch_size,
        noise_scale=None if batch_size is None else noise_scale(m.distance, m.full_norm, batch_size),
        gradient_diversity=gradient_diversity(m.norm, m.full_norm),
    )
    write_matrix(out_h5, metric, m, epochs[-1][1].provenance)
    table = write_matrix_csv(out_csv, metric, m)
    log.info("%s: %d epochs x %d batches x %d parameter tensors", metric, *m.layer_distance.shape)
    return table
