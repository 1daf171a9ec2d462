"""Running on SLURM: the profile's plan for the paper study, and a study run on a real SLURM cluster.

The dry-run tests need no cluster. The `slurm` tests stand up a single-node SLURM cluster on this
machine with tests/slurm/cluster.sh (root; it apt-installs slurm-wlm, munge, slurmdbd and
mariadb-server when missing), run a small demo-shaped study through `snakemake --profile slurm`,
and stop the cluster at the end of the session. They run when BESTBATCH_SLURM=1: .ci/run sets it; the GitHub
Actions job does not (standing the cluster's daemons up in GitHub's job container has not been tried).
"""

import copy
import os
import re
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest
import yaml
from conftest import REPO, SNAKEMAKE, TINY_CONFIG, run_snakemake, write_config

CLUSTER_SCRIPT = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
EPOCHS_PER_JOB = int(dict(item.split("=") for item in PROFILE["group-components"])["epochs"])
LOCAL_RULES = {
    "all",
    "gather_distances",
    "heatmap",
    "layers",
    "curves",
    "claims",
    "proxies",
    "sets",
    "index",
    "plotly_js",
    "study_config",
}
GPU_RULES = {"train_epoch"}  # and ordering for lpips
GPU_TYPE = "testgpu"
GROUP = re.compile(
    r"epochs_(\w+)_seed(\d+)_(\w+?)_(\d+)-(\d+)"
)  # epochs_<model>_seed<s>_<metric>_<first>-<last>  # the GPU model of the test cluster's node (tests/slurm/cluster.sh)


