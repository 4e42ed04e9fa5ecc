"""The "pseudo_labels" evaluator: accuracy, selection, overlap and stability of a method's pseudo-labels, checked
against hand-counted values of labels built from the truth."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax import evaluators, methods, parallel
from dapose_jax.evaluators import pseudo_labels
from dapose_jax.methods import base
from dapose_jax.pose import skeletons
from dapose_jax.run import loop
from tests.test_train import tiny_config

K = 16
INVISIBLE = (14, 15)


class IndexedPose:
  """n samples of 32 px images (the tiny config's input size, so the test transform keeps the keypoints) whose
  every pixel is the sample's index; random keypoints, all visible but 14 and 15."""
  keypoint_set = skeletons.BODY16

  def __init__(self, n):
    self.keypoints = np.random.default_rng(0).uniform(2, 30, (n, K, 2)).astype(np.float32)
    self.visible = np.ones(K, np.float32)
    self.visible[list(INVISIBLE)] = 0

  def __len__(self):
    return len(self.keypoints)

  def __getitem__(self, index):
    return {"image": np.full((32, 32, 3), index, np.uint8), "keypoints": self.keypoints[index],
            "visible": self.visible}


def keypoints_in(*ranges):
  """(K,) bool: True at the keypoints of the given (start, stop) ranges and single indices."""
  out = np.zeros(K, bool)
  for r in ranges:
    out[slice(*r) if isinstance(r, tuple) else r] = True
  return out


# state {"round": 0 or 1} -> the labels. Round 0: 2D labels 1 px off (wrong: the threshold is 0.05 * 8 = 0.4 px)
# at keypoints 0-3, and at every keypoint of samples 5 on, else 0.22 px off (right); M2D = 0-9 and 14; union off.
# Round 1: 2D labels wrong at 0-5 of every sample; M2D = 2-11 and 14; union on. Both rounds: 3D labels 0.5 px off
# (wrong) at 0, 1, 8 and 9, else exact; M3D = 6-13 and 15.
WRONG_2D = {0: keypoints_in((0, 4)), 1: keypoints_in((0, 6))}
MASK_2D = {0: keypoints_in((0, 10), 14), 1: keypoints_in((2, 12), 14)}
WRONG_3D = keypoints_in((0, 2), (8, 10))
MASK_3D = keypoints_in((6, 14), 15)


def fake_method(source):
  truth = jnp.asarray(source.keypoints / 4)  # heatmap pixels: 32 px inputs, 8 px heatmaps

  def labels(config, state, images):
    index = images[:, 0, 0, 0].astype(jnp.int32)
    second = state["round"] == 1
    wrong_2d = jnp.where(second, WRONG_2D[1], WRONG_2D[0] | (index[:, None] >= 5))
    m2d = jnp.broadcast_to(jnp.where(second, MASK_2D[1], MASK_2D[0]), index.shape + (K,)).astype(jnp.float32)
    m3d = jnp.broadcast_to(MASK_3D, index.shape + (K,)).astype(jnp.float32)
    union = jnp.maximum(m2d, m3d)
    return {"labels_2d": truth[index] + jnp.where(wrong_2d[..., None], jnp.array([1.0, 0.0]), jnp.array([0.2, 0.1])),
            "mask_2d": m2d, "labels_3d": truth[index] + jnp.where(WRONG_3D[:, None], jnp.array([0.0, 0.5]), 0.0),
            "mask_3d": m3d, "used_2d": jnp.where(second, union, m2d), "used_3d": jnp.where(second, union, m3d),
            "union": second}

  return base.Method(name="fake", init=None, train_step=None, eval_heatmaps=lambda config, state, images: None,
                     pseudo_labels=labels)


def evaluator(source, **settings):
  return pseudo_labels.PseudoLabels(None, source, source.keypoint_set, config=tiny_config(), mesh=parallel.make_mesh(),
                                    resize_pad=False, method=fake_method(source), **settings)


def test_accuracy_selection_overlap_and_wrong_twice_are_the_hand_counted_ones():
  e = evaluator(IndexedPose(11), count=11)  # evaluation batches of 8: a last one of 3 real samples, 5 padding
  first = e.run({"round": jnp.int32(0)})
  # per sample 14 visible keypoints; M2D n visible = 0-9 (10), of which right: 4-9 in samples 0-4, none after;
  # M3D n visible = 6-13 (8), right but 8, 9 (6); overlap over all keypoints: {6..9} / {0..15}
  assert first == pytest.approx({
      "accuracy_2d": 100 * (5 * 6) / (11 * 10), "accuracy_3d": 100 * 6 / 8,
      "accuracy_used": 100 * (5 * 6 + 11 * 6) / (11 * (10 + 8)), "selected_2d": 100 * 10 / 14,
      "selected_3d": 100 * 8 / 14, "overlap": 100 * 4 / 16, "union": 0.0, "wrong_twice": math.nan}, nan_ok=True)
  second = e.run({"round": jnp.int32(1)})
  # the union {2..13} supervises both; 2D right at 6-13, 3D at 2-13 but 8, 9; overlap {6..11} / {2..15}.
  # used_2d both times: 2-9 (8 per sample); wrong both times: 2, 3 in samples 0-4, 2-5 in samples 5-10
  assert second == pytest.approx({
      "accuracy_2d": 100 * 6 / 10, "accuracy_3d": 100 * 6 / 8, "accuracy_used": 100 * (8 + 10) / (12 + 12),
      "selected_2d": 100 * 10 / 14, "selected_3d": 100 * 8 / 14, "overlap": 100 * 6 / 14, "union": 1.0,
      "wrong_twice": 100 * (5 * 2 + 6 * 4) / (11 * 8)})
  assert set(first) == set(e.keys) and e.headline == "accuracy_used"


def test_only_the_first_count_samples_are_scored():
  e = evaluator(IndexedPose(11), count=5)  # samples 0-4: those whose 2D labels are right at 4-9
  assert len(e.source) == 5 and e.source.keypoint_set is skeletons.BODY16
  values = e.run({"round": jnp.int32(0)})
  assert values["accuracy_2d"] == pytest.approx(100 * 6 / 10)
  assert values["accuracy_used"] == pytest.approx(100 * (6 + 6) / (10 + 8))
  assert len(evaluator(IndexedPose(3), count=256).source) == 3


def test_wrong_twice_is_not_a_number_again_for_a_new_evaluator_object():
  source = IndexedPose(4)
  e = evaluator(source)
  e.run({"round": jnp.int32(0)})
  assert e.run({"round": jnp.int32(0)})["wrong_twice"] == pytest.approx(100 * 4 / 10)  # 0-3 of 0-9, both times
  assert math.isnan(evaluator(source).run({"round": jnp.int32(0)})["wrong_twice"])  # as after a resume


def config_with(**settings):
  config = tiny_config()
  config.evals.target_labels = dict(type="pseudo_labels", domain="target", split="train", **settings)
  return config


def test_from_config_makes_it_with_the_method_on_the_first_count_samples():
  config = config_with(count=6, threshold=0.1)
  made = evaluators.from_config(config, fake_method(IndexedPose(1)), parallel.make_mesh())["target_labels"]
  assert isinstance(made, pseudo_labels.PseudoLabels) and len(made.source) == 6
  assert made.description.startswith("pseudo-labels of fake on the first 6 samples: correct within 0.1 of")


@pytest.mark.parametrize("settings, message", [
    (dict(count=0), r"config.evals.target_labels: count=0: .* positive integer"),
    (dict(count=2.5), r"config.evals.target_labels: count=2.5: .* positive integer"),
    (dict(threshold=0.0), r"config.evals.target_labels: threshold=0.0: .* positive number"),
    (dict(treshold=0.1), r"config.evals.target_labels: .*treshold"),
])
def test_a_bad_setting_is_named(settings, message):
  with pytest.raises(ValueError, match=message):
    evaluators.from_config(config_with(**settings), fake_method(IndexedPose(1)), parallel.make_mesh())


def test_a_method_without_pseudo_labels_stops_before_anything_is_written(tmp_path):
  message = (r"config.evals.target_labels.type='pseudo_labels' needs a method with pseudo-labels \(geometric\); "
             r"method 'source_only' has none")
  with pytest.raises(ValueError, match=message):
    evaluators.from_config(config_with(), methods.get("source_only"), parallel.make_mesh())
  with pytest.raises(ValueError, match=message):
    loop.train_and_evaluate(config_with(), tmp_path / "run")
  assert not (tmp_path / "run").exists()
