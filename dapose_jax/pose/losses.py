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


def consistency(student, teacher_rectified, mask):
  """UDAPE ``ConsLoss``: mean over B*K*H*W of (mask * (student - teacher))^2.

  No 0.5 factor, and masked-out keypoints stay in the denominator. The teacher is a constant (the
  reference computes it under ``no_grad``).
  """
  diff = student.astype(jnp.float32) - jax.lax.stop_gradient(teacher_rectified).astype(jnp.float32)
  return jnp.mean((mask[..., None, None, :] * diff) ** 2)


def median_confidence_mask(teacher_heatmaps):
  """UDAPE's confidence mask (B, K): 1 where a keypoint's peak is strictly above the batch threshold.

  conf = max over pixels of the un-rectified teacher maps; the threshold is the k-th smallest of the
  B*K confidences, k = int(0.5 * B * K) (``torch.kthvalue``, 1-based), so ties at the threshold are
  dropped. For B*K = 1 (k = 0, where ``kthvalue`` would fail) the threshold is -inf: nothing is dropped.
  """
  conf = jnp.max(teacher_heatmaps.astype(jnp.float32), axis=(-3, -2))
  k = int(0.5 * conf.size)
  threshold = jnp.sort(conf.ravel())[k - 1] if k > 0 else -jnp.inf
  return (conf > threshold).astype(jnp.float32)


def _softmax_entropy(logits, axis):
  return -jnp.sum(jax.nn.softmax(logits, axis=axis) * jax.nn.log_softmax(logits, axis=axis), axis=axis)


def information_maximization(heatmaps, threshold=None):
  """DAML's ``SimCCLoss`` on (B, H, W, K) heatmaps: E_H + E_W - E_M, natural-log entropies / (H*W).

  E_H: entropy of softmax over H of the map averaged over W, mean over (b, k); E_W: the same with H
  and W swapped; E_M: entropy of softmax over all H*W pixels of the batch-mean map, mean over k.
  Dividing by H*W (not by log of the length) is the reference's, so the value is tiny (~3e-5).

  ``threshold=None`` is the released code (no confidence threshold). A number applies the paper's
  threshold instead: E_H and E_W become the mean over only the (b, k) whose peak value exceeds it
  (0 if none does); E_M still uses every keypoint. (The code's own unused ``threshold`` would filter
  on the entropy, not on the peak.)
  """
  x = heatmaps.astype(jnp.float32)
  height, width = x.shape[-3:-1]
  ent_h = _softmax_entropy(jnp.mean(x, axis=-2), axis=-2)  # (B, K)
  ent_w = _softmax_entropy(jnp.mean(x, axis=-3), axis=-2)  # (B, K)
  batch_mean = jnp.mean(x, axis=0).reshape(height * width, -1)
  ent_m = jnp.mean(_softmax_entropy(batch_mean, axis=0))
  if threshold is None:
    ent_hw = jnp.mean(ent_h + ent_w)
  else:
    keep = (jnp.max(x, axis=(-3, -2)) > threshold).astype(jnp.float32)
    ent_hw = jnp.sum(keep * (ent_h + ent_w)) / jnp.maximum(jnp.sum(keep), 1.0)
  return (ent_hw - ent_m) / (height * width)


def bce_with_logits(logits, label):
  """Mean over all elements of binary cross-entropy on logits (DAML's discriminator: source 0, target 1)."""
  x = logits.astype(jnp.float32)
  return jnp.mean(jnp.maximum(x, 0.0) - x * label + jnp.log1p(jnp.exp(-jnp.abs(x))))
