"""Training on a subset of a metric's fixed batches (bestbatch.selection): the policies' batch sets, the
step schedule, equal step budgets, partial passes spread over the plan, shuffled SGD and the `all` policy
against plain loops bit for bit, chunked training against one go, the comparison plan, and a planted effect
the policies must find (the statistics themselves: tests/test_selection_stats.py)."""

import copy
import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO

from bestbatch import selection as S
from bestbatch.augment import images_to_tensor, make_batch
from bestbatch.config import lr_of_epoch, phase_of_epoch
from bestbatch.data import make_synthetic
from bestbatch.metrics import order_from_scores, score_images
from bestbatch.models import build_model
from bestbatch.selection_stats import sign_flip_test
from bestbatch.stats import REGIONS
from bestbatch.training import KeepLast, make_optimizer, run_epoch

LR, MOMENTUM, WD, GAMMA = 0.1, 0.9, 5e-4, 0.1


@pytest.fixture(autouse=True)
def one_thread():
    """Small models run fastest on one thread; the thread count is restored for the other tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_data():
    """96 random training images (K = 6 batches of 16) and 40 test images."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(136, 32, 32, 3), dtype=np.uint8)
    labels = torch.as_tensor(rng.integers(0, 10, size=136))
    x = images_to_tensor(images, "cpu")
    return x[:96], labels[:96], x[96:], labels[96:], rng.permutation(96)


def run(visitor, net, opt, data, start, end, *, seed, eval_every=6):
    images, labels, test_images, test_labels, _ = data
    return S.train_chunk(
        net,
        opt,
        images,
        labels,
        visitor,
        start,
        end,
        lr=LR,
        milestone_steps=visitor.milestone_steps,
        lr_gamma=GAMMA,
        seed=seed,
        augment=True,
        dtype=torch.float32,
        test_images=test_images,
        test_labels=test_labels,
        eval_every=eval_every,
        last_step=visitor.total_steps,
    )


def fresh(seed=1):
    net = build_model("tiny_mlp_bn", seed=seed)
    return net, make_optimizer(net, LR, MOMENTUM, WD)


