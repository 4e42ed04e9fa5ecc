"""Dua et al.'s pose VAE, trained on the source training keypoints, and the difficulty score of every source training
sample (``dapose-jax pose_vae``, ``dapose_jax.commands.pose_vae``). ``run`` writes ``DIR/pose_vae/params.msgpack`` (the
VAE) and ``DIR/pose_vae/scores.json``: one score per sample of ``config.source``'s training split, in index order, tied
to the data set's name, split, size and keypoint set and to sha256 fingerprints of its keypoints, so that a run whose
source differs refuses the file (``load_scores``). A run samples by these scores with ``--config.sampling.name=cl|hm
--config.sampling.scores=DIR/pose_vae/scores.json`` (``dapose_jax.data.sampling``).

Definitions (``config.pose_vae``):

- Normalisation of a pose y (K, 2) with visibility v (K,): centre c = the mean of the visible keypoints, radius
  r = the root mean square of |y_i - c| over them; the input is (y_i - c) / r for visible keypoints, 0 for the
  others, next to v itself (the mask is an input too).
- Model: an MLP encoder (``widths``, ReLU) to the mean mu and log-variance of a diagonal Gaussian over ``latent``
  dimensions; an MLP decoder (the widths reversed) from z to all K normalised keypoints.
- Loss (the seed's): L = mean over the batch of sum_i v_i |y_i - yhat_i|^2 + kl_weight * KL(N(mu, sigma) || N(0, I)),
  yhat decoded from z = mu + sigma * eps, eps ~ N(0, I); Adam at ``lr``, ``steps`` batches of ``batch_size`` drawn
  as seeded shuffled passes over the split.
- Score: the reconstruction error sum_i v_i |y_i - yhat_i|^2 of the posterior mean (z = mu, no sampling).
"""

import hashlib
import json
import logging
import pathlib
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict

from dapose_jax import errors
from dapose_jax.auxiliary import fitting
from dapose_jax.data import sources
from dapose_jax.storage import network_files, workdirs

log = logging.getLogger("dapose_jax")

FOLDER = "pose_vae"
SCORES = "scores.json"
PARAMS = "params.msgpack"
PROBES = 32  # samples whose keypoints a run re-reads to check a scores file: an O(1) stand-in for the full hash
_SCORE_BATCH = 4096


def normalise(keypoints, visible):
  """Keypoints (..., K, 2) centred on the mean of the visible ones and divided by their RMS distance to it;
  invisible keypoints are 0. A pose with fewer than two distinct visible keypoints keeps radius 1. NumPy inputs
  are computed in float64; JAX arrays (also traced, under jit) in float32 with jnp."""
  xp, dtype = (jnp, jnp.float32) if isinstance(keypoints, jax.Array) else (np, np.float64)
  keypoints, mask = xp.asarray(keypoints, dtype), xp.asarray(visible, dtype)[..., None] > 0
  count = xp.maximum(mask.sum(axis=-2, keepdims=True), 1)
  centre = xp.where(mask, keypoints, 0).sum(axis=-2, keepdims=True) / count
  offsets = xp.where(mask, keypoints - centre, 0)
  radius = xp.sqrt((offsets ** 2).sum(axis=(-2, -1), keepdims=True) / count)
  return (offsets / xp.where(radius > 0, radius, 1)).astype(np.float32)


class PoseVAE(nn.Module):
  """Encoder (masked normalised keypoints, mask) -> (mu, log_var); decoder z -> keypoints (..., K, 2)."""

  num_keypoints: int
  latent: int
  widths: tuple[int, ...]

  def setup(self):
    self.encoder = [nn.Dense(w) for w in self.widths]
    self.posterior = nn.Dense(2 * self.latent)
    self.decoder = [nn.Dense(w) for w in reversed(self.widths)]
    self.keypoints = nn.Dense(2 * self.num_keypoints)

  def encode(self, y, visible):
    h = jnp.concatenate([y.reshape(*y.shape[:-2], -1), visible], axis=-1)
    for layer in self.encoder:
      h = nn.relu(layer(h))
    mu, log_var = jnp.split(self.posterior(h), 2, axis=-1)
    return mu, log_var

  def decode(self, z):
    h = z
    for layer in self.decoder:
      h = nn.relu(layer(h))
    return self.keypoints(h).reshape(*z.shape[:-1], self.num_keypoints, 2)

  def __call__(self, y, visible, noise):
    """(reconstruction from z = mu + sigma * noise, mu, log_var); noise 0 decodes the posterior mean."""
    mu, log_var = self.encode(y, visible)
    return self.decode(mu + jnp.exp(0.5 * log_var) * noise), mu, log_var


def model(vae_config, num_keypoints):
  return PoseVAE(num_keypoints, vae_config.latent, tuple(vae_config.widths))


