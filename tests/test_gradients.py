"""Algorithm 1 against a float64 brute-force reference, on tiny models with and without BatchNorm; the
reduction per parameter tensor, and the per-epoch gradient statistics."""

import copy

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bestbatch.augment import images_to_tensor, make_batch
from bestbatch.distances import BLOCK, batch_distances, gradient_diversity, noise_scale, reduce_shard
from bestbatch.formats import FORMAT_VERSION, EpochRecords, finish_shard
from bestbatch.models import build_model
from bestbatch.shards import ShardWriter
from bestbatch.training import DTYPES, make_optimizer, parameter_layout, run_epoch

N, BS = 96, 16  # K = 6 fixed batches


def schedule(dtype):
    return dict(lr=0.1, momentum=0.9, weight_decay=5e-4, seed=7, augment=True, batch_size=BS, dtype=DTYPES[dtype])


def records(k_rows, epoch=1, train_loss=None):
    """An epoch's records with placeholder values, for shards written by hand."""
    zeros = np.zeros(k_rows)
    return EpochRecords(
        epoch=epoch,
        lr=0.1,
        phase=1,
        metric="test",
        test_loss=0.0,
        test_acc=0.0,
        provenance="{}",
        train_loss=zeros if train_loss is None else train_loss,
        train_acc=zeros,
        batch_score_min=zeros,
        batch_score_mean=zeros,
        batch_score_max=zeros,
    )


def write_shard(path, g, layout=None, **kwargs):
    """g (K, P) float32 written row by row as a shard, with its float64 sum (layout: one tensor "w")."""
    with ShardWriter(path, g.shape[0], g.shape[1], torch.float32, **kwargs) as writer:
        for k in range(g.shape[0]):
            writer.put(k, torch.from_numpy(g[k]))
        writer.finish(
            layout or [("w", (g.shape[1],), 0)], records(g.shape[0]), gradient_sum=g.astype(np.float64).sum(0)
        )
    return writer


def flat_layout(sizes):
    """[(name, shape, offset)] of tensors of these sizes, one after the other."""
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    return [(f"t{i}", (int(n),), int(o)) for i, (n, o) in enumerate(zip(sizes, offsets))]


# tensors that start and end inside a block, one that spans two block boundaries, an empty one, one of a
# single value, and a last one that ends the vector mid-block
SIZES = [7, BLOCK - 100, 3, 0, 1, 2 * BLOCK + 17, 50_000, 1, 99_990]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=N)
    order = rng.permutation(N)
    return images_to_tensor(images, "cpu"), torch.as_tensor(labels), torch.as_tensor(order)


def reference_gradients(net0, images, labels, order, t, epoch):
    """Each g_k from a fresh copy of the epoch-start net: independent of every other batch."""
    rows = []
    for k in range(N // BS):
        net = copy.deepcopy(net0).double().train()
        idx = order[k * BS : (k + 1) * BS]
        x = make_batch(images, idx, t["seed"], epoch, k, t["augment"], torch.float64)
        loss = F.cross_entropy(net(x), labels[idx])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(net.parameters()))]).numpy())
    return np.stack(rows)


class Keeping:
    """A sink around the shard writer that also keeps a copy of every g_k."""

    def __init__(self, writer):
        self.writer, self.rows = writer, []

    def row(self, k, device, dtype, numel):
        return self.writer.row(k, device, dtype, numel)

    def total(self, device, numel):
        return self.writer.total(device, numel)

    def put(self, k, g):
        self.rows.append(g.clone())
        self.writer.put(k, g)


