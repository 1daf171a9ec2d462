"""Snakemake's concerns, not the science: stale locks after a kill, the package for the rules' conda
environments, and fault injection for the tests.

Resuming after a kill: Snakemake's lock files outlive a SIGKILLed run and would block the rerun.
A lock is stale when no process on this host is a Snakemake run (or one of its jobs) in the same
working directory. Runs on other hosts sharing the folder are invisible here: never start two runs
of one study in the same directory.

Fault injection for the resume tests: `BESTBATCH_KILL_AT="<point>:<epoch>:<step>"` (unset in normal
runs) SIGKILLs the process group — Snakemake and all its jobs, like a pre-empted node — when the job
reaches that point:
  batch:<epoch>:<k>           train_epoch, after batch k's gradient was queued (shard incomplete) or held
  after_checkpoint:<epoch>:0  train_epoch, checkpoint renamed into place, shard (or epoch file) not yet
  reduce:<epoch>:<b>          reduce_epoch, after parameter block b (1-based) of every row, before the output; with
                              outputs.gradients memory or sketch, the training job's own reduction likewise

`BESTBATCH_FILL_AT="<point>:<epoch>[:<step>]"` (unset in normal runs) fills the disk instead, as another job or
user might while a job writes: the job itself writes `<folder>/.bestbatch-fill-disk` (FILL_NAME), which takes all
the free space of the file system it writes to; deleting that file frees the space again.
  batch:<epoch>:<k>           train_epoch and compare_epoch, at batch k: the writer thread has written rows
                              0..k-1, the disk fills, row k is queued and written (and fails)
  before_checkpoint:<epoch>   save_checkpoint of that epoch, before it writes (":0" may follow)
"""

import errno
import logging
import os
import signal
from pathlib import Path

log = logging.getLogger("bestbatch")


def _ancestors(pid, proc):
    out = set()
    while pid > 1:
        out.add(pid)
        try:
            stat = (proc / str(pid) / "stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def live_snakemake_pids(workdir, proc=Path("/proc")):
    """PIDs, other than this process and its ancestors, running Snakemake (or its jobs) in `workdir`."""
    workdir = Path(workdir).resolve()
    mine = _ancestors(os.getpid(), proc)
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if b"snakemake" in cmdline and cwd == workdir:
            found.append(int(entry.name))
    return found


def release_stale_locks(workdir="."):
    """Remove lock files no live run holds; return the removed paths."""
    locks = Path(workdir) / ".snakemake" / "locks"
    files = sorted(locks.glob("*.lock")) if locks.is_dir() else []
    if not files or live_snakemake_pids(workdir):
        return []
    for f in files:
        f.unlink(missing_ok=True)
    return files


# envs/*.yaml end with the pip line `${BESTBATCH_PACKAGE}`: pip expands it when Snakemake creates the environment
# (--sdm conda), and common.smk sets it from where the rules were read.
PACKAGE_VARIABLE = "BESTBATCH_PACKAGE"


def package_requirement(rules_dir):
    """The pip requirement that installs this workflow's own package: `rules_dir` is the folder the rule files
    were read from, as Snakemake knows it (workflow.current_basedir).

    A local folder (a checkout, or a module declared with a path) gives `bestbatch @ file:///<checkout>`; a
    module declared with github(...)/gitlab(...) gives the same repository at the same tag, commit or branch;
    a local git repository (git+file) likewise."""
    if getattr(rules_dir, "host", None):  # github(...), gitlab(...)
        url, ref = (
            f"git+https://{rules_dir.host}/{rules_dir.repo}",
            rules_dir.tag or rules_dir.commit or rules_dir.branch,
        )
    elif getattr(rules_dir, "repo_path", None):  # a local git repository at a ref
        url, ref = f"git+{Path(rules_dir.repo_path).resolve().as_uri()}", rules_dir.ref
    else:
        root = Path(rules_dir.get_path_or_uri(secret_free=True)).resolve().parents[1]
        if not (root / "pyproject.toml").is_file():
            raise FileNotFoundError(f"no pyproject.toml in {root}: the rules are expected in <workflow>/workflow/rules")
        return f"bestbatch @ {root.as_uri()}"
    return f"bestbatch @ {url}@{ref}" if ref else f"bestbatch @ {url}"


def kill_point(point, epoch, step=0):
    spec = os.environ.get("BESTBATCH_KILL_AT")
    if spec and spec == f"{point}:{epoch}:{step}":
        os.killpg(os.getpgid(0), signal.SIGKILL)


FILL_NAME = ".bestbatch-fill-disk"


def fill_disk(folder):
    """Write `folder`/FILL_NAME until the file system refuses more (ENOSPC or EDQUOT); return its path.

    Chunks shrink down to one byte, so no space is left that a block-sized write could take."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FILL_NAME
    size, written = 1 << 20, 0
    zeros = bytes(size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while size:
            try:
                written += os.write(fd, zeros[:size])
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                size //= 16
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
    finally:
        os.close(fd)
    log.warning("BESTBATCH_FILL_AT: wrote %d bytes to %s, the disk is full", written, path)
    return path


def _fill_at():
    """BESTBATCH_FILL_AT as (point, epoch, step), or None."""
    spec = os.environ.get("BESTBATCH_FILL_AT")
    if not spec:
        return None
    point, _, rest = spec.partition(":")
    epoch, _, step = rest.partition(":")
    return point, epoch, step or "0"


def fill_point(point, epoch, folder, step=0):
    """Fill the disk that holds `folder` (fill_disk) if BESTBATCH_FILL_AT names this point."""
    if _fill_at() == (point, str(epoch), str(step)):
        fill_disk(folder)


class KillableSink:
    """A gradient sink that passes everything to `sink` (a shards.ShardWriter) and offers kill point
    batch:<epoch>:<k> and fill point batch:<epoch>:<k>."""

    def __init__(self, sink, epoch):
        self.sink, self.epoch = sink, epoch
        fill = _fill_at()
        self.fill_at = int(fill[2]) if fill and fill[:2] == ("batch", str(epoch)) else None

    def row(self, k, device, dtype, numel):
        return self.sink.row(k, device, dtype, numel)

    def total(self, device, numel):
        return self.sink.total(device, numel)

    def put(self, k, g):
        if k == self.fill_at:  # rows 0..k-1 are written, the disk fills, row k meets it: the error surfaces here
            self.sink.drain()
            fill_disk(Path(self.sink.path).parent)
            self.sink.put(k, g)
            self.sink.drain()
        else:
            self.sink.put(k, g)
        kill_point("batch", self.epoch, k)
