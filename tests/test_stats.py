"""bestbatch.stats: units against hand-computed values, and the null calibrated on simulated studies.

The calibration tests are the proof that the statistics are right: on studies where batch position has no
effect but batches persist across epochs (as real ones do), a test at alpha = 0.05 must reject about 5% of
the time. Each simulation loop is seeded, so a result is the same on every run.
"""

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import REPO
from scipy import stats as sps

from bestbatch import stats as st

ALPHA = 0.05
PHASES = [(1, 1, 3, 0.1), (2, 4, 6, 0.01), (3, 7, 9, 0.001)]
DEMO_PHASES = [(1, 1, 3, 0.1), (2, 4, 5, 0.01), (3, 6, 7, 0.001)]  # config/demo.yaml: 7 epochs, milestones 3 and 5
METRICS = ["intensity", "color", "edges", "lpips", "random"]


# --- units --------------------------------------------------------------------------------------------


def test_zscore_rows_and_batch_profile_by_hand():
    D = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [30.0, 10.0, 20.0]])
    z = st.zscore_rows(D)
    c = 1 / np.sqrt(2 / 3)  # population std of (1, 2, 3) is sqrt(2/3)
    np.testing.assert_allclose(z, [[-c, 0, c], [0, 0, 0], [c, -c, 0]])
    np.testing.assert_allclose(st.batch_profile(D), [0, -c / 3, c / 3])
    # each epoch's scale and offset are divided out
    np.testing.assert_allclose(st.zscore_rows(D * [[1e-3], [7.0], [42.0]] + [[5], [1], [-2]]), z, atol=1e-12)


def test_regions_by_hand():
    names = lambda region, K: np.flatnonzero(st.region_mask(region, K)).tolist()
    assert names("upper_quartile", 10) == [8, 9]  # q = 0.8, 0.9 (0.7 is not >= 0.75)
    assert names("upper_quartile", 20) == list(range(15, 20))  # q = 0.75 exactly is in
    assert names("middle_80", 10) == list(range(1, 9))  # q = 0.1 in, q = 0.9 out
    assert names("middle_80", 20) == list(range(2, 18))
    assert names("outside_middle_80", 20) == [0, 1, 18, 19]
    assert names("extremes_10", 20) == [0, 1, 18, 19]
    K = 195  # the paper's batches
    assert [st.region_mask(r, K).sum() for r in ("upper_quartile", "middle_80", "extremes_10")] == [48, 156, 39]
    np.testing.assert_array_equal(st.region_mask("outside_middle_80", K), ~st.region_mask("middle_80", K))
    with pytest.raises(ValueError):
        st.region_mask("top_half", 10)


def test_position_bins_by_hand():
    assert st.position_bins(10, 4).tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert st.position_bins(10, 10).tolist() == list(range(10))
    counts = np.bincount(st.position_bins(32, 10))
    assert counts.sum() == 32 and set(counts) == {3, 4}
    assert np.all(np.diff(st.position_bins(195, 10)) >= 0)
    with pytest.raises(ValueError):
        st.position_bins(3, 4)


def test_positional_profile_seed_t_interval_by_hand():
    # seed 1: z = (-a, -b, b, a) every epoch, seed 2: (-a, b, -b, a); a = 3/sqrt(5), b = 1/sqrt(5)
    a, b = 3 / np.sqrt(5), 1 / np.sqrt(5)
    D1 = np.array([[0.0, 1, 2, 3], [0, 10, 20, 30]])
    D2 = np.array([[0.0, 2, 1, 3]])
    est = st.positional_profile([D1, D2], 2)
    per_seed = np.array([[-(a + b) / 2, (a + b) / 2], [-(a - b) / 2, (a - b) / 2]])
    half = sps.t.ppf(0.975, 1) * per_seed.std(0, ddof=1) / np.sqrt(2)
    np.testing.assert_allclose(est.mean, per_seed.mean(0))
    np.testing.assert_allclose(est.lo, per_seed.mean(0) - half)
    np.testing.assert_allclose(est.hi, per_seed.mean(0) + half)
    assert est.n_seeds == 2 and "t-interval over 2 seeds" in est.method
    c = st.contrast_estimate([D1, D2], [False, False, True, True])
    assert c.mean == pytest.approx(((a + b) + (a - b)) / 2)


def test_one_seed_profile_uses_the_epoch_bootstrap_and_says_it_understates_uncertainty():
    runs = st.simulate_study(np.random.default_rng(0), n_seeds=1, epochs=10, K=32)
    est = st.positional_profile([runs[0].distance], 10, rng=1)
    assert est.n_seeds == 1
    assert est.method.startswith("epoch bootstrap (one seed)") and "understates uncertainty" in est.method
    assert np.all(est.lo <= est.mean) and np.all(est.mean <= est.hi)
    again = st.positional_profile(runs[0].distance, 10, rng=1)  # a lone (E, K) array is one seed
    np.testing.assert_array_equal(est.lo, again.lo)


