import itertools
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from dapose_jax import errors, methods, parallel
from dapose_jax.augment import device_augment
from dapose_jax.commands import browse
from dapose_jax.config import defaults
from dapose_jax.data import pipeline
from dapose_jax.run import loop
from tests.test_train import tiny_config

SIZE = 32
WARP_ONLY = device_augment.AugmentParams(rotation=60.0, scale_min=0.6, scale_max=1.3, color=0.0, blur=0.0)
IDENTITY = device_augment.AugmentParams(rotation=0.0, scale_min=1.0, scale_max=1.0, color=0.0, blur=0.0)


def bright_pixel_batch(count, dtype=np.float32, seed=0):
  """Dark images with one white pixel each, at a random place near the centre, its centre as keypoint 0 (in
  continuous coordinates); keypoints 1 and 2 are (0, 0) and (1, 0), whose images give the rotation."""
  pixels = np.random.default_rng(seed).integers(11, SIZE - 11, (count, 2))
  images = np.zeros((count, SIZE, SIZE, 3), dtype)
  images[np.arange(count), pixels[:, 1], pixels[:, 0]] = 255
  keypoints = np.stack([pixels + 0.5, np.zeros((count, 2)), np.tile([1.0, 0.0], (count, 1))], 1).astype(np.float32)
  return {"image": images, "keypoints": keypoints, "visible": np.ones((count, 3), np.float32)}


@pytest.mark.parametrize("step", [1, 2, 3])
def test_a_bright_pixel_follows_its_keypoint_through_rotation_and_crop(step):
  batch = bright_pixel_batch(16)
  out = jax.jit(device_augment.augment_at, static_argnums=3)(0, step, batch, WARP_ONLY)
  moved, origin, unit_x = np.moveaxis(np.asarray(out["keypoints"], np.float64), 1, 0)
  angles = np.degrees(np.arctan2(*(unit_x - origin).T[::-1]))
  assert 30 < np.abs(angles).max() <= 60  # non-trivial rotations
  image = np.asarray(out["image"])[..., 0]
  np.testing.assert_array_equal(out["visible"], batch["visible"])
  brightest = np.stack(np.unravel_index(image.reshape(16, -1).argmax(1), (SIZE, SIZE))[::-1], -1) + 0.5
  assert np.abs(brightest - moved).max() <= 1.0
  # the bilinear blob's centre of mass is the keypoint: a half-pixel slip of the convention would be 0.5 px off
  ys, xs = np.mgrid[:SIZE, :SIZE] + 0.5
  mass = image.sum((1, 2))
  centroid = np.stack([(image * xs).sum((1, 2)) / mass, (image * ys).sum((1, 2)) / mass], -1)
  assert np.abs(centroid - moved).max() < 0.15


def test_the_crop_zooms_by_one_over_the_root_of_the_area_and_stays_inside_the_image():
  params = device_augment.AugmentParams(rotation=0.0, scale_min=0.64, scale_max=0.64)
  matrices = np.asarray(device_augment.sample_matrices(jax.random.key(3), 64, SIZE, params))
  np.testing.assert_allclose(matrices[:, [0, 1], [0, 1]], 1.25, rtol=1e-6)
  np.testing.assert_allclose(matrices[:, [0, 1], [1, 0]], 0.0, atol=1e-6)
  # the crop window [o, o + 0.8 S]: its corners map to the output image's corners 0 and S
  origin = -matrices[:, :2, 2] / 1.25
  assert origin.min() >= -1e-4 and (origin + 0.8 * SIZE).max() <= SIZE + 1e-4
  assert origin.min() < 0.1 * SIZE and origin.max() > 0.1 * SIZE  # spread over the allowed 0 .. 0.2 S


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_zero_ranges_give_back_the_input_exactly(dtype):
  batch = bright_pixel_batch(4, dtype)
  batch["image"] = np.random.default_rng(1).integers(0, 256, batch["image"].shape).astype(dtype)
  out = jax.jit(device_augment.augment, static_argnums=2)(jax.random.key(0), batch, IDENTITY)
  assert out["image"].dtype == dtype
  for key in batch:
    np.testing.assert_array_equal(out[key], batch[key])


def test_same_key_same_output_other_step_other_output_and_no_dependence_on_the_sharding():
  batch = bright_pixel_batch(8, np.uint8)
  batch["image"] = np.random.default_rng(2).integers(0, 256, batch["image"].shape).astype(np.uint8)
  params = device_augment.AugmentParams()
  run = jax.jit(device_augment.augment_at, static_argnums=3)
  first, again, other = run(0, 5, batch, params), run(0, 5, batch, params), run(0, 6, batch, params)
  for key in ("image", "keypoints"):
    np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first[key], other[key])
  mesh = parallel.make_mesh()
  assert mesh.size == 4 and jax.config.jax_threefry_partitionable
  data = parallel.data_sharding(mesh)
  sharded = jax.jit(device_augment.augment_at, static_argnums=3, in_shardings=(None, None, data), out_shardings=data)
  for key, value in sharded(0, 5, jax.device_put(batch, data), params).items():
    np.testing.assert_array_equal(value, first[key])


