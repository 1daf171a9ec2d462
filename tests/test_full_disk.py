"""A disk that fills while a job writes (issue 22 §4): the pre-check (steps.training.check_disk) compares free space
with the shard's size when the epoch starts, but another job or user can take the space meanwhile. The job must fail
naming the folder and the bytes it needed, leave nothing that Snakemake would take as complete (no output under its
final name, no temporary file), and the very same command must finish, once space is freed, with a result bitwise
equal to an undisturbed run.

The results folder is a small tmpfs (root only: `.ci/run` runs as root); the job itself fills it at a chosen moment
(BESTBATCH_FILL_AT, workflow_support.fill_disk) with a file the test then deletes to free the space."""

import contextlib
import copy
import errno
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import TINY_CONFIG, write_config
from test_reliability import RUN, TARGETS, final_state, killable_run

from bestbatch.workflow_support import FILL_NAME

pytestmark = pytest.mark.slow

DISK = "4m"  # the tiny study's results take ~1.8 MB at most (1.6 MB of them the data set)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The undisturbed run (inline layout; the parallel layout is bitwise the same, test_layouts)."""
    work = tmp_path_factory.mktemp("reference")
    cfg = write_config(work / "tiny.yaml", dict(copy.deepcopy(TINY_CONFIG), metrics=["random"]))
    proc = killable_run(work, cfg)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


@contextlib.contextmanager
def tmpfs(folder, size):
    """`folder` on a tmpfs of `size` (mount's notation) while the block runs; unmounted afterwards whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (.ci/run runs as root)")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("no mount/umount command")
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)  # busy: detach it now, free it when released


@pytest.fixture
def small_disk(tmp_path):
    """`tmp_path`/results on a tmpfs of DISK bytes."""
    with tmpfs(tmp_path / "results", DISK) as results:
        yield results


def n_parameters():
    """P of the tiny study's network, as the shard counts it."""
    from bestbatch.models import build_model
    from bestbatch.training import parameter_layout

    return parameter_layout(build_model(TINY_CONFIG["models"][0], num_classes=10, seed=0))[1]


@pytest.mark.parametrize(
    "layout,fill_at",
    [
        ("inline", "batch:2:1"),
        ("inline", "before_checkpoint:2"),
        ("parallel", "batch:2:1"),
        ("parallel", "before_checkpoint:2"),
    ],
    ids=["inline, mid-shard", "inline, checkpoint", "parallel, mid-shard", "parallel, checkpoint"],
)
def test_full_disk_fails_naming_folder_and_bytes_then_same_command_finishes_bitwise(
    reference, small_disk, layout, fill_at, monkeypatch
):
    work = small_disk.parent
    config = dict(copy.deepcopy(TINY_CONFIG), metrics=["random"], execution={"layout": layout})
    cfg = write_config(work / "tiny.yaml", config)
    # the data, orderings and initialisation are shared; the chain from epoch 1 on is computed on the small disk
    for part in ("data", "dataset.json", "orderings", "tiny_mlp_bn/seed_0/checkpoints"):
        src = reference / "results" / "tiny" / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, small_disk / "tiny" / part)

    monkeypatch.setenv("BESTBATCH_FILL_AT", fill_at)
    failed = killable_run(work, cfg)
    monkeypatch.delenv("BESTBATCH_FILL_AT")

    run = work / RUN / "random"
    shard = fill_at.startswith("batch")
    folder = run / ("shards" if shard else "checkpoints")
    job = "compare_epoch" if shard and layout == "parallel" else "train_epoch"
    log = (work / "logs" / "tiny" / "tiny_mlp_bn" / "seed_0" / "random" / f"{job}_2.log").read_text()
    assert failed.returncode == 1, failed.stderr[-4000:]
    assert (folder / FILL_NAME).stat().st_size > 0  # the job filled the disk at that point
    # the message: the folder, the bytes the file needs, the free space; in the job's log and on the terminal
    where = f"no space left in {folder.relative_to(work)} writing the "
    for text in (log, failed.stderr):
        assert where in text, text[-4000:]
    message = log[log.index(where) :].splitlines()[0]
    print(message)
    need, free = map(int, re.search(r"it needs (\d+) bytes.*, (\d+) bytes were free when it failed", message).groups())
    assert "free space there" in message.lower() and "run the same command again" in message
    assert need > free
    if shard:
        p = n_parameters()
        assert f"gradient shard {run.relative_to(work)}/shards/epoch_2.h5" in message
        assert f"5 batches x {p} parameters x 4 bytes, plus {p} x 8 bytes" in message
        assert need == (5 * 4 + 8) * p
    else:
        assert f"checkpoint {run.relative_to(work)}/checkpoints/epoch_2.pt" in message
        # the checkpoints of epochs 2 and 3 hold the same tensors (shapes), and the same metadata but for its values
        assert abs(need - (reference / TARGETS[1]).stat().st_size) < 100, need
    # nothing Snakemake would take as complete: the failed job's outputs are absent, and no temporary file is left
    outputs = {
        ("inline", True): ["shards/epoch_2.h5", "checkpoints/epoch_2.pt"],
        ("inline", False): ["shards/epoch_2.h5", "checkpoints/epoch_2.pt"],
        ("parallel", True): ["shards/epoch_2.h5"],
        ("parallel", False): ["checkpoints/epoch_2.pt", "records/epoch_2.h5"],
    }[layout, shard]
    for name in outputs:
        assert not (run / name).exists(), name
    assert not list(small_disk.rglob(".tmp-*"))
    assert not (work / TARGETS[0]).exists()

    (folder / FILL_NAME).unlink()  # space is freed
    resumed = killable_run(work, cfg)  # the very same command
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    want, got = final_state(reference), final_state(work)
    assert want.keys() == got.keys()
    for name in want:
        assert np.array_equal(want[name], got[name]), name
    assert not list(small_disk.rglob(".tmp-*")) and not list(small_disk.rglob(FILL_NAME))


