#!/usr/bin/env python3
"""Print docs/design.md's table: where data.placement: auto puts ImageNet at 224 px for ResNet-50, on a few
typical GPU nodes, and what the training jobs then ask for and can be expected to do (estimates, from the cost
model; nothing here is measured).

    PYTHONPATH=src .venv/bin/python tools/placement_estimate.py

The study: ResNet-50 (P = 25,557,032; a model_cost probe at 224 px would measure its activations and time; here
assumed: 1.5 ms for a forward and backward pass of one image on one GPU without TF32, as tools/gradient_modes.py
assumes, and 100 MB of activations per image) on ImageNet-1k decoded at data.image_size: 224 (1,281,167 training
and 50,000 test images, 150,528 bytes each: 201 GB of uint8), batch 256, float32, outputs.gradients: sketch.
Per node: the placement bestbatch.resources.data_placement picks (execution.gpu_memory_gb, execution.
max_job_memory_gb), the training job's memory and disk requests (bestbatch.resources.job_resources,
data_disk_mb), the images a second Algorithm 1 can process when the GPU is the bound (two passes per image),
and the read bandwidth the data path then needs (mapped: random reads of one image, 147 KiB, each).
"""

import dataclasses

from bestbatch.config import num_batches
from bestbatch.gradients import sketch_settings
from bestbatch.resources import Study, data_disk_mb, data_mb, data_placement, job_resources

GPU_MS = 1.5  # ResNet-50, one image, forward and backward, one GPU, no TF32 (an assumption, as in gradient_modes.py)
ACTIVATION_MB = 100.0  # ResNet-50 at 224 px, per image, float32 (an assumption; a probe would measure it)
NODES = (  # (name, the GPU's memory in GB, the most host memory one job may ask for in GB)
    ("V100 16 GB, 64 GB a job (execution defaults)", 16, 64),
    ("A100 40 GB, 128 GB a job", 40, 128),
    ("A100 80 GB, 256 GB a job", 80, 256),
    ("H100 80 GB, 1 TB a job", 80, 1024),
)


def study(placement="device"):
    n_train, n_test, batch = 1_281_167, 50_000, 256
    k = num_batches(n_train, batch)
    return Study(
        model="resnet50",
        n_train=n_train,
        n_test=n_test,
        batch_size=batch,
        value_bytes=4,
        threads=8,
        gpu=True,
        n_classes=1000,
        probe=(25_557_032, ACTIVATION_MB, GPU_MS),
        gradients="sketch",
        sketch_dim=sketch_settings(k, eps=0.05)["dim"],
        image_shape=(224, 224),
        placement=placement,
        image_set=True,
    )


def rows():
    out = []
    base = study()
    images_per_s = 1000 / (2 * GPU_MS)  # two passes per image (net_normal's step, net_compare's gradient)
    for name, gpu_gb, job_gb in NODES:
        placement = data_placement(base, gpu_memory_gb=gpu_gb, max_job_memory_gb=job_gb, can_map=True)
        s = dataclasses.replace(base, placement=placement)
        request = job_resources(s)["train_epoch"]
        read = images_per_s * 3 * 224 * 224 / 1e6 if placement == "mapped" else 0.0
        out.append(
            (
                name,
                placement,
                f"{request['mem_mb'] / 1000:,.0f} GB",
                f"{data_disk_mb(s) / 1000:,.0f} GB" if data_disk_mb(s) else "Snakemake's default",
                f"{read:,.0f} MB/s of 147 KiB random reads" if read else "none (resident)",
            )
        )
    epoch_h = (2 * base.n_train + base.n_test / 3) * GPU_MS / 1000 / 3600
    return out, data_mb(base), images_per_s, epoch_h


def main():
    table, total_mb, images_per_s, epoch_h = rows()
    print(
        f"ImageNet at 224 px: {total_mb / 1000:,.0f} GB of uint8 images (both splits); at {GPU_MS} ms a pass the GPU "
        f"bounds Algorithm 1 at {images_per_s:,.0f} images/s, {epoch_h:.1f} h an epoch. Estimates, not measurements."
    )
    print()
    print(
        "| node | data.placement: auto | train_epoch memory request | its disk request | reads the data path must sustain |"
    )
    print("|---|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
