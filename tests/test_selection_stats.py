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


# --- outcomes, targets and left-out seeds, by hand ---------------------------------------------------


def curve(steps, acc, phase=None):
    steps = np.asarray(steps)
    return SimpleNamespace(
        step=steps, phase=np.ones(len(steps), int) if phase is None else np.asarray(phase), test_acc=np.array(acc)
    )


def test_mean_accuracy_and_phase_end_accuracy_by_hand():
    assert st.mean_accuracy([10, 20, 30, 40], [0.2, 0.4, 0.6, 0.8]) == pytest.approx(0.5)  # a regular grid: the mean
    # an irregular last step: each evaluation stands for the steps since the one before
    assert st.mean_accuracy([8, 16, 20], [0.5, 1.0, 1.0]) == pytest.approx((0.5 * 8 + 8 + 4) / 20)
    # the same curve in half the steps, on the same grid, has a higher mean accuracy
    fast = np.minimum(1, np.arange(1, 11) / 5)
    assert st.mean_accuracy(np.arange(1, 11), fast) > st.mean_accuracy(np.arange(1, 11), fast / 2 + 0.0)
    assert st.phase_end_accuracy([1, 2, 3, 4], [1, 1, 2, 2], [0.1, 0.3, 0.5, 0.9]) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="increasing"):
        st.mean_accuracy([2, 1], [0.1, 0.2])


def test_the_runs_of_an_arm_at_once_are_the_runs_one_by_one():
    arms, _, lay = DEMO
    curves = step_decay_curves(np.random.default_rng(8), arms[:2], range(12), lay, fail=0.2)
    by_seed = dict(curves["sim", 0.25, arms[0]])
    by_seed[3] = SimpleNamespace(step=by_seed[3].step, phase=by_seed[3].phase, test_acc=by_seed[3].test_acc.copy())
    by_seed[3].test_acc[4] = np.nan
    quantities = set(st.OUTCOMES)
    at_once = st._runs(by_seed, 10, DEMO_TEST_IMAGES, quantities)
    for seed, c in by_seed.items():
        one = st._runs({seed: c}, 10, DEMO_TEST_IMAGES, quantities)[seed]
        assert at_once[seed].keys() == one.keys()
        for key, value in one.items():
            assert (
                at_once[seed][key] == pytest.approx(value, rel=1e-12, nan_ok=True)
                if isinstance(value, float)
                else (at_once[seed][key] == value)
            ), (seed, key)
    assert not at_once[3]["finite"] and sum(not r["learning"].learned for r in at_once.values() if r["finite"]) >= 1


def test_targets_are_cross_fitted_and_never_the_seeds_own():
    targets = st.cross_fitted_targets({0: 0.8, 1: 0.6, 3: 0.7}, 0.9)
    assert targets == pytest.approx({0: 0.9 * 0.65, 1: 0.9 * 0.75, 3: 0.9 * 0.7})
    assert np.isnan(st.cross_fitted_targets({5: 0.8}, 0.9)[5])  # one seed: no other run to take it from


