"""The learned optimizer (l2l/, Andrychowicz et al. 2016): its pieces against hand computations, one
meta-training step, resume, the baselines' tuning, the MNIST problem on a tiny synthetic npz, and
main.py's dispatch end to end on a small quadratic row."""

import csv
import json
import math
import pathlib
import subprocess
import sys

from absl.testing import flagsaver
import keras
import numpy as np
import pytest
import tensorflow as tf

import experiments
from experiments import ConfigError
from l2l import optimizer as l2l_optimizer
from l2l import problems
from l2l import trainer as l2l_trainer
import main
import run_queue

ROOT = pathlib.Path(__file__).resolve().parents[1]


def small(name='l2l_quadratic', **changes):
  """A row of a few seconds: 4 functions, 10-step optimizations in unrolls of 5."""
  return experiments.get_l2l(name).replace(**{
      'quadratic_functions': 4, 'optimization_steps': 10, 'unroll': 5, 'iterations': 4,
      'checkpoint_every': 2, 'print_every': 2, 'test_problems': 3, 'tune_problems': 2,
      'lr_grid': (0.3, 0.03), **changes})


def fake_mnist(path, n_train=64, n_test=32):
  """A tiny mnist.npz in Keras' format: random uint8 images, labels 0..9."""
  rng = np.random.default_rng(0)
  np.savez(path, x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
           y_train=rng.integers(0, 10, n_train).astype(np.uint8),
           x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
           y_test=rng.integers(0, 10, n_test).astype(np.uint8))
  return str(path)


# --- the optimizer ---------------------------------------------------------------------------------

