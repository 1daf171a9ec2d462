import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from bestbatch.config import ConfigError, num_batches, train_size, validate_config
from bestbatch.resume import release_stale_locks


try:
    CONFIG = validate_config(config)
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None

# A run killed by SIGKILL (pre-emption, OOM killer) leaves its locks: the same command resumes anyway.
if workflow.is_main_process and (_stale := release_stale_locks()):
    logger.warning(f"Removed {len(_stale)} stale lock(s) of a killed run (no Snakemake process runs here).")

STUDY = CONFIG["study"]
R = f"results/{STUDY}"
L = f"logs/{STUDY}"
B = f"results/{STUDY}/benchmarks"
METRICS = CONFIG["metrics"]
EPOCHS = CONFIG["training"]["epochs"]
K = num_batches(CONFIG)
USES_GPU = CONFIG["training"]["device"] != "cpu"


wildcard_constraints:
    metric="|".join(METRICS),
    epoch=r"[1-9][0-9]*",


def previous_checkpoint(wildcards):
    epoch = int(wildcards.epoch)
    if epoch == 1:
        return f"{R}/checkpoints/init.pt"
    return f"{R}/{wildcards.metric}/checkpoints/epoch_{epoch - 1}.pt"


def maybe_temp(path, keep):
    return path if keep else temp(path)


# --- what a job costs, sized from the config (model, batch size, data set, device) ----------------
# Per model: the parameter count P (tests/test_slurm.py checks it against the models), and for one
# forward+backward pass of one 32x32 image in float32 the activation memory (MB, measured on CPU,
# torch 2.x) and the time on one CPU core (measured) and on one V100-class GPU without TF32
# (estimated from the FLOPs).
#                 P,          activations MB, CPU core-ms, GPU ms
MODEL_COST = {
    "dpn92": (34_236_634, 55.0, 2300.0, 4.0),
    "dpn26": (11_574_842, 30.0, 1400.0, 2.0),
    "resnet18": (11_173_962, 8.0, 240.0, 0.8),
    "small_cnn": (98_970, 0.6, 10.0, 0.05),
    "tiny_mlp": (954, 0.01, 0.5, 0.05),
    "tiny_mlp_bn": (986, 0.01, 0.5, 0.05),
}
PYTHON_MB = 700  # python + torch + h5py imported, measured RSS of a demo job
CUDA_MB = 2500  # host memory of the CUDA runtime, cuDNN and cuBLAS once loaded
MIN_RUNTIME = 10  # minutes: start-up, imports, reading the data, writing the outputs
DISK_MB_PER_S = 100  # a slow shared file system: shards are written and read once


N_TRAIN = train_size(CONFIG)
N_TEST = CONFIG["data"]["synthetic"]["n_test"] if CONFIG["data"]["source"] == "synthetic" else 10_000
N_PARAMS, ACT_MB, CPU_MS, GPU_MS = MODEL_COST.get(CONFIG["model"]["name"], MODEL_COST["dpn92"])
VALUE_BYTES = 8 if CONFIG["training"]["dtype"] == "float64" else 4
THREADS = CONFIG["training"]["threads"]
DATA_MB = (N_TRAIN + N_TEST) * 3 * 32 * 32 / 1e6  # the uint8 images
SHARD_MB = K * N_PARAMS * VALUE_BYTES / 1e6  # one epoch's K x P gradients


