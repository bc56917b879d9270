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
NGRAM_ARPA ?= exp/ngram/en-us.arpa.gz
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

.PHONY: help install test demo train-lm rescore clean distclean

help:
	@echo "make install   build $(VENV) (CPython 3.9 + torch 1.13.1 + k2 1.23.4) and install afp-rescore"
	@echo "make test      install, then run the test suite"
	@echo "make demo      install, tune and rescore bundled real first-pass lattices with the bundled small AFP LM, print WER"
	@echo "make train-lm  TRAIN=... VALID=... [TEST=...] LM_DIR=... [CELL= LAYERS= HIDDEN= ITERATIONS= MODE=]"
	@echo "make rescore   LATS=... LM=... OUT=... JOBS=N [SHARDS=M] [REF=...] [SUBMIT='srun ...'] [RESCORE_FLAGS=...]"
	@echo "make books-lms  AFP-4 and BPTT LMs on the 56M-word books (CPU hours; rerun to resume)"
	@echo "make books-small-lms  1x128 AFP-2/4/8 and BPTT LMs on the books (under an hour each), compared by make bench-books-wer"
	@echo "make decode-librispeech   pocketsphinx SLF lattices of LIBRI_CORPUS into DECODE_DIR (real-data check)"
	@echo "make bench-lm | bench-lattices | bench-rescore | bench-librispeech | bench-wer-curve | bench-books-wer | bench-scaling | bench-wer-time | bench-read | bench-archive-stream | bench-lm-pass | bench-first-pass | bench-shard-threads | bench-cpu-gemm | bench-fuzz   benchmarks (bench/RESULTS.md)"

include bench/decode.mk

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
	  --iterations 4 --mode afp --epochs 2 --batch-size 32 --lr 3e-3 --max-vocab 6000 --device $(DEVICE) --seed 1 --no-progress

# The demo (issue 12): first-pass lattices of 100 real LibriSpeech test-other utterances
# (pocketsphinx lattices + its 3-gram at its own scales, pruned; `make demo-first-pass` rebuilds
# them), split by speaker into dev and test. Scales are tuned on dev with the shipped small
# book LM (`make demo-lm` rebuilds it) and applied to the held-out test speakers.
DEMO_LM ?= $(DEMO_DATA)/books-afp4-128.pt
DEMO_FP ?= $(DEMO_DATA)/first-pass
DEMO_GRID ?= --lm-scales 8,10,12,15,20 --word-penalties=-8,-6,-4,-2,0,2
DEMO_WEIGHTS ?= 0,0.25,0.5,0.75,1
DEMO_RESCORE_FLAGS ?= --nbest 5

