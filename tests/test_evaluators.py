"""Evaluators: PCK per group on a split, built from config.evals, and select_on naming one of their values."""

import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax import evaluators, methods, parallel
from dapose_jax.evaluators import pck
from dapose_jax.pose import keypoints, skeletons
from dapose_jax.run import loop
from tests.test_train import tiny_config


class FixedPose:
  """n copies of one sample: every keypoint visible, inside a 32 px image."""
  keypoint_set = skeletons.BODY16

  def __init__(self, n):
    self.n = n
    self.keypoints = np.stack([np.linspace(6, 26, 16), np.linspace(25, 7, 16)], -1).astype(np.float32)

  def __len__(self):
    return self.n

  def __getitem__(self, index):
    return {"image": np.zeros((32, 32, 3), np.uint8), "keypoints": self.keypoints, "visible": np.ones(16, np.float32)}


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
