#!/usr/bin/env bash
# The run queue (results/queue.txt): trains, evaluates with the paper's protocol and exports to
# results/<row>/ every queued row not done yet, one at a time (two cores: a second run halves both).
# Every run resumes from its latest checkpoint, or on a fresh clone from the committed one in
# results/<row>/checkpoint/. Stop it at any time (Ctrl-C, kill); the same command goes on.
#
# Usage: bash scripts/continue_runs.sh [--logdir=DIR] [--data_omniglot=DIR] [--data_miniimagenet=DIR]
#                                     [--data_mnist=FILE]   (Keras' mnist.npz, for l2l_mnist)
#        bash scripts/continue_runs.sh --status   # how far each queued row got
#        bash scripts/continue_runs.sh --save     # the running row's latest checkpoint and curves
#                                                 # -> results/<row>/checkpoint/, to commit
#   --logdir=DIR   where the run directories go (default runs/, not committed)
# In the background: nohup bash scripts/continue_runs.sh --data_omniglot=DIR > queue.log 2>&1 &
source "$(dirname "$0")/lib.sh"
action=run
args=()
for arg in "$@"; do
  case "$arg" in
    --status) action=status ;;
    --save) action=save ;;
    *) args+=("$arg") ;;
  esac
done
parse_args ${args[@]+"${args[@]}"}
logdir="${logdir:-runs}"
if [[ "$action" != run ]]; then
  run_step "queue $action" "$PYTHON" main.py --queue="$action" --logdir="$logdir"
  exit
fi
pending=$("$PYTHON" main.py --queue=pending --logdir="$logdir") || fail $? "$PYTHON main.py --queue=pending"
for row in $pending; do
  run_step "$row: restore its committed checkpoint, if any" \
    "$PYTHON" main.py --queue=restore --experiment="$row" --logdir="$logdir"
  run_rows "$row"
  run_step "$row: export to results/$row/" \
    "$PYTHON" main.py --queue=export --experiment="$row" --logdir="$logdir"
done
echo "=== the queue is done: bash scripts/continue_runs.sh --status"
