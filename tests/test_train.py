import dataclasses
import fcntl
import functools
import io
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

import configs.demo
from dapose_jax import errors, methods, parallel
from dapose_jax.pose import skeletons
from dapose_jax.run import finished, loop
from tests.test_metric_writers import tensorboard_events


def tiny_config(**overrides):
  c = configs.demo.get_config("smoke")
  configs.demo.shrink(c, image_size=32, heatmap_size=8, features=16, render_size=48, test_size=12, batch_size=4,
                      iters_per_epoch=3, log_every=1)
  c.model.backbone = "resnet10"
  for key, value in overrides.items():
    c[key] = value
  return c


@functools.cache
def tiny_run():
  """RUN of the tiny source-only run (``tiny_config()``: checkpoints 3 and 6, best/STEP, results.json), trained once
  per test session by whichever test process asks first and read by the others: copy it to change it."""
  shared = pathlib.Path(os.environ["DAPOSE_JAX_TESTS_SHARED"])
  shared.mkdir(parents=True, exist_ok=True)
  run = shared / "tiny_run"
  with open(shared / "tiny_run.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (run / "results.json").is_file():
      shutil.rmtree(run, ignore_errors=True)
      loop.train_and_evaluate(tiny_config(), run)
  return run


@pytest.fixture(scope="module")
def finished_run():
  """(RUN, its final state as restored from its last checkpoint, its results.json) of ``tiny_run``."""
  run = tiny_run()
  state = finished.load(tiny_config(), run, parallel.make_mesh()).state
  return run, jax.device_get(state), json.loads((run / "results.json").read_text())


def test_run_writes_config_metrics_tensorboard_checkpoints_and_results(finished_run):
  workdir, _, results = finished_run
  assert json.loads((workdir / "config.json").read_text())["method"] == "source_only"
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  train_steps = [r["step"] for r in records if r["kind"] == "train"]
  assert train_steps == list(range(1, 7))
  assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in records if r["kind"] == "train")
  evals = [r for r in records if r["kind"] == "eval"]
  assert [r["step"] for r in evals] == [3, 6]
  assert any((workdir / "tensorboard").iterdir())
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["3", "6"]
  on_disk = json.loads((workdir / "results.json").read_text())
  assert on_disk["final"] == {"step": 6, **{k: v for k, v in evals[-1].items() if k not in ("step", "kind")}}
  groups = set(skeletons.BODY16.groups)
  for split in ("target", "source"):
    assert set(on_disk["final"][split]) == groups
    # tllib aggregation averages a batch's -1 ("nothing counted") into its groups, hence >= -100
    assert all(-100.0 <= v <= 100.0 for v in on_disk["final"][split].values())
  assert on_disk["final"]["step"] == 6
  assert on_disk["best"]["target"]["all"] == max(e["target"]["all"] for e in evals)


def test_each_evaluation_draws_truth_vs_prediction_and_heatmaps_of_each_domain_to_tensorboard(finished_run):
  workdir, _, _ = finished_run
  images = {(value.tag, event.step): value.image for event in tensorboard_events(workdir / "tensorboard")
            for value in event.summary.value if value.HasField("image")}
  tags = {f"pictures/{domain}/{kind}" for domain in ("target", "source") for kind in ("truth_vs_prediction", "heatmaps")}
  assert set(images) == {(tag, step) for tag in tags for step in (3, 6)}
  comparison = images[("pictures/target/truth_vs_prediction", 6)]
  pixels = np.asarray(Image.open(io.BytesIO(comparison.encoded_image_string)))
  assert pixels.shape == (comparison.height, comparison.width, 3)
  # config.eval_pictures = 4 samples one above the other, each at least the 32-pixel input tall
  assert comparison.height >= 4 * 32 and pixels.std() > 0


def test_resumed_run_continues_exactly_where_it_stopped(finished_run, tmp_path):
  workdir, final_state, results = finished_run
  resumed_dir = tmp_path / "resumed"
  shutil.copytree(workdir, resumed_dir)
  shutil.rmtree(resumed_dir / "checkpoints" / "6")  # as if the run had been killed after step 3
  state, resumed_results = loop.train_and_evaluate(tiny_config(), resumed_dir)
  assert json.loads((resumed_dir / "results.json").read_text()) == json.loads(json.dumps(resumed_results))
  np.testing.assert_array_equal(int(state.step), 6)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params), final_state.params)
  assert resumed_results["final"] == results["final"]
  steps = [json.loads(l)["step"] for l in (resumed_dir / "metrics.jsonl").read_text().splitlines()
           if json.loads(l)["kind"] == "train"]
  assert steps == list(range(1, 7))  # steps after the checkpoint were dropped and logged once


def logged_steps(workdir):
  path = workdir / "metrics.jsonl"
  complete = path.read_text().split("\n")[:-1] if path.exists() else []  # a last line may be half-written
  return [json.loads(l)["step"] for l in complete if '"kind": "train"' in l]


def without_rates(records):
  return [{k: v for k, v in r.items() if k != "steps_per_second"} for r in records]


