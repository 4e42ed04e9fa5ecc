"""PCK and EvalPose per pose-VAE difficulty bin (Dua et al.): a split's images in the bins of the source.

At construction the split's ground-truth poses are scored by the source's pose VAE (``pose_vae.score`` with the
VAE that ``dapose-jax pose_vae`` wrote beside ``scores``, a scores.json; default ``config.sampling.scores``) and put
into the bins the samplers use: k = ``config.sampling.bins`` equal-width bins over ``sampling.value_range`` of the
source's training scores with ``config.sampling.upper_quantile``, so bin b here is bin b of ``cl`` and ``hm``. A
score outside the source's range goes to bin 1 (below it) or bin k (above it), as ``sampling.bins`` clips;
``images_below_range`` and ``images_above_range`` count those images.

Values, from one pass over the split with the predictions the other evaluators score:

- ``images_bin{b}``, b = 1 .. k: the split's images in bin b (0 for an empty bin);
- ``pck_bin{b}``: 100 x correct / counted over the ``all`` keypoints of the bin's images, pooled, with the
  reference's test (``metrics.pck_hits`` at ``threshold``) and what it counts; 0 when nothing counts;
- ``evalpose_bin{b}``: the mean of ``metrics.evalpose`` x 100 over the bin's images that have an angle, 0 if none;
- ``pck`` (the headline) and ``evalpose``: the same over the whole split. The pooled ``pck`` is close to, but not,
  the ``pck`` evaluator's ``all`` (tllib's batch means of per-keypoint rates).

Only bins that hold at least one image of the split have ``pck_bin{b}`` and ``evalpose_bin{b}``: an empty bin has
no value to report, and a NaN would make results.json invalid JSON.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dapose_jax import errors
from dapose_jax.auxiliary import pose_vae
from dapose_jax.data import sampling, sources
from dapose_jax.evaluators import coordinates
from dapose_jax.pose import decoding, keypoints, metrics


class PoseBins(coordinates.CoordinateMetric):
  """PCK and EvalPose of each difficulty bin of the split (module docstring); ``sample_bins`` (N,) the 1-based bin
  of each of the split's samples, ``scores`` their pose-VAE scores, ``value_range`` the source's range."""

  headline = "pck"

  def __init__(self, predict, source, keypoint_set, *, config, mesh, resize_pad, scores="", threshold=0.05):
    path = scores or config.sampling.scores
    if not path:
      raise errors.ConfigError(
          "evaluator type 'pose_bins' needs the source's pose-VAE scores: set its setting scores=DIR/pose_vae/"
          "scores.json or config.sampling.scores (made by `dapose-jax pose_vae --config CONFIG --workdir DIR`)")
    sampling.check(config.sampling)
    super().__init__(predict, source, keypoint_set, config=config, mesh=mesh, resize_pad=resize_pad)
    training = sources.make_source(config.source, "train")
    if keypoint_set.name != training.keypoint_set.name:
      raise errors.ConfigError(f"evaluator type 'pose_bins' scores {keypoint_set.name} poses with a VAE of the "
                               f"source's {training.keypoint_set.name} poses: evaluate a split of that keypoint set")
    source_scores, vae, params = pose_vae.load_scorer(path, config.source, training, keypoint_set.num_keypoints)
    self.scores = pose_vae.score(vae, params, *pose_vae.read_keypoints(source, config.data.num_threads))
    self.k = config.sampling.bins
    self.value_range = sampling.value_range(source_scores, config.sampling.upper_quantile)
    self.sample_bins = sampling.bins(self.scores, self.k, self.value_range)
    self._present = [b for b in range(1, self.k + 1) if np.any(self.sample_bins == b)]
    self.keys = ("pck", "evalpose", *(f"{kind}_bin{b}" for b in self._present for kind in ("pck", "evalpose")),
                 *(f"images_bin{b}" for b in range(1, self.k + 1)), "images_below_range", "images_above_range")
    self.description = (f"PCK@{threshold} (pooled over the 'all' keypoints) and EvalPose x 100 per pose-VAE "
                        f"difficulty bin of the source ({self.k} bins over scores {self.value_range[0]:.4g} .. "
                        f"{self.value_range[1]:.4g} of {path})")
    self._bin_index = jnp.asarray(self.sample_bins - 1, jnp.int32)
    self._config, self._threshold, self._all = config, threshold, list(keypoint_set.groups["all"])

  def _global_batch_sums(self, heatmaps, batch):
    real = batch["mask"] > 0
    target, _ = keypoints.heatmap_targets(self._config, batch)
    correct, counted = metrics.pck_hits(heatmaps, target, self._threshold)
    counted = counted[:, self._all] & real[:, None]
    correct = correct[:, self._all] & counted
    pred, _ = decoding.keypoints_in_pixels(heatmaps, self._image_size)
    per_image = metrics.evalpose(pred, batch["keypoints"], (batch["visible"] > 0) & real[:, None], self.keypoint_set)
    scored = ~jnp.isnan(per_image)  # NaN: padding, or no angle
    bins = self._bin_index[batch["index"]]

    def per_bin(values):  # a scatter-add: exact counts, whatever precision matrix products run at
      return jax.ops.segment_sum(jnp.where(real, values, 0).astype(jnp.float32), bins, num_segments=self.k)

    return {"correct": per_bin(jnp.sum(correct, axis=1)), "counted": per_bin(jnp.sum(counted, axis=1)),
            "evalpose": per_bin(jnp.where(scored, per_image, 0.0)), "scored": per_bin(scored),
            "images": per_bin(jnp.ones_like(per_image))}

  def _result(self, total):
    def percent(part, whole):
      return 100.0 * part / whole if whole > 0 else 0.0

    out = {"pck": percent(total["correct"].sum(), total["counted"].sum()),
           "evalpose": percent(total["evalpose"].sum(), total["scored"].sum())}
    for b in self._present:
      out[f"pck_bin{b}"] = percent(total["correct"][b - 1], total["counted"][b - 1])
      out[f"evalpose_bin{b}"] = percent(total["evalpose"][b - 1], total["scored"][b - 1])
    out.update({f"images_bin{b}": total["images"][b - 1] for b in range(1, self.k + 1)})
    low, high = self.value_range
    out["images_below_range"] = float(np.sum(self.scores < low))
    out["images_above_range"] = float(np.sum(self.scores > high))
    return out


def per_bin(values):
  """(bins, pck, evalpose) lists of the bins that hold images, from a ``PoseBins`` result ``values``."""
  bins = sorted(int(key[len("pck_bin"):]) for key in values if key.startswith("pck_bin"))
  return bins, [values[f"pck_bin{b}"] for b in bins], [values[f"evalpose_bin{b}"] for b in bins]
