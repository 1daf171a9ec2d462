"""The greedy_set selection policy (bestbatch.selection.greedy_set): per phase, the set of best_count(K,
best_fraction) batches chosen by forward selection, then single swaps until none improves (bestbatch.sets.best_set),
on the other seeds' normalised centred Gram matrices. Its
cross-fitting, its choice against a hand-computed average, the configs it refuses, its place in the comparisons
(exploratory only) and a dry run of a study that uses it. No training."""

import copy
import re

import numpy as np
import pytest
import yaml
from conftest import REPO, run_snakemake, write_config

from bestbatch import selection as S
from bestbatch.config import ConfigError, load_schema, validate_config
from bestbatch.formats import Matrix, NoGram, write_matrix
from bestbatch.sets import best_set, greedy_set
from bestbatch.steps.selection import arm_positions, gram_profile

SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
E, K, P = 4, 8, 30
PHASES = [(1, 1, 2, 0.1), (2, 3, 4, 0.01)]  # (phase, first epoch, last epoch, lr)
SELECTION_CONFIG = yaml.safe_load((REPO / ".test" / "config" / "selection.yaml").read_text())


def gradients(seed, scale=None):
    """(E, K, P) batch gradients of one run: a shared mean direction plus noise, each epoch on its own scale."""
    rng = np.random.default_rng(seed)
    g = rng.normal(1.0, 1.0, (E, 1, P)) + rng.normal(0.0, 1.0, (E, K, P))
    return g * (rng.uniform(0.1, 10.0, (E, 1, 1)) if scale is None else np.asarray(scale)[:, None, None])


