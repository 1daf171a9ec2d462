rule reduce_epoch:
    input:
        f"{R}/{{metric}}/shards/epoch_{{epoch}}.h5",
    output:
        f"{R}/{{metric}}/epochs/epoch_{{epoch}}.h5",
    log:
        f"{L}/{{metric}}/reduce_epoch_{{epoch}}.log",
    benchmark:
        f"{B}/{{metric}}/reduce_epoch_{{epoch}}.tsv"
    threads: 1
    resources:
        **COST["reduce_epoch"],
    group:
        epochs_group
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/reduce_epoch.py"


rule gather_distances:
    input:
        expand(f"{R}/{{{{metric}}}}/epochs/epoch_{{epoch}}.h5", epoch=range(1, EPOCHS + 1)),
    output:
        h5=report(
            f"{R}/{{metric}}/distances.h5",
            caption="../report/matrix.rst",
            category="Matrices",
            labels={"metric": "{metric}", "format": "HDF5"},
        ),
        csv=report(
            f"{R}/{{metric}}/distances.csv",
            caption="../report/matrix.rst",
            category="Matrices",
            labels={"metric": "{metric}", "format": "CSV"},
        ),
    log:
        f"{L}/{{metric}}/gather_distances.log",
    benchmark:
        f"{B}/{{metric}}/gather_distances.tsv"
    threads: 1
    resources:
        **LIGHT_JOB,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/gather_distances.py"
