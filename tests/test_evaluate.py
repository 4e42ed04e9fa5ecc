"""The evaluate command and the mmpose metrics: a checkpoint re-evaluated gives its run's results.json, the
checkpoint a path names, one-line errors, and pck_bbox / pck_auc / epe on hand-computed cases."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from dapose_jax import errors, evaluators, parallel
from dapose_jax.commands import evaluate
from dapose_jax.config import defaults
from dapose_jax.pose import decoding, keypoints, skeletons
from dapose_jax.run import finished
from tests.test_train import tiny_config, tiny_run


def run_cli(*args):
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")  # as conftest sets for this process
  return subprocess.run([sys.executable, "-m", "dapose_jax", *args], capture_output=True, text=True, timeout=300,
                        env=env)


def tables(entry):
  return {name: values for name, values in entry.items() if name != "step"}


def run_evaluation(config, checkpoint, **settings):
  mesh = parallel.make_mesh()
  model = finished.load(config, checkpoint, mesh)
  evals = evaluate.evaluations(model.config.evals.to_dict(), split="test", domains=defaults.DOMAINS, **settings)
  return model, evaluate.evaluate(model, mesh, evals)[0]


def test_the_final_and_the_best_checkpoint_give_the_numbers_of_results_json():
  run = tiny_run()
  results = json.loads((run / "results.json").read_text())
  # which evaluation is best depends on float32 rounding (step 3 or 6 by the host's kernels): read it off the log
  records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
  evals = [r for r in records if r["kind"] == "eval"]
  best_step = max(evals, key=lambda r: r["target"]["all"])["step"]
  assert results["final"]["step"] == 6 and results["best"]["step"] == best_step
  model, final = run_evaluation(tiny_config(), run)  # a run folder: its newest checkpoint
  assert model.checkpoint.path == run / "checkpoints" / "6"
  assert final == tables(results["final"])
  model, best = run_evaluation(finished.read_config(run / "config.json"), run / "best")
  assert model.checkpoint.path == run / "best" / str(best_step)
  assert best == tables(results["best"])


def test_a_step_folder_names_that_checkpoint():
  run = tiny_run()
  assert finished.locate(run / "checkpoints" / "3") == finished.Checkpoint(run / "checkpoints", 3, run)
  best_step = json.loads((run / "results.json").read_text())["best"]["step"]  # 3 or 6, by the host's rounding
  assert finished.locate(run / "best") == finished.Checkpoint(run / "best", best_step, run)


@pytest.mark.parametrize("where, error, message", [
    ("nowhere", errors.MissingInputError, "no such folder; give a run folder"),
    ("tensorboard", errors.MissingInputError, "is not a checkpoint folder"),
    ("checkpoints/7", errors.MissingInputError, "no such folder"),
])
def test_a_path_without_a_checkpoint_is_named(where, error, message):
  with pytest.raises(error, match=message) as raised:
    finished.locate(tiny_run() / where)
  assert str(tiny_run() / where) in str(raised.value)


def test_an_empty_checkpoint_folder_says_so(tmp_path):
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(errors.MissingInputError, match=r"no checkpoint in .*checkpoints: the run has not written one"):
    finished.locate(tmp_path)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.model.update(upsampling_features=32),
     r"params.head.kernel has shape \(1, 1, 16, 16\), this config's model \(1, 1, 32, 16\)"),
    (lambda c: c.model.update(backbone="resnet34"), r"it has no params.backbone.layer1_1"),
    (lambda c: c.update(method="regda"), r"does not hold a regda state .* fields"),
])
def test_a_checkpoint_of_another_model_is_refused_naming_the_difference(change, message):
  config = tiny_config()
  change(config)
  with pytest.raises(errors.ConfigError, match=message) as raised:
    finished.load(config, tiny_run(), parallel.make_mesh())
  assert f"--config={tiny_run() / 'config.json'}" in str(raised.value)


def test_a_method_without_pose_output_is_refused():
  with pytest.raises(errors.ConfigError, match="'style_decoder' has no pose output"):
    finished.load(tiny_config(method="style_decoder"), tiny_run(), parallel.make_mesh())


def test_evaluations_choose_domains_split_thresholds_and_more_metrics():
  evals = tiny_config().evals.to_dict()
  chosen = evaluate.evaluations(evals, split="train", domains=("target",), thresholds=[0.1, 0.2],
                                metrics=["pck_bbox", "epe"])
  assert sorted(chosen) == ["target@0.1", "target@0.2", "target_epe", "target_pck_bbox@0.1", "target_pck_bbox@0.2"]
  assert chosen["target@0.2"] == dict(evals["target"], split="train", threshold=0.2)
  assert chosen["target_epe"] == dict(type="epe", domain="target", split="train")
  with pytest.raises(errors.ConfigError, match=r"--metrics: 'auc' is not an evaluator; choose from"):
    evaluate.evaluations(evals, split="test", domains=("target",), metrics=["auc"])


def test_the_command_prints_the_table_writes_json_and_never_overwrites(tmp_path):
  run, out = tiny_run(), tmp_path / "final.json"
  proc = run_cli("evaluate", f"--config={run}", f"--checkpoint={run}", f"--out={out}")
  assert proc.returncode == 0, proc.stderr
  written = json.loads(out.read_text())
  final = json.loads((run / "results.json").read_text())["final"]
  assert written["step"] == 6 and written["results"] == tables(final)
  assert written["metrics"]["target"] == "PCK@0.05 in percent (tllib aggregation)"
  all_target = f"all {final['target']['all']:.1f}"
  assert any(line.startswith("target: head ") and all_target in line for line in proc.stdout.splitlines())
  again = run_cli("evaluate", f"--config={run}", f"--checkpoint={run}", f"--out={out}")
  assert again.returncode == 2 and again.stderr.strip() == (f"error: {out} exists; pass --overwrite to replace it, "
                                                            "or --out to write elsewhere")


def test_a_bad_checkpoint_path_ends_the_command_with_one_line(tmp_path):
  proc = run_cli("evaluate", f"--config={tiny_run()}", f"--checkpoint={tmp_path / 'nowhere'}")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines() == [
      f"error: --checkpoint {tmp_path / 'nowhere'}: no such folder; give a run folder (holding checkpoints/), its "
      "best/ folder or a step folder such as RUN/checkpoints/STEP"]


class Figure:
  """n copies of one sample: 16 keypoints on the 4 px grid of a 32 px image (heatmap stride 4), in a box 20 px
  wide and 12 px high; keypoint 15 is invisible."""
  keypoint_set = skeletons.BODY16

  def __init__(self, n):
    self.n = n
    x = np.array([4, 8, 12, 16, 20, 24, 4, 8, 12, 16, 20, 24, 4, 8, 12, 16], np.float32)
    y = np.array([8] * 6 + [12] * 6 + [20] * 4, np.float32)
    self.keypoints = np.stack([x, y], -1)
    self.visible = np.ones(16, np.float32)
    self.visible[15] = 0

  def __len__(self):
    return self.n

  def __getitem__(self, index):
    return {"image": np.zeros((32, 32, 3), np.uint8), "keypoints": self.keypoints, "visible": self.visible}


class BoxedFigure(Figure):
  """``Figure`` with an annotated box per sample, as built AnimalPose samples have: 32 x 24 px at even indices,
  16 x 12 px at odd ones (the keypoints' box is 20 x 12 px)."""
  annotated_boxes = True
  BOXES = (np.array([0, 0, 32, 24], np.float32), np.array([8, 6, 24, 18], np.float32))

  def __getitem__(self, index):
    return dict(super().__getitem__(index), box=self.BOXES[index % 2])


def peaked_at(source, shift):
  """A predict function whose heatmaps peak at the (all visible) keypoints moved by ``shift`` heatmap pixels."""
  config = tiny_config()
  maps, _ = keypoints.heatmap_targets(config, {"keypoints": source.keypoints[None] + 4 * np.asarray(shift, np.float32),
                                            "visible": np.ones((1, 16))})
  return lambda state, images: jnp.broadcast_to(maps, images.shape[:1] + maps.shape[1:])


def metric(kind, predict, source, **settings):
  return evaluators.TYPES[kind](predict, source, source.keypoint_set, config=tiny_config(), mesh=parallel.make_mesh(),
                                resize_pad=False, **settings)


def test_keypoints_are_the_heatmap_argmax_times_the_stride():
  heatmaps = jnp.zeros((1, 8, 8, 2)).at[0, 3, 5, 0].set(0.7).at[0, 6, 1, 1].set(0.2)
  xy, confidence = decoding.keypoints_in_pixels(heatmaps, 32)
  np.testing.assert_array_equal(xy, [[[20, 12], [4, 24]]])
  np.testing.assert_allclose(confidence, [[0.7, 0.2]])


def test_a_perfect_prediction_scores_100_pck_95_auc_and_0_epe():
  source = Figure(11)  # a last batch of 3 real samples and 5 padding ones
  perfect = peaked_at(source, (0, 0))
  groups = set(skeletons.BODY16.groups)
  assert metric("pck_bbox", perfect, source).run(None) == dict.fromkeys(groups, 100.0)
  # mmpose's thresholds are 0, 1/20, .. 19/20 and the test is strict: threshold 0 counts nothing
  assert metric("pck_auc", perfect, source).run(None) == pytest.approx(dict.fromkeys(groups, 95.0))
  assert metric("epe", perfect, source).run(None) == dict.fromkeys(groups, 0.0)


def test_a_prediction_one_heatmap_pixel_off_has_that_error_in_every_metric():
  source = Figure(5)
  shifted = peaked_at(source, (1, 0))  # 4 input pixels to the right
  groups = set(skeletons.BODY16.groups)
  assert metric("epe", shifted, source).run(None) == dict.fromkeys(groups, 4.0)
  # 4 px in a box of max(20, 12) = 20 px is 0.2: below 0.25, not below 0.2 (strict) nor 0.05
  for threshold, expected in [(0.05, 0.0), (0.2, 0.0), (0.25, 100.0)]:
    assert metric("pck_bbox", shifted, source, threshold=threshold).run(None) == dict.fromkeys(groups, expected)
  # 4 / 30 = 0.133 is below 17 of the 20 thresholds (0.15 .. 0.95)
  assert metric("pck_auc", shifted, source).run(None) == pytest.approx(dict.fromkeys(groups, 85.0))
  assert metric("pck_auc", shifted, source, norm_factor=8.0, num_thresholds=4).run(None) == pytest.approx(
      dict.fromkeys(groups, 25.0))  # 0.5 is below 0.75 only of 0, 0.25, 0.5, 0.75


def test_pck_bbox_normalises_by_the_annotated_box_where_the_data_set_has_one():
  plain, boxed = Figure(4), BoxedFigure(4)
  shifted = peaked_at(plain, (1, 0))  # every keypoint 4 px off
  groups = set(skeletons.BODY16.groups)
  # keypoint box max(20, 12) = 20: 4 / 20 = 0.2 for every sample; annotated boxes of sizes 32 and 16 alternate:
  # 4 / 32 = 0.125 and 4 / 16 = 0.25, so half the samples pass below 0.25 and all of them above it
  for threshold, by_keypoints, by_annotated in [(0.15, 0.0, 50.0), (0.25, 100.0, 50.0)]:
    keypoint_box = metric("pck_bbox", shifted, plain, threshold=threshold)
    annotated_box = metric("pck_bbox", shifted, boxed, threshold=threshold)
    assert keypoint_box.run(None) == dict.fromkeys(groups, by_keypoints)
    assert annotated_box.run(None) == dict.fromkeys(groups, by_annotated)
  assert keypoint_box.norm == "keypoint box" and "of the keypoint box size" in keypoint_box.description
  assert annotated_box.norm == "annotated box" and "of the annotated box size" in annotated_box.description


def test_invisible_keypoints_and_padding_do_not_count():
  source = Figure(3)
  wild = peaked_at(source, (0, 0))
  maps = wild(None, np.zeros((1, 32, 32, 3)))
  maps = maps.at[:, :, :, 15].set(0).at[:, 0, 7, 15].set(1.0)  # keypoint 15 (invisible) predicted far away
  epe = metric("epe", lambda state, images: jnp.broadcast_to(maps, images.shape[:1] + maps.shape[1:]), source)
  assert epe.run(None)["wrist"] == 0.0


def test_the_new_metrics_declare_keys_headline_and_description():
  for kind in ("pck_bbox", "pck_auc", "epe"):
    e = metric(kind, None, Figure(1))
    assert e.keys == tuple(skeletons.BODY16.groups) and e.headline == "all" and "mmpose" in e.description


def test_several_thresholds_draw_each_evaluators_pck_curve_beside_the_json(tmp_path):
  run, out = tiny_run(), tmp_path / "curve.json"
  proc = run_cli("evaluate", f"--config={run}", f"--checkpoint={run}", f"--out={out}", "--domain=target",
                 "--thresholds=0.05,0.2,0.5")
  assert proc.returncode == 0, proc.stderr
  results = json.loads(out.read_text())["results"]
  values = [results[f"target@{t}"]["all"] for t in ("0.05", "0.2", "0.5")]
  assert values == sorted(values)  # PCK cannot fall as the threshold grows
  png = tmp_path / "curve_target.png"
  assert f"wrote {png}" in proc.stdout
  assert np.asarray(Image.open(png)).shape[2] == 3


def test_curves_collect_the_headline_of_each_threshold_in_threshold_order():
  evals = {"target@0.1": dict(type="pck", threshold=0.1), "target@0.05": dict(type="pck", threshold=0.05),
           "target_epe": dict(type="epe")}
  results = {"target@0.1": {"all": 60.0, "head": 1.0}, "target@0.05": {"all": 40.0}, "target_epe": {"all": 3.0}}
  assert evaluate.curves(results, evals, [0.05, 0.1]) == {"target": [40.0, 60.0]}
