"""The real workflow: the paper-scale DAG dry-runs, and a tiny study runs end to end on generated data."""

import html
import json
import re
import shutil
import subprocess

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, SNAKEMAKE, run_snakemake, write_config

from bestbatch.formats import load_checkpoint, state_digest


def job_counts(dry_run_stdout):
    table = dry_run_stdout.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


PAPER = "results/paper/dpn92/seed_0"
TINY = "tiny_mlp_bn/seed_{seed}"


def test_paper_dag_dry_runs_with_chained_per_epoch_jobs(tmp_path):
    out = run_snakemake(tmp_path, "--configfile", str(REPO / "config" / "config.yaml"), "-n", "--quiet", "rules").stdout
    counts = job_counts(out)
    assert counts["train_epoch"] == 5 * 150
    assert counts["reduce_epoch"] == 5 * 150
    assert counts["ordering"] + counts["seeded_ordering"] == 5 and counts["gather_distances"] == 5
    assert counts["heatmap"] == 5 and counts["curves"] == 1 and counts["sets"] == 5
    assert counts["init_model"] == 1 and counts["index"] == 1 and counts["claims"] == 1 and counts["proxies"] == 1


def test_a_grid_of_models_and_seeds_multiplies_the_runs(tmp_path):
    """models x seeds are wildcards of one study: 2 models x 3 seeds x 5 metrics x 150 epochs."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(models=["dpn92", "resnet18"], seeds=[0, 1, 2])
    cfg = write_config(tmp_path / "grid.yaml", config)
    counts = job_counts(run_snakemake(tmp_path, "--configfile", str(cfg), "-n", "--quiet", "rules").stdout)
    assert counts["train_epoch"] == counts["reduce_epoch"] == 2 * 3 * 5 * 150
    assert counts["init_model"] == 6 and counts["curves"] == 6 and counts["heatmap"] == 30 and counts["sets"] == 30
    # one ordering per metric for the data set, the random control once per seed
    assert counts["ordering"] == 4 and counts["seeded_ordering"] == 3
    assert counts["claims"] == 1 and counts["index"] == 1 and counts["proxies"] == 1


def test_paper_dag_chains_epochs_per_metric(tmp_path):
    """Epoch e of a run needs epoch e-1 of the same run; epoch 1 needs the run's seeded initialisation."""
    out = run_snakemake(
        tmp_path,
        "--configfile",
        str(REPO / "config" / "config.yaml"),
        "-n",
        "-p",
        f"{PAPER}/color/checkpoints/epoch_3.pt",
    ).stdout
    counts = job_counts(out)
    assert counts["train_epoch"] == 3 and "ordering" in counts and counts.get("reduce_epoch", 0) == 0
    assert f"{PAPER}/color/checkpoints/epoch_2.pt" in out and f"{PAPER}/checkpoints/init.pt" in out
    assert "results/paper/orderings/color.h5" in out
    assert "intensity" not in out


CONFIG_FILES = [*sorted((REPO / "config").glob("*.yaml")), *sorted((REPO / ".test" / "config").glob("*.yaml"))]


