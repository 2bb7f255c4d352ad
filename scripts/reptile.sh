#!/usr/bin/env bash
# Reptile (Nichol et al. 2018) on Omniglot and MiniImagenet 5-way, K = 1 and 5 from one run each,
# evaluated non-transductively (the paper's main numbers) and transductively, next to the published.
#
# Usage: bash scripts/reptile.sh [--quick] [--logdir=DIR] [--data_omniglot=DIR] [--data_miniimagenet=DIR]
#   (the data flags as scripts/anil.sh; --quick: 20 iterations, 10 test tasks per K)
# Each row is 100,000 meta-iterations (Omniglot ~2 h, MiniImagenet longer on a CPU); runs resume.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir reptile
rows_of "e.METHOD_ROWS['reptile']"
run_rows "${rows[@]}"
EVAL_FLAGS=(--transductive=True)  # the second evaluation: the run is trained, only this evaluates
run_rows "${rows[@]}"
report reptile
