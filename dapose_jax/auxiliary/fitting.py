"""What the auxiliary networks (the pose VAE, the 2D-to-3D lifter) share: the small optax loop that fits one to
its loss (``fit``), and the reader of the poses of every sample of a data source (``read_poses``)."""

import logging

import grain
import jax
import numpy as np
import optax

from dapose_jax.storage.metric_writers import Progress

log = logging.getLogger("dapose_jax")


def fit(loss_fn, params, optimizer, batches, steps, log_every):
  """(params, last logged {"loss", **terms} as floats) after one jitted ``optimizer`` step per batch of ``batches``
  (``steps`` of them, each a tuple of arguments): ``loss_fn(params, *batch)`` gives (loss, {name: term}). The
  values are logged with the steps/s every ``log_every`` steps and at the last one."""

  @jax.jit
  def step(params, opt_state, batch):
    (value, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {"loss": value, **terms}

  opt_state = optimizer.init(params)
  timer, values = Progress(0, steps), None
  for i, batch in enumerate(batches, start=1):
    params, opt_state, metrics = step(params, opt_state, batch)
    if i == 1:
      jax.block_until_ready(metrics)
      timer.mark_first_step_done(i)
    if i % log_every == 0 or i == steps:
      values = {name: float(value) for name, value in metrics.items()}
      timer.report(i, values["loss"])
  return params, values


def read_poses(source, fields, count=0, num_threads=2, name="poses", log_every=10_000):
  """One float32 array (N, ...) per sample key in ``fields`` (e.g. "keypoints", "visible") of the first ``count``
  samples of ``source`` (all when ``count`` is 0 or more than it has), in index order. Sources give whole samples,
  so the images are read (and, for the embedded renderer, drawn) too; progress is logged as ``name``."""
  n = len(source) if count <= 0 else min(count, len(source))
  poses = grain.MapDataset.source(source)[:n].map(lambda sample: tuple(sample[field] for field in fields))
  columns = tuple([] for _ in fields)
  for i, pose in enumerate(poses.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                                                   prefetch_buffer_size=64))):
    for column, value in zip(columns, pose):
      column.append(value)
    if (i + 1) % log_every == 0:
      log.info("%s: read %d of %d poses", name, i + 1, n)
  return tuple(np.asarray(column, np.float32) for column in columns)
