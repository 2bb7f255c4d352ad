#!/usr/bin/env bash
# Meta-SGD (Li et al. 2017): MAML with a meta-learned step size for every parameter, one inner step,
# on Omniglot 5-way 1-shot and MiniImagenet 5-way 1/5-shot, next to the published numbers.
#
# Usage: bash scripts/meta_sgd.sh [--quick] [--logdir=DIR] [--data_omniglot=DIR] [--data_miniimagenet=DIR]
#   (the data flags as scripts/anil.sh; --quick: 20 iterations, 10 test tasks per K)
# Each row is 60,000 meta-iterations: hours on a CPU. Runs resume from their checkpoints.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir meta_sgd
rows_of "e.METHOD_ROWS['meta_sgd']"
run_rows "${rows[@]}"
report meta_sgd
