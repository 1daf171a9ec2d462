# The study's one copy of plotly.js: every page loads it by a relative path (bestbatch.plots.plotly_scripts),
# from the results folder, a copy of the study folder, or `--report`'s zip (where it is a result of its own).
rule plotly_js:
    output:
        report(PLOTLY_JS, caption="../report/plotly_js.rst", category="Study"),
    log:
        f"{L}/plotly_js.log",
    benchmark:
        f"{B}/plotly_js.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT_JOB,
    script:
        "../scripts/plotly_js.py"


rule heatmap:
    input:
        matrix=f"{RUN}/{{metric}}/distances.h5",
        plotly_js=PLOTLY_JS,
    output:
        report(
            f"{RUN}/plots/heatmap_{{metric}}.html",
            caption="../report/heatmap.rst",
            category="Heatmaps",
            subcategory="{model}, seed {seed}",
            labels={"model": "{model}", "seed": "{seed}", "metric": "{metric}"},
        ),
    log:
        f"{L}/{{model}}/seed_{{seed}}/plots/heatmap_{{metric}}.log",
    benchmark:
        f"{B}/{{model}}/seed_{{seed}}/plots/heatmap_{{metric}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT_JOB,
    params:
        phases=PHASES,
    script:
        "../scripts/heatmap.py"


rule layers:
    input:
        matrix=f"{RUN}/{{metric}}/distances.h5",
        plotly_js=PLOTLY_JS,
    output:
        report(
            f"{RUN}/plots/layers_{{metric}}.html",
            caption="../report/layers.rst",
            category="Layers",
            subcategory="{model}, seed {seed}",
            labels={"model": "{model}", "seed": "{seed}", "metric": "{metric}"},
        ),
    log:
        f"{L}/{{model}}/seed_{{seed}}/plots/layers_{{metric}}.log",
    benchmark:
        f"{B}/{{model}}/seed_{{seed}}/plots/layers_{{metric}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT_JOB,
    params:
        phases=PHASES,
    script:
        "../scripts/layers.py"


rule curves:
    input:
        matrices=expand(f"{RUN}/{{metric}}/distances.h5", metric=METRICS, allow_missing=True),
        plotly_js=PLOTLY_JS,
    output:
        report(
            f"{RUN}/plots/training_curves.html",
            caption="../report/curves.rst",
            category="Training",
            labels={"model": "{model}", "seed": "{seed}"},
        ),
    log:
        f"{L}/{{model}}/seed_{{seed}}/plots/curves.log",
    benchmark:
        f"{B}/{{model}}/seed_{{seed}}/plots/curves.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT_JOB,
    params:
        metrics=METRICS,
        phases=PHASES,
        n_classes=N_CLASSES,
        n_test=N_TEST,
    script:
        "../scripts/curves.py"


# Which sets of batches stand in for the full gradient, answered from the run's Gram matrices (outputs.gram).
if GRAM:

    rule sets:
        input:
            matrix=f"{RUN}/{{metric}}/distances.h5",
            plotly_js=PLOTLY_JS,
        output:
            csv=report(
                f"{RUN}/{{metric}}/sets.csv",
                caption="../report/sets.rst",
                category="Sets",
                subcategory="{model}, seed {seed}",
                labels={"model": "{model}", "seed": "{seed}", "metric": "{metric}", "format": "CSV"},
            ),
            html=report(
                f"{RUN}/plots/sets_{{metric}}.html",
                caption="../report/sets.rst",
                category="Sets",
                subcategory="{model}, seed {seed}",
                labels={"model": "{model}", "seed": "{seed}", "metric": "{metric}", "format": "page"},
            ),
        log:
            f"{L}/{{model}}/seed_{{seed}}/plots/sets_{{metric}}.log",
        benchmark:
            f"{B}/{{model}}/seed_{{seed}}/plots/sets_{{metric}}.tsv"
        # seconds of work, like the other pages: where Snakemake runs, never through a cluster queue
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        threads: 1
        resources:
            **LIGHT_JOB,
        params:
            phases=PHASES,
            draws=config["analysis"]["set_draws"],
            rng_seed=config["analysis"]["seed"],
        script:
            "../scripts/sets.py"
