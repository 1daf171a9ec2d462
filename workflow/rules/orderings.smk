rule ordering:
    input:
        f"{R}/dataset.json",
    output:
        f"{R}/orderings/{{metric}}.h5",
    log:
        f"{L}/orderings/{{metric}}.log",
    benchmark:
        f"{B}/orderings/{{metric}}.tsv"
    threads: CONFIG["training"]["threads"]
    resources:
        mem_mb=ordering_mem_mb,
        runtime=ordering_runtime,
        gpu=lambda wc: ordering_gpu(wc.metric),
    group:
        epochs_group
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/ordering.py"
