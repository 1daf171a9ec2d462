"""Images past CIFAR (.test/config/images64.yaml): a study of 64 x 64 images end to end, on a torchvision network
named by its import path, with the training images mapped from disk (data.placement: mapped); every placement
bitwise the same (the whole study on the device against the mapped one; epoch 1 in each placement); the built-in
networks refused at 64 px; and the jobs' requests following the placement."""

import copy
import json
import shutil

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, run_snakemake, write_config
from test_slurm import planned_jobs

from bestbatch.data import load_dataset
from bestbatch.formats import load_checkpoint
from bestbatch.placement import Images, batches_of
from bestbatch.resources import Study, data_disk_mb, data_placement, job_resources, probe_figures

CONFIG = yaml.safe_load((REPO / ".test" / "config" / "images64.yaml").read_text())
MODEL = "torchvision.models.shufflenet_v2_x0_5"  # the path-safe name of torchvision.models:shufflenet_v2_x0_5


def config_in(work, images=None, **data):
    """The test config in `work`, reading a copy of the committed 64 px image folder (.test/images64) in `work`, or
    the folder `images`."""
    if images is None and not (work / "images").exists():
        shutil.copytree(REPO / ".test" / "images64", work / "images")
    config = copy.deepcopy(CONFIG)
    config["data"] = dict(config["data"], root=str(images or work / "images"), **data)
    return write_config(work / "images64.yaml", config)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    work = tmp_path_factory.mktemp("images64")
    cfg = config_in(work)
    run_snakemake(work, "--configfile", str(cfg), "--cores", "2")
    return work, cfg


def h5_values(path):
    """Every dataset and attribute of an HDF5 file."""
    out = {}
    with h5py.File(path, "r") as f:
        out.update({f"@{k}": v for k, v in f.attrs.items()})
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.slow
def test_the_study_on_the_device_is_bitwise_the_mapped_study(study, tmp_path):
    """The same study with data.placement: device (on a CPU, host is the same code): every distance matrix, its
    provenance included, every checkpoint and the selection's curves, bitwise those of the mapped study."""
    mapped = study[0] / "results" / "images64"
    # the same image folder (data.root is part of the results' hash, recorded in every provenance)
    cfg = config_in(tmp_path, images=study[0] / "images", placement="device")
    run_snakemake(tmp_path, "--configfile", str(cfg), "--cores", "2")
    device = tmp_path / "results" / "images64"
    log = (tmp_path / "logs" / "images64" / MODEL / "seed_0" / "intensity" / "train_epoch_1.log").read_text()
    assert "data.placement" not in log  # the device placement is every earlier study's path, unannounced
    files = sorted(p.relative_to(mapped) for p in mapped.rglob("*") if p.suffix in (".h5", ".pt"))
    assert len([f for f in files if f.name == "distances.h5"]) == 2 and any("selection" in str(f) for f in files)
    for rel in files:
        if rel.suffix == ".pt":
            assert (mapped / rel).read_bytes() == (device / rel).read_bytes(), rel
            continue
        a, b = h5_values(mapped / rel), h5_values(device / rel)
        assert a.keys() == b.keys(), rel
        for key in a:
            assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), (rel, key)


