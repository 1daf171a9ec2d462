"""Runs that did not learn: a fixed margin above chance, the same at every test-set size. See bestbatch.stats."""

import math
from dataclasses import dataclass

import numpy as np

# --- runs that did not learn ----------------------------------------------------------------------------
# A fixed order can stop a network from learning (a sorted order that groups classes into batches). Such a
# run's gradients answer no question about training; it is named on every page and never averaged in.
# The rule is a fixed practical margin above chance, the same at every test-set size: a margin of binomial
# standard errors (as before) called 0.15 accuracy "not learned" on 256 test images and "learned" on 10,000.

LEARNING_KAPPA = 0.03  # the share of the way from chance to perfect accuracy a run must reach to count as learned
LEARNING_RULE = (
    "A run counts as learned when its mean test accuracy over the last phase is at least chance plus 3% of the way "
    "from chance to perfect accuracy (chance + 0.03 × (1 − chance): 0.127 with 10 classes, 0.040 with 100), "
    "whatever the size of the test set."
)


@dataclass
class Learning:
    """Whether a run learned: its mean test accuracy over the last phase against chance (1 / classes).

    margin: how far above chance the rule asks for (LEARNING_KAPPA (1 - chance)); se: the binomial standard
    error of an accuracy near chance on this test set, sqrt(chance (1 - chance) / n_test), which describes
    the uncertainty of the accuracy and plays no part in the decision."""

    learned: bool
    accuracy: float
    chance: float
    margin: float
    se: float = math.nan

    def describe(self):
        if self.learned:
            return f"learned: test accuracy {self.accuracy:.2f} over the last phase, chance {self.chance:.2f}"
        return (
            f"the network did not learn under this order: test accuracy {self.accuracy:.2f} over the last phase, "
            f"chance {self.chance:.2f}"
        )


def learning_status(last_phase_accuracy, n_classes, n_test):
    """Learning of a run from its test accuracies over its last phase (LEARNING_RULE): it learned when their
    mean is at least chance + LEARNING_KAPPA (1 - chance), chance = 1 / n_classes (the test sets here are
    balanced): 0.127 for 10 classes at any test-set size. n_test only sets Learning.se, the binomial
    standard error that describes the accuracy's uncertainty. On 256 test images (one binomial draw of the
    test set) a run truly at 0.18, 0.19, 0.20 is called "not learned" in 1.1%, 0.4%, 0.1% of test sets (the
    old margin of 3 binomial SEs: 18%, 10%, 4%); a run at chance (0.10) is called "learned" in 8% of
    256-image test sets and practically never on 10,000 (tests/test_stats.py measures these)."""
    acc = np.asarray(last_phase_accuracy, dtype=float)
    if acc.size == 0 or not np.all(np.isfinite(acc)) or n_classes < 2 or n_test < 1:
        raise ValueError(
            f"learning_status: need finite accuracies, n_classes >= 2 and n_test >= 1 "
            f"(got {acc.size} values, {n_classes}, {n_test})"
        )
    chance = 1.0 / n_classes
    margin = LEARNING_KAPPA * (1 - chance)
    mean = float(acc.mean())
    se = math.sqrt(chance * (1 - chance) / n_test)
    return Learning(mean >= chance + margin - 1e-12, mean, chance, margin, se)


def run_learning(epochs, test_acc, phases, n_classes, n_test):
    """Learning of an Algorithm 1 run from its per-epoch test accuracies over the study's last phase
    (phases: [(phase, first_epoch, last_epoch, lr)]; a run that stops earlier: its last epoch)."""
    epochs, acc = np.asarray(epochs), np.asarray(test_acc, dtype=float)
    _, first, last, _ = phases[-1]
    sel = (epochs >= first) & (epochs <= last)
    return learning_status(acc[sel] if sel.any() else acc[epochs == epochs.max()], n_classes, n_test)
