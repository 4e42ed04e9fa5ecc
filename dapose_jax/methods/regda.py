"""Regressive Domain Adaptation (Jiang et al., CVPR 2021) as tllib's ``regda.py`` trains it.

Stage 1 is source pre-training (``pretrain_config``: the source-only step with KL, SGD and a 0.1x
backbone learning rate, checkpoint selected on the source test split), in WORKDIR/pretrain unless
``config.regda.pretrained`` names a stage-1 checkpoint. Stage 2 runs, per iteration and
inside one jitted step, the reference's three updates with three SGD states:
  A  all parameters on KL(y_s, label_s) + margin * KL_eps(y_s_adv, GT(y_s)), source batch;
  B  the adversarial head only on KL_eps(y_t_adv, GF(y_t)), target batch;
  C  backbone + upsampling only on KL_eps(y_t_adv, GT(y_t)), fresh target forward.
The adversarial head sees the features through the warm-start gradient layer (gradient x +lambda).
BatchNorm runs in train mode in all three forwards; its statistics update after each.
"""

import flax
import jax
import jax.numpy as jnp
import optax

from dapose_jax.augment import device_augment
from dapose_jax.methods import base, common
from dapose_jax.models import pose, resnet
from dapose_jax.models.gradient import scale_gradient
from dapose_jax.pose import decoding, keypoints, losses, metrics
from dapose_jax.storage import checkpoints

FEATURES = ("backbone", "upsampling")

# Which pseudo label and sign steps B (adversarial head f') and C (features psi) use, seed paper Table 2.
OBJECTIVES = {
    "regda": (("ground_false", 1.0), ("ground_truth", 1.0)),  # f' min L_F, psi min L_T
    "dd": (("ground_truth", -1.0), ("ground_truth", 1.0)),  # f' max L_T, psi min L_T
    "ground_false_minimax": (("ground_false", 1.0), ("ground_false", -1.0)),  # f' min L_F, psi max L_F
}


@flax.struct.dataclass
class State:
  step: jax.Array
  params: dict
  batch_stats: dict
  opt_features: optax.OptState
  opt_head: optax.OptState
  opt_head_adv: optax.OptState


def warm_start_coefficient(step, lo=0.0, hi=0.1, alpha=1.0, max_iters=1000.0):
  """tllib WarmStartGradientLayer: 2(hi - lo) / (1 + exp(-alpha i / N)) - (hi - lo) + lo."""
  step = jnp.asarray(step, jnp.float32)
  return 2.0 * (hi - lo) / (1.0 + jnp.exp(-alpha * step / max_iters)) - (hi - lo) + lo


def _schedules(config):
  c = config.regda
  return (common.inverse_decay(c.lr * c.features_lr_factor, c.lr_gamma, c.lr_decay),
          common.inverse_decay(c.lr, c.lr_gamma, c.lr_decay))


def _optimizers(config, step):
  """SGD of the features, the main head and the adversarial head at iteration ``step``. The rate is a function of
  the iteration, not of each optimizer's update count: updates A and C both step the features' optimizer, A and B
  the adversarial head's, while the reference steps each LambdaLR once per iteration (regda.py, after update C)."""
  c = config.regda
  features, heads = _schedules(config)
  sgd = lambda rate: common.optimizer("sgd", rate, c.momentum, c.nesterov, c.weight_decay)
  return sgd(features(step)), sgd(heads(step)), sgd(heads(step))


def _features(params):
  return {k: params[k] for k in FEATURES}


def init(config, rng):
  variables = pose.init_variables(pose.build_model(config, head="regda"), rng)
  params = variables["params"]
  opt_f, opt_h, opt_h_adv = _optimizers(config, 0)
  return State(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables["batch_stats"],
               opt_features=opt_f.init(_features(params)), opt_head=opt_h.init(params["head"]),
               opt_head_adv=opt_h_adv.init(params["head_adv"]))


def pretrain_config(config):
  """Stage-1 config (source-only with RegDA's pre-training recipe), or None if a checkpoint is given."""
  if config.regda.pretrained:
    return None
  # the reference keeps the best SOURCE-test checkpoint of stage 1
  return base.pretrain_config(config, epochs=config.regda.pretrain_epochs, select_on="source",
                              recipe=config.regda.pretrain)


def prepare(config, workdir):
  """Stage 1 into WORKDIR/pretrain (unless a checkpoint is given), then stage 2 starting from its best."""
  return base.with_pretrain_stage(config, workdir, pretrain_config(config), "regda")


def load_pretrained(config, state):
  """Copies backbone and upsampling (params and BN statistics) from the stage-1 checkpoint folder
  ``config.regda.pretrained`` (the ``best`` folder of a source-only run); no-op when it is empty.

  Both heads keep their fresh N(0, 0.001^2) initialisation: the reference's key filtering drops the
  single-conv stage-1 head because its names do not match the two-layer RegDA heads.
  """
  if not config.regda.pretrained:
    return state
  stage1 = checkpoints.restore_best(config.regda.pretrained)
  params = {**state.params, **{k: stage1["params"][k] for k in FEATURES}}
  batch_stats = {**state.batch_stats, **{k: stage1["batch_stats"][k] for k in FEATURES}}
  return state.replace(params=checkpoints.checked_like(params, state.params),
                       batch_stats=checkpoints.checked_like(batch_stats, state.batch_stats))


