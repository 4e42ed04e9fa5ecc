"""Every Orbax checkpoint a run writes and reads back (the only module that opens an Orbax manager).

A run folder holds ``checkpoints/STEP`` (the train state and the run's progress: evaluation history, best entry,
device count; the newest ``config.keep_checkpoints``) and ``best/STEP`` (the state of the best evaluation). The data
iterators need no state of their own: step N's batches are batch N of each (``pipeline.train_iterator``).
"""

import dataclasses
import logging
import os
import pathlib
import re
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from dapose_jax import errors
from dapose_jax.storage import workdirs

log = logging.getLogger("dapose_jax")


class RunCheckpoints:
  """The checkpoints of the run in ``workdir``: ``checkpoints/`` (the newest ``keep`` of state and progress) and
  ``best/`` (one state), opened for a training run. Use as a context manager, or ``close()``.

  Saves run in the background. One that fails (a full disk) stops the run in one line, ``errors.WriteError``: the
  step it could not write, the cause, the last good checkpoint and how to resume; its partial folders
  (``*.orbax-checkpoint-tmp*``) are removed, and Orbax's reports of it do not reach the terminal."""

  def __init__(self, workdir, keep):
    _quiet_orbax_failures()  # from the start: a save that fails in the background is noisy before it is seen
    self._latest = ocp.CheckpointManager(workdir / workdirs.CHECKPOINTS, options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, cleanup_tmp_directories=True))
    self._best_folder, self._best = workdir / workdirs.BEST, None
    self._saving = {}  # {manager: the step it saves or saved last}

  @property
  def directory(self):
    """The folder of the state-and-progress checkpoints."""
    return pathlib.Path(self._latest.directory)

  def latest_step(self):
    """The newest saved step, None before the first."""
    return self._latest.latest_step()

  def save(self, step, state, progress, force=False):
    """Saves ``state`` and ``progress`` as step ``step`` (in the background); ``force`` also between intervals."""
    self._save(self._latest, step, _args(state, progress), force=force)

  def save_best(self, step, state):
    """Saves ``state`` as the best one, replacing the previous best."""
    if self._best is None:
      self._best = ocp.CheckpointManager(self._best_folder, options=ocp.CheckpointManagerOptions(
          max_to_keep=1, cleanup_tmp_directories=True))
    self._save(self._best, step, ocp.args.Composite(state=ocp.args.StandardSave(state)))

  def check(self, step):
    """Raises ``errors.WriteError`` when a save has failed, at ``step`` of the run. On one process it is seen at the
    first step after the failure (without waiting for a save in flight); on several, at the next save or
    ``close``, where every process waits for the previous save, so that all stop at the same step."""
    if jax.process_count() > 1:
      return
    for manager in self._saving:
      if not manager.is_saving_in_progress():
        self._wait(manager, step)

  def _save(self, manager, step, args, force=False):
    # The saves in flight end first: a failed one is reported as its own step's, and a checkpoint's progress never
    # names a best state that was not written (the best is saved first).
    for saving in list(self._saving):
      self._wait(saving, step)
    try:
      if manager.save(step, args=args, force=force):
        self._saving[manager] = step
    except Exception as error:  # noqa: BLE001  e.g. its folder cannot be made
      self._stop(error, manager, step, step)

  def _wait(self, manager, step):
    try:
      manager.wait_until_finished()
    except Exception as error:  # noqa: BLE001  Orbax re-raises what failed in its threads
      self._stop(error, manager, self._saving[manager], step)

  def _stop(self, error, manager, failed, step):
    """After a failed save of step ``failed`` seen at ``step``: waits for the other saves, removes the partial
    folders and raises ``errors.WriteError`` where the cause is the file system's, else ``error`` (a bug)."""
    for other in self._saving:
      try:
        other.close()
      except Exception:  # noqa: BLE001  the failure is reported once, below
        pass
    self._saving = {}
    if jax.process_index() == 0:
      for folder in (self.directory, self._best_folder):
        _remove_partial_checkpoints(folder)
    cause = _os_error(error)
    if cause is None:
      raise error
    kept = max((int(p.name) for p in self.directory.iterdir() if p.name.isdigit()), default=None)
    resume = (f"the last good checkpoint is step {kept} in {self.directory}: make room and run the same command to "
              f"resume from it" if kept is not None else
              "no checkpoint was written yet: make room and run the same command to start again")
    raise errors.WriteError(f"checkpoint {failed} could not be written to {pathlib.Path(manager.directory)} "
                            f"({cause}); training stopped at step {step}; {resume}") from error

  def restore_newest_good(self, like):
    """(step, state, progress) of the newest checkpoint that restores into the structure, shapes, dtypes and
    shardings of the state ``like``. Newer
    ones that do not (a kill or a full disk can damage the last one written) are moved aside as STEP.corrupt, each
    with a warning naming the cause; when none restores, the newest one's error is raised and nothing is moved."""
    abstract, failed = jax.tree.map(ocp.utils.to_shape_dtype_struct, like), []
    for step in sorted(self._latest.all_steps(), reverse=True):
      try:
        restored = self._latest.restore(step, args=_args(abstract, restore=True))
      except Exception as error:  # noqa: BLE001  any damage: a missing or truncated file, unreadable JSON, ...
        failed.append((step, error))
        continue
      for bad, error in failed:
        aside = self.directory / f"{bad}.corrupt"
        log.warning("checkpoint %d in %s cannot be restored (%s); moved aside to %s, resuming from step %d", bad,
                    self.directory, errors.one_line(error, limit=200), aside, step)
        if jax.process_index() == 0:
          (self.directory / str(bad)).rename(aside)
      if failed:
        if jax.process_count() > 1:
          from jax.experimental import multihost_utils
          multihost_utils.sync_global_devices("damaged checkpoints moved aside")
        self._latest.reload()
      return step, restored.state, restored.progress
    raise errors.CorruptInputError(
        f"no checkpoint in {self.directory} can be restored (steps {[s for s, _ in failed]}); the newest: "
        f"{errors.one_line(failed[0][1], limit=200)}; train in a new --workdir (this run cannot resume)"
    ) from failed[0][1]

  def close(self, step=None):
    """Waits for the saves in flight (a failed one raises as in ``check``, at ``step``, by default the last saved)
    and closes the managers."""
    for manager in list(self._saving):
      self._wait(manager, self._saving[manager] if step is None else step)
    self._latest.close()
    if self._best is not None:
      self._best.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _args(state, progress=None, restore=False):
  """Orbax's arguments for a checkpoint of ``state`` and ``progress`` (restoring: into ``state``'s structure)."""
  if restore:
    return ocp.args.Composite(state=ocp.args.StandardRestore(state), progress=ocp.args.JsonRestore())
  return ocp.args.Composite(state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(progress))


