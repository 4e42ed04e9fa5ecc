"""The pose_bins evaluator: a split's images in the source's pose-VAE bins (the sampler's k and range, clipped at
the ends), PCK and EvalPose per bin on hand-built predictions, counts, empty bins, and the evaluate command's
plot."""

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from dapose_jax import errors, parallel
from dapose_jax.auxiliary import pose_vae
from dapose_jax.commands import evaluate
from dapose_jax.data import sources
from dapose_jax.evaluators import pose_bins
from dapose_jax.plots import drawing
from dapose_jax.pose import keypoints, skeletons
from tests.test_train import tiny_config

SOURCE_SIZE = 64


def config_with(scores="", bins=4, upper_quantile=1.0):
  c = tiny_config()
  c.source.train_size = SOURCE_SIZE
  c.pose_vae.update(steps=5, batch_size=32, log_every=5)
  c.sampling.update(scores=str(scores), bins=bins, upper_quantile=upper_quantile)
  return c


@pytest.fixture(scope="module")
def vae_scores(tmp_path_factory):
  """A scores.json (and params.msgpack beside it) of a VAE trained for 5 steps on the 64 source samples."""
  return pose_vae.run(config_with(), tmp_path_factory.mktemp("vae"))


@pytest.fixture
def hand_scores(vae_scores, tmp_path):
  """The same VAE with the source scores replaced by 0, 1/63, .., 1: bins of width 1/k over [0, 1]."""
  folder = tmp_path / "pose_vae"
  shutil.copytree(vae_scores.parent, folder)
  record = json.loads((folder / pose_vae.SCORES).read_text())
  record["scores"] = np.linspace(0, 1, SOURCE_SIZE).tolist()
  (folder / pose_vae.SCORES).write_text(json.dumps(record))
  return folder / pose_vae.SCORES


class Figures:
  """n Body16 figures on the 4 px grid of a 32 px image (stride 4 to the 8 px heatmaps), each different, every
  keypoint visible, inside cells 2..6; image i is filled with the value i, so a predict function can tell them
  apart."""
  keypoint_set = skeletons.BODY16

  def __init__(self, n):
    rng = np.random.default_rng(0)
    cells = np.stack(np.meshgrid(np.arange(2, 7), np.arange(2, 7)), -1).reshape(-1, 2)
    self.keypoints = np.stack([4.0 * cells[rng.permutation(len(cells))[:16]] for _ in range(n)]).astype(np.float32)
    self.visible = np.ones((n, 16), np.float32)

  def __len__(self):
    return len(self.keypoints)

  def __getitem__(self, index):
    return {"image": np.full((32, 32, 3), index, np.uint8), "keypoints": self.keypoints[index],
            "visible": self.visible[index]}


def predicting(heatmaps):
  """A predict function that returns ``heatmaps[i]`` for image i (the value its pixels hold)."""
  heatmaps = jnp.asarray(heatmaps)
  return lambda state, images: heatmaps[images[:, 0, 0, 0].astype(jnp.int32)]


def evaluator(source, predict, scores, **settings):
  config = config_with(scores, **settings)
  return pose_bins.PoseBins(predict, source, source.keypoint_set, config=config, mesh=parallel.make_mesh(),
                            resize_pad=False)


def scored_as(monkeypatch, values):
  monkeypatch.setattr(pose_vae, "score", lambda *args: np.asarray(values, np.float64))


def test_a_split_is_binned_with_the_sources_range_and_clipped_into_the_end_bins(hand_scores, monkeypatch):
  figures = Figures(7)
  scored_as(monkeypatch, [-0.1, 0.05, 0.2, 0.3, 0.45, 0.7, 1.2])
  # range [0, 1], 4 bins of width 0.25: -0.1 below (bin 1), 1.2 above (bin 4)
  binned = evaluator(figures, predicting(np.zeros((7, 8, 8, 16))), hand_scores)
  np.testing.assert_array_equal(binned.sample_bins, [1, 1, 1, 2, 2, 3, 4])
  # upper_quantile 0.5: the range ends at the median source score 0.5, bins of width 0.125
  binned = evaluator(figures, predicting(np.zeros((7, 8, 8, 16))), hand_scores, upper_quantile=0.5)
  assert binned.value_range == (0.0, 0.5)
  np.testing.assert_array_equal(binned.sample_bins, [1, 1, 2, 3, 4, 4, 4])
  values = binned.run(None)
  assert (values["images_below_range"], values["images_above_range"]) == (1, 2)
  assert [values[f"images_bin{b}"] for b in range(1, 5)] == [2, 1, 1, 3]


