"""UDAPE's AdaIN style-transfer pieces (``Style_net.py``) on NHWC features; no VGG encoder/decoder."""

import jax.numpy as jnp

from dapose_jax.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def _mean_std(features, eps):
  """Per sample and channel mean and sqrt(unbiased variance + eps) over H*W (torch ``var()``: ddof=1)."""
  mean = jnp.mean(features, axis=(1, 2), keepdims=True)
  std = jnp.sqrt(jnp.var(features, axis=(1, 2), keepdims=True, ddof=1) + eps)
  return mean, std


def adain(content, style, eps=1e-5):
  """AdaIN: sigma_s * (c - mu_c) / sigma_c + mu_s per sample and channel; style may differ in H, W."""
  content_mean, content_std = _mean_std(content, eps)
  style_mean, style_std = _mean_std(style, eps)
  return style_std * (content - content_mean) / content_std + style_mean


def mix(content_features, stylised, alpha):
  """alpha * stylised + (1 - alpha) * content_features; ``alpha`` a scalar or one value per sample."""
  alpha = jnp.reshape(jnp.asarray(alpha, content_features.dtype), (-1, 1, 1, 1))
  return alpha * stylised + (1 - alpha) * content_features


def clip_to_normalised_range(images):
  """Clip ImageNet-normalised NHWC images per channel to [(0 - mean) / std, (1 - mean) / std]."""
  return jnp.clip(images, -IMAGENET_MEAN / IMAGENET_STD, (1 - IMAGENET_MEAN) / IMAGENET_STD)
