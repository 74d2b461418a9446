# The README's commands. `make install` is idempotent; every other target depends on it.
PYTHON     ?= python3
VENV       ?= .venv
BIN        := $(VENV)/bin
# CPU wheel by default (no CUDA download); GPU users: make install TORCH_SPEC='torch>=2.4'
TORCH_SPEC ?= torch==2.13.0
EXTRAS     ?= test
STAMP      := $(VENV)/.installed

.PHONY: install quickstart quickstart-tiny test test-fast bench lint doctor images clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

quickstart: install
	$(BIN)/hrm-spawn quickstart

quickstart-tiny: install
	$(BIN)/hrm-spawn quickstart --tiny

test: install
	$(BIN)/python -m pytest -q tests

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" tests

bench: install
	$(BIN)/python benchmarks/run_all.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

doctor: install
	$(BIN)/hrm-spawn doctor

# The docker sandbox's base image (Debian via debootstrap + swe-rex from PyPI); needs root. Tagged by a hash
# of its inputs, so a second run only checks. Images of built repositories: hrm-spawn images build --repo NAME
images: install
	$(BIN)/hrm-spawn images build --check >/dev/null || { \
	  command -v debootstrap >/dev/null || (apt-get update -qq && apt-get install -y -qq debootstrap); \
	  $(BIN)/hrm-spawn images build; }

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
