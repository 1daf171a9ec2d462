"""The study's configuration: checks that name the offending key, and what follows from the values
(K, the learning-rate schedule, the phases, the hash of the keys that can change a result).

The schema lives with the workflow (`workflow/schemas/config.schema.yaml`); the workflow finds it and
passes it in, so this package never looks for files of its own and also works installed as a wheel.
"""

import copy
import hashlib
import json
import math
import os
import re
from pathlib import Path

import jsonschema
import yaml

from .data import planned_sizes


class ConfigError(ValueError):
    """A bad config value; the message starts with the dotted key."""


def load_schema(path):
    # libyaml's parser where PyYAML has it: the same data, 15x faster (read whenever Snakemake starts)
    return yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _dotted(path):
    return ".".join(str(p) for p in path) or "<config>"


def _allowed(schema):
    """The subschema's constraints in a phrase, e.g. 'integer >= 1' or 'list of intensity, color'."""
    if "enum" in schema:
        return ", ".join(map(str, schema["enum"]))
    words = [schema.get("type", "value")]
    for key, sym in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in schema:
            words.append(f"{sym} {schema[key]}")
    if "pattern" in schema:
        words.append(f"matching {schema['pattern']}")
    if schema.get("type") == "array":
        words = (
            ["list"]
            + (["non-empty"] if schema.get("minItems") else [])
            + (["unique"] if schema.get("uniqueItems") else [])
        )
        if "items" in schema:
            words.append(f"of {_allowed(schema['items'])}")
    if schema.get("type") == "object":
        words.append(f"with keys {', '.join(schema.get('properties', {}))}")
    return " ".join(map(str, words))


# An integer is meant where the schema says integer: 4.0 is refused, not silently taken as 4 (JSON
# Schema itself counts integral floats as integers).
_STRICT = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda checker, x: isinstance(x, int) and not isinstance(x, bool)
    ),
)


def _non_finite(node, path=()):
    """The path and value of the first NaN or infinity in a config, or None."""
    if isinstance(node, float) and not math.isfinite(node):
        return path, node
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found = _non_finite(value, path + (key,))
        if found:
            return found
    return None


def explain_invalid(config, schema):
    """Raise ConfigError naming the dotted key and the allowed values if `config` breaks `schema`
    (NaN and infinities are refused everywhere, and integral floats where an integer is meant)."""
    found = _non_finite(config)
    if found:
        raise ConfigError(f"{_dotted(found[0])}: {found[1]} is not a finite number; allowed: finite numbers only")
    validator = _STRICT(schema)
    errors = sorted(
        validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    )
    if not errors:
        return
    e = errors[0]
    path = list(e.absolute_path)
    if e.validator == "additionalProperties":
        extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
        allowed = ", ".join(sorted(e.schema.get("properties", {})))
        raise ConfigError(f"{_dotted(path + extra[:1])}: unknown key; allowed keys here: {allowed}")
    if e.validator == "required":
        missing = e.message.split("'")[1]
        raise ConfigError(f"{_dotted(path + [missing])}: required key is missing")
    if e.validator == "enum":
        allowed = ", ".join(map(str, e.validator_value))
        raise ConfigError(f"{_dotted(path)}: {e.instance!r} is not allowed; allowed values: {allowed}")
    if e.validator == "anyOf":  # e.g. a model: a built-in name, an import path or a mapping
        ways = "; or ".join(
            "values: " + ", ".join(map(str, sub["enum"])) if "enum" in sub else _allowed(sub)
            for sub in e.validator_value
        )
        raise ConfigError(f"{_dotted(path)}: {e.instance!r} is not allowed; allowed {ways}")
    raise ConfigError(f"{_dotted(path)}: {e.message}; allowed: {_allowed(e.schema)}")


def fill_defaults(node, schema):
    """The schema's defaults, filled in place the way snakemake.utils.validate fills them: a missing
    property with a default gets it, and every object property is descended into (tests check the
    two agree)."""
    for key, sub in schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict):
            fill_defaults(node[key], sub)
    return node


