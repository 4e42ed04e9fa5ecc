"""Geometric reconstruction with integrated pseudo-labelling (seed: "Synthetic-to-Real Pose Estimation with
Geometric Reconstruction", NeurIPS 2023; no public code: every piece is defined here and in docs/geometric.md).

Stages: the AdaIN network and stage 1 as the mean teacher's (``mean_teacher.prepare``); then, with the
reconstruction term, the generator pre-trained on source pairs with stage 1's predicted keypoints (method
``reconstruction`` into WORKDIR/reconstruction, unless ``config.geometric.generator`` names a network file); then
stage 2, the mean teacher's step (``mean_teacher.train_step``) with two changes (``STEP_EXTENSION``) that ``ablation``
selects:

- Integrated pseudo-labels ("pseudo", "both"): T the teacher's heatmaps in the base frame, p_k its argmax
  (heatmap pixels), M2D = ``lifting.mask_2d(T, config.lifting.tau2d)`` (tau2d < 0: the mean teacher's batch-median
  mask). The 3D pseudo-label q_k: p lifted by the lifter (visibility M2D: lifted from the confident keypoints), bones
  rescaled to the source's ratios, projected with the weak-perspective camera fitted to the confident keypoints
  (``lifting.pseudo_labels_3d``); M3D = ``lifting.mask_3d`` (q_k within tau3d of the box of all p, and k plausible).
  The 2D loss ConsLoss(S, rectify(T), m2) plus ``pseudo3d_weight`` x ConsLoss(S, G(q), m3 x in-grid), G the
  reference Gaussian targets, replaces ConsLoss(S, rectify(T), M2D); (m2, m3) = (M2D, M3D) while the batch overlap
  |M2D n M3D| / |M2D u M3D| is below ``config.lifting.overlap_threshold``, and M2D u M3D for both from the first
  step it reaches it on (``State.union``, kept for the rest of the run).
- Reconstruction ("reconstruction", "both"): a base/driving pair of each target crop: the target's own pair when
  ``config.target.pairs`` (the renderer's two poses, a video data set's two frames), else a random view of the base
  crop (``reconstruction.view_pair``, ``config.reconstruction.driving_view``: "two views of the same image"). Base
  keypoints: the soft-argmax (``pose.decoding.heatmap_keypoints``) of S, the student's prediction warped
  back to the base frame; driving keypoints: the soft-argmax of the student's train-mode prediction of the driving
  image. The frozen generator (eval mode) reconstructs the driving image from the base image and both;
  ``reconstruction_weight`` x its loss (``methods.reconstruction.loss_terms``: L1 + perceptual) is added, its
  gradient reaching the pose network through the keypoints only.
"baseline" is the mean teacher with this method's stages (bit-identical to ``mean_teacher`` when tau2d < 0).

The lifter is trained when a stage-2 run starts (``load_pretrained``) on the first ``config.lifting.poses`` source
training samples' 2D and 3D keypoints (``lifting.train``), deterministically from ``config.lifting.seed``, and kept
in the state with its constraints, so a resumed run reads it from the checkpoint.
"""

import dataclasses
import functools
import logging

import flax
import jax
import jax.numpy as jnp

from dapose_jax import errors
from dapose_jax.augment import device_augment
from dapose_jax.auxiliary import lifting
from dapose_jax.data import sources
from dapose_jax.methods import base, mean_teacher, reconstruction
from dapose_jax.pose import decoding, keypoints, losses, skeletons

log = logging.getLogger("dapose_jax")

# ablation -> (integrated pseudo-labels, reconstruction): the rows of the paper's Table A
ABLATIONS = {"baseline": (False, False), "pseudo": (True, False), "reconstruction": (False, True),
             "both": (True, True)}


@flax.struct.dataclass
class State(mean_teacher.State):
  """The mean teacher's state plus the frozen lifter, its constraints and the frozen generator and encoder ({}
  where the ablation does not use them), and whether the union of the masks is in use."""
  lifter: dict
  constraints: object
  generator: dict
  encoder: dict
  union: jax.Array


def settings(config):
  return config.geometric


def parts(config):
  """(integrated pseudo-labels, reconstruction) of ``config.geometric.ablation``."""
  ablation = settings(config).ablation
  if ablation not in ABLATIONS:
    raise errors.ConfigError(f"config.geometric.ablation={ablation!r}: expected one of {', '.join(ABLATIONS)}")
  return ABLATIONS[ablation]


def _keypoint_set(config):
  return skeletons.get(config.source.keypoint_set)