def test_outcomes_targets_and_left_out_seeds_of_a_hand_made_experiment():
    steps = [10, 20, 30, 40]
    chance = [0.1, 0.1, 0.1, 0.1]
    curves = {
        ("m", 1.0, "shuffled"): {
            0: curve(steps, [0.3, 0.5, 0.6, 0.8]),
            1: curve(steps, [0.3, 0.5, 0.6, 0.6]),
            2: curve(steps, chance),  # did not learn: no other seed's target comes from it
        },
        ("m", 1.0, "all.intensity"): {
            0: curve(steps, [0.2, 0.3, 0.4, 0.5]),
            1: curve(steps, [0.3, 0.5, 0.6, 0.7]),
            2: curve(steps, [0.3, np.nan, 0.6, 0.7]),  # a non-finite accuracy: out of every comparison
        },
        ("m", 1.0, "drop_extremes.intensity"): {
            0: curve(steps, [0.5, 0.75, 0.8, 0.8]),
            1: curve(steps, chance),  # did not learn: out of the confirmatory comparison only
            2: curve(steps, [0.5, 0.75, 0.8, 0.8]),
        },
    }
    plan = [
        ("drop_extremes.intensity", "all.intensity", "mean_accuracy", "words"),
        ("drop_extremes.intensity", "all.intensity", "steps_to_target", None),
        ("drop_extremes.intensity", "all.intensity", "final_accuracy", None),
        ("all.intensity", "shuffled", "steps_to_target", None),
        ("drop_extremes.intensity", "shuffled", "steps_to_target", None),
    ]
    per_arm, rows, families = st.analyse_selection(
        curves, plan, total_steps={1.0: 40}, target_fraction=0.9, alpha=ALPHA, n_classes=10, n_test=1000
    )
    mean_row, steps_row, final_row, vs_shuffled, drop_vs_shuffled = rows
    # confirmatory: seed 2 has a NaN in all.intensity, seed 1 did not learn under drop_extremes: only seed 0 is left
    assert mean_row["family"] == "confirmatory" and mean_row["n_seeds"] == 1
    assert mean_row["difference"] == pytest.approx(np.mean([0.5, 0.75, 0.8, 0.8]) - np.mean([0.2, 0.3, 0.4, 0.5]))
    assert mean_row["seeds_left_out"] == (
        "1 (did not learn: drop_extremes.intensity); 2 (non-finite test accuracy: all.intensity)"
    )
    assert mean_row["verdict"] == st.TOO_FEW_SEEDS
    # targets: seed 0 from seed 1's shuffled run (0.9 x 0.6 = 0.54), seed 1 from seed 0's (0.72); seed 2's
    # own shuffled run did not learn, but its target comes from the others: 0.9 x 0.7 = 0.63
    # seed 0: drop_extremes reaches 0.54 at step 20 (0.5 < 0.54 at 10); all.intensity never (41)
    # seed 1: drop_extremes never reaches 0.72 (41), all.intensity never (41): it stays in (exploratory)
    assert steps_row["family"] == "exploratory" and steps_row["n_seeds"] == 2
    assert steps_row["difference"] == pytest.approx(((20 - 41) + (41 - 41)) / 2) and steps_row["never_reached"] == 3
    assert steps_row["seeds_left_out"] == "2 (non-finite test accuracy: all.intensity)"
    assert final_row["n_seeds"] == 2 and final_row["difference"] == pytest.approx(((0.8 - 0.5) + (0.1 - 0.7)) / 2)
    assert final_row["verdict"] == st.EXPLORATORY
    # all.intensity against shuffled: seed 0 never reaches 0.54 (41), shuffled at 30; seed 1: neither reaches 0.72
    assert vs_shuffled["n_seeds"] == 2 and vs_shuffled["difference"] == pytest.approx(((41 - 30) + (41 - 41)) / 2)
    # seed 2's own shuffled run did not learn, yet seed 2 has its target (0.63) and stays: drop_extremes reaches it
    # at 20, shuffled never (41). Seed 0: 20 against 30; seed 1: neither reaches 0.72.
    assert drop_vs_shuffled["n_seeds"] == 3 and drop_vs_shuffled["seeds_without_target"] is None
    assert drop_vs_shuffled["difference"] == pytest.approx(((20 - 30) + (41 - 41) + (20 - 41)) / 3)
    arm = {r["arm"]: r for r in per_arm}
    assert arm["drop_extremes.intensity"]["not_learned"] == "1" and arm["shuffled"]["not_learned"] == "2"
    assert arm["all.intensity"]["not_finite"] == "2" and arm["all.intensity"]["not_learned"] is None
    assert arm["drop_extremes.intensity"]["final_accuracy"] == 0.8  # the seeds that learned, the other named
    assert arm["shuffled"]["target"] == pytest.approx(np.mean([0.54, 0.72, 0.63]))
    assert families["confirmatory"] == dict(n_tests=1, seeds_needed=6, n_seeds=[1])


def test_non_finite_differences_are_refused_by_name():
    with pytest.raises(ValueError, match=r"2 of 4 paired differences are not finite .* positions \[1, 3\]"):
        st.sign_flip_test([1.0, np.nan, 2.0, np.inf])
    with pytest.raises(ValueError, match="non-empty"):
        st.sign_flip_test([])


