"""Heatmap decoding: every way the package turns heatmaps into keypoint coordinates (and confidences).

Conventions as ``keypoints``' targets: heatmaps are channels-last ``(..., H, W, K)``; keypoints are ``(..., K, 2)``
as (x, y), x the column and y the row.

- ``argmax_2d``: the integer argmax in heatmap cells and each map's maximum (tllib ``get_max_preds``): the reference
  PCK, the mean teacher's and the geometric method's peaks.
- ``keypoints_in_pixels``: ``argmax_2d`` times the stride, in input pixels (the evaluators, ``predict``).
- ``soft_argmax`` at ``soft_argmax_temperature``, and ``heatmap_keypoints`` (its relative form, normalised as the
  reconstruction generator's keypoints): the differentiable keypoints of the geometric reconstruction.
- ``pixels_to_normalised`` / ``normalised_to_pixels``: pixel indices of a map <-> [-1, 1] coordinates (the
  reconstruction generator's keypoints and motion fields).
- ``pseudo_labels``: RegDA's pseudo-labels, the reference targets rendered back at ``argmax_2d``'s keypoints.

All functions but the config-time ``soft_argmax_temperature`` (NumPy) are pure jnp and work under ``jit``/``vmap``.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dapose_jax.pose import keypoints


def pixels_to_normalised(xy, height, width):
  """(..., 2) pixel indices (x, y) of a ``height`` x ``width`` map -> normalised coordinates."""
  return 2.0 * xy / jnp.array([width, height], jnp.float32) - 1.0


def normalised_to_pixels(uv, height, width):
  """The inverse of ``pixels_to_normalised``."""
  return (uv + 1.0) * jnp.array([width, height], jnp.float32) / 2.0


def _argmax_cells(heatmaps):
  """(xy (..., K, 2) float32: the first maximum's cell of each map, maxvals (..., K))."""
  *batch, height, width, k = heatmaps.shape
  flat = jnp.moveaxis(heatmaps, -1, -3).reshape(*batch, k, height * width)
  index = jnp.argmax(flat, axis=-1)
  maxvals = jnp.max(flat, axis=-1)
  return jnp.stack([index % width, index // width], axis=-1).astype(jnp.float32), maxvals


def argmax_2d(heatmaps):
  """tllib's ``get_max_preds``: the integer argmax of each map.

  Returns (xy (..., K, 2) float32 in heatmap cells, (0, 0) where the map's maximum is <= 0; maxvals (..., K)).
  """
  xy, maxvals = _argmax_cells(heatmaps)
  return xy * (maxvals > 0)[..., None], maxvals


def keypoints_in_pixels(heatmaps, image_size):
  """The evaluators' decoding: ``argmax_2d`` times the stride image_size / H, the inverse of the targets' centre
  ``int(x / stride + 0.5)`` (tllib's PCK decoding; mmpose's without its quarter-pixel shift).

  Returns (xy (..., K, 2) in input pixels, confidence (..., K): each map's maximum) of heatmaps (..., H, W, K).
  """
  xy, confidence = argmax_2d(heatmaps)
  return xy * (image_size / heatmaps.shape[-2]), confidence


def soft_argmax(heatmaps, temperature, relative=False):
  """Differentiable argmax of (..., H, W, K) maps (the soft-argmax of integral pose regression, Sun et al., ECCV
  2018; the geometric reconstruction's seed paper gives no code, README "Keypoints from heatmaps").

  Returns the expected (x, y) pixel index (..., K, 2) under p = softmax over the H * W pixels of
  heatmap / temperature; x = column, y = row, as ``argmax_2d``. ``relative=True`` also divides each map by its
  maximum (a constant under differentiation; 1 where the maximum is <= 0), so that a peak of any height is
  sharpened as a peak of 1 is: a lower peak with an absolute temperature lets the flat background pull the result
  towards the middle of the map.
  """
  *batch, height, width, k = heatmaps.shape
  flat = jnp.moveaxis(heatmaps.astype(jnp.float32), -1, -3).reshape(*batch, k, height * width)
  if relative:
    peak = jax.lax.stop_gradient(jnp.max(flat, axis=-1, keepdims=True))
    temperature = temperature * jnp.where(peak > 0, peak, 1.0)
  logits = flat / temperature
  p = jax.nn.softmax(logits, axis=-1).reshape(*batch, k, height, width)
  x = jnp.sum(jnp.sum(p, axis=-2) * jnp.arange(width, dtype=jnp.float32), axis=-1)
  y = jnp.sum(jnp.sum(p, axis=-1) * jnp.arange(height, dtype=jnp.float32), axis=-1)
  return jnp.stack([x, y], axis=-1)


def soft_argmax_temperature(sigma=2.0, heatmap_size=64, mass=0.9):
  """Returns the largest temperature at which ``soft_argmax`` puts ``mass`` of its softmax within 1 px of the peak
  (the peak and its 4 neighbours) for an ideal target: the reference window Gaussian of ``sigma``, peak 1,
  centred on a pixel of a ``heatmap_size`` map, zero elsewhere (so the background's mass is included).

  The mass decreases monotonically with the temperature; it is found by bisection on a log scale.
  """
  centre = heatmap_size // 2
  target = keypoints.window_gaussians(np.array([[centre, centre]], np.float32), np.array([True]), heatmap_size,
                                      heatmap_size, sigma, xp=np)  # numpy: a constant, also when called under jit
  target = np.asarray(target[..., 0], np.float64)
  near = np.zeros_like(target, bool)
  near[centre, centre - 1:centre + 2] = near[centre - 1:centre + 2, centre] = True

  def near_mass(t):
    p = np.exp((target - 1.0) / t)
    return p[near].sum() / p.sum()

  low, high = 1e-4, 1e2
  if not near_mass(high) < mass < near_mass(low):
    raise ValueError(f"mass must lie in ({near_mass(high):.4f}, {near_mass(low):.4f}), got {mass}")
  for _ in range(60):
    middle = np.sqrt(low * high)
    low, high = (middle, high) if near_mass(middle) > mass else (low, middle)
  return float(low)


def heatmap_keypoints(config, heatmaps):
  """The geometric reconstruction's keypoints: ``soft_argmax(relative=True)`` at
  ``soft_argmax_temperature(config.sigma, config.heatmap_size)`` (differentiable).

  Returns (B, K, 2) keypoints of (B, H, W, K) heatmaps, normalised as the generator's
  (``pixels_to_normalised`` of the heatmap pixels).
  """
  temperature = soft_argmax_temperature(config.sigma, config.heatmap_size)
  xy = soft_argmax(heatmaps, temperature, relative=True)
  return pixels_to_normalised(xy, config.heatmap_size, config.heatmap_size)


def pseudo_labels(heatmaps, sigma=2.0, fast=False):
  """RegDA's ground-truth / ground-false generator on (..., H, W, K) predictions.

  ground truth: the reference window Gaussian (peak 1) at each map's ``argmax_2d``, (0, 0) where the maximum is
  <= 0 (``PseudoLabelGenerator2d``). ``fast=True`` is ``FastPseudoLabelGenerator2d``: the full-grid Gaussian at
  the raw argmax, values <= 0.01 zeroed (a disc) and no max <= 0 rule.
  ground false for keypoint k: clip(sum of the other keypoints' ground truths, 0, 1).
  Inputs are treated as constants (the reference detaches them).

  Returns (ground truth, ground false), both (..., H, W, K).
  """
  heatmaps = jax.lax.stop_gradient(heatmaps)
  *batch, height, width, _ = heatmaps.shape
  if fast:
    centers, _ = _argmax_cells(heatmaps)
    u = jnp.arange(width, dtype=jnp.float32)
    v = jnp.arange(height, dtype=jnp.float32)
    d2 = ((u[None, :, None] - centers[..., None, None, :, 0]) ** 2
          + (v[:, None, None] - centers[..., None, None, :, 1]) ** 2)
    g = jnp.exp(-d2 / (2 * sigma**2))
    ground_truth = jnp.where(g > 1e-2, g, 0.0)
  else:
    centers, _ = argmax_2d(heatmaps)
    draw = jnp.ones(centers.shape[:-1], bool)
    render = lambda c, d: keypoints.window_gaussians(c, d, height, width, sigma)
    for _ in batch:
      render = jax.vmap(render)
    ground_truth = render(centers, draw)
  total = jnp.sum(ground_truth, axis=-1, keepdims=True)
  ground_false = jnp.clip(total - ground_truth, 0.0, 1.0)
  return ground_truth, ground_false