def configure(config):
  """The mean teacher's run, with every geometric setting checked."""
  pseudo, rec = parts(config)
  g = settings(config)
  for key in ("pseudo3d_weight", "reconstruction_weight"):
    if not g[key] >= 0:
      raise errors.ConfigError(f"config.geometric.{key}={g[key]!r}: expected a weight >= 0")
  if pseudo:
    lifting.check(config.lifting)
    if _keypoint_set(config).name not in lifting.ROOTS:
      raise errors.ConfigError(f"config.geometric.ablation={g.ablation!r} lifts {_keypoint_set(config).name} "
                               f"keypoints; the lifting knows {sorted(lifting.ROOTS)}: use ablation 'baseline' or "
                               "'reconstruction'")
  if rec:
    reconstruction.check(config)
  return mean_teacher.configure(config)


def _earlier(config):
  """``config`` for a stage before stage 2: single target images and no evaluators of pseudo-labels, which only
  stage 2 makes."""
  config = base.updated(config, target={"pairs": False})
  config.evals = {name: spec for name, spec in config.evals.items() if spec.get("type") != "pseudo_labels"}
  return config


def prepare(config, workdir):
  """The mean teacher's stages, with the generator's pre-training (stage 1's keypoints) before stage 2."""
  stages = mean_teacher.prepare(config, workdir)
  own = stages[-1]
  stages = [base.Stage(s.name, _earlier(s.config), s.workdir) for s in stages[:-1]]
  if not parts(own.config)[1] or own.config.geometric.generator:
    return [*stages, own]
  net = workdir / "reconstruction" / reconstruction.NET
  generator = reconstruction.METHOD.stages(base.updated(_earlier(own.config), method="reconstruction", reconstruction={
      "keypoints": "predictor", "predictor": own.config.geometric.pretrained, "net": str(net)}), workdir)
  own = base.Stage(own.name, base.updated(own.config, geometric={"generator": str(net)}), own.workdir)
  return [*stages, *generator, own]


def init(config, rng):
  pseudo, rec = parts(config)
  state = mean_teacher.init(config, rng)
  k = _keypoint_set(config).num_keypoints
  lifter, constraints = {}, {}
  if pseudo:
    lifter = lifting.model(config.lifting, _keypoint_set(config)).init(
        jax.random.key(config.lifting.seed), jnp.zeros((1, k, 2)), jnp.zeros((1, k)))["params"]
    tree = lifting.kinematic_tree(_keypoint_set(config))
    angles = len(_keypoint_set(config).angles)
    constraints = lifting.Constraints(bone_ratios=jnp.zeros(len(tree.parents)), angle_low=jnp.zeros(angles),
                                      angle_high=jnp.zeros(angles))
  generator = reconstruction.template(config, k) if rec else {}
  encoder = reconstruction.encoder_template(config) if rec else {}
  return State(**{f.name: getattr(state, f.name) for f in dataclasses.fields(state)}, lifter=lifter,
               constraints=constraints, generator=generator, encoder=encoder, union=jnp.zeros((), bool))


def load_pretrained(config, state):
  """The mean teacher's (stage 1, style network), the lifter trained on the source's poses, the generator."""
  state = mean_teacher.load_pretrained(config, state)
  pseudo, rec = parts(config)
  if pseudo:
    source = sources.make_source(config.source, "train")
    poses = lifting.read_poses(source, config.lifting.poses, config.data.num_threads)
    log.info("geometric: lifting trained on %d source poses", len(poses[0]))
    lifter, constraints, _ = lifting.train(config.lifting, _keypoint_set(config), *poses)
    state = state.replace(lifter=lifter, constraints=constraints)
  if rec:
    state = state.replace(generator=reconstruction.load(config, _keypoint_set(config).num_keypoints,
                                                        settings(config).generator),
                          encoder=reconstruction.perceptual_encoder(config))
  return state


def integrated_pseudo_labels(config, state, teacher_maps, mask_2d):
  """The 2D and 3D pseudo-labels of teacher heatmaps (B, H, W, K) with the masks that supervise them:
  {"labels_2d", "mask_2d", "labels_3d", "mask_3d", "used_2d", "used_3d"} ((B, K, 2) heatmap pixels, (B, K)),
  "overlap" and "union" (scalars)."""
  peaks, _ = decoding.argmax_2d(teacher_maps)
  projected, plausible, _ = lifting.pseudo_labels_3d(lifting.model(config.lifting, _keypoint_set(config)),
                                                     state.lifter, state.constraints, _keypoint_set(config), peaks,
                                                     mask_2d)
  mask_3d = lifting.mask_3d(projected, peaks, plausible, jnp.ones_like(mask_2d), config.lifting.tau3d)
  used_2d, used_3d, overlap, union = lifting.integrated_masks(mask_2d, mask_3d, config.lifting.overlap_threshold,
                                                              state.union)
  return dict(labels_2d=peaks, mask_2d=mask_2d, labels_3d=projected, mask_3d=mask_3d, used_2d=used_2d,
              used_3d=used_3d, overlap=overlap, union=union)


