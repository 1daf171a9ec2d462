"""Resuming after a kill: Snakemake's lock files outlive a SIGKILLed run and would block the rerun.

A lock is stale when no process on this host is a Snakemake run (or one of its jobs) in the same
working directory. Runs on other hosts sharing the folder are invisible here: never start two runs
of one study in the same directory.
"""
import os
from pathlib import Path


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
