"""Atomic file output: write to a temporary name beside the target, fsync, then rename.

A job killed at any moment leaves either the complete old file, the complete new one, or a
`.tmp-*` leftover that no rule treats as an output. A write that fails for want of space (ENOSPC, or
EDQUOT: a quota) removes its temporary file and fails with a NoSpaceError that names the folder, the
bytes the file needs and those that were free.
"""

import contextlib
import errno
import os
import shutil
from pathlib import Path

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# HDF5 reports a failed write(2) in its message only ("..., errno = 28, error message = 'No space left on device'")
_NO_SPACE_TEXT = tuple(f"errno = {e}," for e in NO_SPACE) + tuple(os.strerror(e) for e in NO_SPACE)


class NoSpaceError(OSError):
    """A write failed because the file system (or the user's quota) is full; the message says where and how much."""


def is_no_space(exc):
    """Whether `exc`, or an exception it was raised from, is a full disk or an exceeded quota (h5py's errors too)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return True
        if isinstance(exc, (OSError, RuntimeError)) and any(text in str(exc) for text in _NO_SPACE_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(folder):
    """The bytes free to this user in `folder`'s file system, or None where that cannot be read."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def human_bytes(n):
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


def no_space_error(exc, path, what, need_bytes=None, detail="", written_bytes=None):
    """The NoSpaceError to raise (from `exc`) when writing `what` (e.g. "checkpoint") to `path` ran out of space.

    need_bytes: what the file needs in all (`detail`: how that adds up), or None where only `written_bytes`,
    the bytes written when it failed, are known."""
    if isinstance(exc, NoSpaceError):
        return exc
    folder = Path(path).parent
    if need_bytes is not None:
        about = "; ".join(text for text in (human_bytes(need_bytes) if need_bytes >= 1000 else "", detail) if text)
        need = f"it needs {need_bytes} bytes" + (f" ({about})" if about else "")
    elif written_bytes is not None:
        need = f"its size is not known ({written_bytes} bytes of it were written when it failed)"
    else:
        need = "its size is not known"
    free = free_bytes(folder)
    free = "the free space could not be read" if free is None else f"{free} bytes were free when it failed"
    code = exc.errno if isinstance(exc, OSError) and exc.errno in NO_SPACE else errno.ENOSPC
    return NoSpaceError(
        code,
        f"no space left in {folder} writing the {what} {path}: {need}, {free}; nothing was kept under its name. "
        f"Free space there (or put results/ on a larger disk) and run the same command again",
    )


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


def _size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return None


@contextlib.contextmanager
def atomic_path(path, what="file", need_bytes=None):
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed.

    Out of space (while writing or at the fsync): a NoSpaceError naming the folder and `need_bytes` (where the
    caller knows the file's size; otherwise the bytes written so far); `what` names the file in it."""
    tmp = temporary_name(path)
    try:
        yield tmp
        commit(tmp, path)
    except Exception as exc:
        if not is_no_space(exc):
            raise
        raise no_space_error(exc, path, what, need_bytes, written_bytes=_size(tmp)) from exc
    finally:
        discard(tmp)


def write_text(path, text):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
