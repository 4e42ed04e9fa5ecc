"""The embedded renderer's 3D keypoints and base/driving pairs (issue 15, part 1)."""

import hashlib

import numpy as np
import pytest
from ml_collections import ConfigDict

from dapose_jax import errors
from dapose_jax.config import defaults
from dapose_jax.data import sources, synthetic
from dapose_jax.data.synthetic import SyntheticPose

# sha256 (first 16 hex digits) of the image bytes and of the keypoint + visibility bytes of samples rendered by
# the code before 3D keypoints and pairs were added (commit 2b56168; OpenCV 5.1.0, NumPy 2.5.5): the README's demo
# numbers depend on these samples staying the same.
RECORDED = {
    ("source", "train", 0, 0, 128): ("42b4b6b97c7cf109", "4ba9f5747825e4b8"),
    ("source", "test", 3, 7, 128): ("0558d1cd1ebc9745", "b5018f36534e45e5"),
    ("target", "train", 0, 1, 128): ("b026ca0ba8e7e113", "fbfc4b0e9adb67ff"),
    ("target", "val", 5, 11, 96): ("bd9e5f679f7e3837", "23a7cfd2a7770ac9"),
    ("target", "train", 2, 4, 256): ("20eaa291565a1ab5", "f00ddf15d256f9f8"),
    ("source", "train", 1, 19, 64): ("7d7605e33777beb7", "abc3e5dab5fab9d1"),
}


def digests(sample):
  return (hashlib.sha256(sample["image"].tobytes()).hexdigest()[:16],
          hashlib.sha256(sample["keypoints"].tobytes() + sample["visible"].tobytes()).hexdigest()[:16])


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_samples_and_pair_bases_are_bit_identical_to_the_renderer_before_pairs(case):
  style, split, seed, index, size = case
  plain = SyntheticPose(style, split, index + 1, image_size=size, seed=seed)[index]
  pair = SyntheticPose(style, split, index + 1, image_size=size, seed=seed, pairs=True)[index]
  assert digests(plain) == digests(pair["base"]) == RECORDED[case]


@pytest.fixture(scope="module")
def pairs():
  return {style: [SyntheticPose(style, "train", 12, image_size=64, pairs=True)[i] for i in range(12)]
          for style in synthetic.STYLES}


def samples_of(pairs):
  return [s for by_style in pairs.values() for pair in by_style for s in (pair["base"], pair["driving"])]


def test_keypoints3d_project_to_the_keypoints_through_the_intrinsics(pairs):
  for s in samples_of(pairs):
    assert s["keypoints3d"].shape == (16, 3) and s["keypoints3d"].dtype == np.float32
    assert np.all(s["keypoints3d"][:, 2] > 0)  # in front of the camera
    homogeneous = s["keypoints3d"].astype(np.float64) @ s["intrinsic_matrix"].T.astype(np.float64)
    np.testing.assert_allclose(homogeneous[:, :2] / homogeneous[:, 2:], s["keypoints"], atol=1e-3)


def test_keypoints3d_are_metres_in_the_camera_frame_with_the_pelvis_on_the_axis(pairs):
  for style, by_style in pairs.items():
    low, high = synthetic._STYLES[style].distance
    for pair in by_style:
      for s in (pair["base"], pair["driving"]):
        pelvis = s["keypoints3d"][6]
        np.testing.assert_allclose(pelvis[:2], 0, atol=1e-6)  # the camera looks at the pelvis
        assert low <= pelvis[2] <= high
        # the hips are 2 x 0.09 m apart in every body (segment lengths vary, the hip width does not)
        np.testing.assert_allclose(np.linalg.norm(s["keypoints3d"][2] - s["keypoints3d"][3]), 0.18, rtol=1e-5)


def test_a_pair_is_one_figure_in_two_nearby_poses(pairs):
  edges = np.array(SyntheticPose.keypoint_set.edges)
  moved = []
  for pair in pairs["source"] + pairs["target"]:
    base, driving = pair["base"]["keypoints3d"], pair["driving"]["keypoints3d"]
    bone = lambda p: np.linalg.norm(p[edges[:, 0]] - p[edges[:, 1]], axis=-1)
    np.testing.assert_allclose(bone(driving), bone(base), rtol=1e-5)  # same segment lengths
    np.testing.assert_array_equal(driving[6], base[6])  # the pelvis stays put
    np.testing.assert_array_equal(pair["driving"]["intrinsic_matrix"], pair["base"]["intrinsic_matrix"])
    moved.append(np.linalg.norm(pair["driving"]["keypoints"] - pair["base"]["keypoints"], axis=-1).mean())
  # a short motion: measured 3.2 (source) and 4.0 (target) pixels on average at 128 px, here at 64 px
  assert 0.5 < min(moved) and max(moved) < 6 and 1 < np.mean(moved) < 3


@pytest.mark.parametrize("style", synthetic.STYLES)
def test_without_motion_the_driving_sample_is_the_base_bit_for_bit(style):
  pair = SyntheticPose(style, "train", 3, image_size=64, seed=4, pairs=True, motion=0.0)[2]
  for key, value in pair["base"].items():
    assert value.tobytes() == pair["driving"][key].tobytes(), key


def test_driving_angles_move_at_most_motion_times_the_range_and_stay_within_limits():
  rest, low, high = np.radians(synthetic._ANGLE_TABLE.T)
  rng = np.random.default_rng(0)
  for _ in range(200):
    angles = synthetic._sample_angles(rng, rng.uniform())
    moved = synthetic._move_angles(rng, angles, 0.1)
    assert np.all(np.abs(moved - angles) <= 0.1 * (high - low) + 1e-12)
    assert np.all((moved >= low) & (moved <= high))
  extreme = synthetic._move_angles(rng, high.copy(), 1.0)
  assert np.all(extreme <= high) and np.any(extreme < high)


def test_a_synthetic_source_opened_with_pairs_gives_pairs():
  config = defaults.domain("synthetic", style="target", seed=0, train_size=3, test_size=2, render_size=32)
  assert config.pairs is False
  assert set(sources.make_source(config, "test")[1]) == {"image", "keypoints", "visible", "keypoints3d",
                                                         "intrinsic_matrix"}
  pair = sources.make_source(config, "test", pairs=True)[1]
  assert set(pair) == {"base", "driving"} and pair["driving"]["image"].shape == (32, 32, 3)


def test_a_built_data_set_refuses_pairs_before_reading_anything(tmp_path):
  config = ConfigDict(dict(name="lsp", keypoint_set="body16", data_dir=str(tmp_path / "missing"), pairs=True))
  with pytest.raises(errors.ConfigError, match="'lsp' has no pair index"):
    sources.make_source(config, "train", pairs=True)