# What a study is made of: the config files Snakemake was given (--configfile, or a module's `config:`), each the
# whole study, keys left out taking the schema's defaults; with none, the paper's config/config.yaml. --config
# values override either, key by key.
def study_config(config, config_files, paper_config, given=False):
    """(config, files read): `config` (Snakemake's: the --configfile files merged, then --config) as the study,
    unless no config file was given (`config_files` empty and not `given` by a module): then the paper's
    `paper_config` file with `config` (the --config values) merged over it. `config` is changed in place."""
    from snakemake.utils import update_config  # how Snakemake itself merges --config into a config

    if config_files or given:
        return config, [str(f) for f in config_files]
    study = yaml.safe_load(Path(paper_config).read_text())
    update_config(study, config)
    config.clear()
    config.update(study)
    return config, [str(paper_config)]


# Where data.root points: a data set the researcher brings (cifar10, cifar100, an image folder) is found relative
# to the config file that names it, as a model module beside the config is; a synthetic set is written by the
# workflow, and like results/ its root is relative to the working directory. A root given with --config is
# relative to the working directory too. An absolute root is taken as it is.
BROUGHT_SOURCES = ("cifar10", "cifar100", "imagefolder")


def data_root(config, config_files, overrides=None):
    """(root, how) for the study's data.root: the folder as a Path (relative to the working directory where it lies
    inside it, as jobs' params should not change with the checkout's place; else absolute), and a phrase saying how
    it was resolved, for messages."""
    root = Path(config["data"]["root"]).expanduser()
    if root.is_absolute():
        return root, "an absolute path"
    if (overrides or {}).get("data", {}).get("root") is not None:
        return root, "given with --config: relative to the working directory"
    if config["data"]["source"] not in BROUGHT_SOURCES:
        return root, "relative to the working directory (a synthetic set is written by the workflow)"
    setter = None
    for f in config_files:
        loaded = yaml.safe_load(Path(f).read_text()) or {}
        if isinstance(loaded.get("data"), dict) and "root" in loaded["data"]:
            setter = Path(f)
    if setter is None:
        return root, "relative to the working directory"
    found = Path(os.path.normpath(setter.absolute().parent / root))
    inside = os.path.relpath(found)
    if not inside.startswith(".."):
        found = Path(inside)
    return found, f"relative to {setter}, the config file that sets it: {found.absolute()}"


