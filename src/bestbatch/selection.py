"""Do the "best" mini-batches train faster? Training on a subset of a metric's fixed batches.

The paper ends with two recommendations it never tried: training converges slightly faster (1) without
the batches at a metric's extremes, and (2) in the first phase, on the upper-quartile batches of
intensity / LPIPS only. This module turns such recommendations into *policies* and trains plain networks
(no net_compare, no shards) on them, under equal step budgets, against controls.

Vocabulary
----------
* **K** fixed batches: a metric's ascending order cut into K = N // batch_size batches (the last partial
  batch dropped, `bestbatch.config.num_batches`), position k = 0..K-1 (k = 0 holds the lowest scores).
* **Steps, not epochs.** Every run takes the same number of optimizer steps, `total_steps(epochs, K,
  budget)`, whatever its batch set; the lr schedule is in steps (`milestone_steps`), so the phases of
  every run of a budget start at the same step and at the same fraction of the run for every budget.
  Steps are 0-based: step s is the (s+1)-th optimizer step.
* **Policy**: which positions a run visits in each phase, `fn(K, phase, n_phases, params, profile=None)
  -> sorted positions`; registered with `@policy("name", **defaults)`.
* **Plan**: per phase, an int array (n_batches, batch_size) of training-image indices, visited cyclically
  in that order from the phase's first step (`policy_plan`, `random_subset_plan`).
* **Shuffled** (standard SGD) is not a plan: each pass over the data is a fresh permutation.
* **Visitor**: the batch of any step from (seed, step) alone, so any chunk of steps can be recomputed on
  its own; `train_chunk` trains one chunk.

Augmentation is seeded by (seed, pass + 1, position) (`bestbatch.augment.make_batch`): a pass is one
cycle through a phase's plan (one permutation for `shuffled`), counted over the whole run, so a pair
(pass, position) never repeats within a run. For a policy the position is the batch's position in the
metric's order, so the same batch in the same pass gets the same crops under every policy; with budget
1.0 and whole-epoch milestones the `all` policy is exactly Algorithm 1's net_normal (pass = epoch - 1).

The experiment's arms and the comparisons between them are named here (`arms`, `comparison_plan`); the
comparisons themselves, their corrections and verdicts are statistics (`bestbatch.stats.analyse_selection`).
PyTorch is imported by the functions that train, so the analysis can import this module without it.
"""

import logging
import math
from fractions import Fraction

import numpy as np

from . import sets
from .config import num_batches

log = logging.getLogger("bestbatch")

# --- the schedule, in steps ---------------------------------------------------------------------------
# Budgets and fractions are read as exact fractions (Fraction(x).limit_denominator(10**6): 0.1 is 1/10,
# 0.25 is 1/4), and "round" is round half up on those exact values, so a bound never depends on the
# binary representation of a float.


def _exact(x, what):
    if isinstance(x, bool) or not isinstance(x, (int, float, Fraction, np.integer, np.floating)):
        raise ValueError(f"{what}: {x!r} is not a number")
    if not math.isfinite(float(x)):
        raise ValueError(f"{what}: {x!r} is not finite")
    return Fraction(x) if isinstance(x, (int, np.integer, Fraction)) else Fraction(float(x)).limit_denominator(10**6)


def _round_half_up(q):
    return math.floor(q + Fraction(1, 2))


def steps_per_epoch(n_images, batch_size):
    """K: the fixed batches of the full order, one epoch of the full data = K steps."""
    return num_batches(n_images, batch_size)


def total_steps(epochs, K, budget=1.0):
    """round(budget x epochs x K): the optimizer steps of every run of this budget (budget > 0, e.g. 1.0 or 0.25)."""
    b = _exact(budget, "budget")
    if b <= 0 or epochs < 1 or K < 1:
        raise ValueError(f"need budget > 0, epochs >= 1 and K >= 1; got budget={budget}, epochs={epochs}, K={K}")
    T = _round_half_up(b * epochs * K)
    if T < 1:
        raise ValueError(f"budget {budget} of {epochs} epochs x {K} batches leaves no step")
    return T


