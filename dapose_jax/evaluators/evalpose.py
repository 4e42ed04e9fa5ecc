"""EvalPose (Dua et al.) of one split: the mean over its images of ``metrics.evalpose`` x 100.

Predictions are decoded as the coordinate metrics decode them (their ``decoding`` setting; by default the integer
argmax times the stride). An image counts when it has at least one angle of the keypoint set
(``skeletons.KeypointSet.angles``) whose three ground-truth keypoints are visible; EvalPose is 0 where none does.
It is invariant to scale, translation and in-plane rotation of either pose, so it judges the articulation that
PCK, a distance, mixes with placement: configure it beside a PCK, e.g.
``config.evals.target_evalpose = dict(type="evalpose", domain="target")``.
"""

import jax.numpy as jnp

from dapose_jax.evaluators import coordinates
from dapose_jax.pose import metrics


class EvalPose(coordinates.CoordinateMetric):
  """The mean EvalPose of the split's images in percent; one value, ``all``."""

  description = "EvalPose (cosine of the joint-angle vectors of prediction and truth) x 100, mean over images"

  def __init__(self, predict, source, keypoint_set, *, config, mesh, resize_pad, decoding="argmax"):
    super().__init__(predict, source, keypoint_set, config=config, mesh=mesh, resize_pad=resize_pad,
                     decoding=decoding)
    self.keys = ("all",)

  def _batch_sums(self, pred, truth, counted):
    per_image = metrics.evalpose(pred, truth, counted, self.keypoint_set)  # NaN: padding, or no angle
    scored = ~jnp.isnan(per_image)
    return jnp.sum(jnp.where(scored, per_image, 0.0)), jnp.sum(scored)

  def _result(self, total):
    value, images = total
    return {"all": 100.0 * float(value) / max(float(images), 1.0)}
