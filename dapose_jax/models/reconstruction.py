"""Geometric reconstruction (issue 15, after FOMM, Siarohin et al. 2019): a driving image drawn from a base image
and the keypoints of both.

* ``WarpingEstimator`` (W) turns (base image, base keypoints, driving keypoints) into a soft partition of the
  driving frame into K keypoint regions and a background (``mask``) and an occlusion map C in [0, 1].
* ``region_motion`` turns the mask and the keypoint displacements into the dense backward field D^{drv<-b}.
* ``Generator`` (G, Johnson et al. 2016) encodes the base image, warps its features by D, multiplies them by C
  and decodes the driving image.

Coordinates: keypoints and fields are normalised (x, y), u = 2 x / W - 1 and v = 2 y / H - 1 for pixel indices
(x = column, y = row) of a W x H map, so pixel (0, 0) is (-1, -1). Pixel x of a map s times smaller has the
normalised coordinate of pixel s x of the larger one, the repository's "heatmap pixel = image pixel / stride".
Images are RGB in [0, 1], channels last.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from dapose_jax.models import resnet
from dapose_jax.pose import decoding

Dtype = resnet.Dtype


def identity_grid(height, width):
  """(H, W, 2): the normalised coordinates of each pixel, the field of no motion."""
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij")
  return decoding.pixels_to_normalised(jnp.stack([xs, ys], -1), height, width)


def region_motion(kp_base, kp_driving, mask):
  """FOMM's dense motion at order zero: each region moves with its keypoint (a translation, no Jacobians).

  kp_base, kp_driving: (B, K, 2) normalised; mask: (B, H, W, K + 1), regions 0..K-1 for the keypoints and K
  for the background, summing to 1 per pixel. Returns the backward field D (B, H, W, 2): for each driving pixel
  q the normalised position in the base image to sample,
      D(q) = sum_k M_k(q) (q + kp_base_k - kp_driving_k) + M_bg(q) q = q + sum_k M_k(q) (kp_base_k - kp_driving_k),
  computed in the second form, so that equal keypoints give exactly the identity for any mask.
  """
  _, height, width, regions = mask.shape
  if regions != kp_base.shape[1] + 1:
    raise ValueError(f"mask has {regions} regions, expected {kp_base.shape[1]} keypoints + 1 background")
  shift = jnp.einsum("bhwk,bkc->bhwc", mask[..., :-1].astype(jnp.float32), kp_base - kp_driving)
  return identity_grid(height, width) + shift


def warp(features, field):
  """Bilinear sampling of (B, H, W, C) ``features`` at the normalised positions ``field`` (B, H', W', 2), zero
  outside the map (PyTorch grid_sample's "zeros" padding, as FOMM); differentiable in both arguments."""
  height, width = features.shape[1:3]

  def one(feature_map, positions):
    xy = decoding.normalised_to_pixels(positions, height, width)
    channel = lambda c: jax.scipy.ndimage.map_coordinates(c, [xy[..., 1], xy[..., 0]], order=1, mode="constant",
                                                          cval=0.0)
    return jax.vmap(channel, in_axes=-1, out_axes=-1)(feature_map)

  return jax.vmap(one)(features, field)


def resize(maps, height, width):
  """(B, h, w, C) -> (B, height, width, C), linear with antialiasing; convex weights, so a mask keeps summing to
  1 and values in [0, 1] stay there."""
  if maps.shape[1:3] == (height, width):
    return maps
  return jax.image.resize(maps, (maps.shape[0], height, width, maps.shape[-1]), "linear")


def keypoint_heatmaps(kp, height, width, variance):
  """(B, H, W, K) FOMM Gaussians exp(-|q - kp_k|^2 / (2 variance)) in normalised coordinates."""
  d = identity_grid(height, width)[None, :, :, None, :] - kp[:, None, None, :, :]
  return jnp.exp(-0.5 * jnp.sum(d**2, -1) / variance)


class ConvBNReLU(nn.Module):
  """Square conv (no bias, zero padding kernel_size // 2) -> BatchNorm -> ReLU."""
  features: int
  kernel_size: int = 3
  strides: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = resnet.Conv(self.features, self.kernel_size, self.strides, self.kernel_size // 2, dtype=self.dtype)(x)
    x = resnet.BatchNorm(use_running_average=not train, dtype=self.dtype)(x)
    return nn.relu(x)


class UpBlock(nn.Module):
  """Nearest 2x upsampling -> conv3x3 -> BN -> ReLU (FOMM's UpBlock2d)."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    n, h, w, c = x.shape
    x = jax.image.resize(x, (n, 2 * h, 2 * w, c), "nearest")
    return ConvBNReLU(self.features, dtype=self.dtype)(x, train)


class Hourglass(nn.Module):
  """FOMM's hourglass: ``num_blocks`` down blocks [conv3x3, BN, ReLU, 2x2 average pool] of widths
  min(max_features, features * 2^(i+1)), then as many ``UpBlock``s of widths min(max_features, features * 2^i),
  each followed by concatenating the encoder activation of the same resolution (the input last). Output width
  features + the input's; H and W must be multiples of 2^num_blocks."""
  features: int = 64
  max_features: int = 1024
  num_blocks: int = 5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    channels = lambda i: min(self.max_features, self.features * 2**i)
    skips = [x]
    for i in range(self.num_blocks):
      x = ConvBNReLU(channels(i + 1), dtype=self.dtype, name=f"down{i}")(x, train)
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
      skips.append(x)
    skips.pop()
    for i in reversed(range(self.num_blocks)):
      x = UpBlock(channels(i), self.dtype, name=f"up{i}")(x, train)
      x = jnp.concatenate([x, skips.pop().astype(x.dtype)], -1)
    return x


class WarpingEstimator(nn.Module):
  """W: FOMM's dense-motion network at order zero.

  Input at ``scale`` x the image size (``resize``): per keypoint k, the difference of Gaussians (variance
  ``heatmap_variance``, normalised units) at the driving and the base keypoint and the base image translated by
  kp_base_k - kp_driving_k (``warp``); for the background a zero map and the base image: 4 (K + 1) channels.
  After the ``Hourglass`` two 7x7 convs give the mask (softmax over K + 1 regions, background last) and the
  occlusion map (sigmoid), both float32 at the input's resolution.
  """
  features: int = 64
  max_features: int = 1024
  num_blocks: int = 5
  scale: float = 0.25
  heatmap_variance: float = 0.01
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, base_image, kp_base, kp_driving, train: bool):
    n, image_height, image_width, _ = base_image.shape
    height, width = round(image_height * self.scale), round(image_width * self.scale)
    multiple = 2**self.num_blocks
    whole = (height, width) == (image_height * self.scale, image_width * self.scale)
    if not whole or height % multiple or width % multiple:
      raise ValueError(f"image {image_height}x{image_width} at scale {self.scale} must give a whole multiple of "
                       f"{multiple} pixels per side (num_blocks={self.num_blocks})")
    base = resize(base_image.astype(jnp.float32), height, width)
    heatmaps = (keypoint_heatmaps(kp_driving, height, width, self.heatmap_variance)
                - keypoint_heatmaps(kp_base, height, width, self.heatmap_variance))
    shifts = identity_grid(height, width) + (kp_base - kp_driving)[:, :, None, None, :]  # (B, K, h, w, 2)
    translated = jax.vmap(warp, in_axes=(None, 1), out_axes=3)(base, shifts)  # (B, h, w, K, 3)
    regions = jnp.concatenate([
        jnp.concatenate([heatmaps, jnp.zeros((n, height, width, 1))], -1)[..., None],
        jnp.concatenate([translated, base[..., None, :]], -2)], -1)  # (B, h, w, K + 1, 4)
    x = Hourglass(self.features, self.max_features, self.num_blocks, self.dtype, name="hourglass")(
        regions.reshape(n, height, width, -1).astype(self.dtype), train)
    head = functools.partial(resnet.Conv, kernel_size=7, padding=3, use_bias=True, dtype=self.dtype)
    mask = jax.nn.softmax(head(kp_base.shape[1] + 1, name="mask")(x).astype(jnp.float32), axis=-1)
    occlusion = jax.nn.sigmoid(head(1, name="occlusion")(x).astype(jnp.float32))
    return mask, occlusion


class ResidualBlock(nn.Module):
  """Johnson's residual block: x + BN(conv3x3(ReLU(BN(conv3x3(x)))))."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    y = ConvBNReLU(x.shape[-1], dtype=self.dtype)(x, train)
    y = resnet.Conv(x.shape[-1], 3, padding=1, dtype=self.dtype)(y)
    return x + resnet.BatchNorm(use_running_average=not train, dtype=self.dtype)(y)


class Generator(nn.Module):
  """G: Johnson's image transformation network with FOMM's deformation between encoder and residual blocks.

  7x7 ConvBNReLU (``features``), two stride-2 3x3 ConvBNReLU (2x and 4x ``features``, capped at
  ``max_features``), then the features are warped by D and multiplied by C at their 1/4 resolution,
  ``num_residual_blocks`` residual blocks, two ``UpBlock``s (2x, 1x ``features``) and a 7x7 conv to RGB with a
  sigmoid: the image in [0, 1], float32. D is evaluated by ``region_motion`` on the mask resized to the feature
  resolution (not by resizing D), so equal keypoints leave the features exactly in place. H and W: multiples
  of 4.
  """
  features: int = 64
  max_features: int = 512
  num_residual_blocks: int = 6
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, base_image, kp_base, kp_driving, mask, occlusion, train: bool):
    if base_image.shape[1] % 4 or base_image.shape[2] % 4:
      raise ValueError(f"image sides must be multiples of 4, got {base_image.shape[1:3]}")
    channels = lambda i: min(self.max_features, self.features * 2**i)
    x = ConvBNReLU(channels(0), 7, dtype=self.dtype, name="stem")(base_image.astype(self.dtype), train)
    for i in range(2):
      x = ConvBNReLU(channels(i + 1), 3, strides=2, dtype=self.dtype, name=f"down{i}")(x, train)
    height, width = x.shape[1:3]
    field = region_motion(kp_base, kp_driving, resize(mask, height, width))
    x = warp(x, field) * resize(occlusion, height, width).astype(x.dtype)
    for i in range(self.num_residual_blocks):
      x = ResidualBlock(self.dtype, name=f"residual{i}")(x, train)
    for i in range(2):
      x = UpBlock(channels(1 - i), self.dtype, name=f"up{i}")(x, train)
    x = resnet.Conv(3, 7, padding=3, use_bias=True, dtype=self.dtype, name="to_rgb")(x)
    return jax.nn.sigmoid(x.astype(jnp.float32))


class Reconstructor(nn.Module):
  """W and G together: (base image, base keypoints, driving keypoints) -> the reconstructed driving image.

  Returns a dict of float32 arrays: ``image`` (B, H, W, 3) in [0, 1]; at W's resolution (``warping_scale`` x
  the image's) ``mask`` (B, h, w, K + 1), ``occlusion`` (B, h, w, 1), ``field`` D (B, h, w, 2) and
  ``warped_base``, the downscaled base image warped by D (for pictures).
  """
  warping_features: int = 64
  warping_max_features: int = 1024
  warping_blocks: int = 5
  warping_scale: float = 0.25
  heatmap_variance: float = 0.01
  generator_features: int = 64
  generator_max_features: int = 512
  generator_residual_blocks: int = 6
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, base_image, kp_base, kp_driving, train: bool):
    mask, occlusion = WarpingEstimator(self.warping_features, self.warping_max_features, self.warping_blocks,
                                       self.warping_scale, self.heatmap_variance, self.dtype, name="warping")(
                                           base_image, kp_base, kp_driving, train)
    image = Generator(self.generator_features, self.generator_max_features, self.generator_residual_blocks,
                      self.dtype, name="generator")(base_image, kp_base, kp_driving, mask, occlusion, train)
    field = region_motion(kp_base, kp_driving, mask)
    warped_base = warp(resize(base_image.astype(jnp.float32), *mask.shape[1:3]), field)
    return {"image": image, "mask": mask, "occlusion": occlusion, "field": field, "warped_base": warped_base}
