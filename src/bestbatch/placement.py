"""Where a job's uint8 images live while it trains (`data.placement`), and reading batches from there.

- device: one (N, 3, H, W) uint8 tensor on the job's device, as every study had it; a batch is gathered there.
- host: one (N, 3, H, W) uint8 tensor in host memory (pinned on CUDA, so a batch's copy to the GPU is a DMA);
  a batch is gathered on the host and copied to the device. On the CPU it is the device placement.
- mapped: the image set file (data.IMAGE_SET) mapped read-only (numpy.memmap): only the pages of the images a
  batch holds are read, so the set may be larger than host and device memory together. A prefetch thread reads
  the batches in the fixed order's sequence (`expect`) a few ahead of the one being computed, so the read
  overlaps the compute.

Every placement hands the network the very same uint8 values (a batch is images[idx], whichever memory it is
gathered from), and the augmentation and normalisation then run on the device as before: the results are bitwise
the same wherever the set lives (tests/test_placement.py).

`Images` is what make_batch, epoch_pass and evaluate index: images[idx] for an index tensor, images[i:j] for a
slice, each a (B, 3, H, W) uint8 tensor on `images.device`. torch is imported where it is used, so that the cost
model (resources, which plans with PREFETCH_DEPTH) imports this module without it.
"""

import queue
import threading

import numpy as np

PLACEMENTS = ("device", "host", "mapped")  # data.placement, besides auto (resources.data_placement decides)
PREFETCH_DEPTH = 3  # batches read ahead of the one being computed (mapped, host on CUDA)


def _chw(block_hwc):
    """(B, H, W, 3) uint8 numpy -> (B, 3, H, W) uint8 CPU tensor (augment.images_to_tensor on the host)."""
    from .augment import images_to_tensor

    return images_to_tensor(block_hwc, "cpu")


class Images:
    """A data split's images where `placement` puts them; see the module docstring.

    images_hwc: (N, H, W, 3) uint8 numpy (a memmap for mapped). device: the torch device the network runs on."""

    def __init__(self, images_hwc, device, placement="device"):
        import torch

        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        self.device = torch.device(device)
        self.shape = (images_hwc.shape[0], images_hwc.shape[3], images_hwc.shape[1], images_hwc.shape[2])
        self._pin = self.device.type == "cuda"
        if placement == "mapped":
            self._store = images_hwc  # numpy, read a batch at a time
        else:
            host = _chw(images_hwc)
            if placement == "device" or self.device.type == "cpu":
                self._store = host.to(self.device)
            else:
                self._store = host.pin_memory() if self._pin else host
        # whether the images are one tensor on the job's device (indexing them is a gather there)
        self.resident = isinstance(self._store, torch.Tensor) and self._store.device == self.device
        self._ahead = None  # the prefetch: (queue of (idx, tensor), thread, stop event)

    def __len__(self):
        return self.shape[0]

    @property
    def nbytes(self):
        return int(np.prod(self.shape))

    def _read(self, idx):
        """Images idx (an int64 numpy array) as a (B, 3, H, W) uint8 host tensor, pinned on CUDA."""
        import torch

        if isinstance(self._store, torch.Tensor):
            block = self._store.index_select(0, torch.from_numpy(idx))
        else:
            # the file in its own order (fewer seeks), then put back in the batch's
            rank = np.argsort(idx, kind="stable")
            block = np.empty((len(idx), *self._store.shape[1:]), np.uint8)
            block[rank] = self._store[idx[rank]]
            block = _chw(block)
        return block.pin_memory() if self._pin else block

    def _to_device(self, block):
        return block.to(self.device, non_blocking=self._pin)

    def __getitem__(self, key):
        import torch

        if self.resident:
            return self._store[key]
        if isinstance(key, slice):
            return self._to_device(self._read(np.arange(len(self))[key]))
        idx = key.detach().cpu().numpy().astype(np.int64, copy=False) if isinstance(key, torch.Tensor) else key
        idx = np.asarray(idx, dtype=np.int64)
        ahead = self._take_ahead(idx)
        return self._to_device(ahead if ahead is not None else self._read(idx))

    # --- the prefetch --------------------------------------------------------------------------------
    def expect(self, blocks):
        """Read the index arrays `blocks` (the fixed batches in the order they will be asked for) ahead, in a
        thread, up to PREFETCH_DEPTH at a time. A batch asked for out of that sequence is read when it is asked
        for, and the read-ahead stops. Nothing is read ahead where the images are resident on the device."""
        self.close()
        if self.resident:
            return
        q, stop = queue.Queue(PREFETCH_DEPTH), threading.Event()

        def work():
            try:
                for idx in blocks:
                    idx = np.asarray(idx, dtype=np.int64)
                    item = (idx, self._read(idx))
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            except BaseException as exc:  # handed to the consumer, which raises it where it waits
                q.put((None, exc))
            q.put((None, None))  # the sequence is done

        thread = threading.Thread(target=work, name="bestbatch-prefetch", daemon=True)
        thread.start()
        self._ahead = (q, thread, stop)

    def _take_ahead(self, idx):
        if self._ahead is None:
            return None
        q, _, _ = self._ahead
        want, block = q.get()
        if isinstance(block, BaseException):
            self.close()
            raise block
        if want is None or not np.array_equal(want, idx):
            self.close()  # out of sequence: read on demand from here on
            return None
        return block

    def close(self):
        """Stop the read-ahead thread, if any."""
        if self._ahead is None:
            return
        q, thread, stop = self._ahead
        stop.set()
        while thread.is_alive():
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        self._ahead = None


def batches_of(order, batch_size):
    """The fixed batches of `order` as numpy index arrays, in sequence (the last partial batch dropped)."""
    order = order.detach().cpu().numpy() if hasattr(order, "detach") else np.asarray(order)
    k = len(order) // batch_size
    return [order[i * batch_size : (i + 1) * batch_size].astype(np.int64) for i in range(k)]