# --- the simulated experiments: the demo's layout and a paper-like one ----------------------------------


def experiment(policies, metrics, epochs, K, budgets, milestones, chunk_epochs, evaluations=20):
    arms = sel.arms(policies, metrics, sel.CONTROLS)
    lay = sel.run_layout(epochs, K, budgets, milestones, chunk_epochs, evaluations)
    return arms, sel.comparison_plan(arms), lay


DEMO = experiment(POLICIES, ["intensity"], 7, 32, [1.0, 0.25], [3, 5], 7)  # config/demo.yaml
PAPER = experiment(POLICIES, ["intensity", "color", "edges", "lpips"], 150, 195, [1.0, 0.25], [50, 100], 10)
DEMO_TEST_IMAGES = 256


def smooth_curves(rng, arms, seeds, lay, **kwargs):
    """The smooth generator (one exponential per run, phases in thirds) on a layout."""
    T = {b: x["total_steps"] for b, x in lay.items()}
    every = {b: x["eval_every"] for b, x in lay.items()}
    return st.simulate_selection(rng, arms, seeds, list(lay), T, every, n_test=DEMO_TEST_IMAGES, **kwargs)


def step_decay_curves(rng, arms, seeds, lay, **kwargs):
    return st.simulate_step_decay(rng, arms, seeds, lay, n_test=DEMO_TEST_IMAGES, n_classes=10, **kwargs)


def verdict_rows(curves, plan, lay, intervals=False):
    """analyse_selection's comparison rows as the simulations need them (no per-arm rows)."""
    T = {b: x["total_steps"] for b, x in lay.items()}
    kwargs = dict(target_fraction=0.9, alpha=ALPHA, n_classes=10, n_test=DEMO_TEST_IMAGES)
    _, rows, families = st.analyse_selection(
        curves, plan, total_steps=T, describe_arms=False, intervals=intervals, **kwargs
    )
    return rows, families


def simulate_pages(exp, generator, n_seeds, n_experiments, seed, **kwargs):
    """Share of simulated experiments with any significant row, per family (Holm within each)."""
    arms, plan, lay = exp
    rng = np.random.default_rng(seed)
    hits = {"confirmatory": 0, "exploratory": 0, "either": 0}
    for _ in range(n_experiments):
        rows, families = verdict_rows(generator(rng, arms, list(range(n_seeds)), lay, **kwargs), plan, lay)
        found = {f: any(r["family"] == f and r["p_holm"] < ALPHA for r in rows) for f in families}
        verdicts = any(r["verdict"] in ("faster", "slower", "higher", "lower") for r in rows)
        assert verdicts == found["confirmatory"]  # only the confirmatory family prints verdicts
        for f in families:
            hits[f] += found[f]
        hits["either"] += found["confirmatory"] or found["exploratory"]
    return {k: v / n_experiments for k, v in hits.items()}, families


@pytest.mark.parametrize(
    "name, exp, generator, n_seeds",
    [
        ("demo layout, smooth curves, the demo's 3 seeds", DEMO, smooth_curves, 3),
        ("demo layout, smooth curves, 14 seeds (both families can reject)", DEMO, smooth_curves, 14),
        ("demo layout, step-decay curves, 11 seeds (the demo's recommended number)", DEMO, step_decay_curves, 11),
        ("paper-like layout, step-decay curves, 10 seeds", PAPER, step_decay_curves, 10),
    ],
)
def test_null_selection_experiments_rarely_print_a_verdict(name, exp, generator, n_seeds):
    """Every arm of a seed drawn from one distribution, with grid-valued steps to target (evaluations every
    few steps), accuracies on a grid of whole test images (ties), runs that never reach the target, runs that
    fail to learn, and (step-decay) heavy-tailed run effects and correlated evaluation noise: the share of
    experiments with any Holm-significant row is not above alpha beyond Monte-Carlo error in each family (the
    lower end of its Clopper-Pearson interval is at most alpha; the demo's 14 seeds on smooth curves gave
    0.041 confirmatory and 0.039 exploratory in 800 experiments)."""
    n = 200
    rate, families = simulate_pages(exp, generator, n_seeds, n, seed=n_seeds, fail=0.02)
    for family in ("confirmatory", "exploratory"):
        lo, hi = clopper_pearson(round(rate[family] * n), n)
        assert lo <= ALPHA, (name, family, rate, (lo, hi))  # not above alpha beyond Monte-Carlo error
        print(
            f"{name}: {family} family ({families[family]['n_tests']} tests), share with a significant row "
            f"{rate[family]:.3f} (95% CI {lo:.3f} to {hi:.3f})"
        )
    print(f"{name}: either family {rate['either']:.3f}")


