# Shared by the scripts: argument parsing and the train -> evaluate loop over rows.
# Usage inside a script: parse_args "$@"; run_rows "${rows[@]}"; report <group>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python}"

quick=0
logdir=''
extra=()
data_omniglot=''
data_miniimagenet=''
# --data_omniglot=DIR / --data_miniimagenet=DIR give each row the --data_dir of its dataset
# (run_rows picks it by the row's name); --data_dir=DIR gives every row the same.
parse_args() {
  for arg in "$@"; do
    case "$arg" in
      --quick) quick=1 ;;
      --logdir=*) logdir="${arg#--logdir=}" ;;
      --data_omniglot=*) data_omniglot="${arg#--data_omniglot=}" ;;
      --data_miniimagenet=*) data_miniimagenet="${arg#--data_miniimagenet=}" ;;
      *) extra+=("$arg") ;;
    esac
  done
}

data_flags() {  # row -> its --data_dir flag, if one was given for its dataset
  case "$1" in
    omniglot_*) [[ -z "$data_omniglot" ]] || echo "--data_dir=$data_omniglot" ;;
    miniimagenet_*) [[ -z "$data_miniimagenet" ]] || echo "--data_dir=$data_miniimagenet" ;;
  esac
}

rows_of() {  # a Python expression over the experiments module -> its rows, one line
  "$PYTHON" -c "import experiments as e; print(' '.join($1))"
}

# Quick mode: a smoke run of the whole pipeline (a few iterations, a few test tasks); the numbers
# mean nothing. Hyperparameters otherwise come from experiments.py only. A script may redefine
# quick_train_flags to shorten its rows differently.
QUICK_EVAL=(--num_test_tasks=10)
quick_train_flags() {  # row -> flags
  echo --metatrain_iterations=20 --val_every=10 --num_val_tasks=10 --print_every=10 --checkpoint_every=10
}

run_rows() {
  local row
  for row in "$@"; do
    local train=() evaluate=() data=()
    if (( quick )); then
      read -r -a train <<< "$(quick_train_flags "$row")"
      evaluate=("${QUICK_EVAL[@]}")
    fi
    read -r -a data <<< "$(data_flags "$row")"
    echo "=== $row: train ($logdir)"
    "$PYTHON" main.py --experiment="$row" --logdir="$logdir" \
      ${train[@]+"${train[@]}"} ${data[@]+"${data[@]}"} ${extra[@]+"${extra[@]}"}
    echo "=== $row: evaluate on the test tasks"
    "$PYTHON" main.py --experiment="$row" --train=False --test_set=True --logdir="$logdir" \
      ${evaluate[@]+"${evaluate[@]}"} ${data[@]+"${data[@]}"} ${extra[@]+"${extra[@]}"} \
      ${EVAL_FLAGS[@]+"${EVAL_FLAGS[@]}"}
  done
}

# The locomotion scripts: the Fig. 5 rows (experiments.RL_METHODS) of each family, then its report.
# Quick mode trains 2 TRPO iterations and evaluates on 4 test tasks.
run_rl_families() {
  quick_train_flags() {  # the random baseline has nothing to train
    [[ "$1" == *_random ]] || echo --metatrain_iterations=2 --checkpoint_every=1
  }
  QUICK_EVAL=(--num_test_tasks=4)
  local rows family
  read -r -a rows <<< "$(rows_of "[f'rl_{f}_{m}' for f in '$*'.split() for m in e.RL_METHODS]")"
  run_rows "${rows[@]}"
  for family in "$@"; do report "rl_$family"; done
}

report() {
  echo "=== report"
  "$PYTHON" main.py --report="$1" --logdir="$logdir"
  echo "total wall time: $((SECONDS / 60))m $((SECONDS % 60))s"
}
