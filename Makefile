# The two commands of the README: `make demo` and `make test`. Both create the environment first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all

# Every config the checks cover: the paper's, the demo, and the test configs.
CONFIGS := config/config.yaml config/demo.yaml $(sort $(wildcard .test/config/*.yaml))
SNAKEMAKE := $(BIN)/snakemake
# Building the DAG needs no PyTorch: `env-light` is the venv without it, for the check jobs on GitHub.
NO_TORCH := torch|torchvision|lpips|scikit-image

.PHONY: env env-light demo test dryrun check format-check lint dryruns clean-demo gpu-check

env: $(VENV)/.installed
env-light: $(VENV)/.installed-light

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-light: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	grep -vE '^($(NO_TORCH))==' requirements.txt > $(VENV)/requirements-light.txt
	$(BIN)/python -m pip install --quiet -r $(VENV)/requirements-light.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

demo: env
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml

test: env
	$(BIN)/python -m pytest

dryrun: env
	$(BIN)/snakemake -n --quiet rules

# On a machine with a CUDA GPU: the CUDA tests and the GPU figures into benchmarks/results.md (within 9 minutes).
gpu-check: env
	PYTHON=$(BIN)/python bash benchmarks/gpu_check.sh

# What CI checks besides the tests: .ci/run and the jobs of .github/workflows/main.yml run these targets
# (after `make env` or `make env-light`).
check: format-check lint dryruns

format-check:
	$(BIN)/snakefmt --check .
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

lint:
	$(BIN)/actionlint
	set -e; for c in $(CONFIGS); do echo "snakemake --lint --configfile $$c"; $(SNAKEMAKE) --lint --configfile $$c; done

# config/config.yaml, the paper's study, is the first of CONFIGS; the SLURM plan is the paper's too.
dryruns:
	$(SNAKEMAKE) -n --quiet rules --profile slurm
	set -e; for c in $(CONFIGS); do echo "snakemake -n --configfile $$c"; $(SNAKEMAKE) -n --quiet rules --configfile $$c; done

clean-demo:
	rm -rf results/demo logs/demo