def assert_same_state(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


# --- policies on a hand-made ordering -----------------------------------------------------------------


def test_policies_batch_sets_on_a_hand_made_ordering():
    K = 20
    every = list(range(20))
    pos = S.policy_positions("all", K, 3)
    assert {p: v.tolist() for p, v in pos.items()} == {1: every, 2: every, 3: every}
    # drop_extremes: q = k / K dropped when q < f or q >= 1 - f
    assert S.policy_positions("drop_extremes", K, 3)[2].tolist() == list(range(2, 18))  # default f = 0.1
    pos = S.policy_positions("drop_extremes", K, 3, {"drop_fraction": 0.15})
    assert all(v.tolist() == list(range(3, 17)) for v in pos.values())
    assert S.policy_positions("drop_extremes", K, 1, {"drop_fraction": 0.25})[1].tolist() == list(range(5, 15))
    assert S.policy_positions("drop_extremes", K, 1, {"drop_fraction": 0.0})[1].tolist() == every
    assert S.policy_positions("drop_extremes", 7, 1, {"drop_fraction": 0.1})[1].tolist() == list(
        range(1, 7)
    )  # 0.7 -> k >= 1; k < 6.3
    pos = S.policy_positions("phase1_upper_quartile", K, 3)
    assert pos[1].tolist() == [15, 16, 17, 18, 19] and pos[2].tolist() == every and pos[3].tolist() == every
    # the same regions as the claims page's, for the paper's K and odd ones
    for k_ in (195, 21, 33, 40):
        k = np.arange(k_)
        assert np.array_equal(
            S.policy_positions("drop_extremes", k_, 1)[1], np.flatnonzero(~REGIONS["extremes_10"](k, k_))
        )
        assert np.array_equal(
            S.policy_positions("phase1_upper_quartile", k_, 2)[1], np.flatnonzero(REGIONS["upper_quartile"](k, k_))
        )
    assert S.policy_positions("drop_extremes", 195, 1)[1].tolist() == list(range(20, 176))
    # measured_best: the lowest-profile positions of each phase
    rng = np.random.default_rng(3)
    profile = {1: rng.permutation(K) - 10.0, 2: np.arange(K, 0, -1) / 7.0, 3: np.zeros(K)}
    pos = S.policy_positions("measured_best", K, 3, profile=profile)
    assert pos[1].tolist() == sorted(np.flatnonzero(profile[1] < 0).tolist())  # the 10 lowest
    assert pos[2].tolist() == list(range(10, 20))
    assert pos[3].tolist() == list(range(10))  # all tied: the lower positions
    assert S.policy_positions("measured_best", K, 3, {"best_fraction": 0.2}, profile=profile)[2].tolist() == [
        16,
        17,
        18,
        19,
    ]
    assert len(S.policy_positions("measured_best", 5, 1, {"best_fraction": 0.5}, profile={1: np.arange(5.0)})[1]) == 3
    with pytest.raises(ValueError, match="measured_best needs `profile`"):
        S.policy_positions("measured_best", K, 3)
    with pytest.raises(ValueError, match="no phase 3"):
        S.policy_positions("measured_best", K, 3, profile={1: profile[1], 2: profile[2]})
    with pytest.raises(ValueError, match="unknown parameter 'fraction'"):
        S.policy_positions("drop_extremes", K, 3, {"fraction": 0.1})
    with pytest.raises(ValueError, match="unknown policy"):
        S.policy_positions("best", K, 3)
    with pytest.raises(ValueError, match="drop_fraction"):
        S.policy_positions("drop_extremes", K, 3, {"drop_fraction": 0.5})


def test_policy_plan_cuts_the_order_into_fixed_batches():
    order = np.random.default_rng(5).permutation(62)  # K = 20 batches of 3, the last 2 images dropped
    plan = S.policy_plan(order, 3, S.policy_positions("phase1_upper_quartile", 20, 2))
    assert plan[1].tolist() == [order[3 * k : 3 * k + 3].tolist() for k in range(15, 20)]
    assert plan[2].tolist() == order[:60].reshape(20, 3).tolist()


def test_adding_a_policy_is_one_function(tiny_data):
    @S.policy("every_other", offset=0)
    def every_other(K, phase, n_phases, params, profile=None):
        return np.arange(params["offset"] + phase - 1, K, 2)

    try:
        pos = S.policy_positions("every_other", 6, 2, {"offset": 0})
        assert pos[1].tolist() == [0, 2, 4] and pos[2].tolist() == [1, 3, 5]
        plan = S.policy_plan(tiny_data[4], 16, pos)
        # phase 2 starts at step 7, mid-cycle: its cycle starts afresh, in a new pass
        v = S.Visitor(
            "fixed", plan, n_images=96, batch_size=16, seed=0, milestone_steps=[7], total_steps=13, positions=pos
        )
        # phase 1's third pass is partial (one step): its row comes from the whole plan, not always row 0
        last = pos[1][v.partial_row(0, 3, 1, 2)]
        assert [v.batch(s)[2] for s in range(13)] == [0, 2, 4, 0, 2, 4, last] + [1, 3, 5] * 2
        assert [v.batch(s)[1] for s in range(13)] == [0, 0, 0, 1, 1, 1, 2] + [3, 3, 3, 4, 4, 4]
        lasts = {
            S.Visitor("fixed", plan, n_images=96, batch_size=16, seed=seed, milestone_steps=[7], total_steps=13).batch(
                6
            )[2]
            for seed in range(30)
        }
        assert lasts == {0, 1, 2}  # row labels (no positions given): every row of the plan can end the phase
        assert np.array_equal(v.batch(8)[0], tiny_data[4][48:64])  # position 3: images 48..63 of the order
        with pytest.raises(ValueError, match="already registered"):
            S.policy("every_other")(every_other)

        @S.policy("broken")
        def broken(K, phase, n_phases, params, profile=None):
            return np.array([3, 1])

        with pytest.raises(ValueError, match="sorted, unique"):
            S.policy_positions("broken", 6, 1)
    finally:
        S.POLICIES.pop("every_other", None)
        S.POLICIES.pop("broken", None)


def test_random_subset_matches_the_image_counts_at_random():
    order = np.arange(1000)
    pos = S.policy_positions("phase1_upper_quartile", 50, 2)
    plan = S.policy_plan(order, 20, pos)
    sub = S.random_subset_plan(plan, 1000, rng_seed=4)
    assert {p: b.shape for p, b in sub.items()} == {1: (12, 20), 2: (50, 20)}  # 4k >= 150: k >= 38
    assert len(np.unique(sub[1])) == 240 and len(np.unique(sub[2])) == 1000
    assert set(sub[1].ravel()) <= set(sub[2].ravel())
    assert np.mean(sub[1] < 760) > 0.5  # not the policy's images (the upper quartile is 760..999)
    assert not np.array_equal(sub[1], S.random_subset_plan(plan, 1000, rng_seed=5)[1])
    assert np.array_equal(sub[1], S.random_subset_plan(plan, 1000, rng_seed=4)[1])
    same = S.random_subset_plan(S.policy_plan(order, 20, S.policy_positions("drop_extremes", 50, 3)), 1000, 4)
    assert np.array_equal(same[1], same[3]) and len(np.unique(same[1])) == 800


# --- the schedule and equal budgets -------------------------------------------------------------------


def test_milestones_line_up_for_every_budget():
    epochs, K, ms = 12, 20, [4, 8]
    assert S.total_steps(epochs, K, 1.0) == 240 and S.total_steps(epochs, K, 0.25) == 60
    assert S.milestone_steps(ms, K, 1.0) == [80, 160] and S.milestone_steps(ms, K, 0.25) == [20, 40]
    for budget in (1.0, 0.25):
        T, M = S.total_steps(epochs, K, budget), S.milestone_steps(ms, K, budget, epochs)
        assert [m / T for m in M] == [1 / 3, 2 / 3]
        assert [b[1] / T for b in S.phase_bounds(M, T)] == [0, 1 / 3, 2 / 3]
    # budget 1.0: step s is in epoch s // K + 1, with that epoch's phase and lr
    M = S.milestone_steps(ms, K, 1.0)
    for s in range(240):
        assert S.phase_of_step(s, M) == phase_of_epoch(s // K + 1, ms)
        assert S.lr_of_step(s, LR, M, GAMMA) == lr_of_epoch(s // K + 1, LR, ms, GAMMA)
    # the paper: 150 epochs x 195 batches; a quarter budget rounds half up
    assert S.total_steps(150, 195, 0.25) == 7313 and S.milestone_steps([50, 100], 195, 0.25) == [2438, 4875]
    with pytest.raises(ValueError, match="phase would be empty"):
        S.milestone_steps([1, 2], 2, 0.25)
    with pytest.raises(ValueError, match="end of the run"):
        S.milestone_steps([4, 12], K, 1.0, epochs)


@pytest.mark.parametrize("budget", [1.0, 0.25])
def test_every_policy_and_control_takes_the_same_steps(tiny_data, budget):
    images, labels, _, _, order = tiny_data
    N, B, K, epochs = 96, 16, 6, 8
    T, M = S.total_steps(epochs, K, budget), S.milestone_steps([4, 6], K, budget, epochs)
    random_order = np.random.default_rng(9).permutation(N)
    profile = {p: np.random.default_rng(p).standard_normal(K) for p in (1, 2, 3)}
    runs = {}
    for oname, o in (("metric", order), ("random", random_order)):
        for name in ("all", "drop_extremes", "phase1_upper_quartile", "measured_best"):
            params = {"drop_extremes": {"drop_fraction": 0.2}, "measured_best": {"best_fraction": 0.7}}.get(name, {})
            pos = S.policy_positions(name, K, 3, params, profile=profile)
            plan = S.policy_plan(o, B, pos)
            runs[f"{name}/{oname}"] = S.Visitor(
                "fixed", plan, n_images=N, batch_size=B, seed=0, milestone_steps=M, total_steps=T, positions=pos
            )
            if name != "all" and oname == "metric":
                runs[f"random_subset/{name}"] = S.Visitor(
                    "fixed",
                    S.random_subset_plan(plan, N, 0),
                    n_images=N,
                    batch_size=B,
                    seed=0,
                    milestone_steps=M,
                    total_steps=T,
                )
    runs["shuffled"] = S.Visitor("shuffled", n_images=N, batch_size=B, seed=0, milestone_steps=M, total_steps=T)
    sizes = {name: tuple(v.images_per_phase().values()) for name, v in runs.items()}
    assert len(set(sizes.values())) >= 4, sizes  # the plans differ in size ...
    per_phase = [M[0], M[1] - M[0], T - M[1]]
    for name, v in runs.items():  # ... and every run takes exactly T steps, phase by phase alike
        net, opt = fresh()
        steps = []
        step = opt.step

        def counted(opt=opt, step=step, steps=steps):
            steps.append(opt.param_groups[0]["lr"])
            step()

        opt.step = counted
        rows = run(v, net, opt, tiny_data, 0, T, seed=0, eval_every=K)
        assert len(steps) == T, name
        assert [steps.count(LR * GAMMA**i) for i in range(3)] == per_phase, name
        assert rows[-1]["step"] == T and sum(r["train_steps"] for r in rows) == T, name
        seen = [v.batch(s)[1:] for s in range(T)]
        assert len(set(seen)) == T, name  # (pass, position) never repeats: augmentation never repeats
        with pytest.raises(ValueError, match="outside the run"):
            v.batch(T)


# --- against plain loops, bit for bit -----------------------------------------------------------------


def test_shuffled_is_a_plain_training_loop_bitwise(tiny_data):
    images, labels = tiny_data[:2]
    N, B, K, seed = 96, 16, 6, 3
    M = S.milestone_steps([1, 2], K)
    v = S.Visitor("shuffled", n_images=N, batch_size=B, seed=seed, milestone_steps=M, total_steps=3 * K)
    net, opt = fresh()
    plain = copy.deepcopy(net)
    plain_opt = make_optimizer(plain, LR, MOMENTUM, WD)
    run(v, net, opt, tiny_data, 0, 3 * K, seed=seed)
    for pass_ in range(3):
        perm = np.random.default_rng([seed, pass_]).permutation(N)
        for group in plain_opt.param_groups:
            group["lr"] = LR * GAMMA**pass_
        for k in range(K):
            idx = torch.as_tensor(perm[k * B : (k + 1) * B])
            plain_opt.zero_grad()
            F.cross_entropy(
                plain(make_batch(images, idx, seed, pass_ + 1, k, True, torch.float32)), labels[idx]
            ).backward()
            plain_opt.step()
    assert_same_state(net, plain)
    # and the test can tell: another seed trains another net
    other, other_opt = fresh()
    run(
        S.Visitor("shuffled", n_images=N, batch_size=B, seed=seed + 1, milestone_steps=M, total_steps=3 * K),
        other,
        other_opt,
        tiny_data,
        0,
        3 * K,
        seed=seed,
    )
    assert not torch.equal(other.fc1.weight, net.fc1.weight)


def test_all_policy_is_algorithm1_net_normal_bitwise(tiny_data):
    """Budget 1.0, whole-epoch milestones: `all` trains exactly Algorithm 1's net_normal."""
    images, labels, _, _, order = tiny_data
    K, seed = 6, 5
    M = S.milestone_steps([2], K)
    pos = S.policy_positions("all", K, 2)
    v = S.Visitor(
        "fixed",
        S.policy_plan(order, 16, pos),
        n_images=96,
        batch_size=16,
        seed=seed,
        milestone_steps=M,
        total_steps=3 * K,
        positions=pos,
    )
    net, opt = fresh()
    ref = copy.deepcopy(net)
    ref_opt = make_optimizer(ref, LR, MOMENTUM, WD)
    run(v, net, opt, tiny_data, 0, 3 * K, seed=seed)
    for epoch in (1, 2, 3):
        for group in ref_opt.param_groups:
            group["lr"] = lr_of_epoch(epoch, LR, [2], GAMMA)
        run_epoch(
            ref,
            ref_opt,
            images,
            labels,
            order,
            epoch=epoch,
            batch_size=16,
            seed=seed,
            augment=True,
            dtype=torch.float32,
            sink=KeepLast(),
            progress=False,
        )
    assert_same_state(net, ref)


@pytest.mark.parametrize("kind", ["shuffled", "drop_extremes"])
def test_chunked_training_equals_one_go(tiny_data, kind):
    N, B, K, seed = 96, 16, 6, 2
    T, M = 30, S.milestone_steps([2, 4], K)  # 5 epochs; the chunk boundary at step 15: mid-phase, mid-pass
    if kind == "shuffled":
        make = lambda: S.Visitor("shuffled", n_images=N, batch_size=B, seed=seed, milestone_steps=M, total_steps=T)
    else:
        pos = S.policy_positions("drop_extremes", K, 3, {"drop_fraction": 0.2})  # 4 of 6 batches
        plan = S.policy_plan(tiny_data[4], B, pos)
        make = lambda: S.Visitor(
            "fixed", plan, n_images=N, batch_size=B, seed=seed, milestone_steps=M, total_steps=T, positions=pos
        )
    net, opt = fresh()
    rows = run(make(), net, opt, tiny_data, 0, T, seed=seed, eval_every=3)
    part, part_opt = fresh()
    first = run(make(), part, part_opt, tiny_data, 0, 15, seed=seed, eval_every=3)
    buffer = io.BytesIO()
    torch.save({"net": part.state_dict(), "optimizer": part_opt.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed = build_model("tiny_mlp_bn", seed=99)  # another init: everything must come from the checkpoint
    resumed_opt = make_optimizer(resumed, 0.5, MOMENTUM, WD)
    resumed.load_state_dict(state["net"])
    resumed_opt.load_state_dict(state["optimizer"])
    second = run(make(), resumed, resumed_opt, tiny_data, 15, T, seed=seed, eval_every=3)
    assert_same_state(net, resumed)
    assert first + second == rows
    assert [r["step"] for r in rows] == list(range(3, 31, 3)) and [r["phase"] for r in rows][::3] == [1, 1, 2, 3]


# --- partial passes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [0.25, 0.4])
def test_a_partial_pass_covers_the_whole_plan_evenly(budget):
    """A demo-like layout (9 epochs of 32 batches) at budget 0.25: 24 steps a phase over 32 batches. Every arm spreads them over its
    whole plan: each row visited at most once per pass, the skipped rows spread evenly (no run of them), and
    every arm of the budget still takes the same steps."""
    N, B, epochs, milestones = 2048, 64, 9, [3, 6]
    K = S.steps_per_epoch(N, B)
    T, M = S.total_steps(epochs, K, budget), S.milestone_steps(milestones, K, budget, epochs)
    order = np.random.default_rng(0).permutation(N)
    profile = {p: np.random.default_rng(p).standard_normal(K) for p in (1, 2, 3)}
    visitors = {}
    for name in ("all", "drop_extremes", "phase1_upper_quartile", "measured_best"):
        pos = S.policy_positions(name, K, 3, profile=profile)
        plan = S.policy_plan(order, B, pos)
        common = dict(n_images=N, batch_size=B, seed=3, milestone_steps=M, total_steps=T)
        visitors[name] = (S.Visitor("fixed", plan, positions=pos, **common), pos)
        if name != "all":
            visitors[f"random_subset.{name}"] = (S.Visitor("fixed", S.random_subset_plan(plan, N, 1), **common), None)
    for name, (v, pos) in visitors.items():
        seen_steps = 0
        for phase, first, end in v.bounds:
            n = len(v.plan[phase])
            rows = [v.batch(s) for s in range(first, end)]
            seen_steps += len(rows)
            labels = pos[phase] if pos is not None else np.arange(n)
            row_of = {int(label): j for j, label in enumerate(labels)}
            by_pass = {}
            for idx, pass_, label in rows:
                j = row_of[label]
                assert np.array_equal(idx, v.plan[phase][j])
                by_pass.setdefault(pass_, []).append(j)
            for pass_, js in by_pass.items():
                counts = np.bincount(js, minlength=n)
                assert counts.max() - counts.min() <= 1 and counts.max() == 1, (name, phase, pass_)
                if len(js) < n:  # partial: the visited rows are evenly spread, in the plan's order
                    assert js == sorted(js)
                    gaps = np.diff([-1] + js + [n])
                    assert gaps.max() - gaps.min() <= 1 + (n // len(js)), (name, phase, gaps)
                    skipped = np.flatnonzero(counts == 0)
                    assert not (len(skipped) > 1 and np.all(np.diff(skipped) == 1)), (name, phase, skipped)
        assert seen_steps == T, name
    # the demo's 0.25: all.intensity no longer trains on positions 0-23 only
    if budget == 0.25:
        v, pos = visitors["all"]
        first_phase = [v.batch(s)[2] for s in range(v.bounds[0][1], v.bounds[0][2])]
        assert len(first_phase) == 24 and max(first_phase) >= 28 and first_phase != list(range(24))


def test_measured_best_random_arm_picks_as_many_positions_at_random():
    pick = S.random_pick(32, 3, 0.5, seed=4)
    assert all(len(p) == S.best_count(32, 0.5) == 16 and np.all(np.diff(p) > 0) for p in pick.values())
    assert not np.array_equal(pick[1], pick[2])  # a pick per phase
    assert np.array_equal(pick[1], S.random_pick(32, 3, 0.5, seed=4)[1])
    assert not np.array_equal(pick[1], S.random_pick(32, 3, 0.5, seed=5)[1])
    assert S.best_count(5, 0.5) == 3 and S.best_count(7, 0.01) == 1


def test_evaluation_grid_gives_enough_evaluations_and_divides_the_chunks():
    # the demo: 7 epochs of 32 batches, one job per run: 224 steps at budget 1 (28 evaluations), 56 at 0.25 (28)
    assert S.evaluation_every(224, 224, 20) == 8 and S.evaluation_every(56, 224, 20) == 2
    # 9 epochs of 32 batches
    assert S.evaluation_every(288, 288, 20) == 12 and S.evaluation_every(72, 288, 20) == 3
    # the paper: 150 x 195 steps in jobs of 10 epochs
    every = S.evaluation_every(29250, 1950, 20)
    assert 1950 % every == 0 and 29250 // every >= 20 and 29250 // (every + 1) < 40
    assert S.evaluation_every(5, 10, 20) == 1  # fewer steps than evaluations: every step


def test_comparison_plan_names_the_confirmatory_family():
    arms = S.arms(["all", "drop_extremes", "phase1_upper_quartile", "measured_best"], ["intensity"], S.CONTROLS)
    plan = S.comparison_plan(arms)
    assert len(plan) == 42  # 14 comparisons in 3 outcomes, per budget: the demo's page has 84 over its two budgets
    assert {q for *_, q, words in plan if words} == {"mean_accuracy"}  # the confirmatory outcome
    confirmatory = [(a, c) for a, c, q, words in plan if words]
    assert confirmatory == [
        ("drop_extremes.intensity", "all.intensity"),
        ("phase1_upper_quartile.intensity", "all.intensity"),
    ]
    arms = S.arms(["all", "drop_extremes", "phase1_upper_quartile"], ["intensity", "color"], S.CONTROLS)
    words = {(a, c) for a, c, q, w in S.comparison_plan(arms) if w}
    assert ("phase1_upper_quartile.color", "all.color") not in words  # the paper names intensity and LPIPS only
    assert ("drop_extremes.color", "all.color") in words


def test_the_statistics_import_without_torch(tmp_path):
    code = textwrap.dedent("""
        import importlib.abc, sys
        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision", "lpips"):
                    raise ImportError(name)
        sys.meta_path.insert(0, NoTorch())
        from bestbatch.selection import comparison_plan, policy_positions
        from bestbatch.selection_stats import analyse_selection, sign_flip_test
        print(sign_flip_test([1, 2, 3]).p, policy_positions("all", 4, 1)[1].tolist())
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


# --- a planted effect ---------------------------------------------------------------------------------


def test_drop_extremes_beats_random_subset_when_the_extremes_are_noisy():
    """Synthetic data whose lowest and highest 15% by intensity carry random labels: dropping the extreme
    batches (drop_fraction 0.15) must beat a random subset of the same size, at equal steps, over seeds."""
    N, B, f = 1200, 30, 0.15  # K = 40 batches; f K = 6: positions 0..5 and 34..39 are dropped
    train, train_labels, test, test_labels, _ = make_synthetic(N, 400, seed=0)
    order = order_from_scores(score_images("intensity", train))
    K, epochs = S.steps_per_epoch(N, B), 12
    T, M = S.total_steps(epochs, K), S.milestone_steps([8, 10], K, 1.0, epochs)
    pos = S.policy_positions("drop_extremes", K, 3, {"drop_fraction": f})
    assert pos[1].tolist() == list(range(6, 34))
    plan = S.policy_plan(order, B, pos)
    n_noisy = round(f * N)
    extremes = np.concatenate([order[:n_noisy], order[N - n_noisy :]])
    assert not np.isin(plan[1], extremes).any()
    x, xt, yt = (
        images_to_tensor(train, "cpu"),
        images_to_tensor(test, "cpu"),
        torch.as_tensor(test_labels.astype(np.int64)),
    )
    finals = {"drop_extremes": [], "random_subset": []}
    for seed in range(6):  # 6 seeds: the sign-flip test's smallest p, 2 / 2^6, is below 0.05
        noisy = train_labels.astype(np.int64)
        noisy[extremes] = np.random.default_rng([99, seed]).integers(0, 10, len(extremes))
        y = torch.as_tensor(noisy)
        subset = S.random_subset_plan(plan, N, seed)
        assert {p: b.size for p, b in subset.items()} == {p: b.size for p, b in plan.items()}
        for name, visitor in (
            (
                "drop_extremes",
                S.Visitor(
                    "fixed", plan, n_images=N, batch_size=B, seed=seed, milestone_steps=M, total_steps=T, positions=pos
                ),
            ),
            (
                "random_subset",
                S.Visitor("fixed", subset, n_images=N, batch_size=B, seed=seed, milestone_steps=M, total_steps=T),
            ),
        ):
            net, opt = fresh(seed)
            rows = S.train_chunk(
                net,
                opt,
                x,
                y,
                visitor,
                0,
                T,
                lr=LR,
                milestone_steps=M,
                lr_gamma=GAMMA,
                seed=seed,
                augment=True,
                dtype=torch.float32,
                test_images=xt,
                test_labels=yt,
                eval_every=K,
                last_step=T,
            )
            assert rows[-1]["step"] == T
            finals[name].append(rows[-1]["test_acc"])
    test = sign_flip_test(np.subtract(finals["drop_extremes"], finals["random_subset"]))
    summary = f"{finals}, p = {test.p}"
    assert test.mean > 0 and test.p < 0.05, summary
    lo, hi = test.interval(0.05)
    assert 0 < lo <= test.mean <= hi, summary