def _forward(config, params, batch_stats, images, lam):
  out, updates = pose.build_model(config, head="regda").apply(
      {"params": params, "batch_stats": batch_stats}, images, train=True, adv_grad_scale=lam,
      mutable=["batch_stats"])
  return out, updates["batch_stats"]


def _optimizer_step(optimizer, grads, opt_state, params):
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def step_a(config, state, lam, images, label, weight):
  """Update A: all parameters on source KL + margin * trade_off * KL_eps(adversarial, GT(main))."""
  c = config.regda
  opt_f, opt_h, opt_h_adv = _optimizers(config, state.step)

  def loss_fn(params):
    out, batch_stats = _forward(config, params, state.batch_stats, images, lam)
    ground_truth, _ = decoding.pseudo_labels(out["heatmaps"], config.sigma, fast=c.fast_pseudo_labels)
    loss = (losses.heatmap_kl(out["heatmaps"], label, weight)
            + c.margin * c.trade_off * losses.heatmap_kl(out["heatmaps_adv"], ground_truth, weight, c.epsilon))
    return loss, (batch_stats, out["heatmaps"])

  (loss, (batch_stats, pred)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  features, opt_features = _optimizer_step(opt_f, _features(grads), state.opt_features, _features(state.params))
  head, opt_head = _optimizer_step(opt_h, grads["head"], state.opt_head, state.params["head"])
  head_adv, opt_head_adv = _optimizer_step(opt_h_adv, grads["head_adv"], state.opt_head_adv,
                                           state.params["head_adv"])
  state = state.replace(params={**features, "head": head, "head_adv": head_adv}, batch_stats=batch_stats,
                        opt_features=opt_features, opt_head=opt_head, opt_head_adv=opt_head_adv)
  return state, loss, pred


def _target_loss(config, params, batch_stats, lam, images, weight, objective):
  label_name, sign = objective
  c = config.regda
  out, batch_stats = _forward(config, params, batch_stats, images, lam)
  ground_truth, ground_false = decoding.pseudo_labels(out["heatmaps"], config.sigma, fast=c.fast_pseudo_labels)
  label = ground_truth if label_name == "ground_truth" else ground_false
  return sign * c.trade_off * losses.heatmap_kl(out["heatmaps_adv"], label, weight, c.epsilon), batch_stats


def step_b(config, state, lam, images, weight):
  """Update B: the adversarial head only, on the target batch (RegDA: KL_eps(adversarial, GF(main))), with its own
  target forward as the reference writes it; ``train_step`` runs B and C as ``steps_b_and_c``."""
  objective = OBJECTIVES[config.regda.objective][0]
  loss_fn = lambda head_adv: _target_loss(config, {**state.params, "head_adv": head_adv}, state.batch_stats,
                                          lam, images, weight, objective)
  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params["head_adv"])
  head_adv, opt_head_adv = _optimizer_step(_optimizers(config, state.step)[2], grads, state.opt_head_adv,
                                           state.params["head_adv"])
  return state.replace(params={**state.params, "head_adv": head_adv}, batch_stats=batch_stats,
                       opt_head_adv=opt_head_adv), loss


def step_c(config, state, lam, images, weight):
  """Update C: backbone + upsampling only, fresh target forward (RegDA: KL_eps(adversarial, GT(main)));
  the features receive lam times the gradient through the warm-start layer. The reference's formulation, which
  ``steps_b_and_c`` equals with one target forward."""
  objective = OBJECTIVES[config.regda.objective][1]
  loss_fn = lambda features: _target_loss(config, {**state.params, **features}, state.batch_stats, lam,
                                          images, weight, objective)
  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(_features(state.params))
  features, opt_features = _optimizer_step(_optimizers(config, state.step)[0], grads, state.opt_features,
                                           _features(state.params))
  return state.replace(params={**state.params, **features}, batch_stats=batch_stats,
                       opt_features=opt_features), loss


def _train_forward(module, variables, x):
  """``module`` (a part of the pose network) in training mode: its output and its updated BN statistics."""
  y, updates = module.apply(variables, x, True, mutable=["batch_stats"])
  return y, updates["batch_stats"]


def _twice_updated(before, once):
  """BN running statistics updated twice with the same batch statistics, from ``before`` and the first update
  ``once`` (running = m * running + (1 - m) * batch, so twice = once + m * (once - before))."""
  return jax.tree.map(lambda a, b: b + BN_MOMENTUM * (b - a), before, once)


BN_MOMENTUM = resnet.BatchNorm.keywords["momentum"]  # every BatchNorm of the pose network