def test_preprocessing_on_hand_computed_values():
  """(log|g|/p, sign g) if |g| >= e^-p, else (-1, e^p g), p = 10 (e^-10 = 4.54e-5)."""
  g = tf.constant([1.0, -math.exp(-5), 1e-5, 0.0, -2e-5, 100.0])
  expected = [[0.0, 1.0], [-0.5, -1.0], [-1.0, math.exp(10) * 1e-5], [-1.0, 0.0],
              [-1.0, -math.exp(10) * 2e-5], [math.log(100.0) / 10, 1.0]]
  np.testing.assert_allclose(l2l_optimizer.preprocess(g, 10.0).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_the_lstm_is_coordinatewise_with_shared_weights():
  """Permuting the gradient's coordinates permutes the updates: each coordinate has its own state and
  the same weights phi; the state is one [D, 20] pair per layer."""
  net = l2l_optimizer.LSTMOptimizer()
  g = tf.constant([0.3, -1e-6, 2.0, -0.01])
  perm = [2, 0, 3, 1]
  state = net.init(g)
  assert [tuple(s.shape) for s in state] == [(4, 20)] * 4
  theta1, state1 = net.step(tf.zeros(4), g, state)
  theta2, _ = net.step(theta1, g, state1)
  p1, pstate = net.step(tf.zeros(4), tf.gather(g, perm), net.init(g))
  p2, _ = net.step(p1, tf.gather(g, perm), pstate)
  np.testing.assert_allclose(tf.gather(theta2, perm).numpy(), p2.numpy(), rtol=1e-6, atol=1e-7)
  assert len(net.trainable_variables) == 2 * 3 + 2  # two LSTMs (kernel, recurrent, bias), linear


def test_the_baselines_follow_their_update_rules():
  """One and two steps of each rule against the formulas (Torch7's defaults)."""
  theta, g, lr = tf.constant([1.0, -2.0]), tf.constant([0.5, -4.0]), 0.1
  t1, _ = l2l_optimizer.SGD().step(theta, g, (), lr)
  np.testing.assert_allclose(t1, [0.95, -1.6], rtol=1e-6)
  nag = l2l_optimizer.NAG()
  t1, s = nag.step(theta, g, nag.init(theta), lr)      # v = -lr g; theta + 0.9 v - lr g
  np.testing.assert_allclose(t1, np.array([1.0, -2.0]) - 1.9 * 0.1 * np.array([0.5, -4.0]), rtol=1e-6)
  rms = l2l_optimizer.RMSprop()
  t1, s = rms.step(theta, g, rms.init(theta), lr)      # m = 0.01 g^2: the step is lr / 0.1 * sign
  np.testing.assert_allclose(t1, [0.0, -1.0], atol=1e-6)
  adam = l2l_optimizer.Adam()
  t1, s = adam.step(theta, g, adam.init(theta), lr)    # bias-corrected: the first step is lr * sign
  t2, _ = adam.step(t1, g, s, lr)                      # constant g: lr * sign again
  np.testing.assert_allclose(t2, [0.8, -1.8], rtol=1e-5)


# --- the problems ----------------------------------------------------------------------------------

@pytest.mark.parametrize('init', ['uniform', 'gaussian'])
def test_quadratic_loss_and_gradient_match_the_closed_form(init):
  """f = 1/F sum_f ||W_f x_f - y_f||^2, grad_f = 2/F W_f^T (W_f x_f - y_f)."""
  problem = problems.Quadratic(dims=3, functions=5, init=init)
  inst = problem.sample(np.random.default_rng(0), steps=10)
  w, y = inst.consts
  assert w.shape == (5, 3, 3) and y.shape == (5, 3) and inst.theta0.shape == (15,)
  assert (w.min() >= 0) == (init == 'uniform')
  x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
  r = np.einsum('fij,fj->fi', w, x) - y
  loss, grad = problems.loss_and_gradient(problem, tf.constant(x.ravel()), inst.consts, ())
  np.testing.assert_allclose(loss, (r ** 2).sum(-1).mean(), rtol=1e-5)
  np.testing.assert_allclose(grad, (2 / 5 * np.einsum('fij,fi->fj', w, r)).ravel(), rtol=1e-4,
                             atol=1e-6)


def test_mnist_mlp_on_a_tiny_synthetic_npz(tmp_path):
  """The loss is the mean cross-entropy of the step's minibatch through 784 -> 20 sigmoid -> 10,
  computed here in numpy; the minibatches are the step's; the images are scaled to [0, 1]."""
  data = problems.load_mnist(fake_mnist(tmp_path / 'mnist.npz'))
  assert data['x_train'].dtype == np.float32 and data['x_train'].max() <= 1.0
  problem = problems.MnistMLP(data['x_train'], data['y_train'], hidden=20, batch_size=8)
  assert problem.num_params == 784 * 20 + 20 + 20 * 10 + 10
  inst = problem.sample(np.random.default_rng(0), steps=3)
  (rows,) = inst.data
  assert rows.shape == (4, 8) and 0 <= rows.min() and rows.max() < 64
  x, y = data['x_train'].reshape(64, 784)[rows[2]], data['y_train'][rows[2]]
  theta = np.random.default_rng(1).normal(0, 0.1, problem.num_params).astype(np.float32)
  w1, b1, w2, b2 = (p.numpy() for p in problem.unflatten(tf.constant(theta)))
  logits = (1 / (1 + np.exp(-(x @ w1 + b1)))) @ w2 + b2
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  loss = problem.loss(tf.constant(theta), (), (rows[2],))
  np.testing.assert_allclose(loss, -logp[np.arange(8), y].mean(), rtol=1e-5)


def test_a_missing_mnist_file_ends_main_with_one_message_naming_the_file_and_the_flag(tmp_path):
  for extra, where in (([], 'no MNIST file was given'),
                       ([f'--mnist_path={tmp_path}/none.npz'], f'{tmp_path}/none.npz does not exist')):
    proc = subprocess.run([sys.executable, 'main.py', '--experiment=l2l_mnist',
                           f'--logdir={tmp_path}', *extra], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: {where}: ') and problems.MNIST_URL in last, proc.stderr
    assert last.endswith('pass --mnist_path=/path/to/mnist.npz'), last
    assert not (tmp_path / 'l2l_mnist').exists()  # stopped before creating the run


# --- meta-training ---------------------------------------------------------------------------------

class _Scaled:
  """A rule with one meta-parameter: theta <- theta + phi g (the hand case's m)."""

  def __init__(self, phi):
    self.phi = tf.Variable(phi)

  def step(self, theta, g, state, lr=None):
    return theta + self.phi * g, state


@pytest.mark.parametrize('second_order', [False, True])
def test_the_meta_gradient_drops_second_derivatives_as_the_hand_derivation(second_order):
  """f(theta) = a theta^2, two steps theta_{t+1} = theta_t + phi g_t, L = f0 + f1 + f2.
  With g_t an input (the paper): dtheta1/dphi = g0, dtheta2/dphi = g0 + g1, so
  dL/dphi = f'(theta1) g0 + f'(theta2) (g0 + g1). Through the gradient (second order) dtheta2/dphi
  gains phi dg1/dphi = phi 2a g0."""
  a, phi, theta0 = 0.7, -0.2, 1.5
  problem = problems.Quadratic(dims=1, functions=1)
  consts = (tf.constant([[[math.sqrt(a)]]]), tf.constant([[0.0]]))
  rule = _Scaled(phi)
  with tf.GradientTape() as tape:
    losses, _, _ = problems.unroll(problem, rule, tf.constant([theta0]), (), consts, (), 2,
                                   second_order=second_order)
    meta_loss = tf.reduce_sum(losses)
  got = tape.gradient(meta_loss, rule.phi).numpy()
  g0 = 2 * a * theta0
  theta1 = theta0 + phi * g0
  g1 = 2 * a * theta1
  theta2 = theta1 + phi * g1
  dtheta2 = g0 + g1 + (phi * 2 * a * g0 if second_order else 0.0)
  expected = 2 * a * theta1 * g0 + 2 * a * theta2 * dtheta2
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  np.testing.assert_allclose(losses, [a * theta0 ** 2, a * theta1 ** 2, a * theta2 ** 2], rtol=1e-5)


def test_one_meta_training_step_lowers_the_meta_loss():
  """The summed loss of one unroll on a fixed problem, before and after one Adam step on phi."""
  cfg = small()
  problem = l2l_trainer.make_problem(cfg, 'train')
  net = l2l_trainer.build_net(cfg)
  adam = keras.optimizers.Adam(1e-3)
  adam.build(net.trainable_variables)
  meta_step = l2l_trainer.make_meta_step(cfg, problem, net, adam)
  inst = problem.sample(np.random.default_rng(0), cfg.unroll)
  theta = tf.constant(inst.theta0)
  before, _, _ = meta_step(theta, net.init(theta), inst.consts, inst.data)
  after, _, _ = meta_step(theta, net.init(theta), inst.consts, inst.data)
  assert before[0] == after[0]  # the same start
  assert float(tf.reduce_sum(after)) < float(tf.reduce_sum(before))


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path):
  l2l_trainer.train(small(), str(tmp_path / 'straight'))
  assert l2l_trainer.train(small(iterations=2), str(tmp_path / 'resumed')) == 2
  assert l2l_trainer.train(small(), str(tmp_path / 'resumed')) == 4
  rows = [list(csv.reader(open(tmp_path / d / 'train.csv'))) for d in ('straight', 'resumed')]
  assert len(rows[0]) == 5 and rows[0] == rows[1]


def test_evaluation_restores_the_trained_optimizer(tmp_path, monkeypatch):
  """Evaluation sees phi as training left it, from the net's own checkpoint entries: Keras 3 gives
  a checkpoint no edge into a list of layers, which once left the LSTM cells at their initial
  values at evaluation while resuming restored them through Adam's references."""
  trained = []
  build = l2l_trainer.build_net
  monkeypatch.setattr(l2l_trainer, 'build_net', lambda cfg: trained.append(build(cfg)) or trained[-1])
  cfg = small()
  l2l_trainer.train(cfg, str(tmp_path / 'run'))
  path = tf.train.latest_checkpoint(str(tmp_path / 'run'))
  restored, iteration = l2l_trainer.restore_net(cfg, path)
  alone = build(cfg)  # the net's entries only, without the optimizer's
  tf.train.Checkpoint(net=alone).restore(path).expect_partial()
  assert int(iteration) == cfg.iterations
  for net in (restored, alone):
    for want, got in zip(trained[0].trainable_variables, net.trainable_variables):
      np.testing.assert_array_equal(got.numpy(), want.numpy())
  init = build(cfg)
  assert any(not np.array_equal(a.numpy(), b.numpy())
             for a, b in zip(init.trainable_variables, restored.trainable_variables))


def test_a_run_refuses_another_configuration(tmp_path):
  l2l_trainer.train(small(iterations=2), str(tmp_path))
  with pytest.raises(l2l_trainer.RunError, match='output_scale: 0.1 -> 0.5'):
    l2l_trainer.train(small(output_scale=0.5), str(tmp_path))


# --- evaluation ------------------------------------------------------------------------------------

def test_tuning_picks_the_known_best_rate_and_scores_a_diverging_one_inf():
  """f = theta^2 from theta_0 = 1: SGD's theta_t = (1 - 2 lr)^t, so lr = 0.5 reaches 0 in one step,
  0.1 is slow and 2 diverges (|1 - 4|^t)."""
  problem = problems.Quadratic(dims=1, functions=1)
  inst = problems.Instance(np.ones(1, np.float32), (np.ones((1, 1, 1), np.float32),
                                                    np.zeros((1, 1), np.float32)), ())
  lr, scores = l2l_trainer.tune(problem, 'sgd', (0.1, 0.5, 2.0), [inst], steps=100)
  assert lr == 0.5 and scores[2.0] == math.inf
  np.testing.assert_allclose(scores[0.5], 1 / 101, rtol=1e-6)  # f = 1 at step 0, then 0


def test_test_tuning_and_training_problems_are_disjoint_and_seeded():
  cfg = small()
  problem = l2l_trainer.make_problem(cfg, 'train')
  draws = {p: l2l_trainer._instances(problem, 1, p, 2, 10) for p in range(3)}
  again = l2l_trainer._instances(problem, 1, 2, 2, 10)
  np.testing.assert_array_equal(draws[2][1].consts[0], again[1].consts[0])
  ws = [i.consts[0] for p in range(3) for i in draws[p]]
  assert all(not np.array_equal(u, v) for k, u in enumerate(ws) for v in ws[k + 1:])


def test_main_meta_trains_evaluates_and_draws_the_figure(tmp_path, monkeypatch):
  """`python main.py --experiment=l2l_quadratic` on a small row: meta-training, the evaluation of
  the LSTM and the four tuned baselines, the results JSON and CSV, the figure; then the run queue's
  export of it."""
  monkeypatch.setitem(experiments.L2L_EXPERIMENTS, 'l2l_quadratic', small())
  with flagsaver.flagsaver():
    main.FLAGS.unparse_flags()
    main.FLAGS(['main.py', '--experiment=l2l_quadratic', f'--logdir={tmp_path}', '--num_test_tasks=2'])
    assert main.main(['main.py']) == 0
  run = tmp_path / 'l2l_quadratic'
  r = json.loads((run / 'results' / 'l2l.json').read_text())
  assert r['order'] == ['lstm', 'sgd', 'rmsprop', 'adam', 'nag'] and r['iteration'] == 4
  assert r['num_problems'] == 2 and all(len(o['mean']) == 11 for o in r['optimizers'].values())
  assert all(r['optimizers'][b]['lr'] in (0.3, 0.03) for b in r['order'][1:])
  first = {o['mean'][0] for o in r['optimizers'].values()}
  assert len(first) == 1  # every optimizer starts from the same test problems
  with open(run / 'results' / 'l2l_curves.csv') as f:
    assert next(csv.reader(f)) == ['step', 'lstm', 'sgd', 'rmsprop', 'adam', 'nag']
  assert (tmp_path / 'figures' / 'l2l_quadratic.png').stat().st_size > 0
  results = tmp_path / 'committed'
  results.mkdir()
  (results / run_queue.QUEUE_FILE).write_text('l2l_quadratic\n')
  info = run_queue.export(str(results), 'l2l_quadratic', str(run))
  assert info['done'] and info['tested_iteration'] == 4 and info['target_iterations'] == 4
  out = results / 'l2l_quadratic'
  for name in ('config.json', 'train.csv', 'results/l2l.json', 'results/l2l_curves.csv', 'model/checkpoint'):
    assert (out / name).exists(), name
  assert run_queue.pending(str(results)) == []
  # the exported weights re-evaluate to the same numbers
  again = l2l_trainer.evaluate(small(test_problems=2), str(out))
  assert again['optimizers'] == r['optimizers']


def test_mnist_row_trains_and_evaluates_on_a_synthetic_npz(tmp_path):
  path = fake_mnist(tmp_path / 'mnist.npz')
  cfg = small('l2l_mnist', mnist_path=path, mnist_batch_size=8, iterations=2, test_problems=2)
  l2l_trainer.train(cfg, str(tmp_path / 'run'))
  r = l2l_trainer.evaluate(cfg, str(tmp_path / 'run'))
  assert np.isfinite(r['optimizers']['lstm']['final'])
  # about log(10) at the start: a network of N(0, 0.01^2) weights guesses uniformly
  np.testing.assert_allclose(r['optimizers']['lstm']['mean'][0], math.log(10), rtol=0.05)
  # the export leaves this machine's path out and says which flag evaluates it
  info = run_queue.export(str(tmp_path / 'results'), 'l2l_mnist', str(tmp_path / 'run'))
  assert 'mnist_path' not in json.loads((tmp_path / 'results' / 'l2l_mnist' / 'config.json').read_text())
  assert info['evaluate_command'].endswith('--mnist_path=FILE')


# --- the rows and the command line -----------------------------------------------------------------

def test_rows_validate_and_refuse_bad_settings():
  row = experiments.get_l2l('l2l_quadratic')
  assert (row.hidden, row.preprocess_p, row.optimization_steps, row.unroll) == ((20, 20), 10.0, 100, 20)
  for changes, message in ((dict(unroll=30), 'must divide'), (dict(tune_seed=row.test_seed), 'never tuned'),
                           (dict(mnist_path='x.npz'), 'MNIST rows only'),
                           (dict(quadratic_init='normal'), 'is not one of'),
                           (dict(compared_with=('sgd', 'adagrad')), 'may hold')):
    with pytest.raises(ConfigError, match=message):
      row.replace(**changes)


def test_flags_reach_the_row_and_name_the_run():
  with flagsaver.flagsaver():
    main.FLAGS.unparse_flags()
    main.FLAGS(['main.py', '--experiment=l2l_quadratic', '--output_scale=1.0', '--logdir=L',
                '--num_test_tasks=7', '--quadratic_init=gaussian'])
    cfg, run_dir = main.resolve_l2l()
  assert (cfg.output_scale, cfg.test_problems, cfg.quadratic_init) == (1.0, 7, 'gaussian')
  assert run_dir == 'L/l2l_quadratic.output_scale1.0.quadratic_initgaussian'
  with flagsaver.flagsaver():
    main.FLAGS.unparse_flags()
    main.FLAGS(['main.py', '--experiment=l2l_quadratic', '--update_lr=0.3'])
    with pytest.raises(ConfigError, match='--update_lr: not read by the learned-optimizer row'):
      main.resolve_l2l()
  with flagsaver.flagsaver():  # an optimizer classifies nothing: predict.py is refused
    main.FLAGS.unparse_flags()
    main.FLAGS(['main.py', '--experiment=l2l_quadratic', '--predict', '--support_dir=S', '--query=Q'])
    main._check_predict_flags()
    with pytest.raises(ConfigError, match='--predict --support_dir --query: not read by the learned-'):
      main.resolve_l2l()
  with flagsaver.flagsaver():
    main.FLAGS.unparse_flags()
    main.FLAGS(['main.py', '--experiment=sinusoid_maml', '--output_scale=1.0'])
    with pytest.raises(ConfigError, match='--output_scale applies to the learned-optimizer rows only'):
      main.resolve(False)


def test_saved_configs_load_back():
  for row in experiments.L2L_EXPERIMENTS.values():
    assert experiments.L2LConfig.from_dict(json.loads(json.dumps(row.to_dict()))) == row
