"""Mean teacher of UDAPE (Kim et al., ECCV 2022), with DAML's feature- and pose-level alignment as options.

The AdaIN network is trained first into WORKDIR/style unless ``config.style.net`` names one. Stage 1
(``pretrain_config``, into WORKDIR/pretrain unless ``pretrained`` names a checkpoint) is source-only
training with MSE, Adam and source images stylised with target style (p 0.5). Stage 2 starts student and
teacher from the stage-1 checkpoint and, per iteration:
  1. stylises the source batch with target style (p ``source_style_prob``) and the teacher's view with
     source style (p ``teacher_style_prob``), alpha ~ U(0, 1), clipped to the normalised range;
  2. draws a teacher view and a student view of each target base crop (random affine + colour jitter, on
     the device) and warps the teacher's train-mode prediction back to the base frame: T;
  3. occludes, with p ``occlude_prob`` per sample when some keypoint of T peaks at >= ``occlude_threshold``,
     a box around one such keypoint with a patch of the same image (in the base frame, before the student
     view is drawn: the reference's image-translation bug is not reproduced);
  4. student loss: source MSE + consistency_weight * ConsLoss(S, rectify(T), mask of keypoints above the
     batch-median confidence), S = the student's prediction warped back to the base frame;
     + feature_weight * (BCE_s + BCE_t) of the feature discriminator behind a gradient reversal (DAML);
     + pose_weight * IM(S) on the H/W projections (DAML);
  5. one Adam step of the student (and of the discriminator), then the EMA of the teacher's parameters.
The teacher (its own BatchNorm statistics, eval mode) makes the predictions that are evaluated.
Settings live in ``config[config.method]`` (``mean_teacher`` or ``daml``).
"""

import dataclasses
from typing import Callable, NamedTuple, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from dapose_jax.augment import device_augment, views
from dapose_jax.auxiliary import style_net
from dapose_jax.methods import base, common, source_only, style_decoder
from dapose_jax.models import discriminator, pose
from dapose_jax.models.gradient import reverse_gradient
from dapose_jax.pose import decoding, keypoints, losses, metrics
from dapose_jax.storage import checkpoints


@flax.struct.dataclass
class State(source_only.State):
  """The student's source-only state plus the teacher and the feature discriminator."""
  teacher_params: dict
  teacher_batch_stats: dict
  disc_params: dict  # empty without the feature-level term
  opt_disc: optax.OptState


def ema_update(teacher_params, student_params, alpha=0.999):
  """UDAPE's ``OldWeightEMA``: alpha * teacher + (1 - alpha) * student, leaf by leaf over parameter pytrees.

  Parameters only: the teacher's BatchNorm statistics are its own (accumulated by its train-mode forward passes)
  and are not averaged from the student's.
  """
  return jax.tree_util.tree_map(lambda t, s: alpha * t + (1 - alpha) * s, teacher_params, student_params)


def settings(config):
  return config[config.method]


def uses_style(config):
  c = settings(config)
  return c.source_style_prob > 0 or c.teacher_style_prob > 0 or (
      not c.pretrained and c.pretrain.stylise_prob > 0)


def configure(config):
  """With ``base_crop_only``, the target pipeline makes only UDAPE's shared base crop (random resized crop,
  no rotation, colour or blur): the student and teacher views are drawn on the device. Also on a target whose
  augmentation is off (LSP, tllib's fixed transform): UDAPE's LSP_mt pads to a square, then crops."""
  if not settings(config).base_crop_only:
    return config
  config = config.copy_and_resolve_references()
  config.target.augment.update(enabled=True, rotation=0.0, color=0.0, blur=0.0)
  return config


def _schedule(config):
  c = settings(config)
  return common.epoch_step_decay(c.lr, c.lr_milestones, config.iters_per_epoch, c.lr_factor)


def _optimizers(config):
  c = settings(config)
  return optax.adam(_schedule(config)), optax.adam(c.disc_lr)


def _discriminator(config):
  return discriminator.FeatureDiscriminator(features=config.model.upsampling_features)


def init(config, rng):
  k_model, k_disc = jax.random.split(rng)
  variables = pose.init_variables(pose.build_model(config), k_model)
  params, batch_stats = variables["params"], variables["batch_stats"]
  disc_params = {}
  if settings(config).feature_weight > 0:
    features = jnp.zeros((1, config.heatmap_size, config.heatmap_size, config.model.upsampling_features))
    disc_params = _discriminator(config).init(k_disc, features)["params"]
  opt, opt_disc = _optimizers(config)
  return State(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats, opt_state=opt.init(params),
               teacher_params=params, teacher_batch_stats=batch_stats, disc_params=disc_params,
               opt_disc=opt_disc.init(disc_params),
               style=style_net.template(config) if uses_style(config) else {})


def pretrain_config(config):
  """Stage 1: source-only MSE / Adam with target-style stylisation of the source; None if a checkpoint
  is given in ``pretrained``."""
  c = settings(config)
  if c.pretrained:
    return None
  return base.pretrain_config(config, epochs=c.pretrain_epochs, select_on=c.pretrain_select_on, recipe=c.pretrain)