# scales.json: LM scale, word penalty and the AFP LM's weight; scales-retuned.json: the same grid
# with the AFP weight fixed at 0, i.e. the first pass alone, its scales re-tuned on dev.
$(DEMO_DIR)/scales.json: $(DEMO_LM) $(wildcard $(DEMO_FP)/dev/*) $(DEMO_DATA)/ref.txt | $(VENV)/.installed
	$(BIN)/afp-tune $(DEMO_FP)/dev --lm $(DEMO_LM) --ref $(DEMO_DATA)/ref.txt --out $@ --device $(DEVICE) $(DEMO_GRID) --weights $(DEMO_WEIGHTS)

$(DEMO_DIR)/scales-retuned.json: $(DEMO_LM) $(wildcard $(DEMO_FP)/dev/*) $(DEMO_DATA)/ref.txt | $(VENV)/.installed
	$(BIN)/afp-tune $(DEMO_FP)/dev --lm $(DEMO_LM) --ref $(DEMO_DATA)/ref.txt --out $@ --device $(DEVICE) $(DEMO_GRID) --weights 0 --iterations 1

$(DEMO_DIR)/retuned/metrics.json: $(DEMO_DIR)/scales-retuned.json $(wildcard $(DEMO_FP)/test/*)
	$(BIN)/afp-rescore $(DEMO_FP)/test --lm $(DEMO_LM) --scales $< --iterations 1 --out $(@D) --ref $(DEMO_DATA)/ref.txt \
	  --device $(DEVICE) --force --no-progress --nbest 1

# The first pass's own 1-best (the AFP LM's weight 0, at the scales in the lattice headers).
$(DEMO_DIR)/first-pass/metrics.json: $(DEMO_LM) $(wildcard $(DEMO_FP)/test/*) $(DEMO_DATA)/ref.txt | $(VENV)/.installed
	$(BIN)/afp-rescore $(DEMO_FP)/test --lm $(DEMO_LM) --interpolate 0 --iterations 1 --out $(@D) \
	  --ref $(DEMO_DATA)/ref.txt --device $(DEVICE) --force --no-progress --nbest 1

$(DEMO_DIR)/after/metrics.json: $(DEMO_DIR)/scales.json $(wildcard $(DEMO_FP)/test/*)
	$(BIN)/afp-rescore $(DEMO_FP)/test --lm $(DEMO_LM) --scales $< --out $(@D) --ref $(DEMO_DATA)/ref.txt \
	  --device $(DEVICE) --force --no-progress $(DEMO_RESCORE_FLAGS)

$(DEMO_DIR)/oracle.txt: $(wildcard $(DEMO_FP)/test/*) $(DEMO_DATA)/ref.txt | $(VENV)/.installed
	mkdir -p $(@D)
	$(BIN)/afp-lattice oracle --ref $(DEMO_DATA)/ref.txt $(DEMO_FP)/test > $@

demo: $(DEMO_DIR)/first-pass/metrics.json $(DEMO_DIR)/retuned/metrics.json $(DEMO_DIR)/after/metrics.json $(DEMO_DIR)/oracle.txt
	@echo "WER on the $(words $(wildcard $(DEMO_FP)/test/*)) held-out test utterances (5 LibriSpeech test-other speakers), scales tuned on the other 5 speakers:"
	@$(PY) -c 'import sys; from models.files import read_references as r; from rescore.wer import wer_details as w; h = r(sys.argv[2]); x = w({u: r(sys.argv[1])[u] for u in h}, h); print("  pocketsphinx 1-best:      %%WER %.2f [ %d / %d ]" % (100 * x.wer, x.errors, x.ref_words))' \
	  $(DEMO_DATA)/ref.txt $(DEMO_DATA)/pocketsphinx-hyp.txt
	@head -1 $(DEMO_DIR)/first-pass/wer.txt | sed 's/^/  first-pass 1-best:        /'
	@head -1 $(DEMO_DIR)/retuned/wer.txt | sed 's/^/  first pass, scales tuned: /'
	@head -1 $(DEMO_DIR)/after/wer.txt | sed 's/^/  after AFP rescoring:      /'
	@tail -1 $(DEMO_DIR)/oracle.txt | sed 's/^/  first-pass lattice /'
	@$(PY) -c 'import json,sys; s=json.load(open(sys.argv[1])); print("  tuned on dev: lm_scale=%g word_penalty=%g interpolate=%g (dev WER %.2f%%)" % (s["lm_scale"], s["word_penalty"], s["interpolate"], 100 * s["errors"] / s["ref_words"]))' $(DEMO_DIR)/scales.json
	@echo "  outputs: $(DEMO_DIR)/after/{text,nbest.jsonl,ctm,metrics.json,wer.txt}"

# Rebuilds the bundled first-pass lattices (needs `make decode-librispeech` and the ARPA).
DEMO_FP_BEAM ?= 40
DEMO_DEV_SPEAKERS ?= 1688 1998 2033 2414 2609
$(DEMO_DIR)/first-pass-full/metrics.json: $(NGRAM_ARPA) | $(DECODE_DIR)/lats/.done
	$(BIN)/afp-rescore $(DECODE_DIR)/lats --lm $(NGRAM_ARPA) --am-scale 1 --lm-scale 9.5 --word-penalty -0.63 \
	  --max-arcs 500000 --ref $(DECODE_DIR)/ref.txt --write-lattices --lattice-format slf --out $(@D) --force --no-progress

$(DEMO_DIR)/first-pass-pruned/.done: $(DEMO_DIR)/first-pass-full/metrics.json
	$(BIN)/afp-lattice prune --beam $(DEMO_FP_BEAM) --to slf --out $(@D) $(<D)/lattices
	touch $@

.PHONY: demo-first-pass
demo-first-pass: $(DEMO_DIR)/first-pass-pruned/.done
	rm -rf $(DEMO_FP) && mkdir -p $(DEMO_FP)/dev $(DEMO_FP)/test
	for f in $(<D)/*.slf; do b=$$(basename $$f); \
	  case " $(DEMO_DEV_SPEAKERS) " in *" $${b%%-*} "*) d=dev;; *) d=test;; esac; \
	  gzip -9 -n -c $$f > $(DEMO_FP)/$$d/$$b.gz; done
	grep -w -F -f <(ls $(DEMO_FP)/test | cut -d. -f1) $(DECODE_DIR)/hyp.txt > $(DEMO_DATA)/pocketsphinx-hyp.txt
	cp $(DECODE_DIR)/ref.txt $(DEMO_DATA)/ref.txt

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

# --- batch rescoring ---------------------------------------------------------------------------
# make rescore LATS=dir-or-files LM=exp/lm/model.pt OUT=exp/rescore JOBS=4 [SHARDS=40] [REF=text] [SUBMIT='srun --gres=gpu:1']
# JOBS shards run at once; SHARDS (default JOBS) is how many pieces the job is cut into, so more
# shards than jobs make a rerun after a crash redo less. Shard I of SHARDS is the file target
# OUT/shards/I/metrics.json (written last by afp-rescore, so a rerun after a failure redoes only
# unfinished shards); the merge is OUT/metrics.json.
LATS ?= $(DEMO_DATA)/first-pass/test
LM ?= $(DEMO_DATA)/books-afp4-128.pt
OUT ?= exp/rescore
JOBS ?= 1
SHARDS ?= $(JOBS)
REF ?=
SUBMIT ?=
RESCORE_FLAGS ?=
# CPU threads per shard: with shards run here (no SUBMIT), the cores shared out between the JOBS
# (more threads than cores slow every job several-fold: bench/RESULTS.md 7.15); under SUBMIT, the
# job's own default (its allocation's cores). Empty: torch's default.
NPROC ?= $(shell nproc 2>/dev/null || echo 1)
RESCORE_THREADS ?= $(if $(SUBMIT),,$(shell t=$$(( $(NPROC) / $(JOBS) )); echo $$(( t > 0 ? t : 1 ))))
SHARD_DIRS = $(foreach i,$(shell seq 0 $$(($(SHARDS) - 1))),$(OUT)/shards/$(i))

# A shard that finished with some failed utterances still counts as done (they are listed in
# its failures.txt); `make rescore` then exits non-zero after merging.
$(OUT)/shards/%/metrics.json: $(LM) | $(VENV)/.installed
	$(SUBMIT) $(BIN)/afp-rescore --lm $(LM) --out $(@D) --shard $*/$(SHARDS) $(if $(REF),--ref $(REF)) \
	  $(if $(RESCORE_THREADS),--threads $(RESCORE_THREADS)) $(RESCORE_FLAGS) $(LATS) || test -f $@

$(OUT)/metrics.json: $(addsuffix /metrics.json,$(SHARD_DIRS))
	$(BIN)/afp-rescore-merge --out $(OUT) $(if $(REF),--ref $(REF)) $(SHARD_DIRS)

rescore:
	$(MAKE) -j$(JOBS) $(OUT)/metrics.json
	@if [ -s $(OUT)/failures.txt ]; then echo "failed (see $(OUT)/failures.txt):" >&2; cut -f1 $(OUT)/failures.txt >&2; exit 1; fi

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

.PHONY: bench-lm bench-lattices bench-rescore
bench-lm: $(BENCH_LM_DIR)/table.md
	cat $<

# Lattice read / n-best / oracle on the pocketsphinx LibriSpeech lattices (issue 3).

$(DECODE_DIR)/lattice_bench.json: $(DECODE_DIR)/lats/.done
	OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) bench/lattice_throughput.py $(DECODE_DIR)/lats --ref $(DECODE_DIR)/ref.txt --hyp $(DECODE_DIR)/hyp.txt \
	  -n 1 -n 10 -n 100 --json $@