def pipeline(net0, images, labels, order, t, epoch, tmp_path):
    net = copy.deepcopy(net0).to(t["dtype"])
    opt = make_optimizer(net, t["lr"], t["momentum"], t["weight_decay"])
    layout, n_params = parameter_layout(net)
    with ShardWriter(tmp_path / "shard.h5", N // BS, n_params, t["dtype"]) as writer:
        sink = Keeping(writer)
        stats = run_epoch(
            net,
            opt,
            images,
            labels,
            order,
            epoch=epoch,
            batch_size=BS,
            seed=t["seed"],
            augment=t["augment"],
            dtype=t["dtype"],
            sink=sink,
            progress=False,
        )
        writer.finish(layout, records(N // BS, epoch, stats["train_loss"]))
    return torch.stack(sink.rows).double().numpy(), reduce_shard(tmp_path / "shard.h5"), net


def rel(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


@pytest.mark.parametrize("model", ["tiny_mlp", "tiny_mlp_bn", "small_cnn"])
def test_float64_pipeline_matches_brute_force(model, data, tmp_path):
    net0 = build_model(model, seed=1).double()
    t = schedule("float64")
    ref = reference_gradients(net0, *data, t, epoch=2)
    grads, reduced, _ = pipeline(net0, *data, t, 2, tmp_path)
    layout, _ = parameter_layout(net0)
    expected = batch_distances(ref, [offset for _, _, offset in layout])
    assert rel(grads, ref) < 1e-6
    for name in ("distance", "norm", "cosine"):
        assert rel(reduced[name], expected[name]) < 1e-6, name
    assert abs(reduced["full_norm"] - expected["full_norm"]) / expected["full_norm"] < 1e-6
    # the check has teeth: distances differ between batches by far more than the tolerance
    assert np.ptp(expected["distance"]) / expected["distance"].max() > 1e-3
    # per parameter tensor, in the network's order: each (batch, tensor) to 1e-6 of its own size
    assert list(reduced["layer_name"]) == [name for name, _, _ in layout]
    want = expected["layer_distance"]
    assert reduced["layer_distance"].shape == want.shape == (N // BS, len(layout))
    np.testing.assert_allclose(reduced["layer_distance"], want, rtol=1e-6, atol=1e-12 * want.max())
    assert len(layout) > 1 and np.ptp(want.mean(0)) / want.max() > 1e-3  # the tensors do differ


@pytest.mark.parametrize("model", ["tiny_mlp", "tiny_mlp_bn"])
def test_float32_pipeline_matches_to_float32_rounding(model, data, tmp_path):
    net0 = build_model(model, seed=1)
    t = schedule("float32")
    ref = reference_gradients(net0, *data, t, epoch=1)
    grads, reduced, _ = pipeline(net0, *data, t, 1, tmp_path)
    expected = batch_distances(ref)
    assert rel(grads, ref) < 1e-5
    assert rel(reduced["distance"], expected["distance"]) < 1e-5
    assert rel(reduced["distance"], expected["distance"]) > 0  # float32 really was float32


def test_unzeroed_gradients_fail_the_reference(data, tmp_path, monkeypatch):
    """The paper's pseudo-code never zeroes net_compare's grads: g_k would be g_1 + ... + g_k."""
    net0 = build_model("tiny_mlp_bn", seed=1).double()
    t = schedule("float64")
    ref = reference_gradients(net0, *data, t, epoch=1)
    monkeypatch.setattr(torch.nn.Module, "zero_grad", lambda self, set_to_none=True: None)
    grads, reduced, _ = pipeline(net0, *data, t, 1, tmp_path)
    assert rel(grads[0], ref[0]) < 1e-6  # the first batch is still right ...
    assert rel(grads, ref) > 0.1  # ... the rest are not
    assert np.allclose(grads, np.cumsum(ref, 0), rtol=1e-6, atol=1e-12)
    assert rel(reduced["distance"], batch_distances(ref)["distance"]) > 0.1


def test_net_normal_is_plain_training_and_compare_never_leaks(data, tmp_path):
    """net_normal's parameters and BatchNorm statistics equal a plain training loop's, bit for bit."""
    images, labels, order = data
    net0 = build_model("tiny_mlp_bn", seed=1)
    t = schedule("float32")
    _, _, trained = pipeline(net0, images, labels, order, t, 3, tmp_path)
    plain = copy.deepcopy(net0).train()
    opt = make_optimizer(plain, t["lr"], t["momentum"], t["weight_decay"])
    for k in range(N // BS):
        idx = order[k * BS : (k + 1) * BS]
        opt.zero_grad()
        F.cross_entropy(plain(make_batch(images, idx, t["seed"], 3, k, True, torch.float32)), labels[idx]).backward()
        opt.step()
    for (name, a), b in zip(trained.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), name


def test_reduction_streams_blocks_exactly(tmp_path):
    """Rows longer than one block, float32 on disk, against numpy in float64."""
    rng = np.random.default_rng(1)
    g = (rng.standard_normal((5, 2_500_001)) * rng.uniform(0.1, 10, (5, 1))).astype(np.float32)
    write_shard(tmp_path / "s.h5", g)
    got, want = reduce_shard(tmp_path / "s.h5"), batch_distances(g)
    for name in ("distance", "norm", "cosine"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12)


def test_aborted_shard_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with ShardWriter(tmp_path / "s.h5", 3, 10, torch.float32) as writer:
            writer.put(0, torch.ones(10))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_shard_left_without_finish_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="closed without finish"):
        with ShardWriter(tmp_path / "s.h5", 1, 10, torch.float32) as writer:
            writer.put(0, torch.ones(10))
    assert list(tmp_path.iterdir()) == []


def test_incomplete_shard_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="1 of 3 rows"):
        with ShardWriter(tmp_path / "s.h5", 3, 10, torch.float32) as writer:
            writer.put(0, torch.ones(10))
            writer.finish([("w", (10,), 0)], records(3), gradient_sum=np.zeros(10))
    assert list(tmp_path.iterdir()) == []


def test_disk_check_refuses_with_the_numbers(tmp_path):
    from bestbatch.shards import shard_bytes
    from bestbatch.steps.training import check_disk

    need = shard_bytes(195, 34_236_634, torch.float32)
    assert need == 195 * 34_236_634 * 4 + 34_236_634 * 8  # 27.0 GB per DPN92 epoch: the rows and their sum
    with pytest.raises(OSError, match=r"needs 26.98 GB .* has 1.00 GB free"):
        check_disk(tmp_path / "shards" / "epoch_1.h5", need, free_bytes=10**9)
    check_disk(tmp_path / "shards" / "epoch_1.h5", need, free_bytes=10**11)


def test_crop_flip_is_a_seeded_crop_of_the_padded_image():
    """Every augmented image is a 32x32 window of the zero-padded original, maybe mirrored; seed-determined."""
    from bestbatch.augment import crop_flip, normalize

    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = crop_flip(x, 0, 3, 5)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    flipped = 0
    for i in range(64):
        windows = [padded[i, :, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)]
        plain = any(torch.equal(out[i], w) for w in windows)
        mirrored = any(torch.equal(out[i], w.flip(2)) for w in windows)
        assert plain or mirrored
        flipped += mirrored and not plain
    assert 10 < flipped < 54
    assert torch.equal(out, crop_flip(x, 0, 3, 5)) and not torch.equal(out, crop_flip(x, 0, 3, 6))
    mean = torch.tensor([0.4914, 0.4822, 0.4465], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.2023, 0.1994, 0.2010], dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize(x, torch.float64), (x.double() / 255 - mean) / std, rtol=1e-12, atol=1e-12)


def test_same_seed_same_bits_other_seed_other_results(data, tmp_path):
    """Determinism on CPU: the same seed reproduces every gradient bit for bit; another seed does not."""
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        t = dict(schedule("float32"), seed=seed)
        (tmp_path / name).mkdir()
        grads, _, _ = pipeline(build_model("tiny_mlp_bn", seed=seed), *data, t, 1, tmp_path / name)
        runs[name] = grads
    assert np.array_equal(runs["a"], runs["b"])
    assert not np.allclose(runs["a"], runs["c"])


def test_reduction_is_exact_when_batches_nearly_agree(tmp_path):
    """Late in training g_k ~ g_bar: ||g_k||^2 - 2 g_k.g_bar + ||g_bar||^2 would cancel to noise; ours must not."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal(300_001) * 50
    g = (base + 1e-3 * rng.standard_normal((4, base.size))).astype(np.float32)
    write_shard(tmp_path / "s.h5", g)
    want = batch_distances(g)
    assert want["distance"].max() < 1e-4 * want["norm"].min()  # the hard case: distances far below the norms
    np.testing.assert_allclose(reduce_shard(tmp_path / "s.h5")["distance"], want["distance"], rtol=1e-12)


def chunked_shard(path, g, layout):
    """A chunked, compressed shard (not memory-mappable), as another HDF5 writer could make it."""
    with h5py.File(path, "w") as f:
        f.create_dataset("gradients", data=g, chunks=(1, 65_536), compression="gzip", compression_opts=1)
        f["gradient_sum"] = g.astype(np.float64).sum(0)
        finish_shard(f, layout, records(g.shape[0]))


def test_reduction_reads_chunked_shards_too(tmp_path):
    """A chunked or compressed shard (not memory-mappable) goes through h5py and gives the same distances,
    per parameter tensor too, as the contiguous (memory-mapped) shard of the same rows."""
    rng = np.random.default_rng(3)
    layout = flat_layout(SIZES)
    g = (rng.standard_normal((6, sum(SIZES))) * np.repeat(rng.uniform(0.1, 10, len(SIZES)), SIZES)).astype(np.float32)
    chunked_shard(tmp_path / "c.h5", g, layout)
    write_shard(tmp_path / "m.h5", g, layout)
    got, mapped = reduce_shard(tmp_path / "c.h5"), reduce_shard(tmp_path / "m.h5")
    want = batch_distances(g, [offset for _, _, offset in layout])
    for name in ("distance", "norm", "cosine", "layer_distance"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(got[name], mapped[name], rtol=1e-14, atol=0, err_msg=name)
    assert list(got["layer_name"]) == list(mapped["layer_name"]) == [n for n, _, _ in layout]
    assert got["layer_distance"].shape == (6, len(SIZES)) and np.all(got["layer_distance"][:, 3] == 0)  # empty


def test_layer_distances_add_up_to_the_distance(tmp_path):
    """sum_l layer_distance^2 = distance^2 to float64 rounding, with tensor boundaries inside blocks and
    tensors across blocks; and with no layout given, one tensor that is the distance itself."""
    from bestbatch.distances import reduce_rows

    rng = np.random.default_rng(5)
    layout = flat_layout(SIZES)
    g = (rng.standard_normal((5, sum(SIZES))) * np.repeat(rng.uniform(0.01, 100, len(SIZES)), SIZES)).astype(np.float32)
    write_shard(tmp_path / "s.h5", g, layout)
    got = reduce_shard(tmp_path / "s.h5")
    np.testing.assert_allclose((got["layer_distance"] ** 2).sum(1), got["distance"] ** 2, rtol=1e-13, atol=0)
    want = batch_distances(g, [offset for _, _, offset in layout])
    np.testing.assert_allclose((want["layer_distance"] ** 2).sum(1), want["distance"] ** 2, rtol=1e-13)
    whole = reduce_rows(g, g.astype(np.float64).sum(0))
    assert whole["layer_distance"].shape == (5, 1)
    np.testing.assert_allclose(whole["layer_distance"][:, 0], whole["distance"], rtol=1e-15)
    with pytest.raises(ValueError, match="layer offsets must start at 0"):
        reduce_rows(g, g.astype(np.float64).sum(0), layer_offsets=[5, 10])


@pytest.mark.parametrize("store", ["contiguous", "chunked"])
def test_a_shard_of_one_block_is_reduced_by_numpy_as_by_the_compiled_passes(tmp_path, store):
    """A shard of at most BLOCK parameters (the demo's) is reduced by numpy, KERNEL_ROWS rows at a time: the
    same numbers as the compiled passes and the float64 brute force, per tensor too (boundaries, an empty
    tensor, a last chunk of rows shorter than the others), from a memory map or through h5py."""
    from bestbatch.distances import KERNEL_ROWS

    rng = np.random.default_rng(11)
    sizes = [7, 3, 0, 1, 50_000, 1, 99_990]
    layout = flat_layout(sizes)
    k = 2 * KERNEL_ROWS + 5
    g = (rng.standard_normal((k, sum(sizes))) * np.repeat(rng.uniform(0.01, 100, len(sizes)), sizes)).astype(np.float32)
    (chunked_shard if store == "chunked" else write_shard)(tmp_path / "s.h5", g, layout)
    blocks = []
    auto = reduce_shard(tmp_path / "s.h5", progress=blocks.append)
    numpy_, compiled = (reduce_shard(tmp_path / "s.h5", kernel=kernel) for kernel in ("numpy", "compiled"))
    assert blocks == [1]
    want = batch_distances(g, [offset for _, _, offset in layout])
    for name in ("distance", "norm", "cosine", "full_norm", "layer_distance"):
        assert np.array_equal(auto[name], numpy_[name]), name  # auto takes numpy for one block
        np.testing.assert_allclose(numpy_[name], compiled[name], rtol=1e-13, atol=0, err_msg=name)
        np.testing.assert_allclose(numpy_[name], want[name], rtol=1e-12, atol=0, err_msg=name)
    assert np.all(numpy_["layer_distance"][:, 2] == 0)  # the empty tensor
    np.testing.assert_allclose((numpy_["layer_distance"] ** 2).sum(1), numpy_["distance"] ** 2, rtol=1e-15, atol=0)


def test_a_reduction_of_one_block_never_imports_numba(tmp_path):
    """What makes a demo's reduce_epoch job light: numba (its import and its compiled passes' cache, about
    0.4 s a job) is loaded only for shards of more than one block; a bad kernel name or numpy on more
    than one block is refused."""
    import subprocess
    import sys

    from conftest import REPO

    from bestbatch.distances import reduce_rows

    rng = np.random.default_rng(12)
    write_shard(tmp_path / "small.h5", rng.standard_normal((4, 1000)).astype(np.float32))
    write_shard(tmp_path / "large.h5", rng.standard_normal((2, BLOCK + 1)).astype(np.float32))
    probe = (
        "import sys; from bestbatch.distances import reduce_shard; reduce_shard(sys.argv[1]); "
        "print('numba' in sys.modules)"
    )
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    loaded = [
        subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path / name)], capture_output=True, text=True, env=env, check=True
        ).stdout.strip()
        for name in ("small.h5", "large.h5")
    ]
    assert loaded == ["False", "True"]
    g = rng.standard_normal((2, BLOCK + 1)).astype(np.float32)
    with pytest.raises(ValueError, match="one block"):
        reduce_rows(g, g.astype(np.float64).sum(0), kernel="numpy")
    with pytest.raises(ValueError, match="kernel must be auto, numpy or compiled"):
        reduce_rows(g, g.astype(np.float64).sum(0), kernel="numba")


def test_reduction_in_threads_gives_the_same_bits_and_reports_blocks_in_order(tmp_path):
    """Blocks reduced in parallel are added up in block order: the same bits as one thread, per tensor too,
    matching the float64 brute force, with progress called once per block, in order."""
    rng = np.random.default_rng(6)
    layout = flat_layout(SIZES)
    g = (rng.standard_normal((5, sum(SIZES))) * np.repeat(rng.uniform(0.01, 100, len(SIZES)), SIZES)).astype(np.float32)
    write_shard(tmp_path / "s.h5", g, layout)
    n_blocks = -(-sum(SIZES) // BLOCK)
    one = reduce_shard(tmp_path / "s.h5", threads=1)
    want = batch_distances(g, [offset for _, _, offset in layout])
    for name in ("distance", "norm", "cosine", "layer_distance"):
        np.testing.assert_allclose(one[name], want[name], rtol=1e-12, err_msg=name)
    for threads in (2, 3, n_blocks + 1, None):
        blocks = []
        got = reduce_shard(tmp_path / "s.h5", progress=blocks.append, threads=threads)
        assert blocks == list(range(1, n_blocks + 1))
        for name in ("distance", "norm", "cosine", "full_norm", "layer_distance"):
            assert np.array_equal(got[name], one[name]), (threads, name)


def test_noise_scale_and_gradient_diversity_match_brute_force():
    """B_simple and the gradient diversity from the stored distances and norms, against their definitions
    computed directly on random gradients, one value per epoch."""
    rng = np.random.default_rng(6)
    epochs, k_rows, n, b = 4, 9, 3001, 32
    g = rng.standard_normal((epochs, k_rows, n)) * rng.uniform(0.1, 3, (epochs, 1, 1)) + rng.standard_normal(n)
    stored = [batch_distances(e) for e in g]
    distance, norm = np.stack([d["distance"] for d in stored]), np.stack([d["norm"] for d in stored])
    full_norm = np.array([d["full_norm"] for d in stored])
    g_bar = g.mean(1, keepdims=True)
    want_noise = b * ((g - g_bar) ** 2).sum(2).mean(1) / (g_bar**2).sum((1, 2))
    want_diversity = (g**2).sum((1, 2)) / (g.sum(1) ** 2).sum(1)
    np.testing.assert_allclose(noise_scale(distance, full_norm, b), want_noise, rtol=1e-12)
    np.testing.assert_allclose(gradient_diversity(norm, full_norm), want_diversity, rtol=1e-12)
    np.testing.assert_allclose(gradient_diversity(norm[0], full_norm[0]), want_diversity[0], rtol=1e-12)
    # the two are tied: diversity = (1 + B_simple / B) / K; and equal gradients have diversity 1/K
    np.testing.assert_allclose(want_diversity, (1 + want_noise / b) / k_rows, rtol=1e-12)
    same = batch_distances(np.ones((k_rows, 10)))
    assert gradient_diversity(same["norm"], same["full_norm"]) == pytest.approx(1 / k_rows)
    assert noise_scale(same["distance"], same["full_norm"], b) == 0


def test_gather_stores_layers_and_gradient_statistics(tmp_path):
    """Per-epoch files from real shards, gathered: E x K x L layer distances, the tensors' names, and per epoch
    B_simple and the gradient diversity from the stored distances, with the batch size as an attribute."""
    from bestbatch.formats import read_epoch, read_matrix
    from bestbatch.steps.distances import gather_distances, reduce_epoch

    rng = np.random.default_rng(7)
    sizes = [10, 3, 40, 1]
    layout = flat_layout(sizes)
    grads, paths = [], []
    for epoch in (1, 2, 3):
        g = (rng.standard_normal((4, sum(sizes))) / epoch).astype(np.float32)
        with ShardWriter(tmp_path / f"s{epoch}.h5", 4, sum(sizes), torch.float32) as writer:
            for k in range(4):
                writer.put(k, torch.from_numpy(g[k]))
            writer.finish(layout, records(4, epoch), gradient_sum=g.astype(np.float64).sum(0))
        paths.append(tmp_path / f"e{epoch}.h5")
        reduce_epoch(tmp_path / f"s{epoch}.h5", paths[-1])
        grads.append(g.astype(np.float64))
    distances, _ = read_epoch(paths[0])
    assert distances["layer_distance"].shape == (4, 4) and list(distances["layer_name"]) == ["t0", "t1", "t2", "t3"]
    gather_distances(paths[::-1], tmp_path / "m.h5", tmp_path / "m.csv", metric="test", batch_size=16)
    m = read_matrix(tmp_path / "m.h5")
    assert m.layer_distance.shape == (3, 4, 4) and list(m.layer_name) == ["t0", "t1", "t2", "t3"]
    assert m.batch_size == 16
    offsets = [offset for _, _, offset in layout]
    for e, g in enumerate(grads):
        np.testing.assert_allclose(m.layer_distance[e], batch_distances(g, offsets)["layer_distance"], rtol=1e-12)
        g_bar = g.mean(0)
        np.testing.assert_allclose(
            m.noise_scale[e], 16 * ((g - g_bar) ** 2).sum(1).mean() / (g_bar**2).sum(), rtol=1e-12
        )
        np.testing.assert_allclose(m.gradient_diversity[e], (g**2).sum() / (g.sum(0) ** 2).sum(), rtol=1e-12)
    gather_distances(paths, tmp_path / "n.h5", tmp_path / "n.csv", metric="test")  # no batch size: no B_simple
    m = read_matrix(tmp_path / "n.h5")
    assert m.batch_size is None and np.isnan(m.noise_scale).all() and np.isfinite(m.gradient_diversity).all()


def test_reduction_names_the_batch_with_a_non_finite_gradient(tmp_path):
    from bestbatch.distances import NonFiniteGradient

    g = np.ones((4, 1000), dtype=np.float32)
    g[2, 500] = np.nan
    g[3, 7] = np.inf
    write_shard(tmp_path / "epoch_5.h5", g)
    with pytest.raises(NonFiniteGradient, match=r"epoch_5.h5: the gradient of batch 2 .* \(2 of 4 batches do\)"):
        reduce_shard(tmp_path / "epoch_5.h5")


def test_shard_needs_its_gradient_sum(tmp_path):
    with pytest.raises(ValueError, match=r"gradient_sum of shape \(3,\), expected \(10,\)"):
        with ShardWriter(tmp_path / "s.h5", 1, 10, torch.float32) as writer:
            writer.put(0, torch.ones(10))
            writer.finish([("w", (10,), 0)], records(1), gradient_sum=np.zeros(3))
    assert list(tmp_path.iterdir()) == []


def test_a_file_of_another_format_version_is_refused_naming_it(tmp_path):
    from bestbatch.formats import FormatError, read_shard_records

    g = np.ones((2, 10), dtype=np.float32)
    write_shard(tmp_path / "epoch_1.h5", g)
    with h5py.File(tmp_path / "epoch_1.h5", "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    for read in (read_shard_records, reduce_shard):
        with pytest.raises(
            FormatError,
            match=rf"epoch_1.h5: gradient shard format version {FORMAT_VERSION + 1}, "
            rf"this bestbatch reads version {FORMAT_VERSION}; delete it",
        ):
            read(tmp_path / "epoch_1.h5")
    with h5py.File(tmp_path / "epoch_1.h5", "r+") as f:
        del f.attrs["format_version"]
    with pytest.raises(FormatError, match="written by an older bestbatch"):
        read_shard_records(tmp_path / "epoch_1.h5")


def test_writer_recycles_its_own_rows_only(tmp_path):
    """Rows from writer.row() come back after they are written (at most depth + 2 exist); a caller's
    own tensor is written but never handed out again."""
    n, rows = 1000, 12
    with ShardWriter(tmp_path / "s.h5", rows, n, torch.float32, depth=2) as writer:
        _recycle(writer, rows, n, seen := set(), mine := torch.full((n,), -1.0))
        writer.finish([("w", (n,), 0)], records(rows), gradient_sum=np.zeros(n))
    assert len(seen) <= 4
    assert torch.equal(mine, torch.full((n,), -1.0))
    with h5py.File(tmp_path / "s.h5", "r") as f:
        want = np.repeat(np.arange(rows, dtype=np.float32)[:, None], n, 1)
        want[5] = -1
        np.testing.assert_array_equal(f["gradients"][:], want)


def _recycle(writer, rows, n, seen, mine):
    """Rows 0..rows-1 filled with k from writer.row(), except row 5: the caller's own tensor `mine`."""
    for k in range(rows):
        if k == 5:
            writer.put(k, mine)
            continue
        buf = writer.row(k, torch.device("cpu"), torch.float32, n)
        assert buf.untyped_storage().data_ptr() != mine.untyped_storage().data_ptr()
        seen.add(buf.untyped_storage().data_ptr())
        buf.fill_(k)
        writer.put(k, buf)


def _direct_io_works(directory):
    import os

    from bestbatch.shards import _open_direct

    probe = directory / "probe"
    probe.write_bytes(b"")
    fd = _open_direct(probe)
    probe.unlink()
    if fd is None:
        return False
    os.close(fd)
    return True


@pytest.mark.parametrize("direct", [True, False])
def test_shard_bytes_are_exact_with_and_without_direct_io(tmp_path, direct):
    """Rows at every 4 KiB phase (P is odd), recycled buffers, a caller's unaligned tensor and the float64
    sum: whatever goes through O_DIRECT or the page cache, the file holds exactly the values."""
    rng = np.random.default_rng(4)
    k_rows, n = 7, 100_003
    g = rng.standard_normal((k_rows, n)).astype(np.float32)
    total = np.zeros(n)
    np.add.reduce(g.astype(np.float64), axis=0, out=total)
    with ShardWriter(tmp_path / "s.h5", k_rows, n, torch.float32, depth=1, direct=direct) as writer:
        for k in range(k_rows):
            if k == 3:  # not from row(): a view one float off any alignment
                writer.put(k, torch.from_numpy(np.concatenate([[0], g[k]]).astype(np.float32))[1:])
                continue
            buf = writer.row(k, torch.device("cpu"), torch.float32, n)
            buf.copy_(torch.from_numpy(g[k]))
            writer.put(k, buf)
        writer.finish([("w", (n,), 0)], records(k_rows, train_loss=np.arange(k_rows)), gradient_sum=total)
    if direct and _direct_io_works(tmp_path):
        assert writer.direct_bytes >= (k_rows - 1) * (4 * n - 2 * 4096)  # all rows but the caller's
    else:
        assert writer.direct_bytes == 0
    with h5py.File(tmp_path / "s.h5", "r") as f:
        np.testing.assert_array_equal(f["gradients"][:], g)
        np.testing.assert_array_equal(f["gradient_sum"][:], total)
        np.testing.assert_array_equal(f["train_loss"][:], np.arange(k_rows))
        assert f.attrs["epoch"] == 1
    got, want = reduce_shard(tmp_path / "s.h5"), batch_distances(g)
    np.testing.assert_allclose(got["distance"], want["distance"], rtol=1e-12)
