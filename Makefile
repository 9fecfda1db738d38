# The two commands a user needs:   make build   (set up, render what is missing, write site/)
#                                  make test    (set up with test tools, run the suite)
PYTHON ?= python3
VENV   ?= .venv
CONFIG ?= prompts.yaml
# A GPU user may want another build: make build TORCH='torch==2.14.1' (or install torch first).
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin

.PHONY: setup build plan render site verify prune serve publish screenshot test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	# only for its CLIP vocabulary file; --no-deps keeps torchvision (and a CUDA torch) out
	$(BIN)/pip install --quiet --no-deps "open-clip-torch==3.3.0"
	touch $@

setup: $(VENV)/.installed

build: setup
	$(BIN)/gallery build --config $(CONFIG)

plan: setup
	$(BIN)/gallery plan --config $(CONFIG)

render: setup
	$(BIN)/gallery render --config $(CONFIG)

site: setup
	$(BIN)/gallery site --config $(CONFIG)

verify: setup
	$(BIN)/gallery verify --config $(CONFIG)

prune: setup
	$(BIN)/gallery prune --config $(CONFIG)

serve: setup
	$(BIN)/gallery serve --config $(CONFIG)

publish: setup
	$(BIN)/gallery publish --config $(CONFIG)

screenshot: $(VENV)/.installed-test
	$(BIN)/python scripts/screenshot.py --config $(CONFIG) --out docs/screenshot.png

test: $(VENV)/.installed-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q
