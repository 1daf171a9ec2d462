import dataclasses
import os
import re
import sys
from pathlib import Path

# The package ships beside the rules: found from this file, so a module deployment (whose main Snakefile is
# the user's) imports the same code. Where the workflow comes from a remote source, it is installed instead.
sys.path.insert(0, str(Path(workflow.current_basedir.get_path_or_uri(secret_free=True)).parents[1] / "src"))

from snakemake.utils import validate

try:
    from snakemake.common import get_function_params, overwrite_function_params
except ImportError:  # a Snakemake without them: per_job (below) leaves the functions as they are
    overwrite_function_params = None

from bestbatch.config import (
    ConfigError,
    check_models_at_size,
    check_semantics,
    config_hash,
    data_root as resolve_data_root,
    study_config,
    explain_invalid,
    load_schema,
    ordering_hash,
    phases,
)
from bestbatch.fingerprint import cache_path as digests_cache
from bestbatch.data import DatasetError, layout_of, planned_image_shape, planned_sizes, scan_imagefolder
from bestbatch.model_spec import ModelError, model_spec, refuse_dotted_paths
from bestbatch import metrics as metric_registry
from bestbatch.config import num_batches
from bestbatch.gradients import sketch_settings
from bestbatch.resources import (
    GPU_MEMORY_GB,
    LIGHT_JOB,
    MAX_JOB_MEMORY_GB,
    Study,
    data_disk_mb,
    data_placement,
    job_resources,
    probe_figures,
    select_chunk_resources,
)
from bestbatch.selection import run_layout, total_steps
from bestbatch.selection import CROSS_FITTED, arms as selection_arms, parse_arm
from bestbatch.workflow_support import PACKAGE_VARIABLE, package_requirement, release_stale_locks

# The rules' conda environments (--sdm conda) install the package itself from the pip line ${BESTBATCH_PACKAGE}:
# this checkout, or the repository and tag a module was declared with.
os.environ[PACKAGE_VARIABLE] = package_requirement(workflow.current_basedir)

# --- the config: a --configfile is the whole study (the schema's defaults fill what it leaves out); without one,
# the paper's config/config.yaml (bestbatch.config.study_config). --config overrides either. --------------
PAPER_CONFIG = Path(workflow.current_basedir.get_path_or_uri(secret_free=True)).parents[1] / "config" / "config.yaml"
_, CONFIG_FILES = study_config(
    config,
    workflow.overwrite_configfiles or [f for f in workflow.configfiles if Path(f).is_file()],
    PAPER_CONFIG,
    given=workflow.modifier.skip_configfile,  # a module declared with `config:`
)
# named relative to the working directory where they lie inside it
CONFIG_FILES = [f if (f := os.path.relpath(p)) and not f.startswith("..") else str(p) for p in CONFIG_FILES]
if workflow.is_main_process:
    _overrides = dict(workflow.config_settings.config)
    logger.info(
        f"bestbatch: the study is {', '.join(CONFIG_FILES) or 'the config its module was given'}"
        + (f", with --config {', '.join(sorted(_overrides))}" if _overrides else "")
        + "; keys left out take the defaults of workflow/schemas/config.schema.yaml (config/README.md)"
    )

