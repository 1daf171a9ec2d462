"""HDF5 gradient shards: one epoch's K x P matrix of mini-batch gradients, written as it is computed.

Rows are handed to a writer thread through a bounded queue, so flattening, the device-to-host copy
and the disk write of batch k overlap with the compute of batch k+1. The dataset is contiguous and row-major, so each
row is one byte range that streams in and out without touching its neighbours.
"""
import ctypes
import ctypes.util
import json
import os
import queue
import threading

import h5py
import numpy as np
import torch

from .atomic import atomic_path

_SYNC_FILE_RANGE_ALL = 7  # SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def flush_range(fd, offset, length):
    """Write one byte range of a file to disk and wait (Linux sync_file_range; elsewhere fdatasync)."""
    if _sync_file_range is None or _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_ALL) != 0:
        os.fdatasync(fd)


class ShardWriter:
    """Write rows g_k of a (K, P) shard from a background thread; finish() renames it into place.

    `put(k, flat)` takes a flat gradient tensor on any device. On CUDA it is copied into a pinned
    host buffer with a non-blocking copy and the writer thread waits for that copy's event, so the
    compute stream never waits for the disk unless `depth` rows are already queued.

    The writer thread also takes the disk work off the end of the epoch: it pre-writes the float64
    `gradient_sum` dataset (so finish() overwrites cached pages instead of growing the file) and
    flushes each row to disk as soon as it is written (so the final fsync has one row left).
    """

    def __init__(self, path, n_rows, n_params, dtype, depth=3):
        self._atomic = atomic_path(path)
        self.tmp = self._atomic.__enter__()
        self.file = h5py.File(self.tmp, "w")
        self.np_dtype = np.dtype(dtype)
        # contiguous, unfiltered: row k is one byte range, streamed in by the writer and mapped by the reduction
        self.dset = self.file.create_dataset("gradients", shape=(n_rows, n_params), dtype=self.np_dtype)
        self.dset.attrs["description"] = "row k: gradient of fixed batch k's mean cross-entropy loss at the epoch-start parameters"
        self.sum = self.file.create_dataset("gradient_sum", shape=(n_params,), dtype=np.float64)
        self.sum.attrs["description"] = "float64 sum of the rows, kept during training"
        self.fd = self.file.id.get_vfd_handle()
        self.row_bytes = n_params * self.np_dtype.itemsize
        self.queue = queue.Queue(maxsize=depth)
        self.free = queue.Queue()  # host rows (pinned on CUDA) that the writer thread has finished with
        self._owned = set()  # data_ptr of the host rows made here: only those are recycled
        self._device_row = None
        self.n_rows, self.rows_written = n_rows, 0
        self.error = None
        self.thread = threading.Thread(target=self._drain, name="shard-writer", daemon=True)
        self.thread.start()

    def _drain(self):
        try:
            self.sum.write_direct(np.zeros(self.sum.shape))
        except Exception as exc:
            self.error = exc
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
                    flush_range(self.fd, self.dset.id.get_offset() + k * self.row_bytes, self.row_bytes)
                    self.rows_written += 1
            except Exception as exc:  # surfaced in put()/finish() on the main thread
                self.error = exc
            finally:
                if buf.data_ptr() in self._owned:
                    self.free.put(buf)

    def _host_row(self, numel, dtype, pinned):
        try:
            return self.free.get_nowait()
        except queue.Empty:
            buf = torch.empty(numel, dtype=dtype, pin_memory=pinned)
            self._owned.add(buf.data_ptr())
            return buf

    def buffer(self, device, dtype, numel):
        """A flat tensor for the next row (run_epoch's gradient_buffer). On the CPU it is a recycled host
        row, handed back to this pool once written; on CUDA one device row, reused every batch, since put()
        copies it out in stream order."""
        if device.type == "cuda":
            if self._device_row is None:
                self._device_row = torch.empty(numel, dtype=dtype, device=device)
            return self._device_row
        return self._host_row(numel, dtype, pinned=False)

    def put(self, k, flat):
        if self.error is not None:
            raise self.error
        if flat.device.type == "cuda":
            buf = self._host_row(flat.numel(), flat.dtype, pinned=True)
            buf.copy_(flat, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.queue.put((k, buf, event))
        else:
            self.queue.put((k, flat.detach(), None))

    def finish(self, datasets, attrs):
        """Wait for every row, write `gradient_sum` and the other datasets and attributes, and move the
        file into place. `datasets` must hold `gradient_sum` (float64, one value per parameter)."""
        datasets = dict(datasets)
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            self.abort()
            raise self.error
        if self.rows_written != self.n_rows:
            self.abort()
            raise RuntimeError(f"shard {self.tmp}: {self.rows_written} of {self.n_rows} rows written")
        total = np.asarray(datasets.pop("gradient_sum", np.nan), dtype=np.float64)
        if total.shape != self.sum.shape:
            problem = f"shard {self.tmp}: gradient_sum of shape {total.shape}, expected {self.sum.shape}"
            self.abort()
            raise ValueError(problem)
        self.sum.write_direct(np.ascontiguousarray(total))
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
