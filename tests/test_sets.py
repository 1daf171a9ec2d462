"""Sets of batches answered from the Gram matrix (bestbatch.sets) against a direct computation from a shard's rows,
against exhaustive enumeration on small K, and against hand-made cases (a line, the simplex, ties)."""

import itertools

import numpy as np
import pytest
import torch
from test_gradients import flat_layout, records

from bestbatch import sets
from bestbatch.distances import reduce_shard
from bestbatch.formats import shard_rows
from bestbatch.shards import ShardWriter
from bestbatch.stats import region_mask

K, SIZES = 20, [300, 20_000, 7]


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """(rows read back from a shard the shard writer wrote (K, P) float64, its reduced Gram matrix G). The rows
    share a direction and deviate from it along a few common directions plus their own noise, so sets of batches
    can cancel each other's deviations: a greedy set then beats the closest batches."""
    rng = np.random.default_rng(0)
    n = sum(SIZES)
    common = rng.standard_normal((3, n))
    g = 2 * rng.standard_normal(n) + rng.standard_normal((K, 3)) @ common + 0.5 * rng.standard_normal((K, n))
    path = tmp_path_factory.mktemp("sets") / "shard.h5"
    g = g.astype(np.float32)
    with ShardWriter(path, K, n, torch.float32) as writer:
        for k in range(K):
            writer.put(k, torch.from_numpy(g[k]))
        writer.finish(flat_layout(SIZES), records(K), gradient_sum=g.astype(np.float64).sum(0))
    with shard_rows(path) as (rows, _):
        read = np.asarray(rows, dtype=np.float64)
    assert np.array_equal(read, g)
    return read, reduce_shard(path, gram=True)["gram"]


def direct_error(g, members):
    """||mean_S g - g_bar|| from the rows themselves, in float64."""
    idx = np.flatnonzero(members) if np.asarray(members).dtype == bool else np.asarray(members)
    return float(np.linalg.norm(g[idx].mean(0) - g.mean(0)))


