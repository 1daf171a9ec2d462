"""Images of any size (issue 32, first step): the image set format, a decoded data set of any image size written
and read back exactly, mapped instead of read where asked, every broken or hostile file refused naming the file and
the problem; and the augmentation's crop scaled with the size, as reproducible as at 32."""

import h5py
import numpy as np
import pytest
import torch

from bestbatch.formats import FORMAT_VERSION, FormatError, read_images, write_images

CLASSES = ["cat", "dog", "fish"]


def image_splits(n_train=12, n_test=5, size=(64, 64), seed=0):
    rng = np.random.default_rng(seed)
    return {
        split: (rng.integers(0, 256, (n, *size, 3), dtype=np.uint8), rng.integers(0, len(CLASSES), n))
        for split, n in (("train", n_train), ("test", n_test))
    }


@pytest.mark.parametrize("size", [(16, 16), (64, 64), (96, 96), (160, 128)])
@pytest.mark.parametrize("mmap", [False, True])
def test_an_image_set_reads_back_exactly_at_any_size(tmp_path, size, mmap):
    splits = image_splits(size=size)
    write_images(tmp_path / "images.h5", splits, CLASSES, source="test")
    arrays, classes, attrs = read_images(tmp_path / "images.h5", mmap=mmap)
    assert classes == CLASSES and attrs["source"] == "test" and list(attrs["image_size"]) == list(size)
    for split, (images, labels) in splits.items():
        assert np.array_equal(arrays[split][0], images) and arrays[split][0].dtype == np.uint8
        assert np.array_equal(arrays[split][1], labels) and arrays[split][1].dtype == np.int64


def test_mapped_images_are_views_of_the_file_not_copies(tmp_path):
    write_images(tmp_path / "images.h5", image_splits(n_train=200, size=(32, 32)), CLASSES, source="test")
    arrays, _, _ = read_images(tmp_path / "images.h5", mmap=True)
    images = arrays["train"][0]
    assert not images.flags.owndata and not images.flags.writeable
    base = images
    while getattr(base, "base", None) is not None:
        base = base.base
    assert isinstance(base, np.memmap) or type(base).__name__ == "mmap"


def test_the_test_split_can_be_left_out_or_empty(tmp_path):
    splits = image_splits(n_test=0, size=(48, 48))
    write_images(tmp_path / "images.h5", splits, CLASSES, source="test")
    for mmap in (False, True):
        arrays, _, _ = read_images(tmp_path / "images.h5", mmap=mmap)
        assert arrays["test"][0].shape == (0, 48, 48, 3) and arrays["test"][1].shape == (0,)
    write_images(tmp_path / "full.h5", image_splits(size=(48, 48)), CLASSES, source="test")
    arrays, _, _ = read_images(tmp_path / "full.h5", test=False)
    assert arrays["test"][0].shape == (0, 48, 48, 3) and arrays["train"][0].shape == (12, 48, 48, 3)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.update(train=(s["train"][0].astype(np.float32), s["train"][1])), "train_images must be uint8"),
        (lambda s: s.update(train=(s["train"][0][..., :1], s["train"][1])), r"RGB images, got uint8 \(12, 64, 64, 1\)"),
        (lambda s: s.update(test=(s["test"][0], s["test"][1][:3])), "test_labels must be int64, one per image"),
        (lambda s: s.update(train=(s["train"][0], s["train"][1] + 3)), r"train_labels\[0\] is \d, outside the 3"),
        (lambda s: s.update(test=(s["test"][0][:, :32], s["test"][1])), "different sizes"),
    ],
)
def test_writing_refuses_what_it_could_not_read(tmp_path, change, message):
    splits = image_splits()
    change(splits)
    with pytest.raises(FormatError, match=message):
        write_images(tmp_path / "images.h5", splits, CLASSES, source="test")
    assert not list(tmp_path.iterdir())  # nothing left under the name, nor a temporary


def test_writing_refuses_classes_that_are_not_distinct_names(tmp_path):
    with pytest.raises(FormatError, match="distinct names"):
        write_images(tmp_path / "a.h5", image_splits(), ["cat", "cat", "dog"], source="test")
    with pytest.raises(FormatError, match="must be a string"):
        write_images(tmp_path / "b.h5", image_splits(), ["cat", 2, "dog"], source="test")


