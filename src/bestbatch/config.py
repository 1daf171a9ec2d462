"""The study's configuration: schema validation, defaults, and what follows from it (schedule, phases)."""
import copy
import hashlib
import json
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
CIFAR10_TRAIN_SIZE = 50_000


class ConfigError(ValueError):
    """A bad config value; the message starts with the dotted key."""


def load_schema():
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _dotted(path):
    return ".".join(str(p) for p in path) or "<config>"


def _fill_defaults(node, schema):
    # jsonschema validates but never fills defaults; do it for the object properties we own
    for key, sub in schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict):
            _fill_defaults(node[key], sub)


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
        words = ["list"] + (["non-empty"] if schema.get("minItems") else []) + (["unique"] if schema.get("uniqueItems") else [])
        if "items" in schema:
            words.append(f"of {_allowed(schema['items'])}")
    if schema.get("type") == "object":
        words.append(f"with keys {', '.join(schema.get('properties', {}))}")
    return " ".join(map(str, words))


def validate_config(config):
    """Return the config with defaults filled in, or raise ConfigError naming the offending key."""
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        e = errors[0]
        path = list(e.absolute_path)
        if e.validator == "additionalProperties":
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            allowed = ", ".join(sorted(e.schema.get("properties", {})))
            key = _dotted(path + extra[:1])
            raise ConfigError(f"{key}: unknown key; allowed keys here: {allowed}")
        if e.validator == "required":
            missing = e.message.split("'")[1]
            raise ConfigError(f"{_dotted(path + [missing])}: required key is missing")
        if e.validator == "enum":
            allowed = ", ".join(map(str, e.validator_value))
            raise ConfigError(f"{_dotted(path)}: {e.instance!r} is not allowed; allowed values: {allowed}")
        raise ConfigError(f"{_dotted(path)}: {e.message}; allowed: {_allowed(e.schema)}")
    config = copy.deepcopy(config)
    _fill_defaults(config, schema)
    config.setdefault("orderings", {})
    for metric in ("edges", "lpips", "random"):
        config["orderings"].setdefault(metric, {})
        _fill_defaults(config["orderings"][metric], schema["properties"]["orderings"]["properties"][metric])
    config.setdefault("outputs", {})
    _fill_defaults(config["outputs"], schema["properties"]["outputs"])
    _check_semantics(config)
    return config


def _check_semantics(config):
    t = config["training"]
    for m in t["lr_milestones"]:
        if not 1 <= m < t["epochs"]:
            raise ConfigError(
                f"training.lr_milestones: milestone {m} is outside the run; allowed: 1 .. {t['epochs'] - 1} "
                f"(training.epochs is {t['epochs']})")
    if sorted(set(t["lr_milestones"])) != list(t["lr_milestones"]):
        raise ConfigError(f"training.lr_milestones: {t['lr_milestones']} must be strictly increasing")
    d = config["data"]
    if d["source"] == "synthetic":
        if "synthetic" not in d:
            raise ConfigError("data.synthetic: required when data.source is synthetic (n_train, n_test, seed)")
        d["synthetic"].setdefault("seed", 0)
        for key in ("n_train", "n_test"):
            if key not in d["synthetic"]:
                raise ConfigError(f"data.synthetic.{key}: required key is missing")
    n_train = train_size(config)
    if t["batch_size"] > n_train:
        raise ConfigError(
            f"training.batch_size: {t['batch_size']} is larger than the training set ({n_train} images); "
            f"allowed: 1 .. {n_train}")


def train_size(config):
    d = config["data"]
    return d["synthetic"]["n_train"] if d["source"] == "synthetic" else CIFAR10_TRAIN_SIZE


def num_batches(config):
    """K: the fixed batches of an epoch (the last partial batch is dropped, as in the paper)."""
    return train_size(config) // config["training"]["batch_size"]


def lr_of_epoch(epoch, lr, milestones, gamma):
    """Learning rate of 1-based `epoch`: multiplied by gamma after each milestone epoch."""
    return lr * gamma ** sum(epoch > m for m in milestones)


def phase_of_epoch(epoch, milestones):
    """1-based training phase: epochs that share a learning rate."""
    return 1 + sum(epoch > m for m in milestones)


def phases(config):
    """[(phase, first_epoch, last_epoch, lr), ...] derived from the schedule, never hard-coded."""
    t = config["training"]
    bounds = [0] + list(t["lr_milestones"]) + [t["epochs"]]
    return [(i + 1, bounds[i] + 1, bounds[i + 1], lr_of_epoch(bounds[i] + 1, t["lr"], t["lr_milestones"], t["lr_gamma"]))
            for i in range(len(bounds) - 1)]


def config_hash(config):
    """Short stable hash of the config that produced an output."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
