rule ordering:
    input:
        f"{R}/dataset.json",
    output:
        f"{R}/orderings/{{metric}}.h5",
    params:
        **DATA_PARAMS,
        params=lambda wildcards: config["orderings"].get(wildcards.metric, {}),
        threads=T["threads"],
        device=T["device"],
        config_hash=result_hash,
    log:
        f"{L}/orderings/{{metric}}.log",
    benchmark:
        f"{B}/orderings/{{metric}}.tsv"
    threads: T["threads"]
    resources:
        mem_mb=ordering_cost("mem_mb"),
        runtime=ordering_cost("runtime"),
        gpu=ordering_cost("gpu"),
    group:
        epochs_group
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/ordering.py"
