"""The selection page's statistics (bestbatch.stats.analyse_selection): the exact sign-flip test over seeds,
intervals that invert it at Holm's level, the confirmatory and exploratory families, steps to a target
relative to standard SGD, runs that did not learn; and the calibration of the whole page on simulated null
experiments with grid-valued steps, ties and censoring, in the demo's layout and a paper-like one."""

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats as sps

from bestbatch import selection as sel
from bestbatch import selection_stats as st
from bestbatch import stats

ALPHA = 0.05
POLICIES = ["all", "drop_extremes", "phase1_upper_quartile", "measured_best"]


def clopper_pearson(k, n, level=0.95):
    """Exact binomial interval of a rate: the Monte-Carlo error of a simulated false-positive rate."""
    lo = sps.beta.ppf((1 - level) / 2, k, n - k + 1) if k else 0.0
    hi = sps.beta.ppf(1 - (1 - level) / 2, k + 1, n - k) if k < n else 1.0
    return float(lo), float(hi)


# --- the sign-flip test and its interval --------------------------------------------------------------


def test_identical_differences_on_the_grid_are_not_p_zero():
    # the reviewer's case: steps on a grid of 32, the same difference in all three seeds
    t = st.sign_flip_test(np.subtract([160, 192, 224], [192, 224, 256]))
    assert t.p == 0.25 == st.smallest_sign_flip_p(3) and t.mean == -32 and t.exact
    assert t.interval(ALPHA) == (-math.inf, math.inf)  # 3 seeds exclude nothing at 95%
    assert stats.holm([t.p] * 56)[0] == 1.0


def test_sign_flip_p_by_enumeration_with_ties_and_zeros():
    rng = np.random.default_rng(0)
    for _ in range(200):
        S = int(rng.integers(1, 8))
        d = rng.integers(-3, 4, size=S) * 12.0  # grid values, zeros and ties
        flips = np.array(list(itertools.product([-1, 1], repeat=S)))
        want = np.mean(np.abs(flips @ d) >= abs(d.sum()) - 1e-9)
        assert st.sign_flip_test(d).p == pytest.approx(want), d
    assert st.sign_flip_test([0.0, 0.0, 0.0]).p == 1.0
    assert st.sign_flip_test([-5.0] * 6).p == 2 / 64
    big = st.sign_flip_test(np.arange(1.0, 21.0), rng=1)  # 20 seeds: Monte-Carlo flips
    assert not big.exact and big.p == pytest.approx(1 / (1 + 2**16), rel=1) and big.p < 1e-3


def test_the_interval_is_every_shift_the_test_does_not_reject():
    rng = np.random.default_rng(1)
    for _ in range(60):
        S = int(rng.integers(2, 9))
        d = rng.integers(-6, 5, size=S) * 8.0 + rng.normal(0, 1, S) * (rng.random() < 0.5)
        t = st.sign_flip_test(d)
        for level in (0.05, 0.2, 0.5):
            lo, hi = t.interval(level)
            for delta in np.linspace(-80, 80, 321):
                if min(abs(delta - lo), abs(delta - hi)) < 1e-6:
                    continue
                assert (st.sign_flip_test(d - delta).p >= level) == (lo <= delta <= hi), (d, level, delta, lo, hi)


def test_holm_levels_agree_with_holm():
    rng = np.random.default_rng(2)
    for _ in range(300):
        p = rng.choice([rng.uniform(0, 0.06), 1 / 64, 1 / 8, rng.uniform()], size=int(rng.integers(1, 12)))
        adjusted, levels = stats.holm(p), stats.holm_levels(p, ALPHA)
        assert np.array_equal(p < levels, adjusted < ALPHA), (p, levels, adjusted)
        assert np.all(levels >= ALPHA / len(p) - 1e-15) and np.all(levels <= ALPHA)
    assert stats.holm_levels([0.01, 0.04, 0.03, 0.2], 0.05).tolist() == pytest.approx([0.0125, 1 / 60, 1 / 60, 1 / 60])


