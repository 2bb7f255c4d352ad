#!/usr/bin/env bash
# Paper Fig. 5, 2D navigation: MAML, pretrained, random and oracle policies, each evaluated on 40
# held-out goals after 0..3 policy-gradient steps, printed next to the published returns.
#
# Usage: bash scripts/rl_navigation.sh [--quick] [--logdir=DIR]
#   --quick   smoke run (3 TRPO iterations per trained row, 10 test tasks): the numbers mean nothing.
# Runs resume from their checkpoints, so the script can be stopped and run again.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir rl_navigation
quick_train_flags() {  # the random baseline has nothing to train
  [[ "$1" == *_random ]] || echo --metatrain_iterations=3 --checkpoint_every=1
}
run_rows rl_navigation_maml rl_navigation_pretrained rl_navigation_random rl_navigation_oracle
report rl_navigation
