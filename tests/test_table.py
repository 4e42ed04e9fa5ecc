"""dapose-jax table and plot: finished runs grouped by configuration without the seed, the seeds averaged."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dapose_jax import errors
from dapose_jax.plots import drawing
from dapose_jax.run import comparison


def finished_run(folder, method, seed, target_all, final_step=20):
  folder.mkdir(parents=True)
  config = {"method": method, "seed": seed, "lr": 0.1,
            **{m: {"pretrained": str(folder / "pretrain" / "best")} for m in ("source_only", "regda")}}
  (folder / "config.json").write_text(json.dumps(config))
  values = {"head": target_all - 1.0, "all": target_all}
  results = {"final": {"step": final_step, "target": values, "source": {"head": 50.0, "all": 60.0}},
             "best": {"step": 10, "target": {"head": 1.0, "all": 2.0}, "source": {"head": 3.0, "all": 4.0}}}
  (folder / "results.json").write_text(json.dumps(results))
  return folder


def test_seeds_of_one_config_are_averaged_and_groups_are_named_by_what_differs(tmp_path):
  runs = [finished_run(tmp_path / f"{m}_s{s}", m, s, v) for m, s, v in
          [("source_only", 0, 10.0), ("source_only", 1, 14.0), ("regda", 0, 20.0), ("regda", 1, 22.0),
           ("regda", 2, 24.0)]]
  grouped = comparison.groups(runs)
  assert [(label, len(folders)) for label, folders in grouped] == [("method=source_only", 2), ("method=regda", 3)]
  table = comparison.rows(grouped)
  target = {r["group"]: r["keys"]["all"] for r in table if r["evaluator"] == "target"}
  assert target["method=source_only"] == pytest.approx((12.0, 2.0))
  assert target["method=regda"] == pytest.approx((22.0, (8 / 3) ** 0.5))
  assert {r["group"]: r["keys"]["all"] for r in comparison.rows(grouped, "best") if r["evaluator"] == "source"} == {
      "method=source_only": (4.0, 0.0), "method=regda": (4.0, 0.0)}
  text = comparison.markdown(table)
  assert "| method=regda | target | 3 | 21.0 ± 1.6 | 22.0 ± 1.6 |" in text
  assert '"method=regda",target,all,3,22,1.63299' in comparison.csv(table)


def test_the_command_prints_and_writes_the_table_and_names_an_unfinished_run(tmp_path):
  runs = [str(finished_run(tmp_path / f"s{s}", "regda", s, 20.0 + s)) for s in range(2)]
  out = tmp_path / "table.csv"
  done = subprocess.run([sys.executable, "-m", "dapose_jax", "table", *runs, "--format", "csv", "--out", str(out)],
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert '"s0",target,all,2,20.5,0.5' in out.read_text() and '"s0",target,all,2,20.5,0.5' in done.stdout
  (tmp_path / "unfinished").mkdir()
  with pytest.raises(errors.MissingInputError, match="unfinished: no config.json; give finished run folders"):
    comparison.groups([*runs, tmp_path / "unfinished"])
  again = subprocess.run([sys.executable, "-m", "dapose_jax", "table", *runs, "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
  assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr


def logged(folder, losses, target_all):
  """metrics.jsonl of a run: a train loss at steps 1.. and a target evaluation at every second step."""
  lines = [{"step": s, "kind": "train", "loss": loss, "lr_features": 0.01} for s, loss in enumerate(losses, 1)]
  lines += [{"step": s, "kind": "eval", "target": {"head": 0.0, "all": v}} for s, v in zip((2, 4), target_all)]
  (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_curves_average_the_seeds_of_each_group_at_the_steps_all_logged(tmp_path):
  runs = []
  for method, seed, losses, target in [("source_only", 0, [4.0, 3.0, 2.0, 1.0], [10.0, 20.0]),
                                       ("source_only", 1, [6.0, 5.0, 4.0], [30.0, 40.0]),
                                       ("regda", 0, [1.0, 1.0, 1.0, 1.0], [50.0, 60.0])]:
    runs.append(finished_run(tmp_path / f"{method}_s{seed}", method, seed, 0.0))
    logged(runs[-1], losses, target)
  curves = comparison.curves(comparison.groups(runs))
  assert list(curves) == ["loss", "lr_features", "target/all"]
  steps, mean, std = curves["loss"]["method=source_only"]
  assert steps.tolist() == [1, 2, 3] and mean.tolist() == [5.0, 4.0, 3.0] and std.tolist() == [1.0, 1.0, 1.0]
  steps, mean, _ = curves["target/all"]["method=regda"]
  assert steps.tolist() == [2, 4] and mean.tolist() == [50.0, 60.0]
  with pytest.raises(errors.ConfigError, match="series 'source/all' is not in the metrics.jsonl of"):
    comparison.curves(comparison.groups(runs), ["source/all"])
  out = tmp_path / "curves.png"
  done = subprocess.run([sys.executable, "-m", "dapose_jax", "plot", *map(str, runs), "--out", str(out)],
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  picture = np.asarray(Image.open(out))
  height, width = drawing.PLOT_SIZE
  assert picture.shape[0] > 2 * height and picture.shape[1] > 2 * width  # 3 panels in 2 columns
  for colour in drawing.PLOT_COLOURS[:2]:  # both groups drawn
    assert np.any(np.all(picture == colour, axis=-1))
