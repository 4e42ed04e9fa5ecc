"""Reading trained trees back: the best state of a finished run, checked against the tree it replaces; how a
checkpoint's state differs from the state a config makes."""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from dapose_jax import errors


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
