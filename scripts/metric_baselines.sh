#!/usr/bin/env bash
# The metric baselines on MAML's conv4 and episodes: Prototypical networks (Snell et al. 2017) and
# Matching networks (Vinyals et al. 2016; full-context embeddings on MiniImagenet as the published
# re-run), Omniglot 5/20-way 1/5-shot and MiniImagenet 5-way 1/5-shot, next to the published numbers.
#
# Usage: bash scripts/metric_baselines.sh [--quick] [--logdir=DIR] [--data_omniglot=DIR] [--data_miniimagenet=DIR]
#   (the data flags as scripts/anil.sh; --quick: 20 iterations, 10 test tasks per K)
# Omniglot rows are 10,000 iterations (30-60 min each on 2 CPU cores), MiniImagenet 30,000. Runs resume.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir metric
rows_of "e.METHOD_ROWS['protonet'] + e.METHOD_ROWS['matching']"
run_rows "${rows[@]}"
report protonet
report matching