def test_per_bin_pck_and_evalpose_count_the_right_images_of_each_bin(hand_scores, monkeypatch):
  figures = Figures(6)
  scored_as(monkeypatch, [0.1, 0.2, 0.3, 0.4, 0.9, 0.95])  # bins 1, 1, 2, 2, 4, 4; bin 3 empty
  perfect, _ = keypoints.heatmap_targets(config_with(), {"keypoints": figures.keypoints, "visible": figures.visible})
  wrong = np.zeros((8, 8, 16), np.float32)
  wrong[0, 0] = 1  # every keypoint at cell (0, 0): off by 2 cells or more, and every angle collapses to 0
  right = [True, True, True, False, False, False]
  heatmaps = np.stack([np.asarray(p) if r else wrong for p, r in zip(perfect, right)])
  values = evaluator(figures, predicting(heatmaps), hand_scores).run(None)
  assert values["pck_bin1"] == values["evalpose_bin1"] == 100
  assert values["pck_bin2"] == pytest.approx(50) and values["evalpose_bin2"] == pytest.approx(50)
  assert values["pck_bin4"] == values["evalpose_bin4"] == 0
  assert values["pck"] == pytest.approx(50) and values["evalpose"] == pytest.approx(50)
  assert "pck_bin3" not in values and "evalpose_bin3" not in values and values["images_bin3"] == 0
  assert pose_bins.per_bin(values) == ([1, 2, 4], [100, pytest.approx(50), 0], [100, pytest.approx(50), 0])
  json.dumps(values, allow_nan=False)  # results.json stays strict JSON


def test_the_bin_counts_of_a_rendered_split_add_up_to_its_size(vae_scores):
  config = config_with(vae_scores, bins=25)
  split = sources.make_source(config.target, "test")  # 12 images: one batch of 8 and one padded
  binned = pose_bins.PoseBins(predicting(np.zeros((256, 8, 8, 16))), split, split.keypoint_set, config=config,
                              mesh=parallel.make_mesh(), resize_pad=False)
  values = binned.run(None)
  assert set(values) == set(binned.keys)
  counts = [values[f"images_bin{b}"] for b in range(1, 26)]
  assert sum(counts) == len(split) == 12
  assert counts == np.bincount(binned.sample_bins, minlength=26)[1:].tolist()
  np.testing.assert_allclose(binned.scores, pose_vae.score(*pose_vae.load_params(
      config.pose_vae, 16, vae_scores.parent), *pose_vae.read_keypoints(split)))


def test_without_scores_the_evaluator_names_both_settings():
  with pytest.raises(errors.ConfigError, match="scores=DIR/pose_vae/scores.json or config.sampling.scores"):
    evaluator(Figures(2), predicting(np.zeros((2, 8, 8, 16))), "")


def test_evaluate_draws_each_pose_bins_evaluators_pck_and_evalpose_beside_the_json(vae_scores, tmp_path,
                                                                                   monkeypatch):
  figures = Figures(4)
  scored_as(monkeypatch, [0.0, 0.0, 5.0, 5.0])
  values = evaluator(figures, predicting(np.zeros((4, 8, 8, 16))), vae_scores).run(None)
  evals = {"target": dict(type="pck"), "target_bins": dict(type="pose_bins")}
  plots = evaluate.plots({"target_bins": values}, evals, [], tmp_path / "evaluate_test_best.json", "test",
                         skeletons.BODY16)
  png = tmp_path / "evaluate_test_best_target_bins.png"
  assert list(plots) == [png]
  plots[png]()
  picture = np.asarray(Image.open(png).convert("RGB"))
  assert picture.shape[:2] == drawing.PLOT_SIZE
  for colour in drawing.PLOT_COLOURS[:2]:  # the PCK and the EvalPose line
    assert (picture == colour).all(axis=2).any()
