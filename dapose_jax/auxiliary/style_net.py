"""The trained AdaIN style network as a file, and how a run gets its style network.

``style_net.msgpack`` holds the frozen encoder and the trained decoder, ``style_net.json`` beside it the
``config.style`` fields it was made with and its loss curve (``storage.network_files``).
The decoder is trained (or a released one converted) by the ``style_decoder`` method (``python -m dapose_jax style``).

A run that stylises images reads ``config.style.net`` (such a file) or, when it is empty and
``config.style.decoder`` names a released UDAPE decoder, the released encoder and decoder directly.
"""

import jax
import jax.numpy as jnp

from dapose_jax import errors
from dapose_jax.config import defaults
from dapose_jax.interop import adain, weights
from dapose_jax.models import style
from dapose_jax.storage import checkpoints, network_files

STYLE_NET = "style_net.msgpack"


def initial_params(style_config):
  """Random (He-normal) encoder and decoder at ``width``, replaced by the released files that are named."""
  check_released(style_config)
  params = style.init_style_params(jax.random.key(style_config.seed), style_config.width,
                                   depth=style_config.depth)
  return with_released(style_config, params)


def check_released(style_config):
  released = defaults.named_file(style_config.encoder) or style_config.decoder
  if released and (style_config.width, style_config.depth) != (1.0, 4):
    raise errors.ConfigError(f"released style weights are full width and depth; config.style.width is "
                     f"{style_config.width}, config.style.depth {style_config.depth}: set them to 1.0 and 4 or "
                     "leave config.style.encoder / decoder empty")


def with_released(style_config, params):
  """``params`` with the encoder and decoder replaced by the released files that ``style_config`` names."""
  params = dict(params)
  encoder = defaults.named_file(style_config.encoder)
  if encoder:
    encoder = weights.read_named(encoder, f"config.style.encoder={encoder}")
    params["encoder"] = adain.encoder_params_from_state_dict(encoder)
  if style_config.decoder:
    decoder = weights.read_named(style_config.decoder, f"config.style.decoder={style_config.decoder}")
    params["decoder"] = adain.decoder_params_from_state_dict(decoder)
  return params


def template(config):
  """Zero style-network parameters of the right shapes, for ``load`` to fill after a method's ``init``
  (shapes only: compiling the VGG initialisation into ``init`` would cost a minute on CPU)."""
  shapes = jax.eval_shape(lambda: style.init_style_params(jax.random.key(0), config.style.width, config.image_size,
                                                          config.style.depth))
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


REMAKE = "train one with `dapose-jax style` (a method that needs one trains it on its own)"


def save(path, style_params, info):
  """``path`` (``style_net.msgpack``) and its record ``info`` (``style_net.json``)."""
  return network_files.write(path, style_params, info, barrier="style_net written")


def read(path):
  """(style_params, width) of a ``style_net.msgpack``."""
  style_params = network_files.read(path, remake=REMAKE)
  style_config = network_files.read_record(path, REMAKE).get("style")
  width = style_config.get("width") if isinstance(style_config, dict) else None
  if not isinstance(width, (int, float)):
    raise errors.CorruptInputError(f"{network_files.record_path(path)} records no style.width (the width {path} was "
                                   f"trained at); {REMAKE}")
  return style_params, width


def load(config, like):
  """The frozen AdaIN encoder + decoder of a run, checked against ``like`` (the method state's ``style``
  field): from ``config.style.net``, or from the released files when only those are named."""
  if not config.style.net and config.style.decoder:
    return checkpoints.checked_like(initial_params(config.style), like)
  if not config.style.net:
    raise errors.MissingInputError(f"config.style.net is empty: {REMAKE}")
  return network_files.read(config.style.net, like, remake=REMAKE)
