#!/usr/bin/env bash
# training/bundled/build.sh [--gpu] [NAME ...]
# Rebuild everything in assets/: the base, then the nine adapters (evaluate them with the
# commands in docs/results.md).
# About 80 + 139 minutes on 2 CPU cores, and 26 more with --gpu (see README.md beside this file). Runs one job at a
# time: two trainings on 2 cores are slower together than one after the other.
# With --gpu, the adapters' GPU stages follow (gpu-stage.sh: about 12 + 5 + 6 + 3 minutes on one
# GPU) for every adapter with a .gpu recipe (all but parity Re-Tuning, made on the CPU alone).
# Addition Re-Tuning is made by its two GPU stages and a CPU stage after them (.polish), and
# shipped as the average of the first GPU stage's adapter and the polished one (retune
# average): without --gpu it is left as shipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
source training/bundled/data.sh
gpu=0
if [ "${1:-}" = "--gpu" ]; then gpu=1; shift; fi
only=("$@")
want() { [ ${#only[@]} -eq 0 ] || [[ " ${only[*]} " == *" $1 "* ]]; }
# One CPU stage of an adapter, if it has a recipe: train it, then ship it into assets/ — unless
# the shipped adapter was made by GPU stages after it and they are not run now (no --gpu): a
# CPU-only rebuild does not replace it with a weaker one.
cpu_stage() {
  local name=$1 stage=$2
  [ -f "training/bundled/$name$stage.toml" ] || return 0
  ensure_data "$name" "training/bundled/$name$stage.toml"
  retune train --recipe "training/bundled/$name$stage.toml" --out "runs/bundled/$name$stage"
  if [ $gpu -eq 0 ] && [ -f "training/bundled/$name.gpu.toml" ]; then
    echo "runs/bundled/$name$stage is trained; assets/adapters/$name is kept (its GPU stages follow with --gpu)"
  else
    training/bundled/ship.sh "$name" "runs/bundled/$name$stage" "$stage"
  fi
}

if want base; then
  retune train --recipe training/bundled/base.toml --out runs/bundled/base
  if [ $gpu -eq 1 ]; then
    mkdir -p assets/base
    cp runs/bundled/base/{config.json,generation_config.json,model.safetensors,tokenizer.json,tokenizer_config.json,retune.json,loss.png} assets/base/
  else  # the adapters made by GPU stages are kept (cpu_stage), and they were trained on the base there
    echo "runs/bundled/base is trained; assets/base is kept (the adapters there were trained on it; --gpu rebuilds them all)"
  fi
fi
for task in addition parity dp; do
  for method in retuning baseline scratchpad; do
    name="$task-$method"
    want "$name" || continue
    # Stages, each continuing the one before: the first, then .echo (parity Re-Tuning),
    # decay to zero (.anneal), more long problems (.long, and parity Re-Tuning's .long2).
    for stage in "" .echo .anneal .long .long2; do cpu_stage "$name" "$stage"; done
  done
done
if [ $gpu -eq 1 ]; then
  adapters=()
  for recipe in training/bundled/*.gpu.toml; do
    name=$(basename "$recipe" .gpu.toml)
    want "$name" && adapters+=("$name")
  done
  [ ${#adapters[@]} -eq 0 ] || training/bundled/gpu-stage.sh "${adapters[@]}"
  for stage in gpu2 gpu3 gpu4 gpu5; do
    later=()
    for name in "${adapters[@]}"; do [ -f "training/bundled/$name.$stage.toml" ] && later+=("$name"); done
    [ ${#later[@]} -eq 0 ] || training/bundled/gpu-stage.sh --stage "$stage" "${later[@]}"
  done
  if want addition-retuning; then  # 23 minutes on 2 CPU cores, then the average (seconds)
    cpu_stage addition-retuning .polish
    retune average runs/bundled/addition-retuning.gpu runs/bundled/addition-retuning.polish \
      --out runs/bundled/addition-retuning.average --overwrite
    training/bundled/ship.sh addition-retuning runs/bundled/addition-retuning.average .average
  fi
fi