def test_how_many_seeds_a_verdict_needs():
    assert st.seeds_for_a_verdict(1, 0.05) == 6  # 2 / 2^6 = 0.031
    assert st.seeds_for_a_verdict(4, 0.05) == 8  # the demo's confirmatory family: 0.0078 < 0.0125
    assert st.seeds_for_a_verdict(12, 0.05) == 9
    for m in (1, 4, 12, 56):
        S = st.seeds_for_a_verdict(m, 0.05)
        assert st.smallest_sign_flip_p(S) < 0.05 / m <= st.smallest_sign_flip_p(S - 1)


# --- analyse_selection on hand-made curves ------------------------------------------------------------


def curve(steps, acc, phase=None):
    steps = np.asarray(steps)
    return SimpleNamespace(
        step=steps, phase=np.ones(len(steps), int) if phase is None else phase, test_acc=np.array(acc)
    )


def test_steps_to_target_are_relative_to_standard_sgd_and_censored():
    steps = [10, 20, 30, 40]
    curves = {
        ("m", 1.0, "shuffled"): {
            0: curve(steps, [0.3, 0.5, 0.6, 0.8]),  # target 0.9 x 0.8 = 0.72
            1: curve(steps, [0.1, 0.1, 0.1, 0.1]),  # did not learn: seed 1 has no target
        },
        ("m", 1.0, "all.intensity"): {0: curve(steps, [0.2, 0.3, 0.4, 0.5]), 1: curve(steps, [0.3, 0.5, 0.6, 0.7])},
        ("m", 1.0, "drop_extremes.intensity"): {
            0: curve(steps, [0.5, 0.75, 0.8, 0.8]),
            1: curve(steps, [0.1, 0.1, 0.1, 0.1]),
        },
    }
    plan = [
        ("drop_extremes.intensity", "all.intensity", "steps_to_target", "words"),
        ("drop_extremes.intensity", "all.intensity", "final_accuracy", None),
    ]
    per_arm, rows, families = st.analyse_selection(
        curves, plan, total_steps={1.0: 40}, target_fraction=0.9, alpha=ALPHA, n_classes=10, n_test=1000
    )
    steps_row, final_row = rows
    # seed 0: drop_extremes reaches 0.72 at step 20; all never does: 40 + 1. Seed 1 has no target.
    assert steps_row["n_seeds"] == 1 and steps_row["difference"] == 20 - 41 and steps_row["never_reached"] == 1
    assert steps_row["seeds_without_target"] == "1" and steps_row["family"] == "confirmatory"
    assert steps_row["verdict"] == st.TOO_FEW_SEEDS and steps_row["p"] == 1.0
    assert final_row["n_seeds"] == 2 and final_row["difference"] == pytest.approx(((0.8 - 0.5) + (0.1 - 0.7)) / 2)
    assert final_row["verdict"] == st.EXPLORATORY and final_row["family"] == "exploratory"
    arm = {r["arm"]: r for r in per_arm}
    assert arm["drop_extremes.intensity"]["not_learned"] == "1"
    assert arm["drop_extremes.intensity"]["final_accuracy"] == 0.8  # the learned seed only, the other named
    assert arm["shuffled"]["not_learned"] == "1" and arm["all.intensity"]["not_learned"] is None
    assert families["confirmatory"] == dict(n_tests=1, seeds_needed=6, n_seeds=[1])


# --- calibration of the whole page --------------------------------------------------------------------


def layout(policies, metrics, epochs, K, budgets, chunk_epochs, evaluations=20):
    arms = sel.arms(policies, metrics, sel.CONTROLS)
    T = {b: sel.total_steps(epochs, K, b) for b in budgets}
    every = {b: sel.evaluation_every(T[b], chunk_epochs * K, evaluations) for b in budgets}
    return arms, sel.comparison_plan(arms), T, every


DEMO = layout(POLICIES, ["intensity"], 7, 32, [1.0, 0.25], 7)  # config/demo.yaml
PAPER = layout(POLICIES, ["intensity", "color", "edges", "lpips"], 150, 195, [1.0, 0.25], 10)


