"""One pass over a split for every evaluator that scores its heatmaps: each batch is read and predicted once and
handed to all of them.

An evaluator that can share a pass declares ``pass_key`` (what must be equal to share one: its source, how its
images are resized and batched, its predict function) and three steps: ``start()`` -> an accumulator,
``update(accumulator, heatmaps, global batch, real samples in it)`` -> the accumulator, ``finish(accumulator)`` ->
``{key: value}``. Its own ``run(state)`` is ``run_pass([self], state)``.
"""

import numbers
import time

from dapose_jax import errors, parallel
from dapose_jax.data import pipeline


def run_pass(evaluators, state, *, log=None, every_s=10.0):
  """[{key: value} of each of ``evaluators``] (which share one ``pass_key``) from one pass over their split.
  ``log``: called with a progress line every ``every_s`` seconds and at the end, with images per second."""
  first = evaluators[0]
  source, batching, predict, mesh = first.pass_key_parts
  accumulators = [e.start() for e in evaluators]
  seen, start, told = 0, time.perf_counter(), time.perf_counter()
  for batch in pipeline.eval_batches(source, **batching):
    real = int(batch["mask"].sum())
    batch = parallel.to_global(batch, mesh)
    heatmaps = predict(state, batch["image"])
    accumulators = [e.update(a, heatmaps, batch, real) for e, a in zip(evaluators, accumulators)]
    seen += real
    if log and time.perf_counter() - told > every_s:
      told = time.perf_counter()
      log(f"evaluating: {seen} of {len(source)} images ({seen / (told - start):.1f} images/s)")
  if log:
    seconds = time.perf_counter() - start
    log(f"evaluated {seen} images in {seconds:.1f} s ({seen / max(seconds, 1e-9):.1f} images/s) for "
        f"{len(evaluators)} evaluator(s)")
  return [e.finish(a) for e, a in zip(evaluators, accumulators)]


def run_all(evaluators, state, *, log=None):
  """{name: {key: value}} of every evaluator of ``evaluators`` ({name: evaluator}), in their order: those with equal
  ``pass_key`` share one pass; the others (without one) run on their own."""
  shared = {}
  for name, evaluator in evaluators.items():
    key = getattr(evaluator, "pass_key", None)
    if key is not None:
      shared.setdefault(key, []).append(name)
  results = {}
  for names in shared.values():
    results.update(zip(names, run_pass([evaluators[n] for n in names], state, log=log)))
  for name, evaluator in evaluators.items():
    if name not in results:
      results[name] = evaluator.run(state)
  return {name: results[name] for name in evaluators}


class SplitEvaluator:
  """Base of the evaluators that score the heatmaps of a split and so can share its pass: keeps what it was made
  from (``predict``, ``source``, ``keypoint_set``, ``resize_pad``, what ``pictures`` draws with) and what a pass
  needs. Subclasses define ``start``, ``update`` and ``finish``."""

  def __init__(self, predict, source, keypoint_set, *, config, mesh, resize_pad):
    self.predict, self.source, self.keypoint_set, self.resize_pad = predict, source, keypoint_set, resize_pad
    self._mesh = mesh
    self._batching = dict(batch_size=config.eval_batch_size, image_size=config.image_size, resize_pad=resize_pad)

  @property
  def pass_key(self):
    return id(self.source), tuple(sorted(self._batching.items())), id(self.predict), id(self._mesh)

  @property
  def pass_key_parts(self):
    return self.source, self._batching, self.predict, self._mesh

  def run(self, state):
    return run_pass([self], state)[0]


class First:
  """The first ``count`` samples of a random-access source (all of them if it has fewer), with its keypoint set: the
  split of an evaluator with a ``count`` setting."""

  def __init__(self, source, count):
    self._source, self._n = source, min(count, len(source))
    self.keypoint_set = source.keypoint_set

  def __len__(self):
    return self._n

  def __getitem__(self, index):
    if not 0 <= index < self._n:
      raise IndexError(f"sample {index} of the first {self._n}")
    return self._source[index]


def check_count(count):
  """Raises a ConfigError unless ``count``, an evaluator's number of samples scored, is a positive integer."""
  if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count <= 0:
    raise errors.ConfigError(f"count={count!r}: the number of samples scored must be a positive integer")
