# The two set-up commands of the README: `make demo` and `make test`.
# Both work on a fresh machine with only Python 3.11+, pip and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PYTEST_FLAGS ?= -n 2

.PHONY: demo test test-slow test-gpu lint bench docs clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev,bench,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/physnode fit three-body --out results/three-body

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy physnode
	$(PY) -m pytest $(PYTEST_FLAGS) -m "not slow" tests
	$(PY) -m pytest $(PYTEST_FLAGS) --nbmake tutorials

test-slow: $(STAMP)
	$(PY) -m pytest $(PYTEST_FLAGS) -m slow tests

# On a machine with a GPU and a CUDA build of torch: every CUDA-marked test (including each device-parametrised
# test on cuda) and the GPU benchmark (10,000 three-body trajectories vs torchode). The venv installs the CPU wheel
# pinned in constraints.txt; on a machine whose Python already has a CUDA torch and physnode's dependencies, use
# that Python instead: `make test-gpu GPU_DEPS= PY=python3` (run from the repository root).
GPU_DEPS ?= $(STAMP)
test-gpu: $(GPU_DEPS)
	$(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'make test-gpu needs a CUDA device: torch.cuda.is_available() is False (a CUDA build of torch and a GPU).')"
	$(PY) -m pytest -p no:xdist -m cuda --ignore=tests/docs tests
	$(PY) -m physnode.bench gpu --device cuda --repeats 1

lint: $(STAMP)
	$(VENV)/bin/ruff check .

docs: $(STAMP)
	PHYSNODE_DOCS_EXECUTE=true NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

bench: $(STAMP)
	$(VENV)/bin/physnode bench all

clean:
	rm -rf $(VENV) results build dist .pytest_cache .ruff_cache .mypy_cache
