"""The experiments table: rows valid, overrides checked, scripts and table consistent."""

import math
import pathlib
import re

import pytest

import experiments
from experiments import ConfigError, Config
import utils

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('name', list(experiments.EXPERIMENTS))
def test_every_row_is_valid_and_round_trips_through_json(name):
  cfg = experiments.get(name)
  assert cfg.name == name and cfg.validate() is cfg
  assert cfg.source, f'{name} must say where its settings come from'
  assert Config.from_dict(cfg.to_dict()) == cfg
  for p in cfg.published:
    assert p.shots in cfg.eval_shots and p.step <= cfg.test_num_updates


def test_sinusoid_rows_match_the_paper_and_the_original_code():
  maml = experiments.get('sinusoid_maml')
  assert (maml.update_lr, maml.num_updates, maml.update_batch_size) == (0.001, 1, 10)  # code default
  assert (maml.meta_batch_size, maml.meta_lr, maml.metatrain_iterations) == (25, 1e-3, 70_000)
  assert maml.hidden == (40, 40) and maml.norm == 'None'
  assert experiments.get('sinusoid_maml_paper_alpha').update_lr == 0.01  # paper §5.1, see §4.1
  pre = experiments.get('sinusoid_pretrained')
  assert (pre.pretrain_iterations, pre.metatrain_iterations) == (70_000, 0)
  assert [p.value for p in pre.published] == [2.41, 2.23, 2.19]
  assert [p.value for p in maml.published] == [0.67, 0.38, 0.35]
  assert experiments.get('sinusoid_oracle').input_dim == 3


@pytest.mark.parametrize('changes,match', [
    (dict(update_batch_size=0), 'update_batch_size=0 must be at least 1'),
    (dict(num_updates=-1), 'num_updates=-1 must not be negative'),
    (dict(test_num_updates=-2), 'must not be negative'),
    (dict(update_lr=float('nan')), 'update_lr=nan must be a positive number'),
    (dict(meta_lr=0.0), 'meta_lr=0.0 must be a positive number'),
    (dict(norm='batchnorm'), 'norm'),
    (dict(baseline='oracel'), 'baseline'),
    (dict(metatrain_iterations=0, pretrain_iterations=0), 'nothing to train'),
    (dict(learning_rate=1.0), 'unknown config field'),
])
def test_bad_values_raise_one_clear_error(changes, match):
  with pytest.raises(ConfigError, match=re.escape(match)):
    experiments.get('sinusoid_maml').replace(**changes)


def test_unknown_experiment_lists_the_rows():
  with pytest.raises(ConfigError, match='sinusoid_maml'):
    experiments.get('sinusoid')


def test_scripts_name_only_existing_rows_and_run_every_published_row():
  named = set()
  for script in (ROOT / 'scripts').glob('*.sh'):
    prefixes = '|'.join(experiments.DATASOURCES)
    named |= set(re.findall(rf'\b((?:{prefixes})_\w+)', script.read_text()))
  assert named, 'no script names an experiment row'
  assert named <= set(experiments.EXPERIMENTS), named - set(experiments.EXPERIMENTS)
  published = {n for n, c in experiments.EXPERIMENTS.items() if c.published}
  assert published <= named, f'rows with published numbers that no script runs: {published - named}'


def test_ci95_is_the_original_formula():
  values = [[1.0, 2.0, 3.0, 4.0]]
  mean, ci = utils.mean_and_ci95(values)
  assert mean[0] == 2.5
  assert math.isclose(ci[0], 1.96 * math.sqrt(1.25) / 2)  # numpy std (ddof=0), sqrt(n)


def test_rl_scripts_run_every_rl_row():
  named = set()
  for script in (ROOT / 'scripts').glob('rl_*.sh'):
    named |= set(re.findall(r'\b(rl_\w+_(?:maml|pretrained|random|oracle))\b', script.read_text()))
  assert named == set(experiments.RL_EXPERIMENTS), set(experiments.RL_EXPERIMENTS) ^ named
