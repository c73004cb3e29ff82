#!/usr/bin/env bash
# training/bundled/build.sh [--only NAME ...]
# Rebuild everything in assets/: the base, then the nine adapters, then their evaluation.
# About 80 + 195 minutes on 2 CPU cores (see README.md beside this file). Runs one job at a
# time: two trainings on 2 cores are slower together than one after the other.
set -euo pipefail
cd "$(dirname "$0")/../.."
only=("$@")
want() { [ ${#only[@]} -eq 0 ] || [[ " ${only[*]} " == *" $1 "* ]]; }

if want base; then
  retune train --recipe training/bundled/base.toml --out runs/bundled/base
  mkdir -p assets/base
  cp runs/bundled/base/{config.json,generation_config.json,model.safetensors,tokenizer.json,tokenizer_config.json,retune.json,loss.png} assets/base/
fi
for task in addition parity dp; do
  for method in retuning baseline scratchpad; do
    name="$task-$method"
    want "$name" || continue
    # Stages, each continuing the one before: constant rate, decay to zero (.anneal), more long problems (.long).
    mkdir -p "assets/adapters/$name"
    for stage in "" .anneal .long; do
      [ -f "training/bundled/$name$stage.toml" ] || continue
      retune train --recipe "training/bundled/$name$stage.toml" --out "runs/bundled/$name$stage"
      last="runs/bundled/$name$stage"
      cp "$last/loss.jsonl" "assets/adapters/$name/loss$stage.jsonl"  # every stage's loss log and curve
      cp "$last/loss.png" "assets/adapters/$name/loss$stage.png"
    done
    cp "$last"/{adapter_config.json,adapter_model.safetensors,retune.json} "assets/adapters/$name/"
  done
done
