"""Pre-training of the geometric reconstruction's generator (W and G, ``models/reconstruction.py``) on source pairs,
a method of the training loop (``config.method = "reconstruction"``, settings ``config.reconstruction``).

Definitions:
- Data: ``driving="pair"``: ``config.source``'s training split as base/driving pairs (``pairs=True``: the renderer's
  or a data set's pair index), both images of a pair augmented by the same draws of the source's host transform
  (``pipeline.train_iterator(pairs=True)``); ``"view"``: each training image and a random view of it (``view_pair``:
  an affine at ``driving_view``'s ranges, drawn on the device per step). No device augmentation. ``domains``:
  the domains whose training images it learns from, ("source",) or ("source", "target") (the target needs
  keypoints="predictor": its labels are not for training); the loss is the mean over the domains' batches.
- Keypoints, normalised (``pose.decoding.pixels_to_normalised``): ``keypoints="truth"``, the labels, as
  image pixel x / image size; ``"predictor"``, the frozen pose network of the checkpoint folder ``predictor``
  (a run's ``best``, e.g. RUN/pretrain/best), eval mode, through ``decoding.heatmap_keypoints`` (the relative
  soft-argmax at ``soft_argmax_temperature(sigma, heatmap_size)``), as heatmap pixel x / heatmap size (the same point).
- Loss: L = mean |x_hat - x| + perceptual_weight * sum_l mean |phi_l(x_hat) - phi_l(x)|, x the driving image
  and x_hat its reconstruction in [0, 1], phi_l the frozen AdaIN encoder's relu{l}_1 features (l = 1 ..
  config.style.depth) of the ImageNet-normalised images: config.style.net's encoder, else the released or random
  (He-normal) one that ``style_net.initial_params`` gives. Adam at ``lr``, ``steps`` batches of ``batch_size``,
  the Reconstructor's BatchNorm in training mode.

The run trains in NET_DIR/training (checkpointed, resumable, NaN-checked like any run); ``finish`` writes the
network to ``config.reconstruction.net`` (flax serialization of {"params", "batch_stats"}) and a picture beside it
(``reconstruction.png``: rows of base | driving | reconstruction | warped base), then removes the training folder.
A network file that exists already is reused.
"""

import functools
import logging
import pathlib
import shutil

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dapose_jax import errors
from dapose_jax.augment import transforms, views
from dapose_jax.auxiliary import style_net
from dapose_jax.config import defaults
from dapose_jax.data import pipeline, sources
from dapose_jax.methods import base, common
from dapose_jax.models import pose, reconstruction, style
from dapose_jax.plots import drawing
from dapose_jax.pose import decoding, skeletons
from dapose_jax.storage import checkpoints, network_files

log = logging.getLogger("dapose_jax")

NET = "reconstruction.msgpack"
PICTURE = "reconstruction.png"
KEYPOINT_SOURCES = ("truth", "predictor")
DRIVING = ("pair", "view")
PICTURE_ROWS = 4


@flax.struct.dataclass
class State:
  step: jax.Array
  params: dict
  batch_stats: dict
  opt_state: optax.OptState
  encoder: dict  # frozen: the perceptual term's AdaIN encoder
  predictor: dict  # frozen: the pose network's {"params", "batch_stats"} with keypoints="predictor", else {}


