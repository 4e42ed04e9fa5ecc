"""The training loop: pipelines, jitted steps over the mesh, evaluation, metrics, checkpoints, NaN guard.

Nothing here is method-specific: a method module supplies init / train_step / eval_heatmaps.
"""

import functools
import json
import logging
import math
import pathlib
import time

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from dapose_jax import methods, metrics, parallel, style_training
from dapose_jax.data import pipeline, sources
from dapose_jax.methods import common
from dapose_jax.metric_writers import MetricWriter, Progress

log = logging.getLogger("dapose_jax")


class NonFiniteLossError(RuntimeError):
  pass


def _check_workdir_config(config, workdir):
  """Write config.json, or check that a resumed run uses the same config (never overwrite silently)."""
  path = workdir / "config.json"
  new = json.loads(config.to_json_best_effort())
  if path.exists():
    old = json.loads(path.read_text())
    if old != new:
      changed = sorted(_diff_keys(old, new))
      raise ValueError(
          f"{workdir} already holds a run with a different config (differs in: {', '.join(changed)}). "
          "Use a new --workdir, or repeat the original flags to resume that run.")
  elif jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(new, indent=2, sort_keys=True) + "\n")


def _diff_keys(a, b, prefix=""):
  for key in set(a) | set(b):
    if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
      yield from _diff_keys(a[key], b[key], f"{prefix}{key}.")
    elif a.get(key) != b.get(key):
      yield prefix + key


def _eval_counts(config, method, state, batch):
  """Per-keypoint (correct, counted) sums over the real samples of one global batch."""
  pred = method.eval_heatmaps(config, state, batch["image"])
  target, _ = common.heatmap_targets(config, batch)
  correct, counted = metrics.pck_hits(pred, target, config.pck.threshold)
  counted = counted & (batch["mask"][:, None] > 0)
  return jnp.sum(correct & counted, axis=0), jnp.sum(counted, axis=0)


class Evaluator:
  """PCK per keypoint group (in percent) on a test split, aggregated as config.pck.aggregation says."""

  def __init__(self, config, method, mesh):
    self.config = config
    self.mesh = mesh
    repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
    self._counts = jax.jit(functools.partial(_eval_counts, config, method),
                           in_shardings=(repl, data), out_shardings=repl)

  def __call__(self, state, source, data_config):
    groups = sources.keypoint_set(data_config).groups
    table = metrics.GroupPCK(groups, mode=self.config.pck.aggregation)
    batches = pipeline.eval_batches(source, batch_size=self.config.eval_batch_size,
                                    image_size=self.config.image_size,
                                    resize_pad=data_config.resize_pad)
    for batch in batches:
      real = int(batch["mask"].sum())
      correct, counted = jax.device_get(self._counts(state, parallel.to_global(batch, self.mesh)))
      per_keypoint = np.where(counted > 0, correct / np.maximum(counted, 1), -1.0)
      table.update(per_keypoint, self._global_real(real))
    return {name: 100.0 * value for name, value in table.result().items()}

  def _global_real(self, local_real):
    if jax.process_count() == 1:
      return local_real
    from jax.experimental import multihost_utils
    return int(np.sum(multihost_utils.process_allgather(np.array(local_real))))


def _checkpoint_args(state, source_iter, target_iter, progress, restore):
  if restore:
    return ocp.args.Composite(
        state=ocp.args.StandardRestore(state),
        source_iter=grain.checkpoint.CheckpointRestore(source_iter),
        target_iter=grain.checkpoint.CheckpointRestore(target_iter),
        progress=ocp.args.JsonRestore())
  return ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      source_iter=grain.checkpoint.CheckpointSave(source_iter),
      target_iter=grain.checkpoint.CheckpointSave(target_iter),
      progress=ocp.args.JsonSave(progress))


def _finite_or_raise(values, step, mngr):
  bad = {k: v for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)}
  if bad:
    kept = mngr.latest_step()
    where = f"the last good checkpoint (step {kept}) is kept" if kept is not None else "no checkpoint was written yet"
    raise NonFiniteLossError(f"non-finite training metrics {bad} at step {step}; stopped, {where} in "
                             f"{mngr.directory}")


def run(config, workdir):
  """Runs a method's preparatory stages, then the method: the AdaIN decoder training (into workdir/style)
  when the method stylises images and ``config.style.net`` is empty, and its pre-training stage (into
  workdir/pretrain) when it has one. A re-run reuses finished stages."""
  method = methods.get(config.method)
  workdir = pathlib.Path(workdir).expanduser().resolve()
  if hasattr(method, "configure"):
    config = method.configure(config)
  if getattr(method, "uses_style", lambda c: False)(config) and not config.style.net:
    config = config.copy_and_resolve_references()
    config.style.net = str(style_training.train_decoder(config, workdir / "style"))
  stage1 = method.pretrain_config(config) if hasattr(method, "pretrain_config") else None
  if stage1 is not None:
    pretrain_dir = workdir / "pretrain"
    log.info("stage 1: %s pre-training in %s", config.method, pretrain_dir)
    train_and_evaluate(stage1, pretrain_dir)
    config = config.copy_and_resolve_references()
    config[config.method].pretrained = str(pretrain_dir / "best")
  return train_and_evaluate(config, workdir)


