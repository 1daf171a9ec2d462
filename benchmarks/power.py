"""Power and false-positive rates of the verdicts the workflow prints, on simulated studies (no training).

    PYTHONPATH=src .venv/bin/python benchmarks/power.py [--studies 100] [--permutations 9999] [--shapes demo,paper]

Claims page: `bestbatch.stats.analyse_study` (what the `claims` rule runs, with its default 9,999
permutations) on simulated distance matrices (`stats.simulate_study`: persistent batch effects shared by
the seeds, AR(1) epoch noise, epoch scales), at the demo's shape (3 seeds, 3 epochs a phase, 32 batches)
and the paper's with three seeds (50 epochs a phase, 195 batches), five orderings. Every simulated study
is analysed twice, side by side: with the studentized test the page uses (`studentized=True`, a Welch-type
contrast relabelled) and with the pooled contrast it used before (`studentized=False`). A planted effect
makes the upper-quartile batches of intensity closer in phase 1 (the first claim); "found" is the verdict
"supported" on that row, "any verdict" a supported or contradicted verdict anywhere on the page. The nulls
plant nothing closer or farther: "plain" has exchangeable positions; "extremes 2x SD" multiplies the
latent deviation of the extreme 10% of positions by 2 (more variable, not farther), "rest 2x SD" that of
every other position; "t3 batch effects" draws the persistent batch effects from a t with 3 df (heavy
tails); "ties" rounds the distances to a coarse grid (x to multiples of 0.5 SD).

The selection page's power (its confirmatory outcome on step-decay curves, and the seeds it recommends) is
measured by benchmarks/selection_power.py. Prints one Markdown table, with Clopper-Pearson 95% intervals
(Monte-Carlo error).
"""

import argparse
import time
import warnings

import numpy as np
from scipy import stats as sps

from bestbatch import stats as st

METRICS = ["intensity", "color", "edges", "lpips", "random"]


def interval(k, n):
    lo = sps.beta.ppf(0.025, k, n - k + 1) if k else 0.0
    hi = sps.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return f"{k / n:.3f} ({lo:.3f} to {hi:.3f})"


CLAIMS_CONDITIONS = [  # (what is planted, effect in SD, simulate_study's options)
    ("0 SD (plain null)", 0.0, {}),
    ("0.3 SD, phase-1 upper quartile of intensity", 0.3, {}),
    ("0.5 SD, phase-1 upper quartile of intensity", 0.5, {}),
    ("null: extremes 1.5x SD", 0.0, dict(spread=1.5)),
    ("null: extremes 2x SD", 0.0, dict(spread=2.0)),
    ("null: rest 1.5x SD", 0.0, dict(spread=1.5, spread_rest=True)),
    ("null: rest 2x SD", 0.0, dict(spread=2.0, spread_rest=True)),
    ("null: t3 batch effects", 0.0, dict(batch_df=3)),
    ("null: ties (grid 0.5 SD)", 0.0, dict(grid=0.5)),
]
TESTS = {"studentized": True, "pooled (before)": False}


def claims(shape, effect, n_studies, n_perm, seed, **null):
    """{test: (studies where the planted row is supported, studies with any verdict)} at a shape, both tests
    on the same simulated studies."""
    E, K = shape
    phases = [(1, 1, E, 0.1), (2, E + 1, 2 * E, 0.01), (3, 2 * E + 1, 3 * E, 0.001)]
    early = np.arange(1, 3 * E + 1) <= E
    rng = np.random.default_rng(seed)
    out = {name: [0, 0] for name in TESTS}
    for i in range(n_studies):
        matrices = {
            ("m", x): st.simulate_study(
                rng,
                3,
                3 * E,
                K,
                effect=-effect if x == "intensity" else 0.0,
                region="upper_quartile",
                effect_epochs=early,
                shared=0.7,
                **null,
            )
            for x in METRICS
        }
        for name, studentized in TESTS.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exploratory family's "raise n_perm" at few permutations
                rows = st.analyse_study(matrices, phases, METRICS, n_perm=n_perm, seed=i, studentized=studentized)
            planted = [
                r
                for r in rows
                if r["kind"] == "claim"
                and r["metric"] == "intensity"
                and r["phase"] == 1
                and r["claim"] == "early-upper-quartile"
            ]
            out[name][0] += planted[0]["verdict"] == "supported"
            out[name][1] += any(r["verdict"] in ("supported", "contradicted") for r in rows)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=100, help="simulated studies per claims row")
    ap.add_argument("--permutations", type=int, default=9999, help="the claims rule's default")
    ap.add_argument("--shapes", default="demo,paper", help="the claims page's shapes, comma-separated")
    args = ap.parse_args()
    shapes = args.shapes.split(",")
    print("| page | shape | planted | test | found (95% CI) | any verdict (95% CI) | seconds (both tests) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for key, name, shape in (
        ("demo", "demo: 3 seeds, 3 epochs a phase, 32 batches", (3, 32)),
        ("paper", "paper: 3 seeds, 50 epochs a phase, 195 batches", (50, 195)),
    ):
        if key not in shapes:
            continue
        for j, (planted, effect, null) in enumerate(CLAIMS_CONDITIONS):
            t0 = time.time()
            out = claims(shape, effect, args.studies, args.permutations, seed=1000 * j + 7, **null)
            n = args.studies
            for test, (found, verdicts) in out.items():
                print(
                    f"| claims | {name} | {planted} | {test} | {interval(found, n) if effect else '–'} | "
                    f"{interval(verdicts, n)} | {time.time() - t0:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
