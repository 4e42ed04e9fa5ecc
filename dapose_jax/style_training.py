"""Training UDAPE's AdaIN decoder (``adain/train/train_human.py``) between the source and target domains.

Command line: ``python -m dapose_jax.style_training --config configs/demo.py --workdir DIR
[--config.style.steps=N ...]`` writes ``DIR/style_net.msgpack`` (encoder + decoder params, flax
serialization) and ``DIR/style_net.json`` (the ``config.style`` fields used, the width, the loss curve).

Per iteration a coin (p = 0.5) makes the source batch the content and the target batch the style, or
the reverse; alpha = 1. With t = AdaIN(relu4_1(content), relu4_1(style)) and g = decoder(t):
loss = content_weight * MSE(relu4_1(g), t)
       + style_weight * sum over relu1_1..relu4_1 of MSE(Gram(g), Gram(style)),  Gram / (C * H * W).
Only the decoder is trained (Adam, constant lr); the encoder is frozen.

``config.style.encoder``: path of ``vgg_normalised.pth`` (or an .npz / .safetensors conversion), or ""
for a randomly initialised (He-normal) frozen encoder. AdaIN with an untrained encoder only matches
the statistics of random features, not VGG's perceptual ones; that is what the offline demo can do.
``config.style.decoder``: path of a released decoder (``decoder_*.pth.tar``) to import instead of
training one, or "" to train. Released weights are full size: they need ``config.style.width = 1``.
"""

import functools
import json
import logging
import math
import os
import pathlib
import tempfile
import time

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import optax

from dapose_jax import parallel
from dapose_jax.data import pipeline, sources
from dapose_jax.methods import common
from dapose_jax.models import style

log = logging.getLogger("dapose_jax")

STYLE_NET = "style_net.msgpack"
STYLE_NET_INFO = "style_net.json"


def decoder_loss(decoder_params, encoder_params, content, style_images, *, width, style_weight,
                 content_weight, depth=4):
  """(total loss, {"content", "style"}) of the decoder on ImageNet-normalised content/style batches."""
  encode = functools.partial(style.encode, encoder_params, width=width, depth=depth)
  content_features = encode(content)[-1]
  style_features = encode(style_images)
  target = style.adain(content_features, style_features[-1])
  generated_features = encode(style.decode(decoder_params, target, width, depth))
  content_loss = jnp.mean((generated_features[-1] - target) ** 2)
  style_loss = sum(jnp.mean((style.gram(g) - style.gram(s)) ** 2)
                   for g, s in zip(generated_features, style_features))
  total = content_weight * content_loss + style_weight * style_loss
  return total, {"content": content_loss, "style": style_loss}


def train_step(style_config, optimizer, decoder_params, opt_state, encoder_params, source, target, rng):
  """One Adam step of the decoder on uint8 source/target batches; the coin ``rng`` picks the direction."""
  source, target = common.normalize(source), common.normalize(target)
  swap = jax.random.bernoulli(rng)  # p = 0.5: content = target, style = source
  content, style_images = jnp.where(swap, target, source), jnp.where(swap, source, target)
  loss_fn = functools.partial(decoder_loss, width=style_config.width, depth=style_config.depth,
                              style_weight=style_config.style_weight, content_weight=style_config.content_weight)
  (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      decoder_params, encoder_params, content, style_images)
  updates, opt_state = optimizer.update(grads, opt_state, decoder_params)
  return optax.apply_updates(decoder_params, updates), opt_state, {"loss": loss, **parts}


def _style_augment(augment):
  """UDAPE's style-training transform: the domain's crop with rotation 180, no colour jitter or blur."""
  augment = ml_collections.ConfigDict(augment.to_dict())  # a copy: the run's config stays as it is
  augment.rotation, augment.color, augment.blur = 180.0, 0.0, 0.0
  return augment


def _write_atomic(path, data: bytes):
  """Write to a temporary file in the same folder, then rename over ``path``."""
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the permissions open() would
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def save_style_net(workdir, style_params, info):
  """``style_net.json`` then ``style_net.msgpack``, each atomically (process 0 writes); returns the
  msgpack path."""
  workdir = pathlib.Path(workdir)
  path = workdir / STYLE_NET
  style_params = jax.device_get(style_params)
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    _write_atomic(workdir / STYLE_NET_INFO, (json.dumps(info, indent=2) + "\n").encode())
    _write_atomic(path, flax.serialization.to_bytes(style_params))
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("style_net written")
  return path


def load_style_net(path):
  """(style_params, width) of a ``style_net.msgpack`` written by ``train_decoder``."""
  path = pathlib.Path(path)
  params = flax.serialization.msgpack_restore(path.read_bytes())
  info = json.loads((path.parent / STYLE_NET_INFO).read_text())
  return jax.tree.map(jnp.asarray, params), info["style"]["width"]