@pytest.mark.slow
def test_a_64_px_study_runs_end_to_end(study):
    work, _ = study
    r = work / "results" / "images64"
    for page in ("index.html", "claims.html", "selection.html"):
        assert (r / page).stat().st_size > 2_000, page
    summary = json.loads((r / "dataset.json").read_text())
    assert summary["image_shape"] == [64, 64, 3] and summary["n_train"] == 72 and summary["n_test"] == 24
    # decoded into an image set (any size), not CIFAR-10's 32 x 32 pickles
    assert sorted(p.name for p in (r / "data" / "image-set").iterdir()) == ["test.h5", "train.h5"]
    assert not (r / "data" / "cifar-10-batches-py").exists()
    ds = load_dataset(r / "data", "imageset")
    assert ds.train_images.shape == (72, 64, 64, 3) and ds.test_images.shape == (24, 64, 64, 3)
    # the network was probed at the study's size, and its jobs were sized from that probe
    probe = json.loads((r / "models" / MODEL / "cost.json").read_text())
    assert probe["image_shape"] == [64, 64]
    for metric in ("intensity", "edges"):
        with h5py.File(r / MODEL / "seed_0" / metric / "distances.h5", "r") as f:
            assert f["distance"].shape == (2, 72 // 16) and np.isfinite(f["distance"][:]).all()
    log = (work / "logs" / "images64" / MODEL / "seed_0" / "intensity" / "train_epoch_1.log").read_text()
    assert "data.placement mapped" in log


@pytest.mark.slow
def test_every_placement_trains_bitwise_the_same(study, tmp_path):
    """Epoch 1 of the study's run, recomputed from its own inputs with the images on the device, in host memory
    and mapped: the same checkpoint (parameters and optimizer state) and the same gradient shard, bitwise, and
    the same parameters as the study's own mapped job."""
    from bestbatch.steps.training import train_epoch

    work, _ = study
    r = work / "results" / "images64"
    run = r / MODEL / "seed_0" / "intensity"
    start = load_checkpoint(r / MODEL / "seed_0" / "checkpoints" / "init.pt")
    t = CONFIG["training"]
    job = dict(
        data_root=r / "data",
        data_format="imageset",
        metric="intensity",
        epoch=1,
        model=start.meta["model"],
        num_classes=3,
        seed=0,
        config_hash=start.meta["config_hash"],
        normalization="train",
        progress=False,
        granted_threads=1,
        **{k: t[k] for k in ("batch_size", "lr", "lr_milestones", "lr_gamma", "momentum", "weight_decay")},
        **{k: t[k] for k in ("augment", "dtype", "device", "threads")},
        cuda_tf32=False,
        cuda_deterministic=True,
    )
    out = {}
    for placement in ("device", "host", "mapped"):
        folder = tmp_path / placement
        folder.mkdir()
        train_epoch(
            r / "orderings" / "intensity.h5",
            r / MODEL / "seed_0" / "checkpoints" / "init.pt",
            folder / "e1.pt",
            out_shard=folder / "shard.h5",
            placement=placement,
            **job,
        )
        with h5py.File(folder / "shard.h5", "r") as f:
            rows = f["gradients"][:]
        out[placement] = (load_checkpoint(folder / "e1.pt"), rows)
    study_state = load_checkpoint(run / "checkpoints" / "epoch_1.pt")
    for placement, (state, rows) in out.items():
        for name, value in state.model.items():
            assert torch.equal(value, out["device"][0].model[name]), (placement, name)
            assert torch.equal(value, study_state.model[name]), (placement, name)
        assert rows.shape[0] == 72 // 16 and np.array_equal(rows, out["device"][1]), placement
        momenta = [s["momentum_buffer"] for s in state.optimizer["state"].values()]
        device_momenta = [s["momentum_buffer"] for s in out["device"][0].optimizer["state"].values()]
        assert all(torch.equal(a, b) for a, b in zip(momenta, device_momenta)), placement


def test_mapped_images_read_ahead_in_sequence_and_on_demand(tmp_path):
    """placement.Images gives the very bytes of the resident tensor in every placement: the fixed batches read
    ahead in sequence, a batch asked for out of sequence (the read-ahead stops, the batch is read on demand),
    and a slice (the test split)."""
    from bestbatch.formats import write_images

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 24, 20, 3), dtype=np.uint8)
    write_images(
        tmp_path / "set.h5",
        {"train": (x, np.zeros(300, np.int64)), "test": (x[:0], np.zeros(0, np.int64))},
        ["a"],
        "test",
    )
    from bestbatch.formats import read_images

    mapped = read_images(tmp_path / "set.h5", test=False, mmap=True)[0]["train"][0]
    assert not mapped.flags.owndata and not mapped.flags.writeable  # a read-only view of the mapped file
    want = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    order = rng.permutation(300)
    for placement, images in (("device", x), ("host", x), ("mapped", mapped)):
        im = Images(images, "cpu", placement)
        im.expect(batches_of(order, 32))
        for k in range(300 // 32):
            idx = torch.as_tensor(order[k * 32 : (k + 1) * 32])
            assert torch.equal(im[idx], want[idx]), (placement, k)
        im.expect(batches_of(order, 32))
        for k in (3, 0, 1):  # out of sequence from the first
            idx = torch.as_tensor(order[k * 32 : (k + 1) * 32])
            assert torch.equal(im[idx], want[idx]), (placement, k)
        assert torch.equal(im[7:45], want[7:45]) and len(im) == 300
        im.close()
    assert not Images(mapped, "cpu", "mapped").resident and Images(x, "cpu", "host").resident


def test_a_failing_read_ahead_raises_where_the_batch_is_asked_for():
    class Broken(np.ndarray):
        def __getitem__(self, key):
            if isinstance(key, np.ndarray):
                raise OSError("the disk went away")
            return super().__getitem__(key)

    x = np.zeros((64, 8, 8, 3), np.uint8).view(Broken)
    im = Images(x, "cpu", "mapped")
    im.expect(batches_of(np.arange(64), 16))
    with pytest.raises(OSError, match="the disk went away"):
        im[torch.arange(16)]


@pytest.mark.slow
def test_the_built_in_networks_are_refused_at_64_px(tmp_path):
    config = copy.deepcopy(CONFIG)
    config["models"] = ["tiny_mlp", "resnet18"]
    config["data"]["root"] = str(REPO / ".test" / "images64")
    cfg = write_config(tmp_path / "builtin.yaml", config)
    proc = run_snakemake(tmp_path, "--configfile", str(cfg), "-n", check=False)
    message = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "models[0]: the built-in tiny_mlp is made for 32 x 32 images" in message
    assert "this study's are 64 x 64 (data.image_size: 64)" in message and "torchvision.models:resnet18" in message


@pytest.mark.slow
def test_the_training_jobs_requests_follow_the_placement(study):
    """The SLURM plan of the study's training jobs: mapped asks for the batches in memory and the image set's disk,
    device for the images resident, each what the cost model says for the probed network at 64 px."""
    work, _ = study
    probe = probe_figures(json.loads((work / "results" / "images64" / "models" / MODEL / "cost.json").read_text()))
    t = CONFIG["training"]
    requests = {}
    for placement in ("mapped", "device"):
        cfg = config_in(work, placement=placement)
        out = run_snakemake(
            work, "--profile", str(REPO / "profiles" / "slurm"), "--configfile", str(cfg), "-n", "--forceall"
        )
        jobs = [j for j in planned_jobs(out.stdout + out.stderr) if j["rule"] == "train_epoch"]
        assert len(jobs) == 2 * 2  # two metrics, two epochs
        s = Study(MODEL, 72, 24, t["batch_size"], 4, t["threads"], False, n_classes=3, probe=probe)
        s = Study(**{**s.__dict__, "image_shape": (64, 64), "placement": placement})
        want = job_resources(s)["train_epoch"]
        for job in jobs:
            assert job["resources"]["mem_mb"] == want["mem_mb"], placement
            # device: no request of ours, Snakemake's default (twice the inputs' size, at least 1,000 MB)
            assert job["resources"]["disk_mb"] == (data_disk_mb(s) if placement == "mapped" else 1000), placement
        requests[placement] = jobs[0]["resources"]
    assert data_disk_mb(s) == 0 and requests["mapped"]["mem_mb"] <= requests["device"]["mem_mb"]


def test_auto_placement_follows_the_data_size():
    """data.placement: auto on the cost model's figures: CIFAR on the device; ImageNet at 224 px (1.28M images,
    193 GB of uint8) on a 16 GB GPU with a 64 GB job limit mapped, with a 256 GB limit in pinned host memory; a
    source that cannot be mapped stays in host memory whatever its size."""

    def study(n_train, n_test, size, gpu):  # a ResNet-50-like network's probe: P, activation MB, ms per image
        return Study("net", n_train, n_test, 256, 4, 8, gpu, probe=(25_557_032, 100.0, 3.0), image_shape=(size, size))

    assert data_placement(study(50_000, 10_000, 32, True), can_map=True) == "device"
    assert data_placement(study(50_000, 10_000, 32, False), can_map=True) == "device"
    imagenet = study(1_281_167, 50_000, 224, True)
    assert data_placement(imagenet, can_map=True) == "mapped"
    assert data_placement(imagenet, max_job_memory_gb=1024, can_map=True) == "host"
    assert data_placement(imagenet, gpu_memory_gb=1000, max_job_memory_gb=1024, can_map=True) == "device"
    assert data_placement(imagenet, can_map=False) == "host"
    assert data_placement(imagenet, "device", can_map=True) == "device"
    cpu = study(1_281_167, 50_000, 224, False)
    assert data_placement(cpu, can_map=True) == "mapped" and data_placement(cpu, can_map=False) == "device"
    # the mapped job holds a few batches, not the set; the disk request covers the image set
    mapped = Study(**{**imagenet.__dict__, "placement": "mapped"})
    resident = Study(**{**imagenet.__dict__, "placement": "host"})
    mapped_mb, resident_mb = (job_resources(s)["train_epoch"]["mem_mb"] for s in (mapped, resident))
    assert mapped_mb < 20_000 < 500_000 < resident_mb
    assert data_disk_mb(mapped) >= 193_000 and data_disk_mb(resident) == 0


@pytest.mark.parametrize("size", [64, "native"])
def test_an_image_folder_decodes_into_an_image_set_at_its_size(tmp_path, size):
    """The image set the workflow writes (one file per split, decoded image by image into the file's mapped
    bytes) holds what decode_imagefolder gives, and the training file the statistics channel_statistics gives."""
    from bestbatch.data import channel_statistics, decode_imagefolder, write_imagefolder_cache

    images = REPO / ".test" / "images"  # 32 x 32: native keeps them so, 64 resizes them
    for split in ("train", "test"):
        write_imagefolder_cache(images, tmp_path, image_size=size, split=split, format="imageset")
    ds = load_dataset(tmp_path, "imageset")
    want = decode_imagefolder(images, image_size=size)
    for got, expected in zip((ds.train_images, ds.train_labels, ds.test_images, ds.test_labels), want[:4]):
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert ds.train_images.shape[1:3] == ((64, 64) if size == 64 else (32, 32)) and ds.classes == tuple(want[4])
    assert ds.channel_stats == channel_statistics(want[0])
    assert load_dataset(tmp_path, "imageset", test=False, mmap=True).test_images.shape == (
        0,
        *ds.train_images.shape[1:],
    )


def test_an_image_that_cannot_be_decoded_leaves_no_image_set(tmp_path):
    from bestbatch.data import DatasetError, write_imagefolder_cache

    folder = tmp_path / "images"
    shutil.copytree(REPO / ".test" / "images", folder)
    (folder / "train" / "reds" / "005.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"train/reds/005.png: cannot be read as an image"):
        write_imagefolder_cache(folder, tmp_path / "out", image_size=64, split="train", format="imageset")
    assert list((tmp_path / "out" / "image-set").iterdir()) == []


def test_an_image_set_whose_splits_disagree_is_refused(tmp_path):
    from bestbatch.data import DatasetError, write_imagefolder_cache

    write_imagefolder_cache(REPO / ".test" / "images", tmp_path, image_size=64, split="train", format="imageset")
    other = tmp_path / "other"
    write_imagefolder_cache(REPO / ".test" / "images", other, image_size=48, split="test", format="imageset")
    shutil.copy(other / "image-set" / "test.h5", tmp_path / "image-set" / "test.h5")
    with pytest.raises(DatasetError, match=r"test.h5 .* does not match train.h5 .*delete both"):
        load_dataset(tmp_path, "imageset")
    (tmp_path / "image-set" / "test.h5").unlink()
    with pytest.raises(DatasetError, match=r"missing .*test.h5: the image folder's decoded copy"):
        load_dataset(tmp_path, "imageset")
