#!/usr/bin/env bash
# MAML++ (Antoniou et al. 2019): MAML with the multi-step loss, derivative-order annealing, per-step
# batch-norm parameters, learned per-layer per-step step sizes and cosine annealing (each also a flag:
# python main.py --helpfull | grep -A1 "MAML++"), on Omniglot 5-way 1-shot and MiniImagenet 5-way.
#
# Usage: bash scripts/maml_plus_plus.sh [--quick] [--logdir=DIR] [--data_omniglot=DIR] [--data_miniimagenet=DIR]
#   (the data flags as scripts/anil.sh; --quick: 20 iterations, 10 test tasks per K)
# Each row is 50,000 meta-iterations: hours on a CPU. Runs resume from their checkpoints.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir maml_plus_plus
rows_of "e.METHOD_ROWS['maml_plus_plus']"
run_rows "${rows[@]}"
report maml_plus_plus
