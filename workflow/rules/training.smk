if OUTSIDE:

    # A network outside the built-in ones, once and before any training: refused if it cannot take part
    # (it does not import or build, returns no (B, classes), has no trainable parameters), else probed for
    # what its jobs ask for (parameters, activation memory, time per image on this job's device kind).
    rule model_cost:
        input:
            **TRAIN_INPUT,
        output:
            f"{R}/models/{{model}}/cost.json",
        log:
            f"{L}/models/{{model}}/model_cost.log",
        benchmark:
            f"{B}/models/{{model}}/model_cost.tsv"
        group:
            "prepare"
        conda:
            "../../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=10,
            gpu=int(USES_GPU),
        params:
            **MODEL_PARAMS,
            **DATA_PARAMS,
            **NORMALIZATION_PARAMS,
            where=lambda wildcards: f"models[{MODELS.index(wildcards.model)}]",
            num_classes=N_CLASSES,
            device=T["device"],
        script:
            "../scripts/model_cost.py"


rule init_model:
    input:
        **PROBE_INPUT,
        **INIT_INPUT,
    output:
        f"{RUN}/checkpoints/init.pt",
    log:
        f"{L}/{{model}}/seed_{{seed}}/init_model.log",
    benchmark:
        f"{B}/{{model}}/seed_{{seed}}/init_model.tsv"
    group:
        "prepare"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=cost("init_model", "mem_mb"),
        runtime=cost("init_model", "runtime"),
        gpu=0,
    params:
        **MODEL_PARAMS,
        num_classes=N_CLASSES,
        seed="{seed}",
        dtype=T["dtype"],
        config_hash=run_hash,
    script:
        "../scripts/init_model.py"


# outputs.shard_io is not a param: how a shard is written changes no result, so it must not rerun epochs.
# Inline layout: one job per epoch trains net_normal and writes the shard of net_compare's gradients, or with
# outputs.gradients memory or sketch holds them and writes the epoch's distances itself (no reduce_epoch job).
# Parallel layout: train_epoch trains and writes its records; compare_epoch (below) forms the gradients.
rule train_epoch:
    input:
        **PROBE_INPUT,
        dataset=f"{R}/dataset.json",
        data=DATA_INPUT,
        order=ordering_file,
        state=previous_checkpoint,
    output:
        **(
            {"records": temp(f"{RUN}/{{metric}}/records/epoch_{{epoch}}.h5")}
            if PARALLEL
            else (
                {"shard": maybe_temp(f"{RUN}/{{metric}}/shards/epoch_{{epoch}}.h5", config["outputs"]["keep_shards"])}
                if SHARDS
                else {"epoch": f"{RUN}/{{metric}}/epochs/epoch_{{epoch}}.h5"}
            )
        ),
        state=maybe_temp(f"{RUN}/{{metric}}/checkpoints/epoch_{{epoch}}.pt", config["outputs"]["keep_checkpoints"]),
    log:
        f"{L}/{{model}}/seed_{{seed}}/{{metric}}/train_epoch_{{epoch}}.log",
    benchmark:
        f"{B}/{{model}}/seed_{{seed}}/{{metric}}/train_epoch_{{epoch}}.tsv"
    group:
        train_group if PARALLEL else epochs_group
    conda:
        "../../envs/torch.yaml"
    threads: T["threads"]
    resources:
        **MAPPED_DISK,
        mem_mb=cost("train_only" if PARALLEL else "train_epoch", "mem_mb"),
        runtime=cost("train_only" if PARALLEL else "train_epoch", "runtime"),
        gpu=int(USES_GPU),
    params:
        **TRAINING_PARAMS,
        **MODEL_PARAMS,
        **({} if PARALLEL else HELD_PARAMS),
        seed="{seed}",
        config_hash=run_hash,
    script:
        "../scripts/train_epoch.py"


if PARALLEL:

    rule compare_epoch:
        input:
            **PROBE_INPUT,
            dataset=f"{R}/dataset.json",
            data=DATA_INPUT,
            order=ordering_file,
            state=previous_checkpoint,
        output:
            **(
                {"shard": maybe_temp(f"{RUN}/{{metric}}/shards/epoch_{{epoch}}.h5", config["outputs"]["keep_shards"])}
                if SHARDS
                else {"reduced": temp(f"{RUN}/{{metric}}/reduced/epoch_{{epoch}}.h5")}
            ),
        log:
            f"{L}/{{model}}/seed_{{seed}}/{{metric}}/compare_epoch_{{epoch}}.log",
        benchmark:
            f"{B}/{{model}}/seed_{{seed}}/{{metric}}/compare_epoch_{{epoch}}.tsv"
        group:
            compare_group
        conda:
            "../../envs/torch.yaml"
        threads: T["threads"]
        resources:
            **MAPPED_DISK,
            mem_mb=cost("compare_epoch", "mem_mb"),
            runtime=cost("compare_epoch", "runtime"),
            gpu=int(USES_GPU),
        params:
            **TRAINING_PARAMS,
            **MODEL_PARAMS,
            **HELD_PARAMS,
            seed="{seed}",
            config_hash=run_hash,
        script:
            "../scripts/compare_epoch.py"
