"""The keypoint_confusion evaluator: where each keypoint's predictions land (its truth, its flip partner's, another
keypoint's, none) on hand-built cases, its agreement with the pck evaluator, and the matrix evaluate draws."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from dapose_jax import evaluators, parallel
from dapose_jax.evaluators import confusion
from dapose_jax.plots import drawing
from dapose_jax.pose import keypoints, skeletons
from tests.test_evaluate import run_cli
from tests.test_evaluators import FixedPose
from tests.test_train import tiny_config, tiny_run

NAMES = skeletons.BODY16.names
R_ANKLE, L_HIP, L_KNEE, L_ANKLE, PELVIS, THORAX, R_WRIST = 0, 3, 4, 5, 6, 7, 10


class Grid:
  """n copies of one Body16 sample in a 32 px image (8 px heatmaps, a stride of 4): keypoint i's truth in heatmap
  cell (2 + i % 6, 2 + i // 6), every one counted unless ``hidden``."""
  keypoint_set = skeletons.BODY16
  cells = np.array([(2 + i % 6, 2 + i // 6) for i in range(16)])

  def __init__(self, n, hidden=()):
    self.n, self.visible = n, np.ones(16, np.float32)
    self.visible[list(hidden)] = 0

  def __len__(self):
    return self.n

  def __getitem__(self, index):
    return {"image": np.zeros((32, 32, 3), np.uint8), "keypoints": (4.0 * self.cells).astype(np.float32),
            "visible": self.visible}


def peaks(cells):
  """A predict function whose heatmap k is 1 at ``cells[k]`` (x, y) and 0 elsewhere, for every image."""
  maps = np.zeros((8, 8, 16), np.float32)
  for k, (x, y) in enumerate(cells):
    maps[y, x, k] = 1.0
  return lambda state, images: jnp.broadcast_to(maps, (images.shape[0], *maps.shape))


def confusion_of(predict, source, mesh=None, **settings):
  return confusion.KeypointConfusion(predict, source, source.keypoint_set, config=tiny_config(),
                                     mesh=mesh or parallel.make_mesh(), resize_pad=False, **settings)


def test_each_prediction_is_correct_flip_other_or_background_as_its_landing_place_says():
  predicted = Grid.cells.copy()
  predicted[L_ANKLE] = Grid.cells[R_ANKLE]  # exactly on its flip partner's truth
  predicted[L_KNEE] = Grid.cells[R_WRIST]  # on a third keypoint's truth
  predicted[PELVIS] = Grid.cells[THORAX]  # pelvis has no flip partner
  predicted[L_HIP] = (0, 0)  # far from every truth
  values = confusion_of(peaks(predicted), Grid(11)).run(None)  # batches of 8: 3 real samples and 5 padding in the last
  expected = np.eye(16, 17) * 100
  expected[[L_ANKLE, L_KNEE, PELVIS, L_HIP]] = 0
  expected[L_ANKLE, R_ANKLE] = expected[L_KNEE, R_WRIST] = expected[PELVIS, THORAX] = expected[L_HIP, 16] = 100
  names, shares, counted = confusion.matrix(values)
  assert names == list(NAMES) and counted.tolist() == [11] * 16
  np.testing.assert_array_equal(shares, expected)
  assert {key: values[key] for key in values if "/" not in key} == {
      "correct": 75.0, "flip": 6.25, "other": 12.5, "background": 6.25, "flip_share_of_errors": 25.0,
      "other_share_of_errors": 50.0, "background_share_of_errors": 25.0, "counted": 176.0}
  assert values["l_ankle/r_ankle"] == 100.0 and values["l_hip/background"] == 100.0


def test_a_keypoint_that_is_not_visible_is_not_counted_and_catches_no_prediction():
  predicted = Grid.cells.copy()
  predicted[L_ANKLE] = Grid.cells[R_ANKLE]  # on the truth of a partner that is not visible
  values = confusion_of(peaks(predicted), Grid(3, hidden=[R_ANKLE])).run(None)
  assert values["l_ankle/background"] == 100.0 and values["l_ankle/r_ankle"] == 0.0
  assert values["r_ankle/counted"] == 0 and all(values[f"r_ankle/{j}"] == 0 for j in (*NAMES, "background"))
  assert values["counted"] == 45 and values["correct"] == pytest.approx(100 * 14 / 15)


def test_a_flip_partner_within_the_threshold_wins_over_a_nearer_keypoint_and_other_takes_the_nearest():
  partner = jnp.array([1, 0, 2, 3])  # keypoints 0 and 1 are a flip pair; 2 and 3 have none
  truth = jnp.array([[[9.0, 9.0], [0.3, 0.0], [0.1, 0.0], [5.0, 5.0]]])  # in tenths of the heatmap side
  counted = jnp.ones((1, 4), bool)
  pred = jnp.array([[[0.0, 0.0], [0.3, 0.0], [5.0, 5.4], [5.0, 5.0]]])
  # 0: within 0.5 of its partner 1 (0.3 away) and of keypoint 2 (0.1 away, nearer): flip; 1 and 3: correct;
  # 2: within 0.5 of keypoint 3 only (0.4 away): other at 3
  assert confusion.landing_columns(pred, truth, counted, partner, 0.05).tolist() == [[1, 1, 3, 3]]
  # at a threshold of 0.02 (0.2 in these units) 0 is within it of keypoint 2 only, and 2 of none
  assert confusion.landing_columns(pred, truth, counted, partner, 0.02).tolist() == [[2, 1, 4, 3]]
  # keypoint 1's truth is not counted: 0 lands on the nearest counted one, 2
  assert confusion.landing_columns(pred, truth, counted.at[0, 1].set(False), partner, 0.05)[0, 0] == 2
  pred = pred.at[0, 2].set([0.2, 0.0])  # 0.1 from its own truth and from keypoint 1's: its own comes first
  assert confusion.landing_columns(pred, truth, counted, partner, 0.05)[0, 2] == 2
  pred = pred.at[0, 2].set([0.1, 0.5])  # exactly 0.5 from its own truth and farther from the others: the test is <
  assert confusion.landing_columns(pred, truth, counted, partner, 0.05)[0, 2] == 4


@pytest.mark.parametrize("aggregation", ["tllib", "udape"])
def test_the_diagonal_is_the_pck_evaluators_per_keypoint_hits_in_one_shared_pass(aggregation):
  config, source, mesh = tiny_config(), FixedPose(11), parallel.make_mesh()
  truth, _ = keypoints.heatmap_targets(config, {"keypoints": source.keypoints[None], "visible": np.ones((1, 16))})
  rng = np.random.default_rng(0)
  batches = []

  def predict(state, images):  # the truth under noise that moves some peaks, new noise for each batch
    batches.append(jnp.asarray(truth + rng.uniform(0, 1.3, (images.shape[0], *truth.shape[1:])), jnp.float32))
    return batches[-1]

  evals = {"pck": evaluators.TYPES["pck"](predict, source, source.keypoint_set, config=config, mesh=mesh,
                                          resize_pad=False, aggregation=aggregation),
           "confusion": confusion_of(predict, source, mesh)}
  results = evaluators.run_all(evals, None)
  assert len(batches) == 2  # one pass for both
  _, shares, counted = confusion.matrix(results["confusion"])
  assert counted.tolist() == [11] * 16 and np.allclose(shares.sum(axis=1), 100)
  diagonal = np.diag(shares)
  assert 20 < results["confusion"]["correct"] < 80  # the noise moves some peaks, not all
  assert results["confusion"]["correct"] == pytest.approx(diagonal.mean())
  for group, indices in skeletons.BODY16.groups.items():  # every keypoint counts in every sample
    assert results["pck"][group] == pytest.approx(diagonal[list(indices)].mean(), abs=1e-9)


def test_matrix_plot_shades_each_cell_by_its_share_and_frames_the_outlined_ones():
  picture = drawing.matrix_plot([[100.0, 0.0], [50.0, 0.0]], ["a (1)", "b (2)"], ["a", "background"], title="t",
                                split_last=True)
  colours = {tuple(c) for c in picture.reshape(-1, 3)}
  assert drawing.PLOT_COLOUR in colours and (143, 187, 218) in colours  # 100 % and 50 % of the way from white
  assert drawing.OUTLINE_COLOUR not in colours
  framed = drawing.matrix_plot([[100.0, 0.0], [50.0, 0.0]], ["a", "b"], ["a", "background"], title="t",
                               outlined=[(1, 0)])
  assert (framed == drawing.OUTLINE_COLOUR).all(axis=2).any()
  with pytest.raises(ValueError, match=r"shares \(2, 2\) for 2 rows and 3 columns"):
    drawing.matrix_plot(np.zeros((2, 2)), ["a", "b"], ["a", "b", "c"], title="t")


def test_the_printed_table_leaves_the_matrix_values_to_the_json():
  assert evaluators.table({"head": 97.96, "all": 48.44}) == "head 98.0 all 48.4"
  assert evaluators.table({"correct": 59.37, "r_ankle/l_ankle": 38.0, "r_ankle/counted": 501.0}) == (
      "correct 59.4 (+ 2 more values in the JSON)")


def test_evaluate_with_the_confusion_metric_writes_its_matrix_beside_the_json(tmp_path):
  run, out = tiny_run(), tmp_path / "confusion.json"
  proc = run_cli("evaluate", f"--config={run}", f"--checkpoint={run}", f"--out={out}", "--domain=target",
                 "--metrics=keypoint_confusion")
  assert proc.returncode == 0, proc.stderr
  record = json.loads(out.read_text())
  values = record["results"]["target_keypoint_confusion"]
  _, shares, counted = confusion.matrix(values)
  assert counted.sum() == values["counted"] > 0
  np.testing.assert_allclose(shares.sum(axis=1), np.where(counted > 0, 100.0, 0.0))
  assert sum(values[kind] for kind in confusion.CATEGORIES) == pytest.approx(100)
  printed = next(line for line in proc.stdout.splitlines() if line.startswith("target_keypoint_confusion: "))
  assert f"correct {values['correct']:.1f} flip " in printed and "(+ 288 more values in the JSON)" in printed
  assert "l_knee/r_knee" not in printed  # the 16 x 17 matrix and 16 counts are in the JSON only
  png = tmp_path / "confusion_target_keypoint_confusion.png"
  assert f"wrote {png}" in proc.stdout
  picture = np.asarray(Image.open(png).convert("RGB"))
  assert picture.shape[1] > 17 * drawing.MATRIX_CELL[1] and (picture == drawing.OUTLINE_COLOUR).all(axis=2).any()
