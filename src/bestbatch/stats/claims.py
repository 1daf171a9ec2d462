"""The paper's claims as tests over the seeds, their verdicts and sentences, and a whole study's analysis
(analyse_study: every claim, control and association, Holm-corrected by family). See bestbatch.stats."""

import math
import warnings
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .learning import Learning
from .permutation import (
    WelchContrast,
    _position_rho_null,
    _score_rho_null,
    holm,
    holm_levels,
    inverted_interval,
    permutation_p,
    relabel,
    relabellings,
)
from .profiles import (
    REGION_WORDS,
    _seeds,
    contrast,
    contrast_weights,
    position_rho,
    positional_profile,
    region_mask,
    score_rho,
    seed_profiles,
)
from .sets import normalised_phase_gram, set_test

VERDICTS = ("supported", "contradicted", "inconclusive")


# --- the paper's claims -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    id: str
    text: str  # in plain words, as the paper states it (section 5)
    metrics: tuple
    phases: tuple
    region: str  # a key of REGIONS
    expected: str  # "closer" or "farther" to the full gradient than the rest of the positions


PAPER_CLAIMS = [
    Claim(
        "early-upper-quartile",
        "In the first training phase the best mini-batches for intensity and for perceptual similarity "
        "(LPIPS) come from the upper quartile.",
        ("intensity", "lpips"),
        (1,),
        "upper_quartile",
        "closer",
    ),
    Claim(
        "early-color-outside-middle-80",
        "In the first training phase the best colour (HSV) mini-batches come from outside the middle 80 percent.",
        ("color",),
        (1,),
        "outside_middle_80",
        "closer",
    ),
    Claim(
        "early-edges-middle-80",
        "In the first training phase the best edge mini-batches come from inside the middle 80 percent.",
        ("edges",),
        (1,),
        "middle_80",
        "closer",
    ),
    Claim(
        "late-extremes-poor",
        "In the second and third training phases the metric extremes produce poor mini-batches, for all four metrics.",
        ("intensity", "color", "edges", "lpips"),
        (2, 3),
        "extremes_10",
        "farther",
    ),
]


NOT_INTERPRETABLE = "not interpretable"
FAMILIES = {
    "confirmatory": "the paper's claims: their verdicts are Holm-corrected over this family only",
    "exploratory": "the random-order controls, the associations with position and score, and the paper's regions "
    "as sets against random sets: Holm-corrected over this family on its own; leads, not verdicts",
}
# tested as sets where the Gram matrices are kept; the middle 80% is not tested apart: its deviations sum to minus
# the extremes', so its error as a set is theirs times m / (K - m), and so is random sets' (the same test)
SET_REGIONS = ("upper_quartile", "outside_middle_80")


def verdict(effect, p_adjusted, expected, alpha=0.05):
    """supported: adjusted p < alpha with the claimed sign; contradicted: adjusted p < alpha, opposite sign;
    otherwise inconclusive. A negative effect is "closer", a positive one "farther"."""
    if expected not in ("closer", "farther"):
        raise ValueError(f"expected must be 'closer' or 'farther', got {expected!r}")
    if not (np.isfinite(effect) and np.isfinite(p_adjusted)) or effect == 0 or p_adjusted >= alpha:
        return "inconclusive"
    return "supported" if (effect < 0) == (expected == "closer") else "contradicted"


def _fmt_p(p):
    if not np.isfinite(p):
        return "p not available"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def fmt_level(level):
    """The confidence 1 - level in percent, with level to two significant digits: 95%, 99.58%, 99%."""
    if not np.isfinite(level) or not 0 < level < 1:
        return "?"
    digits = max(0, 1 - math.floor(math.log10(100 * level)))
    return f"{100 * (1 - level):.{digits}f}".rstrip("0").rstrip(".") + "%"


def fmt_interval(lo, hi, spec=".2f"):
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "unbounded" if lo != lo or np.isinf(lo) or np.isinf(hi) else "not available"
    return f"{lo:{spec}} to {hi:{spec}}"


