SYNTHETIC = CONFIG["data"]["source"] == "synthetic"
CIFAR_FILES = [f"{CONFIG['data']['root']}/cifar-10-batches-py/{name}"
               for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                            "test_batch", "batches.meta")]

if SYNTHETIC:

    rule synthetic_dataset:
        output:
            CIFAR_FILES,
        log:
            f"{L}/synthetic_dataset.log",
        benchmark:
            f"{B}/synthetic_dataset.tsv"
        threads: 1
        resources:
            mem_mb=DATA_JOB_MEM_MB,
            runtime=MIN_RUNTIME,
            gpu=0,
        group:
            "prepare"
        conda:
            "../../envs/torch.yaml"
        script:
            "../scripts/synthetic_dataset.py"


rule verify_dataset:
    input:
        CIFAR_FILES if SYNTHETIC else [],
    output:
        f"{R}/dataset.json",
    log:
        f"{L}/verify_dataset.log",
    benchmark:
        f"{B}/verify_dataset.tsv"
    threads: 1
    resources:
        mem_mb=DATA_JOB_MEM_MB,
        runtime=MIN_RUNTIME,
        gpu=0,
    group:
        "prepare"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/verify_dataset.py"
