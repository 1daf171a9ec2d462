"""Content fingerprints of an image folder's splits: what the workflow reruns on, instead of modification times.

A file's identity is the sha256 of its bytes. Hashing a 100,000-image folder whenever Snakemake starts would read
every image each time, so the digests are cached by (path, size, modification time): a file whose size and mtime
are what the cache recorded is not read again, and one that was touched or copied without its times is read,
hashed, and found unchanged. A split's fingerprint is the sha256 of its classes and of every file's path, class
and digest, so `touch`, a copy without times, or a change to the other split leaves it as it was.

The cache is a JSON file the caller names (the workflow: .snakemake/bestbatch/, beside Snakemake's own state);
it only saves reading, never decides: a missing, unreadable or foreign cache is rebuilt by reading the files.
"""

import hashlib
import json
import os
from pathlib import Path

from .atomic import write_text

CACHE_VERSION = 1


def file_digest(path):
    """sha256 hex of the bytes of `path`."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def cache_path(folder, root):
    """Where the digests of the image folder `root` are cached, under `folder` (one file per folder)."""
    key = hashlib.sha256(str(Path(root).absolute()).encode()).hexdigest()[:16]
    return Path(folder) / f"imagefolder-{key}.json"


def _read_cache(path, root):
    try:
        cached = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(cached, dict) or cached.get("version") != CACHE_VERSION:
        return {}
    if cached.get("root") != str(Path(root).absolute()) or not isinstance(cached.get("files"), dict):
        return {}
    return cached["files"]


def digests(root, entries, cache=None, update=True):
    """{relative path: sha256 hex} of `entries` ((relative path, class, size, mtime_ns), ...) under `root`.

    cache: a JSON file of earlier digests (None: read every file); a file whose size and mtime match its cached
    record is not read. update: write the cache back (atomically) when a digest was computed or a file is gone;
    the cache then holds exactly `entries` (give every file of the folder, both splits, in one call)."""
    root = Path(root)
    known = _read_cache(cache, root) if cache is not None else {}
    found, changed = {}, False
    for rel, _label, size, mtime_ns in entries:
        record = known.get(rel)
        if isinstance(record, list) and len(record) == 3 and record[:2] == [size, mtime_ns]:
            found[rel] = record[2]
            continue
        found[rel] = file_digest(root / rel)
        changed = True
    if cache is not None and update and (changed or len(found) != len(known)):
        files = {rel: [size, mtime_ns, found[rel]] for rel, _label, size, mtime_ns in entries}
        os.makedirs(Path(cache).parent, exist_ok=True)
        write_text(cache, json.dumps({"version": CACHE_VERSION, "root": str(root.absolute()), "files": files}))
    return found


def split_fingerprint(classes, entries, found):
    """sha256 hex of the classes and every file's path, class and digest (`found`: digests()) of one split."""
    described = {"classes": list(classes), "files": [[rel, label, found[rel]] for rel, label, *_ in entries]}
    return hashlib.sha256(json.dumps(described, separators=(",", ":")).encode()).hexdigest()


def _summary_path(cache):
    return Path(str(cache) + ".summary")


def fingerprints(root, classes, splits, cache=None, update=True):
    """{split: split_fingerprint} of an image folder's splits ({"train": entries, "test": entries}).

    With a cache, a summary beside it (cache + ".summary") records the fingerprints with a signature of every
    file's path, class, size and mtime: when nothing was added, removed, renamed, resized or touched, the answer
    is read from it and not one digest is looked up (the whole check costs the scan's stats and one sha256 over
    them). Otherwise the digests are found (digests(): read only where the cache has no record) and both written."""
    signature = None
    if cache is not None:
        listing = {"classes": list(classes), **{split: list(entries) for split, entries in splits.items()}}
        signature = hashlib.sha256(json.dumps(listing, separators=(",", ":")).encode()).hexdigest()
        try:
            summary = json.loads(_summary_path(cache).read_text())
            if summary.get("version") == CACHE_VERSION and summary.get("signature") == signature:
                if Path(cache).is_file():  # the digests it was made from are still there
                    return dict(summary["fingerprints"])
        except (OSError, ValueError, AttributeError, TypeError):
            pass
    everything = [entry for entries in splits.values() for entry in entries]
    found = digests(root, everything, cache, update=update)
    result = {split: split_fingerprint(classes, entries, found) for split, entries in splits.items()}
    if cache is not None and update:
        summary = {"version": CACHE_VERSION, "signature": signature, "fingerprints": result}
        write_text(_summary_path(cache), json.dumps(summary))
    return result
