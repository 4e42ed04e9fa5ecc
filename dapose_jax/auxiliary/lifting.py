"""2D -> 3D lifting for the 3D pseudo-labels of geometric reconstruction (issue 15, part 4): a lifting network
trained on the source's 3D keypoints, kinematic constraints from the source, a weak-perspective camera fitted to
project the lifted pose back, and the masks M2D / M3D with their switch to the union.

Definitions (``config.lifting``; K keypoints, the keypoint set's ``edges`` form a tree from ``ROOTS``):

- Input: 2D keypoints normalised by ``pose_vae.normalise`` (centred on the visible ones, divided by their RMS
  radius, invisible ones 0), next to the visibility mask. Output: the pose in camera axes (x right, y down, z away
  from the camera), root-relative and divided by its RMS distance to the root (``normalise_3d``).
- ``LiftingNet``: Martinez et al. (2017)'s residual MLP: Dense(width) -> LayerNorm -> ReLU, then ``blocks``
  residual blocks of two such layers, then Dense(3K). LayerNorm instead of BatchNorm, and no dropout: the lifter
  is a pure function of its parameters, with no batch statistics inside a train step.
- Training: mean over batch and keypoints of |Y_hat - Y|^2, Adam at ``lr``, ``steps`` batches of ``batch_size``
  drawn uniformly with replacement; each keypoint's visibility is zeroed with probability ``input_drop`` (the
  target's pseudo-labels come with a mask).
- Bone-length ratios: r_e = mean_n |X_c - X_p| / mean_n sum_e' |X_c' - X_p'| over the source poses, e = (p, c)
  the tree's bones; ``rescale_bones`` gives a pose the bones d_e / |d_e| * r_e * L (L: its own total length),
  placed from the root outwards, so the directions and the total length stay and the ratios become r_e.
- Joint-angle limits: per triplet of the keypoint set's ``angles``, [low, high] = the ``angle_percentiles`` of the
  3D angle (``metrics.joint_angles``) over the source. A pose is not clamped: a keypoint is plausible if no
  triplet that contains it (as a, j or b) lies outside its limits.
- Camera: weak perspective p_k = s (X_k, Y_k) + t fitted by weighted least squares to the 2D keypoints (weights
  = visibility), closed form: s = sum w <X - X_bar, p - p_bar> / sum w |X - X_bar|^2, t = p_bar - s X_bar
  (bars: weighted means); s = 0 where the lifted points coincide.
- M2D_k = [max of teacher heatmap k >= tau2d]; tau2d < 0: the mean teacher's batch-median rule
  (``losses.median_confidence_mask``). M3D_k = [|proj_k - p2d_k| <= tau3d * box] and keypoint k plausible, box =
  the longer side of the box of the visible 2D keypoints. overlap = |M2D n M3D| / |M2D u M3D| over a batch (0
  when both are empty); below ``overlap_threshold`` each pseudo-label keeps its own mask, from it on (or once
  ``switched``) both use M2D u M3D.
"""

import collections
import logging
from typing import NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dapose_jax import errors
from dapose_jax.auxiliary import fitting, pose_vae
from dapose_jax.pose import losses, metrics

log = logging.getLogger("dapose_jax")

ROOTS = {"body16": 6, "hand21": 0}  # pelvis, wrist


class KinematicTree(NamedTuple):
  """The keypoint set's edges as a tree from ``root``: bone e goes from parents[e] to children[e], in
  breadth-first order; paths[k, e] = 1 where bone e lies on the path from the root to keypoint k."""

  root: int
  parents: tuple[int, ...]
  children: tuple[int, ...]
  paths: np.ndarray


