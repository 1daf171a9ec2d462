"""The sketch (bestbatch.sketch): its hash against a numpy re-implementation, exact and deterministic
accumulation (any split, block size, thread count, float32 or float64), linearity, the reduction of sketched
rows, and the stated error bound against seeded trials, including batches whose distances are far smaller than
their norms. Tests marked `cuda` check the same bits on a GPU; they skip without one."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bestbatch.distances import NonFiniteGradient, batch_distances
from bestbatch.sketch import (
    SketchSink,
    SparseProjection,
    n_lengths,
    reduce_sketches,
    sketch_bound,
    sketch_dim,
)

M32, M64 = (1 << 32) - 1, (1 << 64) - 1


# --- an independent re-implementation of the hash: Python integers for the keys, numpy uint64 for the rest ---


def np_keys(seed, n_params, dim, nonzeros):
    def splitmix(z):
        z = (z + 0x9E3779B97F4A7C15) % 2**64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
        return z ^ (z >> 31)

    keys = []
    for r in range(nonzeros):
        z = splitmix(seed)
        for v in (n_params, dim, nonzeros, r):
            z = splitmix(z ^ v)
        keys.append((z % 2**32, z // 2**32))
    return keys


def np_lowbias32(x):
    x = x.astype(np.uint64)  # products of two 32-bit numbers fit a uint64: no wrap-around needed
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & np.uint64(M32)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & np.uint64(M32)
    return x ^ (x >> np.uint64(16))


def np_buckets(seed, n_params, dim, nonzeros, coords):
    base, extra = divmod(dim, nonzeros)
    buckets, signs = [], []
    for r, (k1, k2) in enumerate(np_keys(seed, n_params, dim, nonzeros)):
        first, m = r * base + min(r, extra), base + (1 if r < extra else 0)
        h = np_lowbias32(np_lowbias32(coords.astype(np.uint64) ^ np.uint64(k1)) ^ np.uint64(k2))
        buckets.append(first + ((h >> np.uint64(1)) * np.uint64(m) >> np.uint64(31)).astype(np.int64))
        signs.append(1 - 2 * (h & np.uint64(1)).astype(np.int64))
    return np.array(buckets), np.array(signs)


def np_sketch(x, seed, dim, nonzeros):
    """S x by brute force: every bucket's terms summed exactly (math.fsum, correctly rounded), times 1/sqrt(s)."""
    x = np.asarray(x, dtype=np.float64)
    buckets, signs = np_buckets(seed, x.size, dim, nonzeros, np.arange(x.size))
    terms = [[] for _ in range(dim)]
    for b_row, s_row in zip(buckets, signs):
        for i, (b, s) in enumerate(zip(b_row, s_row)):
            terms[b].append(s * x[i])
    return np.array([math.fsum(t) for t in terms]) * (1 / math.sqrt(nonzeros))


