"""Metrics on decoded keypoint coordinates, as mmpose defines them (``mmpose/evaluation/functional/keypoint_eval.py``
and the metric classes of ``mmpose/evaluation/metrics/keypoint_2d_metrics.py``, mmpose 1.x).

Distances are in the pixels of the split's stored images by default (``pixels="original"``, as mmpose measures
them in the original image): each sample's input-pixel difference is scaled back through its resize or
resize-and-pad (the ``scale`` of ``pipeline.eval_batches``; for LSP the original photo, for a data set stored as
crops the crop). ``pixels="input"`` measures in the input pixels (the ``config.image_size`` square the model sees).
Predictions are decoded by the evaluator's ``decoding`` setting, one of ``config.defaults.DECODERS``
(``pose/decoding.py``, ``keypoints_in_pixels``): ``argmax`` by default, the integer argmax of the heatmap times
the stride, the inverse of the targets' centre ``int(x / stride + 0.5)`` and the decoding tllib's PCK scores, so
that these metrics and ``pck`` judge the same predictions (it quantises: a perfect heatmap is up to stride / 2 off
per axis); ``quarter`` is mmpose's default refinement and ``dark`` DARK's. The ground truth is the split's
keypoints; a keypoint counts where it is visible (mmpose's ``mask``).

- ``pck_bbox`` (mmpose ``PCKAccuracy(norm_item="bbox")`` with ``keypoint_pck_accuracy``): a keypoint is correct
  when its distance to the truth, divided by the sample's box size, is below ``threshold`` (default 0.05). The
  box size is max(width, height) of the sample's annotated person or animal box where its data set has one
  (the source's ``annotated_boxes``: AnimalPose, SynAnimal; ``dapose_jax.data.sources``), else of the box of its
  visible ground-truth keypoints; ``norm`` and the description say which ("annotated box" / "keypoint box"). A
  sample whose box has size 0 is left out, as mmpose drops a zero ``norm_factor``. (mmpose 0.x takes max(w, h)
  of its xywh box; mmpose 1.x's ``np.max(bboxes[0][2:])`` of its xyxy box is max(x1, y1), the box's far corner.)
- ``pck_auc`` (mmpose ``AUC`` / ``keypoint_auc``): the mean, over the ``num_thresholds`` (20) thresholds
  i / num_thresholds for i = 0 .. num_thresholds - 1, of PCK with distances divided by ``norm_factor`` pixels
  (default 30, mmpose's). Threshold 0 counts nothing (the test is a strict ``<``), so a perfect prediction scores
  (num_thresholds - 1) / num_thresholds = 95 %.
- ``epe`` (mmpose ``EPE`` / ``keypoint_epe``): the mean distance in pixels over every visible keypoint of the
  split (pooled, not a mean of per-keypoint means).

As in mmpose, a PCK is the mean of the per-keypoint rates (each over the split's samples) of the keypoints that
count at all, 0 where none does; EPE is 0 where nothing counts. Each metric gives one value per group of the
keypoint set over the group's keypoints (mmpose reports one over all keypoints: the ``all`` group, except for
Body16, whose ``all`` leaves out head, neck, thorax and pelvis as the reference PCK does). PCKs are in percent,
EPE in pixels; the headline is ``all``. EPE is lower-is-better: ``config.select_on`` keeps the highest value,
so do not select on it.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dapose_jax import errors, parallel
from dapose_jax.evaluators import passes
from dapose_jax.pose import decoding as _decoding


PIXELS = ("original", "input")


class CoordinateMetric(passes.SplitEvaluator):
  """Per-batch sums of ``_batch_sums(pred, truth, counted)`` on the devices, added up on the host, then
  ``_result``. Subclasses set ``description`` and the two functions; one that needs the heatmaps or more of the
  batch replaces ``_global_batch_sums(heatmaps, batch)`` instead of ``_batch_sums`` (``_coordinates`` gives it what
  ``_batch_sums`` gets)."""

  headline = "all"

  def __init__(self, predict, source, keypoint_set, *, config, mesh, resize_pad, decoding="argmax",
               pixels="original"):
    _decoding.check_decoder(decoding)
    if pixels not in PIXELS:
      raise errors.ConfigError(f"pixels={pixels!r}; choose one of {', '.join(PIXELS)}")
    self.pixels = pixels
    super().__init__(predict, source, keypoint_set, config=config, mesh=mesh, resize_pad=resize_pad)
    self.decoding, self._sigma = decoding, config.sigma
    self.keys = tuple(keypoint_set.groups)
    self._groups = {name: list(indices) for name, indices in keypoint_set.groups.items()}
    self._image_size = config.image_size
    data = parallel.data_sharding(mesh)
    self._sums = jax.jit(self._global_batch_sums, in_shardings=(data, data), out_shardings=parallel.replicated(mesh))

  def _global_batch_sums(self, heatmaps, batch):
    """The sums of one global batch (traced once): ``_batch_sums`` of ``_coordinates``."""
    return self._batch_sums(*self._coordinates(heatmaps, batch))

  def _coordinates(self, heatmaps, batch):
    """(pred, truth, counted) of a global batch: the decoded predictions and the truth (B, K, 2) in the metric's
    pixels, and which keypoints count (B, K)."""
    pred, _ = _decoding.keypoints_in_pixels(heatmaps, self._image_size, self.decoding, self._sigma)
    counted = (batch["visible"] > 0) & (batch["mask"][:, None] > 0)
    return self._in_pixels(pred, batch), self._in_pixels(batch["keypoints"], batch), counted

  def _in_pixels(self, points, batch):
    """(B, N, 2) positions in input pixels -> in the metric's pixels, where only differences between them count:
    distances and boxes do not change with the padding's offset, only with the scale."""
    return points * batch["scale"][:, None] if self.pixels == "original" else points

  def start(self):
    return None

  def update(self, total, heatmaps, batch, real):
    sums = jax.tree.map(lambda x: np.asarray(x, np.float64), jax.device_get(self._sums(heatmaps, batch)))
    return sums if total is None else jax.tree.map(np.add, total, sums)

  def finish(self, total):
    return {name: float(value) for name, value in self._result(total).items()}

  def _group_rates(self, hits, counted):
    """{group: mean of the per-keypoint rates hits / counted over the group's keypoints that count}, 0 if none."""
    out = {}
    for name, indices in self._groups.items():
      n = counted[..., indices]
      rates = np.where(n > 0, hits[..., indices] / np.maximum(n, 1), 0.0)
      out[name] = np.sum(rates, axis=-1) / np.maximum(np.sum(n > 0, axis=-1), 1)
    return out