def check(config):
  """The settings of ``config.reconstruction`` that the model and its training read."""
  r = config.reconstruction
  if r.keypoints not in KEYPOINT_SOURCES:
    raise errors.ConfigError(f"config.reconstruction.keypoints={r.keypoints!r}: expected one of {KEYPOINT_SOURCES}")
  if r.driving not in DRIVING:
    raise errors.ConfigError(f"config.reconstruction.driving={r.driving!r}: expected one of {DRIVING}")
  if not r.domains or set(r.domains) - {"source", "target"} or len(set(r.domains)) != len(r.domains):
    raise errors.ConfigError(f"config.reconstruction.domains={tuple(r.domains)!r}: expected 'source', 'target' or "
                             "both, each once")
  if "target" in r.domains and r.keypoints == "truth":
    raise errors.ConfigError("config.reconstruction.domains includes 'target' with keypoints='truth': the target's "
                             "labels are not for training; use keypoints='predictor' or domains=('source',)")
  for key in ("steps", "batch_size", "log_every", "warping_features", "warping_blocks", "generator_features"):
    if not (isinstance(r[key], int) and r[key] > 0):
      raise errors.ConfigError(f"config.reconstruction.{key}={r[key]!r}: expected a positive whole number")
  if not r.perceptual_weight >= 0:
    raise errors.ConfigError(f"config.reconstruction.perceptual_weight={r.perceptual_weight!r}: expected >= 0")
  if config.image_size % 4:
    raise errors.ConfigError(f"image_size={config.image_size}: the generator needs a multiple of 4")
  side = config.image_size * r.warping_scale / 2**r.warping_blocks
  if side != int(side) or side < 1:
    raise errors.ConfigError(f"config.reconstruction.warping_blocks={r.warping_blocks}: image_size "
                             f"{config.image_size} x warping_scale {r.warping_scale} must be a whole multiple of "
                             f"2^warping_blocks; lower warping_blocks")


def model(config):
  r = config.reconstruction
  return reconstruction.Reconstructor(
      r.warping_features, r.warping_max_features, r.warping_blocks, r.warping_scale, r.heatmap_variance,
      r.generator_features, r.generator_max_features, r.generator_residual_blocks)


def init_variables(config, num_keypoints):
  """{"params", "batch_stats"} of a fresh Reconstructor, drawn from ``config.reconstruction.seed``."""
  size = config.image_size
  kp = jnp.zeros((1, num_keypoints, 2))
  return dict(model(config).init(jax.random.key(config.reconstruction.seed), jnp.zeros((1, size, size, 3)), kp, kp,
                                 train=False))


def template(config, num_keypoints):
  """Zero Reconstructor variables of the right shapes (shapes only: ``load`` fills them)."""
  shapes = jax.eval_shape(functools.partial(init_variables, config, num_keypoints))
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def load(config, num_keypoints, path):
  """The Reconstructor's {"params", "batch_stats"} in the network file ``path`` (this method's product)."""
  path = pathlib.Path(path).expanduser()
  what = f"a Reconstructor of this config.reconstruction's widths and {num_keypoints} keypoints"
  remake = (f"make it with `dapose-jax reconstruction --config CONFIG --workdir {path.parent}` and this config, or "
            "leave the setting empty to train one")
  return network_files.read(path, template(config, num_keypoints), what=what, remake=remake)


def encoder_template(config):
  return style_net.template(config)["encoder"]


def perceptual_encoder(config):
  """The frozen AdaIN encoder's params: config.style.net's, else ``style_net.initial_params``'s (the released
  vgg_normalised when config.style.encoder names it, a random He-normal one otherwise)."""
  if config.style.net:
    return style_net.read(config.style.net)[0]["encoder"]
  log.info("reconstruction: config.style.net is empty, the perceptual term uses %s encoder",
           "the released" if defaults.named_file(config.style.encoder) else "a randomly initialised frozen")
  return style_net.initial_params(config.style)["encoder"]


def loss_terms(config, reconstructed, target, encoder_params):
  """(L, {"l1", "perceptual"}) of (B, H, W, 3) images in [0, 1] (the module docstring's loss)."""
  l1 = jnp.mean(jnp.abs(reconstructed - target))
  normalised = lambda images: (images - transforms.IMAGENET_MEAN) / transforms.IMAGENET_STD
  encode = functools.partial(style.encode, encoder_params, width=config.style.width, depth=config.style.depth)
  perceptual = sum(jnp.mean(jnp.abs(a - b)) for a, b in zip(encode(normalised(reconstructed)),
                                                             encode(normalised(target))))
  return l1 + config.reconstruction.perceptual_weight * perceptual, {"l1": l1, "perceptual": perceptual}


