"""Heatmap losses with the reference (tllib ``JointsMSELoss`` / ``JointsKLLoss``) values.

Heatmaps are channels-last ``(B, H, W, K)``; weights are ``(B, K)``. Losses are computed in float32.
"""

import jax
import jax.numpy as jnp


def heatmap_mse(pred, target, weight):
  """Mean over B*K*H*W of 0.5 * (pred - target)^2 * weight; zero-weight keypoints stay in the mean."""
  pred = pred.astype(jnp.float32)
  err = 0.5 * (pred - target) ** 2 * weight[..., None, None, :]
  return jnp.mean(err)


def heatmap_kl(pred_logits, target, weight, epsilon=0.0):
  """Mean over B*K of weight * KL(t || softmax(pred)) with t = (target + eps) / sum(target + eps).

  A keypoint whose target sums to zero (with epsilon 0: invisible or cropped out) contributes 0 with
  zero gradient, as PyTorch <= 1.12's ``kl_div`` did for the published numbers (newer PyTorch gives NaN).
  """
  *batch, height, width, k = pred_logits.shape
  flat = lambda x: jnp.moveaxis(x, -1, -3).reshape(*x.shape[:-3], k, height * width)
  log_p = jax.nn.log_softmax(flat(pred_logits.astype(jnp.float32)), axis=-1)
  t = flat(target.astype(jnp.float32)) + epsilon
  total = jnp.sum(t, axis=-1, keepdims=True)
  t = jnp.where(total > 0, t / jnp.where(total > 0, total, 1.0), 0.0)
  positive = t > 0
  per_pixel = jnp.where(positive, t * (jnp.log(jnp.where(positive, t, 1.0)) - log_p), 0.0)
  return jnp.mean(jnp.sum(per_pixel, axis=-1) * weight)
