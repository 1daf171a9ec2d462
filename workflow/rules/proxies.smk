# Whether a cheap signal ranks a study's batches like Algorithm 1's distance does: the last layer's distance, the
# batch loss and the gradient norm against the exact distance, per epoch, over the seeds (bestbatch.proxies).
rule proxies:
    input:
        matrices=ALL_MATRICES,
    output:
        csv=report(f"{R}/proxies.csv", caption="../report/proxies.rst", category="Study"),
    log:
        f"{L}/proxies.log",
    benchmark:
        f"{B}/proxies.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT_JOB,
    params:
        runs=RUN_LIST,
        metrics=METRICS,
        phases=PHASES,
    script:
        "../scripts/proxies.py"
