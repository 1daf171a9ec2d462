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
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"sign_flip_test: need a non-empty 1-D array of paired differences, got shape {d.shape}")
    bad = np.flatnonzero(~np.isfinite(d))
    if bad.size:
        raise ValueError(
            f"sign_flip_test: {bad.size} of {d.size} paired differences are not finite (NaN or infinite) at "
            f"positions {bad.tolist()}: leave those pairs out before testing, and name them"
        )
    S = d.size
    if S <= EXACT_FLIPS:
        flips, offset, exact = _all_flips(S), 0, True
    else:
        flips = 1.0 - 2.0 * np.random.default_rng(rng).integers(0, 2, size=(n_random, S), dtype=np.int8)
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
# paired exact sign-flip test over seeds of policy - control in one outcome of the runs (OUTCOMES). The
# comparisons that test the paper's recommendations (each policy against the same order with every batch, in
# the confirmatory outcome, selection.CONFIRMATORY_QUANTITY: the test accuracy averaged over the run) are the
# confirmatory family, Holm-corrected on their own; every other comparison is exploratory, Holm-corrected
# within its family, and prints no verdict. Intervals invert the sign-flip test at the level Holm decides it
# at. docs/design.md says why the confirmatory outcome is the mean accuracy and not steps to a target.

# outcome: (word when the arm is better, word when it is worse, the sign of "better")
OUTCOMES = {
    "mean_accuracy": ("higher", "lower", 1),
    "steps_to_target": ("faster", "slower", -1),
    "final_accuracy": ("higher", "lower", 1),
    "phase_end_accuracy": ("higher", "lower", 1),
}
SELECTION_WORDS = {q: (better, worse) for q, (better, worse, _) in OUTCOMES.items()}
NO_DIFFERENCE = "no detectable difference"
TOO_FEW_SEEDS = "too few seeds"
EXPLORATORY = "exploratory"


def _curve_arrays(steps, accuracies):
    steps, acc = np.asarray(steps, dtype=float), np.asarray(accuracies, dtype=float)
    if steps.ndim != 1 or steps.size == 0 or acc.shape[-1:] != steps.shape:
        raise ValueError(
            f"steps and accuracies must be 1-D, non-empty and of one length, got {steps.shape}, {acc.shape}"
        )
    if steps[0] <= 0 or np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be positive and increasing")
    return steps, acc


def steps_to_target(steps, accuracies, target):
    """The first evaluated step whose accuracy reaches `target` (>=); nan if none does (or target is nan)."""
    steps, acc = _curve_arrays(steps, accuracies)
    hit = np.flatnonzero(acc >= target)
    return float(steps[hit[0]]) if hit.size else math.nan


def mean_accuracy(steps, accuracies):
    """Test accuracy averaged over the run: the area under its curve divided by the steps it took. Each
    evaluation stands for the steps since the one before (the first for the steps from 0), so on a regular
    grid this is the plain mean of the evaluations. A run that learns the same curve in fewer steps has a
    higher one in every phase it is still learning in. accuracies (..., E): one value per leading index."""
    steps, acc = _curve_arrays(steps, accuracies)
    value = acc @ np.diff(steps, prepend=0.0) / steps[-1]
    return float(value) if np.ndim(value) == 0 else value


def phase_end_accuracy(steps, phases, accuracies):
    """The mean over phases of the test accuracy at each phase's last evaluation (a candidate outcome);
    accuracies (..., E) as in mean_accuracy."""
    steps, acc = _curve_arrays(steps, accuracies)
    phases = np.asarray(phases)
    value = acc[..., [np.flatnonzero(phases == p)[-1] for p in np.unique(phases)]].mean(-1)
    return float(value) if np.ndim(value) == 0 else value


