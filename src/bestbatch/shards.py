"""HDF5 gradient shards: one epoch's K x P matrix of mini-batch gradients, written as it is computed.

Rows are handed to a writer thread through a bounded queue, so flattening, the device-to-host copy
and the disk write of batch k overlap with the compute of batch k+1. The dataset is contiguous and
row-major, so each row is one byte range that streams in and out without touching its neighbours.

By default the rows go to disk with direct I/O (O_DIRECT): a shard is written once and read once, so
copying it through the page cache only costs CPU (on this project's VMs, filling fresh page-cache pages
costs ~2 ms per MB, the same order as the compute it should overlap with) and evicts everything else.
O_DIRECT needs 4 KiB-aligned file offsets, lengths and memory: the datasets start on 4 KiB boundaries,
host rows are allocated so that their bytes sit at the same 4 KiB phase as their place in the file, and
the unaligned head and tail of each row (< 4 KiB each) go through the page cache. Where the file
system refuses O_DIRECT, everything is written buffered and flushed row by row.

A full disk (or quota) at any write, in the writer thread or at the end, fails the shard with a NoSpaceError
that names the folder, the bytes the shard needs and those that were free, and leaves nothing under its name.
"""

import ctypes
import ctypes.util
import errno
import os
import queue
import threading

import h5py
import numpy as np
import torch

from .atomic import commit, discard, is_no_space, no_space_error, temporary_name
from .formats import SHARD_ROWS, SHARD_ROWS_DESCRIPTION, SHARD_SUM, SHARD_SUM_DESCRIPTION, finish_shard

ALIGN = 4096  # O_DIRECT granularity: file offsets, lengths and memory addresses (the usual logical block size or less)

_SYNC_FILE_RANGE_ALL = 7  # SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def flush_range(fd, offset, length):
    """Write one byte range of a file to disk and wait (Linux sync_file_range; elsewhere fdatasync)."""
    if _sync_file_range is None or _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_ALL) != 0:
        os.fdatasync(fd)


def _raw_host(nbytes, pinned=False):
    """A uint8 host allocation with room to place `nbytes` at any phase modulo ALIGN."""
    return torch.empty(nbytes + ALIGN, dtype=torch.uint8, pin_memory=pinned)


def _at_phase(raw, nbytes, phase):
    """The `nbytes` of `raw` whose address is `phase` modulo ALIGN (a view, which keeps `raw` alive)."""
    offset = (phase - raw.data_ptr()) % ALIGN
    return raw[offset : offset + nbytes]


def aligned_host(nbytes, phase=0, pinned=False):
    """A uint8 host tensor of `nbytes` whose address is `phase` modulo ALIGN."""
    return _at_phase(_raw_host(nbytes, pinned), nbytes, phase)


def _pwrite_all(fd, data, offset):
    view = memoryview(data).cast("B")
    while len(view):
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.EIO, f"pwrite wrote {n} bytes at offset {offset}")
        view, offset = view[n:], offset + n


def _open_direct(path):
    if not hasattr(os, "O_DIRECT"):
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_DIRECT)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise


class ShardWriter:
    """Write a (K, P) gradient shard from a background thread, as run_epoch's gradient sink.

        with ShardWriter(path, k, p, torch.float32) as shard:
            stats = run_epoch(..., sink=shard)
            shard.finish(layout, records)   # waits for the rows, writes the rest, renames into place

    Leaving the block without finish() (an exception, a kill) leaves nothing under `path`. A write that
    finds the disk full raises a NoSpaceError (atomic.no_space_error) on the main thread: in the next put(),
    in drain() or in finish().

    The sink's side: `row(k, device, dtype, numel)` hands out the tensor g_k is computed into (on the
    CPU a recycled host row placed for direct I/O; on CUDA one device row, reused every batch, since
    put() copies it out in stream order); `total(device, numel)` the float64 running sum; `put(k, g)`
    queues row k. On CUDA put() copies into a pinned host row with a non-blocking copy and the writer
    thread waits for that copy's event, so the compute stream never waits for the disk unless `depth`
    rows are already queued.

    direct=True writes with O_DIRECT where the file system allows it (see the module's docstring);
    `direct_bytes` counts the bytes that went that way.
    """

    def __init__(self, path, n_rows, n_params, dtype, depth=3, direct=True):
        self.path, self.n_rows, self.n_params = path, n_rows, n_params
        self.dtype = dtype  # a torch.dtype
        self.np_dtype = torch.empty((), dtype=dtype).numpy().dtype
        self.row_bytes = n_params * self.np_dtype.itemsize
        self.depth, self.direct = depth, direct
        self.tmp = None

    # --- the context -------------------------------------------------------------------------------
    def __enter__(self):
        self.tmp = temporary_name(self.path)
        self.file, self.plain_fd, self.direct_fd, self.thread = None, None, None, None
        try:
            self.file = h5py.File(self.tmp, "w", alignment_threshold=ALIGN, alignment_interval=ALIGN)
            self.dset = self._allocated(SHARD_ROWS, (self.n_rows, self.n_params), self.np_dtype)
            self.dset.attrs["description"] = SHARD_ROWS_DESCRIPTION
            self.sum = self._allocated(SHARD_SUM, (self.n_params,), np.dtype(np.float64))
            self.sum.attrs["description"] = SHARD_SUM_DESCRIPTION
            self.file.flush()
            self.rows_offset, self.sum_offset = self.dset.id.get_offset(), self.sum.id.get_offset()
            self.plain_fd = os.open(self.tmp, os.O_WRONLY)
            self.direct_fd = _open_direct(self.tmp) if self.direct else None
        except BaseException as exc:
            self._abort()
            if isinstance(exc, Exception) and is_no_space(exc):
                raise self._no_space(exc) from exc
            raise
        self.direct_bytes = 0
        self.queue = queue.Queue(maxsize=self.depth)
        self.free = queue.Queue()  # raw host allocations (pinned on CUDA) the writer thread is done with
        self._raw_of = {}  # data_ptr of a row handed out -> its raw allocation, to recycle it
        self._device_row = None
        self._total = None
        self.rows_written = 0
        self.error = None
        self.finished = False
        self.thread = threading.Thread(target=self._drain, name="shard-writer", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self.finished:
            self._abort()
            if exc_type is None:
                raise RuntimeError(f"shard {self.path}: closed without finish(); nothing was written")
        return False

    def _allocated(self, name, shape, dtype):
        """A contiguous dataset whose file space exists now (so its offset is known) and is never
        filled by HDF5: every byte of it is written here."""
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.CONTIGUOUS)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        space = h5py.h5s.create_simple(shape)
        dsid = h5py.h5d.create(self.file.id, name.encode(), h5py.h5t.py_create(dtype), space, dcpl=dcpl)
        return h5py.Dataset(dsid)

    def _write_at(self, data, start):
        """Write a contiguous array at file offset `start`: its 4 KiB-aligned middle with O_DIRECT if
        possible (the memory must sit at the same phase), the rest through the page cache."""
        data = data.reshape(-1).view(np.uint8)
        end = start + data.nbytes
        a = min(-(-start // ALIGN) * ALIGN, end)
        b = max(end // ALIGN * ALIGN, a)
        if self.direct_fd is not None and b > a and (data.ctypes.data + a - start) % ALIGN == 0:
            try:
                _pwrite_all(self.direct_fd, data[a - start : b - start], a)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                os.close(self.direct_fd)  # refused after all: buffered from now on
                self.direct_fd = None
            else:
                self.direct_bytes += b - a
                _pwrite_all(self.plain_fd, data[: a - start], start)
                _pwrite_all(self.plain_fd, data[b - start :], b)
                return
        _pwrite_all(self.plain_fd, data, start)
        flush_range(self.plain_fd, start, data.nbytes)  # so the final fsync has little left

    def _drain(self):
        while True:
            item = self.queue.get()
            if item is None:
                self.queue.task_done()
                return
            k, buf, event = item
            try:
                if event is not None:
                    event.synchronize()
                if self.error is None:
                    self._write_at(buf.numpy(), self.rows_offset + k * self.row_bytes)
                    self.rows_written += 1
            except Exception as exc:  # surfaced in put()/drain()/finish() on the main thread
                self.error = self._no_space(exc) if is_no_space(exc) else exc
            finally:
                raw = self._raw_of.pop(buf.data_ptr(), None)
                if raw is not None:
                    self.free.put(raw)
                self.queue.task_done()

    def _no_space(self, exc):
        """The NoSpaceError for a write of this shard that found the disk full: the folder, the shard's size
        and how it adds up, the space free now."""
        itemsize = self.np_dtype.itemsize
        return no_space_error(
            exc,
            self.path,
            "gradient shard",
            shard_bytes(self.n_rows, self.n_params, self.dtype),
            detail=f"{self.n_rows} batches x {self.n_params} parameters x {itemsize} bytes, plus {self.n_params} "
            f"x 8 bytes for their float64 sum, plus a few KB of HDF5 header",
        )

    def _host_row(self, k, dtype, pinned):
        """A host row for row k, at the 4 KiB phase of its place in the file."""
        try:
            raw = self.free.get_nowait()
        except queue.Empty:
            raw = _raw_host(self.row_bytes, pinned)
        row = _at_phase(raw, self.row_bytes, (self.rows_offset + k * self.row_bytes) % ALIGN).view(dtype)
        self._raw_of[row.data_ptr()] = raw
        return row

    # --- the gradient sink -------------------------------------------------------------------------
    def row(self, k, device, dtype, numel):
        """The flat tensor g_k is computed into."""
        if device.type == "cuda":
            if self._device_row is None:
                self._device_row = torch.empty(numel, dtype=dtype, device=device)
            return self._device_row
        return self._host_row(k, dtype, pinned=False)

    def total(self, device, numel):
        """The zeroed float64 running sum of the rows (on the CPU 4 KiB-aligned, so it goes out direct)."""
        if self._total is None:
            if device.type == "cpu":
                self._total = aligned_host(numel * 8).view(torch.float64).zero_()
            else:
                self._total = torch.zeros(numel, dtype=torch.float64, device=device)
        return self._total

    def put(self, k, flat):
        if self.error is not None:
            raise self.error
        if flat.device.type == "cuda":
            buf = self._host_row(k, flat.dtype, pinned=True)
            buf.copy_(flat, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.queue.put((k, buf, event))
        else:
            self.queue.put((k, flat.detach(), None))

    def drain(self):
        """Wait until the writer thread has written every row queued so far; raise its error, if any."""
        self.queue.join()
        if self.error is not None:
            raise self.error

    # --- the end -------------------------------------------------------------------------------------
    def finish(self, layout, records, gradient_sum=None):
        """Wait for every row, write the rows' float64 sum (the one run_epoch accumulated in total(),
        unless `gradient_sum` is given), the layout and the epoch's records, and move the file into place."""
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        if self.rows_written != self.n_rows:
            raise RuntimeError(f"shard {self.tmp}: {self.rows_written} of {self.n_rows} rows written")
        if gradient_sum is None:
            if self._total is None:
                raise ValueError(f"shard {self.tmp}: no gradient_sum (run_epoch fills total(); or pass one)")
            gradient_sum = self._total
        if isinstance(gradient_sum, torch.Tensor) and gradient_sum.device.type != "cpu":
            host = aligned_host(self.n_params * 8).view(torch.float64)
            gradient_sum = host.copy_(gradient_sum)
        total = np.asarray(gradient_sum.numpy() if isinstance(gradient_sum, torch.Tensor) else gradient_sum)
        if total.shape != (self.n_params,):
            raise ValueError(f"shard {self.tmp}: gradient_sum of shape {total.shape}, expected {(self.n_params,)}")
        try:
            self._write_at(np.ascontiguousarray(total, dtype=np.float64), self.sum_offset)
            finish_shard(self.file, layout, records)
            self._close()
            commit(self.tmp, self.path)  # fsync (the page-cache parts; O_DIRECT data is on the device), rename
        except Exception as exc:
            if not is_no_space(exc):
                raise
            raise self._no_space(exc) from exc
        self.finished = True

    def _close(self):
        """Close the HDF5 file and both descriptors; each is closed once, even when closing another fails."""
        file, self.file = self.file, None
        fds, self.plain_fd, self.direct_fd = (self.plain_fd, self.direct_fd), None, None
        try:
            if file is not None:
                file.close()  # flushes HDF5's metadata: may fail on a full disk
        finally:
            for fd in fds:
                if fd is not None:
                    os.close(fd)

    def _abort(self):
        """Drop the half-written shard: nothing under the final name, no temporary file."""
        if self.thread is not None and self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        try:
            self._close()
        except Exception:  # on a full disk HDF5 cannot flush its metadata; the file goes anyway
            pass
        finally:
            discard(self.tmp)


def shard_bytes(k_batches, n_params, dtype):
    """Size of one epoch's gradient shard: K x P values of `dtype` (a torch dtype) plus their float64 sum."""
    return (k_batches * dtype.itemsize + 8) * n_params
