#!/usr/bin/env bash
# Omniglot rows of the MAML paper's Table 1 (§5.2): 5-way and 20-way, 1-shot and 5-shot, and the
# "MAML, no conv" net. As the original, the 5-shot cells are the 1-shot models tested at K=5;
# --with-5shot-training also trains the rows that meta-train at K=5.
#
# Usage: bash scripts/omniglot.sh [--quick] [--with-5shot-training] [--logdir=DIR] [--data_dir=DIR]
#   --data_dir   folder with images_background.zip and images_evaluation.zip (else downloaded).
#   --quick      smoke run (20 iterations, 10 test tasks per K).
# Each row is 60,000 meta-iterations: hours on a CPU (see `python main.py --experiment=<row>
# --benchmark`). Runs resume from their checkpoints, so the script can be stopped and run again.
source "$(dirname "$0")/lib.sh"
args=()
with5=0
for arg in "$@"; do
  if [[ "$arg" == --with-5shot-training ]]; then with5=1; else args+=("$arg"); fi
done
parse_args ${args[@]+"${args[@]}"}
set_logdir omniglot

rows=(omniglot_5way_1shot omniglot_20way_1shot omniglot_5way_1shot_noconv)
rows_5shot_training=(omniglot_5way_5shot omniglot_20way_5shot omniglot_5way_5shot_noconv)
run_rows "${rows[@]}"
if (( with5 )); then run_rows "${rows_5shot_training[@]}"; fi
report omniglot
