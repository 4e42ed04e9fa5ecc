import cv2
import numpy as np
import pytest

from dapose_jax.data.synthetic import SyntheticPose
from dapose_jax.pose import skeletons

N = 24


@pytest.fixture(scope="module")
def samples():
  return {style: [SyntheticPose(style, "train", N)[i] for i in range(N)]
          for style in ("source", "target")}


@pytest.mark.parametrize("style", ["source", "target"])
def test_sample_format(style):
  sample = SyntheticPose(style, "train", 4, image_size=96)[3]
  assert sample["image"].shape == (96, 96, 3) and sample["image"].dtype == np.uint8
  assert sample["keypoints"].shape == (16, 2) and sample["keypoints"].dtype == np.float32
  assert sample["visible"].shape == (16,) and sample["visible"].dtype == np.float32
  assert SyntheticPose.keypoint_set is skeletons.BODY16


@pytest.mark.parametrize("style", ["source", "target"])
def test_same_index_gives_identical_bytes_in_any_order(style):
  forward = SyntheticPose(style, "train", 10, seed=3)
  backward = SyntheticPose(style, "train", 10, seed=3)
  first = [forward[i] for i in range(10)]
  second = [backward[i] for i in reversed(range(10))][::-1]
  for a, b in zip(first, second):
    assert a["image"].tobytes() == b["image"].tobytes()
    assert a["keypoints"].tobytes() == b["keypoints"].tobytes()
    assert a["visible"].tobytes() == b["visible"].tobytes()


def test_indices_splits_seeds_and_styles_differ():
  def image(style="source", split="train", seed=0, index=0):
    return SyntheticPose(style, split, 5, seed=seed)[index]["image"]

  reference = image()
  for other in (image(index=1), image(split="test"), image(seed=1), image(style="target")):
    assert not np.array_equal(reference, other)


def test_rejects_bad_arguments():
  with pytest.raises(ValueError):
    SyntheticPose("cartoon", "train", 5)
  with pytest.raises(ValueError):
    SyntheticPose("source", "holdout", 5)
  with pytest.raises(IndexError):
    SyntheticPose("source", "train", 5)[5]


def test_visibility_marks_keypoints_inside_the_image(samples):
  for style, rendered in samples.items():
    for s in rendered:
      inside = np.all((s["keypoints"] >= 0) & (s["keypoints"] < 128), axis=1)
      np.testing.assert_array_equal(s["visible"], inside.astype(np.float32))
  source_visible = np.mean([s["visible"] for s in samples["source"]])
  target_visible = np.mean([s["visible"] for s in samples["target"]])
  assert source_visible == 1.0  # source figures always fit
  assert target_visible > 0.85  # target crops may cut a few joints off


def test_figures_fill_a_person_crop(samples):
  for rendered in samples.values():
    for s in rendered:
      extent = np.ptp(s["keypoints"], axis=0).max()
      assert extent > 0.4 * 128


def test_keypoints_lie_on_the_drawn_figure(samples):
  """On plain source backgrounds nearly every joint pixel has a figure colour."""
  on_figure = []
  for s in samples["source"]:
    image = s["image"]
    corners = image[[0, 0, -1, -1], [0, -1, 0, -1]]
    if not (corners == corners[0]).all():
      continue  # gradient background
    for x, y in s["keypoints"].astype(int):
      on_figure.append(np.abs(image[y, x].astype(int) - corners[0]).sum() > 0)
  assert len(on_figure) >= 5 * 16
  assert np.mean(on_figure) > 0.9


def _texture_energy(image):
  """Mean absolute Laplacian of the grey image: high for clutter, texture and noise."""
  grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
  return np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean()


def test_domains_differ_in_image_statistics(samples):
  source, target = samples["source"], samples["target"]
  source_energy = np.mean([_texture_energy(s["image"]) for s in source])
  target_energy = np.mean([_texture_energy(s["image"]) for s in target])
  assert target_energy > 3 * source_energy
  # Source backgrounds are mostly flat: a large share of pixels repeat the corner colour.
  flat = np.mean([(s["image"] == s["image"][0, 0]).all(-1).mean() for s in source])
  flat_target = np.mean([(s["image"] == s["image"][0, 0]).all(-1).mean() for s in target])
  assert flat > 0.3 and flat_target < 0.05
  # The target figures wear muted colours instead of saturated part colours.
  def figure_saturation(rendered):
    values = []
    for s in rendered:
      hsv = cv2.cvtColor(s["image"], cv2.COLOR_RGB2HSV)
      x, y = np.clip(s["keypoints"][[6, 7]].mean(0).astype(int), 0, 127)  # middle of the torso
      values.append(hsv[y, x, 1])
    return np.mean(values)
  assert figure_saturation(source) > figure_saturation(target) + 40


def test_render_at_256_scales_the_figure():
  small = SyntheticPose("source", "train", 1, image_size=128)[0]
  large = SyntheticPose("source", "train", 1, image_size=256)[0]
  np.testing.assert_allclose(large["keypoints"], 2 * small["keypoints"], rtol=1e-5, atol=1e-3)
  assert large["image"].shape == (256, 256, 3)
