"""Every workflow step writes a log: this routes logging, prints and progress bars into it."""

import contextlib
import functools
import logging
import sys
import traceback
from pathlib import Path


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


def logged(log_path):
    """Context manager: everything the step prints or logs goes to `log_path`, errors included."""

    @contextlib.contextmanager
    def _ctx():
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
            except BaseException:
                stream.write(traceback.format_exc())
                raise
            finally:
                sys.stdout, sys.stderr = old
                root.removeHandler(handler)

    return _ctx()


def step(fn):
    """A workflow step: called with `log=PATH`, everything it prints or logs (errors too) goes there."""

    @functools.wraps(fn)
    def run(*args, log=None, **kwargs):
        if log is None:
            return fn(*args, **kwargs)
        with logged(log):
            return fn(*args, **kwargs)

    return run