def kinematic_tree(keypoint_set):
  if keypoint_set.name not in ROOTS:
    raise ValueError(f"no kinematic root for {keypoint_set.name} keypoints; lifting knows {sorted(ROOTS)}")
  k, root = keypoint_set.num_keypoints, ROOTS[keypoint_set.name]
  neighbours = collections.defaultdict(list)
  for a, b in keypoint_set.edges:
    neighbours[a].append(b)
    neighbours[b].append(a)
  parents, children, queue, seen = [], [], collections.deque([root]), {root}
  while queue:
    node = queue.popleft()
    for child in neighbours[node]:
      if child not in seen:
        seen.add(child)
        parents.append(node)
        children.append(child)
        queue.append(child)
  if len(seen) != k or len(keypoint_set.edges) != k - 1:
    raise ValueError(f"the edges of {keypoint_set.name} are not a tree over its {k} keypoints")
  paths = np.zeros((k, k - 1), np.float32)
  for e, (parent, child) in enumerate(zip(parents, children)):
    paths[child] = paths[parent]
    paths[child, e] = 1
  return KinematicTree(root, tuple(parents), tuple(children), paths)


@flax.struct.dataclass
class Constraints:
  """Kinematic constraints measured on the source: bone_ratios (E,) in the tree's bone order, angle limits
  (T,) in radians in the order of the keypoint set's ``angles``."""

  bone_ratios: jax.Array
  angle_low: jax.Array
  angle_high: jax.Array


def fit_constraints(keypoints3d, keypoint_set, percentiles=(1.0, 99.0)):
  """The ``Constraints`` of source poses (N, K, 3)."""
  tree = kinematic_tree(keypoint_set)
  poses = np.asarray(keypoints3d, np.float64)
  lengths = np.linalg.norm(poses[:, tree.children] - poses[:, tree.parents], axis=-1)
  angles = np.asarray(metrics.joint_angles(poses, keypoint_set), np.float64)
  low, high = np.percentile(angles, percentiles, axis=0)
  return Constraints(bone_ratios=jnp.asarray(lengths.mean(0) / lengths.sum(1).mean(), jnp.float32),
                     angle_low=jnp.asarray(low, jnp.float32), angle_high=jnp.asarray(high, jnp.float32))


def rescale_bones(pose, tree, bone_ratios):
  """(..., K, 3) root-relative pose whose bones keep the directions of ``pose``'s and have the lengths
  bone_ratios * (``pose``'s total bone length)."""
  bones = pose[..., tree.children, :] - pose[..., tree.parents, :]
  lengths = jnp.linalg.norm(bones, axis=-1)
  directions = bones / jnp.where(lengths > 0, lengths, 1)[..., None]
  scaled = directions * (bone_ratios * jnp.sum(lengths, axis=-1, keepdims=True))[..., None]
  return jnp.einsum("ke,...ed->...kd", tree.paths, scaled)


def plausible(pose, keypoint_set, constraints):
  """(..., K) bool: no angle triplet containing the keypoint lies outside its limits."""
  angles = metrics.joint_angles(pose, keypoint_set)
  outside = (angles < constraints.angle_low) | (angles > constraints.angle_high)
  members = np.zeros((len(keypoint_set.angles), keypoint_set.num_keypoints), bool)
  for t, triplet in enumerate(keypoint_set.angles.values()):
    members[t, list(triplet)] = True
  return ~jnp.any(outside[..., :, None] & members, axis=-2)


def fit_weak_perspective(pose, keypoints2d, weights):
  """(s (...,), t (..., 2)) minimising sum_k w_k |s (X_k, Y_k) + t - p_k|^2 (module docstring)."""
  x, w = pose[..., :2], weights[..., None]
  count = jnp.maximum(jnp.sum(w, axis=-2, keepdims=True), 1e-12)
  x_bar = jnp.sum(w * x, axis=-2, keepdims=True) / count
  p_bar = jnp.sum(w * keypoints2d, axis=-2, keepdims=True) / count
  dx, dp = x - x_bar, keypoints2d - p_bar
  spread = jnp.sum(w * dx ** 2, axis=(-2, -1))
  s = jnp.where(spread > 0, jnp.sum(w * dx * dp, axis=(-2, -1)) / jnp.where(spread > 0, spread, 1), 0.0)
  return s, (p_bar - s[..., None, None] * x_bar)[..., 0, :]


def project(pose, s, t):
  """Weak-perspective projection (..., K, 2) of a pose (..., K, 3)."""
  return s[..., None, None] * pose[..., :2] + t[..., None, :]