def reconstruction_error(y, reconstruction, visible):
  """sum_i v_i |y_i - yhat_i|^2 per pose: (...)."""
  return jnp.sum(visible * jnp.sum((y - reconstruction) ** 2, axis=-1), axis=-1)


def kl_divergence(mu, log_var):
  """KL(N(mu, exp(log_var)) || N(0, I)) per pose, summed over the latent dimensions: (...)."""
  return 0.5 * jnp.sum(mu ** 2 + jnp.exp(log_var) - 1 - log_var, axis=-1)


def loss(params, vae, y, visible, noise, kl_weight):
  """(L, {"reconstruction", "kl"}): the seed's loss averaged over the batch, and its two terms' batch means."""
  reconstruction, mu, log_var = vae.apply({"params": params}, y, visible, noise)
  error, kl = reconstruction_error(y, reconstruction, visible), kl_divergence(mu, log_var)
  return jnp.mean(error + kl_weight * kl), {"reconstruction": jnp.mean(error), "kl": jnp.mean(kl)}


def check(vae_config):
  for key in ("latent", "steps", "batch_size", "log_every"):
    if not (isinstance(vae_config[key], int) and vae_config[key] > 0):
      raise errors.ConfigError(f"config.pose_vae.{key}={vae_config[key]!r}: expected a positive whole number")
  if not (vae_config.widths and all(isinstance(w, int) and w > 0 for w in vae_config.widths)):
    raise errors.ConfigError(f"config.pose_vae.widths={vae_config.widths!r}: expected positive whole numbers")
  if not vae_config.lr > 0:
    raise errors.ConfigError(f"config.pose_vae.lr={vae_config.lr!r}: a learning rate must be a positive number")
  if not vae_config.kl_weight >= 0:
    raise errors.ConfigError(f"config.pose_vae.kl_weight={vae_config.kl_weight!r}: expected a number >= 0")


def train(vae_config, keypoints, visible):
  """(params, last logged {"loss", "reconstruction", "kl"}) of a VAE trained on poses (N, K, 2) / (N, K)."""
  check(vae_config)
  y, visible = normalise(keypoints, visible), np.asarray(visible, np.float32)
  n, k = visible.shape
  vae = model(vae_config, k)
  init_key, noise_key = jax.random.split(jax.random.key(vae_config.seed))
  params = vae.init(init_key, y[:1], visible[:1], jnp.zeros((1, vae_config.latent)))["params"]

  def batch_loss(params, y, visible, key):
    noise = jax.random.normal(key, (y.shape[0], vae_config.latent))
    return loss(params, vae, y, visible, noise, vae_config.kl_weight)

  order = _batch_order(n, vae_config.batch_size, vae_config.steps, vae_config.seed)
  batches = ((y[batch], visible[batch], jax.random.fold_in(noise_key, i)) for i, batch in enumerate(order, start=1))
  params, values = fitting.fit(batch_loss, params, optax.adam(vae_config.lr), batches, vae_config.steps,
                               vae_config.log_every)
  log.info("pose VAE: reconstruction %.4g, KL %.4g per pose (last batch)", values["reconstruction"], values["kl"])
  return params, values


