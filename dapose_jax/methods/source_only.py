"""Source-only training of the SimpleBaseline on labelled source data; the target is only evaluated.

Defaults are tllib ``erm.py`` (MSE, Adam 1e-3 on all parameters, step decay); RegDA's stage 1 uses the
same step with KL, SGD and a 0.1x backbone learning rate (config.source_only.*), the mean teacher's stage 1
with MSE, Adam 1e-4 and source images stylised with target style (``stylise_prob`` 0.5, UDAPE).
"""

import flax
import jax
import jax.numpy as jnp
import optax

from dapose_jax.augment import device_augment
from dapose_jax.auxiliary import style_net
from dapose_jax.methods import base, common, style_decoder
from dapose_jax.models import pose
from dapose_jax.pose import keypoints, metrics


@flax.struct.dataclass
class State:
  step: jax.Array
  params: dict
  batch_stats: dict
  opt_state: optax.OptState
  style: dict  # frozen AdaIN encoder and decoder; empty without stylisation


def _schedule(config, factor=1.0):
  c = config.source_only
  return common.epoch_step_decay(c.lr * factor, c.lr_milestones, config.iters_per_epoch, c.lr_factor)


def _optimizer(config):
  c = config.source_only
  make = lambda factor: common.optimizer(c.optimizer, _schedule(config, factor), c.momentum, c.nesterov,
                                         c.weight_decay)
  labels = lambda params: {k: "backbone" if k == "backbone" else "rest" for k in params}
  return optax.partition({"backbone": make(c.backbone_lr_factor), "rest": make(1.0)}, labels)


def uses_style(config):
  return config.source_only.stylise_prob > 0


def prepare(config, workdir):
  """The style network first, when the source is stylised and ``config.style.net`` names none."""
  style_stages, config = style_decoder.with_style_network(config, workdir, uses_style(config))
  return [*style_stages, base.Stage("source_only", config, workdir)]


def init(config, rng):
  variables = pose.init_variables(pose.build_model(config), rng)
  params = variables["params"]
  return State(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables["batch_stats"],
               opt_state=_optimizer(config).init(params),
               style=style_net.template(config) if uses_style(config) else {})


def load_pretrained(config, state):
  """The frozen style network, when the source is stylised."""
  return state.replace(style=style_net.load(config, state.style)) if uses_style(config) else state


def train_step(config, state, source, target):
  model = pose.build_model(config)
  criterion = common.heatmap_loss(config.source_only.loss)
  images = common.maybe_stylise(config, jax.random.fold_in(jax.random.key(config.seed), state.step), state.style,
                                device_augment.normalize(source["image"]), device_augment.normalize(target["image"]),
                                config.source_only.stylise_prob)
  heatmaps, weights = keypoints.heatmap_targets(config, source)

  def loss_fn(params):
    out, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, images,
                               train=True, mutable=["batch_stats"])
    return criterion(out["heatmaps"], heatmaps, weights), (updates["batch_stats"], out["heatmaps"])

  (loss, (batch_stats, pred)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = _optimizer(config).update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state)
  return new_state, {"loss": loss, "lr": _schedule(config)(state.step),
                     "source_pck": metrics.pck(pred, heatmaps)[1]}


def eval_heatmaps(config, state, images):
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  return common.predict(pose.build_model(config), variables, images)


METHOD = base.Method(name="source_only", init=init, train_step=train_step, eval_heatmaps=eval_heatmaps,
                     uses_style=uses_style, prepare=prepare, backbone_init=True, load_pretrained=load_pretrained)