def milestone_steps(lr_milestones, K, budget=1.0, epochs=None):
    """The epoch milestones in steps, round(m x K x budget): the lr drops before these 0-based steps.

    Phase p starts at the same fraction m / epochs of the run for every budget (up to the rounding to a
    whole step). With `epochs`, the milestones must also fall inside the run. Milestones that collide
    once in steps (a budget too small for K) are refused: a phase would be empty.
    """
    b = _exact(budget, "budget")
    if b <= 0:
        raise ValueError(f"budget: {budget} must be > 0")
    if list(lr_milestones) != sorted(set(lr_milestones)) or any(int(m) != m or m < 1 for m in lr_milestones):
        raise ValueError(f"lr_milestones {list(lr_milestones)} must be positive integers, strictly increasing")
    steps = [_round_half_up(Fraction(int(m)) * K * b) for m in lr_milestones]
    if any(s2 <= s1 for s1, s2 in zip([0] + steps, steps)):
        raise ValueError(
            f"lr_milestones {list(lr_milestones)} at budget {budget} with K={K} give steps {steps}: "
            f"a phase would be empty; use a larger budget or fewer milestones"
        )
    if epochs is not None and steps and steps[-1] >= total_steps(epochs, K, budget):
        raise ValueError(f"milestone steps {steps} reach the end of the run ({total_steps(epochs, K, budget)} steps)")
    return steps


def lr_of_step(step, lr, milestone_steps, gamma):
    """The lr of 0-based `step`: lr x gamma per milestone step reached (step >= m)."""
    return lr * gamma ** sum(step >= m for m in milestone_steps)


def phase_of_step(step, milestone_steps):
    """1-based phase of 0-based `step` (like config.phase_of_epoch: with budget 1.0, step s is in epoch s // K + 1)."""
    return 1 + sum(step >= m for m in milestone_steps)


