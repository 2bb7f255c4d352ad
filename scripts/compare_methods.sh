#!/usr/bin/env bash
# Every method of this repository on the same 600 test tasks (5-way 1-shot; same evaluation seed):
# MAML, first-order MAML, ANIL, Meta-SGD, MAML++, Reptile, Prototypical, Matching, Siamese and
# Relation networks, MANN, the meta-learner LSTM and Meta Networks, as one table and a bar plot with
# 95% CIs (<logdir>/figures/methods_<dataset>.png). The report checks that every row saw the very
# same tasks (a hash of their images). Rows: experiments.COMPARE_ROWS.
#
# Usage: bash scripts/compare_methods.sh [--quick] [--logdir=DIR] [--data_omniglot=DIR] [--data_miniimagenet=DIR]
#   MiniImagenet rows run only with --data_miniimagenet (they are hours each on a CPU).
#   --quick: 20 iterations, 10 test tasks. Runs resume; trained rows are only re-evaluated.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir methods
rows_of "e.COMPARE_ROWS['omniglot']"
run_rows "${rows[@]}"
if [[ -n "$data_miniimagenet" ]]; then
  rows_of "e.COMPARE_ROWS['miniimagenet']"
  run_rows "${rows[@]}"
fi
report methods
