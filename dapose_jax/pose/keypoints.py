"""Heatmap rendering: the Gaussian targets, as the reference (tllib) computes them.

Conventions: heatmaps are channels-last ``(..., H, W, K)``; keypoints are ``(..., K, 2)`` as (x, y). All functions are
pure jnp and work under ``jit``/``vmap`` (``window_gaussians`` also in NumPy). Their inverse, decoding heatmaps into
keypoints, is ``decoding``.
"""

import jax
import jax.numpy as jnp


def window_gaussians(centers, draw, height, width, sigma, xp=jnp):
  """Unnormalised Gaussians (H, W, K) with peak 1 at integer ``centers`` (K, 2), cut to the reference window.

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
  heatmaps = window_gaussians(centers, in_grid & (visible > 0.5), heatmap_size, heatmap_size, sigma)
  return heatmaps, weights


def heatmap_targets(config, batch):
  """Reference Gaussian targets (B, H, W, K) and weights (B, K) of a batch, rendered on the device."""
  render = lambda kp, vis: gaussian_targets(
      kp, vis, image_size=config.image_size, heatmap_size=config.heatmap_size, sigma=config.sigma)
  return jax.vmap(render)(batch["keypoints"], batch["visible"])