def sentence(
    phase,
    metric,
    region,
    effect,
    ci_lo,
    ci_hi,
    level,
    p_adjusted,
    verdict,
    n_seeds,
    control=False,
    note="",
    alpha=0.05,
    test="studentized permutation test",
):
    """One plain-English sentence for a claim (or control) row, with the numbers.

    e.g. "In phase 1 the upper-quartile batches of intensity are 0.31 SD closer to the full gradient than
    the rest (99.58% interval 0.12 to 0.50, by inverting the studentized permutation test at Holm's level;
    3 seeds; Holm-adjusted p = 0.004): supported." The interval is of the shift in mean z between the
    region and the rest; it excludes 0 exactly when the Holm-adjusted p is below alpha. `test` names the
    test inverted ("permutation test" for the pooled contrast, analyse_study(studentized=False)).
    """
    subject, rest = REGION_WORDS.get(region, (f"the batches in {region}", "the rest"))
    of = "the random ordering" if metric == "random" else metric
    if verdict == NOT_INTERPRETABLE:
        return f"In phase {phase} {subject} of {of} could not be tested: {note}: {verdict}."
    if not np.isfinite(effect):
        return f"In phase {phase} {subject} of {of} could not be compared with {rest}: {verdict}."
    closer = effect < 0
    size, lo, hi = (-effect, -ci_hi, -ci_lo) if closer else (effect, ci_lo, ci_hi)
    way = "closer to" if closer else "farther from"
    seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    interval = (
        f"{fmt_level(level)} interval {fmt_interval(lo, hi)}"
        if np.isfinite(lo) and np.isfinite(hi)
        else f"the {fmt_level(level)} interval is unbounded: no shift is rejected at Holm's level"
    )
    extra = f"; {note}" if note else ""
    text = (
        f"In phase {phase} {subject} of {of} are {size:.2f} SD {way} the full gradient than {rest} "
        f"({interval}, by inverting the {test} at Holm's level; {seeds}{extra}; "
        f"Holm-adjusted {_fmt_p(p_adjusted)})"
    )
    if control:
        chance = (
            "a pattern this strong arises by chance, so weigh the claims with care"
            if np.isfinite(p_adjusted) and p_adjusted < alpha
            else "the random ordering makes no claim; it shows how large such a pattern is by chance"
        )
        return f"{text}: control, exploratory ({chance})."
    return f"{text}: {verdict}."


# --- a whole study ------------------------------------------------------------------------------------


def _cell_rng(seed, model, metric, phase):
    """A generator per (model, metric, phase): results do not depend on the order cells are analysed in."""
    return np.random.default_rng(
        [int(seed), zlib.crc32(str(model).encode()), zlib.crc32(str(metric).encode()), zlib.crc32(str(phase).encode())]
    )


def _row(**fields):
    base = dict(
        kind=None,
        family=None,
        model=None,
        claim=None,
        metric=None,
        phase=None,
        region=None,
        expected=None,
        statistic=None,
        bin=None,
        effect=float("nan"),
        ci_lo=float("nan"),
        ci_hi=float("nan"),
        level=float("nan"),
        p=float("nan"),
        p_holm=float("nan"),
        verdict=None,
        sentence=None,
        n_seeds=None,
        not_learned=None,
        method=None,
        control=False,
        n_perm=None,
    )
    base.update(fields)
    return base


class SeedRun(NamedTuple):
    """One seed's distances of one (model, metric): the gathered matrix as the statistics need it."""

    distance: np.ndarray  # (E, K)
    epoch: np.ndarray  # (E,)
    score: np.ndarray = None  # (K,) the batches' mean metric scores
    seed: object = None  # the run's seed, to name it
    learning: Learning = None  # None: taken as learned
    gram: np.ndarray = None  # (E, K, K) the batch Gram matrices (None: no set tests)


