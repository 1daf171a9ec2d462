# What spans the runs of a study: the claims of the paper tested over the seeds, and the front page.
RUN_LIST = [[model, seed] for model in MODELS for seed in SEEDS]
ALL_MATRICES = [f"{R}/{model}/seed_{seed}/{metric}/distances.h5" for model, seed in RUN_LIST for metric in METRICS]


# The study as it runs (every default filled in): the index page shows it, and it can be given back with --configfile.
rule study_config:
    output:
        f"{R}/config.yaml",
    log:
        f"{L}/study_config.log",
    benchmark:
        f"{B}/study_config.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT_JOB,
    params:
        config=config,
        files=CONFIG_FILES,
        overrides=dict(workflow.config_settings.config),
        run_hashes=[
            [[model, seed, metric], config_hash(config, metric, model, seed)]
            for model, seed in RUN_LIST
            for metric in METRICS
        ],
    script:
        "../scripts/study_config.py"


rule claims:
    input:
        matrices=ALL_MATRICES,
        plotly_js=PLOTLY_JS,
    output:
        csv=report(f"{R}/claims.csv", caption="../report/claims.rst", category="Study"),
        statistics=f"{R}/statistics.csv",
        html=report(f"{R}/claims.html", caption="../report/claims.rst", category="Study"),
    log:
        f"{L}/claims.log",
    benchmark:
        f"{B}/claims.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    # the Gram matrices of every run, in float64, and the phase's normalised copies (about twice their size)
    resources:
        mem_mb=LIGHT_JOB["mem_mb"]
        + (2 * len(ALL_MATRICES) * EPOCHS * num_batches(N_TRAIN, T["batch_size"]) ** 2 * 8 // 10**6 if GRAM else 0),
        runtime=LIGHT_JOB["runtime"],
    params:
        runs=RUN_LIST,
        metrics=METRICS,
        phases=PHASES,
        alpha=config["analysis"]["alpha"],
        permutations=config["analysis"]["permutations"],
        seed=config["analysis"]["seed"],
        n_classes=N_CLASSES,
        n_test=N_TEST,
        n_train=N_TRAIN,
        batch_size=T["batch_size"],
    script:
        "../scripts/claims.py"


rule index:
    input:
        matrices=ALL_MATRICES,
        heatmaps=[
            f"{R}/{model}/seed_{seed}/plots/heatmap_{metric}.html" for model, seed in RUN_LIST for metric in METRICS
        ],
        layers=[f"{R}/{model}/seed_{seed}/plots/layers_{metric}.html" for model, seed in RUN_LIST for metric in METRICS],
        sets=(
            [f"{R}/{model}/seed_{seed}/plots/sets_{metric}.html" for model, seed in RUN_LIST for metric in METRICS]
            if GRAM
            else []
        ),
        curves=[f"{R}/{model}/seed_{seed}/plots/training_curves.html" for model, seed in RUN_LIST],
        claims=f"{R}/claims.html",
        proxies=f"{R}/proxies.csv",
        config=f"{R}/config.yaml",
        selection=[f"{R}/selection.html"] if SEL else [],
    output:
        html=report(f"{R}/index.html", caption="../report/index.rst", category="Study"),
        summary=f"{R}/summary.json",
    log:
        f"{L}/index.log",
    benchmark:
        f"{B}/index.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        study=STUDY,
        runs=RUN_LIST,
        metrics=METRICS,
        phases=PHASES,
        n_classes=N_CLASSES,
        n_test=N_TEST,
    script:
        "../scripts/index.py"
