"""What a run writes into its workdir, by name; the lock that keeps one run per workdir; the guard that a
workdir holds one run's config."""

import contextlib
import json
import logging
import os
import pathlib
import shutil
import socket
import tempfile
import time

import jax

from dapose_jax import errors

log = logging.getLogger("dapose_jax")

CONFIG = "config.json"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
BEST = "best"
RESULTS = "results.json"
LOCK = "run.lock"


class WorkdirInUseError(errors.UserError, RuntimeError):
  pass


@contextlib.contextmanager
def locked(workdir):
  """Holds ``workdir/run.lock`` ({"pid", "host", "since"}) while the block runs; process 0 takes it for all.

  A second run of the same workdir is refused with the holder's pid and host. A lock left behind by a
  process of this host that no longer runs (a kill) is taken over with a warning; one from another host is
  never taken over, since whether its process runs cannot be told from here.
  """
  if jax.process_index() != 0:
    yield
    return
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / LOCK
  mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
  claim = workdir / f".{LOCK}.{mine['pid']}"
  claim.write_text(json.dumps(mine) + "\n")
  try:
    while True:
      try:
        os.link(claim, path)  # appears complete or not at all, and only if no lock is there
        break
      except FileExistsError:
        holder = _read_lock(path)
        if holder is None and not path.exists():  # released meanwhile
          continue
        if holder is not None and (holder.get("host") != mine["host"] or _running(holder.get("pid"))):
          raise WorkdirInUseError(
              f"{workdir} is in use by process {holder.get('pid')} on {holder.get('host')} (since "
              f"{holder.get('since')}); wait for that run to end, or, if it is gone, remove {path}") from None
        log.warning("taking over %s, left by %s, which no longer runs", path, holder or "an unreadable lock")
        path.unlink(missing_ok=True)
  finally:
    claim.unlink()
  try:
    yield
  finally:
    if _read_lock(path) == mine:
      path.unlink()


def _read_lock(path):
  """The lock's content, or None where it cannot be read as one."""
  try:
    holder = json.loads(path.read_text())
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None
  except (FileNotFoundError, json.JSONDecodeError):
    return None


def _running(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True


EXTENSIBLE = ("epochs",)  # what a resumed run may change: it extends the run


def check_config(recorded, workdir):
  """The keys in which ``recorded`` (a JSON-ready dict) differs from the config that ``workdir`` recorded (none for a
  new workdir); a difference other than ``EXTENSIBLE`` (a resumed run must repeat its config) is refused."""
  path = workdir / CONFIG
  if not path.exists():
    return []
  changed = sorted(_diff_keys(read_recorded(path), recorded))
  if set(changed) - set(EXTENSIBLE):
    raise errors.ConfigError(
        f"{workdir} already holds a run with a different config (differs in: {', '.join(changed)}). "
        "Use a new --workdir, or repeat the original flags to resume that run (only epochs may change: more "
        "epochs extend it).")
  return changed


def read_recorded(path):
  """The config a run recorded in ``path`` (its config.json), one line naming the file if it cannot be read."""
  return read_json(path, "recorded config (the config.json a run writes)",
                   f"use a new --workdir, or remove {path} only if {path.parent} holds no run")


def record_config(recorded, workdir):
  """Write ``recorded`` (a JSON-ready dict) as ``config.json``, or check that a resumed run recorded the same
  but for ``epochs`` (``check_config``: never overwrite silently)."""
  path = workdir / CONFIG
  if path.exists():
    changed = check_config(recorded, workdir)
    if not changed:
      return
    old = read_recorded(path)
    log.info("%s: %s", workdir, ", ".join(f"{key} {old[key]} -> {recorded[key]}" for key in changed))
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def removed_unless_recorded(workdir):
  """For the block that starts a run in ``workdir`` and records its config: when the block fails before
  ``config.json`` is there, the folders of ``workdir``'s path that did not exist before are removed again, so that
  a start that fails leaves no folder behind (a workdir that existed is left to the block, which writes nothing
  into it before the record but the lock and Orbax's empty ``checkpoints/``)."""
  workdir = pathlib.Path(workdir)
  created = next((p for p in [*reversed(workdir.parents), workdir] if not p.exists()), None)
  try:
    yield
  except BaseException:
    if created is not None and jax.process_index() == 0 and not (workdir / CONFIG).exists():
      shutil.rmtree(created, ignore_errors=True)
    raise


def _diff_keys(a, b, prefix=""):
  for key in set(a) | set(b):
    if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
      yield from _diff_keys(a[key], b[key], f"{prefix}{key}.")
    elif a.get(key) != b.get(key):
      yield prefix + key


def read_json(path, what, fix, kind=dict):
  """The JSON value in the file ``path``, of type ``kind`` (None: any). A file that is missing, is no UTF-8 JSON or
  holds another type raises a ``errors.UserError`` in one line naming ``path``, ``what`` it should be and ``fix``."""
  path = pathlib.Path(path)
  try:
    value = json.loads(path.read_bytes())
  except FileNotFoundError:
    raise errors.MissingInputError(f"{path} is missing: {what} was expected; {fix}") from None
  except (OSError, ValueError) as error:  # ValueError: undecodable bytes or text that is no JSON
    raise errors.CorruptInputError(f"{path} is not a readable {what} ({errors.one_line(error)}); {fix}") from None
  if kind is not None and not isinstance(value, kind):
    raise errors.CorruptInputError(f"{path} holds a {type(value).__name__}, not a {what}; {fix}")
  return value


def check_writable(path, *, folder, name):
  """Raises ``errors.WriteError`` unless ``path`` can be written as a folder (``folder``: made with its parents
  where missing) or as a file: not a file where a folder is expected nor the reverse, below no file, and in a folder
  this process may write. ``name`` says what the path is for (e.g. "--out"). Called before a command works, so that
  what it computes is not lost at the end."""
  path = pathlib.Path(path).expanduser().absolute()
  if folder and path.exists() and not path.is_dir():
    raise errors.WriteError(f"{name} {path} is a file; expected a folder (an existing one, or a new one to make)")
  if not folder and path.is_dir():
    raise errors.WriteError(f"{name} {path} is a folder; expected the name of a file to write")
  existing = next(p for p in (path, *path.parents) if p.exists())
  if existing != path and not existing.is_dir():
    raise errors.WriteError(f"{name} {path}: {existing} is a file, so no folder can be made in it")
  into = existing if existing.is_dir() else existing.parent  # a file is replaced by writing beside it
  if not os.access(into, os.W_OK | os.X_OK):
    raise errors.WriteError(f"{name} {path}: {into} cannot be written (no permission, or a read-only file system); "
                            f"choose another {name}")


def write_atomic(path, data: bytes):
  """Write to a temporary file in the same folder, then rename over ``path``."""
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the permissions open() would
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise
