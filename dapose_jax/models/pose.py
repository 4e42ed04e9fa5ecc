"""SimpleBaseline pose network (tllib PoseResNet / PoseResNet2d) in Flax linen, NHWC.

Parameter tree (top level): `backbone` (ResNet, see resnet.py), `upsampling`
(`deconv{i}`, `bn{i}` = tllib `upsampling.{3i}`, `upsampling.{3i+1}`), `head` and,
for head="regda", `head_adv` (`conv1`, `bn`, `conv2` = tllib `head.0`, `head.1`,
`head.3`). All kernels are (kh, kw, in, out): PyTorch Conv2d weight `.transpose(2, 3, 1, 0)`,
ConvTranspose2d weight `.transpose(2, 3, 0, 1)`.
"""

import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from dapose_jax import errors
from dapose_jax.models import resnet
from dapose_jax.models.gradient import scale_gradient
from dapose_jax.pose import skeletons

Dtype = resnet.Dtype

normal_0001 = nn.initializers.normal(stddev=0.001)


def conv_transpose_4x4s2(x, kernel):
  """PyTorch ConvTranspose2d(kernel_size=4, stride=2, padding=1, bias=False) on NHWC.

  `kernel` is (4, 4, in, out) = PyTorch weight (in, out, 4, 4).transpose(2, 3, 0, 1).
  Accelerators run it as `lax.conv_transpose` (one cuDNN call per direction on a
  GPU). A program compiled for the CPU takes the sub-pixel form instead: output
  phase (r, c) (rows 2m + r, columns 2n + c) is a 2x2 VALID correlation of the
  1-padded input window starting at (r, c) with the kernel taps
  flip(kernel)[r::2, c::2], the four phases interleaved; same result, but its
  backward pass is 10-30x faster on XLA:CPU (whose weight gradient of the
  input-dilated form is very slow) and the phases are `resnet.conv2d`s, so wide
  ones take its CPU kernel gradient too. On an H100 the sub-pixel form moved 2 %
  more bytes per step and counted 1 % more FLOPs.
  """
  return lax.platform_dependent(x, kernel, cpu=_phases, default=_transposed)


def _phases(x, kernel):
  n, h, w, _ = x.shape
  flipped = kernel[::-1, ::-1]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  phase = lambda r, c: resnet.conv2d(xp[:, r:r + h + 1, c:c + w + 1], flipped[r::2, c::2])
  rows = [jnp.stack([phase(r, 0), phase(r, 1)], axis=3) for r in range(2)]  # (n, h, w, 2, out)
  return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, kernel.shape[-1])