def write(folder, step, state, progress):
  """Writes one checkpoint of ``state`` and ``progress`` as ``folder/STEP`` and waits for it (an imported run)."""
  with ocp.CheckpointManager(folder, options=ocp.CheckpointManagerOptions(create=True)) as mngr:
    mngr.save(step, args=_args(state, progress))
    mngr.wait_until_finished()


def read(folder, step, abstract_state):
  """(state, progress) of checkpoint ``folder/STEP``, restored into ``abstract_state``'s structure."""
  with ocp.CheckpointManager(folder) as mngr:
    restored = mngr.restore(step, args=_args(abstract_state, restore=True))
  return restored.state, restored.progress


def saved_steps(folder):
  """The steps of the complete checkpoints in ``folder`` (a run's checkpoints/ or best/), ascending."""
  with ocp.CheckpointManager(folder) as mngr:
    return sorted(mngr.all_steps())


def restore_state(folder, step, abstract_state):
  """(state, None): the train state of checkpoint ``folder/STEP`` restored into ``abstract_state`` (its sharding
  included); (None, phrase) when the checkpoint holds a state of another structure, the phrase saying how it
  differs. A folder that Orbax cannot read or restore raises ``CorruptInputError`` naming the step and the next
  older one to try, one without a state ``MissingInputError``."""
  path = pathlib.Path(folder) / str(step)
  # a handler for every item a checkpoint may hold, or Orbax warns about the ones it could not read
  handlers = {"state": ocp.StandardCheckpointHandler(), "progress": ocp.JsonCheckpointHandler()}
  with ocp.CheckpointManager(folder, item_handlers=handlers) as mngr:
    try:
      stored = mngr.item_metadata(step)["state"]
    except Exception as error:  # noqa: BLE001  a damaged or foreign folder
      raise _damaged(path, mngr.all_steps(), error) from None
    if stored is None:
      raise errors.MissingInputError(f"{path} holds no train state")
    differs = state_mismatch(stored, abstract_state)
    if differs is not None:
      return None, differs
    try:
      return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))).state, None
    except ValueError as error:  # Orbax: a tree or a shape that does not match
      return None, errors.one_line(error)
    except Exception as error:  # noqa: BLE001  e.g. a truncated array file
      raise _damaged(path, mngr.all_steps(), error) from None


def _damaged(path, steps, error):
  """The ``CorruptInputError`` of checkpoint ``path`` (a step folder), which ``error`` could not read, naming the
  newest of ``steps`` (its manager's) before it to try instead."""
  _quiet_orbax_failures()
  step = int(path.name)
  older = max((s for s in steps if s < step), default=None)
  instead = (f"try the step before it: --checkpoint={path.parent / str(older)}" if older is not None else
             f"{path.parent} holds no older checkpoint")
  return errors.CorruptInputError(f"checkpoint {path} (step {step}) is damaged and cannot be read "
                                  f"({errors.one_line(_root_cause(error), limit=200)}); {instead}")


def _root_cause(error):
  """The first error of the chain that ``error`` was raised from (TensorStore's, under Orbax's wrappers)."""
  while (error.__cause__ or error.__context__) is not None:
    error = error.__cause__ or error.__context__
  return error


