"""Planning the DAG: our `snakemake -n` against a floor with the same jobs, side by side.

    PYTHONPATH=src .venv/bin/python benchmarks/dagfloor.py [--configs paper grid] [--layouts inline parallel]
        [--repeats 5] [--with FEATURE ... | --sweep] [--keep DIR] [--print-floor]

Absolute dry-run times vary with the machine and the day; their ratio to a floor measured beside them does
not. The floor is a generated Snakefile with the same rules (same names), the same wildcards, output and
log patterns and the same dependencies, a `log:` and a `benchmark:` per rule and `shell: "true"`, and
nothing else: no params, resources, threads, conda, script, groups, temp() or report() outputs, global
wildcard constraints or schema validation. Two input functions stay, the least the chain needs (a pattern
cannot name the previous epoch, nor choose between a metric's one ordering and its per-seed ones); the
ordering rules keep their metric constraints, without which an ordering file would match both rules.

Both commands are `python -m snakemake -s SNAKEFILE --directory WORK --configfile CFG -n --quiet rules`
in fresh folders; the repeats alternate which goes first (ours, floor; floor, ours; ...) so load falls
on both alike, and the medians are compared. Both must plan the same jobs per rule, or the script stops.
Each run's wall seconds and CPU seconds (user + system of the Snakemake process) are taken; ours / floor
is the ratio of the CPU medians, which other work on a shared machine stretches far less than the wall
times (a dry run is one process on one core: unloaded, the two are within a few per cent).

`--with` adds one of our features to the floor (ours / (floor + feature) is what is left besides that
feature); `--sweep` times the floor alone, with each feature, and with all, beside ours, to measure what
Snakemake itself charges for each:
  constraints  the global wildcard_constraints of common.smk      temp     temp() outputs as ours
  report       report() outputs as ours                           groups   group functions as ours
  script       `script:` (a file read and params evaluated per job) instead of `shell:`
  resources    static resources (mem_mb, runtime, gpu) and threads per rule
  params       static params per rule (the same number of keys as ours)
  conda        a conda environment file per rule (not deployed: a dry run without --sdm conda)

Configs: paper (config/config.yaml: 1 model, 1 seed, 5 metrics x 150 epochs) and grid (the same with
models dpn92, resnet18 and seeds 0, 1, 2). Layouts: execution.layout inline and parallel.
"""

import argparse
import copy
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SNAKEFILE = REPO / "workflow" / "Snakefile"
sys.path.insert(0, str(REPO / "src"))
FEATURES = ("constraints", "temp", "report", "groups", "script", "resources", "params", "conda")
CONFIGS = {
    "paper": {},
    "grid": {"models": ["dpn92", "resnet18"], "seeds": [0, 1, 2]},
}


def study_config(name="paper", layout="inline", base=REPO / "config" / "config.yaml"):
    """The paper's config (`name` paper) or its 2 x 3 grid (grid), in the given layout."""
    config = yaml.safe_load(Path(base).read_text())
    config.update(copy.deepcopy(CONFIGS[name]))
    config["execution"] = {"layout": layout}
    return config


def _seeded(metric):
    from bestbatch import metrics

    return metrics.METRICS[metric].seeded