def _not_learned_note(runs):
    """Words for the runs of a cell that did not learn: which seeds, their accuracy and chance."""
    bad = [r for r in runs if r.learning is not None and not r.learning.learned]
    if not bad:
        return ""
    names = ", ".join(str(r.seed) for r in bad if r.seed is not None)
    accuracy = ", ".join(f"{r.learning.accuracy:.2f}" for r in bad)
    which = f"seed{'s' if len(bad) > 1 else ''} {names}" if names else f"{len(bad)} seed(s)"
    return (
        f"the network did not learn under this order in {which} (test accuracy {accuracy} over the last phase, "
        f"chance {bad[0].learning.chance:.2f})"
    )


def _set_rows(grams, perm, cell, n_seeds, n_perm, scheme):
    """The exploratory rows "region, as one set, against random sets of its size" of one cell (stats.sets)."""
    Cs = np.stack([normalised_phase_gram(g) for g in grams])
    K, rows = Cs.shape[-1], []
    if not np.all(np.isfinite(Cs)):
        return rows
    for region in SET_REGIONS:
        mask = region_mask(region, K)
        if not 2 <= mask.sum() <= K - 2:
            continue
        effect, studentized, null = set_test(Cs, mask, perm)
        rows.append(
            _row(
                kind="set",
                family="exploratory",
                region=region,
                statistic="set_vs_random",
                effect=effect,
                p=permutation_p(studentized, null),
                method=f"log of the region's root mean square error as one set over random sets of its size "
                f"(exact mean); studentized permutation test (each group's own spread; {n_perm:,} relabellings, "
                f"{scheme}) over {n_seeds} seed(s)",
                **cell,
            )
        )
    return rows


def _set_sentence(r):
    subject = REGION_WORDS.get(r["region"], (f"the batches in {r['region']}",))[0]
    of = "the random ordering" if r["metric"] == "random" else r["metric"]
    ratio = math.exp(r["effect"]) if np.isfinite(r["effect"]) else math.nan
    how = "better" if ratio < 1 else "worse"
    return (
        f"In phase {r['phase']} {subject} of {of}, taken as one set, approximate the full gradient with {ratio:.2f} "
        f"times the root mean square error of random sets of the same size ({how} than random; {r['n_seeds']} seeds, "
        f"exploratory, Holm-adjusted {_fmt_p(r['p_holm'])})."
    )


def _applicable(claims, metric, phase):
    """The claims tested in one cell: those about the metric and, on the random ordering, every claim of the phase
    (as its control)."""
    return [
        c
        for c in claims
        if phase in c.phases and (metric in c.metrics or (metric == "random" and "random" not in c.metrics))
    ]


def _phase_runs(runs, first, last):
    """[(distances, scores, Gram matrices or None)] of each run in the phase's epochs first..last; a run with no
    epoch there is left out."""
    picked = []
    for run in runs:
        epoch = np.asarray(run.epoch)
        sel = (epoch >= first) & (epoch <= last)
        if sel.any():
            gram = None if run.gram is None else np.asarray(run.gram)[sel]
            picked.append((np.asarray(run.distance, dtype=float)[sel], run.score, gram))
    return picked


def _not_interpretable_rows(applicable, cell, note):
    """The claims and controls of a cell none of whose seeds learned: named, not tested, outside both families."""
    rows = []
    for claim in applicable:
        is_control = cell["metric"] not in claim.metrics
        rows.append(
            _row(
                kind="control" if is_control else "claim",
                claim=claim.id,
                region=claim.region,
                expected=claim.expected,
                statistic="contrast",
                verdict=NOT_INTERPRETABLE,
                control=is_control,
                n_seeds=0,
                method="not tested: no seed of this order learned",
                sentence=sentence(
                    cell["phase"],
                    cell["metric"],
                    claim.region,
                    *[math.nan] * 4,
                    math.nan,
                    NOT_INTERPRETABLE,
                    0,
                    note=note,
                ),
                **cell,
            )
        )
    return rows


