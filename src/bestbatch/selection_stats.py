"""The selection page's statistics: do the "best" batches train faster?

Runs of one (model, budget, seed) are paired: every arm starts from the seed's init.pt, and the seed is the
unit of replication. A comparison is an exact sign-flip test over seeds of the paired differences
(policy - control); its interval inverts the same test at the level Holm decides it at. Split from
bestbatch.stats (the claims page's statistics), whose multiplicity and interval helpers it shares.
"""

import functools
import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from .stats import holm, holm_levels, inverted_interval, learning_status, t_interval

# --- paired comparisons over seeds: the exact sign-flip test ---------------------------------------------
# Two arms of the selection experiment trained from the same seed form a pair; the seed is the unit of
# replication. Under the null that the two arms are exchangeable within a seed, each seed's difference is
# as likely to have either sign, so the 2^S sign flips of the differences are equally likely: the test is
# exact for any distribution, ties and grid values included (a zero difference flips to itself and counts
# as extreme). Its smallest two-sided p is 2 / 2^S: 0.25 with 3 seeds.

EXACT_FLIPS = 16  # up to 2^16 sign vectors enumerated; more seeds: Monte-Carlo flips


@dataclass
class SignFlip:
    """A paired sign-flip test of the mean difference; `a` and `b` describe it for inverted_interval."""

    mean: float
    p: float
    a: np.ndarray
    b: np.ndarray
    offset: int
    denominator: int
    exact: bool

    def interval(self, level):
        return inverted_interval(self.mean, self.a, self.b, level, self.offset, self.denominator)


@functools.lru_cache(maxsize=EXACT_FLIPS)
def _all_flips(S):
    """(2^S, S) every sign vector, as float (read-only: shared by the calls)."""
    flips = (1 - 2 * ((np.arange(2**S)[:, None] >> np.arange(S)) & 1)).astype(float)
    flips.setflags(write=False)
    return flips


def sign_flip_test(differences, rng=None, n_random=2**16):
    """Two-sided exact sign-flip test of mean(differences) = 0 (every one of the 2^S sign vectors for
    S <= EXACT_FLIPS, else n_random random ones plus the observed: p = (1 + hits) / (1 + n_random))."""
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError(f"sign_flip_test: need a 1-D array of finite paired differences, got {d}")
    S = d.size
    if S <= EXACT_FLIPS:
        flips, offset, exact = _all_flips(S), 0, True
    else:
        flips = np.random.default_rng(rng).choice([-1, 1], size=(n_random, S))
        offset, exact = 1, False
    a, b, t = flips @ d / S, flips.sum(1) / S, float(d.mean())
    tol = 1e-10 * max(1.0, abs(t))
    hits = int(np.count_nonzero(np.abs(a) >= abs(t) - tol))
    denominator = flips.shape[0] + offset
    return SignFlip(t, (offset + hits) / denominator, a, b, offset, denominator, exact)


def smallest_sign_flip_p(n_seeds):
    """The smallest two-sided p an exact sign-flip test over n_seeds can give: 2 / 2^S."""
    return 2.0 ** (1 - n_seeds)


def seeds_for_a_verdict(n_tests, alpha):
    """The fewest seeds at which a sign-flip test can pass Holm's first step (p < alpha / n_tests): with
    that many, a verdict needs every seed's difference to have the same sign; more seeds give power."""
    S = 1
    while not smallest_sign_flip_p(S) < alpha / max(n_tests, 1):
        S += 1
    return S


# --- the selection experiment: do the "best" batches train faster? ---------------------------------------
# Runs of one (model, budget, seed) are paired: every arm starts from the seed's init.pt. A comparison is a
# paired exact sign-flip test over seeds of policy - control, in steps to a target accuracy or in final
# accuracy. The comparisons that test the paper's recommendations (each policy against the same order with
# every batch, in steps to target) are the confirmatory family, Holm-corrected on their own; every other
# comparison is exploratory, Holm-corrected within its family, and prints no verdict. Intervals invert the
# sign-flip test at the level Holm decides it at.

SELECTION_WORDS = {"steps_to_target": ("faster", "slower"), "final_accuracy": ("higher", "lower")}
NO_DIFFERENCE = "no detectable difference"
TOO_FEW_SEEDS = "too few seeds"
EXPLORATORY = "exploratory"


