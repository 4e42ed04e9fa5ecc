"""Reading trained trees back: the best state of a finished run, checked against the tree it replaces."""

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
