"""The reduction's batch Gram matrix G[i, j] = g_i . g_j against the float64 brute force, on every path that makes
it (the compiled pair pass, BLAS products, the one-block numpy path, h5py reading a chunked shard); what G implies
against the reduction's own distances; and what becomes of an epoch reduced without it."""

import h5py
import numpy as np
import pytest
import torch
from test_gradients import flat_layout, records

from bestbatch import _kernels, distances, sets
from bestbatch.distances import BLOCK, GRAM_PAIRS_ROWS, batch_distances, reduce_rows, reduce_shard
from bestbatch.formats import NoGram, finish_shard, read_epoch, read_matrix
from bestbatch.shards import ShardWriter
from bestbatch.steps.distances import gather_distances, reduce_epoch

# three tensors, one across the first block boundary, and a last block much shorter than BLOCK
SIZES = [1000, BLOCK, 6000]
# the same cuts at a block of SMALL_BLOCK parameters (the `small_blocks` fixture): four blocks of a shard of 100 kB
SMALL_BLOCK = 1 << 13
SMALL_SIZES = [1000, 2 * SMALL_BLOCK, 3, 0, 9000]
TORCH = {np.float32: torch.float32, np.float64: torch.float64}


@pytest.fixture
def small_blocks(monkeypatch):
    """The reduction cut into blocks of SMALL_BLOCK parameters: the same code on a shard small enough to be quick."""
    monkeypatch.setattr(distances, "BLOCK", SMALL_BLOCK)


def gradients(k_rows, sizes, dtype, seed):
    """Rows sharing a direction (so G has large off-diagonal entries), scaled unequally, per tensor too."""
    rng = np.random.default_rng(seed)
    n_params = sum(sizes)
    scale = rng.uniform(0.1, 10, (k_rows, 1)) * np.repeat(rng.uniform(0.01, 100, len(sizes)), sizes)
    return ((rng.standard_normal(n_params) + rng.standard_normal((k_rows, n_params))) * scale).astype(dtype)


def chunked_shard(path, g, layout):
    """A chunked, compressed shard (not one byte range: h5py reads it), chunks of 4096 values of a row."""
    with h5py.File(path, "w") as f:
        f.create_dataset("gradients", data=g, chunks=(1, 4096), compression="gzip", compression_opts=1)
        f["gradient_sum"] = g.astype(np.float64).sum(0)
        finish_shard(f, layout, records(g.shape[0]))


def write_shard(path, g, layout):
    """g (K, P) written row by row by the shard writer, in its own dtype, with its float64 sum."""
    with ShardWriter(path, g.shape[0], g.shape[1], TORCH[g.dtype.type]) as writer:
        for k in range(g.shape[0]):
            writer.put(k, torch.from_numpy(g[k]))
        writer.finish(layout, records(g.shape[0]), gradient_sum=g.astype(np.float64).sum(0))


def gram_error(gram, g):
    """max |G - G_ref| / (||g_i|| ||g_j||) against the float64 brute force."""
    g = g.astype(np.float64)
    want = g @ g.T
    norm = np.sqrt(np.diagonal(want))
    return np.max(np.abs(gram - want) / np.outer(norm, norm))


def counting(monkeypatch):
    """Count the calls of the two Gram paths (the compiled pair pass, the BLAS slices) while they still run."""
    calls = {"pairs": 0, "blas": 0}
    pairs, blas = _kernels._gram_pairs, distances._gram_block

    def count_pairs(*args):
        calls["pairs"] += 1
        return pairs(*args)

    def count_blas(*args):
        calls["blas"] += 1
        return blas(*args)

    monkeypatch.setattr(_kernels, "_gram_pairs", count_pairs)
    monkeypatch.setattr(distances, "_gram_block", count_blas)
    return calls


