"""bestbatch: which mini-batch best approximates the full-batch gradient? (Lasky et al., Algorithm 1, as a
Snakemake workflow). The version is recorded in every output's provenance; pyproject.toml carries the same."""

__version__ = "0.2.0"
