"""UDAPE's AdaIN style network (``Style_net.py``, after Huang & Belongie's AdaIN) on NHWC tensors.

``depth`` < 4 (a CPU-demo option, not in the reference) stops the encoder at relu{depth}_1 and starts the
decoder at the mirror of that layer.

* ``VggEncoder``: the AdaIN ``vgg_normalised`` net truncated after relu4_1 (its first 31 layers): a 1x1
  conv 3->3, then reflection-padded 3x3 convs with ReLU and 2x2 max-pools (ceil mode); returns
  (relu1_1, relu2_1, relu3_1, relu4_1), relu4_1 at 1/8 of the input size.
* ``Decoder``: its mirror, reflection pad + 3x3 conv + ReLU with nearest x2 upsampling, 512 -> 3
  channels, no ReLU after the last conv.
* ``stylise``: decoder(alpha * AdaIN(f_c, f_s) + (1 - alpha) * f_c), on ImageNet-normalised images.

Flax conv modules are named after their index in the PyTorch ``nn.Sequential`` (``ENCODER_CONVS``,
``DECODER_CONVS``), so the released state dicts map one to one (``dapose_jax.interop.adain``). Style
parameters are ``{"encoder": params, "decoder": params}`` (the contents of each module's "params" collection).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dapose_jax.augment.transforms import IMAGENET_MEAN, IMAGENET_STD
from dapose_jax.interop.adain import DECODER_CONVS, ENCODER_CONVS

ENCODER_POOL_AFTER = (5, 12, 25)  # convs followed by a max-pool (Sequential indices 7, 14, 27)
ENCODER_FEATURES = {2: "relu1_1", 9: "relu2_1", 16: "relu3_1", 29: "relu4_1"}
DECODER_UPSAMPLE_AFTER = (1, 14, 21)  # convs followed by nearest x2 upsampling (indices 3, 16, 23)
DECODER_START = {4: 1, 3: 14, 2: 21, 1: 25}  # first decoder conv for features relu{depth}_1
FEATURE_CHANNELS = {4: 512, 3: 256, 2: 128, 1: 64}  # channels of relu{depth}_1 at width 1

# He-normal: keeps the activation scale through the ReLU stack, also for an untrained, frozen encoder.
_KERNEL_INIT = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def channels(reference, width):
  """A reference channel count scaled by ``width`` (at least 1)."""
  return max(1, int(round(reference * width)))


def reflect_pad(x, pad=1):
  """ReflectionPad2d(pad) on NHWC: mirrors without repeating the edge pixel."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def _max_pool_ceil(x):
  """MaxPool2d(2, 2, ceil_mode=True): an odd trailing row/column is pooled on its own."""
  pad = ((0, x.shape[1] % 2), (0, x.shape[2] % 2))
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding=pad)


def _upsample_nearest(x):
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class VggEncoder(nn.Module):
  """vgg_normalised up to relu{depth}_1; ``width`` scales every channel count but the 3 of the 1x1 conv."""
  width: float = 1.0
  depth: int = 4

  @nn.compact
  def __call__(self, x):
    features = []
    for index, out in ENCODER_CONVS.items():
      if index == 0:  # the 1x1 "preprocessing" conv, no padding, no ReLU
        x = nn.Conv(3, (1, 1), kernel_init=_KERNEL_INIT, name="conv0")(x)
        continue
      x = nn.Conv(channels(out, self.width), (3, 3), padding="VALID", kernel_init=_KERNEL_INIT,
                  name=f"conv{index}")(reflect_pad(x))
      x = nn.relu(x)
      if index in ENCODER_FEATURES:
        features.append(x)
        if len(features) == self.depth:
          break
      if index in ENCODER_POOL_AFTER:
        x = _max_pool_ceil(x)
    return tuple(features)


class Decoder(nn.Module):
  """The mirror of ``VggEncoder``: relu{depth}_1 features -> 3-channel image (8x larger for depth 4)."""
  width: float = 1.0
  depth: int = 4

  @nn.compact
  def __call__(self, x):
    last = max(DECODER_CONVS)
    for index, out in DECODER_CONVS.items():
      if index < DECODER_START[self.depth]:
        continue
      out = 3 if index == last else channels(out, self.width)
      x = nn.Conv(out, (3, 3), padding="VALID", kernel_init=_KERNEL_INIT, name=f"conv{index}")(reflect_pad(x))
      if index != last:
        x = nn.relu(x)
      if index in DECODER_UPSAMPLE_AFTER:
        x = _upsample_nearest(x)
    return x


def init_style_params(rng, width=1.0, image_size=32, depth=4):
  """Randomly initialised {"encoder": ..., "decoder": ...} (parameter shapes do not depend on image_size)."""
  enc_rng, dec_rng = jax.random.split(rng)
  images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  encoder = VggEncoder(width, depth).init(enc_rng, images)["params"]
  side = -(-image_size // 2 ** (depth - 1))
  features = jnp.zeros((1, side, side, channels(FEATURE_CHANNELS[depth], width)), jnp.float32)
  decoder = Decoder(width, depth).init(dec_rng, features)["params"]
  return {"encoder": encoder, "decoder": decoder}


def encode(encoder_params, images, width=1.0, depth=4):
  """(relu1_1, relu2_1, relu3_1, relu4_1) of ImageNet-normalised NHWC images."""
  return VggEncoder(width, depth).apply({"params": encoder_params}, images)


def decode(decoder_params, features, width=1.0, depth=4):
  return Decoder(width, depth).apply({"params": decoder_params}, features)


def stylise(style_params, content, style, alpha, width=1.0, depth=4):
  """decoder(alpha * AdaIN(f_c, f_s) + (1 - alpha) * f_c) of ImageNet-normalised NHWC images.

  ``alpha`` is a scalar or one value per sample; ``style`` may differ from ``content`` in H, W. The
  result has the content's size (cropped when H or W is not a multiple of 8) and is not clipped:
  callers clip with ``clip_to_normalised_range``.
  """
  content_features = encode(style_params["encoder"], content, width, depth)[-1]
  style_features = encode(style_params["encoder"], style, width, depth)[-1]
  target = mix(content_features, adain(content_features, style_features), alpha)
  images = decode(style_params["decoder"], target, width, depth)
  return images[:, : content.shape[1], : content.shape[2]]


def gram(features):
  """Per-sample Gram matrix F^T F / (C * H * W) of NHWC features: (B, C, C)."""
  _, h, w, c = features.shape
  return jnp.einsum("bhwc,bhwd->bcd", features, features) / (c * h * w)


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