def sample_keypoints(config, state, sample):
  """Normalised (B, K, 2) keypoints of a batch as ``config.reconstruction.keypoints`` says."""
  if config.reconstruction.keypoints == "truth":
    return decoding.pixels_to_normalised(sample["keypoints"], config.image_size, config.image_size)
  heatmaps = common.predict(pose.build_model(config), state.predictor, sample["image"])
  return decoding.heatmap_keypoints(config, jax.lax.stop_gradient(heatmaps))


def images01(images):
  return images.astype(jnp.float32) / 255.0


def view_pair(config, key, batch):
  """{"base": batch, "driving": the batch under a random view} (``views`` at ``config.reconstruction.driving_view``,
  bilinear): the driving image of a data set without pairs; keypoints moved by the view, visible only inside it."""
  matrices = views.sample_matrices(key, batch["image"].shape[0], config.image_size,
                                   views.ViewParams(**config.reconstruction.driving_view))
  moved = views.transform_points(matrices, batch["keypoints"])
  inside = jnp.all((moved >= 0) & (moved <= config.image_size - 1), axis=-1)
  driving = {"image": views.to_view(batch["image"].astype(jnp.float32), matrices, order=1), "keypoints": moved,
             "visible": batch["visible"] * inside}
  return {"base": batch, "driving": driving}


def driving_key(config, step):
  """The key of step ``step``'s random views (``view_pair``)."""
  return jax.random.fold_in(jax.random.key(config.seed + 1), step)


def configure(config):
  """The generator's run: ``config.reconstruction``'s batch, seed, steps and log interval, source pairs without
  device augmentation, no evaluators; every setting checked."""
  check(config)
  r = config.reconstruction
  if r.keypoints == "predictor" and not r.predictor:
    raise errors.ConfigError("config.reconstruction.keypoints='predictor' needs config.reconstruction.predictor, "
                             "the 'best' folder of a trained run (e.g. RUN/pretrain/best)")
  config = base.updated(config, method="reconstruction", batch_size=r.batch_size, seed=r.seed, epochs=1,
                        iters_per_epoch=r.steps, log_every=r.log_every, select_on="",
                        **{domain: {"pairs": r.driving == "pair", "augment": {"on_device": False}}
                           for domain in r.domains})
  config.evals = {}
  return config


def prepare(config, workdir):
  """Training in NET_DIR/training into ``config.reconstruction.net`` (default WORKDIR/reconstruction.msgpack);
  nothing when that file exists."""
  config = base.updated(config, reconstruction={"net": config.reconstruction.net or str(workdir / NET)})
  if pathlib.Path(config.reconstruction.net).is_file():
    log.info("reconstruction: using the existing %s", config.reconstruction.net)
    return []
  return [base.Stage("reconstruction", config, pathlib.Path(config.reconstruction.net).parent / "training")]


def _optimizer(config):
  return optax.adam(config.reconstruction.lr)


def init(config, rng):
  del rng  # the network is drawn from config.reconstruction.seed
  num_keypoints = skeletons.get(config.source.keypoint_set).num_keypoints
  variables = init_variables(config, num_keypoints)
  predictor = {}
  if config.reconstruction.keypoints == "predictor":
    predictor = pose.init_variables(pose.build_model(config), jax.random.key(0))
    predictor = {"params": predictor["params"], "batch_stats": predictor["batch_stats"]}
  return State(step=jnp.zeros((), jnp.int32), params=variables["params"], batch_stats=variables["batch_stats"],
               opt_state=_optimizer(config).init(variables["params"]), encoder=encoder_template(config),
               predictor=predictor)


def load_pretrained(config, state):
  """The perceptual encoder and, with keypoints="predictor", the frozen pose network of ``predictor``."""
  state = state.replace(encoder=checkpoints.checked_like(perceptual_encoder(config), state.encoder))
  if config.reconstruction.keypoints != "predictor":
    return state
  stage1 = checkpoints.restore_best(config.reconstruction.predictor)
  return state.replace(predictor={name: checkpoints.checked_like(stage1[name], state.predictor[name])
                                  for name in ("params", "batch_stats")})