def test_a_run_killed_at_a_random_step_resumes_to_the_uninterrupted_results(finished_run, tmp_path):
  from tests.test_metric_writers import jsonl_scalars, tensorboard_scalars

  workdir, final_state, results = finished_run
  kill_after = random.Random(0).randint(2, 5)  # checkpoints are written at steps 3 and 6
  killed = tmp_path / "killed"
  child = subprocess.Popen(
      [sys.executable, "-c", "import sys, tests.conftest; from dapose_jax.run import loop; from tests.test_train "
       "import tiny_config; loop.train_and_evaluate(tiny_config(), sys.argv[1])", str(killed)],
      cwd=pathlib.Path(__file__).resolve().parents[1])
  deadline = time.monotonic() + 600
  while kill_after not in logged_steps(killed) and child.poll() is None and time.monotonic() < deadline:
    time.sleep(0.02)
  assert child.poll() is None, "the run ended before it was killed"
  child.send_signal(signal.SIGKILL)
  child.wait()
  state, resumed = loop.train_and_evaluate(tiny_config(), killed)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params), final_state.params)
  assert json.loads((killed / "results.json").read_text()) == json.loads((workdir / "results.json").read_text())
  records = lambda d: without_rates(map(json.loads, (d / "metrics.jsonl").read_text().splitlines()))
  assert records(killed) == records(workdir)
  expected = {k: v for k, v in jsonl_scalars(killed / "metrics.jsonl").items() if k[0] != "train/steps_per_second"}
  shown = {k: v for k, v in tensorboard_scalars(killed / "tensorboard").items() if k[0] != "train/steps_per_second"}
  assert shown.keys() == expected.keys() and all(abs(shown[k] - v) <= 1e-6 * max(1, abs(v)) for k, v in expected.items())


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_after_a_checkpoint_and_the_restart_reaches_the_uninterrupted_results(
    finished_run, tmp_path, signum, status):
  workdir, final_state, results = finished_run
  signal_after = random.Random(signum).randint(1, 4)  # checkpoints are written at steps 3 and 6
  stopped = tmp_path / "stopped"
  child = subprocess.Popen(
      [sys.executable, "-c", "import sys, tests.conftest; from dapose_jax.commands import cli; from dapose_jax.run "
       "import loop; from tests.test_train import tiny_config; "
       "cli._reporting_user_errors(lambda _: loop.train_and_evaluate(tiny_config(), sys.argv[1]))([])", str(stopped)],
      cwd=pathlib.Path(__file__).resolve().parents[1], stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 600
  while signal_after not in logged_steps(stopped) and child.poll() is None and time.monotonic() < deadline:
    time.sleep(0.02)
  assert child.poll() is None, "the run ended before the signal"
  child.send_signal(signum)
  _, stderr = child.communicate(timeout=600)
  assert child.returncode == status, stderr
  message = stderr.strip().splitlines()[-1]
  stopped_at = int(message.split("after step ")[1].split()[0])
  assert signal_after <= stopped_at < 6
  assert message == (f"stopped by {signal.Signals(signum).name} after step {stopped_at} of 6; checkpoint "
                     f"{stopped / 'checkpoints' / str(stopped_at)} is written: run the same command to resume")
  assert logged_steps(stopped) == list(range(1, stopped_at + 1))  # the writers were flushed
  state, resumed = loop.train_and_evaluate(tiny_config(), stopped)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params), final_state.params)
  assert json.loads((stopped / "results.json").read_text()) == json.loads((workdir / "results.json").read_text())
  records = lambda d: without_rates(map(json.loads, (d / "metrics.jsonl").read_text().splitlines()))
  assert records(stopped) == records(workdir)


def damage(checkpoint, part):
  if part == "state data":  # the largest file of the parameters, cut in half
    largest = max((f for f in (checkpoint / "state").rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])
  elif part == "state manifest":
    (checkpoint / "state" / "manifest.ocdbt").unlink()
  elif part == "progress":
    (checkpoint / "progress" / "metadata").write_text("")


@pytest.mark.parametrize("part", ["state data", "state manifest", "progress"])
def test_a_damaged_newest_checkpoint_is_moved_aside_and_the_run_resumes_from_the_one_before(
    finished_run, tmp_path, part, caplog, capfd):
  workdir, final_state, results = finished_run
  resumed_dir = tmp_path / "resumed"
  shutil.copytree(workdir, resumed_dir)
  damage(resumed_dir / "checkpoints" / "6", part)
  with caplog.at_level("WARNING", logger="dapose_jax"):
    state, resumed = loop.train_and_evaluate(tiny_config(), resumed_dir)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params), final_state.params)
  assert resumed["final"] == results["final"]
  assert sorted(p.name for p in (resumed_dir / "checkpoints").iterdir() if p.name[0].isdigit()) == [
      "3", "6", "6.corrupt"]  # the damaged one kept aside, step 6 trained again
  warnings = [r.getMessage() for r in caplog.records if "cannot be restored" in r.getMessage()]
  assert len(warnings) == 1 and "checkpoint 6 " in warnings[0] and "resuming from step 3" in warnings[0]
  assert "Event loop is closed" not in capfd.readouterr().err


