# Shared by the scripts: argument parsing and the train -> evaluate loop over rows.
# Usage inside a script: parse_args "$@"; run_rows "${rows[@]}"; report <group>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python}"

quick=0
logdir=''
extra=()
parse_args() {
  for arg in "$@"; do
    case "$arg" in
      --quick) quick=1 ;;
      --logdir=*) logdir="${arg#--logdir=}" ;;
      *) extra+=("$arg") ;;
    esac
  done
}

# Quick mode: a smoke run of the whole pipeline (a few iterations, a few test tasks); the numbers
# mean nothing. Hyperparameters otherwise come from experiments.py only. A script may redefine
# quick_train_flags to shorten its rows differently.
QUICK_EVAL=(--num_test_tasks=10)
quick_train_flags() {  # row -> flags
  echo --metatrain_iterations=20 --val_every=10 --print_every=10 --checkpoint_every=10
}

run_rows() {
  local row
  for row in "$@"; do
    local train=() evaluate=()
    if (( quick )); then
      read -r -a train <<< "$(quick_train_flags "$row")"
      evaluate=("${QUICK_EVAL[@]}")
    fi
    echo "=== $row: train ($logdir)"
    "$PYTHON" main.py --experiment="$row" --logdir="$logdir" \
      ${train[@]+"${train[@]}"} ${extra[@]+"${extra[@]}"}
    echo "=== $row: evaluate on the test tasks"
    "$PYTHON" main.py --experiment="$row" --train=False --test_set=True --logdir="$logdir" \
      ${evaluate[@]+"${evaluate[@]}"} ${extra[@]+"${extra[@]}"}
  done
}

report() {
  echo "=== report"
  "$PYTHON" main.py --report="$1" --logdir="$logdir"
  echo "total wall time: $((SECONDS / 60))m $((SECONDS % 60))s"
}
