"""Label-free model-selection criteria: values that ``config.select_on`` can pick a checkpoint by without target
labels, computed from a split's images alone (meant for the target's training split, ``split="train"``).

Each scores the first ``count`` samples of its split (all of them if it has fewer) in the test transform, as every
evaluator reads a split, and never reads their labels: its compiled function is given a batch's images, padding
mask and sample indices (``UNLABELLED``), not its keypoints or visibility. Every keypoint of every scored image
counts (without labels nothing says which are visible). All three are higher-is-better, as ``select_on`` takes
them. With N scored images x, K keypoints, H_k(x) the heatmap (h x w) of keypoint k that the method predicts for x,
p_k(H) = argmax_u H_k(u) its integer peak (x, y) (``decoding.argmax_2d``) and the reference PCK's distance test
(``metrics.within_threshold``, 0.05 of the heatmap side by default)
    close(p, q) = |(p - q) / (h / 10, w / 10)| < 10 * threshold,

- "confidence": (1 / NK) sum_x sum_k max_u H_k(x)(u), the mean heatmap maximum; in the units of the method's
  heatmaps (about 1 at a confident peak for MSE-trained Gaussian targets, a logit for RegDA's KL-trained heads), so
  compare checkpoints of one method. Key ``confidence``.
- "view_agreement": the percentage of keypoints whose peak on the image and on a transformed view of it, mapped
  back, pass the test: ``flip`` = (100 / NK) sum_x sum_k close(p_k(H(x)), p_k(flip_back(H(mirror(x))))), the view
  mirrored and its heatmaps mirrored back with the flip pairs swapped (``views.flip_back``, the flip test's);
  ``affine`` = (100 / NK) sum_x sum_k close(p_k(H(x)), p_k(to_base(H(to_view(x, A_x)), A_x))), A_x a rotation by
  U(-rotation, rotation) degrees and a scale U(scale_min, scale_max) about the image centre, drawn per sample index
  from ``seed`` (``view_matrices``: every evaluation of every checkpoint sees the same views), the image warped
  and its heatmaps warped back with the mean teacher's exact inverse (``views.to_view``, ``views.to_base``,
  bilinear, zero fill: a keypoint that leaves the view has no peak to come back); ``mean`` = (flip + affine) / 2,
  the headline. Both views run through the method in one batch with the images.
- "head_agreement": (100 / NK) sum_x sum_k close(p_k(H(x)), p_k(H'(x))), H' the method's second network
  (``method.eval_heatmap_pairs``: RegDA's adversarial head f', the mean teacher's student; H is the network that
  is evaluated: RegDA's main head f, the teacher). Key ``agreement``.
"""

import math
import numbers

import jax
import jax.numpy as jnp

from dapose_jax import errors, parallel
from dapose_jax.augment import views
from dapose_jax.data import pipeline
from dapose_jax.evaluators import passes
from dapose_jax.pose import decoding, metrics

UNLABELLED = ("image", "mask", "index")  # what a criterion's compiled function is given of a batch


class Criterion:
  """Base of the criteria: the first ``count`` samples of a split, each batch scored by one compiled function
  ``sums(state, {UNLABELLED})`` -> {key: (sum, number of terms)} for the keys ``summed``; a value is ``scale`` x
  sum / number over the samples scored (NaN with none). ``finish`` may add values made of those."""

  scale = 100.0

  def __init__(self, predict, source, keypoint_set, *, config, mesh, resize_pad, count):
    passes.check_count(count)
    self.predict, self.keypoint_set, self.resize_pad = predict, keypoint_set, resize_pad
    self.source = passes.First(source, count)
    self._batching = dict(batch_size=config.eval_batch_size, image_size=config.image_size, resize_pad=resize_pad)
    self._mesh = mesh
    self._sums = None

  def _compile(self, sums):
    repl = parallel.replicated(self._mesh)
    self._sums = jax.jit(sums, in_shardings=(repl, parallel.data_sharding(self._mesh)), out_shardings=repl)

  def run(self, state):
    totals = {}
    for batch in pipeline.eval_batches(self.source, **self._batching):
      unlabelled = parallel.to_global({key: batch[key] for key in UNLABELLED}, self._mesh)
      for key, (total, number) in jax.device_get(self._sums(state, unlabelled)).items():
        before = totals.get(key, (0.0, 0))
        totals[key] = before[0] + float(total), before[1] + int(number)
    values = {}
    for key in self.summed:
      total, number = totals.get(key, (0.0, 0))
      values[key] = self.scale * total / number if number else math.nan
    return self.finish(values)

  def finish(self, values):
    return values


class Confidence(Criterion):
  """The mean heatmap maximum of the first ``count`` samples (module docstring); headline ``confidence``."""

  headline = "confidence"
  keys = summed = ("confidence",)
  scale = 1.0

  def __init__(self, predict, source, keypoint_set, *, config, mesh, resize_pad, count=256):
    super().__init__(predict, source, keypoint_set, config=config, mesh=mesh, resize_pad=resize_pad, count=count)
    self.description = f"mean heatmap maximum of the first {len(self.source)} samples (no labels read)"

    def sums(state, batch):
      peaks = jnp.max(predict(state, batch["image"]), axis=(1, 2))
      real = _real(batch["mask"], peaks.shape)
      return {"confidence": (jnp.sum(jnp.where(real, peaks, 0.0)), jnp.sum(real))}

    self._compile(sums)


