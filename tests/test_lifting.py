"""2D -> 3D lifting, kinematic constraints, the weak-perspective camera and the integrated masks (issue 15, part 4)."""

import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax import errors
from dapose_jax.auxiliary import lifting
from dapose_jax.config import defaults
from dapose_jax.data.synthetic import SyntheticPose
from dapose_jax.pose import losses
from dapose_jax.pose.skeletons import BODY16, HAND21

TREE = lifting.kinematic_tree(BODY16)


def build_pose(tree, lengths, directions):
  """Keypoints (K, 3) from bone lengths (E,) and directions (E, 3) along the tree, the root at the origin."""
  pose = np.zeros((len(tree.paths), 3))
  for e, (parent, child) in enumerate(zip(tree.parents, tree.children)):
    pose[child] = pose[parent] + lengths[e] * directions[e] / np.linalg.norm(directions[e])
  return pose


def test_the_kinematic_trees_start_at_the_pelvis_and_the_wrist():
  assert TREE.root == 6 and len(TREE.parents) == 15
  bones_to = lambda tree, k: {(tree.parents[e], tree.children[e]) for e in np.flatnonzero(tree.paths[k])}
  assert bones_to(TREE, 0) == {(6, 2), (2, 1), (1, 0)}  # pelvis -> r_hip -> r_knee -> r_ankle
  assert bones_to(TREE, 15) == {(6, 7), (7, 13), (13, 14), (14, 15)}
  hand = lifting.kinematic_tree(HAND21)
  assert hand.root == 0 and bones_to(hand, 8) == {(0, 5), (5, 6), (6, 7), (7, 8)}  # wrist -> index tip


def test_weak_perspective_fit_recovers_a_known_scale_and_translation_from_the_visible_keypoints():
  rng = np.random.default_rng(0)
  pose = rng.normal(size=(16, 3)).astype(np.float32)
  keypoints = 2.5 * pose[:, :2] + np.array([10.0, -4.0], np.float32)
  visible = np.ones(16, np.float32)
  visible[[3, 7]] = 0
  keypoints[[3, 7]] += 50.0  # wrong where invisible: must not matter
  s, t = lifting.fit_weak_perspective(jnp.asarray(pose), jnp.asarray(keypoints), jnp.asarray(visible))
  np.testing.assert_allclose(float(s), 2.5, rtol=1e-5)
  np.testing.assert_allclose(t, [10.0, -4.0], atol=1e-4)
  projected = lifting.project(jnp.asarray(pose), s, t)
  np.testing.assert_allclose(projected[visible > 0], keypoints[visible > 0], atol=1e-4)
  s, t = lifting.fit_weak_perspective(jnp.zeros((16, 3)), jnp.asarray(keypoints), jnp.asarray(visible))
  assert float(s) == 0 and np.allclose(t, keypoints[visible > 0].mean(0), atol=1e-4)  # coincident points


def test_bone_rescaling_gives_the_source_ratios_exactly_and_keeps_directions():
  rng = np.random.default_rng(1)
  lengths = np.arange(1.0, 16.0)  # bone e of the tree has length e + 1: ratio (e + 1) / 120
  source = np.stack([build_pose(TREE, factor * lengths, rng.normal(size=(15, 3))) for factor in (1.0, 3.0)])
  constraints = lifting.fit_constraints(source, BODY16)
  np.testing.assert_allclose(constraints.bone_ratios, lengths / 120, rtol=1e-6)

  directions = rng.normal(size=(15, 3))
  lifted = build_pose(TREE, rng.uniform(0.2, 2.0, 15), directions) + 5.0  # any lengths, not root-centred
  rescaled = np.asarray(lifting.rescale_bones(jnp.asarray(lifted, jnp.float32), TREE, constraints.bone_ratios))
  bones = rescaled[list(TREE.children)] - rescaled[list(TREE.parents)]
  total = np.linalg.norm(lifted[list(TREE.children)] - lifted[list(TREE.parents)], axis=-1).sum()
  np.testing.assert_allclose(np.linalg.norm(bones, axis=-1), lengths / 120 * total, rtol=1e-5)
  unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)
  np.testing.assert_allclose(unit(bones), unit(directions), atol=1e-5)
  np.testing.assert_array_equal(rescaled[6], 0)  # root-relative


