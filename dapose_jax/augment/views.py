"""Random affine views of image batches, computed on the device, and the exact warps back to the base frame.

UDAPE draws a student view and a teacher view of the same target crop (the "base" frame), predicts on each
and compares the predictions after warping them back to the base frame. Here the views are made on the
device inside the train step, with one 3x3 matrix per sample, instead of per-sample PIL / torchvision
calls; a heatmap is warped with the same matrix rescaled by the stride.

Coordinates are pixel indices (x, y), as the reference renders its targets: a heatmap pixel is an image
pixel divided by the stride. A view's forward map is torchvision's affine about the centre C = size / 2:
    p' = C + s * M(theta, shear) (p - C) + t,
    M = [[cos(theta - sy) / cos sy, -cos(theta - sy) tan sx / cos sy - sin theta],
         [sin(theta - sy) / cos sy, -sin(theta - sy) tan sx / cos sy + cos theta]].
"""

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ViewParams:
  """Ranges of a random view (UDAPE's RandomAffineRotation + ColorJitter)."""

  rotation: float = 60.0  # degrees, U(-rotation, rotation)
  shear: float = 30.0  # degrees along x, U(-shear, shear); shear along y is 0
  translate: float = 0.05  # fraction of the side, rounded to whole pixels
  scale_min: float = 0.6
  scale_max: float = 1.3
  color: float = 0.25  # brightness, contrast and saturation factors U(1 - color, 1 + color)


def sample_matrices(rng, batch, size, params: ViewParams):
  """(B, 3, 3) forward matrices of random views of ``size`` x ``size`` images."""
  k_rot, k_shear, k_trans, k_scale = jax.random.split(rng, 4)
  angle = jax.random.uniform(k_rot, (batch,), minval=-params.rotation, maxval=params.rotation)
  shear = jax.random.uniform(k_shear, (batch,), minval=-params.shear, maxval=params.shear)
  max_shift = params.translate * size
  shift = jnp.round(jax.random.uniform(k_trans, (batch, 2), minval=-max_shift, maxval=max_shift))
  scale = jax.random.uniform(k_scale, (batch,), minval=params.scale_min, maxval=params.scale_max)
  return affine_matrices(angle, shear, jnp.zeros_like(shear), shift, scale, size)


def affine_matrices(angle, shear_x, shear_y, translate, scale, size):
  """Forward matrices (B, 3, 3) from angles and shears in degrees, translations (B, 2) and scales (B,)."""
  theta, sx, sy = (jnp.deg2rad(a) for a in (angle, shear_x, shear_y))
  m = jnp.stack([
      jnp.stack([jnp.cos(theta - sy) / jnp.cos(sy),
                 -jnp.cos(theta - sy) * jnp.tan(sx) / jnp.cos(sy) - jnp.sin(theta)], -1),
      jnp.stack([jnp.sin(theta - sy) / jnp.cos(sy),
                 -jnp.sin(theta - sy) * jnp.tan(sx) / jnp.cos(sy) + jnp.cos(theta)], -1),
  ], -2) * scale[:, None, None]
  centre = jnp.full((2,), size / 2.0)
  offset = centre - m @ centre + translate
  top = jnp.concatenate([m, offset[..., None]], -1)
  bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 1.0]), (m.shape[0], 1, 3))
  return jnp.concatenate([top, bottom], -2)


def rescale(matrices, factor):
  """The same maps in coordinates multiplied by ``factor`` (e.g. 1 / stride for heatmaps)."""
  return matrices.at[:, :2, 2].multiply(factor)


def transform_points(matrices, points):
  """Maps (B, K, 2) points with (B, 3, 3) matrices."""
  return jnp.einsum("bij,bkj->bki", matrices[:, :2, :2], points) + matrices[:, None, :2, 2]


def _sample(images, sample_matrices_, order):
  """out[q] = images[A q] for each output pixel q, with zero fill outside; nearest (0) or bilinear (1)."""
  _, height, width, _ = images.shape
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32),
                        indexing="ij")
  grid = jnp.stack([xs.ravel(), ys.ravel()], -1)

  def one(image, matrix):
    src = grid @ matrix[:2, :2].T + matrix[:2, 2]
    channel = lambda c: jax.scipy.ndimage.map_coordinates(c, [src[:, 1], src[:, 0]], order=order, mode="constant",
                                                          cval=0.0)
    return jax.vmap(channel, in_axes=-1, out_axes=-1)(image).reshape(height, width, -1)

  return jax.vmap(one)(images, sample_matrices_)


