"""The pose VAE: normalisation, the loss terms by hand, scores that single out rare poses, and the scores file
that ties them to their data set."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from dapose_jax import errors
from dapose_jax.auxiliary import pose_vae
from dapose_jax.commands import cli
from dapose_jax.data import sources
from tests.test_train import tiny_config


def small_vae(**overrides):
  c = ConfigDict(dict(latent=2, widths=(32,), kl_weight=0.1, steps=300, lr=3e-3, batch_size=64, log_every=100,
                      seed=0))
  c.update(overrides)
  return c


def test_normalise_centres_on_the_visible_keypoints_and_divides_by_their_rms_radius():
  keypoints = np.array([[0.0, 0.0], [2.0, 0.0], [100.0, 100.0]])
  # centre (1, 0), RMS radius sqrt((1 + 1) / 2) = 1; the invisible keypoint becomes 0
  np.testing.assert_allclose(pose_vae.normalise(keypoints, [1, 1, 0]), [[-1, 0], [1, 0], [0, 0]])
  rng = np.random.default_rng(0)
  poses, visible = rng.uniform(0, 64, (5, 16, 2)), rng.uniform(size=(5, 16)) > 0.3
  np.testing.assert_allclose(pose_vae.normalise(3.5 * poses + [7.0, -2.0], visible),
                             pose_vae.normalise(poses, visible), atol=1e-6)
  y = pose_vae.normalise(poses, visible)
  np.testing.assert_allclose(np.sum(y ** 2, axis=(1, 2)) / visible.sum(1), 1.0, rtol=1e-6)  # unit RMS radius


def test_reconstruction_error_and_kl_by_hand():
  y = jnp.array([[1.0, 0.0], [0.0, 2.0]])
  assert float(pose_vae.reconstruction_error(y, jnp.zeros((2, 2)), jnp.array([1.0, 0.0]))) == 1.0  # masked: 4
  assert float(pose_vae.reconstruction_error(y, jnp.zeros((2, 2)), jnp.array([1.0, 1.0]))) == 5.0
  # 0.5 * [(1 + 1 - 1 - 0) + (0 + 2 - 1 - log 2)] = 1 - log(2) / 2
  kl = pose_vae.kl_divergence(jnp.array([1.0, 0.0]), jnp.array([0.0, np.log(2.0)]))
  np.testing.assert_allclose(float(kl), 1 - np.log(2) / 2, rtol=1e-6)
  assert float(pose_vae.kl_divergence(jnp.zeros(3), jnp.zeros(3))) == 0.0


def test_loss_is_the_batch_mean_of_reconstruction_error_plus_lambda_kl():
  vae = pose_vae.PoseVAE(num_keypoints=3, latent=2, widths=(8,))
  rng = np.random.default_rng(1)
  y, visible = jnp.asarray(rng.normal(size=(4, 3, 2)), jnp.float32), jnp.array([[1, 1, 0]] * 4, jnp.float32)
  noise = jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)
  params = vae.init(jax.random.key(0), y, visible, noise)["params"]
  reconstruction, mu, log_var = vae.apply({"params": params}, y, visible, noise)
  by_hand = np.mean(np.sum(np.asarray(visible)[..., None] * (np.asarray(y) - np.asarray(reconstruction)) ** 2,
                           axis=(1, 2))
                    + 0.25 * 0.5 * np.sum(np.asarray(mu) ** 2 + np.exp(log_var) - 1 - np.asarray(log_var), axis=1))
  value, _ = pose_vae.loss(params, vae, y, visible, noise, 0.25)
  np.testing.assert_allclose(float(value), by_hand, rtol=1e-5)
  # the reconstruction does not read the coordinates of an invisible keypoint
  moved = y.at[:, 2].set(50.0)
  np.testing.assert_allclose(vae.apply({"params": params}, pose_vae.normalise(moved, visible), visible, noise)[0],
                             vae.apply({"params": params}, pose_vae.normalise(y, visible), visible, noise)[0])


@pytest.fixture(scope="module")
def common_and_rare_poses():
  """600 jittered copies of one pose, then 6 random poses, each seen once."""
  rng = np.random.default_rng(2)
  common = rng.uniform(0, 1, (8, 2))
  poses = np.concatenate([common + 0.02 * rng.normal(size=(600, 8, 2)), rng.uniform(0, 1, (6, 8, 2))])
  visible = np.ones((606, 8), np.float32)
  params, final = pose_vae.train(small_vae(), poses, visible)
  return poses, visible, params, final


def test_training_lowers_the_loss_and_the_rare_poses_score_highest(common_and_rare_poses):
  poses, visible, params, final = common_and_rare_poses
  vae = pose_vae.model(small_vae(), 8)
  scores = pose_vae.score(vae, params, poses, visible)
  assert scores.shape == (606,) and np.all(scores >= 0)
  assert final["reconstruction"] < 1.0  # a constant pose reconstructs to about 8 (unit RMS radius, 8 keypoints)
  assert scores[600:].min() > np.percentile(scores[:600], 99)


def test_the_score_decodes_the_posterior_mean(common_and_rare_poses):
  poses, visible, params, _ = common_and_rare_poses
  vae = pose_vae.model(small_vae(), 8)
  y = jnp.asarray(pose_vae.normalise(poses[:5], visible[:5]))
  mu, _ = vae.apply({"params": params}, y, visible[:5], method=pose_vae.PoseVAE.encode)
  decoded = vae.apply({"params": params}, mu, method=pose_vae.PoseVAE.decode)
  np.testing.assert_allclose(pose_vae.score(vae, params, poses[:5], visible[:5]),
                             np.sum((np.asarray(y) - np.asarray(decoded)) ** 2, axis=(1, 2)), rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
  config = tiny_config()
  config.source.train_size = 24
  config.pose_vae.update(steps=10, widths=(16,), latent=2, batch_size=8, log_every=5)
  workdir = tmp_path_factory.mktemp("vae")
  return config, pose_vae.run(config, workdir)


def test_the_command_writes_a_score_per_source_sample_tied_to_its_data(scored_run):
  config, path = scored_run
  assert path.name == "scores.json" and (path.parent / pose_vae.PARAMS).is_file()
  record = json.loads(path.read_text())
  source = sources.make_source(config.source, "train")
  keypoints, visible = pose_vae.read_keypoints(source)
  assert (record["dataset"], record["split"], record["size"], record["keypoint_set"]) == ("synthetic", "train", 24,
                                                                                          "body16")
  assert record["keypoints_sha256"] == pose_vae.fingerprint(keypoints, visible)
  vae, params = pose_vae.load_params(config.pose_vae, 16, path.parent)
  np.testing.assert_allclose(record["scores"], pose_vae.score(vae, params, keypoints, visible), rtol=1e-6)
  np.testing.assert_array_equal(pose_vae.load_scores(path, config.source, source), record["scores"])
  assert cli.COMMANDS["pose_vae"][0] == "dapose_jax.commands.pose_vae"


@pytest.mark.parametrize("change, message", [
    (dict(train_size=25), r"size 24 \(the run's: 25\)"),
    (dict(seed=5), "its keypoints differ"),
])
def test_a_scores_file_of_other_poses_is_refused(scored_run, change, message):
  config, path = scored_run
  data_config = config.source.copy_and_resolve_references()
  data_config.update(change)
  with pytest.raises(errors.ConfigError, match=message + ".*run `dapose-jax pose_vae"):
    pose_vae.load_scores(path, data_config, sources.make_source(data_config, "train"))


def test_a_missing_scores_file_names_the_command(tmp_path):
  config = tiny_config()
  with pytest.raises(errors.MissingInputError, match="is not a file; run `dapose-jax pose_vae"):
    pose_vae.load_scores(tmp_path / "scores.json", config.source, sources.make_source(config.source, "train"))


def test_a_bad_vae_setting_is_named():
  with pytest.raises(errors.ConfigError, match=r"config.pose_vae.widths=\(\)"):
    pose_vae.check(small_vae(widths=()))
  with pytest.raises(errors.ConfigError, match="config.pose_vae.kl_weight=-1"):
    pose_vae.check(small_vae(kl_weight=-1.0))