def check_semantics(config, n_train=None, config_file=None):
    """What a schema cannot say: a study name that is a plain folder name, milestones inside the run and
    increasing, at least two batches per epoch (n_train: the training images the workflow plans for;
    None: as bestbatch.data.planned_sizes finds them)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", config["study"]):
        raise ConfigError(f"study: {config['study']!r} must be a folder name: letters, digits, '_', '.', '-'")
    t = config["training"]
    for m in t["lr_milestones"]:
        if not 1 <= m < t["epochs"]:
            raise ConfigError(
                f"training.lr_milestones: milestone {m} is outside the run; allowed: 1 .. {t['epochs'] - 1} "
                f"(training.epochs is {t['epochs']})"
            )
    if sorted(set(t["lr_milestones"])) != list(t["lr_milestones"]):
        raise ConfigError(f"training.lr_milestones: {t['lr_milestones']} must be strictly increasing")
    data = config["data"]
    if data.get("image_size", 32) != 32 and data["source"] != "imagefolder":
        raise ConfigError(
            f"data.image_size: {data['image_size']!r} is for an image folder (data.source: imagefolder); "
            f"{data['source']} images are 32 x 32: leave data.image_size out or set it to 32"
        )
    if data.get("placement") == "mapped" and data["source"] != "imagefolder":
        raise ConfigError(
            f"data.placement: mapped maps an image folder's decoded image set from disk; {data['source']} is read "
            "into memory (its 32 x 32 images are small): use auto, device or host"
        )
    outputs = config.get("outputs", {})
    if outputs.get("gradients", "shard") != "shard" and outputs.get("keep_shards"):
        raise ConfigError(
            f"outputs.keep_shards: true keeps gradient shards, and outputs.gradients: {outputs['gradients']} writes "
            "none (set keep_shards: false, or gradients: shard)"
        )
    if 0 < outputs.get("sketch_dim", 0) < 16:
        raise ConfigError(
            f"outputs.sketch_dim: {outputs['sketch_dim']} is too short a sketch; 0 (from sketch_eps) or 16 up"
        )
    sel = config.get("selection")
    if sel:
        controls = sel.get("controls", ["random_ordering"])
        needed = set(sel["metrics"]) | ({"random"} if "random_ordering" in controls else set())
        missing = sorted(needed - set(config["metrics"]))
        if missing:
            raise ConfigError(
                f"selection.metrics: {', '.join(missing)} must be in metrics (their orderings"
                f"{' and the random control' if 'random' in missing else ''} come from there); "
                f"allowed: {', '.join(config['metrics'])}"
            )
        if "shuffled" not in sel.get("controls", ["shuffled"]):
            raise ConfigError(
                "selection.controls: must include shuffled: each seed's target accuracy is selection.target_fraction "
                "of its shuffled (standard SGD) run's final accuracy"
            )
        for name in ("measured_best", "greedy_set"):  # selection.CROSS_FITTED
            if name in sel["policies"] and len(config["seeds"]) < 2:
                raise ConfigError(
                    f"selection.policies: {name} needs at least two seeds (seeds is {config['seeds']}): it is "
                    "cross-fitted, each seed's batches picked from the other seeds' Algorithm 1 runs, never from the "
                    f"run that shares its init.pt; add seeds or drop {name}"
                )
        if "greedy_set" in sel["policies"] and not config.get("outputs", {}).get("gram", True):
            raise ConfigError(
                "selection.policies: greedy_set needs outputs.gram: true (it is false): it picks its set from the "
                "Gram matrices of the other seeds' Algorithm 1 runs, which distances.h5 keeps only then; set "
                "outputs.gram: true or drop greedy_set"
            )
    if n_train is None:
        root, _ = data_root(config, [config_file] if config_file else [])
        n_train, *_ = planned_sizes(config["data"]["source"], root, config["data"].get("synthetic"))
    check_batch_size(t["batch_size"], n_train)


def check_batch_size(batch_size, n_train, where=""):
    """At least two fixed batches: with one, its gradient is the full gradient and every distance is 0."""
    if batch_size > n_train // 2:
        what = (
            f"is larger than the training set ({n_train} training images{where})"
            if batch_size > n_train
            else f"leaves one batch per epoch ({n_train} training images{where}), and one batch's gradient is the "
            f"full gradient: every distance would be 0"
        )
        raise ConfigError(
            f"training.batch_size: {batch_size} {what}; allowed: 1 .. {n_train // 2}, so that an "
            f"epoch has at least two batches"
        )


def validate_config(config, schema, config_file=None):
    """Check `config` against `schema` and the semantic rules; return a copy with the defaults filled.

    The workflow does the same in `workflow/rules/common.smk`, with Snakemake's own validator filling
    the defaults; this function is for using the package without Snakemake (tests, benchmarks). config_file:
    the file `config` was read from, where a relative data.root is found (data_root).
    """
    explain_invalid(config, schema)
    config = fill_defaults(copy.deepcopy(config), schema)
    check_semantics(config, config_file=config_file)
    return config


# --- what follows from the values --------------------------------------------------------------------


def num_batches(n_images, batch_size):
    """K: the fixed batches of an epoch (the last partial batch is dropped, as in the paper)."""
    return n_images // batch_size


def lr_of_epoch(epoch, lr, milestones, gamma):
    """Learning rate of 1-based `epoch`: multiplied by gamma after each milestone epoch."""
    return lr * gamma ** sum(epoch > m for m in milestones)


def phase_of_epoch(epoch, milestones):
    """1-based training phase: epochs that share a learning rate."""
    return 1 + sum(epoch > m for m in milestones)


def phases(epochs, lr, milestones, gamma):
    """[(phase, first_epoch, last_epoch, lr), ...] derived from the schedule, never hard-coded."""
    bounds = [0] + list(milestones) + [epochs]
    return [
        (i + 1, bounds[i] + 1, bounds[i + 1], lr_of_epoch(bounds[i] + 1, lr, milestones, gamma))
        for i in range(len(bounds) - 1)
    ]


# --- which keys can change a result ------------------------------------------------------------------
# config_hash is recorded in every output's provenance and handed to the jobs as a parameter, so a
# change of one of these keys reruns the jobs it affects, and a change of any other key reruns none.
RESULT_KEYS = {
    "data": "the images: where they are read (a different folder may hold different data), how the "
    "synthetic set is generated (data.download and data.verify only decide how files are fetched and checked)",
    "training": "every value of the optimisation; training.threads too, since CPU kernels sum in a "
    "thread-dependent order, and training.device and the cuda_* numerics likewise",
    "<model>, <seed>": "the run's own network and seed (one entry of models and of seeds)",
    "orderings.<metric>": "the parameters of that metric's ordering (only for that metric's outputs)",
    "outputs.gradients: sketch": "with sketch_eps, sketch_dim and sketch_seed, where gradients are sketched: the "
    "distances are then estimates (shard and memory leave the hash as it was)",
}
# An ordering depends on less: the data, its metric's parameters, the threads and device that compute it
# (CPU sums depend on the thread count; LPIPS runs on the GPU when training does), and for a seeded
# metric (the random control) the run's seed.
ORDERING_TRAINING_KEYS = ("threads", "device")
NOT_RESULT_KEYS = {
    "study": "where outputs go, not what they hold",
    "models, seeds, metrics": "which runs exist; each run's results depend on its own model, seed and metric only",
    "outputs": "what is kept on disk and how shards are written (keep_shards, keep_checkpoints, shard_io, gram), and "
    "where the gradients are held (gradients: shard or memory, the same values bitwise; sketch is a result key)",
    "execution": "how the work is laid out as jobs (Algorithm 1 inline or parallel, the selection runs per arm or "
    "per seed): the same results bitwise",
    "selection": "the selection experiment's own runs; their jobs get every value they use as a param",
    "analysis": "the statistics of the claims page, computed from the results, not part of them",
}
IGNORED_DATA_KEYS = ("download", "verify", "placement")  # placement: where the images live, the same results bitwise


def check_models_at_size(model_specs, image_shape, declared):
    """Refuse a built-in network (kuangliu/pytorch-cifar's forms and the small demo networks, all made for 32 x 32
    inputs) where the images are another size (image_shape: (H, W) the workflow plans for; declared: data.image_size),
    naming the entry and an import-path network that takes any size."""
    if tuple(image_shape) == (32, 32):
        return
    for i, spec in enumerate(model_specs):
        if spec.builtin:
            raise ConfigError(
                f"models[{i}]: the built-in {spec.name} is made for 32 x 32 images (its pooling and classifier "
                f"assume them), and this study's are {image_shape[1]} x {image_shape[0]} (data.image_size: "
                f"{declared}): name a network that takes any size by its import path, e.g. "
                f"torchvision.models:resnet18 (or your own package.module:callable), or set data.image_size: 32"
            )


def result_config(config, metric=None, model=None, seed=None):
    """The part of `config` that can change the results of run (model, seed) with `metric`'s ordering
    (None: the part that does not depend on it)."""
    d = {key: copy.deepcopy(config[key]) for key in ("data", "training")}
    for key in IGNORED_DATA_KEYS:
        d["data"].pop(key, None)
    d["run"] = {"model": model, "seed": seed}
    outputs = config.get("outputs", {})
    if outputs.get("gradients") == "sketch":
        d["sketch"] = {key: outputs.get(f"sketch_{key}") for key in ("eps", "dim", "seed")}
    if metric is not None:
        d["ordering"] = {"metric": metric, "params": copy.deepcopy(config.get("orderings", {}).get(metric, {}))}
    return d


def ordering_hash(config, metric, seed=None):
    """Short stable hash of the keys that can change `metric`'s ordering (for a seeded metric, of `seed`)."""
    d = result_config(config, metric, None, seed)
    d["training"] = {key: d["training"][key] for key in ORDERING_TRAINING_KEYS if key in d["training"]}
    d.pop("sketch", None)  # how the gradients are held changes no ordering
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def config_hash(config, metric=None, model=None, seed=None):
    """Short stable hash of the keys that can change the results of (model, seed, metric) (see RESULT_KEYS)."""
    return hashlib.sha256(json.dumps(result_config(config, metric, model, seed), sort_keys=True).encode()).hexdigest()[
        :16
    ]
