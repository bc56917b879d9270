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
	@echo "make decode-librispeech   pocketsphinx SLF lattices of LIBRI_CORPUS into DECODE_DIR (real-data check)"
	@echo "make bench-lm | bench-lattices   benchmarks (bench/RESULTS.md)"

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
	@command -v dot >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get update -qq && apt-get install -y -qq graphviz >/dev/null; } ; } || \
	  echo "note: graphviz 'dot' not found; 'afp-lattice draw' can then write only .dot/.gv files" >&2
	touch $@

test: install
	$(PY) -m pyflakes models lattices rescore tests bench
	$(PY) -m pytest $(PYTEST_FLAGS)

# --- language model ----------------------------------------------------------------------------
# Each stage is a file target made by one afp-* command.
$(DEMO_DIR)/lm/model.pt: $(DEMO_DATA)/train.txt $(DEMO_DATA)/valid.txt $(DEMO_DATA)/test.txt | $(VENV)/.installed
	$(BIN)/afp-train-lm --train $(DEMO_DATA)/train.txt --valid $(DEMO_DATA)/valid.txt \
	  --test $(DEMO_DATA)/test.txt --out $(@D) --cell lstm --layers 1 --embed 128 --hidden 128 \
	  --iterations 4 --mode afp --epochs 3 --batch-size 32 --lr 3e-3 --max-vocab 5000 --device $(DEVICE) --seed 1

demo: $(DEMO_DIR)/lm/model.pt
	$(BIN)/afp-lm-ppl --lm $< --text $(DEMO_DATA)/test.txt --device $(DEVICE)

$(LM_DIR)/model.pt: $(TRAIN) $(VALID) | $(VENV)/.installed
	$(BIN)/afp-train-lm $(addprefix --train ,$(TRAIN)) --valid $(VALID) $(if $(TEST),--test $(TEST)) \
	  --out $(@D) --cell $(CELL) --layers $(LAYERS) --embed $(EMBED) --hidden $(HIDDEN) \
	  --iterations $(ITERATIONS) --mode $(MODE) --epochs $(EPOCHS) --batch-size $(BATCH_SIZE) \
	  --max-vocab $(MAX_VOCAB) --device $(DEVICE) $(TRAIN_FLAGS)

train-lm: $(LM_DIR)/model.pt

clean:
	rm -rf exp .pytest_cache

distclean: clean
	rm -rf $(VENV) *.egg-info

# --- benchmarks --------------------------------------------------------------------------------
# PTB language-model benchmark (issue 2): same-size AFP-K vs BPTT. Run names: bptt, afpK.
PTB ?= ../shared/data/ptb
BENCH_LM_DIR ?= exp/bench-lm
BENCH_LM_RUNS ?= bptt afp2 afp4 afp8
BENCH_THREADS ?= 1
BENCH_LM_FLAGS ?= --cell lstm --layers 1 --embed 128 --hidden 128 --tie --batch-size 32 --lr 3e-3 \
                  --epochs 2 --max-vocab 10000 --device cpu --seed 1 --no-progress

$(BENCH_LM_DIR)/%/metrics.json: | $(VENV)/.installed
	OMP_NUM_THREADS=$(BENCH_THREADS) $(BIN)/afp-train-lm --train $(PTB)/ptb.train.txt --valid $(PTB)/ptb.valid.txt \
	  --test $(PTB)/ptb.test.txt --out $(@D) $(BENCH_LM_FLAGS) \
	  $(if $(filter bptt,$*),--mode bptt,--mode afp --iterations $(patsubst afp%,%,$*))

$(BENCH_LM_DIR)/table.md: $(patsubst %,$(BENCH_LM_DIR)/%/metrics.json,$(BENCH_LM_RUNS))
	OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) bench/lm_table.py --test $(PTB)/ptb.test.txt --out $@ $^

.PHONY: bench-lm bench-lattices
bench-lm: $(BENCH_LM_DIR)/table.md
	cat $<

# Lattice read / n-best / oracle on the pocketsphinx LibriSpeech lattices (issue 3).
include bench/decode.mk

$(DECODE_DIR)/lattice_bench.json: $(DECODE_DIR)/lats/.done
	OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) bench/lattice_throughput.py $(DECODE_DIR)/lats --ref $(DECODE_DIR)/ref.txt --hyp $(DECODE_DIR)/hyp.txt \
	  -n 1 -n 10 -n 100 --json $@

bench-lattices: $(DECODE_DIR)/lattice_bench.json
