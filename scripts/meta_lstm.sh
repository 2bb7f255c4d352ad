#!/usr/bin/env bash
# The meta-learner LSTM (Ravi & Larochelle 2017) with the official code's settings on the MAML rows'
# MiniImagenet episodes: 5-way 1-shot (12 updates) and 5-shot (8 updates), next to the published
# numbers (docs/meta-lstm.md).
#
# Usage: bash scripts/meta_lstm.sh [--quick] [--logdir=DIR] [--data_miniimagenet=DIR]
#   (the data flag as scripts/anil.sh; --quick: 20 iterations, 10 test tasks per K)
# The official 75,000 / 50,000 episodes take about a day each on a 2-core CPU
# (--metatrain_iterations=N stops earlier). Runs resume.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir meta_lstm
rows_of "e.METHOD_ROWS['meta_lstm']"
run_rows "${rows[@]}"
report meta_lstm
