"""A run and the tools fail in one line and leave their folders usable: an atomic start, a checkpoint that cannot be
written, the tools' outputs checked before they work, and unexpected errors logged to a file."""

import contextlib
import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from dapose_jax import errors
from dapose_jax.data import pipeline
from dapose_jax.run import loop
from tests.test_train import tiny_config, tiny_run

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

