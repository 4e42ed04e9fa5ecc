"""PCK per keypoint group of one split, in percent, as the reference computes it."""

import jax
import jax.numpy as jnp
import numpy as np

from dapose_jax import parallel
from dapose_jax.evaluators import passes
from dapose_jax.pose import keypoints, metrics


class PCK(passes.SplitEvaluator):
  """The reference's per-batch PCK (``metrics.pck_hits``: argmax of prediction and target heatmaps, distance
  below ``threshold`` of the heatmap side) aggregated over the split as ``aggregation`` says
  (``metrics.GroupPCK``: 'tllib' or 'udape'); one value per group of the keypoint set, headline ``all``."""

  headline = "all"

  def __init__(self, predict, source, keypoint_set, *, config, mesh, resize_pad, threshold=0.05,
               aggregation="tllib"):
    metrics.GroupPCK(keypoint_set.groups, mode=aggregation)  # checks the mode now
    super().__init__(predict, source, keypoint_set, config=config, mesh=mesh, resize_pad=resize_pad)
    self.keys = tuple(keypoint_set.groups)
    self.description = f"PCK@{threshold} in percent ({aggregation} aggregation)"
    self._groups, self._aggregation = keypoint_set.groups, aggregation

    def counts(heatmaps, batch):
      """Per-keypoint (correct, counted) sums over the real samples of one global batch."""
      target, _ = keypoints.heatmap_targets(config, batch)
      correct, counted = metrics.pck_hits(heatmaps, target, threshold)
      counted = counted & (batch["mask"][:, None] > 0)
      return jnp.sum(correct & counted, axis=0), jnp.sum(counted, axis=0)

    data = parallel.data_sharding(mesh)
    self._counts = jax.jit(counts, in_shardings=(data, data), out_shardings=parallel.replicated(mesh))

  def start(self):
    return metrics.GroupPCK(self._groups, mode=self._aggregation)

  def update(self, table, heatmaps, batch, real):
    correct, counted = jax.device_get(self._counts(heatmaps, batch))
    per_keypoint = np.where(counted > 0, correct / np.maximum(counted, 1), -1.0)
    table.update(per_keypoint, parallel.global_sum(real))
    return table

  def finish(self, table):
    return {name: 100.0 * value for name, value in table.result().items()}
