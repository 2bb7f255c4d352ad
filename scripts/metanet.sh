#!/usr/bin/env bash
# Meta Networks (Munkhdalai & Yu 2017) with the official code's meta learner on this repository's
# conv4 and the MAML rows' episodes: Omniglot 5/20-way 1-shot and MiniImagenet 5-way 1-shot, next
# to the published numbers (docs/metanet.md).
#
# Usage: bash scripts/metanet.sh [--quick] [--logdir=DIR] [--data_omniglot=DIR] [--data_miniimagenet=DIR]
#   (the data flags as scripts/anil.sh; --quick: 20 iterations, 10 test tasks per K)
# The rows' iterations fit about 3 hours each on 2 CPU cores (~0.9 s per Omniglot 5-way
# iteration, ~5 s per 20-way one, ~3.4 s per MiniImagenet one). Runs resume.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir metanet
rows_of "e.METHOD_ROWS['metanet']"
run_rows "${rows[@]}"
report metanet
