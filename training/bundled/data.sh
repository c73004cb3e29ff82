# Sourced by build.sh and gpu-stage.sh (run from the repository root).
# ensure_data NAME RECIPE: where RECIPE reads a file (`data = "…"`) that is not there yet,
# write it with the adapter's own script, training/bundled/NAME_data.py (which writes every
# file of that adapter's stages into runs/bundled).
ensure_data() {
  local name=$1 recipe=$2 data script
  data=$(sed -n 's/^data = "\(.*\)"$/\1/p' "$recipe")
  if [ -z "$data" ] || [ -f "$data" ]; then return 0; fi
  script="training/bundled/${name//-/_}_data.py"
  [ -f "$script" ] || { echo "$recipe reads $data, which is missing, and there is no $script to write it" >&2; return 1; }
  "${PYTHON:-python3}" "$script" runs/bundled
}
