"""What each job asks the scheduler for (threads aside): memory, runtime, GPU, from the study's sizes.

Pure arithmetic on numbers the workflow knows before any job runs; `workflow/rules/common.smk`
calls `job_resources` once and hands each rule its entry.
"""

import dataclasses
from dataclasses import dataclass

from .config import num_batches
from .metrics import METRICS

# Per model: the parameter count P with 10 classes and the width of the classifier's input (each
# further class adds width + 1 parameters; a test checks both against the models), and for one
# forward+backward pass of one 32x32 image in float32 the activation memory (MB, measured on CPU,
# torch 2.x) and the time on one CPU core (measured) and on one V100-class GPU without TF32
# (estimated from the FLOPs).
#                 P (10 classes), classifier width, activations MB, CPU core-ms, GPU ms
MODEL_COST = {
    "dpn92": (34_236_634, 2560, 55.0, 2300.0, 4.0),
    "dpn26": (11_574_842, 2432, 30.0, 1400.0, 2.0),
    "resnet18": (11_173_962, 512, 8.0, 240.0, 0.8),
    "small_cnn": (98_970, 128, 0.6, 10.0, 0.05),
    "tiny_mlp": (954, 16, 0.01, 0.5, 0.05),
    "tiny_mlp_bn": (986, 16, 0.01, 0.5, 0.05),
}
PYTHON_MB = 700  # python + torch + h5py imported, measured RSS of a demo job
CUDA_MB = 2500  # host memory of the CUDA runtime, cuDNN and cuBLAS once loaded
MIN_RUNTIME = 10  # minutes: start-up, imports, reading the data, writing the outputs
DISK_MB_PER_S = 100  # a slow shared file system: shards are written and read once
# outputs.gradients: sketch, seconds per gradient value sketched (sketch.SparseProjection at s = 4): measured on
# the CPU (benchmarks/sketch.py, ~0.8 s for ResNet18's 11.2M values on one core under load: an upper figure), and
# on a GPU an estimate (a few int64 passes at memory bandwidth), until the GPU check measures it
SKETCH_S_PER_VALUE = {"cpu": 7e-8, "gpu": 2e-10}
# ... and on the CPU its hash, built once per job before the first batch (measured: ~4 s for ResNet18's 11.2M
# parameters under load, benchmarks/held.py); on a GPU it is recomputed within each projection
SKETCH_HASH_S_PER_PARAM = {"cpu": 4e-7, "gpu": 0.0}
REDUCE_S_PER_VALUE = 5e-9  # the reduction's compiled passes, per value of the K x P rows held in memory
LIGHT_JOB = dict(mem_mb=2000, runtime=MIN_RUNTIME)  # gather, plots, index: seconds of work on small files


@dataclass(frozen=True)
class Study:
    """The sizes a job's cost depends on."""

    model: str
    n_train: int
    n_test: int
    batch_size: int
    value_bytes: int  # 4 (float32) or 8 (float64)
    threads: int
    gpu: bool  # whether training runs on a GPU
    n_classes: int = 10
    probe: tuple = None  # (P, activation MB per image, ms per image on the job's device kind) of a model_cost probe
    gradients: str = "shard"  # outputs.gradients: shard, memory or sketch (gradients.MODES)
    sketch_dim: int = 0  # d, the values of a sketched gradient (outputs.gradients: sketch)
    sketch_nonzeros: int = 4
    gram: bool = True  # outputs.gram: the reductions also form the K x K Gram matrix (K^2 P / 2 multiply-adds)
    image_shape: tuple = (32, 32)  # (H, W) of the images (data.image_size)
    placement: str = "device"  # where a training job keeps the images (data.placement, resolved: data_placement)
    image_set: bool = False  # the images are an image set (decoded and checked through a map of the file)


def data_mb(s):
    """The uint8 images of both splits, MB."""
    return (s.n_train + s.n_test) * 3 * s.image_shape[0] * s.image_shape[1] / 1e6


def resident_data_mb(s):
    """A training job's host memory for its images: the bytes read, their (N, 3, H, W) tensor and a batch's copies
    (3 x the images) where they are resident (device or host placement); where they are mapped, the batches the
    prefetch thread holds and the ones in use (the file's pages are clean page cache, reclaimable)."""
    if s.placement == "mapped":
        from .placement import PREFETCH_DEPTH

        return (PREFETCH_DEPTH + 3) * s.batch_size * 3 * s.image_shape[0] * s.image_shape[1] * 2 / 1e6
    return 3 * data_mb(s)


DEVICE_SHARE = 0.5  # data.placement auto: the images go on the GPU where they take at most this share of its memory


