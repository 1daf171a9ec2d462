CIFAR_FILES = [
    f"{DATA['root']}/{CIFAR_DIRNAME}/{name}" for name in (*TRAIN_FILES, TEST_FILE, META_FILE)
]


if SYNTHETIC:

    rule synthetic_dataset:
        output:
            CIFAR_FILES,
        params:
            root=DATA["root"],
            n_train=DATA["synthetic"]["n_train"],
            n_test=DATA["synthetic"]["n_test"],
            seed=DATA["synthetic"]["seed"],
        log:
            f"{L}/synthetic_dataset.log",
        benchmark:
            f"{B}/synthetic_dataset.tsv"
        threads: 1
        resources:
            **COST["synthetic_dataset"],
        group:
            "prepare"
        conda:
            "../../envs/analysis.yaml"
        script:
            "../scripts/synthetic_dataset.py"


rule verify_dataset:
    input:
        CIFAR_FILES if SYNTHETIC else [],
    output:
        f"{R}/dataset.json",
    params:
        root=DATA["root"],
        download=DATA["download"],
        batch_size=T["batch_size"],
    log:
        f"{L}/verify_dataset.log",
    benchmark:
        f"{B}/verify_dataset.tsv"
    threads: 1
    resources:
        **COST["verify_dataset"],
    group:
        "prepare"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/verify_dataset.py"
