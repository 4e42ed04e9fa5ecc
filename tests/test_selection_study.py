"""experiments/selection_study.py: rank correlation of a logged criterion with the target PCK, and the target PCK of
the evaluation it selects, against the oracle and the last evaluation; the scatter plot draws dots without lines."""

import json

import numpy as np
import pytest

from dapose_jax.plots import drawing
from experiments import selection_study


def write_run(folder, truth, criterion):
  folder.mkdir()
  lines = [json.dumps({"step": 100 * (i + 1), "kind": "eval", "target": {"all": t}, "target_confidence": {"all": c}})
           for i, (t, c) in enumerate(zip(truth, criterion))]
  (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
  return folder


def test_a_criterion_that_ranks_like_the_truth_selects_the_oracle_and_a_reversed_one_the_worst(tmp_path):
  truth = [10.0, 30.0, 20.0, 25.0]
  runs = [write_run(tmp_path / "same", truth, [0.1, 0.9, 0.3, 0.5]),
          write_run(tmp_path / "reversed", truth, [0.9, 0.1, 0.5, 0.3])]
  results = selection_study.study(runs[:1], ["target_confidence/all"], "target/all")["target_confidence/all"]
  assert results["pooled_rho"] == pytest.approx(1.0) and results["selected"] == results["oracle"] == 30.0
  assert results["last"] == 25.0
  reversed_ = selection_study.study(runs[1:], ["target_confidence/all"], "target/all")["target_confidence/all"]
  assert reversed_["mean_rho"] == pytest.approx(-1.0) and reversed_["selected"] == 10.0
  both = selection_study.study(runs, ["target_confidence/all"], "target/all")["target_confidence/all"]
  assert both["selected"] == 20.0 and both["oracle"] == 30.0 and both["mean_rho"] == pytest.approx(0.0)


def test_a_scatter_plot_draws_no_line_between_its_dots():
  points = {"": (np.array([0.0, 1.0]), np.array([0.0, 1.0]))}
  joined = drawing.series_plot(points, title="", x_label="", connect=True)
  dots = drawing.series_plot(points, title="", x_label="", connect=False)
  line = np.all(joined == drawing.PLOT_COLOURS[0], axis=-1)
  assert line.sum() > 4 * np.all(dots == drawing.PLOT_COLOURS[0], axis=-1).sum()  # the line's pixels, not the dots'
