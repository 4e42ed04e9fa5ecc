"""Pose-VAE difficulty bins and the samplers of the source training stream: frequencies against their formulas,
determinism, resume, config errors, and a short training run that samples by hard mining."""

import json

import numpy as np
import pytest
from ml_collections import ConfigDict

from dapose_jax.auxiliary import pose_vae
from dapose_jax.config import defaults
from dapose_jax.data import pipeline, sampling, sources
from dapose_jax.run import loop
from tests.test_train import tiny_config

# bin sizes 10, 0, 5, 3, 1 (k = 5): sample n of bin b is one of the SIZES[b - 1] samples of that bin
SIZES = (10, 0, 5, 3, 1)
SAMPLE_BINS = np.repeat(np.arange(1, 6), SIZES)


def drawn_bins(sampler, positions):
  return np.array([SAMPLE_BINS[sampler.index(p)] for p in positions])


def assert_frequencies(bins_drawn, probabilities):
  """Each bin's empirical frequency within 4.5 binomial standard deviations of its probability (a false alarm
  per bin has probability < 1e-5, so the seeded draws below pass for structural reasons, not by luck)."""
  n = len(bins_drawn)
  frequencies = np.bincount(bins_drawn, minlength=len(probabilities) + 1)[1:] / n
  tolerance = 4.5 * np.sqrt(probabilities * (1 - probabilities) / n) + 1e-12
  np.testing.assert_array_less(np.abs(frequencies - probabilities), tolerance)


def test_equal_width_bins_by_hand():
  # width (10 - 0) / 5 = 2: [0, 2) -> 1, [2, 4) -> 2, ..., the maximum in the last bin
  np.testing.assert_array_equal(sampling.bins([0.0, 1.0, 1.99, 2.0, 7.5, 10.0], 5), [1, 1, 1, 2, 4, 5])
  np.testing.assert_array_equal(sampling.bins([3.0, 3.0], 25), [1, 1])
  # another split's scores in the source's bins: beyond the source's range, the first or the last bin
  np.testing.assert_array_equal(sampling.bins([-1.0, 0.5, 1.5, 3.0], 2, value_range=(0.0, 2.0)), [1, 1, 2, 2])
  # the range can end at a quantile: here the median of 0 .. 10 (bins of width 1), so 4 .. 10 share the last bin
  scores = np.arange(11.0)
  assert sampling.value_range(scores, 0.5) == (0.0, 5.0)
  np.testing.assert_array_equal(sampling.bins(scores, 5, sampling.value_range(scores, 0.5)),
                                [1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5])


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_hard_mining_draws_bin_b_with_weight_b_to_the_alpha_and_uniformly_within_it(alpha):
  sampler = sampling.HardMining(SAMPLE_BINS, 5, seed=0, alpha=alpha)
  weights = np.array([1.0, 0.0, 3.0 ** alpha, 4.0 ** alpha, 5.0 ** alpha])  # bin 2 is empty: weight 0
  np.testing.assert_allclose(sampler.probabilities(0), weights / weights.sum())
  indices = np.array([sampler.index(p) for p in range(12_000)])
  assert_frequencies(SAMPLE_BINS[indices], weights / weights.sum())
  first_bin = indices[indices < 10]  # uniform over bin 1's ten samples
  counts = np.bincount(first_bin, minlength=10) / len(first_bin)
  np.testing.assert_array_less(np.abs(counts - 0.1), 4.5 * np.sqrt(0.1 * 0.9 / len(first_bin)))


def test_curriculum_opens_one_more_bin_per_stage_and_samples_the_open_bins_uniformly():
  batch = 2500
  sampler = sampling.Curriculum(SAMPLE_BINS, 5, seed=1, batch_size=batch, ramp_steps=10)  # stages of 2 steps
  assert [sampler.allowed_bins(t) for t in range(1, 13)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5, 5]
  for step, allowed in [(1, 1), (3, 2), (6, 3), (8, 4), (12, 5)]:
    sizes = np.where(np.arange(1, 6) <= allowed, SIZES, 0).astype(float)
    probabilities = sizes / sizes.sum()  # every open sample alike: bin b with n_b / (open samples)
    np.testing.assert_allclose(sampler.probabilities((step - 1) * batch), probabilities)
    np.testing.assert_allclose(sampler.probabilities(step * batch - 1), probabilities)
    assert_frequencies(drawn_bins(sampler, range((step - 1) * batch, step * batch)), probabilities)