def _runs(by_seed, n_classes, n_test, quantities):
    """{seed: dict(finite, learning, one value per OUTCOMES)} for the runs of one arm, among `quantities`
    (steps to target is filled in later, once its target is known). Runs that share an evaluation grid (as
    every run of a budget does) are computed at once, as one matrix; the same numbers run by run
    (tests/test_selection_stats.py)."""
    groups = []  # lists of seeds whose runs share an evaluation grid
    for s, c in by_seed.items():
        group = next((g for g in groups if _same_grid(by_seed[g[0]], c)), None)
        group.append(s) if group else groups.append([s])
    out = {}
    for seeds in groups:
        first = by_seed[seeds[0]]
        A = np.array([np.asarray(by_seed[s].test_acc, dtype=float) for s in seeds])
        phase = np.asarray(first.phase)
        finite = np.isfinite(A).all(1) & (A.shape[1] > 0)
        values = {}
        if finite.any():
            last = phase == phase.max()
            if "mean_accuracy" in quantities:
                values["mean_accuracy"] = mean_accuracy(first.step, A)
            if "phase_end_accuracy" in quantities:
                values["phase_end_accuracy"] = phase_end_accuracy(first.step, phase, A)
        for i, s in enumerate(seeds):
            r = dict(finite=bool(finite[i]), learning=None, **{q: math.nan for q in OUTCOMES})
            if finite[i]:
                r["learning"] = learning_status(A[i, last], n_classes, n_test)
                r["final_accuracy"] = float(A[i, -1])
                r.update({q: float(v[i]) for q, v in values.items()})
            out[s] = r
    return out


def _same_grid(a, b):
    """Two curves evaluated at the same steps, in the same phases."""
    return (a.step is b.step or np.array_equal(a.step, b.step)) and (
        a.phase is b.phase or np.array_equal(a.phase, b.phase)
    )


def cross_fitted_targets(finals, target_fraction, seeds=None):
    """{seed: target} for every seed of `seeds` (default: those of `finals`): target_fraction x the mean final
    accuracy of the OTHER seeds' reference runs in `finals` (the runs that learned). Never the seed's own run,
    and a seed whose own reference run did not learn gets a target all the same: whether it is reached must
    not depend on the reference run of the seed itself, or an arm exchangeable with the reference would be
    censored more often than it. nan where no other seed is in `finals`."""
    out = {}
    for seed in finals if seeds is None else seeds:
        others = [f for s, f in finals.items() if s != seed]
        out[seed] = target_fraction * float(np.mean(others)) if others else math.nan
    return out