def prepare(config, workdir):
  """The style network (unless ``config.style.net`` names one), stage 1 (unless ``pretrained`` names a
  checkpoint), then stage 2 starting from stage 1's best."""
  style_stages, config = style_decoder.with_style_network(config, workdir, uses_style(config))
  return [*style_stages, *base.with_pretrain_stage(config, workdir, pretrain_config(config), config.method)]


def load_pretrained(config, state):
  """Student and teacher from the stage-1 checkpoint (every parameter and BatchNorm statistic; the Adam
  state starts fresh, where the reference keeps stage 1's), and the frozen style network."""
  if uses_style(config):
    state = state.replace(style=style_net.load(config, state.style))
  if not settings(config).pretrained:
    return state
  stage1 = checkpoints.restore_best(settings(config).pretrained)
  params, batch_stats = checkpoints.checked_like(stage1["params"], state.params), checkpoints.checked_like(
      stage1["batch_stats"], state.batch_stats)
  copy = lambda tree: jax.tree.map(jnp.copy, tree)  # separate buffers: the train step donates the state
  return state.replace(params=params, batch_stats=batch_stats, teacher_params=copy(params),
                       teacher_batch_stats=copy(batch_stats))


class StepContext(NamedTuple):
  """What the mean teacher's step offers a ``StepExtension`` about the target batch: B base crops of S x S pixels
  and the teacher's heatmaps (B, h, w, K), all in the base frame."""
  teacher_maps: jax.Array  # T: the teacher's train-mode prediction of its view, warped back, without gradient
  rectified: jax.Array  # rectify(T): Gaussian heatmaps at T's peaks (``decoding.pseudo_labels``)
  mask: jax.Array  # (B, K) the keypoints of T above the batch-median confidence
  base: jax.Array  # (B, S, S, 3) the base crops as floats in [0, 255], before occlusion
  model: pose.PoseNet  # the pose network of student and teacher
  to_heatmap: Callable  # a view matrix in image pixels -> the same view in heatmap pixels


class StepChanges(NamedTuple):
  """What a ``StepExtension`` changes in the mean teacher's step; the defaults change nothing."""
  consistency: Optional[Callable] = None  # S -> (loss, {name: term}): replaces ConsLoss(S, rectify(T), mask)
  # (params, batch_stats, S) -> (weighted loss, {name: term}, batch_stats): added to the student loss
  extra: Optional[Callable] = None
  state_fields: dict = {}  # fields of the new state
  metrics: dict = {}  # values the step reports besides its own


@dataclasses.dataclass(frozen=True)
class StepExtension:
  """How a method built on the mean teacher's step (``geometric``) changes it; the defaults change nothing.

    inputs(config, state, target batch) -> (the target batch of base crops the step trains on, the extension's own
      inputs, a pytree): the first thing the step does (e.g. split a base/driving pair)
    changes(config, state, own inputs, StepContext) -> StepChanges: once the teacher's pseudo-labels are made,
      before the student's loss
  """
  inputs: Callable = lambda config, state, target: (target, None)
  changes: Callable = lambda config, state, inputs, context: StepChanges()


