#!/usr/bin/env bash
# On the GPU machine, from the project root, after gpu-chromium's unpack + env (see BENCHMARKS.md):
#   bash "$GPU_EXTRA/web/bench/device.sh" MODEL CANDIDATES SOAK_CANDIDATE SOAK_N PARTS
# Writes $OUT/<model>.jsonl (one JSON line per visit) and Chromium's logs.
set -uo pipefail
model=$1 candidates=$2 soak=${3:-} soakn=${4:-10000} parts=${5:-auto,forced,soak}
export GPU_BIN=$PWD/.gpu/bin PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.used --format=csv,noheader
python3 "$GPU_EXTRA/web/bench/driver.py" --web "$GPU_EXTRA/web" --model "$model" \
  --candidates "$candidates" --soak "$soak" --soak-n "$soakn" --parts "$parts" --auto-visits 2 \
  | tee "$OUT/$model.jsonl" | cut -c1-400