def steps_b_and_c(config, state, lam, images, weight):
  """Updates B then C (``step_b``, ``step_c``) with one target forward of the backbone and upsampling: B changes
  only the adversarial head, so C's backbone and upsampling activations, main-head heatmaps and pseudo-labels are
  B's (BatchNorm normalises with the batch's statistics in training), and C's feature gradient is pulled back
  through B's forward. The running statistics of those layers are updated twice, as the reference's two forwards
  update them; the adversarial head, changed by B, runs again in C. Returns (state, loss B, loss C)."""
  c = config.regda
  modules = pose.parts(pose.build_model(config, head="regda"))
  params, stats = state.params, state.batch_stats
  objective_b, objective_c = OBJECTIVES[c.objective]

  def trunk(features_params):
    x, backbone_stats = _train_forward(modules["backbone"], {"params": features_params["backbone"],
                                                             "batch_stats": stats["backbone"]}, images)
    x, upsampling_stats = _train_forward(modules["upsampling"], {"params": features_params["upsampling"],
                                                                 "batch_stats": stats["upsampling"]}, x)
    return x, {"backbone": backbone_stats, "upsampling": upsampling_stats}

  features, pull_back, trunk_stats = jax.vjp(trunk, _features(params), has_aux=True)
  heatmaps, head_stats = _train_forward(modules["head"], {"params": params["head"], "batch_stats": stats["head"]},
                                        features)
  labels = dict(zip(("ground_truth", "ground_false"), decoding.pseudo_labels(
      heatmaps.astype(jnp.float32), config.sigma, fast=c.fast_pseudo_labels)))

  def adversarial_loss(head_adv, adv_stats, features, objective):
    label_name, sign = objective
    out, adv_stats = _train_forward(modules["head_adv"], {"params": head_adv, "batch_stats": adv_stats},
                                    scale_gradient(features, lam))
    loss = sign * c.trade_off * losses.heatmap_kl(out.astype(jnp.float32), labels[label_name], weight, c.epsilon)
    return loss, adv_stats

  (loss_b, adv_stats), grads = jax.value_and_grad(adversarial_loss, has_aux=True)(
      params["head_adv"], stats["head_adv"], jax.lax.stop_gradient(features), objective_b)
  opt_f, _, opt_h_adv = _optimizers(config, state.step)
  head_adv, opt_head_adv = _optimizer_step(opt_h_adv, grads, state.opt_head_adv, params["head_adv"])
  (loss_c, adv_stats), feature_grads = jax.value_and_grad(adversarial_loss, argnums=2, has_aux=True)(
      head_adv, adv_stats, features, objective_c)
  (grads,) = pull_back(feature_grads)
  trained, opt_features = _optimizer_step(opt_f, grads, state.opt_features, _features(params))
  batch_stats = {**stats, **{k: _twice_updated(stats[k], v) for k, v in trunk_stats.items()},
                 "head": _twice_updated(stats["head"], head_stats), "head_adv": adv_stats}
  state = state.replace(params={**params, **trained, "head_adv": head_adv}, batch_stats=batch_stats,
                        opt_features=opt_features, opt_head_adv=opt_head_adv)
  return state, loss_b, loss_c


def train_step(config, state, source, target):
  lam = warm_start_coefficient(state.step, max_iters=config.regda.warm_start_iters)
  label_s, w_s = keypoints.heatmap_targets(config, source)
  _, w_t = keypoints.heatmap_targets(config, target)  # the reference weights target terms by visibility
  x_t = device_augment.normalize(target["image"])
  state, loss_s, y_s = step_a(config, state, lam, device_augment.normalize(source["image"]), label_s, w_s)
  state, loss_b, loss_c = steps_b_and_c(config, state, lam, x_t, w_t)
  features_lr, heads_lr = _schedules(config)
  metrics_ = {"loss": loss_s, "loss_adversarial_head": loss_b, "loss_features": loss_c,
              "warm_start_lambda": lam, "lr_features": features_lr(state.step), "lr_heads": heads_lr(state.step),
              "source_pck": metrics.pck(y_s, label_s)[1]}
  return state.replace(step=state.step + 1), metrics_


def eval_heatmaps(config, state, images):
  """The main head, as the reference evaluates."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  return common.predict(pose.build_model(config, head="regda"), variables, images)


def eval_heatmap_pairs(config, state, images):
  """(the main head f's heatmaps, as ``eval_heatmaps``; the adversarial head f''s) of one eval-mode forward."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  # with adv_grad_scale given the adversarial head runs too; the scale acts on gradients only
  out = pose.build_model(config, head="regda").apply(variables, device_augment.normalize(images), train=False,
                                                     adv_grad_scale=0.0)
  return out["heatmaps"], out["heatmaps_adv"]


METHOD = base.Method(name="regda", init=init, train_step=train_step, eval_heatmaps=eval_heatmaps, prepare=prepare,
                     load_pretrained=load_pretrained, eval_heatmap_pairs=eval_heatmap_pairs)
