# The selection experiment (config `selection:`): do the "best" mini-batches train faster? One plain
# training run per (model, budget, seed, arm), in chunks of selection.chunk_epochs epoch-equivalents; one
# job per arm and chunk, or (execution.selection_jobs: seed) one per (model, budget, seed) and chunk.
if SEL:

    localrules:
        select_gather,
        selection,

    # What a training job of either cut asks for and is told (seed mode: runtime for every arm; the arm's own
    # name, or the list of arms with their files, is added by each rule)
    SELECT_TRAIN_RESOURCES = dict(
        mem_mb=select_cost("mem_mb"), runtime=select_cost("runtime"), gpu=int(USES_GPU), **MAPPED_DISK
    )
    SELECT_TRAIN_PARAMS = dict(
        **TRAINING_PARAMS,
        **MODEL_PARAMS,
        seed="{seed}",
        budget="{budget}",
        chunk="{chunk}",
        chunk_epochs=SEL["chunk_epochs"],
        epochs=EPOCHS,
        phases=PHASES,
        drop_fraction=SEL["drop_fraction"],
        best_fraction=SEL["best_fraction"],
        evaluations=SEL["evaluations"],
        config_hash=run_hash,
    )
    BUDGET_RE = "|".join(re.escape(b) for b in BUDGETS)
    ARM_RE = "|".join(re.escape(a) for a in ARMS)
    # execution.selection_jobs: seed -- one job per (model, budget, seed) and chunk trains every arm's chunk in
    # turn and one gathers every arm's curve; the files are the per-arm jobs' own (same paths, bitwise equal).
    SEEDR = f"{R}/selection/{{model}}/budget_{{budget}}/seed_{{seed}}"
    if SELECTION_PER_SEED:

        rule select_train:
            input:
                **PROBE_INPUT,
                dataset=f"{R}/dataset.json",
                data=DATA_INPUT,
                orders=seed_orderings,
                states=seed_starts,
                profiles=seed_profiles,
            output:
                states=[
                    maybe_temp(f"{SEEDR}/{arm}/checkpoints/chunk_{{chunk}}.pt", config["outputs"]["keep_checkpoints"])
                    for arm in ARMS
                ],
                curves=[f"{SEEDR}/{arm}/chunks/chunk_{{chunk}}.h5" for arm in ARMS],
            log:
                f"{L}/selection/{{model}}/budget_{{budget}}/seed_{{seed}}/chunk_{{chunk}}.log",
            benchmark:
                f"{B}/selection/{{model}}/budget_{{budget}}/seed_{{seed}}/chunk_{{chunk}}.tsv"
            wildcard_constraints:
                budget=BUDGET_RE,
                seed=r"\d+",
                chunk=r"\d+",
            conda:
                "../../envs/torch.yaml"
            threads: T["threads"]
            resources:
                **SELECT_TRAIN_RESOURCES,
            params:
                **SELECT_TRAIN_PARAMS,
                arm_jobs=seed_arm_jobs,
            script:
                "../scripts/select_train_seed.py"

        rule select_gather:
            input:
                lambda wildcards: [
                    f"{SEEDR}/{arm}/chunks/chunk_{chunk}.h5".format(**wildcards)
                    for arm in ARMS
                    for chunk in selection_chunks(wildcards.budget)
                ],
            output:
                h5=[f"{SEEDR}/{arm}/curve.h5" for arm in ARMS],
                csv=[f"{SEEDR}/{arm}/curve.csv" for arm in ARMS],
            log:
                f"{L}/selection/{{model}}/budget_{{budget}}/seed_{{seed}}/gather.log",
            benchmark:
                f"{B}/selection/{{model}}/budget_{{budget}}/seed_{{seed}}/gather.tsv"
            wildcard_constraints:
                budget=BUDGET_RE,
                seed=r"\d+",
            conda:
                "../../envs/analysis.yaml"
            threads: 1
            resources:
                **LIGHT_JOB,
            params:
                chunks=lambda wildcards: len(selection_chunks(wildcards.budget)),
            script:
                "../scripts/select_gather_seed.py"

    else:

        rule select_train:
            input:
                **PROBE_INPUT,
                dataset=f"{R}/dataset.json",
                data=DATA_INPUT,
                order=arm_ordering,
                state=arm_start,
                profiles=arm_profiles,
            output:
                state=maybe_temp(f"{SELR}/checkpoints/chunk_{{chunk}}.pt", config["outputs"]["keep_checkpoints"]),
                curve=f"{SELR}/chunks/chunk_{{chunk}}.h5",
            log:
                f"{L}/selection/{{model}}/budget_{{budget}}/seed_{{seed}}/{{arm}}/chunk_{{chunk}}.log",
            benchmark:
                f"{B}/selection/{{model}}/budget_{{budget}}/seed_{{seed}}/{{arm}}/chunk_{{chunk}}.tsv"
            wildcard_constraints:
                arm=ARM_RE,
                budget=BUDGET_RE,
                chunk=r"\d+",
            conda:
                "../../envs/torch.yaml"
            threads: T["threads"]
            resources:
                **SELECT_TRAIN_RESOURCES,
            params:
                **SELECT_TRAIN_PARAMS,
                arm="{arm}",
            script:
                "../scripts/select_train.py"

        rule select_gather:
            input:
                lambda wildcards: expand(
                    f"{SELR}/chunks/chunk_{{chunk}}.h5", chunk=selection_chunks(wildcards.budget), **wildcards
                ),
            output:
                h5=f"{SELR}/curve.h5",
                csv=f"{SELR}/curve.csv",
            log:
                f"{L}/selection/{{model}}/budget_{{budget}}/seed_{{seed}}/{{arm}}/gather.log",
            benchmark:
                f"{B}/selection/{{model}}/budget_{{budget}}/seed_{{seed}}/{{arm}}/gather.tsv"
            wildcard_constraints:
                arm=ARM_RE,
                budget=BUDGET_RE,
            conda:
                "../../envs/analysis.yaml"
            threads: 1
            resources:
                **LIGHT_JOB,
            script:
                "../scripts/select_gather.py"

    rule selection_power:
        output:
            json=f"{R}/selection/power.json",
        log:
            f"{L}/selection_power.log",
        benchmark:
            f"{B}/selection_power.tsv"
        conda:
            "../../envs/analysis.yaml"
        threads: 1
        resources:
            **LIGHT_JOB,
        params:
            arms=ARMS,
            layout=SEL_LAYOUT,
            alpha=config["analysis"]["alpha"],
            n_classes=N_CLASSES,
            n_test=N_TEST,
            n_models=len(MODELS),
        script:
            "../scripts/selection_power.py"

    rule selection:
        input:
            curves=[
                f"{R}/selection/{model}/budget_{budget}/seed_{seed}/{arm}/curve.h5"
                for model, seed in RUN_LIST
                for budget in BUDGETS
                for arm in ARMS
            ],
            plotly_js=PLOTLY_JS,
            power=f"{R}/selection/power.json",
        output:
            csv=report(f"{R}/selection.csv", caption="../report/selection.rst", category="Study"),
            html=report(f"{R}/selection.html", caption="../report/selection.rst", category="Study"),
        log:
            f"{L}/selection.log",
        benchmark:
            f"{B}/selection.tsv"
        conda:
            "../../envs/analysis.yaml"
        threads: 1
        resources:
            **LIGHT_JOB,
        params:
            **({"sketch": SKETCH} if SKETCH else {}),
            runs=RUN_LIST,
            budgets=BUDGETS,
            arms=ARMS,
            target_fraction=SEL["target_fraction"],
            alpha=config["analysis"]["alpha"],
            n_classes=N_CLASSES,
            n_test=N_TEST,
            n_train=N_TRAIN,
            batch_size=T["batch_size"],
        script:
            "../scripts/selection.py"
