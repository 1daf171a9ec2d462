"""The CUDA paths: gradients on the GPU against the CPU's float64, the shard writer's pinned rows, the gradients
held in memory or sketched on the GPU (outputs.gradients), the two layouts on the GPU, the images in pinned host
memory or mapped from disk (data.placement) on the GPU, and workflow jobs that ask
for a GPU using it. Marked `cuda`; skipped (cleanly, with
the reason) on a machine without a CUDA device. `benchmarks/gpu_check.sh` runs them first on a lent GPU."""

import copy
import json
import os

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, run_snakemake, write_config

from bestbatch.augment import images_to_tensor
from bestbatch.distances import batch_distances, reduce_shard
from bestbatch.formats import EpochRecords, provenance, shard_rows
from bestbatch.gradients import MemoryRows, make_sketch_sink, reduce_memory, reduce_sketch, sketch_settings
from bestbatch.models import build_model
from bestbatch.shards import ShardWriter
from bestbatch.training import (
    KeepLast,
    compare_pass,
    make_optimizer,
    parameter_layout,
    run_epoch,
    set_numerics,
    train_pass,
)

# BESTBATCH_CUDA_REHEARSAL=1 runs these tests on the CPU instead: a rehearsal of the tests themselves (and of
# gpu_check.sh --rehearse) on a machine without a GPU; it proves nothing about CUDA.
REHEARSAL = os.environ.get("BESTBATCH_CUDA_REHEARSAL") == "1"
DEVICE = "cpu" if REHEARSAL else "cuda"
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not (REHEARSAL or torch.cuda.is_available()), reason="no CUDA device (torch.cuda.is_available() is False)"
    ),
]

B, K = 16, 4


def data(device, n=B * K, seed=0):
    rng = np.random.default_rng(seed)
    images = images_to_tensor(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), device)
    return images, torch.as_tensor(rng.integers(0, 10, n), device=device), rng.permutation(n)


class Rows(KeepLast):
    """Keeps every g_k (copied to the CPU)."""

    def __init__(self):
        super().__init__()
        self.rows = {}

    def put(self, k, g):
        self.rows[k] = g.detach().double().cpu().numpy().copy()


def epoch(model, device, dtype, sink, seed=0):
    set_numerics(torch.device(device), allow_tf32=False, deterministic=True)
    net = build_model(model, seed=seed).to(device=device, dtype=dtype)
    opt = make_optimizer(net, 0.1, 0.9, 5e-4)
    images, labels, order = data(device)
    stats = run_epoch(
        net,
        opt,
        images,
        labels,
        order,
        epoch=1,
        batch_size=B,
        seed=0,
        augment=True,
        dtype=dtype,
        sink=sink,
        progress=False,
    )
    return net, stats


@pytest.mark.parametrize("model", ["tiny_mlp_bn", "small_cnn"])
def test_gradients_on_cuda_match_the_cpu_in_float64(model):
    gpu, cpu = Rows(), Rows()
    epoch(model, DEVICE, torch.float64, gpu)
    epoch(model, "cpu", torch.float64, cpu)
    for k in range(K):
        np.testing.assert_allclose(gpu.rows[k], cpu.rows[k], rtol=1e-9, atol=1e-12)
    G = np.stack([gpu.rows[k] for k in range(K)])
    want = batch_distances(np.stack([cpu.rows[k] for k in range(K)]))
    np.testing.assert_allclose(batch_distances(G)["distance"], want["distance"], rtol=1e-9)


def shard_of(path, sink_epoch, n_params, layout, meta=None):
    """The shard that sink_epoch(writer) writes through a ShardWriter, finished with the epoch's stats."""
    with ShardWriter(path, K, n_params, torch.float32) as writer:
        _, stats = sink_epoch(writer)
        writer.finish(
            layout,
            EpochRecords(
                epoch=1,
                lr=0.1,
                phase=1,
                metric="m",
                test_loss=0.0,
                test_acc=0.0,
                provenance=json.dumps(meta or {}),
                **stats,
                batch_score_min=np.zeros(K),
                batch_score_mean=np.zeros(K),
                batch_score_max=np.zeros(K),
            ),
        )


def test_the_shard_writer_on_cuda_writes_the_rows_computed(tmp_path):
    """On CUDA put() copies each row into a pinned host row with a non-blocking copy: the file must hold
    exactly the gradients computed on the device, and the float64 sum their sum."""
    kept = Rows()
    epoch("small_cnn", DEVICE, torch.float32, kept)
    net = build_model("small_cnn", seed=0).to(device=DEVICE)
    layout, n_params = parameter_layout(net)
    path = tmp_path / "epoch_1.h5"
    shard_of(
        path, lambda sink: epoch("small_cnn", DEVICE, torch.float32, sink), n_params, layout, provenance("t", DEVICE)
    )
    with shard_rows(path) as (rows, total):
        for k in range(K):
            assert np.array_equal(np.asarray(rows[k], dtype=np.float64), kept.rows[k]), k  # deterministic: bitwise
        np.testing.assert_allclose(total, np.sum([kept.rows[k] for k in range(K)], 0), rtol=1e-10, atol=1e-12)
        assert rows.shape == (K, n_params)
    result = reduce_shard(path)
    np.testing.assert_allclose(
        result["distance"], batch_distances(np.stack([kept.rows[k] for k in range(K)]))["distance"], rtol=1e-9
    )