def affine_inverse(matrices):
  """The inverses of (B, 3, 3) affine maps. In a program for the CPU, LAPACK's (a library call, so every program
  computes the same inverse); elsewhere in closed form (``_closed_form_inverse``): a general inverse is a cuSOLVER
  call on a GPU, which a program compiled without the GPU cannot register."""
  return jax.lax.platform_dependent(matrices, cpu=jnp.linalg.inv, default=_closed_form_inverse)


def _closed_form_inverse(matrices):
  """[[A, t], [0, 1]]^-1 = [[A^-1, -A^-1 t], [0, 1]] with A^-1 of the 2 x 2 block from its determinant."""
  a, b, c, d = matrices[:, 0, 0], matrices[:, 0, 1], matrices[:, 1, 0], matrices[:, 1, 1]
  inverse = jnp.stack([jnp.stack([d, -b], -1), jnp.stack([-c, a], -1)], -2) / (a * d - b * c)[:, None, None]
  shift = -jnp.einsum("bij,bj->bi", inverse, matrices[:, :2, 2])
  top = jnp.concatenate([inverse, shift[:, :, None]], -1)
  return jnp.concatenate([top, jnp.broadcast_to(jnp.asarray([[0.0, 0.0, 1.0]], matrices.dtype),
                                                (matrices.shape[0], 1, 3))], 1)


def to_view(images, matrices, order=0):
  """Base-frame images or maps (B, H, W, C) -> the views that ``matrices`` define (zero fill)."""
  return _sample(images, affine_inverse(matrices), order)


def to_base(view_maps, matrices, order=0):
  """View-frame maps -> the base frame (the exact inverse of ``to_view``, zero fill where the view has no
  pixel). Differentiable with respect to ``view_maps``."""
  return _sample(view_maps, matrices, order)


def color_jitter(rng, images, strength):
  """Brightness, contrast and saturation factors U(1 - s, 1 + s) per sample on [0, 255] float images.

  torchvision applies the three in a random order; here the order is fixed.
  """
  batch = images.shape[0]
  factors = jax.random.uniform(rng, (3, batch, 1, 1, 1), minval=1 - strength, maxval=1 + strength)
  gray = lambda x: jnp.sum(x * jnp.array([0.299, 0.587, 0.114]), -1, keepdims=True)
  x = jnp.clip(images * factors[0], 0, 255)
  mean = jnp.mean(gray(x), axis=(1, 2, 3), keepdims=True)
  x = jnp.clip((x - mean) * factors[1] + mean, 0, 255)
  g = gray(x)
  return jnp.clip((x - g) * factors[2] + g, 0, 255)


def occlude(rng, images, centres, apply, half_size):
  """UDAPE's keypoint occlusion: where ``apply``, the box of half side ``half_size`` around ``centres``
  (B, 2) xy (clipped to the image) is replaced by a same-size patch from a uniformly random place of the
  same image."""
  batch, height, width, _ = images.shape
  lo = jnp.array([half_size, half_size], jnp.float32)
  hi = jnp.array([width - half_size, height - half_size], jnp.float32)
  sources = jnp.floor(jax.random.uniform(rng, (batch, 2), minval=lo, maxval=hi))
  centres = jnp.round(centres)
  ys, xs = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")

  def one(image, centre, source, on):
    dx, dy = xs - centre[0], ys - centre[1]
    inside = (jnp.abs(dx + 0.5) < half_size) & (jnp.abs(dy + 0.5) < half_size) & on
    sx = jnp.clip(source[0] + dx, 0, width - 1).astype(jnp.int32)
    sy = jnp.clip(source[1] + dy, 0, height - 1).astype(jnp.int32)
    return jnp.where(inside[..., None], image[sy, sx], image)

  return jax.vmap(one)(images, centres, sources, apply)


def flip_back(heatmaps, keypoint_set):
  """Heatmaps (..., H, W, K) of mirrored images in the frame and keypoint order of the originals: mirrored, the
  flip pairs swapped, and shifted one column right (column 0 kept), as SimpleBaseline's ``shift_heatmap``. The
  targets put a keypoint at x into column round(x / stride), its mirror S - x into W - round(x / stride), which the
  mirroring takes to column round(x / stride) - 1."""
  flipped = heatmaps[..., ::-1, :][..., jnp.asarray(keypoint_set.flip_permutation())]
  return jnp.concatenate([flipped[..., :1, :], flipped[..., :-1, :]], axis=-2)
