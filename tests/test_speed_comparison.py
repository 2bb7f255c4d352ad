"""The speed comparison's plumbing: one definition of the work, one timing procedure, the runner, the
README's speed section. No speed is asserted (timed tests would measure the machine, not the code)."""

import json
import os
import subprocess
import sys

from absl.testing import flagsaver
import pytest

from benchmarks import compare
from benchmarks import harness
from benchmarks import work
import experiments
import main
import report
from report import speed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('w', work.WORKS, ids=lambda w: w.name)
def test_the_projects_benchmark_flags_give_the_work_every_peer_reads(w):
  with flagsaver.flagsaver():
    main.FLAGS.unparse_flags()
    main.FLAGS(['main.py', *w.main_flags(), '--benchmark'])
    cfg, _ = main.resolve(False)
  assert cfg == w.config()
  spec = w.spec()
  json.dumps(spec)  # a peer reads it as JSON
  assert spec['query_per_class'] == cfg.train_query_size
  assert spec['meta_batch'] == cfg.meta_batch_size and spec['inner_steps'] == cfg.num_updates
  assert spec['first_order'] == cfg.stop_grad and spec['inner_lr'] == cfg.update_lr
  if not w.own_default and cfg.datasource != 'sinusoid':
    assert spec['query_per_class'] == work.SAME_QUERIES  # the same work as the peers' examples


def test_the_shared_works_are_the_rows_they_name():
  spec = work.get('omniglot_5way_1shot').spec()
  assert (spec['network'], spec['input_shape'], spec['num_filters'], spec['head']) == (
      'conv4', [28, 28, 1], 64, 'average')
  assert (spec['num_classes'], spec['support_per_class'], spec['meta_batch']) == (5, 1, 32)
  mini = work.get('miniimagenet_5way_1shot').spec()
  assert mini['max_pool'] and mini['head'] == 'flatten' and mini['meta_grad_clip'] == 10.0
  assert work.get('miniimagenet_5way_1shot_first_order').spec()['first_order']
  assert work.get('omniglot_5way_1shot_own').spec()['query_per_class'] == 1
  with pytest.raises(KeyError, match='unknown benchmark work'):
    work.get('nope')


def test_the_flop_estimate_counts_the_reference_probes_omniglot_meta_iteration():
  # ../shared/reference/performance-probes.md: Omniglot 5-way 1-shot, 15 queries, ~44 GFLOP.
  assert work.get('omniglot_5way_1shot').spec()['gflop'] == pytest.approx(44, rel=0.02)
  # The same row's conv4 forward pass by hand: 28->14->7->4->2, 3x3 convs, 64 filters.
  fwd = 2 * 9 * (14 * 14 * 1 * 64 + 7 * 7 * 64 * 64 + 4 * 4 * 64 * 64 + 2 * 2 * 64 * 64) + 2 * 64 * 5
  assert work._forward_flops(work.get('omniglot_5way_1shot').config()) == fwd
  first = work.get('miniimagenet_5way_1shot_first_order').config()
  assert work.flops(first) < work.flops(first.replace(stop_grad=False))


def test_measure_times_every_iteration_and_refuses_a_non_finite_loss():
  calls = []
  result = harness.measure(lambda i: calls.append(i) or 1.0, float, iterations=25, warmup=3)
  assert calls == list(range(29))  # the first call, 3 warm-up, 25 timed: each a fresh episode index
  assert result['chunks'] == 3 and result['iterations'] == 25
  assert result['its_min'] <= result['its_median'] <= result['its_max']
  assert result['other_cores'] is None or result['other_cores'] >= 0
  with pytest.raises(RuntimeError, match='non-finite'):
    harness.measure(lambda i: float('nan'), float, iterations=2, warmup=0)


def test_contention_sees_another_process_using_the_cpu():
  if harness._proc_stat_busy() is None:
    pytest.skip('no /proc/stat')
  busy = subprocess.Popen([sys.executable, '-c', 'import time\nt = time.time() + 3\nwhile time.time() < t: pass'])
  try:
    c = harness.Contention()
    c.start()
    import time
    time.sleep(2)
    seen = c.stop()
  finally:
    busy.wait()
  assert seen['other_cores'] > 0.5 and seen['own_cores'] < 0.2


