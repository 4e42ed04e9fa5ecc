"""Pieces shared by the methods: the model, device-side preprocessing and targets, schedules."""

import pathlib

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp

from dapose_jax import keypoints, losses
from dapose_jax.data import sources, transforms
from dapose_jax.models import pose, style


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build_model(config, head="simple"):
  if config.model.dtype not in DTYPES:
    raise ValueError(f"config.model.dtype must be one of {sorted(DTYPES)}, got {config.model.dtype!r}")
  return pose.PoseNet(
      backbone=config.model.backbone,
      num_keypoints=len(sources.keypoint_set(config.source).names),
      upsampling_features=config.model.upsampling_features,
      head=head,
      dtype=DTYPES[config.model.dtype])


def init_variables(model, config, rng, **kwargs):
  images = jnp.zeros((1, config.image_size, config.image_size, 3), jnp.float32)
  return model.init(rng, images, train=False, **kwargs)


def normalize(images):
  """uint8 RGB -> ImageNet-normalised float32, on the device."""
  return (images.astype(jnp.float32) / 255.0 - transforms.IMAGENET_MEAN) / transforms.IMAGENET_STD


def heatmap_targets(config, batch):
  """Reference Gaussian targets (B, H, W, K) and weights (B, K) of a batch, rendered on the device."""
  render = lambda kp, vis: keypoints.gaussian_targets(
      kp, vis, image_size=config.image_size, heatmap_size=config.heatmap_size, sigma=config.sigma)
  return jax.vmap(render)(batch["keypoints"], batch["visible"])


def epoch_step_decay(base_lr, milestones, iters_per_epoch, factor=0.1):
  """MultiStepLR stepped at the start of each epoch, as tllib does: each decay takes effect one epoch
  before its milestone (0-based epochs 44 and 59 for milestones [45, 60])."""
  boundaries = {max(m - 1, 0) * iters_per_epoch: factor for m in milestones}
  return optax.piecewise_constant_schedule(base_lr, boundaries)


def inverse_decay(base_lr, gamma=1e-4, decay=0.75):
  """tllib's LambdaLR factor lr * (1 + gamma * i) ** -decay, i = iteration."""
  return lambda step: base_lr * (1.0 + gamma * step) ** (-decay)


def optimizer(kind, schedule, momentum=0.9, nesterov=True, weight_decay=0.0):
  """'adam' (PyTorch defaults, no weight decay) or 'sgd' with PyTorch's coupled L2 weight decay."""
  if kind == "adam":
    return optax.adam(schedule)
  if kind == "sgd":
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.sgd(schedule, momentum=momentum, nesterov=nesterov))
  raise ValueError(f"unknown optimizer {kind!r}; expected 'adam' or 'sgd'")


def heatmap_loss(name):
  """'mse' (JointsMSELoss) or 'kl' (JointsKLLoss with epsilon 0) as f(pred, target, weight)."""
  if name == "mse":
    return losses.heatmap_mse
  if name == "kl":
    return losses.heatmap_kl
  raise ValueError(f"unknown heatmap loss {name!r}; expected 'mse' or 'kl'")


def predict(model, variables, images):
  """Eval-mode heatmaps of uint8 images."""
  return model.apply(variables, normalize(images), train=False)["heatmaps"]


def restore_best(directory):
  """The ``state`` pytree (as nested dicts) of the checkpoint in a run's ``best`` folder."""
  with ocp.CheckpointManager(pathlib.Path(directory).expanduser().resolve()) as mngr:
    if mngr.latest_step() is None:
      raise FileNotFoundError(f"no stage-1 checkpoint in {directory}; give the 'best' folder of a finished "
                              "run, or leave the method's 'pretrained' empty to pre-train")
    return mngr.restore(mngr.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore())).state


def checked_like(loaded, expected):
  """``loaded`` as arrays, after checking that it has the structure and shapes of ``expected``."""
  loaded = jax.tree.map(jnp.asarray, loaded)
  if jax.tree.structure(loaded) != jax.tree.structure(expected):
    raise ValueError("a loaded checkpoint does not have the parameters of this model: was it trained with "
                     "the same config.model and keypoint set?")

  def check(a, b):
    if a.shape != b.shape:
      raise ValueError(f"a loaded checkpoint has a parameter of shape {a.shape}, expected {b.shape}: was it "
                       "trained with the same config.model?")
    return a

  return jax.tree.map(check, loaded, expected)


def init_style(config):
  """Zero style-network parameters of the right shapes, for ``style_training.load_style`` to fill after ``init`` (shapes
  only: compiling the VGG initialisation into ``init`` would cost a minute on CPU)."""
  shapes = jax.eval_shape(lambda: style.init_style_params(jax.random.key(0), config.style.width, config.image_size,
                                                          config.style.depth))
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def maybe_stylise(config, rng, style_params, content, style_images, prob):
  """With probability ``prob`` (one draw per batch) the content batch rendered in the style of
  ``style_images`` with one alpha ~ U(0, 1), clipped to the normalised range (UDAPE); else unchanged."""
  if prob <= 0:
    return content
  k_apply, k_alpha = jax.random.split(rng)
  alpha = jax.random.uniform(k_alpha)
  stylised = lambda: style.clip_to_normalised_range(
      style.stylise(style_params, content, style_images, alpha, config.style.width, config.style.depth)
  ).astype(content.dtype)
  return jax.lax.cond(jax.random.bernoulli(k_apply, prob), stylised, lambda: content)