def standing_pose(elbow_degrees):
  """Body16 in metres (x right, y down): upright, knees and left elbow a little bent, the right forearm bent by
  ``elbow_degrees`` at the elbow."""
  pose = np.array([[-0.1, 0.9, 0], [-0.1, 0.45, 0.08], [-0.1, 0, 0], [0.1, 0, 0], [0.1, 0.45, 0.08], [0.1, 0.9, 0],
                   [0, 0, 0], [0, -0.5, 0], [0, -0.6, 0], [0, -0.8, 0], [0, 0, 0], [-0.2, -0.2, 0], [-0.2, -0.5, 0],
                   [0.2, -0.5, 0], [0.25, -0.2, 0.05], [0.3, -0.1, 0.25]])
  theta = np.radians(elbow_degrees)  # angle between elbow -> shoulder (up) and elbow -> wrist
  pose[10] = pose[11] + 0.25 * np.array([0, -np.cos(theta), np.sin(theta)])
  return pose


def test_angle_limits_are_source_percentiles_and_flag_a_pose_bent_beyond_them():
  rng = np.random.default_rng(2)
  source = np.stack([standing_pose(e) + rng.uniform(-0.01, 0.01, (16, 3)) for e in np.linspace(60, 160, 101)])
  constraints = lifting.fit_constraints(source, BODY16, percentiles=(1.0, 99.0))
  r_elbow = list(BODY16.angles).index("r_elbow")
  # the 1st / 99th percentiles of 60..160 degrees in 1-degree steps, up to the 1 cm jitter
  assert abs(np.degrees(constraints.angle_low[r_elbow]) - 61) < 3
  assert abs(np.degrees(constraints.angle_high[r_elbow]) - 159) < 3

  assert bool(jnp.all(lifting.plausible(jnp.asarray(standing_pose(110), jnp.float32), BODY16, constraints)))
  bent = lifting.plausible(jnp.asarray(standing_pose(25), jnp.float32), BODY16, constraints)
  np.testing.assert_array_equal(np.flatnonzero(~np.asarray(bent)), [10, 11, 12])  # the r_elbow triplet


def test_the_masks_switch_to_the_union_from_the_overlap_threshold_on():
  m2d = jnp.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], jnp.float32)
  m3d = jnp.array([[1, 1, 0, 1, 0], [1, 1, 0, 0, 0]], jnp.float32)  # |n| = 4, |u| = 6
  for threshold in (0.7, 0.8):  # overlap 2/3 is below both
    own_2d, own_3d, overlap, switched = lifting.integrated_masks(m2d, m3d, threshold)
    assert float(overlap) == pytest.approx(2 / 3) and not bool(switched)
    np.testing.assert_array_equal(own_2d, m2d)
    np.testing.assert_array_equal(own_3d, m3d)
  m3d = m3d.at[0, 3].set(0)  # |n| = 4, |u| = 5: overlap exactly 0.8
  assert float(lifting.integrated_masks(m2d, m3d, 0.8)[2]) == pytest.approx(0.8)
  for both in lifting.integrated_masks(m2d, m3d, 0.8)[:2]:
    np.testing.assert_array_equal(both, jnp.maximum(m2d, m3d))
  np.testing.assert_array_equal(lifting.integrated_masks(m2d, m3d, 0.81)[1], m3d)
  reached = lifting.integrated_masks(m2d, m3d, 0.8)[3]
  latched = lifting.integrated_masks(m2d, m3d, 0.81, switched=reached)  # the caller keeps the flag
  np.testing.assert_array_equal(latched[1], jnp.maximum(m2d, m3d))
  assert float(lifting.integrated_masks(jnp.zeros((2, 5)), jnp.zeros((2, 5)), 0.8)[2]) == 0