def test_a_peer_reports_its_own_peak_memory_not_its_parents():
  """A peer is started by a process holding TensorFlow; Linux's ru_maxrss carries the parent's size
  across fork and exec, so the child must read its own address space's peak."""
  if harness.current_rss_mb() is None:
    pytest.skip('no /proc/self/status')
  ballast = bytearray(400 * harness.MB)  # zero-filled, so resident
  child = subprocess.run(
      [sys.executable, '-c', 'from benchmarks import harness; print(harness.peak_rss_mb())'],
      cwd=ROOT, capture_output=True, text=True, check=True)
  parent = harness.current_rss_mb()
  del ballast
  assert parent > 400 and float(child.stdout) < parent - 300, (parent, child.stdout)


def test_a_peer_not_installed_or_not_given_is_a_skipped_line(monkeypatch):
  monkeypatch.setattr(compare.importlib.machinery.PathFinder, 'find_spec', lambda name: None)
  line = compare.measure_peer('jax', work.get('sinusoid'), compare.Budget(2, 0), 60, None)
  assert line == {'impl': 'jax', 'work': 'sinusoid',
                  'skipped': f'jax not installed ({compare.INSTALL_HINT})'}
  monkeypatch.undo()
  line = compare.measure_peer('tf1_original', work.get('sinusoid'), compare.Budget(2, 0), 60, None)
  assert 'no checkout of the original code' in line['skipped']


def test_a_peer_reporting_another_name_is_a_failed_line(monkeypatch):
  """The report files lines by (impl, work): a peer naming itself otherwise would vanish from it."""
  monkeypatch.setattr(compare.importlib.machinery.PathFinder, 'find_spec', lambda name: object())
  reported = {'impl': 'jax_maml', 'work': 'sinusoid', 'its_median': 1.0}
  monkeypatch.setattr(compare, '_run', lambda cmd, env, timeout: (0, json.dumps(reported), ''))
  line = compare.measure_peer('jax', work.get('sinusoid'), compare.Budget(2, 0), 60, None)
  assert line['impl'] == 'jax' and 'reported itself as (jax_maml, sinusoid)' in line['failed']
  reported['impl'] = 'jax'
  assert compare.measure_peer('jax', work.get('sinusoid'), compare.Budget(2, 0), 60, None) == reported


def test_a_failing_peer_is_reported_with_its_last_lines():
  line = compare._failure('jax', 'sinusoid', 1, 'Traceback\n  File x\nValueError: bad shape\n')
  assert line['failed'].startswith('exit status 1') and 'ValueError: bad shape' in line['failed']
  skipped = compare._failure('tf1_original', 'sinusoid', compare.SKIP_EXIT, 'skipped: no maml.py\n')
  assert skipped['skipped'] == 'no maml.py'


