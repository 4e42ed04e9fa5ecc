"""Generator pre-training (the method ``reconstruction``) and the pair pipeline: one augmentation per pair, the loss
by hand, a tiny run that lowers the loss, the saved network and picture, the command's config errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax import errors
from dapose_jax.auxiliary import style_net
from dapose_jax.commands import cli, reconstruction as reconstruction_command
from dapose_jax.data import pipeline, synthetic
from dapose_jax.methods import reconstruction as rm
from tests.test_train import tiny_config

STEPS = 15


def small_config(**overrides):
  c = tiny_config()
  c.reconstruction.update(warping_features=4, warping_max_features=8, warping_blocks=2, generator_features=4,
                          generator_max_features=8, generator_residual_blocks=1, batch_size=4, steps=STEPS,
                          log_every=5, lr=3e-3, perceptual_weight=0.1)
  c.reconstruction.update(overrides)
  c.source.train_size = 8
  return c


def pair_batches(source, augment, start=0, batch_size=2):
  return pipeline.train_iterator(source, batch_size=batch_size, image_size=32, augment=augment, seed=3, start=start,
                                 pairs=True)


def test_a_pair_without_motion_is_augmented_identically_and_pairs_differ():
  config = small_config()
  source = synthetic.SyntheticPose("source", "train", 6, image_size=48, pairs=True, motion=0.0)
  batch = next(pair_batches(source, config.source.augment, batch_size=4))
  for key in ("image", "keypoints", "visible"):
    np.testing.assert_array_equal(batch["base"][key], batch["driving"][key])
  assert batch["base"]["image"].shape == (4, 32, 32, 3)
  images = batch["base"]["image"].astype(int)
  assert all(np.abs(images[i] - images[j]).mean() > 5 for i in range(4) for j in range(i))
  # batch N is a function of N only: starting at batch 1 gives the second batch of the stream from 0
  stream = pair_batches(source, config.source.augment)
  next(stream)
  jax.tree.map(np.testing.assert_array_equal, next(stream), next(pair_batches(source, config.source.augment, 1)))


def test_a_moved_pair_keeps_one_transform_for_both_images():
  config = small_config()
  source = synthetic.SyntheticPose("source", "train", 2, image_size=48, pairs=True)
  batch = next(pair_batches(source, config.source.augment))
  # same augmentation: the pelvis (keypoint 6, which the motion never moves) lands on the same pixel in both
  np.testing.assert_allclose(batch["base"]["keypoints"][:, 6], batch["driving"]["keypoints"][:, 6], atol=1e-4)
  assert np.abs(batch["base"]["keypoints"] - batch["driving"]["keypoints"]).max() > 0.1


@pytest.fixture(scope="module")
def encoder():
  return style_net.initial_params(small_config().style)["encoder"]


def test_the_loss_is_zero_for_a_perfect_reconstruction_and_l1_by_hand(encoder):
  config = small_config(perceptual_weight=1.0)
  x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
  value, terms = rm.loss_terms(config, x, x, encoder)
  assert float(value) == float(terms["l1"]) == float(terms["perceptual"]) == 0.0
  target = jnp.zeros((2, 16, 16, 3)).at[:, :8].set(1.0)  # half the pixels 1: a 0.25 image is 0.75 / 0.25 off
  value, terms = rm.loss_terms(small_config(perceptual_weight=0.0), jnp.full_like(target, 0.25), target, encoder)
  assert float(value) == pytest.approx(0.5 * 0.75 + 0.5 * 0.25) == float(terms["l1"])
  assert float(terms["perceptual"]) > 0


def test_the_perceptual_gradient_is_finite_and_nonzero(encoder):
  config = small_config(perceptual_weight=1.0)
  x, target = jax.random.uniform(jax.random.key(1), (2, 2, 16, 16, 3))
  grad = jax.grad(lambda image: rm.loss_terms(config, image, target, encoder)[1]["perceptual"])(x)
  assert np.isfinite(np.asarray(grad)).all() and float(jnp.abs(grad).max()) > 0


def first_pair_batch(config, batch_size):
  source = synthetic.SyntheticPose("source", "train", 8, image_size=48, pairs=True)
  return next(pipeline.train_iterator(source, batch_size=batch_size, image_size=32, augment=config.source.augment,
                                      seed=config.reconstruction.seed, pairs=True))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """The command's network after STEPS steps of the training loop."""
  workdir = tmp_path_factory.mktemp("reconstruction")
  return workdir, reconstruction_command.train_generator(small_config(), workdir)


def test_training_lowers_the_loss_of_the_first_batch(trained):
  _, path = trained
  config = rm.configure(small_config())
  state = rm.load_pretrained(config, rm.init(config, None))
  batch = first_pair_batch(config, config.batch_size)  # the first training batch
  loss = lambda v: float(rm.pair_loss(config, v["params"], state.replace(batch_stats=v["batch_stats"]), batch)[0])
  before, after = loss(rm.variables_of(state)), loss(rm.load(config, 16, path))
  print(f"first batch loss: {before:.4f} -> {after:.4f} after {STEPS} steps")
  assert after < 0.8 * before


