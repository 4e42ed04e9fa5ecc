"""Training UDAPE's AdaIN decoder (``adain/train/train_human.py``) between the source and target domains.

Per iteration a coin (p = 0.5) makes the source batch the content and the target batch the style, or
the reverse; alpha = 1. With t = AdaIN(relu4_1(content), relu4_1(style)) and g = decoder(t):
loss = content_weight * MSE(relu4_1(g), t)
       + style_weight * sum over relu1_1..relu4_1 of MSE(Gram(g), Gram(style)),  Gram / (C * H * W).
Only the decoder is trained (Adam, constant lr); the encoder is frozen.

A method of the training loop: its run (``configure``) takes ``config.style``'s batch size, seed, steps and
log interval, UDAPE's style-training transform for both domains and no evaluators; it trains in
NET_DIR/training (checkpointed, resumable) and ``finish`` writes ``style_net.msgpack`` and
``style_net.json`` (settings and loss curve, see ``style_net``) to ``config.style.net``, then removes the
training folder. A network file that exists already is reused; a released decoder is converted into one
without training (``prepare``).

``config.style.encoder``: path of ``vgg_normalised.pth`` (or an .npz / .safetensors conversion), or ""
for a randomly initialised (He-normal) frozen encoder. AdaIN with an untrained encoder only matches
the statistics of random features, not VGG's perceptual ones; that is what the offline demo can do.
``config.style.decoder``: path of a released decoder (``decoder_*.pth.tar``) to use instead of
training one. Released weights are full size: they need ``config.style.width = 1``.
"""

import functools
import json
import logging
import pathlib
import shutil

import flax
import jax
import jax.numpy as jnp
import optax

from dapose_jax.augment import device_augment
from dapose_jax.auxiliary import style_net
from dapose_jax.methods import base
from dapose_jax.models import style
from dapose_jax.storage import workdirs

log = logging.getLogger("dapose_jax")


@flax.struct.dataclass
class State:
  step: jax.Array
  encoder: dict  # frozen
  decoder: dict
  opt_state: optax.OptState


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


def decoder_step(style_config, optimizer, decoder_params, opt_state, encoder_params, source, target, rng):
  """One Adam step of the decoder on uint8 source/target images; the coin ``rng`` picks the direction."""
  source, target = device_augment.normalize(source), device_augment.normalize(target)
  swap = jax.random.bernoulli(rng)  # p = 0.5: content = target, style = source
  content, style_images = jnp.where(swap, target, source), jnp.where(swap, source, target)
  loss_fn = functools.partial(decoder_loss, width=style_config.width, depth=style_config.depth,
                              style_weight=style_config.style_weight, content_weight=style_config.content_weight)
  (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      decoder_params, encoder_params, content, style_images)
  updates, opt_state = optimizer.update(grads, opt_state, decoder_params)
  return optax.apply_updates(decoder_params, updates), opt_state, {"loss": loss, **parts}


def _optimizer(config):
  return optax.adam(config.style.lr)


def configure(config):
  """The decoder run of ``config``: ``config.style``'s batch, seed, steps and log interval, UDAPE's
  style-training transform (the domain's crop with rotation 180, no colour jitter or blur), no evaluators."""
  style_net.check_released(config.style)
  s = config.style
  style_transform = {"augment": {"rotation": 180.0, "color": 0.0, "blur": 0.0}}
  config = base.updated(config, method="style_decoder", batch_size=s.batch_size, seed=s.seed, epochs=1,
                        iters_per_epoch=s.steps, log_every=s.log_every, select_on="", source=style_transform,
                        target=style_transform)
  config.evals = {}
  return config


def prepare(config, workdir):
  """The stages that make ``config.style.net`` (default WORKDIR/style_net.msgpack): none when that file exists,
  none when a released decoder is named (converted into that file here, without training), else the training in
  WORKDIR/training."""
  net = config.style.net or str(workdir / style_net.STYLE_NET)
  if pathlib.Path(net).is_file():
    log.info("style net: using the existing %s", net)
    return []
  if config.style.decoder:
    log.info("style net: imported decoder %s (no training)", config.style.decoder)
    style_net.save(net, style_net.initial_params(config.style), {**net_info(config), "final_loss": None, "history": []})
    return []
  return [base.Stage("style", base.updated(config, style={"net": net}), workdir / "training")]


def init(config, rng):
  del rng  # the network is drawn from config.style.seed, as the reference's command line seeds it
  params = style.init_style_params(jax.random.key(config.style.seed), config.style.width, depth=config.style.depth)
  return State(step=jnp.zeros((), jnp.int32), encoder=params["encoder"], decoder=params["decoder"],
               opt_state=_optimizer(config).init(params["decoder"]))


def load_pretrained(config, state):
  """The released encoder (and decoder) that ``config.style`` names."""
  params = style_net.with_released(config.style, {"encoder": state.encoder, "decoder": state.decoder})
  return state.replace(encoder=params["encoder"], decoder=params["decoder"])


def train_step(config, state, source, target):
  coin = jax.random.fold_in(jax.random.key(config.style.seed + 1), state.step + 1)
  decoder, opt_state, values = decoder_step(config.style, _optimizer(config), state.decoder, state.opt_state,
                                            state.encoder, source["image"], target["image"], coin)
  return state.replace(step=state.step + 1, decoder=decoder, opt_state=opt_state), values


def net_info(config):
  """What ``style_net.json`` records of the run that made a network."""
  return {"style": config.style.to_dict(), "image_size": config.image_size, "source": config.source.name,
          "target": config.target.name}


def finish(config, state, workdir):
  """Writes the network to ``config.style.net`` with the logged loss curve, then removes the training folder."""
  history = []
  if jax.process_index() == 0:
    for line in (workdir / workdirs.METRICS).read_text().splitlines():
      record = json.loads(line)
      if record.pop("kind") == "train":
        record.pop("steps_per_second", None)
        history.append(record)
  final = history[-1]["loss"] if history else None
  path = style_net.save(config.style.net, {"encoder": state.encoder, "decoder": state.decoder},
                        {**net_info(config), "final_loss": final, "history": history})
  log.info("style net: %d steps, final loss %s -> %s", config.style.steps, final, path)
  if jax.process_index() == 0:
    shutil.rmtree(workdir)


def with_style_network(config, workdir, needed):
  """(the stages that make the style network a run of ``config`` reads, the run's config naming it): its
  training into WORKDIR/style when ``needed`` and neither ``config.style.net`` nor a released decoder is given."""
  if not needed or config.style.net or config.style.decoder:
    return [], config
  stages = METHOD.stages(base.updated(config, method="style_decoder"), workdir / "style")
  return stages, base.updated(config, style={"net": str(workdir / "style" / style_net.STYLE_NET)})


METHOD = base.Method(name="style_decoder", init=init, train_step=train_step, eval_heatmaps=None,
                     configure=configure, prepare=prepare, load_pretrained=load_pretrained, finish=finish)
