"""PCK per keypoint group of one split, in percent, as the reference computes it."""

import jax
import jax.numpy as jnp
import numpy as np

from dapose_jax import parallel
from dapose_jax.data import pipeline
from dapose_jax.pose import keypoints, metrics


class PCK:
  """The reference's per-batch PCK (``metrics.pck_hits``: argmax of prediction and target heatmaps, distance
  below ``threshold`` of the heatmap side) aggregated over the split as ``aggregation`` says
  (``metrics.GroupPCK``: 'tllib' or 'udape'); one value per group of the keypoint set, headline ``all``."""

  headline = "all"

  def __init__(self, predict, source, keypoint_set, *, config, mesh, resize_pad, threshold=0.05,
               aggregation="tllib"):
    metrics.GroupPCK(keypoint_set.groups, mode=aggregation)  # checks the mode now
    self.keys = tuple(keypoint_set.groups)
    self.description = f"PCK@{threshold} in percent ({aggregation} aggregation)"
    self.predict, self.source, self.keypoint_set, self.resize_pad = predict, source, keypoint_set, resize_pad
    self._groups, self._aggregation = keypoint_set.groups, aggregation
    self._batching = dict(batch_size=config.eval_batch_size, image_size=config.image_size, resize_pad=resize_pad)
    self._mesh = mesh

    def counts(heatmaps, batch):
      """Per-keypoint (correct, counted) sums over the real samples of one global batch."""
      target, _ = keypoints.heatmap_targets(config, batch)
      correct, counted = metrics.pck_hits(heatmaps, target, threshold)
      counted = counted & (batch["mask"][:, None] > 0)
      return jnp.sum(correct & counted, axis=0), jnp.sum(counted, axis=0)

    data = parallel.data_sharding(mesh)
    self._counts = jax.jit(counts, in_shardings=(data, data), out_shardings=parallel.replicated(mesh))

  def run(self, state):
    table = metrics.GroupPCK(self._groups, mode=self._aggregation)
    for batch in pipeline.eval_batches(self.source, **self._batching):
      real = int(batch["mask"].sum())
      batch = parallel.to_global(batch, self._mesh)
      correct, counted = jax.device_get(self._counts(self.predict(state, batch["image"]), batch))
      per_keypoint = np.where(counted > 0, correct / np.maximum(counted, 1), -1.0)
      table.update(per_keypoint, parallel.global_sum(real))
    return {name: 100.0 * value for name, value in table.result().items()}