def simulate_pages(lay, n_seeds, n_experiments, seed, **kwargs):
    """Share of simulated experiments with any significant row, per family (Holm within each)."""
    arms, plan, T, every = lay
    rng = np.random.default_rng(seed)
    hits = {"confirmatory": 0, "exploratory": 0, "either": 0}
    for _ in range(n_experiments):
        curves = st.simulate_selection(rng, arms, list(range(n_seeds)), list(T), T, every, **kwargs)
        _, rows, families = st.analyse_selection(
            curves, plan, total_steps=T, target_fraction=0.9, alpha=ALPHA, n_classes=10, n_test=512
        )
        found = {f: any(r["family"] == f and r["p_holm"] < ALPHA for r in rows) for f in families}
        verdicts = any(r["verdict"] in ("faster", "slower", "higher", "lower") for r in rows)
        assert verdicts == found["confirmatory"]  # only the confirmatory family prints verdicts
        for f in families:
            hits[f] += found[f]
        hits["either"] += found["confirmatory"] or found["exploratory"]
    return {k: v / n_experiments for k, v in hits.items()}, families


@pytest.mark.parametrize(
    "name, lay, n_seeds",
    [
        ("demo layout, the demo's 3 seeds", DEMO, 3),
        ("demo layout, 14 seeds (both families can reject)", DEMO, 14),
        ("paper-like layout, 10 seeds (the confirmatory family can reject)", PAPER, 10),
    ],
)
def test_null_selection_experiments_rarely_print_a_verdict(name, lay, n_seeds):
    """Every arm of a seed drawn from one distribution, with grid-valued steps to target (evaluations every
    few steps), accuracies on a grid of whole test images (ties), runs that never reach the target, and runs
    that fail to learn: the share of experiments with any Holm-significant row stays at or below alpha in
    each family (the upper end of the Clopper-Pearson interval of 200 experiments is ~0.06 at 0.03)."""
    n = 200
    rate, families = simulate_pages(lay, n_seeds, n, seed=n_seeds, fail=0.02)
    for family in ("confirmatory", "exploratory"):
        lo, hi = clopper_pearson(round(rate[family] * n), n)
        assert lo <= ALPHA, (name, family, rate, (lo, hi))  # not above alpha beyond Monte-Carlo error
        print(
            f"{name}: {family} family ({families[family]['n_tests']} tests), share with a significant row "
            f"{rate[family]:.3f} (95% CI {lo:.3f} to {hi:.3f})"
        )
    assert rate["confirmatory"] <= ALPHA + 0.02 and rate["exploratory"] <= ALPHA + 0.02, rate
    print(f"{name}: either family {rate['either']:.3f}")


def test_a_planted_speed_up_is_found_with_the_seeds_the_page_recommends():
    arms, plan, T, every = DEMO
    _, rows, families = st.analyse_selection(
        st.simulate_selection(np.random.default_rng(0), arms, [0, 1, 2], list(T), T, every),
        plan,
        total_steps=T,
        target_fraction=0.9,
        alpha=ALPHA,
        n_classes=10,
        n_test=512,
    )
    need = families["confirmatory"]["seeds_needed"]
    assert need == 8  # what the demo's page recommends: 4 confirmatory tests
    assert {r["verdict"] for r in rows if r["family"] == "confirmatory"} == {st.TOO_FEW_SEEDS}
    rng = np.random.default_rng(7)
    found = wrong = 0
    n = 40
    for _ in range(n):
        curves = st.simulate_selection(
            rng, arms, list(range(need)), list(T), T, every, speedup={"drop_extremes.intensity": 0.4}
        )
        _, rows, _ = st.analyse_selection(
            curves, plan, total_steps=T, target_fraction=0.9, alpha=ALPHA, n_classes=10, n_test=512
        )
        planted = [r for r in rows if r["arm"] == "drop_extremes.intensity" and r["family"] == "confirmatory"]
        found += any(r["verdict"] == "faster" for r in planted)
        wrong += any(r["verdict"] == "slower" for r in planted)
        for r in planted:  # the interval agrees with the verdict
            assert (r["verdict"] == "faster") == (r["hi"] < 0), r
    print(f"planted 2.5x speed-up, {need} seeds: found in {found}/{n} experiments")
    assert found / n >= 0.8 and wrong == 0