def test_centred_gram_is_the_deviations_gram(shard):
    g, G = shard
    d = g - g.mean(0)
    C = sets.centred(G)
    scale = np.outer(*(2 * [np.linalg.norm(d, axis=1)]))
    assert np.max(np.abs(C - d @ d.T) / scale) <= 1e-10
    np.testing.assert_allclose(sets.centred(np.stack([G, 2 * G])), np.stack([C, 2 * C]), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("region", ["upper_quartile", "middle_80", "outside_middle_80"])
def test_region_errors_match_the_rows(shard, region):
    """The paper's regions at K = 20 (upper quartile: 5 batches, middle 80%: 16, outside it: 4), by mask and by
    index, from G against the shard's rows, to 1e-10 relative."""
    g, G = shard
    C = sets.centred(G)
    mask = region_mask(region, K)
    assert 0 < mask.sum() < K
    want = direct_error(g, mask)
    assert sets.set_error(C, mask) == pytest.approx(want, rel=1e-10)
    assert sets.set_error(C, np.flatnonzero(mask)) == pytest.approx(want, rel=1e-10)
    assert sets.set_errors(C, mask[None])[0] == pytest.approx(want, rel=1e-10)


def test_random_set_errors_match_the_rows(shard):
    """Random sets of every size but K (whose error is 0: relative error means nothing there), many at once and one
    at a time, from G against the rows, to 1e-10 relative; sets of mixed sizes in one call; the empty set refused."""
    g, G = shard
    C = sets.centred(G)
    rng = np.random.default_rng(1)
    for m in range(1, K):
        W = sets.random_indicators(rng, 10, K, m)
        want = np.array([direct_error(g, w) for w in W])
        np.testing.assert_allclose(sets.set_errors(C, W), want, rtol=1e-10, atol=0)
        np.testing.assert_allclose([sets.set_error(C, w) for w in W], want, rtol=1e-10, atol=0)
    mixed = np.array([np.arange(K) < m for m in (1, 7, 13)])
    np.testing.assert_allclose(sets.set_errors(C, mixed), [direct_error(g, w) for w in mixed], rtol=1e-10, atol=0)
    # the whole epoch is g_bar itself: 0, to rounding of the sum of K^2 entries of C
    assert sets.set_error(C, np.ones(K, dtype=bool)) <= 1e-6 * sets.rms_distance(C)
    with pytest.raises(ValueError, match="at least one member"):
        sets.set_error(C, np.zeros(K, dtype=bool))
    with pytest.raises(ValueError, match="at least one member"):
        sets.set_errors(C, np.zeros((2, K)))


def test_greedy_set_matches_the_rows(shard):
    """Each prefix of the greedy order: its error as returned, from G and from the rows (1e-10 relative, m < K),
    and each step the best one-batch extension of the steps before it (every candidate checked from the rows). What
    holds by construction: at m = 1 it is the closest batch, at m = 2 no worse than the two closest (a candidate of
    its second step), at m = K it is g_bar (error 0 to rounding). What holds on this epoch but is no theorem: no
    worse than the m closest batches at every size (ratios 0.3 to 0.95 here; an epoch drawn the same way from another
    seed loses at m = 3, 1.25x), and below the random sets' root mean square error at every m < K - 1 (0.25 to 0.6)."""
    g, G = shard
    C = sets.centred(G)
    order, error = sets.greedy_set(C)
    assert sorted(order) == list(range(K))
    for m in range(1, K):
        want = direct_error(g, order[:m])
        assert error[m - 1] == pytest.approx(want, rel=1e-10)
        assert sets.set_error(C, order[:m]) == pytest.approx(want, rel=1e-10)
        others = [direct_error(g, np.append(order[: m - 1], i)) for i in range(K) if i not in order[: m - 1]]
        assert min(others) == pytest.approx(want, rel=1e-10)
        assert error[m - 1] <= sets.set_error(C, sets.closest(C, m)) * (1 + 1e-12)
        if m < K - 1:
            assert error[m - 1] < 0.7 * np.sqrt(sets.random_mean_square(C, m))
    assert order[0] == sets.closest(C, 1)[0] and error[0] == sets.set_error(C, sets.closest(C, 1))
    assert error[1] <= sets.set_error(C, sets.closest(C, 2)) * (1 + 1e-12)
    assert error[-1] <= 1e-6 * sets.rms_distance(C)
    short, short_error = sets.greedy_set(C, 5)
    assert np.array_equal(short, order[:5]) and np.array_equal(short_error, error[:5])
    for bad in (0, K + 1):
        with pytest.raises(ValueError, match="greedy_set"):
            sets.greedy_set(C, bad)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="forward selection is myopic: on this epoch the best of 300 random sets beats it at 16 of 19 sizes (by "
    "up to 4.6x, at m = K - 1)",
)
def test_greedy_set_is_no_worse_than_any_random_set(shard):
    """What a best-set search should give: at every size no worse than each of 300 random sets of m. sets.greedy_set
    does not (strict xfail: this fails, and passes once the search improves)."""
    _, G = shard
    C = sets.centred(G)
    _, error = sets.greedy_set(C)
    rng = np.random.default_rng(2)
    for m in range(1, K):
        assert error[m - 1] <= sets.set_errors(C, sets.random_indicators(rng, 300, K, m)).min() * (1 + 1e-12), m


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="forward selection leaves the farthest batches to the end: at m = K - 1 its set drops a far batch, not "
    "the closest one",
)
def test_greedy_set_at_all_but_one_batch_drops_the_closest(shard):
    """At m = K - 1 the error is ||g_out - g_bar|| / (K - 1) for the batch left out, so the best set leaves out the
    closest batch; greedy should be no worse (strict xfail: here it is 4.6x that, and 1.6x the random sets' root mean
    square error)."""
    _, G = shard
    C = sets.centred(G)
    _, error = sets.greedy_set(C)
    best = np.sqrt(np.min(np.diagonal(C))) / (K - 1)
    assert best == pytest.approx(sets.set_error(C, np.arange(K) != sets.closest(C, 1)[0]), rel=1e-10)
    assert error[K - 2] <= best * (1 + 1e-10)


def exhaustive_best(C, m):
    return min(sets.set_error(C, list(s)) for s in itertools.combinations(range(C.shape[0]), m))


