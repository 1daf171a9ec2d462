"""The documents: the generated config reference is current, the README stays short and undated, and
every relative link in the docs resolves."""

import re
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

DOCS = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "config" / "README.md",
    REPO / "benchmarks" / "results.md",
]
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def schema_keys(node, prefix=""):
    """Dotted names of every key under `properties`, recursively."""
    props = node.get("properties") if isinstance(node, dict) else None
    for name, sub in (props or {}).items():
        dotted = f"{prefix}.{name}" if prefix else name
        yield dotted
        yield from schema_keys(sub, dotted)


def test_config_reference_is_current():
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "config_reference.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_config_reference_names_every_schema_key():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    reference = (REPO / "config" / "README.md").read_text()
    keys = list(schema_keys(schema))
    assert "training.lr_milestones" in keys
    missing = [key for key in keys if f"`{key}`" not in reference]
    assert not missing, f"config/README.md lacks {missing}: run `python tools/config_reference.py`"


def test_readme_is_short():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to docs/"


def test_readme_has_no_dated_measurement():
    text = (REPO / "README.md").read_text()
    dates = re.findall(r"\b(?:19|20)\d\d-[01]\d-[0-3]\d\b", text)
    assert not dates, f"README.md mentions {dates}: dated figures belong in benchmarks/results.md"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc):
    assert doc.exists(), doc
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)  # code blocks hold no links
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http(s), mailto, ... and anchors within the page
        path = target.split("#", 1)[0].split("?", 1)[0]
        if doc.name == "README.md" and re.fullmatch(r"\.\./\.\./actions/workflows/[\w.-]+\.yml(/badge\.svg)?", path):
            # GitHub's page of the workflow (README -> blob/<branch>/ -> ../../ is the repository): it must exist
            assert (REPO / ".github" / "workflows" / path.split("/")[4]).is_file(), target
            continue
        if not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: links to missing files: {broken}"