GPU_MEMORY_GB, MAX_JOB_MEMORY_GB = 16, 64  # execution.gpu_memory_gb, execution.max_job_memory_gb left out


def data_placement(
    s, requested="auto", gpu_memory_gb=GPU_MEMORY_GB, max_job_memory_gb=MAX_JOB_MEMORY_GB, can_map=False
):
    """Where the training jobs keep the images (data.placement): `requested` unless it is auto; then device where
    the images fit on the device (on a GPU: at most DEVICE_SHARE of gpu_memory_gb) and a job with them resident asks
    for at most max_job_memory_gb, else host on a GPU where the request still fits, else mapped where the data can be
    mapped (can_map: an image folder, decoded into an image set), else host (device on a CPU). Decided from the data
    alone (the images and the job's base memory), so one placement serves every network of the study."""
    if requested != "auto":
        return requested
    resident_request = mem_mb(_base_mb(s.gpu) + resident_data_mb(dataclasses.replace(s, placement="device"))) / 1000
    fits_host = resident_request <= max_job_memory_gb
    if fits_host and (not s.gpu or data_mb(s) / 1000 <= DEVICE_SHARE * gpu_memory_gb):
        return "device"
    if fits_host or not can_map:
        return "host" if s.gpu else "device"
    return "mapped"


SNAKEMAKE_DISK_MB = 1000  # Snakemake's own disk_mb where a rule sets none: max(2 x its inputs' size, 1000)


