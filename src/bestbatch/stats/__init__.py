"""From heatmaps to conclusions: the paper's claims as tests with a calibrated null.

Input, for one (model, metric, phase): a list over seeds of (E, K) matrices D[e, k] = ||g_k - g_bar||
(E epochs of the phase, K batch positions in the metric's ascending order), and optionally each seed's (K,)
batch mean scores. Every statistic works on within-epoch z-scores (each row standardised), so each
epoch's gradient scale is divided out; a negative z means "closer to the full gradient". Effects are in
within-epoch SD units.

The null. A batch that is close in one epoch tends to stay close (persistence), so epochs are not
independent replicates: permuting each epoch's positions independently destroys that persistence and gives
a null that is far too narrow (anti-conservative; tests/test_stats.py measures it). The permutation here
relabels batch positions once per replicate, the same relabelling for every epoch, so each batch keeps its
whole history. By default the same relabelling is also used for every seed ("shared"): with a
deterministic ordering (intensity, color, edges, lpips) batch k holds the same images in every seed, so
its idiosyncrasy is shared by the seeds and only a relabelling shared by the seeds is exact; when the seeds
are independent (the random ordering) it is exact too. "per_seed" (an independent relabelling per seed) is
exact only for independent seeds; "per_epoch" is the naive, wrong null, kept to show why.

The claims' test. A claim compares a region of positions with the rest; its effect is the contrast, the
difference in mean z (the shift of the region's mean z, in SD units). Its p-value relabels the studentized
contrast, that difference over its Welch standard error (WelchContrast): relabelling assumes the positions
exchangeable, and a region that is no closer on average but more variable from batch to batch breaks that
(Behrens-Fisher), which the plain contrast takes for an effect (0.21 of null studies with a verdict when
the extremes' SD is doubled; tests/test_stats.py). A permuted studentized statistic is asymptotically
valid under unequal spreads and exact under exchangeability (Janssen 1997; Chung & Romano 2013). The
interval printed beside it inverts the same test at the level Holm decides it at.

The seed is the unit of replication of the descriptive intervals (positional_profile, contrast_estimate:
the profile figure's error bars): with two or more seeds such an interval is a t-interval over the
per-seed values (df = S - 1). With one seed there is nothing to replicate, and the interval is an
epoch bootstrap that understates the uncertainty (the `method` field says so). The interval describes the
size of the difference in this ordering across training runs; the permutation p-value asks whether batch
position matters more than a random relabelling of the batches would. These are not Holm-adjusted.

Statistics are never tuned to give a verdict: a claim whose Holm-adjusted p is not below alpha is
reported as inconclusive.

The package, read one module at a time (statistics know no files: the steps read and write them):
  profiles     z-scores, batch profiles, regions of positions, descriptive intervals over seeds, rank correlation
  permutation  the permutation null, p-values, the studentized contrast, Holm, intervals that invert the tests
  learning     runs that did not learn
  sets         the paper's regions as sets of batches against random sets (from the Gram matrices)
  claims       the paper's claims, verdicts and sentences, and a whole study (analyse_study)
  simulate     simulated studies for calibration and power
Every public name is importable from bestbatch.stats itself.
"""

from .claims import (  # noqa: F401
    FAMILIES,
    NOT_INTERPRETABLE,
    PAPER_CLAIMS,
    SET_REGIONS,
    VERDICTS,
    Claim,
    SeedRun,
    analyse_study,
    fmt_interval,
    fmt_level,
    sentence,
    verdict,
)
from .learning import (  # noqa: F401
    LEARNING_KAPPA,
    LEARNING_RULE,
    Learning,
    learning_status,
    run_learning,
)
from .permutation import (  # noqa: F401
    ALTERNATIVES,
    SCHEMES,
    PermutationTest,
    WelchContrast,
    holm,
    holm_levels,
    inverted_interval,
    permutation_p,
    permutation_test,
    permuted_profiles,
    relabel,
    relabellings,
)
from .profiles import (  # noqa: F401
    ONE_SEED_METHOD,
    REGION_WORDS,
    REGIONS,
    Estimate,
    batch_profile,
    contrast,
    contrast_estimate,
    contrast_weights,
    position_bins,
    position_rho,
    positional_profile,
    region_mask,
    score_rho,
    seed_profiles,
    spearman,
    t_interval,
    zscore_rows,
)
from .sets import normalised_phase_gram, set_statistic, set_test  # noqa: F401
from .simulate import (  # noqa: F401
    simulate_gram_study,
    simulate_study,
)
