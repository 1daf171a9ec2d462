"""Which outcome should the selection page's confirmatory family test? Power and false positives of each
candidate on simulated curves (no training), and the seeds the page recommends.

    PYTHONPATH=src .venv/bin/python benchmarks/selection_power.py [--experiments 200] [--layout demo|paper]

Curves: `selection_stats.simulate_step_decay` (step-decay learning rates as the selection runs use them:
most learning in phase 1 on a noisy plateau below the final accuracy, a ramp after each lr drop; seed effects
on speed and final accuracy shared by a seed's arms; heavy-tailed run effects; AR(1) evaluation noise in
whole test images; 2% of runs fail), and for contrast `simulate_selection` (one smooth exponential a run).
A speed-up of f divides every time constant of `drop_extremes.<metric>` by f. Each candidate outcome is put
in the confirmatory family in place of the page's (each policy against `all.<metric>`, at every budget,
Holm within the family) and analysed by `selection_stats.analyse_selection`, as the page does. "found": the
planted arm's row says better; "wrong": worse; "any verdict": any verdict in the family (with no speed-up:
the family-wise false-positive rate). Clopper-Pearson 95% intervals give the Monte-Carlo error.
"""

import argparse
import time

from scipy import stats as sps

from bestbatch import selection as sel
from bestbatch import selection_stats as sst

POLICIES = ["all", "drop_extremes", "phase1_upper_quartile", "measured_best"]
LAYOUTS = {
    # config/demo.yaml: 7 epochs (lr drops after 3 and 5), 32 batches, budgets 1 and 0.25, 256 test images
    "demo": dict(metrics=["intensity"], epochs=7, K=32, milestones=[3, 5], chunk_epochs=7, n_test=256),
    # the paper's schedule with every metric: 150 epochs (drops after 50 and 100), 195 batches, CIFAR-10's test set
    "paper": dict(
        metrics=["intensity", "color", "edges", "lpips"],
        epochs=150,
        K=195,
        milestones=[50, 100],
        chunk_epochs=10,
        n_test=10000,
    ),
}
CANDIDATES = ("mean_accuracy", "steps_to_target", "final_accuracy", "phase_end_accuracy")


def interval(k, n):
    lo = sps.beta.ppf(0.025, k, n - k + 1) if k else 0.0
    hi = sps.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return f"{k / n:.3f} ({lo:.3f} to {hi:.3f})"


def smooth_curves(rng, arms, seeds, lay, *, n_test, n_classes, speedup=None, fail, params=None, model="sim"):
    """simulate_selection with simulate_step_decay's signature, for selection_power (its speed-up multiplies
    tau: 1 / f is f times as fast)."""
    T = {b: x["total_steps"] for b, x in lay.items()}
    every = {b: x["eval_every"] for b, x in lay.items()}
    speedup = {arm: 1 / f for arm, f in (speedup or {}).items()}
    curves = sst.simulate_selection(
        rng, arms, seeds, list(lay), T, every, n_test=n_test, n_classes=n_classes, speedup=speedup, fail=fail
    )
    return {(model, b, arm): by_seed for (_, b, arm), by_seed in curves.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", type=int, default=200, help="simulated experiments per row")
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default="demo")
    ap.add_argument("--seeds", type=int, nargs="*", help="numbers of seeds (default: 8 and the recommended)")
    args = ap.parse_args()
    spec = LAYOUTS[args.layout]
    arms = sel.arms(POLICIES, spec["metrics"], sel.CONTROLS)
    plan = sel.comparison_plan(arms)
    lay = sel.run_layout(spec["epochs"], spec["K"], [1.0, 0.25], spec["milestones"], spec["chunk_epochs"], 20)
    n, n_test = args.experiments, spec["n_test"]
    t0 = time.time()
    rec = sst.recommend_seeds(plan, lay, alpha=0.05, n_test=n_test, n_classes=10)
    print(
        f"{args.layout} layout: the page recommends {rec['seeds']} seeds (a verdict needs {rec['seeds_needed']}); "
        f"power there {rec['power']} ({rec['n_experiments']} experiments, {time.time() - t0:.0f} s)\n"
    )
    confirmatory = [row for row in plan if row[3]]
    seeds = args.seeds or sorted({rec["seeds_needed"], rec["seeds"] or rec["max_seeds"]})
    print("| curves | outcome | seeds | speed-up | found (95% CI) | wrong | any verdict (95% CI) | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for S in seeds:
        for q in CANDIDATES:
            candidate = [(a, c, q, words) for a, c, _, words in confirmatory]
            for speed in (1.0, 1.5, 2.0):
                t0 = time.time()
                kw = dict(alpha=0.05, n_test=n_test, n_classes=10, n_experiments=n, rng=int(10 * speed) + S)
                power = sst.selection_power(candidate, lay, S, speed, **kw)
                found = interval(power["found"], n) if speed != 1.0 else "–"
                print(
                    f"| step-decay | {q} | {S} | {speed:g}x | {found} | {power['wrong']} | "
                    f"{interval(power['any_verdict'], n)} | {time.time() - t0:.0f} |",
                    flush=True,
                )
        for q in ("mean_accuracy", "steps_to_target"):
            candidate = [(a, c, q, words) for a, c, _, words in confirmatory]
            for speed in (1.0, 2.0):
                t0 = time.time()
                kw = dict(alpha=0.05, n_test=n_test, n_classes=10, n_experiments=n, rng=int(10 * speed) + S)
                power = sst.selection_power(candidate, lay, S, speed, generator=smooth_curves, **kw)
                found = interval(power["found"], n) if speed != 1.0 else "–"
                print(
                    f"| smooth | {q} | {S} | {speed:g}x | {found} | {power['wrong']} | "
                    f"{interval(power['any_verdict'], n)} | {time.time() - t0:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
