import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from bestbatch.config import ConfigError, num_batches, validate_config


try:
    CONFIG = validate_config(config)
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None

STUDY = CONFIG["study"]
R = f"results/{STUDY}"
L = f"logs/{STUDY}"
B = f"results/{STUDY}/benchmarks"
METRICS = CONFIG["metrics"]
EPOCHS = CONFIG["training"]["epochs"]
K = num_batches(CONFIG)
USES_GPU = CONFIG["training"]["device"] != "cpu"


wildcard_constraints:
    metric="|".join(METRICS),
    epoch=r"[1-9][0-9]*",


def previous_checkpoint(wildcards):
    epoch = int(wildcards.epoch)
    if epoch == 1:
        return f"{R}/checkpoints/init.pt"
    return f"{R}/{wildcards.metric}/checkpoints/epoch_{epoch - 1}.pt"


def maybe_temp(path, keep):
    return path if keep else temp(path)
