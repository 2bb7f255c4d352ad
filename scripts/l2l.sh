#!/usr/bin/env bash
# Learning to learn by gradient descent by gradient descent (Andrychowicz et al. 2016): the LSTM
# optimizer meta-trained on random 10-dimensional quadratics (paper Fig. 2) and, given MNIST, on the
# MNIST MLP (Fig. 3), each compared with SGD, RMSprop, Adam and NAG (learning rates tuned on separate
# problems) on 100 fresh test problems; the report prints the loss of each at steps 0, 25, 50 and 100
# and draws loss vs steps (docs/l2l.md).
#
# Usage: bash scripts/l2l.sh [--quick] [--logdir=DIR] [--data_mnist=FILE]
#   --data_mnist=FILE  Keras' mnist.npz (this machine cannot download it); without it only the
#                      quadratic row runs
#   --quick            smoke run: 20 meta-training optimizations, 10 test problems (numbers mean nothing)
# Meta-training on 2 CPU cores: the quadratic row 7-16 minutes, the MNIST row about 75. Runs resume.
source "$(dirname "$0")/lib.sh"
parse_args "$@"
set_logdir l2l
quick_train_flags() {  # the training command evaluates too: on as few test problems
  echo --metatrain_iterations=20 --print_every=10 --checkpoint_every=10 --num_test_tasks=10
}
rows=(l2l_quadratic)
if [[ -n "$data_mnist" ]]; then
  rows+=(l2l_mnist)
else
  echo "$SCRIPT: no --data_mnist=FILE (Keras' mnist.npz): running l2l_quadratic only" >&2
fi
run_rows "${rows[@]}"
for row in "${rows[@]}"; do report "$row"; done
