# bestbatch, from the repository root: `snakemake --cores all` (the paper's study) or with --configfile.
# The workflow itself is workflow/Snakefile, where the Snakemake workflow catalog and snakedeploy's module
# declarations look for it; this file includes it, so both are the same workflow.


include: "workflow/Snakefile"


# An included file's default target does not carry over to the including one: `snakemake` alone builds `all`.
workflow.default_target = "all"