# --- the config, validated once: the schema's errors name the dotted key, Snakemake fills the defaults --
SCHEMA = "../schemas/config.schema.yaml"
try:
    refuse_dotted_paths(config.get("models"))  # "torchvision.models.resnet18": says "did you mean ...:resnet18?"
    explain_invalid(config, load_schema(workflow.source_path(SCHEMA)))
    validate(config, SCHEMA)
    # The networks, by the names their outputs go under: built-in ones, and import paths (models.model_spec),
    # found with the config files' folders first on the import path (a module beside the config). An import
    # path's code identity (a hash of its source, or its distribution's version) is looked up here, once, not
    # imported: it is part of the `model` param of its jobs (model_param), so an edit reruns them.
    IMPORT_PATHS = sorted({str(Path(f).resolve().parent) for f in CONFIG_FILES})
    MODEL_SPECS = {}
    for _i, _entry in enumerate(config["models"]):
        _spec = model_spec(_entry, f"models[{_i}]", IMPORT_PATHS)
        if _spec.name in MODEL_SPECS:
            raise ConfigError(f"models[{_i}]: {_entry!r} is named {_spec.name!r} like an earlier entry; give it a name")
        MODEL_SPECS[_spec.name] = _spec
    # data.root: a data set you bring is found relative to the config file that names it (config.data_root)
    DATA_ROOT, _how_root = resolve_data_root(config, CONFIG_FILES, workflow.config_settings.config)
    # An image folder is scanned (not decoded) when Snakemake starts: its files and their fingerprints, from its
    # content (a sha256 per file, cached by path, size and mtime beside Snakemake's own state).
    IMAGES = None
    if config["data"]["source"] == "imagefolder":
        IMAGE_DIGESTS = digests_cache(Path(".snakemake", "bestbatch"), DATA_ROOT)
        IMAGES = scan_imagefolder(DATA_ROOT, cache=IMAGE_DIGESTS)
    # The data set's sizes before it is checked: a synthetic set's from the config, an image folder's counted,
    # else read from its files (or, while they are not there, the official release's); verify_dataset refuses
    # a mismatch.
    N_TRAIN, N_TEST, N_CLASSES = (
        IMAGES.sizes
        if IMAGES
        else planned_sizes(config["data"]["source"], DATA_ROOT, config["data"].get("synthetic"))[:3]
    )
    check_semantics(config, N_TRAIN)
    # The images' size (data.image_size; native: the first image's), which the built-in networks must take
    IMAGE_SHAPE = planned_image_shape(config["data"].get("image_size"), IMAGES, DATA_ROOT)
    check_models_at_size(MODEL_SPECS.values(), IMAGE_SHAPE, config["data"].get("image_size"))
except (ConfigError, ModelError) as exc:
    raise WorkflowError(f"invalid config: {exc}") from None
except DatasetError as exc:
    raise WorkflowError(f"invalid config: {exc} (data.root {config['data']['root']!r}: {_how_root})") from None

# A run killed by SIGKILL (pre-emption, OOM killer) leaves its locks: the same command resumes anyway.
if workflow.is_main_process and (_stale := release_stale_locks()):
    logger.warning(f"Removed {len(_stale)} stale lock(s) of a killed run (no Snakemake process runs here).")

