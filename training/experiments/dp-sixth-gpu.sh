#!/usr/bin/env bash
# training/experiments/dp-sixth-gpu.sh [MINUTES]
# Prepared on 2026-12-07 for the next GPU loan (that session had none) and tried end to end on
# the CPU with MINUTES=0.3; not yet run on a GPU. Three runs at once on one GPU, each in its own
# process (as training/bundled/gpu-stage.sh does), MINUTES each (default 6, scheduler cosine_time):
#   a: a sixth stage of DP Re-Tuning from the shipped adapter, on the file of
#      `dp_retuning_data.py --stage ties45` (the tie decisions of 4- and 5-element arrays twelve
#      times over; the faults the fifth stage left), 3e-4 decaying to zero, batches of 256
#   b: the same at 1.5e-4
#   c: a fresh DP LoRA with the three options for longer problems and its 4- and 5-element
#      contexts three times over (`repeat_long = [4, 3]`): the twin of
#      dp-fresh-stride-gpu-long.toml that a timeout lost on 2026-11-28, for the target past 5 elements
# The adapters land in runs/experiments/dp-sixth-gpu-{a,b,c}; with OUT set (the device tool's
# folder), each finished one is also packed there as dp-sixth-gpu-NAME.tar.gz (adapter, manifest,
# loss log; no checkpoints), so a run cut short still brings back the others. Judge them on the
# CPU afterwards as docs/results.md did the fifth stage (teacher-forced, seed 12, 400 per size;
# free-running, seeds 0-6). Set RETUNE to the command that runs retune (default: retune) and
# PYTHON to its Python (default: python3). Allow MINUTES + 1.5 for the whole script.
set -uo pipefail
cd "$(dirname "$0")/../.."
RETUNE=${RETUNE:-retune}
PYTHON=${PYTHON:-python3}
minutes=${1:-6}
folder=runs/experiments
mkdir -p "$folder"

data=$folder/dp-retuning-ties45.jsonl
[ -f "$data" ] || $PYTHON training/bundled/dp_retuning_data.py "$folder" --stage ties45 || exit 1

common() {  # the settings every run shares
  cat <<EOF
task = "dp"
method = "retuning"
base = "assets/base"
lengths = [2, 5]
scheduler = "cosine_time"
warmup = 30
micro_batch = 256
max_steps = 40000
max_minutes = $minutes
curriculum = 0.0
group_by_length = false
precision = "${PRECISION:-bf16}"
device = "auto"
save_steps = 100000
save_limit = 1
logging_steps = 25
EOF
}
stage() {  # NAME RATE: a sixth stage from the shipped adapter
  common
  printf 'out = "%s/dp-sixth-gpu-%s"\ninit_adapter = "assets/adapters/dp-retuning"\ndata = "%s"\nlearning_rate = %s\n' \
    "$folder" "$1" "$data" "$2"
}
fresh() {  # a fresh LoRA with the options (dp-fresh-stride-gpu-long.toml's settings) and repeat_long
  common
  cat <<EOF
out = "$folder/dp-sixth-gpu-c"
problems = 60000
data_seed = 41
reweight = true
lora_r = 32
lora_alpha = 64
lora_dropout = 0.0
lora_targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
learning_rate = 2e-3
prompt_filler = 90
position_gap = 40
position_stride = 1.75
repeat_long = [4, 3]
EOF
}
stage a 3e-4 >"$folder/dp-sixth-gpu-a.toml"
stage b 1.5e-4 >"$folder/dp-sixth-gpu-b.toml"
fresh >"$folder/dp-sixth-gpu-c.toml"

names=(a b c)
pids=()
for name in "${names[@]}"; do
  OMP_NUM_THREADS=1 $RETUNE train --recipe "$folder/dp-sixth-gpu-$name.toml" --restart \
    >"$folder/dp-sixth-gpu-$name.log" 2>&1 &
  pids+=($!)
done

failed=0
for i in "${!names[@]}"; do
  name=${names[$i]}
  run=$folder/dp-sixth-gpu-$name
  if wait "${pids[$i]}"; then
    echo "dp-sixth-gpu: $name done: $(tail -n 1 "$run/loss.jsonl" 2>/dev/null)"
    if [ -n "${OUT:-}" ]; then
      tar -czf "$OUT/dp-sixth-gpu-$name.tar.gz" --exclude checkpoints -C "$folder" "dp-sixth-gpu-$name" \
        "dp-sixth-gpu-$name.log" "dp-sixth-gpu-$name.toml"
    fi
  else
    failed=1
    echo "dp-sixth-gpu: $name failed; its log ends:" >&2
    tail -n 5 "$folder/dp-sixth-gpu-$name.log" >&2
  fi
done
exit $failed