bench-lattices: $(DECODE_DIR)/lattice_bench.json

# Rescoring on the 100 pocketsphinx lattices (issue 4): AFP expansion vs exact 100-best rescoring
# with the same model, and the exactness property on sampled paths. CPU unless DEVICE=cuda.
BENCH_RESCORE_DIR ?= exp/bench-rescore
BENCH_RESCORE_LM ?= $(DEMO_DATA)/books-afp4-128.pt
BENCH_RESCORE_FLAGS ?= --am-scale 1 --lm-scale 10 --word-penalty 0 --max-arcs 200000 --device cpu
BENCH_NBEST ?= 100

$(BENCH_RESCORE_DIR)/%/metrics.json: $(BENCH_RESCORE_LM) | $(DECODE_DIR)/lats/.done
	OMP_NUM_THREADS=$(BENCH_THREADS) $(BIN)/afp-rescore --lm $< --out $(@D) --ref $(DECODE_DIR)/ref.txt --force \
	  --method $* $(if $(filter nbest-exact,$*),--nbest $(BENCH_NBEST)) $(BENCH_RESCORE_FLAGS) $(DECODE_DIR)/lats

$(BENCH_RESCORE_DIR)/exactness.json: $(BENCH_RESCORE_LM) | $(DECODE_DIR)/lats/.done
	OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) bench/rescore_exactness.py --lm $< --out $@ --max-arcs 200000 $(DECODE_DIR)/lats

