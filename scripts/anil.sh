#!/usr/bin/env bash
# ANIL (Raghu et al. 2020): MAML with only the linear head adapted in the inner loop, on the rows the
# ANIL paper reports (Omniglot 20-way, MiniImagenet 5-way; 1 and 5 shots), printed next to its numbers.
#
# Usage: bash scripts/anil.sh [--quick] [--logdir=DIR] [--data_omniglot=DIR] [--data_miniimagenet=DIR]
#   --data_omniglot, --data_miniimagenet   the datasets' files (README "Data for the image rows");
#                without them Omniglot is downloaded and MiniImagenet stops with what to do.
#   --quick      smoke run (20 iterations, 10 test tasks per K).
# Each row is 60,000 meta-iterations: hours on a CPU. Runs resume from their checkpoints.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir anil
rows_of "e.METHOD_ROWS['anil']"
run_rows "${rows[@]}"
report anil