def load_style(config, template):
  """The frozen AdaIN encoder + decoder at ``config.style.net``, checked against ``template`` (the
  method state's ``style`` field)."""
  path = pathlib.Path(config.style.net).expanduser()
  if not config.style.net or not path.is_file():
    raise FileNotFoundError(f"config.style.net={config.style.net!r} is not a style network file; train one with "
                            "python -m dapose_jax.style_training (dapose_jax.train.run does it on its own)")
  params, _ = load_style_net(path)
  return common.checked_like(params, template)


def initial_style_params(style_config):
  """Random (He-normal) encoder and decoder at ``width``, replaced by the released files that are named."""
  params = style.init_style_params(jax.random.key(style_config.seed), style_config.width,
                                   depth=style_config.depth)
  if (style_config.encoder or style_config.decoder) and (style_config.width, style_config.depth) != (1.0, 4):
    raise ValueError(f"released style weights are full width and depth; config.style.width is "
                     f"{style_config.width}, config.style.depth {style_config.depth}: set them to 1.0 and 4 or "
                     "leave config.style.encoder / decoder empty")
  if style_config.encoder:
    params["encoder"] = style.encoder_params_from_state_dict(style.read_released(style_config.encoder))
  if style_config.decoder:
    params["decoder"] = style.decoder_params_from_state_dict(style.read_released(style_config.decoder))
  return params


def train_decoder(config, workdir):
  """Path of ``WORKDIR/style_net.msgpack``: returned as is when it exists, else trained (or imported
  when ``config.style.decoder`` names a released decoder) and written."""
  workdir = pathlib.Path(workdir).expanduser().resolve()
  path = workdir / STYLE_NET
  if path.exists():
    log.info("style net: using the existing %s", path)
    return path
  style_config = config.style
  info = {"style": style_config.to_dict(), "image_size": config.image_size,
          "source": config.source.name, "target": config.target.name}
  params = initial_style_params(style_config)
  if style_config.decoder:
    log.info("style net: imported decoder %s (no training)", style_config.decoder)
    return save_style_net(workdir, params, {**info, "final_loss": None, "history": []})

  mesh = parallel.make_mesh()
  parallel.local_batch_size(style_config.batch_size)
  repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  iterators = [
      pipeline.train_iterator(
          sources.make_source(data_config, "train"), batch_size=style_config.batch_size,
          image_size=config.image_size, augment=_style_augment(data_config.augment),
          seed=style_config.seed + offset, num_threads=config.data.num_threads,
          prefetch=config.data.prefetch, workers=config.data.workers)
      for offset, data_config in enumerate((config.source, config.target))]
  optimizer = optax.adam(style_config.lr)
  encoder_params = jax.device_put(params["encoder"], repl)
  decoder_params = jax.device_put(params["decoder"], repl)
  opt_state = jax.device_put(optimizer.init(decoder_params), repl)
  step_fn = jax.jit(functools.partial(train_step, style_config, optimizer), donate_argnums=(0, 1),
                    in_shardings=(repl, repl, repl, data, data, repl), out_shardings=repl)
  coins = jax.random.key(style_config.seed + 1)

  history, start, first_done = [], time.perf_counter(), None
  for step in range(1, style_config.steps + 1):
    source = parallel.to_global(next(iterators[0])["image"], mesh)
    target = parallel.to_global(next(iterators[1])["image"], mesh)
    decoder_params, opt_state, metrics = step_fn(decoder_params, opt_state, encoder_params, source, target,
                                                 jax.random.fold_in(coins, step))
    if step == 1:
      jax.block_until_ready(metrics)
      first_done = time.perf_counter()
    if step % style_config.log_every == 0 or step == style_config.steps or step == 1:
      values = {k: float(v) for k, v in jax.device_get(metrics).items()}
      if not all(math.isfinite(v) for v in values.values()):
        raise FloatingPointError(f"style decoder training: non-finite loss {values} at step {step}")
      history.append({"step": step, **values})
      speed = (f"{(step - 1) / (time.perf_counter() - first_done):.2f} steps/s" if step > 1
               else "(compiling)")
      log.info("style step %d/%d  loss %.5g (content %.5g, style %.5g)  %s", step, style_config.steps,
               values["loss"], values["content"], values["style"], speed)
  seconds = time.perf_counter() - start
  params = {"encoder": encoder_params, "decoder": decoder_params}
  final = history[-1]["loss"] if history else None
  log.info("style net: %d steps in %.0f s, final loss %s -> %s", style_config.steps, seconds, final, path)
  return save_style_net(workdir, params, {**info, "final_loss": final, "seconds": seconds, "history": history})


def _main(argv):
  import cv2
  from absl import app

  from dapose_jax import main as cli  # --config, --workdir, --multihost and the progress logging

  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if cli.FLAGS.multihost:
    jax.distributed.initialize()
  cli._log_progress_to_stderr()
  cv2.setNumThreads(1)
  print(train_decoder(cli.FLAGS.config, cli.FLAGS.workdir))


if __name__ == "__main__":
  from absl import app

  from dapose_jax import main as _cli  # noqa: F401  defines the flags before parsing

  app.run(_main)
