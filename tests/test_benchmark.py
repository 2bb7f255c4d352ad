"""The benchmark runs and writes a sane record. Smoke tests only: no speed is ever asserted."""

import json
import math

import pytest

import benchmark
import experiments


def check_record(result, path, objective):
  assert path.exists(), f'no benchmark file {path}'
  saved = json.loads(path.read_text())
  assert saved == json.loads(json.dumps(result))  # the file holds what was returned
  assert saved['objective'] == objective
  assert saved['iterations'] == 20 and saved['warmup'] == 2 and saved['chunks'] == 2
  assert saved['its_median'] > 0 and saved['its_min'] <= saved['its_median'] <= saved['its_max']
  assert saved['its_mean'] > 0 and saved['compile_s'] > 0
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
  saved = check_record(result, tmp_path / 'sinusoid_maml.nojit.json', 'maml')
  assert saved['experiment'] == 'sinusoid_maml' and not saved['first_order']
  assert saved['meta_batch_size'] == 5 and saved['jit_compile'] is False


def test_benchmark_counts_every_iteration_of_a_looped_call(tmp_path):
  cfg = experiments.get('sinusoid_maml').replace(meta_batch_size=5, steps_per_call=5)
  result = benchmark.run_benchmark(cfg, iterations=18, out_dir=str(tmp_path), warmup=2)
  # 18 iterations round up to 4 calls of 5, timed 2 calls (10 iterations) per chunk.
  saved = check_record(result, tmp_path / 'sinusoid_maml.json', 'maml')
  assert saved['steps_per_call'] == 5 and saved['chunk_size'] == 10


def test_benchmark_pretrained_first_order_name(tmp_path):
  cfg = experiments.get('sinusoid_pretrained').replace(jit_compile=False, stop_grad=True,
                                                       steps_per_call=1)
  result = benchmark.run_benchmark(cfg, iterations=20, out_dir=str(tmp_path), warmup=2)
  check_record(result, tmp_path / 'sinusoid_pretrained.first_order.nojit.json', 'pretrain')


def test_benchmark_rejects_no_iterations():
  with pytest.raises(ValueError, match='iterations'):
    benchmark.run_benchmark(experiments.get('sinusoid_maml'), iterations=0)


def test_image_rows_benchmark_on_synthetic_data_without_a_dataset(tmp_path):
  cfg = experiments.get('omniglot_5way_1shot').replace(meta_batch_size=2)
  result = benchmark.run_benchmark(cfg, iterations=2, warmup=0, out_dir=str(tmp_path))
  assert result['data'] == 'synthetic' and result['its_median'] > 0
  assert result["support_size"] == 5 and math.isfinite(result["final_loss"])
