"""Fault injection for the resume tests: SIGKILL the whole run at a named point.

`BESTBATCH_KILL_AT="<point>:<epoch>:<step>"` (unset in normal runs) kills the process group — Snakemake
and all its jobs, like a pre-empted node — when the job reaches that point:
  batch:<epoch>:<k>           train_epoch, after batch k's gradient was queued (shard incomplete)
  after_checkpoint:<epoch>:0  train_epoch, checkpoint renamed into place, shard not yet
  reduce:<epoch>:<b>          reduce_epoch, after parameter block b (1-based) of every row, before the output
"""
import os
import signal


def kill_point(point, epoch, step=0):
    spec = os.environ.get("BESTBATCH_KILL_AT")
    if spec and spec == f"{point}:{epoch}:{step}":
        os.killpg(os.getpgid(0), signal.SIGKILL)