AMI_LATTICES ?= ../shared/data/lattices/ami-ihm

$(BENCH_RESCORE_DIR)/exactness-ami.json: $(BENCH_RESCORE_LM) | $(VENV)/.installed
	OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) bench/rescore_exactness.py --lm $< --out $@ --paths 200 --max-arcs 200000 \
	  $(wildcard $(AMI_LATTICES)/*.lat*)

bench-rescore: $(BENCH_RESCORE_DIR)/afp/metrics.json $(BENCH_RESCORE_DIR)/nbest-exact/metrics.json \
               $(BENCH_RESCORE_DIR)/exactness.json $(BENCH_RESCORE_DIR)/exactness-ami.json

# Real-speech WER benchmark (issue 5): LMs trained on War and Peace + Brown (never the test
# references), the pocketsphinx 3-gram as ARPA, 2-fold tuned WER on the 100 LibriSpeech lattices.
LM_TEXTS ?= ../shared/data/text/warandpeace.txt ../shared/data/text/brown.txt
BENCH_LS_DIR ?= exp/bench-librispeech
BENCH_LS_RUNS ?= bptt afp2 afp4 afp8 afp4sn
BENCH_LS_LM_FLAGS ?= --cell lstm --layers 1 --embed 200 --hidden 200 --tie --batch-size 32 --lr 2e-3 \
                     --epochs 1 --max-vocab 20000 --device cpu --seed 1 --no-progress
BENCH_LS_FLAGS ?= --max-arcs 200000 --ngram-max-arcs 500000 --device cpu

$(BENCH_LS_DIR)/text/train.txt: $(LM_TEXTS) | $(VENV)/.installed
	$(PY) bench/prepare_lm_text.py $(LM_TEXTS) $(@D) --valid-lines 2000 --test-lines 0

# Run names: bptt, afpK, and afpKsn (AFP-K trained self-normalised with --self-norm
# $(BENCH_LS_SELF_NORM); the benchmark scores it with --no-normalize).
BENCH_LS_SELF_NORM ?= 0.1

$(BENCH_LS_DIR)/lm/%/metrics.json: | $(BENCH_LS_DIR)/text/train.txt
	OMP_NUM_THREADS=$(BENCH_THREADS) $(BIN)/afp-train-lm --train $(BENCH_LS_DIR)/text/train.txt \
	  --valid $(BENCH_LS_DIR)/text/valid.txt --out $(@D) $(BENCH_LS_LM_FLAGS) \
	  $(if $(filter bptt,$*),--mode bptt,--mode afp --iterations $(patsubst afp%,%,$(patsubst %sn,%,$*))) \
	  $(if $(filter %sn,$*),--self-norm $(BENCH_LS_SELF_NORM))

.PHONY: bench-librispeech-lms
bench-librispeech-lms: $(patsubst %,$(BENCH_LS_DIR)/lm/%/metrics.json,$(BENCH_LS_RUNS))

# LMs on the public-domain books (issue 12): 56M words, whole books held out. Two families of runs,
# each named MODE or small-MODE with MODE = bptt or afpK:
# - MODE: 1x256 tied LSTM, 30k words, one epoch (about 100k steps, many CPU hours). The job
#   checkpoints every BOOKS_CHECKPOINT steps and a rerun of the same make command resumes it
#   (from last.pt) until metrics.json exists. BOOKS_MAX_STEPS caps the total.
# - small-MODE: 1x128 tied LSTM, 10k words, BOOKS_SMALL_STEPS steps of 32 sentences (about 6.9M
#   tokens; 23-46 minutes of training on one contended core, bench/RESULTS.md §11). small-afp4 is
#   the LM shipped with the demo (make demo-lm).
BOOKS ?= ../shared/data/text/books
BOOKS_DIR ?= exp/books
BOOKS_RUNS ?= afp4 bptt
BOOKS_SMALL_RUNS ?= small-afp2 small-afp4 small-afp8 small-bptt
BOOKS_CHECKPOINT ?= 3000
BOOKS_MAX_STEPS ?=
BOOKS_COMMON_FLAGS ?= --cell lstm --layers 1 --tie --batch-size 32 --epochs 1 --device $(DEVICE) --seed 1 --no-progress
BOOKS_LM_FLAGS ?= $(BOOKS_COMMON_FLAGS) --embed 256 --hidden 256 --lr 2e-3 --max-vocab 30000 \
                  --checkpoint-every $(BOOKS_CHECKPOINT) $(if $(BOOKS_MAX_STEPS),--max-steps $(BOOKS_MAX_STEPS))
BOOKS_SMALL_STEPS ?= 12000
BOOKS_SMALL_FLAGS ?= $(BOOKS_COMMON_FLAGS) --embed 128 --hidden 128 --lr 3e-3 --max-vocab 10000 \
                     --max-steps $(BOOKS_SMALL_STEPS) --checkpoint-every 2000
books_mode = $(if $(filter bptt,$1),--mode bptt,--mode afp --iterations $(patsubst afp%,%,$1))
books_flags = $(if $(filter small-%,$1),$(BOOKS_SMALL_FLAGS),$(BOOKS_LM_FLAGS)) $(call books_mode,$(patsubst small-%,%,$1))

$(BOOKS_DIR)/text/train.txt.gz: | $(VENV)/.installed
	cd bench && ../$(PY) prepare_books.py $(abspath $(BOOKS)) $(abspath $(@D)) \
	  $(if $(wildcard $(DECODE_DIR)/ref.txt),--ref $(abspath $(DECODE_DIR)/ref.txt))

$(BOOKS_DIR)/lm/%/metrics.json: | $(BOOKS_DIR)/text/train.txt.gz
	OMP_NUM_THREADS=$(BENCH_THREADS) $(BIN)/afp-train-lm --train $(BOOKS_DIR)/text/train.txt.gz \
	  --valid $(BOOKS_DIR)/text/valid.txt.gz --test $(BOOKS_DIR)/text/test.txt.gz --out $(@D) \
	  $(call books_flags,$*) $(if $(wildcard $(@D)/last.pt),--resume)

# The demo's LM (data/demo/books-afp4-128.pt) is the small AFP-4 run.
.PHONY: demo-lm
demo-lm: $(BOOKS_DIR)/lm/small-afp4/metrics.json
	cp $(BOOKS_DIR)/lm/small-afp4/model.pt $(DEMO_DATA)/books-afp4-128.pt

.PHONY: books-small-lms
books-small-lms: $(patsubst %,$(BOOKS_DIR)/lm/%/metrics.json,$(BOOKS_SMALL_RUNS))

.PHONY: books-lms
books-lms: $(patsubst %,$(BOOKS_DIR)/lm/%/metrics.json,$(BOOKS_RUNS))


# Writes the pocketsphinx en-us 3-gram as ARPA (and benchmarks loading it: bench/RESULTS.md §5).
$(NGRAM_ARPA): | $(VENV)/.installed
	$(PY) -c 'import pocketsphinx' 2>/dev/null || $(PY) -m pip install $(PIP_FLAGS) pocketsphinx==5.1.1
	mkdir -p $(@D)
	OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) bench/ngram_load.py --arpa $@ > $(@D)/load.json

# $(call wer_table,LM_DIR,RUNS): the 2-fold WER table with the runs afpK / small-afpK (--afp),
# afpKsn (--afp-self-norm) and bptt / small-bptt (--bptt) of LM_DIR.
wer_table = OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) bench/librispeech_wer.py --lats $(DECODE_DIR)/lats --ref $(DECODE_DIR)/ref.txt \
  --hyp $(DECODE_DIR)/hyp.txt --ngram $(NGRAM_ARPA) --out $(@D) $(BENCH_LS_FLAGS) \
  $(foreach r,$(filter-out %sn,$(filter afp% small-afp%,$2)),--afp $1/$(r)/model.pt) \
  $(foreach r,$(filter %sn,$2),--afp-self-norm $1/$(r)/model.pt) \
  $(foreach r,$(filter %bptt,$2),--bptt $1/$(r)/model.pt)

$(BENCH_LS_DIR)/wer/table.md: $(NGRAM_ARPA) $(patsubst %,$(BENCH_LS_DIR)/lm/%/metrics.json,$(BENCH_LS_RUNS)) \
                              | $(DECODE_DIR)/lats/.done
	$(call wer_table,$(BENCH_LS_DIR)/lm,$(BENCH_LS_RUNS))

# The same table with the LMs trained on the books (issue 12 §4).
BOOKS_WER_RUNS ?= $(BOOKS_SMALL_RUNS)
$(BOOKS_DIR)/wer/table.md: $(NGRAM_ARPA) $(patsubst %,$(BOOKS_DIR)/lm/%/metrics.json,$(BOOKS_WER_RUNS)) \
                           | $(DECODE_DIR)/lats/.done
	$(call wer_table,$(BOOKS_DIR)/lm,$(BOOKS_WER_RUNS))

.PHONY: bench-books-wer
bench-books-wer: $(BOOKS_DIR)/wer/table.md

.PHONY: bench-librispeech
bench-librispeech: $(BENCH_LS_DIR)/wer/table.md

# The same table as a WER-against-time curve (issue 10): AFP-4 and its self-normalised twin at
# several --max-arcs and lattice beams, against the exact N-best of the same models on the same
# lattices, in one run.
BENCH_CURVE_DIR ?= $(BENCH_LS_DIR)/wer-curve
BENCH_CURVE_MAX_ARCS ?= 10000,20000,50000,100000,200000
BENCH_CURVE_NBEST ?= 10,100
BENCH_CURVE_BEAMS ?= 150,40,20,10
$(BENCH_CURVE_DIR)/table.md: BENCH_LS_FLAGS = --max-arcs $(BENCH_CURVE_MAX_ARCS) --nbest $(BENCH_CURVE_NBEST) \
                                              --beam $(BENCH_CURVE_BEAMS) --ngram-max-arcs 500000 --device cpu
$(BENCH_CURVE_DIR)/table.md: $(NGRAM_ARPA) $(BENCH_LS_DIR)/lm/afp4/metrics.json $(BENCH_LS_DIR)/lm/afp4sn/metrics.json \
                             | $(DECODE_DIR)/lats/.done
	$(call wer_table,$(BENCH_LS_DIR)/lm,afp4 afp4sn)

.PHONY: bench-wer-curve
bench-wer-curve: $(BENCH_CURVE_DIR)/table.md

# Scale (issue 10): one afp-rescore job over N copies of a real lattice, N = 100, 1000, 10000,
# time per utterance and peak RSS; BENCH_BASELINE=DIR (a checkout of older code) runs the same
# jobs with it in the same run.
BENCH_SCALING_DIR ?= exp/bench-scaling
BENCH_SCALING_LATTICE ?= tests/data/lattices/theanolm/lattice.slf
BENCH_SCALING_NS ?= 100,1000,10000
BENCH_SCALING_FLAGS ?= --lm-scale 10
BENCH_SCALING_LM ?= $(DEMO_DIR)/lm/model.pt
BENCH_BASELINE ?=

$(BENCH_SCALING_DIR)/scaling.json: $(BENCH_SCALING_LM)
	$(PY) bench/scaling.py --lattice $(BENCH_SCALING_LATTICE) --lm $< --ns $(BENCH_SCALING_NS) --out $(@D) \
	  --flags '$(BENCH_SCALING_FLAGS)' --threads $(BENCH_THREADS) $(if $(BENCH_BASELINE),--baseline $(BENCH_BASELINE))

# WER against rescoring time (issue 10): AFP-K over --max-arcs vs exact N-best, same LM and lattices.
BENCH_WT_DIR ?= exp/bench-wer-time
BENCH_WT_LM ?= $(BENCH_LS_DIR)/lm/afp4/model.pt
BENCH_WT_MAX_ARCS ?= 10000,30000,100000,300000
BENCH_WT_NBEST ?= 10,100,1000

$(BENCH_WT_DIR)/wer_time.json: $(dir $(BENCH_WT_LM))metrics.json | $(DECODE_DIR)/lats/.done
	$(PY) bench/wer_time.py --lm $(BENCH_WT_LM) --lats $(DECODE_DIR)/lats --ref $(DECODE_DIR)/ref.txt --out $(@D) \
	  --max-arcs $(BENCH_WT_MAX_ARCS) --nbest $(BENCH_WT_NBEST) --threads $(BENCH_THREADS)

# Reading speed (issue 10): the LibriSpeech SLF lattices, the same lattices as one Kaldi binary and
# one text archive, and BENCH_READ_COPIES copies of the real Kaldi archive of the tests (with its
# transition ids), this code against BENCH_BASELINE (when given) in the same run.
BENCH_READ_DIR ?= exp/bench-read
BENCH_READ_COPIES ?= 300

$(BENCH_READ_DIR)/lats.ark: | $(DECODE_DIR)/lats/.done
	$(BIN)/afp-lattice convert --to kaldi $(DECODE_DIR)/lats --out $@

$(BENCH_READ_DIR)/text/lats.ark: | $(DECODE_DIR)/lats/.done
	$(BIN)/afp-lattice convert --to kaldi-text $(DECODE_DIR)/lats --out $@

$(BENCH_READ_DIR)/real/lat1-x$(BENCH_READ_COPIES).ark: tests/data/lattices/kaldi-binary/lat.1 bench/replicate_archive.py
	$(PY) bench/replicate_archive.py $< --copies $(BENCH_READ_COPIES) --out $@

$(BENCH_READ_DIR)/read_speed.json: $(BENCH_READ_DIR)/lats.ark $(BENCH_READ_DIR)/text/lats.ark \
    $(BENCH_READ_DIR)/real/lat1-x$(BENCH_READ_COPIES).ark bench/read_speed.py
	$(PY) bench/read_speed.py $(DECODE_DIR)/lats $(wordlist 1,3,$^) --threads $(BENCH_THREADS) --json $@ \
	  $(if $(BENCH_BASELINE),--baseline $(BENCH_BASELINE))

# The LM pass alone (issue 10): K Jacobi iterations per history (the code before the prefix tree)
# vs the prefix tree, and the self-normalised model without the normaliser, on the expanded
# LibriSpeech lattices (by default the 10 of speaker 1688, to keep the Jacobi reference short);
# the dump needs k2, `time` does not (copy pairs.pt to a GPU box).
BENCH_PASS_DIR ?= exp/bench-lm-pass
BENCH_PASS_LM ?= $(BENCH_LS_DIR)/lm/afp4/model.pt
BENCH_PASS_SN_LM ?= $(BENCH_LS_DIR)/lm/afp4sn/model.pt
BENCH_PASS_DEVICE ?= cpu
BENCH_PASS_LATS ?= $(DECODE_DIR)/lats/1688-*
BENCH_PASS_REPEAT ?= 1

$(BENCH_PASS_DIR)/pairs.pt: $(dir $(BENCH_PASS_LM))metrics.json | $(DECODE_DIR)/lats/.done
	mkdir -p $(@D)
	OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) bench/lm_pass.py dump --lm $(BENCH_PASS_LM) --out $@ --max-arcs 200000 $(BENCH_PASS_LATS)

$(BENCH_PASS_DIR)/time.jsonl: $(BENCH_PASS_DIR)/pairs.pt $(dir $(BENCH_PASS_SN_LM))metrics.json
	OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) bench/lm_pass.py time --lm $(BENCH_PASS_LM) --pairs $< \
	  --device $(BENCH_PASS_DEVICE) --repeat $(BENCH_PASS_REPEAT) --expand --unblocked > $@.tmp
	OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) bench/lm_pass.py time --lm $(BENCH_PASS_SN_LM) --pairs $< \
	  --device $(BENCH_PASS_DEVICE) --repeat $(BENCH_PASS_REPEAT) --states tree --no-normalize --unblocked --per-step-inputs >> $@.tmp
	mv $@.tmp $@

# Where the time of a job with an n-gram first pass goes (issue 10): one afp-rescore job per
# --batch-arcs value, with timers around the first pass's stages (look-ahead, each kind of growth);
# BENCH_BASELINE=DIR (a checkout of older code) runs the same jobs with it in the same run.
BENCH_FP_DIR ?= exp/bench-first-pass
BENCH_FP_LM ?= $(BENCH_LS_DIR)/lm/afp4sn/model.pt
BENCH_FP_BATCH_ARCS ?= 50000,200000,1000000
BENCH_FP_FLAGS ?= --no-normalize --old-lm $(abspath $(NGRAM_ARPA)) --lm-scale 12 --word-penalty 0 --interpolate 0.25 \
                  --first-pass-beam 20 --no-ctm --device cpu --ref $(abspath $(DECODE_DIR)/ref.txt)

$(BENCH_FP_DIR)/table.md: $(dir $(BENCH_FP_LM))metrics.json $(NGRAM_ARPA) | $(DECODE_DIR)/lats/.done
	$(PY) bench/first_pass.py run --lm $(BENCH_FP_LM) --flags '$(BENCH_FP_FLAGS)' --batch-arcs $(BENCH_FP_BATCH_ARCS) \
	  --out $(@D) --threads $(BENCH_THREADS) $(if $(BENCH_BASELINE),--baseline $(BENCH_BASELINE)) $(DECODE_DIR)/lats

.PHONY: bench-first-pass
bench-first-pass: $(BENCH_FP_DIR)/table.md

# One big Kaldi archive (issue 10 streaming): the LibriSpeech lattices as one text and one binary
# archive, and BENCH_AS_COPIES copies of them, streamed whole and as shard 0 of BENCH_AS_SHARDS:
# seconds and peak RSS; BENCH_BASELINE=DIR runs older code in the same run.
BENCH_AS_DIR ?= exp/bench-archive-stream
BENCH_AS_COPIES ?= 10
BENCH_AS_SHARDS ?= 10

$(BENCH_AS_DIR)/table.md: bench/archive_stream.py | $(DECODE_DIR)/lats/.done
	$(PY) bench/archive_stream.py $(DECODE_DIR)/lats --copies $(BENCH_AS_COPIES) --shards $(BENCH_AS_SHARDS) --out $(@D) \
	  $(if $(BENCH_BASELINE),--baseline $(BENCH_BASELINE))

.PHONY: bench-archive-stream
bench-archive-stream: $(BENCH_AS_DIR)/table.md

# Shards on one machine: `make rescore JOBS=N` with torch's default threads in every shard against
# the Makefile's cores/JOBS (RESCORE_THREADS), alternately, on the bundled demo lattices.
BENCH_ST_DIR ?= exp/bench-shard-threads
BENCH_ST_JOBS ?= 2,3
BENCH_ST_REPEAT ?= 2
BENCH_ST_FLAGS ?= --lm-scale 10

$(BENCH_ST_DIR)/table.md: bench/shard_threads.py $(LM) | $(VENV)/.installed
	$(PY) bench/shard_threads.py --jobs $(BENCH_ST_JOBS) --repeat $(BENCH_ST_REPEAT) --out $(@D) \
	  --lats $(DEMO_DATA)/first-pass --lm $(LM) --ref $(DEMO_DATA)/ref.txt --flags '$(BENCH_ST_FLAGS)'

.PHONY: bench-shard-threads
bench-shard-threads: $(BENCH_ST_DIR)/table.md

# Matrix products with MKL's generic path against the one importing `models` picks (AMD CPUs:
# models/cpu_gemm.py), each in a fresh process, in one run.
BENCH_GEMM_DIR ?= exp/bench-cpu-gemm

$(BENCH_GEMM_DIR)/gemm.jsonl: bench/cpu_gemm.py | $(VENV)/.installed
	mkdir -p $(@D)
	$(PY) bench/cpu_gemm.py --threads $(BENCH_THREADS) > $@.tmp
	mv $@.tmp $@

.PHONY: bench-cpu-gemm
bench-cpu-gemm: $(BENCH_GEMM_DIR)/gemm.jsonl

# Fuzzing every reader (issue 11): mutated real inputs, counts of handled and crashed inputs.
BENCH_FUZZ_DIR ?= exp/bench-fuzz
BENCH_FUZZ_INPUTS ?= 5000
BENCH_FUZZ_SEED ?= 0

$(BENCH_FUZZ_DIR)/fuzz.json: bench/fuzz_readers.py | $(VENV)/.installed
	$(PY) bench/fuzz_readers.py --inputs $(BENCH_FUZZ_INPUTS) --seed $(BENCH_FUZZ_SEED) --json $@

bench-fuzz: $(BENCH_FUZZ_DIR)/fuzz.json

.PHONY: bench-scaling bench-wer-time bench-read bench-lm-pass bench-fuzz
bench-lm-pass: $(BENCH_PASS_DIR)/time.jsonl
bench-read: $(BENCH_READ_DIR)/read_speed.json
bench-scaling: $(BENCH_SCALING_DIR)/scaling.json
bench-wer-time: $(BENCH_WT_DIR)/wer_time.json