def _claim_test(claim, P, null, cell, scheme, studentized):
    """The row of a claim (on the random ordering: its control) in one cell, without its interval, and how to invert
    its test: a WelchContrast, or (the null contrasts, each relabelling's share of a shift) for the plain contrast."""
    units, unit_perm, relabelled = null
    n_perm, S = cell["n_perm"], cell["n_seeds"]
    is_control = cell["metric"] not in claim.metrics
    mask = region_mask(claim.region, P.shape[-1])
    w = contrast_weights(mask)
    effect = float(contrast(mask)(P))
    if studentized:
        welch = WelchContrast(units, unit_perm, mask, relabelled)
        p, interval = welch.p(0.0), welch
        how = f"studentized permutation test (Welch-type contrast; {n_perm:,} relabellings, {scheme}) over {S} seed(s)"
    else:
        null_a = (relabelled @ w).mean(-1)
        p = permutation_p(effect, null_a)
        # the same relabellings of the shift delta x mask: each replicate's contrast moves by b delta
        interval = (null_a, (mask[unit_perm] @ w).mean(-1))
        how = f"permutation test ({n_perm:,} relabellings, {scheme}) over {S} seed(s)"
    row = _row(
        kind="control" if is_control else "claim",
        family="exploratory" if is_control else "confirmatory",
        claim=claim.id,
        region=claim.region,
        expected=claim.expected,
        statistic="contrast",
        effect=effect,
        p=p,
        method=f"{how}; interval: the shifts of the region's mean z it does not reject at Holm's level",
        control=is_control,
        **cell,
    )
    return row, interval


def _association_rows(P, null, perm, scores, cell):
    """Spearman rho of position with the profile, and of the batches' mean scores where every seed has them."""
    rho = position_rho(P)
    rows = [
        _row(
            kind="association",
            family="exploratory",
            statistic="rho_position",
            effect=rho,
            p=permutation_p(rho, _position_rho_null(*null)),
            method="Spearman rho of position with the seed-averaged profile",
            **cell,
        )
    ]
    if all(score is not None for score in scores):
        scores = np.stack([np.asarray(score, dtype=float) for score in scores])
        rho = float(score_rho(scores)(P))
        rows.append(
            _row(
                kind="association",
                family="exploratory",
                statistic="rho_score",
                effect=rho,
                p=permutation_p(rho, _score_rho_null(scores, P, perm)),
                method="mean over seeds of Spearman rho of batch mean score with the profile",
                **cell,
            )
        )
    return rows


def _profile_rows(Ds, cell, alpha, rng, n_boot):
    """Mean z per decile and per quartile with its descriptive interval over seeds (where K has that many bins)."""
    rows = []
    for name, n in (("decile", 10), ("quartile", 4)):
        if Ds[0].shape[1] < n:
            continue
        est = positional_profile(Ds, n, alpha, rng, n_boot)
        for b in range(n):
            rows.append(
                _row(
                    kind="profile",
                    statistic=name,
                    bin=b + 1,
                    effect=float(est.mean[b]),
                    ci_lo=float(est.lo[b]),
                    ci_hi=float(est.hi[b]),
                    method=est.method,
                    **cell,
                )
            )
    return rows


def _cell_rows(picked, applicable, cell, rng, n_perm, scheme, studentized, alpha, n_boot):
    """The rows of one (model, metric, phase) with learned seeds, in order: its claims and controls, associations,
    sets and profiles; and [(row, how to invert its test)] of the claims and controls, for their intervals."""
    Ds = _seeds([D for D, _, _ in picked])
    K, S = Ds[0].shape[1], len(Ds)
    cell = dict(cell, n_seeds=S, n_perm=n_perm)
    P = seed_profiles(Ds)
    perm = relabellings(rng, n_perm, S, K, scheme)
    # the units relabelled: with one relabelling for every seed the statistics below are functions of the
    # seed-averaged profile, relabelled once; with one per seed, of each seed's own profile
    if scheme == "shared":
        units, unit_perm = P.mean(0, keepdims=True), perm[:, :1]
    else:
        units, unit_perm = P, perm
    null = (units, unit_perm, relabel(units, unit_perm))  # relabelled: (n, U, K)
    tests = [_claim_test(claim, P, null, cell, scheme, studentized) for claim in applicable]
    rows = [row for row, _ in tests]
    rows += _association_rows(P, null, perm, [score for _, score, _ in picked], cell)
    grams = [gram for _, _, gram in picked]
    if all(g is not None for g in grams):
        rows += _set_rows(grams, perm, cell, S, n_perm, scheme)
    rows += _profile_rows(Ds, cell, alpha, rng, n_boot)
    return rows, tests


