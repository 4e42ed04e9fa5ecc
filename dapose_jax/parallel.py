"""Device mesh, shardings and host-batch -> global-array conversion (data parallel, multi-host ready)."""

import collections
import itertools

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from dapose_jax import errors


def make_mesh(devices=None):
  """A 1-D ('data',) mesh over every device of every process, or over ``devices`` (e.g. a topology's, to compile
  for devices this host does not have)."""
  if devices is not None:
    return Mesh(np.asarray(devices), ("data",), axis_types=(AxisType.Auto,))
  return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))


def data_sharding(mesh):
  return NamedSharding(mesh, P("data"))


def replicated(mesh):
  return NamedSharding(mesh, P())


def local_batch_size(global_batch_size, key=None):
  """This process's share of a global batch; it must split evenly over processes and devices. ``key``: the config
  key that sets it (e.g. "config.eval_batch_size"), which the error names."""
  if global_batch_size % jax.device_count():
    raise errors.ConfigError(
        f"{f'{key}={global_batch_size}' if key else f'batch size {global_batch_size}'} is not divisible by the "
        f"{jax.device_count()} devices; choose a multiple of the device count")
  return global_batch_size // jax.process_count()


def to_global(batch, mesh):
  """Host-local numpy batch (leading axis = local batch) -> global jax.Array sharded over 'data'."""
  sharding = data_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def prefetch_to_device(batches, mesh, size=2):
  """The host batches of ``batches`` as global arrays, ``size`` on the devices at a time (the one in use and the
  next ``size`` - 1): transfers are asynchronous, so the next batch travels while the current step computes
  (double buffering for ``size`` 2). The batches and their order are those of ``batches``."""
  queue = collections.deque()

  def enqueue(count):
    for batch in itertools.islice(batches, count):
      queue.append(to_global(batch, mesh))

  enqueue(size)
  while queue:
    yield queue.popleft()
    enqueue(1)


def to_host(array):
  """A global jax.Array as one numpy array on every process (gathered from the other processes' devices)."""
  if jax.process_count() == 1:
    return np.asarray(jax.device_get(array))
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def global_sum(local_count):
  """The sum over all processes of an integer that each process counted on its own."""
  if jax.process_count() == 1:
    return local_count
  from jax.experimental import multihost_utils
  return int(np.sum(multihost_utils.process_allgather(np.array(local_count))))