def pair_loss(config, params, state, pair):
  """(L, ({"l1", "perceptual"}, updated batch_stats)) of the Reconstructor in training mode on a pair batch."""
  kp_base, kp_driving = (sample_keypoints(config, state, pair[name]) for name in ("base", "driving"))
  out, updates = model(config).apply({"params": params, "batch_stats": state.batch_stats},
                                     images01(pair["base"]["image"]), kp_base, kp_driving, train=True,
                                     mutable=["batch_stats"])
  value, terms = loss_terms(config, out["image"], images01(pair["driving"]["image"]), state.encoder)
  return value, (terms, updates["batch_stats"])


def domains_loss(config, params, state, pairs):
  """``pair_loss`` averaged over the pair batches of the domains, BatchNorm statistics updated by each in turn."""
  total, summed = 0.0, {}
  for pair in pairs:
    value, (terms, batch_stats) = pair_loss(config, params, state, pair)
    state = state.replace(batch_stats=batch_stats)
    total += value
    summed = {name: summed.get(name, 0.0) + term for name, term in terms.items()}
  return total / len(pairs), ({name: term / len(pairs) for name, term in summed.items()}, state.batch_stats)


def train_step(config, state, source, target):
  batches = {"source": source, "target": target}
  key = driving_key(config, state.step)
  pairs = [batches[domain] if config[domain].pairs else view_pair(config, jax.random.fold_in(key, i), batches[domain])
           for i, domain in enumerate(config.reconstruction.domains)]
  (value, (terms, batch_stats)), grads = jax.value_and_grad(
      functools.partial(domains_loss, config, state=state, pairs=pairs), has_aux=True)(state.params)
  updates, opt_state = _optimizer(config).update(grads, state.opt_state, state.params)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       batch_stats=batch_stats, opt_state=opt_state), {"loss": value, **terms}


def variables_of(state):
  return {"params": state.params, "batch_stats": state.batch_stats}


def picture(config, variables, state, pair):
  """uint8 grid, a row per pair: base | driving | reconstruction | warped base (W's resolution, enlarged)."""
  kp_base, kp_driving = (sample_keypoints(config, state, pair[name]) for name in ("base", "driving"))
  out = jax.device_get(model(config).apply(variables, images01(pair["base"]["image"]), kp_base, kp_driving,
                                           train=False))
  to_uint8 = lambda x: np.clip(np.round(np.asarray(x) * 255.0), 0, 255).astype(np.uint8)
  scale = config.image_size // out["warped_base"].shape[1]
  tiles = []
  for n in range(min(PICTURE_ROWS, len(pair["base"]["image"]))):
    warped = np.repeat(np.repeat(to_uint8(out["warped_base"][n]), scale, 0), scale, 1)
    tiles += [pair["base"]["image"][n], pair["driving"]["image"][n], to_uint8(out["image"][n]), warped]
  return drawing.grid(tiles, columns=4)


def finish(config, state, workdir):
  """Writes the network to ``config.reconstruction.net`` and its picture beside it, then removes the training
  folder."""
  path = pathlib.Path(config.reconstruction.net)
  variables = jax.device_get(variables_of(state))
  if jax.process_index() == 0:
    source = sources.make_source(config.source, "train", pairs=config.source.pairs)
    shown = next(pipeline.train_iterator(source, batch_size=PICTURE_ROWS, image_size=config.image_size,
                                         augment=config.source.augment, seed=config.seed, pairs=config.source.pairs))
    if not config.source.pairs:
      shown = jax.device_get(view_pair(config, driving_key(config, 0), shown))
      shown["driving"]["image"] = np.clip(np.round(shown["driving"]["image"]), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    drawing.save_png(path.parent / PICTURE, picture(config, variables, jax.device_get(state), shown))
  network_files.write(path, variables, barrier="reconstruction network written")
  if jax.process_index() == 0:
    shutil.rmtree(workdir)
  log.info("reconstruction: %d steps -> %s", config.reconstruction.steps, path)


METHOD = base.Method(name="reconstruction", init=init, train_step=train_step, eval_heatmaps=None,
                     uses_style=lambda config: True, configure=configure, prepare=prepare,
                     load_pretrained=load_pretrained, finish=finish)