def train_iterators(config):
  """The (source, target) training iterators of a run, at their start."""
  return tuple(
      pipeline.train_iterator(
          sources.make_source(data_config, "train"), batch_size=config.batch_size,
          image_size=config.image_size, augment=data_config.augment, seed=config.seed + offset,
          num_threads=config.data.num_threads, prefetch=config.data.prefetch, workers=config.data.workers)
      for offset, data_config in enumerate((config.source, config.target)))


def train_and_evaluate(config, workdir):
  """Trains config.method from config, resuming from the latest checkpoint in workdir if present."""
  workdir = pathlib.Path(workdir).expanduser().resolve()
  method = methods.get(config.method)
  source_test = sources.make_source(config.source, "test")
  target_test = sources.make_source(config.target, "test")
  _check_workdir_config(config, workdir)
  mesh = parallel.make_mesh()
  parallel.local_batch_size(config.batch_size)
  parallel.local_batch_size(config.eval_batch_size)
  repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  total_steps = config.epochs * config.iters_per_epoch

  source_iter, target_iter = train_iterators(config)

  init = jax.jit(functools.partial(method.init, config), out_shardings=repl)
  state = init(jax.random.key(config.seed))
  mngr = ocp.CheckpointManager(
      workdir / "checkpoints",
      options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True))
  best_mngr = ocp.CheckpointManager(workdir / "best", options=ocp.CheckpointManagerOptions(max_to_keep=1))
  progress = {"best": None, "history": []}
  start = 0
  if mngr.latest_step() is None:
    if hasattr(method, "load_pretrained"):
      state = jax.device_put(method.load_pretrained(config, state), repl)
  else:
    start = mngr.latest_step()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = mngr.restore(start, args=_checkpoint_args(abstract, source_iter, target_iter, None, True))
    state, progress = restored.state, restored.progress
    log.info("resumed from %s at step %d", mngr.directory, start)

  train_step = jax.jit(functools.partial(method.train_step, config), donate_argnums=(0,),
                       in_shardings=(repl, data, data), out_shardings=(repl, repl))
  evaluate = Evaluator(config, method, mesh)
  writer = MetricWriter(workdir, resume_step=start)
  timer = Progress(start, total_steps)

  for step in range(start + 1, total_steps + 1):
    source_batch = parallel.to_global(next(source_iter), mesh)
    target_batch = parallel.to_global(next(target_iter), mesh)
    state, train_metrics = train_step(state, source_batch, target_batch)
    if step == start + 1:
      jax.block_until_ready(train_metrics)
      timer.mark_first_step_done(step)
    checkpoint_now = step % config.checkpoint_every == 0 or step == total_steps
    if step % config.log_every == 0 or checkpoint_now:
      values = {k: float(v) for k, v in jax.device_get(train_metrics).items()}
      _finite_or_raise(values, step, mngr)
      rate = timer.report(step, values["loss"])
      if rate is not None:
        values["steps_per_second"] = rate
      writer.write(step, "train", values)
    if step % config.eval_every == 0 or step == total_steps:
      eval_start = time.perf_counter()
      result = {"target": evaluate(state, target_test, config.target),
                "source": evaluate(state, source_test, config.source)}
      writer.write(step, "eval", result)
      log.info("step %d  target PCK %s  source PCK %s", step, _fmt(result["target"]), _fmt(result["source"]))
      entry = {"step": step, **result}
      progress["history"].append(entry)
      selected = config.select_on
      if progress["best"] is None or entry[selected]["all"] > progress["best"][selected]["all"]:
        progress["best"] = entry
        best_mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))
      timer.exclude(time.perf_counter() - eval_start)
    if checkpoint_now:
      mngr.save(step, args=_checkpoint_args(state, source_iter, target_iter, progress, False))

  mngr.wait_until_finished()
  best_mngr.wait_until_finished()
  writer.close()
  results = {"final": progress["history"][-1] if progress["history"] else None,
             "best": progress["best"], "selected_on": f"{config.select_on} test 'all' PCK",
             "metric": f"PCK@{config.pck.threshold} in percent ({config.pck.aggregation} aggregation)",
             "method": config.method, "steps": total_steps}
  if jax.process_index() == 0:
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
  return state, results


def _fmt(table):
  return " ".join(f"{k} {v:.1f}" for k, v in table.items())