def normalise_3d(keypoints3d, keypoint_set):
  """Poses (..., K, 3) minus their root, divided by their RMS distance to it (1 where that is 0)."""
  root = ROOTS[keypoint_set.name]
  offsets = keypoints3d - keypoints3d[..., root:root + 1, :]
  radius = jnp.sqrt(jnp.mean(jnp.sum(offsets ** 2, axis=-1), axis=-1))[..., None, None]
  return offsets / jnp.where(radius > 0, radius, 1)


class LiftingNet(nn.Module):
  """Normalised 2D keypoints (..., K, 2) and visibility (..., K) -> normalised root-relative 3D pose (..., K, 3)."""

  num_keypoints: int
  width: int
  blocks: int

  def _layer(self, h):
    return nn.relu(nn.LayerNorm()(nn.Dense(self.width)(h)))

  @nn.compact
  def __call__(self, keypoints, visible):
    h = self._layer(jnp.concatenate([keypoints.reshape(*keypoints.shape[:-2], -1), visible], axis=-1))
    for _ in range(self.blocks):
      h = h + self._layer(self._layer(h))
    return nn.Dense(3 * self.num_keypoints)(h).reshape(*keypoints.shape[:-2], self.num_keypoints, 3)


def model(lifting_config, keypoint_set):
  return LiftingNet(keypoint_set.num_keypoints, lifting_config.width, lifting_config.blocks)


def lift(net, params, keypoints2d, visible):
  """The lifted pose (..., K, 3) of 2D keypoints (..., K, 2) in any pixel units."""
  visible = jnp.asarray(visible, jnp.float32)
  return net.apply({"params": params}, pose_vae.normalise(jnp.asarray(keypoints2d), visible), visible)


def check(lifting_config):
  for key in ("width", "steps", "batch_size"):
    if not (isinstance(lifting_config[key], int) and lifting_config[key] > 0):
      raise errors.ConfigError(f"config.lifting.{key}={lifting_config[key]!r}: expected a positive whole number")
  if not (isinstance(lifting_config.blocks, int) and lifting_config.blocks >= 0):
    raise errors.ConfigError(f"config.lifting.blocks={lifting_config.blocks!r}: expected a whole number >= 0")
  if not lifting_config.lr > 0:
    raise errors.ConfigError(f"config.lifting.lr={lifting_config.lr!r}: a learning rate must be a positive number")
  if not 0 <= lifting_config.input_drop < 1:
    raise errors.ConfigError(f"config.lifting.input_drop={lifting_config.input_drop!r}: expected a probability in "
                             "[0, 1)")
  low, high = lifting_config.angle_percentiles
  if not 0 <= low < high <= 100:
    raise errors.ConfigError(f"config.lifting.angle_percentiles={lifting_config.angle_percentiles!r}: expected "
                             "(low, high) with 0 <= low < high <= 100")
  if not lifting_config.tau3d > 0:
    raise errors.ConfigError(f"config.lifting.tau3d={lifting_config.tau3d!r}: expected a fraction of the box > 0")
  if not 0 <= lifting_config.overlap_threshold <= 1:
    raise errors.ConfigError(f"config.lifting.overlap_threshold={lifting_config.overlap_threshold!r}: expected an "
                             "overlap in [0, 1]")