def matrix(g, gram=True):
    """A gathered matrix of gradients g (E, K, P): distances from them, and their Gram matrices with `gram`."""
    g_bar = g.mean(1, keepdims=True)
    distance = np.linalg.norm(g - g_bar, axis=-1)
    return Matrix(
        epoch=np.arange(1, E + 1),
        batch=np.arange(K),
        distance=distance,
        cosine=np.einsum("ekp,ep->ek", g, g_bar[:, 0]) / (np.linalg.norm(g, axis=-1) * np.linalg.norm(g_bar, axis=-1)),
        norm=np.linalg.norm(g, axis=-1),
        train_loss=np.ones((E, K)),
        train_acc=np.full((E, K), 0.5),
        full_norm=np.linalg.norm(g_bar[:, 0], axis=-1),
        lr=np.repeat([0.1, 0.01], E // 2),
        phase=np.repeat([1, 2], E // 2),
        test_loss=np.ones(E),
        test_acc=np.linspace(0.3, 0.6, E),
        batch_score_min=np.arange(K) - 0.5,
        batch_score_mean=np.arange(K, dtype=float),
        batch_score_max=np.arange(K) + 0.5,
        layer_distance=distance[..., None],
        layer_name=np.array(["linear.weight"]),
        noise_scale=np.ones(E),
        gradient_diversity=np.ones(E),
        batch_size=16,
        gram=np.einsum("ekp,elp->ekl", g, g) if gram else None,
    )


def write_runs(folder, grads):
    """One distances.h5 per seed (as results/<study>/<model>/seed_<s>/<metric>/distances.h5): {seed: path}."""
    paths = {}
    for seed, g in grads.items():
        paths[seed] = folder / f"seed_{seed}" / "intensity" / "distances.h5"
        paths[seed].parent.mkdir(parents=True, exist_ok=True)
        write_matrix(paths[seed], "intensity", matrix(g), "{}")
    return paths


def picked(paths, seed, arm="greedy_set.intensity", best_fraction=0.5):
    """What the training job of `seed`'s arm visits: the workflow hands it the matrices of every other seed
    (common.smk arm_inputs; test_a_study_with_greedy_set_dry_runs checks it) and it calls arm_positions."""
    others = [str(p) for s, p in sorted(paths.items()) if s != seed]
    return arm_positions(
        arm,
        K,
        len(PHASES),
        seed=seed,
        phases=PHASES,
        profile_paths=others,
        drop_fraction=0.1,
        best_fraction=best_fraction,
    )


def as_lists(positions):
    return {phase: pos.tolist() for phase, pos in positions.items()}


def test_the_set_of_a_seed_never_sees_that_seed(tmp_path):
    grads = {s: gradients(s) for s in (0, 1, 2)}
    before = as_lists(picked(write_runs(tmp_path / "a", grads), 0))
    assert all(len(p) == S.best_count(K, 0.5) == 4 for p in before.values())
    # seed 0's own Gram matrices change: its set does not
    own = {**grads, 0: gradients(100)}
    assert as_lists(picked(write_runs(tmp_path / "b", own), 0)) == before
    # another seed's Gram matrices change: its set does (in some phase)
    other = {**grads, 1: gradients(101)}
    assert as_lists(picked(write_runs(tmp_path / "c", other), 0)) != before
    # the random ordering's arm picks as many positions at random, from no file
    random_arm = picked({}, 0, arm="greedy_set.random")
    assert as_lists(random_arm) == as_lists(S.random_pick(K, len(PHASES), 0.5, 0))
    # random_subset.greedy_set picks the same positions as greedy_set (then draws as many images at random)
    assert as_lists(picked(write_runs(tmp_path / "a", grads), 0, arm="random_subset.greedy_set.intensity")) == before


def test_the_set_is_the_best_set_of_the_hand_computed_normalised_average(tmp_path):
    """best_set (forward selection, then single swaps) of the hand-computed average; at best_fraction 0.5 in phase 1
    the swaps change forward selection's set ([0, 2, 3, 4] -> [1, 2, 3, 4]), so the test tells the two apart."""
    grads = {s: gradients(10 + s) for s in (0, 1, 2)}
    paths = write_runs(tmp_path, grads)
    swapped = []
    for best_fraction, m in ((0.5, 4), (0.3, 2), (1.0, K)):
        got = picked(paths, 2, best_fraction=best_fraction)
        for phase, first, last, _ in PHASES:
            per_seed = []
            for s in (0, 1):  # the other seeds of seed 2
                Cs = []
                for e in range(first - 1, last):
                    d = grads[s][e] - grads[s][e].mean(0)  # g_k - g_bar
                    C = d @ d.T
                    Cs.append(C / (np.trace(C) / K))
                per_seed.append(np.mean(Cs, axis=0))
            C_mean = np.mean(per_seed, axis=0)
            members, error = best_set(C_mean, m)
            assert got[phase].tolist() == members.tolist(), (best_fraction, phase)
            order, greedy_error = greedy_set(C_mean, m)
            assert error <= greedy_error[-1] * (1 + 1e-12)
            if sorted(order.tolist()) != members.tolist():
                swapped.append((best_fraction, phase))
    assert swapped == [(0.5, 1)]
    # each epoch counts alike whatever its gradient scale: rescaling one epoch's gradients changes nothing
    rescaled = {**grads, 0: grads[0] * np.array([1e3, 1, 1e-3, 1])[:, None, None]}
    assert as_lists(picked(write_runs(tmp_path / "rescaled", rescaled), 2)) == as_lists(picked(paths, 2))
    # the profile is the normalised average, read from the files' Gram matrices
    profile = gram_profile([str(paths[0]), str(paths[1])], PHASES)
    assert sorted(profile) == [1, 2] and all(np.trace(C) == pytest.approx(K) for C in profile.values())


def test_a_file_without_gram_matrices_is_refused_naming_the_setting(tmp_path):
    path = tmp_path / "distances.h5"
    write_matrix(path, "intensity", matrix(gradients(0), gram=False), "{}")
    with pytest.raises(NoGram, match="outputs.gram"):
        gram_profile([str(path)], PHASES)


def selection_config(**changes):
    config = copy.deepcopy(SELECTION_CONFIG)
    config["selection"]["policies"] = ["all", "greedy_set"]
    for key, value in changes.items():
        config[key] = value
    return config


def test_one_seed_or_no_gram_matrices_is_refused():
    validate_config(selection_config(), SCHEMA)
    with pytest.raises(ConfigError, match=r"^selection.policies: greedy_set needs at least two seeds"):
        validate_config(selection_config(seeds=[0]), SCHEMA)
    no_gram = selection_config(outputs=dict(SELECTION_CONFIG["outputs"], gram=False))
    with pytest.raises(ConfigError, match=r"^selection.policies: greedy_set needs outputs.gram: true") as refused:
        validate_config(no_gram, SCHEMA)
    assert "drop greedy_set" in str(refused.value)
    no_gram["selection"]["policies"] = ["all", "measured_best"]
    validate_config(no_gram, SCHEMA)  # measured_best reads the distances alone


def test_greedy_set_is_compared_like_measured_best_and_only_exploratory():
    arms = S.arms(["all", "drop_extremes", "measured_best", "greedy_set"], ["intensity"], S.CONTROLS)
    assert {"greedy_set.intensity", "greedy_set.random", "random_subset.greedy_set.intensity"} <= set(arms)
    assert S.controls_of("greedy_set.intensity", arms) == [
        "all.intensity",
        "random_subset.greedy_set.intensity",
        "greedy_set.random",
        "shuffled",
    ]
    plan = S.comparison_plan(arms)
    rows = [row for row in plan if row[0] == "greedy_set.intensity"]
    assert len(rows) == 4 * len(S.QUANTITIES) and all(words is None for *_, words in rows)  # exploratory
    assert all(words is None for a, c, q, words in plan if "greedy_set" in a or "greedy_set" in c)
    assert S.policy_positions("greedy_set", K, 1, profile={1: np.eye(K)})[1].tolist() == list(range(4))  # ties: low


def test_a_study_with_greedy_set_dry_runs(tmp_path):
    """The selection test study with greedy_set and three seeds plans its jobs; seed 0's greedy_set arm reads the
    Algorithm 1 matrices of seeds 1 and 2 only; its random-order arm reads none. outputs.gram false is refused."""
    config = selection_config(seeds=[0, 1, 2])
    config["selection"]["budgets"] = [1.0]
    cfg = write_config(tmp_path / "greedy.yaml", config)
    out = run_snakemake(tmp_path, "--configfile", str(cfg), "-n").stdout
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], re.M))
    arms = S.arms(["all", "greedy_set"], ["intensity"], S.CONTROLS)
    # 3 seeds, each arm's run in two chunks of two epoch-equivalents (3 epochs), one gather per run
    assert len(arms) == 6 and int(counts["select_train"]) == 3 * len(arms) * 2
    assert int(counts["select_gather"]) == 3 * len(arms) and counts["selection"] == "1"
    jobs = {m.group(2): m.group(1) for m in re.finditer(r"input: (.*)\n.*output: (\S+?),? ", out)}
    seed0 = jobs["results/tinysel/selection/tiny_mlp_bn/budget_1/seed_0/greedy_set.intensity/checkpoints/chunk_0.pt"]
    read = re.findall(r"seed_(\d)/intensity/distances\.h5", seed0)
    assert sorted(read) == ["1", "2"]
    seed0_random = jobs[
        "results/tinysel/selection/tiny_mlp_bn/budget_1/seed_0/greedy_set.random/checkpoints/chunk_0.pt"
    ]
    assert "distances.h5" not in seed0_random
    config["outputs"]["gram"] = False
    refused = run_snakemake(
        tmp_path, "--configfile", str(write_config(tmp_path / "no_gram.yaml", config)), "-n", check=False
    )
    assert refused.returncode != 0
    assert "greedy_set needs outputs.gram: true" in refused.stdout + refused.stderr
