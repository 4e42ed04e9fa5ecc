"""The training loop: a method's stages in order and, for each, the pipelines, the jitted step over the mesh,
the evaluators, metrics, checkpoints and the NaN guard.

Nothing here knows a method or its config section: a method declares its state, step, stages and hooks
(``methods.base.Method``), the config names the evaluators (``config.evals``).
"""

import functools
import itertools
import json
import logging
import math
import pathlib
import time

import jax

from dapose_jax import errors, evaluators, methods, parallel
from dapose_jax.augment import device_augment
from dapose_jax.config import defaults
from dapose_jax.data import pipeline, sampling, sources
from dapose_jax.interop import backbone_init
from dapose_jax.models import pose
from dapose_jax.run import preemption
from dapose_jax.storage import checkpoints, workdirs
from dapose_jax.storage.metric_writers import MetricWriter, Progress

log = logging.getLogger("dapose_jax")


MAX_SEED = 2**32 - 1  # the seeds that JAX, NumPy and Grain all take (Grain refuses negative ones)


class NonFiniteLossError(errors.UserError, RuntimeError):
  """Training diverged: one line on the command line (the step and the checkpoint kept), not a bug report."""


def run(config, workdir):
  """Trains ``config.method`` in ``workdir``: the stages it declares (its style network, its stage 1, then its
  own), each in its own folder; a finished stage is reused. Returns the last stage's (state, results), or None
  when there is nothing left to train."""
  workdir = pathlib.Path(workdir).expanduser().resolve()
  out = None
  for stage in methods.get(config.method).stages(config, workdir):
    log.info("stage %s: %s in %s", stage.name, stage.config.method, stage.workdir)
    out = train_and_evaluate(stage.config, stage.workdir)
  return out


def stream_seed(config, domain):
  """The seed of a run's training stream of ``domain`` (its shuffle and augmentation)."""
  return config.seed + defaults.DOMAINS.index(domain)


def train_sources(config):
  return tuple(sources.make_source(config[domain], "train", pairs=config[domain].pairs) for domain in defaults.DOMAINS)


def train_iterator(config, domain, source, start=0, seed=None, sampler=None):
  """The training iterator of ``config[domain]`` over ``source`` at the batches of step ``start`` + 1, seeded as
  a run seeds it unless ``seed`` is given; the source's stream is drawn by ``sampler``, by default the one of
  ``config.sampling``."""
  data_config = config[domain]
  seed = stream_seed(config, domain) if seed is None else seed
  if domain == "source" and sampler is None:
    sampler = sampling.from_config(config, source, seed)
  return pipeline.train_iterator(
      source, batch_size=config.batch_size, image_size=config.image_size, augment=data_config.augment,
      seed=seed, num_threads=config.data.num_threads, prefetch=config.data.prefetch,
      workers=pipeline.worker_count(config.data.workers), start=start,
      sampler=sampler if domain == "source" else None, pairs=data_config.pairs)


def train_iterators(config, train_sources, start, sampler=None):
  """The (source, target) training iterators of a run, at the batches of step ``start`` + 1; ``sampler`` as for
  ``train_iterator``."""
  return tuple(train_iterator(config, domain, source, start, sampler=sampler)
               for domain, source in zip(defaults.DOMAINS, train_sources))


def _finite_or_raise(values, step, saved):
  bad = {k: v for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)}
  if bad:
    kept = saved.latest_step()
    where = f"the last good checkpoint (step {kept}) is kept" if kept is not None else "no checkpoint was written yet"
    raise NonFiniteLossError(f"non-finite training metrics {bad} at step {step}; stopped, {where} in "
                             f"{saved.directory}")