def analyse_selection(
    curves,
    plan,
    *,
    total_steps,
    target_fraction,
    alpha,
    n_classes,
    n_test,
    reference="shuffled",
    rng=0,
    describe_arms=True,
    intervals=True,
    n_random=2**16,
):
    """The selection page's numbers: (per_arm rows, comparison rows, families).

    curves: {(model, budget, arm): {seed: curve}} with curve.step, .phase, .test_acc (one evaluation each);
    plan: [(arm, control, quantity, recommendation or None)] (bestbatch.selection.comparison_plan), quantity
    one of OUTCOMES; total_steps: {budget: optimizer steps of every run of that budget}.

    Outcomes of a run: its mean accuracy over the run (mean_accuracy), its final accuracy, the mean of its
    phase-end accuracies, and its steps to a target. Seed s's target is target_fraction x the mean final
    test accuracy of the OTHER seeds' `reference` runs (standard SGD) of the same model and budget that
    learned (cross_fitted_targets), whether or not its own reference run learned; a seed with no other such
    run has no target and leaves the steps comparisons (named). A run that never reaches its target counts as total_steps + 1.
    Runs at chance (learning_status) are named per arm and left out of the arm's means; in the confirmatory
    family a seed whose run of either arm did not learn is left out of that comparison and named (a run that
    did not learn is a finding, not a data point), in the exploratory family it stays (not learning is the
    policy's outcome there). A run with a non-finite test accuracy is left out of every comparison, named.
    describe_arms=False skips the per-arm rows and intervals=False the intervals (simulations that only need
    the verdicts); n_random: the sign flips drawn for more than EXACT_FLIPS seeds.
    """
    per_arm, rows, tests = [], [], []
    for model, budget in dict.fromkeys((m, b) for m, b, _ in curves):
        T = total_steps[budget]
        quantities = {q for *_, q, _ in plan} | ({"mean_accuracy"} if describe_arms else set())
        runs = {
            arm: _runs(by_seed, n_classes, n_test, quantities)
            for (m, b, arm), by_seed in curves.items()
            if (m, b) == (model, budget)
        }
        ref = runs.get(reference)
        if ref is None and any(q == "steps_to_target" for *_, q, _ in plan):
            raise ValueError(f"analyse_selection: no {reference!r} runs for {model}, budget {budget:g}")
        ref_finals = {s: r["final_accuracy"] for s, r in (ref or {}).items() if r["finite"] and r["learning"].learned}
        every_seed = sorted({seed for by_seed in runs.values() for seed in by_seed})
        target = cross_fitted_targets(ref_finals, target_fraction, every_seed)
        for arm, by_seed in runs.items():
            for s, r in by_seed.items():
                if r["finite"] and (describe_arms or "steps_to_target" in quantities):
                    c = curves[model, budget, arm][s]
                    r["steps_to_target"] = steps_to_target(c.step, c.test_acc, target.get(s, math.nan))
            if not describe_arms:
                continue
            seeds = sorted(by_seed)
            learned = [s for s in seeds if by_seed[s]["finite"] and by_seed[s]["learning"].learned]
            arm_row = dict(model=model, budget=budget, total_steps=T, arm=arm, n_seeds=len(seeds))
            for q in ("final_accuracy", "mean_accuracy"):
                mean, lo, hi, _ = t_interval([by_seed[s][q] for s in learned], alpha) if learned else (math.nan,) * 4
                short = q.split("_")[0]
                arm_row.update({q: float(mean), f"{short}_lo": float(lo), f"{short}_hi": float(hi)})
            reached = [by_seed[s]["steps_to_target"] for s in seeds if np.isfinite(by_seed[s]["steps_to_target"])]
            targets = [t for t in target.values() if np.isfinite(t)]
            arm_row.update(
                not_learned=", ".join(str(s) for s in seeds if by_seed[s]["finite"] and s not in learned) or None,
                not_finite=", ".join(str(s) for s in seeds if not by_seed[s]["finite"]) or None,
                steps_to_target=float(np.mean(reached)) if reached else math.nan,
                reached_target=len(reached),
                target=float(np.mean(targets)) if targets else math.nan,
            )
            per_arm.append(arm_row)
        for arm, control, quantity, recommendation in plan:
            if arm not in runs or control not in runs:
                continue
            if quantity not in OUTCOMES:
                raise ValueError(f"analyse_selection: unknown quantity {quantity!r}; known: {', '.join(OUTCOMES)}")
            confirmatory = bool(recommendation)
            a, c = runs[arm], runs[control]
            seeds, left_out, no_target = [], [], []
            for s in sorted(set(a) & set(c)):
                bad = [name for name, r in ((arm, a[s]), (control, c[s])) if not r["finite"]]
                if bad:
                    left_out.append(f"{s} (non-finite test accuracy: {', '.join(bad)})")
                    continue
                if quantity == "steps_to_target" and not np.isfinite(target.get(s, math.nan)):
                    no_target.append(str(s))
                    continue
                chance = [name for name, r in ((arm, a[s]), (control, c[s])) if not r["learning"].learned]
                if confirmatory and chance:
                    left_out.append(f"{s} (did not learn: {', '.join(chance)})")
                    continue
                seeds.append(s)
            x = np.array([a[s][quantity] for s in seeds], dtype=float)
            y = np.array([c[s][quantity] for s in seeds], dtype=float)
            never_a, never_c = np.isnan(x), np.isnan(y)
            if quantity == "steps_to_target":
                x, y = np.where(never_a, T + 1, x), np.where(never_c, T + 1, y)
            row = dict(
                model=model,
                budget=budget,
                arm=arm,
                control=control,
                quantity=quantity,
                family="confirmatory" if confirmatory else "exploratory",
                recommendation=recommendation,
                n_seeds=len(seeds),
                difference=float((x - y).mean()) if seeds else math.nan,
                lo=math.nan,
                hi=math.nan,
                level=math.nan,
                p=math.nan,
                p_holm=math.nan,
                never_reached=int(never_a.sum() + never_c.sum()) if quantity == "steps_to_target" else 0,
                seeds_without_target=", ".join(no_target) or None,
                seeds_left_out="; ".join(left_out) or None,
                verdict=None,
            )
            rows.append(row)
            if seeds:
                test = sign_flip_test(x - y, rng=np.random.default_rng([int(rng), len(rows)]), n_random=n_random)
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
        if intervals:
            row["lo"], row["hi"] = test.interval(row["level"])
    for r in rows:
        if r["family"] == "exploratory":
            r["verdict"] = EXPLORATORY
            continue
        better, worse, sign = OUTCOMES[r["quantity"]]
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
        steps = evaluation_steps(T, every)
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