def _batch_order(n, batch_size, steps, seed):
  """The sample indices of each step's batch (steps, batch_size): consecutive batches of seeded permutations of
  0..n-1, a new permutation when the last one has no whole batch left."""
  rng = np.random.default_rng(seed)
  batch_size = min(batch_size, n)
  per_pass = n // batch_size
  order = np.concatenate([rng.permutation(n)[: per_pass * batch_size] for _ in range(-(-steps // per_pass))])
  return order[: steps * batch_size].reshape(steps, batch_size)


def score(vae, params, keypoints, visible):
  """(N,) float64 difficulty scores: the reconstruction error of each normalised pose from its posterior mean."""
  y, visible = normalise(keypoints, visible), np.asarray(visible, np.float32)
  noise = jnp.zeros((vae.latent,))
  error = jax.jit(lambda p, y, v: reconstruction_error(y, vae.apply({"params": p}, y, v, noise)[0], v))
  return np.concatenate([np.asarray(error(params, y[i:i + _SCORE_BATCH], visible[i:i + _SCORE_BATCH]), np.float64)
                         for i in range(0, len(y), _SCORE_BATCH)])


def read_keypoints(source, num_threads=2):
  """(keypoints (N, K, 2), visible (N, K)) float32 of every sample of ``source``, in index order: the VAE's input
  and what its scores are tied to (``fitting.read_poses``, which reads the images too: read once by the command)."""
  return fitting.read_poses(source, ("keypoints", "visible"), num_threads=num_threads, name="pose VAE")


def fingerprint(keypoints, visible):
  """sha256 of the float32 keypoints and visibility, hex."""
  digest = hashlib.sha256(np.ascontiguousarray(keypoints, np.float32).tobytes())
  digest.update(np.ascontiguousarray(visible, np.float32).tobytes())
  return digest.hexdigest()


def probe_indices(size):
  """The ``PROBES`` sample indices (evenly spread) whose keypoints ``probe_fingerprint`` hashes."""
  return np.unique(np.linspace(0, size - 1, min(PROBES, size)).round().astype(int))


def probe_fingerprint(source):
  samples = [source[int(i)] for i in probe_indices(len(source))]
  return fingerprint(np.stack([s["keypoints"] for s in samples]), np.stack([s["visible"] for s in samples]))


def _identity(data_config, source):
  """What ties a scores file to its data: data set, split, size, keypoint set."""
  return {"dataset": data_config.name, "split": "train", "size": len(source), "keypoint_set": source.keypoint_set.name}


def run(config, workdir):
  """Trains the VAE on ``config.source``'s training split and writes ``WORKDIR/pose_vae/{params.msgpack,
  scores.json}`` (replacing earlier ones); returns the path of scores.json."""
  check(config.pose_vae)
  source = sources.make_source(config.source, "train")
  out = pathlib.Path(workdir).expanduser().resolve() / FOLDER
  start = time.perf_counter()
  log.info("pose VAE: reading the %d poses of %s", len(source), source)
  keypoints, visible = read_keypoints(source, config.data.num_threads)
  read_seconds = time.perf_counter() - start
  params, final = train(config.pose_vae, keypoints, visible)
  train_seconds = time.perf_counter() - start - read_seconds
  scores = score(model(config.pose_vae, visible.shape[1]), params, keypoints, visible)
  record = {**_identity(config.source, source), "data_config": config.source.to_dict(),
            "keypoints_sha256": fingerprint(keypoints, visible), "probe_sha256": probe_fingerprint(source),
            "pose_vae": config.pose_vae.to_dict(), "final_batch": final,
            "seconds": {"read": round(read_seconds, 1), "train": round(train_seconds, 1)}, "scores": scores.tolist()}
  network_files.write(out / PARAMS, params, barrier="pose VAE written")
  if jax.process_index() == 0:
    workdirs.write_atomic(out / SCORES, (json.dumps(record) + "\n").encode())
  log.info("pose VAE: read %.0f s, trained %.0f s; scores (min %.4g, median %.4g, max %.4g) in %s", read_seconds,
           train_seconds, scores.min(), np.median(scores), scores.max(), out / SCORES)
  return out / SCORES


def load_params(vae_config, num_keypoints, folder):
  """The VAE parameters that ``run`` wrote in ``folder`` (WORKDIR/pose_vae) for ``vae_config``."""
  path = pathlib.Path(folder).expanduser() / PARAMS
  vae = model(vae_config, num_keypoints)
  template = jax.eval_shape(lambda: vae.init(jax.random.key(0), jnp.zeros((1, num_keypoints, 2)),
                                             jnp.zeros((1, num_keypoints)), jnp.zeros((1, vae.latent)))["params"])
  remake = f"make it with `dapose-jax pose_vae --config CONFIG --workdir {pathlib.Path(folder).parent}`"
  return vae, network_files.read(path, template, remake=remake)


def load_scores(path, data_config, source):
  """The (N,) scores in ``path`` (a scores.json of ``run``), after checking that they were made from ``source``,
  the training split of ``data_config``: its name, size, keypoint set and the fingerprint of ``PROBES`` samples."""
  return _checked_scores(path, data_config, source)[0]


def load_scorer(path, data_config, source, num_keypoints):
  """(scores, vae, params): ``load_scores`` and the VAE that made them (beside ``path``), to score other poses."""
  scores, record = _checked_scores(path, data_config, source)
  vae, params = load_params(ConfigDict(record["pose_vae"]), num_keypoints, pathlib.Path(path).expanduser().parent)
  return scores, vae, params


def _checked_scores(path, data_config, source):
  path = pathlib.Path(path).expanduser()
  remake = "run `dapose-jax pose_vae --config CONFIG --workdir DIR` with this run's config.source"
  if not path.is_file():
    raise errors.MissingInputError(f"config.sampling.scores={str(path)!r} is not a file; {remake}")
  record = workdirs.read_json(path, "pose-VAE scores file", remake)
  try:
    scores = np.asarray(record["scores"], np.float64)
  except (ValueError, TypeError, KeyError) as error:
    raise errors.CorruptInputError(f"{path} is not a pose-VAE scores file ({errors.one_line(error)}); {remake}") \
        from None
  expected = _identity(data_config, source)
  stored = {key: record.get(key) for key in expected}
  if stored != expected or len(scores) != len(source) or record.get("probe_sha256") != probe_fingerprint(source):
    differs = ", ".join(f"{k} {stored[k]!r} (the run's: {expected[k]!r})" for k in expected if stored[k] != expected[k])
    raise errors.ConfigError(f"{path} scores other poses than config.source's training split "
                             f"({differs or 'its keypoints differ'}); {remake}")
  return scores, record
