"""Heatmap rendering and decoding, as the reference (tllib) computes them.

Conventions: heatmaps are channels-last ``(..., H, W, K)``; keypoints are ``(..., K, 2)`` as (x, y).
All functions but the config-time ``soft_argmax_temperature`` (NumPy) are pure jnp and work under
``jit``/``vmap``.
"""

import jax
import jax.numpy as jnp
import numpy as np


def _window_gaussians(centers, draw, height, width, sigma, xp=jnp):
  """Unnormalised Gaussians with peak 1 at integer ``centers`` (K, 2), cut to the reference window.

  The reference writes a ``2*tmp+1`` patch (tmp = 3 sigma) whose top-left corner is
  ``int(mu - tmp)`` (truncation toward zero) and whose centre is at patch offset ``size // 2``; for
  sigma = 2 that is the 13x13 square |u - x| <= 6, |v - y| <= 6. Rows with ``draw == False`` stay zero.
  ``xp``: jax.numpy, or numpy for a constant computed on the host.
  """
  tmp = 3.0 * sigma
  size = xp.ceil(2 * tmp + 1)
  offset = xp.floor((2 * tmp + 1) / 2)
  upper_left = xp.trunc(centers - tmp)
  bottom_right = xp.trunc(centers + tmp + 1)

  def axis_profile(length, c):  # (length, K) 1-D factor along one axis
    pos = xp.arange(length, dtype=xp.float32)[:, None]
    rel = pos - upper_left[:, c]
    inside = (pos >= upper_left[:, c]) & (pos < bottom_right[:, c]) & (rel < size)
    return xp.where(inside, xp.exp(-((rel - offset) ** 2) / (2 * sigma**2)), 0.0)

  gx = axis_profile(width, 0)
  gy = axis_profile(height, 1)
  # exp(a + b) = exp(a) exp(b): the separable product equals the reference's 2-D exp up to rounding.
  return gy[:, None, :] * gx[None, :, :] * draw.astype(xp.float32)


def gaussian_targets(keypoints, visible, image_size=256, heatmap_size=64, sigma=2.0):
  """Reference ``generate_target``: heatmaps (H, W, K) and weights (K,) for one sample.

  mu = int(x / stride + 0.5) with Python's truncation toward zero, so keypoints up to ~1.5 heatmap
  pixels left of / above the grid still land in column / row 0 with weight 1. A centre outside the
  grid gives weight 0; otherwise the weight is ``visible`` and the map is drawn only if visible > 0.5.
  """
  stride = jnp.asarray(image_size, jnp.float32) / heatmap_size
  centers = jnp.trunc(keypoints.astype(jnp.float32) / stride + 0.5)
  in_grid = jnp.all((centers >= 0) & (centers < heatmap_size), axis=-1)
  weights = jnp.where(in_grid, visible.astype(jnp.float32), 0.0)
  heatmaps = _window_gaussians(centers, in_grid & (visible > 0.5), heatmap_size, heatmap_size, sigma)
  return heatmaps, weights


def argmax_2d(heatmaps):
  """Integer argmax of each map: (xy (..., K, 2) float32, maxvals (..., K)); (0, 0) where max <= 0."""
  *batch, height, width, k = heatmaps.shape
  flat = jnp.moveaxis(heatmaps, -1, -3).reshape(*batch, k, height * width)
  index = jnp.argmax(flat, axis=-1)
  maxvals = jnp.max(flat, axis=-1)
  xy = jnp.stack([index % width, index // width], axis=-1).astype(jnp.float32)
  return xy * (maxvals > 0)[..., None], maxvals


def pseudo_labels(heatmaps, sigma=2.0, fast=False):
  """RegDA's ground-truth / ground-false generator on (..., H, W, K) predictions.

  ground truth: the reference window Gaussian (peak 1) at each map's hard argmax, (0, 0) where the
  maximum is <= 0 (``PseudoLabelGenerator2d``). ``fast=True`` is ``FastPseudoLabelGenerator2d``: the
  full-grid Gaussian at the raw argmax, values <= 0.01 zeroed (a disc) and no max <= 0 rule.
  ground false for keypoint k: clip(sum of the other keypoints' ground truths, 0, 1).
  Inputs are treated as constants (the reference detaches them).
  """
  heatmaps = jax.lax.stop_gradient(heatmaps)
  *batch, height, width, k = heatmaps.shape
  if fast:
    flat = jnp.moveaxis(heatmaps, -1, -3).reshape(*batch, k, height * width)
    index = jnp.argmax(flat, axis=-1)
    centers = jnp.stack([index % width, index // width], axis=-1).astype(jnp.float32)
    u = jnp.arange(width, dtype=jnp.float32)
    v = jnp.arange(height, dtype=jnp.float32)
    d2 = ((u[None, :, None] - centers[..., None, None, :, 0]) ** 2
          + (v[:, None, None] - centers[..., None, None, :, 1]) ** 2)
    g = jnp.exp(-d2 / (2 * sigma**2))
    ground_truth = jnp.where(g > 1e-2, g, 0.0)
  else:
    centers, _ = argmax_2d(heatmaps)
    draw = jnp.ones(centers.shape[:-1], bool)
    render = lambda c, d: _window_gaussians(c, d, height, width, sigma)
    for _ in batch:
      render = jax.vmap(render)
    ground_truth = render(centers, draw)
  total = jnp.sum(ground_truth, axis=-1, keepdims=True)
  ground_false = jnp.clip(total - ground_truth, 0.0, 1.0)
  return ground_truth, ground_false


def soft_argmax(heatmaps, temperature, relative=False):
  """Differentiable argmax of (..., H, W, K) maps: the expected (x, y) pixel index (..., K, 2) under
  p = softmax over the H * W pixels of heatmap / temperature; x = column, y = row, as ``argmax_2d``.

  ``relative=True`` also divides each map by its maximum (a constant under differentiation; 1 where the maximum
  is <= 0), so that a peak of any height is sharpened as a peak of 1 is: a lower peak with an absolute
  temperature lets the flat background pull the result towards the middle of the map.
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
  """The largest temperature at which ``soft_argmax`` puts ``mass`` of its softmax within 1 px of the peak
  (the peak and its 4 neighbours) for an ideal target: the reference window Gaussian of ``sigma``, peak 1,
  centred on a pixel of a ``heatmap_size`` map, zero elsewhere (so the background's mass is included).

  The mass decreases monotonically with the temperature; it is found by bisection on a log scale.
  """
  centre = heatmap_size // 2
  target = _window_gaussians(np.array([[centre, centre]], np.float32), np.array([True]), heatmap_size, heatmap_size,
                             sigma, xp=np)  # numpy: a constant, also when called under jit
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


def heatmap_targets(config, batch):
  """Reference Gaussian targets (B, H, W, K) and weights (B, K) of a batch, rendered on the device."""
  render = lambda kp, vis: gaussian_targets(
      kp, vis, image_size=config.image_size, heatmap_size=config.heatmap_size, sigma=config.sigma)
  return jax.vmap(render)(batch["keypoints"], batch["visible"])
