#!/usr/bin/env bash
# MANN (Santoro et al. 2016) and its LSTM baseline on Omniglot 5-way sequences: MAML's Table 1 row
# "MANN, no conv" (1-shot and 5-shot) and Santoro's Table 1 (accuracy at each presentation of a
# class, in each result's extra_metrics), next to the published numbers (docs/mann.md).
#
# Usage: bash scripts/mann.sh [--quick] [--logdir=DIR] [--data_omniglot=DIR]
#   (the data flag as scripts/anil.sh; --quick: 20 iterations, 10 test tasks per K)
# Each row is 100,000 iterations of 16 sequences (several hours on 2 CPU cores). Runs resume.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir mann
rows_of "e.METHOD_ROWS['mann']"
run_rows "${rows[@]}"
report mann
