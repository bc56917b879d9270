# Pocketsphinx decode of LibriSpeech into SLF lattices (real-data check). `include bench/decode.mk`
# from the Makefile; needs `$(PY) -m pip install pocketsphinx==5.1.1` (extras "decode").
# make decode-librispeech [LIBRI_CORPUS=... LIBRI_PART=... DECODE_DIR=... DECODE_JOBS=...]
LIBRI_CORPUS ?= ../shared/data/librispeech-test-other-100
LIBRI_PART ?= test-other
DECODE_DIR ?= exp/librispeech
DECODE_JOBS ?= 1
DECODE_FLAGS ?=

.PHONY: decode-librispeech

decode-librispeech: $(DECODE_DIR)/lats/.done

$(DECODE_DIR)/lats/.done: bench/decode_pocketsphinx.py | $(VENV)/.installed
	$(PY) -c 'import pocketsphinx' 2>/dev/null || $(PY) -m pip install $(PIP_FLAGS) pocketsphinx==5.1.1
	$(PY) bench/decode_pocketsphinx.py --corpus $(LIBRI_CORPUS) --part $(LIBRI_PART) --out $(DECODE_DIR) --jobs $(DECODE_JOBS) $(DECODE_FLAGS)
	touch $@