def test_a_sampler_is_a_pure_function_of_seed_and_position():
  a, b = (sampling.HardMining(SAMPLE_BINS, 5, seed=7, alpha=1.0) for _ in range(2))
  positions = [5, 0, 123_456_789, 17, 5]
  assert [a.index(p) for p in positions] == [b.index(p) for p in reversed(positions)][::-1]
  other = sampling.HardMining(SAMPLE_BINS, 5, seed=8, alpha=1.0)
  assert [a.index(p) for p in range(50)] != [other.index(p) for p in range(50)]


class Indexed:
  """n samples whose image is filled with the sample's index (n <= 256)."""

  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, index):
    return {"image": np.full((16, 16, 3), index, np.uint8), "keypoints": np.full((16, 2), 8.0, np.float32),
            "visible": np.ones(16, np.float32)}


def batches(sampler, start, count, augment):
  it = pipeline.train_iterator(Indexed(len(SAMPLE_BINS)), batch_size=4, image_size=16, augment=augment, seed=3,
                               start=start, sampler=sampler)
  return [next(it) for _ in range(count)]


def test_the_stream_holds_the_samplers_draws_and_a_resumed_stream_continues_it_exactly():
  sampler = sampling.Curriculum(SAMPLE_BINS, 5, seed=3, batch_size=4, ramp_steps=6)
  plain = ConfigDict(defaults.augment(30.0, enabled=False))
  images = np.concatenate([b["image"][:, 0, 0, 0] for b in batches(sampler, 0, 5, plain)])
  np.testing.assert_array_equal(images, [sampler.index(p) for p in range(20)])
  augmented = ConfigDict(defaults.augment(30.0))
  whole, resumed = batches(sampler, 0, 5, augmented), batches(sampler, 2, 3, augmented)
  for a, b in zip(whole[2:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["keypoints"], b["keypoints"])


@pytest.mark.parametrize("change, message", [
    (dict(name="hard"), "config.sampling.name='hard' is not a sampler"),
    (dict(name="hm"), r"config.sampling.name='hm' .*needs config.sampling.scores: run `dapose-jax pose_vae"),
    (dict(name="cl", scores="x.json", cl_fraction=0.0), "config.sampling.cl_fraction=0.0"),
    (dict(bins=0), "config.sampling.bins=0"),
    (dict(upper_quantile=1.5), "config.sampling.upper_quantile=1.5"),
])
def test_a_bad_sampling_config_is_one_line_naming_the_key(change, message):
  config = tiny_config()
  config.sampling.update(change)
  source = sources.make_source(config.source, "train")
  with pytest.raises(ValueError, match=message) as error:
    loop.train_iterator(config, "source", source)
  assert "\n" not in str(error.value)


def test_uniform_sampling_is_the_shuffled_stream_and_the_target_is_never_sampled(tmp_path):
  config = tiny_config()
  assert sampling.from_config(config, None, 0) is None
  config.sampling.update(name="hm", scores=str(tmp_path / "missing.json"))
  target = sources.make_source(config.target, "train")
  next(loop.train_iterator(config, "target", target))  # the target stream does not read the scores


def test_a_short_run_samples_its_source_by_hard_mining(tmp_path):
  config = tiny_config(epochs=1, evals={})
  config.source.train_size = 40
  config.pose_vae.update(steps=20, widths=(16,), latent=2, batch_size=8, log_every=10)
  scores = pose_vae.run(config, tmp_path)
  config.sampling.update(name="hm", scores=str(scores), bins=4)
  _, results = loop.train_and_evaluate(config, tmp_path / "run")
  assert results["steps"] == 3
  records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in records)
  assert json.loads((tmp_path / "run" / "config.json").read_text())["sampling"]["name"] == "hm"
