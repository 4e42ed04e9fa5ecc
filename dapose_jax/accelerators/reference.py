"""The plain model the compile command measures our programs against (``--reference plain``): a ResNet of the
config's depth written with Flax's own layers (``nn.Conv``, ``nn.BatchNorm``, ``nn.ConvTranspose``), three 4 x 4
stride-2 transposed convolutions of 256 channels and a 1 x 1 heatmap head (SimpleBaseline's shape and parameter
count), trained by an MSE loss on given heatmaps with the config's source-only optimizer (the recipes': tllib's
Adam): what a straightforward JAX implementation of the same network costs on the target."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dapose_jax import parallel
from dapose_jax.methods import common
from dapose_jax.models import pose as pose_model, resnet
from dapose_jax.pose import skeletons

class Block(nn.Module):
  features: int
  strides: int
  bottleneck: bool
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x, train):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, dtype=self.dtype)
    out_features = self.features * (4 if self.bottleneck else 1)
    if self.bottleneck:
      y = nn.relu(norm()(conv(self.features, (1, 1))(x)))
      y = nn.relu(norm()(conv(self.features, (3, 3), self.strides, padding=1)(y)))
      y = norm()(conv(out_features, (1, 1))(y))
    else:
      y = nn.relu(norm()(conv(self.features, (3, 3), self.strides, padding=1)(x)))
      y = norm()(conv(self.features, (3, 3), padding=1)(y))
    if x.shape[-1] != out_features or self.strides != 1:
      x = norm()(conv(out_features, (1, 1), self.strides)(x))
    return nn.relu(x + y)


class PlainPoseNet(nn.Module):
  backbone: str
  num_keypoints: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x, train):
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, dtype=self.dtype)
    x = nn.relu(norm()(nn.Conv(64, (7, 7), 2, padding=3, use_bias=False, dtype=self.dtype)(x)))
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    ours = resnet.get_backbone(self.backbone)  # the depth and block type of our ResNet of that name
    for stage, blocks in enumerate(ours.stage_sizes):
      for block in range(blocks):
        x = Block(64 * 2**stage, 2 if stage and not block else 1, ours.block.expansion > 1, self.dtype)(x, train)
    for _ in range(3):
      x = nn.ConvTranspose(256, (4, 4), (2, 2), padding="SAME", use_bias=False, dtype=self.dtype)(x)
      x = nn.relu(norm()(x))
    return nn.Conv(self.num_keypoints, (1, 1), dtype=self.dtype)(x).astype(jnp.float32)


def train_step(config, mesh, batch_size):
  """The lowered train step of the plain model for ``config``'s backbone, image size, keypoints and dtype."""
  model = PlainPoseNet(config.model.backbone, skeletons.get(config.source.keypoint_set).num_keypoints,
                       pose_model.DTYPES[config.model.dtype])
  c = config.source_only
  optimizer = common.optimizer(c.optimizer, c.lr, c.momentum, c.nesterov, c.weight_decay)

  def init(rng):
    variables = model.init(rng, jnp.zeros((1, 64, 64, 3)), train=False)
    return variables, optimizer.init(variables["params"])

  def step(state, images, heatmaps):
    (variables, opt_state) = state

    def loss_fn(params):
      predicted, updates = model.apply({**variables, "params": params}, images, train=True, mutable=["batch_stats"])
      return jnp.mean((predicted - heatmaps) ** 2), updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    change, opt_state = optimizer.update(grads, opt_state, variables["params"])
    params = optax.apply_updates(variables["params"], change)
    return ({"params": params, **updates}, opt_state), loss

  repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl),
                       jax.eval_shape(init, jax.random.key(0)))
  size, heatmap = config.image_size, config.image_size // pose_model.OUTPUT_STRIDE
  images = jax.ShapeDtypeStruct((batch_size, size, size, 3), jnp.float32, sharding=data)
  heatmaps = jax.ShapeDtypeStruct((batch_size, heatmap, heatmap, model.num_keypoints), jnp.float32, sharding=data)
  return jax.jit(step, donate_argnums=(0,), in_shardings=(repl, data, data), out_shardings=(repl, repl)).lower(
      state, images, heatmaps)


def num_params(config):
  model = PlainPoseNet(config.model.backbone, skeletons.get(config.source.keypoint_set).num_keypoints, jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
  return sum(x.size for x in jax.tree.leaves(shapes["params"]))
