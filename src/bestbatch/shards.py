"""HDF5 gradient shards: one epoch's K x P matrix of mini-batch gradients, written as it is computed.

Rows are handed to a writer thread through a bounded queue, so flattening, the device-to-host copy
and the disk write of batch k overlap with the compute of batch k+1. The dataset is contiguous and row-major, so each
row is one byte range that streams in and out without touching its neighbours.
"""
import json
import queue
import threading

import h5py
import numpy as np
import torch

from .atomic import atomic_path

class ShardWriter:
    """Write rows g_k of a (K, P) shard from a background thread; finish() renames it into place.

    `put(k, flat)` takes a flat gradient tensor on any device. On CUDA it is copied into a pinned
    host buffer with a non-blocking copy and the writer thread waits for that copy's event, so the
    compute stream never waits for the disk unless `depth` rows are already queued.
    """

    def __init__(self, path, n_rows, n_params, dtype, depth=3):
        self._atomic = atomic_path(path)
        self.tmp = self._atomic.__enter__()
        self.file = h5py.File(self.tmp, "w")
        self.np_dtype = np.dtype(dtype)
        # contiguous, unfiltered: row k is one byte range, streamed in by the writer and mapped by the reduction
        self.dset = self.file.create_dataset("gradients", shape=(n_rows, n_params), dtype=self.np_dtype)
        self.dset.attrs["description"] = "row k: gradient of fixed batch k's mean cross-entropy loss at the epoch-start parameters"
        self.queue = queue.Queue(maxsize=depth)
        self.free = queue.Queue()
        self.n_rows, self.rows_written = n_rows, 0
        self.error = None
        self.thread = threading.Thread(target=self._drain, name="shard-writer", daemon=True)
        self.thread.start()

    def _drain(self):
        while True:
            item = self.queue.get()
            if item is None:
                return
            k, buf, event = item
            try:
                if event is not None:
                    event.synchronize()
                if self.error is None:
                    self.dset[k] = buf.numpy()
                    self.rows_written += 1
            except Exception as exc:  # surfaced in put()/finish() on the main thread
                self.error = exc
            finally:
                if event is not None:
                    self.free.put(buf)

    def put(self, k, flat):
        if self.error is not None:
            raise self.error
        if flat.device.type == "cuda":
            try:
                buf = self.free.get_nowait()
            except queue.Empty:
                buf = torch.empty(flat.numel(), dtype=flat.dtype, pin_memory=True)
            buf.copy_(flat, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.queue.put((k, buf, event))
        else:
            self.queue.put((k, flat.detach(), None))

    def finish(self, datasets, attrs):
        """Wait for every row, add the small datasets and attributes, and move the file into place."""
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            self.abort()
            raise self.error
        if self.rows_written != self.n_rows:
            self.abort()
            raise RuntimeError(f"shard {self.tmp}: {self.rows_written} of {self.n_rows} rows written")
        for name, value in datasets.items():
            self.file.create_dataset(name, data=value)
        for name, value in attrs.items():
            self.file.attrs[name] = value if isinstance(value, (int, float, str, np.ndarray)) else json.dumps(value)
        self.file.close()
        self._atomic.__exit__(None, None, None)

    def abort(self):
        """Drop the half-written shard: nothing under the final name."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        self.file.close()
        self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)


def read_attrs(path):
    with h5py.File(path, "r") as f:
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