STUDY = config["study"]
R = f"results/{STUDY}"
L = f"logs/{STUDY}"
B = f"results/{STUDY}/benchmarks"
PLOTLY_JS = f"{R}/plotly.min.js"  # written once per study; every page loads it (rule plotly_js)
METRICS = config["metrics"]
MODELS = list(MODEL_SPECS)
# Networks outside the built-in ones: probed once (rule model_cost) for their jobs' resources, built from
# their import path, with the config files' folders (IMPORT_PATHS) on the import path.
OUTSIDE = [name for name, spec in MODEL_SPECS.items() if not spec.builtin]
SEEDS = config["seeds"]
DATA = config["data"]
T = config["training"]
EPOCHS = T["epochs"]
USES_GPU = T["device"] != "cpu"
SYNTHETIC = DATA["source"] == "synthetic"
EXECUTION = config["execution"]
# Where the training jobs keep the images (data.placement; auto: decided from the data's size, the GPU's memory
# and the most a job may ask for, bestbatch.resources.data_placement): device, host or mapped.
DATA_STUDY = Study(
    model="tiny_mlp",
    n_train=N_TRAIN,
    n_test=N_TEST,
    batch_size=T["batch_size"],
    value_bytes=4,
    threads=T["threads"],
    gpu=USES_GPU,
    image_shape=IMAGE_SHAPE,
)
# (The three keys have no schema default, so that a study made before them keeps its recorded config.)
PLACEMENT = data_placement(
    DATA_STUDY,
    DATA.get("placement", "auto"),
    gpu_memory_gb=EXECUTION.get("gpu_memory_gb", GPU_MEMORY_GB),
    max_job_memory_gb=EXECUTION.get("max_job_memory_gb", MAX_JOB_MEMORY_GB),
    can_map=bool(IMAGES),
)
LAYOUT = layout_of(DATA["source"], DATA.get("synthetic"), DATA.get("image_size"), PLACEMENT)
# An image folder is decoded once under the study's results (imagefolder_train and imagefolder_test): into
# CIFAR-10's format at 32 x 32, into an image set (any size; the mapped placement) otherwise.
DATA_DIR = f"{R}/data" if IMAGES else str(DATA_ROOT)
DATA_FILES = [f"{DATA_DIR}/{LAYOUT.dirname}/{name}" for name in LAYOUT.files]
# the training split's files (the meta file, which names the classes, goes with them) and the test split's
DATA_TRAIN_FILES = [f"{DATA_DIR}/{LAYOUT.dirname}/{name}" for name in LAYOUT.train_side]
DATA_TEST_FILES = [f"{DATA_DIR}/{LAYOUT.dirname}/{LAYOUT.test_file}"]
# A synthetic set or an image folder's cache is made by the workflow: its files are inputs of every rule that
# reads them, so a storage plugin stages them. The real data set is the user's, checked by verify_dataset
# (which says what to put where).
DATA_INPUT = DATA_FILES if SYNTHETIC or IMAGES else []
# an image folder decoded into an image set (any size, or mapped): `format` is its jobs' param only then, so the
# 32 x 32 studies keep their params
IMAGE_SET_PARAMS = {"format": LAYOUT.source} if LAYOUT.source == "imageset" else {}
# What a job that reads only the training split depends on (the orderings, model_cost; init_model reads no
# image): for an image folder, the training split's files alone, so that a changed test image (which reruns
# imagefolder_test and verify_dataset) reruns none of them; for every other source, the checked data set.
TRAIN_INPUT = dict(data=DATA_TRAIN_FILES) if IMAGES else dict(dataset=f"{R}/dataset.json", data=DATA_INPUT)
INIT_INPUT = {} if IMAGES else dict(dataset=f"{R}/dataset.json")
PHASES = phases(EPOCHS, T["lr"], T["lr_milestones"], T["lr_gamma"])
GRAM = config["outputs"]["gram"]  # the batch Gram matrices are kept: sets of batches are answered (plots.smk)
SEL = config.get("selection")  # the selection experiment, when configured (selection.smk)
# How Algorithm 1 is laid out as jobs (bestbatch.config.NOT_RESULT_KEYS: the same results either way):
# inline, train_epoch writes checkpoint and shard; parallel, train_epoch trains and compare_epoch writes the shard.
PARALLEL = config["execution"]["layout"] == "parallel"
# Where an epoch's gradients are held (bestbatch.gradients): a shard on disk that reduce_epoch reads, or in the job's
# memory or as sketches, reduced by the job that forms them (which then gets HELD_PARAMS).
GRADIENTS = config["outputs"]["gradients"]
SHARDS = GRADIENTS == "shard"
# One run: a model, a seed, a metric's fixed order. Its outputs live under RUN/<metric>/.
RUN = f"{R}/{{model}}/seed_{{seed}}"


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    seed="|".join(str(s) for s in SEEDS),
    metric="|".join(METRICS),
    epoch=r"[1-9][0-9]*",


# Snakemake reads a function's parameters (inspect.signature) every time it calls it, two or three times
# per job and function; per_job records them once, as Snakemake's own helpers (snakemake.ioutils) do. For the
# functions Snakemake calls for every epoch's jobs: tens of thousands of calls in a grid. Nothing else changes.
def per_job(func):
    if overwrite_function_params is not None:
        overwrite_function_params(func, get_function_params(func))
    return func


def runs(pattern, **fixed):
    """`pattern` expanded over every model and seed (and metric, if it names one): the targets of `all`."""
    return expand(pattern, **{"model": MODELS, "seed": SEEDS, "metric": METRICS, **fixed}, allow_missing=True)


@per_job
def previous_checkpoint(wildcards):
    epoch = int(wildcards.epoch)
    run = f"{R}/{wildcards.model}/seed_{wildcards.seed}"
    if epoch == 1:
        return f"{run}/checkpoints/init.pt"
    return f"{run}/{wildcards.metric}/checkpoints/epoch_{epoch - 1}.pt"


@per_job
def ordering_file(wildcards):
    """A metric's ordering: one per data set, or one per seed for a seeded metric (the random control)."""
    if metric_registry.METRICS[wildcards.metric].seeded:
        return f"{R}/orderings/{wildcards.metric}_seed_{wildcards.seed}.h5"
    return f"{R}/orderings/{wildcards.metric}.h5"


def maybe_temp(path, keep):
    return path if keep else temp(path)


# --- what the steps are told: every value a job needs, as params (a change reruns exactly the jobs it
# affects; config_hash covers the keys that can change a result, see bestbatch.config.RESULT_KEYS) ------
RUN_HASHES = {}  # (metric, model, seed): config_hash once per run, not once per job (9,000 in a grid)


