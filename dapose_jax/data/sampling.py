"""Source training samplers over pose-VAE difficulty bins (Dua et al.): ``config.sampling``.

Bins. The scores s_n of the N source training samples (``pose_vae``: reconstruction errors) are put into k
(``bins``) equal-width bins over [min s, max s]: bin(n) = min(floor(k (s_n - min s) / (max s - min s)), k - 1) + 1,
1 the easiest. Equal-width, not equal-count: the seed's point is the "lack of uniform support across poses of
varying complexity", which equal-count bins would hide by construction (every bin would hold N / k samples);
equal-width bins keep the few complex poses apart in the high bins, so that a sampler can give them more weight.
Bins 1 and k are never empty; bins in between can be. ``upper_quantile`` q < 1 ends the range at the q-quantile
of the scores instead of their maximum (the scores above it go to bin k): on a long-tailed score distribution the
top bins of the full range hold a handful of samples, which ``hm`` would then draw over and over.

Samplers. Element p (0, 1, 2, ...) of the source training stream, the (p mod B)-th sample of the batch of step
t = p // B + 1 (B = ``config.batch_size``), is sample ``index(p)``: its bin is drawn with the probabilities P_t(b)
below, then a sample of that bin uniformly, both from a generator seeded with (seed, p). So the stream is a pure
function of (seed, p): a run resumed at any step draws what the uninterrupted run drew, without iterator state in
the checkpoint, and every process computes the same stream.

- ``uniform``: not a bin sampler; the pipeline's seeded shuffle, one pass over the split per epoch (as before).
- ``cl`` (curriculum): bins 1 .. m_t are allowed, m_t = min(k, 1 + floor(k (t - 1) / R)), R =
  ``cl_fraction`` x the run's steps: the first R steps are k equal stages, stage j allowing bins 1 .. j, and all
  bins stay allowed after them. Within the allowed bins every sample is equally likely:
  P_t(b) = n_b / sum_{b' <= m_t} n_b' for b <= m_t (n_b the size of bin b), so the last stage is plain uniform
  sampling with replacement.
- ``hm`` (hard mining): P(b) = w_b / sum_b' w_b', w_b = b ** ``hm_alpha`` for a non-empty bin and 0 for an empty
  one, the same at every step; uniform within the bin. alpha = 0 gives every non-empty bin the same share.

Only the source's training stream is sampled (target training and evaluation are unchanged), in every stage that
the training loop runs for a method (its stage 1 too). ``cl``'s schedule spans ``config.epochs`` of the stage:
extending a run (more epochs) stretches the rest of the curriculum.
"""

import numpy as np

from dapose_jax import errors
from dapose_jax.auxiliary import pose_vae

NAMES = ("uniform", "cl", "hm")


def bins(scores, k, value_range=None):
  """The 1-based equal-width bin of each score (module docstring) over ``value_range`` (low, high), by default the
  scores' own; scores outside it go to bin 1 or k, and all to bin 1 when low == high."""
  scores = np.asarray(scores, np.float64)
  low, high = (scores.min(), scores.max()) if value_range is None else value_range
  if high == low:
    return np.ones(len(scores), np.int64)
  return np.clip(np.floor(k * (scores - low) / (high - low)).astype(np.int64), 0, k - 1) + 1


def value_range(scores, upper_quantile=1.0):
  """(low, high) of the bins over ``scores``: their minimum and their ``upper_quantile``-quantile."""
  return float(np.min(scores)), float(np.quantile(scores, upper_quantile))


class BinSampler:
  """``index(p)``: the source sample at element p of the stream, drawn by ``probabilities(p)`` over the bins."""

  def __init__(self, sample_bins, k, seed):
    self.k, self.seed = k, seed
    self.members = [np.flatnonzero(sample_bins == b) for b in range(1, k + 1)]
    self.sizes = np.array([len(m) for m in self.members], np.float64)

  def probabilities(self, position):
    """(k,) probability of each bin at stream element ``position``."""
    raise NotImplementedError

  def index(self, position):
    rng = np.random.default_rng((self.seed, position))
    members = self.members[rng.choice(self.k, p=self.probabilities(position))]
    return int(members[rng.integers(len(members))])

  __call__ = index


class Curriculum(BinSampler):
  """``cl``: samples uniformly from bins 1 .. m_t, m_t growing from 1 to k over ``ramp_steps`` steps."""

  def __init__(self, sample_bins, k, seed, *, batch_size, ramp_steps):
    super().__init__(sample_bins, k, seed)
    self.batch_size, self.ramp_steps = batch_size, max(ramp_steps, 1)

  def allowed_bins(self, step):
    """m_t of step ``step`` (1-based)."""
    return min(self.k, 1 + self.k * (step - 1) // self.ramp_steps)

  def probabilities(self, position):
    sizes = np.where(np.arange(1, self.k + 1) <= self.allowed_bins(position // self.batch_size + 1), self.sizes, 0)
    return sizes / sizes.sum()


class HardMining(BinSampler):
  """``hm``: bin b with weight b ** alpha (0 if empty), uniform within the bin."""

  def __init__(self, sample_bins, k, seed, *, alpha):
    super().__init__(sample_bins, k, seed)
    weights = np.where(self.sizes > 0, np.arange(1, k + 1, dtype=np.float64) ** alpha, 0.0)
    self._probabilities = weights / weights.sum()

  def probabilities(self, position):
    return self._probabilities


def check(sampling_config):
  """The ``config.sampling`` keys, without reading anything."""
  name = sampling_config.name
  if name not in NAMES:
    raise errors.ConfigError(f"config.sampling.name={name!r} is not a sampler; choose one of {', '.join(NAMES)}")
  if name != "uniform" and not sampling_config.scores:
    raise errors.ConfigError(
        f"config.sampling.name={name!r} samples by pose-VAE difficulty and needs config.sampling.scores: run "
        "`dapose-jax pose_vae --config CONFIG --workdir DIR` and set --config.sampling.scores=DIR/pose_vae/scores.json")
  if not (isinstance(sampling_config.bins, int) and sampling_config.bins > 0):
    raise errors.ConfigError(f"config.sampling.bins={sampling_config.bins!r}: expected a positive whole number")
  if not 0 < sampling_config.cl_fraction <= 1:
    raise errors.ConfigError(f"config.sampling.cl_fraction={sampling_config.cl_fraction!r}: expected 0 < f <= 1")
  if not 0 < sampling_config.upper_quantile <= 1:
    raise errors.ConfigError(f"config.sampling.upper_quantile={sampling_config.upper_quantile!r}: expected 0 < q <= 1")
  if not sampling_config.hm_alpha >= 0:
    raise errors.ConfigError(f"config.sampling.hm_alpha={sampling_config.hm_alpha!r}: expected a number >= 0")


def from_config(config, source, seed):
  """The sampler of ``config.source``'s training stream over ``source``, seeded with ``seed``; None for
  ``uniform`` (the pipeline's own shuffle)."""
  sampling = config.sampling
  check(sampling)
  if sampling.name == "uniform":
    return None
  scores = pose_vae.load_scores(sampling.scores, config.source, source)
  sample_bins = bins(scores, sampling.bins, value_range(scores, sampling.upper_quantile))
  if sampling.name == "cl":
    ramp = round(sampling.cl_fraction * config.epochs * config.iters_per_epoch)
    return Curriculum(sample_bins, sampling.bins, seed, batch_size=config.batch_size, ramp_steps=ramp)
  return HardMining(sample_bins, sampling.bins, seed, alpha=sampling.hm_alpha)
