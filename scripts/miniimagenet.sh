#!/usr/bin/env bash
# MiniImagenet rows of the MAML paper's Table 1 (§5.2): 5-way 1-shot and 5-shot, second and first
# order.
#
# Usage: bash scripts/miniimagenet.sh [--quick] [--first-order] [--baselines] [--logdir=DIR] --data_dir=DIR
#   --data_dir     folder with the split CSVs and the images (see README: MiniImagenet data).
#   --first-order  also train the first-order rows.
#   --baselines    also the paper's fine-tuning and nearest-neighbour baselines (a classifier each).
#   --quick        smoke run (20 iterations, 10 test tasks).
# Each row is 60,000 meta-iterations: many hours on a CPU, about an hour on a GPU. Runs resume from
# their checkpoints, so the script can be stopped and run again.
source "$(dirname "$0")/lib.sh"
args=()
first_order=0
with_baselines=0
for arg in "$@"; do
  case "$arg" in
    --first-order) first_order=1 ;;
    --baselines) with_baselines=1 ;;
    *) args+=("$arg") ;;
  esac
done
parse_args ${args[@]+"${args[@]}"}
set_logdir miniimagenet

rows=(miniimagenet_5way_1shot miniimagenet_5way_5shot)
rows_first_order=(miniimagenet_5way_1shot_first_order miniimagenet_5way_5shot_first_order)
rows_baselines=(miniimagenet_5way_1shot_finetune miniimagenet_5way_5shot_finetune
                miniimagenet_5way_1shot_nearest_neighbor miniimagenet_5way_5shot_nearest_neighbor)
quick_train_flags() {  # the baselines train a classifier, the others meta-train
  case "$1" in
    *_finetune|*_nearest_neighbor) echo --pretrain_iterations=20 --print_every=10 --checkpoint_every=10 ;;
    *) echo --metatrain_iterations=20 --val_every=10 --num_val_tasks=10 --print_every=10 --checkpoint_every=10 ;;
  esac
}
run_rows "${rows[@]}"
if (( first_order )); then run_rows "${rows_first_order[@]}"; fi
if (( with_baselines )); then run_rows "${rows_baselines[@]}"; fi
report miniimagenet