def _distances(pred, truth):
  return jnp.linalg.norm(pred - truth, axis=-1)


ANNOTATED_BOX, KEYPOINT_BOX = "annotated box", "keypoint box"


class PCKBBox(CoordinateMetric):
  """mmpose PCK normalised by the sample's annotated box, or the box of its visible ground-truth keypoints where
  its data set has none (``norm``; see the module docstring)."""

  def __init__(self, predict, source, keypoint_set, *, config, mesh, resize_pad, threshold=0.05, decoding="argmax",
               pixels="original"):
    self.norm = ANNOTATED_BOX if getattr(source, "annotated_boxes", False) else KEYPOINT_BOX
    self.description = (f"PCK@{threshold} of the {self.norm} size, max(width, height) (mmpose PCKAccuracy, "
                        "norm_item='bbox') in percent")
    self._threshold = threshold
    super().__init__(predict, source, keypoint_set, config=config, mesh=mesh, resize_pad=resize_pad,
                     decoding=decoding, pixels=pixels)

  def _global_batch_sums(self, heatmaps, batch):
    pred, truth, counted = self._coordinates(heatmaps, batch)
    if self.norm == ANNOTATED_BOX:
      corners = self._in_pixels(batch["box"].reshape(-1, 2, 2), batch)  # [[x0, y0], [x1, y1]]
      low, high = corners[:, 0], corners[:, 1]
    else:
      low = jnp.min(jnp.where(counted[..., None], truth, jnp.inf), axis=-2)
      high = jnp.max(jnp.where(counted[..., None], truth, -jnp.inf), axis=-2)
    size = jnp.max(jnp.where(jnp.isfinite(high - low), high - low, 0.0), axis=-1)  # (B,)
    counted = counted & (size > 0)[:, None]
    hits = (_distances(pred, truth) / jnp.where(size > 0, size, 1.0)[:, None] < self._threshold) & counted
    return jnp.sum(hits, axis=0), jnp.sum(counted, axis=0)

  def _result(self, total):
    hits, counted = total
    return {name: 100.0 * rate for name, rate in self._group_rates(hits, counted).items()}


class PCKAUC(CoordinateMetric):
  """mmpose AUC: the mean PCK over thresholds 0, 1/n, .. (n-1)/n of ``norm_factor`` pixels (module docstring)."""

  def __init__(self, predict, source, keypoint_set, *, config, mesh, resize_pad, norm_factor=30.0,
               num_thresholds=20, decoding="argmax", pixels="original"):
    self.description = (f"area under the PCK curve, {num_thresholds} thresholds up to {num_thresholds - 1}/"
                        f"{num_thresholds} of {norm_factor} {pixels} px (mmpose AUC) in percent")
    self._norm_factor = norm_factor
    self._thresholds = jnp.arange(num_thresholds, dtype=jnp.float32) / num_thresholds
    super().__init__(predict, source, keypoint_set, config=config, mesh=mesh, resize_pad=resize_pad,
                     decoding=decoding, pixels=pixels)

  def _batch_sums(self, pred, truth, counted):
    normalised = _distances(pred, truth) / self._norm_factor  # (B, K)
    hits = (normalised[None] < self._thresholds[:, None, None]) & counted[None]  # (T, B, K)
    return jnp.sum(hits, axis=1), jnp.sum(counted, axis=0)

  def _result(self, total):
    hits, counted = total
    return {name: 100.0 * float(np.mean(rates)) for name, rates in self._group_rates(hits, counted).items()}


class EPE(CoordinateMetric):
  """mmpose EPE: the mean end-point error over the visible keypoints (module docstring)."""

  @property
  def description(self):
    return f"mean end-point error in {self.pixels} pixels (mmpose EPE)"

  def _batch_sums(self, pred, truth, counted):
    return jnp.sum(jnp.where(counted, _distances(pred, truth), 0.0), axis=0), jnp.sum(counted, axis=0)

  def _result(self, total):
    distance, counted = total
    return {name: float(np.sum(distance[idx]) / max(np.sum(counted[idx]), 1)) for name, idx in self._groups.items()}
