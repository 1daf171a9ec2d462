"""Atomic file output: write to a temporary name beside the target, fsync, then rename.

A job killed at any moment leaves either the complete old file, the complete new one, or a
`.tmp-*` leftover that no rule treats as an output.
"""

import contextlib
import os
from pathlib import Path


def temporary_name(path):
    """A fresh temporary name beside `path`; leftovers of killed writers of `path` are removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".tmp-*-{path.name}"):
        stale.unlink(missing_ok=True)  # left by a killed writer; one job writes a target at a time
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


def commit(tmp, path):
    """fsync `tmp`, rename it to `path`, and make the rename durable."""
    path = Path(path)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def discard(tmp):
    Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed."""
    tmp = temporary_name(path)
    try:
        yield tmp
        commit(tmp, path)
    finally:
        discard(tmp)


def write_text(path, text):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
