# The two commands a user needs:   make demo    (set up, build the demo gallery: CPU, offline, a minute)
#                                  make test    (set up with test tools, run the suite)
# Before a commit:                 make lint    (ruff check, ruff format --check, mypy; CI runs it too)
# Then your own gallery:           make build   (render what prompts.yaml asks for, write site/)
#                                  make watch   (the same as you edit: the open page fills in)
PYTHON ?= python3
VENV   ?= .venv
CONFIG ?= prompts.yaml
# A GPU user may want another build: make build TORCH='torch==2.14.1' (or install torch first).
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e .
	touch $@

# The tests also run the esrgan upscaler, whose loader (spandrel) needs torchvision built for the
# same torch. PyPI's torchvision does not import beside the 2.13.0 CPU build, so the tests take a
# matching pair (a CUDA build, 5.5 GB; it runs on the CPU too), unless a torchvision is there already.
# They also quantize a tiny model with torchao (the quantize extra: render.quantize: int8).
TORCH_PAIR ?= torch==2.14.1 torchvision==0.29.1

$(VENV)/.installed-test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torchvision" 2>/dev/null || $(BIN)/pip install --quiet $(TORCH_PAIR)
	$(BIN)/pip install --quiet -e ".[test,esrgan,quantize]"
	# only for its CLIP vocabulary file; --no-deps keeps its other needs out
	$(BIN)/pip install --quiet --no-deps "open-clip-torch==3.3.0"
	touch $@

# axe-core (npm) for the browser tests' accessibility checks: the exact version in tests/axe's lock
# file, checked against its hash; npm's own cache makes a second install offline. A stamp file,
# because npm gives the files it unpacks a fixed old date.
AXE := tests/axe/node_modules/.installed
$(AXE): tests/axe/package.json tests/axe/package-lock.json
	npm ci --prefix tests/axe --prefer-offline --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed

# Each of these is the `gallery` command of the same name on $(CONFIG).
COMMANDS := build plan render site verify prune serve publish
.PHONY: setup $(COMMANDS) watch demo screenshot test lint axe gpu-wheels
$(COMMANDS): setup
	$(BIN)/gallery $@ --config $(CONFIG)

# The editing loop: serve the page, and on each save of $(CONFIG) (or a template) render what is
# missing in the background; the open page fills in as images land.
watch: setup
	$(BIN)/gallery serve --watch --config $(CONFIG)

# The demo: the project's own tiny model (demo/model) on demo/prompts.yaml, no download needed,
# into site/ (committed: GitHub Pages shows it; tests/test_demo.py checks it is what this makes).
demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/gallery build --config demo/prompts.yaml
	@echo "Preview it: make serve CONFIG=demo/prompts.yaml   (or publish it: make publish CONFIG=demo/prompts.yaml)"

screenshot: $(VENV)/.installed-test
	$(BIN)/python scripts/screenshot.py --config $(CONFIG) --out docs/screenshot.png

axe: $(AXE)

test: $(VENV)/.installed-test $(AXE)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# Lint, format and types, as configured in pyproject.toml ([tool.ruff], [tool.mypy]); each must be clean.
# `$(BIN)/ruff format .` rewrites the files the format check names.
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The packages benchmarks/gpu.sh installs on a GPU machine that has PyTorch and transformers but no
# network: pure-Python wheels (any Python 3, any platform), about 5 MB, into benchmarks/wheels/
# (git-ignored; carry it with the checkout). Then, there: bash benchmarks/gpu.sh
GPU_WHEELS ?= diffusers==0.42.1 importlib_metadata==10.2.0 spandrel==0.4.2 open-clip-torch==3.3.0
gpu-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: -d benchmarks/wheels $(GPU_WHEELS)