def test_gradients_held_in_memory_on_cuda_reduce_to_the_shard_paths_bits(tmp_path):
    """outputs.gradients: memory on CUDA: each g_k copied from the device into its host row; the reduction of
    those rows is bitwise the reduction of the shard the same epoch writes on the device."""
    net = build_model("small_cnn", seed=0).to(device=DEVICE)
    layout, n_params = parameter_layout(net)
    memory = MemoryRows(K, n_params, torch.float32)
    epoch("small_cnn", DEVICE, torch.float32, memory)
    shard_of(tmp_path / "shard.h5", lambda sink: epoch("small_cnn", DEVICE, torch.float32, sink), n_params, layout)
    held, exact = reduce_memory(memory, layout, threads=2, gram=True), reduce_shard(tmp_path / "shard.h5", gram=True)
    for name in ("distance", "norm", "cosine", "layer_distance", "gram"):
        assert np.array_equal(held[name], exact[name]), name


def test_gradients_sketched_on_cuda_are_the_cpus_sketch_and_within_the_bound():
    """outputs.gradients: sketch on CUDA: each g_k sketched on the device is bitwise the CPU's sketch of the same
    row; its distances are within the stated bound of the exact ones."""
    kept = Rows()
    epoch("small_cnn", DEVICE, torch.float32, kept)
    n_params = kept.rows[0].size
    settings = sketch_settings(K, dim=2048, seed=3)
    on_device = make_sketch_sink(settings, n_params, K, torch.device(DEVICE))
    epoch("small_cnn", DEVICE, torch.float32, on_device)
    on_cpu = make_sketch_sink(settings, n_params, K, torch.device("cpu"))
    for k in range(K):
        on_cpu.put(k, torch.from_numpy(kept.rows[k]).float())
    assert np.array_equal(on_device.rows, on_cpu.rows)
    sketched = reduce_sketch(on_device, threads=2, gram=False)
    exact = batch_distances(np.stack([kept.rows[k] for k in range(K)]))
    assert np.abs(sketched["distance"] / exact["distance"] - 1).max() <= settings["eps"]


def test_the_parallel_layouts_halves_equal_the_inline_epoch_on_cuda():
    inline = Rows()
    net_a, stats_a = epoch("small_cnn", DEVICE, torch.float32, inline)
    set_numerics(torch.device(DEVICE), allow_tf32=False, deterministic=True)
    start = build_model("small_cnn", seed=0).to(device=DEVICE)
    net_b, compare = copy.deepcopy(start), Rows()
    images, labels, order = data(DEVICE)
    args = dict(epoch=1, batch_size=B, seed=0, augment=True, dtype=torch.float32, progress=False)
    stats_b = train_pass(net_b, make_optimizer(net_b, 0.1, 0.9, 5e-4), images, labels, order, **args)
    compare_pass(start, images, labels, order, **args, sink=compare)
    assert np.array_equal(stats_a["train_loss"], stats_b["train_loss"])
    for (name, a), b in zip(net_a.state_dict().items(), net_b.state_dict().values()):
        assert torch.equal(a, b), name
    for k in range(K):
        assert np.array_equal(inline.rows[k], compare.rows[k]), k


@pytest.mark.parametrize("placement", ["host", "mapped"])
def test_images_off_the_device_train_bitwise_as_on_it_on_cuda(tmp_path, placement):
    """data.placement host (pinned, copied per batch) and mapped (read ahead from the file) on the GPU: the same
    epoch, parameters and every g_k, bitwise, as the images resident on the device."""
    from bestbatch.formats import read_images, write_images
    from bestbatch.placement import Images

    resident = Rows()
    net_a, stats_a = epoch("small_cnn", DEVICE, torch.float32, resident)
    rng = np.random.default_rng(0)  # data()'s draws, as numpy HWC
    hwc = rng.integers(0, 256, (B * K, 32, 32, 3), dtype=np.uint8)
    labels = torch.as_tensor(rng.integers(0, 10, B * K), device=DEVICE)
    order = rng.permutation(B * K)
    if placement == "mapped":
        write_images(
            tmp_path / "set.h5", {"train": (hwc, np.zeros(len(hwc), np.int64)), "test": (hwc[:0], [])}, ["a"], "t"
        )
        hwc = read_images(tmp_path / "set.h5", test=False, mmap=True)[0]["train"][0]
    images = Images(hwc, DEVICE, placement)
    assert not images.resident or DEVICE == "cpu"
    set_numerics(torch.device(DEVICE), allow_tf32=False, deterministic=True)
    net_b = build_model("small_cnn", seed=0).to(device=DEVICE)
    placed = Rows()
    args = dict(epoch=1, batch_size=B, seed=0, augment=True, dtype=torch.float32, progress=False)
    stats_b = run_epoch(net_b, make_optimizer(net_b, 0.1, 0.9, 5e-4), images, labels, order, sink=placed, **args)
    assert np.array_equal(stats_a["train_loss"], stats_b["train_loss"])
    for (name, a), b in zip(net_a.state_dict().items(), net_b.state_dict().values()):
        assert torch.equal(a, b), name
    for k in range(K):
        assert np.array_equal(resident.rows[k], placed.rows[k]), k


@pytest.mark.slow
@pytest.mark.parametrize("gradients", ["shard", "memory", "sketch"])
def test_a_gpu_job_of_the_workflow_runs_on_cuda(tmp_path, gradients):
    config = dict(copy.deepcopy(TINY_CONFIG), metrics=["intensity"], seeds=[0])
    config["training"] = dict(config["training"], device="cpu" if REHEARSAL else "auto")
    config["outputs"] = dict(config["outputs"], gradients=gradients)
    cfg = write_config(tmp_path / "tiny.yaml", config)
    run = "results/tiny/tiny_mlp_bn/seed_0/intensity"
    run_snakemake(tmp_path, "--configfile", str(cfg), "--cores", "2", f"{run}/distances.h5")
    log = (tmp_path / "logs/tiny/tiny_mlp_bn/seed_0/intensity/train_epoch_1.log").read_text()
    assert f"device {DEVICE}" in log, log[-2000:]