def train(lifting_config, keypoint_set, keypoints, visible, keypoints3d):
  """(params, constraints, last batch's loss) of a lifter trained on source poses: 2D (N, K, 2) in pixels with
  visibility (N, K), 3D (N, K, 3) in the camera frame."""
  check(lifting_config)
  net = model(lifting_config, keypoint_set)
  keypoints, visible = jnp.asarray(keypoints, jnp.float32), jnp.asarray(visible, jnp.float32)
  targets = normalise_3d(jnp.asarray(keypoints3d, jnp.float32), keypoint_set)
  init_key, data_key = jax.random.split(jax.random.key(lifting_config.seed))
  params = net.init(init_key, keypoints[:1], visible[:1])["params"]

  def loss(params, key):
    pick, drop = jax.random.split(key)
    batch = jax.random.randint(pick, (lifting_config.batch_size,), 0, len(targets))
    kept = visible[batch] * jax.random.bernoulli(drop, 1 - lifting_config.input_drop, visible[batch].shape)
    error = lift(net, params, keypoints[batch], kept) - targets[batch]
    return jnp.mean(jnp.sum(error ** 2, axis=-1)), {}

  keys = ((jax.random.fold_in(data_key, i),) for i in range(lifting_config.steps))
  params, values = fitting.fit(loss, params, optax.adam(lifting_config.lr), keys, lifting_config.steps,
                               log_every=lifting_config.steps)
  log.info("lifting: trained %d steps, last batch's squared 3D error %.4g", lifting_config.steps, values["loss"])
  return params, fit_constraints(keypoints3d, keypoint_set, lifting_config.angle_percentiles), values["loss"]


def read_poses(source, count=0, num_threads=2):
  """(keypoints (N, K, 2), visible (N, K), keypoints3d (N, K, 3)) float32 of the first ``count`` samples of
  ``source`` (all when ``count`` is 0 or more than it has); the images are read (drawn, for the renderer) too."""
  if "keypoints3d" not in source[0]:
    raise errors.MissingInputError(f"{source!r} has no keypoints3d: the lifting is trained on a source with 3D "
                                   "keypoints (SURREAL, Human3.6M, RHD, FreiHAND, the renderer)")
  return fitting.read_poses(source, ("keypoints", "visible", "keypoints3d"), count, num_threads, name="lifting")


def pseudo_labels_3d(net, params, constraints, keypoint_set, keypoints2d, visible):
  """(projected (..., K, 2), plausible (..., K) bool, pose (..., K, 3)): 2D keypoints lifted, their bones rescaled
  to the source ratios, checked against the angle limits, and projected back with the weak-perspective camera
  fitted to the visible ones."""
  lifted = lift(net, params, keypoints2d, visible)
  pose = rescale_bones(lifted, kinematic_tree(keypoint_set), constraints.bone_ratios)
  s, t = fit_weak_perspective(pose, keypoints2d, jnp.asarray(visible, jnp.float32))
  return project(pose, s, t), plausible(pose, keypoint_set, constraints), pose


def mask_2d(teacher_heatmaps, tau2d):
  """M2D (B, K) float32 of teacher heatmaps (B, H, W, K)."""
  if tau2d < 0:
    return losses.median_confidence_mask(teacher_heatmaps)
  return (jnp.max(teacher_heatmaps, axis=(-3, -2)) >= tau2d).astype(jnp.float32)


def mask_3d(projected, keypoints2d, plausible, visible, tau3d):
  """M3D (..., K) float32: reprojection within tau3d of the visible 2D keypoints' box (longer side), and plausible."""
  seen = jnp.asarray(visible)[..., None] > 0
  high = jnp.max(jnp.where(seen, keypoints2d, -jnp.inf), axis=-2)
  low = jnp.min(jnp.where(seen, keypoints2d, jnp.inf), axis=-2)
  box = jnp.maximum(jnp.max(high - low, axis=-1), 0.0)[..., None]
  near = jnp.linalg.norm(projected - keypoints2d, axis=-1) <= tau3d * box
  return (near & plausible).astype(jnp.float32)


def integrated_masks(m2d, m3d, threshold, switched=False):
  """(mask of the 2D pseudo-labels, mask of the 3D pseudo-labels, overlap, union used): each its own mask while
  overlap < threshold and not ``switched``, else both M2D u M3D. Pass the returned flag back as ``switched`` to
  keep the union once it was reached."""
  union = jnp.maximum(m2d, m3d)
  total = jnp.sum(union)
  overlap = jnp.where(total > 0, jnp.sum(m2d * m3d) / jnp.where(total > 0, total, 1), 0.0)
  use_union = jnp.logical_or(switched, overlap >= threshold)
  return jnp.where(use_union, union, m2d), jnp.where(use_union, union, m3d), overlap, use_union