def snakemake_in_repo(*args, timeout=900):
    """`snakemake ARGS` typed in the repository root, as the README says."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return proc.stdout + proc.stderr


def planned_jobs(log):
    """[(group or None, rule, wildcards, resources)] of the jobs a Snakemake log announces.

    Jobs of a group job are listed, indented, under "Group job <id> (jobs in lexicogr. order):".
    """
    jobs, group, job = [], None, None
    for line in log.splitlines():
        if m := re.search(r"Group job (\S+) \(jobs in lexicogr\. order\):", line):
            group = m.group(1)
        elif m := re.match(r"^(\s*)(?:local)?rule (\w+):$", line):
            job = dict(group=group if m.group(1) else None, rule=m.group(2), wildcards={}, resources={})
            group = group if m.group(1) else None
            jobs.append(job)
        elif job is not None and (m := re.match(r"^\s+wildcards: (.*)$", line)):
            job["wildcards"] = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
        elif job is not None and (m := re.match(r"^\s+resources: (.*)$", line)):
            job["resources"] = {
                k: int(v) for k, v in (kv.split("=", 1) for kv in m.group(1).split(", ")) if re.fullmatch(r"-?\d+", v)
            }
    return jobs


# --- the profile, without a cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_plan(tmp_path_factory):
    out = snakemake_in_repo(
        "--profile",
        "slurm",
        "--configfile",
        "config/config.yaml",
        "-n",
        "--directory",
        str(tmp_path_factory.mktemp("paper")),
    )
    return planned_jobs(out)


def test_profile_slurm_works_as_typed_and_bundles_the_paper_epochs(paper_plan):
    """750 per-epoch jobs become 750 / N submissions of N epochs of one metric (N from the profile)."""
    groups = {}
    for job in paper_plan:
        if job["group"] is not None:
            groups.setdefault(job["group"], []).append(job)
    epoch_groups = {g: jobs for g, jobs in groups.items() if g.startswith("epochs_")}
    assert len(epoch_groups) == 5 * 150 // EPOCHS_PER_JOB == 75
    assert set(groups) == set(epoch_groups) | {"prepare"}
    assert sorted(j["rule"] for j in groups["prepare"]) == ["init_model", "verify_dataset"]
    orderings = [j["rule"] for j in paper_plan if j["group"] is None and "ordering" in j["rule"]]
    assert Counter(orderings) == {"ordering": 4, "seeded_ordering": 1}  # each a SLURM job of its own
    for name, jobs in epoch_groups.items():
        model, seed, metric, first, last = GROUP.fullmatch(name).groups()
        counts = Counter(j["rule"] for j in jobs)
        assert counts == {"train_epoch": EPOCHS_PER_JOB, "reduce_epoch": EPOCHS_PER_JOB}
        assert EPOCHS_PER_JOB == int(last) - int(first) + 1
        assert {j["wildcards"]["metric"] for j in jobs} == {metric}
        assert {(j["wildcards"]["model"], j["wildcards"]["seed"]) for j in jobs} == {(model, seed)}
        assert {int(j["wildcards"]["epoch"]) for j in jobs if "epoch" in j["wildcards"]} == set(
            range(int(first), int(last) + 1)
        )
    # nothing else is submitted alone: what is not in a group runs where Snakemake runs
    assert {j["rule"] for j in paper_plan if j["group"] is None} == LOCAL_RULES | {"ordering", "seeded_ordering"}


def test_parallel_layout_bundles_the_training_chain_and_the_compare_jobs_apart(tmp_path):
    """execution.layout: parallel: N consecutive train_epoch jobs of a run are one submission, and the
    compare_epoch + reduce_epoch jobs of the same N epochs another, which waits for that training bundle's
    checkpoints and runs beside the next one; both kinds ask for a GPU where they compute gradients."""
    layout = write_config(tmp_path / "parallel.yaml", {"execution": {"layout": "parallel"}})
    plan = planned_jobs(
        snakemake_in_repo(
            "--profile", "slurm", "--configfile", "config/config.yaml", str(layout), "-n", "--directory", str(tmp_path)
        )
    )
    groups = {}
    for job in plan:
        if job["group"] is not None:
            groups.setdefault(job["group"], []).append(job)
    trains = {g: jobs for g, jobs in groups.items() if g.startswith("train_epochs_")}
    compares = {g: jobs for g, jobs in groups.items() if g.startswith("compare_epochs_")}
    assert len(trains) == len(compares) == 5 * 150 // EPOCHS_PER_JOB
    assert set(groups) == set(trains) | set(compares) | {"prepare"}
    for name, jobs in trains.items():
        assert Counter(j["rule"] for j in jobs) == {"train_epoch": EPOCHS_PER_JOB}
        assert GROUP.fullmatch(name.removeprefix("train_"))
        assert all(j["resources"]["gpu"] == 1 for j in jobs)
    for jobs in compares.values():
        assert Counter(j["rule"] for j in jobs) == {"compare_epoch": EPOCHS_PER_JOB, "reduce_epoch": EPOCHS_PER_JOB}
        assert all(j["resources"]["gpu"] == int(j["rule"] == "compare_epoch") for j in jobs)
    # each half is priced on its own: lighter than the inline job that does both
    res = {j["rule"]: j["resources"] for j in plan}
    assert res["train_epoch"]["runtime"] < 35 and res["compare_epoch"]["runtime"] < 35


def test_gpu_rules_ask_for_one_gpu_in_the_paper_plan(paper_plan):
    for job in paper_plan:
        wants_gpu = job["rule"] in GPU_RULES or (job["rule"] == "ordering" and job["wildcards"]["metric"] == "lpips")
        if job["group"] is not None:
            assert job["resources"].get("gpu") == int(wants_gpu), job
    trains = [j for j in paper_plan if j["rule"] == "train_epoch"]
    assert len(trains) == 750 and all(j["resources"]["gpu"] == 1 for j in trains)


def test_demo_fits_a_two_cpu_node(tmp_path):
    """The demo's per-epoch bundle (train_epoch beside the previous reduce_epoch) fits 2 CPUs and 20 GB."""
    jobs = planned_jobs(
        snakemake_in_repo("--profile", "slurm", "--configfile", "config/demo.yaml", "-n", "--directory", str(tmp_path))
    )
    res = {j["rule"]: j["resources"] for j in jobs}
    assert res["train_epoch"]["mem_mb"] + res["reduce_epoch"]["mem_mb"] <= 20_000
    assert max(r["mem_mb"] for r in res.values()) <= 20_000


def test_model_cost_table_has_the_models_parameter_counts():
    from bestbatch.models import MODELS, build_model, parameter_count
    from bestbatch.resources import MODEL_COST, model_params

    assert set(MODEL_COST) == set(MODELS)
    for name in MODEL_COST:
        for n_classes in (10, 100, 7):
            assert parameter_count(build_model(name, num_classes=n_classes)) == model_params(name, n_classes), name


# --- a real cluster ---------------------------------------------------------------------------------