def wide_row(n, seed=0):
    """float32 values over the whole float32 range: subnormals, zeros (both signs), large, of both signs."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-40, 37, n)).astype(np.float32)
    x[:4] = [0.0, -0.0, np.float32(1e-45), -np.float32(3e38)]
    return torch.from_numpy(x)


# --- the hash and the values ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed, n_params, dim, nonzeros", [(0, 1000, 64, 4), (2**64 - 1, 70_001, 1000, 3)])
def test_hash_matches_numpy(seed, n_params, dim, nonzeros):
    proj = SparseProjection(n_params, dim, seed=seed, nonzeros=nonzeros)
    lo, hi = n_params // 3, n_params
    buckets, signs = proj.buckets(lo, hi)
    ref_buckets, ref_signs = np_buckets(seed, n_params, dim, nonzeros, np.arange(lo, hi))
    np.testing.assert_array_equal(buckets.numpy(), ref_buckets)
    np.testing.assert_array_equal(signs.numpy(), ref_signs)
    # the s nonzeros of a coordinate sit in distinct buckets, one per block
    assert (np.diff(np.sort(ref_buckets, 0), axis=0) > 0).all()


def test_hash_pinned():
    """Literal values: a change of the hash (in both implementations) changes every sketch ever recorded."""
    proj = SparseProjection(1000, 64, seed=0)
    buckets, signs = proj.buckets(0, 4)
    assert buckets.tolist() == [[4, 8, 2, 10], [21, 18, 19, 18], [42, 45, 42, 37], [57, 53, 49, 57]]
    assert signs.tolist() == [[1, 1, 1, -1], [1, -1, -1, -1], [-1, 1, 1, -1], [1, -1, -1, 1]]
    y = proj(torch.arange(1000, dtype=torch.float32) / 7 - 50)
    assert [v.hex() for v in y[:4].tolist()] == [
        "-0x1.5000068000000p+5",
        "-0x1.d17fff8000000p+8",
        "-0x1.6492494000000p+7",
        "-0x1.f04925c000000p+7",
    ]


@pytest.mark.parametrize("nonzeros", [4, 3, 1])
def test_sketch_is_the_exact_projection_rounded_once(nonzeros):
    """Against the numpy hash and math.fsum: every bucket within 1 ulp of its exact sum, over values from
    subnormals to 3e38; times 1/sqrt(s), one more rounding where that is not a power of 2 (s = 3)."""
    x = wide_row(3000)
    y = SparseProjection(3000, 97, seed=5, nonzeros=nonzeros)(x).numpy()
    ref = np_sketch(x.numpy(), 5, 97, nonzeros)
    np.testing.assert_array_max_ulp(y, ref, maxulp=1 if nonzeros in (1, 4) else 2)


# --- exactness: determinism, splits, dtypes, linearity ------------------------------------------------------


def test_same_bits_for_any_run_split_block_and_threads():
    n = 20_000
    x = wide_row(n, seed=1)
    proj = SparseProjection(n, 300, seed=7)
    y = proj(x)
    assert torch.equal(proj(x), y)
    # the row's tensors in any order, cut anywhere, through blocks of any size
    cuts = [0, 1, 2, 999, 1000, 8193, 15_000, n]
    pieces = list(zip(cuts[:-1], cuts[1:]))
    for block in (None, 5, 4096, n):
        row = SparseProjection(n, 300, seed=7, block=block).row("cpu")
        for lo, hi in reversed(pieces):
            row.add(x[lo:hi].reshape(1, -1, 1), lo)  # any shape: flattened
        assert torch.equal(row.value(), y), block
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(SparseProjection(n, 300, seed=7, block=n, cache=False)(x), y)
    finally:
        torch.set_num_threads(threads)


def test_float32_row_and_its_float64_copy_give_the_same_bits():
    x = wide_row(10_000, seed=2)
    proj = SparseProjection(10_000, 128, seed=3)
    assert torch.equal(proj(x), proj(x.double()))


def test_float64_row_to_rounding():
    """A float64 row (53-bit values) against the exact sums, and its float32 rounding as far off as that rounding."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(5000) * 10.0 ** rng.uniform(-8, 8, 5000)
    y = SparseProjection(5000, 64, seed=9)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_max_ulp(y, np_sketch(x, 9, 64, 4), maxulp=1)


def test_linearity():
    rng = np.random.default_rng(5)
    n = 30_000
    proj = SparseProjection(n, 500, seed=11)
    # integer values: g + h is exact, so are the sketches (sums of integers / 2): the same bits
    g, h = (torch.from_numpy(rng.integers(-(2**20), 2**20, n).astype(np.float64)) for _ in range(2))
    assert torch.equal(proj(g + h), proj(g) + proj(h))
    # any values: to rounding (a g + b h is rounded before it is sketched)
    g, h = (torch.from_numpy(rng.standard_normal(n)) for _ in range(2))
    a, b = 0.3, -2.5
    lhs, rhs = proj(a * g + b * h), a * proj(g) + b * proj(h)
    assert torch.allclose(lhs, rhs, rtol=0, atol=1e-13 * float(rhs.abs().max()))
    # the mean of the rows' sketches is the sketch of the mean
    rows = torch.from_numpy(rng.standard_normal((6, n)))
    mean_of_sketches = torch.stack([proj(r) for r in rows]).mean(0)
    assert torch.allclose(
        proj(rows.mean(0)), mean_of_sketches, rtol=0, atol=1e-13 * float(mean_of_sketches.abs().max())
    )


