#!/usr/bin/env bash
# Speed, compile time and peak memory of the rows the performance issue compares with other
# implementations (learn2learn, JAX, the original TF1 code), then the comparison table.
# Synthetic episodes of each row's shapes: no dataset needed. Run it on a quiet machine.
#
# Usage: bash scripts/benchmark.sh [--quick] [--logdir=DIR] [extra main.py flags, e.g. --jit_compile=False]
#   --quick   a few iterations per row (a smoke run; the figures mean little).
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir benchmark

bench() {  # row, timed iterations, flags...
  local row="$1" iterations="$2"; shift 2
  (( quick )) && iterations=$(( iterations / 10 > 0 ? iterations / 10 : 1 ))
  run_step "benchmark $row $*" "$PYTHON" main.py --experiment="$row" --benchmark \
    --benchmark_iterations="$iterations" --logdir="$logdir" "$@" ${extra[@]+"${extra[@]}"}
}
bench sinusoid_maml 5000
bench omniglot_5way_1shot 50
bench omniglot_20way_1shot 20
bench miniimagenet_5way_1shot 20
bench miniimagenet_5way_1shot_first_order 20
# The memory-lean setting (benchmark.LEAN_TASK_CHUNK): the meta-gradient a few tasks at a time.
bench omniglot_20way_1shot 20 --task_chunk=4
bench miniimagenet_5way_1shot 20 --task_chunk=1
bench miniimagenet_5way_1shot_first_order 20 --task_chunk=1
report benchmark
