"""Every Orbax checkpoint a run writes and reads back (the only module that opens an Orbax manager).

A run folder holds ``checkpoints/STEP`` (the train state and the run's progress: evaluation history, best entry,
device count; the newest ``config.keep_checkpoints``) and ``best/STEP`` (the state of the best evaluation). The data
iterators need no state of their own: step N's batches are batch N of each (``pipeline.train_iterator``).
"""

import dataclasses
import logging
import pathlib
import sys

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from dapose_jax import errors
from dapose_jax.storage import workdirs

log = logging.getLogger("dapose_jax")


class RunCheckpoints:
  """The checkpoints of the run in ``workdir``: ``checkpoints/`` (the newest ``keep`` of state and progress) and
  ``best/`` (one state), opened for a training run. Use as a context manager, or ``close()``."""

  def __init__(self, workdir, keep):
    self._latest = ocp.CheckpointManager(workdir / workdirs.CHECKPOINTS,
                                         options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    self._best_folder, self._best = workdir / workdirs.BEST, None

  @property
  def directory(self):
    """The folder of the state-and-progress checkpoints."""
    return pathlib.Path(self._latest.directory)

  def latest_step(self):
    """The newest saved step, None before the first."""
    return self._latest.latest_step()

  def save(self, step, state, progress, force=False):
    """Saves ``state`` and ``progress`` as step ``step`` (in the background); ``force`` also between intervals."""
    self._latest.save(step, args=_args(state, progress), force=force)

  def save_best(self, step, state):
    """Saves ``state`` as the best one, replacing the previous best."""
    if self._best is None:
      self._best = ocp.CheckpointManager(self._best_folder, options=ocp.CheckpointManagerOptions(max_to_keep=1))
    self._best.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))

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
        _drop_closed_event_loop_noise()
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
    raise RuntimeError(f"no checkpoint in {self.directory} can be restored (steps {[s for s, _ in failed]}); the "
                       f"newest: {errors.one_line(failed[0][1], limit=200)}") from failed[0][1]

  def close(self):
    """Waits for the saves in flight and closes the managers."""
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
  differs. A folder that Orbax cannot read raises ``CorruptInputError``, one without a state
  ``MissingInputError``."""
  path = pathlib.Path(folder) / str(step)
  # a handler for every item a checkpoint may hold, or Orbax warns about the ones it could not read
  handlers = {"state": ocp.StandardCheckpointHandler(), "progress": ocp.JsonCheckpointHandler()}
  with ocp.CheckpointManager(folder, item_handlers=handlers) as mngr:
    try:
      stored = mngr.item_metadata(step)["state"]
    except Exception as error:  # noqa: BLE001  a damaged or foreign folder
      raise errors.CorruptInputError(f"{path} is not a readable checkpoint: {errors.one_line(error)}") from None
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
      raise errors.CorruptInputError(f"{path} cannot be restored: {errors.one_line(error)}") from None


def _drop_closed_event_loop_noise():
  """After a failed Orbax restore, TensorStore's pending callbacks report "Event loop is closed" as hundreds of
  unraisable exceptions that bury the real cause; from then on those (and only those) are not printed."""
  previous = sys.unraisablehook
  if getattr(previous, "drops_closed_event_loop_noise", False):
    return

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)

  hook.drops_closed_event_loop_noise = True
  sys.unraisablehook = hook


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
