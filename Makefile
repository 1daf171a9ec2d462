# The two commands of the README: `make demo` and `make test`. Both create the environment first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: env demo test dryrun clean-demo

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

demo: env
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml

test: env
	$(BIN)/python -m pytest

dryrun: env
	$(BIN)/snakemake -n --quiet rules

clean-demo:
	rm -rf results/demo logs/demo
