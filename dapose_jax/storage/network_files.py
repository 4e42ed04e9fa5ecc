"""The one format of the auxiliary network files (``style_net.msgpack``, ``reconstruction.msgpack``, the pose VAE's
``params.msgpack``): the variables as Flax msgpack, and an optional JSON record beside it (``NAME.json``) that says
how they were made. Written atomically by process 0, record first; read back checked against the shapes a config
gives, with one line that names the file for a missing, damaged or foreign one."""

import json
import pathlib

import flax.serialization
import jax
import jax.numpy as jnp

from dapose_jax import errors
from dapose_jax.storage import checkpoints, workdirs


def record_path(path):
  """The JSON record beside the network file ``path``."""
  return pathlib.Path(path).with_suffix(".json")


def write(path, variables, record=None, barrier="network file written"):
  """``record`` (if any) then ``variables`` into ``path``, each atomically; every process returns once it is there."""
  path = pathlib.Path(path)
  variables = jax.device_get(variables)
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    if record is not None:
      workdirs.write_atomic(record_path(path), (json.dumps(record, indent=2) + "\n").encode())
    workdirs.write_atomic(path, flax.serialization.to_bytes(variables))
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(barrier)
  return path


def read(path, like=None, remake="", what="the network of this config"):
  """The variables in ``path`` as arrays, checked against ``like`` (a tree of arrays or shape structs) when given,
  else ``what`` it should hold. ``remake``: how to make the file again, said in every error."""
  path = pathlib.Path(path).expanduser()
  hint = f"; {remake}" if remake else ""
  if not path.is_file():
    raise errors.MissingInputError(f"{path} is not a network file{hint}")
  try:
    variables = flax.serialization.msgpack_restore(path.read_bytes())
  except Exception as error:  # noqa: BLE001  whatever msgpack makes of a file that is not one
    raise errors.CorruptInputError(f"{path} is not a readable network file ({errors.one_line(error)}){hint}") from None
  if not isinstance(variables, dict):
    raise errors.CorruptInputError(f"{path} holds a {type(variables).__name__}, not a network's variables{hint}")
  if like is None:
    return jax.tree.map(jnp.asarray, variables)
  try:
    return checkpoints.checked_like(variables, like)
  except errors.ConfigError as error:
    raise errors.ConfigError(f"{path} does not hold {what} ({error}){hint}") from None


def read_record(path, remake=""):
  """The JSON record (a dict) beside the network file ``path``."""
  return workdirs.read_json(record_path(path).expanduser(), f"JSON record of {path}",
                            remake or f"write {path} again with its record")