def data_disk_mb(s):
    """The disk a training job asks for where its images are mapped: the image set files (which a staging storage
    plugin copies to the job's node) and 5%, at least Snakemake's own floor; 0 (no request of ours: Snakemake's
    default) where they are resident. Stated from the planned sizes because Snakemake's default, twice the
    inputs' size, counts a not yet decoded image set as nothing."""
    if s.placement != "mapped":
        return 0
    return max(SNAKEMAKE_DISK_MB, int(-(-1.05 * data_mb(s) // 250) * 250))


def mem_mb(x):
    """Memory request: 25% headroom, rounded up to 250 MB."""
    return int(-(-1.25 * x // 250) * 250)


def minutes(x):
    """Runtime request: twice the estimate plus start-up, rounded up to 5 minutes."""
    return int(-(-(MIN_RUNTIME + 2 * x) // 5) * 5)


def _base_mb(gpu):
    return PYTHON_MB + (CUDA_MB if gpu else 0)


def model_cost(name):
    if name not in MODEL_COST:
        raise ValueError(
            f"models: no cost figures for model {name!r}; known: {', '.join(sorted(MODEL_COST))} "
            f"(add its parameter count, activation memory and time per image to "
            f"bestbatch.resources.MODEL_COST)"
        )
    return MODEL_COST[name]


def model_params(name, n_classes=10):
    """P, the parameter count of model `name` with an `n_classes`-way output layer."""
    p10, width, *_ = model_cost(name)
    return p10 + (n_classes - 10) * (width + 1)


def job_resources(s):
    """{rule: dict(mem_mb, runtime, gpu)}, and for `ordering` {metric: dict(...)}, for study sizes `s`."""
    if s.probe is not None:  # a model outside the table: its own measured figures
        n_params, act_mb, cpu_ms = s.probe
        gpu_ms = cpu_ms
    else:
        _, _, act_mb, cpu_ms, gpu_ms = model_cost(s.model)
        n_params = model_params(s.model, s.n_classes)
    k = num_batches(s.n_train, s.batch_size)
    images_mb = resident_data_mb(s)  # what the images take in a training job's host memory
    shard_mb = k * n_params * s.value_bytes / 1e6  # one epoch's K x P gradients
    held = held_gradients(s, k, n_params)
    # train_epoch: two nets (trained and frozen), their gradients, the momentum, the flat g_k being
    # copied plus the rows queued for the shard writer (depth 3), the checkpoint read and the one
    # written, all of P values; the float64 running sum of the g_k; the data set (bytes, tensor,
    # batch copies); and, on CPU, one batch of activations (one net at a time).
    train_mem = mem_mb(
        _base_mb(s.gpu)
        + images_mb
        + n_params * (12 * s.value_bytes + 8) / 1e6
        + (0 if s.gpu else act_mb * s.batch_size * s.value_bytes / 4)
        + held["mb"]
    )
    # two forward+backward passes per image (the trained net and the frozen one), the test set once
    per_image_ms = gpu_ms if s.gpu else cpu_ms * s.value_bytes / 4 / s.threads
    train_runtime = minutes(((2 * s.n_train + s.n_test / 3) * per_image_ms / 1000 + held["seconds"]) / 60)
    # The parallel layout's halves. train_only: one net, its gradients and momentum, the checkpoint read and
    # the one written; one forward+backward pass per image and the test set once. compare_epoch: the frozen
    # net and its gradients, the rows queued for the shard writer (depth 3), the float64 sum; one pass per
    # image and the shard written.
    one_net_mem = _base_mb(s.gpu) + images_mb + (0 if s.gpu else act_mb * s.batch_size * s.value_bytes / 4)
    train_only = dict(
        mem_mb=mem_mb(one_net_mem + n_params * 5 * s.value_bytes / 1e6),
        runtime=minutes(((s.n_train + s.n_test / 3) * per_image_ms / 1000) / 60),
        gpu=int(s.gpu),
    )
    compare = dict(
        mem_mb=mem_mb(one_net_mem + n_params * (6 * s.value_bytes + 8) / 1e6 + held["mb"]),
        runtime=minutes((s.n_train * per_image_ms / 1000 + held["seconds"]) / 60),
        gpu=int(s.gpu),
    )
    # reduce_epoch: the shard is memory-mapped (clean page cache, reclaimable under the job's limit) and
    # only a 4 MiB block of g_bar per thread is allocated; the request leaves room for a row's and the sum's
    # worth of mapped pages
    reduce = dict(
        mem_mb=mem_mb(_base_mb(False) + n_params * (s.value_bytes + 16) / 1e6 + 100),
        # the Gram matrix (outputs.gram): K^2 P / 2 float64 multiply-adds, at a BLAS-bound 5e9 a second
        runtime=minutes((shard_mb / DISK_MB_PER_S + reduce_seconds(s, k, n_params)) / 60),
        gpu=0,
    )
    # ordering: per image, ms on one CPU core / on the GPU, measured at 32 x 32 and scaled by the pixels; memory
    # up to 12 bytes per image byte (float64 greyscale or mean image, per-worker chunks), of at most 2,000 images
    # at a time where the set is an image set (mapped by the ordering job; the metrics read it in chunks)
    ordering = {}
    pixels = s.image_shape[0] * s.image_shape[1] / (32 * 32)
    scored_mb = min(data_mb(s), 2000 * 3 * 1024 * pixels / 1e6) if s.image_set else data_mb(s)
    for name, metric in METRICS.items():
        on_gpu = s.gpu and metric.uses_gpu
        per_image = (metric.cost_ms[1] if on_gpu else metric.cost_ms[0] / s.threads) * pixels
        ordering[name] = dict(
            mem_mb=mem_mb(_base_mb(on_gpu) + 12 * scored_mb),
            runtime=minutes(s.n_train * per_image / 1000 / 60),
            gpu=int(on_gpu),
        )
    # the data jobs: the images as bytes, arrays and pickles; an image set is decoded one image at a time into a map
    # of its file and checked through one (its pages are page cache), so 500 MB covers the decoder and a chunk
    data_job = dict(
        mem_mb=mem_mb(_base_mb(False) + (500 if s.image_set else 4 * data_mb(s))), runtime=MIN_RUNTIME, gpu=0
    )
    # complete_epoch (parallel layout, gradients held in memory or sketched): two small files merged
    complete = dict(mem_mb=mem_mb(_base_mb(False) + 3 * k * k * 8 / 1e6), runtime=MIN_RUNTIME, gpu=0)
    return {
        "train_epoch": dict(mem_mb=train_mem, runtime=train_runtime, gpu=int(s.gpu)),
        "train_only": train_only,
        "compare_epoch": compare,
        "reduce_epoch": reduce,
        "complete_epoch": complete,
        # init_model: the model and its checkpoint
        "init_model": dict(
            mem_mb=mem_mb(_base_mb(False) + 3 * n_params * s.value_bytes / 1e6), runtime=MIN_RUNTIME, gpu=0
        ),
        # synthetic_dataset, verify_dataset: the images as bytes, arrays and pickles
        "synthetic_dataset": data_job,
        "verify_dataset": data_job,
        "ordering": ordering,
    }


def reduce_seconds(s, k, n_params):
    """The reduction's compute for K rows of P values: its compiled passes, and with the Gram matrix (s.gram) K^2 P / 2
    multiply-adds at a BLAS-bound 5e9 a second."""
    return k * n_params * REDUCE_S_PER_VALUE + (k * k * n_params / 2 / 5e9 if s.gram else 0.0)


def held_gradients(s, k, n_params):
    """What holding one epoch's gradients adds to the job that forms them (outputs.gradients): {"mb": host
    memory, "seconds": time, "scratch_mb": bytes on disk while the epoch runs}.

    shard: the rows written to disk (read back by reduce_epoch, priced there). memory: the K x P rows and their
    float64 sum in host memory, reduced in the job (one compiled pass per value; the Gram matrix's K / 2
    multiply-adds per value at a BLAS-bound 5e9 a second). sketch: d float64 values per row, the CPU's hash
    cache (4 s P bytes), the projection's time per value (SKETCH_S_PER_VALUE) for every batch and the hash's
    (SKETCH_HASH_S_PER_PARAM) once, and the reduction of the K x d sketches."""
    rows_mb = k * n_params * s.value_bytes / 1e6
    if s.gradients == "memory":  # what the job checks it can hold before its first batch (gradients.check_memory)
        from .gradients import memory_bytes

        seconds = reduce_seconds(s, k, n_params)
        return dict(mb=memory_bytes(k, n_params, s.value_bytes) / 1e6, seconds=seconds, scratch_mb=0.0)
    if s.gradients == "sketch":
        sketch_mb = k * s.sketch_dim * 8 / 1e6
        hash_mb = 0 if s.gpu else 4 * s.sketch_nonzeros * n_params / 1e6
        # the projection of every value, and the reduction of the K x d sketches (their Gram matrix: K^2 d / 2)
        device = "gpu" if s.gpu else "cpu"
        seconds = n_params * (k * SKETCH_S_PER_VALUE[device] + SKETCH_HASH_S_PER_PARAM[device]) + reduce_seconds(
            s, k, s.sketch_dim
        )
        return dict(mb=sketch_mb + hash_mb, seconds=seconds, scratch_mb=0.0)
    return dict(mb=0.0, seconds=rows_mb / DISK_MB_PER_S, scratch_mb=rows_mb + 8 * n_params / 1e6)


def select_chunk_resources(s, chunk_epochs, arms=1):
    """A selection job's request: `chunk_epochs` epoch-equivalents of plain training (one forward and
    backward pass per image, the test set once per epoch-equivalent) for each of `arms` arms trained one
    after another (execution.selection_jobs: seed); memory as train_epoch (one arm at a time), an upper bound."""
    cpu_ms = gpu_ms = s.probe[2] if s.probe is not None else None
    if s.probe is None:
        _, _, _, cpu_ms, gpu_ms = model_cost(s.model)
    per_image_ms = gpu_ms if s.gpu else cpu_ms * s.value_bytes / 4 / s.threads
    epoch_minutes = (s.n_train + s.n_test / 3) * per_image_ms / 1000 / 60
    return dict(
        mem_mb=job_resources(s)["train_epoch"]["mem_mb"],
        runtime=minutes(arms * chunk_epochs * epoch_minutes),
        gpu=int(s.gpu),
    )


def probe_model_cost(model, num_classes, device="cpu", batch=8, repeats=3, import_paths=(), image_shape=(32, 32)):
    """Measure what MODEL_COST holds for a model outside it (cheap: a few passes on one small batch of
    `image_shape` (H, W) images, the study's size): the parameter count P, the activation memory of one image's
    forward pass (the bytes autograd saves for the backward pass, per image) and the time of one image's
    forward+backward pass in float32 on `device` (one CPU thread, as the table's core-ms; the best of `repeats`).
    Returns a JSON-able dict (with the image size where it is not 32 x 32)."""
    import time

    import torch
    import torch.nn.functional as F

    from .models import build_model, model_spec

    device = torch.device(device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        net = build_model(model, num_classes, seed=0, import_paths=import_paths).to(device).train()
        x = torch.randn(batch, 3, *(int(v) for v in image_shape), device=device)
        y = torch.arange(batch, device=device) % num_classes
        saved = []

        def pack(t):
            saved.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        times = []
        for _ in range(repeats):
            net.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            F.cross_entropy(net(x), y).backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return dict(
        model=model_spec(model).describe(),
        num_classes=num_classes,
        device=device.type,
        params=int(sum(p.numel() for p in net.parameters())),
        activation_mb=sum(saved) / batch / 1e6,
        ms_per_image=1000 * min(times) / batch,
        **({} if tuple(image_shape) == (32, 32) else {"image_shape": [int(v) for v in image_shape]}),
    )


def probe_figures(probe):
    """The (P, activation MB, ms per image) a Study takes from probe_model_cost's dict."""
    return (int(probe["params"]), float(probe["activation_mb"]), float(probe["ms_per_image"]))