@pytest.mark.parametrize("k_rows", [3, 5, 8])
def test_greedy_set_against_every_set_on_small_epochs(k_rows):
    """On K <= 8 (every subset enumerated): greedy is the best set at m = 1 (exactly) and at m = K (error 0 to
    rounding), and never better than the best set at the other sizes (a check of both computations). Nothing is
    asserted about how close it comes there: on these epochs it is up to 31x the best set's error (K = 8, m = 3),
    and test_greedy_is_not_optimal_in_general shows why."""
    rng = np.random.default_rng(k_rows)
    for _ in range(20):
        g = rng.standard_normal(50) + rng.standard_normal((k_rows, 2)) @ rng.standard_normal((2, 50))
        C = sets.centred(g @ g.T)
        order, error = sets.greedy_set(C)
        assert error[0] == exhaustive_best(C, 1)
        assert error[-1] <= 1e-7 * sets.rms_distance(C)
        for m in range(2, k_rows):
            assert error[m - 1] >= exhaustive_best(C, m) * (1 - 1e-12)


def test_greedy_is_not_optimal_in_general():
    """Deviations (eps, a, -a - eps) along one line: greedy takes eps first, then the batch that cancels best
    (-a - eps: error a / 2), while the best pair is {a, -a - eps} (error eps / 2); best_set swaps eps for a."""
    eps, a = 0.1, 1.0
    d = np.array([[eps], [a], [-a - eps]])
    C = d @ d.T
    order, error = sets.greedy_set(C)
    assert list(order) == [0, 2, 1]
    assert error[1] == pytest.approx(a / 2) and exhaustive_best(C, 2) == pytest.approx(eps / 2)
    # one swap (eps out, a in) finds the best pair
    members, best_error = sets.best_set(C, 2)
    assert members.tolist() == [1, 2] and best_error == pytest.approx(eps / 2)


def squared_sum(C, members):
    """q = 1_S' C 1_S, the squared error times m^2, summed directly."""
    idx = np.asarray(members)
    return float(C[np.ix_(idx, idx)].sum())


def small_epoch(rng, k_rows, noise):
    """Deviations along two common directions (as test_greedy_set_against_every_set_on_small_epochs draws them),
    plus each batch's own noise of standard deviation `noise`."""
    g = rng.standard_normal(50) + rng.standard_normal((k_rows, 2)) @ rng.standard_normal((2, 50))
    return sets.centred(g @ g.T) if noise == 0 else sets.centred((h := g + noise * rng.standard_normal(g.shape)) @ h.T)


@pytest.mark.parametrize("k_rows", [5, 8, 10])
def test_swap_refine_ends_at_a_one_swap_local_optimum(k_rows):
    """From random sets and from greedy prefixes of every size: the error never increases, the set keeps its size,
    and no exchange of a member for a non-member (all m (K - m) checked by brute force, q summed directly) lowers
    q = 1_S' C 1_S by more than the stopping tolerance. best_set is swap_refine of the greedy prefix."""
    rng = np.random.default_rng(10 + k_rows)
    for noise in (0.0, 0.3):
        for _ in range(5):
            C = small_epoch(rng, k_rows, noise)
            tol = 1e-10 * k_rows * np.abs(C).max()
            order, greedy_error = sets.greedy_set(C)
            for m in range(1, k_rows + 1):
                starts = [order[:m]] + list(np.flatnonzero(w) for w in sets.random_indicators(rng, 3, k_rows, m))
                for start in starts:
                    members, error = sets.swap_refine(C, start)
                    assert members.tolist() == sorted(set(members.tolist())) and members.size == m
                    assert m == k_rows or error <= sets.set_error(C, start) * (1 + 1e-12)
                    assert error == sets.set_error(C, members)
                    q = squared_sum(C, members)
                    outside = [j for j in range(k_rows) if j not in members]
                    for i in members:
                        for j in outside:
                            assert squared_sum(C, [*(k for k in members if k != i), j]) >= q - tol, (m, i, j)
                best, best_error = sets.best_set(C, m)
                refined, refined_error = sets.swap_refine(C, order[:m])
                assert best.tolist() == refined.tolist() and best_error == refined_error
                if m < k_rows:  # at m = K both are 0 to rounding
                    assert best_error <= greedy_error[m - 1] * (1 + 1e-12)