# --- power on step-decay curves, at the seeds the page recommends ----------------------------------------


@pytest.fixture(scope="module")
def demo_recommendation():
    arms, plan, lay = DEMO
    return st.recommend_seeds(plan, lay, alpha=ALPHA, n_test=DEMO_TEST_IMAGES, n_classes=10)


def test_the_page_recommends_the_seeds_that_find_a_speed_up_on_step_decay_curves(demo_recommendation):
    """The issue's bar: on step-decay-shaped curves (lr phases in steps as the selection runs use them, seed
    effects on speed and final accuracy, heavy-tailed run effects, correlated evaluation noise in whole test
    images, 2% failed runs), the number of seeds the page recommends finds a 2x speed-up in >= 80% and a 1.5x
    one in >= 50% of experiments it was not chosen on (another rng), with the family-wise false-positive
    rate <= alpha on the same generator, and never the wrong way."""
    arms, plan, lay = DEMO
    rec = demo_recommendation
    S = rec["seeds"]
    assert rec["seeds_needed"] == 8 and S is not None and S >= rec["seeds_needed"]
    kwargs = dict(alpha=ALPHA, n_test=DEMO_TEST_IMAGES, n_classes=10, rng=2026)
    n = 200
    for speed, want in st.POWER_TARGETS:
        power = st.selection_power(plan, lay, S, speed, n_experiments=n, **kwargs)
        lo, hi = clopper_pearson(power["found"], n)
        print(f"{S} seeds (recommended), {speed:g}x speed-up: found in {power['found'] / n:.3f} ({lo:.3f} to {hi:.3f})")
        assert power["found"] / n >= want and power["wrong"] == 0, power
    null = st.selection_power(plan, lay, S, 1.0, n_experiments=400, **kwargs)
    lo, hi = clopper_pearson(null["any_verdict"], 400)
    print(f"{S} seeds, no speed-up: a verdict in {null['any_verdict'] / 400:.3f} ({lo:.3f} to {hi:.3f})")
    assert lo <= ALPHA and null["any_verdict"] / 400 <= ALPHA + 0.02, null
    # one seed fewer than recommended misses a target (the search's one step back)
    fewer = {
        speed: st.selection_power(plan, lay, S - 1, speed, n_experiments=200, **{**kwargs, "rng": 0})["found"] / 200
        for speed, _ in st.POWER_TARGETS
    }
    assert any(
        clopper_pearson(round(p * 200), 200, 0.90)[0] < want for p, (_, want) in zip(fewer.values(), st.POWER_TARGETS)
    ), fewer


def test_steps_to_target_cannot_see_the_speed_up_the_mean_accuracy_sees(demo_recommendation):
    """Why the confirmatory outcome is the mean accuracy: at the recommended seeds, the same 2x speed-up on the
    same curves is found far less often in steps to a 90% target (reached only after the first lr drop) and
    hardly ever in final accuracy."""
    arms, plan, lay = DEMO
    S = demo_recommendation["seeds"]
    confirmatory = [row for row in plan if row[3]]
    n = 100
    found = {}
    for q in ("mean_accuracy", "steps_to_target", "final_accuracy"):
        candidate = [(a, c, q, words) for a, c, _, words in confirmatory]
        found[q] = (
            st.selection_power(
                candidate, lay, S, 2.0, alpha=ALPHA, n_test=DEMO_TEST_IMAGES, n_classes=10, n_experiments=n
            )["found"]
            / n
        )
    print(f"2x speed-up, {S} seeds, found in: {found}")
    assert found["mean_accuracy"] >= found["steps_to_target"] + 0.2 and found["final_accuracy"] <= 0.2


