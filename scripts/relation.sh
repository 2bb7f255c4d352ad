#!/usr/bin/env bash
# Relation networks (Sung et al. 2018) with the official code's networks and optimizer on the MAML
# rows' episodes: Omniglot 5/20-way 1/5-shot and MiniImagenet 5-way 1/5-shot, next to the published
# numbers (docs/relation.md).
#
# Usage: bash scripts/relation.sh [--quick] [--logdir=DIR] [--data_omniglot=DIR] [--data_miniimagenet=DIR]
#   (the data flags as scripts/anil.sh; --quick: 20 iterations, 10 test tasks per K)
# Each row is 100,000 one-episode iterations: hours for Omniglot, days for MiniImagenet on a CPU.
# Runs resume.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir relation
rows_of "e.METHOD_ROWS['relation']"
run_rows "${rows[@]}"
report relation
