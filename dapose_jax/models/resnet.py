"""torchvision-exact ResNet v1.5 backbones (NHWC, no avgpool/fc).

Module names follow torchvision so that state-dict keys map mechanically
(see `dapose_jax.interop.weights`): `conv1`, `bn1`, `layer{s}_{i}` with `conv{1,2,3}`,
`bn{1,2,3}`, `downsample_conv` (`downsample.0`) and `downsample_bn`
(`downsample.1`). All padding is explicit and symmetric, as in PyTorch.
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from dapose_jax import errors

Dtype = Any

# torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu"), untruncated.
kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)  # PyTorch momentum 0.1


def conv2d(x, kernel, strides: int = 1, padding: int = 0):
  """NHWC convolution with kernel (kh, kw, in, out) and symmetric zero padding.

  In a program compiled for the CPU, 1x1 convolutions are `dot_general`s (same
  math), whose backward pass XLA:CPU runs faster than the convolution's, and
  convolutions of >= 128 input channels take their kernel gradient from matrix
  products (`_conv_matmul_kernel_grad`). Accelerators get plain convolutions: on
  an H100, 1x1 convolutions as matrix products moved 7 % more bytes per step,
  in the BatchNorm reductions and elementwise fusions around them. The choice follows the platform the program is lowered for, not the
  host's default backend, so a program compiled here for a GPU or TPU gets the
  convolutions.
  """
  s, p = strides, padding
  if kernel.shape[:2] == (1, 1) and p == 0:
    return lax.platform_dependent(x, kernel, cpu=functools.partial(_matmul_1x1, s=s),
                                  default=functools.partial(_conv, s=s, p=p))
  if x.shape[-1] >= 128:
    return lax.platform_dependent(x, kernel, cpu=functools.partial(_conv_matmul_kernel_grad, s=s, p=p),
                                  default=functools.partial(_conv, s=s, p=p))
  return _conv(x, kernel, s, p)


def _matmul_1x1(x, kernel, s):
  return lax.dot_general(x[:, ::s, ::s], kernel[0, 0], (((3,), (0,)), ((), ())))


def _conv(x, kernel, s, p):
  return lax.conv_general_dilated(x, kernel, (s, s), ((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


# XLA:CPU computes a convolution's kernel gradient 5x slower than its forward pass for RegDA's head (3x3, 256
# channels, 64x64, batch 4: 0.69 s vs 0.13 s; PyTorch's whole backward 0.35 s). With one matrix product per kernel
# tap, (strided input window)^T @ output gradient, forward + both gradients took 0.51 s instead of 0.99 s (same
# run); the products are slower than XLA's for 64 channels, hence the threshold.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_matmul_kernel_grad(x, kernel, s, p):
  return _conv(x, kernel, s, p)


def _conv_forward(x, kernel, s, p):
  return _conv(x, kernel, s, p), (x, kernel)


def _conv_backward(s, p, residuals, g):
  x, kernel = residuals
  _, input_vjp = jax.vjp(lambda x: _conv(x, kernel, s, p), x)
  (dx,) = input_vjp(g)
  (kh, kw), (oh, ow) = kernel.shape[:2], g.shape[1:3]
  padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  tap = lambda i, j: jnp.einsum("bhwc,bhwd->cd", padded[:, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s], g,
                                preferred_element_type=jnp.float32)
  dk = jnp.stack([jnp.stack([tap(i, j) for j in range(kw)]) for i in range(kh)])
  return dx, dk.astype(kernel.dtype)


_conv_matmul_kernel_grad.defvjp(_conv_forward, _conv_backward)


class Conv(nn.Module):
  """Square `conv2d` layer with float32 `kernel` (k, k, in, out) and optional `bias`."""
  features: int
  kernel_size: int
  strides: int = 1
  padding: int = 0
  use_bias: bool = False
  kernel_init: Callable = kaiming_fan_out
  bias_init: Callable = nn.initializers.zeros
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
    y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype), self.strides, self.padding)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32).astype(self.dtype)
    return y


def _pool_windows(x):
  """The nine strided views x_pad[:, dy::2, dx::2] of the 3x3/2 pad-1 max pool."""
  h, w = x.shape[1:3]
  ho, wo = (h + 1) // 2, (w + 1) // 2
  xp = jnp.pad(x, ((0, 0), (1, 2 * ho - h), (1, 2 * wo - w), (0, 0)), constant_values=-jnp.inf)
  return [[xp[:, dy:dy + 2 * ho:2, dx:dx + 2 * wo:2] for dx in range(3)] for dy in range(3)]


def _next(a, axis):
  """b[i] = a[i + 1] along `axis`, zero past the end."""
  pad = [(0, 0)] * a.ndim
  pad[axis] = (0, 1)
  return lax.slice_in_dim(jnp.pad(a, pad), 1, a.shape[axis] + 1, axis=axis)


@jax.custom_vjp
def max_pool_3x3s2(x):
  """PyTorch MaxPool2d(3, stride=2, padding=1) on NHWC, padding with -inf."""
  return nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))


def _max_pool_fwd(x):
  out = max_pool_3x3s2(x)
  return out, (x, out)


def _max_pool_bwd(res, g):
  """Same gradient as XLA's select-and-scatter (first maximum in row-major window
  order wins ties), about 5x faster on CPU.

  Each window gradient is routed to the input phase it came from: padded row
  2i + dy is input row 2i + dy - 1, i.e. even row i for dy=1, odd row i for dy=2
  and odd row i - 1 for dy=0 (same for columns); the four phases are then
  interleaved.
  """
  x, out = res
  n, h, w, c = x.shape
  taken = jnp.zeros(out.shape, bool)
  grads = []
  for row in _pool_windows(x):
    grads.append([])
    for window in row:
      hit = (window == out) & ~taken
      taken = taken | hit
      grads[-1].append(jnp.where(hit, g, jnp.zeros_like(g)))

  def even_odd(g0, g1, g2, axis):
    return g1, g2 + _next(g0, axis)

  cols = [even_odd(*row, axis=2) for row in grads]  # per dy: (even col, odd col)
  even_rows, odd_rows = zip(*(even_odd(*parity, axis=1) for parity in zip(*cols)))
  # even_rows[pc] / odd_rows[pc]: input phase (row parity, col parity pc).
  phases = jnp.stack([jnp.stack(even_rows, axis=3), jnp.stack(odd_rows, axis=3)], axis=2)
  ho, wo = out.shape[1:3]
  return (phases.reshape(n, 2 * ho, 2 * wo, c)[:, :h, :w],)


max_pool_3x3s2.defvjp(_max_pool_fwd, _max_pool_bwd)


class BasicBlock(nn.Module):
  features: int
  strides: int = 1
  downsample: bool = False
  dtype: Dtype = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(Conv, dtype=self.dtype)
    norm = functools.partial(BatchNorm, use_running_average=not train, dtype=self.dtype)
    y = nn.relu(norm(name="bn1")(conv(self.features, 3, self.strides, 1, name="conv1")(x)))
    y = norm(name="bn2")(conv(self.features, 3, 1, 1, name="conv2")(y))
    if self.downsample:
      x = norm(name="downsample_bn")(conv(self.features, 1, self.strides, name="downsample_conv")(x))
    return nn.relu(y + x)


class Bottleneck(nn.Module):
  """ResNet v1.5 bottleneck: the stride sits in the 3x3 convolution."""
  features: int
  strides: int = 1
  downsample: bool = False
  dtype: Dtype = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(Conv, dtype=self.dtype)
    norm = functools.partial(BatchNorm, use_running_average=not train, dtype=self.dtype)
    out_features = self.features * self.expansion
    y = nn.relu(norm(name="bn1")(conv(self.features, 1, name="conv1")(x)))
    y = nn.relu(norm(name="bn2")(conv(self.features, 3, self.strides, 1, name="conv2")(y)))
    y = norm(name="bn3")(conv(out_features, 1, name="conv3")(y))
    if self.downsample:
      x = norm(name="downsample_bn")(conv(out_features, 1, self.strides, name="downsample_conv")(x))
    return nn.relu(y + x)


class ResNet(nn.Module):
  """Stem + layer1..layer4; output stride 32, `out_features` channels."""
  block: type[nn.Module]
  stage_sizes: Sequence[int]
  dtype: Dtype = jnp.float32

  @property
  def out_features(self) -> int:
    return 512 * self.block.expansion

  @nn.compact
  def __call__(self, x, train: bool):
    x = Conv(64, 7, 2, 3, dtype=self.dtype, name="conv1")(x)
    x = nn.relu(BatchNorm(use_running_average=not train, dtype=self.dtype, name="bn1")(x))
    x = max_pool_3x3s2(x)
    in_features = 64
    for s, num_blocks in enumerate(self.stage_sizes):
      features = 64 * 2**s
      for i in range(num_blocks):
        strides = 2 if s > 0 and i == 0 else 1
        downsample = i == 0 and (strides != 1 or in_features != features * self.block.expansion)
        x = self.block(features, strides, downsample, self.dtype, name=f"layer{s + 1}_{i}")(x, train)
        in_features = features * self.block.expansion
    return x


_CONFIGS = {
    "resnet10": (BasicBlock, (1, 1, 1, 1)),  # not torchvision's: the tests' and dry runs' small backbone
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


def get_backbone(arch: str, dtype: Dtype = jnp.float32, **module_kwargs) -> ResNet:
  """ResNet by torchvision name ("resnet18" ...); `module_kwargs` go to the module (e.g. `name`)."""
  if arch not in _CONFIGS:
    raise errors.ConfigError(f"config.model.backbone={arch!r} is unknown; expected one of {sorted(_CONFIGS)}")
  block, stage_sizes = _CONFIGS[arch]
  return ResNet(block, stage_sizes, dtype, **module_kwargs)


def resnet18(dtype: Dtype = jnp.float32) -> ResNet:
  return get_backbone("resnet18", dtype)


def resnet34(dtype: Dtype = jnp.float32) -> ResNet:
  return get_backbone("resnet34", dtype)


def resnet50(dtype: Dtype = jnp.float32) -> ResNet:
  return get_backbone("resnet50", dtype)


def resnet101(dtype: Dtype = jnp.float32) -> ResNet:
  return get_backbone("resnet101", dtype)
