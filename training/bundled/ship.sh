#!/usr/bin/env bash
# training/bundled/ship.sh NAME RUN STAGE   (run from the repository root)
# Copy a finished training stage into assets/adapters/NAME: the adapter's files (the last
# stage shipped is the adapter) and the stage's loss log and curve as loss{STAGE}.jsonl/.png
# (STAGE: "", .anneal, .gpu, …; the log is absent when a run stopped before its first logged step).
set -euo pipefail
name=$1 run=$2 stage=$3
dest="assets/adapters/$name"
mkdir -p "$dest"
cp "$run"/{adapter_config.json,adapter_model.safetensors,retune.json} "$dest/"
for ext in jsonl png; do
  [ ! -f "$run/loss.$ext" ] || cp "$run/loss.$ext" "$dest/loss$stage.$ext"
done
