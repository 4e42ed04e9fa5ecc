"""Evaluators: PCK per group on a split, built from config.evals, and select_on naming one of their values."""

import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax import evaluators, methods, parallel
from dapose_jax.config import defaults
from dapose_jax.evaluators import pck
from dapose_jax.pose import keypoints, skeletons
from dapose_jax.run import loop
from tests.test_train import tiny_config


class FixedPose:
  """n copies of one sample: every keypoint visible, by default on a line inside a 32 px image; ``xs`` and ``ys``
  the ends of the keypoints' line, ``shape`` the image's (rows, columns)."""
  keypoint_set = skeletons.BODY16

  def __init__(self, n, xs=(6, 26), ys=(25, 7), shape=(32, 32)):
    self.n, self.shape = n, shape
    self.keypoints = np.stack([np.linspace(*xs, 16), np.linspace(*ys, 16)], -1).astype(np.float32)

  def __len__(self):
    return self.n

  def __getitem__(self, index):
    return {"image": np.zeros((*self.shape, 3), np.uint8), "keypoints": self.keypoints,
            "visible": np.ones(16, np.float32)}


def evaluator(config, predict, source, **settings):
  return pck.PCK(predict, source, source.keypoint_set, config=config, mesh=parallel.make_mesh(), resize_pad=False,
                 **settings)


@pytest.mark.parametrize("aggregation", ["tllib", "udape"])
def test_pck_of_a_perfect_and_of_a_useless_prediction(aggregation):
  config = tiny_config()  # 32 px images, 8 px heatmaps, evaluation batches of 8
  source = FixedPose(11)  # a last batch of 3 real samples and 5 padding ones
  truth, _ = keypoints.heatmap_targets(config, {"keypoints": source.keypoints[None], "visible": np.ones((1, 16))})
  perfect = lambda state, images: jnp.broadcast_to(truth, images.shape[:1] + truth.shape[1:])
  corner = lambda state, images: jnp.zeros(images.shape[:1] + truth.shape[1:]).at[:, 0, 0].set(1.0)
  groups = set(skeletons.BODY16.groups)
  assert evaluator(config, perfect, source, aggregation=aggregation).run(None) == dict.fromkeys(groups, 100.0)
  assert evaluator(config, corner, source, aggregation=aggregation).run(None) == dict.fromkeys(groups, 0.0)


def test_pck_declares_its_keys_headline_and_description():
  e = evaluator(tiny_config(), None, FixedPose(1), threshold=0.1, aggregation="udape")
  assert e.keys == tuple(skeletons.BODY16.groups) and e.headline == "all"
  assert e.description == "PCK@0.1 in percent (udape aggregation)"


def test_the_evaluator_types_that_help_lists_are_the_evaluators():
  assert defaults.EVALUATOR_TYPES == tuple(evaluators.TYPES)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.evals.target.update(type="auc"), r"config.evals.target.type='auc' is not an evaluator"),
    (lambda c: c.evals.source.update(domain="sauce"), r"config.evals.source.domain='sauce'"),
    (lambda c: c.evals.source.update(aggregation="mean"), "unknown PCK aggregation mode 'mean'"),
    (lambda c: c.evals.target.update(treshold=0.1), r"config.evals.target: .*treshold"),
])
def test_a_bad_evaluator_setting_is_named(change, message):
  config = tiny_config()
  change(config)
  with pytest.raises(ValueError, match=message):
    evaluators.from_config(config, methods.get("source_only"), parallel.make_mesh())


def test_select_on_naming_no_evaluator_value_stops_before_anything_is_written(tmp_path):
  for select_on, message in [("tagret", "names no evaluator"), ("target/wirst", "has no value 'wirst'")]:
    config = tiny_config(select_on=select_on)
    with pytest.raises(ValueError, match=message):
      loop.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_select_on_names_an_evaluator_or_one_of_its_values():
  evals = {name: evaluator(tiny_config(), None, FixedPose(1)) for name in ("source", "target")}
  assert loop._selection(tiny_config(select_on="source"), evals) == ("source", "all")  # the headline
  assert loop._selection(tiny_config(select_on="target/wrist"), evals) == ("target", "wrist")


def sub_pixel_pose(n):
  """n copies of one sample whose keypoints lie between heatmap cells, inside a 128 px image."""
  return FixedPose(n, xs=(30.3, 97.1), ys=(95.6, 33.9), shape=(128, 128))