def test_the_network_is_written_with_a_picture_and_the_training_folder_goes(trained):
  workdir, path = trained
  assert path == workdir / rm.NET and not (workdir / "training").exists()
  from PIL import Image
  picture = np.asarray(Image.open(workdir / rm.PICTURE))
  assert picture.shape == (2 * rm.drawing.GAP + 4 * 32 + 3 * rm.drawing.GAP,) * 2 + (3,)  # 4 pairs x 4 tiles
  config = small_config()
  variables = rm.load(config, 16, path)
  assert jax.tree.structure(variables) == jax.tree.structure(rm.template(config, 16))
  with pytest.raises(errors.ConfigError, match="does not hold a Reconstructor"):
    rm.load(small_config(generator_features=8), 16, path)


def test_an_existing_network_is_reused(trained):
  workdir, path = trained
  stamp = path.stat().st_mtime_ns
  assert reconstruction_command.train_generator(small_config(steps=1), workdir) == path
  assert path.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("overrides, message", [
    (dict(keypoints="oracle"), r"config.reconstruction.keypoints='oracle': expected one of \('truth', 'predictor'\)"),
    (dict(keypoints="predictor"), "config.reconstruction.keypoints='predictor' needs config.reconstruction.predictor"),
    (dict(steps=0), "config.reconstruction.steps=0: expected a positive whole number"),
    (dict(domains=("target",)), "config.reconstruction.domains includes 'target' with keypoints='truth'"),
    (dict(domains=("source", "source")), "config.reconstruction.domains=\\('source', 'source'\\): expected"),
    (dict(warping_blocks=4), "config.reconstruction.warping_blocks=4: image_size 32 x warping_scale 0.25"),
])
def test_a_bad_setting_is_one_config_error_before_anything_is_written(tmp_path, overrides, message):
  with pytest.raises(errors.ConfigError, match=message) as raised:
    reconstruction_command.train_generator(small_config(**overrides), tmp_path)
  assert "\n" not in str(raised.value) and not any(tmp_path.iterdir())


def test_the_command_is_registered():
  assert cli.COMMANDS["reconstruction"][0] == "dapose_jax.commands.reconstruction"


def test_a_view_pair_moves_the_keypoints_with_the_image():
  config = small_config()
  config.reconstruction.driving_view.update(rotation=30.0, translate=0.1, scale_min=0.8, scale_max=1.2)
  images = np.zeros((4, 32, 32, 3), np.uint8)
  keypoints = np.tile(np.array([[10.0, 14.0]], np.float32), (4, 16, 1))
  images[:, 13:16, 9:12] = 255  # a bright 3 x 3 square centred on the keypoint (10, 14)
  batch = {"image": images, "keypoints": keypoints, "visible": np.ones((4, 16), np.float32)}
  pair = jax.device_get(rm.view_pair(config, jax.random.key(5), batch))
  np.testing.assert_array_equal(pair["base"]["image"], images)
  ys, xs = np.mgrid[:32, :32]
  for n in range(4):
    # the brightness centroid of the warped square, not its argmax: the warped pixels tie or nearly tie, and an
    # argmax lands up to 1.3 px away (keys 5-11); the centroid is 0.05 px from the moved keypoint at most there
    driving = pair["driving"]["image"][n, ..., 0].astype(np.float64)
    centroid = np.array([(driving * xs).sum(), (driving * ys).sum()]) / driving.sum()
    np.testing.assert_allclose(pair["driving"]["keypoints"][n, 0], centroid, atol=0.1)
  assert not np.allclose(pair["driving"]["keypoints"], keypoints)


def test_a_source_without_pairs_trains_the_generator_on_two_views(tmp_path):
  config = small_config(driving="view", steps=2, log_every=1)
  path = reconstruction_command.train_generator(config, tmp_path)
  assert path.is_file() and (tmp_path / rm.PICTURE).is_file() and not (tmp_path / "training").exists()
  assert jax.tree.structure(rm.load(config, 16, path)) == jax.tree.structure(rm.template(config, 16))


def test_the_loss_over_source_and_target_is_the_mean_of_their_pair_losses(encoder):
  config = rm.configure(small_config(keypoints="predictor", predictor="/unused/best", domains=("source", "target")))
  assert config.source.pairs and config.target.pairs
  state = rm.init(config, None).replace(encoder=encoder)
  source, target = first_pair_batch(config, 4), first_pair_batch(config, 4)
  target = jax.tree.map(lambda x: x[::-1], target)  # another batch
  value, (terms, batch_stats) = jax.jit(functools.partial(rm.domains_loss, config))(
      state.params, state, [source, target])
  first, (first_terms, stats) = rm.pair_loss(config, state.params, state, source)
  second, (second_terms, _) = rm.pair_loss(config, state.params, state.replace(batch_stats=stats), target)
  np.testing.assert_allclose(float(value), (float(first) + float(second)) / 2, rtol=1e-5)
  np.testing.assert_allclose(float(terms["l1"]), (float(first_terms["l1"]) + float(second_terms["l1"])) / 2, rtol=1e-5)