def test_non_finite_rows_are_named():
    n = 1000
    proj = SparseProjection(n, 32, seed=0)
    good = torch.randn(n)
    assert torch.isfinite(proj(good)).all()
    for bad_value, dtype in [(math.nan, torch.float32), (math.inf, torch.float32), (1e300, torch.float64)]:
        bad = good.to(dtype).clone()
        bad[17] = bad_value
        assert torch.isnan(proj(bad)).all()
    rows = np.stack([proj(good).numpy(), proj(good * 2).numpy(), np.full(32, np.nan)])
    with pytest.raises(NonFiniteGradient, match="batch 2"):
        reduce_sketches(rows)


def test_arguments_are_checked():
    with pytest.raises(ValueError):
        SparseProjection(0, 10)
    with pytest.raises(ValueError):
        SparseProjection(100, 3, nonzeros=4)
    proj = SparseProjection(100, 10)
    with pytest.raises(ValueError):
        proj.row("cpu").add(torch.zeros(10), 95)
    with pytest.raises(TypeError):
        proj(torch.zeros(100, dtype=torch.float16))


# --- the reduction and the sink ----------------------------------------------------------------------


def test_reduce_sketches_is_the_exact_reduction_of_the_sketched_rows():
    rng = np.random.default_rng(6)
    rows = rng.standard_normal((9, 700)) + 3.0
    got = reduce_sketches(rows, gram=True)
    ref = batch_distances(rows)
    for key in ("distance", "norm", "cosine", "gram"):
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-12)
    assert got["full_norm"] == pytest.approx(ref["full_norm"], rel=1e-13)
    assert "layer_distance" not in got


def test_sink_keeps_the_sketches():
    n, k_rows = 5000, 3
    proj = SparseProjection(n, 64, seed=1)
    sink = SketchSink(proj, k_rows)
    rows = torch.randn(k_rows, n)
    for k in range(k_rows):
        buffer = sink.row(k, torch.device("cpu"), torch.float32, n)
        buffer.copy_(rows[k])
        sink.put(k, buffer)
    np.testing.assert_array_equal(sink.rows, torch.stack([proj(r) for r in rows]).numpy())


# --- the error bound ---------------------------------------------------------------------------------


def test_bound_arithmetic():
    assert [n_lengths(195, f) for f in ("distances", "pairs", "gram")] == [195, 19_110, 19_306]
    d = sketch_dim(195, 0.05, 0.05)
    assert d == 5426
    assert sketch_bound(195, d, 0.05)["eps"] <= 0.05 < sketch_bound(195, d - 1, 0.05)["eps"]
    bound = sketch_bound(195, 17_000, 0.05)
    assert bound["eps"] == pytest.approx(0.0282, abs=1e-4)
    assert "17,000" in bound["text"] and "19,110" in bound["text"] and "2.82%" in bound["text"]
    # more batches, a smaller delta or fewer values: a wider bound
    assert sketch_bound(400, 17_000)["eps"] > bound["eps"]
    assert sketch_bound(195, 17_000, 0.001)["eps"] > bound["eps"]
    assert sketch_bound(195, 8_000)["eps"] > bound["eps"]


def epoch_gradients(k_rows, n, rank, noise, offset, seed):
    """K float32 rows: a shared gradient `offset` times larger than the rows' spread, plus a low-rank part and
    noise, with per-coordinate scales over two decades (as a network's tensors differ)."""
    gen = torch.Generator().manual_seed(seed)
    scale = 10 ** (2 * torch.rand(n, generator=gen, dtype=torch.float64))
    basis = torch.randn(rank, n, generator=gen, dtype=torch.float64)
    rows = torch.randn(k_rows, rank, generator=gen, dtype=torch.float64) @ basis
    rows += noise * torch.randn(k_rows, n, generator=gen, dtype=torch.float64) * math.sqrt(rank)
    shared = torch.randn(n, generator=gen, dtype=torch.float64)
    shared *= offset * rows.norm() / math.sqrt(k_rows) / shared.norm()
    return ((rows + shared) * scale).float()


