"""Rule of orderings.smk: score every training image by one metric and write the ascending order."""

import json
import logging

from .. import metrics
from ..data import load_dataset
from ..formats import provenance, write_ordering
from ..logs import step

log = logging.getLogger("bestbatch")


def fix_threads(configured, granted):
    """Use the configured thread count whatever Snakemake grants: CPU kernels sum in thread-dependent
    order, so only a fixed count keeps results bitwise equal across --cores settings."""
    import torch

    if granted is not None and granted < configured:
        log.warning(
            "Snakemake granted %d threads (--cores); running %d (training.threads) so that results do "
            "not depend on --cores",
            granted,
            configured,
        )
    torch.set_num_threads(configured)


@step
def make_ordering(
    out_path,
    *,
    data_root,
    data_format,
    metric,
    params,
    threads,
    device,
    config_hash,
    granted_threads=None,
    progress=True,
):
    """params: the metric's `orderings.<metric>` settings; device: training.device (only lpips uses it)."""
    import torch

    from ..training import device_description, pick_device

    fix_threads(threads, granted_threads)
    # the training images alone (the test file is no input); an image set's mapped, read as the metric scores it
    ds = load_dataset(data_root, data_format, test=False, mmap=True)
    dev = pick_device(device) if metrics.METRICS[metric].uses_gpu else torch.device("cpu")
    log.info("ordering %s of %d images on %s", metric, len(ds.train_labels), dev)
    scores = metrics.score_images(metric, ds.train_images, params, threads=threads, device=str(dev), progress=progress)
    order = metrics.order_from_scores(scores)
    write_ordering(
        out_path,
        metric,
        order,
        scores,
        metrics.display_score(scores),
        params,
        json.dumps(provenance(config_hash, device_description(dev))),
    )
    return order
