"""EvalPose: joint angles and their cosine on hand-built poses, its invariances, and the evaluator."""

import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax import evaluators, methods, parallel
from dapose_jax.evaluators import evalpose
from dapose_jax.pose import keypoints, metrics, skeletons
from tests.test_train import tiny_config

BODY16 = skeletons.BODY16
HALF_PI = np.pi / 2


def t_pose():
  """Body16 in grid cells: arms straight out along the shoulder line, legs straight down, head up."""
  cells = {"r_wrist": (0, 1), "r_elbow": (1, 1), "r_shoulder": (2, 1), "upper_neck": (3, 1), "l_shoulder": (4, 1),
           "l_elbow": (5, 1), "l_wrist": (6, 1), "head_top": (3, 0), "thorax": (3, 2), "pelvis": (3, 4),
           "r_hip": (2, 4), "l_hip": (4, 4), "r_knee": (2, 5), "l_knee": (4, 5), "r_ankle": (2, 6), "l_ankle": (4, 6)}
  return np.array([cells[name] for name in BODY16.names], np.float32)


def test_body16_angles_of_a_t_pose_by_hand():
  angles = dict(zip(BODY16.angles, np.asarray(metrics.joint_angles(t_pose(), BODY16))))
  # straight elbows, knees and arms along the shoulder line: pi; legs square to the hip line and the head square
  # to the shoulder line: pi / 2
  expected = dict(r_elbow=np.pi, l_elbow=np.pi, r_shoulder=np.pi, l_shoulder=np.pi, r_hip=HALF_PI, l_hip=HALF_PI,
                  r_knee=np.pi, l_knee=np.pi, r_neck=HALF_PI, l_neck=HALF_PI)
  assert angles.keys() == expected.keys()
  np.testing.assert_allclose([angles[k] for k in expected], list(expected.values()), atol=1e-6)


def test_evalpose_of_a_bent_elbow_by_hand():
  bent = t_pose()
  bent[BODY16.names.index("r_wrist")] = (1, 2)  # the right forearm points down: a right angle at the elbow
  visible = np.ones(16)
  # in units of pi / 2, truth [2,2,2,2,1,1,2,2,1,1], prediction [1,2,2,2,1,1,2,2,1,1]: 26 / sqrt(28 * 25)
  np.testing.assert_allclose(float(metrics.evalpose(bent, t_pose(), visible, BODY16)), 26 / np.sqrt(700), rtol=1e-6)
  # without a visible ground-truth right wrist, the elbow's angle is left out and the rest agree
  visible[BODY16.names.index("r_wrist")] = 0
  np.testing.assert_allclose(float(metrics.evalpose(bent, t_pose(), visible, BODY16)), 1.0, rtol=1e-6)


def test_evalpose_of_a_hand_with_one_bent_joint_by_hand():
  rays = np.stack([np.cos(np.linspace(0.3, 1.5, 5)), np.sin(np.linspace(0.3, 1.5, 5))], -1)
  straight = np.concatenate([[[0, 0]], (rays[:, None] * np.arange(1, 5)[None, :, None]).reshape(20, 2)])
  assert len(skeletons.HAND21.angles) == 15
  np.testing.assert_allclose(metrics.joint_angles(straight, skeletons.HAND21), np.pi, atol=1e-5)
  bent = straight.copy()  # index finger's tip turned by a right angle at its DIP (keypoint 7)
  direction = rays[1]
  bent[8] = bent[7] + np.array([-direction[1], direction[0]])
  # 14 angles of pi and one of pi / 2 against 15 of pi: (14 + 1/2) / sqrt(15 * (14 + 1/4))
  np.testing.assert_allclose(float(metrics.evalpose(bent, straight, np.ones(21), skeletons.HAND21)),
                             14.5 / np.sqrt(15 * 14.25), rtol=1e-5)


def random_pose(rng):
  return rng.uniform(0, 64, (16, 2)).astype(np.float32)


def rotated(pose, degrees, scale, shift):
  a = np.radians(degrees)
  return scale * pose @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + shift


def test_evalpose_is_one_for_identical_poses_and_invariant_to_scale_translation_and_rotation():
  rng = np.random.default_rng(0)
  for _ in range(5):
    truth, prediction = random_pose(rng), random_pose(rng)
    visible = (rng.uniform(size=16) > 0.2).astype(np.float32)
    value = float(metrics.evalpose(prediction, truth, visible, BODY16))
    assert 0 < value < 1
    np.testing.assert_allclose(float(metrics.evalpose(truth, truth, visible, BODY16)), 1.0, rtol=1e-6)
    for degrees, scale, shift in [(0, 2.5, (0, 0)), (0, 1, (30, -12)), (73, 1, (0, 0)), (-140, 0.3, (5, 9))]:
      np.testing.assert_allclose(float(metrics.evalpose(rotated(prediction, degrees, scale, shift), truth, visible,
                                                        BODY16)), value, rtol=1e-5)
      np.testing.assert_allclose(float(metrics.evalpose(prediction, rotated(truth, degrees, scale, shift), visible,
                                                        BODY16)), value, rtol=1e-5)


def test_evalpose_is_nan_without_an_angle_and_zero_for_a_collapsed_prediction():
  truth = t_pose()
  assert np.isnan(metrics.evalpose(truth, truth, np.zeros(16), BODY16))
  assert float(metrics.evalpose(np.zeros((16, 2)), truth, np.ones(16), BODY16)) == 0.0
  batch = metrics.evalpose(np.stack([truth, truth]), np.stack([truth, truth]), np.ones((2, 16)), BODY16)
  np.testing.assert_allclose(batch, [1.0, 1.0], rtol=1e-6)


class TPoses:
  """n copies of the T-pose at 4 px per cell (32 px images): on the 8 px heatmaps' grid, so decoding is exact."""
  keypoint_set = BODY16

  def __init__(self, n):
    self.n, self.keypoints = n, 4 * t_pose()

  def __len__(self):
    return self.n

  def __getitem__(self, index):
    return {"image": np.zeros((32, 32, 3), np.uint8), "keypoints": self.keypoints, "visible": np.ones(16, np.float32)}


def test_the_evaluator_reports_evalpose_in_percent_over_the_images():
  config = tiny_config()  # 32 px images, 8 px heatmaps, evaluation batches of 8
  source = TPoses(11)  # a last batch of 3 real samples and 5 padding ones
  truth, _ = keypoints.heatmap_targets(config, {"keypoints": source.keypoints[None], "visible": np.ones((1, 16))})
  perfect = lambda state, images: jnp.broadcast_to(truth, images.shape[:1] + truth.shape[1:])
  corner = lambda state, images: jnp.zeros(images.shape[:1] + truth.shape[1:]).at[:, 0, 0].set(1.0)
  make = lambda predict: evalpose.EvalPose(predict, source, BODY16, config=config, mesh=parallel.make_mesh(),
                                           resize_pad=False)
  e = make(perfect)
  assert (e.keys, e.headline) == (("all",), "all")
  assert e.run(None) == pytest.approx({"all": 100.0})
  assert make(corner).run(None) == {"all": 0.0}  # every keypoint at one point: every angle 0


def test_evalpose_is_an_evaluator_type_beside_pck():
  config = tiny_config()
  config.evals.target_evalpose = dict(type="evalpose", domain="target")
  evals = evaluators.from_config(config, methods.get("source_only"), parallel.make_mesh())
  assert isinstance(evals["target_evalpose"], evalpose.EvalPose) and "target" in evals