def test_when_no_checkpoint_restores_the_error_says_so_and_nothing_is_moved(finished_run, tmp_path):
  workdir, _, _ = finished_run
  resumed_dir = tmp_path / "resumed"
  shutil.copytree(workdir, resumed_dir)
  for step in ("3", "6"):
    damage(resumed_dir / "checkpoints" / step, "progress")
  with pytest.raises(errors.CorruptInputError, match=r"no checkpoint in .* can be restored \(steps \[6, 3\]\)"):
    loop.train_and_evaluate(tiny_config(), resumed_dir)
  assert sorted(p.name for p in (resumed_dir / "checkpoints").iterdir() if p.name[0].isdigit()) == ["3", "6"]


def test_workdir_with_a_different_config_is_refused(finished_run):
  workdir, _, _ = finished_run
  config = tiny_config()
  config.source_only.lr = 0.5
  with pytest.raises(ValueError, match="source_only.lr"):
    loop.train_and_evaluate(config, workdir)


def test_config_json_holds_only_the_sections_the_run_uses_so_other_methods_do_not_block_a_resume(finished_run,
                                                                                               tmp_path):
  workdir, final_state, results = finished_run
  recorded = json.loads((workdir / "config.json").read_text())
  assert "source_only" in recorded and not {"regda", "mean_teacher", "daml", "style"} & set(recorded)
  resumed_dir = tmp_path / "resumed"
  shutil.copytree(workdir, resumed_dir)
  config = tiny_config()
  config.regda.lr = 0.5  # a section that source-only training never reads
  state, resumed = loop.train_and_evaluate(config, resumed_dir)
  assert resumed["final"] == results["final"] and int(state.step) == int(final_state.step)


def test_more_epochs_extend_a_finished_run_as_if_it_had_been_that_long(finished_run, tmp_path):
  workdir, _, _ = finished_run
  extended_dir = tmp_path / "extended"
  shutil.copytree(workdir, extended_dir)
  state, extended = loop.train_and_evaluate(tiny_config(epochs=3), extended_dir)
  _, whole = loop.train_and_evaluate(tiny_config(epochs=3), tmp_path / "whole")
  assert int(state.step) == 9 and extended == whole
  records = lambda d: without_rates(map(json.loads, (d / "metrics.jsonl").read_text().splitlines()))
  assert records(extended_dir) == records(tmp_path / "whole")
  assert json.loads((extended_dir / "config.json").read_text())["epochs"] == 3
  with pytest.raises(ValueError, match="can be extended .*not shortened"):
    loop.train_and_evaluate(tiny_config(epochs=1), extended_dir)


@pytest.mark.parametrize("key, value, message", [
    ("image_size", 100, "multiple of 32 and the heatmap side 1/4"),
    ("heatmap_size", 16, "multiple of 32 and the heatmap side 1/4"),
    ("batch_size", 0, "config.batch_size=0: expected a positive whole number"),
    ("epochs", 0, "config.epochs=0: expected a positive whole number"),
    ("source_only.lr", -1e-3, "config.source_only.lr=-0.001: a learning rate must be a positive number"),
    ("source_only.lr", float("nan"), "config.source_only.lr=nan"),
    ("model.backbone", "resnet13", "config.model.backbone='resnet13' is unknown"),
    ("eval_pictures", 9, "config.eval_pictures=9 is more than the images of one evaluation batch"),
    ("sampling.name", "hm", "needs config.sampling.scores: run `dapose-jax pose_vae"),
])
def test_a_config_that_cannot_work_is_refused_before_anything_is_written(key, value, message, tmp_path):
  config = tiny_config()
  section, _, field = key.rpartition(".")
  (config[section] if section else config)[field] = value
  with pytest.raises(ValueError, match=message):
    loop.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_non_finite_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
  real = methods.get("source_only")

  def poisoned_step(config, state, source, target):
    state, values = real.train_step(config, state, source, target)
    bad = state.step >= 5
    params = jax.tree.map(lambda p: jax.numpy.where(bad, jax.numpy.nan, p), state.params)
    return state.replace(params=params), {**values, "loss": jax.numpy.where(bad, jax.numpy.nan, values["loss"])}

  fake = dataclasses.replace(real, train_step=poisoned_step)
  monkeypatch.setattr(methods, "get", lambda name: fake)
  with pytest.raises(loop.NonFiniteLossError, match=r"at step 5.*step 3"):
    loop.train_and_evaluate(tiny_config(), tmp_path)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["3"]


def test_automatic_worker_count_leaves_two_cores_and_shares_the_rest(monkeypatch):
  from dapose_jax.data import pipeline
  monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
  assert pipeline.worker_count(-1) == 7
  assert pipeline.worker_count(3) == 3
  monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
  assert pipeline.worker_count(-1) == 0


@pytest.mark.parametrize("key,value", [("workers", -2), ("device_prefetch", 0)])
def test_bad_data_loading_settings_are_refused_before_anything_is_written(tmp_path, key, value):
  config = tiny_config()
  config.data[key] = value
  with pytest.raises(errors.ConfigError, match=f"config.data.{key}"):
    loop.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()
