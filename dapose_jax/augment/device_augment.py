"""The training augmentation on the device (``config.<domain>.augment.on_device``), inside the jitted train step.

The host then only decodes and resizes (``transforms.resize_pad``) and the step turns the S x S batch into the
reference's training transform (``transforms.train_augment``), per sample:
  1. one bilinear warp (``views.to_view``) by  p' = C + z R(a) (p - C) + t:  rotation a ~ U(-rotation, rotation)
     about the centre C = (S/2, S/2), then a square crop of area fraction f ~ U(min(scale_min, 1), min(scale_max,
     1)) resized to S, i.e. zoom z = 1 / sqrt(f) and a crop position uniform over the image, t = (S/2)(z - 1) u with
     u ~ U(-1, 1)^2; the keypoints move by the same map;
  2. brightness, contrast and saturation factors U(1 - color, 1 + color) (``views.color_jitter``, fixed order);
  3. a separable Gaussian blur of sigma ~ U(0, blur), 2 ceil(3 blur) + 1 taps (7 for 0.8), edges replicated.
Visibility is left as it is, as on the host: a keypoint moved out of the image gets no heatmap and weight 0 when
the targets are rendered.

Differences from the host's PIL transform: the reference redraws a crop fraction above 1 (up to 10 draws, then
the whole image); for scale (0.6, 1.3) its law is U(0.6, 1) with probability 1 - (3/7)^10 and f = 1 with
probability (3/7)^10 = 2.1e-4 (total variation distance 2.1e-4 from U(0.6, 1), mean 0.80004 instead of 0.8).
The crop side and position are not rounded to whole pixels; the crop is taken from the resized (for other than
square images: zero-padded) S x S image, not from the decoded one; rotation and crop are one bilinear warp instead
of a nearest-neighbour rotation and a bilinear resize; the jitter's order is fixed; the blur kernel is a sampled
Gaussian instead of PIL's three box blurs.

Coordinates: keypoints are continuous (the image spans [0, S], pixel index j covers [j, j + 1)); the maps here are
in those coordinates and converted for ``views``' sampler, which works on pixel indices (centre of pixel j at j).

Randomness: the key of step N is fold_in(fold_in(key(stream seed), _STREAM), N), the stream seed being the one
of the domain's host pipeline (config.seed + its index), so a resumed run draws what an uninterrupted one drew.
With ``jax_threefry_partitionable`` (JAX's default) the draws do not depend on how the batch is sharded.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from dapose_jax import errors
from dapose_jax.augment import transforms, views

# Keeps these keys apart from the methods' fold_in(key(config.seed), step).
_STREAM = 0x61756775

# Pixel index -> continuous coordinates and back (index j is the pixel [j, j + 1)).
_TO_CONTINUOUS = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]], np.float32)
_TO_INDEX = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]], np.float32)


@dataclasses.dataclass(frozen=True)
class AugmentParams:
  """Ranges of the training augmentation (a domain's ``augment`` section)."""

  rotation: float = 30.0  # degrees, U(-rotation, rotation)
  scale_min: float = 0.6  # crop area fraction U(min(scale_min, 1), min(scale_max, 1))
  scale_max: float = 1.3
  color: float = 0.25  # brightness, contrast and saturation factors U(1 - color, 1 + color); 0: off
  blur: float = 0.8  # Gaussian sigma U(0, blur) in pixels; 0: off


def from_config(config, domain):
  """``AugmentParams`` of ``config[domain].augment`` if it augments on the device, else None."""
  section = config[domain].augment
  if not (section.enabled and section.on_device):
    return None
  key = f"config.{domain}.augment"
  if not 0 < section.scale_min <= section.scale_max:
    raise errors.ConfigError(f"{key}.scale_min={section.scale_min}, scale_max={section.scale_max}: expected "
                             "0 < scale_min <= scale_max")
  for name in ("rotation", "color", "blur"):
    if not section[name] >= 0:
      raise errors.ConfigError(f"{key}.{name}={section[name]}: expected a number >= 0")
  if section.color > 1:
    raise errors.ConfigError(f"{key}.color={section.color}: expected at most 1 (factors U(1 - color, 1 + color))")
  return AugmentParams(rotation=section.rotation, scale_min=section.scale_min, scale_max=section.scale_max,
                       color=section.color, blur=section.blur)


def step_key(stream_seed, step):
  """The key of the augmentation of training step ``step`` of the stream seeded ``stream_seed``."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(stream_seed), _STREAM), step)


def sample_matrices(rng, batch, size, params: AugmentParams):
  """(B, 3, 3) forward maps, in continuous coordinates, of random rotations + crops of ``size`` x ``size``."""
  k_rot, k_area, k_pos = jax.random.split(rng, 3)
  angle = jax.random.uniform(k_rot, (batch,), minval=-params.rotation, maxval=params.rotation)
  area = jax.random.uniform(k_area, (batch,), minval=min(params.scale_min, 1.0), maxval=min(params.scale_max, 1.0))
  zoom = 1.0 / jnp.sqrt(area)
  shift = size / 2 * (zoom - 1)[:, None] * jax.random.uniform(k_pos, (batch, 2), minval=-1.0, maxval=1.0)
  # views' angle turns clockwise on screen (y down); the host's rotation, like PIL's, counter-clockwise
  zeros = jnp.zeros_like(angle)
  return views.affine_matrices(-angle, zeros, zeros, shift, zoom, size)


def gaussian_blur(rng, images, max_sigma):
  """Per-sample separable Gaussian blur of float (B, H, W, C) images, sigma ~ U(0, max_sigma), edges replicated."""
  batch, height, width, _ = images.shape
  radius = math.ceil(3 * max_sigma)
  sigma = jax.random.uniform(rng, (batch, 1), maxval=max_sigma)
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  weights = jnp.exp(-0.5 * (taps / jnp.maximum(sigma, 1e-3)) ** 2)  # sigma 0: the centre tap alone
  weights = (weights / jnp.sum(weights, -1, keepdims=True))[:, :, None, None, None]
  padded = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
  rows = sum(weights[:, i] * padded[:, i:i + height] for i in range(2 * radius + 1))
  return sum(weights[:, i] * rows[:, :, i:i + width] for i in range(2 * radius + 1))


def augment(rng, batch, params: AugmentParams):
  """``batch`` (image (B, S, S, 3) uint8 or float on [0, 255], keypoints (B, K, 2), ...) with its images augmented
  and keypoints moved; the image keeps its dtype (uint8: rounded), other entries are passed through."""
  images = batch["image"]
  size = images.shape[1]
  if images.shape[2] != size:
    raise ValueError(f"device augmentation expects square images, got {images.shape[2]}x{size}")
  k_warp, k_color, k_blur = jax.random.split(rng, 3)
  matrices = sample_matrices(k_warp, images.shape[0], size, params)
  x = views.to_view(images.astype(jnp.float32), _TO_INDEX @ matrices @ _TO_CONTINUOUS, order=1)
  # The barriers keep each stage's images in memory: fused, XLA would recompute the warp for each pass over its
  # output (the jitter's means, every blur tap), 4 times slower on the CPU.
  if params.color > 0:
    x = views.color_jitter(k_color, jax.lax.optimization_barrier(x), params.color)
  if params.blur > 0:
    x = gaussian_blur(k_blur, jax.lax.optimization_barrier(x), params.blur)
  if images.dtype == jnp.uint8:
    x = jnp.round(jnp.clip(x, 0, 255))
  return {**batch, "image": x.astype(images.dtype), "keypoints": views.transform_points(matrices, batch["keypoints"])}


def augment_at(stream_seed, step, batch, params: AugmentParams):
  """``augment`` as the train step ``step`` of the stream seeded ``stream_seed`` augments ``batch``."""
  return augment(step_key(stream_seed, step), batch, params)


def augmented(train_step, augments):
  """``train_step(state, source, target)`` -> ``step(state, source, target, step)`` that first augments the source
  and target batches; ``augments``: (stream seed, ``AugmentParams`` or None: as it comes) of each."""

  def step_fn(state, source, target, step):
    batches = tuple(batch if params is None else augment_at(seed, step, batch, params)
                    for batch, (seed, params) in zip((source, target), augments))
    return train_step(state, *batches)

  return step_fn


def normalize(images):
  """uint8 RGB -> ImageNet-normalised float32, on the device: the networks' input."""
  return (images.astype(jax.numpy.float32) / 255.0 - transforms.IMAGENET_MEAN) / transforms.IMAGENET_STD
