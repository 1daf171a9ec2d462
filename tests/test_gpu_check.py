"""The one-command GPU check (benchmarks/gpu_check.sh) is ready before a GPU is lent: without CUDA it stops at
once and says why; its figures script runs end to end as a CPU rehearsal and writes its section."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run for real")
def test_without_cuda_the_check_refuses_clearly():
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "no CUDA device is visible" in proc.stderr and "--rehearse" in proc.stderr
    bad = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--fast"], cwd=REPO, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown argument --fast" in bad.stderr


@pytest.mark.slow
def test_the_figures_script_rehearses_on_the_cpu(tmp_path):
    out = tmp_path / "results.md"
    out.write_text("# Benchmarks\n\nnotes kept\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "python"),
            str(REPO / "benchmarks" / "gpu_check.py"),
            "--rehearse",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nnotes kept\n") and "## GPU check" in text
    assert "a rehearsal on the CPU" in text and "per-epoch job / plain epoch" in text
    assert "| the two layouts' matrices and last checkpoints | bitwise equal | bitwise equal | yes |" in text
    # a second run replaces the section, it does not add one
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_check import write_section

    write_section(out, "Card: another.\n")
    text = out.read_text()
    assert text.count("## GPU check") == 1 and "Card: another." in text and "a rehearsal" not in text
