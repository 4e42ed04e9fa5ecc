import functools

import jax
import numpy as np
import pytest
from jax.sharding import AxisType

from dapose_jax import parallel
from dapose_jax.methods import source_only
from tests.test_train import tiny_config


def random_batch(config, n, seed):
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 256, (n, config.image_size, config.image_size, 3), dtype=np.uint8),
          "keypoints": rng.uniform(0, config.image_size, (n, 16, 2)).astype(np.float32),
          "visible": (rng.uniform(size=(n, 16)) > 0.2).astype(np.float32)}


def run_step(config, mesh, batch):
  repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  state = jax.jit(functools.partial(source_only.init, config), out_shardings=repl)(jax.random.key(0))
  step = jax.jit(functools.partial(source_only.train_step, config), in_shardings=(repl, data, data),
                 out_shardings=(repl, repl))
  global_batch = parallel.to_global(batch, mesh)
  state, metrics = step(state, global_batch, global_batch)
  return jax.device_get(state), jax.device_get(metrics)


def init_params(config):
  return jax.device_get(jax.jit(functools.partial(source_only.init, config))(jax.random.key(0)).params)


@pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 (virtual) devices")
def test_four_devices_give_the_same_loss_and_update_as_one():
  config = tiny_config()
  config.source_only.optimizer = "sgd"  # updates linear in the gradient (Adam's first step is ~sign(g))
  config.source_only.lr = 0.1
  batch = random_batch(config, 8, 0)
  one = jax.make_mesh((1,), ("data",), axis_types=(AxisType.Auto,), devices=jax.devices()[:1])
  four = parallel.make_mesh()
  assert four.devices.size == 4
  state1, m1 = run_step(config, one, batch)
  state4, m4 = run_step(config, four, batch)
  assert float(m1["loss"]) > 0
  np.testing.assert_allclose(m4["loss"], m1["loss"], rtol=1e-5)
  # BatchNorm statistics are over the global batch, so updated running stats agree too
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6),
               state4.batch_stats, state1.batch_stats)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-7), state4.params, state1.params)
  moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), state1.params, init_params(config))
  assert max(jax.tree.leaves(moved)) > 1e-4


def test_batch_size_not_divisible_by_devices_is_refused():
  with pytest.raises(ValueError, match="divisible"):
    parallel.local_batch_size(jax.device_count() * 2 + 1)


def test_prefetch_to_device_keeps_the_batches_and_reads_only_size_ahead():
  mesh = parallel.make_mesh()
  batches = [{"x": np.full((jax.device_count(), 2), i, np.float32)} for i in range(5)]
  read = []

  def host_batches():
    for i, batch in enumerate(batches):
      read.append(i)
      yield batch

  prefetched = parallel.prefetch_to_device(host_batches(), mesh, size=2)
  first = next(prefetched)
  assert read == [0, 1]  # the one in use and the next, travelling while it is used
  assert isinstance(first["x"], jax.Array) and first["x"].sharding == parallel.data_sharding(mesh)
  second = next(prefetched)
  assert read == [0, 1, 2]
  rest = [np.asarray(b["x"]) for b in (second, *prefetched)]
  np.testing.assert_array_equal(np.asarray(first["x"]), batches[0]["x"])
  for got, want in zip(rest, batches[1:], strict=True):
    np.testing.assert_array_equal(got, want["x"])
