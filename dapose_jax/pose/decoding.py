"""Heatmap decoding: every way the package turns heatmaps into keypoint coordinates (and confidences).

Conventions as ``keypoints``' targets: heatmaps are channels-last ``(..., H, W, K)``; keypoints are ``(..., K, 2)``
as (x, y), x the column and y the row.

- ``argmax_2d``: the integer argmax in heatmap cells and each map's maximum (tllib ``get_max_preds``): the reference
  PCK, the mean teacher's and the geometric method's peaks.
- ``keypoints_in_cells`` by a named decoder of ``config.defaults.DECODERS``: ``argmax`` (``argmax_2d``: tllib's,
  the reference PCK), ``quarter`` (mmpose's default: a quarter cell toward the higher neighbour) or ``dark`` (DARK,
  Zhang et al., CVPR 2020: a Newton step on the Gaussian-smoothed log-heatmap); ``keypoints_in_pixels``: the same
  times the stride, in input pixels (the coordinate evaluators, ``predict``).
- ``soft_argmax`` at ``soft_argmax_temperature``, and ``heatmap_keypoints`` (its relative form, normalised as the
  reconstruction generator's keypoints): the differentiable keypoints of the geometric reconstruction.
- ``pixels_to_normalised`` / ``normalised_to_pixels``: pixel indices of a map <-> [-1, 1] coordinates (the
  reconstruction generator's keypoints and motion fields).
- ``pseudo_labels``: RegDA's pseudo-labels, the reference targets rendered back at ``argmax_2d``'s keypoints.

All functions but the config-time ``soft_argmax_temperature`` (NumPy) are pure jnp and work under ``jit``/``vmap``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dapose_jax import errors
from dapose_jax.config import defaults
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


def keypoints_in_cells(heatmaps, decoder="argmax", sigma=2.0):
  """Keypoints of (..., H, W, K) heatmaps in heatmap cells by ``decoder`` (one of ``config.defaults.DECODERS``), and
  each map's maximum as its confidence. All three start from ``argmax_2d`` (a map whose maximum is <= 0 stays at
  (0, 0)):

  - ``argmax``: the integer argmax, unrefined (tllib; a perfect heatmap is up to half a cell off per axis).
  - ``quarter`` (mmpose 1.x ``refine_keypoints``): each coordinate moves a quarter cell toward the higher of its
    two neighbours along that axis (none where they are equal); x only where 1 < x < W - 1, y only where
    1 < y < H - 1 (mmpose's bounds, which leave column and row 1 unrefined too).
  - ``dark`` (mmpose 1.x ``refine_keypoints_dark``): each map is blurred by a Gaussian of kernel size
    ``dark_kernel_size(sigma)`` (11 for sigma 2, mmpose's) and standard deviation 0.3 ((size - 1) / 2 - 1) + 0.8
    (OpenCV's for that size) with zeros outside the map, rescaled to its maximum before the blur, clipped at
    1e-10 and logged; the keypoint moves by -H^-1 g, g and H the central-difference gradient and Hessian of the
    log-map at the argmax (steps of one cell, the second derivatives over two), where 1 < x < W - 2,
    1 < y < H - 2 and det H != 0. ``sigma`` is the targets' (``config.sigma``): on a Gaussian heatmap the
    log-map is a paraboloid, whose vertex the step finds.
  """
  check_decoder(decoder)
  xy, confidence = argmax_2d(heatmaps)
  if decoder == "quarter":
    return xy + _quarter_offsets(heatmaps, xy), confidence
  if decoder == "dark":
    return xy + _dark_offsets(heatmaps, xy, dark_kernel_size(sigma)), confidence
  return xy, confidence


def check_decoder(decoder):
  """A ConfigError naming the choices unless ``decoder`` is one of ``config.defaults.DECODERS``."""
  if decoder not in defaults.DECODERS:
    raise errors.ConfigError(f"decoding={decoder!r}; choose one of {', '.join(defaults.DECODERS)}")


def keypoints_in_pixels(heatmaps, image_size, decoder="argmax", sigma=2.0):
  """``keypoints_in_cells`` times the stride image_size / H, in input pixels: the coordinate evaluators' and
  ``predict``'s decoding. With ``argmax`` it inverts the targets' centre ``int(x / stride + 0.5)`` as tllib's PCK
  decodes; mmpose scales its refined cells by the same stride.

  Returns (xy (..., K, 2) in input pixels, confidence (..., K): each map's maximum).
  """
  xy, confidence = keypoints_in_cells(heatmaps, decoder, sigma)
  return xy * (image_size / heatmaps.shape[-2]), confidence


def dark_kernel_size(sigma):
  """The blur kernel that ``dark`` uses for targets of ``sigma``: 6 sigma - 1, odd (mmpose's 11 for 2, 17 for 3)."""
  return max(2 * int(round(3 * sigma)) - 1, 3)


def _sample(maps, x, y):
  """maps (..., H, W, K) at the integer cells (x, y) of shape (..., K), clipped into the map."""
  *batch, height, width, k = maps.shape
  flat = jnp.moveaxis(maps, -1, -3).reshape(*batch, k, height * width)
  index = jnp.clip(y, 0, height - 1) * width + jnp.clip(x, 0, width - 1)
  return jnp.take_along_axis(flat, index[..., None], axis=-1)[..., 0]


def _quarter_offsets(heatmaps, xy):
  height, width = heatmaps.shape[-3:-1]
  x, y = xy[..., 0].astype(jnp.int32), xy[..., 1].astype(jnp.int32)
  at = functools.partial(_sample, heatmaps.astype(jnp.float32))
  dx = jnp.where((1 < x) & (x < width - 1) & (0 < y) & (y < height), at(x + 1, y) - at(x - 1, y), 0.0)
  dy = jnp.where((1 < y) & (y < height - 1) & (0 < x) & (x < width), at(x, y + 1) - at(x, y - 1), 0.0)
  return 0.25 * jnp.sign(jnp.stack([dx, dy], axis=-1))


def _gaussian_blur(heatmaps, size):
  """Each (..., H, W, K) map convolved with a ``size`` x ``size`` Gaussian (OpenCV's standard deviation for that
  size), zeros outside the map, then rescaled to the map's own maximum."""
  std = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
  taps = np.exp(-np.arange(-(size // 2), size // 2 + 1) ** 2 / (2 * std * std))
  taps = jnp.asarray(taps / taps.sum(), jnp.float32)
  *batch, height, width, k = heatmaps.shape
  maps = jnp.moveaxis(heatmaps.reshape(-1, height, width, k), -1, 1).reshape(-1, height, width, 1)
  pad = size // 2
  for kernel, padding in ((taps[:, None, None, None], ((pad, pad), (0, 0))),
                          (taps[None, :, None, None], ((0, 0), (pad, pad)))):
    maps = jax.lax.conv_general_dilated(maps, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  maps = jnp.moveaxis(maps.reshape(-1, k, height, width), 1, -1).reshape(*batch, height, width, k)
  peak = jnp.max(heatmaps, axis=(-3, -2), keepdims=True)
  blurred_peak = jnp.max(maps, axis=(-3, -2), keepdims=True)
  return maps * jnp.where(blurred_peak > 0, peak / jnp.where(blurred_peak > 0, blurred_peak, 1.0), 1.0)


def _dark_offsets(heatmaps, xy, size):
  height, width = heatmaps.shape[-3:-1]
  log_maps = jnp.log(jnp.maximum(_gaussian_blur(heatmaps.astype(jnp.float32), size), 1e-10))
  x, y = xy[..., 0].astype(jnp.int32), xy[..., 1].astype(jnp.int32)
  at = lambda dx, dy: _sample(log_maps, x + dx, y + dy)
  gx, gy = 0.5 * (at(1, 0) - at(-1, 0)), 0.5 * (at(0, 1) - at(0, -1))
  hxx = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
  hyy = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
  hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
  det = hxx * hyy - hxy * hxy
  inside = (1 < x) & (x < width - 2) & (1 < y) & (y < height - 2) & (det != 0)
  det = jnp.where(inside, det, 1.0)
  offset = -jnp.stack([hyy * gx - hxy * gy, hxx * gy - hxy * gx], axis=-1) / det[..., None]
  return jnp.where(inside[..., None], offset, 0.0)


def soft_argmax(heatmaps, temperature, relative=False):
  """Differentiable argmax of (..., H, W, K) maps (the soft-argmax of integral pose regression, Sun et al., ECCV
  2018; the geometric reconstruction's seed paper gives no code, docs/geometric.md, "Keypoints from heatmaps").

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