def test_the_runner_measures_this_project_and_writes_one_line_each(tmp_path):
  out = tmp_path / 'speed' / 'comparison.jsonl'
  proc = subprocess.run(
      [sys.executable, 'main.py', '--compare_speed', '--compare_quick', '--compare_works=sinusoid',
       '--compare_impls=this_repo,tf1_original', f'--compare_out={out}'],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = compare.read(str(out))
  assert [l['impl'] for l in lines] == ['matmul_peak', 'this_repo', 'tf1_original']
  peak, this, tf1 = lines
  assert peak['peak_gflops'] > 0 and peak['vector_extension'] in ('AVX-512', 'AVX2', 'other')
  assert this['work'] == 'sinusoid' and this['its_median'] > 0 and this['peak_rss_mb'] > 0
  assert this['flags'] == ['--experiment=sinusoid_maml'] and this['cpu_model']
  assert this['task_chunk_used'] == 0  # the sinusoid takes its whole meta-batch at once
  assert 'skipped' in tf1
  text = report.speed_report(str(tmp_path))  # the README's section from these lines
  assert text.startswith(speed.SPEED_BEGIN) and text.rstrip().endswith(speed.SPEED_END)
  assert '| sinusoid, meta-batch 25, K = 10, 1 step |' in text
  assert this['cpu_model'] in text and 'no checkout of the original code' in text


def test_the_runner_refuses_unknown_works_and_implementations(tmp_path):
  for flag, name in (('--compare_works=nope', 'nope'), ('--compare_impls=pytorch', 'pytorch')):
    proc = subprocess.run([sys.executable, 'main.py', '--compare_speed', flag,
                           f'--compare_out={tmp_path}/c.jsonl'],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and f'unknown {name}' in proc.stderr.splitlines()[-1]


def test_the_speed_section_computes_ratios_from_one_run(tmp_path):
  cpu = {'cpu_model': 'Test CPU', 'cpu_count': 2, 'vector_extension': 'AVX2'}
  lines = [
      {'impl': 'matmul_peak', 'work': '-', 'peak_gflops': 100.0, **cpu},
      {'impl': 'this_repo', 'work': 'omniglot_5way_1shot', 'its_median': 2.0, 'peak_rss_mb': 1024.0,
       'compile_s': 5.0, 'other_cores': 0.1, 'timestamp': '2026-12-07T00:00:00+00:00',
       'rss_before_build_mb': 640.0, **cpu},
      {'impl': 'this_repo', 'work': 'sinusoid', 'its_median': 3571.4, 'peak_rss_mb': 830.0,
       'compile_s': 2.0, 'other_cores': 0.0, 'rss_before_build_mb': 620.0, **cpu},
      {'impl': 'torch_func', 'work': 'omniglot_5way_1shot', 'its_median': 1.0, 'peak_rss_mb': 512.0,
       'compile_s': 1.0, 'other_cores': 0.3, **cpu},
      {'impl': 'jax', 'work': 'omniglot_5way_1shot', 'its_median': 1.6, 'peak_rss_mb': 2048.0,
       'compile_s': 9.0, 'other_cores': 0.0, **cpu},
      {'impl': 'higher', 'work': 'omniglot_5way_1shot', 'skipped': 'higher not installed'},
  ]
  (tmp_path / 'speed').mkdir()
  (tmp_path / 'speed' / 'comparison.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines))
  text = report.speed_report(str(tmp_path))
  row = next(l for l in text.splitlines() if l.startswith('| Omniglot 5-way 1-shot, meta-batch 32'))
  # this repo 2.0 it/s (1.00 GB); torch.func 1.0 (0.50); higher skipped; JAX 1.6 (2.00); best peer JAX
  assert row.split(' | ')[1:] == ['2 (1.00)', '1 (0.50)', 'skipped', '1.6 (2.00)', '1.25x', '2.00x',
                                  '5.0', f'{100 * 2.0 * work.get("omniglot_5way_1shot").spec()["gflop"] / 100:.0f}% |']
  assert 'Test CPU (AVX2)' in text and '2026-12-07' in text and 'at most 0.30 cores' in text
  assert 'higher not installed' in text
  assert '| 3571 (0.81) |' in text  # thousands without an exponent
  assert 'held 0.61-0.62 GB before building a model' in text
  lines[1]['rss_before_build_mb'] = 620.0  # one floor: one figure
  (tmp_path / 'speed' / 'comparison.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines))
  assert 'held 0.61 GB before building a model' in report.speed_report(str(tmp_path))


def test_a_main_process_without_jax_still_finds_the_jax_peer(monkeypatch):
  """main.py keeps JAX out of its process (sys.modules['jax'] = None); the runner must still see it
  installed for the peer's own process."""
  import importlib.machinery
  if importlib.machinery.PathFinder.find_spec('jax') is None:
    pytest.skip('jax not installed')
  monkeypatch.setitem(sys.modules, 'jax', None)  # as main.py leaves its process
  line = compare.measure_peer('jax', work.get('sinusoid'), compare.Budget(2, 0), 1, None)
  assert 'not installed' not in line.get('skipped', '')


@pytest.mark.parametrize('name,chunk', [('omniglot_5way_1shot', 1), ('omniglot_20way_1shot', 1),
                                        ('miniimagenet_5way_1shot', 1), ('omniglot_5way_1shot_own', 4),
                                        ('sinusoid', 0)])
def test_the_large_works_chunk_their_tasks_by_default(name, chunk):
  import trainer
  cfg = work.get(name).config()
  assert cfg.task_chunk is None  # automatic
  assert trainer.build(cfg).learner.task_chunk == chunk
  assert trainer.build(cfg.replace(task_chunk=0)).learner.task_chunk == 0  # the flag decides