def _transposed(x, kernel):
  return lax.conv_transpose(x, kernel[::-1, ::-1], (2, 2), ((2, 2), (2, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


class ConvTranspose4x4S2(nn.Module):
  """Learnable `conv_transpose_4x4s2`; kernel init N(0, 0.001^2) as in tllib."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", normal_0001, (4, 4, x.shape[-1], self.features), jnp.float32)
    return conv_transpose_4x4s2(x.astype(self.dtype), kernel.astype(self.dtype))


class Upsampling(nn.Module):
  """`num_layers` x [ConvTranspose2d(4, 2, 1) -> BN -> ReLU], each doubling H and W."""
  num_layers: int = 3
  features: int = 256
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    for i in range(self.num_layers):
      x = ConvTranspose4x4S2(self.features, self.dtype, name=f"deconv{i}")(x)
      x = resnet.BatchNorm(use_running_average=not train, dtype=self.dtype, name=f"bn{i}")(x)
      x = nn.relu(x)
    return x


class SimpleHead(nn.Module):
  """SimpleBaseline / ERM head: 1x1 conv with bias (`kernel`, `bias` = tllib `head.weight`, `head.bias`)."""
  num_keypoints: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    kernel = self.param("kernel", normal_0001, (1, 1, x.shape[-1], self.num_keypoints), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.num_keypoints,), jnp.float32)
    return resnet.conv2d(x.astype(self.dtype), kernel.astype(self.dtype)) + bias.astype(self.dtype)


class RegDAHead(nn.Module):
  """tllib `_make_head(2, ...)`: Conv3x3(bias) -> BN -> ReLU -> Conv1x1(bias)."""
  num_keypoints: int
  features: int = 256
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(resnet.Conv, use_bias=True, kernel_init=normal_0001, dtype=self.dtype)
    x = conv(self.features, 3, padding=1, name="conv1")(x)
    x = nn.relu(resnet.BatchNorm(use_running_average=not train, dtype=self.dtype, name="bn")(x))
    return conv(self.num_keypoints, 1, name="conv2")(x)


class PoseNet(nn.Module):
  """Backbone -> Upsampling -> head(s); heatmaps at 1/4 of the input resolution.

  `__call__` returns a dict with float32 `heatmaps` (N, H/4, W/4, K), the upsampling
  output `features` (N, H/4, W/4, upsampling_features), the backbone output
  `backbone_features` (N, H/32, W/32, C) and, for head="regda" with
  `adv_grad_scale` given, `heatmaps_adv`: the adversarial head applied to
  `scale_gradient(features, adv_grad_scale)`. `adv_grad_scale` is ignored for
  head="simple". Initialise a "regda" model with adv_grad_scale=0.0 so that
  `head_adv` gets parameters (see `init_variables`).
  """
  backbone: str = "resnet101"
  num_keypoints: int = 16
  upsampling_features: int = 256
  head: str = "simple"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool, adv_grad_scale: Optional[jax.Array] = None):
    backbone_features = resnet.get_backbone(self.backbone, self.dtype, name="backbone")(x, train)
    features = Upsampling(features=self.upsampling_features, dtype=self.dtype, name="upsampling")(
        backbone_features, train)
    if self.head == "simple":
      head = SimpleHead(self.num_keypoints, self.dtype, name="head")
    elif self.head == "regda":
      head = RegDAHead(self.num_keypoints, self.upsampling_features, self.dtype, name="head")
    else:
      raise ValueError(f'unknown head {self.head!r}; expected "simple" or "regda"')
    out = {"heatmaps": head(features, train).astype(jnp.float32), "features": features,
           "backbone_features": backbone_features}
    if self.head == "regda" and adv_grad_scale is not None:
      head_adv = RegDAHead(self.num_keypoints, self.upsampling_features, self.dtype, name="head_adv")
      out["heatmaps_adv"] = head_adv(scale_gradient(features, adv_grad_scale), train).astype(jnp.float32)
    return out


def parts(model: PoseNet):
  """{parameter group: module} of ``model`` as standalone modules, each applied to its own group's variables:
  "backbone" (images -> backbone_features), "upsampling" (-> features), "head" and, for head="regda", "head_adv"
  (features -> heatmaps in the compute dtype)."""
  head = functools.partial(RegDAHead, model.num_keypoints, model.upsampling_features, model.dtype)
  out = {"backbone": resnet.get_backbone(model.backbone, model.dtype),
         "upsampling": Upsampling(features=model.upsampling_features, dtype=model.dtype),
         "head": head() if model.head == "regda" else SimpleHead(model.num_keypoints, model.dtype)}
  if model.head == "regda":
    out["head_adv"] = head()
  return out


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
INPUT_MULTIPLE = 32  # the backbone halves the image five times
OUTPUT_STRIDE = 4  # heatmaps are a quarter of the input's side


def build_model(config, head="simple"):
  """The PoseNet of a run: ``config.model`` (backbone, upsampling width, compute dtype), one heatmap per
  keypoint of ``config.source.keypoint_set``, and the given head."""
  if config.model.dtype not in DTYPES:
    raise errors.ConfigError(f"config.model.dtype must be one of {sorted(DTYPES)}, got {config.model.dtype!r}")
  return PoseNet(
      backbone=config.model.backbone,
      num_keypoints=skeletons.get(config.source.keypoint_set).num_keypoints,
      upsampling_features=config.model.upsampling_features,
      head=head,
      dtype=DTYPES[config.model.dtype])


def init_variables(model: PoseNet, rng: jax.Array, input_shape=(1, 64, 64, 3)):
  """All variables of `model` ({"params", "batch_stats"}), `head_adv` included.

  Shapes do not depend on the image size, so a small dummy input keeps this cheap.
  """
  adv_grad_scale = 0.0 if model.head == "regda" else None
  return model.init(rng, jnp.zeros(input_shape, jnp.float32), train=False, adv_grad_scale=adv_grad_scale)
