# Shared by the scripts: argument parsing, the train -> evaluate loop over rows, and failure reports.
# Usage inside a script: parse_args "$@"; set_logdir <name>; run_rows "${rows[@]}"; report <group>
set -eEuo pipefail  # -E: the ERR trap below also fires inside functions
SCRIPT="scripts/$(basename "$0")"

# A failure ends the script with one line on stderr that names the script, the step, the command and
# its exit status (main.py has printed its own `error: ...` above it), so no script dies silently.
# run_step reports its own commands with their arguments expanded; the ERR trap catches the rest
# (a failing cd, a bug in a script) with the command as written.
step='start-up'
fail() {  # exit status, command -> the line on stderr, then exit with that status
  echo "$SCRIPT: failed at step \"$step\", exit status $1: $2" >&2
  exit "$1"
}
# Only the script's own shell reports: a command substitution inherits the trap (-E), and its
# failure is reported once, by the command that used it.
trap 'err_status=$?; (( BASHPID != $$ )) || fail "$err_status" "$BASH_COMMAND"' ERR

run_step() {  # step name, command...: announces the step and runs it; a failure ends the script
  step="$1"; shift
  echo "=== $step"
  local status=0
  "$@" || status=$?
  (( status == 0 )) || fail "$status" "$*"
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python}"

quick=0
logdir=''
extra=()
data_omniglot=''
data_miniimagenet=''
data_mnist=''
# --data_omniglot=DIR / --data_miniimagenet=DIR give each row the --data_dir of its dataset
# (run_rows picks it by the row's name); --data_dir=DIR gives every row the same.
parse_args() {
  for arg in "$@"; do
    case "$arg" in
      --quick) quick=1 ;;
      --logdir=*) logdir="${arg#--logdir=}" ;;
      --data_omniglot=*) data_omniglot="${arg#--data_omniglot=}" ;;
      --data_miniimagenet=*) data_miniimagenet="${arg#--data_miniimagenet=}" ;;
      --data_mnist=*) data_mnist="${arg#--data_mnist=}" ;;  # mnist.npz of the learned-optimizer rows
      *) extra+=("$arg") ;;
    esac
  done
}

set_logdir() {  # name -> logdir unless --logdir gave one: logs/<name>, with --quick logs/<name>_quick
  if [[ -z "$logdir" ]]; then
    logdir="logs/$1"
    if (( quick )); then logdir+=_quick; fi
  fi
}

data_flags() {  # row -> its --data_dir flag, if one was given for its dataset
  case "$1" in
    omniglot_*) [[ -z "$data_omniglot" ]] || echo "--data_dir=$data_omniglot" ;;
    miniimagenet_*) [[ -z "$data_miniimagenet" ]] || echo "--data_dir=$data_miniimagenet" ;;
    l2l_mnist) [[ -z "$data_mnist" ]] || echo "--mnist_path=$data_mnist" ;;
  esac
}

rows=()
rows_of() {  # a Python expression over the experiments module -> the array rows
  step="look up the rows $1"
  local code="import experiments as e; rows = list($1); assert rows, 'no rows'; print(' '.join(rows))"
  local out status=0 err
  # TensorFlow's start-up lines (the table imports it) are shown only if the lookup fails.
  err=$(mktemp)
  out=$("$PYTHON" -c "$code" 2>"$err") || status=$?
  (( status == 0 )) || cat "$err" >&2
  rm -f "$err"
  (( status == 0 )) || fail "$status" "$PYTHON -c \"$code\""
  # A real Python prints at least one row or fails above (the assert); nothing at all comes from a
  # stand-in interpreter that runs no code (the before-stop hook's), which then runs no rows.
  if [[ -z "$out" ]]; then
    echo "$SCRIPT: warning: $PYTHON printed no rows for $1 (it ran no Python?): no rows to run" >&2
  fi
  read -r -a rows <<< "$out"
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
    run_step "$row: train ($logdir)" "$PYTHON" main.py --experiment="$row" --logdir="$logdir" \
      ${train[@]+"${train[@]}"} ${data[@]+"${data[@]}"} ${extra[@]+"${extra[@]}"}
    run_step "$row: evaluate on the test tasks" \
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
  local family
  rows_of "[f'rl_{f}_{m}' for f in '$*'.split() for m in e.RL_METHODS]"
  run_rows "${rows[@]}"
  for family in "$@"; do report "rl_$family"; done
}

report() {
  run_step "report $1" "$PYTHON" main.py --report="$1" --logdir="$logdir"
  echo "total wall time: $((SECONDS / 60))m $((SECONDS % 60))s"
}
