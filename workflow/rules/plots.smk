rule heatmap:
    input:
        f"{R}/{{metric}}/distances.h5",
    output:
        report(
            f"{R}/plots/heatmap_{{metric}}.html",
            caption="../report/heatmap.rst",
            category="Heatmaps",
            labels={"metric": "{metric}"},
        ),
    params:
        phases=PHASES,
    log:
        f"{L}/plots/heatmap_{{metric}}.log",
    benchmark:
        f"{B}/plots/heatmap_{{metric}}.tsv"
    threads: 1
    resources:
        **LIGHT_JOB,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/heatmap.py"


rule curves:
    input:
        expand(f"{R}/{{metric}}/distances.h5", metric=METRICS),
    output:
        report(f"{R}/plots/training_curves.html", caption="../report/curves.rst", category="Training"),
    params:
        metrics=METRICS,
    log:
        f"{L}/plots/curves.log",
    benchmark:
        f"{B}/plots/curves.tsv"
    threads: 1
    resources:
        **LIGHT_JOB,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/curves.py"


rule index:
    input:
        matrices=expand(f"{R}/{{metric}}/distances.h5", metric=METRICS),
        heatmaps=expand(f"{R}/plots/heatmap_{{metric}}.html", metric=METRICS),
        curves=f"{R}/plots/training_curves.html",
    output:
        html=report(f"{R}/index.html", caption="../report/index.rst", category="Study"),
        summary=f"{R}/summary.json",
    params:
        study=STUDY,
        metrics=METRICS,
        phases=PHASES,
        config=config,
    log:
        f"{L}/plots/index.log",
    benchmark:
        f"{B}/plots/index.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/index.py"
