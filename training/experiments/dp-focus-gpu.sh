#!/usr/bin/env bash
# training/experiments/dp-focus-gpu.sh [--data-only]
# The experiment that made DP Re-Tuning's third GPU stage (2026-11-27): that stage's recipe,
# training/bundled/dp-retuning.gpu3.toml, and three variants of it, at once on one GPU (each
# in its own process, as training/bundled/gpu-stage.sh does), each continuing the adapter of
# the second GPU stage for 5 minutes:
#   a: the focus call a quarter of the examples (28 times over), rate 5e-4 decaying to zero (shipped)
#   b: an eighth (12 times over), 5e-4
#   c: a quarter, 1e-3
#   d: three eighths (50 times over), 3e-4
# The adapters land in runs/experiments/dp-focus-gpu-{a,b,c,d}. They start from
# runs/bundled/dp-retuning.gpu2 or, where that is missing, from the adapter shipped before
# the third stage, taken from git (commit c4865d6). The data (a file per variant, 100-150 MB
# each) is written first unless already there; --data-only stops after it, so it can be
# written beside other work. Set RETUNE to the command that runs retune (default: retune)
# and PYTHON to the Python that has it (default: python3).
set -uo pipefail
cd "$(dirname "$0")/../.."
RETUNE=${RETUNE:-retune}
PYTHON=${PYTHON:-python3}
folder=runs/experiments
mkdir -p "$folder"

variants=(a:28:5e-4 b:12:5e-4 c:28:1e-3 d:50:3e-4)
pids=()
for v in "${variants[@]}"; do
  IFS=: read -r name times rate <<<"$v"
  [ -f "$folder/dp-focus-gpu-$name.jsonl" ] && continue
  $PYTHON training/bundled/dp_retuning_data.py "$folder" --times "$times" \
    --name "dp-focus-gpu-$name.jsonl" >"$folder/dp-focus-gpu-$name.data.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || { echo "dp-focus-gpu: writing the data failed" >&2; exit 1; }; done
[ "${1:-}" = "--data-only" ] && exit 0

init=runs/bundled/dp-retuning.gpu2
if [ ! -f "$init/retune.json" ]; then
  init=$folder/dp-retuning.gpu2
  mkdir -p "$init"
  for f in adapter_config.json adapter_model.safetensors retune.json; do
    git show "c4865d6:assets/adapters/dp-retuning/$f" >"$init/$f" || { echo "dp-focus-gpu: no $f of the second stage's adapter" >&2; exit 2; }
  done
fi

pids=()
for v in "${variants[@]}"; do
  IFS=: read -r name times rate <<<"$v"
  recipe="$folder/dp-focus-gpu-$name.toml"
  sed -e "s|^out = .*|out = \"$folder/dp-focus-gpu-$name\"|" \
      -e "s|^data = .*|data = \"$folder/dp-focus-gpu-$name.jsonl\"|" \
      -e "s|^init_adapter = .*|init_adapter = \"$init\"|" \
      -e "s|^learning_rate = .*|learning_rate = $rate|" training/bundled/dp-retuning.gpu3.toml >"$recipe"
  OMP_NUM_THREADS=1 $RETUNE train --recipe "$recipe" --restart >"$folder/dp-focus-gpu-$name.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!variants[@]}"; do
  name=${variants[$i]%%:*}
  if wait "${pids[$i]}"; then
    echo "dp-focus-gpu: $name done: $(tail -n 1 "$folder/dp-focus-gpu-$name/loss.jsonl" 2>/dev/null)"
  else
    failed=1
    echo "dp-focus-gpu: $name failed; its log ends:" >&2
    tail -n 5 "$folder/dp-focus-gpu-$name.log" >&2
  fi
done
exit $failed