def test_intervals_cover_the_true_difference_under_a_planted_speed_up(demo_recommendation):
    """The confirmatory intervals hold their printed level where there is an effect, not only under the null:
    the true mean difference in mean accuracy (from 20,000 simulated seeds) is inside the interval at Holm's
    level in about that share of rows."""
    arms, plan, lay = DEMO
    S = demo_recommendation["seeds"]
    confirmatory = [row for row in plan if row[3]]
    planted = confirmatory[0][0]
    for speed in (2.0, 1.5):
        big = step_decay_curves(
            np.random.default_rng(99), ["all.intensity", planted], range(20000), lay, speedup={planted: speed}
        )
        truth = {}
        for b in lay:
            by_arm = [
                st._runs(big["sim", b, arm], 10, DEMO_TEST_IMAGES, {"mean_accuracy"})
                for arm in (planted, "all.intensity")
            ]
            runs = [[r[s] for r in by_arm] for s in range(20000)]
            truth[b] = np.mean(
                [
                    x["mean_accuracy"] - y["mean_accuracy"]
                    for x, y in runs
                    if x["learning"].learned and y["learning"].learned
                ]
            )
        rng = np.random.default_rng(5)
        covered, levels = [], []
        for _ in range(150):
            curves = step_decay_curves(
                rng, ["all.intensity", planted, confirmatory[1][0]], range(S), lay, speedup={planted: speed}
            )
            rows, _ = verdict_rows(curves, confirmatory, lay, intervals=True)
            for r in rows:
                if r["arm"] == planted:
                    covered.append(r["lo"] <= truth[r["budget"]] <= r["hi"])
                    levels.append(r["level"])
        n, k, nominal = len(covered), int(np.sum(covered)), 1 - float(np.mean(levels))
        lo, hi = clopper_pearson(k, n)
        print(f"{speed:g}x speed-up: coverage {k / n:.3f} ({lo:.3f} to {hi:.3f}) of {n} rows, printed {nominal:.4f}")
        assert hi >= nominal, (speed, k, n, nominal)


def test_exchangeable_arms_are_not_biased_against_standard_sgd():
    """With targets cross-fitted from the other seeds' shuffled runs (and a target for every seed, whether or not
    its own shuffled run learned), an arm exchangeable with shuffled needs as many steps on average: the mean
    difference over 60 experiments of 40 seeds is within three standard errors of 0. Each seed's own shuffled
    run as its target, as before, favours shuffled on the same curves (the reviewer measured +0.037 T)."""
    arms, _, lay = DEMO
    T = {b: x["total_steps"] for b, x in lay.items()}
    compared = ("all.intensity", "drop_extremes.intensity")
    plan = [(arm, "shuffled", "steps_to_target", None) for arm in compared]
    rng = np.random.default_rng(40)
    cross, own = [], []
    for _ in range(60):
        curves = step_decay_curves(rng, ["shuffled", *compared], range(40), lay, fail=0.02)
        rows, _ = verdict_rows(curves, plan, lay)
        assert all(r["n_seeds"] == 40 for r in rows)  # every seed has a target: none is left out
        cross.append(np.mean([r["difference"] / T[r["budget"]] for r in rows]))
        steps = lambda c, target, b: np.nan_to_num(st.steps_to_target(c.step, c.test_acc, target), nan=T[b] + 1)  # noqa: E731
        own.append(
            np.mean(
                [
                    (steps(curves["sim", b, arm][s], t, b) - steps(curves["sim", b, "shuffled"][s], t, b)) / T[b]
                    for b in lay
                    for arm in compared
                    for s in range(40)
                    for t in [0.9 * curves["sim", b, "shuffled"][s].test_acc[-1]]
                ]
            )
        )
    (mean, se), (biased, se_own) = [(np.mean(v), np.std(v, ddof=1) / np.sqrt(len(v))) for v in (cross, own)]
    print(
        f"arm - shuffled in steps to target: cross-fitted {mean:+.4f} T (SE {se:.4f}); own target {biased:+.4f} T (SE {se_own:.4f})"
    )
    assert abs(mean) <= 3 * se
    assert biased > 5 * se_own