def check_implied(got):
    """What the Gram matrix implies equals the reduction's own distances, norms, cosines and full norm."""
    implied = sets.implied(got["gram"])
    for name in ("distance", "norm", "cosine", "full_norm"):
        np.testing.assert_allclose(implied[name], got[name], rtol=1e-10, atol=0, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k_rows, path", [(6, "pairs"), (GRAM_PAIRS_ROWS + 5, "blas")])
def test_gram_of_a_multi_block_shard_matches_brute_force(tmp_path, monkeypatch, small_blocks, dtype, k_rows, path):
    """A memory-mapped shard of four blocks: up to GRAM_PAIRS_ROWS rows by the compiled pair pass, more by BLAS
    products of float64 slices; each to 1e-12 of ||g_i|| ||g_j||, exactly symmetric, the same bits on 1, 2 and 3
    threads, and its implied distances equal to the reduction's."""
    g = gradients(k_rows, SMALL_SIZES, dtype, seed=k_rows)
    write_shard(tmp_path / "s.h5", g, flat_layout(SMALL_SIZES))
    calls = counting(monkeypatch)
    one = reduce_shard(tmp_path / "s.h5", threads=1, gram=True)
    n_blocks = -(-sum(SMALL_SIZES) // SMALL_BLOCK)
    assert n_blocks == 4
    assert calls == ({"pairs": n_blocks, "blas": 0} if path == "pairs" else {"pairs": 0, "blas": n_blocks})
    gram = one["gram"]
    assert gram.shape == (k_rows, k_rows) and gram.dtype == np.float64
    assert gram_error(gram, g) <= 1e-12
    assert np.array_equal(gram, gram.T)
    # the check has teeth: the rows point the same way (large off-diagonal entries), and float32 products miss
    assert np.min(sets.cosines(gram)) > 0.05
    if dtype == np.float32:
        assert gram_error(g @ g.T, g) > 1e-12
    for threads in (2, 3):
        assert np.array_equal(reduce_shard(tmp_path / "s.h5", threads=threads, gram=True)["gram"], gram), threads
    check_implied(one)


def test_gram_at_the_real_block_size_by_both_paths(tmp_path, monkeypatch):
    """Six rows of two real blocks (BLOCK parameters) by the compiled pair pass and, with GRAM_PAIRS_ROWS set to 0,
    by BLAS: both the brute force's to 1e-12, each the same bits on 1 and 2 threads, and equal to each other to
    rounding (two orders of addition)."""
    g = gradients(6, SIZES, np.float32, seed=3)
    write_shard(tmp_path / "s.h5", g, flat_layout(SIZES))
    calls = counting(monkeypatch)
    pairs = reduce_shard(tmp_path / "s.h5", threads=1, gram=True)
    assert np.array_equal(reduce_shard(tmp_path / "s.h5", threads=2, gram=True)["gram"], pairs["gram"])
    monkeypatch.setattr(distances, "GRAM_PAIRS_ROWS", 0)
    blas = reduce_shard(tmp_path / "s.h5", threads=1, gram=True)
    assert np.array_equal(reduce_shard(tmp_path / "s.h5", threads=2, gram=True)["gram"], blas["gram"])
    assert calls == {"pairs": 4, "blas": 4}  # two blocks, twice each
    for got in (pairs, blas):
        assert gram_error(got["gram"], g) <= 1e-12 and np.array_equal(got["gram"], got["gram"].T)
        check_implied(got)
    assert not np.array_equal(pairs["gram"], blas["gram"])
    norm = np.sqrt(np.diagonal(blas["gram"]))
    assert np.max(np.abs(pairs["gram"] - blas["gram"]) / np.outer(norm, norm)) <= 1e-13


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k_rows", [5, GRAM_PAIRS_ROWS + 5])
def test_gram_of_a_one_block_shard_by_numpy(tmp_path, dtype, k_rows):
    """A shard of one block (the demo's) goes through numpy (kernel auto or numpy): its Gram matrix matches the
    brute force, is symmetric, and is the compiled kernel's to rounding (to the bit for more than GRAM_PAIRS_ROWS
    rows, where both take the same BLAS slices)."""
    sizes = [7, 0, 40_000, 3]
    g = gradients(k_rows, sizes, dtype, seed=k_rows + 1)
    write_shard(tmp_path / "s.h5", g, flat_layout(sizes))
    auto, numpy_, compiled = (
        reduce_shard(tmp_path / "s.h5", kernel=k, gram=True) for k in ("auto", "numpy", "compiled")
    )
    assert np.array_equal(auto["gram"], numpy_["gram"])
    assert gram_error(numpy_["gram"], g) <= 1e-12 and np.array_equal(numpy_["gram"], numpy_["gram"].T)
    assert gram_error(compiled["gram"], g) <= 1e-12
    if k_rows > GRAM_PAIRS_ROWS:
        assert np.array_equal(numpy_["gram"], compiled["gram"])
    check_implied(numpy_)


@pytest.mark.parametrize("blocks", ["one", "several"])
def test_gram_of_a_chunked_shard_through_h5py(tmp_path, request, blocks):
    """A chunked, compressed shard (not one byte range: h5py reads the slices), of one block and of several: the
    brute force's Gram matrix, symmetric, and the memory-mapped shard's of the same rows to rounding."""
    if blocks == "several":
        request.getfixturevalue("small_blocks")
    sizes = [5, 30_000, 7] if blocks == "one" else SMALL_SIZES
    layout = flat_layout(sizes)
    g = gradients(4, sizes, np.float32, seed=len(sizes))
    chunked_shard(tmp_path / "c.h5", g, layout)
    write_shard(tmp_path / "m.h5", g, layout)
    got = reduce_shard(tmp_path / "c.h5", threads=2, gram=True)
    mapped = reduce_shard(tmp_path / "m.h5", gram=True)
    assert gram_error(got["gram"], g) <= 1e-12 and np.array_equal(got["gram"], got["gram"].T)
    norm = np.sqrt(np.diagonal(mapped["gram"]))
    assert np.max(np.abs(got["gram"] - mapped["gram"]) / np.outer(norm, norm)) <= 1e-13
    check_implied(got)


def test_implied_values_of_a_stack_and_the_brute_force():
    """sets.implied on a stack of epochs (E, K, K) gives each epoch's values; batch_distances returns G too."""
    rng = np.random.default_rng(8)
    g = rng.standard_normal((3, 5, 200)) + rng.standard_normal(200)
    brute = [batch_distances(e) for e in g]
    implied = sets.implied(np.stack([b["gram"] for b in brute]))
    for name in ("distance", "norm", "cosine", "full_norm"):
        np.testing.assert_allclose(implied[name], np.stack([b[name] for b in brute]), rtol=1e-12, err_msg=name)
    np.testing.assert_allclose(brute[0]["gram"], g[0] @ g[0].T, rtol=1e-15)


def test_without_gram_nothing_is_kept(tmp_path, small_blocks):
    """gram=False (reduce_rows' and reduce_shard's default) leaves no gram key, on every path."""
    g = gradients(4, SMALL_SIZES, np.float32, seed=9)
    write_shard(tmp_path / "s.h5", g, flat_layout(SMALL_SIZES))
    assert "gram" not in reduce_shard(tmp_path / "s.h5")
    assert "gram" not in reduce_shard(tmp_path / "s.h5", gram=False, threads=2)
    small = g[:, :1000]
    assert "gram" not in reduce_rows(small, small.astype(np.float64).sum(0))
    assert "gram" in reduce_rows(small, small.astype(np.float64).sum(0), gram=True)


def epochs(tmp_path, grams):
    """Per-epoch files reduce_epoch wrote from real shards, epoch e with outputs.gram = grams[e - 1]."""
    rng = np.random.default_rng(10)
    sizes = [10, 3, 40]
    rows, paths = [], []
    for epoch, gram in enumerate(grams, 1):
        g = rng.standard_normal((4, sum(sizes))).astype(np.float32)
        with ShardWriter(tmp_path / f"s{epoch}.h5", 4, sum(sizes), torch.float32) as writer:
            for k in range(4):
                writer.put(k, torch.from_numpy(g[k]))
            writer.finish(flat_layout(sizes), records(4, epoch), gradient_sum=g.astype(np.float64).sum(0))
        paths.append(tmp_path / f"e{epoch}.h5")
        reduce_epoch(tmp_path / f"s{epoch}.h5", paths[-1], gram=gram)
        rows.append(g)
    return rows, paths


def test_an_epoch_without_gram_and_its_gathered_matrix(tmp_path):
    """reduce_epoch(gram=False) writes no gram dataset; the gathered distances.h5 reads as before, and asked for
    its Gram matrix says which setting left it out."""
    _, paths = epochs(tmp_path, [False, False])
    with h5py.File(paths[0], "r") as f:
        assert "gram" not in f
    assert read_epoch(paths[0])[0]["gram"] is None
    gather_distances(paths, tmp_path / "m.h5", tmp_path / "m.csv", metric="test")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert "gram" not in f
    m = read_matrix(tmp_path / "m.h5")
    assert m.gram is None and m.distance.shape == (2, 4)
    with pytest.raises(NoGram, match=r"m\.h5 holds no Gram matrix: its study ran with outputs\.gram: false"):
        read_matrix(tmp_path / "m.h5", gram=True)


def test_an_epoch_with_gram_and_its_gathered_matrix(tmp_path):
    """reduce_epoch's default keeps G; gathered, read_matrix(gram=True) gives (E, K, K) in epoch order with units,
    and without gram=True it is not read."""
    rows, paths = epochs(tmp_path, [True, True, True])
    gather_distances(paths[::-1], tmp_path / "m.h5", tmp_path / "m.csv", metric="test")
    m = read_matrix(tmp_path / "m.h5", gram=True)
    assert m.gram.shape == (3, 4, 4) and list(m.epoch) == [1, 2, 3]
    for e, g in enumerate(rows):
        assert gram_error(m.gram[e], g) <= 1e-12
        np.testing.assert_array_equal(m.gram[e], read_epoch(paths[e])[0]["gram"])
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert "dot product" in f["gram"].attrs["units"]
    assert read_matrix(tmp_path / "m.h5").gram is None


def test_epochs_with_and_without_gram_are_not_gathered(tmp_path):
    _, paths = epochs(tmp_path, [True, False, True])
    with pytest.raises(ValueError, match=r"epochs \[2\] have no Gram matrix and the others have one"):
        gather_distances(paths, tmp_path / "m.h5", tmp_path / "m.csv", metric="test")
    assert not (tmp_path / "m.h5").exists()


@pytest.mark.parametrize(
    "k_rows, n_params",
    [(8, 300_000), (45, 200_000), (5, 3 * BLOCK + 11), (45, 2 * BLOCK + 3)],
    ids=["one block, numpy", "one block, BLAS rows", "blocks, pair pass", "blocks, BLAS"],
)
def test_the_gram_matrix_changes_no_other_value(k_rows, n_params):
    """With gram, every other value is the same bits as without it: the Gram matrix's BLAS products run on one
    OpenBLAS thread, and the sums' own BLAS products (the one-block path's g @ g_bar) keep the threads they had.
    (Found by the GPU check's rehearsal: the cosine of a one-block shard changed in its last bit.)"""
    g = np.random.default_rng(k_rows).standard_normal((k_rows, n_params)).astype(np.float32)
    total = g.astype(np.float64).sum(0)
    without, with_gram = reduce_rows(g, total, threads=2), reduce_rows(g, total, threads=2, gram=True)
    assert set(with_gram) == set(without) | {"gram"}
    for name, value in without.items():
        assert np.array_equal(value, with_gram[name]), name