@per_job
def run_hash(wildcards):
    key = (getattr(wildcards, "metric", None), wildcards.model, wildcards.seed)
    if key not in RUN_HASHES:
        RUN_HASHES[key] = config_hash(config, key[0], key[1], int(key[2]))
    return RUN_HASHES[key]


def staged_image_root(split):
    """An image folder's decode job's param: the folder holding train/ and test/, as staged (the split's first
    image's path less its relative part)."""
    depth = len(Path(getattr(IMAGES, split)[0][0]).parts)
    return lambda wildcards, input: str(Path(input[0]).parents[depth - 1])


@per_job
def data_root(wildcards, input):
    """The folder holding the data set: derived from the staged input files where the workflow made them."""
    return str(Path(input.data[0]).parents[1]) if DATA_INPUT else str(DATA_ROOT)


# --- the networks: a built-in one is a name; another is its import path, keyword arguments and code identity
# (looked up once, above), found with the config's folder on the import path, and priced from its model_cost
# probe (only then are they params: the built-in models' jobs keep their params, and so their outputs) -------
@per_job
def model_param(wildcards):
    return MODEL_SPECS[wildcards.model].describe()


MODEL_PARAMS = dict(model=model_param, import_paths=IMPORT_PATHS) if OUTSIDE else dict(model="{model}")


@per_job
def model_cost_file(wildcards):
    return [f"{R}/models/{wildcards.model}/cost.json"] if wildcards.model in OUTSIDE else []


# the probe is an input of a network's jobs only where some network needs one (an input function per job
# costs time when Snakemake plans thousands of them). Not `ancient`, though it changes no result: Snakemake then
# no longer compares the params of a job whose probe reruns, and a changed network must rerun its jobs.
PROBE_INPUT = dict(cost=model_cost_file) if OUTSIDE else {}


# What the orderings and model_cost read (an image set they map, whatever the placement)
DATA_PARAMS = dict(data_root=data_root, data_format=LAYOUT.source)
# a mapped set's training jobs ask for the disk its image set takes (a staging storage plugin copies it to the node)
MAPPED_DISK = (
    dict(disk_mb=data_disk_mb(dataclasses.replace(DATA_STUDY, placement=PLACEMENT))) if PLACEMENT == "mapped" else {}
)
# How the inputs are normalised: an image folder's jobs by its training images' own channel mean and std,
# computed by each job from the images it loads (bestbatch.data.channel_statistics); every other study by
# CIFAR-10's constants, with no param at all, so that their jobs keep the params, and the results, they had.
NORMALIZATION_PARAMS = dict(normalization="train") if IMAGES else {}
# placement: a training job's param only where it is not device, so that every study made before data.placement
# keeps its params
TRAINING_PARAMS = dict(
    **DATA_PARAMS,
    **({} if PLACEMENT == "device" else {"placement": PLACEMENT}),
    **NORMALIZATION_PARAMS,
    num_classes=N_CLASSES,
    **{
        key: T[key]
        for key in (
            "batch_size",
            "lr",
            "lr_milestones",
            "lr_gamma",
            "momentum",
            "weight_decay",
            "augment",
            "dtype",
            "device",
            "threads",
            "cuda_tf32",
            "cuda_deterministic",
        )
    },
)

# The jobs that form the gradients and hold them in memory or sketched (outputs.gradients) reduce them too: they
# are told how, and a sketch's settings (its length, seed and stated bound). None for shards: those jobs keep the
# params they had.
OUTPUTS = config["outputs"]
SKETCH = (
    sketch_settings(
        num_batches(N_TRAIN, T["batch_size"]),
        eps=OUTPUTS["sketch_eps"],
        dim=OUTPUTS["sketch_dim"] or None,
        seed=OUTPUTS["sketch_seed"],
    )
    if GRADIENTS == "sketch"
    else None
)
HELD_PARAMS = {} if SHARDS else dict(gradients=GRADIENTS, gram=GRAM, **({"sketch": SKETCH} if SKETCH else {}))


# --- what a job costs, sized from the config and the data (bestbatch.resources) -------------------
def study_sizes(model):
    return Study(
        model=model,
        n_train=N_TRAIN,
        n_test=N_TEST,
        batch_size=T["batch_size"],
        value_bytes=8 if T["dtype"] == "float64" else 4,
        threads=T["threads"],
        gpu=USES_GPU,
        n_classes=N_CLASSES,
        gradients=GRADIENTS,
        sketch_dim=SKETCH["dim"] if SKETCH else 0,
        gram=GRAM,
        image_shape=IMAGE_SHAPE,
        placement=PLACEMENT,
        image_set=LAYOUT.source == "imageset",
    )