def _holm_by_family(rows, n_perm, alpha):
    """Holm within each family: each tested row's p_holm, and the level Holm decides it at (its interval's)."""
    for family in FAMILIES:
        members = [r for r in rows if r["family"] == family and np.isfinite(r["p"])]
        m = len(members)
        if m and m / (n_perm + 1) >= alpha:
            warnings.warn(
                f"{m} tests in the {family} family with n_perm={n_perm}: the smallest possible Holm-adjusted p is "
                f"{m / (n_perm + 1):.3g} >= alpha = {alpha}, so nothing can be significant; raise n_perm",
                stacklevel=3,  # analyse_study's caller
            )
        pvalues = [r["p"] for r in members]
        for r, adj, level in zip(members, holm(pvalues), holm_levels(pvalues, alpha)):
            r["p_holm"], r["level"] = float(adj), float(level)


def _intervals(tests, n_perm):
    """Each claim's and control's interval: the shifts its test does not reject at its Holm level."""
    for row, interval in tests:
        if isinstance(interval, WelchContrast):
            lo, hi = interval.interval(row["level"])
        else:
            lo, hi = inverted_interval(row["effect"], *interval, row["level"], 1, n_perm + 1)
        # the interval holds the printed effect (the estimate, up to rounding) without moving across 0
        row["ci_lo"], row["ci_hi"] = min(lo, row["effect"]), max(hi, row["effect"])


def _association_sentence(r):
    what = "position" if r["statistic"] == "rho_position" else "batch mean score"
    of = "the random ordering" if r["metric"] == "random" else r["metric"]
    return (
        f"In phase {r['phase']} the Spearman rho of {what} with the z-scored distance for {of} "
        f"is {r['effect']:+.2f} ({r['n_seeds']} seeds, exploratory, Holm-adjusted {_fmt_p(r['p_holm'])})."
    )


def _verdicts_and_sentences(rows, alpha, studentized):
    """The tested claims' verdicts (a control's is "control"), and the sentences of the tested rows."""
    for r in rows:
        if r["kind"] in ("claim", "control") and r["verdict"] != NOT_INTERPRETABLE:
            r["verdict"] = "control" if r["control"] else verdict(r["effect"], r["p_holm"], r["expected"], alpha)
            r["sentence"] = sentence(
                r["phase"],
                r["metric"],
                r["region"],
                r["effect"],
                r["ci_lo"],
                r["ci_hi"],
                r["level"],
                r["p_holm"],
                r["verdict"],
                r["n_seeds"],
                r["control"],
                r["not_learned"] or "",
                alpha,
                "studentized permutation test" if studentized else "permutation test",
            )
        elif r["kind"] == "set":
            r["sentence"] = _set_sentence(r)
        elif r["kind"] == "association":
            r["sentence"] = _association_sentence(r)


def _summaries(rows, models, claims):
    """Per (model, claim), over its metric-phase rows: not interpretable if none was, supported if all are,
    contradicted if any is, else inconclusive."""
    by_id, summaries = {c.id: c for c in claims}, []
    for model in models:
        for claim_id in dict.fromkeys(r["claim"] for r in rows if r["kind"] == "claim" and r["model"] == model):
            verdicts = [
                r["verdict"] for r in rows if r["kind"] == "claim" and r["model"] == model and r["claim"] == claim_id
            ]
            if all(v == NOT_INTERPRETABLE for v in verdicts):
                overall = NOT_INTERPRETABLE
            elif all(v == "supported" for v in verdicts):
                overall = "supported"
            elif any(v == "contradicted" for v in verdicts):
                overall = "contradicted"
            else:
                overall = "inconclusive"
            counts = ", ".join(f"{verdicts.count(v)} {v}" for v in (*VERDICTS, NOT_INTERPRETABLE) if v in verdicts)
            n = len(verdicts)
            summaries.append(
                _row(
                    kind="summary",
                    model=model,
                    claim=claim_id,
                    region=by_id[claim_id].region,
                    expected=by_id[claim_id].expected,
                    verdict=overall,
                    sentence=f'{model}: "{by_id[claim_id].text}" {overall.capitalize()}: {counts} '
                    f"({n} metric-phase row{'s' if n != 1 else ''}).",
                )
            )
    return summaries