def phase_bounds(milestone_steps, total_steps):
    """[(phase, first_step, end_step), ...]: phase p takes the steps first_step <= s < end_step."""
    bounds = [0] + list(milestone_steps) + [total_steps]
    if any(b2 <= b1 for b1, b2 in zip(bounds, bounds[1:])):
        raise ValueError(
            f"milestone steps {list(milestone_steps)} do not split {total_steps} steps into non-empty phases"
        )
    return [(i + 1, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


# --- policies -----------------------------------------------------------------------------------------

POLICIES = {}


def policy(name, **defaults):
    """Register `fn(K, phase, n_phases, params, profile=None) -> positions` as policy `name`.

    `defaults` are its parameters and their default values: `policy_positions` fills them in and refuses
    any other key. The positions are those of the metric's ascending order (0..K-1) visited in `phase`.
    """

    def register(fn):
        if name in POLICIES:
            raise ValueError(f"policy {name!r} is already registered")
        fn.defaults = dict(defaults)
        POLICIES[name] = fn
        return fn

    return register


def policy_positions(name, K, n_phases, params=None, profile=None):
    """{phase: sorted int64 positions} of policy `name` for every phase 1..n_phases, checked."""
    if name not in POLICIES:
        raise ValueError(
            f"unknown policy {name!r}; known: {', '.join(sorted(POLICIES))} "
            f"(add one with @policy in bestbatch/selection.py)"
        )
    fn = POLICIES[name]
    params = dict(params or {})
    unknown = sorted(set(params) - set(fn.defaults))
    if unknown:
        raise ValueError(
            f"policy {name!r}: unknown parameter {unknown[0]!r}; allowed: {', '.join(sorted(fn.defaults)) or 'none'}"
        )
    params = {**fn.defaults, **params}
    out = {}
    for phase in range(1, n_phases + 1):
        pos = np.asarray(fn(K, phase, n_phases, params, profile=profile))
        if pos.ndim != 1 or pos.size == 0 or not np.issubdtype(pos.dtype, np.integer):
            raise ValueError(
                f"policy {name!r}, phase {phase}: expected a non-empty 1-D integer array of positions, "
                f"got {pos.dtype} {pos.shape}"
            )
        if pos.min() < 0 or pos.max() >= K or np.any(np.diff(pos) <= 0):
            raise ValueError(f"policy {name!r}, phase {phase}: positions must be sorted, unique and in 0..{K - 1}")
        out[phase] = pos.astype(np.int64)
    return out


@policy("all")
def all_positions(K, phase, n_phases, params, profile=None):
    """Every batch, in the metric's order."""
    return np.arange(K)


@policy("drop_extremes", drop_fraction=0.1)
def drop_extremes(K, phase, n_phases, params, profile=None):
    """Without the lowest and highest f of positions (every phase): q = k / K, dropped if q < f or q >= 1 - f.

    With f = a / b exactly (0.1 = 1/10): k is dropped iff k b < K a or k b >= K (b - a). f = 0.1 is the
    claims page's `extremes_10`; K = 195 keeps 20 <= k <= 175, K = 20 and f = 0.15 keeps 3 <= k <= 16.
    """
    f = _exact(params["drop_fraction"], "drop_fraction")
    if not 0 <= f < Fraction(1, 2):
        raise ValueError(f"drop_extremes: drop_fraction {params['drop_fraction']} must be in [0, 0.5)")
    a, b = f.numerator, f.denominator
    k = np.arange(K)
    keep = (k * b >= K * a) & (k * b < K * (b - a))
    if not keep.any():
        raise ValueError(f"drop_extremes: drop_fraction {params['drop_fraction']} drops all {K} batches")
    return np.flatnonzero(keep)


@policy("phase1_upper_quartile")
def phase1_upper_quartile(K, phase, n_phases, params, profile=None):
    """Phase 1: the upper-quartile positions (4k >= 3K, the claims page's `upper_quartile`); later phases: all."""
    k = np.arange(K)
    return np.flatnonzero(4 * k >= 3 * K) if phase == 1 else k


@policy("measured_best", best_fraction=0.5)
def measured_best(K, phase, n_phases, params, profile=None):
    """Per phase, the round(K x best_fraction) positions (round half up, at least 1) with the lowest mean
    within-epoch z-scored distance in the Algorithm 1 study of the same model (ties: the lower position).

    profile: {phase: (K,) mean z profile} (`profile_from_distances`) of the *other* seeds' Algorithm 1 runs
    (cross-fitted: what picks a seed's batches never saw that seed's run, which starts from the same
    init.pt). On the random ordering, whose batches differ from seed to seed, no other run measured the same
    batches: that arm picks as many positions at random instead (`random_pick`).
    """
    if profile is None:
        raise ValueError(
            "measured_best needs `profile`: {phase: (K,) mean within-epoch z-scored distance of each "
            "position, averaged over the seeds of the Algorithm 1 study} (profile_from_distances)"
        )
    if phase not in profile:
        raise ValueError(f"measured_best: the profile has no phase {phase} (it has {sorted(profile)})")
    z = np.asarray(profile[phase], dtype=float)
    if z.shape != (K,) or not np.all(np.isfinite(z)):
        raise ValueError(f"measured_best: the profile of phase {phase} must be {K} finite values, got {z.shape}")
    return np.sort(np.argsort(z, kind="stable")[: best_count(K, params["best_fraction"])])


@policy("greedy_set", best_fraction=0.5)
def greedy_set(K, phase, n_phases, params, profile=None):
    """Per phase, the set of round(K x best_fraction) positions (as many as measured_best) whose mean gradient
    came closest to the full gradient in the Algorithm 1 runs of the same model and metric from the other
    seeds: forward selection, then single swaps until none improves (bestbatch.sets.best_set: greedy_set, then
    swap_refine), on their average normalised centred Gram matrix. The swaps fix forward selection's myopia in
    part (the set is a 1-swap local optimum, exact at m = 1 and K - 1), not in general: the name is kept.

    profile: {phase: (K, K) matrix} (`set_profile_from_grams`): each epoch's centred Gram matrix divided by
    tr(C) / K, so every epoch counts alike whatever its gradient scale, averaged over the phase's epochs and the
    *other* seeds (cross-fitted, as measured_best). The set is visited in the metric's order, as measured_best's.
    What it may claim: this set's mean gradient approximated g_bar in other seeds' runs, at the epoch-start
    parameters of a fixed-order run with every batch. It says nothing of a set chosen on the same seed, nor of
    the parameters a run on this set alone reaches; a speed-up of plain training on it is an exploratory lead,
    read against its random-order control (greedy_set.random: as many positions at random, `random_pick`) and
    random_subset, never a verdict (it tests none of the paper's recommendations).
    """
    if profile is None:
        raise ValueError(
            "greedy_set needs `profile`: {phase: (K, K) mean normalised centred Gram matrix of the Algorithm 1 "
            "runs of the other seeds} (set_profile_from_grams)"
        )
    if phase not in profile:
        raise ValueError(f"greedy_set: the profile has no phase {phase} (it has {sorted(profile)})")
    C = np.asarray(profile[phase], dtype=np.float64)
    if C.shape != (K, K) or not np.all(np.isfinite(C)):
        raise ValueError(f"greedy_set: the profile of phase {phase} must be a finite {K} x {K} matrix, got {C.shape}")
    members, _ = sets.best_set(C, best_count(K, params["best_fraction"]))
    return members


def best_count(K, best_fraction):
    """How many positions measured_best (and greedy_set) keeps of K: round half up of K x best_fraction, at least 1."""
    f = _exact(best_fraction, "best_fraction")
    if not 0 < f <= 1:
        raise ValueError(f"best_fraction {best_fraction} (measured_best, greedy_set) must be in (0, 1]")
    return max(1, _round_half_up(K * f))


def random_pick(K, n_phases, best_fraction, seed):
    """measured_best's and greedy_set's control on the random ordering: per phase best_count(K, best_fraction)
    positions drawn at random (np.random.default_rng([seed, phase, 2])), sorted (so with the same best_fraction
    the two controls visit the same batches)."""
    n = best_count(K, best_fraction)
    return {
        phase: np.sort(np.random.default_rng([int(seed), phase, 2]).choice(K, n, replace=False)).astype(np.int64)
        for phase in range(1, n_phases + 1)
    }


def profile_from_distances(distances_by_phase):
    """{phase: (K,) profile} from {phase: [one (E, K) distance matrix of the phase's epochs per seed]}: each
    seed's mean within-epoch z-score per position (bestbatch.stats.batch_profile), averaged over the seeds."""
    from .stats import seed_profiles

    return {phase: seed_profiles(Ds).mean(0) for phase, Ds in distances_by_phase.items()}


def set_profile_from_grams(grams_by_phase):
    """{phase: (K, K)} greedy_set's profile from {phase: [one (E, K, K) Gram stack of the phase's epochs per seed]}:
    each seed's mean normalised centred Gram matrix over the phase's epochs, averaged over the seeds."""
    return {
        phase: np.mean([sets.normalised_centred(G).mean(0) for G in Gs], axis=0) for phase, Gs in grams_by_phase.items()
    }


# Policies picked from the Algorithm 1 runs of the other seeds (cross-fitted; on the random ordering, random_pick)
CROSS_FITTED = ("measured_best", "greedy_set")


# --- plans --------------------------------------------------------------------------------------------


def policy_plan(order, batch_size, positions_per_phase):
    """{phase: (n_p, batch_size) int64 image indices}: the metric's ascending `order` cut into K fixed
    batches, the positions of each phase picked in ascending position order."""
    order = np.asarray(order, dtype=np.int64)
    K = num_batches(len(order), batch_size)
    batches = order[: K * batch_size].reshape(K, batch_size)
    plan = {}
    for phase, pos in positions_per_phase.items():
        pos = np.asarray(pos, dtype=np.int64)
        if pos.size == 0 or pos.min() < 0 or pos.max() >= K:
            raise ValueError(f"phase {phase}: positions must be non-empty and in 0..{K - 1}")
        plan[phase] = batches[pos]
    return plan


def random_subset_plan(plan, n_images, rng_seed):
    """The random_subset control of `plan`: per phase the same number of images, drawn at random without
    replacement from all `n_images`, cut into batches of the same size in random order, fixed for the run.

    One permutation of all images (np.random.default_rng([rng_seed])) serves every phase: phase p takes
    its first n_p x batch_size images. So phases of equal size visit the very same batches (as a policy
    whose set does not change between phases does), and a larger phase holds a smaller one's images.
    """
    perm = np.random.default_rng([int(rng_seed)]).permutation(int(n_images)).astype(np.int64)
    out = {}
    for phase, batches in plan.items():
        n_b, b = np.asarray(batches).shape
        if n_b * b > n_images:
            raise ValueError(f"phase {phase}: {n_b} x {b} images asked of a set of {n_images}")
        out[phase] = perm[: n_b * b].reshape(n_b, b)
    return out


def shuffled_permutation(seed, pass_, n_images):
    """The `shuffled` control's permutation of pass `pass_` (0-based): np.random.default_rng([seed, pass_])."""
    return np.random.default_rng([int(seed), int(pass_)]).permutation(int(n_images))


class Visitor:
    """Which images each step of a run trains on, from (seed, step) alone.

    kind "fixed": `plan` {phase: (n_p, B) indices}; in phase p (steps first_p <= s < end_p) step s takes
    row j = (s - first_p) mod n_p, in pass P_p + (s - first_p) // n_p, where P_p counts the passes (partial
    ones included) of the phases before. A pass the phase leaves partial (r < n_p steps, a budget below one
    pass per phase) visits r rows spread evenly over the whole plan, in order (`partial_row`): every row
    is visited once or not at all, so no part of the order is left out by its position. `positions` {phase: (n_p,) labels} names each row for the
    augmentation seed (a policy's positions in the metric's order; default: the row index).
    kind "shuffled": standard SGD, phases ignored: step s is batch s mod K of pass s // K, the permutation
    of that pass from np.random.default_rng([seed, pass]) (K = n_images // batch_size).
    """

    KINDS = ("fixed", "shuffled")

    def __init__(self, kind, plan=None, *, n_images, batch_size, seed, milestone_steps, total_steps, positions=None):
        if kind not in self.KINDS:
            raise ValueError(f"Visitor: unknown kind {kind!r}; allowed: {', '.join(self.KINDS)}")
        self.kind, self.n_images, self.batch_size, self.seed = kind, int(n_images), int(batch_size), int(seed)
        self.milestone_steps, self.total_steps = list(milestone_steps), int(total_steps)
        self.bounds = phase_bounds(self.milestone_steps, self.total_steps)
        self.K = num_batches(self.n_images, self.batch_size)
        if kind == "shuffled":
            if plan is not None or positions is not None:
                raise ValueError("Visitor: shuffled takes no plan and no positions")
            return
        if plan is None or sorted(plan) != [p for p, _, _ in self.bounds]:
            raise ValueError(
                f"Visitor: a fixed plan needs one entry per phase 1..{len(self.bounds)}, "
                f"got {None if plan is None else sorted(plan)}"
            )
        self.plan = {p: np.asarray(b, dtype=np.int64) for p, b in plan.items()}
        for p, b in self.plan.items():
            if b.ndim != 2 or b.shape[0] < 1 or b.shape[1] != self.batch_size:
                raise ValueError(f"Visitor: phase {p}'s plan has shape {b.shape}, expected (n, {self.batch_size})")
            if b.min() < 0 or b.max() >= self.n_images:
                raise ValueError(f"Visitor: phase {p}'s plan indexes outside 0..{self.n_images - 1}")
        positions = positions or {p: np.arange(len(b)) for p, b in self.plan.items()}
        self.positions = {p: np.asarray(positions[p], dtype=np.int64) for p in self.plan}
        for p, b in self.plan.items():
            if self.positions[p].shape != (len(b),) or len(np.unique(self.positions[p])) != len(b):
                raise ValueError(f"Visitor: phase {p} needs {len(b)} distinct position labels")
        self.pass_offset, passes = {}, 0
        for p, first, end in self.bounds:
            self.pass_offset[p] = passes
            passes += -(-(end - first) // len(self.plan[p]))  # ceil: a partial pass counts

    def phase(self, step):
        return phase_of_step(step, self.milestone_steps)

    def batch(self, step):
        """(image indices (B,) int64, pass, position) of 0-based `step`."""
        if not 0 <= step < self.total_steps:
            raise ValueError(f"step {step} is outside the run's {self.total_steps} steps")
        if self.kind == "shuffled":
            pass_, position = divmod(step, self.K)
            perm = shuffled_permutation(self.seed, pass_, self.n_images)
            return perm[position * self.batch_size : (position + 1) * self.batch_size].astype(np.int64), pass_, position
        phase = self.phase(step)
        _, first, end = self.bounds[phase - 1]
        n = len(self.plan[phase])
        p_in, j = divmod(step - first, n)
        pass_ = self.pass_offset[phase] + p_in
        partial = (end - first) - p_in * n  # steps left in the phase from this pass's start
        if partial < n:
            j = self.partial_row(j, n, partial, pass_)
        return self.plan[phase][j], pass_, int(self.positions[phase][j])

    def partial_row(self, i, n, r, pass_):
        """Row of the i-th step of a partial pass of r < n steps over n rows: floor((i n + o) / r) with a
        seeded offset o in 0..n-1 (np.random.default_rng([seed, pass, 1])). The r rows are spread evenly
        over the whole plan in its order (systematic sampling with a random start), never its first r."""
        offset = int(np.random.default_rng([self.seed, int(pass_), 1]).integers(n))
        return (i * n + offset) // r

    def images_per_phase(self):
        """{phase: distinct images the run visits in that phase}."""
        if self.kind == "shuffled":
            return {p: self.K * self.batch_size for p, _, _ in self.bounds}
        return {p: len(np.unique(b)) for p, b in self.plan.items()}


# --- training -----------------------------------------------------------------------------------------


def train_chunk(
    net,
    optimizer,
    images,
    labels,
    visitor,
    start_step,
    end_step,
    *,
    lr,
    milestone_steps,
    lr_gamma,
    seed,
    augment,
    dtype,
    test_images,
    test_labels,
    eval_every,
    last_step,
    progress=False,
    channel_stats=None,
):
    """Plain SGD steps start_step <= s < end_step of a run (net in train mode; the caller's optimizer).

    Each step is Algorithm 1's net_normal step: zero_grad, forward, cross_entropy, backward, step, on
    make_batch(images, idx, seed, pass + 1, position, augment, dtype) with (idx, pass, position) from
    `visitor`. The lr is set from the step schedule before a step whenever it differs from the
    optimizer's. After step s, the test set is evaluated when s + 1 is a multiple of `eval_every` or
    s + 1 == last_step (the run's total steps). Returns one row per evaluation: step (steps done), phase
    and lr of the last step, test_loss, test_acc, train_loss (mean over the train_steps steps of this
    chunk since the previous evaluation). Chunks that start on the evaluation grid give the same rows
    as one go; the parameters are the same in any case (bitwise on CPU, with the same thread count).
    A non-finite training loss raises training.NonFiniteError, naming the step, at the next evaluation
    or at the chunk's end (checking every step would synchronise a GPU every step). channel_stats: the inputs'
    normalisation, for training and test images alike (augment.normalize; None: CIFAR-10's).
    """
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from .augment import make_batch
    from .training import NonFiniteError, evaluate, seed_forward

    if last_step != visitor.total_steps or list(milestone_steps) != visitor.milestone_steps:
        raise ValueError(
            f"train_chunk: last_step {last_step} / milestones {list(milestone_steps)} differ from the "
            f"visitor's {visitor.total_steps} / {visitor.milestone_steps}"
        )
    if not 0 <= start_step < end_step <= last_step or eval_every < 1:
        raise ValueError(
            f"train_chunk: need 0 <= start_step < end_step <= last_step and eval_every >= 1, got "
            f"{start_step}, {end_step}, {last_step}, {eval_every}"
        )
    net.train()
    if hasattr(images, "expect"):  # placement.Images off the device: read the steps' batches ahead, in sequence
        images.expect(visitor.batch(s)[0] for s in range(start_step, end_step))
    rows, losses = [], []
    for s in tqdm(range(start_step, end_step), desc="steps", unit="step", disable=not progress, mininterval=2):
        step_lr = lr_of_step(s, lr, milestone_steps, lr_gamma)
        for group in optimizer.param_groups:
            if group["lr"] != step_lr:
                group["lr"] = step_lr
        idx, pass_, position = visitor.batch(s)
        # placement.Images off the device gathers by the host indices (no read-back from a GPU)
        gather = torch.as_tensor(idx) if hasattr(images, "expect") else None
        idx = torch.as_tensor(idx, device=images.device)
        x = make_batch(
            images, idx if gather is None else gather, seed, pass_ + 1, position, augment, dtype, channel_stats
        )
        seed_forward(seed, pass_ + 1, position)  # dropout as Algorithm 1's net_normal draws it
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), labels[idx])
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        if (s + 1) % eval_every == 0 or s + 1 == last_step:
            chunk = torch.stack(losses).double().cpu().numpy()
            bad = np.flatnonzero(~np.isfinite(chunk))
            if bad.size:
                raise NonFiniteError(f"non-finite training loss at step {s + 1 - len(chunk) + int(bad[0])} (0-based)")
            test_loss, test_acc = evaluate(net, test_images, test_labels, dtype, channel_stats=channel_stats)
            rows.append(
                dict(
                    step=s + 1,
                    phase=phase_of_step(s, milestone_steps),
                    lr=step_lr,
                    test_loss=test_loss,
                    test_acc=test_acc,
                    train_loss=float(chunk.mean()),
                    train_steps=len(chunk),
                )
            )
            log.info("step %d: test accuracy %.4f, train loss %.4f", s + 1, test_acc, chunk.mean())
            losses = []
    if losses:
        chunk = torch.stack(losses).double().cpu().numpy()
        bad = np.flatnonzero(~np.isfinite(chunk))
        if bad.size:
            raise NonFiniteError(f"non-finite training loss at step {end_step - len(chunk) + int(bad[0])} (0-based)")
    return rows


# --- the experiment: arms, and what each is compared with ----------------------------------------------

CONTROLS = ("shuffled", "random_subset", "random_ordering")
# The paper's two recommendations (section 5, future work 2), as (policy, metrics it names, words): the
# confirmatory family of the selection page (each policy against the same order with every batch).
RECOMMENDATIONS = (
    ("drop_extremes", None, "Training converges slightly faster without the batches at the metric's extremes."),
    (
        "phase1_upper_quartile",
        ("intensity", "lpips"),
        "In the first phase, training on high-intensity, very distinct (high LPIPS) batches only converges faster.",
    ),
)
# The outcomes every comparison is made in; the confirmatory family asks its question in the first: the
# test accuracy averaged over the run, which a run that learns faster raises in every phase it is still
# learning in (steps to a target and final accuracy stay, exploratory; docs/design.md has the power of each).
QUANTITIES = ("mean_accuracy", "steps_to_target", "final_accuracy")
CONFIRMATORY_QUANTITY = QUANTITIES[0]


def arms(policies, metrics, controls):
    """Every arm of the experiment, in a stable order."""
    out = [f"{p}.{m}" for p in policies for m in metrics]
    if "random_ordering" in controls:
        out += [f"{p}.random" for p in policies]
    if "random_subset" in controls:
        out += [f"random_subset.{p}.{m}" for p in policies if p != "all" for m in metrics]
    if "shuffled" in controls:
        out.append("shuffled")
    return out


def parse_arm(arm):
    """dict(kind=policy|random_subset|shuffled, policy=..., metric=...) of an arm's name."""
    parts = arm.split(".")
    if parts == ["shuffled"]:
        return dict(kind="shuffled", policy=None, metric=None)
    if parts[0] == "random_subset" and len(parts) == 3:
        return dict(kind="random_subset", policy=parts[1], metric=parts[2])
    if len(parts) == 2:
        return dict(kind="policy", policy=parts[0], metric=parts[1])
    raise ValueError(f"not an arm of the selection experiment: {arm!r}")


def controls_of(arm, all_arms):
    """The arms an arm is compared with: the same ordering with every batch, the same number of random
    images, the same policy on the random ordering, and standard SGD (those present)."""
    a = parse_arm(arm)
    if a["kind"] != "policy" or a["metric"] == "random":
        return []
    wanted = [
        f"all.{a['metric']}" if a["policy"] != "all" else None,
        f"random_subset.{a['policy']}.{a['metric']}",
        f"{a['policy']}.random",
        "shuffled",
    ]
    return [c for c in wanted if c in all_arms]


def recommendation_of(arm, control, quantity):
    """The words of the paper's recommendation this comparison tests (confirmatory), or None (exploratory)."""
    a = parse_arm(arm)
    if a["kind"] != "policy" or quantity != CONFIRMATORY_QUANTITY or control != f"all.{a['metric']}":
        return None
    for policy, named, words in RECOMMENDATIONS:
        if a["policy"] == policy and (named is None or a["metric"] in named):
            return words
    return None


def comparison_plan(all_arms):
    """[(arm, control, quantity, recommendation or None)]: every policy arm against each of its controls in
    both quantities; the comparisons that test one of the paper's recommendations carry its words."""
    return [
        (arm, control, quantity, recommendation_of(arm, control, quantity))
        for arm in all_arms
        for control in controls_of(arm, all_arms)
        for quantity in QUANTITIES
    ]


def run_layout(epochs, K, budgets, lr_milestones, chunk_epochs, evaluations):
    """{budget: dict(total_steps, milestones, eval_every)}: the steps every run of a budget takes, its lr
    drops in steps, and its evaluation grid, as the selection jobs compute them."""
    out = {}
    for budget in budgets:
        T = total_steps(epochs, K, budget)
        out[float(budget)] = dict(
            total_steps=T,
            milestones=milestone_steps(lr_milestones, K, budget, epochs),
            eval_every=evaluation_every(T, chunk_epochs * K, evaluations),
        )
    return out


def evaluation_every(total_steps, chunk_steps, evaluations):
    """Steps between evaluations: the largest divisor of a job's chunk_steps that gives at least
    `evaluations` evaluations over total_steps (so every chunk starts on the evaluation grid)."""
    if total_steps < 1 or chunk_steps < 1 or evaluations < 1:
        raise ValueError(f"evaluation_every: {total_steps}, {chunk_steps}, {evaluations} must be >= 1")
    best = 1
    for every in range(1, chunk_steps + 1):
        if chunk_steps % every == 0 and total_steps // every >= evaluations:
            best = every
    return best
