"""A step's log and what the job prints (bestbatch.logs): a refused model, data set or config value ends the log
and the job's output with its message alone (the traceback stays in the log, before it) and exits non-zero; a bug
keeps its traceback everywhere."""

import importlib
import os
import subprocess
import sys
import textwrap

import pytest
import yaml
from conftest import REPO, run_snakemake, write_config
from test_own_study import own_config, write_images

from bestbatch.data import DatasetError
from bestbatch.logs import REFUSALS, is_refusal, refusal_message, step
from bestbatch.model_spec import ModelError

MESSAGE = "models[1]: mine:build gives (4, 4) on a batch of 4 images; expected (4, 3)"


@step
def refuses(message=MESSAGE):
    print("probing the network")
    raise ModelError(message)


@step
def has_a_bug():
    print("probing the network")
    return {}["missing"]


@step
def works(x):
    print("working on", x)
    return 2 * x


def tail(text, n):
    return text.rstrip("\n").splitlines()[-n:]


def test_a_refusal_ends_the_log_and_stderr_with_its_message_after_the_traceback(tmp_path, capsys):
    log = tmp_path / "logs" / "job.log"
    with pytest.raises(SystemExit) as exit_:
        refuses(log=str(log))
    assert exit_.value.code == 1 and isinstance(exit_.value.__cause__, ModelError)
    text = log.read_text()
    assert tail(text, 1) == [f"ModelError: {MESSAGE}"]  # the message, last
    assert text.index("probing the network") < text.index("Traceback (most recent call last)")  # the traceback
    assert text.index(f"bestbatch.model_spec.ModelError: {MESSAGE}") < text.rindex(f"\nModelError: {MESSAGE}")
    assert "refused (the traceback above is for debugging):" in tail(text, 2)[0]
    out = capsys.readouterr()
    assert out.err == f"ModelError: {MESSAGE}\n" and out.out == ""  # the message alone; the prints went to the log
    assert sys.stdout is not None and "_ToLog" not in type(sys.stderr).__name__  # the streams are given back


def test_a_refusal_with_several_lines_ends_with_all_of_them(tmp_path, capsys):
    message = "images/train: 2 files cannot be used:\n  a.png: not an image\n  b.png: truncated"
    with pytest.raises(SystemExit):
        refuses(message, log=str(tmp_path / "job.log"))
    assert tail((tmp_path / "job.log").read_text(), 3) == f"ModelError: {message}".splitlines()
    assert capsys.readouterr().err == f"ModelError: {message}\n"


def test_a_bug_keeps_its_traceback_and_is_raised_as_it_is(tmp_path, capsys):
    log = tmp_path / "job.log"
    with pytest.raises(KeyError, match="missing"):
        has_a_bug(log=str(log))
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and tail(text, 1) == ["KeyError: 'missing'"]
    assert "refused" not in text
    assert capsys.readouterr().err == ""  # in-process nothing is printed: the caller (Python) shows the traceback


def test_a_step_without_log_raises_as_it_is_and_a_step_that_works_logs_its_prints(tmp_path, capsys):
    with pytest.raises(ModelError, match="expected"):
        refuses()  # library use: no log, no SystemExit
    capsys.readouterr()
    assert works(3, log=str(tmp_path / "job.log")) == 6
    assert (tmp_path / "job.log").read_text() == "working on 3\n"
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("name", REFUSALS)
def test_each_refusal_names_a_real_error_class(name):
    module, _, cls = name.rpartition(".")
    error = getattr(importlib.import_module(module), cls)
    assert issubclass(error, Exception)
    assert is_refusal(error("what to do")) and refusal_message(error("what to do")) == f"{cls}: what to do"

    class Narrower(error):
        pass

    assert is_refusal(Narrower("x"))


def test_other_errors_are_bugs():
    for exc in (ValueError("x"), RuntimeError("x"), KeyError("x"), OSError("x"), KeyboardInterrupt()):
        assert not is_refusal(exc)
    assert refusal_message(DatasetError()) == "DatasetError"


SCRIPT = """
import sys
from bestbatch.data import DatasetError
from bestbatch.logs import step

@step
def job(kind):
    print("reading the image folder")
    if kind == "refusal":
        raise DatasetError("images/train/cat/001.png: not an image; remove it")
    return [][1]

job(sys.argv[1], log=sys.argv[2])
"""


@pytest.mark.parametrize("kind", ["refusal", "bug"])
def test_what_the_process_prints_and_its_exit_status(tmp_path, kind):
    """As Snakemake runs a step script: its own Python process, the real stderr."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    log = tmp_path / "job.log"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), kind, str(log)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "reading the image folder" in text
    if kind == "refusal":
        message = "DatasetError: images/train/cat/001.png: not an image; remove it"
        assert proc.stderr == f"{message}\n"
        assert tail(text, 1) == [message]
    else:
        assert "Traceback (most recent call last)" in proc.stderr  # a bug: the traceback everywhere
        assert tail(proc.stderr, 1) == tail(text, 1) == ["IndexError: list index out of range"]


WRONG_SHAPE = """

def wrong_shape(num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes + 1))
"""


@pytest.mark.slow
def test_snakemake_shows_a_refused_network_by_its_message_alone(tmp_path):
    """The own-network study with a network of the wrong output shape, run to its model_cost job only (the
    image folder's decoding and check come first): seconds."""
    write_images(tmp_path / "images", n_train=16, n_test=4)
    cfg = own_config(tmp_path, models=["own_net:wrong_shape"], seeds=[0], metrics=["intensity"])
    config = yaml.safe_load(cfg.read_text())
    del config["selection"]
    write_config(cfg, config)
    with open(tmp_path / "own_net.py", "a") as module:
        module.write(WRONG_SHAPE)
    target = "results/own/models/own_net.wrong_shape/cost.json"
    proc = run_snakemake(tmp_path, "--configfile", str(cfg), "--cores", "1", target, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    log_path = tmp_path / "logs/own/models/own_net.wrong_shape/model_cost.log"
    assert log_path.exists(), out[-3000:]  # the jobs before it (the image folder's) did their part
    log = log_path.read_text()
    message = tail(log, 1)[0]  # the log ends with the message (its wording is check_model's)
    assert message.startswith("ModelError: models[0]: ") and "expected (4, 3)" in message, log[-3000:]
    assert "Traceback (most recent call last)" in log  # the traceback stays there
    assert "Traceback" not in out, out[-3000:]
    # the job's last words; after them only Snakemake's own report of the failed command, then its rule block
    lines = proc.stderr.splitlines()
    assert message in lines, proc.stderr[-3000:]
    at = lines.index(message)
    between = lines[at + 1 : lines.index("Error in rule model_cost:")]
    assert between and all(
        line.startswith(("RuleException", "CalledProcessError in file", "Command ", "[")) for line in between
    ), between
    assert "logs/own/models/own_net.wrong_shape/model_cost.log" in proc.stderr[proc.stderr.index(message) :]
    assert not (tmp_path / target).exists()  # the job failed: no output, nor a temporary file beside it
    assert not list((tmp_path / "results/own/models").rglob("*"))