def cluster(command, timeout=600):
    return subprocess.run(["bash", str(CLUSTER_SCRIPT), command], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def slurm_cluster():
    if os.environ.get("BESTBATCH_SLURM") != "1":
        pytest.skip("stands up a SLURM cluster on this machine (root, apt-get): set BESTBATCH_SLURM=1 (.ci/run does)")
    was_up = cluster("status").returncode == 0
    started = cluster("start")
    assert started.returncode == 0, f"tests/slurm/cluster.sh start failed:\n{started.stdout}\n{started.stderr}"
    yield
    if not was_up:  # leave a cluster someone started by hand as it was
        stopped = cluster("stop")
        assert stopped.returncode == 0, stopped.stderr


def slurm_config():
    config = copy.deepcopy(TINY_CONFIG)
    config.update(study="slurmtest", metrics=["lpips", "random"], seeds=[0, 1])
    config["data"]["root"] = "results/slurmtest/data"
    config["training"]["device"] = "auto"  # asks for GPUs; the node's GPU is fake, so the jobs fall back to CPU
    return config


def sacct(run_id):
    fields = ["JobID", "Comment", "State", "ReqTRES", "AllocTRES", "Timelimit"]
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--name", run_id, "-o", ",".join(fields)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]
    for row in rows:
        found = re.match(r"rule_(prepare|epochs_\w+?_\d+-\d+)_", row["Comment"])
        row["group"] = found.group(1) if found else f"{row['Comment']}#{row['JobID']}"  # an ungrouped job
        for key in ("ReqTRES", "AllocTRES"):
            row[key] = dict(kv.split("=", 1) for kv in row[key].split(",") if kv)
        h, m, s = map(int, row["Timelimit"].split(":"))
        row["minutes"] = 60 * h + m + s / 60
    return {row["group"]: row for row in rows}


def mem_mb(tres):
    value = tres["mem"]
    return int(float(value[:-1]) * {"M": 1, "G": 1024}[value[-1]])


@pytest.fixture(scope="module")
def slurm_study(slurm_cluster, tmp_path_factory):
    """The study through `snakemake --profile slurm` (2 epochs per job), and the same study run locally
    alongside (the cluster jobs spend much of their time queued or polled, so this costs little)."""
    config = slurm_config()
    work, local = tmp_path_factory.mktemp("slurm"), tmp_path_factory.mktemp("local")
    for folder in (work, local):
        write_config(folder / "slurmtest.yaml", config)
    with ThreadPoolExecutor(1) as pool:
        local_run = pool.submit(
            run_snakemake,
            local,
            "--configfile",
            str(local / "slurmtest.yaml"),
            "--cores",
            "2",
            *[
                f"results/slurmtest/tiny_mlp_bn/seed_{s}/{m}/distances.h5"
                for m in config["metrics"]
                for s in config["seeds"]
            ],
        )
        log = snakemake_in_repo(
            "--profile",
            "slurm",
            "--configfile",
            str(work / "slurmtest.yaml"),
            "--directory",
            str(work),
            "--group-components",
            "epochs=2",
            "--retries",
            "0",
            "--default-resources",
            f"gpu_model='{GPU_TYPE}'",  # the profile's optional setting
            "--slurm-init-seconds-before-status-checks",
            "2",
            timeout=900,
        )
        local_run.result()
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    return dict(work=work, local=local, log=log, jobs=planned_jobs(log), sacct=sacct(run_id), config=config)


@pytest.mark.slurm
def test_every_cluster_job_went_through_sbatch(slurm_study):
    metrics, seeds = slurm_study["config"]["metrics"], slurm_study["config"]["seeds"]
    jobs = slurm_study["sacct"]
    groups = {g for g in jobs if not g.startswith("rule_")}
    assert groups == {"prepare"} | {
        f"epochs_tiny_mlp_bn_seed{s}_{m}_{r}" for m in metrics for s in seeds for r in ("1-2", "3-3")
    }
    assert sorted(re.match(r"rule_(\w+?)_wildcards", g).group(1) for g in jobs if g.startswith("rule_")) == [
        "ordering"
    ] + ["seeded_ordering"] * len(seeds)
    assert {row["State"] for row in jobs.values()} == {"COMPLETED"}
    # Snakemake itself ran only the light local rules ...
    assert {j["rule"] for j in slurm_study["jobs"] if j["group"] is None} == LOCAL_RULES | {
        "ordering",
        "seeded_ordering",
    }
    # ... and every other job ran inside a SLURM job (the plugin's logs, kept by the profile)
    logs = list((slurm_study["work"] / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(logs) == len(jobs)
    ran = Counter(re.findall(r"^localrule (\w+):$", "".join(p.read_text() for p in logs), re.M))
    n, s = len(metrics), len(seeds)
    assert ran == {
        "synthetic_dataset": 1,
        "verify_dataset": 1,
        "init_model": s,
        "ordering": 1,
        "seeded_ordering": s,
        "train_epoch": 3 * n * s,
        "reduce_epoch": 3 * n * s,
    }


@pytest.mark.slurm
def test_gpu_rules_asked_slurm_for_a_gpu(slurm_study):
    for group, row in slurm_study["sacct"].items():
        # prepare and the random orderings asked for --gpus=testgpu:0, i.e. none; the lpips ordering and epochs one
        gpus = None if group == "prepare" or "seeded_ordering" in group else "1"
        for tres in ("ReqTRES", "AllocTRES"):
            assert row[tres].get("gres/gpu") == row[tres].get(f"gres/gpu:{GPU_TYPE}") == gpus, row
    gpu = {
        (j["rule"], j["wildcards"].get("metric")): j["resources"]["gpu"]
        for j in slurm_study["jobs"]
        if j["rule"] not in LOCAL_RULES
    }
    assert gpu[("train_epoch", "lpips")] == gpu[("train_epoch", "random")] == gpu[("ordering", "lpips")] == 1
    assert gpu[("seeded_ordering", "random")] == gpu[("reduce_epoch", "lpips")] == gpu[("init_model", None)] == 0
    # the node's GPU is a /dev/null: the jobs said so and trained on the CPU
    log = slurm_study["work"] / "logs/slurmtest/tiny_mlp_bn/seed_1/lpips/train_epoch_1.log"
    assert "device cpu" in log.read_text()


@pytest.mark.slurm
def test_bundled_submission_requests_the_max_of_serial_jobs_not_the_sum(slurm_study):
    """A group job asks for the widest step of its chain (train_epoch e+1 beside reduce_epoch e), and the
    sum of the steps' runtimes; not for the sum of every member's memory and CPUs."""
    res = {}
    for j in slurm_study["jobs"]:
        if j["group"]:
            res[(j["rule"], j["wildcards"].get("metric"))] = j["resources"] | {"threads": 1}
    for group, row in slurm_study["sacct"].items():
        members = [j for j in slurm_study["jobs"] if j["group"] == group]
        if group.startswith("rule_"):
            continue  # an ordering, alone
        if group == "prepare":  # a chain: the data set, its check, then the initialisations side by side
            n = Counter(j["rule"] for j in members)
            steps = [[res[(rule, None)]] for rule in ("synthetic_dataset", "verify_dataset") if n[rule]]
            steps.append([res[("init_model", None)]] * n["init_model"])
        else:
            _, _, metric, first, last = GROUP.fullmatch(group).groups()
            train, reduce = res[("train_epoch", metric)], res[("reduce_epoch", metric)]
            steps = [[train]] + [[train, reduce]] * (int(last) - int(first)) + [[reduce]]
        widest = max(sum(r["mem_mb"] for r in step) for step in steps)
        assert mem_mb(row["ReqTRES"]) == widest, (group, row["ReqTRES"], steps)
        assert widest < sum(j["resources"]["mem_mb"] for j in members), group
        assert int(row["ReqTRES"]["cpu"]) == max(sum(r["threads"] for r in step) for step in steps)
        assert row["minutes"] == sum(max(r["runtime"] for r in step) for step in steps)


@pytest.mark.slurm
def test_cluster_outputs_equal_a_local_run(slurm_study):
    for metric, seed in [(m, s) for m in slurm_study["config"]["metrics"] for s in slurm_study["config"]["seeds"]]:
        path = f"results/slurmtest/tiny_mlp_bn/seed_{seed}/{metric}/distances.h5"
        with h5py.File(slurm_study["work"] / path) as a, h5py.File(slurm_study["local"] / path) as b:
            assert set(a) == set(b)
            for name in a:
                assert np.array_equal(a[name][:], b[name][:]), (metric, name)
    assert (slurm_study["work"] / "results/slurmtest/index.html").exists()  # the whole study completed
