"""Every workflow step writes a log: this routes logging, prints and progress bars into it.

How a step that fails ends (`step` with `log=PATH`, `logged`):

- A refusal (an instance of a class in REFUSALS: a model, an image folder, a data set, a config value or a file
  that cannot be used, a full disk, a diverged training) has a message that is the whole story. The log gets the
  full traceback, for debugging, then that message again as its last lines:

      Traceback (most recent call last):
        ...
      bestbatch.model_spec.ModelError: models[0]: ... expected (4, 3): one logit per class of the data set

      refused (the traceback above is for debugging):
      ModelError: models[0]: ... expected (4, 3): one logit per class of the data set

  The real stderr (what Snakemake shows of the job) gets that last line alone, `ModelError: ...` (all of its
  lines, if the message has several), and the process ends with SystemExit(1), raised from the refusal: the job
  fails, Snakemake removes its outputs (every output is written atomically, so none is half-written), and prints
  its own lines (the failed command, then the "Error in rule" block, which names the log with the traceback).
- Anything else is a bug: its traceback goes to the log and the exception is raised again, as it is, so the
  traceback reaches the real stderr too.
"""

import contextlib
import functools
import logging
import sys
import traceback
from pathlib import Path

# The exceptions whose message is the whole story: "module.Class", looked up only when a step fails (the
# class is then already imported if it was raised; importing them all here would import PyTorch).
REFUSALS = (
    "bestbatch.model_spec.ModelError",  # a network that cannot be built or used (models.check_model)
    "bestbatch.data.DatasetError",  # a data set or image folder on disk that cannot be used
    "bestbatch.config.ConfigError",  # a config value
    "bestbatch.formats.FormatError",  # a file of another format or version
    "bestbatch.metrics.MetricError",  # a metric that cannot run as configured
    "bestbatch.atomic.NoSpaceError",  # a full disk or quota: the folder and the bytes
    "bestbatch.training.NonFiniteError",  # training diverged: the epoch and batch
    "bestbatch.distances.NonFiniteGradient",  # a gradient with NaN or inf: the file and batch
)


def is_refusal(exc):
    """Whether `exc` is one of REFUSALS (or a subclass): an error whose message says all a user needs."""
    for name in REFUSALS:
        module, _, cls = name.rpartition(".")
        found = getattr(sys.modules.get(module), cls, None)
        if isinstance(found, type) and isinstance(exc, found):
            return True
    return False


def refusal_message(exc):
    """What a refusal prints last: `ModelError: <message>` (the class's short name, as docs/troubleshooting.md
    lists them)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _ToLog:
    """A file-like stream that sends stdout/stderr (tqdm's progress bars too) into the rule's log."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        self.stream.write(text)
        self.stream.flush()
        return len(text)

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return False


@contextlib.contextmanager
def logged(log_path):
    """Context manager: everything the step prints or logs goes to `log_path`, errors included. A refusal
    ends the log and the real stderr with its message and raises SystemExit(1); a bug is raised again as it
    is (the module's docstring)."""
    refused = None
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = _ToLog(stream)
        try:
            yield
        except BaseException as exc:
            stream.write(traceback.format_exc())
            if not is_refusal(exc):
                raise
            stream.write(f"\nrefused (the traceback above is for debugging):\n{refusal_message(exc)}\n")
            refused = exc
        finally:
            sys.stdout, sys.stderr = old
            root.removeHandler(handler)
    if refused is None:
        return
    # the streams are the real ones again: the message alone is the last thing the job prints
    sys.stdout.flush()
    sys.stderr.write(f"{refusal_message(refused)}\n")
    sys.stderr.flush()
    raise SystemExit(1) from refused


def step(fn):
    """A workflow step: called with `log=PATH`, everything it prints or logs (errors too) goes there; a refusal
    ends with its message and SystemExit(1) (the module's docstring). Without `log`, errors are raised as they are."""

    @functools.wraps(fn)
    def run(*args, log=None, **kwargs):
        if log is None:
            return fn(*args, **kwargs)
        with logged(log):
            return fn(*args, **kwargs)

    return run
