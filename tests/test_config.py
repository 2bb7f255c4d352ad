"""The configuration's parts (config.py and the methods' options): each field defined once, with a
doc, flags generated from the fields, and every saved config.json still loading."""

import collections
import dataclasses
import json
import pathlib

import pytest

from absl import flags
import config
import experiments
import main
import methods
import rundir

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIELDS = dataclasses.fields(experiments.Config)


def test_each_field_is_defined_in_one_part_only():
  owners = collections.defaultdict(list)
  for part in experiments.PARTS:
    for f in dataclasses.fields(part):
      owners[f.name].append(part.__name__)
  assert {name: parts for name, parts in owners.items() if len(parts) > 1} == {}
  assert set(owners) == {f.name for f in FIELDS}


def test_the_methods_options_are_parts_of_every_row():
  for part in methods.option_parts():
    assert part in experiments.PARTS
    assert set(part.__dataclass_fields__) <= set(experiments.Config.__dataclass_fields__)


def test_every_field_has_a_doc():
  assert [f.name for f in FIELDS if not f.metadata.get('doc')] == []
  flagged = [f for f in dataclasses.fields(experiments.RLConfig) if f.metadata.get('flag')]
  assert flagged and all(f.metadata['doc'] for f in flagged)


def test_flags_are_generated_from_the_fields():
  """One flag per field marked `flag`, with the field's doc as its help and its choices."""
  marked = experiments.Config.fields_where('flag')
  assert set(main.TRAIN_FIELDS) | set(main.RUNTIME_FLAGS) == set(marked)
  assert not set(main.TRAIN_FIELDS) & set(main.RUNTIME_FLAGS)
  for f in FIELDS:
    if not f.metadata.get('flag'):
      assert f.name not in main.MAIN_FLAGS or f.name in ('datasource',), f.name
      continue
    flag = flags.FLAGS[f.name]
    assert flag.default is None and f.metadata['doc'] in flag.help
    choices = f.metadata.get('choices')
    if choices and None not in choices and 'None' not in choices:
      assert list(flag.parser.enum_values) == list(choices)


def test_rl_flags_map_to_their_fields():
  rl = {f.name: f.metadata['flag'] for f in dataclasses.fields(experiments.RLConfig)
        if f.metadata.get('flag')}
  assert rl['iterations'] == 'metatrain_iterations' and rl['test_tasks'] == 'num_test_tasks'
  assert set(main.RL_ONLY_FLAGS) == {'max_kl', 'fd_hvp_eps', 'env_workers'}
  assert set(main.RL_FLAGS) >= set(main.RL_FIELD_FLAGS)


def test_resumable_fields_are_not_in_run_names_and_training_length_is_a_training_flag():
  assert set(experiments.RUNTIME_FIELDS) == set(experiments.Config.fields_where('resumable'))
  assert {'metatrain_iterations', 'pretrain_iterations'} <= set(main.TRAIN_FIELDS)
  assert {'num_test_tasks', 'data_dir', 'task_chunk', 'nn_distance'} <= set(main.RUNTIME_FLAGS)


def test_run_names_keep_their_order():
  """A run directory's name lists the training flags in the order the first runs were named by,
  so their directories resume; a field added later comes after them."""
  overrides = {'cosine_scale': 2.0, 'update_lr': 0.01, 'num_classes': 5, 'metatrain_iterations': 9}
  assert main._run_name('row', overrides) == 'row.num_classes5.update_lr0.01.cosine_scale2.0'
  assert main._run_name('row', {}) == 'row'


def test_an_unknown_choice_names_the_field_and_the_choices():
  row = experiments.get('sinusoid_maml')
  for field, value in (('datasource', 'mnist'), ('inner_lr', 'adam'), ('nn_distance', 'l1'),
                       ('method', 'lstm'), ('baseline', 'ridge')):
    with pytest.raises(config.ConfigError, match=f'{field}=.* is not one of'):
      row.replace(**{field: value})


@pytest.mark.parametrize('path', sorted(ROOT.glob('results/*/config.json')),
                         ids=lambda p: p.parent.name)
def test_committed_configs_still_load(path):
  """Every committed run's config.json (written before the config had parts) loads into its row's
  type with every field it saved, and resumes: no science field differs from the row's."""
  saved = json.loads(path.read_text())
  row = path.parent.name
  if experiments.config_type(row) is not experiments.Config:  # the RL and learned-optimizer rows
    cfg = experiments.config_type(row).from_dict(saved)
    assert set(saved) <= set(cfg.to_dict())  # an export leaves the machine's paths out
    return
  cfg = experiments.Config.load(str(path.parent))
  # Exports leave the machine's path out; fields added since (the folder datasource's) load with
  # their defaults, which change nothing for the rows that saved the file.
  added = set(cfg.to_dict()) - set(saved) - {'data_dir'}
  assert set(saved) <= set(cfg.to_dict())
  defaults = {f.name: f.default for f in FIELDS}
  assert {k: getattr(cfg, k) for k in added} == {k: defaults[k] for k in added}
  current = experiments.get(row)
  skip = set(experiments.RUNTIME_FIELDS) | set(experiments.PROVENANCE_FIELDS)
  assert {k: v for k, v in cfg.to_dict().items() if k not in skip} == {
      k: v for k, v in current.to_dict().items() if k not in skip}


def test_a_run_directory_without_config_says_how_to_train(tmp_path):
  with pytest.raises(rundir.RunError, match='no trained run in .* train it first'):
    experiments.Config.load(str(tmp_path))
