"""One run per workdir: the run lock."""

import json
import logging
import os
import socket
import subprocess

import pytest

from dapose_jax.run import loop
from dapose_jax.storage import workdirs
from tests.test_train import tiny_config


def dead_pid():
  proc = subprocess.Popen(["true"])
  proc.wait()
  return proc.pid


def write_lock(workdir, pid, host=None):
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / workdirs.LOCK).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                                   "since": "2026-12-01 10:00:00"}))


def test_the_lock_names_its_holder_while_held_and_is_gone_after(tmp_path):
  with workdirs.locked(tmp_path):
    holder = json.loads((tmp_path / workdirs.LOCK).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert sorted(p.name for p in tmp_path.iterdir()) == [workdirs.LOCK]  # no claim file left
  assert not (tmp_path / workdirs.LOCK).exists()


def test_a_second_run_of_a_workdir_in_use_is_refused_before_it_writes(tmp_path):
  with workdirs.locked(tmp_path):
    with pytest.raises(workdirs.WorkdirInUseError, match=f"in use by process {os.getpid()} on"):
      loop.train_and_evaluate(tiny_config(), tmp_path)
    assert not (tmp_path / workdirs.CONFIG).exists()
  assert not (tmp_path / workdirs.LOCK).exists()  # the refused run left the holder's lock alone until its end


def test_a_lock_left_by_a_dead_process_of_this_host_is_taken_over_with_a_warning(tmp_path, caplog):
  write_lock(tmp_path, dead_pid())
  with caplog.at_level(logging.WARNING, logger="dapose_jax"), workdirs.locked(tmp_path):
    assert json.loads((tmp_path / workdirs.LOCK).read_text())["pid"] == os.getpid()
  assert "which no longer runs" in caplog.text


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
  write_lock(tmp_path, dead_pid(), host="another-host")
  with pytest.raises(workdirs.WorkdirInUseError, match="another-host.*remove .*run.lock"):
    with workdirs.locked(tmp_path):
      pass
  assert json.loads((tmp_path / workdirs.LOCK).read_text())["host"] == "another-host"