def test_spearman_matches_scipy_with_ties_and_is_nan_for_constants():
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.integers(0, 6, 25).astype(float)  # many ties
        y = rng.normal(size=25).round(1)
        assert st.spearman(x, y) == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
    Y = rng.normal(size=(7, 25))
    np.testing.assert_allclose(st.spearman(np.arange(25), Y), [sps.spearmanr(np.arange(25), y).statistic for y in Y])
    assert np.isnan(st.spearman(np.ones(5), np.arange(5)))
    assert st.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1)


def test_holm_against_a_hand_computed_example():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    np.testing.assert_allclose(st.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(st.holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    np.testing.assert_allclose(st.holm([0.01, np.nan, 0.02]), [0.02, np.nan, 0.02])  # nan is not a test
    p = np.random.default_rng(0).uniform(size=50) ** 3
    adj = st.holm(p)
    assert np.all(adj >= p) and np.all(adj <= 1) and np.all(np.diff(adj[np.argsort(p)]) >= 0)


def test_permutation_p_by_hand():
    null = [-3.0, 1.0, 2.0, -1.5]
    assert st.permutation_p(2.0, null) == pytest.approx(3 / 5)  # |-3|, |2| >= 2
    assert st.permutation_p(2.0, null, "less") == pytest.approx(5 / 5)
    assert st.permutation_p(2.0, null, "greater") == pytest.approx(2 / 5)
    assert np.isnan(st.permutation_p(np.nan, null))
    assert st.permutation_p(2.0, [np.inf, -np.inf, 1.0]) == pytest.approx(3 / 4)  # infinities are as extreme


def test_permutation_p_refuses_nan_null_values():
    # counting a NaN in the denominator but never as extreme gave 0.4 here; now it says what is wrong
    with pytest.raises(ValueError, match="3 of 4 null values are NaN"):
        st.permutation_p(1.0, [1.0, np.nan, np.nan, np.nan])
    assert np.isnan(st.permutation_p(np.nan, [1.0, np.nan]))  # an undefined statistic has no p, NaN null or not


# --- the studentized contrast -------------------------------------------------------------------------


def _welch(y, mask):
    """Welch's t of y[mask] against y[~mask] (scipy), a one-position group borrowing the other's variance."""
    a, b = y[mask], y[~mask]
    if len(a) > 1 and len(b) > 1:
        return sps.ttest_ind(a, b, equal_var=False).statistic
    v = (a if len(a) > 1 else b).var(ddof=1)
    return (a.mean() - b.mean()) / np.sqrt(v / len(a) + v / len(b))


@pytest.mark.parametrize("K, region", [(32, "extremes_10"), (50, "upper_quartile"), (4, "middle_80")])
def test_welch_contrast_against_scipy_for_any_shift(K, region):
    rng = np.random.default_rng(K)
    P = rng.standard_normal((3, K)) * rng.uniform(0.5, 2, K)
    mask = st.region_mask(region, K)
    perm = st.relabellings(rng, 60, 3, K)
    welch = st.WelchContrast(P.mean(0, keepdims=True), perm[:, :1], mask)
    assert welch.effect == pytest.approx(st.contrast(mask)(P))  # the effect printed is the plain contrast
    for delta in (0.0, 0.4, -1.3):
        y = P.mean(0) - delta * mask  # the data with the region shifted by delta, then relabelled
        want = [_welch(y, mask)] + [_welch(y[p], mask) for p in perm[:, 0]]
        np.testing.assert_allclose(welch.statistic(delta), want, rtol=1e-9)
        assert welch.p(delta) == st.permutation_p(want[0], want[1:])
    # per_seed: one relabelling per seed, t = mean of the seeds' contrasts / sqrt(sum of their Welch variances) / S
    perm = st.relabellings(rng, 20, 3, K, "per_seed")
    welch = st.WelchContrast(P, perm, mask)
    if K > 4:

        def t(Q):
            d = [q[mask].mean() - q[~mask].mean() for q in Q]
            v = [q[mask].var(ddof=1) / mask.sum() + q[~mask].var(ddof=1) / (~mask).sum() for q in Q]
            return np.mean(d) / np.sqrt(np.sum(v) / 9)

        Q = P - 0.7 * mask
        want = [t(Q)] + [t(np.stack([Q[s][p[s]] for s in range(3)])) for p in perm]
        np.testing.assert_allclose(welch.statistic(0.7), want, rtol=1e-9)


def test_welch_contrast_degenerate_cases():
    mask = np.array([True, True, False, False, False, False])
    perm = np.array([np.arange(6), [0, 2, 1, 3, 4, 5], [2, 3, 0, 1, 4, 5]])[:, None, :]  # (3, 1, 6)
    # constant profile: nothing to studentize by, so no p-value and no interval (as an undefined rho)
    flat = st.WelchContrast(np.zeros((1, 6)), perm, mask)
    assert np.isnan(flat.p()) and all(np.isnan(flat.interval(0.05)))
    # region and rest each constant but different: the observed t is undefined too
    assert np.isnan(st.WelchContrast(np.array([[1.0, 1, 0, 0, 0, 0]]), perm, mask).p())
    # a finite observed t, and a relabelling that puts the two 0s in the region and the 1s in the rest: both
    # groups constant, means different, so t = -inf, as extreme as anything (never NaN in the null)
    y = np.array([[0.0, 1, 0, 1, 1, 1]])
    welch = st.WelchContrast(y, perm, mask)
    t = welch.statistic()
    assert np.isfinite(t[0]) and t[1] == pytest.approx(t[0]) and t[2] == -np.inf and not np.isnan(t).any()
    assert welch.p() == st.permutation_p(t[0], t[1:]) == pytest.approx(4 / 4)
    with pytest.raises(ValueError):
        st.WelchContrast(y, perm, np.ones(6, bool))


def test_the_studentized_interval_inverts_its_own_test():
    """The ends are where p(delta) crosses the level, the estimate inside, and 0 outside exactly when p(0) < level."""
    rng = np.random.default_rng(8)
    seen = set()
    for trial in range(40):
        K = int(rng.integers(12, 80))
        mask = st.region_mask(("upper_quartile", "extremes_10", "middle_80")[trial % 3], K)
        P = rng.standard_normal((3, K)) * np.where(mask, 2.0, 1.0) + rng.normal(0, 0.6) * mask
        perm = st.relabellings(rng, 199, 3, K)
        welch = st.WelchContrast(P.mean(0, keepdims=True), perm[:, :1], mask)
        se = math.sqrt(welch.v0[0])
        for level in (0.2, 0.05, 0.01):
            lo, hi = welch.interval(level)
            p0 = welch.p(0.0)
            seen.add(p0 < level)
            assert lo <= welch.effect <= hi
            assert (not lo <= 0 <= hi) == (p0 < level), (lo, hi, p0, level)
            for end, side in ((lo, -1), (hi, 1)):
                assert welch.p(end) >= level and welch.p(end + side * 1e-3 * se) < level
    assert seen == {True, False}
    assert welch.interval(1 / 500) == (-math.inf, math.inf)  # 199 relabellings cannot reject at 0.2%


def test_simulated_nulls_with_unequal_spread_heavy_tails_and_ties():
    rng = np.random.default_rng(2)
    K = 195
    mask = st.region_mask("extremes_10", K)

    def sd_ratio(**kw):  # batch-to-batch SD of the seed-mean profile, region over rest
        y = np.concatenate(
            [st.seed_profiles([r.distance for r in st.simulate_study(rng, 3, 6, K, **kw)]).mean(0) for _ in range(40)]
        )
        region = np.tile(mask, 40)
        return y[region].std() / y[~region].std(), abs(y[region].mean() - y[~region].mean())

    ratio, shift = sd_ratio(spread=2.0)
    assert 1.7 < ratio < 2.3 and shift < 0.15  # more variable, not farther
    ratio, _ = sd_ratio(spread=2.0, spread_rest=True)
    assert 0.4 < ratio < 0.6
    assert 0.9 < sd_ratio()[0] < 1.1
    runs = st.simulate_study(rng, 3, 6, K, grid=0.5)
    assert all(len(np.unique(r.distance[0])) < 15 for r in runs)  # ties: a handful of values per epoch
    b = np.concatenate([st.simulate_study(rng, 1, 2, K, batch_df=3, persistence=1.0)[0].distance[0] for _ in range(50)])
    x = (b - 1) / 0.1
    assert x.std() == pytest.approx(1, abs=0.15) and sps.kurtosis(x) > 2  # heavy tails, unit variance


def test_the_permutation_keeps_each_batch_whole():
    Ds = [r.distance for r in st.simulate_study(np.random.default_rng(1), 3, 6, 12)]
    P = st.seed_profiles(Ds)
    shared = st.permuted_profiles(Ds, 50, 0, "shared")
    per_seed = st.permuted_profiles(Ds, 50, 0, "per_seed")
    naive = st.permuted_profiles(Ds, 50, 0, "per_epoch")
    assert shared.shape == per_seed.shape == naive.shape == (50, 3, 12)
    # shared and per_seed relabel whole batches (every epoch alike): each row is a permutation of the profile
    np.testing.assert_allclose(np.sort(shared, -1), np.broadcast_to(np.sort(P, -1), shared.shape))
    np.testing.assert_allclose(np.sort(per_seed, -1), np.broadcast_to(np.sort(P, -1), per_seed.shape))
    # shared: one relabelling for all seeds
    for r in range(50):
        perm = np.abs(shared[r, 0][:, None] - P[0][None, :]).argmin(1)
        np.testing.assert_allclose(shared[r], P[:, perm])
    # per_epoch relabels each epoch on its own: the permuted profiles are no longer the batches' profiles
    assert not np.allclose(np.sort(naive, -1), np.broadcast_to(np.sort(P, -1), naive.shape))


def test_verdict_and_sentence():
    assert st.verdict(-0.3, 0.01, "closer") == "supported"
    assert st.verdict(0.3, 0.01, "closer") == "contradicted"
    assert st.verdict(0.3, 0.01, "farther") == "supported"
    assert st.verdict(-0.3, 0.05, "closer") == "inconclusive"  # p must be below alpha
    assert st.verdict(np.nan, 0.01, "closer") == "inconclusive"
    assert (
        st.sentence(1, "intensity", "upper_quartile", -0.31, -0.50, -0.12, 0.05 / 12, 0.004, "supported", 3)
        == "In phase 1 the upper-quartile batches of intensity are 0.31 SD closer to the full gradient than the "
        "rest (99.58% interval 0.12 to 0.50, by inverting the studentized permutation test at Holm's level; "
        "3 seeds; Holm-adjusted p = 0.004): supported."
    )
    pooled = st.sentence(
        1, "intensity", "upper_quartile", -0.31, -0.5, -0.12, 0.05, 0.04, "supported", 3, test="permutation test"
    )
    assert "by inverting the permutation test at Holm's level" in pooled
    s = st.sentence(2, "edges", "extremes_10", 0.2, -0.1, 0.5, 0.05, 0.3, "inconclusive", 1)
    assert "0.20 SD farther from the full gradient than the middle 80%" in s and "(95% interval -0.10 to 0.50" in s
    assert "1 seed;" in s and s.endswith(": inconclusive.")
    s = st.sentence(2, "edges", "extremes_10", 0.2, -np.inf, np.inf, 0.05, 0.3, "inconclusive", 3)
    assert "the 95% interval is unbounded" in s
    assert st.sentence(1, "random", "upper_quartile", 0.1, -0.2, 0.4, 0.05, 0.9, "control", 3, control=True).endswith(
        "it shows how large such a pattern is by chance)."
    )
    note = "the network did not learn under this order in seeds 0, 1, 2 (test accuracy 0.10, 0.10, 0.10 over the last phase, chance 0.10)"
    s = st.sentence(1, "color", "outside_middle_80", *[np.nan] * 5, st.NOT_INTERPRETABLE, 0, note=note)
    assert (
        s == f"In phase 1 the batches outside the middle 80% of color could not be tested: {note}: not interpretable."
    )
    assert [st.fmt_level(x) for x in (0.05, 0.05 / 12, 0.01, 0.05 / 7)] == ["95%", "99.58%", "99%", "99.29%"]


# --- runs that did not learn --------------------------------------------------------------------------


def test_learning_status_is_a_fixed_margin_above_chance_at_every_test_set_size():
    at_chance = st.learning_status([0.10, 0.11, 0.10], n_classes=10, n_test=512)
    assert not at_chance.learned and at_chance.chance == 0.1
    assert at_chance.margin == pytest.approx(0.03 * 0.9)  # chance + 0.03 (1 - chance) = 0.127
    assert at_chance.se == pytest.approx(math.sqrt(0.09 / 512))  # describes the uncertainty, decides nothing
    assert "did not learn" in at_chance.describe() and "0.10" in at_chance.describe()
    for n_test in (256, 512, 10_000, 10**6):  # the same line whatever the size of the test set
        assert not st.learning_status([0.126], 10, n_test).learned and st.learning_status([0.127], 10, n_test).learned
        assert st.learning_status([0.15], 10, n_test).learned  # 0.15: learned on 256 images and on 10,000
    assert st.learning_status([0.04], 100, 10_000).learned and not st.learning_status([0.039], 100, 10_000).learned
    # the demo (256 test images, 10 classes): color stays at chance, edges reaches about 0.2
    assert not st.learning_status([0.10, 0.10], 10, 256).learned and st.learning_status([0.2, 0.21], 10, 256).learned
    assert "0.127 with 10 classes" in st.LEARNING_RULE and "whatever the size of the test set" in st.LEARNING_RULE
    with pytest.raises(ValueError):
        st.learning_status([], 10, 512)


def test_learning_status_false_flags_on_a_small_test_set_are_rare():
    """A run that learned a little (true accuracy 0.18 to 0.20) measured on the demo's 256 test images: the
    last phase's mean accuracy is one binomial draw of the test set (its epochs see the same images, the
    worst case). The old rule (3 binomial SEs of chance: 0.156 on 256 images) called it "not learned" in
    4-18% of test sets; the fixed margin (0.127) in about 1% at most. A run at chance is caught on 10,000."""
    rng = np.random.default_rng(0)
    n = 20_000
    for accuracy, at_most in ((0.18, 0.02), (0.19, 0.01), (0.20, 0.005)):
        measured = rng.binomial(256, accuracy, n) / 256
        flags = sum(not st.learning_status([a], 10, 256).learned for a in measured[:4000]) / 4000
        new = np.mean(measured < 0.1 + 0.03 * 0.9 - 1e-12)  # the rule, vectorised, on every draw
        old = np.mean(measured <= 0.1 + 3 * math.sqrt(0.09 / 256))
        print(f"true accuracy {accuracy}: flagged not learned {new:.4f} (the old rule {old:.3f})")
        assert abs(flags - new) < 0.01 and new <= at_most and old >= 0.04
    at_chance = rng.binomial(10_000, 0.1, 2000) / 10_000
    assert not any(st.learning_status([a], 10, 10_000).learned for a in at_chance)


def test_the_module_does_not_import_torch():
    code = "import sys, bestbatch.stats; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(REPO / "src")}
    )
    assert out.stdout.strip() == "False"


# --- calibration: the proof that the null is right ----------------------------------------------------


def _null_rejections(n_studies, schemes, shared=0.0, seed=0, n_perm=500):
    """Share of pure-null studies (3 seeds, 10 epochs, 32 batches, persistence 0.8) each test rejects at ALPHA."""
    rng = np.random.default_rng(seed)
    contrast = st.contrast(st.region_mask("upper_quartile", 32))
    hits = {(scheme, name): 0 for scheme in schemes for name in ("contrast", "rho")}
    for _ in range(n_studies):
        Ds = [r.distance for r in st.simulate_study(rng, 3, 10, 32, persistence=0.8, shared=shared)]
        P = st.seed_profiles(Ds)
        for scheme in schemes:
            null = st.permuted_profiles(Ds, n_perm, rng, scheme)
            hits[scheme, "contrast"] += st.permutation_p(contrast(P), contrast(null)) < ALPHA
            hits[scheme, "rho"] += st.permutation_p(st.position_rho(P), st.position_rho(null)) < ALPHA
    return {key: n / n_studies for key, n in hits.items()}


def test_null_is_calibrated_and_the_naive_per_epoch_null_is_not():
    rate = _null_rejections(400, ["shared"])
    assert 0.02 <= rate["shared", "contrast"] <= 0.08, rate
    assert 0.02 <= rate["shared", "rho"] <= 0.08, rate
    naive = _null_rejections(200, ["per_epoch"], seed=1)
    # relabelling every epoch on its own forgets that a close batch stays close: far too many rejections
    assert naive["per_epoch", "contrast"] > 0.2, naive
    print("null rejection rates", rate, "naive", naive)


def test_with_batches_shared_by_the_seeds_only_the_shared_relabelling_is_calibrated():
    # a deterministic ordering puts the same images in batch k of every seed: part of each batch's
    # persistent effect is common to the seeds, and relabelling each seed on its own under-disperses the null
    rate = _null_rejections(300, ["shared", "per_seed"], shared=0.7, seed=2)
    assert 0.02 <= rate["shared", "contrast"] <= 0.08, rate
    assert rate["per_seed", "contrast"] > 0.12, rate
    print("shared batches", rate)


def test_seed_interval_covers_and_the_one_seed_bootstrap_does_not():
    rng = np.random.default_rng(4)
    mask = st.region_mask("upper_quartile", 32)
    cover3 = cover1 = 0
    n = 400
    for _ in range(n):
        Ds = [r.distance for r in st.simulate_study(rng, 3, 10, 32)]
        est = st.contrast_estimate(Ds, mask)  # the true contrast is 0
        cover3 += est.lo <= 0 <= est.hi
        one = st.contrast_estimate(Ds[:1], mask, rng=rng, n_boot=500)
        cover1 += one.lo <= 0 <= one.hi
    assert 0.92 <= cover3 / n <= 0.98
    assert cover1 / n < 0.6  # what the one-seed method's warning says
    print("coverage of 95% intervals: 3 seeds", cover3 / n, "one seed, epoch bootstrap", cover1 / n)


# --- power --------------------------------------------------------------------------------------------


def _verdicts(effect, n_sims=50, K=96, seed=5):
    rng = np.random.default_rng(seed)
    mask = st.region_mask("upper_quartile", K)
    out, effects = [], []
    for _ in range(n_sims):
        Ds = [r.distance for r in st.simulate_study(rng, 3, 10, K, effect=effect, region="upper_quartile")]
        test = st.permutation_test(Ds, st.contrast(mask), n_perm=500, rng=rng)
        out.append(st.verdict(test.statistic, test.p, "closer"))
        effects.append(test.statistic)
    return out, float(np.mean(effects))


def test_a_planted_effect_is_found_and_its_opposite_contradicts_the_claim():
    closer, mean_effect = _verdicts(-0.5)
    assert closer.count("supported") / len(closer) >= 0.8, closer
    assert closer.count("contradicted") == 0
    assert mean_effect == pytest.approx(-0.5 / np.sqrt(1 + 0.25 * 0.75 * 0.25), abs=0.08)  # z shrinks it slightly
    farther, _ = _verdicts(+0.5, seed=6)
    assert farther.count("contradicted") / len(farther) >= 0.8, farther
    assert farther.count("supported") == 0
    print(
        "power at 0.5 SD, 3 seeds, 96 batches: supported",
        closer.count("supported") / len(closer),
        "contradicted (opposite effect)",
        farther.count("contradicted") / len(farther),
    )


# --- the whole claims page under the null ---------------------------------------------------------------


def _clopper_pearson(k, n):
    """Exact 95% interval of a rate k / n: the Monte-Carlo error of a simulated false-positive rate."""
    return (
        float(sps.beta.ppf(0.025, k, n - k + 1)) if k else 0.0,
        float(sps.beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0,
    )


def _null_pages(n_studies, seed, n_perm=999, tests=(True,), effect=0.0, **null):
    """Studies in the demo's shape (5 orderings, 3 seeds, 7 epochs in phases of 3, 2 and 2, 32 batches,
    persistence 0.8, batch effects shared by the seeds as with a deterministic order) through analyse_study,
    once per test in `tests` (studentized or not) on the same studies. `null`: simulate_study's options
    for nulls the test was not designed for (unequal spread, heavy tails, ties); `effect`: a phase-1 shift
    of intensity's upper quartile (power; 0: a null). Returns {studentized: counts}."""
    rng = np.random.default_rng(seed)
    early = np.arange(1, 8) <= 3
    keys = ("confirmatory", "exploratory", "verdict", "covered", "covered_95", "rows", "found")
    out = {test: dict.fromkeys(keys, 0) for test in tests}
    for i in range(n_studies):
        matrices = {
            ("m", x): st.simulate_study(
                rng,
                3,
                7,
                32,
                persistence=0.8,
                shared=0.7,
                effect=-effect if x == "intensity" else 0.0,
                region="upper_quartile",
                effect_epochs=early,
                **null,
            )
            for x in METRICS
        }
        for test in tests:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # with 499 relabellings the exploratory family cannot reach alpha
                rows = st.analyse_study(matrices, DEMO_PHASES, METRICS, n_perm=n_perm, seed=i, studentized=test)
            o = out[test]
            for family in ("confirmatory", "exploratory"):
                o[family] += any(r["family"] == family and r["p_holm"] < 0.05 for r in rows)
            o["verdict"] += any(r["verdict"] in ("supported", "contradicted") for r in rows)
            for r in rows:
                if r["kind"] in ("claim", "control"):
                    o["rows"] += 1
                    o["covered"] += r["ci_lo"] <= 0 <= r["ci_hi"]
                if (r["kind"], r["metric"], r["phase"]) == ("claim", "intensity", 1):
                    o["found"] += r["verdict"] == "supported"
        # the studentized test's inversion itself at 95% (no Holm): covers the true shift, 0, about 95% of the time
        if not effect:
            D = [run.distance[:3] for run in matrices["m", "intensity"]]
            perm = st.relabellings(rng, n_perm, 3, 32)
            welch = st.WelchContrast(
                st.seed_profiles(D).mean(0, keepdims=True), perm[:, :1], st.region_mask("upper_quartile", 32)
            )
            lo, hi = welch.interval(0.05)
            for o in out.values():
                o["covered_95"] += lo <= 0 <= hi
    return out


def test_the_claims_page_is_calibrated_and_its_intervals_cover():
    """200 null studies of the demo's shape: the share with any supported or contradicted verdict (the
    confirmatory family after Holm) is at most alpha within Monte-Carlo error, and so is the exploratory
    family's on its own; the intervals printed beside the tests cover the true effect (0) in >= 0.93 of
    the rows, and the plain 95% inversion of the studentized test in about 95% of the studies."""
    n = 200
    out = _null_pages(n, seed=11)[True]
    for family in ("confirmatory", "exploratory"):
        lo, hi = _clopper_pearson(out[family], n)
        print(f"claims page, {family} family: {out[family] / n:.3f} of null studies (95% CI {lo:.3f} to {hi:.3f})")
        assert lo <= 0.05, out
    assert out["verdict"] == out["confirmatory"]  # verdicts come from the confirmatory family only
    coverage = out["covered"] / out["rows"]
    print(f"coverage of the printed intervals {coverage:.3f}; of the 95% inversion {out['covered_95'] / n:.3f}")
    assert coverage >= 0.93
    assert 0.9 <= out["covered_95"] / n <= 0.99


NULLS_NOT_DESIGNED_FOR = {  # simulate_study's options: nothing is closer or farther on average in any of them
    "extremes 1.5x SD": dict(spread=1.5),
    "rest 1.5x SD": dict(spread=1.5, spread_rest=True),
    "rest 2x SD": dict(spread=2.0, spread_rest=True),
    "t3 batch effects": dict(batch_df=3),
    "ties (grid 0.5 SD)": dict(grid=0.5),
}


@pytest.mark.parametrize("name", list(NULLS_NOT_DESIGNED_FOR))
def test_the_claims_page_is_calibrated_under_nulls_it_was_not_designed_for(name):
    """200 studies of the demo's shape per null, 499 relabellings (Holm can still reach alpha over the 12
    confirmatory tests: 12 / 500 = 0.024): at most alpha of them get a supported or contradicted verdict
    anywhere on the page, within Monte-Carlo error, and the printed intervals still cover 0."""
    n = 200
    out = _null_pages(n, seed=31, n_perm=499, **NULLS_NOT_DESIGNED_FOR[name])[True]
    lo, hi = _clopper_pearson(out["verdict"], n)
    coverage = out["covered"] / out["rows"]
    print(
        f"{name}: a verdict in {out['verdict'] / n:.3f} of null studies (95% CI {lo:.3f} to {hi:.3f}); coverage {coverage:.3f}"
    )
    assert lo <= 0.05, out
    assert coverage >= 0.93


def test_unequal_spread_fools_the_pooled_contrast_and_not_the_studentized_one():
    """The reviewer's null: the extreme 10% of positions are no farther on average but twice as variable
    from batch to batch. Relabelling treats positions as exchangeable, which that breaks (Behrens-Fisher):
    the pooled contrast (the test before) prints a verdict far more often than alpha; the studentized one,
    on the same 200 studies, does not."""
    n = 200
    out = _null_pages(n, seed=41, n_perm=499, tests=(True, False), spread=2.0)
    for test, words in ((True, "studentized"), (False, "pooled")):
        lo, hi = _clopper_pearson(out[test]["verdict"], n)
        print(
            f"extremes 2x SD, {words}: a verdict in {out[test]['verdict'] / n:.3f} of null studies (95% CI {lo:.3f} to {hi:.3f})"
        )
    assert _clopper_pearson(out[True]["verdict"], n)[0] <= 0.05, out
    assert _clopper_pearson(out[False]["verdict"], n)[0] > 0.05, out  # the failure the studentized test fixes
    assert out[True]["covered"] / out[True]["rows"] >= 0.93


def test_the_studentized_test_keeps_the_pooled_tests_power():
    """A 1 SD shift planted in phase 1's upper quartile of intensity, 150 studies of the demo's shape, both
    tests on the same studies: the studentized test finds it (supported) about as often as the pooled one.
    With 8 of 32 batches in the region Welch's variance estimate costs a little; benchmarks/power.py has the
    paper's shape (48 of 195), where it costs less."""
    n = 150
    out = _null_pages(n, seed=51, n_perm=499, tests=(True, False), effect=1.0)
    found = {test: out[test]["found"] / n for test in out}
    print(f"power at 1 SD, demo shape: studentized {found[True]:.3f}, pooled {found[False]:.3f}")
    assert found[True] >= 0.2 and found[False] - found[True] <= 0.1, found


def test_a_run_that_did_not_learn_is_named_and_kept_out_of_the_confirmatory_family():
    matrices = _study(models=("small_cnn",), seed=3)
    chance = st.learning_status([0.1] * 3, 10, 512)
    learned = st.learning_status([0.6] * 3, 10, 512)
    # color: no seed learned; edges: seed 2 did not learn
    matrices["small_cnn", "color"] = [
        r._replace(seed=s, learning=chance) for s, r in enumerate(matrices["small_cnn", "color"])
    ]
    matrices["small_cnn", "edges"] = [
        r._replace(seed=s, learning=chance if s == 2 else learned) for s, r in enumerate(matrices["small_cnn", "edges"])
    ]
    rows = st.analyse_study(matrices, PHASES, METRICS, n_perm=999, seed=0)
    color = [r for r in rows if r["kind"] == "claim" and r["metric"] == "color"]
    assert color and all(r["verdict"] == st.NOT_INTERPRETABLE and r["family"] is None for r in color)
    assert all("did not learn" in r["sentence"] and "chance 0.10" in r["sentence"] for r in color)
    assert not [r for r in rows if r["metric"] == "color" and r["kind"] in ("association", "profile")]
    edges = [r for r in rows if r["kind"] == "claim" and r["metric"] == "edges"]
    assert all(r["n_seeds"] == 2 and r["family"] == "confirmatory" and "seed 2" in r["sentence"] for r in edges)
    confirmatory = [r for r in rows if r["family"] == "confirmatory"]
    np.testing.assert_allclose([r["p_holm"] for r in confirmatory], st.holm([r["p"] for r in confirmatory]))
    assert len(color) == 3 and len(confirmatory) == 12 - 3  # colour: phase 1's claim and the late extremes (2, 3)
    summary = {r["claim"]: r for r in rows if r["kind"] == "summary"}
    assert summary["early-color-outside-middle-80"]["verdict"] == st.NOT_INTERPRETABLE
    assert "not interpretable" in summary["late-extremes-poor"]["sentence"]
    assert summary["late-extremes-poor"]["verdict"] != "supported"


# --- a whole study ------------------------------------------------------------------------------------


def _study(models=("small_cnn", "resnet18"), K=32, seed=0):
    rng = np.random.default_rng(seed)
    early = np.arange(1, 10) <= 3
    return {
        (model, metric): st.simulate_study(
            rng,
            3,
            9,
            K,
            region="upper_quartile",
            effect_epochs=early,
            effect=-1.5 if (model, metric) == ("small_cnn", "intensity") else 0.0,
        )
        for model in models
        for metric in METRICS
    }


def test_analyse_study_end_to_end():
    rows = st.analyse_study(_study(), PHASES, METRICS, n_perm=4999, seed=0)
    kind = lambda k: [r for r in rows if r["kind"] == k]
    expected_claims = {(c.id, metric, phase) for c in st.PAPER_CLAIMS for metric in c.metrics for phase in c.phases}
    assert len(expected_claims) == 12
    for model in ("small_cnn", "resnet18"):
        got = [(r["claim"], r["metric"], r["phase"]) for r in kind("claim") if r["model"] == model]
        assert sorted(got) == sorted(expected_claims)
        controls = [r for r in kind("control") if r["model"] == model]
        assert sorted((r["claim"], r["phase"]) for r in controls) == sorted(
            (c.id, phase) for c in st.PAPER_CLAIMS for phase in c.phases
        )
        assert all(
            r["metric"] == "random" and r["control"] and r["verdict"] == "control" and "control" in r["sentence"]
            for r in controls
        )
        assert len([r for r in kind("association") if r["model"] == model]) == 5 * 3 * 2
        assert len([r for r in kind("profile") if r["model"] == model]) == 5 * 3 * (10 + 4)
    # two families, each Holm-corrected on its own: the claims (confirmatory), controls and associations
    confirmatory = kind("claim")
    exploratory = kind("control") + kind("association")
    assert {r["family"] for r in confirmatory} == {"confirmatory"} and {r["family"] for r in exploratory} == {
        "exploratory"
    }
    for family in (confirmatory, exploratory):
        np.testing.assert_allclose([r["p_holm"] for r in family], st.holm([r["p"] for r in family]))
        np.testing.assert_allclose([r["level"] for r in family], st.holm_levels([r["p"] for r in family], 0.05))
    assert all(r["p_holm"] >= r["p"] for r in confirmatory + exploratory)
    assert {r["verdict"] for r in kind("claim")} <= set(st.VERDICTS)
    for r in kind("claim") + kind("control"):
        if r["kind"] == "claim":
            assert r["verdict"] == st.verdict(r["effect"], r["p_holm"], r["expected"])
            assert r["sentence"].endswith(f": {r['verdict']}.")
        assert r["n_seeds"] == 3 and "3 seed" in r["method"] and "3 seeds" in r["sentence"]
        assert r["ci_lo"] <= r["effect"] <= r["ci_hi"]
        # the interval beside a p-value agrees with it: 0 is outside exactly when Holm's p is below alpha
        assert (not r["ci_lo"] <= 0 <= r["ci_hi"]) == (r["p_holm"] < 0.05), r["sentence"]
        assert st.fmt_level(r["level"]) in r["sentence"]
    for r in kind("summary"):
        verdicts = [c["verdict"] for c in kind("claim") if c["model"] == r["model"] and c["claim"] == r["claim"]]
        want = (
            "supported"
            if all(v == "supported" for v in verdicts)
            else "contradicted"
            if "contradicted" in verdicts
            else "inconclusive"
        )
        assert r["verdict"] == want
    assert len(kind("summary")) == 2 * len(st.PAPER_CLAIMS)
    planted = [r for r in kind("claim") if (r["model"], r["metric"], r["phase"]) == ("small_cnn", "intensity", 1)]
    assert planted[0]["verdict"] == "supported", planted[0]["sentence"]


def test_analyse_study_is_deterministic_and_order_free():
    matrices = _study(models=("small_cnn",), K=16, seed=1)
    kwargs = dict(n_perm=299, seed=7)
    with pytest.warns(UserWarning, match="nothing can be significant"):
        a = st.analyse_study(matrices, PHASES, METRICS, **kwargs)
        b = st.analyse_study(dict(reversed(matrices.items())), PHASES, METRICS, **kwargs)
        c = st.analyse_study(matrices, PHASES, METRICS, n_perm=299, seed=8)
    key = lambda r: (
        r["kind"],
        r["claim"] or "",
        r["metric"] or "",
        r["phase"] or 0,
        r["statistic"] or "",
        r["bin"] or 0,
    )
    for ra, rb in zip(sorted(a, key=key), sorted(b, key=key)):
        assert ra.keys() == rb.keys()
        for field in ra:
            va, vb = ra[field], rb[field]
            assert va == vb or (isinstance(va, float) and np.isnan(va) and np.isnan(vb)), (field, va, vb)
    assert [r["p"] for r in a if r["kind"] == "claim"] != [r["p"] for r in c if r["kind"] == "claim"]
