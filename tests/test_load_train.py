"""load_dataset(..., test=False): the training split alone, for the jobs that never look at the test set (the
orderings, a network's probe), which a split decode of an image folder runs before its test file exists."""

import numpy as np
import pytest

from bestbatch.data import (
    CIFAR10,
    CIFAR100,
    DatasetError,
    dataset_summary,
    load_dataset,
    make_synthetic,
    write_dataset,
)


@pytest.fixture(params=[CIFAR10, CIFAR100], ids=lambda layout: layout.source)
def written(request, tmp_path):
    layout = request.param
    n_classes = 100 if layout is CIFAR100 else 10
    write_dataset(tmp_path, *make_synthetic(120, 30, seed=2, n_classes=n_classes), source=layout.source)
    return tmp_path, layout


def test_without_the_test_file(written):
    root, layout = written
    full = load_dataset(root, layout.source)
    (root / layout.dirname / layout.test_file).unlink()
    with pytest.raises(DatasetError, match=rf"missing .*{layout.dirname}/{layout.test_file}: download"):
        load_dataset(root, layout.source)  # test=True, the default, still demands it
    ds = load_dataset(root, layout.source, test=False)
    assert np.array_equal(ds.train_images, full.train_images) and np.array_equal(ds.train_labels, full.train_labels)
    assert ds.train_images.flags.c_contiguous and ds.classes == full.classes and ds.official == full.official
    assert ds.test_images.shape == (0, 32, 32, 3) and ds.test_images.dtype == np.uint8
    assert ds.test_labels.shape == (0,) and ds.test_labels.dtype == np.int64
    assert [f[0] for f in ds.files] == [*layout.train_files, layout.meta_file]  # only what was read
    assert [f for f in full.files if f[0] != layout.test_file] == list(ds.files)
    assert not ds.test_read and full.test_read
    summary = dataset_summary(ds)
    assert summary["n_test"] is None and summary["test_images_md5"] is None and summary["test_class_counts"] is None
    assert summary["n_train"] == 120 and summary["train_images_md5"] == dataset_summary(full)["train_images_md5"]


def test_a_damaged_test_file_is_not_read(written):
    root, layout = written
    (root / layout.dirname / layout.test_file).write_bytes(b"not a pickle")
    assert len(load_dataset(root, layout.source, test=False).train_labels) == 120
    with pytest.raises(DatasetError, match=rf"{layout.dirname}/{layout.test_file}"):
        load_dataset(root, layout.source)


@pytest.mark.parametrize("which", ["train", "meta"])
def test_the_files_it_reads_keep_their_refusals(written, which):
    root, layout = written
    name = layout.train_files[-1] if which == "train" else layout.meta_file
    path = root / layout.dirname / name
    path.unlink()
    with pytest.raises(DatasetError, match=rf"missing .*{layout.dirname}/{name}: download"):
        load_dataset(root, layout.source, test=False)
    path.write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match=rf"{layout.dirname}/{name}"):
        load_dataset(root, layout.source, test=False)
