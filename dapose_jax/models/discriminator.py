"""DAML's feature discriminator (``FCDiscriminator_img``): per-pixel domain logits of upsampling features."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dapose_jax.models import resnet

# PyTorch's default Conv2d initialisation: kaiming_uniform(a=sqrt(5)) weights = U(+-1/sqrt(fan_in)).
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias(fan_in):
  bound = 1.0 / fan_in ** 0.5
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class FeatureDiscriminator(nn.Module):
  """Conv3x3(C->C) -> LReLU(0.2) -> Conv3x3(C->C/2) -> LReLU -> Conv3x3(C/2->C/2) -> LReLU -> Conv3x3(->1).

  ``features`` is C (256 in the reference); the output is (B, H, W, 1) logits.
  """

  features: int = 256

  @nn.compact
  def __call__(self, x):
    widths = (self.features, self.features // 2, self.features // 2, 1)
    for i, width in enumerate(widths):
      fan_in = 9 * x.shape[-1]
      x = resnet.Conv(width, 3, padding=1, use_bias=True, kernel_init=torch_default_kernel,
                      bias_init=torch_default_bias(fan_in), name=f"conv{i}")(x)
      if i < len(widths) - 1:
        x = nn.leaky_relu(x, 0.2)
    return x
