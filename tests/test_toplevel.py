"""The design's layout: a top-level Snakefile beside workflow/Snakefile (where the workflow catalog and snakedeploy
look), one including the other; `snakemake` from the repository root plans the same workflow through either."""

import re
import subprocess

from conftest import REPO, SNAKEMAKE


def planned(*args):
    proc = subprocess.run(
        [*SNAKEMAKE, "-n", "--quiet", "rules", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout.split("Job stats:")[1], re.M))


def test_the_top_level_snakefile_is_the_workflow():
    assert 'include: "workflow/Snakefile"' in (REPO / "Snakefile").read_text()
    from_root = planned()  # Snakemake picks ./Snakefile first
    assert from_root == planned("-s", "workflow/Snakefile")
    assert from_root["total"] == "1534" and from_root["train_epoch"] == "750"  # the paper's study, by default
    assert "workflow/Snakefile" in (REPO / ".snakemake-workflow-catalog.yml").read_text()
