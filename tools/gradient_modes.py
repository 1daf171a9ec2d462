#!/usr/bin/env python3
"""Print docs/slurm.md's table of what each outputs.gradients mode costs, from the cost model (estimates).

    PYTHONPATH=src .venv/bin/python tools/gradient_modes.py

Two studies of five metrics each: the paper's (DPN92, CIFAR-10, 50,000 images, batch 256, K = 195, 150 epochs, on a GPU) and ResNet-50 on
ImageNet (P = 25,557,032, 1,281,167 images, batch 256, K = 5,004, 90 epochs, on a GPU; its time per image, 1.5 ms for a
forward and backward pass on one GPU without TF32, is an assumption: bestbatch.resources has no ResNet-50 row).
Per epoch of one chain (one model, seed and metric): the scratch disk held while it runs, the host memory that
holding the gradients adds to the training job, the seconds holding them adds to that job (the shard's disk
write at 100 MB/s, serial as the requests assume though a writer thread overlaps it; for memory and sketch the
reduction the job runs itself: its passes, the Gram matrix (outputs.gram: true, K^2 P / 2 multiply-adds at 5e9
a second), the sketch's projection), the shard path's reduce_epoch job (on a CPU, beside the chain), and the
GPU-hours of the whole study (epochs x metrics chains of the training job: two passes per image plus that).
All are estimates from bestbatch.resources.held_gradients, not measurements.
"""

from bestbatch.config import num_batches
from bestbatch.gradients import sketch_settings
from bestbatch.resources import DISK_MB_PER_S, MODEL_COST, Study, held_gradients, model_params, reduce_seconds

STUDIES = {
    "paper (DPN92, CIFAR-10)": dict(
        study=dict(model="dpn92", n_train=50_000, n_test=10_000), params=None, gpu_ms=MODEL_COST["dpn92"][4], chains=750
    ),
    "ResNet-50, ImageNet": dict(
        study=dict(model="resnet50", n_train=1_281_167, n_test=50_000), params=25_557_032, gpu_ms=1.5, chains=450
    ),
}


def rows():
    out = []
    for name, spec in STUDIES.items():
        base = dict(spec["study"], batch_size=256, value_bytes=4, threads=8, gpu=True)
        k = num_batches(base["n_train"], 256)
        n_params = spec["params"] or model_params(base["model"])
        settings = sketch_settings(k, eps=0.05)
        passes = (2 * base["n_train"] + base["n_test"] / 3) * spec["gpu_ms"] / 1000
        for mode, gram in (("shard", True), ("memory", True), ("memory", False), ("sketch", True)):
            s = Study(**base, gradients=mode, sketch_dim=settings["dim"], gram=gram)
            held = held_gradients(s, k, n_params)
            # the shard's reduce_epoch job, on a CPU: the shard read back, its passes and Gram matrix
            reduce_job = held["scratch_mb"] / DISK_MB_PER_S + reduce_seconds(s, k, n_params) if mode == "shard" else 0
            label = f"{mode}, sketch d = {settings['dim']:,} (within 5% w.p. 0.95)" if mode == "sketch" else mode
            out.append(
                (
                    name,
                    label + ("" if gram else ", outputs.gram: false"),
                    f"{held['scratch_mb'] / 1e3:,.1f} GB",
                    f"{held['mb'] / 1e3:,.2f} GB",
                    f"{held['seconds']:,.0f} s",
                    f"{reduce_job:,.0f} s" if reduce_job else "none",
                    f"{(passes + held['seconds']) * spec['chains'] / 3600:,.0f}",
                )
            )
    return out


def main():
    print(
        "| study | outputs.gradients | scratch disk per running epoch | host memory added to the training job | "
        "time added to the training job, per epoch | reduce_epoch job (CPU), per epoch | GPU-hours of the study |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows():
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
