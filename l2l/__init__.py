"""Learning to learn by gradient descent by gradient descent (Andrychowicz et al., NeurIPS 2016).

An LSTM optimizer m(g; phi) meta-trained to minimise the sum of an optimizee's losses along its
trajectory, compared with hand-designed optimizers (SGD, RMSprop, Adam, NAG) whose learning rates are
tuned on separate problems. It is an optimizer, not a few-shot learner, so it has its own rows
(experiments.L2LConfig) and its own training loop; docs/l2l.md.

  optimizer.py  the coordinate-wise LSTM m, the gradient preprocessing, the baselines' update rules
  problems.py   the optimizees: random quadratics and the MNIST MLP; `optimize`, `unroll`
  trainer.py    meta-training (truncated BPTT, checkpoints, resume) and the Fig. 2/3 evaluation
"""