def steps_to_target(steps, accuracies, target):
    """The first evaluated step whose accuracy reaches `target` (>=); nan if none does (or target is nan)."""
    steps, acc = np.asarray(steps, dtype=float), np.asarray(accuracies, dtype=float)
    if steps.shape != acc.shape or steps.ndim != 1:
        raise ValueError(f"steps and accuracies must be 1-D and of one length, got {steps.shape}, {acc.shape}")
    if np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be increasing")
    hit = np.flatnonzero(acc >= target)
    return float(steps[hit[0]]) if hit.size else math.nan


def _last_phase(curve):
    phase = np.asarray(curve.phase)
    return np.asarray(curve.test_acc, dtype=float)[phase == phase.max()]


def analyse_selection(
    curves, plan, *, total_steps, target_fraction, alpha, n_classes, n_test, reference="shuffled", rng=0
):
    """The selection page's numbers: (per_arm rows, comparison rows, families).

    curves: {(model, budget, arm): {seed: curve}} with curve.step, .phase, .test_acc (one evaluation each);
    plan: [(arm, control, quantity, recommendation or None)] (bestbatch.selection.comparison_plan);
    total_steps: {budget: optimizer steps of every run of that budget}.
    A seed's target accuracy is target_fraction x the final test accuracy of its `reference` run (standard
    SGD) of the same model and budget; where that run did not learn, the seed has no target and leaves the
    steps-to-target comparisons (named). A run that never reaches its target counts as total_steps + 1.
    Runs at chance (learning_status) are named per arm and left out of the arm's mean final accuracy; they
    stay in the paired comparisons, where not learning is the policy's outcome.
    """
    per_arm, rows, tests = [], [], []
    for model, budget in dict.fromkeys((m, b) for m, b, _ in curves):
        T = total_steps[budget]
        ref = curves.get((model, budget, reference))
        if ref is None:
            raise ValueError(f"analyse_selection: no {reference!r} runs for {model}, budget {budget:g}")
        target, no_target = {}, []
        for seed, c in ref.items():
            status = learning_status(_last_phase(c), n_classes, n_test)
            target[seed] = target_fraction * float(c.test_acc[-1]) if status.learned else math.nan
            if not status.learned:
                no_target.append(seed)
        values = {}
        for (m, b, arm), by_seed in curves.items():
            if (m, b) != (model, budget):
                continue
            seeds = sorted(by_seed)
            status = {s: learning_status(_last_phase(by_seed[s]), n_classes, n_test) for s in seeds}
            final = {s: float(by_seed[s].test_acc[-1]) for s in seeds}
            reached = {s: steps_to_target(by_seed[s].step, by_seed[s].test_acc, target.get(s, math.nan)) for s in seeds}
            values[arm] = dict(final_accuracy=final, steps_to_target=reached)
            learned = [final[s] for s in seeds if status[s].learned]
            mean, lo, hi, _ = t_interval(learned, alpha) if learned else (math.nan,) * 4
            n_reached = sum(np.isfinite(reached[s]) for s in seeds)
            per_arm.append(
                dict(
                    model=model,
                    budget=budget,
                    total_steps=T,
                    arm=arm,
                    n_seeds=len(seeds),
                    final_accuracy=float(mean),
                    final_lo=float(lo),
                    final_hi=float(hi),
                    not_learned=", ".join(str(s) for s in seeds if not status[s].learned) or None,
                    steps_to_target=float(np.nanmean([reached[s] for s in seeds])) if n_reached else math.nan,
                    reached_target=int(n_reached),
                    target=float(np.nanmean(list(target.values())))
                    if any(np.isfinite(list(target.values())))
                    else math.nan,
                )
            )
        for arm, control, quantity, recommendation in plan:
            if arm not in values or control not in values:
                continue
            a, c = values[arm][quantity], values[control][quantity]
            seeds = [
                s for s in sorted(a) if s in c and (quantity != "steps_to_target" or np.isfinite(target.get(s, np.nan)))
            ]
            x = np.array([a[s] for s in seeds], dtype=float)
            y = np.array([c[s] for s in seeds], dtype=float)
            never_a, never_c = np.isnan(x), np.isnan(y)
            if quantity == "steps_to_target":
                x, y = np.where(never_a, T + 1, x), np.where(never_c, T + 1, y)
            row = dict(
                model=model,
                budget=budget,
                arm=arm,
                control=control,
                quantity=quantity,
                family="confirmatory" if recommendation else "exploratory",
                recommendation=recommendation,
                n_seeds=len(seeds),
                difference=float((x - y).mean()) if seeds else math.nan,
                lo=math.nan,
                hi=math.nan,
                level=math.nan,
                p=math.nan,
                p_holm=math.nan,
                never_reached=int(never_a.sum() + never_c.sum()) if quantity == "steps_to_target" else 0,
                seeds_without_target=", ".join(map(str, no_target))
                if quantity == "steps_to_target" and no_target
                else None,
                verdict=None,
            )
            rows.append(row)
            if seeds:
                test = sign_flip_test(x - y, rng=np.random.default_rng([int(rng), len(rows)]))
                row["p"] = test.p
                tests.append((row, test))
    families = {}
    for family in ("confirmatory", "exploratory"):
        members = [r for r in rows if r["family"] == family and np.isfinite(r["p"])]
        pvalues = [r["p"] for r in members]
        for r, adj, level in zip(members, holm(pvalues), holm_levels(pvalues, alpha)):
            r["p_holm"], r["level"] = float(adj), float(level)
        m = len(members)
        families[family] = dict(
            n_tests=m,
            seeds_needed=seeds_for_a_verdict(m, alpha) if m else None,
            n_seeds=sorted({r["n_seeds"] for r in members}),
        )
    for row, test in tests:
        row["lo"], row["hi"] = test.interval(row["level"])
    for r in rows:
        if r["family"] == "exploratory":
            r["verdict"] = EXPLORATORY
            continue
        better, worse = SELECTION_WORDS[r["quantity"]]
        sign = -1 if r["quantity"] == "steps_to_target" else 1  # the direction that is "better"
        if np.isfinite(r["p_holm"]) and r["p_holm"] < alpha and r["difference"] != 0:
            r["verdict"] = better if sign * r["difference"] > 0 else worse
        elif r["n_seeds"] == 0 or smallest_sign_flip_p(r["n_seeds"]) * families["confirmatory"]["n_tests"] >= alpha:
            r["verdict"] = TOO_FEW_SEEDS
        else:
            r["verdict"] = NO_DIFFERENCE
    return per_arm, rows, families


