"""A run and the tools fail in one line and leave their folders usable: an atomic start, a checkpoint that cannot be
written, the tools' outputs checked before they work, and unexpected errors logged to a file."""

import contextlib
import errno
import functools
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys

import jax
import pytest
from PIL import Image

from dapose_jax import errors, parallel
from dapose_jax.commands import evaluate
from dapose_jax.data import pipeline
from dapose_jax.run import finished, loop
from dapose_jax.storage import workdirs
from tests.test_train import damage, tiny_config, tiny_run

REPO = pathlib.Path(__file__).resolve().parents[1]


def folder_state(folder):
  """{relative path: bytes (files) or None (folders)} of everything under ``folder``."""
  return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def test_a_bad_seed_is_refused_naming_the_key_before_the_workdir_is_made(tmp_path):
  with pytest.raises(errors.ConfigError, match=r"config.seed=-1: a seed must be a whole number from 0 to 4294967295"):
    loop.train_and_evaluate(tiny_config(seed=-1), tmp_path / "new" / "run")
  assert not (tmp_path / "new").exists()


def unreadable_first_sample(monkeypatch):
  def fail(*args, **kwargs):
    raise OSError("the data set cannot be read")

  monkeypatch.setattr(pipeline, "_train_sample", fail)


def test_a_start_that_fails_at_the_first_batch_leaves_no_new_workdir(tmp_path, monkeypatch):
  unreadable_first_sample(monkeypatch)
  with pytest.raises(OSError, match="the data set cannot be read"):
    loop.train_and_evaluate(tiny_config(), tmp_path / "new" / "run")
  assert not (tmp_path / "new").exists()


def test_a_start_that_fails_at_the_first_batch_leaves_a_run_untouched_and_resumable(tmp_path, monkeypatch):
  run = tmp_path / "run"
  shutil.copytree(tiny_run(), run)
  before = folder_state(run)
  unreadable_first_sample(monkeypatch)
  with pytest.raises(OSError, match="the data set cannot be read"):
    loop.train_and_evaluate(tiny_config(epochs=3), run)  # an extension: config.json would record epochs=3
  assert folder_state(run) == before
  assert json.loads((run / "config.json").read_text())["epochs"] == 2


TINY_RUN_FLAGS = [  # tiny_config() as a command line
    "--config=configs/demo.py:smoke", "--config.model.backbone=resnet10", "--config.model.upsampling_features=16",
    "--config.image_size=32", "--config.heatmap_size=8", "--config.source.render_size=48",
    "--config.target.render_size=48", "--config.source.test_size=12", "--config.target.test_size=12",
    "--config.batch_size=4", "--config.eval_batch_size=8", "--config.iters_per_epoch=3", "--config.log_every=1",
    "--config.eval_every=3", "--config.checkpoint_every=3"]


def train(*args):
  return subprocess.run([sys.executable, "-m", "dapose_jax", "train", *TINY_RUN_FLAGS, *args], capture_output=True,
                        text=True, cwd=REPO, timeout=300)


@contextlib.contextmanager
def small_disk(folder, size):
  """A tmpfs of ``size`` bytes at ``folder`` (skips the test where mounting is not permitted); yields a function
  that resizes it."""
  folder.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                    capture_output=True).returncode:
    pytest.skip("mounting a tmpfs is not permitted here")
  try:
    yield lambda size: subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)
  finally:
    subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_full_disk_stops_the_run_in_one_line_without_partial_folders_and_freed_space_resumes_it(tmp_path):
  uninterrupted = tiny_run()
  size = sum(f.stat().st_size for f in (uninterrupted / "checkpoints" / "3").rglob("*") if f.is_file())
  with small_disk(tmp_path / "disk", int(2.5 * size)) as resize:  # best/3 and checkpoints/3 fit, best/6 does not
    run = tmp_path / "disk" / "run"
    full = train(f"--workdir={run}")
    assert full.returncode == 2, full.stderr
    *progress, last = full.stderr.strip().splitlines()
    assert last == (f"error: checkpoint 6 could not be written to {run}/best (No space left on device); training "
                    f"stopped at step 6; the last good checkpoint is step 3 in {run}/checkpoints: make room and run "
                    "the same command to resume from it")
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in progress), full.stderr  # Orbax's noise is not shown
    assert not list(run.rglob("*.orbax-checkpoint-tmp*"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["3"]
    resize(4 * size)
    resumed = train(f"--workdir={run}")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "at step 3" in resumed.stderr
    assert json.loads((run / "results.json").read_text()) == json.loads((uninterrupted / "results.json").read_text())


@pytest.mark.parametrize("command, out, message", [
    ("predict", "a_file", "error: --out {out} is a file; expected a folder"),
    ("evaluate", "a_folder", "error: --out {out} is a folder; expected the name of a file to write"),
    ("evaluate", "a_file/result.json", "error: --out {out}: {tmp}/a_file is a file, so no folder can be made in it"),
])
def test_a_tool_refuses_an_output_it_cannot_write_in_one_line_before_loading_the_model(command, out, message,
                                                                                       tmp_path):
  (tmp_path / "a_file").write_text("")
  (tmp_path / "a_folder").mkdir()
  Image.new("RGB", (40, 30)).save(tmp_path / "image.png")
  run = tiny_run()
  done = subprocess.run([sys.executable, "-m", "dapose_jax", command, f"--config={run}", f"--checkpoint={run}",
                         f"--out={tmp_path / out}", *([str(tmp_path / "image.png")] if command == "predict" else [])],
                        capture_output=True, text=True, cwd=REPO, timeout=120)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1].startswith(message.format(out=tmp_path / out, tmp=tmp_path))
  assert "restored step" not in done.stderr and "Traceback" not in done.stderr


def test_an_output_folder_on_a_read_only_file_system_is_refused(tmp_path):
  disk = tmp_path / "disk"
  disk.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(disk)], capture_output=True).returncode:
    pytest.skip("mounting a tmpfs is not permitted here")
  try:
    with pytest.raises(errors.WriteError, match=f"--out {disk}/new: {disk} cannot be written"):
      workdirs.check_writable(disk / "new", folder=True, name="--out")
  finally:
    subprocess.run(["umount", str(disk)], check=True)