def _check_config(config, method):
  """The loop's own keys, the heatmap geometry of a method that makes heatmaps, and the learning rates of the
  method sections the run reads."""
  for key in ("epochs", "iters_per_epoch", "batch_size", "eval_batch_size", "log_every", "eval_every",
              "checkpoint_every", "keep_checkpoints"):
    if not (isinstance(config[key], int) and config[key] > 0):
      raise errors.ConfigError(f"config.{key}={config[key]!r}: expected a positive whole number")
  if not (isinstance(config.data.workers, int) and config.data.workers >= -1):
    raise errors.ConfigError(f"config.data.workers={config.data.workers!r}: expected -1 (from the host's cores), 0 (no "
                             "worker processes) or a number of worker processes")
  if not (isinstance(config.data.device_prefetch, int) and config.data.device_prefetch >= 1):
    raise errors.ConfigError(f"config.data.device_prefetch={config.data.device_prefetch!r}: expected a number of "
                             "batches >= 1 (1: no overlap of transfer and compute)")
  for domain in defaults.DOMAINS:
    if config[domain].pairs and config[domain].augment.enabled and config[domain].augment.on_device:
      raise errors.ConfigError(f"config.{domain}.pairs=True with config.{domain}.augment.on_device=True: pairs are "
                               "augmented on the host (one transform for both images); set on_device=False")
  if method.eval_heatmaps is not None and (config.image_size % pose.INPUT_MULTIPLE
                                           or config.heatmap_size * pose.OUTPUT_STRIDE != config.image_size):
    raise errors.ConfigError(
        f"config.image_size={config.image_size}, config.heatmap_size={config.heatmap_size}: the image side must be a "
        f"multiple of {pose.INPUT_MULTIPLE} and the heatmap side 1/{pose.OUTPUT_STRIDE} of it (e.g. 256 and 64)")
  recorded = methods.as_recorded(config)
  defaults.check_named_files(recorded)
  for key, value in defaults.leaves(recorded):
    if key.rpartition(".")[2] == "seed" and not (isinstance(value, int) and 0 <= value <= MAX_SEED):
      raise errors.ConfigError(f"{key}={value!r}: a seed must be a whole number from 0 to {MAX_SEED}")
  for section in method.sections(config):
    for key, value in defaults.leaves(recorded[section], f"config.{section}"):
      if (key.endswith(".lr") or key.endswith("_lr")) and not (isinstance(value, (int, float)) and value > 0):
        raise errors.ConfigError(f"{key}={value!r}: a learning rate must be a positive number")


def _selection(config, evals):
  """(evaluator name, value key) that ``config.select_on`` names, checked before anything is written."""
  name, _, key = config.select_on.partition("/")
  if name not in evals:
    raise errors.ConfigError(f"config.select_on={config.select_on!r} names no evaluator; config.evals has "
                             f"{sorted(evals)}")
  key = key or evals[name].headline
  if key not in evals[name].keys:
    raise errors.ConfigError(f"config.select_on={config.select_on!r}: evaluator {name!r} has no value {key!r}; it has "
                     f"{', '.join(evals[name].keys)}")
  return name, key


def _drawn(config, evals):
  """{domain: its first evaluator}: whose split's first ``config.eval_pictures`` samples are drawn."""
  if config.eval_pictures <= 0:
    return {}
  if config.eval_pictures > parallel.local_batch_size(config.eval_batch_size):
    raise errors.ConfigError(f"config.eval_pictures={config.eval_pictures} is more than the images of one evaluation "
                             f"batch on each process ({parallel.local_batch_size(config.eval_batch_size)}): draw fewer")
  first = {}
  for evaluator_name, spec in config.evals.items():
    first.setdefault(spec.domain, evals[evaluator_name])
  return first


def _read_first_eval_batches(config, evals):
  """Reads the first batch of each split that ``evals`` score, so that a split that cannot deliver fails at the
  start, not at the first evaluation."""
  splits = {(id(e.source), e.resize_pad): e for e in evals.values()}
  for evaluator in splits.values():
    next(pipeline.eval_batches(evaluator.source, batch_size=config.eval_batch_size, image_size=config.image_size,
                               resize_pad=evaluator.resize_pad))


def jitted_train_step(config, method, mesh):
  """``method``'s train step as a run calls it, (state, source batch, target batch, step) -> (state, metrics):
  jitted over ``mesh`` with the state replicated and donated, the batches sharded; the step number keys the device
  augmentation of the domains that have one."""
  augments = tuple((stream_seed(config, domain), device_augment.from_config(config, domain))
                   for domain in defaults.DOMAINS)
  repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  return jax.jit(device_augment.augmented(functools.partial(method.train_step, config), augments),
                 donate_argnums=(0,), in_shardings=(repl, data, data, repl), out_shardings=(repl, repl))