BUILTIN = [m for m in MODELS if m not in OUTSIDE]
COST = {model: job_resources(study_sizes(model)) for model in BUILTIN}
# the data jobs and the orderings do not depend on the model
DATA_COST = job_resources(study_sizes(BUILTIN[0] if BUILTIN else "tiny_mlp"))
# How the selection runs are cut into jobs (NOT_RESULT_KEYS: the same results either way): one job per arm
# and chunk, or one per (model, budget, seed) and chunk that trains every arm's chunk in turn.
SELECTION_PER_SEED = config["execution"]["selection_jobs"] == "seed"
if SEL:
    ARMS = selection_arms(SEL["policies"], SEL["metrics"], SEL["controls"])
    SEL_ARMS_PER_JOB = len(ARMS) if SELECTION_PER_SEED else 1
    SELECT_COST = {
        model: select_chunk_resources(study_sizes(model), SEL["chunk_epochs"], SEL_ARMS_PER_JOB) for model in BUILTIN
    }


def select_cost(key):
    """A selection job's request (per model; a network outside the table from its probe)."""
    if OUTSIDE:
        return per_job(
            lambda wildcards, input: (
                select_chunk_resources(probed_sizes(wildcards.model, input), SEL["chunk_epochs"], SEL_ARMS_PER_JOB)
                if wildcards.model in OUTSIDE
                else SELECT_COST[wildcards.model]
            )[key]
        )
    return per_job(lambda wildcards: SELECT_COST[wildcards.model][key])


def probed_sizes(model, input):
    """The Study of a network outside the table, priced from its model_cost probe (the job's input `cost`)."""
    import json

    return dataclasses.replace(
        study_sizes("tiny_mlp"), model=model, probe=probe_figures(json.loads(Path(input.cost[0]).read_text()))
    )


def cost(rule_name, key):
    """A rule's request for one resource, per model (and per metric for the orderings); a plain number
    where it is the same for every job (Snakemake calls a function once per job: 9,000 calls cost seconds).
    A network outside the table is priced from its probe (the job's input `cost`; <TBD> in a dry run until
    the probe has run)."""
    if rule_name == "ordering":
        return per_job(lambda wildcards: DATA_COST["ordering"][wildcards.metric][key])
    if OUTSIDE:
        return per_job(
            lambda wildcards, input: (
                job_resources(probed_sizes(wildcards.model, input))
                if wildcards.model in OUTSIDE
                else COST[wildcards.model]
            )[rule_name][key]
        )
    if len({COST[m][rule_name][key] for m in MODELS}) == 1:
        return COST[MODELS[0]][rule_name][key]
    return per_job(lambda wildcards: COST[wildcards.model][rule_name][key])


# --- job groups: fewer cluster submissions (ignored when Snakemake runs the jobs itself) ---------
# `--group-components epochs=N` (profiles/slurm sets it) puts N consecutive epochs of one run (model,
# seed, metric), train_epoch and reduce_epoch, into one cluster job. The data set and the initial models
# are one job, "prepare"; each ordering is a job of its own. Without the setting, N = 1.
def epochs_per_job():
    # read when the jobs are made: Snakemake sets the group settings after parsing the Snakefile
    settings = getattr(workflow, "group_settings", None)
    n = settings.group_components.get("epochs", 1) if settings is not None else 1
    return max(1, int(n))


def epochs_group_name(model, seed, metric, epoch):
    n = epochs_per_job()
    first = (int(epoch) - 1) // n * n + 1
    return f"epochs_{model}_seed{seed}_{metric}_{first}-{min(first + n - 1, EPOCHS)}"


@per_job
def epochs_group(wildcards):
    if workflow.remote_exec:
        # inside a cluster job, which does not see the setting: its jobs stay one group, so they run
        # as one step and overlap (reduce_epoch e beside train_epoch e+1) as the request assumed
        return "epochs"
    return epochs_group_name(wildcards.model, wildcards.seed, wildcards.metric, wildcards.epoch)