def _remove_partial_checkpoints(folder):
  """Removes the partial checkpoints (``*.orbax-checkpoint-tmp*``) of failed saves from ``folder``. TensorStore's
  writes of a failed save may still be landing (from its own threads, which nothing can wait for) and make again
  what was removed: the folder is cleared until it stays clear for a moment (at most 10 s)."""
  found = True
  for _ in range(40):
    partial = list(folder.glob("*.orbax-checkpoint-tmp*"))
    if not partial and not found:
      return
    found = bool(partial)
    for path in partial:
      shutil.rmtree(path, ignore_errors=True)
    time.sleep(0.25)


def _os_error(error):
  """The operating system's words for what made ``error`` (or an error it was raised from) fail, e.g. "No space left
  on device", from an ``OSError`` or TensorStore's ``[os_error_code=...]``; None when it is not the file system's."""
  while error is not None:
    if isinstance(error, OSError) and error.errno:
      return os.strerror(error.errno)
    code = re.search(r"os_error_code='?(\d+)", str(error))
    if code:
      return os.strerror(int(code.group(1)))
    error = error.__cause__ or error.__context__
  return None


def _quiet_orbax_failures():
  """A failed save or restore is reported by Orbax and TensorStore many times over, beside the exception that
  reaches the caller: hundreds of "Event loop is closed" unraisable exceptions of TensorStore's pending callbacks,
  the coroutines and futures of the abandoned writes (when they are collected, up to the interpreter's exit) and
  error logs with tracebacks from Orbax's threads. From this call on those (and only those) are not printed; the caller
  reports the failure in one line."""
  previous = sys.unraisablehook
  if getattr(previous, "quiets_orbax_failures", False):
    return

  def hook(unraisable):
    code = getattr(unraisable.object, "cr_code", None)  # a coroutine's
    if not ((isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed")
            or (code is not None and _ORBAX_FILES in code.co_filename)):
      previous(unraisable)

  hook.quiets_orbax_failures = True
  sys.unraisablehook = hook
  logging.getLogger("absl").addFilter(lambda record: record.levelno < logging.ERROR or
                                      _ORBAX_FILES not in record.pathname)
  logging.getLogger("asyncio").addFilter(lambda record: "exception was never retrieved" not in record.getMessage())


_ORBAX_FILES = str(pathlib.Path(ocp.__file__).parent)


def restore_best(directory):
  """The ``state`` pytree (as nested dicts) of the checkpoint in a run's ``best`` folder."""
  with ocp.CheckpointManager(pathlib.Path(directory).expanduser().resolve()) as mngr:
    if mngr.latest_step() is None:
      raise errors.MissingInputError(f"no stage-1 checkpoint in {directory}; give the 'best' folder of a finished "
                              "run, or leave the method's 'pretrained' empty to pre-train")
    return mngr.restore(mngr.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore())).state


def checked_like(loaded, expected):
  """``loaded`` as arrays, after checking that it has the structure and shapes of ``expected``."""
  loaded = jax.tree.map(jnp.asarray, loaded)
  if jax.tree.structure(loaded) != jax.tree.structure(expected):
    raise errors.ConfigError("a loaded checkpoint does not have the parameters of this model: was it trained with "
                     "the same config.model and keypoint set?")

  def check(a, b):
    if a.shape != b.shape:
      raise errors.ConfigError(f"a loaded checkpoint has a parameter of shape {a.shape}, expected {b.shape}: was it "
                       "trained with the same config.model?")
    return a

  return jax.tree.map(check, loaded, expected)


def state_mismatch(stored, expected):
  """How a checkpoint's state differs from the ``expected`` state (a method's state dataclass for a config, of
  arrays or shape structs), in one phrase, or None: ``stored`` is the checkpoint's Orbax metadata tree (nested
  dicts). Compared: the state's fields, and the names and shapes of every array of its dict-valued fields (the
  model's parameters and statistics); the rest (optimiser states) is left to the restore."""
  fields = {field.name: getattr(expected, field.name) for field in dataclasses.fields(expected)}
  if set(stored.keys()) != set(fields):
    return f"its state has the fields {sorted(stored.keys())}, this method's state {sorted(fields)}"
  for name, value in fields.items():
    if not isinstance(value, dict):
      continue
    found, wanted = _shapes(stored[name]), _shapes(value)
    for key, shape in wanted.items():
      if key not in found:
        return f"it has no {name}.{key}, which this config's model has"
      if found[key] != shape:
        return f"its {name}.{key} has shape {found[key]}, this config's model {shape}"
    extra = sorted(set(found) - set(wanted))
    if extra:
      return f"it has {name}.{extra[0]}, which this config's model has not"
  return None


def _shapes(tree):
  """{dotted path: shape} of the arrays of a tree of arrays, shape structs or Orbax array metadata."""
  leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
  return {".".join(_key_name(k) for k in path): tuple(leaf.shape) for path, leaf in leaves if hasattr(leaf, "shape")}


def _key_name(key):
  """A dict key, attribute name or sequence index of a tree path, as Orbax names it."""
  return str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))))
