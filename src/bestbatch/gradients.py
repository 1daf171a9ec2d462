"""Where one epoch's batch gradients are held until they are reduced: the config's `outputs.gradients`.

shard   (the default) The K x P rows go to an HDF5 file on disk as they are formed (shards.ShardWriter); a
        reduce_epoch job reads it once. Scratch: K P bytes-per-value a running epoch.
memory  The rows stay in the job's host memory as they are formed (MemoryRows: on the CPU g_k is computed
        straight into its row; on CUDA it is copied there) and the same job reduces them with the same
        reduction (distances.reduce_rows, the shard path's threads and BLAS threads), so every value of the
        epoch file is bitwise the shard path's. No shard, no reduce_epoch job; the job asks for K P
        bytes-per-value more memory (resources.job_resources) and refuses to start where that cannot fit
        (check_memory), naming the bytes.
sketch  Each g_k is projected as it is formed to d values by a seeded sparse random projection
        (sketch.SparseProjection); the K x d sketches are reduced in the same job by the same reduction. The
        distances, norms, cosines and Gram matrix are then estimates, within the relative error that
        sketch_settings states (with probability 1 - delta over the projection's seed); per-tensor distances
        are not sketched (the epoch file holds the whole vector as one tensor). The settings are recorded in
        each epoch file and in distances.h5 (`sketch`), and the pages print the bound.
"""

import logging
from pathlib import Path

import numpy as np

from .distances import NonFiniteGradient, blas_threads, reduce_rows
from .sketch import sketch_bound, sketch_dim

log = logging.getLogger("bestbatch")

MODES = ("shard", "memory", "sketch")
# what the reduce_epoch rule grants the shard path's reduction (distances.smk: min(2, training.threads)); the
# memory path reduces with as many threads and BLAS threads, so that the numpy path's BLAS products (whose bits
# depend on their thread count) give the shard path's bits
REDUCE_THREADS = 2
# the bound's family: every distance among g_1 .. g_K and g_bar (sketch.n_lengths), and its failure probability
SKETCH_FAMILY, SKETCH_DELTA = "pairs", 0.05


def reduce_threads(threads):
    """The reduction's threads for a job of `threads` (reduce_epoch's grant: min(REDUCE_THREADS, threads))."""
    return max(1, min(REDUCE_THREADS, int(threads)))


# --- memory ------------------------------------------------------------------------------------------


def memory_bytes(k_batches, n_params, value_bytes):
    """Host bytes the memory mode holds for one epoch: the K x P rows (of value_bytes each) and their float64
    sum (resources.job_resources adds them to the training job's request)."""
    return int(k_batches) * int(n_params) * int(value_bytes) + 8 * int(n_params)


