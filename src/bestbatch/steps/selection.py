"""Rules of selection.smk: do the "best" mini-batches train faster? Plain training runs that visit the
batches a policy picks (or a control's), with equal step budgets, and their comparison over seeds.

An *arm* is one way of choosing batches: `<policy>.<metric>` (a policy on a metric's order; the metric
`random` makes it the random-ordering control), `random_subset.<policy>.<metric>` (as many images as that
policy visits, drawn at random), or `shuffled` (standard SGD).
"""

import json
import logging
import zlib

import numpy as np

from ..logs import step

log = logging.getLogger("bestbatch")

CONTROLS = ("shuffled", "random_subset", "random_ordering")
# The paper's two recommendations (section 5, future work 2), as (policy, metrics it names, words).
RECOMMENDATIONS = (
    ("drop_extremes", None, "Training converges slightly faster without the batches at the metric's extremes."),
    (
        "phase1_upper_quartile",
        ("intensity", "lpips"),
        "In the first phase, training on high-intensity, very distinct (high LPIPS) batches only converges faster.",
    ),
)


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


def measured_profile(matrix_paths, phases):
    """{phase: mean within-epoch z profile over the seeds} of the Algorithm 1 matrices of one model and metric."""
    from ..formats import read_matrix
    from ..selection import profile_from_distances

    by_phase = {}
    for path in matrix_paths:
        m = read_matrix(path)
        for phase, first, last, _ in phases:
            rows = (m.epoch >= first) & (m.epoch <= last)
            by_phase.setdefault(phase, []).append(m.distance[rows])
    return profile_from_distances(by_phase)


@step
def train_arm_chunk(
    order_path,
    start_checkpoint,
    out_checkpoint,
    out_curve,
    *,
    profile_paths,
    data_root,
    data_format,
    arm,
    model,
    num_classes,
    seed,
    budget,
    chunk,
    chunk_epochs,
    epochs,
    phases,
    batch_size,
    lr,
    lr_milestones,
    lr_gamma,
    momentum,
    weight_decay,
    augment,
    dtype,
    device,
    threads,
    cuda_tf32,
    cuda_deterministic,
    drop_fraction,
    best_fraction,
    config_hash,
    granted_threads=None,
    progress=True,
):
    """Chunk `chunk` (epoch-equivalents chunk x chunk_epochs ...) of one arm's plain training run.

    Every arm of a budget takes total_steps(epochs, K, budget) optimizer steps; the lr schedule is in
    steps (the epoch milestones scaled by the budget), so phases line up. Chunk 0 starts from the run
    seed's init.pt, the same initialisation as Algorithm 1's runs. order_path: the arm's ordering (None
    for shuffled); profile_paths: the Algorithm 1 matrices of this model and metric (measured_best only)."""
    from ..formats import load_checkpoint, provenance, read_ordering, save_checkpoint, write_curve
    from ..models import build_model
    from ..selection import (
        Visitor,
        lr_of_step,
        milestone_steps,
        policy_plan,
        policy_positions,
        random_subset_plan,
        steps_per_epoch,
        total_steps,
        train_chunk,
    )
    from ..training import DTYPES, device_description, make_optimizer
    from .training import prepare_training

    seed, budget, chunk = int(seed), float(budget), int(chunk)
    dev, images, labels, test_images, test_labels = prepare_training(
        data_root=data_root,
        data_format=data_format,
        device=device,
        threads=threads,
        granted_threads=granted_threads,
        cuda_tf32=cuda_tf32,
        cuda_deterministic=cuda_deterministic,
    )
    torch_dtype = DTYPES[dtype]
    n_images = len(labels)
    K = steps_per_epoch(n_images, batch_size)
    T = total_steps(epochs, K, budget)
    milestones = milestone_steps(lr_milestones, K, budget, epochs)
    first, end = chunk * chunk_epochs * K, min(T, (chunk + 1) * chunk_epochs * K)
    if first >= T:
        raise ValueError(f"{arm}: chunk {chunk} starts at step {first}, after the run's {T} steps")

    a = parse_arm(arm)
    common = dict(n_images=n_images, batch_size=batch_size, seed=seed, milestone_steps=milestones, total_steps=T)
    if a["kind"] == "shuffled":
        visitor = Visitor("shuffled", **common)
    else:
        order, _ = read_ordering(order_path)
        params = {
            "drop_extremes": dict(drop_fraction=drop_fraction),
            "measured_best": dict(best_fraction=best_fraction),
        }.get(a["policy"], {})
        profile = measured_profile(profile_paths, phases) if a["policy"] == "measured_best" else None
        positions = policy_positions(a["policy"], K, len(milestones) + 1, params, profile)
        plan = policy_plan(order, batch_size, positions)
        if a["kind"] == "random_subset":
            plan = random_subset_plan(plan, n_images, zlib.crc32(f"{seed}:{arm}".encode()))
            positions = None
        visitor = Visitor("fixed", plan, positions=positions, **common)
    log.info(
        "%s, %s, seed %d, budget %g: steps %d..%d of %d (K = %d; images per phase %s) on %s",
        arm,
        model,
        seed,
        budget,
        first,
        end,
        T,
        K,
        visitor.images_per_phase(),
        device_description(dev),
    )

    state = load_checkpoint(start_checkpoint, dev)
    done = state.meta.get("step", 0) if state.optimizer is not None else 0
    if done != first:
        raise RuntimeError(f"{start_checkpoint} holds {done} steps, expected {first}")
    net = build_model(model, num_classes=num_classes).to(device=dev, dtype=torch_dtype)
    net.load_state_dict(state.model)
    optimizer = make_optimizer(net, lr_of_step(first, lr, milestones, lr_gamma), momentum, weight_decay)
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    rows = train_chunk(
        net,
        optimizer,
        images,
        labels,
        visitor,
        first,
        end,
        lr=lr,
        milestone_steps=milestones,
        lr_gamma=lr_gamma,
        seed=seed,
        augment=augment,
        dtype=torch_dtype,
        test_images=test_images,
        test_labels=test_labels,
        eval_every=K,
        last_step=T,
        progress=progress,
    )
    meta = dict(
        provenance(config_hash, device_description(dev), seed=seed, dtype=dtype), arm=arm, budget=budget, step=end
    )
    save_checkpoint(out_checkpoint, net.state_dict(), optimizer.state_dict(), chunk + 1, meta)
    write_curve(
        out_curve,
        rows,
        dict(arm=arm, model=model, seed=seed, budget=budget, total_steps=T, provenance=json.dumps(meta)),
    )
    return rows