@pytest.mark.parametrize(
    "offset, family",
    # 1e6: every ||g_k|| is ~10^6 times ||g_k - g_bar||, a few float32 steps of the values (a sketch summed in
    # float32 would be off by ~20% there, and by ~190% at 1e7)
    [(0.0, "pairs"), (1e6, "distances")],
)
def test_measured_error_within_the_stated_bound(offset, family):
    """Over seeded trials, the largest relative error of the family's distances stays within sketch_bound's eps
    in at least 1 - delta of them (the union bound is conservative: in practice, in all of them), and is
    relative to the distances themselves, even where they are a millionth of the norms."""
    k_rows, n, dim, delta, trials = 24, 100_000, 512, 0.1, 12
    rows = epoch_gradients(k_rows, n, rank=5, noise=0.5, offset=offset, seed=12)
    exact = rows.double()
    mean = exact.mean(0)
    if family == "pairs":
        points = torch.cat([exact, mean[None]])
        true = torch.cdist(points, points)[torch.triu_indices(k_rows + 1, k_rows + 1, 1).unbind()]
    else:
        true = (exact - mean).norm(dim=1)
    eps = sketch_bound(k_rows, dim, delta, family)["eps"]
    worst = []
    for seed in range(trials):
        proj = SparseProjection(n, dim, seed=seed)
        sk = torch.stack([proj(r) for r in rows])
        if family == "pairs":
            points = torch.cat([sk, sk.mean(0)[None]])
            got = torch.cdist(points, points)[torch.triu_indices(k_rows + 1, k_rows + 1, 1).unbind()]
        else:
            got = torch.from_numpy(reduce_sketches(sk.numpy())["distance"])
        worst.append(float(((got - true).abs() / true).max()))
    worst = np.array(worst)
    assert np.mean(worst > eps) <= delta, (worst, eps)
    # a real projection, not an exact copy: the errors are of the size the variance 2 / d says
    assert np.median(worst) > 0.25 * eps, (worst, eps)
    if offset:
        norms = exact.norm(dim=1)
        assert float((true / norms).max()) < 2e-6  # the distances are far smaller than the norms


def test_the_bound_and_the_reduction_import_no_torch():
    """A page states the bound and a reduction job reduces sketched rows: both without PyTorch."""
    code = (
        "import importlib.abc, sys\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import numpy as np\n"
        "from bestbatch.sketch import reduce_sketches, sketch_bound, sketch_dim\n"
        "print(sketch_dim(195, 0.05), sketch_bound(195, 17000)['eps'], reduce_sketches(np.eye(3))['distance'][0])\n"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=src)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[:2] == ["5426", "0.028235"]


# --- CUDA: the same bits as the CPU ------------------------------------------------------------------

# BESTBATCH_CUDA_REHEARSAL=1 runs the CUDA test on the CPU (as tests/test_cuda.py does): a rehearsal of the test
REHEARSAL = os.environ.get("BESTBATCH_CUDA_REHEARSAL") == "1"
DEVICE = "cpu" if REHEARSAL else "cuda"


@pytest.mark.cuda
@pytest.mark.skipif(
    not (REHEARSAL or torch.cuda.is_available()), reason="no CUDA device (torch.cuda.is_available() is False)"
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_same_bits_as_cpu_every_run(dtype):
    """The same bits as the CPU, on every run (integer atomics: their order cannot show), for any split and block,
    with the hash recomputed per block (the default on CUDA) or kept on the device."""
    n = 3_000_017
    x = wide_row(n, seed=8).to(dtype)
    y = SparseProjection(n, 17_000, seed=42)(x)
    xd = x.to(DEVICE)
    proj = SparseProjection(n, 17_000, seed=42, cache=False)
    for _ in range(3):
        run = proj(xd)
        assert run.device.type == DEVICE
        assert torch.equal(run.cpu(), y)
    row = SparseProjection(n, 17_000, seed=42, block=1 << 18, cache=True).row(DEVICE)
    cuts = [0, 1000, 1_500_000, n]
    for lo, hi in reversed(list(zip(cuts[:-1], cuts[1:]))):
        row.add(xd[lo:hi], lo)
    assert torch.equal(row.value().cpu(), y)
