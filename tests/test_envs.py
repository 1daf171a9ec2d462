"""envs/*.yaml (for --sdm conda): requirements.txt's pins, the package itself, and every module a rule's script
imports."""

import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml
from conftest import REPO
from envcheck import PACKAGE_LINE, import_time_modules, missing, pip_lines, script_rules

import bestbatch
from bestbatch.workflow_support import PACKAGE_VARIABLE, package_requirement

ENVS = sorted((REPO / "envs").glob("*.yaml"))


def pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line and line != PACKAGE_LINE:
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line).groups()
            out[name.lower()] = version
    return out


def test_every_env_pin_matches_requirements():
    required = pins((REPO / "requirements.txt").read_text().splitlines())
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for path in envs:
        deps = yaml.safe_load(path.read_text())["dependencies"]
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        assert "python=3.11" in deps, path.name
        for name, version in pins(pip).items():
            assert required.get(name) == version, (
                f"{path.name}: {name}=={version}, requirements.txt has {required.get(name)}"
            )


def test_every_rule_names_an_existing_env():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / env).resolve().exists(), f"{smk.name}: {env}"


@pytest.mark.parametrize("env", ENVS, ids=[e.name for e in ENVS])
def test_every_env_installs_the_package_at_this_version(env):
    text = env.read_text()
    assert PACKAGE_LINE in pip_lines(env) and PACKAGE_LINE == "${" + PACKAGE_VARIABLE + "}"
    # the version is part of the file, so Snakemake (which hashes the file) builds a new env for a new release
    assert re.search(r"bestbatch (\S+) itself", text).group(1) == bestbatch.__version__


def test_every_rule_that_runs_a_script_names_an_environment():
    rules = script_rules()
    assert len({script for _, _, script, _ in rules}) == len(list((REPO / "workflow" / "scripts").glob("*.py")))
    for smk, rule, script, env in rules:
        assert env is not None, f"{smk}: rule {rule} runs {script} without a conda: environment"
        assert env.is_file() and env.parent == REPO / "envs", (smk, rule, env)


def test_each_environment_holds_every_module_its_scripts_import():
    """What a script imports when it starts, through bestbatch's own modules (the imports inside functions are
    checked on real jobs in tests/test_module.py)."""
    for smk, rule, script, env in script_rules():
        modules = import_time_modules(REPO / "workflow" / "scripts" / script)
        assert "bestbatch" in modules and "torch" not in modules or env.name == "torch.yaml", (rule, env.name)
        assert not missing(env, modules), f"{smk}: rule {rule} ({script}) in {env.name} lacks {missing(env, modules)}"


def test_the_check_sees_a_missing_module(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text(yaml.safe_dump({"dependencies": ["python=3.11", "pip", {"pip": ["numpy==2.4.6"]}]}))
    assert set(missing(env, {"numpy", "h5py", "bestbatch", "json"})) == {"h5py", "bestbatch"}
    # a dependency of a pinned distribution is held: pandas brings numpy
    env = tmp_path / "env2.yaml"
    env.write_text(yaml.safe_dump({"dependencies": ["pip", {"pip": ["pandas==3.1.1", PACKAGE_LINE]}]}))
    assert not missing(env, {"numpy", "pandas", "bestbatch"})


def test_package_requirement_from_where_the_rules_were_read(tmp_path):
    local = SimpleNamespace(get_path_or_uri=lambda secret_free: str(REPO / "workflow" / "rules"))
    assert package_requirement(local) == f"bestbatch @ {REPO.as_uri()}"
    github = SimpleNamespace(host="github.com", repo="lab/bestbatch", tag="v0.2.0", commit=None, branch=None)
    assert package_requirement(github) == "bestbatch @ git+https://github.com/lab/bestbatch@v0.2.0"
    gitlab = SimpleNamespace(host="gitlab.example.org", repo="lab/bestbatch", tag=None, commit=None, branch="main")
    assert package_requirement(gitlab) == "bestbatch @ git+https://gitlab.example.org/lab/bestbatch@main"
    local_git = SimpleNamespace(repo_path=str(tmp_path), ref="abc123")
    assert package_requirement(local_git) == f"bestbatch @ git+{tmp_path.as_uri()}@abc123"
    elsewhere = SimpleNamespace(get_path_or_uri=lambda secret_free: str(tmp_path / "a" / "b"))
    with pytest.raises(FileNotFoundError, match="pyproject.toml"):
        package_requirement(elsewhere)


def test_pip_installs_the_package_from_the_env_line(tmp_path):
    """The env's own line, expanded by pip as conda hands it over: a requirements file."""
    (tmp_path / "requirements.txt").write_text(PACKAGE_LINE + "\n")
    source = SimpleNamespace(get_path_or_uri=lambda secret_free: str(REPO / "workflow" / "rules"))
    env = {PACKAGE_VARIABLE: package_requirement(source), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(tmp_path / "site"),
            "-r",
            str(tmp_path / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    installed = tmp_path / "site" / "bestbatch"
    assert (installed / "steps" / "training.py").is_file()
    assert f'__version__ = "{bestbatch.__version__}"' in (installed / "__init__.py").read_text()