@pytest.mark.parametrize("decoding", ["argmax", "quarter", "dark"])
def test_the_coordinate_metrics_decode_as_their_decoding_setting_says(decoding):
  config = tiny_config(image_size=128, heatmap_size=32)  # a stride of 4 px
  source = sub_pixel_pose(5)
  v, u = np.mgrid[0:32, 0:32]
  cells = source.keypoints / 4
  maps = np.stack([np.exp(-((u - x) ** 2 + (v - y) ** 2) / (2 * config.sigma ** 2)) for x, y in cells], -1)
  exact = lambda state, images: jnp.broadcast_to(jnp.asarray(maps, jnp.float32), images.shape[:1] + maps.shape)
  epe = evaluators.TYPES["epe"](exact, source, source.keypoint_set, config=config, mesh=parallel.make_mesh(),
                                resize_pad=False, decoding=decoding).run(None)["all"]
  counted = list(skeletons.BODY16.groups["all"])
  peaks = np.round(cells)
  quarter = peaks + 0.25 * np.sign(cells - peaks)  # a quarter cell toward the higher neighbour, the true side
  argmax_epe, quarter_epe = (np.linalg.norm(xy * 4 - source.keypoints, axis=-1)[counted].mean()
                             for xy in (peaks, quarter))
  assert argmax_epe > 1.0 and quarter_epe < 0.6 * argmax_epe  # the integer peaks are more than a pixel off
  expected = {"argmax": pytest.approx(argmax_epe, rel=1e-5), "quarter": pytest.approx(quarter_epe, rel=1e-5),
              "dark": pytest.approx(0.0, abs=0.05 * 4)}  # DARK: within 0.05 cells
  assert epe == expected[decoding]


def test_an_unknown_decoding_is_named_with_the_evaluator():
  config = tiny_config()
  config.evals.target = dict(type="epe", domain="target", decoding="soft")
  with pytest.raises(ValueError, match=r"config.evals.target: decoding='soft'; choose one of argmax, quarter, dark"):
    evaluators.from_config(config, methods.get("source_only"), parallel.make_mesh())


def test_the_evaluators_of_one_split_share_one_pass_and_score_as_each_alone():
  config = tiny_config()  # test splits of 12 images, evaluation batches of 8: 2 batches per split
  config.evals = {"target": dict(type="pck", domain="target"), "target_epe": dict(type="epe", domain="target"),
                  "target_auc": dict(type="pck_auc", domain="target", decoding="dark"),
                  "source": dict(type="pck", domain="source", threshold=0.1)}
  evals = evaluators.from_config(config, methods.get("source_only"), parallel.make_mesh())
  calls = []
  rng = np.random.default_rng(0)
  maps = {}

  def predict(state, images):  # fixed random heatmaps per batch of images, counting the calls
    calls.append(images.shape)
    key = np.asarray(images).tobytes()
    maps.setdefault(key, jnp.asarray(rng.uniform(0, 1, (images.shape[0], 8, 8, 16)), jnp.float32))
    return maps[key]

  for e in evals.values():
    e.predict = predict
  lines = []
  together = evaluators.run_all(evals, None, log=lines.append)
  assert len(calls) == 4 and len(lines) == 2 and all("images/s" in line for line in lines)
  alone = {name: e.run(None) for name, e in evals.items()}
  assert together == alone and list(together) == list(evals)
  assert 0 < together["target"]["all"] < 100 and together["target_epe"]["all"] > 0


def wide_pose(n):
  """n copies of a 200 x 100 image whose 16 keypoints lie on a line."""
  return FixedPose(n, xs=(20, 180), ys=(30, 70), shape=(100, 200))


def test_epe_and_auc_measure_in_the_stored_images_pixels_by_default_and_in_input_pixels_when_asked():
  config = tiny_config(image_size=64, heatmap_size=16)  # resize-and-pad: 200 x 100 -> 64 x 32, 16 rows above
  source = wide_pose(3)
  counted = list(skeletons.BODY16.groups["all"])

  def one_cell_right(state, images):  # each keypoint's heatmap peaks one cell (4 input px) right of its truth
    cells = np.round((source.keypoints * 64 / 200 + [0, 16]) / 4).astype(int)
    maps = np.zeros((16, 16, 16), np.float32)
    maps[cells[:, 1], np.minimum(cells[:, 0] + 1, 15), np.arange(16)] = 1.0
    return jnp.broadcast_to(maps, images.shape[:1] + maps.shape)

  cells = np.round((source.keypoints * 64 / 200 + [0, 16]) / 4)
  input_error = np.linalg.norm((cells + [1, 0]) * 4 - (source.keypoints * 64 / 200 + [0, 16]), axis=-1)[counted]
  make = lambda kind, **settings: evaluators.TYPES[kind](
      one_cell_right, source, source.keypoint_set, config=config, mesh=parallel.make_mesh(), resize_pad=True,
      **settings).run(None)["all"]
  assert make("epe", pixels="input") == pytest.approx(input_error.mean(), rel=1e-5)
  assert make("epe") == pytest.approx(input_error.mean() * 200 / 64, rel=1e-5)  # 3.125 stored px per input px
  # mmpose's AUC at 30 px: thresholds i / 20 of 30 px; in the stored image's pixels the same errors are 3.125x longer
  auc = lambda errors: 100 * np.mean([np.mean(errors < 30 * i / 20) for i in range(20)])
  assert make("pck_auc", pixels="input") == pytest.approx(auc(input_error), abs=1e-4)
  assert make("pck_auc") == pytest.approx(auc(input_error * 200 / 64), abs=1e-4)
  with pytest.raises(ValueError, match="pixels='image'; choose one of original, input"):
    make("epe", pixels="image")