# The parallel layout bundles a chain in two: N consecutive train_epoch jobs ("train_..."), and the
# compare_epoch and reduce_epoch jobs of the same N epochs ("compare_..."), which start once the training
# bundle has written the checkpoints they need and run beside the next training bundle.
@per_job
def train_group(wildcards):
    return "train" if workflow.remote_exec else "train_" + epochs_group(wildcards)


@per_job
def compare_group(wildcards):
    return "compare" if workflow.remote_exec else "compare_" + epochs_group(wildcards)


# --- the selection experiment (selection.smk), when configured ---------------------------------------
if SEL:
    BUDGETS = [f"{b:g}" for b in SEL["budgets"]]
    SEL_K = num_batches(N_TRAIN, T["batch_size"])
    # every run's steps, lr drops and evaluation grid per budget: the page simulates its power on this layout
    SEL_LAYOUT = run_layout(
        EPOCHS,
        SEL_K,
        SEL["budgets"],
        T["lr_milestones"],
        SEL["chunk_epochs"],
        SEL["evaluations"],
    )
    SELR = f"{R}/selection/{{model}}/budget_{{budget}}/seed_{{seed}}/{{arm}}"


def selection_chunks(budget):
    return range(-(-total_steps(EPOCHS, SEL_K, float(budget)) // (SEL["chunk_epochs"] * SEL_K)))


def arm_path(wildcards, arm, tail):
    """A file of one arm's run of (model, budget, seed) from the wildcards: selection/.../<arm>/<tail>."""
    return f"{R}/selection/{wildcards.model}/budget_{wildcards.budget}/seed_{wildcards.seed}/{arm}/{tail}"


def arm_inputs(wildcards, arm):
    """What chunk wildcards.chunk of one arm reads: its ordering (None for shuffled), the checkpoint it starts
    from, and the Algorithm 1 matrices measured_best and greedy_set pick from (greedy_set reads their Gram
    matrices): those of the same model and metric from every other seed (cross-fitted: never the run that shares
    its init.pt; on the random ordering they pick at random)."""
    a = parse_arm(arm)
    order = None
    if a["kind"] != "shuffled":
        seeded = metric_registry.METRICS[a["metric"]].seeded
        order = f"{R}/orderings/{a['metric']}" + (f"_seed_{wildcards.seed}.h5" if seeded else ".h5")
    chunk = int(wildcards.chunk)
    if chunk == 0:
        start = f"{R}/{wildcards.model}/seed_{wildcards.seed}/checkpoints/init.pt"
    else:
        start = arm_path(wildcards, arm, f"checkpoints/chunk_{chunk - 1}.pt")
    profiles = []
    if a["policy"] in CROSS_FITTED and a["metric"] != "random":
        profiles = [
            f"{R}/{wildcards.model}/seed_{s}/{a['metric']}/distances.h5" for s in SEEDS if str(s) != wildcards.seed
        ]
    return order, start, profiles


@per_job
def arm_ordering(wildcards):
    return arm_inputs(wildcards, wildcards.arm)[0] or []


@per_job
def arm_start(wildcards):
    return arm_inputs(wildcards, wildcards.arm)[1]


@per_job
def arm_profiles(wildcards):
    return arm_inputs(wildcards, wildcards.arm)[2]


# execution.selection_jobs: seed -- one job reads what every arm of its (model, budget, seed) reads
@per_job
def seed_orderings(wildcards):
    return sorted({order for arm in ARMS if (order := arm_inputs(wildcards, arm)[0])})


@per_job
def seed_starts(wildcards):
    return sorted({arm_inputs(wildcards, arm)[1] for arm in ARMS})


@per_job
def seed_profiles(wildcards):
    return sorted({path for arm in ARMS for path in arm_inputs(wildcards, arm)[2]})


@per_job
def seed_arm_jobs(wildcards):
    """Each arm's chunk as the job trains it: its inputs and outputs (steps.selection.train_seed_chunk)."""
    jobs = []
    for arm in ARMS:
        order, start, profiles = arm_inputs(wildcards, arm)
        jobs.append(
            dict(
                arm=arm,
                order_path=order,
                start_checkpoint=start,
                out_checkpoint=arm_path(wildcards, arm, f"checkpoints/chunk_{wildcards.chunk}.pt"),
                out_curve=arm_path(wildcards, arm, f"chunks/chunk_{wildcards.chunk}.h5"),
                profile_paths=profiles,
            )
        )
    return jobs
