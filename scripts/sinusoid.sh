#!/usr/bin/env bash
# Sinusoid regression of the MAML paper (Finn et al. 2017, §5.1): trains and evaluates MAML (with the
# original code's alpha and with the paper text's), the pretrained baseline and the oracle, then
# writes Fig. 2, Fig. 3, Fig. 6 (App. B) and App. C Table 2 (published vs reproduced, with the target
# checks) to <logdir>/figures/.
#
# Usage: bash scripts/sinusoid.sh [--quick] [--logdir=DIR] [extra main.py flags...]
#   --quick       smoke run: 300 training iterations per model and 50 test tasks per K; the numbers
#                 mean nothing, the pipeline is what is checked.
#   --logdir=DIR  where the runs and figures go (default logs/sinusoid; with --quick the default gets
#                 the suffix _quick).
#   extra flags   passed to every training and evaluation call, e.g. --jit_compile=False. Use runtime
#                 flags only: a flag that changes what is trained also changes the run directory name,
#                 and the report reads <logdir>/<row>.
# Set PYTHON to choose the interpreter (default: python).
# Expected runtime on a 2-core CPU: --quick 1-2 minutes (most of it TensorFlow start-up and
# compilation); the full run (4 models of 70,000 iterations, 600 test tasks per K) about 2 minutes
# with AVX-512 (measured: 1 min 51 s on an Intel Xeon), 3-4x that with AVX2 only. `python main.py --experiment=<row> --benchmark` gives the it/s of another machine.
# Training resumes from the latest checkpoint, so an interrupted script can simply be run again.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir sinusoid

QUICK_EVAL=(--num_test_tasks=50)
quick_train_flags() {  # 300 iterations of whichever objective the row trains
  case "$1" in
    sinusoid_pretrained|sinusoid_oracle) echo --pretrain_iterations=300 ;;
    *) echo --metatrain_iterations=300 ;;
  esac
}

run_rows sinusoid_maml sinusoid_maml_paper_alpha sinusoid_pretrained sinusoid_oracle
report sinusoid