def simulate_selection(
    rng, arms, seeds, budgets, total_steps, eval_every, *, n_test=512, n_classes=10, speedup=None, fail=0.0, final=0.7
):
    """Curves of one model's selection experiment without training, for calibration: {(model, budget, arm):
    {seed: curve}} with curve.step / .phase / .test_acc, as analyse_selection reads them.

    A run's test accuracy after s steps is final_r (1 - exp(-s / tau_r)) plus evaluation noise, rounded to
    whole test images (ties), evaluated every eval_every[budget] steps (a grid) and at the end. tau_r and
    final_r share a seed effect (the same init.pt for every arm of a seed) and vary per run; with
    speedup=None every arm of a seed is drawn from one distribution (the null). speedup {arm: factor}
    multiplies that arm's tau (0.5: twice as fast). A run fails to learn with probability `fail` (accuracy
    at chance throughout), whatever its arm. Three phases split each run in thirds.
    """
    speedup = speedup or {}
    out = {}
    for budget in budgets:
        T, every = total_steps[budget], eval_every[budget]
        steps = np.unique(np.append(np.arange(every, T + 1, every), T))
        phase = 1 + (3 * (steps - 1)) // T
        for seed in seeds:
            seed_tau = math.exp(0.3 * rng.standard_normal())
            seed_final = 0.05 * rng.standard_normal()
            for arm in arms:
                tau = 0.15 * T * seed_tau * math.exp(0.25 * rng.standard_normal()) * speedup.get(arm, 1.0)
                top = min(0.98, max(0.2, final + seed_final + 0.03 * rng.standard_normal()))
                acc = top * (1 - np.exp(-steps / tau)) + 0.02 * rng.standard_normal(steps.size)
                if rng.random() < fail:
                    acc = 1 / n_classes + 0.01 * rng.standard_normal(steps.size)
                acc = np.round(np.clip(acc, 0, 1) * n_test) / n_test
                out.setdefault(("sim", budget, arm), {})[seed] = SimpleNamespace(step=steps, phase=phase, test_acc=acc)
    return out
