rule init_model:
    input:
        f"{R}/dataset.json",
    output:
        f"{R}/checkpoints/init.pt",
    params:
        model=config["model"]["name"],
        num_classes=N_CLASSES,
        seed=T["seed"],
        dtype=T["dtype"],
        config_hash=config_hash(config),
    log:
        f"{L}/init_model.log",
    benchmark:
        f"{B}/init_model.tsv"
    threads: 1
    resources:
        **COST["init_model"],
    group:
        "prepare"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/init_model.py"


# outputs.shard_io is not a param: how a shard is written changes no result, so it must not rerun epochs
rule train_epoch:
    input:
        dataset=f"{R}/dataset.json",
        order=f"{R}/orderings/{{metric}}.h5",
        state=previous_checkpoint,
    output:
        state=maybe_temp(f"{R}/{{metric}}/checkpoints/epoch_{{epoch}}.pt", config["outputs"]["keep_checkpoints"]),
        shard=maybe_temp(f"{R}/{{metric}}/shards/epoch_{{epoch}}.h5", config["outputs"]["keep_shards"]),
    params:
        **TRAINING_PARAMS,
        config_hash=result_hash,
    log:
        f"{L}/{{metric}}/train_epoch_{{epoch}}.log",
    benchmark:
        f"{B}/{{metric}}/train_epoch_{{epoch}}.tsv"
    threads: T["threads"]
    resources:
        **COST["train_epoch"],
    group:
        epochs_group
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train_epoch.py"
