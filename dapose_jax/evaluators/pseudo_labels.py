"""Diagnostics of a method's pseudo-labels on a split with labels (for analysis only: nothing trains on them).

The method declares ``pseudo_labels(config, state, uint8 images (B, S, S, 3))`` -> a dict of arrays (K keypoints,
coordinates in heatmap pixels (x, y)): "labels_2d" (B, K, 2) and its mask "mask_2d" (B, K) (M2D), "labels_3d"
(B, K, 2) (lifted to 3D and projected back) and "mask_3d" (B, K) (M3D), "used_2d" and "used_3d" (B, K): the masks
that supervise each (both M2D u M3D once the union is in use), and "union" () bool: whether it is. A mask is
selected where it is > 0.

The evaluator scores the first ``count`` samples of its split (all of them if it has fewer) with the test
transform. The truth is the split's keypoints in heatmap pixels (input pixels divided by
``config.image_size / config.heatmap_size``); a pseudo-label is correct when its keypoint is visible and
|label - truth| < ``threshold`` * ``config.heatmap_size``, the reference PCK's distance rule (0.5 of a tenth of
the side for threshold 0.05) on continuous truth: a label at an integer argmax is up to 0.5 px per axis off it.
Values, in percent except ``union``, each 0 where its set is empty:

- accuracy_2d, accuracy_3d: the correct 2D (3D) labels among the visible keypoints with M2D (M3D).
- accuracy_used: the correct labels among those that supervise, pooled: the 2D labels under used_2d and the 3D
  labels under used_3d, of visible keypoints (the headline).
- selected_2d, selected_3d: the share of the visible keypoints with M2D (M3D).
- overlap: |M2D n M3D| / |M2D u M3D| over every keypoint of the scored samples, visible or not (as the method
  computes it on a target batch, which has no labels).
- union: 1 if the method reported the union in use for any scored batch, else 0.
- wrong_twice: among the (sample, visible keypoint) pairs whose 2D label was selected (used_2d) at both this and
  the previous run of this evaluator object, the share wrong both times: a pseudo-label that stays wrong and keeps
  supervising. NaN at the first run; the previous run's set lives only in memory, so also NaN at the first run
  after a resume (or in each new process).
"""

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from dapose_jax import errors, parallel
from dapose_jax.data import pipeline
from dapose_jax.evaluators import passes


class PseudoLabels:
  """Accuracy, selection and stability of ``method.pseudo_labels`` on the first ``count`` samples of a split
  (see the module docstring); headline ``accuracy_used``."""

  headline = "accuracy_used"
  keys = ("accuracy_2d", "accuracy_3d", "accuracy_used", "selected_2d", "selected_3d", "overlap", "union",
          "wrong_twice")

  def __init__(self, predict, source, keypoint_set, *, config, mesh, resize_pad, method, count=256, threshold=0.05):
    passes.check_count(count)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not threshold > 0:
      raise errors.ConfigError(f"threshold={threshold!r}: the distance a pseudo-label may be off, as a fraction of "
                               "the heatmap side, must be a positive number (the reference PCK's: 0.05)")
    self.predict, self.keypoint_set, self.resize_pad = predict, keypoint_set, resize_pad
    self.source = passes.First(source, count)
    self.description = (f"pseudo-labels of {method.name} on the first {len(self.source)} samples: correct within "
                        f"{threshold} of the heatmap side, M2D/M3D selection and overlap, in percent (union 0/1)")
    self._batching = dict(batch_size=config.eval_batch_size, image_size=config.image_size, resize_pad=resize_pad)
    self._mesh = mesh
    self._previous = None  # (used (N, K), wrong (N, K)) of the 2D labels at the last run

    def outcome(state, batch):
      """(sums over the real samples of one global batch, per-sample 2D selection and mistakes)."""
      labels = method.pseudo_labels(config, state, batch["image"])
      truth = batch["keypoints"] / (config.image_size / config.heatmap_size)
      real = jnp.broadcast_to(batch["mask"][:, None] > 0, batch["visible"].shape)
      seen = real & (batch["visible"] > 0)
      correct = lambda xy: jnp.linalg.norm(xy - truth, axis=-1) < threshold * config.heatmap_size
      correct_2d, correct_3d = correct(labels["labels_2d"]), correct(labels["labels_3d"])
      m2d, m3d = labels["mask_2d"] > 0, labels["mask_3d"] > 0
      used_2d, used_3d = (labels["used_2d"] > 0) & seen, (labels["used_3d"] > 0) & seen
      n = lambda x: jnp.sum(x, dtype=jnp.int32)
      sums = {"visible": n(seen), "m2d": n(m2d & seen), "m3d": n(m3d & seen),
              "correct_2d": n(correct_2d & m2d & seen), "correct_3d": n(correct_3d & m3d & seen),
              "used": n(used_2d) + n(used_3d), "correct_used": n(correct_2d & used_2d) + n(correct_3d & used_3d),
              "both": n(m2d & m3d & real), "either": n((m2d | m3d) & real),
              "union": jnp.asarray(labels["union"], jnp.int32)}
      return sums, {"index": batch["index"], "real": batch["mask"] > 0, "used": used_2d,
                    "wrong": used_2d & ~correct_2d}

    data, repl = parallel.data_sharding(mesh), parallel.replicated(mesh)
    self._outcome = jax.jit(outcome, in_shardings=(repl, data), out_shardings=(repl, data))

  def run(self, state):
    total = None
    used = np.zeros((len(self.source), self.keypoint_set.num_keypoints), bool)
    wrong = np.zeros_like(used)
    for batch in pipeline.eval_batches(self.source, **self._batching):
      sums, rows = self._outcome(state, parallel.to_global(batch, self._mesh))
      sums = {name: int(value) for name, value in jax.device_get(sums).items()}
      total = sums if total is None else {name: max(total[name], value) if name == "union" else total[name] + value
                                          for name, value in sums.items()}
      rows = {name: parallel.to_host(value) for name, value in rows.items()}
      index = rows["index"][rows["real"]]
      used[index], wrong[index] = rows["used"][rows["real"]], rows["wrong"][rows["real"]]
    if self._previous is None:
      wrong_twice = float("nan")
    else:
      both_used = used & self._previous[0]
      wrong_twice = _percent(np.sum(both_used & wrong & self._previous[1]), np.sum(both_used))
    self._previous = used, wrong
    return {"accuracy_2d": _percent(total["correct_2d"], total["m2d"]),
            "accuracy_3d": _percent(total["correct_3d"], total["m3d"]),
            "accuracy_used": _percent(total["correct_used"], total["used"]),
            "selected_2d": _percent(total["m2d"], total["visible"]),
            "selected_3d": _percent(total["m3d"], total["visible"]),
            "overlap": _percent(total["both"], total["either"]),
            "union": float(total["union"]),
            "wrong_twice": wrong_twice}


def _percent(part, whole):
  return 100.0 * float(part) / float(whole) if whole > 0 else 0.0
