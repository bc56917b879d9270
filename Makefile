# afp-rescore — set-up, tests, demo and batch jobs.
# Every setting below can be overridden: `make demo DEVICE=cuda`, `make train-lm TRAIN=... VALID=...`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

# --- environment -------------------------------------------------------------------------------
# k2==1.23.4 is a CPython 3.9 wheel: find a *working* python3.9 (the bare pyenv shim may fail).
PYTHON39 ?= $(shell for p in python3.9 $(HOME)/.pyenv/versions/3.9.*/bin/python3.9 \
              /root/.pyenv/versions/3.9.*/bin/python3.9 /usr/bin/python3.9 /usr/local/bin/python3.9; do \
              "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 9)' >/dev/null 2>&1 && { echo "$$p"; break; }; \
              done)
VENV ?= .venv
PY ?= $(VENV)/bin/python
BIN ?= $(VENV)/bin
PIP_FLAGS ?= -q --disable-pip-version-check
PYTEST_FLAGS ?= -q

# --- demo / train-lm settings ------------------------------------------------------------------
DEMO_DATA ?= data/demo
DEMO_DIR ?= exp/demo
DEVICE ?= auto
TRAIN ?= $(DEMO_DATA)/train.txt
VALID ?= $(DEMO_DATA)/valid.txt
TEST ?= $(DEMO_DATA)/test.txt
LM_DIR ?= exp/lm
CELL ?= lstm
LAYERS ?= 1
HIDDEN ?= 256
EMBED ?= 256
ITERATIONS ?= 4
MODE ?= afp
EPOCHS ?= 10
BATCH_SIZE ?= 32
MAX_VOCAB ?= 10000
TRAIN_FLAGS ?=

.PHONY: help install test demo train-lm clean distclean

help:
	@echo "make install   build $(VENV) (CPython 3.9 + torch 1.13.1 + k2 1.23.4) and install afp-rescore"
	@echo "make test      install, then run the test suite"
	@echo "make demo      install, train a small AFP LM on bundled text and report its perplexity"
	@echo "make train-lm  TRAIN=... VALID=... [TEST=...] LM_DIR=... [CELL= LAYERS= HIDDEN= ITERATIONS= MODE=]"

# --- set-up ------------------------------------------------------------------------------------
install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@if [ -z "$(PYTHON39)" ]; then \
	  echo "error: no working CPython 3.9 found (tried python3.9 and pyenv versions/3.9.*)." >&2; \
	  echo "       k2==1.23.4 ships only cp39 wheels; install 3.9 (e.g. 'pyenv install 3.9') or pass PYTHON39=/path/to/python3.9" >&2; \
	  exit 1; fi
	[ -x $(PY) ] || $(PYTHON39) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip 'setuptools>=61' wheel 2> >(grep -v 'is ignored' >&2)
	$(PY) -m pip install $(PIP_FLAGS) -e '.[dev]' 2> >(grep -v 'is ignored' >&2)
	$(PY) -c 'import torch, k2, lhotse, models; print("ok: torch", torch.__version__, "k2 + lhotse", lhotse.__version__)'
	touch $@

test: install
	$(PY) -m pytest $(PYTEST_FLAGS)

# --- language model ----------------------------------------------------------------------------
# Each stage is a file target made by one afp-* command.
$(DEMO_DIR)/lm/model.pt: $(VENV)/.installed $(DEMO_DATA)/train.txt $(DEMO_DATA)/valid.txt $(DEMO_DATA)/test.txt
	$(BIN)/afp-train-lm --train $(DEMO_DATA)/train.txt --valid $(DEMO_DATA)/valid.txt \
	  --test $(DEMO_DATA)/test.txt --out $(@D) --cell lstm --layers 1 --embed 128 --hidden 128 \
	  --iterations 4 --mode afp --epochs 3 --batch-size 32 --lr 3e-3 --max-vocab 5000 --device $(DEVICE) --seed 1

demo: $(DEMO_DIR)/lm/model.pt
	$(BIN)/afp-lm-ppl --lm $< --text $(DEMO_DATA)/test.txt --device $(DEVICE)

$(LM_DIR)/model.pt: $(VENV)/.installed $(TRAIN) $(VALID)
	$(BIN)/afp-train-lm $(addprefix --train ,$(TRAIN)) --valid $(VALID) $(if $(TEST),--test $(TEST)) \
	  --out $(@D) --cell $(CELL) --layers $(LAYERS) --embed $(EMBED) --hidden $(HIDDEN) \
	  --iterations $(ITERATIONS) --mode $(MODE) --epochs $(EPOCHS) --batch-size $(BATCH_SIZE) \
	  --max-vocab $(MAX_VOCAB) --device $(DEVICE) $(TRAIN_FLAGS)

train-lm: $(LM_DIR)/model.pt

clean:
	rm -rf exp .pytest_cache

distclean: clean
	rm -rf $(VENV) *.egg-info
