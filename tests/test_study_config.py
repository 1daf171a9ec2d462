"""A config given with --configfile is the whole study: keys it leaves out take the schema's defaults (the ones
config/README.md states), never the paper's values; without --configfile the paper's config runs, and --config
overrides either. results/<study>/config.yaml is the study as it runs."""

import re

import pytest
import yaml
from conftest import REPO, run_snakemake, write_config

from bestbatch.config import data_root, study_config

# The example: a study that leaves lr_milestones out, with more epochs than the paper's milestones.
MINIMAL = {
    "study": "mine",
    "data": {"source": "synthetic", "root": "results/mine/data", "synthetic": {"n_train": 64, "n_test": 20}},
    "models": ["tiny_mlp"],
    "seeds": [0],
    "training": {"epochs": 101, "batch_size": 32, "lr": 0.05},
    "metrics": ["intensity", "random"],
}


def effective(tmp_path, config, *extra):
    """results/<study>/config.yaml as the workflow writes it for `config` (and the snakemake run's output)."""
    path = write_config(tmp_path / "mine.yaml", config)
    target = f"results/{config['study']}/config.yaml"
    proc = run_snakemake(tmp_path, target, "--configfile", str(path), "--cores", "1", *extra)  # --config: last
    return yaml.safe_load((tmp_path / "results" / config["study"] / "config.yaml").read_text()), proc


def readme_defaults():
    """{dotted key: default} from config/README.md's tables (keys of list items, models[].x, left out)."""
    found = {}
    for line in (REPO / "config" / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if len(cells) < 4 or not re.fullmatch(r"\|? ?`[a-z_.]+`", cells[0]):
            continue
        key, default = cells[0].strip("|` "), cells[2]
        if default.startswith("`") and default.endswith("`"):
            found[key] = yaml.safe_load(default.strip("`"))
    return found


def at(config, dotted):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return KeyError
        node = node[part]
    return node


def test_a_minimal_study_gets_the_schemas_defaults_not_the_papers(tmp_path):
    got, proc = effective(tmp_path, MINIMAL)
    # no milestone the user never wrote: neither refused (101 epochs holds the paper's 50 and 100) nor inherited
    assert got["training"]["lr_milestones"] == []
    assert got["training"]["epochs"] == 101 and got["models"] == ["tiny_mlp"]
    # the dry run's one line naming the config files read
    assert "bestbatch: the study is " in proc.stderr + proc.stdout
    assert "mine.yaml" in (proc.stderr + proc.stdout).split("bestbatch: the study is ")[1].splitlines()[0]
    # two epochs: the paper's milestone 50 would have been refused as outside the run
    short = dict(MINIMAL, study="short", training={"epochs": 2, "batch_size": 32, "lr": 0.05})
    assert effective(tmp_path, short)[0]["training"]["lr_milestones"] == []


def test_every_default_in_config_readme_is_what_a_minimal_config_gets(tmp_path):
    defaults = readme_defaults()
    assert len(defaults) > 30 and defaults["training.lr_milestones"] == []  # the parser reads the tables
    with_selection = dict(MINIMAL, selection={"metrics": ["intensity"], "policies": ["all"]}, seeds=[0, 1])
    got, _ = effective(tmp_path, with_selection)
    missing = {key: value for key, value in defaults.items() if at(got, key) is KeyError}
    # keys in a section the minimal config leaves out and the schema gives no default: data.synthetic is given
    assert not missing, f"defaults the minimal config does not get: {missing}"
    # a section's default {} is filled in turn with its keys' defaults (checked one by one)
    wrong = {
        key: (value, at(got, key))
        for key, value in defaults.items()
        if (not isinstance(at(got, key), dict) if value == {} else at(got, key) != value)
    }
    assert not wrong, f"README default != effective value: {wrong}"


def test_no_configfile_runs_the_paper_and_config_overrides_it(tmp_path):
    run_snakemake(tmp_path, "results/paper_here/config.yaml", "--cores", "1", "--config", "study=paper_here")
    text = (tmp_path / "results" / "paper_here" / "config.yaml").read_text()
    got = yaml.safe_load(text)
    paper = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert got["study"] == "paper_here" and got["models"] == paper["models"]
    assert got["training"]["lr_milestones"] == paper["training"]["lr_milestones"] == [50, 100]
    assert "config/config.yaml" in text.splitlines()[1] and "--config overrides: study=" in text
    # --config over a --configfile: the file is the study, the override wins
    run_snakemake(
        tmp_path,
        "results/other/config.yaml",
        "--configfile",
        str(write_config(tmp_path / "m.yaml", MINIMAL)),
        "--cores",
        "1",
        "--config",
        "study=other",
    )
    got = yaml.safe_load((tmp_path / "results" / "other" / "config.yaml").read_text())
    assert got["study"] == "other" and got["training"]["epochs"] == 101 and got["training"]["lr_milestones"] == []


def test_study_config_merges_only_without_a_config_file(tmp_path):
    paper = tmp_path / "paper.yaml"
    write_config(paper, {"study": "p", "training": {"epochs": 150, "lr_milestones": [50, 100]}})
    overrides = {"training": {"epochs": 9}}
    config, files = study_config(dict(overrides), [], paper)
    assert config == {"study": "p", "training": {"epochs": 9, "lr_milestones": [50, 100]}} and files == [str(paper)]
    mine = {"study": "m", "training": {"epochs": 9}}
    config, files = study_config(dict(mine), [tmp_path / "m.yaml"], paper)
    assert config == mine and files == [str(tmp_path / "m.yaml")]
    assert study_config(dict(mine), [], paper, given=True) == (mine, [])


@pytest.mark.parametrize("source", ["imagefolder", "cifar10", "synthetic"])
def test_data_root_is_found_beside_the_config_that_names_it(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    config = {"data": {"source": source, "root": "../images"}}
    f = write_config(tmp_path / "studies" / "own.yaml", config)
    root, how = data_root(config, [f])
    if source == "synthetic":  # written by the workflow: relative to the working directory, like results/
        assert str(root) == "../images" and "working directory" in how
    else:
        assert root.absolute() == (tmp_path / "images") and str(f) in how
    assert data_root(config, [f], {"data": {"root": "x"}})[1].startswith("given with --config")
    absolute = {"data": {"source": source, "root": str(tmp_path / "abs")}}
    assert data_root(absolute, [f])[0] == tmp_path / "abs"


def test_a_missing_image_folder_names_the_place_looked_in(tmp_path):
    config = dict(MINIMAL, study="own", data={"source": "imagefolder", "root": "../nowhere"})
    (tmp_path / "cfg").mkdir()
    path = write_config(tmp_path / "cfg" / "own.yaml", config)
    proc = run_snakemake(tmp_path, "--configfile", str(path), "-n", check=False)
    out = proc.stderr + proc.stdout
    assert proc.returncode != 0
    assert (
        "nowhere/train: no such folder" in out
        and "relative to cfg/own.yaml" in out
        and str(tmp_path / "nowhere") in out
    )