def train_and_evaluate(config, workdir):
  """Trains one stage, ``config.method`` as ``config`` says, resuming from the latest checkpoint in workdir.
  Start-up is atomic: the config, the data sets, the files the config names, the checkpoint to resume and the first
  batch of each stream are checked before ``config.json`` is recorded, and a start that fails leaves the workdir as
  it was (one that did not exist is removed again)."""
  workdir = pathlib.Path(workdir).expanduser().resolve()
  method = methods.get(config.method)
  _check_config(config, method)
  workdirs.check_writable(workdir, folder=True, name="the workdir")
  mesh = parallel.make_mesh()
  parallel.local_batch_size(config.batch_size, "config.batch_size")
  parallel.local_batch_size(config.eval_batch_size, "config.eval_batch_size")
  evals = evaluators.from_config(config, method, mesh)
  selected = _selection(config, evals) if evals else None
  drawn = _drawn(config, evals)
  datasets = train_sources(config)
  sampler = sampling.from_config(config, datasets[0], stream_seed(config, "source"))  # checked before any write
  repl = parallel.replicated(mesh)
  total_steps = config.epochs * config.iters_per_epoch
  state = jax.jit(functools.partial(method.init, config), out_shardings=repl)(jax.random.key(config.seed))
  initial = backbone_init.read(config, state) if method.backbone_init else None
  recorded = methods.as_recorded(config)
  if initial is not None:
    recorded["model"]["init_sha256"] = initial.sha256  # the resume check compares the file, not only its path
  with workdirs.removed_unless_recorded(workdir), workdirs.locked(workdir):
    saved = checkpoints.RunCheckpoints(workdir, config.keep_checkpoints)
    if (saved.latest_step() or 0) > total_steps:
      raise errors.ConfigError(f"{workdir} holds a run at step {saved.latest_step()}, beyond the {total_steps} steps "
                               f"of config.epochs={config.epochs}: a run can be extended (more epochs), not shortened")
    workdirs.check_config(recorded, workdir)
    progress = {"best": None, "history": [], "devices": jax.device_count()}
    start = 0
    if saved.latest_step() is None:
      state = jax.device_put(method.load_pretrained(config, backbone_init.apply(state, initial)), repl)
    else:
      start, state, progress = saved.restore_newest_good(state)
      log.info("resumed from %s at step %d", saved.directory, start)
      if progress.setdefault("devices", jax.device_count()) != jax.device_count():
        log.warning("step %d was trained on %d devices and continues on %d: per-device numerics differ, so the "
                    "results differ from an uninterrupted run in the last digits", start, progress["devices"],
                    jax.device_count())
        progress["devices"] = jax.device_count()
    batches = zip(*(parallel.prefetch_to_device(it, mesh, config.data.device_prefetch)
                    for it in train_iterators(config, datasets, start, sampler)))
    batches = itertools.chain([next(batches)], batches)  # read here: a stream that cannot deliver fails at the start
    _read_first_eval_batches(config, evals)
    workdirs.record_config(recorded, workdir)

    train_step = jitted_train_step(config, method, mesh)
    writer = MetricWriter(workdir, resume_step=start)
    timer = Progress(start, total_steps)
    stop, stopped_at = preemption.StopRequests(), None

    with stop.installed():
      for step in range(start + 1, total_steps + 1):
        state, train_metrics = train_step(state, *next(batches), step)
        saved.check(step)
        if step == start + 1:
          jax.block_until_ready(train_metrics)
          timer.mark_first_step_done(step)
        checkpoint_now = step % config.checkpoint_every == 0 or step == total_steps
        if step % config.log_every == 0 or checkpoint_now:
          values = {k: float(v) for k, v in jax.device_get(train_metrics).items()}
          _finite_or_raise(values, step, saved)
          rate = timer.report(step, values["loss"])
          if rate is not None:
            values["steps_per_second"] = rate
          writer.write(step, "train", values)
        if evals and (step % config.eval_every == 0 or step == total_steps):
          eval_start = time.perf_counter()
          result = evaluators.run_all(evals, state)
          writer.write(step, "eval", result)
          for name, evaluator in drawn.items():
            writer.write_images(step, f"pictures/{name}", evaluators.pictures(
                evaluator, state, config=config, mesh=mesh, count=config.eval_pictures))
          log.info("step %d  %s", step, "  ".join(f"{name}: {evaluators.table(values)}" for name, values in result.items()))
          entry = {"step": step, **result}
          progress["history"].append(entry)
          name, key = selected
          if progress["best"] is None or entry[name][key] > progress["best"][name][key]:
            progress["best"] = entry
            saved.save_best(step, state)
          timer.exclude(time.perf_counter() - eval_start)
        stop_now = stop.requested(step) and step < total_steps
        if checkpoint_now or stop_now:
          saved.save(step, state, progress, force=stop_now)
        if stop_now:
          stopped_at = step
          break

    saved.close()
    writer.close()
    if stopped_at is not None:
      raise errors.Stopped(
          f"stopped by {stop.signal.name} after step {stopped_at} of {total_steps}; checkpoint "
          f"{saved.directory / str(stopped_at)} is written: run the same command to resume",
          exit_status=128 + stop.signal)
    results = {"final": progress["history"][-1] if progress["history"] else None,
               "best": progress["best"], "selected_on": "/".join(selected) if evals else None,
               "metric": evals[selected[0]].description if evals else None,
               "method": config.method, "steps": total_steps}
    if jax.process_index() == 0:
      (workdir / workdirs.RESULTS).write_text(json.dumps(results, indent=2) + "\n")
    method.finish(config, state, workdir)
    return state, results
