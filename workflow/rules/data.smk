if SYNTHETIC:

    rule synthetic_dataset:
        output:
            DATA_FILES,
        params:
            root=lambda wildcards, output: str(Path(output[0]).parents[1]),
            n_train=DATA["synthetic"]["n_train"],
            n_test=DATA["synthetic"]["n_test"],
            seed=DATA["synthetic"]["seed"],
            format=DATA["synthetic"]["format"],
        log:
            f"{L}/synthetic_dataset.log",
        benchmark:
            f"{B}/synthetic_dataset.tsv"
        threads: 1
        resources:
            **DATA_COST["synthetic_dataset"],
        group:
            "prepare"
        conda:
            "../../envs/analysis.yaml"
        script:
            "../scripts/synthetic_dataset.py"


rule verify_dataset:
    input:
        data=DATA_INPUT,
    output:
        f"{R}/dataset.json",
    params:
        root=data_root,
        source=LAYOUT.source,
        download=DATA["download"],
        verify=DATA["verify"],
        batch_size=T["batch_size"],
        n_train=N_TRAIN,
        n_test=N_TEST,
        n_classes=N_CLASSES,
    log:
        f"{L}/verify_dataset.log",
    benchmark:
        f"{B}/verify_dataset.tsv"
    threads: 1
    resources:
        **DATA_COST["verify_dataset"],
    group:
        "prepare"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/verify_dataset.py"
