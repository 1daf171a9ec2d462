"""The schema and the semantic checks reject bad configs by naming the key; the paper's config is the paper."""

import copy

import pytest
import yaml
from conftest import REPO, SCHEMA, TINY_CONFIG, tiny_config_with
from conftest import validated as validate_config

from bestbatch.config import ConfigError, config_hash, fill_defaults, lr_of_epoch, num_batches, phase_of_epoch, phases


def paper():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_paper_config_is_the_paper():
    c = validate_config(paper())
    t = c["training"]
    assert c["models"] == ["dpn92"] and c["seeds"] == [0] and c["data"]["source"] == "cifar10"
    assert (t["epochs"], t["batch_size"], t["lr"], t["momentum"], t["weight_decay"]) == (150, 256, 0.1, 0.9, 5e-4)
    assert num_batches(50_000, t["batch_size"]) == 195
    assert phases(t["epochs"], t["lr"], t["lr_milestones"], t["lr_gamma"]) == [
        (1, 1, 50, 0.1),
        (2, 51, 100, pytest.approx(0.01)),
        (3, 101, 150, pytest.approx(0.001)),
    ]
    assert c["metrics"] == ["intensity", "color", "edges", "lpips", "random"]


SHIPPED = sorted((REPO / "config").glob("*.yaml")) + sorted((REPO / ".test" / "config").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_configs_validate(path):
    validate_config(yaml.safe_load(path.read_text()), path)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_defaults_are_the_ones_snakemake_fills(path, tmp_path):
    """The workflow lets snakemake.utils.validate fill the defaults; bestbatch.config fills the same."""
    from snakemake.utils import validate

    raw = yaml.safe_load(path.read_text())
    raw.pop("outputs", None), raw.pop("orderings", None), raw["training"].pop("momentum", None)
    by_snakemake = copy.deepcopy(raw)
    schema_file = tmp_path / "schema.yaml"
    schema_file.write_text(yaml.safe_dump(SCHEMA))
    validate(by_snakemake, str(schema_file))
    assert by_snakemake == fill_defaults(copy.deepcopy(raw), SCHEMA)
    assert by_snakemake["outputs"]["shard_io"] == "direct" and by_snakemake["orderings"]["lpips"]["seed"] == 0


def test_schedule_and_phases_follow_the_milestones():
    assert [lr_of_epoch(e, 0.1, [50, 100], 0.1) for e in (1, 50, 51, 100, 101, 150)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )
    assert [phase_of_epoch(e, [3, 6]) for e in range(1, 10)] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    c = copy.deepcopy(TINY_CONFIG)
    c["training"].update(epochs=10, lr_milestones=[])
    t = validate_config(c)["training"]
    assert phases(t["epochs"], t["lr"], t["lr_milestones"], t["lr_gamma"]) == [(1, 1, 10, 0.05)]


def test_defaults_are_filled():
    c = copy.deepcopy(TINY_CONFIG)
    del c["training"]["momentum"], c["outputs"], c["orderings"]
    v = validate_config(c)
    assert v["training"]["momentum"] == 0.9
    assert v["outputs"] == {
        "gradients": "shard",
        "sketch_eps": 0.05,
        "sketch_dim": 0,
        "sketch_seed": 0,
        "gram": True,
        "keep_shards": False,
        "keep_checkpoints": False,
        "shard_io": "direct",
    }
    assert v["orderings"]["edges"]["sigma"] == 1.0 and v["orderings"]["lpips"]["pretrained_backbone"] is True


BAD = [
    (("models",), ["vgg"], "models.0", "dpn92"),
    (("seeds",), [0, 0], "seeds", "non-unique"),
    (("seeds",), [], "seeds", "non-empty"),
    (("metrics",), ["intensity", "sharpness"], "metrics.1", "intensity"),
    (("training", "epochs"), 0, "training.epochs", "minimum"),
    (("training", "batch_size"), 100_000, "training.batch_size", "larger than the training set"),
    (("training", "lr_milestones"), [1, 7], "training.lr_milestones", "outside the run"),
    (("training", "weight_decay"), -1e-4, "training.weight_decay", "minimum"),
    (("training", "dtype"), "float16", "training.dtype", "float64"),
    (("training", "lr"), "0.1", "training.lr", "number"),
    (("training", "momentum"), 1.5, "training.momentum", "maximum"),
    (("data", "source"), "imagenet", "data.source", "synthetic"),
    (("orderings", "edges", "sigma"), 0, "orderings.edges.sigma", ""),
    (("study",), "a b", "study", "does not match"),
    (("training", "lr_milestones"), [2, 1], "training.lr_milestones", "increasing"),
]


@pytest.mark.parametrize("path,value,key,hint", BAD, ids=[b[2] + "=" + str(b[1]) for b in BAD])
def test_bad_values_are_rejected_with_their_key(path, value, key, hint):
    with pytest.raises(ConfigError) as err:
        validate_config(tiny_config_with(path, value))
    assert str(err.value).startswith(key + ":"), str(err.value)
    assert hint in str(err.value)


@pytest.mark.parametrize("where", [(), ("training",), ("orderings", "lpips")])
def test_unknown_keys_are_rejected(where):
    c = copy.deepcopy(TINY_CONFIG)
    node = c
    for p in where:
        node = node[p]
    node["colour_space"] = "hsv"
    with pytest.raises(ConfigError, match=r"^" + ".".join((*where, "colour_space")) + ": unknown key"):
        validate_config(c)


def test_missing_required_key_is_named():
    c = copy.deepcopy(TINY_CONFIG)
    del c["training"]["batch_size"]
    with pytest.raises(ConfigError, match=r"^training.batch_size: required"):
        validate_config(c)
    c = copy.deepcopy(TINY_CONFIG)
    del c["data"]["synthetic"]
    with pytest.raises(ConfigError, match=r"^data.synthetic: required"):
        validate_config(c)


def test_config_hash_tracks_content():
    a, b = copy.deepcopy(TINY_CONFIG), copy.deepcopy(TINY_CONFIG)
    assert config_hash(a) == config_hash(b)
    b["training"]["lr"] = 0.2
    assert config_hash(a) != config_hash(b)
    assert config_hash(a, "edges", "tiny_mlp_bn", 0) != config_hash(a, "edges", "tiny_mlp_bn", 1)
    assert config_hash(a, "edges", "tiny_mlp_bn", 0) != config_hash(a, "edges", "small_cnn", 0)


@pytest.mark.parametrize(
    "path,value",
    [
        (("training", "threads"), 2),
        (("training", "device"), "cuda"),
        (("training", "lr"), 0.1),
        (("training", "augment"), False),
        (("data", "root"), "elsewhere"),
        (("data", "synthetic", "seed"), 4),
    ],
)
def test_config_hash_changes_with_every_key_that_can_change_a_result(path, value):
    for metric in (None, "edges"):
        assert config_hash(tiny_config_with(path, value), metric) != config_hash(TINY_CONFIG, metric), path


@pytest.mark.parametrize(
    "path,value",
    [
        (("outputs", "shard_io"), "buffered"),
        (("outputs", "keep_shards"), True),
        (("outputs", "keep_checkpoints"), True),
        (("metrics",), ["edges"]),
        (("study",), "another"),
        (("data", "download"), True),
        (("data", "verify"), "strict"),
        (("models",), ["tiny_mlp_bn", "dpn92"]),
        (("seeds",), [0, 1, 2]),
        (("analysis", "alpha"), 0.01),
    ],
)
def test_config_hash_ignores_keys_that_change_no_result(path, value):
    """Turning an I/O knob (or adding a metric) never makes finished epochs look stale."""
    for metric in (None, "edges", "random"):
        assert config_hash(tiny_config_with(path, value), metric) == config_hash(TINY_CONFIG, metric), path


def test_config_hash_of_a_metric_covers_its_own_ordering_only():
    changed = tiny_config_with(("orderings", "edges", "sigma"), 2.0)
    assert config_hash(changed, "edges") != config_hash(TINY_CONFIG, "edges")
    assert config_hash(changed, "random") == config_hash(TINY_CONFIG, "random")
    assert config_hash(changed) == config_hash(TINY_CONFIG)


def test_metric_and_model_names_agree_between_registry_and_schema():
    from bestbatch.metrics import METRICS
    from bestbatch.models import MODELS

    props = SCHEMA["properties"]
    assert props["metrics"]["items"]["enum"] == list(METRICS)
    assert set(props["orderings"]["properties"]) <= set(METRICS)
    assert props["models"]["items"]["anyOf"][0]["enum"] == list(MODELS)  # the built-in ones; or an import path


def test_shard_io_is_named_when_wrong():
    c = copy.deepcopy(TINY_CONFIG)
    c["outputs"]["shard_io"] = "mmap"
    with pytest.raises(ConfigError, match=r"outputs.shard_io: 'mmap' is not allowed; allowed values: direct, buffered"):
        validate_config(c)


def test_schema_has_no_stray_keys():
    """A comma in an unquoted flow-style description would cut it short and leave a key with no value."""

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                assert value is not None, f"{'.'.join(path + [str(key)])}: no value (unquoted comma?)"
                if key == "description":
                    assert isinstance(value, str) and value.rstrip().endswith((".", ")")), path
                walk(value, path + [str(key)])
        elif isinstance(node, list):
            for item in node:
                walk(item, path)

    walk(SCHEMA, [])


def test_an_ordering_is_rerun_only_for_what_changes_it():
    from bestbatch.config import ordering_hash

    base = ordering_hash(TINY_CONFIG, "edges")
    assert ordering_hash(tiny_config_with(("training", "lr"), 0.2), "edges") == base  # training the net: no
    assert ordering_hash(tiny_config_with(("training", "threads"), 2), "edges") != base  # CPU sums: yes
    assert ordering_hash(tiny_config_with(("orderings", "edges", "sigma"), 2.0), "edges") != base
    assert ordering_hash(TINY_CONFIG, "random", 0) != ordering_hash(TINY_CONFIG, "random", 1)  # one null per seed


def test_selection_policies_agree_with_the_registry_and_need_their_orderings():
    from bestbatch.selection import CONTROLS, POLICIES

    sel = SCHEMA["properties"]["selection"]["properties"]
    assert sel["policies"]["items"]["enum"] == list(POLICIES)
    assert sel["controls"]["items"]["enum"] == list(CONTROLS)
    good = yaml.safe_load((REPO / ".test" / "config" / "selection.yaml").read_text())
    validate_config(good)
    bad = copy.deepcopy(good)
    bad["selection"]["metrics"] = ["edges"]
    with pytest.raises(ConfigError, match=r"^selection.metrics: edges must be in metrics"):
        validate_config(bad)
    bad = copy.deepcopy(good)
    bad["metrics"] = ["intensity"]  # the random_ordering control needs the random ordering
    with pytest.raises(ConfigError, match=r"^selection.metrics: random must be in metrics"):
        validate_config(bad)
    # the targets are relative to standard SGD: shuffled must be there
    bad = copy.deepcopy(good)
    bad["selection"]["controls"] = ["random_subset", "random_ordering"]
    with pytest.raises(ConfigError, match=r"^selection.controls: must include shuffled"):
        validate_config(bad)
    # measured_best is cross-fitted: one seed has no other seed to pick from
    bad = copy.deepcopy(good)
    bad["seeds"] = [0]
    with pytest.raises(ConfigError, match=r"^selection.policies: measured_best needs at least two seeds"):
        validate_config(bad)
    bad["selection"]["policies"] = ["all", "drop_extremes"]
    validate_config(bad)  # without measured_best one seed is fine
    bad = copy.deepcopy(good)
    bad["selection"]["target_accuracy"] = 0.5  # the old key: refused by name
    with pytest.raises(ConfigError, match=r"^selection.target_accuracy: unknown key"):
        validate_config(bad)