def test_swap_refine_inputs_ties_and_its_cap():
    """A mask and the same indices agree; ties take the lowest member, then the lowest non-member; the empty set,
    repeated or out-of-range members are refused; max_swaps stops the search with a RuntimeWarning (the set then
    being the better one it had reached)."""
    C = np.diag([5.0, 1.0, 1.0])  # from {0}: exchanging 0 for 1 or for 2 lowers q alike: 1 is taken
    assert sets.swap_refine(C, [0])[0].tolist() == [1]
    assert sets.best_set(np.eye(6) - 1 / 6, 3)[0].tolist() == [0, 1, 2]  # the simplex: no exchange helps
    rng = np.random.default_rng(4)
    C = small_epoch(rng, 9, 0.3)
    mask = np.arange(9) % 3 == 0
    by_mask, by_index = sets.swap_refine(C, mask), sets.swap_refine(C, np.flatnonzero(mask)[::-1])
    assert by_mask[0].tolist() == by_index[0].tolist() and by_mask[1] == by_index[1]
    assert sets.swap_refine(C, np.arange(9))[0].tolist() == list(range(9))  # m = K: nothing to exchange
    for bad in ([], [1, 1], [9], [-1], np.zeros(9, dtype=bool), np.ones(4, dtype=bool)):
        with pytest.raises(ValueError):
            sets.swap_refine(C, bad)
    start = sets.greedy_set(C, 5)[0]
    refined = sets.swap_refine(C, start)
    assert refined[1] < sets.set_error(C, start) and len(set(refined[0]) - set(start)) == 2  # two swaps here
    with pytest.warns(RuntimeWarning, match="stopped after 0 swaps"):
        capped = sets.swap_refine(C, start, max_swaps=0)
    assert capped[0].tolist() == sorted(start.tolist())
    with pytest.warns(RuntimeWarning, match="stopped after 1 swaps"):
        one = sets.swap_refine(C, start, max_swaps=1)
    assert refined[1] <= one[1] < capped[1]


def test_best_set_at_all_but_one_batch_drops_the_closest(shard):
    """At m = K - 1 the error is ||g_out - g_bar|| / (K - 1) and a swap compares two of those, so best_set leaves
    out exactly the closest batch (forward selection does not: the xfail above)."""
    _, G = shard
    C = sets.centred(G)
    members, error = sets.best_set(C, K - 1)
    assert members.tolist() == [k for k in range(K) if k != sets.closest(C, 1)[0]]
    assert error == pytest.approx(np.sqrt(np.min(np.diagonal(C))) / (K - 1), rel=1e-10)


# the worst ratio of best_set's error to the best set's over every m in 2..K - 2, measured on 20 seeded epochs
BEST_SET_RATIO = {(3, 0.0): 1.0, (5, 0.0): 2.76, (8, 0.0): 24.6, (3, 0.3): 1.0, (5, 0.3): 2.47, (8, 0.3): 2.68}