@pytest.mark.parametrize("configfile", CONFIG_FILES, ids=[p.relative_to(REPO).as_posix() for p in CONFIG_FILES])
def test_lint_is_clean_on_every_config(configfile):
    proc = subprocess.run(
        SNAKEMAKE + ["--lint", "--configfile", str(configfile)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    from conftest import TINY_CONFIG

    work = tmp_path_factory.mktemp("tiny")
    config = dict(TINY_CONFIG, outputs={"keep_shards": False, "keep_checkpoints": True})
    cfg = write_config(work / "tiny.yaml", config)
    run_snakemake(work, "--configfile", str(cfg), "--cores", "2")
    return work, cfg, config


@pytest.mark.slow
def test_tiny_study_produces_every_output(tiny_study):
    work, _, config = tiny_study
    r = work / "results" / "tiny"
    k = 320 // 64
    assert config["seeds"] == [0, 1]
    for seed in config["seeds"]:
        run = r / TINY.format(seed=seed)
        for metric in config["metrics"]:
            with h5py.File(run / metric / "distances.h5", "r") as f:
                assert f["distance"].shape == (3, k) and list(f["epoch"][:]) == [1, 2, 3]
                assert np.all(f["distance"][:] > 0) and np.all(np.abs(f["cosine"][:]) <= 1)
                assert list(f["phase"][:]) == [1, 2, 3]
                np.testing.assert_allclose(f["lr"][:], [0.05, 0.005, 0.0005])
            table = pd.read_csv(run / metric / "distances.csv")
            assert len(table) == 3 * k and set(table.metric) == {metric}
            assert list(table.columns[:8]) == ["metric", "epoch", "batch", "phase", "lr", "distance", "cosine", "norm"]
            assert not (run / metric / "shards").exists() or not any((run / metric / "shards").iterdir())  # temp()
            # plotly.js is the study's one copy, loaded by a relative path: the page holds its figure only
            page = (run / "plots" / f"heatmap_{metric}.html").read_text()
            assert len(page) < 200_000 and '<script src="../../../plotly.min.js"></script>' in page
            log = work / "logs" / "tiny" / TINY.format(seed=seed) / metric / "train_epoch_2.log"
            assert log.read_text().count("epoch 2")
        assert (run / "plots" / "training_curves.html").exists()
    for name in ("intensity", "color", "edges", "lpips", "random_seed_0", "random_seed_1"):
        with h5py.File(r / "orderings" / f"{name}.h5", "r") as f:
            assert sorted(f["order"][:]) == list(range(320))
    with h5py.File(r / "orderings" / "random_seed_0.h5") as a, h5py.File(r / "orderings" / "random_seed_1.h5") as b:
        assert not np.array_equal(a["order"][:], b["order"][:])  # each seed has its own null
    assert (r / "index.html").exists() and (r / "claims.html").exists() and (r / "claims.csv").exists()
    assert (r / "proxies.csv").exists() and "proxies.csv" in (r / "index.html").read_text()
    assert '<script src="plotly.min.js"></script>' in (r / "claims.html").read_text()
    # the Gram matrices are kept, and each run and metric has its sets of batches (CSV and page)
    with h5py.File(next(r.rglob("distances.h5"))) as f:
        K = f["distance"].shape[1]
        assert f["gram"].shape == (f["distance"].shape[0], K, K)
    assert sorted(p.name for p in r.rglob("sets_*.html")) and len(list(r.rglob("sets.csv"))) == len(
        list(r.rglob("distances.h5"))
    )
    index = (r / "index.html").read_text()
    for seed in config["seeds"]:
        for metric in config["metrics"]:
            assert f"<a href='{TINY.format(seed=seed)}/plots/sets_{metric}.html'>{metric}</a>" in index, (seed, metric)
    # with K = 5 every region holds one batch or none: there is no set to test (2 to K - 2 batches), so no set rows
    assert K == 5 and "taken as one set" not in (r / "claims.html").read_text()
    assert (r / "plotly.min.js").stat().st_size > 1_000_000
    with h5py.File(r / "orderings" / "lpips.h5", "r") as f:
        assert '"pretrained_backbone": false' in f.attrs["params"]


@pytest.mark.slow
def test_seeds_are_replicates(tiny_study):
    """Another seed: another initialisation and other augmentation, the same data and (non-random) orders."""
    work, _, _ = tiny_study
    r = work / "results" / "tiny"
    a, b = (load_checkpoint(r / TINY.format(seed=s) / "checkpoints" / "init.pt") for s in (0, 1))
    assert a.meta["seed"] == 0 and b.meta["seed"] == 1
    assert not torch.equal(a.model["fc1.weight"], b.model["fc1.weight"])


@pytest.mark.slow
def test_every_metric_starts_from_the_same_initialisation(tiny_study):
    """Metrics differ only by their order: with the same batches in epoch 1 they would train identically."""
    work, _, config = tiny_study
    run = work / "results" / "tiny" / TINY.format(seed=0)
    first = {m: load_checkpoint(run / m / "checkpoints" / "epoch_1.pt") for m in config["metrics"]}
    init = load_checkpoint(run / "checkpoints" / "init.pt")
    for metric, state in first.items():  # each metric's epoch 1 started from exactly init.pt's parameters
        assert state.meta["start_params_sha256"] == state_digest(init.model), metric
        assert state.meta["metric"] == metric and state.epoch == 1
    assert first["edges"].meta["start_params_sha256"] != state_digest(first["edges"].model)  # it did train
    # different orders -> different parameters after one epoch
    assert not torch.equal(first["intensity"].model["fc1.weight"], first["random"].model["fc1.weight"])


@pytest.mark.slow
def test_every_epoch_starts_where_the_previous_one_ended(tiny_study):
    work, _, config = tiny_study
    for seed in config["seeds"]:
        run = work / "results" / "tiny" / TINY.format(seed=seed)
        for metric in config["metrics"]:
            for epoch in (2, 3):
                before = load_checkpoint(run / metric / "checkpoints" / f"epoch_{epoch - 1}.pt")
                after = load_checkpoint(run / metric / "checkpoints" / f"epoch_{epoch}.pt")
                assert after.meta["start_params_sha256"] == state_digest(before.model), (seed, metric, epoch)


@pytest.mark.slow
def test_one_metric_reruns_alone(tiny_study):
    work, cfg, config = tiny_study
    proc = run_snakemake(work, "--configfile", str(cfg), "-n", "--forcerun", "ordering", "--", "study_edges")
    planned = set(re.findall(r"metric=(\w+)", proc.stdout))
    assert planned == {"edges"}, proc.stdout[-3000:]
    assert job_counts(proc.stdout)["train_epoch"] == 3 * len(config["seeds"])


@pytest.mark.slow
def test_epochs_in_one_go_equal_epochs_one_invocation_at_a_time(tiny_study, tmp_path):
    """Three separate snakemake invocations (fresh processes) give bitwise the same results."""
    work, _, config = tiny_study
    config = dict(config, metrics=["edges"])
    cfg = write_config(tmp_path / "tiny.yaml", config)
    shutil.copytree(work / "results" / "tiny" / "data", tmp_path / "results" / "tiny" / "data")
    run = f"results/tiny/{TINY.format(seed=1)}/edges"
    for epoch in (1, 2, 3):
        run_snakemake(tmp_path, "--configfile", str(cfg), "--cores", "1", f"{run}/epochs/epoch_{epoch}.h5")
    for epoch in (1, 2, 3):
        a = torch.load(work / run / "checkpoints" / f"epoch_{epoch}.pt", weights_only=True)
        b = torch.load(tmp_path / run / "checkpoints" / f"epoch_{epoch}.pt", weights_only=True)
        for name in a["model"]:
            assert torch.equal(a["model"][name], b["model"][name]), (epoch, name)
        with (
            h5py.File(work / run / "epochs" / f"epoch_{epoch}.h5") as f,
            h5py.File(tmp_path / run / "epochs" / f"epoch_{epoch}.h5") as g,
        ):
            for name in ("distance", "cosine", "norm", "train_loss"):
                assert np.array_equal(f[name][:], g[name][:]), (epoch, name)


def test_the_bundles_place_in_the_report_is_where_snakemake_puts_it():
    """bestbatch.plots.report_id repeats Snakemake's rule for a result's folder inside the zip."""
    from snakemake.common import get_report_id
    from snakemake.iocontainers import FILE_HASH_PREFIX_LEN

    from bestbatch.plots import report_id

    for path in ("results/demo/plotly.min.js", "results/a b/plotly.min.js"):
        assert report_id(path) == get_report_id(path)[:FILE_HASH_PREFIX_LEN]


def script_sources(page):
    return re.findall(r'<script src="([^"]+)"', page) + re.findall(r'<script src=\\"([^"\\]+)\\"', page)


@pytest.mark.slow
def test_report_builds_and_its_pages_find_plotly_inside_the_zip(tiny_study, tmp_path):
    """In `--report`'s zip every result sits in data/raw/<id>/: each page finds the study's plotly.js there."""
    import zipfile

    work, cfg, _ = tiny_study
    run_snakemake(work, "--configfile", str(cfg), "--report", "report.zip")
    assert (work / "report.zip").stat().st_size > 1_000_000
    with zipfile.ZipFile(work / "report.zip") as z:
        z.extractall(tmp_path)
    pages = sorted(p for p in tmp_path.rglob("*.html") if p.name != "report.html")
    bundles = list(tmp_path.rglob("plotly.min.js"))
    assert len(bundles) == 1 and len(pages) >= 2 * 5 * 2 + 2 + 1  # heatmaps and layers, curves, claims, index
    for page in pages:
        text = page.read_text()
        if "Plotly.newPlot" not in text:
            continue  # the front page draws nothing
        found = [src for src in script_sources(text) if (page.parent / src).resolve() == bundles[0].resolve()]
        assert found, (page, script_sources(text))


@pytest.mark.slow
def test_pages_open_offline_from_a_copied_study_folder_and_from_the_report(tiny_study, tmp_path):
    """The study folder copied elsewhere (as a researcher mails it) and the report's zip unpacked: the pages draw
    their figures in a headless browser with no network; a page moved out of its folder says what is missing."""
    import zipfile

    from browser import Browser, missing

    if missing():
        pytest.skip(f"the browser test needs {', '.join(missing())}")
    work, cfg, _ = tiny_study
    copy = tmp_path / "mailed" / "tiny"
    shutil.copytree(work / "results" / "tiny", copy)
    if not (work / "report.zip").exists():
        run_snakemake(work, "--configfile", str(cfg), "--report", "report.zip")
    with zipfile.ZipFile(work / "report.zip") as z:
        z.extractall(tmp_path / "unzipped")
    in_zip = [p for p in (tmp_path / "unzipped").rglob("heatmap_color.html")]
    alone = tmp_path / "alone" / "claims.html"
    alone.parent.mkdir()
    shutil.copy(copy / "claims.html", alone)
    br = Browser()
    try:
        for page in [copy / TINY.format(seed=1) / "plots" / "heatmap_color.html", copy / "claims.html", *in_zip]:
            br.open(page)
            assert br.driver.execute_script("return typeof window.Plotly") == "object", page
            assert br.driver.execute_script("return document.querySelectorAll('.js-plotly-plot').length") >= 1, page
            assert all(url.startswith(("file:", "data:")) for url in br.requested_urls()), page
        assert len(in_zip) == 2  # both seeds' pages
        br.open(alone, plot=False)
        assert "plotly.min.js" in br.driver.find_element("tag name", "body").text
    finally:
        br.close()


# --- data sets sized from their files -------------------------------------------------------------


def planned_resources(dry_run_stdout):
    """{rule: {resource: int}} of the jobs a dry run (-n) announces (the last job of each rule wins)."""
    out, rule = {}, None
    for line in dry_run_stdout.splitlines():
        if m := re.match(r"^\s*(?:local)?rule (\w+):$", line):
            rule = m.group(1)
        elif rule and (m := re.match(r"^\s+resources: (.*)$", line)):
            out[rule] = {
                k: int(v) for k, v in (kv.split("=", 1) for kv in m.group(1).split(", ")) if re.fullmatch(r"-?\d+", v)
            }
    return out


@pytest.mark.slow
def test_a_copy_of_cifar10_with_official_labels_runs_sized_from_its_files(tmp_path):
    """1,024 images in CIFAR-10's format that keep the official batch labels: no md5 is demanded, and
    dataset.json, K and every resource request follow the 1,024 images, not the official 50,000."""
    from conftest import TINY_CONFIG

    from bestbatch.data import make_synthetic, write_dataset
    from bestbatch.resources import Study, job_resources

    write_dataset(tmp_path / "copy", *make_synthetic(1024, 200, seed=5), official_labels=True)
    config = dict(
        TINY_CONFIG, data={"source": "cifar10", "root": str(tmp_path / "copy")}, metrics=["edges", "random"], seeds=[0]
    )
    cfg = write_config(tmp_path / "copy.yaml", config)
    plan = planned_resources(run_snakemake(tmp_path, "--configfile", str(cfg), "-n", "-p").stdout)
    t = config["training"]
    want = job_resources(
        Study(
            model="tiny_mlp_bn", n_train=1024, n_test=200, batch_size=64, value_bytes=4, threads=t["threads"], gpu=False
        )
    )
    official = job_resources(
        Study(
            model="tiny_mlp_bn",
            n_train=50_000,
            n_test=10_000,
            batch_size=64,
            value_bytes=4,
            threads=t["threads"],
            gpu=False,
        )
    )
    for rule in ("train_epoch", "verify_dataset", "reduce_epoch"):
        assert {k: plan[rule][k] for k in ("mem_mb", "runtime")} == {k: want[rule][k] for k in ("mem_mb", "runtime")}
    assert plan["train_epoch"]["mem_mb"] < official["train_epoch"]["mem_mb"]  # the check can tell them apart
    run_snakemake(tmp_path, "--configfile", str(cfg), "--cores", "2")
    summary = yaml.safe_load((tmp_path / "results/tiny/dataset.json").read_text())
    assert (summary["n_train"], summary["n_test"], summary["num_batches"], summary["dropped_images"]) == (
        1024,
        200,
        16,
        0,
    )
    assert summary["official"] is False and summary["n_classes"] == 10
    with h5py.File(tmp_path / "results/tiny/tiny_mlp_bn/seed_0/edges/distances.h5", "r") as f:
        assert f["distance"].shape == (3, 16)
    log = (tmp_path / "logs/tiny/verify_dataset.log").read_text()
    assert "not the official release" in log


@pytest.mark.slow
def test_a_cifar100_format_set_runs_with_a_100_way_output_layer(tmp_path):
    from conftest import TINY_CONFIG

    data = dict(TINY_CONFIG["data"], synthetic=dict(TINY_CONFIG["data"]["synthetic"], format="cifar100"))
    config = dict(TINY_CONFIG, data=data, metrics=["color", "random"], seeds=[0])
    cfg = write_config(tmp_path / "c100.yaml", config)
    run_snakemake(tmp_path, "--configfile", str(cfg), "--cores", "2")
    r = tmp_path / "results" / "tiny"
    assert sorted(p.name for p in (r / "data" / "cifar-100-python").iterdir()) == ["meta", "test", "train"]
    summary = yaml.safe_load((r / "dataset.json").read_text())
    assert summary["n_classes"] == 100 and summary["source"] == "cifar100" and summary["num_batches"] == 5
    init = load_checkpoint(r / "tiny_mlp_bn" / "seed_0" / "checkpoints" / "init.pt")
    last = [v for k, v in init.model.items() if k.endswith("weight")][-1]
    assert last.shape[0] == 100
    with h5py.File(r / "tiny_mlp_bn" / "seed_0" / "color" / "distances.h5", "r") as f:
        assert f["distance"].shape == (3, 5) and np.all(f["distance"][:] > 0)
    assert (r / "index.html").exists()


# --- the selection experiment ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def selection_runs(tmp_path_factory):
    """.test/config/selection.yaml run twice, every checkpoint kept: one job per arm and chunk (the default), and
    one job per (model, budget, seed) and chunk (execution.selection_jobs: seed). {mode: (workdir, config)}."""
    config = yaml.safe_load((REPO / ".test" / "config" / "selection.yaml").read_text())
    out = {}
    for mode in ("arm", "seed"):
        work = tmp_path_factory.mktemp(f"selection_{mode}")
        cfg = dict(config, outputs=dict(config["outputs"], keep_checkpoints=True), execution={"selection_jobs": mode})
        run_snakemake(work, "--configfile", str(write_config(work / "selection.yaml", cfg)), "--cores", "2")
        out[mode] = (work, cfg)
    return out


@pytest.mark.slow
def test_selection_experiment_gives_every_arm_the_same_steps_and_a_page(selection_runs):
    """.test/config/selection.yaml: every policy and control, two budgets, two seeds, end to end."""
    from bestbatch.formats import read_curve

    tmp_path, config = selection_runs["arm"]
    r = tmp_path / "results" / "tinysel"
    sel = r / "selection" / "tiny_mlp_bn"
    k = 320 // 64
    for budget, total in (("1", 3 * k), ("0.5", 8)):  # 7.5 steps rounded half up
        arms = sorted(p.name for p in (sel / f"budget_{budget}" / "seed_0").iterdir())
        assert len(arms) == 12 and "shuffled" in arms and "random_subset.drop_extremes.intensity" in arms
        for seed in (0, 1):
            for arm in arms:
                curve, attrs = read_curve(sel / f"budget_{budget}" / f"seed_{seed}" / arm / "curve.h5")
                assert curve.step[-1] == attrs["total_steps"] == total, (budget, seed, arm)
                assert list(curve.step) == sorted(set(curve.step))
        a, _ = read_curve(sel / f"budget_{budget}" / "seed_0" / "shuffled" / "curve.h5")
        b, _ = read_curve(sel / f"budget_{budget}" / "seed_1" / "shuffled" / "curve.h5")
        assert not np.array_equal(a.train_loss, b.train_loss)  # each seed its own run
    table = pd.read_csv(r / "selection.csv")
    comparisons = table[table["kind"] == "comparison"]
    # two seeds: no sign-flip test can reach alpha, and the page says so instead of printing a verdict
    confirmatory = comparisons[comparisons["family"] == "confirmatory"]
    assert len(confirmatory) == 2 * 2 and set(confirmatory["verdict"]) == {"too few seeds"}
    assert set(comparisons[comparisons["family"] == "exploratory"]["verdict"]) == {"exploratory"}
    final = comparisons[comparisons["quantity"] == "final_accuracy"]
    assert (final["n_seeds"] == 2).all() and (final["p"] >= 0.5).all()  # 2 / 2^2
    steps = comparisons[comparisons["quantity"] == "steps_to_target"]  # seeds whose shuffled run learned
    assert (steps["p"].isna() == (steps["n_seeds"] == 0)).all() and (steps["p"].dropna() >= 0.5).all()
    assert {"all.intensity", "random_subset.drop_extremes.intensity", "drop_extremes.random", "shuffled"} <= set(
        comparisons[comparisons["arm"] == "drop_extremes.intensity"]["control"]
    )
    page = html.unescape((r / "selection.html").read_text())
    assert "The paper's recommendations" in page and "without the batches at the metric's extremes" in page
    assert "The confirmatory outcome: test accuracy averaged over the run" in page
    # the seeds the page recommends, simulated on step-decay curves of this layout by its own job
    power = json.loads((r / "selection" / "power.json").read_text())
    assert power["seeds_needed"] == 8 and (power["seeds"] is None or power["seeds"] >= 8), power
    words = f"Seeds for power: {power['seeds']} recommended." if power["seeds"] else "Seeds for power:</b> even"
    assert words in page
    assert "recommended" in (tmp_path / "logs/tinysel/selection_power.log").read_text()
    assert "selection.html" in (r / "index.html").read_text()
    log = tmp_path / "logs/tinysel/selection/tiny_mlp_bn/budget_1/seed_0/measured_best.intensity/chunk_0.log"
    assert "images per phase" in log.read_text()
    # cross-fitted: seed 0's batches are picked from seed 1's Algorithm 1 run only
    picked_from = [line for line in log.read_text().splitlines() if "cross-fitted" in line]
    assert len(picked_from) == 1 and "seed_1/intensity/distances.h5" in picked_from[0], picked_from
    assert "seed_0/intensity" not in picked_from[0]
    assert "with 2 seeds no confirmatory comparison can be significant" in page
    assert config["selection"]["budgets"] == [1.0, 0.5]


@pytest.mark.slow
def test_one_selection_job_per_seed_is_bitwise_the_jobs_per_arm(selection_runs):
    """execution.selection_jobs: seed trains every arm's chunk in one job: the same files, bitwise (every chunk's
    evaluations, every checkpoint, every curve, the page's table), from a twelfth of the training jobs."""
    arm_work, seed_work = selection_runs["arm"][0], selection_runs["seed"][0]
    arm, seed = (w / "results" / "tinysel" / "selection" for w in (arm_work, seed_work))
    files = sorted(p.relative_to(arm) for p in arm.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(seed) for p in seed.rglob("*") if p.is_file())
    chunks = [f for f in files if f.parent.name == "chunks"]
    # 12 arms x 2 seeds x (2 chunks at budget 1, 1 at budget 0.5): chunk 1 starts from chunk 0's checkpoint
    assert len(chunks) == 12 * 2 * 3 and any(f.name == "chunk_1.h5" for f in chunks)
    for rel in files:
        if rel.suffix == ".pt":  # the same tensors and optimizer state (the pickle's bytes are not promised)
            a, b = load_checkpoint(arm / rel), load_checkpoint(seed / rel)
            assert state_digest(a.model) == state_digest(b.model) and a.meta == b.meta, rel
            assert same_values(a.optimizer, b.optimizer), rel
        else:
            assert (arm / rel).read_bytes() == (seed / rel).read_bytes(), rel
    table = "results/tinysel/selection.csv"
    assert (arm_work / table).read_bytes() == (seed_work / table).read_bytes()

    def jobs(work, rule):
        return len(list((work / "results" / "tinysel" / "benchmarks" / "selection").rglob(rule)))

    assert (jobs(arm_work, "chunk_*.tsv"), jobs(seed_work, "chunk_*.tsv")) == (12 * 2 * 3, 2 * 3)
    assert (jobs(arm_work, "gather.tsv"), jobs(seed_work, "gather.tsv")) == (12 * 2 * 2, 2 * 2)
    log = seed_work / "logs/tinysel/selection/tiny_mlp_bn/budget_1/seed_0/chunk_1.log"
    assert log.read_text().count("steps 10..15 of 15") == 12  # every arm's second chunk, in one job


def same_values(x, y):
    """Nested dicts, lists and tensors equal, tensors bitwise."""
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(same_values(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(map(same_values, x, y))
    return x == y