def _cgroup_free(root=Path("/sys/fs/cgroup")):
    """Bytes the job's cgroup may still allocate (its limit less its usage), or None without a limit."""
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),  # cgroup v2
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),  # v1
    ):
        try:
            limit = (root / limit_file).read_text().strip()
            usage = int((root / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 1 << 60:
            return None
        return int(limit) - usage
    return None


def available_memory():
    """Bytes this job can still take: the machine's MemAvailable, or less where its cgroup (SLURM's limit) says
    so."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    free = _cgroup_free()
    if free is not None:
        available = free if available is None else min(available, free)
    return available


def check_memory(need_bytes, k_batches, n_params, value_bytes, available=None):
    """Refuse the memory mode where its rows cannot fit, naming the bytes (available None: available_memory();
    unknown: allowed)."""
    available = available_memory() if available is None else available
    if available is not None and need_bytes > available:
        raise MemoryError(
            f"outputs.gradients: memory needs {need_bytes / 1e9:.2f} GB of host memory for one epoch's gradients "
            f"(K = {k_batches} batches x P = {n_params} parameters x {value_bytes} bytes, plus P float64 for their "
            f"sum) and this job can take {available / 1e9:.2f} GB; give the job more memory (the SLURM request "
            "follows resources.job_resources) or use outputs.gradients: shard or sketch"
        )
    log.info("gradients in memory: %.3f GB of %s", need_bytes / 1e9, _gb(available))


def _gb(n):
    return "unknown" if n is None else f"{n / 1e9:.1f} GB available"


class MemoryRows:
    """run_epoch's gradient sink (the protocol of training.KeepLast) that keeps all K rows in host memory.

    On the CPU row(k) is row k itself: g_k is concatenated straight into it, nothing is copied. On CUDA g_k is
    formed in one reused device row and put() copies it into row k (a synchronous copy into pageable memory:
    pinning K x P bytes would round them up to a power of two in torch's host allocator). The float64 running sum
    is the engine's, on its device, as the shard path keeps it."""

    def __init__(self, n_rows, n_params, dtype):
        import torch

        from .training import KeepLast

        self.rows = torch.empty((n_rows, n_params), dtype=dtype)
        self.put_rows = np.zeros(n_rows, dtype=bool)
        self._device = KeepLast()  # the reused device row (CUDA) and the float64 sum

    def row(self, k, device, dtype, numel):
        if device.type == "cpu":
            return self.rows[k]
        return self._device.row(k, device, dtype, numel)

    def total(self, device, numel):
        return self._device.total(device, numel)

    def put(self, k, g):
        if g.device.type != "cpu":
            self.rows[k].copy_(g)
        self.put_rows[k] = True

    def arrays(self):
        """(rows (K, P) numpy view, float64 sum (P,)) once every row was put."""
        missing = np.flatnonzero(~self.put_rows)
        if missing.size:
            raise RuntimeError(f"gradients in memory: rows {missing[:5].tolist()} were never formed")
        return self.rows.numpy(), self._device.sum.cpu().numpy()


def reduce_memory(sink, layout, *, threads, gram, progress=None):
    """The shard path's reduction (distances.reduce_shard) of the rows in `sink` (MemoryRows), per tensor of
    `layout` ([(name, shape, offset)]): bitwise the same values, with layer_name."""
    rows, total = sink.arrays()
    names = np.array([name for name, _, _ in layout], dtype=object)
    offsets = np.array([offset for _, _, offset in layout], dtype=np.int64)
    n = reduce_threads(threads)
    with blas_threads(n):
        result = reduce_rows(rows, total, progress, layer_offsets=offsets, threads=n, gram=gram)
    return dict(result, layer_name=names)


# --- sketch -----------------------------------------------------------------------------------------


def sketch_settings(k_batches, *, eps=None, dim=None, seed=0, nonzeros=4, delta=SKETCH_DELTA):
    """What a sketched epoch records: its projection (dim, seed, nonzeros) and the bound the pages print.

    dim: the sketch's length, or None for the smallest that bounds every distance among g_1 .. g_K and g_bar
    within relative `eps` (sketch.sketch_dim). The bound `eps` stated is sketch.sketch_bound's at that dim:
    with probability >= 1 - delta over the seed, every one of those distances is within relative eps (the
    Gaussian tail, which the sparse projection meets for gradients spread over many coordinates)."""
    if dim is None:
        if eps is None:
            raise ValueError("outputs.sketch_dim or outputs.sketch_eps: one of them sets the sketch's length")
        dim = sketch_dim(k_batches, eps, delta=delta, family=SKETCH_FAMILY)
    dim = max(int(dim), int(nonzeros))
    bound = sketch_bound(k_batches, dim, delta=delta, family=SKETCH_FAMILY, nonzeros=nonzeros)
    return dict(
        dim=dim,
        seed=int(seed),
        nonzeros=int(nonzeros),
        delta=float(delta),
        family=SKETCH_FAMILY,
        eps=float(bound["eps"]),
        batches=int(k_batches),
    )


def sketch_statement(settings):
    """What a page prints beside a sketched matrix (sketch.sketch_bound's statement, with the seed); "" for
    exact gradients (settings None)."""
    if not settings:
        return ""
    bound = sketch_bound(
        settings["batches"],
        settings["dim"],
        delta=settings["delta"],
        family=settings["family"],
        nonzeros=settings["nonzeros"],
    )
    return f"{bound['text']} Projection seed {settings['seed']}; per-tensor distances are not sketched."


def unresolved_epochs(epochs, distance, settings):
    """The epochs (of `epochs`, rows of the E x K `distance`) whose sketched distances spread less, std / mean
    within the epoch, than the bound: there the sketch's error can reorder the batches, and it did on ResNet18's
    first epoch (benchmarks/results.md). An empty list for exact gradients (settings None)."""
    if not settings:
        return []
    d = np.asarray(distance, dtype=np.float64)
    spread = d.std(axis=1) / d.mean(axis=1)
    return [int(e) for e, s in zip(epochs, spread) if not s > settings["eps"]]


def unresolved_statement(epochs, distance, settings):
    """What a page adds where unresolved_epochs finds some; "" otherwise."""
    low = unresolved_epochs(epochs, distance, settings)
    if not low:
        return ""
    shown = ", ".join(str(e) for e in low[:12]) + (f" and {len(low) - 12} more" if len(low) > 12 else "")
    return (
        f" In epoch{'s' if len(low) > 1 else ''} {shown} the batches' distances spread less (std / mean within the "
        f"epoch) than the bound: their order within {'those epochs' if len(low) > 1 else 'that epoch'} is not "
        "resolved by the sketch."
    )


def make_sketch_sink(settings, n_params, n_rows, device):
    """A sketch.SketchSink of `settings` for rows of n_params values on `device` (its hash built there once)."""
    from .sketch import SketchSink, SparseProjection

    projection = SparseProjection(n_params, settings["dim"], seed=settings["seed"], nonzeros=settings["nonzeros"])
    projection.codes(0, 0, device)  # on the CPU the hash of every coordinate, built here once; on CUDA nothing
    return SketchSink(projection, n_rows)


def reduce_sketch(sink, *, threads, gram, progress=None):
    """sketch.reduce_sketches of the K sketched rows in `sink` (the same reduction, as estimates; no per-tensor
    distances), with the shard path's threads and BLAS threads."""
    from .sketch import reduce_sketches

    missing = np.flatnonzero(~sink.formed)
    if missing.size:
        raise RuntimeError(f"sketched gradients: rows {missing[:5].tolist()} were never formed")
    n = reduce_threads(threads)
    with blas_threads(n):
        try:
            return reduce_sketches(sink.rows, gram=gram, threads=n, progress=progress)
        except NonFiniteGradient as exc:  # a g_k with NaN or inf sketches to a row of NaN
            raise NonFiniteGradient(f"sketched gradients: {exc}") from None
