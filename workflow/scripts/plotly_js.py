"""The study's one copy of plotly.js, which every page loads by a relative path."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.plots import plotly_bundle  # noqa: E402

plotly_bundle(snakemake.output[0], log=snakemake.log[0])
