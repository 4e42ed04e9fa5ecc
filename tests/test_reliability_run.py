"""A run and the tools fail in one line and leave their folders usable: an atomic start, a checkpoint that cannot be
written, the tools' outputs checked before they work, and unexpected errors logged to a file."""

import json
import shutil

import pytest

from dapose_jax import errors
from dapose_jax.data import pipeline
from dapose_jax.run import loop
from tests.test_train import tiny_config, tiny_run


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