def test_evaluate_writes_every_output_it_can_and_names_the_one_that_failed(tmp_path, capsys):
  def full_disk():
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  json_path, png = tmp_path / "evaluate.json", tmp_path / "evaluate_target.png"
  with pytest.raises(errors.WriteError, match=rf"could not write {png} \(No space left on device\); the tables"):
    evaluate.write_each({png: full_disk, json_path: functools.partial(json_path.write_text, "{}")})
  assert json_path.read_text() == "{}" and f"wrote {json_path}" in capsys.readouterr().out


def test_a_workdir_that_is_a_file_is_refused_in_one_line(tmp_path):
  (tmp_path / "run").write_text("notes")
  with pytest.raises(errors.WriteError, match=f"the workdir {tmp_path}/run is a file; expected a folder"):
    loop.train_and_evaluate(tiny_config(), tmp_path / "run")
  assert (tmp_path / "run").read_text() == "notes"


def test_an_evaluation_batch_that_does_not_split_over_the_devices_is_refused_naming_the_key(tmp_path):
  with pytest.raises(errors.ConfigError, match=rf"config.eval_batch_size=3 is not divisible by the "
                                               rf"{jax.device_count()} devices"):
    loop.train_and_evaluate(tiny_config(eval_batch_size=3), tmp_path / "run")


@pytest.mark.parametrize("folder", ["checkpoints", "best"])
def test_a_damaged_checkpoint_names_its_step_and_the_older_one_to_try(folder, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(tiny_run(), run)
  step = max(int(p.name) for p in (run / folder).iterdir())
  damage(run / folder / str(step), "state data")
  instead = (f"try the step before it: --checkpoint={run}/checkpoints/3" if folder == "checkpoints" else
             f"{run}/best holds no older checkpoint")
  with pytest.raises(errors.CorruptInputError, match=re.escape(
      f"checkpoint {run}/{folder}/{step} (step {step}) is damaged and cannot be read (ValueError: OUT_OF_RANGE: "
      f"Error reading")) as raised:
    finished.load(tiny_config(), run / folder, parallel.make_mesh())
  assert str(raised.value).endswith(instead) and "pybind11" not in str(raised.value)


BROKEN_COMMAND = """
import sys, types
from dapose_jax.commands import cli
command = types.ModuleType("broken")
command.__doc__ = "A command whose main raises."
command.define_flags = cli.define_run_flags if sys.argv[1] == "run" else cli.define_model_flags
def main(argv):
  raise {"bug": TypeError("a bug"), "interrupt": KeyboardInterrupt()}[sys.argv[2]]
command.main = main
cli.run_command(command, argv=["broken", "--config=configs/demo.py:smoke", *sys.argv[3:]])
"""


def run_broken(tmp_path, kind, error, *args, **environment):
  env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"), **environment)
  (tmp_path / "tmp").mkdir()
  return subprocess.run([sys.executable, "-c", BROKEN_COMMAND, kind, error, *args], capture_output=True, text=True,
                        cwd=REPO, env=env, timeout=60)


@pytest.mark.parametrize("kind", ["run", "tool"])
def test_an_unexpected_error_is_one_line_naming_the_file_that_holds_its_traceback(kind, tmp_path):
  (tmp_path / "run").mkdir()
  args = [f"--workdir={tmp_path / 'run'}"] if kind == "run" else ["--checkpoint=RUN"]
  done = run_broken(tmp_path, kind, "bug", *args)
  logs = [tmp_path / "run" / "error.log"] if kind == "run" else list((tmp_path / "tmp").glob("dapose_jax-error-*.log"))
  assert done.returncode == 1 and len(logs) == 1 and logs[0].is_file()
  assert done.stderr.strip() == (f"error: unexpected TypeError: a bug (the full traceback is in {logs[0]}; with "
                                 "DAPOSE_JAX_TRACEBACK=1 it is printed here)")
  log = logs[0].read_text()
  assert "Traceback (most recent call last)" in log and log.rstrip().endswith("TypeError: a bug")


def test_developers_see_the_traceback_with_the_environment_variable_and_interrupts_pass_unchanged(tmp_path):
  shown = run_broken(tmp_path, "tool", "bug", "--checkpoint=RUN", DAPOSE_JAX_TRACEBACK="1")
  assert shown.returncode == 1 and "Traceback (most recent call last)" in shown.stderr
  assert shown.stderr.rstrip().endswith("TypeError: a bug") and "error: unexpected" not in shown.stderr
  interrupted = subprocess.run([sys.executable, "-c", BROKEN_COMMAND, "tool", "interrupt", "--checkpoint=RUN"],
                               capture_output=True, text=True, cwd=REPO, timeout=60)
  assert interrupted.returncode in (-signal.SIGINT, 128 + signal.SIGINT)
  assert interrupted.stderr.rstrip().endswith("KeyboardInterrupt") and "error: unexpected" not in interrupted.stderr
  assert not list((tmp_path / "tmp").iterdir())
