"""Rules of selection.smk: do the "best" mini-batches train faster? Plain training runs that visit the
batches a policy picks (or a control's), with equal step budgets, and their comparison over seeds.

An *arm* is one way of choosing batches: `<policy>.<metric>` (a policy on a metric's order; the metric
`random` makes it the random-ordering control), `random_subset.<policy>.<metric>` (as many images as that
policy visits, drawn at random), or `shuffled` (standard SGD).
"""

import json
import logging
import zlib
from pathlib import Path

from ..logs import step

log = logging.getLogger("bestbatch")


def measured_profile(matrix_paths, phases):
    """{phase: mean within-epoch z profile over the seeds} of the Algorithm 1 matrices of one model and metric
    (the workflow passes the matrices of every seed but the arm's own: cross-fitted)."""
    from ..formats import read_matrix
    from ..selection import profile_from_distances

    by_phase = {}
    for path in matrix_paths:
        m = read_matrix(path)
        for phase, first, last, _ in phases:
            rows = (m.epoch >= first) & (m.epoch <= last)
            by_phase.setdefault(phase, []).append(m.distance[rows])
    return profile_from_distances(by_phase)


def gram_profile(matrix_paths, phases):
    """greedy_set's profile, {phase: (K, K) mean normalised centred Gram matrix over the seeds}, from the same
    Algorithm 1 matrices as measured_profile (every seed's but the arm's own), read with their Gram matrices
    (formats.NoGram where a study ran with outputs.gram: false)."""
    from ..formats import read_matrix
    from ..selection import set_profile_from_grams

    by_phase = {}
    for path in matrix_paths:
        m = read_matrix(path, gram=True)
        for phase, first, last, _ in phases:
            rows = (m.epoch >= first) & (m.epoch <= last)
            by_phase.setdefault(phase, []).append(m.gram[rows])
    return set_profile_from_grams(by_phase)


def arm_positions(arm, K, n_phases, *, seed, phases, profile_paths, drop_fraction, best_fraction):
    """{phase: sorted positions} the policy of a policy or random_subset arm picks in the metric's order. A
    cross-fitted policy (measured_best, greedy_set) picks from `profile_paths`, the Algorithm 1 matrices of the
    other seeds, on a metric's order, and as many positions at random (random_pick) on the random ordering."""
    from ..selection import CROSS_FITTED, parse_arm, policy_positions, random_pick

    a = parse_arm(arm)
    params = {
        "drop_extremes": dict(drop_fraction=drop_fraction),
        "measured_best": dict(best_fraction=best_fraction),
        "greedy_set": dict(best_fraction=best_fraction),
    }.get(a["policy"], {})
    if a["policy"] in CROSS_FITTED and a["metric"] == "random":
        return random_pick(K, n_phases, best_fraction, seed)
    profile = None
    if a["policy"] in CROSS_FITTED:
        log.info("%s, cross-fitted: picks from the Algorithm 1 runs %s", a["policy"], ", ".join(profile_paths))
        read = gram_profile if a["policy"] == "greedy_set" else measured_profile
        profile = read(profile_paths, phases)
    return policy_positions(a["policy"], K, n_phases, params, profile)


@step
def train_arm_chunk(
    order_path, start_checkpoint, out_checkpoint, out_curve, *, profile_paths, arm, granted_threads=None, **run
):
    """Chunk `chunk` of one arm's plain training run, one job per arm (execution.selection_jobs: arm)."""
    job = dict(
        arm=arm,
        order_path=order_path,
        start_checkpoint=start_checkpoint,
        out_checkpoint=out_checkpoint,
        out_curve=out_curve,
        profile_paths=profile_paths,
    )
    return train_seed_chunk([job], granted_threads=granted_threads, **run)[0]


