#!/usr/bin/env bash
# Sinusoid regression of the MAML paper (Finn et al. 2017, §5.1): trains and evaluates MAML (with the
# original code's alpha and with the paper text's), the pretrained baseline and the oracle, then
# writes Fig. 2, Fig. 3, Fig. 6 (App. B) and App. C Table 2 (published vs reproduced, with the target
# checks) to <logdir>/figures/.
#
# Usage: bash scripts/sinusoid.sh [--quick] [--logdir=DIR] [extra main.py flags...]
#   --quick       smoke run: 300 training iterations per model and 50 test tasks per K; the numbers
#                 mean nothing, the pipeline is what is checked.
#   --logdir=DIR  where the runs and figures go (default logs/sinusoid; with --quick the default gets
#                 the suffix _quick).
#   extra flags   passed to every training and evaluation call, e.g. --jit_compile=False. Use runtime
#                 flags only: a flag that changes what is trained also changes the run directory name,
#                 and the report reads <logdir>/<row>.
# Set PYTHON to choose the interpreter (default: python).
# Expected runtime on a 2-core CPU: --quick under a minute (most of it TensorFlow start-up and
# compilation); the full run (70,000 iterations per model at ~1,400-1,800 it/s, 600 test tasks per K)
# about 3 minutes. `python main.py --experiment=<row> --benchmark` gives the it/s of another machine.
# Training resumes from the latest checkpoint, so an interrupted script can simply be run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python}"
quick=0
logdir=''
extra=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --logdir=*) logdir="${arg#--logdir=}" ;;
    *) extra+=("$arg") ;;
  esac
done
if [[ -z "$logdir" ]]; then
  logdir='logs/sinusoid'
  if (( quick )); then logdir+='_quick'; fi
fi

# Hyperparameters live in experiments.py; quick mode only shortens training and evaluation.
declare -A train_quick=(
  [sinusoid_maml]='--metatrain_iterations=300'
  [sinusoid_maml_paper_alpha]='--metatrain_iterations=300'
  [sinusoid_pretrained]='--pretrain_iterations=300'
  [sinusoid_oracle]='--pretrain_iterations=300'
)
eval_quick='--num_test_tasks=50'

for row in sinusoid_maml sinusoid_maml_paper_alpha sinusoid_pretrained sinusoid_oracle; do
  train_flags=()
  eval_flags=()
  if (( quick )); then
    train_flags+=("${train_quick[$row]}")
    eval_flags+=("$eval_quick")
  fi
  echo "=== $row: train ($logdir)"
  "$PYTHON" main.py --experiment="$row" --logdir="$logdir" \
    ${train_flags[@]+"${train_flags[@]}"} ${extra[@]+"${extra[@]}"}
  echo "=== $row: evaluate on the test tasks"
  "$PYTHON" main.py --experiment="$row" --train=False --test_set=True --logdir="$logdir" \
    ${eval_flags[@]+"${eval_flags[@]}"} ${extra[@]+"${extra[@]}"}
done

echo "=== report"
"$PYTHON" main.py --report=sinusoid --logdir="$logdir"
echo "total wall time: $((SECONDS / 60))m $((SECONDS % 60))s"
