"""The benchmark runs and writes a sane record. Smoke tests only: no speed is ever asserted."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

import benchmark
import experiments
import trainer


def check_record(result, path, objective):
  assert path.exists(), f'no benchmark file {path}'
  saved = json.loads(path.read_text())
  assert saved == json.loads(json.dumps(result))  # the file holds what was returned
  assert saved['objective'] == objective
  assert saved['iterations'] == 20 and saved['warmup'] == 2 and saved['chunks'] == 2
  assert saved['its_median'] > 0 and saved['its_min'] <= saved['its_median'] <= saved['its_max']
  assert saved['its_mean'] > 0 and saved['compile_s'] > 0
  assert saved['other_cores'] is None or saved['other_cores'] >= 0  # the contention of the window
  assert saved['vector_extension'] in ('AVX-512', 'AVX2', 'other')
  assert saved['rss_before_build_mb'] > 0
  assert saved['peak_rss_mb'] >= saved['rss_before_build_mb']
  assert 0 <= saved['sampling_share'] < 1 and saved['data'] == 'synthetic'
  assert math.isfinite(saved['final_loss'])
  assert saved['est_training_s'] > 0
  for key in ('tensorflow', 'keras', 'devices', 'cpu_count', 'intra_op_threads',
              'inter_op_threads', 'commit', 'timestamp', 'meta_batch_size', 'num_updates'):
    assert key in saved, key
  return saved


def test_benchmark_maml(tmp_path):
  cfg = experiments.get('sinusoid_maml').replace(jit_compile=False, meta_batch_size=5,
                                                 steps_per_call=1)
  result = benchmark.run_benchmark(cfg, iterations=20, out_dir=str(tmp_path), warmup=2)
  saved = check_record(result, tmp_path / 'sinusoid_maml.nojit.steps_per_call1.json', 'maml')
  assert saved['experiment'] == 'sinusoid_maml' and not saved['first_order']
  assert saved['meta_batch_size'] == 5 and saved['jit_compile'] is False


def test_benchmark_counts_every_iteration_of_a_looped_call(tmp_path):
  cfg = experiments.get('sinusoid_maml').replace(meta_batch_size=5, steps_per_call=5)
  result = benchmark.run_benchmark(cfg, iterations=18, out_dir=str(tmp_path), warmup=2)
  # 18 iterations round up to 4 calls of 5, timed 2 calls (10 iterations) per chunk.
  saved = check_record(result, tmp_path / 'sinusoid_maml.steps_per_call5.json', 'maml')
  assert saved['steps_per_call'] == 5 and saved['chunk_size'] == 10


def test_benchmark_pretrained_first_order_name(tmp_path):
  cfg = experiments.get('sinusoid_pretrained').replace(jit_compile=False, stop_grad=True,
                                                       steps_per_call=1)
  result = benchmark.run_benchmark(cfg, iterations=20, out_dir=str(tmp_path), warmup=2)
  check_record(result, tmp_path / 'sinusoid_pretrained.first_order.nojit.steps_per_call1.json', 'pretrain')


def test_benchmark_rejects_no_iterations():
  with pytest.raises(ValueError, match='iterations'):
    benchmark.run_benchmark(experiments.get('sinusoid_maml'), iterations=0)


def test_image_rows_benchmark_on_synthetic_data_without_a_dataset(tmp_path):
  cfg = experiments.get('omniglot_5way_1shot').replace(meta_batch_size=2)
  result = benchmark.run_benchmark(cfg, iterations=2, warmup=0, out_dir=str(tmp_path))
  assert result['data'] == 'synthetic' and result['its_median'] > 0
  assert result["support_size"] == 5 and math.isfinite(result["final_loss"])


def test_synthetic_episodes_are_valid_n_way_k_shot_episodes():
  cfg = experiments.get('omniglot_5way_1shot_protonet').replace(meta_batch_size=3, update_batch_size=2)
  setup = trainer.build(cfg)
  for x_s, y_s, x_q, y_q in benchmark.synthetic_episodes(setup, count=2):
    assert x_s.shape == (3, 10, 28, 28, 1) and x_q.shape == (3, cfg.train_query_size * 5, 28, 28, 1)
    assert y_s.shape == (3, 10, 5)  # N classes, not the embedding's width
    assert (tf.reduce_sum(y_s, 1).numpy() == 2).all()  # every class K times in every task
    assert (tf.reduce_sum(y_q, 1).numpy() == cfg.train_query_size).all()
    assert (tf.argmax(y_s[0], -1).numpy() != np.tile(np.arange(5), 2)).any()  # shuffled


def test_metric_rows_benchmark_a_finite_loss(tmp_path):
  cfg = experiments.get('omniglot_5way_1shot_protonet').replace(meta_batch_size=2)
  result = benchmark.run_benchmark(cfg, iterations=2, warmup=0, out_dir=str(tmp_path))
  assert math.isfinite(result['final_loss'])


def test_benchmark_refuses_a_non_finite_loss(tmp_path, monkeypatch):
  cfg = experiments.get('omniglot_5way_1shot_protonet').replace(meta_batch_size=2)
  valid = benchmark.synthetic_episodes

  def without_class_0(setup, count=4):  # a class with no support example: a NaN class mean
    return [(x_s, tf.one_hot(tf.ones(y_s.shape[:2], tf.int32), 5), x_q, y_q)
            for x_s, y_s, x_q, y_q in valid(setup, count)]

  monkeypatch.setattr(benchmark, 'synthetic_episodes', without_class_0)
  with pytest.raises(trainer.RunError, match='non-finite'):
    benchmark.run_benchmark(cfg, iterations=2, warmup=0, out_dir=str(tmp_path))
  assert not list(tmp_path.rglob('*.json'))  # no record of a meaningless speed


def test_output_path_names_the_speed_settings_that_differ_from_the_row(tmp_path):
  row = experiments.get('omniglot_5way_1shot')
  assert benchmark.output_path(row, 'b') == 'b/omniglot_5way_1shot.nojit.json'
  changed = row.replace(task_parallelism='map_fn', steps_per_call=2, stop_grad=True)
  assert benchmark.output_path(changed, 'b') == (
      'b/omniglot_5way_1shot.first_order.nojit.task_parallelismmap_fn.steps_per_call2.json')