def _mb(x):
    """Memory request: 25% headroom, rounded up to 250 MB."""
    return int(-(-1.25 * x // 250) * 250)


def _minutes(x):
    """Runtime request: twice the estimate plus start-up, rounded up to 5 minutes."""
    return int(-(-(MIN_RUNTIME + 2 * x) // 5) * 5)


def _base_mb(gpu):
    return PYTHON_MB + (CUDA_MB if gpu else 0)


# train_epoch: two nets (trained and frozen), their gradients, the momentum, the flat g_k being
# copied plus the rows queued for the shard writer (depth 3), the checkpoint read and the one
# written, all of P values; the float64 running sum of the g_k; the data set (bytes, tensor,
# batch copies); and, on CPU, one batch of activations (one net at a time).
TRAIN_MEM_MB = _mb(_base_mb(USES_GPU) + 3 * DATA_MB + N_PARAMS * (12 * VALUE_BYTES + 8) / 1e6
                   + (0 if USES_GPU else ACT_MB * CONFIG["training"]["batch_size"] * VALUE_BYTES / 4))
# two forward+backward passes per image (the trained net and the frozen one), the test set once
TRAIN_RUNTIME = _minutes(
    ((2 * N_TRAIN + N_TEST / 3) * (GPU_MS if USES_GPU else CPU_MS * VALUE_BYTES / 4 / THREADS) / 1000
     + SHARD_MB / DISK_MB_PER_S) / 60)
# reduce_epoch: the shard is memory-mapped (clean page cache, reclaimable under the job's limit) and only a
# 4 MiB block of g_bar is allocated; the request leaves room for a row's and the sum's worth of mapped pages
REDUCE_MEM_MB = _mb(_base_mb(False) + N_PARAMS * (VALUE_BYTES + 16) / 1e6 + 100)
REDUCE_RUNTIME = _minutes((SHARD_MB / DISK_MB_PER_S + K * N_PARAMS * 5e-9) / 60)
# init_model: the model and its checkpoint
INIT_MEM_MB = _mb(_base_mb(False) + 3 * N_PARAMS * VALUE_BYTES / 1e6)
# synthetic_dataset, verify_dataset: the images as bytes, arrays and pickles
DATA_JOB_MEM_MB = _mb(_base_mb(False) + 4 * DATA_MB)
# ordering: per image, ms on one CPU core / on the GPU; memory up to 12 bytes per image byte
# (float64 greyscale or mean image, per-worker chunks)
ORDERING_MS = {"intensity": (0.01, 0.01), "color": (0.05, 0.05), "edges": (2.0, 2.0), "lpips": (5.0, 0.2),
               "random": (0.001, 0.001)}


def ordering_gpu(metric):
    return int(USES_GPU and metric == "lpips")


def ordering_mem_mb(wildcards):
    return _mb(_base_mb(ordering_gpu(wildcards.metric)) + 12 * DATA_MB)


def ordering_runtime(wildcards):
    cpu_ms, gpu_ms = ORDERING_MS.get(wildcards.metric, (5.0, 5.0))
    per_image = gpu_ms if ordering_gpu(wildcards.metric) else cpu_ms / THREADS
    return _minutes(N_TRAIN * per_image / 1000 / 60)


# --- job groups: fewer cluster submissions (ignored when Snakemake runs the jobs itself) ---------
# `--group-components epochs=N` (profiles/slurm sets it) puts N consecutive epochs of one metric,
# train_epoch and reduce_epoch, into one cluster job; the first bundle also carries the metric's
# ordering. The data set and the initial model are one job, "prepare". Without the setting, N = 1.
def epochs_per_job():
    # read when the jobs are made: Snakemake sets the group settings after parsing the Snakefile
    settings = getattr(workflow, "group_settings", None)
    n = settings.group_components.get("epochs", 1) if settings is not None else 1
    return max(1, int(n))


def epochs_group_name(metric, epoch):
    n = epochs_per_job()
    first = (int(epoch) - 1) // n * n + 1
    return f"epochs_{metric}_{first}-{min(first + n - 1, EPOCHS)}"


def epochs_group(wildcards):
    if workflow.remote_exec:
        # inside a cluster job, which does not see the setting: its jobs stay one group, so they run
        # as one step and overlap (reduce_epoch e beside train_epoch e+1) as the request assumed
        return "epochs"
    return epochs_group_name(wildcards.metric, getattr(wildcards, "epoch", 1))