def analyse_study(
    matrices,
    phases,
    metrics,
    claims=PAPER_CLAIMS,
    n_perm=9999,
    alpha=0.05,
    seed=0,
    n_boot=2000,
    scheme="shared",
    studentized=True,
):
    """Every claim, control, association and profile of a study as tidy rows (a list of dicts, one schema).

    matrices: {(model, metric): [per seed: SeedRun(distance=(E, K), epoch=(E,), score=(K,), seed, learning)]}
    phases: [(phase, first_epoch, last_epoch, lr)].
    kind "claim": a claim tested on one (model, metric, phase), family "confirmatory"; "control": the same
    test on the random ordering (control=True, verdict "control"), family "exploratory"; "association":
    Spearman rho of position (rho_position) and of batch mean score (rho_score) with the profile,
    "exploratory"; "set" (where every seed's run carries its Gram matrices, SeedRun.gram): each of SET_REGIONS as
    one set of batches against random sets of its size (stats.sets: the log of the ratio of root mean square
    errors, negative when the region is the better set), "exploratory", without an interval; "profile": mean z
    per decile and quartile with a t-interval over seeds (descriptive);
    "summary": per (model, claim), supported if all its rows are supported, contradicted if any is
    contradicted, else inconclusive. Holm runs within each family. A claim's or control's effect is the
    contrast (the shift of the region's mean z); its p-value relabels the studentized contrast
    (WelchContrast: robust to a region whose batches spread more or less than the rest's), or with
    studentized=False the plain contrast (kept to show, in tests/test_stats.py and benchmarks/power.py, what
    the studentized test fixes). Its interval inverts that test at the level Holm decides it at
    (holm_levels), so it excludes 0 exactly when the Holm-adjusted p < alpha. The Spearman rows' nulls come
    from relabelled ranks (ranks are equivariant), which gives the values of relabelling and ranking each
    profile. A seed whose run did not learn (SeedRun.learning, stats.LEARNING_RULE) is left out and named;
    a cell with no seed left gets "not interpretable" rows outside both families. Deterministic given `seed`.
    """
    if scheme not in ("shared", "per_seed"):
        raise ValueError(f"analyse_study: scheme {scheme!r}; use shared or per_seed (per_epoch is the wrong null)")
    models = list(dict.fromkeys(model for model, _ in matrices))
    rows, tests = [], []  # tests: (row, how to invert its test) of the claims and controls, for the intervals
    for model in models:
        for metric in metrics:
            runs = matrices.get((model, metric)) or []
            note = _not_learned_note(runs)
            learned = [r for r in runs if r.learning is None or r.learning.learned]
            for phase, first, last, _lr in phases:
                cell = dict(model=model, metric=metric, phase=phase, not_learned=note or None)
                applicable = _applicable(claims, metric, phase)
                picked = _phase_runs(learned, first, last)
                if picked:
                    rng = _cell_rng(seed, model, metric, phase)
                    cell_rows, cell_tests = _cell_rows(
                        picked, applicable, cell, rng, n_perm, scheme, studentized, alpha, n_boot
                    )
                    rows += cell_rows
                    tests += cell_tests
                elif runs and note:
                    rows += _not_interpretable_rows(applicable, cell, note)
    _holm_by_family(rows, n_perm, alpha)
    _intervals(tests, n_perm)
    _verdicts_and_sentences(rows, alpha, studentized)
    return rows + _summaries(rows, models, claims)