def floor_snakefile(config, features=()):
    """The floor's text for `config`: our rules' jobs and dependencies, and only the `features` asked for."""
    unknown = set(features) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown features {sorted(unknown)}; known: {', '.join(FEATURES)}")
    if config.get("selection"):
        raise ValueError("the floor covers the study's rules, not the selection experiment (selection.smk)")
    if config["data"]["source"] == "imagefolder" or not all(
        isinstance(m, str) and ":" not in m for m in config["models"]
    ):
        raise ValueError("the floor covers the built-in models on a CIFAR or synthetic data set")
    f = set(features)
    data, t = config["data"], config["training"]
    parallel = config.get("execution", {}).get("layout", "inline") == "parallel"
    metrics = config["metrics"]
    seeded = [m for m in metrics if _seeded(m)]
    unseeded = [m for m in metrics if not _seeded(m)]
    synthetic = data["source"] == "synthetic"
    outputs = config.get("outputs", {})
    if synthetic:
        from bestbatch.data import layout_of

        layout = layout_of(data["source"], data.get("synthetic"))
        data_files = [f"{data['root']}/{layout.dirname}/{name}" for name in layout.files]
    else:
        data_files = []
    keep_shards, keep_checkpoints = outputs.get("keep_shards", False), outputs.get("keep_checkpoints", False)

    def temp(pattern, keep=False):
        return f"temp({pattern})" if "temp" in f and not keep else pattern

    def report(pattern, category):
        return f'report({pattern}, caption="report.rst", category="{category}")' if "report" in f else pattern

    def rule(name, inputs, outputs, log, bench, group=None, constraints=None, n_params=1):
        lines = [f"rule {name}:"]
        if inputs:
            lines += ["    input:"] + [f"        {i}," for i in inputs]
        if log is None:  # a target rule: inputs only, like ours
            return "\n".join(lines) + "\n\n\n"
        lines += ["    output:"] + [f"        {o}," for o in outputs]
        lines += [f'    log:\n        f"{{L}}/{log}.log"', f'    benchmark:\n        f"{{B}}/{bench}.tsv"']
        if constraints:
            lines += ["    wildcard_constraints:"] + [f'        {k}="{v}",' for k, v in constraints.items()]
        if group and "groups" in f:
            lines += [f"    group:\n        {group}"]
        if "resources" in f:
            lines += ["    threads: 1", "    resources:\n        mem_mb=1000,\n        runtime=5,\n        gpu=0,"]
        if "conda" in f:
            lines += ['    conda:\n        "floor_env.yaml"']
        if "params" in f:
            lines += ["    params:"] + [f"        p{i}={i}," for i in range(n_params)]
        lines += ['    script:\n        "floor_script.py"' if "script" in f else '    shell:\n        "true"']
        return "\n".join(lines) + "\n\n\n"

    run = "{R}/{{model}}/seed_{{seed}}"
    per_run = "{{model}}/seed_{{seed}}"
    per_metric = per_run + "/{{metric}}"
    data_input = ["data=DATA_FILES"] if synthetic else ["data=[]"]
    text = [
        "# Generated by benchmarks/dagfloor.py: the floor of `snakemake -n` for our DAG (no params, resources,",
        "# conda, groups, temp or report outputs; the two input functions the chain needs).",
        f"R = {('results/' + config['study'])!r}",
        f"L = {('logs/' + config['study'])!r}",
        f"B = {('results/' + config['study'] + '/benchmarks')!r}",
        f"MODELS = {config['models']!r}",
        f"SEEDS = {config['seeds']!r}",
        f"METRICS = {metrics!r}",
        f"SEEDED = {seeded!r}",
        f"EPOCHS = {t['epochs']!r}",
        f"DATA_FILES = {data_files!r}",
        f'RUN = f"{run}"',
        "",
        "",
        "def runs(pattern, **fixed):",
        '    return expand(pattern, **{"model": MODELS, "seed": SEEDS, "metric": METRICS, **fixed}, '
        "allow_missing=True)",
        "",
        "",
        "def previous_checkpoint(wildcards):",
        "    epoch = int(wildcards.epoch)",
        '    run = f"{R}/{wildcards.model}/seed_{wildcards.seed}"',
        '    return f"{run}/checkpoints/init.pt" if epoch == 1 else '
        'f"{run}/{wildcards.metric}/checkpoints/epoch_{epoch - 1}.pt"',
        "",
        "",
        "def ordering_file(wildcards):",
        "    if wildcards.metric in SEEDED:",
        '        return f"{R}/orderings/{wildcards.metric}_seed_{wildcards.seed}.h5"',
        '    return f"{R}/orderings/{wildcards.metric}.h5"',
        "",
        "",
    ]
    if "groups" in f:
        text += [
            "def epochs_group(wildcards):",
            '    return f"epochs_{wildcards.model}_seed{wildcards.seed}_{wildcards.metric}_{wildcards.epoch}"',
            "",
            "",
            "def train_group(wildcards):",
            '    return "train_" + epochs_group(wildcards)',
            "",
            "",
            "def compare_group(wildcards):",
            '    return "compare_" + epochs_group(wildcards)',
            "",
            "",
        ]
    if "constraints" in f:
        text += [
            "wildcard_constraints:",
            '    model="|".join(MODELS),',
            '    seed="|".join(str(s) for s in SEEDS),',
            '    metric="|".join(METRICS),',
            '    epoch=r"[1-9][0-9]*",',
            "",
            "",
        ]
    text = ["\n".join(text)]
    rules = []
    rules.append(
        rule(
            "all",
            [
                'f"{R}/index.html"',
                'f"{R}/claims.csv"',
                'runs(f"{RUN}/{{metric}}/distances.csv")',
                'runs(f"{RUN}/{{metric}}/checkpoints/epoch_{EPOCHS}.pt")',
            ],
            [],
            None,
            None,
        )
    )
    if synthetic:
        rules.append(
            rule(
                "synthetic_dataset",
                [],
                ["DATA_FILES"],
                "synthetic_dataset",
                "synthetic_dataset",
                group='"prepare"',
                n_params=5,
            )
        )
    rules.append(
        rule(
            "verify_dataset",
            data_input,
            ['f"{R}/dataset.json"'],
            "verify_dataset",
            "verify_dataset",
            group='"prepare"',
            n_params=8,
        )
    )
    rules.append(
        rule(
            "init_model",
            ['f"{R}/dataset.json"'],
            ['f"{RUN}/checkpoints/init.pt"'],
            f"{per_run}/init_model",
            f"{per_run}/init_model",
            group='"prepare"',
            n_params=5,
        )
    )
    if unseeded:
        rules.append(
            rule(
                "ordering",
                ['dataset=f"{R}/dataset.json"'] + data_input,
                ['f"{R}/orderings/{{metric}}.h5"'],
                "orderings/{{metric}}",
                "orderings/{{metric}}",
                constraints={"metric": "|".join(unseeded)},
                n_params=6,
            )
        )
    if seeded:
        rules.append(
            rule(
                "seeded_ordering",
                ['dataset=f"{R}/dataset.json"'] + data_input,
                ['f"{R}/orderings/{{metric}}_seed_{{seed}}.h5"'],
                "orderings/{{metric}}_seed_{{seed}}",
                "orderings/{{metric}}_seed_{{seed}}",
                constraints={"metric": "|".join(seeded)},
                n_params=6,
            )
        )
    chain_inputs = ['dataset=f"{R}/dataset.json"', *data_input, "order=ordering_file", "state=previous_checkpoint"]
    shard = "shard=" + temp('f"{RUN}/{{metric}}/shards/epoch_{{epoch}}.h5"', keep_shards)
    records = "records=" + temp('f"{RUN}/{{metric}}/records/epoch_{{epoch}}.h5"')
    state = "state=" + temp('f"{RUN}/{{metric}}/checkpoints/epoch_{{epoch}}.pt"', keep_checkpoints)
    rules.append(
        rule(
            "train_epoch",
            chain_inputs,
            [records if parallel else shard, state],
            f"{per_metric}/train_epoch_{{{{epoch}}}}",
            f"{per_metric}/train_epoch_{{{{epoch}}}}",
            group="train_group" if parallel else "epochs_group",
            n_params=20,
        )
    )
    if parallel:
        rules.append(
            rule(
                "compare_epoch",
                chain_inputs,
                [shard],
                f"{per_metric}/compare_epoch_{{{{epoch}}}}",
                f"{per_metric}/compare_epoch_{{{{epoch}}}}",
                group="compare_group",
                n_params=20,
            )
        )
    rules.append(
        rule(
            "reduce_epoch",
            [
                'shard=f"{RUN}/{{metric}}/shards/epoch_{{epoch}}.h5"',
                'training=[f"{RUN}/{{metric}}/records/epoch_{{epoch}}.h5"]' if parallel else "training=[]",
            ],
            ['f"{RUN}/{{metric}}/epochs/epoch_{{epoch}}.h5"'],
            f"{per_metric}/reduce_epoch_{{{{epoch}}}}",
            f"{per_metric}/reduce_epoch_{{{{epoch}}}}",
            group="compare_group" if parallel else "epochs_group",
            n_params=0,
        )
    )
    rules.append(
        rule(
            "gather_distances",
            ['expand(f"{RUN}/{{metric}}/epochs/epoch_{{epoch}}.h5", epoch=range(1, EPOCHS + 1), allow_missing=True)'],
            [
                "h5=" + report('f"{RUN}/{{metric}}/distances.h5"', "Matrices"),
                "csv=" + report('f"{RUN}/{{metric}}/distances.csv"', "Matrices"),
            ],
            f"{per_metric}/gather_distances",
            f"{per_metric}/gather_distances",
        )
    )
    all_matrices = "[f'{R}/{m}/seed_{s}/{x}/distances.h5' for m in MODELS for s in SEEDS for x in METRICS]"
    plotly = 'plotly_js=f"{R}/plotly.min.js"'  # the study's one plotly.js, an input of every page
    rules.append(rule("plotly_js", [], [report('f"{R}/plotly.min.js"', "Study")], "plotly_js", "plotly_js"))
    rules.append(
        rule(
            "claims",
            [f"matrices={all_matrices}", plotly],
            [
                "csv=" + report('f"{R}/claims.csv"', "Study"),
                'statistics=f"{R}/statistics.csv"',
                "html=" + report('f"{R}/claims.html"', "Study"),
            ],
            "claims",
            "claims",
            n_params=10,
        )
    )
    for name in ("heatmap", "layers"):
        rules.append(
            rule(
                name,
                ['matrix=f"{RUN}/{{metric}}/distances.h5"', plotly],
                [report(f'f"{{RUN}}/plots/{name}_{{{{metric}}}}.html"', name)],
                f"{per_run}/plots/{name}_{{{{metric}}}}",
                f"{per_run}/plots/{name}_{{{{metric}}}}",
            )
        )
    rules.append(
        rule(
            "curves",
            ['matrices=expand(f"{RUN}/{{metric}}/distances.h5", metric=METRICS, allow_missing=True)', plotly],
            [report('f"{RUN}/plots/training_curves.html"', "Training")],
            f"{per_run}/plots/curves",
            f"{per_run}/plots/curves",
            n_params=4,
        )
    )
    per_study = "for m in MODELS for s in SEEDS for x in METRICS"
    rules.append(
        rule(
            "index",
            [
                f"matrices={all_matrices}",
                f"heatmaps=[f'{{R}}/{{m}}/seed_{{s}}/plots/heatmap_{{x}}.html' {per_study}]",
                f"layers=[f'{{R}}/{{m}}/seed_{{s}}/plots/layers_{{x}}.html' {per_study}]",
                "curves=[f'{R}/{m}/seed_{s}/plots/training_curves.html' for m in MODELS for s in SEEDS]",
                'claims=f"{R}/claims.html"',
            ],
            ["html=" + report('f"{R}/index.html"', "Study"), 'summary=f"{R}/summary.json"'],
            "index",
            "index",
            n_params=7,
        )
    )
    study = [
        "for _metric in METRICS:",
        "",
        "    rule:",
        "        name:",
        '            f"study_{_metric}"',
        "        input:",
        '            runs(f"{RUN}/plots/heatmap_{{metric}}.html", metric=_metric),',
        '            runs(f"{RUN}/{{metric}}/distances.csv", metric=_metric),',
        '            runs(f"{RUN}/{{metric}}/checkpoints/epoch_{EPOCHS}.pt", metric=_metric),',
        "        localrule: True",
        "",
    ]
    return "".join(text + rules) + "\n".join(study)


