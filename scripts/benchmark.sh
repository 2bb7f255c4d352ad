#!/usr/bin/env bash
# The speed comparison (README "Speed"): this project and every installed peer -- PyTorch torch.func,
# PyTorch higher, JAX (pip install -r benchmarks/requirements-peers.txt) and the original TF1 code
# (--tf1_original=DIR, a clone of github.com/cbfinn/maml) -- on the same work (benchmarks/work.py),
# one after another on this machine, then the speed tables from the JSON lines. Synthetic episodes: no
# dataset needed. Run it on a quiet machine; each line records the other processes' CPU use.
#
# Usage: bash scripts/benchmark.sh [--quick] [--logdir=DIR] [--tf1_original=DIR]
#          [--compare_works=a,b] [--compare_impls=this_repo,jax,...] [extra main.py flags]
#   --quick        a tenth of the iterations (a smoke run; the figures mean little)
#   --logdir=DIR   the JSON lines go to DIR/speed/comparison.jsonl (default logs/benchmark);
#                  --logdir=results refreshes the README's figures (then regenerate its section)
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir benchmark

quick_flag=()
(( quick )) && quick_flag=(--compare_quick)
run_step "compare implementations" "$PYTHON" main.py --compare_speed \
  --compare_out="$logdir/speed/comparison.jsonl" ${quick_flag[@]+"${quick_flag[@]}"} \
  ${extra[@]+"${extra[@]}"}
report speed
