"""Helper process for tests/test_distribute.py: a few meta-updates of a small conv row, one device
or distributed, with the weights written to an .npz. Run as: python distribute_worker.py MODE OUT.

MODE: 'single'; 'mirrored' (2 logical CPU devices of this process); 'multi_worker' (TF_CONFIG).
"""

import contextlib
import pathlib
import sys

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

CLIP = 0.05  # small enough that the first meta-gradient is clipped


def main(mode: str, out: str) -> None:
  if mode == 'mirrored':  # before anything initializes the devices
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  import benchmark
  import experiments
  import trainer
  cfg = experiments.get('omniglot_5way_1shot').replace(
      num_filters=8, meta_batch_size=4, num_updates=2, meta_grad_clip=CLIP)
  strategy = {'single': lambda: None,
              'mirrored': lambda: tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']),
              'multi_worker': tf.distribute.MultiWorkerMirroredStrategy}[mode]()
  setup = trainer.build(cfg, strategy)
  # SGD shows the meta-gradient itself; Adam would blow up the rounding noise of the conv biases
  # (their true gradient is 0 under batch norm) to full steps. main.py's Adam is tested too.
  with strategy.scope() if strategy is not None else contextlib.nullcontext():
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(setup.model.trainable_variables)
  step = setup.learner.make_train_step(optimizer, 'maml', strategy=strategy)
  episodes = benchmark.synthetic_episodes(setup, count=3)
  raw = setup.learner.meta_gradient(episodes[0], clip=False)[0] if strategy is None else []
  losses = [float(step(*episode)['post_loss']) for episode in episodes]
  np.savez(out, losses=np.array(losses),
           replicas=1 if strategy is None else strategy.num_replicas_in_sync,
           clipped=sum(int(np.sum(np.abs(g.numpy()) > CLIP)) for g in raw),
           **{f'w{i}': v.numpy() for i, v in enumerate(setup.model.trainable_variables)})


if __name__ == '__main__':
  main(*sys.argv[1:])