def train_step(config, state, source, target, step_extension=StepExtension()):
  """One stage-2 step (module docstring), changed by ``step_extension``: a method built on this step declares its
  ``StepExtension`` and steps with ``functools.partial(train_step, step_extension=...)``."""
  target, extension_inputs = step_extension.inputs(config, state, target)
  c = settings(config)
  model = pose.build_model(config)
  size, hm_size = config.image_size, config.heatmap_size
  view_params = views.ViewParams(**c.view)
  k_s2t, k_t2s, k_tview, k_sview, k_tcol, k_scol, k_occ = jax.random.split(
      jax.random.fold_in(jax.random.key(config.seed), state.step), 7)

  raw_source = device_augment.normalize(source["image"])
  target_style = device_augment.normalize(target["image"])
  source_images = common.maybe_stylise(config, k_s2t, state.style, raw_source, target_style, c.source_style_prob)
  labels, weights = keypoints.heatmap_targets(config, source)

  base = target["image"].astype(jnp.float32)
  batch = base.shape[0]
  teacher_m = views.sample_matrices(k_tview, batch, size, view_params)
  student_m = views.sample_matrices(k_sview, batch, size, view_params)
  to_heatmap = lambda m: views.rescale(m, hm_size / size)

  teacher_view = device_augment.normalize(views.color_jitter(k_tcol, views.to_view(base, teacher_m), view_params.color))
  teacher_view = common.maybe_stylise(config, k_t2s, state.style, teacher_view, raw_source, c.teacher_style_prob)
  out, teacher_updates = model.apply({"params": state.teacher_params, "batch_stats": state.teacher_batch_stats},
                                     teacher_view, train=True, mutable=["batch_stats"])
  teacher_maps = jax.lax.stop_gradient(views.to_base(out["heatmaps"], to_heatmap(teacher_m), c.interpolation))

  peaks, confidence = decoding.argmax_2d(teacher_maps)
  occluded = _occlude(c, k_occ, base, peaks * (size / hm_size), confidence)
  student_view = device_augment.normalize(views.color_jitter(k_scol, views.to_view(occluded, student_m),
                                                             view_params.color))
  rectified, _ = decoding.pseudo_labels(teacher_maps, config.sigma)
  mask = losses.median_confidence_mask(teacher_maps)
  extension = step_extension.changes(config, state, extension_inputs, StepContext(
      teacher_maps=teacher_maps, rectified=rectified, mask=mask, base=base, model=model, to_heatmap=to_heatmap))

  def loss_fn(trainable):
    params, disc_params = trainable
    source_out, batch_stats = _train_forward(model, params, state.batch_stats, source_images)
    target_out, batch_stats = _train_forward(model, params, batch_stats, student_view)
    student_maps = views.to_base(target_out["heatmaps"], to_heatmap(student_m), c.interpolation)
    terms = {"source": losses.heatmap_mse(source_out["heatmaps"], labels, weights)}
    if extension.consistency is None:
      terms["consistency"] = losses.consistency(student_maps, rectified, mask)
    else:
      terms["consistency"], consistency_terms = extension.consistency(student_maps)
      terms.update(consistency_terms)
    loss = terms["source"] + c.consistency_weight * terms["consistency"]
    if extension.extra is not None:
      extra, extra_terms, batch_stats = extension.extra(params, batch_stats, student_maps)
      loss += extra
      terms.update(extra_terms)
    if c.feature_weight > 0:
      logits = lambda f: _discriminator(config).apply({"params": disc_params}, reverse_gradient(f))
      terms["bce_source"] = losses.bce_with_logits(logits(source_out["features"]), 0.0)
      terms["bce_target"] = losses.bce_with_logits(logits(target_out["features"]), 1.0)
      loss += c.feature_weight * (terms["bce_source"] + terms["bce_target"])
    if c.pose_weight > 0:
      threshold = c.im_threshold if c.im_threshold >= 0 else None
      terms["im"] = losses.information_maximization(student_maps, threshold)
      loss += c.pose_weight * terms["im"]
    return loss, (batch_stats, terms, source_out["heatmaps"])

  (loss, (batch_stats, terms, source_pred)), (grads, disc_grads) = jax.value_and_grad(loss_fn, has_aux=True)(
      (state.params, state.disc_params))
  opt, opt_disc = _optimizers(config)
  updates, opt_state = opt.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  disc_updates, opt_disc_state = opt_disc.update(disc_grads, state.opt_disc, state.disc_params)
  new_state = state.replace(
      step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
      teacher_params=ema_update(state.teacher_params, params, c.ema),
      teacher_batch_stats=teacher_updates["batch_stats"],
      disc_params=optax.apply_updates(state.disc_params, disc_updates), opt_disc=opt_disc_state,
      **extension.state_fields)
  return new_state, {"loss": loss, **{f"loss_{k}": v for k, v in terms.items()}, "lr": _schedule(config)(state.step),
                     "mask_fraction": jnp.mean(mask), "source_pck": metrics.pck(source_pred, labels)[1],
                     **extension.metrics}


def _train_forward(model, params, batch_stats, images):
  out, updates = model.apply({"params": params, "batch_stats": batch_stats}, images, train=True,
                             mutable=["batch_stats"])
  return out, updates["batch_stats"]


def _occlude(c, rng, images, centres, confidence):
  """Occlude one random keypoint with confidence >= threshold, per sample with p ``occlude_prob``."""
  k_apply, k_pick, k_patch = jax.random.split(rng, 3)
  confident = confidence >= c.occlude_threshold
  apply = jax.random.bernoulli(k_apply, c.occlude_prob, confident.shape[:1]) & jnp.any(confident, -1)
  pick = jax.random.categorical(k_pick, jnp.where(confident, 0.0, -jnp.inf))
  chosen = jnp.take_along_axis(centres, pick[:, None, None], axis=1)[:, 0]
  return views.occlude(k_patch, images, chosen, apply, c.occlude_size)


def eval_heatmaps(config, state, images):
  variables = {"params": state.teacher_params, "batch_stats": state.teacher_batch_stats}
  return common.predict(pose.build_model(config), variables, images)


def eval_heatmap_pairs(config, state, images):
  """(the teacher's heatmaps, as ``eval_heatmaps``; the student's), both in eval mode."""
  student = {"params": state.params, "batch_stats": state.batch_stats}
  return eval_heatmaps(config, state, images), common.predict(pose.build_model(config), student, images)


METHOD = base.Method(name="mean_teacher", init=init, train_step=train_step, eval_heatmaps=eval_heatmaps,
                     uses_style=uses_style, configure=configure, prepare=prepare, load_pretrained=load_pretrained,
                     eval_heatmap_pairs=eval_heatmap_pairs)
