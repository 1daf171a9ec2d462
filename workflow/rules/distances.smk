rule reduce_epoch:
    input:
        **PROBE_INPUT,
        shard=f"{RUN}/{{metric}}/shards/epoch_{{epoch}}.h5",
        training=[f"{RUN}/{{metric}}/records/epoch_{{epoch}}.h5"] if PARALLEL else [],
    output:
        f"{RUN}/{{metric}}/epochs/epoch_{{epoch}}.h5",
    log:
        f"{L}/{{model}}/seed_{{seed}}/{{metric}}/reduce_epoch_{{epoch}}.log",
    benchmark:
        f"{B}/{{model}}/seed_{{seed}}/{{metric}}/reduce_epoch_{{epoch}}.tsv"
    group:
        compare_group if PARALLEL else epochs_group
    conda:
        "../../envs/analysis.yaml"
    # the reduction splits its parameter blocks over threads (bitwise the same sums): two keep up with a fast read
    threads: min(2, T["threads"])
    resources:
        mem_mb=cost("reduce_epoch", "mem_mb"),
        runtime=cost("reduce_epoch", "runtime"),
        gpu=0,
    # a param only where the Gram matrix is kept: a study from before it with outputs.gram: false keeps its params
    params:
        **({"gram": True} if GRAM else {}),
    script:
        "../scripts/reduce_epoch.py"


# outputs.gradients memory or sketch: train_epoch (inline) or complete_epoch (parallel) writes the epoch file, and
# no rule writes shards, so reduce_epoch is never planned; the orders settle the choice should shards be left over
# from a study run with shards. (reduce_epoch stays as it was, so the jobs of studies made with shards do not rerun.)
if not SHARDS:

    ruleorder: train_epoch > reduce_epoch


if PARALLEL and not SHARDS:

    # outputs.gradients memory or sketch, parallel layout: compare_epoch reduced the gradients in its own job; its
    # epoch file lacks net_normal's records, which the training job wrote. Small files only.
    rule complete_epoch:
        input:
            reduced=f"{RUN}/{{metric}}/reduced/epoch_{{epoch}}.h5",
            training=f"{RUN}/{{metric}}/records/epoch_{{epoch}}.h5",
        output:
            f"{RUN}/{{metric}}/epochs/epoch_{{epoch}}.h5",
        log:
            f"{L}/{{model}}/seed_{{seed}}/{{metric}}/complete_epoch_{{epoch}}.log",
        benchmark:
            f"{B}/{{model}}/seed_{{seed}}/{{metric}}/complete_epoch_{{epoch}}.tsv"
        group:
            compare_group
        conda:
            "../../envs/analysis.yaml"
        threads: 1
        resources:
            mem_mb=cost("complete_epoch", "mem_mb"),
            runtime=cost("complete_epoch", "runtime"),
            gpu=0,
        script:
            "../scripts/complete_epoch.py"

    ruleorder: complete_epoch > reduce_epoch


rule gather_distances:
    input:
        expand(f"{RUN}/{{metric}}/epochs/epoch_{{epoch}}.h5", epoch=range(1, EPOCHS + 1), allow_missing=True),
    output:
        h5=report(
            f"{RUN}/{{metric}}/distances.h5",
            caption="../report/matrix.rst",
            category="Matrices",
            labels={"model": "{model}", "seed": "{seed}", "metric": "{metric}", "format": "HDF5"},
        ),
        csv=report(
            f"{RUN}/{{metric}}/distances.csv",
            caption="../report/matrix.rst",
            category="Matrices",
            labels={"model": "{model}", "seed": "{seed}", "metric": "{metric}", "format": "CSV"},
        ),
    log:
        f"{L}/{{model}}/seed_{{seed}}/{{metric}}/gather_distances.log",
    benchmark:
        f"{B}/{{model}}/seed_{{seed}}/{{metric}}/gather_distances.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT_JOB,
    params:
        batch_size=T["batch_size"],
    script:
        "../scripts/gather_distances.py"
