"""Keypoint confusion: where each keypoint's predictions land, on its own truth, its flip partner's, another
keypoint's or none (the question of RegDA's Figure 1: are wrong predictions on the target other keypoints?).

For each sample and each keypoint k that the reference PCK counts (``metrics.pck_positions``: the argmax of k's
target heatmap, which is all zero where k is not visible, has x > 1 and y > 1), its prediction p (the integer
argmax of k's predicted heatmap, which ``pck`` scores) lands in the first of these columns:

1. k, correct: p is within ``threshold`` of k's truth t_k, the ``pck`` evaluator's test:
   |p - t_k| / (S / 10) < 10 x threshold for heatmap side S (in heatmap cells; square maps), i.e. a distance below
   ``threshold`` x S cells (0.05 x 32 = 1.6 cells, 6.4 px of the demo's 128 px input);
2. f, flip: k has a flip partner f (``keypoint_set.flip_pairs``) that counts in this sample and p is within the
   threshold of t_f;
3. j, other: p is within the threshold of the truth of another keypoint j that counts in this sample; the nearest
   such j when several are;
4. background: none of these.

Values, from one pass over the split, all in percent but the counts:

- ``K/J`` for keypoint names K and J, and ``K/background``: the K x (K + 1) matrix, the share of K's counted
  predictions in column J (J = K: correct, J = K's flip partner: flip, any other J: other) or in the background;
  a row sums to 100, or is all 0 for a keypoint that never counts; ``K/counted``: how many of K's predictions count.
- ``correct``, ``flip``, ``other``, ``background``: the shares of all counted predictions, pooled over every
  keypoint of the set and every sample (they sum to 100); ``counted``: how many those are.
- ``flip_share_of_errors``, ``other_share_of_errors``, ``background_share_of_errors``: the same over the
  wrong predictions only (they sum to 100; all 0 when no prediction is wrong), RegDA's claim in numbers.

``K/K`` is keypoint K's PCK pooled over the split, and ``correct`` is 100 x hits / counted of the ``pck`` evaluator's
test, pooled over every keypoint and sample. The ``pck`` evaluator's group values are means of per-keypoint rates
(tllib: per batch, then over batches), so where every keypoint counts in every sample, the mean of ``K/K`` over a
group's keypoints is that group's ``pck`` value, in either aggregation; Body16's ``all`` group leaves out head,
neck, thorax and pelvis, which ``correct`` includes.

The headline is ``correct``: ``config.select_on`` keeps the highest value, and of these only the share of correct
predictions is better when higher.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dapose_jax import parallel
from dapose_jax.evaluators import passes
from dapose_jax.pose import keypoints, metrics

BACKGROUND, COUNTED = "background", "counted"
CATEGORIES = ("correct", "flip", "other", "background")


def landing_columns(pred, truth, counted, partner, threshold):
  """(B, K) int: the column each prediction lands in (module docstring): k, ``partner[k]``, the nearest other
  keypoint, or K for the background. ``pred``, ``truth`` (B, K, 2) and ``counted`` (B, K) as
  ``metrics.pck_positions`` gives them; ``partner`` (K,) the flip partner of each keypoint, itself where none."""
  k = pred.shape[-2]
  own = jnp.arange(k)
  distance = jnp.linalg.norm(pred[:, :, None] - truth[:, None], axis=-1)  # (B, K, K): prediction k to truth j
  within = (distance < threshold * 10) & counted[:, None, :]
  correct = within[:, own, own]
  flip = (partner != own) & within[:, own, partner]
  others = within & (own[:, None] != own[None, :])
  nearest = jnp.argmin(jnp.where(others, distance, jnp.inf), axis=-1)
  return jnp.where(correct, own, jnp.where(flip, partner, jnp.where(jnp.any(others, axis=-1), nearest, k)))


class KeypointConfusion(passes.SplitEvaluator):
  """The confusion matrix of the split's keypoints at ``threshold`` (module docstring), headline ``correct``."""

  headline = "correct"

  def __init__(self, predict, source, keypoint_set, *, config, mesh, resize_pad, threshold=0.05):
    super().__init__(predict, source, keypoint_set, config=config, mesh=mesh, resize_pad=resize_pad)
    names = keypoint_set.names
    self.keys = (*CATEGORIES, *(f"{c}_share_of_errors" for c in CATEGORIES[1:]), COUNTED,
                 *(f"{k}/{j}" for k in names for j in (*names, BACKGROUND, COUNTED)))
    self.description = (f"where each keypoint's predictions land within PCK@{threshold} of a truth: shares of "
                        "correct, flip partner, other keypoint, background, and per keypoint (percent)")
    self._partner = np.asarray(keypoint_set.flip_permutation())
    partner = jnp.asarray(self._partner)

    def counts(heatmaps, batch):
      """(K, K + 1) int: how many of each keypoint's counted predictions land in each column."""
      target, _ = keypoints.heatmap_targets(config, batch)
      pred, truth, counted = metrics.pck_positions(heatmaps, target)
      counted = counted & (batch["mask"][:, None] > 0)
      columns = landing_columns(pred, truth, counted, partner, threshold)
      return jnp.sum(jax.nn.one_hot(columns, len(names) + 1, dtype=jnp.int32) * counted[..., None], axis=0)

    data = parallel.data_sharding(mesh)
    self._counts = jax.jit(counts, in_shardings=(data, data), out_shardings=parallel.replicated(mesh))

  def start(self):
    k = self.keypoint_set.num_keypoints
    return np.zeros((k, k + 1), np.int64)

  def update(self, total, heatmaps, batch, real):
    return total + np.asarray(jax.device_get(self._counts(heatmaps, batch)), np.int64)

  def finish(self, total):
    k = len(total)
    own = np.arange(k)
    counted = total.sum(axis=1)
    shares = 100.0 * total / np.maximum(counted, 1)[:, None]
    paired = self._partner != own
    correct, background = total[own, own].sum(), total[:, k].sum()
    flip = total[own[paired], self._partner[paired]].sum()
    every = counted.sum()
    split = dict(zip(CATEGORIES, (correct, flip, every - correct - flip - background, background)))
    out = {name: 100.0 * n / max(every, 1) for name, n in split.items()}
    out.update({f"{name}_share_of_errors": 100.0 * split[name] / max(every - correct, 1) for name in CATEGORIES[1:]})
    out[COUNTED] = float(every)
    columns = (*self.keypoint_set.names, BACKGROUND)
    for row, name in enumerate(self.keypoint_set.names):
      out.update({f"{name}/{column}": float(shares[row, c]) for c, column in enumerate(columns)})
      out[f"{name}/{COUNTED}"] = float(counted[row])
    return {key: float(out[key]) for key in self.keys}


def matrix(values):
  """(keypoint names, shares (K, K + 1) in percent, counted (K,)) of a ``KeypointConfusion`` result ``values``, in
  its keys' order."""
  names = [key[:-len(BACKGROUND) - 1] for key in values if key.endswith(f"/{BACKGROUND}")]
  shares = np.array([[values[f"{k}/{j}"] for j in (*names, BACKGROUND)] for k in names], np.float64)
  return names, shares, np.array([values[f"{k}/{COUNTED}"] for k in names], np.float64)
