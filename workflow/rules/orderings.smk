UNSEEDED_METRICS = [m for m in METRICS if not metric_registry.METRICS[m].seeded]
SEEDED_METRICS = [m for m in METRICS if metric_registry.METRICS[m].seeded]


if UNSEEDED_METRICS:

    # One ordering per metric for the whole study: it depends on the images, not on a run.
    rule ordering:
        input:
            **TRAIN_INPUT,
        output:
            f"{R}/orderings/{{metric}}.h5",
        log:
            f"{L}/orderings/{{metric}}.log",
        benchmark:
            f"{B}/orderings/{{metric}}.tsv"
        wildcard_constraints:
            metric="|".join(UNSEEDED_METRICS),
        conda:
            "../../envs/torch.yaml"
        threads: T["threads"]
        resources:
            mem_mb=cost("ordering", "mem_mb"),
            runtime=cost("ordering", "runtime"),
            gpu=cost("ordering", "gpu"),
        params:
            **DATA_PARAMS,
            params=lambda wildcards: config["orderings"].get(wildcards.metric, {}),
            threads=T["threads"],
            device=T["device"],
            config_hash=lambda wildcards: ordering_hash(config, wildcards.metric),
        script:
            "../scripts/ordering.py"


if SEEDED_METRICS:

    # The random control: one ordering per seed, so each seed has its own null.
    rule seeded_ordering:
        input:
            **TRAIN_INPUT,
        output:
            f"{R}/orderings/{{metric}}_seed_{{seed}}.h5",
        log:
            f"{L}/orderings/{{metric}}_seed_{{seed}}.log",
        benchmark:
            f"{B}/orderings/{{metric}}_seed_{{seed}}.tsv"
        wildcard_constraints:
            metric="|".join(SEEDED_METRICS),
        conda:
            "../../envs/torch.yaml"
        threads: T["threads"]
        resources:
            mem_mb=cost("ordering", "mem_mb"),
            runtime=cost("ordering", "runtime"),
            gpu=cost("ordering", "gpu"),
        params:
            **DATA_PARAMS,
            params=lambda wildcards: dict(config["orderings"].get(wildcards.metric, {}), run_seed=int(wildcards.seed)),
            threads=T["threads"],
            device=T["device"],
            config_hash=lambda wildcards: ordering_hash(config, wildcards.metric, int(wildcards.seed)),
        script:
            "../scripts/ordering.py"
