"""envs/*.yaml (for --sdm conda) carry exactly requirements.txt's pins."""

import re

import yaml
from conftest import REPO


def pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
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
