"""Identity layers that rescale the gradient flowing back through them."""

import jax
import jax.numpy as jnp


@jax.custom_vjp
def _scale_gradient(x, scale):
  return x


def _scale_gradient_fwd(x, scale):
  return x, scale


def _scale_gradient_bwd(scale, g):
  return g * scale.astype(g.dtype), jnp.zeros_like(scale)


_scale_gradient.defvjp(_scale_gradient_fwd, _scale_gradient_bwd)


def scale_gradient(x, scale):
  """Identity forward; the backward pass multiplies the gradient by `scale`.

  `scale` may be a traced scalar (e.g. a schedule value) and receives zero
  gradient. With scale = +lambda this is RegDA's WarmStartGradientLayer.
  """
  return _scale_gradient(x, jnp.asarray(scale, jnp.float32))


def reverse_gradient(x, coeff=1.0):
  """Gradient reversal layer: identity forward, gradient multiplied by -coeff."""
  return scale_gradient(x, -jnp.asarray(coeff, jnp.float32))