def step_changes(config, state, driving, context):
  """The ``mean_teacher.StepChanges`` of the ablation's parts (module docstring) for the driving float images and
  the mean teacher's ``StepContext``."""
  g = settings(config)
  pseudo, rec = parts(config)
  changes = mean_teacher.StepChanges()
  if pseudo:
    mask_2d = lifting.mask_2d(context.teacher_maps, config.lifting.tau2d)
    labels = jax.tree.map(jax.lax.stop_gradient, integrated_pseudo_labels(config, state, context.teacher_maps,
                                                                          mask_2d))
    stride = config.image_size / config.heatmap_size
    render = functools.partial(keypoints.gaussian_targets, image_size=config.image_size,
                               heatmap_size=config.heatmap_size, sigma=config.sigma)
    targets_3d, in_grid = jax.vmap(render)(labels["labels_3d"] * stride, jnp.ones_like(labels["mask_3d"]))

    def consistency(student_maps):
      term_2d = losses.consistency(student_maps, context.rectified, labels["used_2d"])
      term_3d = losses.consistency(student_maps, targets_3d, labels["used_3d"] * in_grid)
      return term_2d + g.pseudo3d_weight * term_3d, {"consistency_2d": term_2d, "consistency_3d": term_3d}

    changes = changes._replace(consistency=consistency, state_fields={"union": labels["union"]}, metrics=dict(
        overlap=labels["overlap"], union=labels["union"].astype(jnp.float32),
        mask_fraction_3d=jnp.mean(labels["mask_3d"])))
  if rec:
    model, base_images = context.model, context.base

    def extra(params, batch_stats, student_maps):
      out, updates = model.apply({"params": params, "batch_stats": batch_stats}, device_augment.normalize(driving),
                                 train=True, mutable=["batch_stats"])
      kp_base = decoding.heatmap_keypoints(config, student_maps)
      kp_driving = decoding.heatmap_keypoints(config, out["heatmaps"])
      image = reconstruction.model(config).apply(state.generator, base_images / 255.0, kp_base, kp_driving,
                                                 train=False)["image"]
      value, terms = reconstruction.loss_terms(config, image, driving / 255.0, state.encoder)
      return g.reconstruction_weight * value, {"reconstruction": value, **{f"reconstruction_{k}": v
                                                                          for k, v in terms.items()}}, \
          updates["batch_stats"]

    changes = changes._replace(extra=extra)
  return changes


def driving_images(config, state, target):
  """(base batch, driving float images): the target's pair, or a random view of its base crop."""
  if config.target.pairs:
    return target["base"], target["driving"]["image"].astype(jnp.float32)
  pair = reconstruction.view_pair(config, reconstruction.driving_key(config, state.step), target)
  return target, pair["driving"]["image"]


STEP_EXTENSION = mean_teacher.StepExtension(inputs=driving_images, changes=step_changes)


def pseudo_labels(config, state, images):
  """The pseudo-labels of the teacher's eval-mode heatmaps of uint8 images (for the evaluator "pseudo_labels");
  without the integrated pseudo-labels, the 2D ones under M2D and no 3D ones."""
  teacher_maps = mean_teacher.eval_heatmaps(config, state, images)
  mask_2d = lifting.mask_2d(teacher_maps, config.lifting.tau2d)
  if parts(config)[0]:
    return integrated_pseudo_labels(config, state, teacher_maps, mask_2d)
  peaks, _ = decoding.argmax_2d(teacher_maps)
  none = jnp.zeros_like(mask_2d)
  return dict(labels_2d=peaks, mask_2d=mask_2d, labels_3d=peaks, mask_3d=none, used_2d=mask_2d, used_3d=none,
              overlap=jnp.zeros(()), union=jnp.zeros((), bool))


METHOD = base.Method(name="geometric", init=init,
                     train_step=functools.partial(mean_teacher.train_step, step_extension=STEP_EXTENSION),
                     eval_heatmaps=mean_teacher.eval_heatmaps, reads=("reconstruction",),
                     uses_style=mean_teacher.uses_style, configure=configure, prepare=prepare,
                     load_pretrained=load_pretrained, pseudo_labels=pseudo_labels,
                     eval_heatmap_pairs=mean_teacher.eval_heatmap_pairs)