# --- curves shaped like step-decay training, and how many seeds find a speed-up ---------------------------
# With a step-decay learning rate most learning happens in phase 1 (large lr, a noisy plateau well below the
# final accuracy), and every drop brings a quick ramp to a higher plateau. 90% of a run's final accuracy is
# then reached only after the first drop, whatever the run's speed in phase 1: steps to such a target can
# hardly see a speed-up, while the accuracy averaged over the run sees it in every phase the run is still
# learning in. The simulator below makes such curves; benchmarks/selection_power.py measures every candidate
# outcome on them, and recommend_seeds says how many seeds the page's confirmatory family needs.

STEP_DECAY = dict(
    phase1_plateau=0.8,  # phase 1's plateau, as a fraction of the run's final accuracy (large lr)
    gap_closed=0.85,  # each lr drop closes this share of the gap left to the final accuracy
    tau=(0.08, 0.02),  # time constants in steps, as fractions of a full-budget run: phase 1, later phases
    seed_tau_sd=0.3,  # the seed's effect on speed (log scale), shared by its arms (the same init.pt)
    seed_final_sd=0.04,  # the seed's effect on final accuracy, shared by its arms
    run_tau_scale=0.15,  # each run's own effect on speed: scale of a t variate (heavy tails), log scale
    run_final_scale=0.015,  # each run's own effect on final accuracy: scale of a t variate
    run_df=3,  # degrees of freedom of those t variates
    noise_sd=(0.025, 0.008),  # evaluation noise in phase 1 and after (AR(1) over evaluations)
    noise_ar=0.5,
)
# (speed-up, power): the page recommends the fewest seeds that find a 2x speed-up (every time constant
# halved) in at least 80% of simulated experiments and a 1.5x one in at least 50%.
POWER_TARGETS = ((2.0, 0.8), (1.5, 0.5))
FAILED_RUNS = 0.02  # the share of simulated runs that fail to learn (at chance throughout), whatever their arm


# Above EXACT_FLIPS seeds the page draws 2^16 random sign flips a test; the power simulations draw this many
# (a valid Monte-Carlo test too, with a coarser p: the verdicts differ only where p is within ~1% of a level).
SIMULATION_FLIPS = 2**12


def evaluation_steps(total_steps, eval_every):
    """The steps after which a run is evaluated: every eval_every steps, and at its end."""
    return np.unique(np.append(np.arange(eval_every, total_steps + 1, eval_every), total_steps))