def written(folder, **kw):
    """An image set written into `folder` (made if need be); its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "images.h5"
    write_images(path, image_splits(**kw), CLASSES, source="test")
    return path


def test_reading_refuses_another_format_or_version(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(FormatError, match="image set format version"):
        read_images(path)
    with h5py.File(path, "a") as f:
        f.attrs["format"] = "ordering"
    with pytest.raises(FormatError, match="a bestbatch ordering file where a image set file is expected"):
        read_images(path)


def test_reading_refuses_a_file_that_is_not_hdf5_or_is_cut_short(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x80\x04 not an HDF5 file, perhaps a pickle" * 10)
    with pytest.raises(FormatError, match="not a readable HDF5 file"):
        read_images(junk)
    path = written(tmp_path, n_train=300)
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    for mmap in (False, True):
        with pytest.raises(FormatError, match="cut.h5"):
            read_images(cut, mmap=mmap)


def test_reading_refuses_labels_outside_the_classes_written_by_hand(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "a") as f:
        f["train_labels"][3] = 7
    with pytest.raises(FormatError, match=r"train_labels\[3\] is 7, outside the 3 classes"):
        read_images(path)
    with h5py.File(path, "a") as f:
        f["train_labels"][3] = 0
        f.attrs["classes"] = "not json ["
    with pytest.raises(FormatError, match="no readable classes attribute"):
        read_images(path)


def test_reading_refuses_images_stored_outside_the_file(tmp_path):
    """An external or virtual dataset would make the reader open another file of the writer's choosing."""
    images, _ = image_splits()["train"]
    outside = tmp_path / "outside.bin"
    outside.write_bytes(images.tobytes())
    external = written(tmp_path / "ext")
    with h5py.File(external, "a") as f:
        del f["train_images"]
        f.create_dataset(
            "train_images", shape=images.shape, dtype=np.uint8, external=[(str(outside), 0, images.nbytes)]
        )
    virtual = written(tmp_path / "virt")
    with h5py.File(virtual, "a") as f:
        layout = h5py.VirtualLayout(shape=images.shape, dtype=np.uint8)
        layout[:] = h5py.VirtualSource(str(written(tmp_path)), "train_images", shape=images.shape)
        del f["train_images"]
        f.create_virtual_dataset("train_images", layout)
    for path in (external, virtual):
        for mmap in (False, True):
            with pytest.raises(FormatError, match="train_images is stored outside the file"):
                read_images(path, mmap=mmap)


def test_reading_refuses_a_missing_dataset(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "a") as f:
        del f["test_labels"]
    with pytest.raises(FormatError, match="no dataset test_labels"):
        read_images(path)


@pytest.mark.parametrize("size, pad", [((32, 32), 4), ((64, 64), 8), ((96, 96), 12), ((16, 16), 2), ((160, 128), 16)])
def test_the_crop_pads_an_eighth_of_the_image_and_is_seeded(size, pad):
    """make_batch's crop at any size: every augmented image a size-sized window of the image zero-padded by an eighth
    of its smaller side, maybe mirrored; the same for the same (seed, epoch, batch); at 32 the padding of 4 it had."""
    from bestbatch.augment import crop_flip, crop_padding, make_batch

    assert crop_padding(*size) == pad
    h, w = size
    x = torch.randint(0, 256, (24, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = make_batch(x, torch.arange(24), 0, 3, 5, True, torch.float64, ((0.0,) * 3, (1 / 255,) * 3))
    out = out.round().to(torch.uint8)  # (x / 255 - 0) / (1 / 255): the uint8 values, exactly
    assert torch.equal(out, crop_flip(x, 0, 3, 5, pad))
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    moved = 0
    for i in range(24):
        windows = [padded[i, :, dy : dy + h, dx : dx + w] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
        assert any(torch.equal(out[i], v) or torch.equal(out[i], v.flip(2)) for v in windows), i
        moved += not torch.equal(out[i], x[i]) and not torch.equal(out[i], x[i].flip(2))
    assert moved > 12  # the crop moves most images (a shift of 0 in both directions: 1 in (2 pad + 1)^2)
    again = make_batch(x, torch.arange(24), 0, 3, 5, True, torch.float64, ((0.0,) * 3, (1 / 255,) * 3))
    assert torch.equal(again.round().to(torch.uint8), out)