def test_blur_keeps_a_flat_image_and_the_mass_of_a_dot_and_spreads_it_at_most_sigma():
  flat = np.full((4, 9, 9, 3), 100.0, np.float32)
  np.testing.assert_allclose(device_augment.gaussian_blur(jax.random.key(0), flat, 0.8), flat, rtol=1e-6)
  dot = np.zeros((64, 9, 9, 1), np.float32)
  dot[:, 4, 4] = 1.0
  blurred = np.asarray(device_augment.gaussian_blur(jax.random.key(1), dot, 0.8))[..., 0]
  np.testing.assert_allclose(blurred.sum((1, 2)), 1.0, rtol=1e-5)
  np.testing.assert_allclose(blurred, blurred[:, ::-1, ::-1], atol=1e-7)
  variance = (blurred * (np.arange(9) - 4.0) ** 2).sum((1, 2))
  assert variance.max() <= 0.8 ** 2 + 1e-4 and variance.min() < 0.05 < 0.3 < variance.max()


def test_config_switches_the_device_augmentation_and_refuses_bad_ranges():
  config = tiny_config()
  assert device_augment.from_config(config, "source") is None
  config.source.augment.on_device = True
  assert device_augment.from_config(config, "source") == device_augment.AugmentParams(
      rotation=30.0, scale_min=0.6, scale_max=1.3, color=0.25, blur=0.8)
  config.source.augment.enabled = False
  assert device_augment.from_config(config, "source") is None
  config.source.augment.update(enabled=True, scale_min=1.4)
  with pytest.raises(errors.ConfigError, match=r"config.source.augment.scale_min=1.4, scale_max=1.3"):
    device_augment.from_config(config, "source")


def test_with_on_device_the_host_only_resizes_and_pads_any_aspect_ratio():
  image = np.random.default_rng(0).integers(0, 256, (20, 40, 3)).astype(np.uint8)
  source = [{"image": image, "keypoints": np.array([[10.0, 4.0]], np.float32), "visible": np.ones(1, np.float32)}]
  augment = ConfigDict(defaults.augment(30.0))
  augment.on_device = True
  batch = next(pipeline.train_iterator(source, batch_size=1, image_size=16, augment=augment, seed=0))
  assert batch["image"].shape == (1, 16, 16, 3)
  np.testing.assert_array_equal(batch["image"][0, :4], 0)  # 8 rows of image, 4 of padding above and below
  np.testing.assert_allclose(batch["keypoints"][0], [[10 * 16 / 40, 4 * 8 / 20 + 4]], rtol=1e-6)


def test_browse_shows_the_batches_as_the_train_step_augments_them():
  config = tiny_config()
  host = [s["image"] for s in itertools.islice(browse.samples(config, "source", "train"), 8)]
  config.source.augment.on_device = True
  shown = list(itertools.islice(browse.samples(config, "source", "train"), 8))
  resized = next(loop.train_iterator(config, "source", loop.train_sources(config)[0]))
  expected = jax.device_get(device_augment.augment_at(config.seed, 1, resized, device_augment.from_config(config,
                                                                                                          "source")))
  np.testing.assert_array_equal(np.stack([s["image"] for s in shown[:4]]), expected["image"])
  np.testing.assert_array_equal(np.stack([s["keypoints"] for s in shown[:4]]), expected["keypoints"])
  assert not np.array_equal(expected["image"], resized["image"]) and not np.array_equal(np.stack(host[:4]),
                                                                                       expected["image"])


def image_sums_method():
  """A stand-in for a method, cheap to compile: its state adds up each step's source and target images (and steps
  a linear fit of the keypoints to them, for a loss)."""

  def init(config, rng):
    return {"seen": jnp.zeros(2), "weights": jnp.zeros((3, 2))}

  def train_step(config, state, source, target):
    def loss_fn(weights):
      colour = jnp.mean(source["image"] / 255.0, (1, 2))
      return jnp.mean((colour @ weights - jnp.mean(source["keypoints"], 1) / config.image_size) ** 2)

    loss, grad = jax.value_and_grad(loss_fn)(state["weights"])
    sums = jnp.stack([jnp.sum(b["image"].astype(jnp.float32)) for b in (source, target)])
    return {"seen": state["seen"] + sums, "weights": state["weights"] - 0.1 * grad}, {"loss": loss}

  return methods.base.Method(name="source_only", init=init, train_step=train_step, eval_heatmaps=None)


def test_a_run_trains_on_the_device_augmented_batches_and_resumes_bit_identically(tmp_path, monkeypatch):
  monkeypatch.setattr(methods, "get", lambda name: image_sums_method())
  config = tiny_config(epochs=2, evals={})
  config.update(iters_per_epoch=1, checkpoint_every=1, log_every=1)
  config.source.augment.on_device = config.target.augment.on_device = True
  state, _ = loop.train_and_evaluate(config, tmp_path / "run")
  records = map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
  losses = [r["loss"] for r in records if r["kind"] == "train"]
  assert len(losses) == 2 and np.isfinite(losses).all() and np.abs(state["weights"]).min() > 0
  expected = []
  for domain, source in zip(defaults.DOMAINS, loop.train_sources(config)):
    host = itertools.islice(loop.train_iterator(config, domain, source), 2)
    params = device_augment.from_config(config, domain)
    augmented = [device_augment.augment_at(loop.stream_seed(config, domain), step, batch, params)["image"]
                 for step, batch in enumerate(host, 1)]
    expected.append(sum(np.asarray(images, np.float64).sum() for images in augmented))
  np.testing.assert_allclose(state["seen"], expected, rtol=1e-6)
  shutil.copytree(tmp_path / "run", tmp_path / "resumed")
  shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "2")
  resumed, _ = loop.train_and_evaluate(config, tmp_path / "resumed")
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed), jax.device_get(state))