def simulate_step_decay(
    rng,
    arms,
    seeds,
    layout,
    *,
    n_test,
    n_classes,
    speedup=None,
    fail=FAILED_RUNS,
    final=0.75,
    model="sim",
    params=None,
):
    """Curves shaped like step-decay training, for calibration and power: {(model, budget, arm): {seed:
    curve}} with curve.step / .phase / .test_acc, as analyse_selection reads them.

    layout: {budget: dict(total_steps=T, milestones=[lr-drop steps], eval_every=steps)} (selection.run_layout).
    In phase p a run's accuracy relaxes exponentially, from where the previous phase left it, towards a
    plateau: phase1_plateau x its final accuracy in phase 1, and each drop closes gap_closed of what is left.
    Time constants are in steps (a fraction of a full-budget run), so a smaller budget cuts phases short.
    A seed's effects on speed and final accuracy are shared by its arms; each run adds heavy-tailed (t)
    effects of its own; evaluation noise is AR(1) over evaluations (larger in phase 1) and accuracies are
    whole test images (ties, a grid). A run fails to learn with probability `fail` (chance throughout),
    whatever its arm. speedup {arm: factor}: the arm learns factor x as fast (every time constant divided
    by it); without it every arm of a seed is drawn from one distribution (the null).
    """
    p = {**STEP_DECAY, **(params or {})}
    speedup = speedup or {}
    seeds, chance = list(seeds), 1.0 / n_classes
    S, A = len(seeds), len(arms)
    speed = np.array([float(speedup.get(arm, 1.0)) for arm in arms])
    seed_tau = np.exp(p["seed_tau_sd"] * rng.standard_normal(S))
    seed_final = final + p["seed_final_sd"] * rng.standard_normal(S)
    out = {}
    for budget, lay in layout.items():
        T, milestones = int(lay["total_steps"]), [int(m) for m in lay["milestones"]]
        full = T / float(budget)  # steps of a full-budget run
        steps = evaluation_steps(T, int(lay["eval_every"]))
        phase = 1 + (steps[:, None] > np.array(milestones, dtype=float)[None, :]).sum(1)
        run_tau = seed_tau[:, None] * np.exp(p["run_tau_scale"] * rng.standard_t(p["run_df"], (S, A))) / speed
        top = seed_final[:, None] + p["run_final_scale"] * rng.standard_t(p["run_df"], (S, A))
        top = np.clip(top, chance + 0.1, 0.99)
        bounds = [0, *milestones, T]
        level = np.full((S, A), chance)
        acc = np.empty((S, A, steps.size))
        for ph in range(1, len(bounds)):
            start, end = bounds[ph - 1], bounds[ph]
            plateau = top * (1 - (1 - p["phase1_plateau"]) * (1 - p["gap_closed"]) ** (ph - 1))
            tau = p["tau"][0 if ph == 1 else 1] * full * run_tau
            sel = phase == ph
            decay = np.exp(-(steps[sel] - start)[None, None, :] / tau[..., None])
            acc[..., sel] = plateau[..., None] - (plateau - level)[..., None] * decay
            level = plateau - (plateau - level) * np.exp(-(end - start) / tau)
        sd = np.where(phase == 1, p["noise_sd"][0], p["noise_sd"][1])
        rho = p["noise_ar"]
        noise = rng.standard_normal((S, A, steps.size))
        for i in range(1, steps.size):
            noise[..., i] = rho * noise[..., i - 1] + math.sqrt(1 - rho * rho) * noise[..., i]
        acc = acc + sd * noise
        failed = rng.random((S, A)) < fail
        acc[failed] = chance + 0.01 * rng.standard_normal((int(failed.sum()), steps.size))
        acc = np.round(np.clip(acc, 0, 1) * n_test) / n_test
        for j, arm in enumerate(arms):
            by_seed = out.setdefault((model, budget, arm), {})
            for i, seed in enumerate(seeds):
                by_seed[seed] = SimpleNamespace(step=steps, phase=phase, test_acc=acc[i, j])
    return out