@pytest.mark.parametrize("k_rows, noise", list(BEST_SET_RATIO))
def test_best_set_against_every_set_on_small_epochs(k_rows, noise):
    """On K <= 8 (every subset enumerated), 20 seeded epochs each: best_set is the best set at m = 1 and m = K - 1
    (to rounding) and at m = K (error 0 to rounding), never better than the best set (a check of both), and no worse
    than forward selection. Elsewhere it is a 1-swap local optimum, not the optimum. Measured: the best set at 40 of
    40 (K = 3), 65 of 80 (K = 5) and 92 of 140 (K = 8) pairs (epoch, m < K) with deviations along two directions;
    40, 66 and 94 with noise 0.3 added. The worst ratios (BEST_SET_RATIO, all at m = 3): 2.76 (K = 5) and 24.5 (K = 8,
    where the best set is 0.7% of a batch's RMS distance and best_set 17%) along two directions, 2.46 and 2.67 with
    noise; forward selection's on the same epochs: 9.7 and 31, 5.7 and 6.4."""
    rng = np.random.default_rng(k_rows)
    worst = 1.0
    for _ in range(20):
        C = small_epoch(rng, k_rows, noise)
        unit = sets.rms_distance(C)
        _, greedy_error = sets.greedy_set(C)
        for m in range(1, k_rows + 1):
            members, error = sets.best_set(C, m)
            if m == k_rows:
                assert error <= 1e-7 * unit
                continue
            best = exhaustive_best(C, m)
            assert best * (1 - 1e-12) <= error <= greedy_error[m - 1] * (1 + 1e-12)
            if m in (1, k_rows - 1):
                assert error == pytest.approx(best, rel=1e-12)
            else:
                worst = max(worst, error / best)
    assert worst <= BEST_SET_RATIO[k_rows, noise]
    assert worst == pytest.approx(BEST_SET_RATIO[k_rows, noise], rel=0.01) or worst == 1.0


def test_best_set_against_random_sets(shard):
    """On the epoch where forward selection loses to the best of 300 random sets at 16 of 19 sizes (the xfail above,
    the same draws): best_set is no worse than forward selection at every size and loses at 7 (m = 3, 4, 8, 14, 15,
    16, 18), by at most 2.2x (m = 18: a 1-swap local optimum where leaving out another pair cancels better)."""
    _, G = shard
    C = sets.centred(G)
    _, greedy_error = sets.greedy_set(C)
    rng = np.random.default_rng(2)
    ratio = {}
    for m in range(1, K):
        error = sets.best_set(C, m)[1]
        assert error <= greedy_error[m - 1] * (1 + 1e-12)
        ratio[m] = error / sets.set_errors(C, sets.random_indicators(rng, 300, K, m)).min()
    assert [m for m, r in ratio.items() if r > 1 + 1e-12] == [3, 4, 8, 14, 15, 16, 18]
    assert max(ratio.values()) == pytest.approx(2.16, abs=0.01) and ratio[K - 1] == pytest.approx(1, rel=1e-10)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="single swaps stop at a local optimum: on this epoch the best of 300 random sets still beats best_set at "
    "7 of 19 sizes (by up to 2.2x, at m = 18)",
)
def test_best_set_is_no_worse_than_any_random_set(shard):
    """What a best-set search should give (as for forward selection above); best_set does not yet (strict xfail)."""
    _, G = shard
    C = sets.centred(G)
    rng = np.random.default_rng(2)
    for m in range(1, K):
        random_best = sets.set_errors(C, sets.random_indicators(rng, 300, K, m)).min()
        assert sets.best_set(C, m)[1] <= random_best * (1 + 1e-12), m


def test_epoch_sets_has_the_swapped_set(shard):
    """epoch_sets: a "swapped" row (best_set) beside "greedy" at every size, no worse than it."""
    _, G = shard
    C = sets.centred(G)
    rows = sets.epoch_sets(G, np.random.default_rng(0), draws=20)
    by = {(r["set"], r["m"]): r for r in rows}
    sizes = sets.set_sizes(K)
    assert sorted(m for s, m in by if s == "swapped") == sizes == sorted(m for s, m in by if s == "greedy")
    for m in sizes:
        swapped = by["swapped", m]
        assert swapped["error"] == sets.best_set(C, m)[1]
        assert swapped["relative_error"] == pytest.approx(swapped["error"] / sets.rms_distance(C), rel=1e-14)
        if m < K:  # at m = K both are 0 to rounding
            assert swapped["error"] <= by["greedy", m]["error"] * (1 + 1e-12)


def test_ties_pick_the_lowest_position():
    """The centred simplex (every batch alike): greedy and closest take the batches in order."""
    C = np.eye(6) - 1 / 6
    order, error = sets.greedy_set(C)
    assert list(order) == list(range(6))
    assert list(sets.closest(C, 4)) == [0, 1, 2, 3]
    C[3, 3] = C[5, 5] = C[0, 0] - 0.5  # two equal best batches: the lower one first
    assert sets.greedy_set(C, 1)[0][0] == 3 and list(sets.closest(C, 2)) == [3, 5]


