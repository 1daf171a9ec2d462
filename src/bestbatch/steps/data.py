"""Rules of data.smk: the synthetic stand-in, and the check of the data set every job reads."""
import json
import logging

from ..atomic import write_text
from ..config import num_batches
from ..data import DatasetError, dataset_summary, load_cifar10, make_synthetic, write_cifar10
from ..logs import step

log = logging.getLogger("bestbatch")


@step
def synthetic_dataset(*, root, n_train, n_test, seed):
    """Generate the synthetic data set in CIFAR-10's on-disk format under `root`."""
    paths = write_cifar10(root, *make_synthetic(n_train, n_test, seed))
    log.info("wrote %d train and %d test images to %s", n_train, n_test, root)
    return paths


@step
def verify_dataset(out_json, *, root, download, batch_size):
    """Read the data set once, check it, and record what it holds and how it is cut into batches."""
    ds = load_cifar10(root, download=download)
    n = len(ds.train_labels)
    if n < batch_size:
        raise DatasetError(f"{root}: {n} training images, fewer than training.batch_size={batch_size}")
    k = num_batches(n, batch_size)
    summary = dict(dataset_summary(ds), batch_size=batch_size, num_batches=k, dropped_images=n - k * batch_size)
    write_text(out_json, json.dumps(summary, indent=2))
    log.info("%d training images: %d batches of %d, %d dropped", n, k, batch_size, n - k * batch_size)
    return summary