def test_m2d_is_the_peak_threshold_or_the_mean_teachers_median_rule_and_m3d_the_reprojection_test():
  rng = np.random.default_rng(3)
  heatmaps = jnp.asarray(rng.uniform(size=(4, 8, 8, 5)), jnp.float32)
  peaks = np.asarray(jnp.max(heatmaps, axis=(1, 2)))
  np.testing.assert_array_equal(lifting.mask_2d(heatmaps, 0.97), (peaks >= 0.97).astype(np.float32))
  np.testing.assert_array_equal(lifting.mask_2d(heatmaps, -1.0), losses.median_confidence_mask(heatmaps))

  keypoints = jnp.array([[0.0, 0.0], [100.0, 0.0], [0.0, 50.0], [500.0, 500.0]])  # the last is invisible
  visible = jnp.array([1.0, 1.0, 1.0, 0.0])  # box: 100 x 50 -> longer side 100
  projected = keypoints + jnp.array([[5.0, 0.0], [0.0, 5.1], [3.0, 4.0], [0.0, 0.0]])
  ok = jnp.array([True, True, True, True])
  np.testing.assert_array_equal(lifting.mask_3d(projected, keypoints, ok, visible, 0.05), [1, 0, 1, 1])
  np.testing.assert_array_equal(lifting.mask_3d(projected, keypoints, ok.at[0].set(False), visible, 0.05),
                                [0, 0, 1, 1])


def rendered(style, split, n):
  source = SyntheticPose(style, split, n, image_size=64)
  samples = [source[i] for i in range(n)]
  return [np.stack([s[key] for s in samples]) for key in ("keypoints", "visible", "keypoints3d")]


def test_a_lifter_trained_on_rendered_poses_beats_the_mean_pose_and_reprojects_close_to_its_input():
  config = defaults.base_config().lifting
  config.update(width=128, steps=400, batch_size=128)
  train = rendered("source", "train", 1024)
  params, constraints, _ = lifting.train(config, BODY16, *train)
  keypoints, visible, keypoints3d = rendered("source", "test", 256)
  truth = lifting.normalise_3d(jnp.asarray(keypoints3d), BODY16)
  error = lambda pose: float(jnp.mean(jnp.linalg.norm(pose - truth, axis=-1)))
  net = lifting.model(config, BODY16)
  lifted = error(lifting.lift(net, params, keypoints, visible))
  mean_pose = error(lifting.normalise_3d(jnp.asarray(train[2]), BODY16).mean(0))
  # measured: 0.24 against 0.50 (normalised units: the RMS distance to the pelvis is 1)
  assert lifted < 0.6 * mean_pose

  projected, plausible, _ = lifting.pseudo_labels_3d(net, params, constraints, BODY16, keypoints, visible)
  box = (keypoints.max(1) - keypoints.min(1)).max(-1)[:, None]
  residual = np.linalg.norm(np.asarray(projected) - keypoints, axis=-1) / box
  assert np.median(residual) < 0.05  # measured 0.032
  assert 0.7 < float(jnp.mean(plausible)) < 1  # measured 0.83 with limits from 1024 source poses


@pytest.mark.parametrize("key, value", [("width", 0), ("blocks", -1), ("lr", 0.0), ("input_drop", 1.0),
                                        ("angle_percentiles", (99.0, 1.0)), ("tau3d", 0.0),
                                        ("overlap_threshold", 1.5)])
def test_bad_lifting_settings_are_config_errors_naming_the_key(key, value):
  config = defaults.base_config().lifting
  config[key] = value
  with pytest.raises(errors.ConfigError, match=f"config.lifting.{key}="):
    lifting.check(config)