@step
def train_seed_chunk(
    arm_jobs,
    *,
    data_root,
    data_format,
    device,
    threads,
    cuda_tf32,
    cuda_deterministic,
    granted_threads=None,
    normalization=None,
    placement="device",
    **run,
):
    """Chunk `chunk` of every arm of one (model, budget, seed), one after another in one job
    (execution.selection_jobs: seed): the data set is loaded and torch imported once, not once per arm.
    arm_jobs: [{arm, order_path, start_checkpoint, out_checkpoint, out_curve, profile_paths}], one per arm;
    each arm's outputs are what its own job would write, bitwise (the steps draw no global randomness).
    normalization: the rule param (absent: CIFAR-10's constants; "train": the training images' statistics).
    Returns each arm's evaluation rows."""
    from .training import prepare_training

    prepared = prepare_training(
        data_root=data_root,
        data_format=data_format,
        device=device,
        threads=threads,
        granted_threads=granted_threads,
        cuda_tf32=cuda_tf32,
        cuda_deterministic=cuda_deterministic,
        normalization=normalization,
        placement=placement,
    )
    rows = []
    for i, job in enumerate(arm_jobs):
        if len(arm_jobs) > 1:
            log.info("arm %d of %d: %s", i + 1, len(arm_jobs), job["arm"])
        job = dict(job)
        rows.append(
            arm_chunk(
                prepared,
                job.pop("order_path"),
                job.pop("start_checkpoint"),
                job.pop("out_checkpoint"),
                job.pop("out_curve"),
                **job,
                **run,
                normalization=normalization,
            )
        )
    return rows


