"""The workflow's steps, one module per rule file (`workflow/rules/X.smk` -> `bestbatch.steps.X`).

A step reads its input files, calls the science, and writes its outputs atomically; every value it
needs is an explicit argument (the rules pass them as `params:`). `steps.data`, `steps.distances`
and `steps.plots` import no PyTorch: they run in `envs/analysis.yaml`.
"""
