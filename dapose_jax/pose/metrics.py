"""PCK exactly as the reference ``accuracy`` computes it, per-group tables over a split, and EvalPose."""

import jax.numpy as jnp
import numpy as np

from dapose_jax import errors
from dapose_jax.pose import decoding


def pck_positions(pred_heatmaps, target_heatmaps):
  """The reference PCK's positions and what it counts: (pred (B, K, 2), truth (B, K, 2), counted (B, K) bool).

  Both maps are reduced to integer argmaxes (x, y), which are divided by (H/10, W/10) as the reference does, so
  that a distance between them below ``threshold * 10`` is within ``threshold`` of the heatmap side. A keypoint
  counts only if its target argmax has x > 1 and y > 1, which drops all-zero (invisible) targets and also visible
  keypoints in the first two rows / columns.
  """
  pred, _ = decoding.argmax_2d(pred_heatmaps)
  target, _ = decoding.argmax_2d(target_heatmaps)
  norm = jnp.array(pred_heatmaps.shape[-3:-1], jnp.float32) / 10
  return pred / norm, target / norm, (target[..., 0] > 1) & (target[..., 1] > 1)


def pck_hits(pred_heatmaps, target_heatmaps, threshold=0.05):
  """Per-sample outcome of the reference PCK test: (correct (B, K) bool, counted (B, K) bool): the prediction is
  within ``threshold`` of the truth (``pck_positions``; 0.5 for PCK@0.05, i.e. 0.05 of the heatmap side)."""
  pred, truth, counted = pck_positions(pred_heatmaps, target_heatmaps)
  dist = jnp.linalg.norm(pred - truth, axis=-1)
  return (dist < threshold * 10) & counted, counted


def within_threshold(a, b, shape, threshold=0.05):
  """Whether heatmap positions ``a`` and ``b`` (..., 2) (x, y) on heatmaps of ``shape`` (H, W) are closer than
  ``threshold`` of the heatmap side, by the reference PCK's rule: the difference normalised by (H/10, W/10) applied
  to (x, y), its length compared with ``threshold * 10``."""
  norm = jnp.array(shape, jnp.float32) / 10
  return jnp.linalg.norm(a / norm - b / norm, axis=-1) < threshold * 10


def pck(pred_heatmaps, target_heatmaps, threshold=0.05):
  """Reference ``accuracy``: (per_keypoint (K,) with -1 where nothing counts, average, count)."""
  correct, counted = pck_hits(pred_heatmaps, target_heatmaps, threshold)
  n = jnp.sum(counted, axis=0)
  per_keypoint = jnp.where(n > 0, jnp.sum(correct, axis=0) / jnp.maximum(n, 1), -1.0)
  valid = per_keypoint >= 0
  count = jnp.sum(valid)
  average = jnp.where(count > 0, jnp.sum(jnp.where(valid, per_keypoint, 0.0)) / jnp.maximum(count, 1), 0.0)
  return per_keypoint, average, count


class GroupPCK:
  """Accumulates PCK per keypoint group over a whole split.

  ``mode='tllib'`` (RegDA's ``validate``): per batch, each group is the plain mean of the batch's
  per-keypoint accuracies, a -1 (nothing counted) included as -1; groups are then averaged over batches
  weighted by batch size, so the result depends on the evaluation batch size (tllib used 32).
  ``mode='udape'`` (UDAPE/DAML): per-keypoint accuracies accumulated over batches, ignoring -1,
  weighted by batch size; groups are formed once at the end.
  """

  def __init__(self, groups, mode="tllib"):
    if mode not in ("tllib", "udape"):
      raise errors.ConfigError(f"unknown PCK aggregation mode {mode!r}; expected 'tllib' or 'udape'")
    self.groups = dict(groups)
    self.mode = mode
    self._group_sums = {name: 0.0 for name in self.groups}
    self._samples = 0
    self._kp_sums = None
    self._kp_weights = None

  def update(self, per_keypoint, batch_size):
    """Adds one batch's per-keypoint accuracies (K,) (-1 = nothing counted)."""
    acc = np.asarray(per_keypoint, np.float64)
    if self.mode == "tllib":
      for name, idx in self.groups.items():
        self._group_sums[name] += float(np.mean(acc[list(idx)])) * batch_size
      self._samples += batch_size
    else:
      if self._kp_sums is None:
        self._kp_sums = np.zeros_like(acc)
        self._kp_weights = np.zeros_like(acc)
      valid = acc >= 0
      self._kp_sums += np.where(valid, acc, 0.0) * batch_size
      self._kp_weights += valid * batch_size

  def result(self):
    """{group: PCK in [0, 1]} (-1 for a group with nothing counted in 'udape' mode)."""
    if self.mode == "tllib":
      return {name: s / max(self._samples, 1) for name, s in self._group_sums.items()}
    if self._kp_sums is None:
      return {name: -1.0 for name in self.groups}
    acc = np.where(self._kp_weights > 0, self._kp_sums / np.maximum(self._kp_weights, 1), -1.0)
    out = {}
    for name, idx in self.groups.items():
      values = acc[list(idx)]
      values = values[values >= 0]
      out[name] = float(values.mean()) if values.size else -1.0
    return out


def _angle_triplets(keypoint_set):
  """Index arrays (a, j, b) of the keypoint set's angles."""
  return tuple(np.array(index) for index in zip(*keypoint_set.angles.values()))


def joint_angles(keypoints, keypoint_set):
  """(..., T) unsigned angles in [0, pi] at the keypoint set's ``angles`` (a, j, b) of keypoints (..., K, 2) or
  (..., K, 3): the angle at j between j -> a and j -> b; 0 where one of the two segments has length 0."""
  a, j, b = _angle_triplets(keypoint_set)
  u, v = keypoints[..., a, :] - keypoints[..., j, :], keypoints[..., b, :] - keypoints[..., j, :]
  # atan2(|u x v|, u . v) is exact near 0 and pi, where arccos of the normalised dot product loses digits
  if keypoints.shape[-1] == 3:
    cross = jnp.linalg.norm(jnp.cross(u, v), axis=-1)
  else:
    cross = jnp.abs(u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0])
  return jnp.arctan2(cross, jnp.sum(u * v, axis=-1))


def evalpose(pred_keypoints, gt_keypoints, visible, keypoint_set):
  """EvalPose (Dua et al.) of each image, in [0, 1]: the cosine Theta1 . Theta2 / (|Theta1| |Theta2|) between the
  vectors of joint angles (``joint_angles``) of the prediction and of the ground truth, over the angles whose three
  ground-truth keypoints are all visible. Keypoints (..., K, 2), ``visible`` (..., K); returns (...): NaN for an
  image without such an angle, 0 where one of the two vectors is 0 (every used angle collapsed)."""
  a, j, b = _angle_triplets(keypoint_set)
  used = (visible[..., a] > 0) & (visible[..., j] > 0) & (visible[..., b] > 0)
  pred = jnp.where(used, joint_angles(pred_keypoints, keypoint_set), 0.0)
  gt = jnp.where(used, joint_angles(gt_keypoints, keypoint_set), 0.0)
  norms = jnp.linalg.norm(pred, axis=-1) * jnp.linalg.norm(gt, axis=-1)
  cosine = jnp.sum(pred * gt, axis=-1) / jnp.where(norms > 0, norms, 1.0)
  return jnp.where(jnp.any(used, axis=-1), cosine, jnp.nan)