def selection_power(
    plan,
    layout,
    n_seeds,
    speedup,
    *,
    alpha,
    n_test,
    n_classes,
    n_experiments=200,
    rng=0,
    fail=FAILED_RUNS,
    target_fraction=0.9,
    params=None,
    n_models=1,
    generator=None,
):
    """How often the confirmatory family of `plan` finds a speed-up planted in its first policy arm (of the
    first of n_models models: Holm runs over every model's rows), on step-decay curves (simulate_step_decay)
    of this layout: dict(found, wrong, any_verdict, n_experiments). generator: another simulator with
    simulate_step_decay's signature (benchmarks/selection_power.py wraps the smooth one).

    found: experiments where a confirmatory row of the planted arm gives the better verdict; wrong: the
    worse one; any_verdict: experiments with any verdict in the family (speedup 1: the family-wise false
    positive rate). Only the confirmatory rows are analysed: Holm runs within that family alone, so its
    verdicts are those of the whole page.
    """
    confirmatory = [row for row in plan if row[3]]
    if not confirmatory:
        raise ValueError("selection_power: the plan has no confirmatory comparison")
    planted = confirmatory[0][0]
    arms = list(dict.fromkeys(x for arm, control, *_ in confirmatory for x in (arm, control)))
    if any(q == "steps_to_target" for _, _, q, _ in confirmatory) and "shuffled" not in arms:
        arms.append("shuffled")
    total = {b: int(lay["total_steps"]) for b, lay in layout.items()}
    rng = np.random.default_rng(rng)
    found = wrong = any_verdict = 0
    for _ in range(n_experiments):
        curves = {}
        for i in range(n_models):
            curves.update(
                (generator or simulate_step_decay)(
                    rng,
                    arms,
                    range(n_seeds),
                    layout,
                    n_test=n_test,
                    n_classes=n_classes,
                    speedup={planted: speedup} if i == 0 else None,
                    fail=fail,
                    params=params,
                    model=f"sim{i}",
                )
            )
        _, rows, _ = analyse_selection(
            curves,
            confirmatory,
            total_steps=total,
            target_fraction=target_fraction,
            alpha=alpha,
            n_classes=n_classes,
            n_test=n_test,
            describe_arms=False,
            intervals=False,
            n_random=SIMULATION_FLIPS,
        )
        words = {r["verdict"] for r in rows if r["arm"] == planted and r["model"] == "sim0"}
        better, worse = {OUTCOMES[q][0] for *_, q, _ in confirmatory}, {OUTCOMES[q][1] for *_, q, _ in confirmatory}
        found += bool(words & better)
        wrong += bool(words & worse)
        any_verdict += any(r["verdict"] in better | worse for r in rows)
    return dict(found=found, wrong=wrong, any_verdict=any_verdict, n_experiments=n_experiments)


def recommend_seeds(plan, layout, *, alpha, n_test, n_classes, n_models=1, n_experiments=200, max_seeds=40, rng=0):
    """The fewest seeds (at most max_seeds) with which the confirmatory family finds each speed-up of
    POWER_TARGETS at its power, on step-decay curves of this layout (selection_power; the same rng for every
    number of seeds tried, so the estimates move together). A target is met when the one-sided 95% lower
    bound of the simulated share clears it, so the number holds on experiments it was not chosen on.
    Returns dict(seeds, power {speed-up: share found}, seeds_needed, n_experiments, max_seeds); seeds is
    None if max_seeds is not enough. Searched from the fewest seeds that can give a verdict in doubling
    steps, then by bisection between the last number that missed and the first that met: power grows with
    seeds. None for a plan with no confirmatory comparison."""
    from scipy import stats as sps

    m = sum(1 for row in plan if row[3]) * len(layout) * n_models  # each row is tested per budget and model
    if not m:
        return None
    need = seeds_for_a_verdict(m, alpha)
    tried = {}

    def meets(S):
        if S not in tried:
            power, met = {}, True
            kwargs = dict(
                alpha=alpha, n_test=n_test, n_classes=n_classes, n_models=n_models, n_experiments=n_experiments, rng=rng
            )
            for speed, want in POWER_TARGETS:
                k = selection_power(plan, layout, S, speed, **kwargs)["found"]
                power[speed] = k / n_experiments
                # the one-sided 95% Clopper-Pearson lower bound must clear the target, not the estimate alone
                if not (k and sps.beta.ppf(0.05, k, n_experiments - k + 1) >= want):
                    met = False
                    break  # a target missed: the others need not be simulated
            tried[S] = (met, power)
        return tried[S][0]

    missed, step, S = need - 1, 2, need
    while not meets(S):
        if S >= max_seeds:
            return dict(
                seeds=None, power=tried[S][1], seeds_needed=need, n_experiments=n_experiments, max_seeds=max_seeds
            )
        missed, S, step = S, min(S + step, max_seeds), 2 * step
    while S - missed > 1:  # bisection: missed misses, S meets
        mid = (missed + S) // 2
        if meets(mid):
            S = mid
        else:
            missed = mid
    return dict(seeds=S, power=tried[S][1], seeds_needed=need, n_experiments=n_experiments, max_seeds=max_seeds)