# --- the same, in one process: the writer thread, the end of the shard, the checkpoint ------------------------


def open_files_under(folder):
    """This process's open files under `folder` (a half-written file that is unlinked but open holds its space)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            out.append(target)
    return out


@pytest.mark.parametrize("when", ["row", "finish", "start"])
def test_shard_writer_on_a_full_disk_names_folder_and_bytes_and_leaves_nothing(tmp_path, monkeypatch, when):
    """The disk fills before row 2 (the writer thread meets it), after every row (the sum, HDF5's metadata), or
    before the shard is created: a NoSpaceError on the main thread, no file but the filler, no file held open."""
    import torch

    from bestbatch.atomic import NoSpaceError
    from bestbatch.shards import ShardWriter, shard_bytes
    from bestbatch.workflow_support import KillableSink, fill_disk

    k_rows, n = 5, 3000
    monkeypatch.setenv("BESTBATCH_FILL_AT", "batch:2:2" if when == "row" else "batch:9:0")
    with tmpfs(tmp_path / "disk", "256k") as disk:
        path = disk / "shards" / "epoch_2.h5"
        with pytest.raises(NoSpaceError) as raised:
            if when == "start":
                fill_disk(path.parent)
            with ShardWriter(path, k_rows, n, torch.float32) as writer:
                sink = KillableSink(writer, 2)
                total = writer.total(torch.device("cpu"), n)
                for k in range(k_rows):
                    row = writer.row(k, torch.device("cpu"), torch.float32, n).fill_(k + 1)
                    total += row
                    sink.put(k, row)
                writer.drain()
                if when == "finish":
                    fill_disk(path.parent)
                writer.finish([("w", (n,), 0)], None)
        message = str(raised.value)
        assert f"no space left in {path.parent} writing the gradient shard {path}: " in message
        assert f"it needs {shard_bytes(k_rows, n, torch.float32)} bytes" in message
        assert f"{k_rows} batches x {n} parameters x 4 bytes" in message
        assert re.search(r"\b0 bytes were free when it failed", message), message
        assert raised.value.errno == errno.ENOSPC
        assert sorted(p.name for p in path.parent.iterdir()) == [FILL_NAME]
        assert not open_files_under(disk)


def test_checkpoint_on_a_full_disk_names_folder_and_bytes_and_leaves_nothing(tmp_path, monkeypatch):
    import torch

    from bestbatch.atomic import NoSpaceError
    from bestbatch.formats import save_checkpoint

    state = {"w": torch.arange(20000, dtype=torch.float32)}
    with tmpfs(tmp_path / "disk", "256k") as disk:
        path = disk / "checkpoints" / "epoch_2.pt"
        save_checkpoint(path, state, None, 1, {})  # the fill point is another epoch's: written
        size = path.stat().st_size
        path.unlink()
        monkeypatch.setenv("BESTBATCH_FILL_AT", "before_checkpoint:2")
        with pytest.raises(NoSpaceError, match=rf"no space left in {path.parent} writing the checkpoint {path}: ") as e:
            save_checkpoint(path, state, None, 2, {})
        assert f"it needs {size} bytes" in str(e.value)  # epoch 1's file has the same size as epoch 2's
        assert sorted(p.name for p in path.parent.iterdir()) == [FILL_NAME]
        assert not open_files_under(disk)
        monkeypatch.delenv("BESTBATCH_FILL_AT")
        (path.parent / FILL_NAME).unlink()
        save_checkpoint(path, state, None, 2, {})  # space freed: the same call succeeds
        assert path.stat().st_size == size