def dry_run(snakefile, config_file, workdir):
    """(wall seconds, CPU seconds, {rule: jobs}) of `snakemake -n --quiet rules`. CPU seconds: the user and
    system time of the Snakemake process, which load beside it stretches far less than its wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(snakefile),
            "--directory",
            str(workdir),
            "--configfile",
            str(config_file),
            "-n",
            "--quiet",
            "rules",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if out.returncode:
        raise RuntimeError(f"snakemake -n -s {snakefile} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return wall, cpu, job_counts(out.stdout + out.stderr)


def job_counts(text):
    """{rule: jobs} from the `Job stats:` table of a dry run, with the total under "total"."""
    table = text.split("Job stats:")[1]
    counts = {}
    for line in table.splitlines()[3:]:
        m = re.fullmatch(r"(\S+)\s+(\d+)", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def compare(cases, repeats=5, features=(), keep=None, log=print):
    """For each (config name, layout) in `cases`: ours and the floor, interleaved. Returns one row per case:
    {config, layout, jobs, ours, floor (median wall seconds), ratio (ours / floor, of the median CPU seconds),
    wall_ratio, ours_cpu, floor_cpu, uptime}; stops if the floor plans other jobs than ours."""
    rows = measure(cases, {"floor": tuple(features)}, repeats, keep, log)
    for r in rows:
        r.update(floor=r["floors"]["floor"], floor_cpu=r["floors_cpu"]["floor"])
        r.update(ratio=r["ours_cpu"] / r["floor_cpu"], wall_ratio=r["ours"] / r["floor"])
    return rows


def sweep(cases, repeats=3, keep=None, log=print):
    """What Snakemake charges for each of our features: ours against the floor alone, the floor with one
    feature, and the floor with all of them, interleaved."""
    floors = {"floor": ()}
    floors.update({f"floor + {f}": (f,) for f in FEATURES})
    floors["floor + all"] = FEATURES
    return measure(cases, floors, repeats, keep, log)


def measure(cases, floors, repeats, keep=None, log=print):
    """Seconds of ours and of each floor ({name: features}) per case, the sides in turn, each repeat in the
    reverse order of the one before. Returns one row per case: {config, layout, jobs, ours, ours_cpu, floors,
    floors_cpu: {name: median}, times, cpu: {side: [seconds]}, uptime}."""
    if keep:
        return _measure(Path(keep), cases, floors, repeats, log)
    with tempfile.TemporaryDirectory(prefix="bestbatch-dagfloor-") as root:
        return _measure(Path(root), cases, floors, repeats, log)


def _measure(root, cases, floors, repeats, log):
    setups = []
    for name, layout in cases:
        folder = root / f"{name}_{layout}"
        folder.mkdir(parents=True, exist_ok=True)
        config = study_config(name, layout)
        cfg = folder / "config.yaml"
        cfg.write_text(yaml.safe_dump(config))
        (folder / "floor_script.py").write_text("")
        (folder / "floor_env.yaml").write_text("channels: [conda-forge]\ndependencies: [python]\n")
        (folder / "report.rst").write_text("floor\n")
        sides = {"ours": SNAKEFILE}
        for i, (side, features) in enumerate(floors.items()):
            sides[side] = folder / f"floor_{i}.smk"
            sides[side].write_text(floor_snakefile(config, features))
        setups.append(
            dict(config=name, layout=layout, cfg=cfg, folder=folder, sides=sides, times={}, cpu={}, counts={})
        )
    loads = [uptime()]
    log(f"  {loads[-1]}")
    for r in range(repeats):
        for s in setups:
            order = list(s["sides"]) if r % 2 == 0 else list(s["sides"])[::-1]
            for side in order:
                work = s["folder"] / f"work_{list(s['sides']).index(side)}"
                wall, cpu, s["counts"][side] = dry_run(s["sides"][side], s["cfg"], work)
                s["times"].setdefault(side, []).append(wall)
                s["cpu"].setdefault(side, []).append(cpu)
                if "ours" in s["counts"] and s["counts"][side] != s["counts"]["ours"]:
                    diff = {
                        k: (s["counts"]["ours"].get(k), s["counts"][side].get(k))
                        for k in set(s["counts"]["ours"]) | set(s["counts"][side])
                        if s["counts"]["ours"].get(k) != s["counts"][side].get(k)
                    }
                    raise SystemExit(f"{s['config']} {s['layout']}: {side} plans other jobs (ours, {side}): {diff}")
            log(
                f"  {s['config']} {s['layout']} repeat {r + 1}: "
                + ", ".join(
                    f"{side} {s['times'][side][-1]:.2f} s ({s['cpu'][side][-1]:.2f} s CPU)" for side in s["sides"]
                )
            )
        loads.append(uptime())
        log(f"  {loads[-1]}")
    return [
        dict(
            config=s["config"],
            layout=s["layout"],
            jobs=s["counts"]["ours"]["total"],
            ours=statistics.median(s["times"]["ours"]),
            ours_cpu=statistics.median(s["cpu"]["ours"]),
            floors={side: statistics.median(t) for side, t in s["times"].items() if side != "ours"},
            floors_cpu={side: statistics.median(t) for side, t in s["cpu"].items() if side != "ours"},
            times=s["times"],
            cpu=s["cpu"],
            uptime=loads,
        )
        for s in setups
    ]


def table(rows):
    lines = [
        "| config | layout | jobs | ours s | floor s | ours/floor (wall) | ours CPU s | floor CPU s | ours/floor (CPU) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['config']} | {r['layout']} | {r['jobs']} | {r['ours']:.2f} | {r['floor']:.2f} | {r['wall_ratio']:.2f} "
        f"| {r['ours_cpu']:.2f} | {r['floor_cpu']:.2f} | {r['ratio']:.2f} |"
        for r in rows
    ]
    return "\n".join(lines)


def sweep_table(rows):
    lines = ["| config | layout | side | wall s | CPU s | ours / side (CPU) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['layout']} | ours | {r['ours']:.2f} | {r['ours_cpu']:.2f} | 1.00 |")
        lines += [
            f"| {r['config']} | {r['layout']} | {side} | {r['floors'][side]:.2f} | {cpu:.2f} | {r['ours_cpu'] / cpu:.2f} |"
            for side, cpu in r["floors_cpu"].items()
        ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["paper", "grid"], choices=sorted(CONFIGS))
    ap.add_argument("--layouts", nargs="+", default=["inline", "parallel"], choices=["inline", "parallel"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--with", dest="features", nargs="*", default=[], choices=FEATURES, help="add to the floor")
    ap.add_argument("--keep", help="write the configs and floors here (default: a temporary folder)")
    ap.add_argument("--print-floor", action="store_true", help="print the first case's floor Snakefile and stop")
    ap.add_argument("--sweep", action="store_true", help="time the floor with each feature, and with all, beside ours")
    a = ap.parse_args()
    cases = [(c, lay) for c in a.configs for lay in a.layouts]
    if a.print_floor:
        print(floor_snakefile(study_config(*cases[0]), a.features))
        return
    if a.sweep:
        rows = sweep(cases, a.repeats, a.keep)
        print("\n" + sweep_table(rows))
    else:
        rows = compare(cases, a.repeats, a.features, a.keep)
        print("\n" + table(rows))
    print("\nuptime before and after each round:\n" + "\n".join(rows[0]["uptime"]))


if __name__ == "__main__":
    main()