class ViewAgreement(Criterion):
  """Agreement of the predictions on the first ``count`` samples with those on their mirrored and affine-warped
  views, mapped back (module docstring); headline ``mean``."""

  headline = "mean"
  keys = ("flip", "affine", "mean")
  summed = ("flip", "affine")

  def __init__(self, predict, source, keypoint_set, *, config, mesh, resize_pad, count=256, threshold=0.05,
               rotation=30.0, scale_min=0.9, scale_max=1.1, seed=0):
    _check_threshold(threshold)
    if isinstance(rotation, bool) or not isinstance(rotation, numbers.Real) or not 0 <= rotation <= 180:
      raise errors.ConfigError(f"rotation={rotation!r}: the largest rotation of the affine view must be a number of "
                               "degrees from 0 to 180")
    if not all(isinstance(s, numbers.Real) and not isinstance(s, bool) for s in (scale_min, scale_max)) or not (
        0 < scale_min <= scale_max):
      raise errors.ConfigError(f"scale_min={scale_min!r}, scale_max={scale_max!r}: the affine view's scale range "
                               "must satisfy 0 < scale_min <= scale_max")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
      raise errors.ConfigError(f"seed={seed!r}: the seed of the affine views must be a whole number >= 0")
    super().__init__(predict, source, keypoint_set, config=config, mesh=mesh, resize_pad=resize_pad, count=count)
    self.description = (f"percent of keypoints predicted within {threshold} of the heatmap side of their prediction "
                        f"on the mirrored (flip) and the rotated +-{rotation:g} deg, scaled {scale_min:g}-"
                        f"{scale_max:g} (affine) view of the first {len(self.source)} samples, mapped back; mean of "
                        "the two (no labels read)")
    size, to_heatmap = config.image_size, config.heatmap_size / config.image_size

    def sums(state, batch):
      images = batch["image"]
      matrices = view_matrices(batch["index"], size, rotation, scale_min, scale_max, seed)
      warped = jnp.round(views.to_view(images.astype(jnp.float32), matrices, order=1)).astype(jnp.uint8)
      # each image's three views side by side: the rows of a sample stay on its device
      stacked = jnp.stack([images, images[:, :, ::-1], warped], 1).reshape(-1, *images.shape[1:])
      heatmaps = predict(state, stacked)
      heatmaps = heatmaps.reshape(images.shape[0], 3, *heatmaps.shape[1:])
      base = heatmaps[:, 0]
      flipped = views.flip_back(heatmaps[:, 1], keypoint_set)
      warped_back = views.to_base(heatmaps[:, 2], views.rescale(matrices, to_heatmap), order=1)
      return {"flip": _agreeing(base, flipped, batch["mask"], threshold),
              "affine": _agreeing(base, warped_back, batch["mask"], threshold)}

    self._compile(sums)

  def finish(self, values):
    return {**values, "mean": (values["flip"] + values["affine"]) / 2}


class HeadAgreement(Criterion):
  """Agreement of the predictions of a two-network method's networks (``method.eval_heatmap_pairs``) on the first
  ``count`` samples (module docstring); headline ``agreement``."""

  headline = "agreement"
  keys = summed = ("agreement",)

  def __init__(self, predict, source, keypoint_set, *, config, mesh, resize_pad, method, count=256, threshold=0.05):
    _check_threshold(threshold)
    super().__init__(predict, source, keypoint_set, config=config, mesh=mesh, resize_pad=resize_pad, count=count)
    self.description = (f"percent of keypoints that {method.name}'s two networks predict within {threshold} of the "
                        f"heatmap side of each other on the first {len(self.source)} samples (no labels read)")

    def sums(state, batch):
      first, second = method.eval_heatmap_pairs(config, state, batch["image"])
      return {"agreement": _agreeing(first, second, batch["mask"], threshold)}

    self._compile(sums)


def view_matrices(index, size, rotation, scale_min, scale_max, seed):
  """(B, 3, 3) forward maps (``views``' pixel-index coordinates of ``size`` x ``size`` images) of the affine views
  of the samples ``index`` (B,): a rotation by U(-rotation, rotation) degrees and a scale U(scale_min, scale_max)
  about the image centre, drawn from fold_in(key(seed), index), so a sample has one view whatever batch it is in."""
  draws = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(jax.random.key(seed), i), (2,)))(index)
  angle = rotation * (2 * draws[:, 0] - 1)
  scale = scale_min + (scale_max - scale_min) * draws[:, 1]
  zeros = jnp.zeros_like(angle)
  return views.affine_matrices(angle, zeros, zeros, jnp.zeros((len(angle), 2)), scale, size)


def _real(mask, shape):
  """(B, K) bool: the keypoints of the real (not padding) samples of a batch with ``mask`` (B,)."""
  return jnp.broadcast_to(mask[:, None] > 0, shape)


def _agreeing(heatmaps, others, mask, threshold):
  """(the keypoints of the real samples whose peaks in ``heatmaps`` and ``others`` (B, h, w, K) pass the reference
  PCK's distance test, the keypoints of the real samples)."""
  close = metrics.within_threshold(decoding.argmax_2d(heatmaps)[0], decoding.argmax_2d(others)[0],
                                   heatmaps.shape[-3:-1], threshold)
  real = _real(mask, close.shape)
  return jnp.sum(close & real), jnp.sum(real)


def _check_threshold(threshold):
  if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not threshold > 0:
    raise errors.ConfigError(f"threshold={threshold!r}: the distance two predictions may be apart, as a fraction of "
                             "the heatmap side, must be a positive number (the reference PCK's: 0.05)")
