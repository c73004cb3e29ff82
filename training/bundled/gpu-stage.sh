#!/usr/bin/env bash
# training/bundled/gpu-stage.sh [--stage gpu|gpu2|gpu3|gpu4|gpu5] [NAME ...]
# A GPU stage of the bundled adapters: every training/bundled/NAME.STAGE.toml (default
# STAGE gpu) at once on one GPU, each in its own process, then their adapters copied into
# assets/adapters/NAME. Stage gpu (every adapter but parity Re-Tuning) comes first, then gpu2
# (addition and DP Re-Tuning), then gpu3, gpu4 and gpu5 (DP Re-Tuning, each on a file
# dp_retuning_data.py writes where it is missing).
#
# They share the GPU because one of them leaves it mostly idle: a step of a 1M-parameter
# model is a few hundred tiny kernels, so a single process is bound by Python launching
# them, and nine processes keep the GPU busier than one. Most recipes train for a fixed
# 5-6 minutes (scheduler cosine_time), so such a stage takes about 7 minutes whatever the
# GPU; addition Re-Tuning's two and DP Re-Tuning's fifth fix their steps instead (the first two took
# 8 and 2 minutes on an H100; the fifth, 6.7 minutes sharing one with three other runs).
# Each continues the adapter of the stage before (build.sh's last, or the GPU stage before),
# but for addition Re-Tuning's first, a fresh LoRA (its GPU stages come first; build.sh then
# adds a CPU stage and ships an average of stages).
# Where runs/bundled/ does not hold the adapter to continue (a fresh clone), the copy shipped
# in assets/adapters/NAME is used instead: the adapter after its last stage, so the stage
# then trains on from there rather than repeating itself; not where the shipped adapter is an
# average of stages (addition Re-Tuning), which no stage continues. Set RETUNE to the command that
# runs retune (default: retune) and PYTHON to its Python (default: python3).
set -uo pipefail
cd "$(dirname "$0")/../.."
source training/bundled/data.sh
RETUNE=${RETUNE:-retune}
stage=gpu
if [ "${1:-}" = "--stage" ]; then stage=${2:?--stage needs gpu, gpu2, gpu3, gpu4 or gpu5}; shift 2; fi
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for recipe in training/bundled/*."$stage".toml; do names+=("$(basename "$recipe" ."$stage".toml)"); done
fi

# Everything each training needs is made ready before any starts.
for name in "${names[@]}"; do
  recipe="training/bundled/$name.$stage.toml"
  [ -f "$recipe" ] || { echo "gpu-stage: no recipe $recipe" >&2; exit 2; }
  init=$(sed -n 's/^init_adapter = "\(.*\)"$/\1/p' "$recipe")
  if [ -n "$init" ] && [ ! -f "$init/retune.json" ]; then
    [ -f "assets/adapters/$name/retune.json" ] || { echo "gpu-stage: $init is missing and no adapter is shipped for $name" >&2; exit 2; }
    if grep -q '"averaged"' "assets/adapters/$name/retune.json"; then
      echo "gpu-stage: $init is missing, and the adapter shipped for $name is an average of stages, which no stage continues: run the stage before first" >&2; exit 2
    fi
    mkdir -p "$init"
    cp "assets/adapters/$name"/{adapter_config.json,adapter_model.safetensors,retune.json} "$init/"
    echo "gpu-stage: $name continues the shipped adapter (assets/adapters/$name)"
  fi
  mkdir -p runs/bundled
  ensure_data "$name" "$recipe" || exit 2
done

pids=()
for name in "${names[@]}"; do
  OMP_NUM_THREADS=1 $RETUNE train --recipe "training/bundled/$name.$stage.toml" --restart >"runs/bundled/$name.$stage.log" 2>&1 &
  pids+=($!)
done

failed=0
for i in "${!names[@]}"; do
  name=${names[$i]}
  if wait "${pids[$i]}"; then
    out="runs/bundled/$name.$stage"
    if training/bundled/ship.sh "$name" "$out" ".$stage"; then
      echo "gpu-stage: $name done: $(tail -n 1 "$out/loss.jsonl" 2>/dev/null)"
    else
      failed=1
      echo "gpu-stage: $name trained but could not be copied into assets/adapters/$name" >&2
    fi
  else
    failed=1
    echo "gpu-stage: $name failed; its log, runs/bundled/$name.$stage.log, ends:" >&2
    tail -n 5 "runs/bundled/$name.$stage.log" >&2
  fi
done
exit $failed
