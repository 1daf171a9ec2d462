rule init_model:
    input:
        f"{R}/dataset.json",
    output:
        f"{R}/checkpoints/init.pt",
    log:
        f"{L}/init_model.log",
    benchmark:
        f"{B}/init_model.tsv"
    threads: 1
    resources:
        mem_mb=INIT_MEM_MB,
        runtime=MIN_RUNTIME,
        gpu=0,
    group:
        "prepare"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/init_model.py"


rule train_epoch:
    input:
        dataset=f"{R}/dataset.json",
        order=f"{R}/orderings/{{metric}}.h5",
        state=previous_checkpoint,
    output:
        state=maybe_temp(f"{R}/{{metric}}/checkpoints/epoch_{{epoch}}.pt", CONFIG["outputs"]["keep_checkpoints"]),
        shard=maybe_temp(f"{R}/{{metric}}/shards/epoch_{{epoch}}.h5", CONFIG["outputs"]["keep_shards"]),
    log:
        f"{L}/{{metric}}/train_epoch_{{epoch}}.log",
    benchmark:
        f"{B}/{{metric}}/train_epoch_{{epoch}}.tsv"
    threads: CONFIG["training"]["threads"]
    resources:
        mem_mb=TRAIN_MEM_MB,
        runtime=TRAIN_RUNTIME,
        gpu=int(USES_GPU),
    group:
        epochs_group
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train_epoch.py"
