#!/usr/bin/env bash
# Siamese networks (Koch et al. 2015) as MAML's Table 1 reports them: Vinyals et al.'s 28x28 Omniglot
# protocol on the MAML rows' episodes and conv4 embedding, 5/20-way 1/5-shot, next to the published
# numbers (docs/siamese.md).
#
# Usage: bash scripts/siamese.sh [--quick] [--logdir=DIR] [--data_omniglot=DIR]
#   (the data flag as scripts/anil.sh; --quick: 20 iterations, 10 test tasks per K)
# Each row is 10,000 iterations (1-2 hours on 2 CPU cores). Runs resume.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir siamese
rows_of "e.METHOD_ROWS['siamese']"
run_rows "${rows[@]}"
report siamese
