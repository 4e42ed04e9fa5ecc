"""Pieces shared by the pose methods: schedules, optimisers, losses by name, prediction, stylisation."""

import jax
import optax

from dapose_jax import errors
from dapose_jax.augment import device_augment
from dapose_jax.models import style
from dapose_jax.pose import losses


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
  raise errors.ConfigError(f"unknown optimizer {kind!r}; expected 'adam' or 'sgd'")


def heatmap_loss(name):
  """'mse' (JointsMSELoss) or 'kl' (JointsKLLoss with epsilon 0) as f(pred, target, weight)."""
  if name == "mse":
    return losses.heatmap_mse
  if name == "kl":
    return losses.heatmap_kl
  raise errors.ConfigError(f"unknown heatmap loss {name!r}; expected 'mse' or 'kl'")


def predict(model, variables, images):
  """Eval-mode heatmaps of uint8 images."""
  return model.apply(variables, device_augment.normalize(images), train=False)["heatmaps"]


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