@pytest.mark.parametrize("k_rows", [2, 5, 7])
def test_random_mean_square_is_the_mean_over_every_set(k_rows):
    """(K - m) / (m (K - 1)) tr(C) / K against the mean of the squared error over all C(K, m) sets; 0 at m = K."""
    rng = np.random.default_rng(k_rows)
    g = rng.standard_normal((k_rows, 30)) + rng.standard_normal(30)
    C = sets.centred(g @ g.T)
    for m in range(1, k_rows + 1):
        every = [sets.set_error(C, list(s)) ** 2 for s in itertools.combinations(range(k_rows), m)]
        assert sets.random_mean_square(C, m) == pytest.approx(np.mean(every), rel=1e-12, abs=1e-12 * np.trace(C))
    assert sets.random_mean_square(C, k_rows) == 0
    assert sets.random_mean_square(C, 1) == pytest.approx(sets.rms_distance(C) ** 2, rel=1e-14)
    for bad in (0, k_rows + 1):
        with pytest.raises(ValueError, match=f"a set of {bad} of {k_rows} batches"):
            sets.random_mean_square(C, bad)


@pytest.mark.parametrize("m", [1, 3, 9, 10])
def test_random_indicators_draw_m_distinct_batches_uniformly(m):
    """Every draw has exactly m members; each position is included in a Binomial(n, m / K) number of the n draws
    (all ten counts within 5 standard deviations: a false alarm once in about 10^5 runs); seeded."""
    n, k_rows = 20_000, 10
    W = sets.random_indicators(np.random.default_rng(m), n, k_rows, m)
    assert W.shape == (n, k_rows) and W.dtype == bool
    assert np.all(W.sum(1) == m)
    p = m / k_rows
    counts = W.sum(0)
    assert np.all(np.abs(counts - n * p) <= 5 * np.sqrt(n * p * (1 - p)) + 1e-9)
    assert np.array_equal(W, sets.random_indicators(np.random.default_rng(m), n, k_rows, m))


def eigen_rank(C):
    lam = np.linalg.eigvalsh(C)
    return lam.sum() ** 2 / (lam**2).sum()


def test_effective_rank():
    """1 for deviations along one line, K - 1 for the centred simplex, the eigenvalue formula on any C, per epoch on
    a stack, NaN where every batch equals g_bar; and the shard's, from G, as from its rows' deviations."""
    rng = np.random.default_rng(3)
    k_rows, n = 7, 40
    line = rng.standard_normal(n) + rng.standard_normal((k_rows, 1)) * rng.standard_normal(n)
    simplex = 3 * rng.standard_normal(n) + np.eye(k_rows, n)  # orthonormal deviations e_k from a common gradient
    mixed = rng.standard_normal((k_rows, n))
    Cs = np.stack([sets.centred(g @ g.T) for g in (line, simplex, mixed)])
    assert sets.effective_rank(Cs[0]) == pytest.approx(1, rel=1e-10)
    assert sets.effective_rank(Cs[1]) == pytest.approx(k_rows - 1, rel=1e-10)
    np.testing.assert_allclose(sets.effective_rank(Cs), [eigen_rank(C) for C in Cs], rtol=1e-10)
    assert 1 < sets.effective_rank(Cs[2]) < k_rows - 1
    same = np.ones((k_rows, n))
    assert np.isnan(sets.effective_rank(sets.centred(same @ same.T)))


def test_effective_rank_of_the_shard(shard):
    g, G = shard
    d = g - g.mean(0)
    assert sets.effective_rank(sets.centred(G)) == pytest.approx(eigen_rank(d @ d.T), rel=1e-10)


def test_set_sizes():
    assert sets.set_sizes(1) == [1]
    sizes = sets.set_sizes(195, extra=[48, 156, 0, 500])
    assert sizes[0] == 1 and sizes[-1] == 194 and 48 in sizes and 156 in sizes and sizes == sorted(set(sizes))
    assert 0 not in sizes and 500 not in sizes and 195 not in sets.set_sizes(195, extra=[195])  # all K: error 0
