#!/usr/bin/env bash
# Paper Fig. 5, Ant goal velocity and direction: MAML, pretrained, random and oracle policies, each evaluated on 40
# held-out tasks after 0..3 policy-gradient steps, printed next to the published returns.
# Long runs (hours per row on 2 CPU cores; see README): they checkpoint every 10 TRPO iterations and
# resume when the script is run again.
#
# Usage: bash scripts/rl_ant.sh [--quick] [--logdir=DIR]
#   --quick   smoke run (2 TRPO iterations per trained row, 4 test tasks): the numbers
#             mean nothing.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir rl_ant
run_rl_families ant_vel ant_dir
