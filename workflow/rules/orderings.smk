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
        mem_mb=4000,
        runtime=60,
        gpu=lambda wc: int(USES_GPU and wc.metric == "lpips"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/ordering.py"
