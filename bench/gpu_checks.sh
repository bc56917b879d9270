#!/usr/bin/env bash
# Everything this project can check on a GPU machine that has torch but no k2 (the lent one), in
# one call, CPU and GPU in the same run:
#   1. the CUDA tests that need no k2 (models/, and the expansion core rescore/arcs + rescore/grow);
#   2. bench/lm_pass.py on the pairs dumped by `make bench-lm-pass` on a k2 machine: the
#      expansion core (first pass) and the LM pass, Jacobi and prefix tree, for the AFP-4 model, and
#      the prefix tree without normaliser for its self-normalised twin, on cuda and on the CPU.
# Usage, from the repository root (the three files are ignored ones: carry them, 44 MB in all):
#   bash bench/gpu_checks.sh OUTDIR [PAIRS] [LM] [SN_LM]
set -euo pipefail
out=${1:?usage: bench/gpu_checks.sh OUTDIR [PAIRS] [LM] [SN_LM]}
pairs=${2:-exp/bench-lm-pass/pairs.pt}
lm=${3:-exp/bench-librispeech/lm/afp4/model.pt}
sn_lm=${4:-exp/bench-librispeech/lm/afp4sn/model.pt}
py=${PYTHON:-python}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" || true
"$py" -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available())' | tee "$out/versions.txt"
status=0
"$py" -m pytest -q -p no:cacheprovider tests/models tests/rescore/test_grow_device.py > "$out/tests.log" 2>&1 || status=1
tail -3 "$out/tests.log"
# the GPU: every variant, median of 3; the CPU (all its cores), the prefix tree once, for the ratio
for run in "cuda --repeat 3 --states jacobi,tree" "cpu --repeat 1 --states tree"; do
  set -- $run
  "$py" bench/lm_pass.py time --lm "$lm" --pairs "$pairs" --device "$@" --expand >> "$out/lm_pass.jsonl" || status=1
  "$py" bench/lm_pass.py time --lm "$sn_lm" --pairs "$pairs" --device "$@" --no-normalize >> "$out/lm_pass.jsonl" || status=1
done
cut -c1-220 "$out/lm_pass.jsonl"
exit $status
