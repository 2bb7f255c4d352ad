#!/usr/bin/env bash
# MiniImagenet rows of the MAML paper's Table 1 (§5.2): 5-way 1-shot and 5-shot, second and first
# order.
#
# Usage: bash scripts/miniimagenet.sh [--quick] [--first-order] [--logdir=DIR] --data_dir=DIR
#   --data_dir     folder with the split CSVs and the images (see README: MiniImagenet data).
#   --first-order  also train the first-order rows.
#   --quick        smoke run (20 iterations, 10 test tasks).
# Each row is 60,000 meta-iterations: many hours on a CPU, about an hour on a GPU. Runs resume from
# their checkpoints, so the script can be stopped and run again.
source "$(dirname "$0")/lib.sh"
args=()
first_order=0
for arg in "$@"; do
  if [[ "$arg" == --first-order ]]; then first_order=1; else args+=("$arg"); fi
done
parse_args ${args[@]+"${args[@]}"}
logdir="${logdir:-logs/miniimagenet$( (( quick )) && echo _quick)}"

rows=(miniimagenet_5way_1shot miniimagenet_5way_5shot)
rows_first_order=(miniimagenet_5way_1shot_first_order miniimagenet_5way_5shot_first_order)
run_rows "${rows[@]}"
if (( first_order )); then run_rows "${rows_first_order[@]}"; fi
report miniimagenet
