"""Rules of data.smk: the synthetic stand-in, the decoded image folder, and the check of the data set every job
reads."""

import json
import logging

from ..atomic import write_text
from ..config import ConfigError, check_batch_size, num_batches
from ..data import (
    DatasetError,
    dataset_summary,
    load_dataset,
    make_synthetic,
    write_dataset,
    write_imagefolder_cache,
)
from ..logs import step

log = logging.getLogger("bestbatch")


@step
def synthetic_dataset(*, root, n_train, n_test, seed, format="cifar10"):
    """Generate the synthetic data set under `root` in the layout `format` (cifar10: 10 classes,
    cifar100: 100 classes)."""
    n_classes = 100 if format == "cifar100" else 10
    paths = write_dataset(root, *make_synthetic(n_train, n_test, seed, n_classes), source=format)
    log.info(
        "wrote %d train and %d test images of %d classes to %s (%s layout)", n_train, n_test, n_classes, root, format
    )
    return paths


@step
def imagefolder_dataset(*, image_root, root, fingerprint, image_size=None, split=None, cache=None, format="cifar10"):
    """Decode the image folder `image_root` (<image_root>/train/<class>/*, <image_root>/test/<class>/*) once into
    `format` under `root`: CIFAR-10's (32 x 32), or an image set (format "imageset": any size, or a mapped
    placement), the cache every job reads with load_dataset(root, format).

    split: "train" (the training files and the meta file), "test" (the test file) or None (both): the workflow
    runs one job per split. fingerprint: the split's content fingerprint when Snakemake planned the run (a folder
    changed since is refused); cache: the digests' cache Snakemake wrote (bestbatch.fingerprint), read only;
    image_size: None (every image must be 32x32), N (other sizes are cropped and resized to N x N) or "native"."""
    return write_imagefolder_cache(
        image_root,
        root,
        image_size=image_size,
        log=log,
        fingerprint=fingerprint,
        split=split,
        cache=cache,
        format=format,
    )


@step
def verify_dataset(
    out_json, *, root, source, download, verify, batch_size, n_train, n_test, n_classes, normalization=None
):
    """Read the data set once, check it against the sizes the workflow planned for (n_train, n_test,
    n_classes), and record what it holds, how it is cut into batches and how its inputs are normalised
    (normalization: the training jobs' rule param; absent: CIFAR-10's constants, "train": the training images'
    statistics, computed here as every training job computes them, data.channel_statistics)."""
    from ..data import normalization_of, normalization_record

    ds = load_dataset(root, source, download=download, verify=verify, log=log, mmap=True)  # an image set: mapped
    found = dict(n_train=len(ds.train_labels), n_test=len(ds.test_labels), n_classes=len(ds.classes))
    what = dict(n_train="training images", n_test="test images", n_classes="classes")
    for key, planned in dict(n_train=n_train, n_test=n_test, n_classes=n_classes).items():
        if found[key] != planned:
            raise DatasetError(
                f"{root}: the data set holds {found[key]} {what[key]}, but the workflow was planned "
                f"for {planned} {what[key]} (the sizes it found when Snakemake started); the files "
                f"changed since: run snakemake again so that it plans for the data on disk"
            )
    n = found["n_train"]
    try:
        check_batch_size(batch_size, n, where=f" in {root}")
    except ConfigError as exc:
        raise DatasetError(str(exc)) from None
    k = num_batches(n, batch_size)
    summary = dict(
        dataset_summary(ds),
        source=source,
        batch_size=batch_size,
        num_batches=k,
        dropped_images=n - k * batch_size,
        normalization=normalization_record(
            normalization, normalization_of(normalization, ds.train_images, ds.channel_stats)
        ),
    )
    write_text(out_json, json.dumps(summary, indent=2))
    log.info(
        "%d training images, %d classes: %d batches of %d, %d dropped",
        n,
        found["n_classes"],
        k,
        batch_size,
        n - k * batch_size,
    )
    norm = summary["normalization"]
    log.info("inputs normalised with %s: mean %s, std %s", norm["what"], norm["mean"], norm["std"])
    return summary