@step
def gather_curve(chunk_paths, out_h5, out_csv):
    """One arm's run: its chunks' evaluations as one curve (HDF5 and a tidy CSV)."""
    from ..formats import read_curve, write_curve

    rows, attrs, steps = [], None, []
    for path in chunk_paths:
        curve, attrs_c = read_curve(path)
        attrs = attrs or attrs_c
        rows += curve.rows()
        steps += [int(s) for s in curve.step]
    if steps != sorted(set(steps)) or not steps or steps[-1] != attrs["total_steps"]:
        raise ValueError(
            f"{attrs['arm']}: the chunks' steps {steps[:3]}...{steps[-3:]} do not form one run of "
            f"{attrs['total_steps']} steps"
        )
    write_curve(out_h5, rows, attrs, csv_path=out_csv)


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


@step
def summarise_selection(curve_paths, out_csv, out_html, *, runs, budgets, arms, target_accuracy, alpha):
    """Steps to the target accuracy and final accuracy per arm with intervals over seeds, every policy
    against its controls (paired over seeds, Holm-corrected), and a verdict per recommendation of the
    paper. runs: [[model, seed]]; curve_paths: one per (model, seed, budget, arm) in that order."""
    import pandas as pd

    from ..atomic import atomic_path, write_text
    from ..formats import read_curve
    from ..report import selection_figure, selection_html
    from ..selection import QUANTITIES, compare, steps_to_target
    from ..stats import holm, t_interval

    keys = [(m, int(s), float(b), arm) for m, s in runs for b in budgets for arm in arms]
    curves = {key: read_curve(path) for key, path in zip(keys, curve_paths)}
    models = list(dict.fromkeys(m for m, _ in runs))
    seeds = sorted({int(s) for _, s in runs})
    per_arm, comparisons = [], []
    for model in models:
        for budget in map(float, budgets):
            total = None
            values = {}
            for arm in arms:
                final, reached = [], []
                for seed in seeds:
                    c, attrs = curves[model, seed, budget, arm]
                    total = attrs["total_steps"]
                    final.append(float(c.test_acc[-1]))
                    reached.append(steps_to_target(c.step, c.test_acc, target_accuracy))
                values[arm] = dict(final_accuracy=final, steps_to_target=reached)
                mean, lo, hi = (float(x) for x in t_interval(final, alpha)[:3])
                n_reached = int(np.sum(~np.isnan(reached)))
                per_arm.append(
                    dict(
                        model=model,
                        budget=budget,
                        total_steps=total,
                        arm=arm,
                        n_seeds=len(seeds),
                        final_accuracy=mean,
                        final_lo=lo,
                        final_hi=hi,
                        steps_to_target=float(np.nanmean(reached)) if n_reached else float("nan"),
                        reached_target=n_reached,
                    )
                )
            for arm in arms:
                for control in controls_of(arm, arms):
                    for quantity in QUANTITIES:
                        c = compare(values[arm][quantity], values[control][quantity], alpha, quantity, total)
                        comparisons.append(
                            dict(
                                model=model,
                                budget=budget,
                                arm=arm,
                                control=control,
                                quantity=quantity,
                                difference=c.mean_difference,
                                lo=c.lo,
                                hi=c.hi,
                                p=c.p,
                                n_seeds=c.n_seeds,
                                interval=c.interval,
                                never_reached=len(c.policy_never_reached) + len(c.control_never_reached),
                            )
                        )
    for row, p_adj in zip(comparisons, holm([r["p"] for r in comparisons])):
        better, worse = QUANTITIES[row["quantity"]]
        sign = -1 if row["quantity"] == "steps_to_target" else 1
        row["p_holm"] = float(p_adj)
        row["verdict"] = (
            "no detectable difference" if not p_adj < alpha else better if sign * row["difference"] > 0 else worse
        )
    recommendations = []
    for policy, named, words in RECOMMENDATIONS:
        for row in comparisons:
            a = parse_arm(row["arm"])
            if (
                a["policy"] == policy
                and row["quantity"] == "steps_to_target"
                and row["control"].startswith("all.")
                and (named is None or a["metric"] in named)
            ):
                recommendations.append(dict(row, recommendation=words))
    table = pd.DataFrame(per_arm)
    with atomic_path(out_csv) as tmp:
        pd.concat([table.assign(kind="arm"), pd.DataFrame(comparisons).assign(kind="comparison")]).to_csv(
            tmp, index=False, float_format="%.6g"
        )
    figure = selection_figure({key: c for key, (c, _) in curves.items()}, models, budgets, arms, target_accuracy)
    write_text(out_html, selection_html(per_arm, comparisons, recommendations, figure, seeds, alpha, target_accuracy))
    log.info(
        "%d arms, %d comparisons; recommendations: %s",
        len(per_arm),
        len(comparisons),
        [r["verdict"] for r in recommendations],
    )
    return per_arm, comparisons
