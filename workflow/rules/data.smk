if SYNTHETIC:

    rule synthetic_dataset:
        output:
            DATA_FILES,
        log:
            f"{L}/synthetic_dataset.log",
        benchmark:
            f"{B}/synthetic_dataset.tsv"
        group:
            "prepare"
        conda:
            "../../envs/analysis.yaml"
        threads: 1
        resources:
            **DATA_COST["synthetic_dataset"],
        params:
            root=lambda wildcards, output: str(Path(output[0]).parents[1]),
            n_train=DATA["synthetic"]["n_train"],
            n_test=DATA["synthetic"]["n_test"],
            seed=DATA["synthetic"]["seed"],
            format=DATA["synthetic"]["format"],
        script:
            "../scripts/synthetic_dataset.py"


if IMAGES:

    # The image folder, decoded once into CIFAR-10's format under results/<study>/data/: every job reads that
    # cache. Two jobs, imagefolder_train (the training files and the meta file) and imagefolder_test (the test
    # file), so that a changed test image reruns no job that reads only the training split (the orderings,
    # init_model, model_cost). Each split's content fingerprint (a sha256 per file, bestbatch.fingerprint) is a
    # param, and the images are `ancient` inputs: a change of bytes reruns the split's job and everything after
    # it; `touch`, or a copy that does not keep times, reruns nothing.
    for _split, _files in (("train", DATA_TRAIN_FILES), ("test", DATA_TEST_FILES)):

        rule:
            name:
                f"imagefolder_{_split}"
            input:
                ancient(IMAGES.paths(_split)),
            output:
                _files,
            log:
                f"{L}/imagefolder_{_split}.log",
            benchmark:
                f"{B}/imagefolder_{_split}.tsv"
            group:
                "prepare"
            conda:
                "../../envs/analysis.yaml"
            threads: 1
            resources:
                **DATA_COST["synthetic_dataset"],
            params:
                **IMAGE_SET_PARAMS,
                image_root=staged_image_root(_split),
                root=lambda wildcards, output: str(Path(output[0]).parents[1]),
                split=_split,
                fingerprint=IMAGES.fingerprints[_split],
                cache=str(IMAGE_DIGESTS),
                image_size=DATA.get("image_size"),
            script:
                "../scripts/imagefolder_dataset.py"


rule verify_dataset:
    input:
        data=DATA_INPUT,
    output:
        f"{R}/dataset.json",
    log:
        f"{L}/verify_dataset.log",
    benchmark:
        f"{B}/verify_dataset.tsv"
    group:
        "prepare"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        **DATA_COST["verify_dataset"],
    params:
        **NORMALIZATION_PARAMS,
        root=data_root,
        source=LAYOUT.source,
        download=DATA["download"],
        verify=DATA["verify"],
        batch_size=T["batch_size"],
        n_train=N_TRAIN,
        n_test=N_TEST,
        n_classes=N_CLASSES,
    script:
        "../scripts/verify_dataset.py"