def arm_chunk(
    prepared,
    order_path,
    start_checkpoint,
    out_checkpoint,
    out_curve,
    *,
    profile_paths,
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
    drop_fraction,
    best_fraction,
    evaluations,
    config_hash,
    import_paths=(),
    progress=True,
    normalization=None,
):
    """Chunk `chunk` (epoch-equivalents chunk x chunk_epochs ...) of one arm's plain training run, on
    `prepared` = (device, train images, train labels, test images, test labels, channel_stats) from
    prepare_training (channel_stats: the inputs' normalisation, from the rule param `normalization`).

    Every arm of a budget takes total_steps(epochs, K, budget) optimizer steps; the lr schedule is in
    steps (the epoch milestones scaled by the budget), so phases line up. Chunk 0 starts from the run
    seed's init.pt, the same initialisation as Algorithm 1's runs. order_path: the arm's ordering (None
    for shuffled); profile_paths: the Algorithm 1 matrices of this model and metric from every other seed
    (measured_best and greedy_set on a metric's order only; on the random ordering they pick as many positions at
    random).
    The test set is evaluated every evaluation_every(T, chunk steps, evaluations) steps and at the end."""
    from ..formats import load_checkpoint, provenance, read_ordering, save_checkpoint, write_curve
    from ..models import build_model
    from ..selection import (
        Visitor,
        evaluation_every,
        lr_of_step,
        milestone_steps,
        parse_arm,
        policy_plan,
        random_subset_plan,
        steps_per_epoch,
        total_steps,
        train_chunk,
    )
    from ..training import DTYPES, device_description, make_optimizer
    from .training import model_record, normalization_provenance

    seed, budget, chunk = int(seed), float(budget), int(chunk)
    dev, images, labels, test_images, test_labels, channel_stats = prepared  # steps.training.prepare_training
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
        positions = arm_positions(
            arm,
            K,
            len(milestones) + 1,
            seed=seed,
            phases=phases,
            profile_paths=profile_paths,
            drop_fraction=drop_fraction,
            best_fraction=best_fraction,
        )
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
    net = build_model(model, num_classes=num_classes, import_paths=import_paths).to(device=dev, dtype=torch_dtype)
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
        eval_every=evaluation_every(T, chunk_epochs * K, evaluations),
        last_step=T,
        progress=progress,
        channel_stats=channel_stats,
    )
    meta = dict(
        provenance(
            config_hash,
            device_description(dev),
            seed=seed,
            dtype=dtype,
            **model_record(model),
            **normalization_provenance(normalization, channel_stats),
        ),
        arm=arm,
        budget=budget,
        step=end,
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


@step
def gather_seed_curves(chunk_paths, out_h5, out_csv, *, chunks):
    """gather_curve for every arm of one (model, budget, seed) in one job (execution.selection_jobs: seed).
    chunk_paths: arm by arm, each arm's `chunks` chunk files in order; out_h5, out_csv: one per arm, same order."""
    chunk_paths, out_h5, out_csv = list(chunk_paths), list(out_h5), list(out_csv)
    if len(chunk_paths) != chunks * len(out_h5) or len(out_h5) != len(out_csv):
        raise ValueError(f"{len(chunk_paths)} chunk files for {len(out_h5)} arms of {chunks} chunks each")
    for i, (h5, csv) in enumerate(zip(out_h5, out_csv)):
        gather_curve(chunk_paths[i * chunks : (i + 1) * chunks], h5, csv)


@step
def selection_power(out_json, *, arms, layout, alpha, n_test, n_classes, n_models):
    """The seeds the selection page recommends (selection_stats.recommend_seeds on step-decay curves of the
    study's layout: selection.run_layout, keyed by budget), as JSON for the page. Depends on the config
    alone, so it runs beside the training jobs and only again when the layout or the family changes."""
    from ..atomic import write_text
    from ..selection import comparison_plan
    from ..selection_stats import recommend_seeds

    layout = {float(b): lay for b, lay in layout.items()}
    log.info("simulating the confirmatory family's power on step-decay curves of %s", layout)
    recommended = recommend_seeds(
        comparison_plan(arms), layout, alpha=alpha, n_test=n_test, n_classes=n_classes, n_models=n_models
    )
    log.info("recommended: %s", recommended)
    write_text(out_json, json.dumps(recommended, indent=1) + "\n")
    return recommended


@step
def summarise_selection(
    curve_paths,
    out_csv,
    out_html,
    *,
    runs,
    budgets,
    arms,
    target_fraction,
    alpha,
    n_classes,
    n_test,
    n_train,
    batch_size,
    plotly_js=None,
    power=None,
    sketch=None,
):
    """The selection page and CSV: reads every arm's curve and hands them to bestbatch.selection_stats.analyse_selection
    (the mean accuracy over the run, steps to a cross-fitted target, final accuracy; paired sign-flip tests
    over seeds, Holm within the confirmatory and exploratory families, intervals that agree with the tests,
    runs that did not learn), and says how many seeds the confirmatory family needs (power: the JSON that
    selection_power wrote; None: not said). sketch: the settings of the study's sketched gradients
    (outputs.gradients: sketch), whose bound the page states; None for exact ones.
    runs: [[model, seed]]; curve_paths: one per (model, seed, budget, arm) in that order."""

    import pandas as pd

    from ..atomic import atomic_path, write_text
    from ..formats import read_curve
    from ..gradients import sketch_statement
    from ..report import selection_figure, selection_html
    from ..selection import comparison_plan
    from ..selection_stats import analyse_selection

    keys = [(m, int(s), float(b), arm) for m, s in runs for b in budgets for arm in arms]
    curves, total_steps = {}, {}
    for (model, seed, budget, arm), path in zip(keys, curve_paths):
        curve, attrs = read_curve(path)
        curves.setdefault((model, budget, arm), {})[seed] = curve
        total_steps[budget] = int(attrs["total_steps"])
    per_arm, comparisons, families = analyse_selection(
        curves,
        comparison_plan(arms),
        total_steps=total_steps,
        target_fraction=target_fraction,
        alpha=alpha,
        n_classes=n_classes,
        n_test=n_test,
    )
    recommended = json.loads(Path(power).read_text()) if power else None
    if recommended:  # JSON keys are strings: the speed-ups back to numbers
        recommended["power"] = {float(k): v for k, v in recommended["power"].items()}
    with atomic_path(out_csv) as tmp:
        pd.concat(
            [pd.DataFrame(per_arm).assign(kind="arm"), pd.DataFrame(comparisons).assign(kind="comparison")]
        ).to_csv(tmp, index=False, float_format="%.6g")
    models = list(dict.fromkeys(m for m, _ in runs))
    seeds = sorted({int(s) for _, s in runs})
    figure = selection_figure(curves, models, [float(b) for b in budgets], arms, plotly_js, out_html)
    dropped = n_train % batch_size
    write_text(
        out_html,
        selection_html(
            per_arm,
            comparisons,
            families,
            figure,
            seeds,
            alpha,
            target_fraction,
            n_train,
            batch_size,
            recommended=recommended,
            sketch_note=sketch_statement(sketch),
        ),
    )
    log.info(
        "%d arms, %d comparisons (%d left out of every batch); confirmatory verdicts: %s",
        len(per_arm),
        len(comparisons),
        dropped,
        [r["verdict"] for r in comparisons if r["family"] == "confirmatory"],
    )
    return per_arm, comparisons
